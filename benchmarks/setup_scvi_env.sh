#!/usr/bin/env bash
# Create a separate comparison environment with scvi-tools 1.4.2 at <repo>/.venv-scvi.
# Idempotent: exits early if the venv already imports scvi 1.4.2.
# CPU torch 2.13.0 is installed first and pinned through a constraints file so that
# scvi-tools' dependency resolution cannot swap it for a CUDA build.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${SCVI_VENV:-$ROOT/.venv-scvi}"
CONSTRAINTS="$HERE/scvi-constraints.txt"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && \
   [ "$("$VENV/bin/python" -c 'import scvi; print(scvi.__version__)' 2>/dev/null | tail -n1)" = "1.4.2" ]; then
    echo "scvi-tools 1.4.2 already present in $VENV; nothing to do."
    exit 0
fi

echo "torch==2.13.0" > "$CONSTRAINTS"

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install torch==2.13.0
"$VENV/bin/python" -m pip install -c "$CONSTRAINTS" scvi-tools==1.4.2

"$VENV/bin/python" - <<'PY'
import torch, scvi
print("scvi-tools", scvi.__version__, "torch", torch.__version__)
assert scvi.__version__ == "1.4.2", scvi.__version__
PY
