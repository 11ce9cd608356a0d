#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The GPU check (issue 25), one run on a GPU machine: correctness of the
# CUDA build against the CPU path, model-only and end-to-end speed beside
# the authors' code, GPU busy %, the out-of-memory ladder under a real
# squeeze, GVM and MatAnyone. Writes OUTDIR/report.md, figures.json,
# log.txt, telemetry.png and smi.csv. scripts/gpu_check.py says how.
#
# On the GPU machine (nothing installed there but PyTorch's image; no
# network): from the repository root, with .cache/gpu-check carried
# (scripts/gpu-check-pack.sh cuda makes it here):
#
#   scripts/gpu-check.sh OUTDIR
#
# Here, the rehearsal on the CPU with tiny sizes (makes its own bundle):
#
#   scripts/gpu-check.sh --rehearse OUTDIR
#
# GPU_CHECK_BUDGET: seconds for the whole run (default 540: 9 minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${1:-} == --rehearse ]]; then
    out=${2:?usage: scripts/gpu-check.sh --rehearse OUTDIR}
    bundle=$(scripts/gpu-check-pack.sh cpu)
    # The rehearsal's Python stands in for the GPU machine's: PyTorch (CPU),
    # torchvision, OpenCV, Pillow, tqdm and MatAnyone's imports; the venv
    # scripts/bench-matanyone.sh makes, with the same packages.
    venv=target/matanyone-bench-venv
    if ! "$venv/bin/python" -c 'import torch, torchvision, cv2, PIL, tqdm, omegaconf, hydra, numpy, diffusers' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check torch==2.15.0 torchvision \
            opencv-python-headless pillow tqdm numpy omegaconf==2.3.1 hydra-core==1.3.8 diffusers==0.35.2 >&2
    fi
    exec "$venv/bin/python" scripts/gpu_check.py --rehearse --bundle "$bundle" --out "$out" \
        --budget "${GPU_CHECK_BUDGET:-1800}"
fi

out=${1:?usage: scripts/gpu-check.sh OUTDIR   (or --rehearse OUTDIR)}
bundle=.cache/gpu-check
[[ -f $bundle/MANIFEST.json ]] || { echo "gpu-check: no bundle at $bundle; run scripts/gpu-check-pack.sh cuda on the build machine and carry it" >&2; exit 1; }
python=$(command -v python3)
if [[ -d $bundle/wheels ]] && ! "$python" -c 'import omegaconf, hydra, diffusers' 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-check-site \
        "$bundle"/wheels/*.whl >&2
    export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$python" scripts/gpu_check.py --bundle "$bundle" --out "$out" --budget "${GPU_CHECK_BUDGET:-540}"
