//! Winograd's minimal filtering for the stride-1, padding-1 3x3
//! convolutions, which hold most of RVM's decoder arithmetic (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! A 3x3 convolution spends 9 multiplications per output and input channel.
//! F(m x m, 3x3) cuts the picture into tiles of m x m outputs; each
//! (m+2) x (m+2) input tile `d` and each filter `g` go to a transformed
//! domain (`V = Bᵀ d B`, `U = G g Gᵀ`), where the convolution is a product
//! per element summed over input channels: (m+2)² matrix products
//! `M[ξ] = U[ξ] (O x C) · V[ξ] (C x tiles)`, and `Y = Aᵀ M A` turns each `M`
//! back into a tile of outputs.
//! - [`Tile::F2`], F(2x2, 3x3): 4 multiplications per output; the
//!   transforms use only ±1 and ½, so the result stays within float rounding
//!   of the direct sum. The default, and what GVM's 1e-4 parity asks for.
//! - [`Tile::F4`], F(4x4, 3x3): 2.25 per output; the transforms scale by up
//!   to 8 (points 0, ±1, ±2), so it rounds at a few millionths of the
//!   largest sum. RVM asks for it: its parity tolerance is 1e-3 and its
//!   output 8-bit.
//!
//! Tiles go in blocks whose transformed inputs and products stay in a
//! core's L2 cache (whole tile rows, or runs of one where a row is too
//! big), a block per task. Tiles lie along the vector lanes, so
//! every transform is plain vector arithmetic, and the transforms read the
//! input planes where they lie: only a vector of tiles that overhangs the
//! picture's edge has its columns copied, padded, to the stack, rather
//! than a padded copy made of each block's rows, a pass of its own.

use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::buffers::{balanced_blocks, grown, prefetch, SendPtr, BLOCKS_PER_THREAD};
use super::lanes::{copy, dispatched, fill, Vector};
use super::matmul::{matmul, panels, panels_len, Left, Product};
use crate::conv_spec::Activation;

/// Which Winograd algorithm a convolution uses (see the module's doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tile {
    #[default]
    F2,
    F4,
}

