#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""MatAnyone's release, model-only, for scripts/bench-matanyone.sh (CPU) and
scripts/gpu_check.py (--device cuda).

Runs the release's own code (a checkout of pq-yang/MatAnyone given with
--src; nothing of it is in this repository) as its inference loop does,
without autocast (fp32): the mask step and one first-frame prediction on
frame 0, then `InferenceCore.step` on each frame, the first --warmup frames
untimed. The network is the release's (config/model/base.yaml, single
object) with random weights from seed 0: with --make-weights it saves them
(`matanyone_random.pth` and the composed `config.json`, which vmatte
imports) and exits. The frames are the clip's, the mask is the middle third
of the frame (as `vmatte bench` makes it). Prints one JSON object.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def compose(src: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3.2", config_dir=str(src / "matanyone/config")):
        # No ImageNet download: the weights are set (or saved) here.
        return hydra_compose(
            config_name="eval_matanyone_config", overrides=["+model.pretrained_resnet=false"]
        )


def frames_of(clip: Path, count: int) -> list:
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frames.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    if len(frames) < count:
        sys.exit(f"{clip}: has {len(frames)} frames, the benchmark needs {count}")
    return frames


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--clip", type=Path)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--make-weights", action="store_true")
    a = p.parse_args()
    src = a.src.resolve()
    sys.path.insert(0, str(src))
    torch.set_num_threads(a.threads)
    from omegaconf import OmegaConf
    from matanyone.inference.inference_core import InferenceCore
    from matanyone.model.matanyone import MatAnyone

    cfg = compose(src)
    weights = a.out / "matanyone_random.pth"
    if a.make_weights:
        torch.manual_seed(0)
        net = MatAnyone(cfg, single_object=True).eval()
        a.out.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), weights)
        config = {"cfg": OmegaConf.to_container(cfg, resolve=True)}
        (a.out / "config.json").write_text(json.dumps(config, indent=2))
        return
    net = MatAnyone(cfg, single_object=True).eval()
    net.load_weights(torch.load(weights, map_location="cpu"))
    net = net.to(a.device)
    frames = [f.to(a.device) for f in frames_of(a.clip, a.warmup + a.frames)]
    _, h, w = frames[0].shape
    mask = torch.zeros((h, w), device=a.device)
    mask[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 255.0
    core = InferenceCore(net, cfg=cfg, device=a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        core.step(frames[0], mask, objects=[1])
        core.step(frames[0], first_frame_pred=True)
        for f in frames[1 : a.warmup]:
            core.step(f)
        sync()
        started = time.perf_counter()
        for f in frames[a.warmup :]:
            alpha = core.output_prob_to_mask(core.step(f)).cpu().numpy()
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "frames": a.frames,
                "seconds": seconds,
                "fps": a.frames / seconds,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "width": w,
                "height": h,
                "alpha_mean": float(np.mean(alpha)),
            }
        )
    )


if __name__ == "__main__":
    main()
