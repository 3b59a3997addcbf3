//! Layout of the flat ODE state (docs/MODEL.md §6): for `B` replicas with shared weights, every
//! population is a column-major block `rows × B`, followed by the weights `W_l` and `Ω_l`.
//!
//! | block | rows × cols | present |
//! |---|---|---|
//! | `h_l`, `l = 1..=L` (feedforward) | `n_l × B` | always |
//! | `d_l`, `l = 1..=L` (target displacement) | `n_l × B` | always |
//! | `u_l`, `l = 2..=L` (decoder-input correction) | `n_l × B` | `decoder_input` |
//! | `p_l`, `l = 0..=L` (pooling neuron) | `1 × B` | always |
//! | `c_{l,k}`, `l = 0..L−1`, `k = 1..=K` (trace stage) | `(n_l+1) × B` | `K > 0` |
//! | `s_l`, `l = 1..L−1` (influence scale neuron) | `1 × B` | influence on |
//! | `q_l`, `l = 2..=L` (probe pool neuron) | `1 × B` | `difference_reconstruction` decoders |
//! | `W_l`, `l = 1..=L` | `n_l × (n_{l−1}+1)` | always |
//! | `Ω_l`, `l = 2..=L` | `n_{l−1} × (n_l+1)` | always |

use crate::discrete::targets::Scheme;
use crate::network::Architecture;
use nalgebra::{DMatrixView, DMatrixViewMut};
use std::ops::Range;

/// A rectangular block of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Offset of the first entry in the flat state.
    pub start: usize,
    /// Rows (neurons, or matrix rows).
    pub rows: usize,
    /// Columns (replicas, or matrix columns); stored column-major.
    pub cols: usize,
}

impl Block {
    /// Index range in the flat state.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.rows * self.cols
    }

    /// Read-only matrix view into `y`.
    pub fn view<'a>(&self, y: &'a [f64]) -> DMatrixView<'a, f64> {
        DMatrixView::from_slice(&y[self.range()], self.rows, self.cols)
    }

    /// Mutable matrix view into `y`.
    pub fn view_mut<'a>(&self, y: &'a mut [f64]) -> DMatrixViewMut<'a, f64> {
        DMatrixViewMut::from_slice(&mut y[self.range()], self.rows, self.cols)
    }
}

/// A population, named as in the paper (used in traces and divergence reports).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Population {
    /// Feedforward activity `h_l`.
    H,
    /// Target displacement `d_l = τ_l − h_l`.
    D,
    /// Decoder-input correction `u_l`.
    U,
    /// Pooling neuron `p_l`.
    Pool,
    /// Last stage of the presynaptic trace, `n̄_l`.
    Trace,
    /// Influence scale neuron `s_l` (Sec. 8; docs/MODEL.md §6).
    Influence,
    /// Probe pool neuron `q_l` of the difference reconstruction decoders (docs/MODEL.md §6).
    ProbePool,
    /// Encoder weights `W_l`.
    W,
    /// Decoder weights `Ω_l`.
    Omega,
}

impl Population {
    /// Name used in CSV headers and messages.
    pub fn name(self) -> &'static str {
        match self {
            Population::H => "h",
            Population::D => "d",
            Population::U => "u",
            Population::Pool => "p",
            Population::Trace => "trace",
            Population::Influence => "s",
            Population::ProbePool => "q",
            Population::W => "W",
            Population::Omega => "Omega",
        }
    }
}

/// Offsets of every block for a given architecture and engine options.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Number of weight layers `L`.
    pub depth: usize,
    /// Replicas `B`.
    pub replicas: usize,
    /// Stages `K` of the presynaptic trace chain.
    pub stages: usize,
    h: Vec<Block>,
    d: Vec<Block>,
    u: Vec<Option<Block>>,
    p: Vec<Block>,
    chain: Vec<Vec<Block>>,
    scale: Vec<Option<Block>>,
    probe_pool: Vec<Option<Block>>,
    w: Vec<Block>,
    omega: Vec<Block>,
    len: usize,
}