impl Tile {
    /// Outputs per tile side.
    fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// `G`, in f64 so that F4's thirds and sixths round once.
    fn g(self) -> &'static [[f64; 3]] {
        match self {
            Tile::F2 => &[
                [1.0, 0.0, 0.0],
                [0.5, 0.5, 0.5],
                [0.5, -0.5, 0.5],
                [0.0, 0.0, 1.0],
            ],
            Tile::F4 => &[
                [1.0 / 4.0, 0.0, 0.0],
                [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
                [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
                [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
                [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
                [0.0, 0.0, 1.0],
            ],
        }
    }

    /// The transformed filters, `[ξ][o][c]` with `ξ = (m + 2) i + j`, each
    /// `ξ`'s `o x c` matrix in the matrix product's [`panels`].
    pub(crate) fn filters(self, weight: &[f32], o: usize, c: usize) -> Vec<f32> {
        let g = self.g();
        let t = g.len();
        let mut u = vec![0.0; t * t * o * c];
        for (oc, w) in weight.chunks_exact(9).enumerate() {
            // G g, then (G g) Gᵀ.
            let gw: Vec<[f64; 3]> = g
                .iter()
                .map(|gi| {
                    std::array::from_fn(|x| (0..3).map(|k| gi[k] * w[3 * k + x] as f64).sum())
                })
                .collect();
            for (i, gwi) in gw.iter().enumerate() {
                for (j, gj) in g.iter().enumerate() {
                    let v: f64 = (0..3).map(|k| gwi[k] * gj[k]).sum();
                    u[(t * i + j) * o * c + oc] = v as f32;
                }
            }
        }
        u.chunks_exact(o * c)
            .flat_map(|u| panels(u, o, c))
            .collect()
    }
}

/// Transformed-domain floats (inputs and products) a block of tiles keeps
/// in a core's L2 cache: 512 KiB, a quarter of a Sapphire Rapids core's L2
/// and all of a Zen 3 core's. Half that made the thin layers' products a
/// single vector of tiles wide (MatAnyone's full-size 64 -> 16 layer: 16
/// tiles, now 32), at which the micro-kernel runs at half speed.
const BLOCK_FLOATS: usize = 1 << 17;

/// Transformed filters (floats) from which [`conv3x3`] runs the products of
/// all blocks for one ξ together: 4 MB, beyond a core's L2 and a fair share
/// of L3, where reading them once per block costs more than the blocks'
/// locality saves (RVM's decoder, 2.4 MB at most, stays per block).
const SHARED_FILTER_FLOATS: usize = 1 << 20;

/// Tiles a transform loop handles at once at most: one AVX-512 register
/// of floats.
const LANES: usize = 16;

/// Input columns a vector of tiles reads at most: `M * LANES + 2`.
const WINDOW: usize = 4 * LANES + 2;

dispatched!(vector_lanes => lanes_of[]() -> usize);

/// Tiles per vector of the kernels this CPU runs.
fn lanes_of<V: Vector>() -> usize {
    V::LANES
}

/// What a vector of tiles reads above and below the picture (where its
/// channel is zero-padded).
static ZEROS: [f32; WINDOW] = [0.0; WINDOW];

thread_local! {
    /// A block's transformed inputs `V` and products `M`, and four output
    /// rows, reused.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
    /// A shared-filter layer's whole V and M (see `Layer::shared_filters`),
    /// kept for the next: fresh ones of 10 MB were zeroed and page-faulted
    /// in on the calling thread while the workers waited.
    static SHARED: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// How an `h x w` picture is cut into tiles of m x m outputs, and the
/// tiles into blocks.
#[derive(Clone, Copy)]
struct Tiling {
    m: usize,
    h: usize,
    w: usize,
    /// Tile rows.
    th: usize,
    /// Tiles stored per tile row: the tile columns rounded up to whole
    /// vectors, so the transforms have no scalar tails (the spare tiles see
    /// zeros and are never written out).
    tw: usize,
    /// Tiles per vector: rounding to this CPU's vectors rather than to
    /// AVX-512's wastes no AVX2 work on tile rows of 8 or 120 tiles (RVM's
    /// bottleneck ConvGRU at 720p has 8 a row, which 16 lanes would double).
    lanes: usize,
}

/// A task's tiles: `rows` tile rows from `ty0`, and in each the `tc` tile
/// columns from `tx0`.
#[derive(Clone, Copy)]
struct Block {
    ty0: usize,
    rows: usize,
    tx0: usize,
    tc: usize,
}

impl Block {
    fn tiles(&self) -> usize {
        self.rows * self.tc
    }
}

/// Where a block's tiles lie in a transformed-domain matrix (`V`, by input
/// channel, or `M`, by output channel): tile row `r` of channel `ch` from
/// `ch * channel + at + r * tc`, transform element ξ `xi * ξ` further.
#[derive(Clone, Copy)]
struct Placement {
    channel: usize,
    at: usize,
    xi: usize,
}

impl Placement {
    /// A block's own matrices of `channels` channels: `ξ x channels x
    /// tiles`.
    fn own(b: &Block, channels: usize) -> Self {
        Self {
            channel: b.tiles(),
            at: 0,
            xi: channels * b.tiles(),
        }
    }
}

impl Tiling {
    fn new(tile: Tile, h: usize, w: usize) -> Self {
        let m = tile.m();
        let lanes = vector_lanes();
        Self {
            m,
            h,
            w,
            th: h.div_ceil(m),
            tw: w.div_ceil(m).next_multiple_of(lanes),
            lanes,
        }
    }
    /// Input pixels per tile side.
    fn t(&self) -> usize {
        self.m + 2
    }
    /// Elements of a transformed tile.
    fn xi(&self) -> usize {
        self.t() * self.t()
    }
    /// Blocks whose transformed inputs and products, `per_tile` floats a
    /// tile, fit in `BLOCK_FLOATS`, but of `min_tiles` tiles at least:
    /// whole tile rows where one fits, else runs of a row's tiles, whole
    /// vectors each.
    fn blocks(&self, per_tile: usize, min_tiles: usize) -> Vec<Block> {
        let fit = (BLOCK_FLOATS / per_tile).max(min_tiles);
        if fit >= self.tw {
            let (starts, rows) = balanced_blocks(self.th, fit / self.tw);
            return starts
                .into_iter()
                .map(|ty0| Block {
                    ty0,
                    rows: rows.min(self.th - ty0),
                    tx0: 0,
                    tc: self.tw,
                })
                .collect();
        }
        let vectors = self.tw / self.lanes;
        let runs = vectors.div_ceil((fit / self.lanes).max(1));
        let tc = vectors.div_ceil(runs) * self.lanes;
        (0..self.th)
            .flat_map(|ty0| {
                (0..self.tw).step_by(tc).map(move |tx0| Block {
                    ty0,
                    rows: 1,
                    tx0,
                    tc: tc.min(self.tw - tx0),
                })
            })
            .collect()
    }

    /// The fewest tiles a block of a layer of `o` outputs and `c` inputs
    /// has. Every block reads all of the transformed filters, `xi() * o *
    /// c` floats: a deep layer at low resolution (RVM's decode2 and
    /// decode3 at 720p: 0.6 and 2 MB of filters, blocks of 8 tiles by the
    /// cache budget alone) would spend longer streaming them than
    /// multiplying, so a block has at least as many tiles as make its own
    /// inputs and products no smaller than the filters. But never fewer
    /// blocks than `balanced_blocks` asks for: with the encoders
    /// pre-empting the workers, a few large blocks (decode3's 9 tile rows
    /// in 5) leave workers idle for longer than streaming the filters
    /// takes.
    fn min_tiles(&self, o: usize, c: usize) -> usize {
        let rounds = BLOCKS_PER_THREAD * rayon::current_num_threads();
        (o * c).div_ceil(c + o).min(self.th * self.tw / rounds)
    }

    /// The `t()` input rows of tile row `ty` in `plane`: picture rows
    /// `m * ty - 1 ..`; above and below the picture empty (zeros), or with
    /// `replicate` its first or last row.
    fn lines<'a>(&self, plane: &'a [f32], ty: usize, replicate: bool) -> [&'a [f32]; 6] {
        let (h, w) = (self.h, self.w);
        std::array::from_fn(|k| {
            let y = (self.m * ty + k).checked_sub(1);
            let y = match y {
                _ if k >= self.t() => None,
                Some(y) if y < h => Some(y),
                _ if replicate => Some(y.map_or(0, |_| h - 1)),
                _ => None,
            };
            y.map_or(&[][..], |y| &plane[y * w..(y + 1) * w])
        })
    }
}

/// `act(conv3x3(x) + bias)` of one image whose channels are the planes of
/// `inputs` in order (a U-Net skip's pieces are never concatenated); writes
/// all `o x h x w` outputs at `dst`. The first `replicate` channels are
/// padded with their edge pixels repeated, the others with zeros. With
/// `relu_input` the convolution is of `max(x, 0)`, taken as the input is
/// transformed (a pre-activation block's ReLU, which as a pass of its own
/// wrote and read the whole input once more: 100 MB a frame at the full
/// size of MatAnyone's decoder).
///
/// Each block of tiles is transformed, multiplied (one product per
/// transformed-domain element ξ) and transformed back by one task, its
/// data staying in that core's cache. Where the transformed filters are
/// far larger than the caches (deep layers at low resolution: MatAnyone's
/// sensory update at 480p has 56 MB of filters and 8 blocks of 16 tiles),
/// every block would stream all of them again from memory; there each ξ
/// is one product over all the tiles instead, so each filter matrix is
/// read once, with the input transforms before it (a channel per task) and
/// the output transforms after it (a block per task).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv3x3(
    tile: Tile,
    inputs: &[&[f32]],
    (c, h, w): (usize, usize, usize),
    replicate: usize,
    relu_input: bool,
    o: usize,
    filters: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    dst: SendPtr,
) {
    let t = Tiling::new(tile, h, w);
    let planes: Vec<&[f32]> = inputs.iter().flat_map(|x| x.chunks(h * w)).collect();
    debug_assert_eq!(planes.len(), c);
    let layer = Layer {
        tile,
        t,
        planes,
        c,
        replicate,
        relu_input,
        o,
        filters,
        bias,
        act,
        dst,
    };
    let xis = t.xi();
    let blocks = t.blocks(xis * (c + o), t.min_tiles(o, c));
    if blocks.len() > 1 && xis * o * c > SHARED_FILTER_FLOATS {
        layer.shared_filters(&blocks);
        return;
    }
    blocks.par_iter().for_each(|b| {
        let tiles = b.tiles();
        SCRATCH.with(|scratch| {
            let (v, m, wide) = &mut *scratch.borrow_mut();
            let v = grown(v, xis * c * tiles);
            let m = grown(m, xis * o * tiles);
            let (pv, pm) = (Placement::own(b, c), Placement::own(b, o));
            layer.transform_in(b, 0..c, pv, v);
            for xi in 0..xis {
                // SAFETY: V and M are this task's, of this block's size.
                unsafe { layer.product(xi, tiles, (v.as_ptr(), pv), (m.as_mut_ptr(), pm)) };
            }
            layer.transform_out(b, pm, m, wide);
        });
    });
}

/// One layer's operands, for the three stages of a block.
struct Layer<'a> {
    tile: Tile,
    t: Tiling,
    planes: Vec<&'a [f32]>,
    c: usize,
    replicate: usize,
    relu_input: bool,
    o: usize,
    filters: &'a [f32],
    bias: Option<&'a [f32]>,
    act: Activation,
    dst: SendPtr,
}

impl Layer<'_> {
    /// [`conv3x3`]'s stages with the products of all tiles for one ξ in
    /// one task. V and M are channel-major here (`channels x ξ x tiles`,
    /// the blocks' tiles side by side), so that each channel's transforms
    /// are one task's contiguous part of V, and each ξ is one product as
    /// wide as the picture's tiles: a block's own would be a single vector
    /// wide (a 256-channel layer at 1/16 of 480p has blocks of 16 tiles),
    /// which leaves the micro-kernel's two-vector column panels unused.
    fn shared_filters(&self, blocks: &[Block]) {
        let xis = self.t.xi();
        let ats: Vec<usize> = blocks
            .iter()
            .scan(0, |at, b| {
                let start = *at;
                *at += b.tiles();
                Some(start)
            })
            .collect();
        let tiles: usize = blocks.iter().map(Block::tiles).sum();
        let place = |at| Placement {
            channel: xis * tiles,
            at,
            xi: tiles,
        };
        // Taken, not borrowed: a worker waiting in the loops below may run
        // another layer's task on this thread (it then makes its own).
        let (mut v_buffer, mut m_buffer) = SHARED.take();
        let v = grown(&mut v_buffer, self.c * xis * tiles);
        let m = grown(&mut m_buffer, self.o * xis * tiles);
        v.par_chunks_mut(xis * tiles)
            .enumerate()
            .for_each(|(ch, v)| {
                for (b, &at) in blocks.iter().zip(&ats) {
                    self.transform_in(b, ch..ch + 1, place(at), v);
                }
            });
        // V and M are laid out alike: a product reads and writes them whole.
        let whole = place(0);
        let mp = SendPtr(m.as_mut_ptr());
        (0..xis).into_par_iter().for_each(|xi| {
            // SAFETY: V is read only; this task alone writes M[ξ] (its
            // columns of every output channel), and M is read after the
            // last product.
            unsafe { self.product(xi, tiles, (v.as_ptr(), whole), (mp.get(), whole)) };
        });
        blocks.par_iter().zip(&ats).for_each(|(b, &at)| {
            SCRATCH.with(|scratch| {
                let wide = &mut scratch.borrow_mut().2;
                self.transform_out(b, place(at), m, wide);
            })
        });
        SHARED.set((v_buffer, m_buffer));
    }

