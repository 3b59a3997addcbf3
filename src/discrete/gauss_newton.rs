//! Damped Gauss–Newton directions (docs/MODEL.md §5, the paper's Sec. 4), used to measure how closely
//! DTP1 follows Gauss–Newton and how far it is from BP.
//!
//! With `J_l = ∂h_L/∂h_l` and output gradient `∇ = ∂ℓ/∂h_Lᵀ`, the paper's Gauss–Newton step in
//! activation space is `Δ_GN h_l = (J_lᵀ J_l + μI)⁻¹ (−β J_lᵀ ∇)` and the BP (SGD) step is
//! `Δ_SGD h_l = −β J_lᵀ ∇`. DTP1 with exact inverses realises `τ_l − h_l = Δ_GN h_l` at `μ = 0`.

use crate::network::{ForwardPass, Network};
use nalgebra::{DMatrix, DVector};

/// Per-layer activation-space directions for `l = 0..=L` (index `l`).
#[derive(Debug, Clone)]
pub struct ActivationDirections {
    /// `(J_lᵀJ_l + μI)⁻¹(−β J_lᵀ∇)`.
    pub gauss_newton: Vec<DVector<f64>>,
    /// `−β J_lᵀ∇`.
    pub gradient: Vec<DVector<f64>>,
}

/// Gauss–Newton and gradient directions in activation space (Sec. 4).
///
/// Solves with a Cholesky factorisation when possible and falls back to an SVD pseudo-inverse
/// (singular `J_lᵀJ_l`, e.g. a layer wider than the output with `μ = 0`).
pub fn activation_directions(
    net: &Network,
    fwd: &ForwardPass,
    grad_out: &DVector<f64>,
    beta: f64,
    damping: f64,
) -> ActivationDirections {
    let jac = net.output_jacobians(fwd);
    let mut gauss_newton = Vec::with_capacity(jac.len());
    let mut gradient = Vec::with_capacity(jac.len());
    for j in &jac {
        let g = j.transpose() * grad_out * (-beta);
        let mut m = j.transpose() * j;
        for i in 0..m.nrows() {
            m[(i, i)] += damping;
        }
        gauss_newton.push(solve_psd(m, &g));
        gradient.push(g);
    }
    ActivationDirections {
        gauss_newton,
        gradient,
    }
}

/// Damped Gauss–Newton step in parameter space for all encoder weights, returned per layer
/// (`ΔW_1..ΔW_L`, index `l − 1`):
/// `Δθ = (J_θᵀJ_θ + μI)⁻¹(−β J_θᵀ∇) = J_θᵀ (J_θJ_θᵀ + μI)⁻¹(−β∇)`, using
/// `J_θJ_θᵀ = Σ_l ‖a_{l−1}‖² J_l J_lᵀ` (since `∂h_L/∂W_l[i,j] = J_l[:,i] a_{l−1}[j]`), so only an
/// `n_L × n_L` system is solved whatever the number of parameters.
pub fn parameter_direction(
    net: &Network,
    fwd: &ForwardPass,
    grad_out: &DVector<f64>,
    beta: f64,
    damping: f64,
) -> Vec<DMatrix<f64>> {
    let jac = net.output_jacobians(fwd);
    let n_out = grad_out.len();
    let mut k = DMatrix::identity(n_out, n_out) * damping;
    for l in 1..=net.depth() {
        k += &jac[l] * jac[l].transpose() * fwd.a[l - 1].norm_squared();
    }
    let v = solve_psd(k, &(grad_out * (-beta)));
    (1..=net.depth())
        .map(|l| jac[l].transpose() * &v * fwd.a[l - 1].transpose())
        .collect()
}

/// Solves `m x = b` for symmetric positive (semi-)definite `m`.
fn solve_psd(m: DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> {
    match m.clone().cholesky() {
        Some(ch) => ch.solve(b),
        None => m
            .svd(true, true)
            .solve(b, 1e-12)
            .unwrap_or_else(|_| DVector::zeros(b.len())),
    }
}

/// Cosine of the angle between two vectors (0 if either vanishes).
pub fn cosine(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
    let n = a.norm() * b.norm();
    if n == 0.0 {
        0.0
    } else {
        a.dot(b) / n
    }
}

/// Cosine between two lists of matrices seen as one flat vector.
pub fn cosine_flat(a: &[DMatrix<f64>], b: &[DMatrix<f64>]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        dot += x.dot(y);
        na += x.norm_squared();
        nb += y.norm_squared();
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb).sqrt()
    }
}
