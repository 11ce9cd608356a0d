#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Builds the CUDA vmatte (cargo feature `cuda`: candle with CUDA and cuDNN)
# on a machine with no GPU and no system CUDA toolkit: nvcc, the headers and
# the link-time libraries come from NVIDIA's PyPI wheels, and the driver
# library (libcuda.so.1, which no wheel ships) is replaced at link time by a
# stub generated from cuda.h. The real driver is loaded when the binary runs.
#
#   scripts/build-cuda.sh            build dist/vmatte-cuda/
#
# Environment:
#   CUDA_COMPUTE_CAP   GPU architecture to compile kernels for (default 90:
#                      H100/H200; 89 Ada, 86 Ampere consumer, 80 A100)
#   VMATTE_CUDA_VENV   where the wheels go (default .cache/cuda-venv, ~1.7 GB)
#
# Output, a folder to copy to the GPU machine:
#   dist/vmatte-cuda/vmatte          the binary (rpath $ORIGIN/lib)
#   dist/vmatte-cuda/lib/            libav and its dependencies from this
#                                    machine, so the GPU machine needs none
#   dist/vmatte-cuda/vmatte-cuda     launcher: finds the CUDA runtime
#                                    libraries (see docs/gpu.md) and runs it
#
# Idempotent: the wheels are installed once, and a second run is an
# incremental cargo build (seconds when only Rust code changed; changing
# CUDA_COMPUTE_CAP rebuilds the kernels, ~20 min on 2 cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

CAP=${CUDA_COMPUTE_CAP:-90}
VENV=${VMATTE_CUDA_VENV:-$VMATTE_REPO/.cache/cuda-venv}
TARGET_DIR=$VMATTE_REPO/target/cuda
DIST=$VMATTE_REPO/dist/vmatte-cuda

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

# Copies the libraries the binary needs from this machine (libav and what it
# pulls in) beside it, leaving out glibc's own and the CUDA ones, which the
# launcher finds on the GPU machine.
bundle_libs() {
    local bin=$1 libdir=$2 lib
    rm -rf "$libdir"
    mkdir -p "$libdir"
    ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
        case $(basename "$lib") in
        libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux* | libgcc_s.so.*) ;;
        libcuda.so.* | libcudart.so.* | libcublas*.so.* | libcurand.so.* | libcudnn*.so.* | libnvrtc*.so.*) ;;
        *) cp -L "$lib" "$libdir/" ;;
        esac
    done
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

mkdir -p "$DIST"
# The release profile keeps line tables for profiling here; the copy that
# travels does without them (about a fifth of the size).
objcopy --strip-debug "$TARGET_DIR/release/vmatte" "$DIST/vmatte.partial"
mv "$DIST/vmatte.partial" "$DIST/vmatte"
LD_LIBRARY_PATH=$LINK bundle_libs "$DIST/vmatte" "$DIST/lib"
cp scripts/vmatte-cuda "$DIST/vmatte-cuda"
vmatte_log "dist/vmatte-cuda ready: $(du -sh "$DIST" | cut -f1); run it with dist/vmatte-cuda/vmatte-cuda (docs/gpu.md)"
