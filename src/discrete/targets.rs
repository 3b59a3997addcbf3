//! Discrete target computation (docs/MODEL.md §2–§3; the paper's Sec. 3, 5, 6.2, 8, 9), for
//! a whole mini-batch at once: column `b` of every matrix is example `b`.
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
//!
//! Each example relaxes as if it were alone (docs/MODEL.md §3): its own early stop on
//! `tolerance`, its own first increment for the divergence check. A step computes the
//! increments of all examples with one product per encoder or decoder, and applies them to
//! the examples still iterating; an example that has stopped keeps its targets.

use crate::discrete::batch::{column_matrix, columns, loss_gradients, BatchPass};
use crate::error::TargetError;
use crate::linalg::{product, Op};
use crate::network::{ForwardPass, Network};
use nalgebra::{DMatrix, DVector};
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
    /// How hidden targets are computed: `difference` (Lee et al.), `decoder_output` (Sec. 6.2)
    /// or `decoder_input` (Sec. 5).
    pub scheme: Scheme,
    /// `sequential` (top layer first, one layer at a time) or `parallel` (every layer per
    /// sweep, Sec. 9).
    pub order: Order,
    /// Iterations per layer (sequential) or sweeps (parallel); at least 1.
    pub iterations: usize,
    /// Leak `λ ≥ 0` (a regularised inverse; docs/MODEL.md §3).
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

/// Result of a single-example relaxation.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// `d_l = τ_l − h_l` for `l = 0..=L` (`d_0 = 0`: the input is never a target).
    pub d: Vec<DVector<f64>>,
    /// Serial steps taken: iterations summed over layers (sequential) or sweeps (parallel).
    pub steps: usize,
    /// Norm of each step's increment (of `d` for decoder_output, of `u` for decoder_input).
    pub increments: Vec<f64>,
    /// Per target layer `l = 0..=L`, the norms of its own increments, one per step that
    /// changed it (of `d_l`, or of `u_{l+1}` for decoder_input); empty for `l = 0`, `L` and for
    /// difference targets.
    pub layer_increments: Vec<Vec<f64>>,
}

impl Targets {
    /// The measured contraction `α_l` of each target layer `l = 0..=L` (NaN where there is no
    /// iteration; see [`contraction_estimate`]).
    pub fn alpha(&self) -> Vec<f64> {
        self.layer_increments
            .iter()
            .map(|inc| contraction_estimate(inc))
            .collect()
    }
}

/// Increments at most this fraction of a layer's largest are at the round-off floor and do not
/// start a ratio in [`contraction_estimate`].
const CONTRACTION_FLOOR: f64 = 1e-8;

/// The contraction `α` of Sec. 6.2 as measured from one layer's increment norms
/// `‖ε_1‖, ‖ε_2‖, …`: the ratio `‖ε_k‖/‖ε_{k−1}‖` of the last pair whose earlier increment is
/// above `10⁻⁸` of the largest (below that, round-off sets the ratio). `α < 1`: the iteration
/// contracts (Sec. 6.2: `‖ε_t‖ < α‖ε_{t−1}‖`); `α = 0`: it converged in one step; NaN with
/// fewer than two increments or none above 0 (docs/MODEL.md §3).
///
/// ```
/// use dtpsim::discrete::targets::contraction_estimate;
/// assert_eq!(contraction_estimate(&[0.0, 1.0, 0.5, 0.25]), 0.5);
/// assert_eq!(contraction_estimate(&[1.0, 0.0]), 0.0);
/// // increments below 1e-8 of the largest do not start a ratio
/// assert_eq!(contraction_estimate(&[1.0, 0.1, 1e-9, 5e-10]), 1e-8);
/// assert!(contraction_estimate(&[1.0]).is_nan());
/// ```
pub fn contraction_estimate(increments: &[f64]) -> f64 {
    let largest = increments.iter().copied().fold(0.0, f64::max);
    if !(largest > 0.0 && largest.is_finite()) {
        return f64::NAN;
    }
    let floor = CONTRACTION_FLOOR * largest;
    (1..increments.len())
        .rev()
        .find(|&k| increments[k - 1] > floor)
        .map_or(f64::NAN, |k| increments[k] / increments[k - 1])
}

