//! The low-rank Runge–Kutta path (docs/MODEL.md §9): the same explicit Runge–Kutta method,
//! step-size controller and error norm as `ode_solvers`, with the plastic matrices kept out of
//! the generic state vector.
//!
//! Every plastic matrix has a derivative `Ṁ = −μ M + E Nᵀ` whose plastic part has rank `≤ B`
//! (`Field` returns the factors `E`, `N`). Inside a step from `M_0`, stage `s` therefore has
//! weights
//!
//! ```text
//! M_s = c_s M_0 + Σ_{j<s} ρ_{sj} E_j N_jᵀ,
//! c_s    = 1 − hμ Σ_{j<s} a_{sj} c_j,
//! ρ_{si} = h a_{si} − hμ Σ_{i<j<s} a_{sj} ρ_{ji},
//! ```
//!
//! and a product `M_s A` is formed as `c_s (M_0 A) + Σ_j ρ_{sj} E_j (N_jᵀ A)` without ever
//! writing `M_s`. The solution `M_0 + h Σ b_s k_s`, the error estimate `h Σ e_s k_s` and the
//! dense output `M_0 + h Σ w_s(θ) k_s` are combinations of the same form ([`Combination`]).
//! One fused pass per attempted step forms the new weights and their share of the error norm
//! `√(Σ_i (err_i/sc_i)²/dim)`, `sc_i = atol + rtol·max(|y_i|, |y_{1,i}|)`, taken over every
//! entry of the state, weights included, exactly as `ode_solvers` does.

use super::tableau::{dopri5_dense_weights, Tableau, MAX_STAGES};
use super::SolverStats;
use crate::continuous::field::{plastic_matrices, Field, PlasticFactors, StageWeights};
use crate::continuous::layout::{Block, Layout};
use crate::linalg::{gemm, Op};
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};
use ode_solvers::controller::Controller;
use ode_solvers::dop_shared::IntegrationError;
use std::cell::RefCell;

/// Most steps one segment may take (as `ode_solvers`' default `n_max`).
pub const MAX_STEPS: u32 = 100_000;

/// Weights `M = c M_0 + Σ_j ρ_j E_j N_jᵀ` of one plastic matrix, in terms of the matrix at
/// the start of the step and the stages' factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Combination {
    pub c: f64,
    pub rho: [f64; MAX_STAGES],
}

impl Combination {
    /// `M_0` itself.
    const START: Combination = Combination {
        c: 1.0,
        rho: [0.0; MAX_STAGES],
    };

    /// `base·M_0 + h Σ_j β_j k_j` with `k_j = −μ M_j + E_j N_jᵀ` and `M_j = stages[j]`.
    fn of(base: f64, beta: &[f64], h: f64, mu: f64, stages: &[Combination]) -> Combination {
        let mut out = Combination {
            c: base,
            rho: [0.0; MAX_STAGES],
        };
        for (j, (&bj, mj)) in beta.iter().zip(stages).enumerate() {
            if bj == 0.0 {
                continue;
            }
            out.c -= h * mu * bj * mj.c;
            out.rho[j] += h * bj;
            for (r, rj) in out.rho.iter_mut().zip(mj.rho) {
                *r -= h * mu * bj * rj;
            }
        }
        out
    }
}

/// One plastic matrix: where it lives in the flat state, its decay rate, the stages' factors
/// (stage `j` in columns `jB..(j+1)B`) and work buffers.
struct Plastic {
    block: Block,
    mu: f64,
    e: DMatrix<f64>,
    n: DMatrix<f64>,
    scaled: DMatrix<f64>,
    projection: RefCell<DMatrix<f64>>,
    solution: DMatrix<f64>,
    error: DMatrix<f64>,
    /// One column of `Σ_j ρ_j E_j N_jᵀ` for the solution and the error (small-rank kernel).
    column_new: Vec<f64>,
    column_error: Vec<f64>,
}

/// Up to this many factor columns (stages × `B`), the step's weight work runs as one fused
/// pass per matrix; above, as matrix–matrix products.
const FUSED_RANK: usize = 16;

