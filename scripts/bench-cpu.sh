#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Reproduces the CPU table of docs/benchmarks.md, in one run on one machine:
# RVM MobileNetV3 (fp32) at 720p/0.375 and 1080p/0.25,
#   - vmatte model-only fps (`vmatte bench`, frames decoded in memory),
#   - ONNX Runtime model-only fps on the same frames (the authors' ONNX export,
#     same thread count, scripts/ort_bench.py),
#   - vmatte end-to-end fps (decode, infer, composite + alpha H.264 encode),
#   - the Python pipeline's end-to-end fps on the same clip and outputs
#     (ffmpeg pipes + ONNX Runtime + numpy, scripts/python_pipeline.py).
# Clips are the sample clip scaled to each size. For each size the four run
# in pairs, BENCH_ROUNDS times (default 3), each pair's order swapped every
# other round: shared machines drift, so each row is one round's ratios, and
# the last rows are the medians. BENCH_FRAMES (default 20) timed frames
# follow BENCH_WARMUP (default 3) untimed ones in the model-only runs.
# Prints a Markdown table.
#
# usage: scripts/bench-cpu.sh [THREADS]   (default: all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

threads=${1:-$(nproc)}
frames=${BENCH_FRAMES:-20}
warmup=${BENCH_WARMUP:-3}
rounds=${BENCH_ROUNDS:-3}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

echo "| round | size | ratio | threads | vmatte model-only fps | ONNX Runtime model-only fps | vmatte / ORT | vmatte end-to-end fps | Python pipeline end-to-end fps | vmatte / Python |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
results=$work/rounds.jsonl
: >"$results"
for round in $(seq "$rounds"); do
for spec in "1280 720 0.375" "1920 1080 0.25"; do
    read -r w h ratio <<<"$spec"
    clip=$(bench_clip "$w" "$h")
    raw=$work/frames_${h}p.rgb
    ffmpeg -loglevel error -y -i "$clip" -frames:v $((frames + warmup)) -f rawvideo -pix_fmt rgb24 "$raw"

    # Each pair runs back to back, so drift between them stays small:
    # model-only beside ONNX Runtime, then end to end beside Python. Even
    # rounds run the peer first, so neither side always follows the other's
    # load (or the last size's end-to-end run).
    bench=(env RAYON_NUM_THREADS="$threads" "$vmatte" bench --device cpu --input "$clip"
        --downsample-ratio "$ratio" --json)
    run_ours() { ours=$("${bench[@]}" --frames "$frames" --warmup "$warmup" --model-only); }
    run_ort() {
        theirs=$("$VMATTE_PYTHON" scripts/ort_bench.py --onnx "$VMATTE_RVM_ONNX" --raw "$raw" \
            --width "$w" --height "$h" --ratio "$ratio" --frames "$frames" --warmup "$warmup" \
            --threads "$threads" --json)
    }
    run_ours_e2e() { ours_e2e=$("${bench[@]}" --frames 1 --warmup 0); }
    run_python() {
        python=$("$VMATTE_PYTHON" scripts/python_pipeline.py --onnx "$VMATTE_RVM_ONNX" \
            --input "$clip" --ratio "$ratio" --threads "$threads" --json)
    }
    if ((round % 2)); then
        run_ours; run_ort; run_ours_e2e; run_python
    else
        run_ort; run_ours; run_python; run_ours_e2e
    fi
    rm -f "$raw"
    ours=$("$VMATTE_PYTHON" -c 'import json, sys; m, e = (json.loads(a) for a in sys.argv[1:]); m["end_to_end"] = e["end_to_end"]; print(json.dumps(m))' \
        "$ours" "$ours_e2e")
    "$VMATTE_PYTHON" - "$ours" "$theirs" "$python" "$threads" "$round" "$results" <<'PY'
import json, sys
ours, theirs, python = (json.loads(a) for a in sys.argv[1:4])
threads, round_, results = sys.argv[4:7]
m, o = ours["model_only"]["fps"], theirs["fps"]
e, p = ours["end_to_end"]["fps"], python["fps"]
print(f"| {round_} | {ours['width']}x{ours['height']} | {ours['downsample_ratio']} | {threads} | {m:.2f} | {o:.2f} "
      f"(onnxruntime {theirs['version']}) | {m / o:.2f} | {e:.2f} | {p:.2f} | {e / p:.2f} |")
with open(results, "a") as f:
    f.write(json.dumps({"size": f"{ours['width']}x{ours['height']}", "ratio": ours["downsample_ratio"],
                        "threads": threads, "m": m, "o": o, "e": e, "p": p}) + "\n")
PY
done
done
"$VMATTE_PYTHON" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for size in dict.fromkeys(r["size"] for r in rows):
    rs = [r for r in rows if r["size"] == size]
    med = lambda f: statistics.median(f(r) for r in rs)
    print(f"| median of {len(rs)} | {size} | {rs[0]['ratio']} | {rs[0]['threads']} | {med(lambda r: r['m']):.2f} | "
          f"{med(lambda r: r['o']):.2f} | **{med(lambda r: r['m'] / r['o']):.2f}** | {med(lambda r: r['e']):.2f} | "
          f"{med(lambda r: r['p']):.2f} | **{med(lambda r: r['e'] / r['p']):.2f}** |")
PY