impl Layout {
    /// Lays out the state; `probes` adds the probe pools `q_l` of the difference
    /// reconstruction decoders.
    pub fn new(
        arch: &Architecture,
        replicas: usize,
        scheme: Scheme,
        stages: usize,
        influence: bool,
        probes: bool,
    ) -> Self {
        let depth = arch.depth();
        let mut next = 0usize;
        let mut take = |rows: usize, cols: usize| {
            let b = Block {
                start: next,
                rows,
                cols,
            };
            next += rows * cols;
            b
        };
        let dummy = Block {
            start: 0,
            rows: 0,
            cols: 0,
        };
        let mut h = vec![dummy];
        for l in 1..=depth {
            h.push(take(arch.widths[l], replicas));
        }
        let mut d = vec![dummy];
        for l in 1..=depth {
            d.push(take(arch.widths[l], replicas));
        }
        let mut u = vec![None, None];
        for l in 2..=depth {
            u.push((scheme == Scheme::DecoderInput).then(|| take(arch.widths[l], replicas)));
        }
        let p: Vec<Block> = (0..=depth).map(|_| take(1, replicas)).collect();
        let chain: Vec<Vec<Block>> = (0..depth)
            .map(|l| {
                (0..stages)
                    .map(|_| take(arch.presyn_len(l), replicas))
                    .collect()
            })
            .collect();
        let mut scale = vec![None];
        for l in 1..=depth {
            scale.push((influence && l < depth).then(|| take(1, replicas)));
        }
        let mut probe_pool = vec![None, None];
        for _ in 2..=depth {
            probe_pool.push(probes.then(|| take(1, replicas)));
        }
        let mut w = vec![dummy];
        for l in 1..=depth {
            w.push(take(arch.widths[l], arch.presyn_len(l - 1)));
        }
        let mut omega = vec![dummy, dummy];
        for l in 2..=depth {
            omega.push(take(arch.widths[l - 1], arch.presyn_len(l)));
        }
        Layout {
            depth,
            replicas,
            stages,
            h,
            d,
            u,
            p,
            chain,
            scale,
            probe_pool,
            w,
            omega,
            len: next,
        }
    }

    /// Length of the flat state.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the state is empty (never, for a valid network).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `h_l`, `l = 1..=L`.
    pub fn h(&self, l: usize) -> Block {
        self.h[l]
    }
    /// `d_l`, `l = 1..=L`.
    pub fn d(&self, l: usize) -> Block {
        self.d[l]
    }
    /// `u_l`, `l = 2..=L` (decoder_input only).
    pub fn u(&self, l: usize) -> Option<Block> {
        self.u[l]
    }
    /// `p_l`, `l = 0..=L`.
    pub fn p(&self, l: usize) -> Block {
        self.p[l]
    }
    /// Stage `k = 1..=K` of the trace of `n_l`, `l = 0..L−1`.
    pub fn stage(&self, l: usize, k: usize) -> Block {
        self.chain[l][k - 1]
    }
    /// The influence scale neuron `s_l`, `l = 1..L−1` (influence only; `s_L = 1` is not a
    /// neuron).
    pub fn scale(&self, l: usize) -> Option<Block> {
        self.scale.get(l).copied().flatten()
    }
    /// The probe pool neuron `q_l`, `l = 2..=L` (difference reconstruction decoders only).
    pub fn probe_pool(&self, l: usize) -> Option<Block> {
        self.probe_pool.get(l).copied().flatten()
    }
    /// Whether the state has the probe pools of the difference reconstruction decoders.
    pub fn probes(&self) -> bool {
        self.probe_pool.iter().any(Option::is_some)
    }
    /// `W_l`, `l = 1..=L`.
    pub fn w(&self, l: usize) -> Block {
        self.w[l]
    }
    /// `Ω_l`, `l = 2..=L`.
    pub fn omega(&self, l: usize) -> Block {
        self.omega[l]
    }

    /// Range of all neuron populations (everything before the weights).
    pub fn neurons(&self) -> Range<usize> {
        0..self.w[1].start
    }

    /// Which population and layer an index of the flat state belongs to.
    pub fn locate(&self, index: usize) -> (Population, usize) {
        let inside = |b: &Block| b.rows * b.cols > 0 && b.range().contains(&index);
        for l in 1..=self.depth {
            if inside(&self.h[l]) {
                return (Population::H, l);
            }
            if inside(&self.d[l]) {
                return (Population::D, l);
            }
            if self.u[l].as_ref().is_some_and(inside) {
                return (Population::U, l);
            }
            if self.scale[l].as_ref().is_some_and(inside) {
                return (Population::Influence, l);
            }
            if self.probe_pool[l].as_ref().is_some_and(inside) {
                return (Population::ProbePool, l);
            }
            if inside(&self.w[l]) {
                return (Population::W, l);
            }
            if l >= 2 && inside(&self.omega[l]) {
                return (Population::Omega, l);
            }
        }
        for l in 0..=self.depth {
            if inside(&self.p[l]) {
                return (Population::Pool, l);
            }
            if l < self.depth && self.chain[l].iter().any(inside) {
                return (Population::Trace, l);
            }
        }
        (Population::H, 0)
    }
}