impl Targets {
    /// `τ_l = h_l + d_l`.
    pub fn tau(&self, fwd: &ForwardPass, l: usize) -> DVector<f64> {
        &fwd.h[l] + &self.d[l]
    }
}

/// Result of a mini-batch relaxation.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTargets {
    /// `D_l`, whose column `b` is example `b`'s `d_l = τ_l − h_l`, for `l = 0..=L`.
    pub d: Vec<DMatrix<f64>>,
    /// Per example, the norm of each of its serial steps' increments; their count is the
    /// example's number of serial steps.
    pub increments: Vec<Vec<f64>>,
    /// Per example and target layer `l = 0..=L`, the norms of that layer's own increments
    /// (see [`Targets::layer_increments`]).
    pub layer_increments: Vec<Vec<Vec<f64>>>,
}

/// A mini-batch relaxation that diverged: the first example (column) that did, and its error.
#[derive(Debug, PartialEq)]
pub struct Diverged {
    /// Position of the example in its mini-batch.
    pub example: usize,
    /// What went wrong.
    pub error: TargetError,
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

/// Output target displacements of a mini-batch, `D_L = −β ∇ℓ(H_L, Y)` column by column
/// (Sec. 3).
pub fn output_displacements(
    net: &Network,
    pass: &BatchPass,
    y: &DMatrix<f64>,
    beta: f64,
) -> DMatrix<f64> {
    loss_gradients(net.arch().loss, pass.output(), y) * (-beta)
}

/// Increments larger than this multiple of the first one count as divergence.
const DIVERGENCE_RATIO: f64 = 1e8;

/// The divergence test of docs/MODEL.md §3: an increment norm that is not finite, or larger
/// than `10⁸ ×` the first one.
fn check(norm: f64, first: f64, layer: usize, iteration: usize) -> Result<(), TargetError> {
    if !norm.is_finite() || (first > 0.0 && norm > DIVERGENCE_RATIO * first.max(1e-300)) {
        Err(TargetError::Diverged {
            layer,
            iteration,
            norm,
        })
    } else {
        Ok(())
    }
}

/// Computes hidden targets of one example from the output displacement `d_L` (see the module
/// docs): the one-column [`relax_batch`].
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
    let pass = BatchPass::of_one(fwd);
    let mut column_observer = |step: usize, d: &[DMatrix<f64>]| observer(step, &columns(d, 0));
    let t = relax_batch_observed(
        net,
        &pass,
        column_matrix(d_out),
        relax,
        &mut column_observer,
    )
    .map_err(|e| e.error)?;
    let increments = t.increments.into_iter().next().unwrap_or_default();
    Ok(Targets {
        d: columns(&t.d, 0),
        steps: increments.len(),
        increments,
        layer_increments: t.layer_increments.into_iter().next().unwrap_or_default(),
    })
}

/// Hidden targets of every example of a mini-batch from the output displacements `D_L` (see
/// the module docs). If any example diverges, the error is that of the first such example,
/// as if the examples had been relaxed one after the other.
pub fn relax_batch(
    net: &Network,
    pass: &BatchPass,
    d_out: DMatrix<f64>,
    relax: &Relaxation,
) -> Result<BatchTargets, Diverged> {
    relax_batch_observed(net, pass, d_out, relax, &mut |_, _| {})
}

/// [`relax_batch`] with an observer called after every serial step in which some example
/// iterated, with `(step, D)`.
pub fn relax_batch_observed(
    net: &Network,
    pass: &BatchPass,
    d_out: DMatrix<f64>,
    relax: &Relaxation,
    observer: &mut dyn FnMut(usize, &[DMatrix<f64>]),
) -> Result<BatchTargets, Diverged> {
    let mut state = Relaxer::new(net, pass, d_out, relax);
    match state.order {
        Order::Sequential => state.sequential(observer),
        Order::Parallel => state.parallel(observer),
    }
    state.finish()
}

