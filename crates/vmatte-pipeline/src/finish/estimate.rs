//! Foreground colour estimation ("decontamination"): given a frame `I` and
//! its alpha matte `a`, find the straight foreground colour `F` (and a
//! background `B`) with `I ≈ a F + (1 - a) B`, by the multi-level method of
//! Germer, Uelwer, Conrad and Harmeling, "Fast Multi-Level Foreground
//! Estimation" (ICPR 2020), the method behind pymatting's
//! `estimate_foreground_ml`.
//!
//! Each level minimises, per colour channel,
//!
//! ```text
//! Σ_i (a_i F_i + (1 - a_i) B_i - I_i)²
//!   + Σ_i Σ_{j ∈ 4-neighbours(i)} (ε + ω |a_i - a_j|) ((F_i - F_j)² + (B_i - B_j)²)
//! ```
//!
//! (ε = 1e-5, ω = 1, pymatting's defaults) by Gauss–Seidel relaxation:
//! each pixel in turn solves its 2×2 system for `(F_i, B_i)` with its
//! neighbours held fixed, and the result is clamped to [0, 1]. A few sweeps
//! only smooth locally, so the solve runs coarse to fine and each level
//! starts from the one below:
//!
//! ```text
//!  level 0, 1×1:  F = mean colour where a > 0.9, B = mean where a < 0.1
//!      │ bilinear ×2
//!      ▼
//!  level 1, ≈2×2:  I, a sampled from the frame;  F, B ← 10 sweeps
//!      │ bilinear ×2
//!      ▼
//!      …           10 sweeps on the small levels, down to 2 on big ones
//!      │ bilinear ×2
//!      ▼
//!  level n, w×h:  I, a = the frame;  F, B ← 3 to 16 sweeps  ──▶ out = F
//! ```
//!
//! Level `l` is `ceil(w / 2^(n-l)) × ceil(h / 2^(n-l))` with
//! `n = ceil(log2(max(w, h)))`: the same number of levels as pymatting's
//! `round(w^(l/n)) × round(h^(l/n))`, but each exactly half the next, which
//! keeps the aspect ratio and makes every resampling a fixed pattern: a
//! level samples the frame pixel at the centre of each block it covers,
//! and starts from a bilinear ×2 upsample of the level below. (pymatting
//! samples each block's top-left pixel and upsamples by nearest neighbour.)
//! On synthetic frames (smooth F, constant or smooth B, soft discs and
//! thin strands) these choices and the extra sweeps land closer to the
//! true foreground than pymatting on nearly every channel of every case
//! tried, often by a third and on thin strands by up to 70 %; see the
//! tests.
//! Where the model itself leaves F and B loosely tied (a ramp of alpha a
//! hundred pixels wide, a textured foreground) both miss by about as much,
//! and either may come out a little closer.
//!
//! The sweeps use red-black order: a pixel's four neighbours all have the
//! other colour of a checkerboard, so one colour's pixels can be solved in
//! any order from the other colour's values. Each colour is stored in its
//! own planes (pixel `(x, y)` at row `y`, column `x / 2` of colour
//! `(x + y) % 2`), so the neighbours of a run of pixels are four runs of
//! contiguous memory and the inner loop vectorises.
//!
//! A level is one pass down its rows (see [`level_band`]): as row `t` is
//! loaded, the half sweeps run as a wavefront behind it (half sweep `j` on
//! row `t - 1 - j`) and the finished row `t - 2 sweeps` is written out, so
//! the working rows stay in cache in a small ring. Threads take bands of
//! rows; each also solves the `2 sweeps` rows either side of its band (a
//! half sweep moves information by one row, so errors from the band's cut
//! edges stop short of the rows it keeps), which makes the result identical
//! for any number of threads.
//!
//! Speed, release build, on the 2-core development machine, both cores:
//! 1920×1080 about 24 ms a frame (`time_1080p` below), 1280×720 about
//! 17 ms and 640×480 about 15 ms (they get more sweeps); pymatting 1.1.16
//! takes about 350 ms on the 1080p frame (one core, after numba's compile).

use std::ops::Range;

/// ε: the smoothness every neighbour pair gets, so that regions where
/// `a = 0` (which leaves `F` undetermined) are filled from around them.
const REGULARIZATION: f32 = 1e-5;
/// ω: the extra smoothness across alpha edges.
const GRADIENT_WEIGHT: f32 = 1.0;
/// Sweeps on the levels below the frame's: as many as fit in
/// [`LEVEL_BUDGET`] pixel-sweeps, within this range, so 10 up to about
/// 57×57, tapering to 2 from about 105×105 up. pymatting gives 10 to levels
/// up to 32×32 and 2 to the rest; these few more came out more accurate on
/// the synthetic cases (more still helped some and hurt others), and cost
/// well under a millisecond.
const LEVEL_SWEEPS: (usize, usize) = (2, 10);
const LEVEL_BUDGET: usize = 1 << 15;
/// Sweeps on the frame-sized level: as many as fit in [`FINAL_BUDGET`]
/// pixel-sweeps, within this range (1080p and up get 2, as pymatting does,
/// 720p 4, 640×480 13, smaller 16). Each one more carries colour further
/// from where alpha pins it down, into thin strands and wide blurred edges,
/// and on small frames they cost little; at 1080p a third sweep cost 10 ms
/// a frame, which took `--foreground estimate` from about 16% of a 1080p
/// RVM run on 2 cores to about 25% (docs/benchmarks.md), while 2 stay more
/// accurate than pymatting's on the benchmark's 1080p cases.
const FINAL_SWEEPS: (usize, usize) = (2, 16);
const FINAL_BUDGET: usize = 4 << 20;
/// Levels with fewer pixels run on one thread: a spawn costs more than
/// the work saves.
const PARALLEL_PIXELS: usize = 1 << 15;

/// Reusable buffers, so a video reuses its allocations frame after frame.
#[derive(Default)]
pub struct Estimator {
    /// `(width, height)` of levels `0..=n`; the last is the frame's.
    sizes: Vec<(usize, usize)>,
    /// `F` then `B` (six planes) of the level below, and of the current one
    /// as it is written.
    prev: Plain,
    next: Plain,
    /// One working ring of rows per band.
    rings: Vec<Ring>,
    /// Most threads to use; 0 until first asked.
    threads: usize,
}