impl Plastic {
    /// `Σ_i (err_i/sc_i)²` over this matrix's entries, with the solution `new` and the error
    /// `err` over the first `stages` stages. Leaves what [`Plastic::commit`] needs.
    #[allow(clippy::too_many_arguments)]
    fn error_share(
        &mut self,
        y: &[f64],
        new: &Combination,
        err: &Combination,
        stages: usize,
        b: usize,
        rtol: f64,
        atol: f64,
    ) -> f64 {
        let w0 = &y[self.block.range()];
        let sc = |w: f64, w1: f64| atol + w.abs().max(w1.abs()) * rtol;
        if stages * b > FUSED_RANK {
            self.materialize(y, new, stages, b, false);
            self.materialize(y, err, stages, b, true);
            return w0
                .iter()
                .zip(self.solution.iter())
                .zip(self.error.iter())
                .map(|((&w, &w1), &est)| (est / sc(w, w1)).powi(2))
                .sum();
        }
        let rows = self.block.rows;
        let mut sum = 0.0;
        for (j, w0_col) in w0.chunks_exact(rows).enumerate() {
            self.columns_of(j, new, err, stages, b);
            for ((&w, &gn), &ge) in w0_col.iter().zip(&self.column_new).zip(&self.column_error) {
                let (w1, est) = (new.c * w + gn, err.c * w + ge);
                sum += (est / sc(w, w1)).powi(2);
            }
        }
        sum
    }

    /// Column `j` of `Σ_k ρ_k E_k N_kᵀ` for the solution (and, with `err`, the error).
    fn columns_of(
        &mut self,
        j: usize,
        new: &Combination,
        err: &Combination,
        stages: usize,
        b: usize,
    ) {
        self.column_new.iter_mut().for_each(|v| *v = 0.0);
        self.column_error.iter_mut().for_each(|v| *v = 0.0);
        for k in 0..stages * b {
            let nk = self.n[(j, k)];
            let (cn, ce) = (new.rho[k / b] * nk, err.rho[k / b] * nk);
            let e = self.e.column(k);
            for ((gn, ge), &ek) in self
                .column_new
                .iter_mut()
                .zip(self.column_error.iter_mut())
                .zip(e.iter())
            {
                *gn += cn * ek;
                *ge += ce * ek;
            }
        }
    }

    /// Writes the solution `new` into the flat state.
    fn commit(&mut self, y: &mut [f64], new: &Combination, stages: usize, b: usize) {
        let rows = self.block.rows;
        let w = &mut y[self.block.range()];
        if stages * b > FUSED_RANK {
            w.copy_from_slice(self.solution.as_slice());
            return;
        }
        let none = Combination {
            c: 0.0,
            rho: [0.0; MAX_STAGES],
        };
        for (j, col) in w.chunks_exact_mut(rows).enumerate() {
            self.columns_of(j, new, &none, stages, b);
            for (v, gn) in col.iter_mut().zip(&self.column_new) {
                *v = new.c * *v + gn;
            }
        }
    }

    /// `out ← comb` over the first `stages` stages' factors and `M_0` from the flat state `y`.
    fn materialize(
        &mut self,
        y: &[f64],
        comb: &Combination,
        stages: usize,
        b: usize,
        to_error: bool,
    ) {
        let out = if to_error {
            &mut self.error
        } else {
            &mut self.solution
        };
        out.copy_from(&self.block.view(y));
        *out *= comb.c;
        let r = stages * b;
        for j in 0..stages {
            let mut dst = self.scaled.columns_mut(j * b, b);
            dst.copy_from(&self.e.columns(j * b, b));
            dst *= comb.rho[j];
        }
        gemm(
            1.0,
            &self.scaled.columns(0, r),
            Op::N,
            &self.n.columns(0, r),
            Op::T,
            1.0,
            &mut out.as_view_mut(),
        );
    }
}

/// Products with the weights of one stage.
struct StageProducts<'a> {
    plastic: &'a [Plastic],
    y: &'a [f64],
    combinations: &'a [Combination],
    stages: usize,
    b: usize,
}

