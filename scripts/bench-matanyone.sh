#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# MatAnyone on the CPU, model-only, fp32, for docs/benchmarks.md:
# `vmatte bench --model matanyone --model-only` beside the release's own
# code on the same frames in the same run (PyTorch, its InferenceCore.step
# loop without autocast; scripts/bench_matanyone_release.py), at 480p (the
# sample clip scaled to 854x480), both on every core. The network has the
# release's sizes (ResNet-50 pixel encoder, 256-wide memory) with random
# weights saved by the release's code and imported into vmatte: the
# release's weights are not downloadable here, and the work per frame does
# not depend on their values. BENCH_ROUNDS rounds (default 3), the order
# swapped every other round; prints a Markdown table.
#
# usage: scripts/bench-matanyone.sh MATANYONE_SRC
#   MATANYONE_SRC: a checkout of github.com/pq-yang/MatAnyone (e5ddc53)
set -euo pipefail
src=$(realpath "${1:?usage: scripts/bench-matanyone.sh MATANYONE_SRC (a checkout of pq-yang/MatAnyone)}")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

frames=${BENCH_FRAMES:-10}
warmup=${BENCH_WARMUP:-2}
rounds=${BENCH_ROUNDS:-3}
threads=$(nproc)
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

venv=target/matanyone-bench-venv
deps=(torch==2.15.0 torchvision omegaconf==2.3.1 hydra-core==1.3.8 opencv-python-headless
    numpy huggingface_hub imageio tqdm pillow)
if ! "$venv/bin/python" -c 'import torch, torchvision, cv2, omegaconf, hydra, huggingface_hub' 2>/dev/null; then
    "$VMATTE_PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "${deps[@]}" >&2
fi
release=("$venv/bin/python" scripts/bench_matanyone_release.py --src "$src")
clip=$(bench_clip 854 480)
dir=$work/matanyone
"${release[@]}" --out "$dir" --make-weights
"$vmatte" models import matanyone "$dir/matanyone_random.pth" >&2

echo "| round | frames | release (PyTorch) fps | vmatte fps | vmatte / release |"
echo "| --- | --- | --- | --- | --- |"
results=$dir/rounds.jsonl
: >"$results"
for round in $(seq 1 "$rounds"); do
    run_release() {
        "${release[@]}" --out "$dir" --clip "$clip" --frames "$frames" --warmup "$warmup" \
            --threads "$threads" >"$dir/release.json"
    }
    run_vmatte() {
        "$vmatte" bench --input "$clip" --model matanyone --frames "$frames" --warmup "$warmup" \
            --model-only --json >"$dir/vmatte.json"
    }
    if ((round % 2)); then run_release; run_vmatte; else run_vmatte; run_release; fi
    "$VMATTE_PYTHON" - "$dir/release.json" "$dir/vmatte.json" "$round" "$results" <<'PY'
import json, sys
release = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))["model_only"]
row = {"round": int(sys.argv[3]), "release": release["fps"], "vmatte": ours["fps"]}
open(sys.argv[4], "a").write(json.dumps(row) + "\n")
print(f"| {row['round']} | {release['frames']} | {row['release']:.3f} | {row['vmatte']:.3f} | "
      f"{row['vmatte'] / row['release']:.2f} |")
PY
done
"$VMATTE_PYTHON" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r = statistics.median(x["release"] for x in rows)
v = statistics.median(x["vmatte"] for x in rows)
print(f"| median | | {r:.3f} | {v:.3f} | {v / r:.2f} |")
PY
