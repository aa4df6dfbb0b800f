"""Start-up: the command, the package and the step scripts import nothing heavy until a step runs.

Each check runs in a fresh interpreter (``sys.modules`` of the test process already holds
everything) and looks at which of the heavy packages got imported; no timing is involved.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
#: Packages that each take from a few tenths of a second to seconds to import.
HEAVY = ("torch", "anndata", "scipy", "pandas", "matplotlib", "h5py", "zarr")
STEPS = ("simulate", "register", "prepare", "train", "export", "report", "integration", "summarize")


def heavy_imported_by(code: str) -> list[str]:
    """The HEAVY packages present in ``sys.modules`` after running ``code`` in a new interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def top_level_imports(script: Path) -> str:
    """The import statements a script runs before its body (the body needs Snakemake's object)."""
    tree = ast.parse(script.read_text(), filename=str(script))
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return ast.unparse(ast.Module(body=imports, type_ignores=[]))


def test_every_script_is_checked():
    assert {p.stem for p in SCRIPTS} >= {"simulate", "register", "prepare", "train", "export", "report", "integration",
                                         "summary"}


def test_help_of_the_command_and_of_every_step_imports_nothing_heavy():
    code = (
        "import contextlib, io\n"
        "from snakevi.cli import main\n"
        f"for argv in [['--help'], ['--version'], *([s, '--help'] for s in {STEPS!r})]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
    )
    assert heavy_imported_by(code) == []


def test_importing_the_package_and_the_steps_imports_nothing_heavy():
    code = (
        "import snakevi, snakevi.steps, snakevi.steps.logs, snakevi.cli\n"
        "from snakevi.steps import StepError, export, integration, prepare, register, report, simulate_dataset, "
        "summarize, train\n"
        "assert all(callable(f) for f in (export, integration, prepare, register, report, simulate_dataset, summarize,"
        " train))\n"
    )
    assert heavy_imported_by(code) == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_imports_nothing_heavy_before_its_step_runs(script):
    code = top_level_imports(script)
    assert "snakevi.steps" in code, f"{script.name} no longer imports its step at the top"
    assert heavy_imported_by(code) == []


def test_subpackages_still_load_on_attribute_access():
    # `import snakevi` is cheap, yet `snakevi.data.CellData` & co. work (and import what they need).
    code = "import snakevi\nassert snakevi.data.CellData.__name__ == 'CellData'\n"
    heavy = set(heavy_imported_by(code))
    # scipy for the sparse counts; no pandas: the train and report jobs read no AnnData.
    assert "scipy" in heavy and "pandas" not in heavy
