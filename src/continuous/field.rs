//! The vector field of the continuous-time model (DESIGN §2; seed paper Sec. 5, 6.2, 7.1, 8,
//! 10.2): one evaluation computes the time derivative of every population of every replica and
//! of the shared weights, with matrix–matrix products over the `B` replica columns.
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
//! * influence (Sec. 8): `τ_p q̇_l = −q_l + ‖d_l‖²`, `s_l = q_L/(ε_q + q_l)`, `s_L = 1`;
//! * forward plasticity (Sec. 7.1): `Ẇ_l = η_l[−γ W_l + (1/B) Σ_b s_{l,b} m_p e_{l,b} n̄_{l−1,b}ᵀ]`
//!   with `e = ḋ_l` (`tau_dot`), `ḣ_l + ḋ_l` (`tau_dot_full`) or `d_l/T_r` (`displacement`);
//! * decoder plasticity (Sec. 10.2): `Ω̇_l = η_Ω[−γ_Ω Ω_l + (1/B) Σ_b (h_{l−1} − g_l(h_l)) n_lᵀ]`.

use super::config::{EngineConfig, Gate, PlasticityRule};
use super::layout::{Layout, Population};
use crate::discrete::targets::Scheme;
use crate::network::{Architecture, Loss};
use nalgebra::{DMatrix, DMatrixView, RowDVector};
use std::cell::Cell;
use std::time::Instant;

/// Piecewise-constant drive of one protocol segment.
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
}

/// Where a non-finite derivative first appeared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub time: f64,
    pub population: Population,
    pub layer: usize,
}

/// Counters of vector-field work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FieldStats {
    pub evaluations: u64,
    pub seconds: f64,
}

/// The vector field for one segment.
pub struct Field<'a> {
    pub arch: &'a Architecture,
    pub layout: &'a Layout,
    pub cfg: &'a EngineConfig,
    pub drive: &'a Drive,
    stats: Cell<FieldStats>,
    fault: Cell<Option<Fault>>,
}

/// A `1 × B` block as a row vector.
fn row(block: super::layout::Block, y: &[f64]) -> RowDVector<f64> {
    RowDVector::from_row_slice(&y[block.range()])
}

/// Squared norm of every column.
fn column_norms_sq(m: &DMatrix<f64>) -> RowDVector<f64> {
    RowDVector::from_fn(m.ncols(), |_, j| m.column(j).norm_squared())
}

/// Multiplies column `j` of `m` by `s[j]`.
fn scale_columns(m: &mut DMatrix<f64>, s: &RowDVector<f64>) {
    for j in 0..m.ncols() {
        m.column_mut(j).scale_mut(s[j]);
    }
}

impl<'a> Field<'a> {
    pub fn new(
        arch: &'a Architecture,
        layout: &'a Layout,
        cfg: &'a EngineConfig,
        drive: &'a Drive,
    ) -> Self {
        Field {
            arch,
            layout,
            cfg,
            drive,
            stats: Cell::new(FieldStats::default()),
            fault: Cell::new(None),
        }
    }

    /// Work done so far.
    pub fn stats(&self) -> FieldStats {
        self.stats.get()
    }

