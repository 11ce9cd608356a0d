//! One generic vector type for the hand-written CPU kernels (Winograd's
//! transforms, the matrix product), and the dispatch that compiles a
//! kernel for AVX-512, for AVX2 with FMA and for plain scalar code, and
//! calls the widest this CPU runs. Unlike `vectorized!`, which leaves the
//! vectorising to the compiler, these kernels say which lanes hold what.

/// The few vector operations the kernels need, so that one generic body
/// compiles to AVX-512, AVX2 or scalar code (see `dispatched!`).
pub(crate) trait Vector: Copy {
    const LANES: usize;
    fn zero() -> Self;
    /// `k` in every lane.
    fn splat(k: f32) -> Self;
    /// # Safety
    /// `LANES` floats at `p` must be readable.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `LANES` floats at `p` must be writable.
    unsafe fn store(self, p: *mut f32);
    /// The even and the odd lanes of `[a, b]`.
    fn split(a: Self, b: Self) -> (Self, Self);
    /// `[a0, b0, a1, b1, ...]` as two vectors.
    fn interleave(a: Self, b: Self) -> (Self, Self);
    /// Lanes 1.. of `self`, then `last`: the vector one element along.
    fn shift_in(self, last: f32) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    /// `max(self, 0)`, lane by lane.
    fn relu(self) -> Self;
    /// `self * k + o`.
    fn mul_add(self, k: f32, o: Self) -> Self;

    /// The four columns of the `LANES` tiles of four floats at `p` (tile
    /// `t` at `p + 4t`), a vector each. Which lane holds which tile is the
    /// type's to choose, the same in every column: lane-wise arithmetic
    /// does not care, [`Self::next_tile`] follows it and
    /// [`Self::store_tiles4`] undoes it. By default lane `t` holds tile `t`.
    ///
    /// # Safety
    /// `4 * LANES` floats at `p` must be readable.
    #[inline(always)]
    unsafe fn tiles4(p: *const f32) -> [Self; 4] {
        // SAFETY: the four loads read the `4 * LANES` floats at `p`, readable
        // by the caller's contract.
        unsafe {
            let n = Self::LANES;
            let (e0, o0) = Self::split(Self::load(p), Self::load(p.add(n)));
            let (e1, o1) = Self::split(Self::load(p.add(2 * n)), Self::load(p.add(3 * n)));
            let (c0, c2) = Self::split(e0, e1);
            let (c1, c3) = Self::split(o0, o1);
            [c0, c1, c2, c3]
        }
    }
    /// Each lane's element in the tile after its own, in a column from
    /// [`Self::tiles4`]; `next` is the element of the tile after the last.
    #[inline(always)]
    fn next_tile(self, next: f32) -> Self {
        self.shift_in(next)
    }
    /// Writes four columns, in [`Self::tiles4`]'s lanes, back as the
    /// `LANES` tiles of four floats at `p`.
    ///
    /// # Safety
    /// `4 * LANES` floats at `p` must be writable.
    #[inline(always)]
    unsafe fn store_tiles4([y0, y1, y2, y3]: [Self; 4], p: *mut f32) {
        // SAFETY: the four stores write the `4 * LANES` floats at `p`, writable
        // by the caller's contract.
        unsafe {
            let n = Self::LANES;
            let (s_lo, s_hi) = Self::interleave(y0, y2);
            let (t_lo, t_hi) = Self::interleave(y1, y3);
            let (a, b) = Self::interleave(s_lo, t_lo);
            a.store(p);
            b.store(p.add(n));
            let (a, b) = Self::interleave(s_hi, t_hi);
            a.store(p.add(2 * n));
            b.store(p.add(3 * n));
        }
    }
}

