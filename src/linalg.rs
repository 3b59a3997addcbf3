//! Matrix–matrix products into caller-owned buffers, straight through `matrixmultiply`
//! (the kernel nalgebra itself uses), so that transposed operands need no copy and the hot
//! loops of the continuous engine allocate nothing.
//!
//! A product large enough to be worth it is split into blocks of result rows run on the rayon
//! pool (see [`set_threads`]), one `matrixmultiply` call each (its own threading is off: a
//! product's threads waiting at its barriers for a core another process holds cost more than
//! they gave on a shared machine). The split never cuts the summation index, so every entry is
//! summed in the same order whatever the thread count: results are bit-identical for 1 and 2
//! threads.

use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};

/// Runs `$body` compiled for AVX2 when the processor has it, else for the baseline. Only
/// vector width changes: no fused multiply–add is enabled and no sum is reordered, so both
/// give bit-identical results.
macro_rules! with_avx2 {
    (fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident) => {
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the processor supports AVX2 (checked just above).
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use with_avx2;

/// Whether an operand enters the product as it is or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `A`
    N,
    /// `Aᵀ`
    T,
}

/// Rows, columns and (row, column) strides of `op(A)`.
fn shape(a: &DMatrixView<f64>, op: Op) -> (usize, usize, isize, isize) {
    let (rs, cs) = a.strides();
    match op {
        Op::N => (a.nrows(), a.ncols(), rs as isize, cs as isize),
        Op::T => (a.ncols(), a.nrows(), cs as isize, rs as isize),
    }
}

/// `C ← α op(A) op(B) + β C`. With `β = 0`, `C` is overwritten (its old entries, even NaN,
/// are never read).
///
/// # Panics
/// If the shapes do not match (a bug in the caller, never a user input).
///
/// ```
/// use dtpsim::linalg::{gemm, Op};
/// use nalgebra::DMatrix;
/// let a = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// let b = DMatrix::from_row_slice(2, 3, &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
/// let mut c = DMatrix::from_element(2, 2, f64::NAN);
/// gemm(1.0, &a.as_view(), Op::N, &b.as_view(), Op::T, 0.0, &mut c.as_view_mut());
/// assert_eq!(c, &a * b.transpose());
/// ```
pub fn gemm(
    alpha: f64,
    a: &DMatrixView<f64>,
    op_a: Op,
    b: &DMatrixView<f64>,
    op_b: Op,
    beta: f64,
    c: &mut DMatrixViewMut<f64>,
) {
    let (m, k, rsa, csa) = shape(a, op_a);
    let (kb, n, rsb, csb) = shape(b, op_b);
    assert!(
        k == kb && c.nrows() == m && c.ncols() == n,
        "gemm shapes: ({m}×{k})·({kb}×{n}) into {}×{}",
        c.nrows(),
        c.ncols()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.scale_mut(beta);
        }
        return;
    }
    let (rsc, csc) = c.strides();
    if op_a == Op::N && rsa == 1 && rsc == 1 && n <= THIN {
        split_rows(alpha, a, b, op_b, beta, c);
        return;
    }
    if op_a == Op::N && rsa == 1 && csa == m as isize && rsc == 1 && k <= LOW_INNER {
        low_inner(alpha, a, b, op_b, beta, c);
        return;
    }
    if op_a == Op::T && csa == 1 && op_b == Op::N && rsb == 1 && n <= THIN {
        dots(alpha, a, b, beta, c);
        return;
    }
    let product = RawProduct {
        k,
        n,
        alpha,
        a: a.as_ptr(),
        rsa,
        csa,
        b: b.as_ptr(),
        rsb,
        csb,
        beta,
        c: c.as_mut_ptr(),
        rsc: rsc as isize,
        csc: csc as isize,
    };
    // SAFETY: the pointers come from live views whose extents match the checked shapes and
    // strides; `c` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe { product.rows(0, m, rayon::current_num_threads()) };
}

/// `op(A) op(B)` as a new matrix, through [`gemm`]: the discrete references' products, split
/// over the rayon pool like the engine's.
///
/// ```
/// use dtpsim::linalg::{product, Op};
/// use nalgebra::DMatrix;
/// let a = DMatrix::from_fn(3, 4, |i, j| (i + 2 * j) as f64);
/// let b = DMatrix::from_fn(5, 4, |i, j| (i * j) as f64 - 1.0);
/// assert_eq!(product(&a.as_view(), Op::N, &b.as_view(), Op::T), &a * b.transpose());
/// ```
pub fn product(a: &DMatrixView<f64>, op_a: Op, b: &DMatrixView<f64>, op_b: Op) -> DMatrix<f64> {
    let rows = shape(a, op_a).0;
    let cols = shape(b, op_b).1;
    let mut c = DMatrix::zeros(rows, cols);
    gemm(1.0, a, op_a, b, op_b, 0.0, &mut c.as_view_mut());
    c
}