/// Influence scales of Sec. 8: `s_l = ‖τ_L − h_L‖² / ‖τ_l − h_l‖²` (`s_L = 1`; 0 where the
/// target displacement vanishes). Index `l = 0..=L`; `s_0` is unused.
pub fn influence_scales(d: &[DVector<f64>]) -> Vec<f64> {
    let out = d.last().map_or(0.0, |v| v.norm_squared());
    d.iter()
        .map(|dl| influence(out, dl.norm_squared()))
        .collect()
}

/// Influence scales of Sec. 8 for every example of a mini-batch: `s[l][b]` is example `b`'s
/// `‖d_L‖²/‖d_l‖²` (0 where `d_l = 0`).
pub fn influence_scales_batch(d: &[DMatrix<f64>]) -> Vec<Vec<f64>> {
    let out: Vec<f64> = d.last().map_or(Vec::new(), column_norms2);
    d.iter()
        .map(|dl| {
            let norms = column_norms2(dl);
            out.iter()
                .zip(norms)
                .map(|(o, n)| influence(*o, n))
                .collect()
        })
        .collect()
}

/// `s = ‖d_L‖²/‖d_l‖²`, or 0 when `d_l = 0` (Sec. 8).
fn influence(out_norm2: f64, norm2: f64) -> f64 {
    if norm2 > 0.0 {
        out_norm2 / norm2
    } else {
        0.0
    }
}

/// `‖m_b‖²` of every column.
fn column_norms2(m: &DMatrix<f64>) -> Vec<f64> {
    m.column_iter().map(|c| c.norm_squared()).collect()
}

/// The state of a mini-batch relaxation (docs/MODEL.md §3).
struct Relaxer<'a> {
    net: &'a Network,
    pass: &'a BatchPass,
    order: Order,
    iterations: usize,
    leak: f64,
    tolerance: f64,
    input_side: bool,
    /// Whether targets are iterated (not difference targets).
    iterated: bool,
    /// `D_l`, `l = 0..=L`.
    d: Vec<DMatrix<f64>>,
    /// Decoder-input corrections `U_l`, `l = 0..=L` (used for `l ≥ 2`, decoder_input only).
    u: Vec<DMatrix<f64>>,
    /// `a_l(H_l + D_l)`, the presynaptic vectors of the targets, while `D_l` is unchanged.
    target_presyn: Vec<Option<DMatrix<f64>>>,
    /// Per example: its increment norms, and its error once it has diverged.
    increments: Vec<Vec<f64>>,
    /// Per example and target layer: that layer's own increment norms (iterated schemes).
    layer_increments: Vec<Vec<Vec<f64>>>,
    failed: Vec<Option<TargetError>>,
    /// Serial steps of the batch.
    steps: usize,
}

impl<'a> Relaxer<'a> {
    fn new(net: &'a Network, pass: &'a BatchPass, d_out: DMatrix<f64>, relax: &Relaxation) -> Self {
        let (depth, batch) = (net.depth(), pass.size());
        let zeros = |l: usize| DMatrix::zeros(net.width(l), batch);
        let mut d: Vec<DMatrix<f64>> = (0..=depth).map(zeros).collect();
        d[depth] = d_out;
        let (iterations, order) = match relax.scheme {
            Scheme::Difference => (1, Order::Sequential),
            _ => (relax.iterations.max(1), relax.order),
        };
        Relaxer {
            net,
            pass,
            order,
            iterations,
            leak: relax.leak,
            tolerance: relax.tolerance,
            input_side: relax.scheme == Scheme::DecoderInput,
            iterated: relax.scheme != Scheme::Difference,
            u: (0..=depth).map(zeros).collect(),
            d,
            target_presyn: vec![None; depth + 1],
            increments: vec![Vec::new(); batch],
            layer_increments: vec![vec![Vec::new(); depth + 1]; batch],
            failed: (0..batch).map(|_| None).collect(),
            steps: 0,
        }
    }

    /// The examples that have not diverged.
    fn alive(&self) -> Vec<bool> {
        self.failed.iter().map(Option::is_none).collect()
    }

