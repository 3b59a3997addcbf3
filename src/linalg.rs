//! Matrix–matrix products into caller-owned buffers, straight through `matrixmultiply`
//! (the kernel nalgebra itself uses), so that transposed operands need no copy and the hot
//! loops of the continuous engine allocate nothing.
//!
//! `matrixmultiply` is built with its `threading` feature: a product large enough to be worth
//! it is split over up to `MATMUL_NUM_THREADS` threads (default: the physical cores; see
//! [`set_threads`]). The split is over rows and columns of the result only, never over the
//! summation index, so every entry is summed in the same order whatever the thread count:
//! results are bit-identical for 1 and 2 threads.

use nalgebra::{DMatrixView, DMatrixViewMut};

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
    // SAFETY: the pointers come from live views whose extents match the checked shapes and
    // strides; `c` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

/// Sets the number of threads the matrix products use. It must run before the first product
/// of the process (the kernel reads `MATMUL_NUM_THREADS` once); later calls have no effect,
/// which [`threads_in_use`] reports. 0 keeps the default (the physical cores).
pub fn set_threads(threads: usize) {
    if threads > 0 {
        std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
    }
}

/// The thread count the products were configured with (`MATMUL_NUM_THREADS`, else the
/// number of logical CPUs as an upper bound of the default).
pub fn threads_in_use() -> usize {
    std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 4)
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
