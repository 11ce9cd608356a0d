#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Where the CPU time of an end-to-end run goes, for docs/benchmarks.md: the
# CPU seconds (user + system, from /usr/bin/time) per frame of
#   - vmatte end to end (`vmatte matte`: composite + alpha H.264 at CRF 18),
#   - the Python pipeline on the same clip and outputs
#     (scripts/python_pipeline.py),
#   - the part no matting program can avoid: decoding the clip, and
#     encoding the two outputs with the same encoder settings. The outputs
#     vmatte just wrote are re-encoded by ffmpeg (their content sets x264's
#     cost: a matted subject on flat green and a mostly flat matte are
#     cheaper to encode than the source picture), less the CPU of decoding
#     them, plus the CPU of decoding the clip.
# On a machine whose cores both pipelines keep busy, the end-to-end ratio is
# about the ratio of CPU per frame, so the last figure bounds what any model
# speed-up can give: Python's CPU per frame over the unavoidable part, the
# ratio a model that cost nothing would reach.
#
# usage: scripts/cpu-budget.sh [THREADS]   (default: all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

threads=${1:-$(nproc)}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# CPU seconds of a command: user + system of it and its children.
cpu_seconds() {
    /usr/bin/time -f "%U %S" -o "$work/cpu.time" "$@" >/dev/null 2>&1
    awk '{ printf "%.2f", $1 + $2 }' "$work/cpu.time"
}

echo "| size | ratio | frames | vmatte end to end, CPU ms/frame | Python pipeline, CPU ms/frame | decoding the clip + encoding the two outputs, CPU ms/frame | bound on vmatte / Python with a free model |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for spec in "1280 720 0.375" "1920 1080 0.25"; do
    read -r w h ratio <<<"$spec"
    clip=$(bench_clip "$w" "$h")
    frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
        -of csv=p=0 "$clip")
    rm -rf "$work/budget_out"
    ours=$(cpu_seconds env RAYON_NUM_THREADS="$threads" "$vmatte" matte "$clip" -o "$work/budget_out" \
        --device cpu --downsample-ratio "$ratio")
    python=$(cpu_seconds "$VMATTE_PYTHON" scripts/python_pipeline.py --onnx "$VMATTE_RVM_ONNX" \
        --input "$clip" --ratio "$ratio" --threads "$threads")
    composite=("$work"/budget_out/*.composite.mp4)
    alpha=("$work"/budget_out/*.alpha.mp4)
    outputs=(-i "${composite[0]}" -i "${alpha[0]}")
    reencode=$(cpu_seconds ffmpeg -loglevel error -y "${outputs[@]}" \
        -map 0:v -c:v libx264 -crf 18 -pix_fmt yuv420p "$work/budget_composite.mp4" \
        -map 1:v -vf format=gray -c:v libx264 -crf 18 -pix_fmt yuv420p "$work/budget_alpha.mp4")
    decode_outputs=$(cpu_seconds ffmpeg -loglevel error "${outputs[@]}" -map 0:v -map 1:v -f null -)
    decode_clip=$(cpu_seconds ffmpeg -loglevel error -i "$clip" -f null -)
    rm -rf "$work"/budget_*.mp4 "$work/budget_out"
    awk -v s="${w}x$h" -v r="$ratio" -v n="$frames" -v o="$ours" -v p="$python" \
        -v re="$reencode" -v dout="$decode_outputs" -v dclip="$decode_clip" \
        'BEGIN { e = re - dout + dclip
                 printf "| %s | %s | %d | %.0f | %.0f | %.0f | %.2f |\n", s, r, n, 1000 * o / n, 1000 * p / n, 1000 * e / n, p / e }'
done
