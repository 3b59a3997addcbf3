//! The vector field of the continuous-time model (docs/MODEL.md §6; seed paper Sec. 5, 6.2,
//! 7.1, 8, 10.2): one evaluation computes the time derivative of every population of every
//! replica and the plastic part of the weights' derivative, with matrix–matrix products over
//! the `B` replica columns.
//!
//! With `X = h_0` the input, `A_l = a_l(H_l)` and `F_l = f_l(H_{l−1}) = W_l A_{l−1}` (columns are
//! replicas):
//!
//! * feedforward: `τ_h Ḣ_l = −H_l + F_l`;
//! * output target: `τ_d Ḋ_L = −D_L − β m(t) ∇ℓ(H_L, Y)`;
//! * hidden targets, `l = 2..=L`:
//!   - `decoder_output` (Sec. 6.2, 9): `τ_d Ḋ_{l−1} = g_l(H_l + D_l) − g_l(H_l + f_l(H_{l−1} + D_{l−1}) − F_l) − λ D_{l−1}`;
//!   - `decoder_input` (Sec. 5): `τ_d U̇_l = D_l − [f_l(H_{l−1} + g_l(H_l + U_l) − g_l(H_l)) − F_l] − λ U_l`,
//!     `τ_d Ḋ_{l−1} = −D_{l−1} + g_l(H_l + U_l) − g_l(H_l)`;
//!   - `difference`: `τ_d Ḋ_{l−1} = −D_{l−1} + g_l(H_l + D_l) − g_l(H_l)`;
//! * pools: `τ_p ṗ_l = −p_l + ‖a_l(h_l)‖²`, `n_l = a_l/(ε + p_l)`, `l = 0..=L`;
//! * trace (Sec. 7.1): `ċ_{l,1} = (n_l − c_{l,1}) K/D`, `ċ_{l,k} = (c_{l,k−1} − c_{l,k}) K/D`,
//!   `n̄_l = c_{l,K}` (`n̄_l = n_l` when `K = 0`);
//! * influence (Sec. 8), `l = 1..L−1`: `τ_q ṡ_l = s_l (‖d_L‖² − s_l‖d_l‖²)/(ε_q + ‖d_L‖² + s_l‖d_l‖²)`,
//!   `s_L = 1`;
//! * forward plasticity (Sec. 7.1): `Ẇ_l = η_l[−γ W_l + Σ_b m_p e_{l,b} n̄_{l−1,b}ᵀ]` (rates per
//!   example: summed over the replicas)
//!   with `e = (s_l d_l)˙ = s_l ḋ_l + ṡ_l d_l` (`tau_dot`), `ḣ_l + (s_l d_l)˙` (`tau_dot_full`) or
//!   `s_l d_l/T_r` (`displacement`);
//! * decoder plasticity (Sec. 10.2): `Ω̇_l = η_Ω[−γ_Ω Ω_l + Σ_b (h_{l−1} − g_l(h_l)) n_lᵀ]`
//!   (`regular`), or, on the difference reconstruction loss with the trial's probe `σξ_{l−1}`,
//!   `ΔA_l = a_l(f_l(H_{l−1} + σΞ_{l−1})) − a_l(F_l)`, `τ_p q̇_l = −q_l + ‖Δa_l‖²` and
//!   `Ω̇_l = η_Ω[−γ_Ω Ω_l + Σ_b ((σξ_{l−1} − Ω_l Δa_l) Δa_lᵀ − r_Ω σ² Ω_l)/(ε + r_Ω σ² + q_l)]`.
//!
//! Every plastic matrix `M` (the `W_l` and `Ω_l`) therefore has a derivative of the form
//! `Ṁ = −(μ + κ) M + E Nᵀ` with `E`, `N` of `B` columns and a scalar `κ` that depends on the
//! state (the ridge decay; 0 but for difference reconstruction decoders with a ridge)
//! ([`PlasticFactors`]). The field returns the
//! factors and never writes `Ṁ` itself: the full-state path ([`Field::eval`]) forms it, the
//! low-rank Runge–Kutta path keeps it factored. Weights are read only through products
//! ([`StageWeights`]), so the low-rank path never forms its stage weights either.
//!
//! Products that share a matrix are batched into one matrix–matrix product: `W_l` multiplies
//! `[A_{l−1} | a_{l−1}(H_{l−1} + D_{l−1})]` (or the `decoder_input` twin, and with probes a
//! last block `a_{l−1}(H_{l−1} + σΞ_{l−1})`), `Ω_l` multiplies
//! `[A_l | a_l(H_l + D_l) | a_l(Z_l)]` (and `ΔA_l` on its own, once every `W_l` product is
//! done). Every `σ` is computed once per population per evaluation, and all buffers live in a
//! [`Workspace`] allocated once per run.

use super::config::{EngineConfig, Gate, PlasticityRule};
use super::layout::{Block, Layout, Population};
use crate::discrete::targets::Scheme;
use crate::linalg::{gemm, Op};
use crate::network::{Architecture, Loss};
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut, DVector};
use std::cell::{Cell, RefCell};
use std::time::Instant;

