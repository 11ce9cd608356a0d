#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Python pipeline vmatte replaces, timed end to end: the peer of `vmatte bench`'s end-to-end figure.

What an RVM user runs today, written as well as that kind of script gets:
ffmpeg decodes into a pipe, ONNX Runtime (CPU, the authors' ONNX export) runs
frame after frame with the recurrent state carried, numpy composites over
RVM's green (120, 255, 155), and two ffmpeg processes encode the composite and
the alpha matte as H.264 (libx264, CRF 18, yuv420p), the same outputs and
encoder settings as vmatte's end-to-end run. The decoder and the encoders are
separate processes, so they overlap with inference as far as the machine's
cores allow; the Python loop itself is serial, as in the authors' script.

Timed: from launching ffmpeg to both encoders having exited (the ONNX
session is created before the clock starts).

usage: python_pipeline.py --onnx PATH --input CLIP --ratio R --threads K [--out DIR] [--json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

GREEN = np.array([120, 255, 155], dtype=np.float32).reshape(3, 1, 1) / 255.0


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height,r_frame_rate", "-of", "json", path],
        check=True, capture_output=True, text=True).stdout
    s = json.loads(out)["streams"][0]
    return s["width"], s["height"], s["r_frame_rate"]


def encoder(path, width, height, pix_fmt, rate):
    return subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt,
         "-s", f"{width}x{height}", "-r", rate, "-i", "-",
         "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", path],
        stdin=subprocess.PIPE)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--ratio", type=float, required=True, help="downsample_ratio")
    p.add_argument("--threads", type=int, required=True, help="ONNX Runtime intra-op threads")
    p.add_argument("--out", help="folder for the two outputs (default: a temporary one)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    width, height, rate = probe(args.input)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(args.onnx, sess_options=opts, providers=["CPUExecutionProvider"])
    rec = [np.zeros((1, 1, 1, 1), dtype=np.float32) for _ in range(4)]
    dsr = np.array([args.ratio], dtype=np.float32)

    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or scratch
        start = time.perf_counter()
        decoder = subprocess.Popen(
            ["ffmpeg", "-loglevel", "error", "-i", args.input, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            stdout=subprocess.PIPE)
        composite = encoder(os.path.join(out, "composite.mp4"), width, height, "rgb24", rate)
        alpha = encoder(os.path.join(out, "alpha.mp4"), width, height, "gray", rate)
        frame_bytes = width * height * 3
        frames = 0
        while True:
            buf = decoder.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            src = np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
            src = np.ascontiguousarray(src.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
            fgr, pha, *rec = sess.run(
                ["fgr", "pha", "r1o", "r2o", "r3o", "r4o"],
                {"src": src, "downsample_ratio": dsr, **{f"r{k + 1}i": rec[k] for k in range(4)}})
            com = fgr[0] * pha[0] + GREEN * (1.0 - pha[0])
            composite.stdin.write((com.transpose(1, 2, 0) * 255.0 + 0.5).clip(0, 255).astype(np.uint8).tobytes())
            alpha.stdin.write((pha[0, 0] * 255.0 + 0.5).clip(0, 255).astype(np.uint8).tobytes())
            frames += 1
        for proc in (composite, alpha):
            proc.stdin.close()
        codes = [proc.wait() for proc in (decoder, composite, alpha)]
        seconds = time.perf_counter() - start
    if any(codes) or frames == 0:
        print(f"python_pipeline: ffmpeg failed (exit codes {codes}, {frames} frames)", file=sys.stderr)
        return 1

    result = {
        "pipeline": "python + onnxruntime + ffmpeg pipes",
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "width": width,
        "height": height,
        "ratio": args.ratio,
        "threads": args.threads,
        "frames": frames,
        "seconds": round(seconds, 6),
        "fps": round(frames / seconds, 4),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"python pipeline: {width}x{height} ratio {args.ratio}, {frames} frames in {seconds:.2f} s: "
              f"{result['fps']:.2f} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
