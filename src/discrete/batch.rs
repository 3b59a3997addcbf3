//! The forward pass of a mini-batch (docs/MODEL.md §1, §4; Sec. 2). Column `b` of every
//! matrix is example `b`, so each layer is one matrix–matrix product for all `B` examples:
//!
//! ```text
//! H_0 = X,   A_l = a_l(H_l) = [σ_l(H_l); 1ᵀ],   H_l = W_l A_{l−1}   (l = 1..L)     (Sec. 2)
//! ```
//!
//! The encoder and decoder of every column are `F_l(U) = W_l a_{l−1}(U)` and
//! `G_l(V) = Ω_l a_l(V)`. Column `b` of each result equals the single-example
//! [`Network::encode`] / [`Network::decode`] of column `b`, up to rounding.

use crate::data::Example;
use crate::linalg::{product, Op};
use crate::network::{ForwardPass, Loss, Network};
use nalgebra::{DMatrix, DVector};

/// All quantities of the forward pass of a mini-batch: column `b` of `h[l]` and `a[l]` is
/// example `b`'s `h_l` and `a_l(h_l)`, for `l = 0..=L`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPass {
    /// `H_0 = X, H_1, …, H_L`.
    pub h: Vec<DMatrix<f64>>,
    /// `A_l = a_l(H_l)`, `l = 0..=L`.
    pub a: Vec<DMatrix<f64>>,
}

impl BatchPass {
    /// The output `H_L`.
    pub fn output(&self) -> &DMatrix<f64> {
        self.h.last().expect("a network has at least two layers")
    }

    /// Number of examples `B` (columns).
    pub fn size(&self) -> usize {
        self.h[0].ncols()
    }

    /// The one-column batch of a single example's forward pass.
    pub fn of_one(fwd: &ForwardPass) -> Self {
        BatchPass {
            h: fwd.h.iter().map(column_matrix).collect(),
            a: fwd.a.iter().map(column_matrix).collect(),
        }
    }

    /// Index of the first example whose output `h_L` is not finite.
    pub fn first_non_finite_output(&self) -> Option<usize> {
        let out = self.output();
        (0..out.ncols()).find(|&b| out.column(b).iter().any(|v| !v.is_finite()))
    }
}

/// `v` as an `n × 1` matrix.
pub fn column_matrix(v: &DVector<f64>) -> DMatrix<f64> {
    DMatrix::from_column_slice(v.len(), 1, v.as_slice())
}

/// Column `b` of every matrix of `m` as vectors.
pub fn columns(m: &[DMatrix<f64>], b: usize) -> Vec<DVector<f64>> {
    m.iter().map(|x| x.column(b).into_owned()).collect()
}

/// Inputs and outputs of `examples` as the columns of `(X, Y)`.
pub fn stack(examples: &[&Example]) -> (DMatrix<f64>, DMatrix<f64>) {
    let side = |part: fn(&Example) -> &DVector<f64>| {
        let n = examples.first().map_or(0, |e| part(e).len());
        let mut m = DMatrix::zeros(n, examples.len());
        for (b, e) in examples.iter().enumerate() {
            m.set_column(b, part(e));
        }
        m
    };
    (side(|e| &e.x), side(|e| &e.y))
}

/// `∇ℓ(h_L, y)` of every column (docs/MODEL.md §1).
pub fn loss_gradients(loss: Loss, h_out: &DMatrix<f64>, y: &DMatrix<f64>) -> DMatrix<f64> {
    let mut grad = DMatrix::zeros(h_out.nrows(), h_out.ncols());
    for b in 0..h_out.ncols() {
        let g = loss.gradient(&h_out.column(b).into_owned(), &y.column(b).into_owned());
        grad.set_column(b, &g);
    }
    grad
}

/// `Σ_b ℓ(h_{L,b}, y_b)`, the summed loss of the mini-batch.
pub fn loss_sum(loss: Loss, h_out: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
    (0..h_out.ncols())
        .map(|b| loss.value(&h_out.column(b).into_owned(), &y.column(b).into_owned()))
        .sum()
}

impl Network {
    /// Forward pass of a mini-batch, `H_l = W_l A_{l−1}` with `H_0 = X` (Sec. 2): one
    /// matrix–matrix product per layer.
    pub fn forward_batch(&self, x: DMatrix<f64>) -> BatchPass {
        let mut a = vec![self.arch().presyn_batch(0, &x)];
        let mut h = vec![x];
        for l in 1..=self.depth() {
            let hl = product(&self.w(l).as_view(), Op::N, &a[l - 1].as_view(), Op::N);
            a.push(self.arch().presyn_batch(l, &hl));
            h.push(hl);
        }
        BatchPass { h, a }
    }

    /// Encoder of every column, `F_l(U) = W_l a_{l−1}(U)` (Sec. 2).
    pub fn encode_batch(&self, l: usize, u: &DMatrix<f64>) -> DMatrix<f64> {
        let a = self.arch().presyn_batch(l - 1, u);
        product(&self.w(l).as_view(), Op::N, &a.as_view(), Op::N)
    }

    /// Decoder of every column, `G_l(V) = Ω_l a_l(V)` (Sec. 2, 10.1).
    pub fn decode_batch(&self, l: usize, v: &DMatrix<f64>) -> DMatrix<f64> {
        let a = self.arch().presyn_batch(l, v);
        product(&self.omega(l).as_view(), Op::N, &a.as_view(), Op::N)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::network::{Architecture, Init};

    #[test]
    fn every_column_is_the_single_example_forward_pass() {
        for bias in [true, false] {
            let mut arch = Architecture::new(&[4, 7, 6, 3], Activation::Softplus, Loss::Mse)
                .expect("valid widths");
            arch.bias = bias;
            let net = Network::new(arch, Init::default(), 3).expect("valid init");
            let x = DMatrix::from_fn(4, 9, |i, j| ((i * 9 + j) as f64 * 0.37).sin() * 2.0);
            let pass = net.forward_batch(x.clone());
            assert_eq!(pass.size(), 9);
            for b in 0..9 {
                let fwd = net.forward(&x.column(b).into_owned());
                for l in 0..=3 {
                    assert!((&fwd.h[l] - pass.h[l].column(b)).amax() < 1e-13);
                    assert!((&fwd.a[l] - pass.a[l].column(b)).amax() < 1e-13);
                }
                let v = &pass.h[2];
                let g = net.decode(2, &v.column(b).into_owned());
                assert!((g - net.decode_batch(2, v).column(b)).amax() < 1e-13);
            }
        }
    }
}