    /// The block's input tiles of `channels`, transformed into `v` where
    /// `place` says (its channels counted from the first of `channels`).
    fn transform_in(&self, b: &Block, channels: Range<usize>, place: Placement, v: &mut [f32]) {
        let t = &self.t;
        let input_transform: InputTransform = match self.tile {
            Tile::F2 => f2_input,
            Tile::F4 => f4_input,
        };
        let (mt, w) = (t.m, t.w);
        // The block's columns of the input rows, with the two beyond.
        let x = mt * b.tx0;
        let cols = x.saturating_sub(1)..(x + mt * b.tc + 1).min(w);
        // Call i transforms tile row i % rows of the (i / rows)th channel.
        let calls = channels.len() * b.rows;
        let read = |i: usize| Read {
            replicate: channels.start + i / b.rows < self.replicate,
            relu: self.relu_input,
        };
        let plane = |i: usize| self.planes[channels.start + i / b.rows];
        let lines = |i: usize| t.lines(plane(i), b.ty0 + i % b.rows, read(i).replicate);
        for i in 0..calls {
            // The transform's loads wait on memory, and its arithmetic
            // keeps later ones from issuing: ask for the next call's
            // rows now.
            if i + 1 < calls {
                for line in lines(i + 1).iter().filter(|l| !l.is_empty()) {
                    prefetch(&line[cols.clone()]);
                }
            }
            input_transform(
                &lines(i)[..t.t()],
                w,
                x,
                b.tc,
                read(i),
                v,
                i / b.rows * place.channel + place.at + i % b.rows * b.tc,
                place.xi,
            );
        }
    }

