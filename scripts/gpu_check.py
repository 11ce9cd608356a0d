#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The GPU check: everything vmatte promises on a GPU, in one run.

Run by scripts/gpu-check.sh on a GPU machine (bare, no network, PyTorch
there) with the bundle scripts/gpu-check-pack.sh made here, or here on the
CPU with --rehearse (the CPU tarball, tiny sizes) so the real run does not
fail on a typo. Data flow:

    bundle/ (vmatte tarball, RVM ONNX, sample clip, GVM fixture,
             the authors' RVM and MatAnyone code, wheels)
      -> setup: unpack, import models, random ResNet-50 weights (authors'
         code, seed 0), clips made with OpenCV (MPEG-4 video for vmatte,
         the same frames as JPEG folders for the authors' convert_video)
      -> 1 correctness: CUDA against the CPU path, per precision; the
         out-of-memory ladder under a real squeeze
      -> 2 model-only: `vmatte bench` sweeps beside the authors' loops
      -> 3 end to end: `vmatte batch` beside convert_video, the I/O
         ceiling (`vmatte finish` with the batch's mattes), GPU busy
      -> 4 GVM and MatAnyone: vmatte's timings (and MatAnyone's release)
      -> OUTDIR: report.md, figures.json, log.txt, telemetry.png, smi.csv

Every step is timed and caught: a failing step is recorded and the next
runs, and a step that would not end before the budget is skipped, so one
run always brings back a report.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# Tolerances of the CUDA build against the CPU path, on alpha in [0, 1].
# f32: cuDNN and cuBLAS pick other summation orders, and cuDNN's default
# math runs f32 convolutions on TF32 tensor cores from sm_80 on: 10 bits of
# mantissa (relative 4.9e-4 a product), which about 50 layers take to a few
# 1e-3 before the clamp, so half a level on average and up to 16 levels
# where the matte is steep.
# f16/bf16: the rounding of half precision carried through the recurrent
# state; the mean is the criterion vmatte meets against ONNX Runtime
# (within 1/255 on average), bf16's 8-bit mantissa gets twice that.
TOLERANCE = {
    "f32": {"mean": 0.5 / 255, "max": 16 / 255},
    "f16": {"mean": 1 / 255, "max": 48 / 255},
    "bf16": {"mean": 2 / 255, "max": 64 / 255},
}
# GVM's tiny fixture scales some output layers up (its README), which
# magnifies rounding: on the CPU its f16 is 0.65 levels off on average.
GVM_TOLERANCE = {
    "f32": {"mean": 0.25 / 255, "max": 8 / 255},
    "f16": {"mean": 2 / 255, "max": 96 / 255},
    "bf16": {"mean": 4 / 255, "max": 128 / 255},
}


class Profile:
    """What one run measures: the GPU's sizes, or the rehearsal's."""

    def __init__(self, rehearse: bool):
        self.rehearse = rehearse
        if rehearse:
            self.device = "cpu"
            self.dtypes = ["f32", "f16"]
            self.chunks = "1,2"
            self.clips, self.clip_frames, self.clip_size = 2, 12, (320, 180)
            self.big_size, self.big_frames = (640, 360), 6
            self.bench_frames, self.bench_warmup = 4, 1
            self.peer_clips = 1
            self.batch_dtype = "f32"
            self.correct_frames = 6
            self.matanyone_size = (256, 144)
            self.matanyone_frames = 3
            self.gvm_args = ["--source", "160x90", "--max-resolution", "128", "--size", "64",
                             "--frames-per-batch", "2", "--decode-chunk", "2", "--windows", "1",
                             "--warmup", "0"]
        else:
            self.device = "cuda"
            self.dtypes = ["f32", "f16", "bf16"]
            self.chunks = "1,4,8,16"
            self.clips, self.clip_frames, self.clip_size = 8, 250, (1920, 1080)
            self.big_size, self.big_frames = (3840, 2160), 60
            self.bench_frames, self.bench_warmup = 200, 20
            self.peer_clips = 2
            self.batch_dtype = "f16"
            self.correct_frames = 30
            self.matanyone_size = (854, 480)
            self.matanyone_frames = 50
            self.gvm_args = ["--random-weights", "--max-resolution", "960,1280",
                             "--frames-per-batch", "8", "--decode-chunk", "8", "--windows", "2",
                             "--warmup", "1"]
        self.peer_device = self.device


class Check:
    def __init__(self, bundle: Path, out: Path, profile: Profile, budget: float, work: Path):
        self.bundle, self.out, self.p, self.work = bundle, out, profile, work
        self.deadline = time.monotonic() + budget
        self.started = time.monotonic()
        self.figures = {"mode": "rehearsal (CPU)" if profile.rehearse else "GPU", "steps": {}}
        self.log = open(out / "log.txt", "w", buffering=1)
        self.python = sys.executable
        self.env = dict(os.environ, VMATTE_MODEL_DIR=str(work / "models"), NO_COLOR="1")

    # -- plumbing --------------------------------------------------------
    def say(self, line: str) -> None:
        stamp = f"[{time.monotonic() - self.started:6.1f}s]"
        print(f"{stamp} {line}", file=sys.stderr, flush=True)
        self.log.write(f"{stamp} {line}\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name: str, need: float, fn) -> None:
        """Runs fn unless fewer than `need` seconds are left; records how
        it went in figures["steps"] either way."""
        if self.left() < need:
            self.say(f"SKIP {name}: {self.left():.0f} s left, it needs about {need:.0f}")
            self.figures["steps"][name] = {"status": "skipped", "reason": "time budget"}
            return
        self.say(f"STEP {name}")
        t = time.monotonic()
        try:
            fn()
            status = {"status": "ok"}
        except Exception as e:  # noqa: BLE001 - every failure is recorded, the run goes on
            self.log.write(traceback.format_exc())
            status = {"status": "failed", "error": str(e).strip().splitlines()[-1][:400] if str(e).strip() else repr(e)}
            self.say(f"FAILED {name}: {status['error']}")
        status["seconds"] = round(time.monotonic() - t, 1)
        self.figures["steps"][name] = status
        self.save()

    def run(self, cmd, timeout=None, env=None, check=True) -> subprocess.CompletedProcess:
        cmd = [str(c) for c in cmd]
        limit = max(5.0, min(timeout or self.left(), self.left()))
        self.log.write("$ " + " ".join(cmd) + "\n")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                               env=env or self.env, cwd=self.work)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{Path(cmd[0]).name} {cmd[1] if len(cmd) > 1 else ''}: timed out after {limit:.0f} s") from e
        if r.stderr:
            self.log.write("".join(r.stderr.splitlines(True)[-15:]))
        if check and r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise RuntimeError(f"{Path(cmd[0]).name} {cmd[1] if len(cmd) > 1 else ''} exited {r.returncode}: {last}")
        return r

    def json_of(self, cmd, timeout=None, env=None):
        r = self.run(cmd, timeout=timeout, env=env)
        lines = [l for l in r.stdout.splitlines() if l.strip().startswith("{")]
        if not lines:
            raise RuntimeError(f"{Path(str(cmd[0])).name} printed no JSON")
        return json.loads(lines[-1])

    def vm(self, *args):
        return [self.vmatte, *args]

    def save(self) -> None:
        self.figures["seconds"] = round(time.monotonic() - self.started, 1)
        (self.out / "figures.json").write_text(json.dumps(self.figures, indent=1, default=float))

    # -- setup -----------------------------------------------------------
    def setup(self) -> None:
        f = self.figures
        f["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        try:
            import torch

            f["machine"]["torch"] = torch.__version__
            if torch.cuda.is_available():
                f["machine"]["gpu"] = torch.cuda.get_device_name(0)
                f["machine"]["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        except ImportError:
            raise RuntimeError("PyTorch is not importable here; the authors' code needs it")
        smi = shutil.which("nvidia-smi")
        if smi:
            f["machine"]["driver"] = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            ).stdout.strip()
        manifest = json.loads((self.bundle / "MANIFEST.json").read_text())
        f["bundle"] = manifest
        dest = self.work / "vmatte"
        with tarfile.open(self.bundle / manifest["tarball"]) as t:
            t.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(dest)
        top = next(dest.iterdir())
        launcher = top / "vmatte-cuda"
        self.vmatte = launcher if launcher.exists() else top / "vmatte"
        f["vmatte"] = self.run(self.vm("--version")).stdout.strip()
        if launcher.exists():
            f["cuda_libraries"] = self.run([launcher, "--print-library-path"]).stdout.strip()
        self.run(self.vm("models", "import", self.bundle / "rvm_mobilenetv3_fp32.onnx"))
        self.rvm_src = self.bundle / "rvm-src"
        self.r50 = self.rvm_weights("resnet50")
        self.make_clips()

    def rvm_weights(self, variant: str) -> Path:
        """Random weights (seed 0) for the authors' RVM `variant`, made by
        their code once per run; vmatte and the authors' loops read them."""
        path = self.work / f"rvm_{variant}_random.pth"
        if not path.exists():
            self.json_of([self.python, self.here / "gpu_check_peer.py", "weights", "--src", self.rvm_src,
                          "--variant", variant, "--out", path])
        return path

    def make_clips(self) -> None:
        """The sample clip scaled to the check's size and looped: MPEG-4
        (OpenCV's own encoder: the GPU machine has no FFmpeg programs) for
        vmatte, the same frames as JPEG folders for convert_video. Each clip
        is mirrored and shifted differently, so none is another's copy."""
        import cv2

        cap = cv2.VideoCapture(str(self.bundle / "sample.mp4"))
        src = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            src.append(frame)
        if not src:
            raise RuntimeError("the bundle's sample.mp4 did not decode with OpenCV")
        w, h = self.p.clip_size
        self.clips = self.work / "clips"
        self.jpegs = self.work / "jpegs"

        def one(i: int) -> None:
            writer = cv2.VideoWriter(str(self.clips / f"clip{i:02}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
            seq = self.jpegs / f"clip{i:02}"
            seq.mkdir(parents=True, exist_ok=True)
            for n in range(self.p.clip_frames):
                k = (n + 7 * i) % (2 * len(src) - 2)
                frame = src[k if k < len(src) else 2 * len(src) - 2 - k]
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_CUBIC)
                if i % 2:
                    frame = cv2.flip(frame, 1)
                writer.write(frame)
                if i < self.p.peer_clips:
                    cv2.imwrite(str(seq / f"{n:04}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            writer.release()

        self.clips.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(one, range(self.p.clips)))
        for seq in list(self.jpegs.iterdir()):
            if not any(seq.iterdir()):
                seq.rmdir()
        # One clip at the large size, for ResNet-50 and the squeeze.
        bw, bh = self.p.big_size
        self.big = self.work / "big.mp4"
        writer = cv2.VideoWriter(str(self.big), cv2.VideoWriter_fourcc(*"mp4v"), 25, (bw, bh))
        for frame in (src * 2)[: self.p.big_frames]:
            writer.write(cv2.resize(frame, (bw, bh), interpolation=cv2.INTER_CUBIC))
        writer.release()
        mw, mh = self.p.matanyone_size
        self.small = self.work / "small.mp4"
        writer = cv2.VideoWriter(str(self.small), cv2.VideoWriter_fourcc(*"mp4v"), 25, (mw, mh))
        for frame in (src * 2)[: max(20, self.p.matanyone_frames + 10)]:
            writer.write(cv2.resize(frame, (mw, mh), interpolation=cv2.INTER_AREA))
        writer.release()
        self.figures["clips"] = {"count": self.p.clips, "frames_each": self.p.clip_frames,
                                 "size": f"{w}x{h}", "codec": "MPEG-4 Part 2 (OpenCV), 25 fps",
                                 "peer_sequences": self.p.peer_clips}

    # -- 1 correctness ---------------------------------------------------
    def alphas(self, folder: Path) -> np.ndarray:
        from PIL import Image

        files = sorted(folder.rglob("*.png"))
        if not files:
            raise RuntimeError(f"no PNG written under {folder}")
        return np.stack([np.asarray(Image.open(f), dtype=np.float64) / 65535.0 for f in files])

    def matte_pngs(self, name: str, device: str, dtype: str, extra) -> np.ndarray:
        out = self.work / "correct" / f"{name}-{device.replace(':', '')}-{dtype}"
        shutil.rmtree(out, ignore_errors=True)
        self.run(self.vm("matte", self.bundle / "sample.mp4", "-o", out, "--device", device, "--dtype", dtype,
                         "--outputs", "alpha", "--format", "png", "--depth", "16", "--no-audio",
                         "--max-frames", self.p.correct_frames, *extra), timeout=300)
        return self.alphas(out)

    def compare(self, name: str, extra, dtypes, tolerance) -> None:
        ref = self.matte_pngs(name, "cpu", "f32", extra)
        # A matte clamped to 0 or 1 everywhere (random weights can give
        # one) would agree with anything: the comparison needs edges.
        between = float(((ref > 0.01) & (ref < 0.99)).mean())
        if between < 0.005:
            raise RuntimeError(f"{name}: the CPU's matte is flat ({100 * between:.2f}% of pixels between 0 and 1); nothing to compare")
        rows = {}
        for dtype in dtypes:
            try:
                got = self.matte_pngs(name, self.p.device, dtype, extra)
            except RuntimeError as e:
                rows[dtype] = {"error": str(e)[:300]}
                continue
            if got.shape != ref.shape:
                rows[dtype] = {"error": f"shape {got.shape} against the CPU's {ref.shape}"}
                continue
            d = np.abs(got - ref)
            tol = tolerance[dtype]
            rows[dtype] = {"mean": float(d.mean()), "max": float(d.max()),
                           "over_1_level": float((d > 1 / 255).mean()),
                           "tolerance": tol, "pass": bool(d.mean() <= tol["mean"] and d.max() <= tol["max"])}
        self.figures.setdefault("correctness", {})[name] = {"frames": int(ref.shape[0]), "size": f"{ref.shape[2]}x{ref.shape[1]}",
                                                            "between": between, "rows": rows}
        failed = [k for k, v in rows.items() if not v.get("pass")]
        if failed:
            raise RuntimeError(f"{name}: {', '.join(failed)} outside the tolerance (figures.json)")

    def squeeze(self) -> None:
        """The out-of-memory ladder for real: another process holds all but
        3 GiB of the card (vmatte's CUDA context and cuDNN take about one),
        and a 4K ResNet-50 chunk of 16 frames cannot fit. The run must finish, stepping down. In the rehearsal
        (no GPU) the ladder is driven by VMATTE_FAKE_OOM instead."""
        cmd = self.vm("matte", self.big, "-o", self.work / "squeeze", "--model", "rvm-resnet50",
                      "--weights", self.r50, "--device", self.p.device, "--dtype", self.p.batch_dtype,
                      "--seq-chunk", "16", "--downsample-ratio", "0.5", "--outputs", "alpha",
                      "--max-frames", "16", "--json")
        hog = None
        env = self.env
        if self.p.rehearse:
            env = dict(self.env, VMATTE_FAKE_OOM="frames>4")
        else:
            hog = subprocess.Popen([self.python, "-c", (
                "import torch,sys,time\n"
                "free,_=torch.cuda.mem_get_info()\n"
                "x=torch.empty(int(free-3*2**30),dtype=torch.uint8,device='cuda')\n"
                "print('held',x.numel(),flush=True)\n"
                "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
            if not hog.stdout.readline().startswith("held"):
                raise RuntimeError("could not take the GPU's memory for the squeeze")
        try:
            report = self.json_of(cmd, timeout=240, env=env)
        finally:
            if hog:
                hog.kill()
        ladder = report.get("ladder", [])
        self.figures["squeeze"] = {"frames": report["frames"], "chunk_asked": 16, "chunk_used": report["chunk"],
                                   "ladder": ladder, "fake": self.p.rehearse}
        if not ladder:
            raise RuntimeError("the squeeze ran without stepping down: nothing was squeezed")

    # -- 2 model-only ----------------------------------------------------
    def bench(self, key: str, clip: Path, model_args, ratio: str, dtypes, chunks, frames=None) -> None:
        frames = frames or self.p.bench_frames
        r = self.json_of(self.vm("bench", "--input", clip, *model_args, "--device", self.p.device,
                                 "--downsample-ratio", ratio, "--dtypes", ",".join(dtypes), "--seq-chunk", chunks,
                                 "--frames", frames, "--warmup", min(self.p.bench_warmup, frames // 4 or 1),
                                 "--model-only", "--json"), timeout=400)
        self.figures.setdefault("model_only", {})[key] = {
            "size": f"{r['width']}x{r['height']}", "downsample_ratio": r["downsample_ratio"],
            "rows": [{"dtype": x["dtype"], "seq_chunk": x["seq_chunk"], "fps": x["model_only"]["fps"],
                      "gpu": x.get("gpu"), "vs_f32": x.get("vs_f32")} for x in r["rows"]],
            "peak_rss_mib": r.get("peak_rss_mib")}

    def peer_speed(self, key: str, variant: str, size, ratio: float) -> None:
        rows = {}
        precisions = ["float32"] if self.p.rehearse else ["float32", "float16"]
        for precision in precisions:
            r = self.json_of([self.python, self.here / "gpu_check_peer.py", "speed", "--src", self.rvm_src,
                              "--variant", variant, "--device", self.p.peer_device, "--precision", precision,
                              "--resolution", *size, "--downsample-ratio", ratio,
                              "--frames", self.p.bench_frames, "--warmup", self.p.bench_warmup], timeout=300)
            rows[precision] = r["fps"]
        self.figures.setdefault("peer_model_only", {})[key] = rows

    # -- 3 end to end ----------------------------------------------------
    def sampled(self, fn):
        """Runs fn while nvidia-smi samples the GPU every 200 ms; returns
        (fn's value, mean busy %, samples)."""
        smi = shutil.which("nvidia-smi")
        if not smi or self.p.rehearse:
            return fn(), None, 0
        proc = subprocess.Popen([smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                 "-lms", "200"], stdout=subprocess.PIPE, text=True)
        samples = []
        reader = threading.Thread(target=lambda: samples.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            value = fn()
        finally:
            proc.terminate()
            reader.join(timeout=5)
        busy = [float(s.split(",")[0]) for s in samples if s.strip() and s.split(",")[0].strip().isdigit()]
        with open(self.out / "smi.csv", "a") as f:
            f.writelines(samples)
        return value, (statistics.mean(busy) if busy else None), len(busy)

    def batch(self) -> None:
        out = self.work / "batch-out"
        shutil.rmtree(out, ignore_errors=True)
        started = time.monotonic()
        report, busy, n = self.sampled(lambda: self.json_of(
            self.vm("batch", self.clips, "-o", out, "--device", self.p.device, "--dtype", self.p.batch_dtype,
                    "--outputs", "alpha", "--downsample-ratio", "0.25", "--json"), timeout=400))
        seconds = time.monotonic() - started
        frames = self.p.clips * self.p.clip_frames
        self.batch_out = out
        self.figures["end_to_end"] = {"vmatte": {"frames": frames, "seconds": seconds, "fps": frames / seconds,
                                                 "gpu_busy_mean": busy, "samples": n, "jobs": len(report.get("jobs", [])),
                                                 "gpu": report.get("gpu")}}
        r = self.run(self.vm("report", out, "-o", self.out / "telemetry.png"), check=not self.p.rehearse)
        if r.returncode:
            self.figures["end_to_end"]["vmatte"]["report"] = (r.stderr.strip().splitlines() or [""])[-1]

    def ceiling(self) -> None:
        """Decode plus encode with no model: `vmatte finish` of each clip
        with the batch's own matte, as many at once as there are cores / 4.
        It decodes on the CPU (the batch may use NVDEC) and also decodes the
        matte (gray H.264, a few ms a frame), so this ceiling is a little
        below the true one; the report says so."""
        mattes = {p.name.split(".")[0]: p for p in self.batch_out.rglob("*.alpha.mp4")}
        clips = sorted(self.clips.glob("*.mp4"))
        missing = [c.name for c in clips if c.stem not in mattes]
        if missing:
            raise RuntimeError(f"the batch left no alpha for {', '.join(missing)}")

        def one(clip: Path):
            self.run(self.vm("finish", clip, "--matte", mattes[clip.stem], "-o", self.work / "ceiling",
                             "--outputs", "alpha"), timeout=400)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 4) // 4)) as pool:
            list(pool.map(one, clips))
        seconds = time.monotonic() - started
        frames = len(clips) * self.p.clip_frames
        self.figures["end_to_end"]["io_ceiling"] = {"frames": frames, "seconds": seconds, "fps": frames / seconds}

    def peer_convert(self) -> None:
        out = self.work / "peer-out"
        shutil.rmtree(out, ignore_errors=True)
        precision = "float32" if self.p.batch_dtype == "f32" else "float16"
        r, busy, n = self.sampled(lambda: self.json_of(
            [self.python, self.here / "gpu_check_peer.py", "convert", "--src", self.rvm_src, "--variant", "mobilenetv3",
             "--weights", self.rvm_weights("mobilenetv3"), "--device", self.p.peer_device, "--precision", precision,
             "--input", self.jpegs, "--output", out, "--downsample-ratio", "0.25", "--seq-chunk", "1",
             "--workers", min(8, os.cpu_count() or 1)], timeout=400))
        self.figures["end_to_end"]["peer_convert_video"] = dict(r, gpu_busy_mean=busy, samples=n,
                                                                io="JPEG folders in, alpha PNG folders out (no PyAV here)")

    # -- 4 GVM and MatAnyone ---------------------------------------------
    def gvm(self) -> None:
        args = list(self.p.gvm_args)
        if self.p.rehearse:
            args = ["--weights", self.bundle / "gvm-fixture", *args]
        dtype = "f32" if self.p.rehearse else "f16"
        ours = self.json_of(self.vm("bench-gvm", "--device", self.p.device, "--dtype", dtype, *args, "--json"),
                            timeout=300)
        self.figures["gvm"] = {"vmatte": ours}
        self.save()
        # The reference at the same work: one ensemble member, as vmatte's
        # bench (the pipeline's default of 3 does each window three times).
        peer = [a for a in args if a != "--random-weights"]
        if not self.p.rehearse:
            peer = ["--random-published", *peer]
        self.figures["gvm"]["reference"] = self.json_of(
            [self.python, self.here / "gpu_check_gvm_peer.py", "--src", self.bundle / "gvm-src",
             "--device", self.p.device, "--dtype", dtype, "--ensemble", "1", *peer], timeout=300)

    def gvm_correct(self) -> None:
        extra = ["--model", "gvm", "--weights", self.bundle / "gvm-fixture", "--size", "64",
                 "--max-resolution", "128", "--frames-per-batch", "4"]
        dtypes = [d for d in self.p.dtypes if d != "bf16" or not self.p.rehearse]
        self.compare("gvm-fixture", extra, dtypes, GVM_TOLERANCE)

    def matanyone(self) -> None:
        src = self.bundle / "matanyone-src"
        weights = self.work / "matanyone"
        peer = [self.python, self.here / "bench_matanyone_release.py", "--src", src, "--out", weights]
        self.run([*peer, "--make-weights"], timeout=120)
        self.run(self.vm("models", "import", "matanyone", weights / "matanyone_random.pth"))
        rows = {}
        dtypes = ["f32"] if self.p.rehearse else ["f32", "f16"]
        for dtype in dtypes:
            try:
                r = self.json_of(self.vm("bench", "--input", self.small, "--model", "matanyone", "--device", self.p.device,
                                         "--dtypes", dtype, "--frames", self.p.matanyone_frames, "--warmup", "2",
                                         "--model-only", "--json"), timeout=300)
                rows[dtype] = r["rows"][0]["model_only"]["fps"]
            except RuntimeError as e:
                rows[dtype] = str(e)[:300]
        release = self.json_of([*peer, "--clip", self.small, "--frames", self.p.matanyone_frames, "--warmup", "2",
                                "--threads", os.cpu_count() or 1, "--device", self.p.peer_device], timeout=300)
        self.figures["matanyone"] = {"size": "x".join(map(str, self.p.matanyone_size)), "vmatte_fps": rows,
                                     "release_fps_f32": release["fps"]}

    # -- the report ------------------------------------------------------
    def report(self) -> None:
        f = self.figures
        lines = [f"# vmatte GPU check ({f['mode']})", ""]
        m = f.get("machine", {})
        lines.append(f"- machine: {m.get('gpu', 'no GPU')}, {m.get('cpus')} CPUs, driver {m.get('driver', '-')}, "
                     f"PyTorch {m.get('torch', '-')}; {f.get('vmatte', '?')}; {f['seconds']:.0f} s in all")
        b = f.get("bundle", {})
        lines.append(f"- bundle: {b.get('tarball')} (commit {b.get('commit')}, made {b.get('made')})")
        lines += ["", "## Steps", "", "| step | status | seconds | note |", "| --- | --- | --- | --- |"]
        for name, s in f["steps"].items():
            lines.append(f"| {name} | {s['status']} | {s.get('seconds', '-')} | {s.get('error', s.get('reason', ''))} |")
        if "correctness" in f:
            lines += ["", "## 1. Correctness against the CPU path (alpha, 0..1)", "",
                      "| model | dtype | mean | max | > 1 level | tolerance mean / max | pass |", "| --- | --- | --- | --- | --- | --- | --- |"]
            for name, c in f["correctness"].items():
                for dtype, r in c["rows"].items():
                    if "error" in r:
                        lines.append(f"| {name} | {dtype} | error: {r['error']} | | | | no |")
                    else:
                        t = r["tolerance"]
                        lines.append(f"| {name} ({c['size']}, {c['frames']} frames) | {dtype} | {r['mean']:.2e} | {r['max']:.2e} | "
                                     f"{100 * r['over_1_level']:.3f}% | {t['mean']:.1e} / {t['max']:.1e} | {'yes' if r['pass'] else 'NO'} |")
        if "squeeze" in f:
            s = f["squeeze"]
            lines += ["", f"Out-of-memory ladder{' (injected: no GPU)' if s['fake'] else ''}: asked for chunks of "
                      f"{s['chunk_asked']}, ran {s['frames']} frames, steps: {json.dumps(s['ladder'])}"]
        if "model_only" in f:
            lines += ["", "## 2. Model-only", "", "| model | size | dtype | chunk | fps | GPU busy | vs f32 |", "| --- | --- | --- | --- | --- | --- | --- |"]
            for key, x in f["model_only"].items():
                for r in x["rows"]:
                    gpu = r.get("gpu") or {}
                    busy = gpu.get("util_mean_pct", "")
                    lines.append(f"| {key} | {x['size']} @ {x['downsample_ratio']} | {r['dtype']} | {r['seq_chunk']} | {r['fps']:.1f} | {busy} | {json.dumps(r.get('vs_f32'))} |")
            for key, rows in f.get("peer_model_only", {}).items():
                best = {d: max((r["fps"] for r in f["model_only"].get(key, {}).get("rows", []) if r["dtype"] == d), default=None)
                        for d in ("f32", "f16")}
                for precision, fps in rows.items():
                    ours = best["f32" if precision == "float32" else "f16"]
                    ratio = f"{ours / fps:.2f}x" if ours else "-"
                    lines.append(f"| authors' {key} | | {precision} | 1 | {fps:.1f} | | vmatte's best / authors': {ratio} |")
        e = f.get("end_to_end")
        if e:
            lines += ["", "## 3. End to end", ""]
            v = e.get("vmatte", {})
            if v:
                lines.append(f"- vmatte batch: {v['frames']} frames in {v['seconds']:.1f} s = **{v['fps']:.1f} fps**, GPU busy {v['gpu_busy_mean']}")
            c = e.get("io_ceiling")
            if c:
                lines.append(f"- decode + encode, no model (vmatte finish): {c['fps']:.1f} fps")
            mo = max((r["fps"] for r in f.get("model_only", {}).get("rvm-mobilenetv3", {}).get("rows", [])
                      if r["dtype"] == self.p.batch_dtype), default=None)
            if v and c and mo:
                bound = min(mo, c["fps"])
                which = "the model" if mo < c["fps"] else "decode + encode"
                lines.append(f"- ceiling: min(model-only {mo:.1f}, I/O {c['fps']:.1f}) = {bound:.1f} fps, bound by {which}; "
                             f"vmatte at **{100 * v['fps'] / bound:.0f}%** of it")
                lines.append(f"- per frame: model {1000 / mo:.2f} ms, decode + encode {1000 / c['fps']:.2f} ms (all cores), end to end {1000 / v['fps']:.2f} ms")
            pc = e.get("peer_convert_video")
            if pc:
                lines.append(f"- authors' convert_video ({pc['io']}): {pc['frames']} frames, **{pc['fps']:.1f} fps**, GPU busy {pc['gpu_busy_mean']}")
                if v:
                    lines.append(f"- vmatte / convert_video: **{v['fps'] / pc['fps']:.2f}x**")
        if "gvm" in f:
            lines += ["", "## 4. GVM: seconds per window (median), peak GPU memory", "",
                      "| max resolution | sees | frames | vmatte s | reference s | reference / vmatte | vmatte MiB | reference MiB (allocated / reserved) |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            ref = {r["max_resolution"]: r for r in f["gvm"].get("reference", {}).get("rows", [])}
            for r in f["gvm"]["vmatte"]["rows"]:
                p = ref.get(r["max_resolution"], {})
                ratio = f"{p['seconds_per_window'] / r['seconds_per_window']:.2f}x" if p else "-"
                theirs = f"{p['seconds_per_window']:.3f}" if p else "-"
                lines.append(f"| {r['max_resolution']} | {r['model_sees']} | {r['frames_per_window']} | {r['seconds_per_window']:.3f} | "
                             f"{theirs} | {ratio} | {r.get('gpu_mem_max_mib')} | "
                             f"{p.get('gpu_mem_max_mib')} / {p.get('gpu_mem_reserved_max_mib')} |")
        if "matanyone" in f:
            a = f["matanyone"]
            lines += ["", f"## MatAnyone model-only at {a['size']}", "",
                      f"- vmatte: {json.dumps(a['vmatte_fps'])} fps; the release (PyTorch, fp32): {a['release_fps_f32']:.2f} fps"]
            if isinstance(a["vmatte_fps"].get("f32"), float):
                lines.append(f"- f32: vmatte / the release **{a['vmatte_fps']['f32'] / a['release_fps_f32']:.2f}x**")
        (self.out / "report.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rehearse", action="store_true", help="on the CPU, tiny sizes")
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole run")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vmatte-gpu-check"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    c = Check(a.bundle.resolve(), a.out.resolve(), Profile(a.rehearse), a.budget, a.work.resolve())
    c.here = Path(__file__).resolve().parent
    c.step("setup", 30, c.setup)
    if c.figures["steps"]["setup"]["status"] != "ok":
        c.save()
        c.report()
        return 1
    p = c.p
    c.step("correct rvm-mobilenetv3", 20, lambda: c.compare("rvm-mobilenetv3", [], p.dtypes, TOLERANCE))
    # At ratio 1 (no refiner): the random head is scaled to give a matte
    # with edges (gpu_check_peer.py), the random refiner would clamp it
    # again; MobileNetV3's real weights cover the refiner.
    c.step("correct rvm-resnet50", 20, lambda: c.compare(
        "rvm-resnet50", ["--model", "rvm-resnet50", "--weights", c.r50, "--downsample-ratio", "1"], p.dtypes, TOLERANCE))
    c.step("correct gvm fixture", 20, c.gvm_correct)
    c.step("out-of-memory squeeze", 30, c.squeeze)
    clip = sorted(c.clips.glob("*.mp4"))[0]
    c.step("model-only rvm-mobilenetv3", 40, lambda: c.bench("rvm-mobilenetv3", clip, [], "0.25", p.dtypes, p.chunks))
    c.step("model-only rvm-resnet50", 40, lambda: c.bench(
        "rvm-resnet50", clip, ["--model", "rvm-resnet50", "--weights", c.r50], "0.25", p.dtypes, p.chunks))
    c.step("model-only rvm-resnet50 large", 40, lambda: c.bench(
        "rvm-resnet50-large", c.big, ["--model", "rvm-resnet50", "--weights", c.r50], "0.125",
        [d for d in p.dtypes if d != "f32"] or p.dtypes, "1,4", frames=p.big_frames - p.big_frames // 4))
    c.step("authors' model-only", 40, lambda: (
        c.peer_speed("rvm-mobilenetv3", "mobilenetv3", p.clip_size, 0.25),
        c.peer_speed("rvm-resnet50", "resnet50", p.clip_size, 0.25)))
    c.step("end to end: vmatte batch", 60, c.batch)
    c.step("end to end: I/O ceiling", 40, c.ceiling)
    c.step("end to end: authors' convert_video", 60, c.peer_convert)
    c.step("gvm bench", 120, c.gvm)
    c.step("matanyone", 60, c.matanyone)
    c.save()
    c.report()
    failed = [k for k, s in c.figures["steps"].items() if s["status"] != "ok"]
    c.say(f"done in {c.figures['seconds']:.0f} s; " + (f"not ok: {', '.join(failed)}" if failed else "every step ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