impl Estimator {
    /// Writes the estimated straight foreground colour of `image` (three
    /// planes, w*h each) under `alpha` into `out` (three planes, w*h each).
    pub fn estimate(
        &mut self,
        image: [&[f32]; 3],
        alpha: &[f32],
        (width, height): (usize, usize),
        out: [&mut [f32]; 3],
    ) {
        let len = width * height;
        assert!(width >= 1 && height >= 1, "empty frame {width}x{height}");
        assert!(
            image.iter().all(|p| p.len() == len) && alpha.len() == len,
            "image or alpha is not {width}x{height}"
        );
        assert!(
            out.iter().all(|p| p.len() == len),
            "out is not {width}x{height}"
        );
        if len == 1 {
            // A lone pixel has no neighbours, so nothing tells F from B:
            // the image itself is the only sensible answer.
            for (o, i) in out.into_iter().zip(image) {
                o[0] = clamp01(i[0]);
            }
            return;
        }
        if self.threads == 0 {
            self.threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        }
        level_sizes(width, height, &mut self.sizes);
        let n = self.sizes.len() - 1;
        let frame = [image[0], image[1], image[2], alpha];

        // Level 0 holds the mean colours, taken from the samples of the
        // first level with enough pixels for a steady mean.
        let index = (0..n)
            .find(|&l| self.sizes[l].0 * self.sizes[l].1 >= 1 << 14)
            .unwrap_or(n);
        let shift = (n - index) as u32;
        let means = mean_colours(frame, (width, height), self.sizes[index], shift);
        self.prev.resize(1, 1, 6);
        self.prev.data[..6].copy_from_slice(&means);

        // Only the last level writes `out`: its F planes.
        let mut out = Some(out);
        for index in 1..=n {
            let (w, h) = self.sizes[index];
            let g = Geom::new(w, h);
            // Every pixel of a level with two or more pixels has a
            // neighbour, which keeps its 2×2 system regular (see
            // `coefficients`); a 1×1 level just passes its start on.
            let sweeps = if w * h < 2 {
                0
            } else if index == n {
                (FINAL_BUDGET / len).clamp(FINAL_SWEEPS.0, FINAL_SWEEPS.1)
            } else {
                (LEVEL_BUDGET / (w * h)).clamp(LEVEL_SWEEPS.0, LEVEL_SWEEPS.1)
            };
            let bands = if w * h >= PARALLEL_PIXELS {
                // Keep the solved halo (2 sweeps rows a side) small next to
                // the band.
                self.threads.min(h / (8 * sweeps).max(1)).max(1)
            } else {
                1
            };
            if self.rings.len() < bands {
                self.rings.resize_with(bands, Ring::default);
            }
            let level = Level {
                frame,
                size: (width, height),
                shift: (n - index) as u32,
                g,
                prev: &self.prev,
                sweeps,
            };
            let rings = &mut self.rings[..bands];
            if index < n {
                self.next.resize(w, h, 6);
                run_level(&level, self.next.planes_mut::<6>(), rings);
                std::mem::swap(&mut self.prev, &mut self.next);
            } else if let Some(out) = out.take() {
                run_level(&level, out, rings);
            }
        }
    }
}

/// `n + 1` level sizes, level `l` being `ceil(w / 2^(n-l)) × ceil(h / 2^(n-l))`
/// with `n = ceil(log2(max(w, h)))`: from 1×1 to `w × h`, each level
/// exactly `ceil` of half the next one's size.
fn level_sizes(w: usize, h: usize, sizes: &mut Vec<(usize, usize)>) {
    let longest = w.max(h);
    // ceil(log2(longest)), 0 for a 1×1 frame.
    let n = if longest <= 1 {
        0
    } else {
        (longest - 1).ilog2() + 1
    };
    sizes.clear();
    for shift in (0..=n).rev() {
        let size = |full: usize| full.div_ceil(1 << shift);
        sizes.push((size(w), size(h)));
    }
}

/// The frame pixel that pixel `x` of a level `2^shift` times smaller
/// samples: the centre of the block it covers, or the frame's last pixel
/// when the block is cut short by the frame's edge.
#[inline(always)]
fn centre(x: usize, shift: u32, len: usize) -> usize {
    ((x << shift) + ((1 << shift) >> 1)).min(len - 1)
}

/// Mean colour (r, g, b) where `a > 0.9`, then where `a < 0.1`, over the
/// sampled pixels; a class with no pixels gets the mean of all of them.
fn mean_colours(
    planes: [&[f32]; 4],
    (width, height): (usize, usize),
    (w, h): (usize, usize),
    shift: u32,
) -> [f32; 6] {
    let mut sums = [[0f64; 3]; 3];
    let mut counts = [0usize; 3];
    let [r, g, b, a] = planes;
    let rows = (0..h).map(|y| centre(y, shift, height));
    let pixels = rows.flat_map(|y| (0..w).map(move |x| y * width + centre(x, shift, width)));
    for i in pixels {
        let a = clamp01(a[i]);
        let class = if a > 0.9 {
            0
        } else if a < 0.1 {
            1
        } else {
            2
        };
        for (s, v) in sums[class].iter_mut().zip([r[i], g[i], b[i]]) {
            *s += f64::from(clamp01(v));
        }
        counts[class] += 1;
    }
    let total = counts.iter().sum::<usize>().max(1) as f64;
    let mut means = [0f32; 6];
    for class in 0..2 {
        for c in 0..3 {
            means[class * 3 + c] = if counts[class] > 0 {
                (sums[class][c] / counts[class] as f64) as f32
            } else {
                (sums.iter().map(|s| s[c]).sum::<f64>() / total) as f32
            };
        }
    }
    means
}

/// Clamps to [0, 1], NaN to 0 (it fails `v > 0`); `f32::clamp` would
/// keep NaN.
#[inline(always)]
fn clamp01(v: f32) -> f32 {
    if v > 0.0 {
        v.min(1.0)
    } else {
        0.0
    }
}

/// Planes of one size, stored one after another.
#[derive(Default)]
struct Plain {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

impl Plain {
    /// Sets the size; the buffer only grows, so a video stops allocating
    /// after its first frame.
    fn resize(&mut self, w: usize, h: usize, planes: usize) {
        self.w = w;
        self.h = h;
        if self.data.len() < w * h * planes {
            self.data.resize(w * h * planes, 0.0);
        }
    }

    fn plane(&self, i: usize) -> &[f32] {
        let n = self.w * self.h;
        &self.data[i * n..(i + 1) * n]
    }

    fn planes_mut<const N: usize>(&mut self) -> [&mut [f32]; N] {
        let n = self.w * self.h;
        let mut chunks = self.data[..N * n].chunks_exact_mut(n.max(1));
        std::array::from_fn(|_| chunks.next().unwrap_or_default())
    }
}

/// The red-black layout of a `w × h` level.
#[derive(Clone, Copy)]
struct Geom {
    w: usize,
    h: usize,
    /// Row length of each colour's planes: the most pixels of one colour
    /// in a row.
    stride: usize,
}

impl Geom {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            stride: w.div_ceil(2),
        }
    }

    /// The first `x` of colour `c` in row `y`: its `k`-th pixel sits at
    /// `x = 2k + offset`.
    #[inline(always)]
    fn offset(c: usize, y: usize) -> usize {
        (c + y) & 1
    }

    /// How many pixels of colour `c` row `y` holds.
    #[inline(always)]
    fn count(self, c: usize, y: usize) -> usize {
        (self.w - Self::offset(c, y)).div_ceil(2)
    }
}

