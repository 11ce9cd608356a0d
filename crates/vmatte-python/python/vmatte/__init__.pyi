# SPDX-License-Identifier: GPL-3.0-or-later
# Written by scripts/gen-python-stub.py from the CLI's options: do not edit
# the option lists by hand.
"""vmatte: alpha mattes from videos, on a CPU or a GPU, without PyTorch."""
import os
from typing import Any, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import models as models

_Path = Union[str, "os.PathLike[str]"]
_Value = Union[str, int, float, "os.PathLike[str]"]
_Inputs = Union[_Path, Sequence[_Path]]

__version__: str

class VmatteError(Exception):
    """Anything vmatte refuses or fails at."""

class OptionError(VmatteError, ValueError):
    """An option, its value or a combination was refused (the command line's message)."""

class ModelError(VmatteError):
    """The model could not be found, opened or loaded."""

class InputError(VmatteError):
    """Inputs failed; the others were done. ``results``: every input's dict; ``failures``: the failed."""

    results: list[dict[str, Any]]
    failures: list[dict[str, Any]]

class RunError(VmatteError):
    """A run failed as a whole."""

class FrameError(VmatteError, ValueError):
    """Frames ``Matter.step`` cannot take (shape, type, size)."""

class InternalError(VmatteError):
    """A bug in vmatte; please report it."""

