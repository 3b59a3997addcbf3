//! Discrete target computation (DESIGN §4; seed paper Sec. 3, 5, 6.2, 8, 9).
//!
//! Targets are kept in *differential form*: displacements `d_l = τ_l − h_l` from the forward
//! pass, with the output target `d_L = −β ∇ℓ(h_L, y)` (Sec. 3). Every scheme starts from
//! `d_{l<L} = 0`, so that its first iteration on a layer gives the difference target of
//! Lee et al. (2015), `d_{l−1} = g_l(h_l + d_l) − g_l(h_l)`:
//!
//! * [`Scheme::Difference`]: that first step only.
//! * [`Scheme::DecoderOutput`] (Sec. 6.2): correction on the decoder *output*,
//!   `d_{l−1} ← d_{l−1} + g_l(h_l + d_l) − g_l(f_l(h_{l−1} + d_{l−1})) − λ d_{l−1}`,
//!   the differential form of `τ_{l−1} ← τ_{l−1} + g_l(τ_l) − g_l(f_l(τ_{l−1}))`. Its Jacobian
//!   is `I − g_l' f_l' − λI = −𝓔 − λI`; it converges as `α^t` when that has spectral radius `α < 1`.
//! * [`Scheme::DecoderInput`] (Sec. 5): correction `u_l` on the decoder *input*,
//!   `u_l ← u_l + d_l − [f_l(h_{l−1} + g_l(h_l + u_l) − g_l(h_l)) − h_l] − λ u_l`,
//!   `d_{l−1} = g_l(h_l + u_l) − g_l(h_l)` (Eq. u-recurrence with `τ_y = h_l + d_l`).
//!
//! [`Order::Sequential`] relaxes layer `L−1` to completion before starting layer `L−2`;
//! [`Order::Parallel`] (Sec. 9) updates every layer at once from the previous sweep's values.

use crate::error::TargetError;
use crate::network::{ForwardPass, Network};
use nalgebra::DVector;
use serde::{Deserialize, Serialize};

/// Which relaxation produces the hidden targets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Difference target propagation (Lee et al. 2015), no iteration.
    Difference,
    /// Iterated correction of the decoder output (Sec. 6.2, 9).
    #[default]
    DecoderOutput,
    /// Iterated correction of the decoder input (Sec. 5).
    DecoderInput,
}

/// Layer-sequential or parallel iteration (Sec. 9).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Relax layer `L−1`, then `L−2`, …: each layer waits for the one above.
    Sequential,
    /// All layers in parallel from the previous sweep (Sec. 9).
    #[default]
    Parallel,
}

/// Settings of a discrete relaxation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Relaxation {
    pub scheme: Scheme,
    pub order: Order,
    /// Iterations per layer (sequential) or sweeps (parallel); at least 1.
    pub iterations: usize,
    /// Leak `λ ≥ 0` (a regularised inverse; DESIGN §2.3).
    pub leak: f64,
    /// Stop early once an iteration's increment norm is at most this (0: never).
    pub tolerance: f64,
}

impl Default for Relaxation {
    fn default() -> Self {
        Relaxation {
            scheme: Scheme::DecoderOutput,
            order: Order::Parallel,
            iterations: 20,
            leak: 0.0,
            tolerance: 0.0,
        }
    }
}

impl Relaxation {
    /// Difference targets (one step).
    pub fn difference() -> Self {
        Relaxation {
            scheme: Scheme::Difference,
            order: Order::Sequential,
            iterations: 1,
            ..Relaxation::default()
        }
    }
}

/// Result of a relaxation.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// `d_l = τ_l − h_l` for `l = 0..=L` (`d_0 = 0`: the input is never a target).
    pub d: Vec<DVector<f64>>,
    /// Serial steps taken: iterations summed over layers (sequential) or sweeps (parallel).
    pub steps: usize,
    /// Norm of each step's increment (of `d` for decoder_output, of `u` for decoder_input).
    pub increments: Vec<f64>,
}

impl Targets {
    /// `τ_l = h_l + d_l`.
    pub fn tau(&self, fwd: &ForwardPass, l: usize) -> DVector<f64> {
        &fwd.h[l] + &self.d[l]
    }
}

/// Output target displacement `d_L = τ_L − h_L = −β ∇ℓ(h_L, y)` (Sec. 3).
pub fn output_displacement(
    net: &Network,
    fwd: &ForwardPass,
    y: &DVector<f64>,
    beta: f64,
) -> DVector<f64> {
    net.arch().loss.gradient(fwd.output(), y) * (-beta)
}

/// One decoder-output step on layer `l` (updates `d_{l−1}`): returns the increment
/// `g_l(h_l + d_l) − g_l(f_l(h_{l−1} + d_{l−1})) − λ d_{l−1}` (Sec. 6.2, Eq. iterative-tau-out-update).
pub fn decoder_output_increment(
    net: &Network,
    fwd: &ForwardPass,
    d: &[DVector<f64>],
    l: usize,
    leak: f64,
) -> DVector<f64> {
    let above = net.decode(l, &(&fwd.h[l] + &d[l]));
    let reencoded = net.encode(l, &(&fwd.h[l - 1] + &d[l - 1]));
    let mut inc = above - net.decode(l, &reencoded);
    if leak != 0.0 {
        inc.axpy(-leak, &d[l - 1], 1.0);
    }
    inc
}