/// One checkerboard colour's rows in a [`Ring`].
#[derive(Default)]
struct Half {
    image: [Vec<f32>; 3],
    alpha: Vec<f32>,
    fg: [Vec<f32>; 3],
    bg: [Vec<f32>; 3],
}

impl Half {
    /// Plane `p` of `F` then `B`.
    #[inline(always)]
    fn fg_bg(&self, p: usize) -> &[f32] {
        if p < 3 {
            &self.fg[p]
        } else {
            &self.bg[p - 3]
        }
    }

    #[inline(always)]
    fn fg_bg_mut(&mut self, p: usize) -> &mut [f32] {
        if p < 3 {
            &mut self.fg[p]
        } else {
            &mut self.bg[p - 3]
        }
    }

    #[inline(always)]
    fn image_alpha_mut(&mut self, p: usize) -> &mut [f32] {
        if p < 3 {
            &mut self.image[p]
        } else {
            &mut self.alpha
        }
    }
}

/// A band's working rows: level row `y` lives in slot `y % slots` of both
/// colours' planes.
#[derive(Default)]
struct Ring {
    halves: [Half; 2],
    slots: usize,
    stride: usize,
    /// One row of the level below, interpolated vertically.
    line: Vec<f32>,
}

impl Ring {
    /// Sizes the ring for `slots` rows of `stride`; buffers only grow.
    fn prepare(&mut self, slots: usize, stride: usize, line: usize) {
        self.slots = slots;
        self.stride = stride;
        let len = slots * stride;
        for half in &mut self.halves {
            let planes = half.image.iter_mut().chain([&mut half.alpha]);
            for p in planes.chain(&mut half.fg).chain(&mut half.bg) {
                if p.len() < len {
                    p.resize(len, 0.0);
                }
            }
        }
        if self.line.len() < line {
            self.line.resize(line, 0.0);
        }
    }

    /// Where row `y` starts in the planes.
    #[inline(always)]
    fn at(&self, y: usize) -> usize {
        (y % self.slots) * self.stride
    }
}

/// What one level's bands share.
struct Level<'a> {
    /// The frame's r, g, b, a planes, and its size.
    frame: [&'a [f32]; 4],
    size: (usize, usize),
    /// The level is the frame shrunk `2^shift` times (rounding up).
    shift: u32,
    g: Geom,
    /// `F` and `B` of the level below, `ceil` of half this one's size.
    prev: &'a Plain,
    sweeps: usize,
}

/// Solves `level` into `out` (its `F` planes, then its `B` planes if `N`
/// is 6), one band of rows per ring: the first on this thread, each other
/// on one of its own.
fn run_level<const N: usize>(level: &Level<'_>, out: [&mut [f32]; N], rings: &mut [Ring]) {
    let (w, h) = (level.g.w, level.g.h);
    let bands = rings.len().clamp(1, h);
    let mut rest = out;
    let mut work = Vec::with_capacity(bands);
    let mut start = 0;
    for (b, ring) in rings.iter_mut().take(bands).enumerate() {
        let end = h * (b + 1) / bands;
        let band: [&mut [f32]; N] = std::array::from_fn(|i| {
            let (head, tail) = std::mem::take(&mut rest[i]).split_at_mut((end - start) * w);
            rest[i] = tail;
            head
        });
        work.push((start..end, band, ring));
        start = end;
    }
    std::thread::scope(|s| {
        let mut work = work.into_iter();
        let first = work.next();
        for (rows, mut band, ring) in work {
            s.spawn(move || level_band(level, rows, ring, &mut band));
        }
        if let Some((rows, mut band, ring)) = first {
            level_band(level, rows, ring, &mut band);
        }
    });
}

vmatte_models::vectorized! {
    /// Solves rows `band` of `level` into `out` (the band's rows of the
    /// output planes): rows are loaded one at a time, half sweep `j`
    /// follows `1 + j` rows behind, and a row is written out once the last
    /// half sweep has passed it. Rows within `2 sweeps` outside the band
    /// are solved too but not kept: their far edge lacks its neighbours,
    /// and that error travels one row per half sweep, so it dies out just
    /// before the band.
    fn level_band(level: &Level<'_>, band: Range<usize>, ring: &mut Ring, out: &mut [&mut [f32]]) {
        let g = level.g;
        let stages = 2 * level.sweeps;
        let solved = band.start.saturating_sub(stages)..(band.end + stages).min(g.h);
        // Row y is loaded at step y and last read at step y + stages + 1
        // (by the last half sweep of row y + 1).
        ring.prepare(stages + 2, g.stride, level.prev.w + 2);
        for t in solved.start..solved.end + stages {
            if t < solved.end {
                load_row(level, ring, t);
            }
            // Half sweep j updates colour j % 2 of row t - 1 - j from the
            // other colour's rows, which half sweep j - 1 finished on this
            // step (row t - j) or before.
            for j in 0..stages {
                if let Some(y) = t.checked_sub(1 + j).filter(|y| solved.contains(y)) {
                    relax_row(j & 1, y, g, ring, &solved);
                }
            }
            if let Some(y) = t.checked_sub(stages).filter(|y| band.contains(y)) {
                emit_row(ring, g, y, y - band.start, out);
            }
        }
    }
}

/// Samples row `y` of the level's image and alpha from the frame into the
/// ring (clamped to [0, 1], NaN as 0), and interpolates its start `F`, `B`
/// from the level below: only into the colour the first half sweep reads,
/// since that sweep overwrites the other colour before anything reads it.
#[inline(always)]
fn load_row(level: &Level<'_>, ring: &mut Ring, y: usize) {
    let (g, shift) = (level.g, level.shift);
    let ((width, height), at) = (level.size, ring.at(y));
    let src_y = centre(y, shift, height);
    for (p, plane) in level.frame.iter().enumerate() {
        let src = &plane[src_y * width..(src_y + 1) * width];
        for (c, half) in ring.halves.iter_mut().enumerate() {
            let dst = &mut half.image_alpha_mut(p)[at..at + g.count(c, y)];
            sample_row(src, shift, Geom::offset(c, y), dst);
        }
    }

    // Bilinear, pixel centres aligned: fine row or column 2i lies a quarter
    // of the way from coarse i to i - 1, and 2i + 1 a quarter of the way
    // from i to i + 1, clamped at the ends.
    let prev = level.prev;
    let (cw, ch) = (prev.w, prev.h);
    let i = y / 2;
    let j = if y.is_multiple_of(2) {
        i.saturating_sub(1)
    } else {
        (i + 1).min(ch - 1)
    };
    let first = if level.sweeps == 0 { 0 } else { 1 };
    // The coarse row blended vertically, one copy of each end value beyond
    // each end: `line[1 + i]` is column `i`.
    let line = &mut ring.line[..cw + 2];
    for p in 0..6 {
        let plane = prev.plane(p);
        let (near, far) = (&plane[i * cw..(i + 1) * cw], &plane[j * cw..(j + 1) * cw]);
        for ((l, n), f) in line[1..cw + 1].iter_mut().zip(near).zip(far) {
            *l = 0.75 * n + 0.25 * f;
        }
        line[0] = line[1];
        line[cw + 1] = line[cw];
        for c in first..2 {
            // Pixel k of this colour is column x = 2k + o, whose coarse
            // column is k: its other neighbour is k - 1 for o = 0 and
            // k + 1 for o = 1, that is `line[k + 2o]`.
            let o = Geom::offset(c, y);
            let n = g.count(c, y);
            let dst = &mut ring.halves[c].fg_bg_mut(p)[at..at + n];
            let near = &line[1..1 + n];
            let far = &line[2 * o..2 * o + n];
            for ((d, n), f) in dst.iter_mut().zip(near).zip(far) {
                *d = 0.75 * n + 0.25 * f;
            }
        }
    }
}