def matte(
    inputs: _Inputs,
    output_dir: _Path,
    *,
    check: bool = True,
    preset: _Value | None = None,
    config: _Value | None = None,
    model: _Value | None = None,
    weights: _Value | None = None,
    model_dir: _Value | None = None,
    device: _Value | None = None,
    dtype: _Value | None = None,
    hwdec: _Value | None = None,
    encoder: _Value | None = None,
    postprocess: _Value | None = None,
    preprocess: _Value | None = None,
    downsample_ratio: _Value | None = None,
    seq_chunk: _Value | None = None,
    outputs: _Value | Sequence[_Value] | None = None,
    format: _Value | None = None,
    background: _Value | None = None,
    crf: _Value | None = None,
    bitrate: _Value | None = None,
    codec: _Value | None = None,
    depth: _Value | None = None,
    premultiplied: bool = False,
    invert_alpha: bool = False,
    exr_compression: _Value | None = None,
    linear: bool = False,
    no_audio: bool = False,
    fps: _Value | None = None,
    strict: bool = False,
    max_frames: _Value | None = None,
    image_seq_only: bool = False,
    foreground: _Value | None = None,
    matte_shrink: _Value | None = None,
    matte_grow: _Value | None = None,
    matte_feather: _Value | None = None,
    matte_levels: _Value | None = None,
    despeckle: _Value | None = None,
    despill: _Value | None = None,
    temporal_smooth: _Value | None = None,
    frames_per_batch: _Value | None = None,
    overlap_frames: _Value | None = None,
    interp_frames: _Value | None = None,
    denoise_steps: _Value | None = None,
    decode_chunk: _Value | None = None,
    size: _Value | None = None,
    max_resolution: _Value | None = None,
    ensemble: _Value | None = None,
    lora: _Value | None = None,
    no_lora: bool = False,
    mask: _Value | None = None,
    mask_dir: _Value | None = None,
    mask_at: _Value | Sequence[_Value] | None = None,
    warmup: _Value | None = None,
    mask_erode: _Value | None = None,
    mask_dilate: _Value | None = None,
    max_size: _Value | None = None,
    mem_every: _Value | None = None,
    max_mem_frames: _Value | None = None,
    top_k: _Value | None = None,
    vram_limit: _Value | None = None,
) -> list[dict[str, Any]]:
    """Mattes videos (or image folders) into ``output_dir``; one report per input.

    Options (``vmatte matte --help``):

        preset: Start from a named preset: standard, high, ultra (MobileNetV3 at
            ratio 0.25 / 0.5 / 1.0 for 1080p, scaled by resolution), quality
            (ResNet50), fast, or one of your config file. `vmatte presets` lists
            them
        config: Config file with your presets [default:
            ~/.config/vmatte/config.toml]
        model: Model to run: rvm-mobilenetv3 (fast, the default), rvm-resnet50
            (sharper), gvm (diffusion: finest hair and motion blur, needs a GPU for
            speed; see the GVM options below), or matanyone (the subject a mask
            picks; see the MatAnyone options below)
        weights: Run these weights instead of the installed model (.pth,
            .safetensors or the RVM .onnx export; a GVM diffusers folder)
        model_dir: Where installed models live [default:
            $XDG_DATA_HOME/vmatte/models]
        device: cpu, or cuda / cuda:N in builds with the `cuda` feature
        dtype: Inference precision: f32, or f16 / bf16 (for GPUs)
        hwdec: Video decoding: nvdec (NVIDIA's hardware decoders, falling back to
            the CPU where they cannot open), cpu, or auto (nvdec when --device is a
            GPU)
        encoder: H.264 and H.265 (mp4) encoding: nvenc (NVIDIA's hardware encoders,
            falling back to the CPU's with one line where they cannot open: no
            driver, a card without NVENC such as the H100, a 10-bit output), cpu
            (libx264/libx265), or auto (nvenc when --device is a GPU)
        postprocess: Where 8-bit outputs are composited and converted to pixels:
            device (tensor ops beside the model, then only the output bytes are
            copied back), cpu, or auto (device on a GPU). The bytes are the same
        preprocess: How 8-bit 4:2:0 video is converted to RGB: device (beside the
            model: on a GPU the decoded planes are uploaded, 1.5 bytes a pixel
            instead of 12; on the CPU one vectorised pass straight to the model's
            planar floats), cpu (swscale's 8-bit RGB, then repacked), or auto
            (device)
        downsample_ratio: How much to shrink frames before the network: a ratio in
            (0, 1], or auto (long side to 512 px) [default: auto]. Guide: 720p
            0.375, 1080p 0.25, 4K 0.125; raise it (0.6 / 0.4 / 0.2) for full-body
            shots
        seq_chunk: Frames per inference call; more uses more memory and can be
            faster on a GPU [default: 2 on the CPU; on a GPU planned from its free
            memory, else 4]
        outputs: What to write, comma-separated [default: composite,alpha]:
            composite (over --background), alpha (the matte, gray), foreground
            (straight colour), rgba (colour + matte as alpha; needs prores, webm,
            mov, png, tiff or exr)
        format: mp4 (H.264/H.265), prores (ProRes 4444 .mov, real alpha), webm (VP9
            with alpha), mov (QuickTime Animation, lossless), png, tiff or exr (a
            numbered image folder per kind; exr: OpenEXR, half or float) [default:
            mp4]
        background: Composite background: a colour (#RRGGBB, R,G,B or a name such as
            white, black, blue), an image, or a video (looped) [default: RVM's green
            120,255,155]
        crf: Quality of mp4/webm outputs, 0 (lossless) to 51 (63 for webm); lower is
            better [default: 18]
        bitrate: Average bitrate of mp4/webm outputs instead of --crf, e.g. 8M or
            2500k
        codec: Codec of --format mp4: h264 or h265
        depth: Bits per sample: 8 or 16 for png/tiff [default: 16 for sources deeper
            than 8 bits], 10 or 12 (4444 XQ) for prores [default: 10], 16 (half) or
            32 (float) for exr [default: 16]
        premultiplied: rgba outputs carry colour premultiplied by alpha (straight
            otherwise)
        invert_alpha: Write 1 - alpha in alpha and rgba outputs
        exr_compression: Compression of --format exr: zip, piz (both lossless) or
            none [default: zip]
        linear: --format exr in linear light: colour converted from the source's
            transfer function (sRGB, BT.709/BT.2020, PQ with 1.0 = 100 cd/m², HLG),
            its primaries in the header's chromaticities
        no_audio: Leave the input's audio out (by default every audio stream is
            copied, or re-encoded to AAC/Opus where the container needs it)
        fps: Frame rate of image-folder inputs, e.g. 25 or 30000/1001
        strict: Damaged frames the decoder concealed fail the video (by default they
            are warnings in the log and the summary)
        max_frames: Matte only the first N frames of each input
        image_seq_only: Write only numbered PNG sequences, no video files (same as
            --format png)
        foreground: Foreground colour of composite, foreground and rgba outputs:
            model (RVM's prediction), estimate (solved from the frame and the matte,
            removing the old background from soft edges), source (the frame's own
            colour), or auto (model for RVM, estimate for GVM and `finish`)
        matte_shrink: Choke: move the matte's edge in by PX pixels (fractions
            allowed), up to 64
        matte_grow: Spread: move the matte's edge out by PX pixels (fractions
            allowed), up to 64
        matte_feather: Soften the matte's edge by PX pixels (a Gaussian of sigma
            PX/2), up to 64
        matte_levels: Clip the matte's black and white points: at or below LO is 0,
            at or above HI is 1, e.g. 0.05,0.95
        despeckle: Remove islands and fill holes in the matte smaller than AREA
            pixels
        despill: Suppress green or blue screen spill on the foreground colour; auto
            tells the screen from the background
        temporal_smooth: Steady the matte over N frames where the picture does not
            move (moving edges are left sharp), 2 to 64; keeps N 16-bit frames of
            matte (at 1080p, 4 MB each)
        frames_per_batch: Key frames the diffusion model sees at once; more is
            smoother and needs more GPU memory [default: 8]
        overlap_frames: Key frames each window shares with the previous one; their
            latents are blended linearly so windows join without seams [default: 0]
        interp_frames: Run the model on every k-th frame and interpolate the mattes
            between (k times less model work; fast motion blurs between key frames).
            1 = every frame [default: 1]
        denoise_steps: UNet passes per window, 1 to 3; GVM is trained for 1
            [default: 1]
        decode_chunk: Frames the VAE decodes at once; fewer needs less memory
            [default: 8]
        size: The shorter side the model sees, in pixels [default: 720]
        max_resolution: ...unless the longer side would pass this [default: 1024]
        ensemble: Reproduce the reference code's 3-copy ensemble exactly (it only
            differs where decode chunks straddle copies); 1 computes each frame once
            [default: 1]
        lora: Merge this LoRA (a folder with adapter_config.json and its weights)
            instead of the one beside the UNet
        no_lora: Run the base UNet without its LoRA
        mask: The subject's mask on the first frame: a PNG (white = subject, any
            size: scaled to the video), or auto (RVM's matte of the first frame,
            threshold 0.5) [default: <stem>.mask.png beside the video, else in
            --mask-dir; with auto, that file when it is there]
        mask_dir: Where `<stem>.mask.png` masks are looked for when none is beside
            the video
        mask_at: Re-anchor the subject at a later frame (0-based) with this mask: a
            correction or a new shot. Repeatable
        warmup: First-frame predictions before the first frame is written [default:
            10]
        mask_erode: Erode the mask with an elliptical kernel this wide [default: 10]
        mask_dilate: Dilate the mask (before eroding) with an elliptical kernel this
            wide [default: 10]
        max_size: The shorter side the model sees at most; the matte is scaled back
            [default: the video's size]
        mem_every: Memorise a frame every N frames [default: 5]
        max_mem_frames: Memory frames kept, the first frame's included [default: 5]
        top_k: Memory tokens each pixel reads [default: 30]
        vram_limit: GPU memory vmatte may plan for: an amount (10GiB, 512MiB) or a
            share of the card (0.8, 80%) [default: the card's free memory]. Sizes
            --seq-chunk when it is not given
    """

