#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""vmatte's foreground estimation against pymatting's estimate_foreground_ml.

Synthetic frames where the truth is known: a foreground F under a soft
alpha a over a different background B, I = a F + (1 - a) B, written as
16-bit TIFFs. `vmatte finish I --matte a --foreground estimate` and pymatting
(same quantised inputs) each estimate F; the per-channel mean absolute error
against the true F in 0.05 < a < 0.95 is printed as one JSON object.

    foreground_accuracy.py VMATTE OUTDIR [--size WxH]
                                                    accuracy on the cases
                                                    (320x240 unless told)
    foreground_accuracy.py VMATTE OUTDIR --bench N  1080p: seconds per frame
                                                    of both, N frames each
    foreground_accuracy.py VMATTE OUTDIR --picture PNG
                                                    strands shot on green, over
                                                    magenta: source, estimate, truth

The cases: a soft disc over a gradient, hair (hundreds of thin soft strands)
over texture, and a motion-blurred edge over a contrasting checker.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def smooth_noise(rng, h, w, scale):
    """Low-frequency colour texture in [0, 1], 3 channels."""
    small = rng.random((max(2, h // scale), max(2, w // scale), 3))
    img = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float64) / 255.0


def gradient(h, w, c0, c1):
    t = np.linspace(0.0, 1.0, w)[None, :, None]
    s = np.linspace(0.0, 1.0, h)[:, None, None]
    return np.clip(np.array(c0) * (1 - t) + np.array(c1) * t * (0.6 + 0.4 * s), 0, 1)


def case_disc(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((h * 0.3 - r) / 12.0 + 0.5, 0, 1)
    fg = gradient(h, w, (0.9, 0.6, 0.2), (0.7, 0.2, 0.5))
    bg = gradient(h, w, (0.1, 0.3, 0.9), (0.2, 0.8, 0.3))
    return fg, bg, alpha


def case_hair(rng, h, w):
    """Strands: random curves 1-2 px wide with soft falloff."""
    alpha = np.zeros((h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    alpha[(yy > h * 0.55)] = 1.0
    for _ in range(160):
        x0 = rng.uniform(0, w)
        amp, freq, phase = rng.uniform(3, 25), rng.uniform(0.01, 0.05), rng.uniform(0, 6.28)
        top = rng.uniform(0.05, 0.5) * h
        width = rng.uniform(0.5, 1.2)
        cx = x0 + amp * np.sin(freq * yy + phase)
        d = np.abs(xx - cx)
        strand = np.clip(1.0 - (d - width) / 1.0, 0, 1) * rng.uniform(0.4, 1.0)
        strand[yy < top] = 0
        alpha = np.maximum(alpha, strand)
    fg = np.clip(smooth_noise(rng, h, w, 24) * 0.4 + np.array([0.45, 0.3, 0.15]), 0, 1)
    bg = smooth_noise(rng, h, w, 8)
    return fg, bg, alpha


def case_motion(rng, h, w):
    alpha = np.zeros((h, w))
    alpha[h // 5 : 4 * h // 5, w // 4 : 3 * w // 5] = 1.0
    # A 31-pixel horizontal box blur: a subject moving fast across the frame.
    k = 31
    pad = np.pad(alpha, ((0, 0), (k // 2, k // 2)), mode="edge")
    c = np.cumsum(np.pad(pad, ((0, 0), (1, 0))), axis=1)
    alpha = (c[:, k:] - c[:, :-k]) / k
    fg = np.clip(smooth_noise(rng, h, w, 16) * 0.5 + np.array([0.2, 0.5, 0.35]), 0, 1)
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((yy // 16 + xx // 16) % 2).astype(np.float64)[..., None]
    bg = checker * np.array([0.95, 0.9, 0.85]) + (1 - checker) * np.array([0.05, 0.1, 0.3])
    return fg, bg, alpha


CASES = {"disc": case_disc, "hair": case_hair, "motion-blur": case_motion}


def to16(x):
    return np.round(np.clip(x, 0, 1) * 65535).astype(np.uint16)


def write16(path, array):
    """A 16-bit TIFF (RGB or gray), uncompressed: what libav reads back exactly."""
    import tifffile

    tifffile.imwrite(path, to16(array), photometric="rgb" if array.ndim == 3 else "minisblack")


def read16(path):
    import tifffile

    return tifffile.imread(path).astype(np.float64) / 65535.0


# What the accuracy and speed runs ask `vmatte finish` for.
ESTIMATE_16 = ("--foreground", "estimate", "--outputs", "foreground", "--format", "tiff",
               "--depth", "16")


def run_vmatte(vmatte, work, image, alpha, frames=1, options=ESTIMATE_16):
    """Writes `frames` copies of (image, alpha) as sequences and finishes
    them with `options` (which name one output); returns the path of the
    first frame written and vmatte's report."""
    src, mat, out = work / "image", work / "matte", work / "out"
    for d in (src, mat):
        d.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        write16(src / f"{i:06d}.tif", image)
        write16(mat / f"{i:06d}.tif", alpha)
    cmd = [str(vmatte), "finish", str(src), "--matte", str(mat), "-o", str(out),
           *options, "--fps", "25", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"vmatte finish failed: {done.stderr.strip()}")
    kind = options[options.index("--outputs") + 1]
    return sorted((out / f"image.{kind}").iterdir())[0], json.loads(done.stdout)


def mae(estimate, truth, alpha):
    region = (alpha > 0.05) & (alpha < 0.95)
    return [float(np.abs(estimate[..., c] - truth[..., c])[region].mean()) for c in range(3)]


def accuracy(vmatte, outdir, size=(320, 240)):
    from pymatting import estimate_foreground_ml

    rng = np.random.default_rng(7)
    w, h = size
    results = {}
    for name, make in CASES.items():
        fg, bg, alpha = make(rng, h, w)
        image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
        # Both estimate from the same 16-bit quantised inputs.
        image_q, alpha_q = to16(image) / 65535.0, to16(alpha) / 65535.0
        ours = read16(run_vmatte(vmatte, outdir / name, image_q, alpha_q)[0])
        theirs = estimate_foreground_ml(image_q, alpha_q)
        results[name] = {
            "vmatte": mae(ours, fg, alpha_q),
            "pymatting": mae(theirs, fg, alpha_q),
            "source": mae(image_q, fg, alpha_q),
            "pixels": int(((alpha_q > 0.05) & (alpha_q < 0.95)).sum()),
        }
    return results


def bench(vmatte, outdir, frames):
    from pymatting import estimate_foreground_ml

    rng = np.random.default_rng(7)
    h, w = 1080, 1920
    fg, bg, alpha = case_hair(rng, h, w)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    image, alpha = to16(image) / 65535.0, to16(alpha) / 65535.0
    estimate_foreground_ml(image[:64, :64], alpha[:64, :64])  # numba's compile
    started = time.perf_counter()
    for _ in range(frames):
        estimate_foreground_ml(image, alpha)
    theirs = (time.perf_counter() - started) / frames
    # vmatte's own account of the time its encoder thread spent finishing
    # (here, estimating the colour), so decoding and writing stay out.
    _, report = run_vmatte(vmatte, outdir / "est", image, alpha, frames)
    ours = report["finish_seconds"] / report["frames"]
    return {
        "frames": frames,
        "pymatting_s": theirs,
        "vmatte_s": ours,
        "ratio": theirs / ours,
    }


def picture(vmatte, outdir, png):
    """Blond hair-like strands shot on green, composited over magenta with
    --foreground source, with estimate, and from the true colour, cropped
    to the strands, side by side and labelled."""
    from PIL import ImageDraw

    rng = np.random.default_rng(7)
    h, w = 240, 320
    _, _, alpha = case_hair(rng, h, w)
    # Blond strands shot against a green screen: the colour a composite
    # over anything else must not carry along.
    fg = np.clip(smooth_noise(rng, h, w, 24) * 0.15 + np.array([0.78, 0.62, 0.36]), 0, 1)
    bg = np.clip(smooth_noise(rng, h, w, 8) * 0.2 + np.array([0.1, 0.7, 0.2]), 0, 1)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    panels = []
    for mode in ("source", "estimate"):
        options = ("--foreground", mode, "--outputs", "composite", "--background", "#ff00ff",
                   "--format", "png")
        first, _ = run_vmatte(vmatte, outdir / "pic" / mode, image, alpha, options=options)
        panels.append((f"--foreground {mode}", Image.open(first).convert("RGB")))
    magenta = np.array([1.0, 0.0, 1.0])
    truth = alpha[..., None] * fg + (1 - alpha[..., None]) * magenta
    panels.append(("the truth", Image.fromarray(np.round(truth * 255).astype(np.uint8))))
    sheet = Image.new("RGB", (3 * 480 + 24, 360 + 28), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (label, frame) in enumerate(panels):
        x = i * (480 + 12)
        # The strands' tips, where the old background bled in most, at 3x.
        sheet.paste(frame.crop((40, 10, 200, 130)).resize((480, 360), Image.NEAREST), (x, 28))
        draw.text((x + 4, 8), label, fill=(0, 0, 0))
    sheet.save(png)
    return {"picture": str(png)}


def main():
    vmatte, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) > 4 and sys.argv[3] == "--picture":
        print(json.dumps(picture(vmatte, outdir, Path(sys.argv[4]))))
    elif len(sys.argv) > 4 and sys.argv[3] == "--bench":
        print(json.dumps(bench(vmatte, outdir, int(sys.argv[4]))))
    elif len(sys.argv) > 4 and sys.argv[3] == "--size":
        w, h = (int(v) for v in sys.argv[4].split("x"))
        print(json.dumps(accuracy(vmatte, outdir, (w, h))))
    else:
        print(json.dumps(accuracy(vmatte, outdir)))


if __name__ == "__main__":
    main()
