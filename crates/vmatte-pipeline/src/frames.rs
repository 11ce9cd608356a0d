//! Conversions between decoded frames, model tensors and output pixels.

use vmatte_media::Frame;

/// Appends a packed RGB frame (8 or 16-bit) to `planar` as three f32
/// planes in [0, 1], the layout RVM takes.
pub fn push_planar(frame: &Frame, planar: &mut Vec<f32>) {
    let pixels = (frame.width * frame.height) as usize;
    let start = planar.len();
    planar.resize(start + 3 * pixels, 0.0);
    let (r, rest) = planar[start..].split_at_mut(pixels);
    let (g, b) = rest.split_at_mut(pixels);
    if frame.deep {
        let sample = |s: &[u8]| f32::from(u16::from_le_bytes([s[0], s[1]])) / 65535.0;
        for (i, px) in frame.rgb.chunks_exact(6).enumerate() {
            r[i] = sample(&px[0..2]);
            g[i] = sample(&px[2..4]);
            b[i] = sample(&px[4..6]);
        }
    } else {
        for (i, px) in frame.rgb.chunks_exact(3).enumerate() {
            r[i] = f32::from(px[0]) / 255.0;
            g[i] = f32::from(px[1]) / 255.0;
            b[i] = f32::from(px[2]) / 255.0;
        }
    }
}

/// [0, 1] to 0..=255, rounded to nearest (truncation would bias every
/// value down by half a step).
pub fn to_u8(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// [0, 1] to 0..=65535, rounded to nearest.
pub fn to_u16(v: f32) -> u16 {
    (v * 65535.0).round().clamp(0.0, 65535.0) as u16
}

/// Samples appended to an output buffer: 8-bit, or 16-bit little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    Eight,
    Sixteen,
}

impl Depth {
    fn push(self, out: &mut Vec<u8>, v: f32) {
        match self {
            Depth::Eight => out.push(to_u8(v)),
            Depth::Sixteen => out.extend_from_slice(&to_u16(v).to_le_bytes()),
        }
    }

    fn bytes(self) -> usize {
        match self {
            Depth::Eight => 1,
            Depth::Sixteen => 2,
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

/// Output pixels of one frame, from planar `fgr` (3 planes) and `pha`.
pub struct FramePixels<'a> {
    pub fgr: &'a [f32],
    pub pha: &'a [f32],
}

impl FramePixels<'_> {
    /// The matte, gray; `invert` writes 1 - alpha.
    pub fn alpha(&self, depth: Depth, invert: bool, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.pha.len() * depth.bytes());
        for a in self.pha {
            depth.push(out, if invert { 1.0 - a } else { *a });
        }
    }

    pub fn foreground(&self, depth: Depth, out: &mut Vec<u8>) {
        self.interleave(depth, out, |c, _, _, _| c);
    }

    /// `fgr * pha + bg * (1 - pha)`, RVM's own composite.
    pub fn composite(&self, backdrop: Backdrop, depth: Depth, out: &mut Vec<u8>) {
        let unit = |c: u8| f32::from(c) / 255.0;
        match backdrop {
            Backdrop::Color(rgb) => {
                let bg = rgb.map(unit);
                self.interleave(depth, out, |c, ch, a, _| c * a + bg[ch] * (1.0 - a));
            }
            Backdrop::Picture(rgb) => self.interleave(depth, out, |c, ch, a, i| {
                c * a + unit(rgb[3 * i + ch]) * (1.0 - a)
            }),
        }
    }

    /// Foreground colour with the matte as a fourth channel: straight, or
    /// multiplied by alpha when `premultiplied`.
    pub fn rgba(&self, depth: Depth, premultiplied: bool, invert: bool, out: &mut Vec<u8>) {
        let n = self.pha.len();
        out.clear();
        out.reserve(4 * n * depth.bytes());
        for i in 0..n {
            let a = self.pha[i];
            for ch in 0..3 {
                let c = self.fgr[ch * n + i];
                depth.push(out, if premultiplied { c * a } else { c });
            }
            depth.push(out, if invert { 1.0 - a } else { a });
        }
    }

    fn interleave(
        &self,
        depth: Depth,
        out: &mut Vec<u8>,
        f: impl Fn(f32, usize, f32, usize) -> f32,
    ) {
        let n = self.pha.len();
        out.clear();
        out.reserve(3 * n * depth.bytes());
        for i in 0..n {
            let a = self.pha[i];
            for ch in 0..3 {
                depth.push(out, f(self.fgr[ch * n + i], ch, a, i));
            }
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
            fgr: &fgr,
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