impl Vector for f32 {
    const LANES: usize = 1;
    fn zero() -> Self {
        0.0
    }
    fn splat(k: f32) -> Self {
        k
    }
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` is readable (the caller's contract).
        unsafe { *p }
    }
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` is writable (the caller's contract).
        unsafe { *p = self }
    }
    fn split(a: Self, b: Self) -> (Self, Self) {
        (a, b)
    }
    fn interleave(a: Self, b: Self) -> (Self, Self) {
        (a, b)
    }
    fn shift_in(self, last: f32) -> Self {
        last
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn sub(self, o: Self) -> Self {
        self - o
    }
    fn relu(self) -> Self {
        self.max(0.0)
    }
    fn mul_add(self, k: f32, o: Self) -> Self {
        self * k + o
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// Rows `r` as columns, within each 128-bit half: lane `k` of column
    /// `j`'s half is element `j` of row `k`'s half.
    ///
    /// # Safety
    /// Only reached from AVX2 code.
    #[inline(always)]
    unsafe fn transpose_halves([a, b, c, d]: [__m256; 4]) -> [Avx2; 4] {
        // SAFETY: only reached from AVX2 code (the caller's contract), so the
        // CPU has these instructions.
        unsafe {
            let (t0, t1) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            let (t2, t3) = (_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
            [
                Avx2(_mm256_shuffle_ps::<0b01_00_01_00>(t0, t2)),
                Avx2(_mm256_shuffle_ps::<0b11_10_11_10>(t0, t2)),
                Avx2(_mm256_shuffle_ps::<0b01_00_01_00>(t1, t3)),
                Avx2(_mm256_shuffle_ps::<0b11_10_11_10>(t1, t3)),
            ]
        }
    }

    /// Eight lanes; only ever used by code compiled for AVX2 and FMA.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256);

    impl super::Vector for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: only reached from AVX2 code (see the type's doc).
            Self(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        fn splat(k: f32) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_set1_ps(k) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: `LANES` floats at `p` are readable (the caller's contract), and
            // only AVX2 code uses this type.
            unsafe { Self(_mm256_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: `LANES` floats at `p` are writable (the caller's contract), and
            // only AVX2 code uses this type.
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn split(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: only reached from AVX2 code (see the type's doc).
            unsafe {
                // Within each 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6];
                // then the 64-bit pairs in order.
                let order = |x: __m256| {
                    _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(x), 0b11_01_10_00))
                };
                (
                    Self(order(_mm256_shuffle_ps(a.0, b.0, 0b10_00_10_00))),
                    Self(order(_mm256_shuffle_ps(a.0, b.0, 0b11_01_11_01))),
                )
            }
        }
        #[inline(always)]
        fn interleave(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: as above.
            unsafe {
                // Within each 128-bit half: [a0 b0 a1 b1 | a4 b4 a5 b5] and
                // [a2 b2 a3 b3 | a6 b6 a7 b7]; then the halves in order.
                let (lo, hi) = (_mm256_unpacklo_ps(a.0, b.0), _mm256_unpackhi_ps(a.0, b.0));
                (
                    Self(_mm256_permute2f128_ps(lo, hi, 0x20)),
                    Self(_mm256_permute2f128_ps(lo, hi, 0x31)),
                )
            }
        }
        #[inline(always)]
        fn shift_in(self, last: f32) -> Self {
            // SAFETY: as above.
            unsafe {
                let along =
                    _mm256_permutevar8x32_ps(self.0, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7));
                Self(_mm256_blend_ps::<0x80>(along, _mm256_set1_ps(last)))
            }
        }
        /// A 4x4 transpose within each 128-bit half, which costs AVX2 half
        /// the shuffles of the default's cross-half ones: lanes 0..4 hold
        /// tiles 0, 2, 4, 6 and lanes 4..8 tiles 1, 3, 5, 7.
        #[inline(always)]
        unsafe fn tiles4(p: *const f32) -> [Self; 4] {
            // SAFETY: the loads read the `4 * LANES` floats at `p`, readable by the
            // caller's contract; only AVX2 code uses this type.
            unsafe {
                // (No closures: they would be compiled without AVX2.)
                let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                let (c, d) = (_mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24)));
                transpose_halves([a, b, c, d])
            }
        }
        /// Tiles 1, 3, 5, 7 are lanes 4..8; tiles 2, 4, 6 lanes 1..4.
        #[inline(always)]
        fn next_tile(self, next: f32) -> Self {
            // SAFETY: as above.
            unsafe {
                let order = _mm256_setr_epi32(4, 5, 6, 7, 1, 2, 3, 3);
                let along = _mm256_permutevar8x32_ps(self.0, order);
                Self(_mm256_blend_ps::<0x80>(along, _mm256_set1_ps(next)))
            }
        }
        /// The same transpose undoes itself.
        #[inline(always)]
        unsafe fn store_tiles4(y: [Self; 4], p: *mut f32) {
            // SAFETY: the stores write the `4 * LANES` floats at `p`, writable by
            // the caller's contract; only AVX2 code uses this type.
            unsafe {
                let [a, b, c, d] = transpose_halves([y[0].0, y[1].0, y[2].0, y[3].0]);
                _mm256_storeu_ps(p, a.0);
                _mm256_storeu_ps(p.add(8), b.0);
                _mm256_storeu_ps(p.add(16), c.0);
                _mm256_storeu_ps(p.add(24), d.0);
            }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn relu(self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_max_ps(self.0, _mm256_setzero_ps()) })
        }
        #[inline(always)]
        fn mul_add(self, k: f32, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm256_fmadd_ps(self.0, _mm256_set1_ps(k), o.0) })
        }
    }

    /// Sixteen lanes; only ever used by code compiled for AVX-512F.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512);

    impl super::Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: only reached from AVX-512 code (see the type's doc).
            Self(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        fn splat(k: f32) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_set1_ps(k) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: `LANES` floats at `p` are readable (the caller's contract), and
            // only AVX-512 code uses this type.
            unsafe { Self(_mm512_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: `LANES` floats at `p` are writable (the caller's contract), and
            // only AVX-512 code uses this type.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn split(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: only reached from AVX-512 code (see the type's doc).
            unsafe {
                // Lane indices: 0..16 pick from a, 16..32 from b.
                let even =
                    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                let odd =
                    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                (
                    Self(_mm512_permutex2var_ps(a.0, even, b.0)),
                    Self(_mm512_permutex2var_ps(a.0, odd, b.0)),
                )
            }
        }
        #[inline(always)]
        fn interleave(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: as above.
            unsafe {
                let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                let hi =
                    _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                (
                    Self(_mm512_permutex2var_ps(a.0, lo, b.0)),
                    Self(_mm512_permutex2var_ps(a.0, hi, b.0)),
                )
            }
        }
        #[inline(always)]
        fn shift_in(self, last: f32) -> Self {
            // SAFETY: as above.
            unsafe {
                // [self, last...] shifted down one lane.
                let (low, high) = (
                    _mm512_castps_si512(self.0),
                    _mm512_castps_si512(_mm512_set1_ps(last)),
                );
                Self(_mm512_castsi512_ps(_mm512_alignr_epi32::<1>(high, low)))
            }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn relu(self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_max_ps(self.0, _mm512_setzero_ps()) })
        }
        #[inline(always)]
        fn mul_add(self, k: f32, o: Self) -> Self {
            // SAFETY: as above.
            Self(unsafe { _mm512_fmadd_ps(self.0, _mm512_set1_ps(k), o.0) })
        }
    }
}

/// `value` into every float of `to`, a vector at a time, the last one
/// overlapping the one before. Plain fills of a few dozen floats become
/// memset calls, which cost more than the stores; the kernels that pad
/// rows (Winograd's edge windows, the depthwise phases) fill with this.
#[inline(always)]
pub(crate) fn fill<V: Vector>(to: &mut [std::mem::MaybeUninit<f32>], value: f32) {
    let (l, n, at) = (V::LANES, to.len(), to.as_mut_ptr().cast::<f32>());
    // SAFETY: every store lies inside `to`.
    unsafe {
        if n < l {
            for k in 0..n {
                // Volatile only so that these stay stores, not a memset.
                std::ptr::write_volatile(at.add(k), value);
            }
            return;
        }
        let mut k = 0;
        while k + l < n {
            V::splat(value).store(at.add(k));
            k += l;
        }
        V::splat(value).store(at.add(n - l));
    }
}

/// `from` into `to` (as long), likewise a vector at a time instead of a
/// memcpy call.
#[inline(always)]
pub(crate) fn copy<V: Vector>(from: &[f32], to: &mut [std::mem::MaybeUninit<f32>]) {
    let (l, n) = (V::LANES, to.len());
    assert_eq!(from.len(), n);
    let (src, dst) = (from.as_ptr(), to.as_mut_ptr().cast::<f32>());
    // SAFETY: every load lies inside `from` and every store inside `to`.
    unsafe {
        if n < l {
            for k in 0..n {
                // Volatile only so that these stay stores, not a memcpy.
                std::ptr::write_volatile(dst.add(k), *src.add(k));
            }
            return;
        }
        let mut k = 0;
        while k + l < n {
            V::load(src.add(k)).store(dst.add(k));
            k += l;
        }
        V::load(src.add(n - l)).store(dst.add(n - l));
    }
}

/// `dispatched!([vis] name => kernel[Generics](arg: Type, ...) [-> Ret])`: `name` calls
/// `kernel::<V, Generics>` compiled for the widest vector unit this CPU has.
macro_rules! dispatched {
    ($vis:vis $name:ident => $kernel:ident[$($g:tt)*]($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $kernel::<$crate::cpu::lanes::x86::Avx512, $($g)*>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $kernel::<$crate::cpu::lanes::x86::Avx2, $($g)*>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, the only feature used.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel::<f32, $($g)*>($($arg),*)
        }
    };
}

pub(crate) use dispatched;

#[cfg(test)]
mod tests {
    use super::*;

    /// Element `4t + j` is `100 t + j`: each lane's columns must come from
    /// one tile, the next tile's from the one after, and storing must put
    /// every float back where it came from.
    fn tiles_round_trip_in<V: Vector>() -> usize {
        let n = V::LANES;
        let src: Vec<f32> = (0..4 * n + 2)
            .map(|i| (100 * (i / 4) + i % 4) as f32)
            .collect();
        let mut lanes = vec![0f32; n];
        // SAFETY: src holds 4 * LANES + 2 floats; lanes holds LANES.
        unsafe {
            let c = V::tiles4(src.as_ptr());
            c[0].store(lanes.as_mut_ptr());
            let tiles: Vec<f32> = lanes.iter().map(|v| v / 100.0).collect();
            let mut seen = tiles.clone();
            seen.sort_by(f32::total_cmp);
            assert_eq!(seen, (0..n).map(|t| t as f32).collect::<Vec<_>>());
            for (j, cj) in c.iter().enumerate() {
                cj.store(lanes.as_mut_ptr());
                for (l, v) in lanes.iter().enumerate() {
                    assert_eq!(*v, 100.0 * tiles[l] + j as f32, "column {j}, lane {l}");
                }
                if j < 2 {
                    cj.next_tile(src[4 * n + j]).store(lanes.as_mut_ptr());
                    for (l, v) in lanes.iter().enumerate() {
                        assert_eq!(
                            *v,
                            100.0 * (tiles[l] + 1.0) + j as f32,
                            "next {j}, lane {l}"
                        );
                    }
                }
            }
            let mut back = vec![0f32; 4 * n];
            V::store_tiles4(c, back.as_mut_ptr());
            assert_eq!(back, src[..4 * n]);
        }
        n
    }

    dispatched!(tiles_round_trip => tiles_round_trip_in[]() -> usize);

    #[test]
    fn tiles_of_four_round_trip_in_every_vector_type() {
        assert!(tiles_round_trip() >= 1);
        assert_eq!(tiles_round_trip_in::<f32>(), 1);
        // AVX2's own lane order, also where AVX-512 is what runs.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2() -> usize {
                tiles_round_trip_in::<x86::Avx2>()
            }
            // SAFETY: the CPU has AVX2 and FMA.
            assert_eq!(unsafe { avx2() }, 8);
        }
    }
}
