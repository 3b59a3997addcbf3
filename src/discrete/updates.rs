//! Weight updates of the discrete references (docs/MODEL.md §4): BP (SGD, Adam), DTP of
//! Lee et al., DTP1 (Sec. 3, Eq. delta-dtp-regular) with optional influence scaling (Sec. 8),
//! and decoder training on the regular auto-encoder loss (Sec. 9, 10.2) or on the difference
//! reconstruction loss of Meulemans et al. (2020).
//!
//! Every rule is an average of outer products over the `B` examples of a mini-batch,
//! `ΔM = Σ_b c_b e_b a_bᵀ`, with an error column `e_b`, a presynaptic column `a_b` and a
//! per-example factor `c_b` (the mini-batch mean `1/B`, the pool normalisation `1/‖a_b‖²`,
//! the influence `s_{l,b}`, a rate). It is computed as one matrix–matrix product,
//! `ΔM = (E diag(c)) Aᵀ`, with the factors folded into the columns of `E`.

use crate::discrete::batch::{column_matrix, loss_gradients, BatchPass};
use crate::linalg::{product, Op};
use crate::network::{ForwardPass, Network};
use nalgebra::{DMatrix, DVector};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `Σ_b c_b e_b a_bᵀ = (E diag(c)) Aᵀ`: the outer products of the columns of `E` and `A`
/// weighted by `c`, as one matrix–matrix product (docs/MODEL.md §4).
pub fn weighted_outer(e: &DMatrix<f64>, c: &[f64], a: &DMatrix<f64>) -> DMatrix<f64> {
    let mut scaled = e.clone();
    for (b, cb) in c.iter().enumerate() {
        scaled.column_mut(b).scale_mut(*cb);
    }
    product(&scaled.as_view(), Op::N, &a.as_view(), Op::T)
}

/// The pool normalisation `1/‖a_b‖²` of every column of `A` (docs/MODEL.md §4, §6: the pool
/// neuron of a layer sums its squared activity), times `scale`; 0 where `a_b = 0`, which only
/// happens without the bias unit.
pub fn inverse_pools(a: &DMatrix<f64>, scale: f64) -> Vec<f64> {
    a.column_iter()
        .map(|col| {
            let pool = col.norm_squared();
            if pool > 0.0 {
                scale / pool.max(f64::MIN_POSITIVE)
            } else {
                0.0
            }
        })
        .collect()
}

/// DTP1 update of a mini-batch (Sec. 3, Eq. delta-dtp-regular, averaged as in docs/MODEL.md
/// §4): `ΔW_l = Σ_b c_b d_{l,b} a_{l−1,b}ᵀ / ‖a_{l−1,b}‖²`, with `D_l = T_l − H_l` the target
/// displacements and `A_{l−1}` the presynaptic vectors as columns. The trainer passes
/// `c_b = η s_{l,b}/B` (influence `s_{l,b}` of Sec. 8, or 1).
pub fn dtp1_update(d_l: &DMatrix<f64>, a_prev: &DMatrix<f64>, c: &[f64]) -> DMatrix<f64> {
    let mut factors = inverse_pools(a_prev, 1.0);
    for (f, cb) in factors.iter_mut().zip(c) {
        *f *= cb;
    }
    weighted_outer(d_l, &factors, a_prev)
}

