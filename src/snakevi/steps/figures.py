"""Figures of the report and integration steps: matplotlib's object API, saved atomically as PNG.

No ``pyplot``: it imports the interactive backend machinery and keeps a global registry of open
figures, neither of which a batch job writing a few PNG files needs (importing it costs the
report job about half a second). A :class:`matplotlib.figure.Figure` made directly renders
with the Agg canvas when saved as PNG and is freed like any other object.
"""

from __future__ import annotations

from pathlib import Path

from snakevi._atomic import atomic_path

#: Dots per inch of every report figure.
DPI = 110


def new_axes(figsize: tuple[float, float]):
    """A new figure with one axes, laid out at draw time so labels and legends fit: ``(fig, ax)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def save_png(fig, path: str | Path) -> None:
    """Write ``fig`` to ``path`` as PNG (whole file or nothing)."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def category_colors(n: int):
    """``n`` RGBA colours: tab10 up to 10 categories, then tab20 (repeating past 20)."""
    import numpy as np
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N) for i in range(n)])


def marker_handle(color, label: str):
    """A legend entry: one round marker of ``color``."""
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", linestyle="", color=color, label=label)
