# shellcheck shell=bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# What the benchmark scripts share, sourced after scripts/deps.sh: a
# release build ($vmatte), RVM MobileNetV3 imported from the authors' ONNX
# export into a scratch model folder ($VMATTE_MODEL_DIR), the scratch folder
# itself ($work), and the sample clip scaled to each benchmark size.
work=.cache/bench
mkdir -p "$work"
cargo build --release -p vmatte-cli >&2
vmatte=target/release/vmatte
export VMATTE_MODEL_DIR=$PWD/$work/models
"$vmatte" models import "$VMATTE_RVM_ONNX" >&2

# bench_clip W H: prints the path of the sample clip scaled to W x H, made
# on first use (under a temporary name, so a cut-short run leaves none).
bench_clip() {
    local clip=$work/clip_${2}p.mp4
    if [[ ! -s $clip ]]; then
        ffmpeg -loglevel error -y -i "$VMATTE_SAMPLE_CLIP" -vf "scale=$1:$2:flags=bicubic" \
            -c:v libx264 -crf 16 -pix_fmt yuv420p "$clip.tmp.mp4"
        mv "$clip.tmp.mp4" "$clip"
    fi
    echo "$clip"
}
