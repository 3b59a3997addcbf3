//! The low-rank Runge–Kutta path (docs/MODEL.md §9): the same explicit Runge–Kutta method,
//! step-size controller and error norm as `ode_solvers`, with the plastic matrices kept out of
//! the generic state vector.
//!
//! Every plastic matrix has a derivative `Ṁ = −μ M + E Nᵀ` whose plastic part has rank `≤ B`
//! (`Field` returns the factors `E`, `N` and the state-dependent part `κ` of the decay rate,
//! so that at stage `j` the rate is `μ_j = μ + κ_j`). Inside a step from `M_0`, stage `s`
//! therefore has weights
//!
//! ```text
//! M_s = c_s M_0 + Σ_{j<s} ρ_{sj} E_j N_jᵀ,
//! c_s    = 1 − h Σ_{j<s} a_{sj} μ_j c_j,
//! ρ_{si} = h a_{si} − h Σ_{i<j<s} a_{sj} μ_j ρ_{ji},
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
use crate::continuous::field::{
    input_factor_shared, plastic_matrices, Field, PlasticFactors, StageWeights,
};
use crate::continuous::layout::{Block, Layout};
use crate::linalg::with_avx2;
use crate::linalg::{accumulate, error_sum, gemm, Op};
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};
use ode_solvers::controller::Controller;
use ode_solvers::dop_shared::IntegrationError;
use rayon::prelude::*;
use std::cell::RefCell;

/// Most steps one segment may take (as `ode_solvers`' default `n_max`).
pub const MAX_STEPS: u32 = 100_000;

/// Weights `M = c M_0 + Σ_j ρ_j E_j N_jᵀ` of one plastic matrix, in terms of the matrix at
/// the start of the step and the stages' factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Combination {
    /// The scalar `c_s` multiplying the weights at the start of the step.
    pub c: f64,
    /// The coefficients `ρ_sj` of the earlier stages' factors.
    pub rho: [f64; MAX_STAGES],
}

impl Combination {
    /// `M_0` itself.
    const START: Combination = Combination {
        c: 1.0,
        rho: [0.0; MAX_STAGES],
    };