    /// `M[ξ] = U[ξ] · V[ξ]` of `tiles` tiles, `V` and `M` laid out as
    /// their placements say (from `at` 0).
    ///
    /// # Safety
    /// `v` must hold `c` and `m` `o` channels of `tiles` tiles so placed,
    /// `M[ξ]` written by no one else meanwhile.
    unsafe fn product(
        &self,
        xi: usize,
        tiles: usize,
        (v, pv): (*const f32, Placement),
        (m, pm): (*mut f32, Placement),
    ) {
        let (o, c) = (self.o, self.c);
        // SAFETY: U[ξ] is o x c, in panels; V[ξ]'s c rows and M[ξ]'s o rows
        // of `tiles` lie inside their buffers (the caller's contract).
        unsafe {
            matmul(&Product {
                m: o,
                n: tiles,
                k: c,
                a: Left::Panels(self.filters.as_ptr().add(xi * panels_len(o, c))),
                b: v.add(xi * pv.xi),
                ldb: pv.channel,
                dst: m.add(xi * pm.xi),
                ldd: pm.channel,
                accumulate: false,
            })
        }
    }

    /// The block's outputs from its products in `m`, placed as `place`
    /// says, biased and activated, written to the layer's output planes.
    fn transform_out(&self, b: &Block, place: Placement, m: &[f32], wide: &mut Vec<f32>) {
        let t = &self.t;
        let output_transform: OutputTransform = match self.tile {
            Tile::F2 => f2_output,
            Tile::F4 => f4_output,
        };
        let (mt, h, w, o) = (t.m, t.h, t.w, self.o);
        let wide = grown(wide, mt * mt * b.tc);
        let x0 = mt * b.tx0;
        let cols = (mt * b.tc).min(w - x0);
        for oc in 0..o {
            let value = self.bias.map_or(0.0, |b| b[oc]);
            for r in 0..b.rows {
                let at = oc * place.channel + place.at + r * b.tc;
                output_transform(m, place.xi, at, wide);
                let y = mt * (b.ty0 + r);
                for (dy, line) in wide.chunks_exact(mt * b.tc).enumerate() {
                    if y + dy >= h {
                        break;
                    }
                    // SAFETY: these outputs of row y + dy of plane oc
                    // belong to this block alone; borrowed once written.
                    let out = unsafe {
                        let at = self.dst.get().add(oc * h * w + (y + dy) * w + x0);
                        std::slice::from_raw_parts_mut(at, cols)
                    };
                    self.act.apply_biased(&line[..cols], value, out);
                }
            }
        }
    }
}