/// One decoder-input step on layer `l`: returns the increment of `u_l`,
/// `d_l − [f_l(h_{l−1} + g_l(h_l + u_l) − g_l(h_l)) − h_l] − λ u_l` (Sec. 5, Eq. u-recurrence).
pub fn decoder_input_increment(
    net: &Network,
    fwd: &ForwardPass,
    d: &[DVector<f64>],
    u: &DVector<f64>,
    l: usize,
    leak: f64,
) -> DVector<f64> {
    let below = decoder_input_target(net, fwd, u, l);
    let reencoded = net.encode(l, &(&fwd.h[l - 1] + below)) - &fwd.h[l];
    let mut inc = &d[l] - reencoded;
    if leak != 0.0 {
        inc.axpy(-leak, u, 1.0);
    }
    inc
}

/// `d_{l−1} = g_l(h_l + u_l) − g_l(h_l)`: the target the corrected decoder input gives below.
pub fn decoder_input_target(
    net: &Network,
    fwd: &ForwardPass,
    u: &DVector<f64>,
    l: usize,
) -> DVector<f64> {
    net.decode(l, &(&fwd.h[l] + u)) - net.decode(l, &fwd.h[l])
}

/// Increments larger than this multiple of the first one count as divergence.
const DIVERGENCE_RATIO: f64 = 1e8;

/// Computes hidden targets from the output displacement `d_L` (see the module docs).
pub fn relax(
    net: &Network,
    fwd: &ForwardPass,
    d_out: &DVector<f64>,
    relax: &Relaxation,
) -> Result<Targets, TargetError> {
    relax_observed(net, fwd, d_out, relax, &mut |_, _| {})
}

/// [`relax`] with an observer called after every serial step with `(step, d)`.
pub fn relax_observed(
    net: &Network,
    fwd: &ForwardPass,
    d_out: &DVector<f64>,
    relax: &Relaxation,
    observer: &mut dyn FnMut(usize, &[DVector<f64>]),
) -> Result<Targets, TargetError> {
    let depth = net.depth();
    let mut d: Vec<DVector<f64>> = (0..=depth).map(|l| DVector::zeros(net.width(l))).collect();
    d[depth] = d_out.clone();
    let mut u: Vec<DVector<f64>> = (0..=depth).map(|l| DVector::zeros(net.width(l))).collect();
    let iterations = match relax.scheme {
        Scheme::Difference => 1,
        _ => relax.iterations.max(1),
    };
    let order = match relax.scheme {
        Scheme::Difference => Order::Sequential,
        _ => relax.order,
    };
    let input_side = relax.scheme == Scheme::DecoderInput;
    let mut increments = Vec::new();
    let mut steps = 0usize;
    let check = |norm: f64, first: f64, layer: usize, iteration: usize| {
        if !norm.is_finite() || (first > 0.0 && norm > DIVERGENCE_RATIO * first.max(1e-300)) {
            Err(TargetError::Diverged {
                layer,
                iteration,
                norm,
            })
        } else {
            Ok(())
        }
    };
    match order {
        Order::Sequential => {
            for l in (2..=depth).rev() {
                let mut first = 0.0;
                for it in 1..=iterations {
                    let norm = if input_side {
                        let inc = decoder_input_increment(net, fwd, &d, &u[l], l, relax.leak);
                        u[l] += &inc;
                        d[l - 1] = decoder_input_target(net, fwd, &u[l], l);
                        inc.norm()
                    } else {
                        let inc = decoder_output_increment(net, fwd, &d, l, relax.leak);
                        d[l - 1] += &inc;
                        inc.norm()
                    };
                    if it == 1 {
                        first = norm;
                    }
                    check(norm, first, l - 1, it)?;
                    steps += 1;
                    increments.push(norm);
                    observer(steps, &d);
                    if norm <= relax.tolerance {
                        break;
                    }
                }
            }
        }
        Order::Parallel => {
            let mut first = 0.0;
            for it in 1..=iterations {
                let mut total = 0.0;
                let mut worst = (0.0, 0usize);
                // every increment from the previous sweep's state, then all applied at once
                let incs: Vec<DVector<f64>> = (2..=depth)
                    .map(|l| {
                        if input_side {
                            decoder_input_increment(net, fwd, &d, &u[l], l, relax.leak)
                        } else {
                            decoder_output_increment(net, fwd, &d, l, relax.leak)
                        }
                    })
                    .collect();
                for (l, inc) in (2..=depth).zip(incs) {
                    let n2 = inc.norm_squared();
                    total += n2;
                    if n2 >= worst.0 {
                        worst = (n2, l - 1);
                    }
                    if input_side {
                        u[l] += inc;
                    } else {
                        d[l - 1] += inc;
                    }
                }
                if input_side {
                    for l in 2..=depth {
                        d[l - 1] = decoder_input_target(net, fwd, &u[l], l);
                    }
                }
                let norm = total.sqrt();
                if it == 1 {
                    first = norm;
                }
                check(norm, first, worst.1, it)?;
                steps += 1;
                increments.push(norm);
                observer(steps, &d);
                if norm <= relax.tolerance && it > depth {
                    break;
                }
            }
        }
    }
    Ok(Targets {
        d,
        steps,
        increments,
    })
}

/// Influence scales of Sec. 8: `s_l = ‖τ_L − h_L‖² / ‖τ_l − h_l‖²` (`s_L = 1`; 0 where the
/// target displacement vanishes). Index `l = 0..=L`; `s_0` is unused.
pub fn influence_scales(d: &[DVector<f64>]) -> Vec<f64> {
    let out = d.last().map_or(0.0, |v| v.norm_squared());
    d.iter()
        .map(|dl| {
            let n = dl.norm_squared();
            if n > 0.0 {
                out / n
            } else {
                0.0
            }
        })
        .collect()
}
