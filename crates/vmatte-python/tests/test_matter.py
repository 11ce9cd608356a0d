# SPDX-License-Identifier: GPL-3.0-or-later
"""`vmatte.Matter` fed the same frames as `vmatte matte`, in chunks.

Tolerance 1/255: the command writes 8-bit PNGs (round(x * 255)), so its
value is within 0.5/255 of its float; the two paths run the same kernels
on the same pixels, and what is left (chunking moves no arithmetic in
RVM's convolutions, the ConvGRU loops frame by frame either way) is far
below the other half level."""
import numpy as np
import pytest

import vmatte
from vmatte_testing import read_pngs, run_rust

TOL = 1 / 255 + 1e-6


@pytest.fixture(scope="module")
def frames(frames_dir):
    return read_pngs(frames_dir, "RGB")


@pytest.fixture(scope="module")
def cli_mattes(rust_bin, frames_dir, models, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    done = run_rust(rust_bin, "matte", frames_dir, "-o", out, "--model-dir", models, "--format", "png",
                    "--outputs", "alpha,foreground", "--downsample-ratio", "0.375")
    assert done.returncode == 0, done.stderr
    alpha = read_pngs(out / "frames.alpha").astype(np.float32) / 255
    fgr = read_pngs(out / "frames.foreground", "RGB").astype(np.float32) / 255
    return alpha, fgr


def stream(m, frames, chunk):
    alphas, fgrs = [], []
    for i in range(0, len(frames), chunk):
        a, f = m.step(frames[i:i + chunk])
        assert a.shape == (len(frames[i:i + chunk]), 180, 320) and f.shape == a.shape + (3,)
        assert a.dtype == f.dtype == np.float32
        alphas.append(a)
        fgrs.append(f)
    return np.concatenate(alphas), np.concatenate(fgrs)


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_stream_matches_the_command_frame_by_frame(models, frames, cli_mattes, chunk):
    m = vmatte.Matter("rvm-mobilenetv3", downsample_ratio=0.375, model_dir=models)
    alpha, fgr = stream(m, frames, chunk)
    want_alpha, want_fgr = cli_mattes
    for i in range(len(frames)):
        assert np.abs(alpha[i] - want_alpha[i]).max() <= TOL, f"frame {i} alpha"
        assert np.abs(fgr[i] - want_fgr[i]).max() <= TOL, f"frame {i} foreground"


def test_float32_frames_and_one_frame(models, frames):
    m = vmatte.Matter(downsample_ratio=0.375, model_dir=models)
    a8, f8 = m.step(frames[:2])
    m.reset()
    a32, f32 = m.step(frames[:2].astype(np.float32) / 255)
    assert np.array_equal(a8, a32) and np.array_equal(f8, f32)
    m.reset()
    one, fgr = m.step(frames[0])
    assert one.shape == (180, 320) and fgr.shape == (180, 320, 3)
    assert np.array_equal(one, a8[0])
    # Results are the caller's: writable, not views of anything vmatte keeps.
    one[0, 0] = 7.0


def test_array_likes_and_strided_frames(models, frames):
    """Anything numpy can read (`__array__`: PyTorch CPU tensors, PIL
    images, ...) and non-contiguous views are taken as the same frames."""

    class Frames:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    m = vmatte.Matter(downsample_ratio=0.375, model_dir=models)
    want, _ = m.step(frames[:2])
    m.reset()
    got, _ = m.step(Frames(frames[:2]))
    assert np.array_equal(got, want)
    m.reset()
    flipped = frames[:2, :, ::-1][:, :, ::-1]  # a strided view of the same pixels
    got, _ = m.step(flipped)
    assert np.array_equal(got, want)


def test_state_is_kept_and_reset_forgets_it(models, frames):
    m = vmatte.Matter(downsample_ratio=0.375, model_dir=models)
    first, _ = m.step(frames[:6])
    again_without_reset, _ = m.step(frames[:3])
    # The state carried from frame 5 changes what frames 0-2 give.
    assert np.abs(again_without_reset - first[:3]).max() > 1e-3
    m.reset()
    after_reset, _ = m.step(frames[:6])
    assert np.array_equal(after_reset, first)


def test_frames_it_cannot_take(models, frames):
    m = vmatte.Matter(downsample_ratio=0.375, model_dir=models)
    with pytest.raises(vmatte.FrameError, match=r"must be \(T, H, W, 3\)"):
        m.step(frames[..., :2])
    with pytest.raises(vmatte.FrameError, match="uint8 or float32, not int64"):
        m.step(frames.astype(np.int64))
    m.step(frames[:1])
    with pytest.raises(vmatte.FrameError, match="changed size from 320x180 to 160x180; call reset"):
        m.step(np.ascontiguousarray(frames[:1, :, :160]))
    m.reset()
    a, _ = m.step(np.ascontiguousarray(frames[:1, :, :160]))
    assert a.shape == (1, 180, 160)
    # Too small for the backbone's four halvings: refused as the command
    # refuses such a video, in the same words.
    m.reset()
    with pytest.raises(vmatte.FrameError, match="3x2 frames are too small to matte"):
        m.step(np.zeros((1, 2, 3, 3), np.uint8))
    tiny = vmatte.Matter(downsample_ratio=0.05, model_dir=models)
    with pytest.raises(vmatte.FrameError, match="downsample ratio 0.05 shrinks 33x17 to under 4 px"):
        tiny.step(np.zeros((2, 17, 33, 3), np.uint8))


def test_settings_it_refuses(models):
    with pytest.raises(vmatte.OptionError, match="downsample_ratio: downsample ratio 2 is outside"):
        vmatte.Matter(downsample_ratio=2, model_dir=models)
    with pytest.raises(vmatte.OptionError, match="unknown device 'gpu'"):
        vmatte.Matter(device="gpu", model_dir=models)
    with pytest.raises(vmatte.ModelError, match="rvm-resnet50"):
        vmatte.Matter("rvm-resnet50", model_dir=models)
    with pytest.raises(vmatte.OptionError, match="not GVM"):
        vmatte.Matter(model_dir=models, frames_per_batch=4)
    with pytest.raises(TypeError, match="sparkle"):
        vmatte.Matter(model_dir=models, sparkle=1)


def test_gvm_stream_matches_the_command(rust_bin, fixtures, frames, tmp_path):
    """GVM (the tiny random fixture) through the same object: its windows
    settle as frames come; flush() runs the last one."""
    small = np.ascontiguousarray(frames[:7, ::2, ::2])  # 160x90
    src = tmp_path / "frames"
    src.mkdir()
    from PIL import Image

    for i, f in enumerate(small):
        Image.fromarray(f).save(src / f"{i:04d}.png")
    vmatte.models.import_(fixtures / "gvm" / "weights", name="gvm", model_dir=tmp_path / "m")
    opts = dict(size=64, max_resolution=128, frames_per_batch=3, overlap_frames=1)
    done = run_rust(rust_bin, "matte", src, "-o", tmp_path / "cli", "--model", "gvm", "--model-dir",
                    tmp_path / "m", "--outputs", "alpha", "--format", "png",
                    *[a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))])
    assert done.returncode == 0, done.stderr
    want = read_pngs(tmp_path / "cli" / "frames.alpha").astype(np.float32) / 255

    m = vmatte.Matter("gvm", model_dir=tmp_path / "m", **opts)
    assert m.kind == "gvm"
    got = []
    for i in range(0, len(small), 3):
        a, fgr = m.step(small[i:i + 3])
        assert fgr is None
        got.append(a)
    a, _ = m.flush()
    got.append(a)
    alpha = np.concatenate(got)
    assert alpha.shape == (7, 90, 160)
    assert np.abs(alpha - want).max() <= TOL