def batch(
    inputs: _Inputs,
    output_dir: _Path,
    *,
    check: bool = True,
    list: _Value | None = None,
    retry_failed: bool = False,
    preset: _Value | None = None,
    config: _Value | None = None,
    model: _Value | None = None,
    weights: _Value | None = None,
    model_dir: _Value | None = None,
    device: _Value | None = None,
    dtype: _Value | None = None,
    hwdec: _Value | None = None,
    encoder: _Value | None = None,
    postprocess: _Value | None = None,
    preprocess: _Value | None = None,
    downsample_ratio: _Value | None = None,
    seq_chunk: _Value | None = None,
    outputs: _Value | Sequence[_Value] | None = None,
    format: _Value | None = None,
    background: _Value | None = None,
    crf: _Value | None = None,
    bitrate: _Value | None = None,
    codec: _Value | None = None,
    depth: _Value | None = None,
    premultiplied: bool = False,
    invert_alpha: bool = False,
    exr_compression: _Value | None = None,
    linear: bool = False,
    no_audio: bool = False,
    fps: _Value | None = None,
    strict: bool = False,
    max_frames: _Value | None = None,
    image_seq_only: bool = False,
    foreground: _Value | None = None,
    matte_shrink: _Value | None = None,
    matte_grow: _Value | None = None,
    matte_feather: _Value | None = None,
    matte_levels: _Value | None = None,
    despeckle: _Value | None = None,
    despill: _Value | None = None,
    temporal_smooth: _Value | None = None,
    frames_per_batch: _Value | None = None,
    overlap_frames: _Value | None = None,
    interp_frames: _Value | None = None,
    denoise_steps: _Value | None = None,
    decode_chunk: _Value | None = None,
    size: _Value | None = None,
    max_resolution: _Value | None = None,
    ensemble: _Value | None = None,
    lora: _Value | None = None,
    no_lora: bool = False,
    mask: _Value | None = None,
    mask_dir: _Value | None = None,
    mask_at: _Value | Sequence[_Value] | None = None,
    warmup: _Value | None = None,
    mask_erode: _Value | None = None,
    mask_dilate: _Value | None = None,
    max_size: _Value | None = None,
    mem_every: _Value | None = None,
    max_mem_frames: _Value | None = None,
    top_k: _Value | None = None,
    devices: _Value | Sequence[_Value] | None = None,
    streams: _Value | None = None,
    vram_limit: _Value | None = None,
) -> dict[str, Any]:
    """Mattes many videos through the resumable job store; the batch report.

    Options (``vmatte batch --help``):

        list: A file with one input path per line (# comments allowed)
        retry_failed: Run jobs that failed in an earlier run again
        preset: Start from a named preset: standard, high, ultra (MobileNetV3 at
            ratio 0.25 / 0.5 / 1.0 for 1080p, scaled by resolution), quality
            (ResNet50), fast, or one of your config file. `vmatte presets` lists
            them
        config: Config file with your presets [default:
            ~/.config/vmatte/config.toml]
        model: Model to run: rvm-mobilenetv3 (fast, the default), rvm-resnet50
            (sharper), gvm (diffusion: finest hair and motion blur, needs a GPU for
            speed; see the GVM options below), or matanyone (the subject a mask
            picks; see the MatAnyone options below)
        weights: Run these weights instead of the installed model (.pth,
            .safetensors or the RVM .onnx export; a GVM diffusers folder)
        model_dir: Where installed models live [default:
            $XDG_DATA_HOME/vmatte/models]
        device: cpu, or cuda / cuda:N in builds with the `cuda` feature
        dtype: Inference precision: f32, or f16 / bf16 (for GPUs)
        hwdec: Video decoding: nvdec (NVIDIA's hardware decoders, falling back to
            the CPU where they cannot open), cpu, or auto (nvdec when --device is a
            GPU)
        encoder: H.264 and H.265 (mp4) encoding: nvenc (NVIDIA's hardware encoders,
            falling back to the CPU's with one line where they cannot open: no
            driver, a card without NVENC such as the H100, a 10-bit output), cpu
            (libx264/libx265), or auto (nvenc when --device is a GPU)
        postprocess: Where 8-bit outputs are composited and converted to pixels:
            device (tensor ops beside the model, then only the output bytes are
            copied back), cpu, or auto (device on a GPU). The bytes are the same
        preprocess: How 8-bit 4:2:0 video is converted to RGB: device (beside the
            model: on a GPU the decoded planes are uploaded, 1.5 bytes a pixel
            instead of 12; on the CPU one vectorised pass straight to the model's
            planar floats), cpu (swscale's 8-bit RGB, then repacked), or auto
            (device)
        downsample_ratio: How much to shrink frames before the network: a ratio in
            (0, 1], or auto (long side to 512 px) [default: auto]. Guide: 720p
            0.375, 1080p 0.25, 4K 0.125; raise it (0.6 / 0.4 / 0.2) for full-body
            shots
        seq_chunk: Frames per inference call; more uses more memory and can be
            faster on a GPU [default: 2 on the CPU; on a GPU planned from its free
            memory, else 4]
        outputs: What to write, comma-separated [default: composite,alpha]:
            composite (over --background), alpha (the matte, gray), foreground
            (straight colour), rgba (colour + matte as alpha; needs prores, webm,
            mov, png, tiff or exr)
        format: mp4 (H.264/H.265), prores (ProRes 4444 .mov, real alpha), webm (VP9
            with alpha), mov (QuickTime Animation, lossless), png, tiff or exr (a
            numbered image folder per kind; exr: OpenEXR, half or float) [default:
            mp4]
        background: Composite background: a colour (#RRGGBB, R,G,B or a name such as
            white, black, blue), an image, or a video (looped) [default: RVM's green
            120,255,155]
        crf: Quality of mp4/webm outputs, 0 (lossless) to 51 (63 for webm); lower is
            better [default: 18]
        bitrate: Average bitrate of mp4/webm outputs instead of --crf, e.g. 8M or
            2500k
        codec: Codec of --format mp4: h264 or h265
        depth: Bits per sample: 8 or 16 for png/tiff [default: 16 for sources deeper
            than 8 bits], 10 or 12 (4444 XQ) for prores [default: 10], 16 (half) or
            32 (float) for exr [default: 16]
        premultiplied: rgba outputs carry colour premultiplied by alpha (straight
            otherwise)
        invert_alpha: Write 1 - alpha in alpha and rgba outputs
        exr_compression: Compression of --format exr: zip, piz (both lossless) or
            none [default: zip]
        linear: --format exr in linear light: colour converted from the source's
            transfer function (sRGB, BT.709/BT.2020, PQ with 1.0 = 100 cd/m², HLG),
            its primaries in the header's chromaticities
        no_audio: Leave the input's audio out (by default every audio stream is
            copied, or re-encoded to AAC/Opus where the container needs it)
        fps: Frame rate of image-folder inputs, e.g. 25 or 30000/1001
        strict: Damaged frames the decoder concealed fail the video (by default they
            are warnings in the log and the summary)
        max_frames: Matte only the first N frames of each input
        image_seq_only: Write only numbered PNG sequences, no video files (same as
            --format png)
        foreground: Foreground colour of composite, foreground and rgba outputs:
            model (RVM's prediction), estimate (solved from the frame and the matte,
            removing the old background from soft edges), source (the frame's own
            colour), or auto (model for RVM, estimate for GVM and `finish`)
        matte_shrink: Choke: move the matte's edge in by PX pixels (fractions
            allowed), up to 64
        matte_grow: Spread: move the matte's edge out by PX pixels (fractions
            allowed), up to 64
        matte_feather: Soften the matte's edge by PX pixels (a Gaussian of sigma
            PX/2), up to 64
        matte_levels: Clip the matte's black and white points: at or below LO is 0,
            at or above HI is 1, e.g. 0.05,0.95
        despeckle: Remove islands and fill holes in the matte smaller than AREA
            pixels
        despill: Suppress green or blue screen spill on the foreground colour; auto
            tells the screen from the background
        temporal_smooth: Steady the matte over N frames where the picture does not
            move (moving edges are left sharp), 2 to 64; keeps N 16-bit frames of
            matte (at 1080p, 4 MB each)
        frames_per_batch: Key frames the diffusion model sees at once; more is
            smoother and needs more GPU memory [default: 8]
        overlap_frames: Key frames each window shares with the previous one; their
            latents are blended linearly so windows join without seams [default: 0]
        interp_frames: Run the model on every k-th frame and interpolate the mattes
            between (k times less model work; fast motion blurs between key frames).
            1 = every frame [default: 1]
        denoise_steps: UNet passes per window, 1 to 3; GVM is trained for 1
            [default: 1]
        decode_chunk: Frames the VAE decodes at once; fewer needs less memory
            [default: 8]
        size: The shorter side the model sees, in pixels [default: 720]
        max_resolution: ...unless the longer side would pass this [default: 1024]
        ensemble: Reproduce the reference code's 3-copy ensemble exactly (it only
            differs where decode chunks straddle copies); 1 computes each frame once
            [default: 1]
        lora: Merge this LoRA (a folder with adapter_config.json and its weights)
            instead of the one beside the UNet
        no_lora: Run the base UNet without its LoRA
        mask: The subject's mask on the first frame: a PNG (white = subject, any
            size: scaled to the video), or auto (RVM's matte of the first frame,
            threshold 0.5) [default: <stem>.mask.png beside the video, else in
            --mask-dir; with auto, that file when it is there]
        mask_dir: Where `<stem>.mask.png` masks are looked for when none is beside
            the video
        mask_at: Re-anchor the subject at a later frame (0-based) with this mask: a
            correction or a new shot. Repeatable
        warmup: First-frame predictions before the first frame is written [default:
            10]
        mask_erode: Erode the mask with an elliptical kernel this wide [default: 10]
        mask_dilate: Dilate the mask (before eroding) with an elliptical kernel this
            wide [default: 10]
        max_size: The shorter side the model sees at most; the matte is scaled back
            [default: the video's size]
        mem_every: Memorise a frame every N frames [default: 5]
        max_mem_frames: Memory frames kept, the first frame's included [default: 5]
        top_k: Memory tokens each pixel reads [default: 30]
        devices: Spread the jobs over these devices, comma-separated (cuda:0,cuda:1)
            [default: --device]
        streams: Videos matted at once per device, each with its own recurrent
            state; several keep a GPU busy while others decode and encode [default:
            1 on the CPU; on a GPU, as many as fit in its free memory, up to 4]
        vram_limit: GPU memory vmatte may plan for: an amount (10GiB, 512MiB) or a
            share of the card (0.8, 80%) [default: the card's free memory]. Sizes
            the chunks and streams that are not given; running out of memory anyway
            halves the chunk, then the streams, then moves the video to the CPU
    """