/// `dst[k]` = frame pixel `centre(2k + o, shift)` of the frame row `src`,
/// clamped to [0, 1]: every `2^(shift+1)`-th pixel from `o 2^shift +
/// 2^(shift-1)`. The two finest levels have their own loops, whose constant
/// stride the compiler turns into vector shuffles; coarser ones touch a
/// cache line per sample anyway.
#[inline(always)]
fn sample_row(src: &[f32], shift: u32, o: usize, dst: &mut [f32]) {
    let start = (o << shift) + ((1 << shift) >> 1);
    let rest = src.get(start..).unwrap_or_default();
    // The source goes first in each `zip`: it runs out first, and `zip`
    // must not take a `dst` entry it has no value for.
    let mut dst = dst.iter_mut();
    let mut leftover: &[f32] = &[];
    match shift {
        0 => {
            let (pairs, tail) = rest.as_chunks::<2>();
            for (v, d) in pairs.iter().zip(&mut dst) {
                *d = clamp01(v[0]);
            }
            leftover = tail;
        }
        1 => {
            let (quads, tail) = rest.as_chunks::<4>();
            for (v, d) in quads.iter().zip(&mut dst) {
                *d = clamp01(v[0]);
            }
            leftover = tail;
        }
        _ => {
            for (v, d) in rest.iter().step_by(2 << shift).zip(&mut dst) {
                *d = clamp01(*v);
            }
        }
    }
    // A short last chunk still starts at a sample; past it only the last
    // pixel's block can remain, cut short by the frame's edge.
    if let Some(v) = leftover.first() {
        // Only now take the entry: taking it unconditionally would skip it.
        if let Some(d) = dst.next() {
            *d = clamp01(*v);
        }
    }
    let last = clamp01(src.last().copied().unwrap_or(0.0));
    dst.for_each(|d| *d = last);
}

/// Interleaves both colours of ring row `y` into row `r` of `out`'s planes
/// (`F`, then `B` if there are six).
#[inline(always)]
fn emit_row(ring: &Ring, g: Geom, y: usize, r: usize, out: &mut [&mut [f32]]) {
    /// Pairs interleaved per block: fixed-size arrays let the compiler
    /// use shuffles rather than one value at a time.
    const PAIRS: usize = 32;
    let at = ring.at(y);
    let pairs = g.w / 2;
    for (p, plane) in out.iter_mut().enumerate() {
        // Even x has colour y % 2.
        let even = &ring.halves[y & 1].fg_bg(p)[at..at + g.stride];
        let odd = &ring.halves[1 - (y & 1)].fg_bg(p)[at..at + g.stride];
        let row = &mut plane[r * g.w..(r + 1) * g.w];
        let (blocks, _) = row.as_chunks_mut::<{ 2 * PAIRS }>();
        let (even_blocks, _) = even[..pairs].as_chunks::<PAIRS>();
        let (odd_blocks, _) = odd[..pairs].as_chunks::<PAIRS>();
        for ((d, e), o) in blocks.iter_mut().zip(even_blocks).zip(odd_blocks) {
            // Local copies in and out: the compiler cannot tell that `out`
            // and the ring do not overlap.
            let (e, o) = (*e, *o);
            let mut pairs = [0f32; 2 * PAIRS];
            for j in 0..PAIRS {
                pairs[2 * j] = e[j];
                pairs[2 * j + 1] = o[j];
            }
            *d = pairs;
        }
        let done = even_blocks.len() * PAIRS;
        for k in done..g.stride {
            row[2 * k] = even[k];
            if let (Some(d), Some(o)) = (row.get_mut(2 * k + 1), odd.get(k)) {
                *d = *o;
            }
        }
    }
}

