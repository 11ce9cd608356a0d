//! YUV 4:2:0 to RGB beside the model. On a GPU, frames then cross as
//! their decoded planes (1.5 bytes a pixel) instead of planar f32 RGB (12
//! bytes a pixel), and the conversion is tensor ops on the device. On the
//! CPU the same arithmetic is one vectorised pass per row, straight to the
//! planar f32 the model takes: swscale's packed 8-bit RGB and the repack
//! to planes cost several times that. The result is what swscale gives to
//! within a few 1/255 steps: chroma is upsampled bilinearly between sample
//! centres, and the RGB is not rounded to 8 bits before the model sees it.

use std::mem::MaybeUninit;

use candle_core::{DType, Device, Tensor};
use vmatte_media::Yuv420;

use crate::Result;

/// `[T, 3, H, W]` RGB in [0, 1] on `device` from T frames' planes, which
/// must share one matrix and range (they come from one stream).
pub fn yuv420_to_rgb(
    frames: &[&Yuv420],
    width: usize,
    height: usize,
    device: &Device,
) -> Result<Tensor> {
    if device.is_cpu() {
        let planar = yuv420_to_planar(frames, width, height);
        return Ok(Tensor::from_vec(
            planar,
            (frames.len(), 3, height, width),
            device,
        )?);
    }
    yuv420_to_rgb_tensors(frames, width, height, device)
}

/// How samples become R, G and B: Y' in [0, 1] is `y * luma.0 + luma.1`,
/// Cb and Cr in [-0.5, 0.5] are `c * chroma.0 + chroma.1`, and the matrix
/// rows are R = Y' + r·Cr, G = Y' - g.0·Cb - g.1·Cr, B = Y' + b·Cb.
#[derive(Clone, Copy)]
struct Matrix {
    luma: (f32, f32),
    chroma: (f32, f32),
    r: f32,
    g: (f32, f32),
    b: f32,
}

impl Matrix {
    fn of(frame: &Yuv420) -> Self {
        let (y_scale, y_offset, c_scale) = if frame.full_range {
            (1.0 / 255.0, 0.0, 1.0 / 255.0)
        } else {
            (1.0 / 219.0, -16.0 / 219.0, 1.0 / 224.0)
        };
        let (kr, kb) = (f64::from(frame.kr), f64::from(frame.kb));
        let kg = 1.0 - kr - kb;
        Self {
            luma: (y_scale as f32, y_offset as f32),
            chroma: (c_scale as f32, (-128.0 * c_scale) as f32),
            r: (2.0 * (1.0 - kr)) as f32,
            g: (
                (2.0 * kb * (1.0 - kb) / kg) as f32,
                (2.0 * kr * (1.0 - kr) / kg) as f32,
            ),
            b: (2.0 * (1.0 - kb)) as f32,
        }
    }
}

/// The CPU conversion: `[T, 3, H, W]` floats, each written once.
fn yuv420_to_planar(frames: &[&Yuv420], width: usize, height: usize) -> Vec<f32> {
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let plane = width * height;
    let mut out = Vec::with_capacity(frames.len() * 3 * plane);
    let spare = &mut out.spare_capacity_mut()[..frames.len() * 3 * plane];
    // A chroma row between two sample rows, with its end samples repeated
    // on either side, and the same at full width.
    let mut between = [vec![0.0; cw + 2], vec![0.0; cw + 2]];
    let mut full = [vec![0.0; 2 * cw], vec![0.0; 2 * cw]];
    for (frame, planes) in frames.iter().zip(spare.chunks_exact_mut(3 * plane)) {
        assert!(frame.y.len() == plane && frame.u.len() == cw * ch && frame.v.len() == cw * ch);
        let m = Matrix::of(frame);
        let (r, rest) = planes.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for y in 0..height {
            // Luma row y lies a quarter of a chroma row from chroma row
            // y / 2, towards row y / 2 - 1 when even and y / 2 + 1 when odd
            // (the edges repeat their row).
            let near = y / 2;
            let far = if y % 2 == 0 {
                near.saturating_sub(1)
            } else {
                (near + 1).min(ch - 1)
            };
            for ((c, between), full) in [&frame.u, &frame.v]
                .into_iter()
                .zip(&mut between)
                .zip(&mut full)
            {
                let row = |k: usize| &c[k * cw..(k + 1) * cw];
                chroma_between(row(near), row(far), m.chroma, &mut between[1..=cw]);
                between[0] = between[1];
                between[cw + 1] = between[cw];
                chroma_doubled(between, full);
            }
            let at = y * width..(y + 1) * width;
            rgb_row(
                &frame.y[at.clone()],
                [&full[0][..width], &full[1][..width]],
                m,
                [&mut r[at.clone()], &mut g[at.clone()], &mut b[at]],
            );
        }
    }
    // SAFETY: rgb_row wrote every row of every plane of every frame.
    unsafe { out.set_len(frames.len() * 3 * plane) };
    out
}

