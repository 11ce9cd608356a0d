//! Conversions between decoded frames, model tensors and output pixels.

use vmatte_media::Frame;

/// Appends a packed RGB24 frame to `planar` as three f32 planes in [0, 1],
/// the layout RVM takes.
pub fn push_planar(frame: &Frame, planar: &mut Vec<f32>) {
    let pixels = (frame.width * frame.height) as usize;
    let start = planar.len();
    planar.resize(start + 3 * pixels, 0.0);
    let (r, rest) = planar[start..].split_at_mut(pixels);
    let (g, b) = rest.split_at_mut(pixels);
    for (i, px) in frame.rgb.chunks_exact(3).enumerate() {
        r[i] = f32::from(px[0]) / 255.0;
        g[i] = f32::from(px[1]) / 255.0;
        b[i] = f32::from(px[2]) / 255.0;
    }
}

/// [0, 1] to 0..=255, rounded to nearest (truncation would bias every
/// value down by half a step).
pub fn to_u8(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// Output pixels of one frame, from planar `fgr` (3 planes) and `pha`.
pub struct FramePixels<'a> {
    pub fgr: &'a [f32],
    pub pha: &'a [f32],
}

impl FramePixels<'_> {
    pub fn alpha(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend(self.pha.iter().map(|a| to_u8(*a)));
    }

    pub fn foreground(&self, out: &mut Vec<u8>) {
        self.interleave(out, |c, _, _| c);
    }

    /// `fgr * pha + bg * (1 - pha)`, RVM's own composite.
    pub fn composite(&self, background: [u8; 3], out: &mut Vec<u8>) {
        let bg = background.map(|c| f32::from(c) / 255.0);
        self.interleave(out, |c, ch, a| c * a + bg[ch] * (1.0 - a));
    }

    fn interleave(&self, out: &mut Vec<u8>, f: impl Fn(f32, usize, f32) -> f32) {
        let n = self.pha.len();
        out.clear();
        out.reserve(3 * n);
        for i in 0..n {
            let a = self.pha[i];
            for ch in 0..3 {
                out.push(to_u8(f(self.fgr[ch * n + i], ch, a)));
            }
        }
    }
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
        px.composite([0, 255, 0], &mut out);
        assert_eq!(out, vec![128, 128, 0, 0, 0, 255]);
        px.alpha(&mut out);
        assert_eq!(out, vec![128, 255]);
        px.foreground(&mut out);
        assert_eq!(out, vec![255, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn planar_layout() {
        let frame = Frame {
            width: 2,
            height: 1,
            rgb: vec![255, 0, 51, 0, 255, 102],
            pts: Some(0),
            index: 0,
        };
        let mut planar = Vec::new();
        push_planar(&frame, &mut planar);
        assert_eq!(planar, vec![1.0, 0.0, 0.0, 1.0, 0.2, 0.4]);
    }
}
