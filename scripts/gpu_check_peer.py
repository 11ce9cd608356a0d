#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The authors' RVM code as scripts/gpu_check.py measures it.

Runs PeterL1n/RobustVideoMatting's own `model/` and `inference.py` from a
copy given with --src (scripts/gpu-check-pack.sh takes it from the public
repository into the ignored bundle; nothing of it is in this repository).
Prints one JSON object.

  weights  --variant V --out FILE       random weights from seed 0 in the
                                        authors' state-dict layout, which
                                        vmatte loads with --weights
  speed    --variant V --resolution W H --downsample-ratio R --precision P
                                        inference_speed_test.py's loop:
                                        TorchScript, frozen, one random
                                        frame, the recurrent state carried,
                                        a synchronisation after each frame
  convert  --variant V --weights F --input DIR --output DIR ...
                                        inference.py's convert_video on an
                                        image sequence (the GPU machine has
                                        no PyAV for its video I/O), alpha as
                                        a PNG sequence
"""
import argparse
import json
import sys
import time
import types
from pathlib import Path

import torch


def network(src: Path, variant: str):
    sys.path.insert(0, str(src))
    from model.model import MattingNetwork

    return MattingNetwork(variant)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def weights(a) -> dict:
    torch.manual_seed(0)
    net = network(a.src, a.variant)
    with torch.no_grad():
        # Random weights drive the matte to 0 everywhere once clamped, and
        # a comparison of zeros proves nothing: the output projection is
        # scaled down and its alpha centred, so the matte has edges.
        head = net.project_mat.conv
        head.weight.mul_(0.05)
        head.bias.zero_()
        head.bias[3] = 0.5
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), a.out)
    return {"weights": str(a.out), "parameters": sum(p.numel() for p in net.parameters())}


def speed(a) -> dict:
    # As inference_speed_test.py: cudnn.benchmark, TorchScript, frozen.
    torch.backends.cudnn.benchmark = True
    dtype = {"float32": torch.float32, "float16": torch.float16}[a.precision]
    net = network(a.src, a.variant).to(device=a.device, dtype=dtype).eval()
    net = torch.jit.freeze(torch.jit.script(net))
    w, h = a.resolution
    frame = torch.randn((1, 3, h, w), device=a.device, dtype=dtype)
    with torch.no_grad():
        rec = [None] * 4
        for i in range(a.warmup + a.frames):
            if i == a.warmup:
                started = time.perf_counter()
            _, _, *rec = net(frame, *rec, a.downsample_ratio)
            sync(a.device)
        seconds = time.perf_counter() - started
    return {"frames": a.frames, "seconds": seconds, "fps": a.frames / seconds, "torch": torch.__version__}


def convert(a) -> dict:
    sys.path.insert(0, str(a.src))
    # inference_utils imports PyAV and pims at the top for its video
    # reader, which image sequences do not use; where they are missing (the
    # GPU machine has neither), empty modules stand in for the imports.
    for name in ("av", "pims"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    from inference import convert_video

    dtype = {"float32": torch.float32, "float16": torch.float16}[a.precision]
    net = network(a.src, a.variant)
    net.load_state_dict(torch.load(a.weights, map_location="cpu"))
    net = net.to(device=a.device, dtype=dtype).eval()
    frames = 0
    started = time.perf_counter()
    for seq in sorted(p for p in a.input.iterdir() if p.is_dir()):
        convert_video(
            net,
            input_source=str(seq),
            downsample_ratio=a.downsample_ratio,
            output_type="png_sequence",
            output_alpha=str(a.output / seq.name),
            seq_chunk=a.seq_chunk,
            num_workers=a.workers,
            progress=False,
        )
        frames += len(list(seq.iterdir()))
    sync(a.device)
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("action", choices=["weights", "speed", "convert"])
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--variant", default="mobilenetv3")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="float32")
    p.add_argument("--out", type=Path)
    p.add_argument("--weights", type=Path)
    p.add_argument("--resolution", type=int, nargs=2, default=[1920, 1080])
    p.add_argument("--downsample-ratio", type=float, default=0.25)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--input", type=Path)
    p.add_argument("--output", type=Path)
    p.add_argument("--seq-chunk", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps({"weights": weights, "speed": speed, "convert": convert}[a.action](a)))


if __name__ == "__main__":
    main()