    /// Layer `L`, then `L−1`, …: each relaxes `d_{l−1}` for `N` iterations, an example
    /// stopping early once its increment is at most `tolerance` (docs/MODEL.md §3).
    fn sequential(&mut self, observer: &mut dyn FnMut(usize, &[DMatrix<f64>])) {
        for l in (2..=self.net.depth()).rev() {
            let mut running = self.alive();
            let mut first = vec![0.0; running.len()];
            for it in 1..=self.iterations {
                if !running.contains(&true) {
                    break;
                }
                let inc = self.increment(l);
                self.apply(l, &inc, &running);
                if self.input_side {
                    self.decode_correction(l, &running);
                }
                let mut took = false;
                for b in iterating(&running) {
                    let norm = inc.column(b).norm();
                    self.record_layer(b, l - 1, norm);
                    let ok = self.record(b, norm, &mut first[b], l - 1, it);
                    took |= ok;
                    running[b] = ok && norm > self.tolerance;
                }
                self.observe(took, observer);
            }
        }
    }

    /// Sweeps of every layer at once from the previous sweep's values (Sec. 9); an example
    /// may stop on `tolerance` only from sweep `L + 1` on, once `d_L` has reached `d_1`
    /// (docs/MODEL.md §3). A sweep's norm is taken over all layers together.
    fn parallel(&mut self, observer: &mut dyn FnMut(usize, &[DMatrix<f64>])) {
        let depth = self.net.depth();
        let mut running = self.alive();
        let mut first = vec![0.0; running.len()];
        for it in 1..=self.iterations {
            if !running.contains(&true) {
                break;
            }
            let incs: Vec<DMatrix<f64>> = (2..=depth).map(|l| self.increment(l)).collect();
            // every increment is from the previous sweep's state; now all are applied
            for (l, inc) in (2..=depth).zip(&incs) {
                self.apply(l, inc, &running);
            }
            if self.input_side {
                for l in 2..=depth {
                    self.decode_correction(l, &running);
                }
            }
            let mut took = false;
            for b in iterating(&running) {
                for (l, inc) in (2..=depth).zip(&incs) {
                    self.record_layer(b, l - 1, inc.column(b).norm());
                }
                let (norm, worst) = sweep_norm(&incs, b);
                let ok = self.record(b, norm, &mut first[b], worst, it);
                took |= ok;
                running[b] = ok && !(norm <= self.tolerance && it > depth);
            }
            self.observe(took, observer);
        }
    }

    /// The increment of layer `l` for every example: of `U_l` (decoder_input) or of `D_{l−1}`.
    /// Both re-encode the targets below, `f_l(τ_{l−1}) = W_l a_{l−1}(H_{l−1} + D_{l−1})`.
    fn increment(&mut self, l: usize) -> DMatrix<f64> {
        let net = self.net;
        let reencoded = product(
            &net.w(l).as_view(),
            Op::N,
            &self.target_presyn(l - 1).as_view(),
            Op::N,
        );
        let leak = self.leak;
        if self.input_side {
            // Sec. 5: d_l − [f_l(h_{l−1} + d_{l−1}) − h_l] − λ u_l, where
            // d_{l−1} = g_l(h_l + u_l) − g_l(h_l) is kept by `decode_correction`
            let mut inc = &self.d[l] - (reencoded - &self.pass.h[l]);
            if leak != 0.0 {
                inc.zip_apply(&self.u[l], |i, u| *i -= leak * u);
            }
            inc
        } else {
            // Sec. 6.2: g_l(τ_l) − g_l(f_l(τ_{l−1})) − λ d_{l−1}
            //         = Ω_l [a_l(τ_l) − a_l(f_l(τ_{l−1}))] − λ d_{l−1}
            let below = net.arch().presyn_batch(l, &reencoded);
            let change = self.target_presyn(l) - below;
            let mut inc = product(&net.omega(l).as_view(), Op::N, &change.as_view(), Op::N);
            if leak != 0.0 {
                inc.zip_apply(&self.d[l - 1], |i, d| *i -= leak * d);
            }
            inc
        }
    }