    /// `base·M_0 + h Σ_j β_j k_j` with `k_j = −μ_j M_j + E_j N_jᵀ`, `M_j = stages[j]` and
    /// `μ_j = rates[j]`.
    fn of(
        base: f64,
        beta: &[f64],
        h: f64,
        rates: &[f64; MAX_STAGES],
        stages: &[Combination],
    ) -> Combination {
        let mut out = Combination {
            c: base,
            rho: [0.0; MAX_STAGES],
        };
        for (j, (&bj, mj)) in beta.iter().zip(stages).enumerate() {
            if bj == 0.0 {
                continue;
            }
            let mu = rates[j];
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
///
/// A low-rank combination `Σ_j ρ_j E_j N_jᵀ` is formed as `L Rᵀ` with `L = [ρ_0 E_0 | ρ_1 E_1
/// | …]` and `R = [N_0 | N_1 | …]`, or, when `N` is the same at every evaluation of the
/// segment (`shared`: the input layer's `a_0(x)` under a clamped stimulus), exactly as
/// `L = Σ_j ρ_j E_j` and `R = N` of rank `B` instead of `S·B`.
struct Plastic {
    block: Block,
    /// The constant decay rate `μ` of the segment ([`Field::decay`]).
    mu: f64,
    /// Each stage's whole decay rate `μ_j = μ + κ_j` (`κ_j` from the field at stage `j`).
    rates: [f64; MAX_STAGES],
    shared: bool,
    e: DMatrix<f64>,
    n: DMatrix<f64>,
    /// `L` of the stage being evaluated, and its width.
    left: DMatrix<f64>,
    left_width: usize,
    /// `L` of the step's solution and error.
    left_new: DMatrix<f64>,
    left_err: DMatrix<f64>,
    projection: RefCell<DMatrix<f64>>,
    /// `M_0 a` (and, for a `shared` matrix, `Nᵀ a`) for the last input `a` of a matrix whose
    /// input is the clamped stimulus (`W_1`): it is the same at every stage of a step.
    clamped: Option<RefCell<ProductCache>>,
    solution: DMatrix<f64>,
    error: DMatrix<f64>,
    /// The fused kernel's error sum per block of [`FUSED_COLUMNS`] columns.
    partial: Vec<f64>,
    /// Row `j` of `R` for [`Plastic::materialize`] at small width.
    coef: Vec<f64>,
    /// Explicit stage derivatives, for a matrix whose stage factors have nearly full rank.
    explicit: Option<Explicit>,
}

/// A matrix whose `S·B` stage factors have nearly full rank keeps each stage's plastic term
/// `F_j = E_j N_jᵀ` as a matrix (one product of rank `B` per evaluation), forms the stage
/// weights `M_s = c_s M_0 + Σ_j ρ_{sj} F_j` in one pass, and multiplies with `M_s` directly:
/// the same combinations, fewer operations than the factored form when `S·B` approaches
/// `min(rows, cols)`.
struct Explicit {
    terms: StageTerms,
    /// `M_s` of the stage being evaluated.
    stage: DMatrix<f64>,
}

/// The stages' plastic terms `F_j` of an [`Explicit`] matrix.
struct StageTerms {
    f: Vec<DMatrix<f64>>,
    active: [bool; MAX_STAGES],
}

/// Use [`Explicit`] when the stage factors' total rank `S·B` is at least this fraction of
/// `min(rows, cols)`.
const EXPLICIT_RANK: f64 = 0.25;

/// `out ← c·w0 + Σ_j ρ_j F_j` over the active stages `j < stages`, in parallel blocks (each
/// entry summed in the order `j = 0, 1, …`).
fn combine_explicit(
    out: &mut [f64],
    w0: &[f64],
    comb: &Combination,
    ex: &StageTerms,
    stages: usize,
) {
    const BLOCK: usize = 4096;
    out.par_chunks_mut(BLOCK)
        .with_min_len(TASK_ENTRIES / BLOCK)
        .enumerate()
        .for_each(|(i, o)| {
            let range = i * BLOCK..i * BLOCK + o.len();
            let mut rho = [0.0; MAX_STAGES];
            let mut terms: [&[f64]; MAX_STAGES] = [&[]; MAX_STAGES];
            let mut count = 0;
            for j in 0..stages {
                if ex.active[j] && comb.rho[j] != 0.0 {
                    rho[count] = comb.rho[j];
                    terms[count] = &ex.f[j].as_slice()[range.clone()];
                    count += 1;
                }
            }
            combine_block(o, &w0[range], comb.c, &rho[..count], &terms[..count]);
        });
}

/// `out ← c·w0 + Σ_j ρ_j f_j`, two terms per pass, each entry summed in the order
/// `j = 0, 1, …` (the same sums as one pass per term).
#[inline(always)]
fn combine_block_body(out: &mut [f64], w0: &[f64], c: f64, rho: &[f64], f: &[&[f64]]) {
    for (v, w) in out.iter_mut().zip(w0) {
        *v = c * w;
    }
    let mut j = 0;
    while j + 2 <= f.len() {
        let (r0, r1) = (rho[j], rho[j + 1]);
        for ((v, a), b) in out.iter_mut().zip(f[j]).zip(f[j + 1]) {
            *v = (*v + r0 * a) + r1 * b;
        }
        j += 2;
    }
    if j < f.len() {
        let r0 = rho[j];
        for (v, a) in out.iter_mut().zip(f[j]) {
            *v += r0 * a;
        }
    }
}

with_avx2!(fn combine_block(out: &mut [f64], w0: &[f64], c: f64, rho: &[f64], f: &[&[f64]]) -> () = combine_block_body);

/// See [`Plastic::clamped`].
struct ProductCache {
    valid: bool,
    /// `Nᵀ a` is formed on first use in a step (after stage 0 has stored this segment's `N`).
    projection_valid: bool,
    input: DMatrix<f64>,
    product: DMatrix<f64>,
    projection: DMatrix<f64>,
}

/// Buffers of the fused kernel for one column of a plastic matrix.
struct ColumnScratch {
    /// Column `j` of `L Rᵀ` for the solution and the error.
    new: Vec<f64>,
    error: Vec<f64>,
    /// Row `j` of `R`.
    coef: Vec<f64>,
}

thread_local! {
    /// Each thread's [`ColumnScratch`], grown on first use and then reused.
    static SCRATCH: RefCell<ColumnScratch> = const {
        RefCell::new(ColumnScratch {
            new: Vec::new(),
            error: Vec::new(),
            coef: Vec::new(),
        })
    };
}

/// Runs `f` with this thread's scratch sized for `rows` × `width`.
fn with_scratch<T>(rows: usize, width: usize, f: impl FnOnce(&mut ColumnScratch) -> T) -> T {
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        scratch.new.resize(rows, 0.0);
        scratch.error.resize(rows, 0.0);
        scratch.coef.resize(width, 0.0);
        f(&mut scratch)
    })
}

impl ColumnScratch {
    /// Column `j` of `L_new Rᵀ` and, with `l_err`, of `L_err Rᵀ`.
    fn form(&mut self, l_new: &[f64], l_err: Option<&[f64]>, r: &DMatrix<f64>, j: usize) {
        for (k, c) in self.coef.iter_mut().enumerate() {
            *c = r[(j, k)];
        }
        self.new.fill(0.0);
        accumulate(&mut self.new, &self.coef, l_new);
        if let Some(l_err) = l_err {
            self.error.fill(0.0);
            accumulate(&mut self.error, &self.coef, l_err);
        }
    }
}

/// Columns per task of the fused kernel: the error sum is added up per block of this many
/// columns, then over blocks in order, so it does not depend on the thread count.
const FUSED_COLUMNS: usize = 8;

/// Entries of a plastic matrix one parallel task handles at least: smaller tasks cost more
/// in scheduling than they save.
const TASK_ENTRIES: usize = 1 << 15;

/// Blocks of [`FUSED_COLUMNS`] columns per parallel task.
fn min_blocks(rows: usize) -> usize {
    (TASK_ENTRIES / (rows * FUSED_COLUMNS).max(1)).max(1)
}

/// Up to this many factor columns, the step's weight work runs as one fused pass per matrix
/// ([`ColumnScratch`]); above, as matrix–matrix products.
const FUSED_RANK: usize = 16;

/// `L` of `Σ_{j<stages} ρ_j E_j N_jᵀ = L Rᵀ` into `out` (see [`Plastic`]); returns its width.
fn form_left(
    e: &DMatrix<f64>,
    shared: bool,
    comb: &Combination,
    stages: usize,
    b: usize,
    out: &mut DMatrix<f64>,
) -> usize {
    if stages == 0 {
        return 0;
    }
    if shared {
        let mut l = out.columns_mut(0, b);
        l.fill(0.0);
        for j in 0..stages {
            let rho = comb.rho[j];
            if rho != 0.0 {
                l.zip_apply(&e.columns(j * b, b), |x, e| *x += rho * e);
            }
        }
        b
    } else {
        for j in 0..stages {
            let rho = comb.rho[j];
            out.columns_mut(j * b, b)
                .zip_apply(&e.columns(j * b, b), |x, e| *x = rho * e);
        }
        stages * b
    }
}

impl Plastic {
    /// Forgets the cached product (the weights `M_0` changed).
    fn invalidate(&self) {
        if let Some(cache) = &self.clamped {
            let mut cache = cache.borrow_mut();
            cache.valid = false;
            cache.projection_valid = false;
        }
    }