/// DTP1 update of one example (Sec. 3): `ΔW_l = (τ_l − h_l) a_{l−1}ᵀ / ‖a_{l−1}‖²`, the
/// one-column [`dtp1_update`].
///
/// Applying it alone moves `h_l` exactly to `τ_l` (T1), since `f_l` is linear in `W_l`:
/// `(W_l + ΔW_l) a_{l−1} = h_l + (τ_l − h_l) ‖a_{l−1}‖²/‖a_{l−1}‖²`.
///
/// ```
/// use dtpsim::{Activation, Architecture, Init, Loss, Network};
/// use dtpsim::discrete::updates::dtp1_delta;
/// use nalgebra::DVector;
/// let arch = Architecture::new(&[3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
/// let mut net = Network::new(arch, Init::default(), 1).unwrap();
/// let fwd = net.forward(&DVector::from_vec(vec![0.5, -1.0, 2.0]));
/// let d1 = DVector::from_vec(vec![0.01, -0.02, 0.0, 0.03]);
/// let dw = dtp1_delta(&fwd, &d1, 1);
/// *net.w_mut(1) += dw;
/// let h1 = net.encode(1, &fwd.h[0]);
/// assert!((h1 - (&fwd.h[1] + &d1)).norm() < 1e-14);
/// ```
pub fn dtp1_delta(fwd: &ForwardPass, d_l: &DVector<f64>, l: usize) -> DMatrix<f64> {
    dtp1_update(&column_matrix(d_l), &column_matrix(&fwd.a[l - 1]), &[1.0])
}

/// DTP update of Lee et al. (2015) for a mini-batch (docs/MODEL.md §4, Sec. 3): minus the
/// gradient of `½‖τ_l − h_l‖²` with respect to `W_l` (τ held fixed),
/// `ΔW_l = rate Σ_b d_{l,b} a_{l−1,b}ᵀ`; the trainer passes `rate = lr/B`.
pub fn dtp_update(d_l: &DMatrix<f64>, a_prev: &DMatrix<f64>, rate: f64) -> DMatrix<f64> {
    weighted_outer(d_l, &vec![rate; d_l.ncols()], a_prev)
}

/// Back-propagated gradients of the mini-batch mean loss, `(1/B) Σ_b δ_{l,b} a_{l−1,b}ᵀ` for
/// `l = 1..=L` (index `l − 1`), with `δ_L = ∇ℓ` and
/// `δ_{l−1} = f_l′(h_{l−1})ᵀ δ_l = σ′_{l−1}(h_{l−1}) ⊙ W_l[:, :n_{l−1}]ᵀ δ_l` (docs/MODEL.md §4,
/// the chain rule of Sec. 4): one product per layer and pass for all examples.
pub fn bp_gradients(net: &Network, pass: &BatchPass, y: &DMatrix<f64>) -> Vec<DMatrix<f64>> {
    let depth = net.depth();
    let mean = vec![1.0 / pass.size() as f64; pass.size()];
    let mut delta = loss_gradients(net.arch().loss, pass.output(), y);
    let mut grads = vec![DMatrix::zeros(0, 0); depth];
    for l in (1..=depth).rev() {
        grads[l - 1] = weighted_outer(&delta, &mean, &pass.a[l - 1]);
        if l > 1 {
            let n = net.width(l - 1);
            let act = net.arch().activations[l - 1];
            let back = product(&net.w(l).columns(0, n), Op::T, &delta.as_view(), Op::N);
            delta = back.zip_map(&pass.h[l - 1], |g, h| act.derivative(h) * g);
        }
    }
    grads
}

/// Normalised decoder step of a mini-batch (docs/MODEL.md §4): for each pair of what the
/// decoder reads, `a_b`, and what it should give, `x_b`, the step on the ridge loss
/// `½‖x_b − Ω_l a_b‖² + ½ r‖Ω_l‖²_F` of size `rate` over its curvature `‖a_b‖² + r`,
///
/// ```text
/// ΔΩ_l = Σ_b rate [(x_b − Ω_l a_b) a_bᵀ − r Ω_l] / (‖a_b‖² + r)
/// ```
///
/// (`r = 0`: the normalised rule of Sec. 9/10.2; an example with `a_b = 0` then adds nothing).
/// The plain rule has `X = H_{l−1}`, `A = A_l`; the noise-corrupted one of Lee et al. has
/// `X = H̃`, `A = a_l(f_l(H̃))` ([`corrupted`]); the difference reconstruction loss has the
/// probe pair of [`difference_probe`] and `r = r_Ω σ²`. With `rate = 1`, `r = 0` and one
/// example it makes `Ω_l a = x` exactly (for the plain rule `g_l(h_l) = h_{l−1}`, the decoder
/// twin of T1).
pub fn decoder_update(
    omega: &DMatrix<f64>,
    x: &DMatrix<f64>,
    a: &DMatrix<f64>,
    rate: f64,
    ridge: f64,
) -> DMatrix<f64> {
    let err = x - omega * a;
    let factors: Vec<f64> = a
        .column_iter()
        .map(|col| {
            let curvature = col.norm_squared() + ridge;
            if curvature > 0.0 {
                rate / curvature.max(f64::MIN_POSITIVE)
            } else {
                0.0
            }
        })
        .collect();
    let mut delta = weighted_outer(&err, &factors, a);
    if ridge > 0.0 {
        delta -= omega * (ridge * factors.iter().sum::<f64>());
    }
    delta
}