/// Known values of the other colour around the pixels being solved, each
/// plane sliced alike.
#[derive(Clone, Copy)]
struct Known<'a> {
    alpha: &'a [f32],
    fg: [&'a [f32]; 3],
    bg: [&'a [f32]; 3],
}

impl<'a> Known<'a> {
    #[inline(always)]
    fn slice(self, at: usize, len: usize) -> Self {
        let cut = |p: &'a [f32]| &p[at..at + len];
        Known {
            alpha: cut(self.alpha),
            fg: self.fg.map(cut),
            bg: self.bg.map(cut),
        }
    }
}

/// Solves the pixels of `colour` in row `y` from the other colour's rows
/// `y - 1 ..= y + 1`; rows outside `solved` count as missing.
#[inline(always)]
fn relax_row(colour: usize, y: usize, g: Geom, ring: &mut Ring, solved: &Range<usize>) {
    let s = g.stride;
    let (at, at_up, at_down) = (ring.at(y), ring.at(y.wrapping_sub(1)), ring.at(y + 1));
    let [h0, h1] = &mut ring.halves;
    let (own, other) = if colour == 0 { (h0, &*h1) } else { (h1, &*h0) };
    let row = |at: usize| Known {
        alpha: &other.alpha[at..at + s],
        fg: other.fg.each_ref().map(|p| &p[at..at + s]),
        bg: other.bg.each_ref().map(|p| &p[at..at + s]),
    };
    let here = row(at);
    let up = (y > solved.start).then(|| row(at_up));
    let down = (y + 1 < solved.end).then(|| row(at_down));
    let o = Geom::offset(colour, y);
    let n = g.count(colour, y);
    let centre = Centre {
        alpha: &own.alpha[at..at + n],
        image: own.image.each_ref().map(|p| &p[at..at + n]),
    };
    let mut fg = own.fg.each_mut().map(|p| &mut p[at..at + n]);
    let mut bg = own.bg.each_mut().map(|p| &mut p[at..at + n]);

    // Pixel k sits at x = 2k + o. Its left neighbour is the other colour's
    // k + o - 1, its right one k + o, and those above and below the other
    // colour's k in rows y ∓ 1 (whose offset is also o). Pixels k0..k1
    // have both horizontal neighbours.
    let k0 = usize::from(o == 0);
    let k1 = (g.w - o) / 2;
    if k0 < k1 {
        let len = k1 - k0;
        let right = here.slice(k0 + o, len);
        let left = here.slice(k0 + o - 1, len);
        // A missing row gets weight 0; any slice of the right length
        // stands in for its values.
        let [(up, mu_up), (down, mu_down)] =
            [up, down].map(|v| v.map_or((right, 0.0), |v| (v.slice(k0, len), 1.0)));
        relax_span(
            centre.slice(k0, len),
            [left, right, up, down],
            [1.0, 1.0, mu_up, mu_down],
            fg.each_mut().map(|p| &mut p[k0..k1]),
            bg.each_mut().map(|p| &mut p[k0..k1]),
        );
    }
    // The pixels at the ends of the row, one at a time.
    for k in (0..k0.min(n)).chain(k1.max(k0)..n) {
        let x = 2 * k + o;
        let pick = |v: Option<Known>, at: usize| match v {
            Some(v) => (v.alpha[at], v.fg.map(|p| p[at]), v.bg.map(|p| p[at]), 1.0),
            None => (0.0, [0.0; 3], [0.0; 3], 0.0),
        };
        let nb = [
            pick((x >= 1).then_some(here), (k + o).wrapping_sub(1)),
            pick((x + 1 < g.w).then_some(here), k + o),
            pick(up, k),
            pick(down, k),
        ];
        let cf = coefficients(centre.alpha[k], nb.map(|v| v.0), nb.map(|v| v.3));
        for ch in 0..3 {
            let (f, b) = solve(
                &cf,
                centre.image[ch][k],
                nb.map(|v| v.1[ch]),
                nb.map(|v| v.2[ch]),
            );
            fg[ch][k] = f;
            bg[ch][k] = b;
        }
    }
}

/// The pixels being solved: their alpha and image.
#[derive(Clone, Copy)]
struct Centre<'a> {
    alpha: &'a [f32],
    image: [&'a [f32]; 3],
}

impl<'a> Centre<'a> {
    fn slice(self, at: usize, len: usize) -> Self {
        let cut = |p: &'a [f32]| &p[at..at + len];
        Centre {
            alpha: cut(self.alpha),
            image: self.image.map(cut),
        }
    }
}

/// One pixel's system: `w` are its neighbours' smoothness weights and
/// the rest the inverse of its 2×2 matrix, pre-multiplied as [`solve`]
/// needs.
struct Coeffs {
    w: [f32; 4],
    /// Weight of the image in `F` and in `B`.
    pf: f32,
    pb: f32,
    /// Inverse matrix entries.
    c00: f32,
    c01: f32,
    c11: f32,
}

impl Coeffs {
    /// The nine values, weights first.
    #[inline(always)]
    fn planes(&self) -> [f32; 9] {
        let w = self.w;
        [
            w[0], w[1], w[2], w[3], self.pf, self.pb, self.c00, self.c01, self.c11,
        ]
    }

    #[inline(always)]
    fn from_planes([w0, w1, w2, w3, pf, pb, c00, c01, c11]: [f32; 9]) -> Self {
        Coeffs {
            w: [w0, w1, w2, w3],
            pf,
            pb,
            c00,
            c01,
            c11,
        }
    }
}

/// The matrix of pixel `i` is `[[a² + S, a(1-a)], [a(1-a), (1-a)² + S]]`
/// with `S` the sum of its neighbour weights; its determinant is
/// `S (a² + (1-a)² + S)`, positive whenever the pixel has a neighbour
/// (`S ≥ ε`). `mu` is 1 for a neighbour that exists and 0 for one off the
/// edge.
#[inline(always)]
fn coefficients(a: f32, neighbours: [f32; 4], mu: [f32; 4]) -> Coeffs {
    let weight = |j: usize| mu[j] * (REGULARIZATION + GRADIENT_WEIGHT * (a - neighbours[j]).abs());
    let w = [weight(0), weight(1), weight(2), weight(3)];
    let s = (w[0] + w[1]) + (w[2] + w[3]);
    let ia = 1.0 - a;
    let inv = 1.0 / (s * (a * a + ia * ia + s));
    Coeffs {
        w,
        pf: a * s * inv,
        pb: ia * s * inv,
        c00: (ia * ia + s) * inv,
        c01: -a * ia * inv,
        c11: (a * a + s) * inv,
    }
}

/// `(F, B)` of one channel: the 2×2 solve of
/// `[a I + Σ w_j F_j, (1-a) I + Σ w_j B_j]`, clamped to [0, 1].
#[inline(always)]
fn solve(cf: &Coeffs, image: f32, f: [f32; 4], b: [f32; 4]) -> (f32, f32) {
    let w = cf.w;
    let sf = (w[0] * f[0] + w[1] * f[1]) + (w[2] * f[2] + w[3] * f[3]);
    let sb = (w[0] * b[0] + w[1] * b[1]) + (w[2] * b[2] + w[3] * b[3]);
    let fg = cf.pf * image + cf.c00 * sf + cf.c01 * sb;
    let bg = cf.pb * image + cf.c01 * sf + cf.c11 * sb;
    // Finite here (see `coefficients`), so the plain clamp, which is one
    // min and one max, does.
    (fg.clamp(0.0, 1.0), bg.clamp(0.0, 1.0))
}

/// Pixels per block of [`relax_span`]: enough to amortise a block's
/// set-up, few enough that its temporaries stay in L1.
const LANES: usize = 64;
type Block = [f32; LANES];
/// Stands in for a block in an array about to be filled.
static ZERO: Block = [0.0; LANES];

/// Where the blocks of a run of `n` pixels start: every [`LANES`] pixels,
/// the last one moved back to end with the run (overlapping the one before:
/// its pixels are just solved twice, to the same values, as a half sweep
/// reads nothing it writes). Only a run shorter than a block has a short
/// one, at 0.
#[inline(always)]
fn block_starts(n: usize) -> impl Iterator<Item = usize> {
    let whole = (0..n / LANES).map(|i| i * LANES);
    let last = (!n.is_multiple_of(LANES)).then(|| n.saturating_sub(LANES));
    whole.chain(last)
}

/// The block of `s` from `at`, or, when `s` ends sooner (a run shorter
/// than a block), what is left copied into `spare` and padded with zeros.
#[inline(always)]
fn block<'a>(s: &'a [f32], at: usize, spare: &'a mut Block) -> &'a Block {
    let rest = s.get(at..).unwrap_or_default();
    match rest.first_chunk::<LANES>() {
        Some(full) => full,
        None => {
            spare[..rest.len()].copy_from_slice(rest);
            spare[rest.len()..].fill(0.0);
            spare
        }
    }
}

/// [`block`] of each of `s`, with one spare each.
#[inline(always)]
fn blocks<'a, const N: usize>(
    s: [&'a [f32]; N],
    at: usize,
    spare: &'a mut [Block; N],
) -> [&'a Block; N] {
    let mut out = [&ZERO; N];
    for ((o, s), spare) in out.iter_mut().zip(s).zip(spare) {
        *o = block(s, at, spare);
    }
    out
}

/// Copies `src` to `dst` from `at`, as much of it as fits: a whole block as
/// a fixed-size copy (a few vector moves).
#[inline(always)]
fn store(dst: &mut [f32], at: usize, src: &Block) {
    let rest = dst.get_mut(at..).unwrap_or_default();
    match rest.first_chunk_mut::<LANES>() {
        Some(d) => *d = *src,
        None => {
            let len = rest.len();
            rest.copy_from_slice(&src[..len]);
        }
    }
}

/// Solves a run of pixels that all have left and right neighbours, a block
/// of [`LANES`] at a time: first each pixel's [`Coeffs`], then each channel.
/// Every loop runs over whole fixed-size arrays and writes only to arrays
/// on the stack, which the compiler can see alias nothing, so each
/// vectorises without run-time overlap checks or scalar tails; the results
/// are then copied out.
#[inline(always)]
fn relax_span(
    centre: Centre<'_>,
    nb: [Known<'_>; 4],
    mu: [f32; 4],
    fg: [&mut [f32]; 3],
    bg: [&mut [f32]; 3],
) {
    let n = centre.alpha.len();
    let (mut spare_a, mut spare_n) = ([[0f32; LANES]; 1], [[0f32; LANES]; 4]);
    let (mut spare_i, mut spare_v) = ([[0f32; LANES]; 1], [[0f32; LANES]; 8]);
    for at in block_starts(n) {
        let [a] = blocks([centre.alpha], at, &mut spare_a);
        let na = blocks(nb.map(|k| k.alpha), at, &mut spare_n);
        // Each pixel's coefficients, one plane per entry of `Coeffs::planes`.
        let mut m = [[0f32; LANES]; 9];
        for p in 0..LANES {
            let cf = coefficients(a[p], [na[0][p], na[1][p], na[2][p], na[3][p]], mu);
            for (plane, v) in m.iter_mut().zip(cf.planes()) {
                plane[p] = v;
            }
        }
        for ch in 0..3 {
            let [image] = blocks([centre.image[ch]], at, &mut spare_i);
            let [f0, f1, f2, f3, b0, b1, b2, b3] = blocks(
                [
                    nb[0].fg[ch],
                    nb[1].fg[ch],
                    nb[2].fg[ch],
                    nb[3].fg[ch],
                    nb[0].bg[ch],
                    nb[1].bg[ch],
                    nb[2].bg[ch],
                    nb[3].bg[ch],
                ],
                at,
                &mut spare_v,
            );
            let mut fo = [0f32; LANES];
            let mut bo = [0f32; LANES];
            for p in 0..LANES {
                let cf = Coeffs::from_planes(std::array::from_fn(|j| m[j][p]));
                let (fv, bv) = solve(
                    &cf,
                    image[p],
                    [f0[p], f1[p], f2[p], f3[p]],
                    [b0[p], b1[p], b2[p], b3[p]],
                );
                fo[p] = fv;
                bo[p] = bv;
            }
            store(fg[ch], at, &fo);
            store(bg[ch], at, &bo);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame in planes: image r, g, b and alpha.
    struct Frame {
        w: usize,
        h: usize,
        image: [Vec<f32>; 3],
        alpha: Vec<f32>,
        /// The foreground the image was made from, where known.
        fg: [Vec<f32>; 3],
    }

    impl Frame {
        /// `I = a F + (1 - a) B` from per-pixel closures.
        fn compose(
            (w, h): (usize, usize),
            fg: impl Fn(f32, f32) -> [f32; 3],
            bg: impl Fn(f32, f32) -> [f32; 3],
            mut alpha: impl FnMut(usize, usize) -> f32,
        ) -> Frame {
            let mut frame = Frame {
                w,
                h,
                image: Default::default(),
                alpha: Vec::with_capacity(w * h),
                fg: Default::default(),
            };
            for y in 0..h {
                for x in 0..w {
                    let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
                    let (f, b, a) = (fg(u, v), bg(u, v), alpha(x, y));
                    frame.alpha.push(a);
                    for c in 0..3 {
                        frame.fg[c].push(f[c]);
                        frame.image[c].push(a * f[c] + (1.0 - a) * b[c]);
                    }
                }
            }
            frame
        }

        fn estimate_with(&self, est: &mut Estimator) -> [Vec<f32>; 3] {
            let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| vec![f32::NAN; self.w * self.h]);
            let [o0, o1, o2] = &mut out;
            let image = self.image.each_ref().map(|p| p.as_slice());
            est.estimate(image, &self.alpha, (self.w, self.h), [o0, o1, o2]);
            out
        }

        fn estimate(&self) -> [Vec<f32>; 3] {
            self.estimate_with(&mut Estimator::default())
        }

        /// Per channel, the mean absolute error of `est` against the true
        /// foreground over the pixels with 0.05 < a < 0.95.
        fn mae(&self, est: &[Vec<f32>; 3]) -> [f32; 3] {
            let soft: Vec<usize> = (0..self.w * self.h)
                .filter(|&i| self.alpha[i] > 0.05 && self.alpha[i] < 0.95)
                .collect();
            assert!(soft.len() > 100, "too few soft pixels: {}", soft.len());
            std::array::from_fn(|c| {
                let sum: f32 = soft
                    .iter()
                    .map(|&i| (est[c][i] - self.fg[c][i]).abs())
                    .sum();
                sum / soft.len() as f32
            })
        }
    }

    /// xorshift32 in [0, 1), so the cases need no dependencies.
    fn noise(seed: &mut u32) -> f32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        (*seed >> 8) as f32 / (1 << 24) as f32
    }

    fn gradient_fg(u: f32, v: f32) -> [f32; 3] {
        [0.8 - 0.5 * u, 0.3 + 0.5 * v, 0.2 + 0.6 * u * v]
    }

    fn gradient_bg(u: f32, v: f32) -> [f32; 3] {
        [0.1 + 0.3 * v, 0.7 - 0.4 * u, 0.9 - 0.5 * v]
    }

    /// A soft disc (a ramp `edge` pixels wide) with thin soft strands
    /// (Gaussian profiles 1–2 px wide, peaks 0.5–0.95) growing out of it.
    fn disc_and_hair((w, h): (usize, usize), edge: f32, strands: usize) -> Vec<f32> {
        let (cx, cy, r) = (w as f32 / 2.0, h as f32 / 2.0, 0.3 * w.min(h) as f32);
        let mut alpha: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                ((r - d) / edge + 0.5).clamp(0.0, 1.0)
            })
            .collect();
        let mut seed = 0x9e37_79b9;
        for _ in 0..strands {
            let angle = noise(&mut seed) * std::f32::consts::TAU;
            let length = (0.3 + 0.6 * noise(&mut seed)) * r;
            let sigma = 0.5 + 0.5 * noise(&mut seed);
            let peak = 0.5 + 0.45 * noise(&mut seed);
            let curl = (noise(&mut seed) - 0.5) * 2.0 / r;
            for step in 0..(2.0 * length) as usize {
                let t = step as f32 / 2.0;
                let bend = curl * t * t * 0.5;
                let (dx, dy) = (angle.cos(), angle.sin());
                let px = cx + dx * (r + t) - dy * bend;
                let py = cy + dy * (r + t) + dx * bend;
                let (x0, y0) = (px as isize, py as isize);
                for y in (y0 - 3).max(0)..(y0 + 4).min(h as isize) {
                    for x in (x0 - 3).max(0)..(x0 + 4).min(w as isize) {
                        let d2 = (x as f32 + 0.5 - px).powi(2) + (y as f32 + 0.5 - py).powi(2);
                        let a = peak * (-d2 / (2.0 * sigma * sigma)).exp();
                        let i = y as usize * w + x as usize;
                        alpha[i] = alpha[i].max(a);
                    }
                }
            }
        }
        alpha
    }

    fn assert_unit(out: &[Vec<f32>; 3]) {
        for plane in out {
            for &v in plane {
                assert!(
                    v.is_finite() && (0.0..=1.0).contains(&v),
                    "{v} outside [0, 1]"
                );
            }
        }
    }

    #[test]
    fn opaque_pixels_keep_the_image() {
        let mut seed = 7;
        let size = (61, 47);
        // Fully opaque: nothing to unmix, F is the image (the smoothness
        // pull of 4ε against a data weight of 1 is below 1e-4).
        let opaque = Frame::compose(size, |_, _| [0.0; 3], |_, _| [0.0; 3], |_, _| 1.0);
        let mut opaque = opaque;
        for plane in &mut opaque.image {
            plane.iter_mut().for_each(|v| *v = noise(&mut seed));
        }
        let out = opaque.estimate();
        for (o, i) in out.iter().zip(&opaque.image) {
            let worst = o
                .iter()
                .zip(i)
                .map(|(o, i)| (o - i).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 1e-3,
                "F differs from the image by {worst} where a = 1"
            );
        }

        // Opaque, transparent and soft regions side by side: away from the
        // edges, opaque pixels keep the image and transparent ones get
        // some colour in [0, 1] (F is free there).
        let frame = Frame::compose(size, gradient_fg, gradient_bg, |x, _| match x {
            0..20 => 0.0,
            20..40 => 1.0,
            _ => 0.5,
        });
        let out = frame.estimate();
        assert_unit(&out);
        for y in 0..size.1 {
            for x in 22..38 {
                let i = y * size.0 + x;
                for (o, image) in out.iter().zip(&frame.image) {
                    let diff = (o[i] - image[i]).abs();
                    assert!(diff < 1e-3, "opaque pixel ({x}, {y}) moved by {diff}");
                }
            }
        }
        let clear = Frame::compose(size, gradient_fg, gradient_bg, |_, _| 0.0);
        assert_unit(&clear.estimate());
    }

    #[test]
    fn recovers_a_known_foreground() {
        // Mean absolute error of F per channel (r, g, b) over the soft
        // pixels (0.05 < a < 0.95), measured when this was written, next to
        // that of taking the image itself as F and to pymatting 1.1.16's
        // `estimate_foreground_ml` (default settings) on the same frames:
        //
        //   hair, 192×144:   0.0018 0.0022 0.0018   image 0.167 0.089 0.177
        //                                        pymatting 0.0098 0.0108 0.0110
        //   soft disc, 160×120, constant B:
        //                    0.0077 0.0103 0.0088   image 0.209 0.105 0.287
        //                                        pymatting 0.0111 0.0132 0.0101
        //
        // The bounds (6% and 15% of the image's error) leave room for
        // harmless changes and still fail on any real loss of accuracy: a
        // solve that goes wrong stays near the image's error.
        let size = (192, 144);
        let hair = disc_and_hair(size, 3.0, 60);
        let frame = Frame::compose(size, gradient_fg, gradient_bg, |x, y| hair[y * size.0 + x]);
        let (est, image) = (frame.mae(&frame.estimate()), frame.mae(&frame.image));
        for c in 0..3 {
            assert!(
                est[c] < 0.06 * image[c],
                "hair, channel {c}: {est:?}, image {image:?}"
            );
        }

        let size = (160, 120);
        let disc = disc_and_hair(size, 12.0, 0);
        let constant_bg = |_, _| [0.15, 0.75, 0.9];
        let frame = Frame::compose(size, gradient_fg, constant_bg, |x, y| disc[y * size.0 + x]);
        let (est, image) = (frame.mae(&frame.estimate()), frame.mae(&frame.image));
        for c in 0..3 {
            assert!(
                est[c] < 0.15 * image[c],
                "disc, channel {c}: {est:?}, image {image:?}"
            );
        }
    }

    #[test]
    fn tiny_and_odd_frames() {
        let mut seed = 3;
        for size in [
            (1, 1),
            (1, 7),
            (7, 1),
            (3, 5),
            (2, 1),
            (1, 2),
            (2, 2),
            (5, 3),
            (33, 1),
        ] {
            let frame = Frame::compose(
                size,
                |u, v| [u, v, 0.5],
                |u, _| [1.0 - u, 0.2, 0.8],
                |_, _| noise(&mut seed),
            );
            let out = frame.estimate();
            assert_unit(&out);
        }
        // One pixel: its own colour.
        let frame = Frame::compose((1, 1), |_, _| [0.2, 0.4, 0.6], |_, _| [1.0; 3], |_, _| 0.5);
        let out = frame.estimate();
        for (o, image) in out.iter().zip(&frame.image) {
            assert_eq!(o[0], image[0]);
        }
    }

    #[test]
    fn nan_and_out_of_range_alpha_count_as_clamped() {
        let size = (40, 30);
        let hair = disc_and_hair(size, 3.0, 10);
        let mut odd = Frame::compose(size, gradient_fg, gradient_bg, |x, y| hair[y * size.0 + x]);
        let mut clean = Frame::compose(size, gradient_fg, gradient_bg, |x, y| hair[y * size.0 + x]);
        for i in (0..size.0 * size.1).step_by(7) {
            (odd.alpha[i], clean.alpha[i]) = match i % 3 {
                0 => (f32::NAN, 0.0),
                1 => (-2.0, 0.0),
                _ => (3.0, 1.0),
            };
        }
        let (got, want) = (odd.estimate(), clean.estimate());
        assert_unit(&got);
        assert_eq!(got, want);
    }

    #[test]
    fn matches_the_plain_method() {
        let mut seed = 11;
        for size in [
            (37, 23),
            (64, 48),
            (1, 9),
            (9, 1),
            (2, 3),
            (5, 2),
            (131, 257),
        ] {
            let hair = disc_and_hair(size, 2.0, 20);
            let mut frame =
                Frame::compose(size, gradient_fg, gradient_bg, |x, y| hair[y * size.0 + x]);
            // Some noise, so that no two pixels solve alike by chance.
            for plane in &mut frame.image {
                plane
                    .iter_mut()
                    .for_each(|v| *v = (*v + 0.1 * noise(&mut seed)).min(1.0));
            }
            let want = reference(&frame);
            for threads in [1, 2, 3] {
                let mut est = Estimator {
                    threads,
                    ..Estimator::default()
                };
                let got = frame.estimate_with(&mut est);
                for c in 0..3 {
                    let worst = got[c]
                        .iter()
                        .zip(&want[c])
                        .map(|(g, w)| (g - w).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        worst < 1e-5,
                        "{size:?}, {threads} threads, channel {c}: off by {worst}"
                    );
                }
            }
        }
    }

    #[test]
    fn bands_give_the_same_result_as_one_thread() {
        // Big enough for several bands on the full-size level and the one
        // below it.
        let size = (600, 400);
        let hair = disc_and_hair(size, 3.0, 80);
        let frame = Frame::compose(size, gradient_fg, gradient_bg, |x, y| hair[y * size.0 + x]);
        let one = frame.estimate_with(&mut Estimator {
            threads: 1,
            ..Estimator::default()
        });
        for threads in [2, 3, 5] {
            let many = frame.estimate_with(&mut Estimator {
                threads,
                ..Estimator::default()
            });
            assert!(one == many, "{threads} threads differ from one");
        }
    }

    #[test]
    fn reused_buffers_do_not_leak_between_frames() {
        let mut est = Estimator::default();
        let frames: Vec<Frame> = [(90, 60), (31, 77), (90, 60), (4, 4)]
            .into_iter()
            .enumerate()
            .map(|(k, size)| {
                let hair = disc_and_hair(size, 2.0 + k as f32, 15);
                Frame::compose(size, gradient_fg, gradient_bg, |x, y| hair[y * size.0 + x])
            })
            .collect();
        for frame in &frames {
            assert_eq!(frame.estimate_with(&mut est), frame.estimate());
        }
    }

    /// The plain method on whole planes, one level and one half sweep at a
    /// time, sharing only the per-pixel maths with the code under test: the
    /// ring, wavefront, halos and bands must reproduce it.
    fn reference(frame: &Frame) -> [Vec<f32>; 3] {
        let (width, height) = (frame.w, frame.h);
        let mut sizes = Vec::new();
        level_sizes(width, height, &mut sizes);
        let n = sizes.len() - 1;
        let planes = [
            &frame.image[0][..],
            &frame.image[1],
            &frame.image[2],
            &frame.alpha,
        ];
        let index = (0..n)
            .find(|&l| sizes[l].0 * sizes[l].1 >= 1 << 14)
            .unwrap_or(n);
        let means = mean_colours(planes, (width, height), sizes[index], (n - index) as u32);
        // F then B planes of the current level.
        let mut fb: Vec<Vec<f32>> = means.iter().map(|&m| vec![m]).collect();
        let (mut cw, mut ch) = (1, 1);
        for (index, &(w, h)) in sizes.iter().enumerate().skip(1) {
            let shift = (n - index) as u32;
            let sample = |p: usize, x: usize, y: usize| {
                clamp01(planes[p][centre(y, shift, height) * width + centre(x, shift, width)])
            };
            // Bilinear ×2: fine i sits a quarter of the way from coarse
            // i / 2 to its other neighbour, clamped at the ends.
            let up = |plane: &[f32], x: usize, y: usize| {
                let far = |i: usize, len: usize| {
                    if i.is_multiple_of(2) {
                        (i / 2).saturating_sub(1)
                    } else {
                        (i / 2 + 1).min(len - 1)
                    }
                };
                let line =
                    |i: usize| 0.75 * plane[(y / 2) * cw + i] + 0.25 * plane[far(y, ch) * cw + i];
                0.75 * line(x / 2) + 0.25 * line(far(x, cw))
            };
            let mut next: Vec<Vec<f32>> = fb
                .iter()
                .map(|p| (0..w * h).map(|i| up(p, i % w, i / w)).collect())
                .collect();
            let alpha: Vec<f32> = (0..w * h).map(|i| sample(3, i % w, i / w)).collect();
            let image: Vec<Vec<f32>> = (0..3)
                .map(|p| (0..w * h).map(|i| sample(p, i % w, i / w)).collect())
                .collect();
            let sweeps = if w * h < 2 {
                0
            } else if index == n {
                (FINAL_BUDGET / (width * height)).clamp(FINAL_SWEEPS.0, FINAL_SWEEPS.1)
            } else {
                (LEVEL_BUDGET / (w * h)).clamp(LEVEL_SWEEPS.0, LEVEL_SWEEPS.1)
            };
            for _ in 0..sweeps {
                for colour in 0..2 {
                    for y in 0..h {
                        for x in (0..w).filter(|x| (x + y) % 2 == colour) {
                            let nb = [
                                (x > 0).then(|| y * w + x - 1),
                                (x + 1 < w).then(|| y * w + x + 1),
                                (y > 0).then(|| (y - 1) * w + x),
                                (y + 1 < h).then(|| (y + 1) * w + x),
                            ];
                            let i = y * w + x;
                            let cf = coefficients(
                                alpha[i],
                                nb.map(|j| j.map_or(0.0, |j| alpha[j])),
                                nb.map(|j| if j.is_some() { 1.0 } else { 0.0 }),
                            );
                            for c in 0..3 {
                                let (f, b) = solve(
                                    &cf,
                                    image[c][i],
                                    nb.map(|j| j.map_or(0.0, |j| next[c][j])),
                                    nb.map(|j| j.map_or(0.0, |j| next[3 + c][j])),
                                );
                                next[c][i] = f;
                                next[3 + c][i] = b;
                            }
                        }
                    }
                }
            }
            fb = next;
            (cw, ch) = (w, h);
        }
        [fb[0].clone(), fb[1].clone(), fb[2].clone()]
    }

    /// Speed on a 1080p frame of soft hair, release build:
    /// `cargo test --release -p vmatte-pipeline --lib finish::estimate -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn time_1080p() {
        let size = (1920, 1080);
        let hair = disc_and_hair(size, 4.0, 400);
        let frame = Frame::compose(size, gradient_fg, gradient_bg, |x, y| hair[y * size.0 + x]);
        let mut est = Estimator::default();
        let image = frame.image.each_ref().map(|p| p.as_slice());
        let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0.0; size.0 * size.1]);
        let mut times: Vec<f64> = (0..16)
            .map(|_| {
                let [o0, o1, o2] = &mut out;
                let start = std::time::Instant::now();
                est.estimate(image, &frame.alpha, size, [o0, o1, o2]);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        // The first frame also allocates the buffers.
        times.remove(0);
        times.sort_by(f64::total_cmp);
        println!(
            "1920x1080 on {} threads: median {:.1} ms, best {:.1} ms",
            est.threads,
            times[times.len() / 2],
            times[0]
        );
    }
}