/// A product of at least this many multiply–adds is split over blocks of result rows run
/// on the rayon pool.
const KERNEL_SPLIT: usize = 1 << 19;

/// Rows of the kernel's register tile: row blocks are cut at multiples of it.
const KERNEL_ROWS: usize = 8;

/// The operands of one `matrixmultiply` product, as raw parts, so that blocks of its rows
/// can go to different threads.
#[derive(Clone, Copy)]
struct RawProduct {
    k: usize,
    n: usize,
    alpha: f64,
    a: *const f64,
    rsa: isize,
    csa: isize,
    b: *const f64,
    rsb: isize,
    csb: isize,
    beta: f64,
    c: *mut f64,
    rsc: isize,
    csc: isize,
}

// SAFETY: the threads of one `RawProduct::rows` call write disjoint row blocks of `c` and only
// read `a` and `b`, whose owners outlive the call.
unsafe impl Send for RawProduct {}
unsafe impl Sync for RawProduct {}

impl RawProduct {
    /// Rows `first..first + m` of `C ← α op(A) op(B) + β C`, split into up to `parts` blocks
    /// of whole register tiles run on the rayon pool. The kernel sums every entry over the
    /// inner index in the same order whatever the rows around it, so the split changes no bit
    /// of the result.
    ///
    /// # Safety
    /// The pointers must describe live matrices with at least `first + m` rows.
    unsafe fn rows(self, first: usize, m: usize, parts: usize) {
        let work = m * self.k * self.n;
        if parts >= 2 && work >= KERNEL_SPLIT && m >= 2 * KERNEL_ROWS {
            let top = (m / 2).div_ceil(KERNEL_ROWS) * KERNEL_ROWS;
            let (left, right) = (parts / 2, parts - parts / 2);
            rayon::join(
                || unsafe { self.rows(first, top, right) },
                || unsafe { self.rows(first + top, m - top, left) },
            );
            return;
        }
        let at = first as isize;
        unsafe {
            matrixmultiply::dgemm(
                m,
                self.k,
                self.n,
                self.alpha,
                self.a.offset(at * self.rsa),
                self.rsa,
                self.csa,
                self.b,
                self.rsb,
                self.csb,
                self.beta,
                self.c.offset(at * self.rsc),
                self.rsc,
                self.csc,
            );
        }
    }
}

/// A thin product of at least this many multiply–adds is split into two halves of rows
/// run on two threads (each entry's sum is unchanged by the split).
const THIN_SPLIT: usize = 1 << 18;

/// [`thin`], split over blocks of rows on the rayon pool when large.
fn split_rows(
    alpha: f64,
    a: &DMatrixView<f64>,
    b: &DMatrixView<f64>,
    op_b: Op,
    beta: f64,
    c: &mut DMatrixViewMut<f64>,
) {
    let m = a.nrows();
    if m < 64 || m * a.ncols() * c.ncols() < THIN_SPLIT || rayon::current_num_threads() < 2 {
        thin(alpha, a, b, op_b, beta, c);
        return;
    }
    let half = m / 2;
    let (a_top, a_bottom) = (a.rows(0, half), a.rows(half, m - half));
    let (mut c_top, mut c_bottom) = c.rows_range_pair_mut(0..half, half..m);
    rayon::join(
        || split_rows(alpha, &a_top, b, op_b, beta, &mut c_top),
        || split_rows(alpha, &a_bottom, b, op_b, beta, &mut c_bottom),
    );
}

/// Products with at most this many terms per entry (a rank-`k` update such as `E Nᵀ` with
/// few replicas) run column by column through [`accumulate`]: no packing, no allocation.
const LOW_INNER: usize = 16;