type InputTransform = fn(&[&[f32]], usize, usize, usize, Read, &mut [f32], usize, usize);
type OutputTransform = fn(&[f32], usize, usize, &mut [f32]);

/// How a transform reads one channel's input: with `replicate`, its edge
/// pixels repeated beyond the picture (else zeros); with `relu`, each
/// value's `max(x, 0)`.
#[derive(Clone, Copy)]
struct Read {
    replicate: bool,
    relu: bool,
}

dispatched!(f2_input => input_tiles[F2, 2, 4](lines: &[&[f32]], w: usize, x: usize, tc: usize, read: Read, v: &mut [f32], at: usize, stride: usize));
dispatched!(f2_output => output_tiles[F2, 2, 4](m: &[f32], stride: usize, at: usize, rows: &mut [f32]));
dispatched!(f4_input => input_tiles[F4, 4, 6](lines: &[&[f32]], w: usize, x: usize, tc: usize, read: Read, v: &mut [f32], at: usize, stride: usize));
dispatched!(f4_output => output_tiles[F4, 4, 6](m: &[f32], stride: usize, at: usize, rows: &mut [f32]));

/// One Winograd algorithm's 1-D pieces over vectors of tiles: `M` outputs
/// and `T = M + 2` inputs per tile side.
trait Transform<V: Vector, const M: usize, const T: usize> {
    /// The `T` input columns of `LANES` consecutive tiles of a padded row,
    /// from `p` (tile `x` starts at column `M x`).
    ///
    /// # Safety
    /// `M * LANES + 2` floats at `p` must be readable.
    unsafe fn columns(p: *const f32) -> [V; T];
    /// `Bᵀ d` for one column `d`.
    fn input(d: [V; T]) -> [V; T];
    /// `Aᵀ m` for one column `m`.
    fn output(m: [V; T]) -> [V; M];
    /// The tiles' outputs along one row, `y[k]` being each tile's k-th, to
    /// consecutive columns at `p`.
    ///
    /// # Safety
    /// `M * LANES` floats at `p` must be writable.
    unsafe fn store(y: [V; M], p: *mut f32);
}

