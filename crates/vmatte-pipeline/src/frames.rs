//! Conversions between decoded frames, model tensors and output pixels.

use vmatte_media::Frame;

/// Every 8-bit sample's value in [0, 1], `v / 255` exactly as the division
/// gives it: a table look-up per sample instead of a division.
const UNIT8: [f32; 256] = {
    let mut table = [0.0; 256];
    let mut v = 0;
    while v < 256 {
        table[v] = v as f32 / 255.0;
        v += 1;
    }
    table
};

/// Appends a packed RGB frame (8 or 16-bit) to `planar` as three f32
/// planes in [0, 1], the layout RVM takes.
pub fn push_planar(frame: &Frame, planar: &mut Vec<f32>) {
    let pixels = (frame.width * frame.height) as usize;
    let bytes = if frame.deep { 6 } else { 3 };
    assert_eq!(frame.rgb.len(), bytes * pixels, "frame size");
    // Written once, not zeroed first: at 1080p that is 24 MiB a frame
    // touched twice.
    planar.reserve(3 * pixels);
    let spare = &mut planar.spare_capacity_mut()[..3 * pixels];
    let (r, rest) = spare.split_at_mut(pixels);
    let (g, b) = rest.split_at_mut(pixels);
    let planes = r.iter_mut().zip(g).zip(b);
    if frame.deep {
        let sample = |s: &[u8]| f32::from(u16::from_le_bytes([s[0], s[1]])) / 65535.0;
        for (px, ((r, g), b)) in frame.rgb.chunks_exact(6).zip(planes) {
            r.write(sample(&px[0..2]));
            g.write(sample(&px[2..4]));
            b.write(sample(&px[4..6]));
        }
    } else {
        for (px, ((r, g), b)) in frame.rgb.chunks_exact(3).zip(planes) {
            r.write(UNIT8[usize::from(px[0])]);
            g.write(UNIT8[usize::from(px[1])]);
            b.write(UNIT8[usize::from(px[2])]);
        }
    }
    // SAFETY: the loop wrote all 3 * pixels floats after the old length
    // (the frame holds exactly `pixels` samples of each, asserted above).
    unsafe { planar.set_len(planar.len() + 3 * pixels) };
}

/// Appends a matte frame (packed RGB, 16-bit little-endian when `deep`)
/// to `plane` as one f32 plane in [0, 1]: its luma (BT.709 weights), which
/// is the gray value itself for the gray mattes other tools write.
pub fn push_gray(rgb: &[u8], deep: bool, plane: &mut Vec<f32>) {
    const W: [f32; 3] = [0.2126, 0.7152, 0.0722];
    let luma = |r: f32, g: f32, b: f32| (W[0] * r + W[1] * g + W[2] * b).clamp(0.0, 1.0);
    if deep {
        let s =
            |p: &[u8], k: usize| f32::from(u16::from_le_bytes([p[2 * k], p[2 * k + 1]])) / 65535.0;
        plane.extend(rgb.chunks_exact(6).map(|p| luma(s(p, 0), s(p, 1), s(p, 2))));
    } else {
        let s = |v: u8| UNIT8[usize::from(v)];
        plane.extend(rgb.chunks_exact(3).map(|p| luma(s(p[0]), s(p[1]), s(p[2]))));
    }
}

/// `x` in [0, max] rounded half away from zero, as `f32::round` does, but
/// as a truncation and a comparison: `round` is a libm call on baseline
/// x86-64, once per output sample. `x - trunc(x)` is exact below 2^24; the
/// truncation goes through i32, which x86 converts in one vector
/// instruction (u32 has none before AVX-512), and unchecked: Rust's
/// saturating `as` kept the compiler from vectorising the loops at all.
#[inline(always)]
fn round_clamped(x: f32, max: f32) -> u32 {
    debug_assert!(max < 2147483520.0);
    let x = x.max(0.0).min(max);
    // SAFETY: x is in [0, max] (NaN becomes 0 above), inside i32.
    let whole = unsafe { x.to_int_unchecked::<i32>() };
    (whole + i32::from(x - whole as f32 >= 0.5)) as u32
}

/// [0, 1] to 0..=255, rounded to nearest (truncation would bias every
/// value down by half a step).
#[inline(always)]
pub fn to_u8(v: f32) -> u8 {
    round_clamped(v * 255.0, 255.0) as u8
}

/// [0, 1] to 0..=65535, rounded to nearest.
pub fn to_u16(v: f32) -> u16 {
    round_clamped(v * 65535.0, 65535.0) as u16
}

/// Samples appended to an output buffer: 8-bit, or 16-bit little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    Eight,
    Sixteen,
}

impl Depth {
    fn bytes(self) -> usize {
        match self {
            Depth::Eight => 1,
            Depth::Sixteen => 2,
        }
    }

