//! Temporal de-chatter: a matte model's per-frame noise makes still edges
//! shimmer from frame to frame. Where the picture does not move, each
//! pixel's alpha is averaged over the frames since it last moved (at most
//! `n`); where it moves, the average restarts, so a moving edge is never
//! smeared.
//!
//! ```text
//! picture ─► change since the last frame ─► 3x3 max ─► moved?
//! alpha, moved? ─► per-pixel window (restart | slide) ─► mean ─► alpha'
//! ```
//!
//! Motion is judged on the picture, not the matte: the matte's chatter is
//! what is being removed, so it cannot be trusted to say what moved.
//!
//! Memory: the last `n` mattes are kept as 16-bit values (2 bytes a pixel
//! each: 33 MB for n = 8 at 1080p), plus the last picture. 16 bits are
//! what the most precise outputs (16-bit PNG, TIFF, ProRes alpha) hold,
//! and integer sums keep a window exact however long the scene stays
//! still.

/// A pixel moved when one channel of the 3x3 mean of its signed change
/// exceeds this: 4/255, four 8-bit code steps of real change. Mild grain
/// averages out over the 9 pixels (its spread drops to a third) instead
/// of tripping it.
const MEAN_CHANGE: f32 = 4.0 / 255.0;
/// Or when one channel of the pixel itself changed by more than this: a
/// thin or 1-pixel-wide detail that the mean dilutes by up to 3x still
/// counts (12/255 = 3 x MEAN_CHANGE), while grain of up to about 2/255
/// standard deviation stays under it.
const PIXEL_CHANGE: f32 = 12.0 / 255.0;
/// The 16-bit scale the kept mattes are stored at.
const SCALE: f32 = 65535.0;
/// The longest window: its 32-bit sums of 16-bit values cannot overflow.
/// Far beyond any use (the finisher allows 64 frames).
const LONGEST: usize = 65536;

/// Stabilises a matte over up to `n` frames where the picture does not
/// move.
pub struct Smoother {
    n: usize,
    /// The frame size the state below is for; `None` before the first
    /// frame.
    size: Option<(usize, usize)>,
    /// The last frame's picture.
    previous: [Vec<f32>; 3],
    /// The last `n` mattes, 16-bit, one plane each: frame `t` in slot
    /// `t % n`.
    history: Vec<u16>,
    /// The slot this frame goes to.
    slot: usize,
    /// Per pixel, the sum of its 16-bit alphas over its window, and the
    /// window's length (1..=n frames).
    sum: Vec<u32>,
    count: Vec<u32>,
    /// Scratch: the picture's change, its horizontal 3-sums, and the
    /// moved mask before and after the 3x3 max.
    change: Vec<f32>,
    row_sums: Vec<f32>,
    moved: Vec<u8>,
    spread: Vec<u8>,
}

impl Smoother {
    /// A smoother whose window holds up to `n` frames, from 2 to 65536.
    pub fn new(n: usize) -> Self {
        assert!(
            (2..=LONGEST).contains(&n),
            "a temporal window holds 2 to {LONGEST} frames, not {n}"
        );
        Self {
            n,
            size: None,
            previous: Default::default(),
            history: Vec::new(),
            slot: 0,
            sum: Vec::new(),
            count: Vec::new(),
            change: Vec::new(),
            row_sums: Vec::new(),
            moved: Vec::new(),
            spread: Vec::new(),
        }
    }

    /// Smooths `alpha`, this frame's matte, in place, given this frame's
    /// picture `image` (R, G, B planes). Frames must come in order.
    ///
    /// Per pixel: where the picture did not change since the last frame
    /// (no channel changed by more than 4/255 in the 3x3 mean of its
    /// signed change, nor by more than 12/255 at the pixel itself; a 3x3
    /// max then makes an edge's neighbours count as moving too), alpha
    /// becomes the mean of this pixel's alpha over the frames since it
    /// last moved, at most `n`; where it moved, the window restarts at this
    /// frame and alpha is left exactly as it is. The first frame, and one
    /// of a new size, restarts every pixel.
    pub fn smooth(
        &mut self,
        image: [&[f32]; 3],
        alpha: &mut [f32],
        (width, height): (usize, usize),
    ) {
        let pixels = width
            .checked_mul(height)
            .expect("smooth: width * height overflows");
        assert_eq!(
            alpha.len(),
            pixels,
            "smooth: the matte is not {width}x{height}"
        );
        assert!(
            image.iter().all(|p| p.len() == pixels),
            "smooth: the picture is not {width}x{height}"
        );
        if self.size != Some((width, height)) {
            self.restart(image, alpha, (width, height));
            return;
        }

        self.find_motion(image, width, height);

        let n = self.n as u32;
        let slot = &mut self.history[self.slot * pixels..(self.slot + 1) * pixels];
        for ((((a, &moved), sum), count), kept) in alpha
            .iter_mut()
            .zip(&self.spread)
            .zip(&mut self.sum)
            .zip(&mut self.count)
            .zip(slot.iter_mut())
        {
            let q = quantise(*a);
            if moved != 0 {
                *sum = u32::from(q);
                *count = 1;
            } else {
                if *count == n {
                    // A full window: the oldest frame, n back, sits in the
                    // slot this one is about to take.
                    *sum -= u32::from(*kept);
                } else {
                    *count += 1;
                }
                *sum += u32::from(q);
                // At most 1: sum <= count * 65535 and rounding is
                // monotone. Both are exact f32 integers for windows up to
                // 256 frames, within an ulp beyond.
                *a = *sum as f32 / (*count as f32 * SCALE);
            }
            *kept = q;
        }
        self.slot = (self.slot + 1) % self.n;
        for (previous, now) in self.previous.iter_mut().zip(image) {
            previous.copy_from_slice(now);
        }
    }