/// F(2x2, 3x3).
struct F2;

impl<V: Vector> Transform<V, 2, 4> for F2 {
    #[inline(always)]
    unsafe fn columns(p: *const f32) -> [V; 4] {
        // SAFETY: `M * LANES + 2` floats at `p` are readable (the trait's
        // contract): the loads read `p .. p + 2 LANES + 2`.
        unsafe {
            let n = V::LANES;
            let (c0, c1) = V::split(V::load(p), V::load(p.add(n)));
            let (c2, c3) = V::split(V::load(p.add(2)), V::load(p.add(2 + n)));
            [c0, c1, c2, c3]
        }
    }

    /// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
    #[inline(always)]
    fn input([d0, d1, d2, d3]: [V; 4]) -> [V; 4] {
        [d0.sub(d2), d1.add(d2), d2.sub(d1), d1.sub(d3)]
    }

    /// `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
    #[inline(always)]
    fn output([m0, m1, m2, m3]: [V; 4]) -> [V; 2] {
        [m0.add(m1).add(m2), m1.sub(m2).sub(m3)]
    }

    #[inline(always)]
    unsafe fn store([y0, y1]: [V; 2], p: *mut f32) {
        // SAFETY: `M * LANES` floats at `p` are writable (the trait's
        // contract): the two stores write `p .. p + 2 LANES`.
        unsafe {
            let (a, b) = V::interleave(y0, y1);
            a.store(p);
            b.store(p.add(V::LANES));
        }
    }
}

/// F(4x4, 3x3).
struct F4;

