"""snakevi: scVI-family models trained in plain PyTorch, run as a Snakemake workflow.

Importing the package is cheap: submodules (``snakevi.model``, ``snakevi.data``, ...) are
imported on first use, so ``snakevi --help`` and the step scripts start fast.
"""

__version__ = "0.1.0"
