#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reference RVM outputs from ONNX Runtime (CPU) for checking vmatte.

Runs the authors' ONNX export (inputs src r1i r2i r3i r4i downsample_ratio,
outputs fgr pha r1o r2o r3o r4o) frame by frame over the frames in
IN.safetensors (key `src`, float32 [T,3,H,W] in [0,1]), carrying the
recurrent state from frame to frame (zeros [1,1,1,1] at the first frame), and
writes `fgr` [T,3,H,W] and `pha` [T,1,H,W] (float32) plus the final state
`r1`..`r4` (no batch axis) to OUT.safetensors.

usage: ort_reference.py --onnx PATH --frames IN.safetensors --ratio R --out OUT.safetensors
"""

import argparse
import sys

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file, save_file


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True, help="rvm_mobilenetv3_fp32.onnx (or another RVM ONNX export)")
    p.add_argument("--frames", required=True, help="safetensors with `src` float32 [T,3,H,W] in [0,1]")
    p.add_argument("--ratio", type=float, required=True, help="downsample_ratio, e.g. 1.0 or 0.5")
    p.add_argument("--out", required=True, help="output safetensors (fgr, pha, r1..r4)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime's default)")
    return p.parse_args(argv)


def make_session(onnx_path, threads=0):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])


def input_dtype(sess, name):
    t = next(i.type for i in sess.get_inputs() if i.name == name)
    return np.float16 if "float16" in t else np.float32


def run(sess, src, ratio):
    """src: float32 [T,3,H,W]. Returns fgr [T,3,H,W], pha [T,1,H,W], state list."""
    dt = input_dtype(sess, "src")
    rec = [np.zeros((1, 1, 1, 1), dtype=dt) for _ in range(4)]
    dsr = np.array([ratio], dtype=np.float32)  # float32 even in fp16 exports
    fgrs, phas = [], []
    for t in range(src.shape[0]):
        frame = np.ascontiguousarray(src[t : t + 1]).astype(dt)
        fgr, pha, *rec = sess.run(
            ["fgr", "pha", "r1o", "r2o", "r3o", "r4o"],
            {"src": frame, "r1i": rec[0], "r2i": rec[1], "r3i": rec[2], "r4i": rec[3], "downsample_ratio": dsr},
        )
        fgrs.append(fgr[0].astype(np.float32))
        phas.append(pha[0].astype(np.float32))
    return np.stack(fgrs), np.stack(phas), [r[0].astype(np.float32) for r in rec]


def main(argv=None):
    args = parse_args(argv)
    src = load_file(args.frames)["src"]
    if src.ndim != 4 or src.shape[1] != 3:
        sys.exit(f"ort_reference: `src` must be [T,3,H,W], got {list(src.shape)}")
    src = src.astype(np.float32, copy=False)
    sess = make_session(args.onnx, args.threads)
    fgr, pha, rec = run(sess, src, args.ratio)
    out = {"fgr": fgr, "pha": pha}
    out.update({f"r{i + 1}": np.ascontiguousarray(r) for i, r in enumerate(rec)})
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, args.out)
    print(
        f"ort_reference: onnxruntime {ort.__version__}, {src.shape[0]} frames "
        f"{src.shape[2]}x{src.shape[3]}, ratio {args.ratio} -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