impl<V: Vector> Transform<V, 4, 6> for F4 {
    /// Columns 4 and 5 of a tile are columns 0 and 1 of the next, so they
    /// are those columns one tile along (a second deinterleave would cost
    /// as much again). The tiles lie in the lanes in [`Vector::tiles4`]'s
    /// order, which [`Self::store`] undoes.
    #[inline(always)]
    unsafe fn columns(p: *const f32) -> [V; 6] {
        // SAFETY: `M * LANES + 2` floats at `p` are readable (the trait's
        // contract): `tiles4` reads `p .. p + 4 LANES`, and the two floats after.
        unsafe {
            let [c0, c1, c2, c3] = V::tiles4(p);
            let n = 4 * V::LANES;
            let (c4, c5) = (c0.next_tile(*p.add(n)), c1.next_tile(*p.add(n + 1)));
            [c0, c1, c2, c3, c4, c5]
        }
    }

    /// `Bᵀ = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
    /// [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]`.
    #[inline(always)]
    fn input([d0, d1, d2, d3, d4, d5]: [V; 6]) -> [V; 6] {
        let (d4_d2, d4_d3) = (d4.sub(d2), d4.sub(d3));
        [
            d0.mul_add(4.0, d2.mul_add(-5.0, d4)),
            d1.add(d2).mul_add(-4.0, d3.add(d4)),
            d1.sub(d2).mul_add(4.0, d4_d3),
            d3.sub(d1).mul_add(2.0, d4_d2),
            d1.sub(d3).mul_add(2.0, d4_d2),
            d1.mul_add(4.0, d3.mul_add(-5.0, d5)),
        ]
    }

    /// `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
    /// [0, 1, -1, 8, -8, 1]]`.
    #[inline(always)]
    fn output([m0, m1, m2, m3, m4, m5]: [V; 6]) -> [V; 4] {
        let (a, b, c, d) = (m1.add(m2), m1.sub(m2), m3.add(m4), m3.sub(m4));
        [
            m0.add(a).add(c),
            d.mul_add(2.0, b),
            c.mul_add(4.0, a),
            d.mul_add(8.0, b).add(m5),
        ]
    }

    #[inline(always)]
    unsafe fn store(y: [V; 4], p: *mut f32) {
        // SAFETY: `M * LANES` floats at `p` are writable (the trait's
        // contract), the `4 * LANES` that `store_tiles4` writes.
        unsafe { V::store_tiles4(y, p) }
    }
}

/// `V = Bᵀ d B` for `tc` tiles of one channel's tile row, from tile
/// column `x / M`, whose `T` input rows are `lines` (picture rows `w`
/// wide, or empty for the zeros above and below the picture): element ξ
/// of tile `tx` goes to `v[ξ * stride + at + tx]`. Left and right of the
/// picture are zeros, or with `read.replicate` its first and last columns;
/// with `read.relu` every value is `max(x, 0)` (the windows' zeros and
/// repeated edges as they are: relu of a repeat is the repeat of a relu).
// The index loops read a transposed column out of a 2-D array.
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
#[inline(always)]
fn input_tiles<V: Vector, W: Transform<V, M, T>, const M: usize, const T: usize>(
    lines: &[&[f32]],
    w: usize,
    x: usize,
    tc: usize,
    read: Read,
    v: &mut [f32],
    at: usize,
    stride: usize,
) {
    // The input columns of a vector of tiles: their M * LANES outputs'
    // and the two beyond.
    let span = M * V::LANES + 2;
    assert!(span <= WINDOW && lines.len() == T && tc.is_multiple_of(V::LANES));
    assert!(lines.iter().all(|l| l.is_empty() || l.len() == w));
    assert!(at + (T * T - 1) * stride + tc <= v.len());
    let dst = v.as_mut_ptr();
    // The columns of a vector that overhangs the picture, padded.
    // (Uninitialised: zeroing them would be a memset call per tile row.)
    let mut edge = [[MaybeUninit::uninit(); WINDOW]; T];
    for x0 in (0..tc).step_by(V::LANES) {
        // Picture column of the vector's first input column (padding is
        // column -1).
        let first = (x + M * x0) as isize - 1;
        let inside = first >= 0 && first as usize + span <= w;
        let mut src = [ZEROS.as_ptr(); T];
        for (k, line) in lines.iter().enumerate() {
            if line.is_empty() {
                continue;
            }
            src[k] = if inside {
                line[first as usize..].as_ptr()
            } else {
                padded_window::<V>(line, first, &mut edge[k][..span], read.replicate).as_ptr()
            };
        }
        // SAFETY: each src pointer has `span` floats readable (a picture
        // row with them inside it, a window or the zeros), which is what
        // `columns` reads; the outputs lie inside v (asserted above).
        unsafe {
            // Each row times B. (Plain loops: a closure here would be
            // compiled without the caller's vector features.)
            // Uninitialised, not zeroed: a zeroed array this big is a
            // memset call per vector of tiles.
            let mut h = MaybeUninit::<[[V; T]; T]>::uninit();
            let rows_of_h = h.as_mut_ptr().cast::<[V; T]>();
            for k in 0..T {
                let mut columns = W::columns(src[k]);
                if read.relu {
                    for c in &mut columns {
                        *c = c.relu();
                    }
                }
                rows_of_h.add(k).write(W::input(columns));
            }
            let h = h.assume_init();
            // Bᵀ times the rows, a column at a time.
            for j in 0..T {
                let mut column = [V::zero(); T];
                for (k, e) in column.iter_mut().enumerate() {
                    *e = h[k][j];
                }
                for (i, e) in W::input(column).into_iter().enumerate() {
                    e.store(dst.add((T * i + j) * stride + at + x0));
                }
            }
        }
    }
}