    fn width(&self, stages: usize, b: usize) -> usize {
        match (stages, self.shared) {
            (0, _) => 0,
            (_, true) => b,
            (_, false) => stages * b,
        }
    }

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
        if let Some(ex) = &self.explicit {
            combine_explicit(self.solution.as_mut_slice(), w0, new, &ex.terms, stages);
            combine_explicit(self.error.as_mut_slice(), w0, err, &ex.terms, stages);
            let (w1, est) = (self.solution.as_slice(), self.error.as_slice());
            return error_sum(w0, w1, est, 0.0, 0.0, rtol, atol);
        }
        let width = form_left(&self.e, self.shared, new, stages, b, &mut self.left_new);
        form_left(&self.e, self.shared, err, stages, b, &mut self.left_err);
        if width > FUSED_RANK {
            self.materialize(y, new.c, width, false);
            self.materialize(y, err.c, width, true);
            return error_sum(
                w0,
                self.solution.as_slice(),
                self.error.as_slice(),
                0.0,
                0.0,
                rtol,
                atol,
            );
        }
        let rows = self.block.rows;
        let l_new = &self.left_new.as_slice()[..width * rows];
        let l_err = &self.left_err.as_slice()[..width * rows];
        let r = &self.n;
        w0.par_chunks(rows * FUSED_COLUMNS)
            .zip(self.partial.par_iter_mut())
            .with_min_len(min_blocks(rows))
            .enumerate()
            .for_each(|(block, (columns, partial))| {
                with_scratch(rows, width, |scratch| {
                    let mut sum = 0.0;
                    for (jj, w0_col) in columns.chunks_exact(rows).enumerate() {
                        scratch.form(l_new, Some(l_err), r, block * FUSED_COLUMNS + jj);
                        sum += error_sum(
                            w0_col,
                            &scratch.new,
                            &scratch.error,
                            new.c,
                            err.c,
                            rtol,
                            atol,
                        );
                    }
                    *partial = sum;
                })
            });
        self.partial.iter().sum()
    }