    /// `a_l(τ_l) = a_l(H_l + D_l)`, computed once per change of `D_l`: in a parallel sweep
    /// layer `l` both decodes it (as the target above `l − 1`) and re-encodes it.
    fn target_presyn(&mut self, l: usize) -> &DMatrix<f64> {
        let (arch, h, d) = (self.net.arch(), &self.pass.h[l], &self.d[l]);
        self.target_presyn[l].get_or_insert_with(|| arch.presyn_batch(l, &(h + d)))
    }

    /// Adds the increment of layer `l` to the examples still iterating.
    fn apply(&mut self, l: usize, inc: &DMatrix<f64>, running: &[bool]) {
        let target = if self.input_side {
            &mut self.u[l]
        } else {
            self.target_presyn[l - 1] = None;
            &mut self.d[l - 1]
        };
        for b in iterating(running) {
            let mut col = target.column_mut(b);
            col += inc.column(b);
        }
    }

    /// `d_{l−1} = g_l(h_l + u_l) − g_l(h_l) = Ω_l [a_l(h_l + u_l) − a_l(h_l)]` for the examples
    /// still iterating (Sec. 5).
    fn decode_correction(&mut self, l: usize, running: &[bool]) {
        let (net, pass) = (self.net, self.pass);
        let code = net.arch().presyn_batch(l, &(&pass.h[l] + &self.u[l]));
        let change = code - &pass.a[l];
        let below = product(&net.omega(l).as_view(), Op::N, &change.as_view(), Op::N);
        for b in iterating(running) {
            self.d[l - 1].set_column(b, &below.column(b));
        }
        self.target_presyn[l - 1] = None;
    }

    /// Records example `b`'s step with increment norm `norm` on target layer `layer`; returns
    /// whether the example goes on (false once it has diverged).
    fn record(&mut self, b: usize, norm: f64, first: &mut f64, layer: usize, it: usize) -> bool {
        if it == 1 {
            *first = norm;
        }
        match check(norm, *first, layer, it) {
            Ok(()) => {
                self.increments[b].push(norm);
                true
            }
            Err(e) => {
                self.failed[b] = Some(e);
                false
            }
        }
    }

    /// Records the increment norm of example `b`'s target layer `layer` for the contraction
    /// estimate (iterated schemes only: a difference target is computed once).
    fn record_layer(&mut self, b: usize, layer: usize, norm: f64) {
        if self.iterated {
            self.layer_increments[b][layer].push(norm);
        }
    }

    /// Counts a serial step and shows it to `observer`, if some example took it.
    fn observe(&mut self, took: bool, observer: &mut dyn FnMut(usize, &[DMatrix<f64>])) {
        if took {
            self.steps += 1;
            observer(self.steps, &self.d);
        }
    }

    fn finish(self) -> Result<BatchTargets, Diverged> {
        if let Some((example, error)) = self
            .failed
            .into_iter()
            .enumerate()
            .find_map(|(b, e)| e.map(|e| (b, e)))
        {
            return Err(Diverged { example, error });
        }
        Ok(BatchTargets {
            d: self.d,
            increments: self.increments,
            layer_increments: self.layer_increments,
        })
    }
}

/// The examples still iterating.
fn iterating(running: &[bool]) -> Vec<usize> {
    (0..running.len()).filter(|&b| running[b]).collect()
}

/// Example `b`'s sweep norm `√(Σ_l ‖ε_l‖²)` and the target layer `l − 1` of its largest
/// increment (the last one on ties).
fn sweep_norm(incs: &[DMatrix<f64>], b: usize) -> (f64, usize) {
    let mut total = 0.0;
    let mut worst = (0.0, 0usize);
    for (i, inc) in incs.iter().enumerate() {
        let n2 = inc.column(b).norm_squared();
        total += n2;
        if n2 >= worst.0 {
            worst = (n2, i + 1); // incs[i] is layer l = i + 2, its target layer l − 1
        }
    }
    (total.sqrt(), worst.1)
}
