#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Builds the CUDA vmatte (cargo feature `cuda`: candle with CUDA and cuDNN)
# on a machine with no GPU and no system CUDA toolkit: nvcc, the headers and
# the link-time libraries come from NVIDIA's PyPI wheels, and the driver
# library (libcuda.so.1, which no wheel ships) is replaced at link time by a
# stub generated from cuda.h. The real driver is loaded when the binary runs.
#
#   scripts/build-cuda.sh [CAPS]     build target/cuda/release/vmatte
#
# CAPS: the GPUs' compute capabilities to run on, comma-separated (default
# 90: H100/H200; or CUDA_COMPUTE_CAPS). candle compiles its kernels to PTX
# for one virtual architecture, which the driver compiles for the card at
# first use and which runs on that architecture and every newer one, so
# the kernels are built for the lowest in the list: `80` runs on every card
# from Ampere on (docs/gpu.md has the table). cuBLAS and cuDNN, which do
# the convolutions and matrix products, carry kernels for every card.
#
# Environment:
#   VMATTE_CUDA_VENV   where the wheels go (default .cache/cuda-venv, ~1.7 GB)
#
# Output: target/cuda/release/vmatte, linked against this machine's libav;
# scripts/package.sh cuda makes the tarball that travels (the small libav,
# the launcher scripts/vmatte-cuda, licences).
#
# Idempotent: the wheels are installed once, and a second run is an
# incremental cargo build (seconds when only Rust code changed; changing
# CUDA_COMPUTE_CAP rebuilds the kernels, ~20 min on 2 cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

CAPS=${1:-${CUDA_COMPUTE_CAPS:-${CUDA_COMPUTE_CAP:-90}}}
CAP=
for cap in ${CAPS//,/ }; do
    case $cap in
    75 | 80 | 86 | 87 | 89 | 90 | 100 | 103 | 110 | 120 | 121) ;;
    *) vmatte_die "build-cuda.sh: '$cap' is not a compute capability CUDA 13 builds for (75 80 86 87 89 90 100 103 110 120 121; docs/gpu.md)" ;;
    esac
    if [[ -z $CAP ]] || ((cap < CAP)); then CAP=$cap; fi
done
[[ -n $CAP ]] || vmatte_die "build-cuda.sh: no compute capability given"
VENV=${VMATTE_CUDA_VENV:-$VMATTE_REPO/.cache/cuda-venv}
TARGET_DIR=$VMATTE_REPO/target/cuda

# CUDA 13.0, the versions PyTorch 2.11 for CUDA 13.0 resolves to. nvvm is
# pinned too: unpinned, it resolves to 13.5 and ptxas rejects its PTX
# ("Unsupported .version 9.5"); driver 580 (CUDA 13.0) reads PTX 9.0.
WHEELS=(
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
    nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3
    nvidia-curand==10.4.0.35 nvidia-cudnn-cu13==9.19.0.56
)

cuda_wheels() {
    local stamp=$VENV/.vmatte-wheels
    if [[ -f $stamp && $(cat "$stamp") == "${WHEELS[*]}" ]]; then
        vmatte_log "CUDA wheels present in $VENV"
        return
    fi
    vmatte_log "installing the CUDA 13.0 compiler and libraries from PyPI into $VENV (~1.7 GB)"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${WHEELS[@]}"
    echo "${WHEELS[*]}" >"$stamp"
}

# The wheels ship versioned sonames only (libcublas.so.13); the linker wants
# libcublas.so. A scratch folder gets unversioned links, plus libcuda.so: a
# stub exporting every driver entry point cuda.h declares. Linking against
# it records NEEDED libcuda.so.1, which the real driver satisfies at run time.
cuda_link_dir() {
    local link=$1 lib
    mkdir -p "$link"
    for lib in "$CU13/lib"/lib{cudart,cublas,cublasLt,curand,nvrtc}.so.* "$CUDNN/lib"/libcudnn.so.*; do
        [[ -e $lib ]] || continue
        ln -sfn "$lib" "$link/$(basename "$lib" | sed 's/\.so\..*/.so/')"
    done
    if [[ ! -f $link/libcuda.so || $link/libcuda.so -ot "$CU13/include/cuda.h" ]]; then
        gcc -E -P -I"$CU13/include" -x c - <<<'#include <cuda.h>' |
            grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u |
            sed 's/.*/void &(void) {}/' >"$link/libcuda-stub.c"
        gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/libcuda-stub.c"
        vmatte_log "libcuda.so link stub: $(wc -l <"$link/libcuda-stub.c") driver entry points"
    fi
}

cuda_wheels
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CU13=$SITE/nvidia/cu13
CUDNN=$SITE/nvidia/cudnn
[[ -x $CU13/bin/nvcc ]] || vmatte_die "nvcc not found at $CU13/bin/nvcc after installing the wheels"
LINK=$VMATTE_REPO/target/cuda-link
cuda_link_dir "$LINK"

export PATH=$CU13/bin:$PATH
export CUDA_ROOT=$CU13 CUDA_PATH=$CU13 CUDA_COMPUTE_CAP=$CAP
export CARGO_TARGET_DIR=$TARGET_DIR
export RUSTFLAGS="-L native=$LINK -C link-arg=-Wl,-rpath-link,$CU13/lib:$CUDNN/lib -C link-arg=-Wl,-rpath,\$ORIGIN/lib"
vmatte_log "cargo build --release --features cuda (sm_$CAP; the first build compiles candle's CUDA kernels, ~25 min on 2 cores)"
start=$SECONDS
cargo build --release --locked -p vmatte-cli --features cuda
vmatte_log "built in $((SECONDS - start)) s"
echo "$CAPS (PTX for compute_$CAP, compiled by the driver for the card at first use)" >"$TARGET_DIR/COMPUTE_CAPS"