    /// Writes the solution `new` into the flat state; `prepared` when
    /// [`Plastic::error_share`] has just formed it.
    fn commit(
        &mut self,
        y: &mut [f64],
        new: &Combination,
        stages: usize,
        b: usize,
        prepared: bool,
    ) {
        self.invalidate();
        if let Some(ex) = &self.explicit {
            if !prepared {
                combine_explicit(
                    self.solution.as_mut_slice(),
                    &y[self.block.range()],
                    new,
                    &ex.terms,
                    stages,
                );
            }
            y[self.block.range()].copy_from_slice(self.solution.as_slice());
            return;
        }
        let width = if prepared {
            self.width(stages, b)
        } else {
            form_left(&self.e, self.shared, new, stages, b, &mut self.left_new)
        };
        if width > FUSED_RANK {
            if !prepared {
                self.materialize(y, new.c, width, false);
            }
            y[self.block.range()].copy_from_slice(self.solution.as_slice());
            return;
        }
        let rows = self.block.rows;
        let l_new = &self.left_new.as_slice()[..width * rows];
        let r = &self.n;
        let w = &mut y[self.block.range()];
        w.par_chunks_mut(rows * FUSED_COLUMNS)
            .with_min_len(min_blocks(rows))
            .enumerate()
            .for_each(|(block, columns)| {
                with_scratch(rows, width, |scratch| {
                    for (jj, col) in columns.chunks_exact_mut(rows).enumerate() {
                        scratch.form(l_new, None, r, block * FUSED_COLUMNS + jj);
                        for (v, gn) in col.iter_mut().zip(&scratch.new) {
                            *v = new.c * *v + gn;
                        }
                    }
                })
            });
    }

    /// `solution` (or `error`) `← c M_0 + L Rᵀ` with `L` the first `width` columns of
    /// `left_new` (or `left_err`).
    fn materialize(&mut self, y: &[f64], c: f64, width: usize, to_error: bool) {
        let (out, left) = if to_error {
            (&mut self.error, &self.left_err)
        } else {
            (&mut self.solution, &self.left_new)
        };
        out.zip_apply(&self.block.view(y), |o, w| *o = c * w);
        if width <= FUSED_RANK {
            let rows = self.block.rows;
            let l = &left.as_slice()[..width * rows];
            let coef = &mut self.coef[..width];
            for (j, col) in out.as_mut_slice().chunks_exact_mut(rows).enumerate() {
                for (k, x) in coef.iter_mut().enumerate() {
                    *x = self.n[(j, k)];
                }
                accumulate(col, coef, l);
            }
            return;
        }
        gemm(
            1.0,
            &left.columns(0, width),
            Op::N,
            &self.n.columns(0, width),
            Op::T,
            1.0,
            &mut out.as_view_mut(),
        );
    }

    /// `c M_0 + Σ_j ρ_j E_j N_jᵀ` for an arbitrary combination, into `error`.
    fn materialize_combination(&mut self, y: &[f64], comb: &Combination, stages: usize, b: usize) {
        if let Some(ex) = &self.explicit {
            combine_explicit(
                self.error.as_mut_slice(),
                &y[self.block.range()],
                comb,
                &ex.terms,
                stages,
            );
            return;
        }
        let width = form_left(&self.e, self.shared, comb, stages, b, &mut self.left_err);
        self.materialize(y, comb.c, width, true);
    }
}

