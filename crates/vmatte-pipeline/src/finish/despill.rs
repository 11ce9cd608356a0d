//! Spill suppression for green- and blue-screen footage: light bounced off
//! the screen tints the subject's edges and hair with the screen's colour,
//! which shows once the subject is composited over anything else.
//!
//! ```text
//! picture, alpha ─► detect ─► Spill ;  foreground, Spill ─► despill ─► foreground'
//! ```
//!
//! The limiter is the classic "average" one: the screen's channel may not
//! exceed the mean of the other two. It leaves colours without an excess
//! of that channel alone, neutralises spill on greys and skin, and is
//! cheap and predictable.

/// Which screen's colour is suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spill {
    Green,
    Blue,
}

/// Background pixels (alpha below this) are the ones that show the screen.
const BACKGROUND: f32 = 0.1;
/// How far the screen's channel must exceed both others, in the mean
/// background colour, to call the screen: well above the tint of an
/// ordinary grey or coloured wall, well below any real screen's lead.
const LEAD: f64 = 0.1;

/// Limits the screen's channel of `fg` (R, G, B planes) to the mean of the
/// other two: green: `g = min(g, (r + b) / 2)`. Pixels without an excess of
/// that channel are left exactly as they were.
pub fn despill(fg: [&mut [f32]; 3], spill: Spill) {
    let [r, g, b] = fg;
    assert!(
        r.len() == g.len() && g.len() == b.len(),
        "despill: planes of different sizes"
    );
    let (screen, others) = match spill {
        Spill::Green => (g, [&*r, &*b]),
        Spill::Blue => (b, [&*r, &*g]),
    };
    for ((s, &a), &c) in screen.iter_mut().zip(others[0]).zip(others[1]) {
        // `min` returns `s` untouched when it is already at or below.
        *s = s.min((a + c) * 0.5);
    }
}

/// Which screen the footage was shot on, judged from the background pixels
/// (`alpha < 0.1`) of one frame (`image`: R, G, B planes): green or blue
/// when that channel exceeds both others by more than 0.1 in their mean
/// colour, else `None`; also `None` when under 1 % of the frame is
/// background, too little to judge.
pub fn detect(image: [&[f32]; 3], alpha: &[f32]) -> Option<Spill> {
    let [r, g, b] = image;
    assert!(
        r.len() == alpha.len() && g.len() == alpha.len() && b.len() == alpha.len(),
        "detect: planes of different sizes"
    );
    let mut sum = [0.0f64; 3];
    let mut count = 0usize;
    for (((&a, &r), &g), &b) in alpha.iter().zip(r).zip(g).zip(b) {
        if a < BACKGROUND {
            sum[0] += f64::from(r);
            sum[1] += f64::from(g);
            sum[2] += f64::from(b);
            count += 1;
        }
    }
    if count == 0 || count < alpha.len().div_ceil(100) {
        return None;
    }
    let [r, g, b] = sum.map(|s| s / count as f64);
    if g - r > LEAD && g - b > LEAD {
        Some(Spill::Green)
    } else if b - r > LEAD && b - g > LEAD {
        Some(Spill::Blue)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_on_grey_becomes_neutral() {
        let n = 10;
        let (mut r, mut g, mut b) = (vec![0.5f32; n], vec![0.62f32; n], vec![0.5f32; n]);
        despill([&mut r, &mut g, &mut b], Spill::Green);
        // (0.5 + 0.5) / 2 is exact in f32; 1e-6 only allows for rounding.
        assert!(g.iter().zip(&r).all(|(g, r)| (g - r).abs() < 1e-6));
        assert!(
            r.iter().chain(&b).all(|&v| v == 0.5),
            "other channels changed"
        );

        let (mut r, mut g, mut b) = (vec![0.4f32; n], vec![0.4f32; n], vec![0.55f32; n]);
        despill([&mut r, &mut g, &mut b], Spill::Blue);
        assert!(b.iter().zip(&r).all(|(b, r)| (b - r).abs() < 1e-6));
        assert!(
            r.iter().chain(&g).all(|&v| v == 0.4),
            "other channels changed"
        );

        // Without excess green (a magenta, a red), nothing changes.
        let (mut r, mut g, mut b) = (vec![0.8, 0.9], vec![0.2, 0.3], vec![0.7, 0.1]);
        despill([&mut r, &mut g, &mut b], Spill::Green);
        assert_eq!(g, [0.2, 0.3]);
    }

    /// A 40 x 30 frame of `screen` with a skin-coloured subject (alpha 1)
    /// over its middle half.
    fn frame(screen: [f32; 3]) -> ([Vec<f32>; 3], Vec<f32>) {
        let (w, h) = (40, 30);
        let subject = |i: usize| (10..30).contains(&(i % w)) && (5..25).contains(&(i / w));
        let skin = [0.8f32, 0.6, 0.5];
        let image = [0, 1, 2].map(|c| {
            (0..w * h)
                .map(|i| if subject(i) { skin[c] } else { screen[c] })
                .collect()
        });
        let alpha = (0..w * h)
            .map(|i| f32::from(u8::from(subject(i))))
            .collect();
        (image, alpha)
    }

    #[test]
    fn detect_tells_the_screen() {
        let cases = [
            ([0.1, 0.7, 0.15], Some(Spill::Green)),
            ([0.1, 0.2, 0.8], Some(Spill::Blue)),
            ([0.5, 0.5, 0.5], None),
            // A greenish grey: a 0.05 lead is no screen.
            ([0.45, 0.5, 0.45], None),
        ];
        for (screen, want) in cases {
            let (image, alpha) = frame(screen);
            let planes = [&image[0][..], &image[1][..], &image[2][..]];
            assert_eq!(detect(planes, &alpha), want, "screen {screen:?}");
        }

        // All subject: no background to judge from.
        let (image, _) = frame([0.1, 0.7, 0.15]);
        let planes = [&image[0][..], &image[1][..], &image[2][..]];
        assert_eq!(detect(planes, &vec![1.0; 1200]), None);
        // 11 background pixels of 1200 are under 1 %.
        let mut alpha = vec![1.0f32; 1200];
        alpha[..11].fill(0.0);
        assert_eq!(detect(planes, &alpha), None);
        alpha[..12].fill(0.0);
        assert_eq!(detect(planes, &alpha), Some(Spill::Green));
    }
}