/// Piecewise-constant drive of one protocol segment ([`crate::continuous::Simulation::drive`]
/// builds it, probes included).
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    /// Input `x` per replica (`n_0 × B`).
    pub x: DMatrix<f64>,
    /// Teacher label `y` per replica (`n_L × B`).
    pub y: DMatrix<f64>,
    /// Teacher gate `m(t)` (0 or 1).
    pub teacher: f64,
    /// Whether forward plasticity is on (off during warm-up: `η = 0`).
    pub forward_plastic: bool,
    /// The probes `σξ_{l−1}` of the difference reconstruction decoders per replica
    /// (`n_{l−1} × B`, index `l − 2` for `l = 2..=L`), held through the trial; empty for the
    /// regular loss.
    pub probe: Vec<DMatrix<f64>>,
}

/// Where a non-finite derivative first appeared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// Time of the evaluation.
    pub time: f64,
    /// The population whose derivative was not finite.
    pub population: Population,
    /// Its layer.
    pub layer: usize,
}

/// Counters of vector-field work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FieldStats {
    /// Vector-field evaluations.
    pub evaluations: u64,
    /// Seconds spent in them.
    pub seconds: f64,
}

/// The plastic matrices, in a fixed order: `W_1..=W_L`, then `Ω_2..=Ω_L`.
pub fn plastic_matrices(layout: &Layout) -> Vec<(Population, usize, Block)> {
    let depth = layout.depth;
    let enc = (1..=depth).map(|l| (Population::W, l, layout.w(l)));
    let dec = (2..=depth).map(|l| (Population::Omega, l, layout.omega(l)));
    enc.chain(dec).collect()
}

/// Index of `W_l` among [`plastic_matrices`].
fn encoder_index(l: usize) -> usize {
    l - 1
}

/// Index of `Ω_l` among [`plastic_matrices`].
fn decoder_index(depth: usize, l: usize) -> usize {
    depth + l - 2
}

/// Products with the plastic matrices as they are at the point where the field is evaluated
/// (for a Runge–Kutta stage, the stage's weights).
pub trait StageWeights {
    /// `out ← M_m a` for plastic matrix `m` (index into [`plastic_matrices`]).
    fn product(&self, m: usize, a: &DMatrixView<f64>, out: &mut DMatrixViewMut<f64>);
}

/// Whether plastic matrix `m` has a factor `N` that is the same at every evaluation of a
/// segment (see [`PlasticFactors::shared`]): `W_1` without a trace delay, for up to a few
/// hundred replicas (`3B² ≤ 4 n_1 (n_0 + 1)`).
pub fn input_factor_shared(layout: &Layout, m: usize) -> bool {
    // the shared form keeps B × B products of the stimulus; past a few hundred replicas they
    // outgrow W_1 itself, and the stage terms are kept explicitly instead
    let (w, b) = (layout.w(1), layout.replicas);
    m == encoder_index(1) && layout.stages == 0 && 3 * b * b <= 4 * w.rows * w.cols
}

/// Where plastic matrix `m` (index into [`plastic_matrices`]) lives in the flat state.
pub fn plastic_block(layout: &Layout, m: usize) -> Block {
    if m < layout.depth {
        layout.w(m + 1)
    } else {
        layout.omega(m + 2 - layout.depth)
    }
}

/// Weights read from the flat state (the full-state path).
pub struct FlatWeights<'a> {
    layout: &'a Layout,
    y: &'a [f64],
}

impl<'a> FlatWeights<'a> {
    /// Views of the populations of the flat state `y`.
    pub fn new(layout: &'a Layout, y: &'a [f64]) -> Self {
        FlatWeights { layout, y }
    }
}

impl StageWeights for FlatWeights<'_> {
    fn product(&self, m: usize, a: &DMatrixView<f64>, out: &mut DMatrixViewMut<f64>) {
        let w = plastic_block(self.layout, m).view(self.y);
        gemm(1.0, &w, Op::N, a, Op::N, 0.0, out);
    }
}

/// The plastic part `E_m N_mᵀ` of every plastic matrix's derivative `Ṁ_m = −μ_m M_m + E_m N_mᵀ`.
/// `active[m]` is false when the term is zero (no learning rate, or the gate is closed).
#[derive(Debug, Clone, PartialEq)]
pub struct PlasticFactors {
    /// Left factors `E_m`, one per plastic matrix (rows of `M_m` × replicas; the scale
    /// `η/B` is folded in).
    pub e: Vec<DMatrix<f64>>,
    /// Right factors `N_m` (columns of `M_m` × replicas).
    pub n: Vec<DMatrix<f64>>,
    /// Whether each plastic matrix changes in this evaluation.
    pub active: Vec<bool>,
    /// Whether `N_m` is the same at every evaluation of a segment. It holds for `W_1` without
    /// a trace delay: its presynaptic rates `n_0 = a_0(x)/(ε + p_0)` are the clamped input's
    /// `a_0(x)` times a per-replica scalar, which is then moved into `E` (`E Nᵀ` unchanged).
    pub shared: Vec<bool>,
    /// The part `κ_m` of the decay rate that depends on the state at this evaluation, on top
    /// of the constant [`Field::decay`] (`Ṁ = −(μ_m + κ_m) M + E Nᵀ`): the ridge decay
    /// `η_Ω Σ_b r_Ω σ²/(ε + r_Ω σ² + q_{l,b})` of a difference reconstruction decoder, 0 for
    /// every other matrix.
    pub decay: Vec<f64>,
}

