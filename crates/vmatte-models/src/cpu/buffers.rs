//! What the kernels share about memory: candle's CPU storage read as
//! slices; one output vector written by many rayon tasks at once, each its
//! own disjoint part, without a zeroing pass first; how a layer's outputs
//! are cut into those tasks; and scratch reused across layers.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout};
use rayon::prelude::*;

/// The floats of a contiguous f32 CPU tensor; `what` names it in the
/// error otherwise.
pub(super) fn contiguous<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: the CPU convolution kernels take f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: the CPU convolution kernels take contiguous tensors"),
    }
}

/// A `(T, C, h, w)` tensor whose frames are each `C` contiguous planes,
/// however far apart (a narrow along channels of a contiguous tensor is
/// one): frame `f`'s planes, by `f`.
pub(super) fn planar_frames<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<impl Fn(usize) -> &'a [f32] + Sync> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{what}: the CPU kernels take f32")
    };
    if !frames_planar(l) {
        candle_core::bail!("{what}: the CPU kernels take each frame's planes contiguous");
    }
    let (_, c, h, w) = l.shape().dims4()?;
    let (start, step, len) = (l.start_offset(), l.stride()[0], c * h * w);
    Ok(move |f: usize| &data[start + f * step..][..len])
}

/// Whether a 4-D layout's frames are each their planes one after another
/// (see [`planar_frames`]). The stride of an axis of size 1 is never used:
/// candle calls such a layout contiguous whatever it is (a one-channel
/// crop of a taller plane, say), and so must this.
pub(crate) fn frames_planar(l: &Layout) -> bool {
    l.shape().dims4().is_ok_and(|(_, c, h, w)| {
        let s = l.stride();
        (c == 1 || s[1] == h * w) && (h == 1 || s[2] == w) && (w == 1 || s[3] == 1)
    })
}

/// Row `y` of a plane `w` pixels wide and `h` high; `None` in the padding
/// above or below it.
pub(super) fn plane_row(plane: &[f32], (h, w): (usize, usize), y: isize) -> Option<&[f32]> {
    (0..h as isize)
        .contains(&y)
        .then(|| &plane[y as usize * w..(y as usize + 1) * w])
}

/// A raw pointer that rayon tasks writing disjoint parts may share.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);

// SAFETY: a SendPtr only goes to tasks that each write their own disjoint
// part of its allocation, which outlives them (see each use), so moving it
// between threads races with nothing.
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: shared, it is only read (copied), and the floats
// behind it are written by one task each.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// The `len` floats at `base + at`, borrowed to be written. They are not
/// zeroed first: the kernels that take them write every one, so zeroing
/// would be a wasted pass over each row.
///
/// # Safety
/// They must lie inside `base`'s allocation and belong to the caller alone
/// while the borrow lives.
pub(super) unsafe fn fresh_row<'a>(
    base: SendPtr,
    at: usize,
    len: usize,
) -> &'a mut [MaybeUninit<f32>] {
    // SAFETY: the caller's contract: the floats lie inside `base`'s
    // allocation and are the caller's alone while the borrow lives.
    unsafe { std::slice::from_raw_parts_mut(base.get().add(at).cast(), len) }
}

/// `x`, to be overwritten.
///
/// # Safety
/// Only initialised floats may be written through the result (the kernels
/// that take `MaybeUninit` outputs write nothing else).
pub(super) unsafe fn as_uninit(x: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller writes
    // only initialised floats through the result, so `x` stays initialised.
    unsafe { &mut *(x as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// A new vector of `len` floats made in pieces of `piece`, a task each:
/// `f(index, range, floats)` must write every float of piece `index`
/// (they are not zeroed first, which would be a pass of its own).
pub(super) fn made_in_pieces(
    len: usize,
    piece: usize,
    f: impl Fn(usize, std::ops::Range<usize>, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    (0..len.div_ceil(piece)).into_par_iter().for_each(|i| {
        let at = i * piece..(i * piece + piece).min(len);
        // SAFETY: piece i is this task's alone.
        let o = unsafe { fresh_row(dst, at.start, at.len()) };
        f(i, at, o)
    });
    // SAFETY: the pieces cover the vector, and f wrote each in full.
    unsafe { out.set_len(len) };
    out
}

/// Rounds of blocks a layer is cut into at the least (see `balanced_blocks`).
pub(super) const BLOCKS_PER_THREAD: usize = 4;

/// The starts of `total` items cut into equal blocks of at most about
/// `widest`, in whole rounds of the pool's threads so that none idles at
/// the end, and the block length. At least `BLOCKS_PER_THREAD` rounds where
/// there are items enough: end to end, the encoders take turns on the
/// cores, and a worker they pre-empt holding one of only two halves left
/// the other waiting for it.
pub(super) fn balanced_blocks(total: usize, widest: usize) -> (Vec<usize>, usize) {
    let threads = rayon::current_num_threads();
    let blocks = total
        .div_ceil(widest.max(1))
        .max(BLOCKS_PER_THREAD * threads)
        .next_multiple_of(threads)
        .min(total);
    let len = total.div_ceil(blocks);
    ((0..total).step_by(len).collect(), len)
}

/// The first `len` floats of a reused scratch buffer, which only ever
/// grows: shrinking and growing it again between layers of different sizes
/// would zero the difference every time. Callers write before they read.
pub(super) fn grown(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// Asks for `data` to be brought into the L1 cache, a line at a time.
pub(super) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch never faults, and the address is inside data.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
