#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# A small libav for the portable forms of vmatte (scripts/package.sh):
# FFmpeg 5.1.9, the release Debian 12 builds vmatte against, compiled with
# only what vmatte uses, into .cache/libav/PREFIX. Prints PREFIX.
#
# Why: Debian's libavcodec links about 120 libraries (codec2, rsvg, ICU,
# SVT-AV1, aom, gnutls, X11 ...) that vmatte never calls, 55 MB of a 59 MB
# tarball. This one links zlib, x264, x265, libvpx, opus and dav1d alone.
#
# Same sonames (libavcodec.so.59 ...) and the same symbol versions as
# Debian's, so a binary linked against the system's libav loads these
# through its $ORIGIN/lib rpath unchanged; the public structures do not
# depend on configure options.
#
# What it keeps:
#   - every decoder, demuxer, muxer, parser and bitstream filter, so any
#     input FFmpeg reads still opens (AV1 through dav1d, VP8/VP9 with alpha
#     through libvpx, NVDEC's *_cuvid when a driver is there);
#   - the encoders vmatte writes with: libx264, libx265, libvpx-vp9,
#     prores_ks, qtrle, png, tiff (image sequences), aac and libopus (audio
#     re-encoded for a container), NVENC's h264/hevc (loaded at run time
#     through nv-codec-headers, no link dependency), and rawvideo/pcm/ffv1
#     for lossless intermediates;
#   - the file and pipe protocols (vmatte reads and writes local files).
# What it drops: avdevice, avfilter, postproc, the network, every other
# encoder, and the libraries found by autodetection (X11, VA-API, VDPAU,
# SDL, ALSA ...).
#
# Idempotent: a second run with the same configuration prints the prefix.
# The first takes about 10 minutes on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh >/dev/null

VERSION=5.1.9
SHA256=d9b593bb2ba93d4b50f74177e0cdcd41747e708596367deed0c30348a71dd176
URL=http://deb.debian.org/debian/pool/main/f/ffmpeg/ffmpeg_$VERSION.orig.tar.xz
# The -dev packages of the external codecs, nasm for the x86 assembly and
# the NVENC/NVDEC headers.
PACKAGES=(nasm libx264-dev libx265-dev libvpx-dev libopus-dev libdav1d-dev libffmpeg-nvenc-dev)
ENCODERS=libx264,libx265,libvpx_vp9,prores_ks,qtrle,png,tiff,aac,libopus,h264_nvenc,hevc_nvenc,rawvideo,ffv1,pcm_s16le,pcm_s24le,pcm_f32le
CONFIGURE=(
    --enable-shared --disable-static --enable-gpl --enable-pic
    --disable-programs --disable-doc --disable-avdevice --disable-avfilter --disable-postproc
    --disable-network --disable-autodetect --disable-debug
    --enable-zlib --enable-libx264 --enable-libx265 --enable-libvpx --enable-libopus --enable-libdav1d
    --enable-ffnvcodec --enable-cuda --enable-cuvid --enable-nvdec --enable-nvenc
    --disable-encoders "--enable-encoder=$ENCODERS"
    --disable-protocols --enable-protocol=file,pipe
)

key=$(echo "$VERSION ${CONFIGURE[*]}" | sha256sum | cut -c1-12)
prefix=$VMATTE_REPO/.cache/libav/ffmpeg-$VERSION-$key
if [[ -f $prefix/.complete ]]; then
    echo "$prefix"
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    vmatte_log "installing what building libav needs: ${missing[*]}"
    vmatte_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

src=$VMATTE_REPO/.cache/libav/ffmpeg_$VERSION.orig.tar.xz
mkdir -p "$(dirname "$src")"
if [[ ! -f $src || $(vmatte_sha256 "$src") != "$SHA256" ]]; then
    vmatte_log "downloading FFmpeg $VERSION's source (Debian's orig tarball)"
    curl -fsSL -o "$src.partial" "$URL"
    [[ $(vmatte_sha256 "$src.partial") == "$SHA256" ]] ||
        vmatte_die "$URL: checksum differs from Debian 12's ($SHA256); delete $src.partial and retry"
    mv "$src.partial" "$src"
fi

build=$VMATTE_REPO/target/libav-build
rm -rf "$build" "$prefix"
mkdir -p "$build"
tar -C "$build" -xJf "$src" --strip-components=1
vmatte_log "building libav $VERSION with vmatte's components into $prefix (about 10 minutes)"
start=$SECONDS
(
    cd "$build"
    ./configure --prefix="$prefix" "${CONFIGURE[@]}" >configure.log 2>&1 ||
        { tail -20 configure.log >&2; exit 1; }
    make -j"${VMATTE_BUILD_JOBS:-$(nproc)}" >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
    make install >>make.log 2>&1
) || vmatte_die "building libav failed (log in $build)"
# The licence texts and the configuration, for the bundles' records.
mkdir -p "$prefix/share/licenses"
cp "$build"/COPYING.* "$build"/LICENSE.md "$prefix/share/licenses/"
echo "FFmpeg $VERSION ($URL, sha256 $SHA256), configured with: ${CONFIGURE[*]}" >"$prefix/share/licenses/BUILD.txt"
rm -rf "$build"
touch "$prefix/.complete"
vmatte_log "libav built in $((SECONDS - start)) s"
echo "$prefix"