    /// Starts every pixel's window at this frame; `alpha` stays as it is.
    fn restart(&mut self, image: [&[f32]; 3], alpha: &[f32], size: (usize, usize)) {
        let pixels = alpha.len();
        self.size = Some(size);
        for (previous, now) in self.previous.iter_mut().zip(image) {
            previous.clear();
            previous.extend_from_slice(now);
        }
        self.history.clear();
        self.history.resize(self.n * pixels, 0);
        for (kept, &a) in self.history.iter_mut().zip(alpha) {
            *kept = quantise(a);
        }
        self.slot = 1;
        self.sum.clear();
        self.sum
            .extend(self.history[..pixels].iter().map(|&q| u32::from(q)));
        self.count.clear();
        self.count.resize(pixels, 1);
        self.change.resize(pixels, 0.0);
        self.row_sums.resize(pixels, 0.0);
        self.moved.resize(pixels, 0);
        self.spread.resize(pixels, 0);
    }

    /// Fills `spread` with 1 where the picture moved since the last frame,
    /// or next to (3x3) where it did.
    fn find_motion(&mut self, image: [&[f32]; 3], w: usize, h: usize) {
        self.moved.fill(0);
        let mean_limit = 9.0 * MEAN_CHANGE;
        for (now, previous) in image.iter().zip(&self.previous) {
            for ((c, m), (&a, &b)) in self
                .change
                .iter_mut()
                .zip(&mut self.moved)
                .zip(now.iter().zip(previous))
            {
                *c = a - b;
                *m |= u8::from(c.abs() > PIXEL_CHANGE);
            }
            // 3x3 sums of the signed change, frame edges repeated.
            for (sums, row) in self
                .row_sums
                .chunks_exact_mut(w)
                .zip(self.change.chunks_exact(w))
            {
                across3(row, sums, |a, b, c| a + b + c);
            }
            for y in 0..h {
                let (up, here, down) = rows3(&self.row_sums, w, h, y);
                let moved = &mut self.moved[y * w..(y + 1) * w];
                for (((m, &u), &c), &d) in moved.iter_mut().zip(up).zip(here).zip(down) {
                    *m |= u8::from((u + c + d).abs() > mean_limit);
                }
            }
        }
        // The 3x3 max of the mask.
        for (out, row) in self
            .spread
            .chunks_exact_mut(w)
            .zip(self.moved.chunks_exact(w))
        {
            across3(row, out, |a, b, c| a | b | c);
        }
        self.moved.copy_from_slice(&self.spread);
        for y in 0..h {
            let (up, here, down) = rows3(&self.moved, w, h, y);
            let out = &mut self.spread[y * w..(y + 1) * w];
            for (((o, &u), &c), &d) in out.iter_mut().zip(up).zip(here).zip(down) {
                *o = u | c | d;
            }
        }
    }
}

/// `out[x] = f(row[x - 1], row[x], row[x + 1])`, the row's ends repeated.
/// The interior is three shifted slices, so it vectorises.
#[inline(always)]
fn across3<T: Copy>(row: &[T], out: &mut [T], f: impl Fn(T, T, T) -> T) {
    let w = row.len();
    if w == 1 {
        out[0] = f(row[0], row[0], row[0]);
        return;
    }
    out[0] = f(row[0], row[0], row[1]);
    out[w - 1] = f(row[w - 2], row[w - 1], row[w - 1]);
    for (((o, &a), &b), &c) in out[1..w - 1]
        .iter_mut()
        .zip(row)
        .zip(&row[1..])
        .zip(&row[2..])
    {
        *o = f(a, b, c);
    }
}

