#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# make-sample-clip.sh OUT.mp4
#
# Makes a short sample clip of a real person for vmatte: a slow zoom-and-pan
# over the astronaut portrait (Eileen Collins, NASA, public domain) that ships
# inside the scikit-image wheel on PyPI (skimage/data/astronaut.png).
# 3 s, 30 fps (90 frames), 640x360, H.264 yuv420p, made deterministically.
#
# Needs ffmpeg (with libx264) and a Python with scikit-image: $VMATTE_PYTHON,
# else <repo>/.venv/bin/python (scripts/deps.sh makes it).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT.mp4" >&2
    exit 2
fi
out=$1

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${VMATTE_PYTHON:-$repo/.venv/bin/python}
if [[ ! -x $py ]]; then
    echo "make-sample-clip: no Python at $py (run scripts/deps.sh first)" >&2
    exit 1
fi
command -v ffmpeg >/dev/null || { echo "make-sample-clip: ffmpeg not found" >&2; exit 1; }

photo=$("$py" -c 'import skimage, os; print(os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png"))')
if [[ ! -f $photo ]]; then
    echo "make-sample-clip: $photo is missing from the scikit-image install" >&2
    exit 1
fi

# 512x512 portrait -> upscaled 4x (so zoompan's integer offsets move by a
# fraction of an output pixel) -> top 16:9 band (2048x1152, head and
# shoulders) -> eased zoom 1.0 -> 1.25 drifting towards the face -> 640x360.
frames=90
ease="(1-cos(PI*on/$((frames - 1))))/2"
filter="scale=2048:2048:flags=lanczos,crop=2048:1152:0:0"
filter+=",zoompan=z='1+0.25*$ease':x='110*$ease':y='24*$ease':d=1:s=640x360:fps=30"
filter+=",format=yuv420p"

mkdir -p "$(dirname "$out")"
tmp="$out.partial"
ffmpeg -hide_banner -loglevel error -nostdin -y \
    -loop 1 -framerate 30 -i "$photo" \
    -vf "$filter" -frames:v "$frames" \
    -c:v libx264 -preset medium -crf 18 -threads 1 -pix_fmt yuv420p \
    -fflags +bitexact -flags:v +bitexact -map_metadata -1 \
    -movflags +faststart -f mp4 "$tmp"
mv -f "$tmp" "$out"
