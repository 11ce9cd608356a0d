#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Runs the portable tarball of scripts/package.sh in a clean Debian 12
# chroot: a minimal system (debootstrap --variant=minbase, from Debian's
# mirror, made once at .cache/chroot-bookworm) without any of vmatte's apt
# packages, no FFmpeg, no Python. Inside it: unpack, `vmatte --version`,
# import the RVM ONNX export, matte the sample clip, and check that the
# outputs are whole videos and that no library came from outside the
# tarball or the base system. Needs root (chroot, mounting /proc).
#
# usage: scripts/test-package.sh [TARBALL | --dev]
#   default: make the release tarball with scripts/package.sh cpu;
#   --dev: make the test suite's (scripts/package.sh cpu --dev), as
#   scripts/test.sh does.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

case ${1:-} in
"") tarball=$(scripts/package.sh cpu) ;;
--dev) tarball=$(scripts/package.sh cpu --dev) ;;
*) tarball=$1 ;;
esac
root=$VMATTE_REPO/.cache/chroot-bookworm
if [[ ! -x $root/bin/sh ]]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        vmatte_log "installing debootstrap"
        vmatte_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
    fi
    vmatte_log "debootstrap --variant=minbase bookworm into $root (once)"
    rm -rf "$root.partial"
    vmatte_as_root debootstrap --variant=minbase bookworm "$root.partial" http://deb.debian.org/debian |
        grep -v '^I: ' >&2 || true
    [[ -x $root.partial/bin/sh ]] || vmatte_die "debootstrap did not make a system in $root.partial"
    mv "$root.partial" "$root"
fi
# The base system has none of what vmatte links against.
for pkg in libavcodec59 libavformat59 libswscale6 ffmpeg python3; do
    if vmatte_as_root chroot "$root" dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -q '^installed'; then
        vmatte_die "the chroot has $pkg installed; remove $root to make a clean one"
    fi
done

work=$root/vmatte-test
rm -rf "$work"
mkdir -p "$work"
tar -C "$work" --zstd -xf "$tarball"
dir=$(basename "$tarball" .tar.zst)
cp "$VMATTE_SAMPLE_CLIP" "$work/clip.mp4"
cp "$VMATTE_RVM_ONNX" "$work/rvm_mobilenetv3_fp32.onnx"
# A clip with AAC audio, which WebM takes re-encoded as Opus (libopus).
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=160x96:rate=25 -f lavfi -i sine=frequency=440 \
    -t 1 -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest "$work/audio.mp4"

# A running system's /proc and /sys (x265 reads the CPU topology there).
vmatte_as_root mount -t proc proc "$root/proc"
vmatte_as_root mount -t sysfs sysfs "$root/sys"
trap 'vmatte_as_root umount "$root/proc" "$root/sys"' EXIT
vmatte_log "in the chroot: $(vmatte_as_root chroot "$root" sh -c '. /etc/os-release; echo "$PRETTY_NAME"'), glibc $(vmatte_as_root chroot "$root" ldd --version | head -1 | awk '{print $NF}'), the tarball needs $(cat "$work/$dir/GLIBC")"
vmatte_as_root chroot "$root" /bin/sh -eu -c "
    cd /vmatte-test
    export HOME=/vmatte-test VMATTE_MODEL_DIR=/vmatte-test/models
    ./$dir/vmatte --version
    ./$dir/vmatte models import rvm_mobilenetv3_fp32.onnx
    ./$dir/vmatte matte clip.mp4 -o out --max-frames 30 --json > report.json
    # Every output format and codec, through the tarball's own libav.
    for f in prores webm mov png tiff exr; do
        ./$dir/vmatte matte clip.mp4 -o out-\$f --format \$f --max-frames 3 --json > report-\$f.json
    done
    ./$dir/vmatte matte clip.mp4 -o out-h265 --codec h265 --max-frames 3 --json > report-h265.json
    ./$dir/vmatte matte audio.mp4 -o out-audio --format webm --json > report-audio.json
    # Every library the binary loads: its own lib/ or the base system's.
    ldd /vmatte-test/$dir/vmatte > ldd.txt
    ! grep 'not found' ldd.txt
"
grep -q '"frames":30' "$work/report.json" || vmatte_die "the chroot's report says otherwise: $(cat "$work/report.json")"
for f in prores webm mov png tiff exr h265; do
    grep -q '"frames":3,' "$work/report-$f.json" || vmatte_die "--format/--codec $f in the chroot: $(cat "$work/report-$f.json")"
done
grep -q '"frames":25,' "$work/report-audio.json" || vmatte_die "webm with audio in the chroot: $(cat "$work/report-audio.json")"
# The audio goes with the composite (the picture that is watched).
audio=$(ffprobe -v error -select_streams a:0 -show_entries stream=codec_name -of csv=p=0 "$work/out-audio/audio.composite.webm")
[[ $audio == opus ]] || vmatte_die "the chroot's composite webm carries '$audio' audio, not opus"
vmatte_log "prores, webm (with Opus audio), mov, png, tiff, exr and h265 outputs made in the chroot"
outside=$(awk '/=> \// {print $3}' "$work/ldd.txt" | grep -v "^/vmatte-test/$dir/lib/" | xargs -rn1 basename || true)
vmatte_log "libraries from the base system: $(echo "$outside" | paste -sd' ')"
# Only glibc's own and the compiler runtime may come from the system.
foreign=$(echo "$outside" | grep -Ev '^(libc|libm|libpthread|libdl|librt|libresolv|libutil|libgcc_s|libstdc\+\+)\.so' || true)
[[ -z $foreign ]] || vmatte_die "the binary loads libraries the tarball should carry: $foreign"
for f in "$work"/out/clip.*.mp4; do
    frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f")
    [[ $frames == 30 ]] || vmatte_die "$f has $frames frames, not 30"
    vmatte_log "$(basename "$f"): 30 frames, whole"
done
vmatte_log "the tarball runs in a clean Debian 12 chroot"
