#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Python API's side of scripts/bench-python.sh, run with the wheel
installed.

model-only: `vmatte.Matter.step` over frames already in memory (raw rgb24,
as `vmatte bench --model-only` and scripts/ort_bench.py take them), in
chunks of --chunk with the state carried, after --warmup untimed frames.
What it times beyond the CLI's model-only loop is the API's own cost: the
uint8 frames converted to the model's layout, and alpha and foreground
written into numpy arrays.

end-to-end: `vmatte.matte` on the clip, composite and alpha as H.264 (the
outputs of `vmatte bench`'s end-to-end run and scripts/python_pipeline.py),
timed from the call to its return, the model's loading included.

usage: bench_python_api.py model-only --raw FRAMES.rgb --width W --height H --ratio R
                           --frames N --warmup K --chunk C --model-dir DIR
       bench_python_api.py end-to-end --input CLIP --ratio R --chunk C --model-dir DIR
"""
import argparse
import json
import tempfile
import time

import numpy as np

import vmatte


def model_only(a):
    frames = np.fromfile(a.raw, dtype=np.uint8).reshape(-1, a.height, a.width, 3)
    assert len(frames) >= a.warmup + a.frames, "the raw file is shorter than --warmup + --frames"
    m = vmatte.Matter("rvm-mobilenetv3", downsample_ratio=a.ratio, model_dir=a.model_dir, seq_chunk=a.chunk)

    def run(start, count):
        for s in range(start, start + count, a.chunk):
            m.step(frames[s:min(s + a.chunk, start + count)])

    run(0, a.warmup)
    started = time.perf_counter()
    run(a.warmup, a.frames)
    seconds = time.perf_counter() - started
    return {"frames": a.frames, "seconds": seconds, "fps": a.frames / seconds}


def end_to_end(a):
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        [report] = vmatte.matte(a.input, out, model_dir=a.model_dir, downsample_ratio=a.ratio,
                                outputs=["composite", "alpha"], seq_chunk=a.chunk)
        seconds = time.perf_counter() - started
    return {"frames": report["frames"], "seconds": seconds, "fps": report["frames"] / seconds}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["model-only", "end-to-end"])
    p.add_argument("--raw")
    p.add_argument("--input")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--ratio", type=float, required=True)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--chunk", type=int, default=2)
    p.add_argument("--model-dir", required=True)
    a = p.parse_args()
    result = model_only(a) if a.mode == "model-only" else end_to_end(a)
    result["vmatte"] = vmatte.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