def finish(
    video: _Path,
    matte: _Path,
    output_dir: _Path,
    *,
    check: bool = True,
    matte: _Value | None = None,
    preset: _Value | None = None,
    config: _Value | None = None,
    outputs: _Value | Sequence[_Value] | None = None,
    format: _Value | None = None,
    background: _Value | None = None,
    crf: _Value | None = None,
    bitrate: _Value | None = None,
    codec: _Value | None = None,
    depth: _Value | None = None,
    premultiplied: bool = False,
    invert_alpha: bool = False,
    exr_compression: _Value | None = None,
    linear: bool = False,
    no_audio: bool = False,
    fps: _Value | None = None,
    strict: bool = False,
    max_frames: _Value | None = None,
    image_seq_only: bool = False,
    foreground: _Value | None = None,
    matte_shrink: _Value | None = None,
    matte_grow: _Value | None = None,
    matte_feather: _Value | None = None,
    matte_levels: _Value | None = None,
    despeckle: _Value | None = None,
    despill: _Value | None = None,
    temporal_smooth: _Value | None = None,
) -> dict[str, Any]:
    """Finishes ``video`` with a matte made elsewhere; the report.

    Options (``vmatte finish --help``):

        matte: Its matte: a video or a folder of numbered images, gray (white is the
            subject), of the same size and length as VIDEO
        preset: Start from a named preset's output and finishing settings
        config: Config file with your presets [default:
            ~/.config/vmatte/config.toml]
        outputs: What to write, comma-separated [default: composite,alpha]:
            composite (over --background), alpha (the matte, gray), foreground
            (straight colour), rgba (colour + matte as alpha; needs prores, webm,
            mov, png, tiff or exr)
        format: mp4 (H.264/H.265), prores (ProRes 4444 .mov, real alpha), webm (VP9
            with alpha), mov (QuickTime Animation, lossless), png, tiff or exr (a
            numbered image folder per kind; exr: OpenEXR, half or float) [default:
            mp4]
        background: Composite background: a colour (#RRGGBB, R,G,B or a name such as
            white, black, blue), an image, or a video (looped) [default: RVM's green
            120,255,155]
        crf: Quality of mp4/webm outputs, 0 (lossless) to 51 (63 for webm); lower is
            better [default: 18]
        bitrate: Average bitrate of mp4/webm outputs instead of --crf, e.g. 8M or
            2500k
        codec: Codec of --format mp4: h264 or h265
        depth: Bits per sample: 8 or 16 for png/tiff [default: 16 for sources deeper
            than 8 bits], 10 or 12 (4444 XQ) for prores [default: 10], 16 (half) or
            32 (float) for exr [default: 16]
        premultiplied: rgba outputs carry colour premultiplied by alpha (straight
            otherwise)
        invert_alpha: Write 1 - alpha in alpha and rgba outputs
        exr_compression: Compression of --format exr: zip, piz (both lossless) or
            none [default: zip]
        linear: --format exr in linear light: colour converted from the source's
            transfer function (sRGB, BT.709/BT.2020, PQ with 1.0 = 100 cd/m², HLG),
            its primaries in the header's chromaticities
        no_audio: Leave the input's audio out (by default every audio stream is
            copied, or re-encoded to AAC/Opus where the container needs it)
        fps: Frame rate of image-folder inputs, e.g. 25 or 30000/1001
        strict: Damaged frames the decoder concealed fail the video (by default they
            are warnings in the log and the summary)
        max_frames: Matte only the first N frames of each input
        image_seq_only: Write only numbered PNG sequences, no video files (same as
            --format png)
        foreground: Foreground colour of composite, foreground and rgba outputs:
            model (RVM's prediction), estimate (solved from the frame and the matte,
            removing the old background from soft edges), source (the frame's own
            colour), or auto (model for RVM, estimate for GVM and `finish`)
        matte_shrink: Choke: move the matte's edge in by PX pixels (fractions
            allowed), up to 64
        matte_grow: Spread: move the matte's edge out by PX pixels (fractions
            allowed), up to 64
        matte_feather: Soften the matte's edge by PX pixels (a Gaussian of sigma
            PX/2), up to 64
        matte_levels: Clip the matte's black and white points: at or below LO is 0,
            at or above HI is 1, e.g. 0.05,0.95
        despeckle: Remove islands and fill holes in the matte smaller than AREA
            pixels
        despill: Suppress green or blue screen spill on the foreground colour; auto
            tells the screen from the background
        temporal_smooth: Steady the matte over N frames where the picture does not
            move (moving edges are left sharp), 2 to 64; keeps N 16-bit frames of
            matte (at 1080p, 4 MB each)
    """