impl StageWeights for StageProducts<'_> {
    fn product(&self, m: usize, a: &DMatrixView<f64>, out: &mut DMatrixViewMut<f64>) {
        let p = &self.plastic[m];
        let comb = &self.combinations[m];
        gemm(comb.c, &p.block.view(self.y), Op::N, a, Op::N, 0.0, out);
        let r = self.stages * self.b;
        if r == 0 || comb.rho[..self.stages].iter().all(|v| *v == 0.0) {
            return;
        }
        let mut projection = p.projection.borrow_mut();
        let mut nta = projection.view_mut((0, 0), (r, a.ncols()));
        gemm(1.0, &p.n.columns(0, r), Op::T, a, Op::N, 0.0, &mut nta);
        for j in 0..self.stages {
            nta.rows_mut(j * self.b, self.b).scale_mut(comb.rho[j]);
        }
        gemm(
            1.0,
            &p.e.columns(0, r),
            Op::N,
            &nta.as_view(),
            Op::N,
            1.0,
            out,
        );
    }
}

/// A trace sample from the dense output: the neurons at time `t` and the weights as a
/// function of the flat index.
pub struct DenseSample<'a> {
    pub time: f64,
    pub neurons: &'a [f64],
    pub weight: &'a dyn Fn(usize) -> f64,
}

/// The low-rank integrator's buffers, allocated once per run.
pub struct LowRank {
    layout: Layout,
    plastic: Vec<Plastic>,
    /// Neuron part of every stage derivative `k_s`.
    k: Vec<Vec<f64>>,
    /// Neuron input of the current stage (and, after the last stage of a FSAL method, `y_1`).
    stage_input: Vec<f64>,
    solution: Vec<f64>,
    stiff_input: Vec<f64>,
    dense: Vec<f64>,
    factors: PlasticFactors,
    /// Stage weights of the current step, per stage and matrix.
    combinations: Vec<Vec<Combination>>,
}

impl LowRank {
    /// Buffers for `layout` (the inputs of one product have at most `3B` columns).
    pub fn new(layout: &Layout) -> Self {
        let b = layout.replicas;
        let s = MAX_STAGES;
        let nx = layout.neurons().len();
        let plastic = plastic_matrices(layout)
            .into_iter()
            .map(|(_, _, block)| Plastic {
                block,
                mu: 0.0,
                e: DMatrix::zeros(block.rows, s * b),
                n: DMatrix::zeros(block.cols, s * b),
                scaled: DMatrix::zeros(block.rows, s * b),
                projection: RefCell::new(DMatrix::zeros(s * b, 3 * b)),
                solution: DMatrix::zeros(block.rows, block.cols),
                error: DMatrix::zeros(block.rows, block.cols),
                column_new: vec![0.0; block.rows],
                column_error: vec![0.0; block.rows],
            })
            .collect::<Vec<_>>();
        let count = plastic.len();
        LowRank {
            layout: layout.clone(),
            plastic,
            k: vec![vec![0.0; nx]; s],
            stage_input: vec![0.0; nx],
            solution: vec![0.0; nx],
            stiff_input: vec![0.0; nx],
            dense: vec![0.0; nx],
            factors: PlasticFactors::new(layout),
            combinations: vec![vec![Combination::START; count]; s],
        }
    }

    /// Evaluates the field for stage `slot` at neuron state `self.stage_input` (or `y`'s
    /// neurons when `at_start`) with the weights `self.combinations[slot]`, over the factors
    /// of the first `stages` stages; stores `k_slot` and the stage's factors.
    fn eval_stage(
        &mut self,
        field: &Field,
        t: f64,
        y: &[f64],
        slot: usize,
        stages: usize,
        at_start: bool,
    ) {
        let b = self.layout.replicas;
        let nx = self.stage_input.len();
        let products = StageProducts {
            plastic: &self.plastic,
            y,
            combinations: &self.combinations[slot],
            stages,
            b,
        };
        let input = if at_start {
            &y[..nx]
        } else {
            &self.stage_input[..]
        };
        field.eval_parts(t, input, &products, &mut self.k[slot], &mut self.factors);
        for (m, p) in self.plastic.iter_mut().enumerate() {
            let (mut e, mut n) = (p.e.columns_mut(slot * b, b), p.n.columns_mut(slot * b, b));
            if self.factors.active[m] {
                e.copy_from(&self.factors.e[m]);
                n.copy_from(&self.factors.n[m]);
            } else {
                e.fill(0.0);
                n.fill(0.0);
            }
        }
    }

