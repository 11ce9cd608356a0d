#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""ONNX Runtime (CPU) model-only throughput of an RVM ONNX export.

Runs N frames one after the other with the recurrent state carried from frame
to frame (as in a video), after `--warmup` untimed frames, with
intra_op_num_threads=K, inter_op_num_threads=1 and sequential execution.
Frames are a fixed-seed smooth synthetic image of W x H, or the `src` frames
of `--clip` (safetensors, float32 [T,3,H,W] in [0,1], cycled; its size then
replaces --width/--height). Decoding, encoding and colour conversion are not
timed: only the model.

usage: ort_bench.py --onnx PATH --width W --height H --ratio R --frames N --threads K
                    [--warmup 3] [--clip FRAMES.safetensors | --raw FRAMES.rgb] [--json]
"""

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--ratio", type=float, required=True, help="downsample_ratio")
    p.add_argument("--frames", type=int, required=True, help="timed frames")
    p.add_argument("--threads", type=int, required=True, help="intra-op threads")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    p.add_argument("--clip", help="safetensors with `src` [T,3,H,W] to use instead of the synthetic image")
    p.add_argument("--raw", help="packed RGB24 frames of --width x --height (e.g. ffmpeg -f rawvideo -pix_fmt rgb24)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a line of text")
    args = p.parse_args(argv)
    if args.frames < 1 or args.threads < 1 or args.warmup < 0:
        p.error("--frames and --threads must be >= 1, --warmup >= 0")
    return args


def synthetic_frame(width, height, seed=0):
    """A smooth, deterministic RGB image in [0,1]: a few random low-frequency waves per channel."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float64)[None, :]
    img = np.empty((3, height, width), dtype=np.float64)
    for c in range(3):
        acc = np.zeros((height, width))
        for _ in range(4):
            fx, fy = rng.uniform(0.5, 4.0, size=2)
            px, py = rng.uniform(0.0, 2 * np.pi, size=2)
            acc += np.sin(2 * np.pi * fx * x + px) * np.cos(2 * np.pi * fy * y + py)
        img[c] = 0.5 + 0.5 * acc / 4.0
    return np.ascontiguousarray(img[None].astype(np.float32))


def main(argv=None):
    args = parse_args(argv)
    if args.raw:
        rgb = np.fromfile(args.raw, dtype=np.uint8).reshape(-1, args.height, args.width, 3)
        frames = [np.ascontiguousarray(f.transpose(2, 0, 1)[None].astype(np.float32) / 255.0) for f in rgb]
    elif args.clip:
        from safetensors.numpy import load_file

        src = load_file(args.clip)["src"].astype(np.float32)
        frames = [np.ascontiguousarray(src[t : t + 1]) for t in range(src.shape[0])]
        args.height, args.width = src.shape[2], src.shape[3]
    else:
        frames = [synthetic_frame(args.width, args.height)]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(args.onnx, sess_options=opts, providers=["CPUExecutionProvider"])
    src_type = next(i.type for i in sess.get_inputs() if i.name == "src")
    dt = np.float16 if "float16" in src_type else np.float32
    frames = [f.astype(dt) for f in frames]

    rec = [np.zeros((1, 1, 1, 1), dtype=dt) for _ in range(4)]
    dsr = np.array([args.ratio], dtype=np.float32)
    outputs = ["fgr", "pha", "r1o", "r2o", "r3o", "r4o"]

    def step(i):
        nonlocal rec
        feed = {"src": frames[i % len(frames)], "downsample_ratio": dsr}
        feed.update({f"r{k + 1}i": rec[k] for k in range(4)})
        _, _, *rec = sess.run(outputs, feed)

    for i in range(args.warmup):
        step(i)
    start = time.perf_counter()
    for i in range(args.frames):
        step(args.warmup + i)
    seconds = time.perf_counter() - start
    fps = args.frames / seconds

    if args.json:
        print(
            json.dumps(
                {
                    "runtime": "onnxruntime",
                    "version": ort.__version__,
                    "width": args.width,
                    "height": args.height,
                    "ratio": args.ratio,
                    "threads": args.threads,
                    "frames": args.frames,
                    "seconds": round(seconds, 6),
                    "fps": round(fps, 4),
                }
            )
        )
    else:
        print(
            f"onnxruntime {ort.__version__}: {args.width}x{args.height} ratio {args.ratio}, "
            f"{args.threads} threads, {args.frames} frames in {seconds:.3f} s: {fps:.2f} fps"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