/// Standard normal noise `ξ` for the decoder inputs `h_{l−1}`, `l = 2..=L` (index `l − 2`), of
/// `batch` examples, drawn example by example, layer by layer, unit by unit: the order of the
/// per-example trainer, so a seed gives the same noise as before.
pub fn decoder_noise(net: &Network, batch: usize, rng: &mut ChaCha8Rng) -> Vec<DMatrix<f64>> {
    let mut xi: Vec<DMatrix<f64>> = (2..=net.depth())
        .map(|l| DMatrix::zeros(net.width(l - 1), batch))
        .collect();
    for b in 0..batch {
        for layer in xi.iter_mut() {
            for v in layer.column_mut(b).iter_mut() {
                *v = StandardNormal.sample(rng);
            }
        }
    }
    xi
}

/// The noise-corrupted pair of Lee et al. (2015) for decoder `l` (Sec. 10.2):
/// `H̃ = H_{l−1} + σ_ξ Ξ` and what the decoder reads of it, `a_l(f_l(H̃))`, with `xi` from
/// [`decoder_noise`].
pub fn corrupted(
    net: &Network,
    pass: &BatchPass,
    l: usize,
    xi: &DMatrix<f64>,
    noise_std: f64,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let noisy = pass.h[l - 1].zip_map(xi, |v, z| v + noise_std * z);
    let a = net.arch().presyn_batch(l, &net.encode_batch(l, &noisy));
    (noisy, a)
}

/// The probe pair of the difference reconstruction loss (Meulemans et al. 2020; docs/MODEL.md
/// §4) for decoder `l`: the probe `P = σ_ξ Ξ` added to `H_{l−1}` and the change it makes in
/// what the decoder reads, `ΔA = a_l(f_l(H_{l−1} + P)) − a_l(H_l)` (its bias row is 0), with
/// `xi` from [`decoder_noise`]. [`decoder_update`]`(Ω_l, P, ΔA, rate, r_Ω σ²)` is then the
/// normalised step on
/// `(1/2σ²)‖Ω_l ΔA − P‖² + ½r_Ω‖Ω_l‖² = (1/2σ²)‖g_l(f_l(h_{l−1} + σξ)) − g_l(h_l) − σξ‖² + ½r_Ω‖Ω_l‖²`.
pub fn difference_probe(
    net: &Network,
    pass: &BatchPass,
    l: usize,
    xi: &DMatrix<f64>,
    noise_std: f64,
) -> (DMatrix<f64>, DMatrix<f64>) {
    // what the decoder reads of h_{l−1} + σξ is the corrupted pair's
    let (_, a) = corrupted(net, pass, l, xi, noise_std);
    (xi * noise_std, a - &pass.a[l])
}