impl PlasticFactors {
    /// Zero factors shaped for `layout`.
    pub fn new(layout: &Layout) -> Self {
        let b = layout.replicas;
        let mats = plastic_matrices(layout);
        PlasticFactors {
            e: mats.iter().map(|p| DMatrix::zeros(p.2.rows, b)).collect(),
            n: mats.iter().map(|p| DMatrix::zeros(p.2.cols, b)).collect(),
            active: vec![false; mats.len()],
            shared: vec![false; mats.len()],
            decay: vec![0.0; mats.len()],
        }
    }
}

/// Buffers of one layer's batched products.
#[derive(Debug, Clone)]
struct Product {
    input: DMatrix<f64>,
    output: DMatrix<f64>,
}

impl Product {
    fn new(in_rows: usize, out_rows: usize, cols: usize) -> Self {
        Product {
            input: DMatrix::zeros(in_rows, cols),
            output: DMatrix::zeros(out_rows, cols),
        }
    }

    /// Column block `k` (of `b` columns) of the output.
    fn out(&self, k: usize, b: usize) -> DMatrixView<'_, f64> {
        self.output.columns(k * b, b)
    }
}

/// Work buffers of the vector field, allocated once per run (indexed by layer).
#[derive(Debug, Clone)]
pub struct Workspace {
    /// `A_l = a_l(H_l)`, `l = 0..=L`.
    a: Vec<DMatrix<f64>>,
    /// `W_l` times its batched inputs, `l = 1..=L`.
    enc: Vec<Product>,
    /// `Ω_l` times its batched inputs, `l = 2..=L`.
    dec: Vec<Product>,
    /// `Ω_l ΔA_l`, `l = 2..=L` (difference reconstruction decoders; empty otherwise).
    probe: Vec<Product>,
    /// `a_l(F_l)`, the base point of `ΔA_l`.
    probe_base: Vec<DMatrix<f64>>,
    /// `n_l = A_l/(ε + p_l)`, `l = 0..=L`.
    rate: Vec<DMatrix<f64>>,
    /// A population-sized scratch per layer (`H + D`, `Z`, `Δ`).
    scratch: Vec<DMatrix<f64>>,
    /// `∇ℓ` per replica.
    grad: DMatrix<f64>,
    /// Influence scales `s_l` per replica (1 when influence is off, and for `l = L`).
    scale: Vec<DVector<f64>>,
    /// Their rates `ṡ_l` per replica (0 when influence is off, and for `l = L`).
    scale_rate: Vec<DVector<f64>>,
    /// Factors of the full-state path (taken out while it evaluates).
    flat: Option<PlasticFactors>,
}

impl Workspace {
    /// Buffers for `arch` with the state `layout` and the relaxation `scheme`.
    pub fn new(arch: &Architecture, layout: &Layout, scheme: Scheme) -> Self {
        let depth = layout.depth;
        let b = layout.replicas;
        let len = |l: usize| arch.presyn_len(l);
        let n = |l: usize| arch.widths[l];
        let probes = layout.probes();
        let enc_cols = |l: usize| {
            let blocks =
                1 + usize::from(has_second_input(l, scheme)) + usize::from(probes && l >= 2);
            blocks * b
        };
        let probe_len = |l: usize| if probes && l >= 2 { len(l) } else { 0 };
        let dec_cols = if scheme == Scheme::DecoderOutput {
            3 * b
        } else {
            2 * b
        };
        Workspace {
            a: (0..=depth).map(|l| DMatrix::zeros(len(l), b)).collect(),
            enc: (0..=depth)
                .map(|l| match l {
                    0 => Product::new(0, 0, 0),
                    l => Product::new(len(l - 1), n(l), enc_cols(l)),
                })
                .collect(),
            dec: (0..=depth)
                .map(|l| match l {
                    0 | 1 => Product::new(0, 0, 0),
                    l => Product::new(len(l), n(l - 1), dec_cols),
                })
                .collect(),
            probe: (0..=depth)
                .map(|l| match l {
                    0 | 1 => Product::new(0, 0, 0),
                    l => Product::new(probe_len(l), n(l - 1) * usize::from(probes), b),
                })
                .collect(),
            probe_base: (0..=depth)
                .map(|l| DMatrix::zeros(probe_len(l), b))
                .collect(),
            rate: (0..=depth).map(|l| DMatrix::zeros(len(l), b)).collect(),
            scratch: (0..=depth).map(|l| DMatrix::zeros(n(l), b)).collect(),
            grad: DMatrix::zeros(n(depth), b),
            scale: vec![DVector::from_element(b, 1.0); depth + 1],
            scale_rate: vec![DVector::zeros(b); depth + 1],
            flat: Some(PlasticFactors::new(layout)),
        }
    }
}

/// The vector field for one segment.
pub struct Field<'a> {
    /// The network architecture.
    pub arch: &'a Architecture,
    /// Where each population sits in the state.
    pub layout: &'a Layout,
    /// The engine settings.
    pub cfg: &'a EngineConfig,
    /// The stimulus, label and gates of the segment.
    pub drive: &'a Drive,
    ws: RefCell<Workspace>,
    stats: Cell<FieldStats>,
    fault: Cell<Option<Fault>>,
}

