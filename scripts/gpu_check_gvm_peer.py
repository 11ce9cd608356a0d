#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""GVM's reference pipeline, timed as `vmatte bench-gvm` times vmatte.

Runs the authors' own code (samran-batch/GVM at aaa7cf3: GVMPipeline and
its UNet class, from a copy of the `gvm/` package given with --src; none of
it is in this repository) on synthetic frames, one window of
--frames-per-batch frames per step, so that scripts/gpu_check.py can put
its seconds per window beside vmatte's. The GPU machine has PyTorch but not
diffusers: diffusers and what it imports are carried as wheels. Prints one
JSON object on stdout.

A window is what demo.py does with one batch, from the frames at source
size to the thresholded alpha at source size, split as vmatte splits it:
  encode   resize (torchvision's Resize on a tensor: bilinear, antialias)
           and the centred zero padding to multiples of 32, then
           GVMPipeline.__call__ up to the end of its VAE encode
  denoise  the UNet steps (noise 'zeros', timestep 999, as demo.py)
  decode   the chunked VAE decode, the mean/max/clamp to alpha, demo.py's
           crop, bilinear resize back and 240/255, 25/255 thresholds
demo.py resizes on the CPU in its DataLoader; here the resize runs on the
device, as vmatte's does, so the two windows do the same work.

Precision as demo.py: f16 means the weights are loaded in f32 and run
under fp16 autocast, and GVMPipeline.__call__ casts the VAE to fp16 itself.
f32 means everything in f32 (the VAE cast is disabled, as the fixture's
cross-check did).
"""
import argparse
import importlib
import importlib.machinery
import json
import resource
import statistics
import sys
import time
import types

# Values of the fixture's scheduler/scheduler_config.json (the published
# model's too). Only num_train_timesteps matters: with noise 'zeros' the
# pipeline uses timestep 999 at every step and no scheduler step.
SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "invert_sigmas": False,
             "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000,
             "shift": 1.0, "shift_terminal": None, "stochastic_sampling": False,
             "time_shift_type": "exponential", "use_beta_sigmas": False,
             "use_dynamic_shifting": False, "use_exponential_sigmas": False,
             "use_karras_sigmas": False}
# Stable Video Diffusion XT's sizes, which GVM fine-tunes (GVM's UNet class
# has them as defaults; named here so the run does not depend on that).
UNET_PUBLISHED = {
    "in_channels": 8, "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    "up_block_types": ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2,
    "num_attention_heads": (5, 10, 20, 20), "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1, "num_frames": 25, "class_embed_type": None}
VAE_PUBLISHED = {"in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 4,
                 "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
                 "latent_channels": 4, "sample_size": 768, "scaling_factor": 0.18215}


def stub_unused_imports() -> list:
    """pipeline_gvm.py imports peft (only for its LoRA loader, which is not
    used here) and matplotlib (not used at all). peft needs transformers and
    accelerate, matplotlib its own compiled parts; rather than carry them,
    stand-ins are put in sys.modules when the real ones cannot be imported.
    Called after diffusers is imported, so diffusers still sees no peft."""
    stubbed = []
    for name, attrs in {"peft": ("LoraConfig", "LoraModel", "set_peft_model_state_dict"),
                        "matplotlib": ()}.items():
        try:
            importlib.import_module(name)
        except Exception:  # not installed, or installed without its own imports
            module = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)

            def unavailable(*_a, _name=name, **_k):
                raise RuntimeError(f"{_name} is a stand-in in gpu_check_gvm_peer.py")
            for attr in attrs:
                setattr(module, attr, unavailable)
            sys.modules[name] = module
            stubbed.append(name)
    return stubbed


def model_sees(w: int, h: int, size: int, max_size: int) -> tuple:
    """torchvision's Resize(size, max_size) output (demo.py's transform), as
    (h, w): the shorter side to size unless the longer would pass max_size,
    then the longer to max_size (float division, truncation). No rounding to
    8: demo.py pads to multiples of 32 (impad_multi) after the resize."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if w <= h else (new_short, new_long)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", required=True, help="folder holding GVM's gvm/ package")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--weights", help="diffusers folder with unet/, vae/, scheduler/")
    g.add_argument("--random-published", action="store_true",
                   help="random weights (seed 0) at Stable Video Diffusion XT's sizes")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dtype", default="f16", choices=["f16", "f32"])
    p.add_argument("--source", default="1920x1080", help="WxH of the synthetic frames")
    p.add_argument("--max-resolution", default="960,1280")
    p.add_argument("--size", type=int, default=720)
    p.add_argument("--frames-per-batch", type=int, default=8)
    p.add_argument("--decode-chunk", type=int, default=8)
    p.add_argument("--denoise-steps", type=int, default=1)
    # GVMPipeline.__call__'s default, which demo.py does not override: every
    # frame is encoded, denoised and decoded 3 times (vmatte's bench does 1).
    p.add_argument("--ensemble", type=int, default=3)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--gvm-commit", default="aaa7cf3", help="the commit --src was taken from")
    a = p.parse_args()
    sw, sh = (int(v) for v in a.source.lower().split("x"))

    sys.path.insert(0, a.src)
    import torch
    import torch.nn.functional as F
    import diffusers
    diffusers.utils.logging.set_verbosity_error()  # e.g. "install accelerate": stdout stays one JSON, stderr quiet
    from diffusers import AutoencoderKLTemporalDecoder, FlowMatchEulerDiscreteScheduler
    stubbed = stub_unused_imports()
    from gvm.models.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel
    from gvm.pipelines.pipeline_gvm import GVMPipeline

    device = torch.device(a.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    started = time.perf_counter()
    if a.random_published:
        # Created on the device in f32, the dtype demo.py loads in: 1.5 B
        # parameters draw their random init there in seconds, not minutes.
        with device:
            unet = UNetSpatioTemporalConditionModel(**UNET_PUBLISHED)
            vae = AutoencoderKLTemporalDecoder(**VAE_PUBLISHED)
        scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    else:
        # As demo.py ('svd' pretrain type). The LoRA is not applied: GVM's
        # loader wraps the UNet in peft's LoraModel, whose unmerged adapters
        # cost a little more than a LoRA merged into the weights (which costs
        # nothing); the stock model's timing is what is compared.
        vae = AutoencoderKLTemporalDecoder.from_pretrained(a.weights, subfolder="vae")
        unet = UNetSpatioTemporalConditionModel.from_pretrained(
            a.weights, subfolder="unet", class_embed_type=None)
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(a.weights, subfolder="scheduler")
    width = unet.config.cross_attention_dim
    if width != 1024:
        # The tiny fixture's cross_attention_dim is 1 and the pipeline passes
        # a (B, 1, 1024) zero context; zeros of the model's width give the
        # same output (the fixture's README), so swap them in.
        def narrow(_module, args, kwargs):
            ctx = kwargs["encoder_hidden_states"]
            kwargs["encoder_hidden_states"] = ctx.new_zeros(*ctx.shape[:2], width)
            return args, kwargs
        unet.register_forward_pre_hook(narrow, with_kwargs=True)

    marks = {}

    class TimedGVM(GVMPipeline):
        """The stage boundaries, each after waiting for the device."""

        def encode(self, input):
            latent = super().encode(input)
            sync()
            marks["encoded"] = time.perf_counter()
            return latent

        def decode(self, latents, decode_chunk_size=16):
            sync()
            marks["decoding"] = time.perf_counter()
            return super().decode(latents, decode_chunk_size=decode_chunk_size)

    pipe = TimedGVM(vae=vae, unet=unet, scheduler=scheduler).to(device)
    if a.dtype == "f32":
        keep = vae.to  # __call__ runs self.vae.to(dtype=torch.float16) each time
        vae.to = lambda *args, dtype=None, **kw: keep(*args, **kw)
    else:
        vae.to(dtype=torch.float16)  # that cast done now, not in the first window
    load_seconds = time.perf_counter() - started
    unet_params = sum(t.numel() for t in unet.parameters())
    vae_params = sum(t.numel() for t in vae.parameters())
    weights_mib = torch.cuda.memory_allocated() / 2**20 if cuda else None

    # Synthetic frames in [0, 1] at source size: constant plus noise; the
    # content does not change the work.
    gen = torch.Generator().manual_seed(1)
    n = a.frames_per_batch
    clip = (0.5 + 0.2 * torch.randn(n, 3, sh, sw, generator=gen)).clamp(0, 1).to(device)

    def window(rh, rw):
        sync()
        t0 = time.perf_counter()
        x = clip if (rh, rw) == (sh, sw) else F.interpolate(
            clip, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
        # demo.py's impad_multi: centred zeros to the next multiples of 32.
        ph, pw = -(-rh // 32) * 32, -(-rw // 32) * 32
        top, left = (ph - rh) // 2, (pw - rw) // 2
        padded = x.new_zeros(n, 3, ph, pw)
        padded[:, :, top:top + rh, left:left + rw] = x
        out = pipe(padded, num_frames=n, num_overlap_frames=1, num_interp_frames=1,
                   decode_chunk_size=a.decode_chunk, num_inference_steps=a.denoise_steps,
                   noise_type="zeros", mode="matte", ensemble_size=a.ensemble)
        alpha = F.interpolate(out.alpha[:, :, top:top + rh, left:left + rw], (sh, sw), mode="bilinear")
        alpha[alpha >= 240 / 255] = 1.0
        alpha[alpha <= 25 / 255] = 0.0
        sync()
        t3 = time.perf_counter()
        t1, t2 = marks["encoded"], marks["decoding"]
        return t3 - t0, t1 - t0, t2 - t1, t3 - t2

    rows = []
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16, enabled=a.dtype == "f16")
    with torch.no_grad(), autocast:
        for max_res in (int(v) for v in a.max_resolution.split(",")):
            # As vmatte bench-gvm: the shorter side is --size, lowered below
            # max_res (torchvision refuses max_size <= size).
            size = max(min(a.size, max_res - 8), 32)
            rh, rw = model_sees(sw, sh, size, max_res)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            times = [window(rh, rw) for _ in range(a.warmup + a.windows)][a.warmup:]
            total, enc, den, dec = (statistics.median(c) for c in zip(*times))
            rows.append({"max_resolution": max_res, "model_sees": f"{rw}x{rh}",
                         "padded": f"{-(-rw // 32) * 32}x{-(-rh // 32) * 32}",
                         "frames_per_window": n, "seconds_per_window": total,
                         "encode_seconds": enc, "denoise_seconds": den, "decode_seconds": dec,
                         "frames_per_second": n / total,
                         "gpu_mem_max_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                         # closer to what NVML (vmatte's figure) sees: the allocator's cache too
                         "gpu_mem_reserved_max_mib":
                             torch.cuda.max_memory_reserved() / 2**20 if cuda else None})
    print(json.dumps({
        "peer": "GVM reference pipeline", "gvm_commit": a.gvm_commit,
        "diffusers": diffusers.__version__, "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu", "dtype": a.dtype,
        "precision": ("f32 weights under fp16 autocast, VAE cast to fp16 by the pipeline (as demo.py)"
                      if a.dtype == "f16" else "f32 throughout"),
        "weights": "random, published sizes" if a.random_published else a.weights,
        "unet_parameters": unet_params, "vae_parameters": vae_params, "load_seconds": load_seconds,
        "gpu_mem_weights_mib": weights_mib, "lora": "not applied", "stubbed_imports": stubbed,
        "ensemble": a.ensemble, "denoise_steps": a.denoise_steps, "decode_chunk": a.decode_chunk,
        "source": f"{sw}x{sh}", "size": a.size, "windows": a.windows, "warmup": a.warmup,
        "rows": rows,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