    /// Sets the stage combinations of stage `s` for step `h` and the neuron stage input
    /// `y_0 + h Σ_{j<s} a_{sj} k_j`.
    fn prepare_stage(&mut self, tab: &Tableau, y: &[f64], s: usize, h: f64) {
        let row = &tab.a[s][..s];
        for m in 0..self.plastic.len() {
            let stages: Vec<Combination> = (0..s).map(|j| self.combinations[j][m]).collect();
            self.combinations[s][m] = Combination::of(1.0, row, h, self.plastic[m].mu, &stages);
        }
        let nx = self.stage_input.len();
        self.stage_input.copy_from_slice(&y[..nx]);
        for (j, &a) in row.iter().enumerate() {
            if a != 0.0 {
                let ha = h * a;
                for (v, k) in self.stage_input.iter_mut().zip(&self.k[j]) {
                    *v += ha * k;
                }
            }
        }
    }

    /// Combination of `base·M_0 + h Σ_j β_j k_j` for matrix `m` over the step's stages.
    fn combination(&self, m: usize, base: f64, beta: &[f64], h: f64) -> Combination {
        let stages: Vec<Combination> = (0..beta.len()).map(|j| self.combinations[j][m]).collect();
        Combination::of(base, beta, h, self.plastic[m].mu, &stages)
    }

    /// Integrates `field` from `t0` to `t1` with the adaptive embedded method `tab`
    /// (Dopri5), updating the flat state `y` in place. `samples` are times in `[t0, t1]`
    /// (increasing) at which `observe` receives the dense output.
    #[allow(clippy::too_many_arguments)]
    pub fn adaptive(
        &mut self,
        tab: &Tableau,
        field: &Field,
        y: &mut [f64],
        t0: f64,
        t1: f64,
        rtol: f64,
        atol: f64,
        stats: &mut SolverStats,
        samples: &[f64],
        observe: &mut dyn FnMut(&DenseSample),
    ) -> Result<(), IntegrationError> {
        let e = tab.e.expect("an adaptive method has an error estimate");
        let s_last = tab.stages - 1;
        let dim = y.len() as f64;
        let span = t1 - t0;
        for (m, p) in self.plastic.iter_mut().enumerate() {
            p.mu = field.decay(m);
        }
        // ode_solvers' Dopri5 controller: β = 0.04, α = 0.2 − 0.75β, fac ∈ [0.2, 10], safety 0.9
        let mut controller = Controller::new(0.2 - 0.04 * 0.75, 0.04, 10.0, 0.2, span, 0.9, 1.0);
        let mut h = self.initial_step(tab, field, y, t0, t1, rtol, atol, span);
        let mut x = t0;
        let mut next_sample = 0usize;
        let (mut n_step, mut accepted, mut last, mut h_new) = (0u32, 0u64, false, 0.0);
        let (mut stiff_count, mut non_stiff) = (0u32, 0u32);
        while !last {
            if n_step > MAX_STEPS {
                return Err(IntegrationError::MaxNumStepReached { x, n_step });
            }
            if 0.1 * h.abs() <= f64::EPSILON * x.abs() {
                return Err(IntegrationError::StepSizeUnderflow { x });
            }
            if x + 1.01 * h - t1 > 0.0 {
                h = t1 - x;
                last = true;
            }
            n_step += 1;
            for s in 1..tab.stages {
                self.prepare_stage(tab, y, s, h);
                if s == s_last - 1 {
                    self.stiff_input.copy_from_slice(&self.stage_input);
                }
                self.eval_stage(field, x + tab.c[s] * h, y, s, s, false);
            }
            // the last stage's input is y_1 (FSAL): a[S−1] = b
            self.solution.copy_from_slice(&self.stage_input);
            let err = self.error_norm(tab, &e, y, h, rtol, atol) / dim;
            let err = err.sqrt();
            if controller.accept(err, h, &mut h_new) {
                accepted += 1;
                stats.accepted_steps += 1;
                if accepted % 1000 == 0 || stiff_count > 0 {
                    let h_lamb = self.stiffness(y, h, s_last);
                    if h_lamb > 3.25 {
                        stiff_count += 1;
                        non_stiff = 0;
                        if stiff_count == 15 {
                            return Err(IntegrationError::StiffnessDetected { x });
                        }
                    } else {
                        non_stiff += 1;
                        if non_stiff == 6 {
                            stiff_count = 0;
                        }
                    }
                }
                while next_sample < samples.len() && samples[next_sample] <= x + h {
                    let t = samples[next_sample];
                    self.observe_dense(y, x, h, t, observe);
                    next_sample += 1;
                }
                self.commit(tab, y, h, s_last);
                x += h;
                if last {
                    return Ok(());
                }
            } else {
                last = false;
                if accepted >= 1 {
                    stats.rejected_steps += 1;
                }
            }
            h = h_new;
        }
        Ok(())
    }

