#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# bench-finish.sh [ROUNDS]
#
# Foreground estimation (`--foreground estimate`) against its peer,
# pymatting's estimate_foreground_ml, in the same run:
#   1. accuracy: per-channel mean absolute error against the true colour in
#      0.05 < alpha < 0.95 on the three synthetic cases of
#      scripts/foreground_accuracy.py (both from the same 16-bit inputs), at
#      the test's 320x240 and at 1920x1080;
#   2. speed on a 1920x1080 frame of the hair case: pymatting's seconds
#      (after numba's compile) against vmatte's (`finish --json`'s
#      finish_seconds: the time its encoder thread spent estimating, over
#      10 frames);
#   3. its share of a 1080p RVM run: `vmatte matte` on the sample clip
#      scaled to 1080p (MobileNetV3, ratio 0.25, 30 frames) with and
#      without --foreground estimate, alternating, ROUNDS times (default 2).
# Prints markdown for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh >&2
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
rounds=${1:-2}
py=$VMATTE_PYTHON

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
    "commit $(git rev-parse --short HEAD); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| case | vmatte MAE (R, G, B) | pymatting MAE (R, G, B) | source colour MAE (R, G, B) |"
echo "| --- | --- | --- | --- |"
for size in 320x240 1920x1080; do
    "$py" scripts/foreground_accuracy.py "$vmatte" "$work/finish-accuracy-$size" --size "$size" |
        "$py" -c '
import json, sys
for name, r in json.load(sys.stdin).items():
    px, ours, theirs, source = (r[k] for k in ("pixels", "vmatte", "pymatting", "source"))
    f = lambda v: ", ".join(f"{x:.4f}" for x in v)
    print(f"| {name}, {sys.argv[1]} ({px} px) | {f(ours)} | {f(theirs)} | {f(source)} |")
' "$size"
done
echo
echo "| 1920x1080 frame | pymatting s | vmatte s | pymatting / vmatte |"
echo "| --- | --- | --- | --- |"
"$py" scripts/foreground_accuracy.py "$vmatte" "$work/finish-speed" --bench 10 | "$py" -c '
import json, sys
r = json.load(sys.stdin)
theirs, ours, ratio = (r[k] for k in ("pymatting_s", "vmatte_s", "ratio"))
print(f"| estimate_foreground_ml vs --foreground estimate | {theirs:.3f} | {ours:.3f} | {ratio:.1f} |")
'
echo
clip=$(bench_clip 1920 1080)
run() {
    local out=$work/finish-e2e
    rm -rf "$out"
    "$py" -c 'import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(f"{time.perf_counter() - t:.3f}")' \
        "$vmatte" matte "$clip" -o "$out" --downsample-ratio 0.25 --max-frames 30 "$@"
}
echo "| round | 1080p RVM, 30 frames: model colour s | --foreground estimate s | estimate's share of the run |"
echo "| --- | --- | --- | --- |"
for round in $(seq "$rounds"); do
    if ((round % 2)); then
        base=$(run); est=$(run --foreground estimate)
    else
        est=$(run --foreground estimate); base=$(run)
    fi
    "$py" -c 'import sys; r, b, e = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
print(f"| {r} | {b:.2f} | {e:.2f} | {(e - b) / e * 100:.1f}% |")' "$round" "$base" "$est"
done