/// `C ← α A op(B) + β C` for a column-major `A` with contiguous columns and `k ≤ 16`: column
/// `q` of `C` gets `Σ_j (α b_{jq}) a_j`, summed in order `j = 0, 1, …`.
fn low_inner(
    alpha: f64,
    a: &DMatrixView<f64>,
    b: &DMatrixView<f64>,
    op_b: Op,
    beta: f64,
    c: &mut DMatrixViewMut<f64>,
) {
    let (m, k) = (a.nrows(), a.ncols());
    // SAFETY: unit row stride and column stride m (checked by the caller): `a` is one
    // contiguous block of m·k entries.
    let a_all = unsafe { std::slice::from_raw_parts(a.as_ptr(), m * k) };
    let mut x = [0.0; LOW_INNER];
    for q in 0..c.ncols() {
        for (j, xj) in x.iter_mut().enumerate().take(k) {
            *xj = alpha
                * match op_b {
                    Op::N => b[(j, q)],
                    Op::T => b[(q, j)],
                };
        }
        let mut col = c.column_mut(q);
        if beta == 0.0 {
            col.fill(0.0);
        } else if beta != 1.0 {
            col.scale_mut(beta);
        }
        let out = col.as_mut_slice();
        accumulate(out, &x[..k], a_all);
    }
}

/// Products with at most this many result columns run as [`thin`] products.
const THIN: usize = 4;

/// `C ← α A op(B) + β C` for a column-major `A` (unit row stride) and at most [`THIN`]
/// result columns: one pass over `A`, each column `a_j` met once and added to every result
/// column (a packing GEMM kernel would copy all of `A` on every call, which dominates a
/// matrix–vector product). Each entry is summed over `j` in order.
#[inline(always)]
fn thin_body(
    alpha: f64,
    a: &DMatrixView<f64>,
    b: &DMatrixView<f64>,
    op_b: Op,
    beta: f64,
    c: &mut DMatrixViewMut<f64>,
) {
    let (m, k, n) = (a.nrows(), a.ncols(), c.ncols());
    let (csa, csc) = (a.strides().1, c.strides().1);
    let (a_ptr, c_ptr) = (a.as_ptr(), c.as_mut_ptr());
    // SAFETY: the caller checked unit row strides; column j < k of `a` starts at j·csa and
    // holds m entries inside the view, likewise column q < n of `c`. Only one slice of `c` is
    // alive at a time, and `c` does not alias `a` or `b` (it is borrowed mutably).
    let a_col = |j: usize| unsafe { std::slice::from_raw_parts(a_ptr.add(j * csa), m) };
    let c_col = |q: usize| unsafe { std::slice::from_raw_parts_mut(c_ptr.add(q * csc), m) };
    for q in 0..n {
        let cq = c_col(q);
        if beta == 0.0 {
            cq.fill(0.0);
        } else if beta != 1.0 {
            cq.iter_mut().for_each(|v| *v *= beta);
        }
    }
    for j in 0..k {
        let aj = a_col(j);
        for q in 0..n {
            let x = alpha
                * match op_b {
                    Op::N => b[(j, q)],
                    Op::T => b[(q, j)],
                };
            for (v, &w) in c_col(q).iter_mut().zip(aj) {
                *v += x * w;
            }
        }
    }
}

with_avx2!(fn thin(alpha: f64, a: &DMatrixView<f64>, b: &DMatrixView<f64>, op_b: Op, beta: f64, c: &mut DMatrixViewMut<f64>) -> () = thin_body);

/// `C ← α Aᵀ B + β C` for column-major `A` and `B` and at most [`THIN`] result columns: each
/// entry is the dot product of a column of `A` with a column of `B`, summed in order.
#[inline(always)]
fn dots_body(
    alpha: f64,
    a: &DMatrixView<f64>,
    b: &DMatrixView<f64>,
    beta: f64,
    c: &mut DMatrixViewMut<f64>,
) {
    for q in 0..c.ncols() {
        let bq = b.column(q);
        for i in 0..c.nrows() {
            let ai = a.column(i);
            let dot: f64 = ai.iter().zip(bq.iter()).map(|(x, y)| x * y).sum();
            let old = if beta == 0.0 { 0.0 } else { beta * c[(i, q)] };
            c[(i, q)] = old + alpha * dot;
        }
    }
}

with_avx2!(fn dots(alpha: f64, a: &DMatrixView<f64>, b: &DMatrixView<f64>, beta: f64, c: &mut DMatrixViewMut<f64>) -> () = dots_body);