/// Products with the weights of one stage (`left` of every matrix formed for it).
struct StageProducts<'a> {
    plastic: &'a [Plastic],
    y: &'a [f64],
    combinations: &'a [Combination],
    b: usize,
}

impl StageWeights for StageProducts<'_> {
    fn product(&self, m: usize, a: &DMatrixView<f64>, out: &mut DMatrixViewMut<f64>) {
        let p = &self.plastic[m];
        if let Some(ex) = &p.explicit {
            gemm(1.0, &ex.stage.as_view(), Op::N, a, Op::N, 0.0, out);
            return;
        }
        let comb = &self.combinations[m];
        let width = p.left_width;
        if let Some(cache) = &p.clamped {
            let mut cache = cache.borrow_mut();
            let fits = cache.input.shape() == a.shape();
            if !(cache.valid && fits && cache.input == *a) {
                let ProductCache {
                    input,
                    product,
                    projection,
                    valid,
                    projection_valid,
                } = &mut *cache;
                *projection_valid = false;
                if !fits {
                    *input = DMatrix::zeros(a.nrows(), a.ncols());
                    *product = DMatrix::zeros(p.block.rows, a.ncols());
                    *projection = DMatrix::zeros(self.b, a.ncols());
                }
                input.copy_from(a);
                let w0 = p.block.view(self.y);
                gemm(1.0, &w0, Op::N, a, Op::N, 0.0, &mut product.as_view_mut());
                *valid = true;
            }
            out.zip_apply(&cache.product, |o, pa| *o = comb.c * pa);
            if width > 0 && p.shared {
                if !cache.projection_valid {
                    let r = p.n.columns(0, self.b);
                    let projection = &mut cache.projection.as_view_mut();
                    gemm(1.0, &r, Op::T, a, Op::N, 0.0, projection);
                    cache.projection_valid = true;
                }
                let l = p.left.columns(0, width);
                gemm(1.0, &l, Op::N, &cache.projection.as_view(), Op::N, 1.0, out);
                return;
            }
        } else {
            gemm(comb.c, &p.block.view(self.y), Op::N, a, Op::N, 0.0, out);
        }
        if width == 0 {
            return;
        }
        let mut projection = p.projection.borrow_mut();
        let mut nta = projection.view_mut((0, 0), (width, a.ncols()));
        gemm(1.0, &p.n.columns(0, width), Op::T, a, Op::N, 0.0, &mut nta);
        gemm(
            1.0,
            &p.left.columns(0, width),
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
    /// Sample time.
    pub time: f64,
    /// Neuron part of the interpolated state.
    pub neurons: &'a [f64],
    /// The interpolated weights as a function of their flat index.
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
    /// Each matrix's dense-output combination.
    dense_comb: Vec<Combination>,
    /// Stage weights of the current step, per stage and matrix.
    combinations: Vec<Vec<Combination>>,
}

/// How the low-rank path holds each matrix's stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StageForm {
    /// Factored unless the stage factors have nearly full rank (then [`Explicit`]).
    #[default]
    Auto,
    /// Always factored (`c M_0 + L Rᵀ`).
    Factored,
    /// Always explicit, except a shared input factor (rank `B` in any case).
    Explicit,
}