    /// `Σ_i (err_i/sc_i)²` over the neurons and every weight entry.
    fn error_norm(
        &mut self,
        tab: &Tableau,
        e: &[f64; MAX_STAGES],
        y: &[f64],
        h: f64,
        rtol: f64,
        atol: f64,
    ) -> f64 {
        let nx = self.solution.len();
        let mut sum = 0.0;
        for i in 0..nx {
            let est: f64 = h * (0..tab.stages).map(|j| e[j] * self.k[j][i]).sum::<f64>();
            let sc = atol + y[i].abs().max(self.solution[i].abs()) * rtol;
            sum += (est / sc) * (est / sc);
        }
        let b = self.layout.replicas;
        for m in 0..self.plastic.len() {
            let new = self.combination(m, 1.0, &tab.b[..tab.stages], h);
            let err = self.combination(m, 0.0, &e[..tab.stages], h);
            sum += self.plastic[m].error_share(y, &new, &err, tab.stages, b, rtol, atol);
        }
        sum
    }

    /// `h √(‖k_S − k_{S−1}‖² / ‖y_1 − y_{S−1}‖²)`, `ode_solvers`' stiffness indicator.
    fn stiffness(&mut self, y: &[f64], h: f64, s_last: usize) -> f64 {
        let b = self.layout.replicas;
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..self.solution.len() {
            num += (self.k[s_last][i] - self.k[s_last - 1][i]).powi(2);
            den += (self.solution[i] - self.stiff_input[i]).powi(2);
        }
        for m in 0..self.plastic.len() {
            let (top, below) = (
                self.combinations[s_last][m],
                self.combinations[s_last - 1][m],
            );
            let mu = self.plastic[m].mu;
            let mut diff = Combination {
                c: top.c - below.c,
                rho: [0.0; MAX_STAGES],
            };
            let mut dk = Combination {
                c: -mu * diff.c,
                rho: [0.0; MAX_STAGES],
            };
            for j in 0..MAX_STAGES {
                diff.rho[j] = top.rho[j] - below.rho[j];
                dk.rho[j] = -mu * diff.rho[j];
            }
            dk.rho[s_last] += 1.0;
            dk.rho[s_last - 1] -= 1.0;
            let p = &mut self.plastic[m];
            p.materialize(y, &dk, s_last + 1, b, true);
            num += p.error.norm_squared();
            p.materialize(y, &diff, s_last + 1, b, true);
            den += p.error.norm_squared();
        }
        if den > 0.0 {
            h * (num / den).sqrt()
        } else {
            0.0
        }
    }