/// Fits every decoder by ridge regression on the regular auto-encoder loss (Sec. 10.2):
/// `Ω_l = argmin Σ_x ‖h_{l−1}(x) − Ω a_l(h_l(x))‖² + ridge‖Ω‖²`, i.e. the point the normalised
/// online rule [`decoder_update`] drifts towards. Used by the theory suite for "well-fitted"
/// decoders.
pub fn fit_decoders_least_squares(net: &mut Network, inputs: &[DVector<f64>], ridge: f64) {
    let passes: Vec<ForwardPass> = inputs.iter().map(|x| net.forward(x)).collect();
    for l in 2..=net.depth() {
        let n_a = passes[0].a[l].len();
        let mut gram = DMatrix::identity(n_a, n_a) * ridge;
        let mut cross = DMatrix::zeros(net.width(l - 1), n_a);
        for p in &passes {
            gram += &p.a[l] * p.a[l].transpose();
            cross += &p.h[l - 1] * p.a[l].transpose();
        }
        if let Some(ch) = gram.clone().cholesky() {
            // Ω gram = cross  ⇔  gram Ωᵀ = crossᵀ (gram is symmetric)
            *net.omega_mut(l) = ch.solve(&cross.transpose()).transpose();
        } else if let Ok(sol) = gram.svd(true, true).solve(&cross.transpose(), 1e-12) {
            *net.omega_mut(l) = sol.transpose();
        }
    }
}

/// Adam's hyper-parameters besides the step size (docs/MODEL.md §4).
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields, default)]
pub struct AdamSettings {
    /// Decay `β₁` of the first-moment estimate, in `[0, 1)`.
    pub beta1: f64,
    /// Decay `β₂` of the second-moment estimate, in `[0, 1)`.
    pub beta2: f64,
    /// `ε` added to `√v̂`, in `(0, 1]`.
    pub eps: f64,
}