/// Rows `y - 1`, `y` and `y + 1` of a `w`-wide plane, the frame's first
/// and last rows repeated.
fn rows3<T>(plane: &[T], w: usize, h: usize, y: usize) -> (&[T], &[T], &[T]) {
    let row = |y: usize| &plane[y * w..(y + 1) * w];
    (row(y.saturating_sub(1)), row(y), row((y + 1).min(h - 1)))
}

/// Alpha as a 16-bit value, rounded (the cast saturates, NaN gives 0).
fn quantise(a: f32) -> u16 {
    (a * SCALE + 0.5) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a fixed-seed, dependency-free PRNG for test noise.
    struct Rng(u64);

    impl Rng {
        /// Uniform in [-1, 1).
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            bits as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    fn mean_abs_change(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from((x - y).abs()))
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn still_scene_chatter_drops_at_least_fourfold() {
        let (w, h) = (64, 48);
        let n = 8;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut smoother = Smoother::new(n);
        // A soft edge: alpha ramps from 0.2 to 0.8 across the frame, so
        // ±0.1 noise never clips.
        let base: Vec<f32> = (0..w * h)
            .map(|i| 0.2 + 0.6 * (i % w) as f32 / (w - 1) as f32)
            .collect();
        let picture = [0.3f32, 0.5, 0.4];
        let (mut raw_change, mut smooth_change) = (0.0, 0.0);
        let (mut last_raw, mut last_smooth) = (Vec::new(), Vec::new());
        for frame in 0..40 {
            // A still picture with ±1/255 grain, fresh each frame.
            let image: [Vec<f32>; 3] =
                picture.map(|c| (0..w * h).map(|_| c + rng.next() / 255.0).collect());
            let raw: Vec<f32> = base.iter().map(|&b| b + 0.1 * rng.next()).collect();
            let mut alpha = raw.clone();
            smoother.smooth(
                [&image[0][..], &image[1][..], &image[2][..]],
                &mut alpha,
                (w, h),
            );
            // Measured once both frames compared have a full window.
            if frame > n {
                raw_change += mean_abs_change(&raw, &last_raw);
                smooth_change += mean_abs_change(&alpha, &last_smooth);
            }
            (last_raw, last_smooth) = (raw, alpha);
        }
        // A full window of 8 moves by (new - oldest) / 8 a frame, 8x less
        // than the raw matte; 4x leaves room for sampling and any pixel
        // grain might flag.
        assert!(
            smooth_change * 4.0 <= raw_change,
            "chatter {smooth_change:.5} vs raw {raw_change:.5}"
        );
    }

    #[test]
    fn moving_edge_is_not_smeared() {
        let (w, h) = (96, 32);
        let side = 12;
        let mut smoother = Smoother::new(8);
        for frame in 0..30 {
            // A bright square on dark, 2 px further right each frame; the
            // matte is the square.
            let left = 4 + 2 * frame;
            let square: Vec<f32> = (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    f32::from(u8::from(
                        (left..left + side).contains(&x) && (10..10 + side).contains(&y),
                    ))
                })
                .collect();
            let mut alpha = square.clone();
            smoother.smooth([&square, &square, &square], &mut alpha, (w, h));
            let row = &alpha[16 * w..17 * w];
            let rise = (1..w).find(|&x| row[x - 1] < 0.5 && row[x] >= 0.5).unwrap();
            let fall = (1..w).find(|&x| row[x - 1] >= 0.5 && row[x] < 0.5).unwrap();
            let at = |x: usize| (x - 1) as f32 + (0.5 - row[x - 1]) / (row[x] - row[x - 1]);
            // One pixel is the issue's bound: a smeared edge lags by up to
            // (n - 1) frames x 2 px / 2 = 7 px.
            assert!(
                (at(rise) - (left as f32 - 0.5)).abs() <= 1.0,
                "frame {frame}: left edge at {}",
                at(rise)
            );
            assert!(
                (at(fall) - ((left + side) as f32 - 0.5)).abs() <= 1.0,
                "frame {frame}: right edge at {}",
                at(fall)
            );
        }
    }

    #[test]
    fn a_new_size_restarts_the_window() {
        let mut smoother = Smoother::new(3);
        for (w, h) in [(4, 3), (4, 3), (5, 2), (1, 1), (1, 1), (5, 2)] {
            let grey = vec![0.5f32; w * h];
            let mut alpha: Vec<f32> = (0..w * h).map(|i| (i % 4) as f32 / 3.0).collect();
            let before = alpha.clone();
            smoother.smooth([&grey, &grey, &grey], &mut alpha, (w, h));
            // A still matte on a still picture comes back as it was, to
            // 16-bit precision (the kept mattes' resolution).
            for (a, b) in alpha.iter().zip(&before) {
                assert!((a - b).abs() <= 0.5 / SCALE, "{a} vs {b}");
            }
        }
    }
}