    /// Hands the dense output at `t ∈ [x, x + h]` to `observe`.
    fn observe_dense(
        &mut self,
        y: &[f64],
        x: f64,
        h: f64,
        t: f64,
        observe: &mut dyn FnMut(&DenseSample),
    ) {
        let theta = ((t - x) / h).clamp(0.0, 1.0);
        let w = dopri5_dense_weights(theta);
        let nx = self.dense.len();
        self.dense.copy_from_slice(&y[..nx]);
        for (j, &wj) in w.iter().enumerate() {
            if wj != 0.0 {
                for (v, k) in self.dense.iter_mut().zip(&self.k[j]) {
                    *v += h * wj * k;
                }
            }
        }
        let combs: Vec<Combination> = (0..self.plastic.len())
            .map(|m| self.combination(m, 1.0, &w, h))
            .collect();
        let b = self.layout.replicas;
        let plastic = &self.plastic;
        let weight = |index: usize| -> f64 {
            let Some(m) = plastic
                .iter()
                .position(|p| p.block.range().contains(&index))
            else {
                return y[index];
            };
            let p = &plastic[m];
            let local = index - p.block.start;
            let (row, col) = (local % p.block.rows, local / p.block.rows);
            let comb = &combs[m];
            let mut v = comb.c * y[index];
            for j in 0..MAX_STAGES {
                for r in 0..b {
                    v += comb.rho[j] * p.e[(row, j * b + r)] * p.n[(col, j * b + r)];
                }
            }
            v
        };
        observe(&DenseSample {
            time: t,
            neurons: &self.dense,
            weight: &weight,
        });
    }

    /// Accepts the step: `y ← y_1` (neurons and weights) and, FSAL, stage `S−1` becomes the
    /// next step's stage 0.
    fn commit(&mut self, tab: &Tableau, y: &mut [f64], h: f64, s_last: usize) {
        let nx = self.solution.len();
        y[..nx].copy_from_slice(&self.solution);
        let b = self.layout.replicas;
        for m in 0..self.plastic.len() {
            let new = self.combination(m, 1.0, &tab.b[..tab.stages], h);
            let p = &mut self.plastic[m];
            p.commit(y, &new, tab.stages, b);
            let (e, n) = (&mut p.e, &mut p.n);
            for r in 0..b {
                e.swap_columns(r, s_last * b + r);
                n.swap_columns(r, s_last * b + r);
            }
        }
        self.k.swap(0, s_last);
    }

    /// `ode_solvers`' initial step (Hairer's `HINIT`), with the norms over the whole state;
    /// leaves `k_0 = F(t0, y)` (and its factors) in stage 0.
    #[allow(clippy::too_many_arguments)]
    fn initial_step(
        &mut self,
        tab: &Tableau,
        field: &Field,
        y: &[f64],
        t0: f64,
        t1: f64,
        rtol: f64,
        atol: f64,
        h_max: f64,
    ) -> f64 {
        let b = self.layout.replicas;
        let nx = self.stage_input.len();
        for m in 0..self.plastic.len() {
            self.combinations[0][m] = Combination::START;
        }
        self.eval_stage(field, t0, y, 0, 0, true);
        let (mut d0, mut d1) = (0.0, 0.0);
        for i in 0..nx {
            let sc = atol + y[i].abs() * rtol;
            d0 += (y[i] / sc).powi(2);
            d1 += (self.k[0][i] / sc).powi(2);
        }
        for m in 0..self.plastic.len() {
            let mu = self.plastic[m].mu;
            let mut f0 = Combination {
                c: -mu,
                rho: [0.0; MAX_STAGES],
            };
            f0.rho[0] = 1.0;
            let p = &mut self.plastic[m];
            p.materialize(y, &f0, 1, b, true);
            for (w, f) in y[p.block.range()].iter().zip(p.error.iter()) {
                let sc = atol + w.abs() * rtol;
                d0 += (w / sc).powi(2);
                d1 += (f / sc).powi(2);
            }
        }
        let mut h0 = if d0 < 1e-10 || d1 < 1e-10 {
            1e-6
        } else {
            0.01 * (d0 / d1).sqrt()
        };
        h0 = h0.min(h_max);
        // y_1 = y + h0 k_0, evaluated as stage 1
        self.prepare_stage_euler(y, h0);
        self.eval_stage(field, t0 + h0, y, 1, 1, false);
        let mut d2 = 0.0;
        for i in 0..nx {
            let sc = atol + y[i].abs() * rtol;
            d2 += ((self.k[1][i] - self.k[0][i]) / sc).powi(2);
        }
        for m in 0..self.plastic.len() {
            // k_1 − k_0 = −μ(M_1 − M_0) + E_1N_1ᵀ − E_0N_0ᵀ with M_1 = c M_0 + h0 E_0N_0ᵀ
            let mu = self.plastic[m].mu;
            let m1 = self.combinations[1][m];
            let mut diff = Combination {
                c: -mu * (m1.c - 1.0),
                rho: [0.0; MAX_STAGES],
            };
            diff.rho[0] = -mu * m1.rho[0] - 1.0;
            diff.rho[1] = 1.0;
            let p = &mut self.plastic[m];
            p.materialize(y, &diff, 2, b, true);
            for (w, f) in y[p.block.range()].iter().zip(p.error.iter()) {
                let sc = atol + w.abs() * rtol;
                d2 += (f / sc).powi(2);
            }
        }
        let d2 = d2.sqrt() / h0;
        let h1 = if d1.sqrt().max(d2.abs()) <= 1e-15 {
            1e-6f64.max(h0.abs() * 1e-3)
        } else {
            (0.01 / d1.sqrt().max(d2)).powf(1.0 / tab.order as f64)
        };
        let _ = t1;
        (100.0 * h0.abs()).min(h1.min(h_max))
    }