impl LowRank {
    /// Buffers for `layout` (the inputs of one product have at most `3B` columns).
    pub fn new(layout: &Layout, form: StageForm) -> Self {
        let b = layout.replicas;
        let s = MAX_STAGES;
        let nx = layout.neurons().len();
        let plastic = plastic_matrices(layout)
            .into_iter()
            .enumerate()
            .map(|(m, (_, _, block))| {
                let explicit = !input_factor_shared(layout, m)
                    && match form {
                        StageForm::Auto => {
                            (s * b) as f64 >= EXPLICIT_RANK * block.rows.min(block.cols) as f64
                        }
                        StageForm::Factored => false,
                        StageForm::Explicit => true,
                    };
                Plastic {
                    block,
                    mu: 0.0,
                    rates: [0.0; MAX_STAGES],
                    shared: false,
                    e: DMatrix::zeros(block.rows, s * b),
                    n: DMatrix::zeros(block.cols, s * b),
                    left: DMatrix::zeros(block.rows, s * b),
                    left_width: 0,
                    left_new: DMatrix::zeros(block.rows, s * b),
                    left_err: DMatrix::zeros(block.rows, s * b),
                    // `Nᵀa` of the factored form (explicit matrices never form it)
                    projection: RefCell::new(if explicit {
                        DMatrix::zeros(0, 0)
                    } else {
                        DMatrix::zeros(s * b, 3 * b)
                    }),
                    clamped: (m == 0).then(|| {
                        let shared = input_factor_shared(layout, m);
                        RefCell::new(ProductCache {
                            valid: false,
                            projection_valid: false,
                            input: DMatrix::zeros(block.cols, b),
                            product: DMatrix::zeros(block.rows, b),
                            projection: DMatrix::zeros(if shared { b } else { 0 }, b),
                        })
                    }),
                    solution: DMatrix::zeros(block.rows, block.cols),
                    error: DMatrix::zeros(block.rows, block.cols),
                    partial: vec![0.0; block.cols.div_ceil(FUSED_COLUMNS)],
                    coef: vec![0.0; FUSED_RANK],
                    explicit: explicit.then(|| Explicit {
                        terms: StageTerms {
                            f: vec![DMatrix::zeros(block.rows, block.cols); s],
                            active: [false; MAX_STAGES],
                        },
                        stage: DMatrix::zeros(block.rows, block.cols),
                    }),
                }
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
            dense_comb: vec![Combination::START; count],
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
        for (p, comb) in self.plastic.iter_mut().zip(&self.combinations[slot]) {
            match &mut p.explicit {
                Some(ex) => {
                    let w0 = &y[p.block.range()];
                    combine_explicit(ex.stage.as_mut_slice(), w0, comb, &ex.terms, stages);
                }
                None => p.left_width = form_left(&p.e, p.shared, comb, stages, b, &mut p.left),
            }
        }
        let products = StageProducts {
            plastic: &self.plastic,
            y,
            combinations: &self.combinations[slot],
            b,
        };
        let input = if at_start {
            &y[..nx]
        } else {
            &self.stage_input[..]
        };
        field.eval_parts(t, input, &products, &mut self.k[slot], &mut self.factors);
        for (m, p) in self.plastic.iter_mut().enumerate() {
            p.shared = self.factors.shared[m];
            p.rates[slot] = p.mu + self.factors.decay[m];
            let (mut e, mut n) = (p.e.columns_mut(slot * b, b), p.n.columns_mut(slot * b, b));
            if self.factors.active[m] {
                e.copy_from(&self.factors.e[m]);
                n.copy_from(&self.factors.n[m]);
            } else {
                e.fill(0.0);
                n.fill(0.0);
            }
            if let Some(ex) = &mut p.explicit {
                ex.terms.active[slot] = self.factors.active[m];
                if ex.terms.active[slot] {
                    let (e, n) = (self.factors.e[m].as_view(), self.factors.n[m].as_view());
                    gemm(
                        1.0,
                        &e,
                        Op::N,
                        &n,
                        Op::T,
                        0.0,
                        &mut ex.terms.f[slot].as_view_mut(),
                    );
                }
            }
        }
    }

    /// Sets the stage combinations of stage `s` for step `h` and the neuron stage input
    /// `y_0 + h Σ_{j<s} a_{sj} k_j`.
    fn prepare_stage(&mut self, tab: &Tableau, y: &[f64], s: usize, h: f64) {
        let row = &tab.a[s][..s];
        for m in 0..self.plastic.len() {
            let stages: [Combination; MAX_STAGES] =
                std::array::from_fn(|j| self.combinations[j][m]);
            self.combinations[s][m] =
                Combination::of(1.0, row, h, &self.plastic[m].rates, &stages[..s]);
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
        let stages: [Combination; MAX_STAGES] = std::array::from_fn(|j| self.combinations[j][m]);
        Combination::of(base, beta, h, &self.plastic[m].rates, &stages[..beta.len()])
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
            p.invalidate();
        }
        // ode_solvers' Dopri5 controller: β = 0.04, α = 0.2 − 0.75β, fac ∈ [0.2, 10], safety 0.9
        let mut controller = Controller::new(0.2 - 0.04 * 0.75, 0.04, 10.0, 0.2, span, 0.9, 1.0);
        let mut h = self.initial_step(tab, field, y, t0, rtol, atol, span);
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
                // the last step ends at t1 up to rounding: it takes every sample left
                let reach = if last { f64::INFINITY } else { x + h };
                while next_sample < samples.len() && samples[next_sample] <= reach {
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
            // k_S − k_{S−1} = −μ_S M_S + μ_{S−1} M_{S−1} + E_S N_Sᵀ − E_{S−1} N_{S−1}ᵀ
            let (mu_top, mu_below) = (
                self.plastic[m].rates[s_last],
                self.plastic[m].rates[s_last - 1],
            );
            let mut diff = Combination {
                c: top.c - below.c,
                rho: [0.0; MAX_STAGES],
            };
            let mut dk = Combination {
                c: -mu_top * top.c + mu_below * below.c,
                rho: [0.0; MAX_STAGES],
            };
            for j in 0..MAX_STAGES {
                diff.rho[j] = top.rho[j] - below.rho[j];
                dk.rho[j] = -mu_top * top.rho[j] + mu_below * below.rho[j];
            }
            dk.rho[s_last] += 1.0;
            dk.rho[s_last - 1] -= 1.0;
            let p = &mut self.plastic[m];
            p.materialize_combination(y, &dk, s_last + 1, b);
            num += p.error.norm_squared();
            p.materialize_combination(y, &diff, s_last + 1, b);
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
        let b = self.layout.replicas;
        let stages = MAX_STAGES;
        for m in 0..self.plastic.len() {
            let comb = self.combination(m, 1.0, &w, h);
            let p = &mut self.plastic[m];
            if p.explicit.is_none() {
                p.left_width = form_left(&p.e, p.shared, &comb, stages, b, &mut p.left);
            }
            self.dense_comb[m] = comb;
        }
        let plastic = &self.plastic;
        let dense_comb = &self.dense_comb;
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
            let comb = &dense_comb[m];
            let plastic_part: f64 = match &p.explicit {
                Some(ex) => (0..MAX_STAGES)
                    .filter(|&j| ex.terms.active[j])
                    .map(|j| comb.rho[j] * ex.terms.f[j][local])
                    .sum(),
                None => (0..p.left_width)
                    .map(|k| p.left[(row, k)] * p.n[(col, k)])
                    .sum(),
            };
            comb.c * y[index] + plastic_part
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
            p.commit(y, &new, tab.stages, b, true);
            let (e, n) = (&mut p.e, &mut p.n);
            for r in 0..b {
                e.swap_columns(r, s_last * b + r);
                n.swap_columns(r, s_last * b + r);
            }
            p.rates.swap(0, s_last);
            if let Some(ex) = &mut p.explicit {
                ex.terms.f.swap(0, s_last);
                ex.terms.active.swap(0, s_last);
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
            let mu = self.plastic[m].rates[0];
            let mut f0 = Combination {
                c: -mu,
                rho: [0.0; MAX_STAGES],
            };
            f0.rho[0] = 1.0;
            let p = &mut self.plastic[m];
            p.materialize_combination(y, &f0, 1, b);
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
            // k_1 − k_0 = −μ_1 M_1 + μ_0 M_0 + E_1N_1ᵀ − E_0N_0ᵀ with M_1 = c M_0 + h0 E_0N_0ᵀ
            let (mu0, mu1) = (self.plastic[m].rates[0], self.plastic[m].rates[1]);
            let m1 = self.combinations[1][m];
            let mut diff = Combination {
                c: -mu1 * m1.c + mu0,
                rho: [0.0; MAX_STAGES],
            };
            diff.rho[0] = -mu1 * m1.rho[0] - 1.0;
            diff.rho[1] = 1.0;
            let p = &mut self.plastic[m];
            p.materialize_combination(y, &diff, 2, b);
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
        (100.0 * h0.abs()).min(h1.min(h_max))
    }

    /// Stage 1 of the initial-step heuristic: `y + h0 k_0` (an Euler step).
    fn prepare_stage_euler(&mut self, y: &[f64], h0: f64) {
        for m in 0..self.plastic.len() {
            self.combinations[1][m] = Combination::of(
                1.0,
                &[1.0],
                h0,
                &self.plastic[m].rates,
                &[Combination::START],
            );
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
            p.invalidate();
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
                self.plastic[m].commit(y, &new, tab.stages, b, false);
            }
            stats.accepted_steps += 1;
        }
    }
}