/// Whether `W_l`'s product has the second block `a_{l−1}(H_{l−1} + V)` (the re-encoded target
/// of `decoder_output` and `decoder_input`; not for `l = 1`, whose input is clamped).
fn has_second_input(l: usize, scheme: Scheme) -> bool {
    l >= 2 && scheme != Scheme::Difference
}

/// `(ε + p)⁻¹`-style column scaling: multiplies column `j` of `m` by `s[j]`.
fn scale_columns(m: &mut DMatrixViewMut<f64>, s: impl Fn(usize) -> f64) {
    for j in 0..m.ncols() {
        m.column_mut(j).scale_mut(s(j));
    }
}

/// Turns `e = Ḋ` into the rate of the influence-scaled displacement, column by column:
/// `(s d)˙ = s ḋ + ṡ d` (docs/MODEL.md §6, forward plasticity with influence).
fn into_scaled_rate(
    e: &mut DMatrix<f64>,
    d: &DMatrixView<f64>,
    s: &DVector<f64>,
    sdot: &DVector<f64>,
) {
    for j in 0..e.ncols() {
        let mut col = e.column_mut(j);
        col.scale_mut(s[j]);
        col.axpy(sdot[j], &d.column(j), 1.0);
    }
}

impl<'a> Field<'a> {
    /// A field over a fresh workspace.
    pub fn new(
        arch: &'a Architecture,
        layout: &'a Layout,
        cfg: &'a EngineConfig,
        drive: &'a Drive,
    ) -> Self {
        let ws = Workspace::new(arch, layout, cfg.dynamics.scheme);
        Self::with_workspace(arch, layout, cfg, drive, ws)
    }

    /// A field over the run's workspace (take it back with [`Field::into_workspace`]).
    pub fn with_workspace(
        arch: &'a Architecture,
        layout: &'a Layout,
        cfg: &'a EngineConfig,
        drive: &'a Drive,
        ws: Workspace,
    ) -> Self {
        let probes = if layout.probes() { layout.depth - 1 } else { 0 };
        assert!(
            drive.probe.len() == probes
                && (2..=layout.depth)
                    .take(probes)
                    .all(|l| drive.probe[l - 2].shape() == (arch.widths[l - 1], layout.replicas)),
            "a drive from Simulation::drive: {probes} probe matrices of n_(l-1) × B for this layout"
        );
        Field {
            arch,
            layout,
            cfg,
            drive,
            ws: RefCell::new(ws),
            stats: Cell::new(FieldStats::default()),
            fault: Cell::new(None),
        }
    }

    /// Returns the workspace for the next segment.
    pub fn into_workspace(self) -> Workspace {
        self.ws.into_inner()
    }

    /// Work done so far.
    pub fn stats(&self) -> FieldStats {
        self.stats.get()
    }