impl Default for AdamSettings {
    fn default() -> Self {
        AdamSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Adam (Kingma & Ba 2015) for a list of matrices, one step size per matrix
/// (docs/MODEL.md §4): with `t` the step count and `g` the gradient,
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g⊙g`, `ΔW_l = −lr_l m̂/(√v̂ + ε)` with
/// `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`, and `β₁`, `β₂`, `ε` from [`AdamSettings`].
#[derive(Debug, Clone)]
pub struct Adam {
    /// Step size `lr_l` of every matrix.
    pub lr: Vec<f64>,
    /// Decay of the first-moment estimate.
    pub beta1: f64,
    /// Decay of the second-moment estimate.
    pub beta2: f64,
    /// Added to the square root of the second moment.
    pub eps: f64,
    t: i32,
    m: Vec<DMatrix<f64>>,
    v: Vec<DMatrix<f64>>,
}

impl Adam {
    /// Zero moments shaped like `params`, step size `lr[i]` for `params[i]`, decays and `ε`
    /// from `settings`.
    pub fn new(lr: Vec<f64>, params: &[DMatrix<f64>], settings: AdamSettings) -> Self {
        let zeros: Vec<_> = params
            .iter()
            .map(|p| DMatrix::zeros(p.nrows(), p.ncols()))
            .collect();
        Adam {
            lr,
            beta1: settings.beta1,
            beta2: settings.beta2,
            eps: settings.eps,
            t: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// The moments and step count, for a checkpoint.
    pub fn state(&self) -> crate::checkpoint::AdamState {
        crate::checkpoint::AdamState {
            t: self.t,
            m: crate::checkpoint::matrices(&self.m),
            v: crate::checkpoint::matrices(&self.v),
        }
    }

    /// Continues from the moments of a checkpoint (their shapes must match).
    pub fn restore(&mut self, state: &crate::checkpoint::AdamState) -> Result<(), String> {
        let (m, v) = (
            crate::checkpoint::from_matrices(&state.m)?,
            crate::checkpoint::from_matrices(&state.v)?,
        );
        let shape = |a: &[DMatrix<f64>]| a.iter().map(|x| x.shape()).collect::<Vec<_>>();
        if shape(&m) != shape(&self.m) || shape(&v) != shape(&self.v) {
            return Err("Adam moments of another network".into());
        }
        (self.t, self.m, self.v) = (state.t, m, v);
        Ok(())
    }

    /// Returns the parameter changes `−lr_l · m̂ / (√v̂ + ε)` for gradients `grads`. A
    /// descent direction `u` that is not a gradient (the DTP and DTP1 updates) enters as
    /// `g = −u`.
    pub fn step(&mut self, grads: &[DMatrix<f64>]) -> Vec<DMatrix<f64>> {
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        let mut out = Vec::with_capacity(grads.len());
        for (((m, v), g), lr) in self
            .m
            .iter_mut()
            .zip(self.v.iter_mut())
            .zip(grads)
            .zip(&self.lr)
        {
            *m = &*m * self.beta1 + g * (1.0 - self.beta1);
            *v = &*v * self.beta2 + g.component_mul(g) * (1.0 - self.beta2);
            let step = m.zip_map(v, |mi, vi| -lr * (mi / c1) / ((vi / c2).sqrt() + self.eps));
            out.push(step);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::network::{Architecture, Init, Loss};

    #[test]
    fn bp_gradients_match_finite_differences_of_the_mean_loss() {
        for loss in [Loss::Mse, Loss::SoftmaxCe] {
            let arch = Architecture::new(&[3, 4, 3], Activation::Tanh, loss).unwrap();
            let net = Network::new(arch, Init::Gaussian { gain: 1.3 }, 5).unwrap();
            let x = DMatrix::from_row_slice(3, 2, &[0.2, -1.0, -0.4, 0.3, 1.1, 0.7]);
            let y = DMatrix::from_row_slice(3, 2, &[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
            let grads = bp_gradients(&net, &net.forward_batch(x.clone()), &y);
            let mean_loss = |net: &Network| {
                let out = net.forward_batch(x.clone());
                crate::discrete::batch::loss_sum(loss, out.output(), &y) / 2.0
            };
            for l in 1..=2 {
                for (r, c) in [(0, 0), (1, 2), (2, 3)] {
                    let mut p = net.clone();
                    let mut m = net.clone();
                    p.w_mut(l)[(r, c)] += 1e-6;
                    m.w_mut(l)[(r, c)] -= 1e-6;
                    let fd = (mean_loss(&p) - mean_loss(&m)) / 2e-6;
                    assert!((fd - grads[l - 1][(r, c)]).abs() < 1e-8, "{loss:?} l={l}");
                }
            }
        }
    }

    #[test]
    fn decoder_update_reconstructs_exactly_at_rate_one() {
        let arch = Architecture::new(&[3, 4, 4], Activation::Tanh, Loss::Mse).unwrap();
        let mut net = Network::new(arch, Init::default(), 2).unwrap();
        let pass = net.forward_batch(DMatrix::from_column_slice(3, 1, &[1.0, 0.5, -0.3]));
        let dw = decoder_update(net.omega(2), &pass.h[1], &pass.a[2], 1.0, 0.0);
        *net.omega_mut(2) += dw;
        let h2 = pass.h[2].column(0).into_owned();
        assert!((net.decode(2, &h2) - pass.h[1].column(0)).norm() < 1e-13);
    }

    #[test]
    fn a_zero_presynaptic_vector_contributes_nothing() {
        let e = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]);
        let a = DMatrix::from_row_slice(2, 2, &[0.0, 1.0, 0.0, 1.0]);
        let dw = dtp1_update(&e, &a, &[1.0, 1.0]);
        // column 0 of A vanishes: only example 1 counts, d_1 a_1ᵀ/‖a_1‖² = d_1 [½, ½]
        assert_eq!(dw, DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 2.0, 2.0]));
    }

    #[test]
    fn adam_first_step_has_size_lr() {
        let g = vec![DMatrix::from_row_slice(1, 2, &[3.0, -0.1])];
        let mut adam = Adam::new(vec![0.01], &g, AdamSettings::default());
        let s = adam.step(&g);
        assert!((s[0][(0, 0)] + 0.01).abs() < 1e-9 && (s[0][(0, 1)] - 0.01).abs() < 1e-7);
    }
}