    /// Fills `out` with `pixels` pixels of `K` samples each, sample `k` of
    /// pixel `i` being `sample(i, k)`: one pass over a buffer sized once.
    fn write<const K: usize>(
        self,
        out: &mut Vec<u8>,
        pixels: usize,
        sample: impl Fn(usize, usize) -> f32,
    ) {
        out.clear();
        out.resize(K * pixels * self.bytes(), 0);
        match self {
            Depth::Eight => {
                for (i, px) in out.chunks_exact_mut(K).enumerate() {
                    for (k, s) in px.iter_mut().enumerate() {
                        *s = to_u8(sample(i, k));
                    }
                }
            }
            Depth::Sixteen => {
                for (i, px) in out.chunks_exact_mut(2 * K).enumerate() {
                    for (k, s) in px.chunks_exact_mut(2).enumerate() {
                        s.copy_from_slice(&to_u16(sample(i, k)).to_le_bytes());
                    }
                }
            }
        }
    }
}

/// What a composite is laid over: one colour, or a picture of the frame's
/// size (packed RGB24).
#[derive(Clone, Copy, Debug)]
pub enum Backdrop<'a> {
    Color([u8; 3]),
    Picture(&'a [u8]),
}

/// Output pixels of one frame, from the planes of `fgr` (R, G, B) and
/// `pha`, all as long as each other.
pub struct FramePixels<'a> {
    pub fgr: [&'a [f32]; 3],
    pub pha: &'a [f32],
}

impl FramePixels<'_> {
    /// The matte, gray; `invert` writes 1 - alpha.
    pub fn alpha(&self, depth: Depth, invert: bool, out: &mut Vec<u8>) {
        let pha = self.pha;
        if depth == Depth::Eight && !invert {
            out.clear();
            out.resize(pha.len(), 0);
            return alpha_u8(pha, out);
        }
        if invert {
            depth.write::<1>(out, pha.len(), |i, _| 1.0 - pha[i]);
        } else {
            depth.write::<1>(out, pha.len(), |i, _| pha[i]);
        }
    }

    pub fn foreground(&self, depth: Depth, out: &mut Vec<u8>) {
        let planes = self.planes();
        depth.write::<3>(out, self.pha.len(), |i, ch| planes[ch][i]);
    }

    /// `fgr * pha + bg * (1 - pha)`, RVM's own composite.
    pub fn composite(&self, backdrop: Backdrop, depth: Depth, out: &mut Vec<u8>) {
        let unit = |c: u8| UNIT8[usize::from(c)];
        let (planes, pha) = (self.planes(), self.pha);
        match backdrop {
            Backdrop::Color(rgb) if depth == Depth::Eight => {
                out.clear();
                out.resize(3 * pha.len(), 0);
                composite_u8(planes, pha, rgb.map(unit), out);
            }
            Backdrop::Color(rgb) => {
                let bg = rgb.map(unit);
                depth.write::<3>(out, pha.len(), |i, ch| {
                    planes[ch][i] * pha[i] + bg[ch] * (1.0 - pha[i])
                });
            }
            Backdrop::Picture(rgb) => depth.write::<3>(out, pha.len(), |i, ch| {
                planes[ch][i] * pha[i] + unit(rgb[3 * i + ch]) * (1.0 - pha[i])
            }),
        }
    }

    /// Foreground colour with the matte as a fourth channel: straight, or
    /// multiplied by alpha when `premultiplied`.
    pub fn rgba(&self, depth: Depth, premultiplied: bool, invert: bool, out: &mut Vec<u8>) {
        let (planes, pha) = (self.planes(), self.pha);
        depth.write::<4>(out, pha.len(), |i, ch| {
            let a = pha[i];
            match ch {
                3 if invert => 1.0 - a,
                3 => a,
                _ if premultiplied => planes[ch][i] * a,
                _ => planes[ch][i],
            }
        });
    }

    /// The three colour planes, cut to the matte's length (which lets the
    /// compiler drop the bounds checks).
    fn planes(&self) -> [&[f32]; 3] {
        let n = self.pha.len();
        self.fgr.map(|plane| &plane[..n])
    }
}

// The two outputs nearly every run writes, 8-bit, as loops the compiler
// turns into the widest vector code the CPU has: the generic `Depth::write`
// goes a sample at a time.

vmatte_models::vectorized! {
    /// `out[i] = to_u8(pha[i])`.
    fn alpha_u8(pha: &[f32], out: &mut [u8]) {
        for (o, a) in out.iter_mut().zip(pha) {
            *o = to_u8(*a);
        }
    }
}

vmatte_models::vectorized! {
    /// Packed RGB of `fgr * pha + bg * (1 - pha)`.
    fn composite_u8(fgr: [&[f32]; 3], pha: &[f32], bg: [f32; 3], out: &mut [u8]) {
        let [r, g, b] = fgr;
        for ((px, a), ((r, g), b)) in out.chunks_exact_mut(3).zip(pha).zip(r.iter().zip(g).zip(b)) {
            px[0] = to_u8(r * a + bg[0] * (1.0 - a));
            px[1] = to_u8(g * a + bg[1] * (1.0 - a));
            px[2] = to_u8(b * a + bg[2] * (1.0 - a));
        }
    }
}

