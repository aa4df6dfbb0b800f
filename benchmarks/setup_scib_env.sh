#!/usr/bin/env bash
# Create a separate comparison environment with scib-metrics and scanpy at <repo>/.venv-scib, used
# only by benchmarks/scib_crosscheck.py, scib_reference.py and scanpy_hvg_reference.py to check
# snakevi.metrics and snakevi.data.hvg against the reference implementations (.ci/run reruns the
# last two live). Idempotent: exits early if the venv already imports the pinned versions.
# No torch is needed: scib-metrics runs on jax, and the CPU jaxlib wheel is all it takes.
# scib-metrics 0.5.10 is the newest release that supports Python 3.11 (0.6 needs Python >= 3.12).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${SCIB_VENV:-$ROOT/.venv-scib}"
PY="${PYTHON:-python3}"
VERSION="0.5.10"
JAX_VERSION="0.10.2"  # the draws scib_kmeans copies are those of this jax (tests/metrics/test_jax_random.py)
SCANPY_VERSION="1.11.5"  # scib-metrics' own pick here; the gene sets of tests/data/test_hvg_scanpy.py

if [ -x "$VENV/bin/python" ] && \
   [ "$("$VENV/bin/python" -c 'import skmisc.loess, scib_metrics; print(scib_metrics.__version__)' 2>/dev/null | tail -n1)" = "$VERSION" ]; then
    echo "scib-metrics $VERSION and scikit-misc already present in $VENV; nothing to do."
    exit 0
fi

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
# jax[cpu] pulls the CPU jaxlib only; nothing here asks for CUDA.
# scikit-misc: the loess of scanpy's seurat_v3 gene selection.
"$VENV/bin/python" -m pip install "scib-metrics==$VERSION" "jax[cpu]==$JAX_VERSION" "jaxlib==$JAX_VERSION" \
    "scanpy==$SCANPY_VERSION" "scikit-misc==0.5.3"

"$VENV/bin/python" - <<'PY'
import jax, scib_metrics
print("scib-metrics", scib_metrics.__version__, "jax", jax.__version__, "devices", jax.devices())
PY