/// Columns `first ..` of `line` into `window`, where they fall outside the
/// picture zeros or, with `replicate`, the row's first or last pixel. This
/// runs for the edge vectors of every tile row of every channel, a few
/// dozen floats each time (see [`fill`]).
#[inline(always)]
fn padded_window<'a, V: Vector>(
    line: &[f32],
    first: isize,
    window: &'a mut [MaybeUninit<f32>],
    replicate: bool,
) -> &'a [f32] {
    let len = window.len();
    let skip = (-first).clamp(0, len as isize) as usize;
    let from = (first.max(0) as usize).min(line.len());
    let n = (line.len() - from).min(len - skip);
    let (before, after) = match replicate {
        true => (line[0], line[line.len() - 1]),
        false => (0.0, 0.0),
    };
    fill::<V>(&mut window[..skip], before);
    copy::<V>(&line[from..from + n], &mut window[skip..skip + n]);
    fill::<V>(&mut window[skip + n..], after);
    // SAFETY: every float of the window was written above.
    unsafe { window.assume_init_ref() }
}

/// `Y = Aᵀ M A` for one tile row of one output channel: its `M` output
/// rows, each `M * tw` wide, one after another in `rows`.
// The index loops read a transposed column out of a 2-D array.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn output_tiles<V: Vector, W: Transform<V, M, T>, const M: usize, const T: usize>(
    m: &[f32],
    stride: usize,
    at: usize,
    rows: &mut [f32],
) {
    let width = rows.len() / M;
    let tw = width / M;
    assert!(at + (T * T - 1) * stride + tw <= m.len());
    for x0 in (0..tw).step_by(V::LANES) {
        // SAFETY: the reads lie inside m (asserted above), and the
        // M * LANES outputs at M * x0 inside each row.
        unsafe {
            // Aᵀ M, a column at a time. (Plain loops, as in input_tiles.)
            let mut columns = [[V::zero(); M]; T];
            for (j, cj) in columns.iter_mut().enumerate() {
                let mut column = [V::zero(); T];
                for (i, e) in column.iter_mut().enumerate() {
                    *e = V::load(m.as_ptr().add((T * i + j) * stride + at + x0));
                }
                *cj = W::output(column);
            }
            // (Aᵀ M) A, a row at a time.
            for r in 0..M {
                let mut row = [V::zero(); T];
                for (j, e) in row.iter_mut().enumerate() {
                    *e = columns[j][r];
                }
                W::store(W::output(row), rows.as_mut_ptr().add(r * width + M * x0));
            }
        }
    }
}
