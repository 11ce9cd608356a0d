#!/usr/bin/env python3
"""What --interp-frames K costs in matte accuracy, measured on real mattes.

Takes a folder of per-frame alpha PNGs (vmatte matte ... --outputs alpha
--format png), rebuilds every frame that would not be a key frame at K
(keys: every K-th frame and the last) by the same linear blend vmatte uses,
and prints how far the blends are from the frames' own mattes.

    scripts/interp-cost.py OUT/clip.alpha [K ...]
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    folder = Path(sys.argv[1])
    ks = [int(k) for k in sys.argv[2:]] or [2, 3, 4]
    frames = [
        np.asarray(Image.open(p), dtype=np.float32) / 255.0
        for p in sorted(folder.glob("*.png"))
    ]
    if len(frames) < 3:
        sys.exit(f"{folder}: fewer than 3 PNG frames")
    n = len(frames)
    print(f"{folder}: {n} frames, {frames[0].shape[1]}x{frames[0].shape[0]}")
    print("| K | model runs | mean abs error, all frames | p99 error, interpolated frames | pixels off by > 0.1, all frames |")
    print("| --- | --- | --- | --- | --- |")
    for k in ks:
        keys = sorted(set(range(0, n, k)) | {n - 1})
        errs = []
        for a, b in zip(keys, keys[1:]):
            for i in range(a + 1, b):
                t = (i - a) / (b - a)
                blend = frames[a] * (1 - t) + frames[b] * t
                errs.append(np.abs(blend - frames[i]).ravel())
        e = np.concatenate(errs) if errs else np.zeros(1)
        # Averaged over every frame, key frames (exact) included.
        share = len(errs) / n
        print(
            f"| {k} | {len(keys)} of {n} | {e.mean() * share:.4f} | "
            f"{np.percentile(e, 99):.3f} | {(e > 0.1).mean() * share * 100:.2f} % |"
        )


if __name__ == "__main__":
    main()
