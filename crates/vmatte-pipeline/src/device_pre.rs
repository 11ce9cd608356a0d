//! YUV 4:2:0 to RGB as tensor ops on the model's device. On a GPU, frames
//! then cross as their decoded planes (1.5 bytes a pixel) instead of planar
//! f32 RGB (12 bytes a pixel), and the CPU does no colour conversion. The
//! result is what swscale gives on the CPU path to within a few 1/255
//! steps: chroma is upsampled bilinearly between sample centres, and the RGB
//! is not rounded to 8 bits before the model sees it.

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
    let first = frames[0];
    // Samples to Y' in [0, 1] and Cb, Cr in [-0.5, 0.5].
    let (y_scale, y_offset, c_scale) = if first.full_range {
        (1.0 / 255.0, 0.0, 1.0 / 255.0)
    } else {
        (1.0 / 219.0, -16.0 / 219.0, 1.0 / 224.0)
    };
    let luma = y.affine(y_scale, y_offset)?;
    // Bilinear between sample centres: of the placements tried (this,
    // left-sited columns, nearest rows), the closest to swscale's.
    let chroma = Tensor::cat(&[&u, &v], 1)?
        .affine(c_scale, -128.0 * c_scale)?
        .upsample_bilinear2d(2 * ch, 2 * cw, false)?
        .narrow(2, 0, height)?
        .narrow(3, 0, width)?;
    let (cb, cr) = (chroma.narrow(1, 0, 1)?, chroma.narrow(1, 1, 1)?);
    let (kr, kb) = (f64::from(first.kr), f64::from(first.kb));
    let kg = 1.0 - kr - kb;
    let r = (&luma + cr.affine(2.0 * (1.0 - kr), 0.0)?)?;
    let b = (&luma + cb.affine(2.0 * (1.0 - kb), 0.0)?)?;
    let g = ((&luma - cb.affine(2.0 * kb * (1.0 - kb) / kg, 0.0)?)?
        - cr.affine(2.0 * kr * (1.0 - kr) / kg, 0.0)?)?;
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
