#!/usr/bin/env bash
# GPU training speed (cells/s): snakevi's device-resident loader vs its host loader, and
# scvi-tools 1.4.2 where it can be installed; batch sizes 128 and 1024, 50,000 simulated cells
# x 2,000 genes. Under 5 minutes on one H100. Run from anywhere; it works in the repository root.
#
#   bash benchmarks/fetch_gpu_wheels.sh        # once, on a machine with PyPI -> .gpu-wheels/
#   bash benchmarks/gpu.sh                     # on the GPU machine (bring .gpu-wheels along)
#   GPU_BENCH_SMOKE=1 bash benchmarks/gpu.sh   # dry run on a CPU: 2,000 cells, 2 epochs
#
# The GPU machine has no network and no anndata/scvi-tools: the wheels in .gpu-wheels/ whose
# distribution the interpreter lacks are installed (--no-deps, --no-index) into a throwaway
# folder put on PYTHONPATH; torch and everything else already there is left alone. snakevi
# itself comes from src/ (PYTHONPATH), not installed.
#
# Environment: PYTHON (default python3), SCVI_PYTHON (interpreter for scvi-tools; default
# PYTHON), GPU_WHEELS (default .gpu-wheels), GPU_BENCH_EPOCHS (default 5), GPU_BENCH_PRECISION
# (default 1: also run benchmarks/precision.py, float32 vs bf16-mixed vs 16-mixed), GPU_BENCH_OUT
# (folder for results.jsonl, e.g. the device tool's $OUT; default the temporary work folder,
# which holds the installed wheels and the simulated data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
SCVI_PY="${SCVI_PYTHON:-$PY}"
WHEELS="${GPU_WHEELS:-$ROOT/.gpu-wheels}"
WORK="$(mktemp -d /tmp/gpu-bench.XXXXXX)"
RESULTS_DIR="${GPU_BENCH_OUT:-$WORK}"
SITE="$WORK/site"
mkdir -p "$RESULTS_DIR" "$SITE"
trap 'rm -rf "$SITE" "$WORK/data.npz"; rmdir "$WORK" 2>/dev/null || true' EXIT  # keep only results.jsonl
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

if [[ "${GPU_BENCH_SMOKE:-0}" == 1 ]]; then
    SIZE=(--cells 2000 --genes 200 --epochs 2 --device cpu)
else
    SIZE=(--cells 50000 --genes 2000 --epochs "${GPU_BENCH_EPOCHS:-5}" --device cuda)
fi

# --- install what the interpreter lacks, from the wheel folder -------------------------------
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    # Wheels whose distribution is not installed; `sparse` only if numba imports (it needs
    # numba + llvmlite, 64 MB of wheels we do not carry). Without it a stub stands in, below.
    mapfile -t missing < <("$SCVI_PY" - "$WHEELS" <<'PY'
import importlib.metadata as md, importlib.util as iu, pathlib, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
have = {norm(d.metadata["Name"] or "") for d in md.distributions()}
numba = iu.find_spec("numba") is not None
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = norm(whl.name.split("-")[0])
    if name not in have and (name != "sparse" or numba):
        print(whl)
PY
    )
    if ((${#missing[@]})); then
        echo "installing ${#missing[@]} wheel(s) into $SITE: $(printf '%s ' "${missing[@]##*/}")"
        if ! "$SCVI_PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "${missing[@]}"; then
            # No pip, or one that refuses (an externally managed Python): a wheel is a zip laid
            # out for site-packages, so unpacking it is an install for our purposes.
            echo "pip could not install them; unpacking the wheels instead"
            for whl in "${missing[@]}"; do "$SCVI_PY" -m zipfile -e "$whl" "$SITE"; done
        fi
    else
        echo "every wheel in $WHEELS is already installed"
    fi
else
    echo "no wheels in $WHEELS (run benchmarks/fetch_gpu_wheels.sh where PyPI is reachable); using what is installed"
fi
if ! "$SCVI_PY" -c "import sparse" > /dev/null 2>&1; then
    # scvi-tools imports `sparse` at import time (scvi.criticism, scvi.external.methylvi) but
    # SCVI training never calls it; this stub lets `import scvi` succeed and fails loudly if used.
    mkdir -p "$SITE/sparse"
    cat > "$SITE/sparse/__init__.py" <<'PY'
"""Benchmark stub of pydata/sparse (benchmarks/gpu.sh): importable, unusable."""
__version__ = "0+stub"
class SparseArray:
    def __init__(self, *args, **kwargs):
        raise ImportError("pydata/sparse is a stub in benchmarks/gpu.sh (numba is not installed)")
    @classmethod
    def from_numpy(cls, *args, **kwargs):
        cls()
class COO(SparseArray): pass
class GCXS(SparseArray): pass
def concatenate(*args, **kwargs):
    SparseArray()
PY
    echo "note: pydata/sparse is stubbed (numba/llvmlite not installed); SCVI training does not use it"
fi
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"

# --- run -----------------------------------------------------------------------------------
RESULTS="$RESULTS_DIR/results.jsonl"
DATA="$WORK/data.npz"
: > "$RESULTS"
echo "== snakevi (work folder $WORK, results in $RESULTS)"
"$PY" benchmarks/gpu_bench.py run --systems snakevi-device snakevi-host \
    --data "$DATA" --results "$RESULTS" "${SIZE[@]}" \
    || echo "snakevi run failed (exit $?); its rows are missing from the table"
echo "== scvi-tools"
"$SCVI_PY" benchmarks/gpu_bench.py run --systems scvi-tools \
    --data "$DATA" --results "$RESULTS" "${SIZE[@]}" \
    || echo "scvi-tools run failed (exit $?); its rows are missing from the table"
echo "== summary"
"$PY" benchmarks/gpu_bench.py report --results "$RESULTS"
# Mixed precision (issue 23): float32 vs bf16-mixed vs 16-mixed, cells/s and final ELBO, in one run.
if [[ "${GPU_BENCH_PRECISION:-1}" == 1 ]]; then
    echo "== precision"
    if [[ "${GPU_BENCH_SMOKE:-0}" == 1 ]]; then
        PREC=(--accelerator cpu --cells 2000 --genes 200 --epochs 2 --repeats 1)
    else
        PREC=(--accelerator cuda --cells 50000 --genes 2000 --batch-size 1024 --epochs "${GPU_BENCH_EPOCHS:-5}" --repeats 1)
    fi
    "$PY" benchmarks/precision.py "${PREC[@]}" --data-dir "$WORK" --out-dir "$RESULTS_DIR" \
        || echo "precision run failed (exit $?)"
fi