/// Rotates packed pixels of `bpp` bytes by `clockwise` degrees (a multiple
/// of 90), so image sequences show what players show for a rotated video.
/// Returns the new width and height.
pub fn rotate(
    data: &[u8],
    (width, height): (usize, usize),
    bpp: usize,
    clockwise: i32,
    out: &mut Vec<u8>,
) -> (usize, usize) {
    let turns = clockwise.rem_euclid(360) / 90;
    let (w2, h2) = if turns % 2 == 1 {
        (height, width)
    } else {
        (width, height)
    };
    out.clear();
    out.resize(data.len(), 0);
    for y in 0..height {
        for x in 0..width {
            let (x2, y2) = match turns {
                1 => (height - 1 - y, x),
                2 => (width - 1 - x, height - 1 - y),
                3 => (y, width - 1 - x),
                _ => (x, y),
            };
            let src = (y * width + x) * bpp;
            let dst = (y2 * w2 + x2) * bpp;
            out[dst..dst + bpp].copy_from_slice(&data[src..src + bpp]);
        }
    }
    (w2, h2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_is_fg_times_alpha_plus_bg() {
        // Two pixels: half-transparent red, opaque blue.
        let fgr = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let pha = [0.5, 1.0];
        let px = FramePixels {
            fgr: [&fgr[0..2], &fgr[2..4], &fgr[4..6]],
            pha: &pha,
        };
        let mut out = Vec::new();
        px.composite(Backdrop::Color([0, 255, 0]), Depth::Eight, &mut out);
        assert_eq!(out, vec![128, 128, 0, 0, 0, 255]);
        px.composite(
            Backdrop::Picture(&[0, 0, 0, 9, 9, 9]),
            Depth::Eight,
            &mut out,
        );
        assert_eq!(out, vec![128, 0, 0, 0, 0, 255]);
        px.alpha(Depth::Eight, false, &mut out);
        assert_eq!(out, vec![128, 255]);
        px.alpha(Depth::Eight, true, &mut out);
        assert_eq!(out, vec![128, 0]);
        px.foreground(Depth::Eight, &mut out);
        assert_eq!(out, vec![255, 0, 0, 0, 0, 255]);
        px.rgba(Depth::Eight, false, false, &mut out);
        assert_eq!(out, vec![255, 0, 0, 128, 0, 0, 255, 255]);
        px.rgba(Depth::Eight, true, false, &mut out);
        assert_eq!(out, vec![128, 0, 0, 128, 0, 0, 255, 255]);
        px.alpha(Depth::Sixteen, false, &mut out);
        assert_eq!(out, vec![0x00, 0x80, 0xff, 0xff]);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        for i in 0..=1 << 16 {
            let v = i as f32 / (1 << 16) as f32 * 1.2 - 0.1;
            assert_eq!(to_u8(v), (v * 255.0).round().clamp(0.0, 255.0) as u8, "{v}");
            assert_eq!(
                to_u16(v),
                (v * 65535.0).round().clamp(0.0, 65535.0) as u16,
                "{v}"
            );
        }
        // The largest float below one half (x + 0.5 would round up to 1),
        // and ties.
        assert_eq!(round_clamped(0.499_999_97, 255.0), 0);
        assert_eq!(round_clamped(2.5, 255.0), 3);
        assert_eq!(round_clamped(254.5, 255.0), 255);
    }

    #[test]
    fn planar_layout() {
        let frame = Frame {
            width: 2,
            height: 1,
            rgb: vec![255, 0, 51, 0, 255, 102],
            deep: false,
            yuv: None,
            pts: Some(0),
            index: 0,
        };
        let mut planar = Vec::new();
        push_planar(&frame, &mut planar);
        assert_eq!(planar, vec![1.0, 0.0, 0.0, 1.0, 0.2, 0.4]);
        for v in 0..=255u8 {
            assert_eq!(UNIT8[usize::from(v)], f32::from(v) / 255.0);
        }
        let deep = Frame {
            width: 1,
            height: 1,
            rgb: [65535u16, 0, 32768]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            deep: true,
            yuv: None,
            pts: Some(0),
            index: 0,
        };
        planar.clear();
        push_planar(&deep, &mut planar);
        assert_eq!(planar[0], 1.0);
        assert!((planar[2] - 0.500_007_6).abs() < 1e-6);
    }

    #[test]
    fn rotation_turns_the_picture() {
        // 2x1: [a b] turned 90 degrees clockwise is a column [a; b].
        let mut out = Vec::new();
        assert_eq!(rotate(&[1, 2], (2, 1), 1, 90, &mut out), (1, 2));
        assert_eq!(out, vec![1, 2]);
        assert_eq!(rotate(&[1, 2], (2, 1), 1, 270, &mut out), (1, 2));
        assert_eq!(out, vec![2, 1]);
        assert_eq!(rotate(&[1, 2, 3, 4], (2, 2), 1, 180, &mut out), (2, 2));
        assert_eq!(out, vec![4, 3, 2, 1]);
    }
}
