#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Peak memory against video length: `vmatte matte` (RVM MobileNetV3, ratio
# 0.25, composite + alpha H.264) on a 10-second and a LONG-second (default 600,
# ten minutes) 1080p25 clip made with libav's testsrc2 source. With
# `matanyone`, MatAnyone instead (the tiny fixture model standing in for the
# release's weights, at --max-size 144, a box mask on the first frame, alpha
# H.264 only): what is measured is whether its state grows with the video,
# not its weights. While each runs,
# the process's resident set (VmRSS) and its high-water mark (VmHWM) are read
# from /proc every 10 s into .cache/rss/<clip>.csv, so a run cut short still
# shows whether memory grows with the frames done. Prints a Markdown table of
# the final peaks (/usr/bin/time's maximum resident set size).
#
# usage: scripts/bench-rss.sh [LONG_SECONDS] [matanyone]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

long=${1:-600}
model=${2:-rvm}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
work=.cache/rss
mkdir -p "$work"
matte_args=(--downsample-ratio 0.25)
if [[ $model == matanyone ]]; then
    export VMATTE_MODEL_DIR=$PWD/$work/models
    "$vmatte" models import matanyone "$VMATTE_FIXTURES/matanyone/weights" >&2
    mask=$work/mask_1080p.png
    ffmpeg -loglevel error -y -f lavfi -i color=black:s=1920x1080 \
        -vf drawbox=x=640:y=270:w=640:h=540:color=white:t=fill -frames:v 1 "$mask"
    # Alpha only: a composite would add the finishing's colour estimation at
    # 1080p, which is not MatAnyone's state.
    matte_args=(--model matanyone --mask "$mask" --max-size 144 --outputs alpha)
fi

echo "| clip | frames | seconds | fps | peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- |"
for seconds in 10 "$long"; do
    clip=$work/testsrc2_1080p_${seconds}s.mp4
    if [[ ! -s $clip ]]; then
        ffmpeg -loglevel error -y -f lavfi -i "testsrc2=size=1920x1080:rate=25:duration=$seconds" \
            -c:v libx264 -preset ultrafast -crf 23 -pix_fmt yuv420p "$clip.tmp.mp4"
        mv "$clip.tmp.mp4" "$clip"
    fi
    out=$work/out_${model}_${seconds}s
    rm -rf "$out"
    samples=$work/testsrc2_1080p_${seconds}s_${model}.csv
    echo "elapsed_s,vmrss_mib,vmhwm_mib" >"$samples"
    /usr/bin/time -f "%M %e" -o "$work/time_${seconds}s" \
        "$vmatte" matte "$clip" -o "$out" "${matte_args[@]}" --json >"$work/report_${seconds}s.json" &
    timer=$!
    start=$SECONDS
    while kill -0 "$timer" 2>/dev/null; do
        pid=$(pgrep -P "$timer" -x vmatte || true)
        if [[ -n $pid && -r /proc/$pid/status ]]; then
            awk -v t=$((SECONDS - start)) '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {if (r) printf "%d,%.0f,%.0f\n", t, r/1024, h/1024}' \
                "/proc/$pid/status" >>"$samples" || true
        fi
        sleep 10
    done
    wait "$timer"
    read -r peak_kib wall <"$work/time_${seconds}s"
    "$VMATTE_PYTHON" - "$work/report_${seconds}s.json" "$seconds" "$peak_kib" "$model" <<'PY'
import json, sys
report = json.loads(open(sys.argv[1]).readline())
frames, secs = report["frames"], report["seconds"]
print(f"| {sys.argv[4]}: testsrc2 1920x1080 25 fps, {sys.argv[2]} s | {frames} | {secs:.0f} | "
      f"{frames / secs:.2f} | {int(sys.argv[3]) / 1024:.0f} |")
PY
done