vmatte_models::vectorized! {
    /// `¾ near + ¼ far` of two chroma rows, as Cb or Cr in [-0.5, 0.5].
    fn chroma_between(near: &[u8], far: &[u8], affine: (f32, f32), out: &mut [f32]) {
        let (scale, offset) = affine;
        for ((o, n), f) in out.iter_mut().zip(near).zip(far) {
            *o = (0.75 * f32::from(*n) + 0.25 * f32::from(*f)) * scale + offset;
        }
    }
}

vmatte_models::vectorized! {
    /// A chroma row at twice its width, between sample centres: output
    /// `2k` is `¾ c[k] + ¼ c[k - 1]` and `2k + 1` is `¾ c[k] + ¼ c[k + 1]`,
    /// `padded` being the row with its end samples repeated on either side.
    fn chroma_doubled(padded: &[f32], out: &mut [f32]) {
        for (pair, c) in out.chunks_exact_mut(2).zip(padded.windows(3)) {
            pair[0] = 0.75 * c[1] + 0.25 * c[0];
            pair[1] = 0.75 * c[1] + 0.25 * c[2];
        }
    }
}

vmatte_models::vectorized! {
    /// One row of the three RGB planes, clamped to [0, 1].
    fn rgb_row(luma: &[u8], chroma: [&[f32]; 2], m: Matrix, rgb: [&mut [MaybeUninit<f32>]; 3]) {
        let ([cb, cr], [r, g, b]) = (chroma, rgb);
        assert!(cb.len() == luma.len() && cr.len() == luma.len());
        assert!(r.len() == luma.len() && g.len() == luma.len() && b.len() == luma.len());
        let pixels = luma.iter().zip(cb).zip(cr);
        for ((((l, cb), cr), r), (g, b)) in pixels.zip(r.iter_mut()).zip(g.iter_mut().zip(b.iter_mut())) {
            let l = f32::from(*l) * m.luma.0 + m.luma.1;
            r.write((l + m.r * cr).clamp(0.0, 1.0));
            g.write((l - m.g.0 * cb - m.g.1 * cr).clamp(0.0, 1.0));
            b.write((l + m.b * cb).clamp(0.0, 1.0));
        }
    }
}

