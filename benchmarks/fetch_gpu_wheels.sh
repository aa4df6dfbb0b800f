#!/usr/bin/env bash
# Download, into .gpu-wheels/ (gitignored), the wheels benchmarks/gpu.sh installs on the GPU
# machine: anndata and scvi-tools 1.4.2 with the dependencies that machine's Python 3.12 image
# lacks (it has torch, numpy, scipy, pandas, h5py, lightning, jax, numpyro, scikit-learn,
# xarray, tqdm, pyyaml; no network). Run where PyPI is reachable:
#
#   bash benchmarks/fetch_gpu_wheels.sh            # then carry .gpu-wheels with the repository
#
# --no-deps keeps the folder small (no torch, no CUDA libraries): the list below is the
# import-time closure of `import scvi; import anndata` minus what the image has, pinned to the
# versions benchmarks/setup_scvi_env.sh resolves for scvi-tools 1.4.2. A few packages the image
# probably has (six, opt-einsum, torchmetrics, lightning-utilities) are included too; gpu.sh
# installs only the distributions the interpreter is missing. numba and llvmlite (needed by
# pydata/sparse, 64 MB) are left out: gpu.sh stubs `sparse`, which SCVI training never calls.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${GPU_WHEELS:-$ROOT/.gpu-wheels}"
PY="${PYTHON:-python3}"
mkdir -p "$DEST"

PACKAGES=(
    # anndata 0.12 and its dependencies
    anndata==0.12.19 array-api-compat==1.16.0 legacy-api-wrap==1.5 natsort==8.4.0 scverse-misc==0.0.3
    zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
    # scvi-tools 1.4.2 and what `import scvi` needs beyond the image
    scvi-tools==1.4.2 six==1.17.0 ml-collections==1.1.0 absl-py==2.5.1
    mudata==0.3.10 session-info2==0.4.1 pyro-ppl==1.9.2 pyro-api==0.1.2 opt-einsum==3.4.0
    rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 sparse==0.19.3
    torchmetrics==1.9.0 lightning-utilities==0.15.3
)

"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any \
    --dest "$DEST" "${PACKAGES[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
# docrep publishes no wheel: build its (pure-Python) one here.
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$DEST" docrep==0.3.2

echo "wheels in $DEST: $(find "$DEST" -name '*.whl' | wc -l), $(du -sh "$DEST" | cut -f1)"