    /// The first non-finite derivative seen, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.fault.get()
    }

    /// `f_l(V) = W_l a_{l−1}(V)`.
    fn encode(&self, w: &DMatrixView<f64>, l: usize, v: &DMatrix<f64>) -> DMatrix<f64> {
        w * self.arch.presyn_batch(l - 1, v)
    }

    /// `g_l(V) = Ω_l a_l(V)`.
    fn decode(&self, om: &DMatrixView<f64>, l: usize, v: &DMatrix<f64>) -> DMatrix<f64> {
        om * self.arch.presyn_batch(l, v)
    }

    /// Evaluates `dy = F(t, y)`.
    pub fn eval(&self, t: f64, y: &[f64], dy: &mut [f64]) {
        let start = Instant::now();
        if self.fault.get().is_some() {
            // a fault was recorded: freeze the state so the solver ends the segment quickly
            dy.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let lay = self.layout;
        let dynm = &self.cfg.dynamics;
        let depth = lay.depth;
        let b = lay.replicas;
        let inv_b = 1.0 / b as f64;
        // indexed by layer l = 1..=L; entry 0 only pads the index (there is no W_0)
        let w: Vec<DMatrixView<f64>> = (0..=depth).map(|l| lay.w(l.max(1)).view(y)).collect();
        let om: Vec<Option<DMatrixView<f64>>> = (0..=depth)
            .map(|l| (l >= 2).then(|| lay.omega(l).view(y)))
            .collect();
        let h: Vec<DMatrix<f64>> = (0..=depth)
            .map(|l| {
                if l == 0 {
                    self.drive.x.clone()
                } else {
                    lay.h(l).view(y).into_owned()
                }
            })
            .collect();
        let d: Vec<DMatrix<f64>> = (0..=depth)
            .map(|l| {
                if l == 0 {
                    DMatrix::zeros(0, b)
                } else {
                    lay.d(l).view(y).into_owned()
                }
            })
            .collect();
        let a: Vec<DMatrix<f64>> = (0..=depth)
            .map(|l| self.arch.presyn_batch(l, &h[l]))
            .collect();
        let f: Vec<DMatrix<f64>> = (0..=depth)
            .map(|l| {
                if l == 0 {
                    DMatrix::zeros(0, b)
                } else {
                    w[l] * &a[l - 1]
                }
            })
            .collect();

        // feedforward
        let mut hdot: Vec<DMatrix<f64>> = vec![DMatrix::zeros(0, b)];
        for l in 1..=depth {
            let v = (&f[l] - &h[l]) / dynm.tau_h;
            lay.h(l).view_mut(dy).copy_from(&v);
            hdot.push(v);
        }

        // output target
        let mut ddot: Vec<DMatrix<f64>> = vec![DMatrix::zeros(0, b); depth + 1];
        let grad = match self.arch.loss {
            Loss::Mse => &h[depth] - &self.drive.y,
            Loss::SoftmaxCe => {
                let mut g = h[depth].clone();
                for j in 0..b {
                    let sm = crate::network::softmax(&h[depth].column(j).into_owned());
                    g.column_mut(j).copy_from(&(sm - self.drive.y.column(j)));
                }
                g
            }
        };
        ddot[depth] = (-&d[depth] - grad * (dynm.beta * self.drive.teacher)) / dynm.tau_d;

        // hidden targets; g_l(H_l) is shared with decoder plasticity
        let mut g_h: Vec<Option<DMatrix<f64>>> = vec![None; depth + 1];
        for l in 2..=depth {
            let omega = om[l].as_ref().expect("Ω_l exists for l ≥ 2");
            let gh = self.decode(omega, l, &h[l]);
            let dprev = &d[l - 1];
            let rhs = match dynm.scheme {
                Scheme::DecoderOutput => {
                    let above = self.decode(omega, l, &(&h[l] + &d[l]));
                    let z = &h[l] + self.encode(&w[l], l, &(&h[l - 1] + dprev)) - &f[l];
                    above - self.decode(omega, l, &z) - dprev * dynm.leak
                }
                Scheme::Difference => self.decode(omega, l, &(&h[l] + &d[l])) - &gh - dprev,
                Scheme::DecoderInput => {
                    let ub = lay.u(l).expect("u_l exists for decoder_input");
                    let u = ub.view(y).into_owned();
                    let delta = self.decode(omega, l, &(&h[l] + &u)) - &gh;
                    let re = self.encode(&w[l], l, &(&h[l - 1] + &delta)) - &f[l];
                    let udot = (&d[l] - re - &u * dynm.leak) / dynm.tau_d;
                    ub.view_mut(dy).copy_from(&udot);
                    delta - dprev
                }
            };
            ddot[l - 1] = rhs / dynm.tau_d;
            g_h[l] = Some(gh);
        }
        for l in 1..=depth {
            lay.d(l).view_mut(dy).copy_from(&ddot[l]);
        }

        // pools and normalised rates
        let mut n: Vec<DMatrix<f64>> = Vec::with_capacity(depth + 1);
        for l in 0..=depth {
            let p = row(lay.p(l), y);
            let norms = column_norms_sq(&a[l]);
            lay.p(l)
                .view_mut(dy)
                .copy_from(&((norms - &p) / dynm.tau_p));
            let mut nl = a[l].clone();
            scale_columns(&mut nl, &p.map(|v| 1.0 / (dynm.pool_eps + v)));
            n.push(nl);
        }

        // delayed presynaptic traces
        let k = lay.stages;
        let mut nbar: Vec<DMatrix<f64>> = Vec::with_capacity(depth);
        for l in 0..depth {
            if k == 0 {
                nbar.push(n[l].clone());
                continue;
            }
            let rate = k as f64 / dynm.trace.delay;
            let mut prev = n[l].clone();
            for s in 1..=k {
                let c = lay.stage(l, s).view(y).into_owned();
                lay.stage(l, s)
                    .view_mut(dy)
                    .copy_from(&((&prev - &c) * rate));
                prev = c;
            }
            nbar.push(prev);
        }

        // influence pools and scales
        let mut scale: Vec<RowDVector<f64>> = vec![RowDVector::from_element(b, 1.0); depth + 1];
        if dynm.influence.enabled {
            let q: Vec<RowDVector<f64>> = (0..=depth)
                .map(|l| {
                    if l == 0 {
                        RowDVector::zeros(b)
                    } else {
                        row(lay.q(l).expect("influence pools"), y)
                    }
                })
                .collect();
            for l in 1..=depth {
                let qb = lay.q(l).expect("influence pools");
                qb.view_mut(dy)
                    .copy_from(&((column_norms_sq(&d[l]) - &q[l]) / dynm.tau_p));
                if l < depth {
                    scale[l] =
                        RowDVector::from_fn(b, |_, j| q[depth][j] / (dynm.influence.eps + q[l][j]));
                }
            }
        }

        if let Some(fault) = self.scan_neurons(t, dy) {
            self.fault.set(Some(fault));
            dy.iter_mut().for_each(|v| *v = 0.0);
            return;
        }

        // forward plasticity
        let plast = &dynm.plasticity;
        let gate = match plast.gate {
            Gate::Teacher => self.drive.teacher,
            Gate::Always => 1.0,
        };
        for l in 1..=depth {
            let eta = if self.drive.forward_plastic {
                plast.eta.get(l)
            } else {
                0.0
            };
            let mut wdot = lay.w(l).view_mut(dy);
            if eta == 0.0 {
                wdot.fill(0.0);
                continue;
            }
            wdot.copy_from(&w[l]);
            wdot.scale_mut(-eta * plast.gamma);
            if gate == 0.0 {
                continue;
            }
            let mut e = match plast.rule {
                PlasticityRule::TauDot => ddot[l].clone(),
                PlasticityRule::TauDotFull => &ddot[l] + &hdot[l],
                PlasticityRule::Displacement => &d[l] / self.cfg.relaxation_time(),
            };
            if dynm.influence.enabled && l < depth {
                scale_columns(&mut e, &scale[l]);
            }
            wdot.gemm(eta * gate * inv_b, &e, &nbar[l - 1].transpose(), 1.0);
        }

        // decoder plasticity
        let dec = &dynm.decoder;
        for l in 2..=depth {
            let mut odot = lay.omega(l).view_mut(dy);
            if dec.eta == 0.0 {
                odot.fill(0.0);
                continue;
            }
            odot.copy_from(om[l].as_ref().expect("Ω_l exists"));
            odot.scale_mut(-dec.eta * dec.gamma);
            let err = &h[l - 1] - g_h[l].as_ref().expect("computed above");
            odot.gemm(dec.eta * inv_b, &err, &n[l].transpose(), 1.0);
        }
        let mut st = self.stats.get();
        st.evaluations += 1;
        st.seconds += start.elapsed().as_secs_f64();
        self.stats.set(st);
    }

    /// First non-finite neuron derivative, located by population and layer.
    fn scan_neurons(&self, t: f64, dy: &[f64]) -> Option<Fault> {
        let range = self.layout.neurons();
        dy[range.clone()]
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| {
                let (population, layer) = self.layout.locate(range.start + i);
                Fault {
                    time: t,
                    population,
                    layer,
                }
            })
    }

    /// Floating-point operations of one evaluation (matrix products only, `2mnk` each).
    pub fn flops_per_eval(&self) -> f64 {
        let depth = self.layout.depth;
        let b = self.layout.replicas as f64;
        let wn = |l: usize| (self.arch.widths[l] * self.arch.presyn_len(l - 1)) as f64;
        let on = |l: usize| (self.arch.widths[l - 1] * self.arch.presyn_len(l)) as f64;
        let mut flops = 0.0;
        for l in 1..=depth {
            flops += 2.0 * wn(l) * b; // F_l
            if self.drive.forward_plastic {
                flops += 2.0 * wn(l) * b; // Ẇ_l outer products
            }
        }
        for l in 2..=depth {
            flops += 2.0 * on(l) * b; // g_l(H_l)
            flops += 2.0 * on(l) * b; // Ω̇_l outer products
            flops += match self.cfg.dynamics.scheme {
                Scheme::DecoderOutput => 2.0 * (2.0 * on(l) + wn(l)) * b,
                Scheme::Difference => 2.0 * on(l) * b,
                Scheme::DecoderInput => 2.0 * (on(l) + wn(l)) * b,
            };
        }
        flops
    }
}