/// The conversion as tensor ops on `device` (see the module's doc).
fn yuv420_to_rgb_tensors(
    frames: &[&Yuv420],
    width: usize,
    height: usize,
    device: &Device,
) -> Result<Tensor> {
    let t = frames.len();
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let gather = |plane: fn(&Yuv420) -> &[u8]| -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| plane(f).iter().copied())
            .collect()
    };
    let upload = |bytes: Vec<u8>, h: usize, w: usize| -> Result<Tensor> {
        Ok(Tensor::from_vec(bytes, (t, 1, h, w), &Device::Cpu)?
            .to_device(device)?
            .to_dtype(DType::F32)?)
    };
    let y = upload(gather(|f| &f.y), height, width)?;
    let u = upload(gather(|f| &f.u), ch, cw)?;
    let v = upload(gather(|f| &f.v), ch, cw)?;
    let m = Matrix::of(frames[0]);
    let affine = |x: &Tensor, (scale, offset): (f32, f32)| x.affine(scale.into(), offset.into());
    let luma = affine(&y, m.luma)?;
    // Bilinear between sample centres: of the placements tried (this,
    // left-sited columns, nearest rows), the closest to swscale's.
    let chroma = affine(&Tensor::cat(&[&u, &v], 1)?, m.chroma)?
        .upsample_bilinear2d(2 * ch, 2 * cw, false)?
        .narrow(2, 0, height)?
        .narrow(3, 0, width)?;
    let (cb, cr) = (chroma.narrow(1, 0, 1)?, chroma.narrow(1, 1, 1)?);
    let r = (&luma + affine(&cr, (m.r, 0.0))?)?;
    let b = (&luma + affine(&cb, (m.b, 0.0))?)?;
    let g = ((&luma - affine(&cb, (m.g.0, 0.0))?)? - affine(&cr, (m.g.1, 0.0))?)?;
    Ok(Tensor::cat(&[&r, &g, &b], 1)?.clamp(0f32, 1f32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RGB of the first frames of `clip` both ways: swscale's 8-bit RGB
    /// and the device conversion of the planes.
    fn both_ways(clip: &std::path::Path, frames: usize) -> (Vec<f32>, Vec<f32>) {
        let mut cpu = Vec::new();
        let mut src = vmatte_media::open_source(clip, None).unwrap();
        for _ in 0..frames {
            crate::frames::push_planar(&src.next_frame().unwrap().unwrap(), &mut cpu);
        }
        let mut src = vmatte_media::open_source(clip, None).unwrap();
        src.set_yuv(true);
        let info = src.info().clone();
        let decoded: Vec<_> = (0..frames)
            .map(|_| src.next_frame().unwrap().unwrap())
            .collect();
        let planes: Vec<_> = decoded
            .iter()
            .map(|f| f.yuv.as_ref().expect("4:2:0 planes"))
            .collect();
        let rgb = yuv420_to_rgb(
            &planes,
            info.width as usize,
            info.height as usize,
            &Device::Cpu,
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
        (cpu, rgb)
    }

    fn clip(dir: &std::path::Path, size: &str, extra: &[&str]) -> std::path::PathBuf {
        let path = dir.join(format!("{size}.mp4"));
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={size}:rate=25"))
            .args(["-frames:v", "3", "-pix_fmt", "yuv420p"])
            .args(extra)
            .arg(&path)
            .status()
            .expect("ffmpeg runs (scripts/deps.sh installs it)");
        assert!(status.success());
        path
    }

    /// Mean absolute difference in 1/255 steps, and the mean signed
    /// difference of each channel (a wrong matrix or range shows as a bias).
    fn stats(cpu: &[f32], device: &[f32], frames: usize) -> (f32, [f32; 3]) {
        assert_eq!(cpu.len(), device.len());
        let n = cpu.len() / (3 * frames);
        let mean = cpu
            .iter()
            .zip(device)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            * 255.0
            / cpu.len() as f32;
        let bias = [0, 1, 2].map(|ch| {
            (0..frames)
                .flat_map(|f| (0..n).map(move |i| (f * 3 + ch) * n + i))
                .map(|i| device[i] - cpu[i])
                .sum::<f32>()
                * 255.0
                / (frames * n) as f32
        });
        (mean, bias)
    }

    /// The CPU pass and the tensor ops are one arithmetic: the CPU path's
    /// agreement with swscale (below) then holds for the device's too.
    #[test]
    fn cpu_pass_matches_the_tensor_ops() {
        let mut seed = 11u32;
        let mut byte = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        // Even and odd sizes (a last chroma column or row half used), the
        // smallest, and each range.
        for (w, h, full_range) in [
            (8usize, 6usize, false),
            (33, 17, true),
            (1, 1, false),
            (20, 3, true),
        ] {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let frames: Vec<Yuv420> = (0..2)
                .map(|_| Yuv420 {
                    y: (0..w * h).map(|_| byte()).collect(),
                    u: (0..cw * ch).map(|_| byte()).collect(),
                    v: (0..cw * ch).map(|_| byte()).collect(),
                    kr: 0.2126,
                    kb: 0.0722,
                    full_range,
                })
                .collect();
            let frames: Vec<&Yuv420> = frames.iter().collect();
            let cpu = yuv420_to_planar(&frames, w, h);
            let tensors = yuv420_to_rgb_tensors(&frames, w, h, &Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(cpu.len(), tensors.len());
            let worst = cpu
                .iter()
                .zip(&tensors)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-5, "{w}x{h} full range {full_range}: {worst}");
        }
    }

    #[test]
    fn real_footage_matches_swscale_to_a_fraction_of_a_step() {
        let clip = std::env::var_os("VMATTE_SAMPLE_CLIP")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../.cache/sample/astronaut.mp4")
            });
        assert!(
            clip.is_file(),
            "{}: run scripts/test.sh, which fetches the sample clip",
            clip.display()
        );
        let (cpu, device) = both_ways(&clip, 4);
        let (mean, bias) = stats(&cpu, &device, 4);
        eprintln!("sample clip: mean {mean:.3} steps, bias {bias:?}");
        assert!(mean < 0.5, "mean difference {mean} steps");
        assert!(bias.iter().all(|b| b.abs() < 0.1), "bias {bias:?}");
    }

    #[test]
    fn every_matrix_and_range_without_bias() {
        let dir = tempfile::tempdir().unwrap();
        // Synthetic edges are the worst case for chroma interpolation, so
        // the mean is looser here; a wrong matrix or range would be a bias
        // of several steps.
        for (size, extra) in [
            ("320x240", &[][..]),
            (
                "1280x720",
                &["-colorspace", "bt709", "-color_range", "tv"][..],
            ),
            ("321x241", &["-color_range", "pc"][..]),
            ("640x360", &["-colorspace", "bt2020nc"][..]),
        ] {
            let (cpu, device) = both_ways(&clip(dir.path(), size, extra), 3);
            let (mean, bias) = stats(&cpu, &device, 3);
            eprintln!("{size} {extra:?}: mean {mean:.3} steps, bias {bias:?}");
            assert!(mean < 1.5, "{size}: mean difference {mean} steps");
            assert!(bias.iter().all(|b| b.abs() < 0.25), "{size}: bias {bias:?}");
        }
    }
}