def options(command: str = "matte") -> list[dict[str, str]]:
    """The options ``command`` takes as keywords: ``name``, ``flag``, ``takes``, ``help``."""

class Matter:
    """Frames in, mattes out, the model's state kept between calls.

    ``step(frames)``: ``(T, H, W, 3)`` or ``(H, W, 3)`` uint8 or float32 in [0, 1]
    (numpy, or PyTorch tensors) to ``(alpha, fgr)``, ``(T, H, W)`` and
    ``(T, H, W, 3)`` float32 (PyTorch in, PyTorch out). GVM answers the frames
    whose windows settled (``fgr`` None) and ``flush()`` the rest.
    """

    model: str

    def __init__(
        self,
        model: str = "rvm-mobilenetv3",
        device: str = "cpu",
        downsample_ratio: float | str = "auto",
        dtype: str = "f32",
        *,
        model_dir: _Path | None = None,
        seq_chunk: int | None = None,
        frames_per_batch: int = ...,
        overlap_frames: int = ...,
        interp_frames: int = ...,
        denoise_steps: int = ...,
        decode_chunk: int = ...,
        size: int = ...,
        max_resolution: int = ...,
        ensemble: int = ...,
        lora: str = ...,
    ) -> None: ...
    @property
    def kind(self) -> str:
        """``"rvm"`` or ``"gvm"``."""
    def step(self, frames: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """Mattes the next frames: ``(alpha, fgr)``."""
    def __call__(self, frames: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]: ...
    def flush(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """The video ended: the frames still waiting (GVM); the state reset."""
    def reset(self) -> None:
        """Forgets the frames so far (a cut, another video)."""
