#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The Python package's overhead, for docs/benchmarks.md, in one run on one
# machine: RVM MobileNetV3 (fp32, CPU) at 720p/0.375 and 1080p/0.25,
#   - `vmatte bench --model-only` (the CLI's model-only loop) beside
#     `vmatte.Matter.step` on the same frames (scripts/bench_python_api.py),
#     same chunk (2, the CPU default) and threads: the streaming API's cost;
#   - `vmatte.matte` end to end (composite + alpha H.264, model load
#     included) beside the Python ONNX Runtime pipeline on the same clip
#     (scripts/python_pipeline.py).
# The wheel is the release build (scripts/build-wheel.sh), installed into a
# fresh virtualenv (target/bench-wheel-venv). BENCH_ROUNDS rounds (default
# 3), each pair's order swapped every other round; prints a Markdown table
# with the medians last.
#
# usage: scripts/bench-python.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

frames=${BENCH_FRAMES:-20}
warmup=${BENCH_WARMUP:-3}
rounds=${BENCH_ROUNDS:-3}
threads=$(nproc)
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

wheel=$(scripts/build-wheel.sh)
venv=target/bench-wheel-venv
rm -rf "$venv"
"$VMATTE_PYTHON" -m venv --without-pip "$venv"
"$VMATTE_PYTHON" -m pip --python "$venv/bin/python" install --disable-pip-version-check -q \
    numpy==2.4.6 "$wheel" >&2
api=("$venv/bin/python" scripts/bench_python_api.py)

echo "| round | size | ratio | CLI model-only fps | Matter.step fps | step / CLI | vmatte.matte end-to-end fps | Python ORT pipeline fps | vmatte.matte / pipeline |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
results=$work/python-rounds.jsonl
: >"$results"
for round in $(seq "$rounds"); do
    for spec in "1280 720 0.375" "1920 1080 0.25"; do
        read -r w h ratio <<<"$spec"
        clip=$(bench_clip "$w" "$h")
        raw=$work/frames_${h}p.rgb
        ffmpeg -loglevel error -y -i "$clip" -frames:v $((frames + warmup)) -f rawvideo -pix_fmt rgb24 "$raw"
        run_cli() {
            cli=$("$vmatte" bench --device cpu --input "$clip" --downsample-ratio "$ratio" --seq-chunk 2 \
                --frames "$frames" --warmup "$warmup" --model-only --json)
        }
        run_step() {
            step=$("${api[@]}" model-only --raw "$raw" --width "$w" --height "$h" --ratio "$ratio" \
                --frames "$frames" --warmup "$warmup" --chunk 2 --model-dir "$VMATTE_MODEL_DIR")
        }
        run_matte() {
            matte=$("${api[@]}" end-to-end --input "$clip" --ratio "$ratio" --chunk 2 \
                --model-dir "$VMATTE_MODEL_DIR")
        }
        run_python() {
            python=$("$VMATTE_PYTHON" scripts/python_pipeline.py --onnx "$VMATTE_RVM_ONNX" \
                --input "$clip" --ratio "$ratio" --threads "$threads" --json)
        }
        if ((round % 2)); then
            run_cli; run_step; run_matte; run_python
        else
            run_step; run_cli; run_python; run_matte
        fi
        rm -f "$raw"
        "$VMATTE_PYTHON" - "$cli" "$step" "$matte" "$python" "$round" "$results" <<'PY'
import json, sys
cli, step, matte, python = (json.loads(a) for a in sys.argv[1:5])
round_, results = sys.argv[5:7]
c, s = cli["rows"][0]["model_only"]["fps"], step["fps"]
e, p = matte["fps"], python["fps"]
size = f"{cli['width']}x{cli['height']}"
print(f"| {round_} | {size} | {cli['downsample_ratio']} | {c:.2f} | {s:.2f} | {s / c:.3f} | {e:.2f} | {p:.2f} | {e / p:.2f} |")
with open(results, "a") as f:
    f.write(json.dumps({"size": size, "ratio": cli["downsample_ratio"], "c": c, "s": s, "e": e, "p": p}) + "\n")
PY
    done
done
"$VMATTE_PYTHON" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for size in dict.fromkeys(r["size"] for r in rows):
    rs = [r for r in rows if r["size"] == size]
    med = lambda f: statistics.median(f(r) for r in rs)
    print(f"| median | {size} | {rs[0]['ratio']} | {med(lambda r: r['c']):.2f} | {med(lambda r: r['s']):.2f} | "
          f"{med(lambda r: r['s'] / r['c']):.3f} | {med(lambda r: r['e']):.2f} | {med(lambda r: r['p']):.2f} | "
          f"{med(lambda r: r['e'] / r['p']):.2f} |")
PY
