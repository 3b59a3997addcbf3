//! Weight updates of the discrete references (DESIGN §4): BP (SGD, Adam), DTP of Lee et al.,
//! DTP1 (Sec. 3, Eq. delta-dtp-regular) with optional influence scaling (Sec. 8), and decoder
//! training on the regular auto-encoder loss (Sec. 9, 10.2).

use crate::network::{ForwardPass, Network};
use nalgebra::{DMatrix, DVector};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// DTP1 update of Sec. 3: `ΔW_l = (τ_l − h_l) a_{l−1}ᵀ / ‖a_{l−1}‖²`.
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
    let a = &fwd.a[l - 1];
    let n2 = a.norm_squared();
    if n2 == 0.0 {
        return DMatrix::zeros(d_l.len(), a.len());
    }
    d_l * a.transpose() / n2
}

/// DTP update of Lee et al. (2015): minus the gradient of `½‖τ_l − h_l‖²` with respect to
/// `W_l` (τ held fixed), `ΔW_l = (τ_l − h_l) a_{l−1}ᵀ`.
pub fn dtp_delta(fwd: &ForwardPass, d_l: &DVector<f64>, l: usize) -> DMatrix<f64> {
    d_l * fwd.a[l - 1].transpose()
}

/// Back-propagated gradients `∂ℓ/∂W_l = δ_l a_{l−1}ᵀ` for `l = 1..=L` (index `l − 1`), with
/// `δ_L = ∇ℓ` and `δ_{l−1} = f_l'(h_{l−1})ᵀ δ_l`.
pub fn bp_gradients(net: &Network, fwd: &ForwardPass, y: &DVector<f64>) -> Vec<DMatrix<f64>> {
    let depth = net.depth();
    let mut delta = net.arch().loss.gradient(fwd.output(), y);
    let mut grads = vec![DMatrix::zeros(0, 0); depth];
    for l in (1..=depth).rev() {
        grads[l - 1] = &delta * fwd.a[l - 1].transpose();
        if l > 1 {
            delta = net.encoder_jacobian(l, &fwd.h[l - 1]).transpose() * &delta;
        }
    }
    grads
}

/// Decoder update on the regular auto-encoder loss with the normalised rule of Sec. 9/10.2:
/// `ΔΩ_l = (h_{l−1} − g_l(h_l)) a_lᵀ / ‖a_l‖²`. Applied with rate 1 it makes `g_l(h_l) = h_{l−1}`
/// exactly on this example (the decoder twin of T1).
pub fn decoder_delta(net: &Network, fwd: &ForwardPass, l: usize) -> DMatrix<f64> {
    let a = &fwd.a[l];
    let err = &fwd.h[l - 1] - net.omega(l) * a;
    err * a.transpose() / a.norm_squared().max(f64::MIN_POSITIVE)
}

/// Noise-corrupted decoder update of Lee et al. (2015): with `h̃ = h_{l−1} + ξ`,
/// `ξ ~ N(0, σ²I)`, train `g_l(f_l(h̃))` to reconstruct `h̃` with the same normalised rule.
pub fn decoder_delta_noisy(
    net: &Network,
    fwd: &ForwardPass,
    l: usize,
    noise_std: f64,
    rng: &mut ChaCha8Rng,
) -> DMatrix<f64> {
    let corrupted = fwd.h[l - 1].map(|v| {
        let z: f64 = StandardNormal.sample(rng);
        v + noise_std * z
    });
    let code = net.encode(l, &corrupted);
    let a = net.presyn(l, &code);
    let err = corrupted - net.omega(l) * &a;
    err * a.transpose() / a.norm_squared().max(f64::MIN_POSITIVE)
}

/// Fits every decoder by ridge regression on the regular auto-encoder loss (Sec. 10.2):
/// `Ω_l = argmin Σ_x ‖h_{l−1}(x) − Ω a_l(h_l(x))‖² + ridge‖Ω‖²`, i.e. the point the normalised
/// online rule [`decoder_delta`] drifts towards. Used by the theory suite for "well-fitted"
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

/// Adam optimiser state for a list of matrices (Kingma & Ba 2015).
#[derive(Debug, Clone)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    t: i32,
    m: Vec<DMatrix<f64>>,
    v: Vec<DMatrix<f64>>,
}

impl Adam {
    /// Zero moments shaped like `params`.
    pub fn new(lr: f64, params: &[DMatrix<f64>]) -> Self {
        let zeros: Vec<_> = params
            .iter()
            .map(|p| DMatrix::zeros(p.nrows(), p.ncols()))
            .collect();
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// Returns the parameter changes `−lr · m̂ / (√v̂ + ε)` for gradients `grads`.
    pub fn step(&mut self, grads: &[DMatrix<f64>]) -> Vec<DMatrix<f64>> {
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        let mut out = Vec::with_capacity(grads.len());
        for ((m, v), g) in self.m.iter_mut().zip(self.v.iter_mut()).zip(grads) {
            *m = &*m * self.beta1 + g * (1.0 - self.beta1);
            *v = &*v * self.beta2 + g.component_mul(g) * (1.0 - self.beta2);
            let step = m.zip_map(v, |mi, vi| {
                -self.lr * (mi / c1) / ((vi / c2).sqrt() + self.eps)
            });
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
    fn bp_gradients_match_finite_differences() {
        for loss in [Loss::Mse, Loss::SoftmaxCe] {
            let arch = Architecture::new(&[3, 4, 3], Activation::Tanh, loss).unwrap();
            let net = Network::new(arch, Init::Gaussian { gain: 1.3 }, 5).unwrap();
            let x = DVector::from_vec(vec![0.2, -0.4, 1.1]);
            let y = DVector::from_vec(vec![0.0, 1.0, 0.0]);
            let grads = bp_gradients(&net, &net.forward(&x), &y);
            for l in 1..=2 {
                for (r, c) in [(0, 0), (1, 2), (2, 3)] {
                    let mut p = net.clone();
                    let mut m = net.clone();
                    p.w_mut(l)[(r, c)] += 1e-6;
                    m.w_mut(l)[(r, c)] -= 1e-6;
                    let fd = (p.loss(&x, &y) - m.loss(&x, &y)) / 2e-6;
                    assert!((fd - grads[l - 1][(r, c)]).abs() < 1e-8, "{loss:?} l={l}");
                }
            }
        }
    }

    #[test]
    fn decoder_delta_reconstructs_exactly_at_rate_one() {
        let arch = Architecture::new(&[3, 4, 4], Activation::Tanh, Loss::Mse).unwrap();
        let mut net = Network::new(arch, Init::default(), 2).unwrap();
        let fwd = net.forward(&DVector::from_vec(vec![1.0, 0.5, -0.3]));
        let dw = decoder_delta(&net, &fwd, 2);
        *net.omega_mut(2) += dw;
        assert!((net.decode(2, &fwd.h[2]) - &fwd.h[1]).norm() < 1e-13);
    }

    #[test]
    fn adam_first_step_has_size_lr() {
        let g = vec![DMatrix::from_row_slice(1, 2, &[3.0, -0.1])];
        let mut adam = Adam::new(0.01, &g);
        let s = adam.step(&g);
        assert!((s[0][(0, 0)] + 0.01).abs() < 1e-9 && (s[0][(0, 1)] - 0.01).abs() < 1e-7);
    }
}