    /// Stage 1 of the initial-step heuristic: `y + h0 k_0` (an Euler step).
    fn prepare_stage_euler(&mut self, y: &[f64], h0: f64) {
        for m in 0..self.plastic.len() {
            self.combinations[1][m] =
                Combination::of(1.0, &[1.0], h0, self.plastic[m].mu, &[Combination::START]);
        }
        let nx = self.stage_input.len();
        for i in 0..nx {
            self.stage_input[i] = y[i] + h0 * self.k[0][i];
        }
    }

    /// Integrates from `t0` to `t1` in equal steps of at most `step` with the fixed-step
    /// method `tab` (rk4), updating `y` in place.
    #[allow(clippy::too_many_arguments)]
    pub fn fixed(
        &mut self,
        tab: &Tableau,
        field: &Field,
        y: &mut [f64],
        t0: f64,
        t1: f64,
        step: f64,
        stats: &mut SolverStats,
    ) {
        for (m, p) in self.plastic.iter_mut().enumerate() {
            p.mu = field.decay(m);
        }
        let n_steps = ((t1 - t0) / step).ceil().max(1.0) as usize;
        let h = (t1 - t0) / n_steps as f64;
        let b = self.layout.replicas;
        let nx = self.solution.len();
        for i in 0..n_steps {
            let x = t0 + i as f64 * h;
            for m in 0..self.plastic.len() {
                self.combinations[0][m] = Combination::START;
            }
            self.eval_stage(field, x, y, 0, 0, true);
            for s in 1..tab.stages {
                self.prepare_stage(tab, y, s, h);
                self.eval_stage(field, x + tab.c[s] * h, y, s, s, false);
            }
            self.solution.copy_from_slice(&y[..nx]);
            for j in 0..tab.stages {
                let hb = h * tab.b[j];
                for (v, k) in self.solution.iter_mut().zip(&self.k[j]) {
                    *v += hb * k;
                }
            }
            y[..nx].copy_from_slice(&self.solution);
            for m in 0..self.plastic.len() {
                let new = self.combination(m, 1.0, &tab.b[..tab.stages], h);
                let p = &mut self.plastic[m];
                if tab.stages * b > FUSED_RANK {
                    p.materialize(y, &new, tab.stages, b, false);
                }
                p.commit(y, &new, tab.stages, b);
            }
            stats.accepted_steps += 1;
        }
    }
}