    /// The first non-finite derivative seen, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.fault.get()
    }

    /// The decay rate `μ_m` of plastic matrix `m` on this segment: `η_l γ` for `W_l` (0 while
    /// forward plasticity is off), `η_Ω γ_Ω` for `Ω_l`.
    pub fn decay(&self, m: usize) -> f64 {
        let dynm = &self.cfg.dynamics;
        let depth = self.layout.depth;
        if m < depth {
            self.forward_eta(m + 1) * dynm.plasticity.gamma
        } else {
            dynm.decoder.eta * dynm.decoder.gamma
        }
    }

    /// `η_l` on this segment (0 during warm-up).
    fn forward_eta(&self, l: usize) -> f64 {
        if self.drive.forward_plastic {
            self.cfg.dynamics.plasticity.eta.get(l)
        } else {
            0.0
        }
    }

    /// Evaluates `dy = F(t, y)` on the flat state (neurons and weights), forming
    /// `Ṁ = −μ M + E Nᵀ` for every plastic matrix: the full-state path.
    pub fn eval(&self, t: f64, y: &[f64], dy: &mut [f64]) {
        let neurons = self.layout.neurons();
        let weights = FlatWeights::new(self.layout, y);
        let mut factors = self
            .ws
            .borrow_mut()
            .flat
            .take()
            .expect("one evaluation at a time");
        let ok = self.eval_parts(
            t,
            &y[neurons.clone()],
            &weights,
            &mut dy[neurons.clone()],
            &mut factors,
        );
        if !ok {
            dy.iter_mut().for_each(|v| *v = 0.0);
            self.ws.borrow_mut().flat = Some(factors);
            return;
        }
        let start = Instant::now();
        for m in 0..factors.active.len() {
            let (block, mu) = (
                plastic_block(self.layout, m),
                self.decay(m) + factors.decay[m],
            );
            let (w, dw) = (block.view(y), &mut block.view_mut(dy));
            dw.copy_from(&w);
            dw.scale_mut(-mu);
            if factors.active[m] {
                let (e, n) = (factors.e[m].as_view(), factors.n[m].as_view());
                gemm(1.0, &e, Op::N, &n, Op::T, 1.0, dw);
            }
        }
        self.add_seconds(start.elapsed().as_secs_f64());
        self.ws.borrow_mut().flat = Some(factors);
    }

    /// Evaluates the neuron derivatives `dx` and the plastic factors at time `t` from the
    /// neuron state `x` (the first [`Layout::neurons`] entries of the flat state) and the
    /// weights as `weights` presents them. Returns false, and records the [`Fault`], if a
    /// neuron derivative is not finite; after a fault every call returns false at once with
    /// zero derivatives, so that a solver ends the segment quickly.
    pub fn eval_parts(
        &self,
        t: f64,
        x: &[f64],
        weights: &dyn StageWeights,
        dx: &mut [f64],
        plastic: &mut PlasticFactors,
    ) -> bool {
        if self.fault.get().is_some() {
            dx.iter_mut().for_each(|v| *v = 0.0);
            plastic.active.iter_mut().for_each(|a| *a = false);
            return false;
        }
        let start = Instant::now();
        let mut guard = self.ws.borrow_mut();
        let ws = &mut *guard;
        self.presynaptic(x, ws);
        self.products(x, weights, ws);
        self.probe_products(weights, ws);
        self.targets(x, dx, ws);
        self.pools_and_traces(x, dx, ws);
        self.influence(x, dx, ws);
        let ok = match self.scan_neurons(t, dx) {
            Some(fault) => {
                self.fault.set(Some(fault));
                dx.iter_mut().for_each(|v| *v = 0.0);
                plastic.active.iter_mut().for_each(|a| *a = false);
                false
            }
            None => {
                self.plasticity(x, dx, ws, plastic);
                true
            }
        };
        let mut st = self.stats.get();
        st.evaluations += 1;
        st.seconds += start.elapsed().as_secs_f64();
        self.stats.set(st);
        ok
    }

    /// `A_l = a_l(H_l)` for `l = 0..=L` (`H_0 = X`).
    fn presynaptic(&self, x: &[f64], ws: &mut Workspace) {
        for l in 0..=self.layout.depth {
            let a = &mut ws.a[l].as_view_mut();
            if l == 0 {
                self.arch.presyn_into(0, &self.drive.x.as_view(), a);
            } else {
                self.arch.presyn_into(l, &self.layout.h(l).view(x), a);
            }
        }
    }

    /// The batched products with `W_l` and `Ω_l`, in the order the scheme needs them.
    fn products(&self, x: &[f64], weights: &dyn StageWeights, ws: &mut Workspace) {
        let depth = self.layout.depth;
        match self.cfg.dynamics.scheme {
            Scheme::DecoderOutput | Scheme::Difference => {
                for l in 1..=depth {
                    self.encode(l, x, weights, ws);
                }
                for l in 2..=depth {
                    self.decode(l, x, weights, ws);
                }
            }
            Scheme::DecoderInput => {
                self.encode(1, x, weights, ws);
                for l in 2..=depth {
                    self.decode(l, x, weights, ws);
                    self.encode(l, x, weights, ws);
                }
            }
        }
    }

    /// `W_l [A_{l−1} | a_{l−1}(H_{l−1} + V)]` with `V = D_{l−1}` (`decoder_output`) or
    /// `V = Δ_l = g_l(H_l + U_l) − g_l(H_l)` (`decoder_input`); `W_l A_{l−1}` alone for `l = 1`
    /// and `difference`.
    fn encode(&self, l: usize, x: &[f64], weights: &dyn StageWeights, ws: &mut Workspace) {
        let b = self.layout.replicas;
        let Workspace {
            a,
            enc,
            dec,
            scratch,
            ..
        } = ws;
        let prod = &mut enc[l];
        prod.input.columns_mut(0, b).copy_from(&a[l - 1]);
        if has_second_input(l, self.cfg.dynamics.scheme) {
            let h = self.layout.h(l - 1).view(x);
            let v = &mut scratch[l - 1];
            match self.cfg.dynamics.scheme {
                Scheme::DecoderInput => {
                    let (g_h, g_hu) = (dec[l].out(0, b), dec[l].out(1, b));
                    v.zip_zip_apply(&g_hu, &g_h, |v, gu, g| *v = gu - g);
                    *v += h;
                }
                _ => v.zip_zip_apply(&h, &self.layout.d(l - 1).view(x), |v, h, d| *v = h + d),
            }
            let (v, mut second) = (&scratch[l - 1], prod.input.columns_mut(b, b));
            self.arch.presyn_into(l - 1, &v.as_view(), &mut second);
        }
        if let Some(probe) = (l >= 2).then(|| self.drive.probe.get(l - 2)).flatten() {
            // the last block: a_{l−1}(H_{l−1} + σΞ_{l−1})
            let v = &mut scratch[l - 1];
            v.zip_zip_apply(&self.layout.h(l - 1).view(x), probe, |v, h, p| *v = h + p);
            let last = prod.input.ncols() - b;
            let mut block = prod.input.columns_mut(last, b);
            self.arch
                .presyn_into(l - 1, &scratch[l - 1].as_view(), &mut block);
        }
        weights.product(
            encoder_index(l),
            &prod.input.as_view(),
            &mut prod.output.as_view_mut(),
        );
    }

    /// `Ω_l [A_l | a_l(H_l + D_l) | a_l(Z_l)]` with `Z_l = H_l + f_l(H_{l−1} + D_{l−1}) − F_l`
    /// (`decoder_output`), `Ω_l [A_l | a_l(H_l + D_l)]` (`difference`) or
    /// `Ω_l [A_l | a_l(H_l + U_l)]` (`decoder_input`).
    fn decode(&self, l: usize, x: &[f64], weights: &dyn StageWeights, ws: &mut Workspace) {
        let b = self.layout.replicas;
        let lay = self.layout;
        let Workspace {
            a,
            enc,
            dec,
            scratch,
            ..
        } = ws;
        let prod = &mut dec[l];
        prod.input.columns_mut(0, b).copy_from(&a[l]);
        let h = lay.h(l).view(x);
        let v = &mut scratch[l];
        let scheme = self.cfg.dynamics.scheme;
        if scheme == Scheme::DecoderOutput && l < lay.depth {
            // a_l(H_l + D_l) is also W_{l+1}'s second input: computed once, in `encode`
            prod.input
                .columns_mut(b, b)
                .copy_from(&enc[l + 1].input.columns(b, b));
        } else {
            let second = match scheme {
                Scheme::DecoderInput => lay.u(l).expect("u_l exists for decoder_input").view(x),
                _ => lay.d(l).view(x),
            };
            v.zip_zip_apply(&h, &second, |v, h, s| *v = h + s);
            self.arch
                .presyn_into(l, &v.as_view(), &mut prod.input.columns_mut(b, b));
        }
        if self.cfg.dynamics.scheme == Scheme::DecoderOutput {
            let (f, f_shift) = (enc[l].out(0, b), enc[l].out(1, b));
            v.zip_zip_apply(&f_shift, &f, |v, fs, f| *v = fs - f);
            *v += h;
            self.arch
                .presyn_into(l, &v.as_view(), &mut prod.input.columns_mut(2 * b, b));
        }
        weights.product(
            decoder_index(lay.depth, l),
            &prod.input.as_view(),
            &mut prod.output.as_view_mut(),
        );
    }

    /// The probe differences of the difference reconstruction decoders and their products,
    /// `l = 2..=L`: `ΔA_l = a_l(F^ξ_l) − a_l(F_l)` with `F^ξ_l = W_l a_{l−1}(H_{l−1} + σΞ_{l−1})`
    /// (the last block of `W_l`'s product) and `F_l = W_l A_{l−1}` (its first), then
    /// `Ω_l ΔA_l`. Its bias row is 0, and it is 0 without a probe, whatever the lag of `H_l`.
    fn probe_products(&self, weights: &dyn StageWeights, ws: &mut Workspace) {
        if self.drive.probe.is_empty() {
            return;
        }
        let b = self.layout.replicas;
        let Workspace {
            enc,
            probe,
            probe_base,
            ..
        } = ws;
        for l in 2..=self.layout.depth {
            let (prod, base) = (&mut probe[l], &mut probe_base[l]);
            let last = enc[l].output.ncols() - b;
            let (f, f_probe) = (enc[l].out(0, b), enc[l].output.columns(last, b));
            self.arch
                .presyn_into(l, &f_probe, &mut prod.input.as_view_mut());
            self.arch.presyn_into(l, &f, &mut base.as_view_mut());
            prod.input -= &*base;
            weights.product(
                decoder_index(self.layout.depth, l),
                &prod.input.as_view(),
                &mut prod.output.as_view_mut(),
            );
        }
    }

    /// `Ḣ_l`, `Ḋ_l` and (`decoder_input`) `U̇_l` from the products.
    fn targets(&self, x: &[f64], dx: &mut [f64], ws: &mut Workspace) {
        let lay = self.layout;
        let dynm = &self.cfg.dynamics;
        let depth = lay.depth;
        let b = lay.replicas;
        for l in 1..=depth {
            let f = ws.enc[l].out(0, b);
            let mut hdot = lay.h(l).view_mut(dx);
            hdot.zip_zip_apply(&f, &lay.h(l).view(x), |dh, f, h| *dh = (f - h) / dynm.tau_h);
        }
        self.loss_gradient(x, &mut ws.grad);
        let nudge = dynm.beta * self.drive.teacher;
        lay.d(depth)
            .view_mut(dx)
            .zip_zip_apply(&lay.d(depth).view(x), &ws.grad, |dd, d, g| {
                *dd = (-d - g * nudge) / dynm.tau_d
            });
        for l in 2..=depth {
            let dec = &ws.dec[l];
            let d_prev = lay.d(l - 1).view(x);
            let mut ddot = lay.d(l - 1).view_mut(dx);
            match dynm.scheme {
                Scheme::DecoderOutput => {
                    ddot.zip_zip_apply(&dec.out(1, b), &dec.out(2, b), |dd, above, re| {
                        *dd = above - re
                    });
                    ddot.zip_apply(&d_prev, |dd, d| *dd = (*dd - d * dynm.leak) / dynm.tau_d);
                }
                Scheme::Difference => {
                    ddot.zip_zip_apply(&dec.out(1, b), &dec.out(0, b), |dd, above, g| {
                        *dd = above - g
                    });
                    ddot.zip_apply(&d_prev, |dd, d| *dd = (*dd - d) / dynm.tau_d);
                }
                Scheme::DecoderInput => {
                    let ub = lay.u(l).expect("u_l exists for decoder_input");
                    let enc = &ws.enc[l];
                    let mut udot = ub.view_mut(dx);
                    udot.zip_zip_apply(&enc.out(1, b), &enc.out(0, b), |du, fs, f| *du = fs - f);
                    udot.zip_zip_apply(&lay.d(l).view(x), &ub.view(x), |du, d, u| {
                        *du = (d - *du - u * dynm.leak) / dynm.tau_d
                    });
                    let mut ddot = lay.d(l - 1).view_mut(dx);
                    ddot.zip_zip_apply(&dec.out(1, b), &dec.out(0, b), |dd, gu, g| *dd = gu - g);
                    ddot.zip_apply(&d_prev, |dd, d| *dd = (*dd - d) / dynm.tau_d);
                }
            }
        }
    }

    /// `∇ℓ(H_L, Y)` per replica: `H_L − Y` (`mse`), `softmax(H_L) − Y` (`softmax_ce`).
    fn loss_gradient(&self, x: &[f64], grad: &mut DMatrix<f64>) {
        let out = self.layout.h(self.layout.depth).view(x);
        grad.copy_from(&out);
        if self.arch.loss == Loss::SoftmaxCe {
            for mut col in grad.column_iter_mut() {
                let max = col.max();
                col.apply(|v| *v = (*v - max).exp());
                let sum = col.sum();
                col.apply(|v| *v /= sum);
            }
        }
        *grad -= &self.drive.y;
    }

    /// Pools `ṗ_l`, rates `n_l = A_l/(ε + p_l)` and the trace stages `ċ_{l,k}`.
    fn pools_and_traces(&self, x: &[f64], dx: &mut [f64], ws: &mut Workspace) {
        let lay = self.layout;
        let dynm = &self.cfg.dynamics;
        for l in 0..=lay.depth {
            let p = lay.p(l).view(x);
            let mut pdot = lay.p(l).view_mut(dx);
            let a = &ws.a[l];
            for j in 0..lay.replicas {
                pdot[j] = (a.column(j).norm_squared() - p[j]) / dynm.tau_p;
            }
            let rate = &mut ws.rate[l];
            rate.copy_from(a);
            scale_columns(&mut rate.as_view_mut(), |j| 1.0 / (dynm.pool_eps + p[j]));
            if let Some(block) = lay.probe_pool(l) {
                let (q, mut qdot) = (block.view(x), block.view_mut(dx));
                let diff = &ws.probe[l].input;
                for j in 0..lay.replicas {
                    qdot[j] = (diff.column(j).norm_squared() - q[j]) / dynm.tau_p;
                }
            }
        }
        let k = lay.stages;
        if k == 0 {
            return;
        }
        let speed = k as f64 / dynm.trace.delay;
        for l in 0..lay.depth {
            for s in 1..=k {
                let c = lay.stage(l, s).view(x);
                let mut cdot = lay.stage(l, s).view_mut(dx);
                let drive = if s == 1 {
                    ws.rate[l].as_view()
                } else {
                    lay.stage(l, s - 1).view(x)
                };
                cdot.zip_zip_apply(&drive, &c, |dc, prev, c| *dc = (prev - c) * speed);
            }
        }
    }

    /// The influence scale neurons of the hidden layers (docs/MODEL.md §6, Sec. 8):
    ///
    /// `τ_q ṡ_l = s_l (‖d_L‖² − s_l‖d_l‖²) / (ε_q + ‖d_L‖² + s_l‖d_l‖²)`,
    ///
    /// whose fixed point is the discrete `s_l = ‖d_L‖²/‖d_l‖²` and whose log-rate is bounded,
    /// `|d ln s_l/dt| < 1/τ_q`. Keeps `s_l` and `ṡ_l` in the workspace for the plasticity
    /// (all `s = 1`, `ṡ = 0` when influence is off).
    fn influence(&self, x: &[f64], dx: &mut [f64], ws: &mut Workspace) {
        let lay = self.layout;
        let dynm = &self.cfg.dynamics;
        if !dynm.influence.enabled {
            return;
        }
        let (tau_q, eps_q) = (dynm.influence.tau, dynm.influence.eps);
        let d_top = lay.d(lay.depth).view(x);
        for l in 1..lay.depth {
            let block = lay.scale(l).expect("influence scale neurons");
            let (s, d) = (block.view(x), lay.d(l).view(x));
            let mut sdot = block.view_mut(dx);
            for j in 0..lay.replicas {
                let (top, own) = (d_top.column(j).norm_squared(), d.column(j).norm_squared());
                let s_j = s[j];
                let rate = s_j * (top - s_j * own) / (tau_q * (eps_q + top + s_j * own));
                sdot[j] = rate;
                ws.scale[l][j] = s_j;
                ws.scale_rate[l][j] = rate;
            }
        }
    }

    /// The factors `E`, `N` of every plastic matrix (see [`PlasticFactors`]).
    fn plasticity(&self, x: &[f64], dx: &[f64], ws: &Workspace, plastic: &mut PlasticFactors) {
        let lay = self.layout;
        let dynm = &self.cfg.dynamics;
        let depth = lay.depth;
        let gate = match dynm.plasticity.gate {
            Gate::Teacher => self.drive.teacher,
            Gate::Always => 1.0,
        };
        for l in 1..=depth {
            let m = encoder_index(l);
            let eta = self.forward_eta(l);
            plastic.active[m] = eta != 0.0 && gate != 0.0;
            if !plastic.active[m] {
                continue;
            }
            let e = &mut plastic.e[m];
            let (d, ddot) = (lay.d(l).view(x), lay.d(l).view(dx));
            // the influence-scaled displacement s_l d_l and its rate (s_l d_l)˙ = s_l ḋ_l + ṡ_l d_l
            // (s = 1, ṡ = 0 without influence and for the output layer)
            let (s, sdot) = (&ws.scale[l], &ws.scale_rate[l]);
            let scaled = dynm.influence.enabled && l < depth;
            match dynm.plasticity.rule {
                PlasticityRule::TauDot | PlasticityRule::TauDotFull => {
                    e.copy_from(&ddot);
                    if scaled {
                        into_scaled_rate(e, &d, s, sdot);
                    }
                    if dynm.plasticity.rule == PlasticityRule::TauDotFull {
                        *e += lay.h(l).view(dx);
                    }
                }
                PlasticityRule::Displacement => {
                    e.copy_from(&d);
                    let t_r = self.cfg.relaxation_time();
                    scale_columns(&mut e.as_view_mut(), |j| {
                        if scaled {
                            s[j] / t_r
                        } else {
                            1.0 / t_r
                        }
                    });
                }
            }
            // n_0 = a_0(x) diag(1/(ε + p_0)): the diagonal moves into E (see `shared`)
            plastic.shared[m] = input_factor_shared(lay, m);
            let p0 = lay.p(0).view(x);
            let pool = |j: usize| {
                if plastic.shared[m] {
                    1.0 / (dynm.pool_eps + p0[j])
                } else {
                    1.0
                }
            };
            scale_columns(&mut plastic.e[m].as_view_mut(), |j| eta * gate * pool(j));
            if plastic.shared[m] {
                plastic.n[m].copy_from(&ws.a[0]);
            } else if lay.stages > 0 {
                plastic.n[m].copy_from(&lay.stage(l - 1, lay.stages).view(x));
            } else {
                plastic.n[m].copy_from(&ws.rate[l - 1]);
            }
        }
        let eta = dynm.decoder.eta;
        for l in 2..=depth {
            let m = decoder_index(depth, l);
            plastic.active[m] = eta != 0.0;
            plastic.decay[m] = 0.0;
            if eta == 0.0 {
                continue;
            }
            let e = &mut plastic.e[m];
            match lay.probe_pool(l) {
                None => {
                    e.copy_from(&lay.h(l - 1).view(x));
                    *e -= ws.dec[l].out(0, lay.replicas);
                    *e *= eta;
                    plastic.n[m].copy_from(&ws.rate[l]);
                }
                Some(pool) => {
                    // [(σξ − Ω ΔA) ΔAᵀ − r σ² Ω]/(ε + r σ² + q): the normalised difference
                    // reconstruction step with its ridge decay, as the discrete step of §4
                    let dec = &dynm.decoder;
                    e.copy_from(&self.drive.probe[l - 2]);
                    *e -= &ws.probe[l].output;
                    *e *= eta;
                    let ridge = dec.ridge * dec.noise * dec.noise;
                    let floor = dynm.pool_eps + ridge;
                    let q = pool.view(x);
                    if ridge > 0.0 {
                        plastic.decay[m] =
                            eta * ridge * q.iter().map(|qj| 1.0 / (floor + qj)).sum::<f64>();
                    }
                    plastic.n[m].copy_from(&ws.probe[l].input);
                    scale_columns(&mut plastic.n[m].as_view_mut(), |j| 1.0 / (floor + q[j]));
                }
            }
        }
    }

    /// First non-finite neuron derivative, located by population and layer.
    fn scan_neurons(&self, t: f64, dx: &[f64]) -> Option<Fault> {
        dx.iter().position(|v| !v.is_finite()).map(|i| {
            let (population, layer) = self.layout.locate(i);
            Fault {
                time: t,
                population,
                layer,
            }
        })
    }

    /// Floating-point operations of the batched products of one evaluation (`2mnk` each),
    /// plus, with `outer`, the products `E Nᵀ` that form `Ṁ` on the full-state path.
    pub fn flops_per_eval(&self, outer: bool) -> f64 {
        let ws = self.ws.borrow();
        let depth = self.layout.depth;
        let prod =
            |p: &Product| 2.0 * (p.output.nrows() * p.input.nrows() * p.input.ncols()) as f64;
        let mut flops: f64 = (1..=depth).map(|l| prod(&ws.enc[l])).sum::<f64>()
            + (2..=depth)
                .map(|l| prod(&ws.dec[l]) + prod(&ws.probe[l]))
                .sum::<f64>();
        if outer {
            let b = self.layout.replicas as f64;
            for (m, (_, _, block)) in plastic_matrices(self.layout).into_iter().enumerate() {
                let active = if m < depth {
                    self.forward_eta(m + 1) != 0.0
                } else {
                    self.cfg.dynamics.decoder.eta != 0.0
                };
                if active {
                    flops += 2.0 * (block.rows * block.cols) as f64 * b;
                }
            }
        }
        flops
    }

    fn add_seconds(&self, s: f64) {
        let mut st = self.stats.get();
        st.seconds += s;
        self.stats.set(st);
    }
}