/// Sets the number of threads of the rayon pool, which runs every parallel part of the engine:
/// the row blocks of large products ([`gemm`]) and the fused weight passes. It must run before
/// the pool's first use. 0 keeps the default (all cores).
pub fn set_threads(threads: usize) {
    if threads > 0 {
        // an error means the pool already exists (a second call): it keeps its size
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
}

/// Threads of the rayon pool the engine's own passes use.
pub fn threads_in_use() -> usize {
    rayon::current_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn every_transpose_combination_matches_nalgebra() {
        let a = DMatrix::from_fn(4, 3, |i, j| (i * 3 + j) as f64 - 2.5);
        let b = DMatrix::from_fn(3, 5, |i, j| (i + 2 * j) as f64 * 0.5);
        let mut c = DMatrix::from_element(4, 5, 1.0);
        gemm(
            2.0,
            &a.as_view(),
            Op::N,
            &b.as_view(),
            Op::N,
            0.5,
            &mut c.as_view_mut(),
        );
        let expect = &a * &b * 2.0 + DMatrix::from_element(4, 5, 0.5);
        assert!((c - expect).abs().max() < 1e-12);
        let at = a.transpose();
        let bt = b.transpose();
        let mut c = DMatrix::zeros(4, 5);
        gemm(
            1.0,
            &at.as_view(),
            Op::T,
            &bt.as_view(),
            Op::T,
            0.0,
            &mut c.as_view_mut(),
        );
        assert!((c - &a * &b).abs().max() < 1e-12);
    }

    #[test]
    fn empty_inner_dimension_scales_the_result() {
        let a = DMatrix::<f64>::zeros(2, 0);
        let b = DMatrix::<f64>::zeros(0, 2);
        let mut c = DMatrix::from_element(2, 2, 3.0);
        gemm(
            1.0,
            &a.as_view(),
            Op::N,
            &b.as_view(),
            Op::N,
            2.0,
            &mut c.as_view_mut(),
        );
        assert_eq!(c, DMatrix::from_element(2, 2, 6.0));
    }
}

/// `out[i] += Σ_k x[k]·e[k·rows + i]` for a column-major `e` with `x.len()` columns, four
/// columns at a time (each `out[i]` is summed in the order `k = 0, 1, …`).
#[inline(always)]
fn accumulate_body(out: &mut [f64], x: &[f64], e: &[f64]) {
    let rows = out.len();
    let col = |k: usize| &e[k * rows..(k + 1) * rows];
    let mut k = 0;
    while k + 4 <= x.len() {
        let (x0, x1, x2, x3) = (x[k], x[k + 1], x[k + 2], x[k + 3]);
        let columns = col(k)
            .iter()
            .zip(col(k + 1))
            .zip(col(k + 2))
            .zip(col(k + 3));
        for (v, (((e0, e1), e2), e3)) in out.iter_mut().zip(columns) {
            *v = (((*v + x0 * e0) + x1 * e1) + x2 * e2) + x3 * e3;
        }
        k += 4;
    }
    while k < x.len() {
        let xk = x[k];
        for (v, ek) in out.iter_mut().zip(col(k)) {
            *v += xk * ek;
        }
        k += 1;
    }
}

with_avx2!(fn accumulate(out: &mut [f64], x: &[f64], e: &[f64]) -> () = accumulate_body);

/// `dst[i] = tanh(src[i])` with [`crate::activation::tanh`], four lanes at a time under AVX2.
#[inline(always)]
fn tanh_into_body(dst: &mut [f64], src: &[f64]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = crate::activation::tanh(s);
    }
}

with_avx2!(fn tanh_into(dst: &mut [f64], src: &[f64]) -> () = tanh_into_body);

/// `Σ_i (err_i/sc_i)²` over one column of a plastic matrix, with `w_1 = c_new w_0 + g_new`,
/// `err = c_err w_0 + g_err` and `sc = atol + rtol·max(|w_0|, |w_1|)` (the error norm of
/// `ode_solvers`), in four interleaved partial sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn error_sum_body(
    w0: &[f64],
    g_new: &[f64],
    g_err: &[f64],
    c_new: f64,
    c_err: f64,
    rtol: f64,
    atol: f64,
) -> f64 {
    let term = |w: f64, gn: f64, ge: f64| {
        let w1 = c_new * w + gn;
        let est = c_err * w + ge;
        let r = est / (atol + w.abs().max(w1.abs()) * rtol);
        r * r
    };
    let mut acc = [0.0f64; 4];
    let quads = w0
        .chunks_exact(4)
        .zip(g_new.chunks_exact(4))
        .zip(g_err.chunks_exact(4));
    for ((w, gn), ge) in quads {
        for l in 0..4 {
            acc[l] += term(w[l], gn[l], ge[l]);
        }
    }
    let whole = w0.len().min(g_new.len()).min(g_err.len()) / 4 * 4;
    let rest = w0[whole..].iter().zip(&g_new[whole..]).zip(&g_err[whole..]);
    for ((&w, &gn), &ge) in rest {
        acc[0] += term(w, gn, ge);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

with_avx2!(fn error_sum(w0: &[f64], g_new: &[f64], g_err: &[f64], c_new: f64, c_err: f64, rtol: f64, atol: f64) -> f64 = error_sum_body);
