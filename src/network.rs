//! The layered network of docs/MODEL.md §1 (seed paper Sec. 2–3): encoders `f_l`, decoders `g_l`,
//! the presynaptic vector `a_l(v) = [σ_l(v); 1]` and the output loss.
//!
//! Layers are numbered `l = 0..=L` with widths `n_l`; `h_0 = x` is the input.
//!
//! * Encoder (Sec. 2): `f_l(u) = W_l a_{l-1}(u)`, `W_l ∈ R^{n_l × (n_{l-1}+1)}` (`+1` only
//!   with the bias unit).
//! * Decoder (Sec. 2, 10.1): `g_l(v) = Ω_l a_l(v)`, `Ω_l ∈ R^{n_{l-1} × (n_l+1)}`, `l = 2..=L`.
//! * Output `h_L` is linear; the loss is `mse` (`½‖h_L − y‖²`) or `softmax_ce`.

use crate::activation::Activation;
use crate::error::{check_at_least, check_range, ConfigError, ModelError};
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut, DVector, DVectorView, DVectorViewMut};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Output loss `ℓ(h_L, y)` (docs/MODEL.md §1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// `ℓ = ½‖h_L − y‖²`, `∇ℓ = h_L − y`.
    #[default]
    Mse,
    /// `ℓ = −Σ y_i log softmax(h_L)_i` with one-hot `y`, `∇ℓ = softmax(h_L) − y`.
    SoftmaxCe,
}

impl Loss {
    /// `ℓ(h_L, y)`.
    ///
    /// ```
    /// use dtpsim::Loss;
    /// use nalgebra::DVector;
    /// let h = DVector::from_vec(vec![1.0, 3.0]);
    /// let y = DVector::from_vec(vec![0.0, 1.0]);
    /// assert_eq!(Loss::Mse.value(&h, &y), 0.5 * (1.0 + 4.0));
    /// ```
    pub fn value(self, h: &DVector<f64>, y: &DVector<f64>) -> f64 {
        match self {
            Loss::Mse => 0.5 * (h - y).norm_squared(),
            Loss::SoftmaxCe => {
                let max = h.max();
                let lse = max + h.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                -(0..h.len()).map(|i| y[i] * (h[i] - lse)).sum::<f64>()
            }
        }
    }

    /// `∇_{h_L} ℓ(h_L, y)` as a column vector.
    pub fn gradient(self, h: &DVector<f64>, y: &DVector<f64>) -> DVector<f64> {
        match self {
            Loss::Mse => h - y,
            Loss::SoftmaxCe => softmax(h) - y,
        }
    }

    /// Short name (`mse`, `softmax_ce`).
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::SoftmaxCe => "softmax_ce",
        }
    }
}

/// Numerically stable softmax.
pub fn softmax(h: &DVector<f64>) -> DVector<f64> {
    let max = h.max();
    let e = h.map(|v| (v - max).exp());
    let s = e.sum();
    e / s
}

/// The widest layer a network may have (the memory estimate refuses far smaller networks on
/// most machines; this bound keeps every size computation exact).
pub const MAX_WIDTH: usize = 1_000_000;

/// A per-layer value given either as one number for every weight layer or as a list
/// `[v_1, …, v_L]`, one per `W_1..W_L`: the engine's `plasticity.eta` (docs/MODEL.md §6) and
/// the discrete references' `lr` and `eta` (§4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum PerLayer {
    /// One value for every layer.
    All(f64),
    /// One value per weight layer, `[v_1, …, v_L]`.
    Each(Vec<f64>),
}

impl From<f64> for PerLayer {
    /// The same value for every layer.
    fn from(v: f64) -> Self {
        PerLayer::All(v)
    }
}

impl PerLayer {
    /// Value for layer `l` (1-based).
    pub fn get(&self, l: usize) -> f64 {
        match self {
            PerLayer::All(v) => *v,
            PerLayer::Each(v) => v[l - 1],
        }
    }

    /// The values of layers `1..=depth`, `[v_1, …, v_L]`.
    pub fn values(&self, depth: usize) -> Vec<f64> {
        (1..=depth).map(|l| self.get(l)).collect()
    }

    /// Checks that every value lies in `[0, 1e6]` and that a list has one value per weight
    /// layer `W_1..W_depth`; the error names `path` (and the entry) and the fix.
    pub fn validate(&self, path: &str, depth: usize) -> Result<(), ConfigError> {
        self.check(path, depth, |p, v| check_range(p, v, (0.0, false), 1e6, ""))
    }

    /// Like [`PerLayer::validate`], with any finite value `≥ 0` allowed (the discrete
    /// references' rates, docs/MODEL.md §4).
    pub fn validate_non_negative(&self, path: &str, depth: usize) -> Result<(), ConfigError> {
        self.check(path, depth, |p, v| check_at_least(p, v, 0.0))
    }

    fn check(
        &self,
        path: &str,
        depth: usize,
        value: impl Fn(&str, f64) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        match self {
            PerLayer::All(v) => value(path, *v),
            PerLayer::Each(v) => {
                if v.len() != depth {
                    return Err(ConfigError::new(path, format!("give one value per weight layer W_1..W_{depth} ({depth} values) or a single number, got {}", v.len())));
                }
                for (i, x) in v.iter().enumerate() {
                    value(&format!("{path}[{i}]"), *x)?;
                }
                Ok(())
            }
        }
    }
}

/// Weight initialisation (seeded).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Init {
    /// Entries `N(0, gain²/fan_in)`; bias column zero.
    Gaussian {
        /// Scale of the entries.
        gain: f64,
    },
    /// `gain ×` a (semi-)orthogonal matrix from the QR factorisation of a Gaussian one; bias
    /// column zero.
    Orthogonal {
        /// Scale of the matrix.
        gain: f64,
    },
}

impl Default for Init {
    fn default() -> Self {
        Init::Gaussian { gain: 1.0 }
    }
}

/// Architecture of a network: widths, activations, bias unit and loss, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Architecture {
    /// Widths `n_0..=n_L`.
    pub widths: Vec<usize>,
    /// `σ_0..=σ_L`; `σ_0` must be `linear` (the input is used as is).
    pub activations: Vec<Activation>,
    /// Whether `a_l` carries the trailing bias unit `1`.
    pub bias: bool,
    /// Output loss.
    pub loss: Loss,
}

impl Architecture {
    /// `widths` with `hidden` activation on layers `1..=L` (σ_0 linear), bias on, given loss.
    pub fn new(widths: &[usize], hidden: Activation, loss: Loss) -> Result<Self, ModelError> {
        let mut activations = vec![hidden; widths.len()];
        if let Some(first) = activations.first_mut() {
            *first = Activation::Linear;
        }
        let arch = Architecture {
            widths: widths.to_vec(),
            activations,
            bias: true,
            loss,
        };
        arch.validate()?;
        Ok(arch)
    }

    /// Checks widths (≥ 2 layers, each ≥ 1) and the activation count.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.widths.len() < 2 {
            return Err(ModelError::TooFewLayers(self.widths.len()));
        }
        if let Some(layer) = self.widths.iter().position(|&n| n == 0) {
            return Err(ModelError::ZeroWidth { layer });
        }
        if let Some(l) = self.widths.iter().position(|&n| n > MAX_WIDTH) {
            return Err(ModelError::Invalid {
                field: format!("network.widths[{l}]"),
                message: format!("must be at most {MAX_WIDTH}, got {}", self.widths[l]),
            });
        }
        if self.activations.len() != self.widths.len() {
            return Err(ModelError::ActivationCount {
                expected: self.widths.len(),
                got: self.activations.len(),
            });
        }
        for (l, act) in self.activations.iter().enumerate() {
            if let Activation::LeakyRelu { slope } = act {
                if !slope.is_finite() {
                    return Err(ModelError::Invalid {
                        field: format!("network.activations[{l}].slope"),
                        message: format!("{slope} is not finite; use e.g. 0.01"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Number of weight layers `L`.
    pub fn depth(&self) -> usize {
        self.widths.len() - 1
    }

    /// One-line description: `widths [20, 20] activations [linear, tanh] bias on loss mse`.
    pub fn describe(&self) -> String {
        let acts: Vec<String> = self.activations.iter().map(|a| String::from(*a)).collect();
        format!(
            "widths {:?} activations [{}] bias {} loss {}",
            self.widths,
            acts.join(", "),
            if self.bias { "on" } else { "off" },
            self.loss.name()
        )
    }

    /// Presynaptic vectors `a_l(V) = [σ_l(V); 1]` of every column of `V` (columns are
    /// replicas; used by the continuous engine).
    pub fn presyn_batch(&self, l: usize, v: &DMatrix<f64>) -> DMatrix<f64> {
        let mut a = DMatrix::zeros(self.presyn_len(l), v.ncols());
        self.presyn_into(l, &v.as_view(), &mut a.as_view_mut());
        a
    }

    /// [`Architecture::presyn_batch`] into a caller's buffer (`presyn_len(l) × V.ncols()`), so
    /// that the vector field allocates nothing per evaluation.
    /// Columns run in parallel on the rayon pool when there are many entries (each column's
    /// values do not depend on the split).
    pub fn presyn_into(&self, l: usize, v: &DMatrixView<f64>, a: &mut DMatrixViewMut<f64>) {
        use rayon::prelude::*;
        let act = self.activations[l];
        let (n, bias) = (v.nrows(), self.bias);
        let column = |(mut dst, src): (DVectorViewMut<f64>, DVectorView<f64>)| {
            if dst.strides().0 == 1 && src.strides().0 == 1 {
                // SAFETY: unit row strides (checked): the column's first n entries are
                // contiguous in both views, which do not alias (dst is borrowed mutably).
                let (d, s) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(dst.as_mut_ptr(), n),
                        std::slice::from_raw_parts(src.as_ptr(), n),
                    )
                };
                act.apply_into(s, d);
            } else {
                for i in 0..n {
                    dst[i] = act.apply(src[i]);
                }
            }
            if bias {
                dst[n] = 1.0;
            }
        };
        if act == Activation::Linear || n * v.ncols() < 4096 {
            a.column_iter_mut().zip(v.column_iter()).for_each(column);
        } else {
            a.par_column_iter_mut()
                .zip(v.par_column_iter())
                .for_each(column);
        }
    }

    /// Length of `a_l`: `n_l + 1` with the bias unit, `n_l` without.
    pub fn presyn_len(&self, l: usize) -> usize {
        self.widths[l].saturating_add(usize::from(self.bias))
    }
}

/// A network with its encoders `W_1..=W_L` and decoders `Ω_2..=Ω_L`.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    arch: Architecture,
    /// `W_l` stored at index `l − 1`.
    encoders: Vec<DMatrix<f64>>,
    /// `Ω_l` stored at index `l − 2`.
    decoders: Vec<DMatrix<f64>>,
}

/// All quantities of one forward pass: `h_l` and `a_l = a_l(h_l)` for `l = 0..=L`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardPass {
    /// `h_0 = x, h_1, …, h_L`.
    pub h: Vec<DVector<f64>>,
    /// `a_l(h_l)`, `l = 0..=L`.
    pub a: Vec<DVector<f64>>,
}

impl ForwardPass {
    /// The output `h_L`.
    pub fn output(&self) -> &DVector<f64> {
        self.h.last().expect("a network has at least two layers")
    }
}

/// Draws a `rows × cols` matrix with i.i.d. `N(0, std²)` entries.
pub fn gaussian_matrix(rows: usize, cols: usize, std: f64, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| {
        let z: f64 = StandardNormal.sample(rng);
        std * z
    })
}

/// A `rows × cols` matrix with orthonormal rows or columns (whichever are fewer), times `gain`.
pub fn orthogonal_matrix(
    rows: usize,
    cols: usize,
    gain: f64,
    rng: &mut ChaCha8Rng,
) -> DMatrix<f64> {
    let tall = rows >= cols;
    let (r, c) = if tall { (rows, cols) } else { (cols, rows) };
    let g = gaussian_matrix(r, c, 1.0, rng);
    let qr = g.qr();
    let mut q = qr.q(); // r × c with orthonormal columns
                        // sign fix so the distribution is Haar (diag of R positive)
    let rmat = qr.r();
    for j in 0..c {
        if rmat[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    let q = if tall { q } else { q.transpose() };
    q * gain
}

impl Network {
    /// Builds a network with encoders and decoders drawn from `init` with the given seed.
    /// Decoders use the same scheme with gain 1.
    pub fn new(arch: Architecture, init: Init, seed: u64) -> Result<Self, ModelError> {
        arch.validate()?;
        let gain = match init {
            Init::Gaussian { gain } | Init::Orthogonal { gain } => gain,
        };
        if !gain.is_finite() {
            return Err(ModelError::Invalid {
                field: "init.gain".into(),
                message: format!("{gain} is not finite"),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let draw = |rows: usize, fan_in: usize, gain: f64, rng: &mut ChaCha8Rng| match init {
            Init::Gaussian { .. } => {
                gaussian_matrix(rows, fan_in, gain / (fan_in as f64).sqrt(), rng)
            }
            Init::Orthogonal { .. } => orthogonal_matrix(rows, fan_in, gain, rng),
        };
        let b = usize::from(arch.bias);
        let mut encoders = Vec::with_capacity(arch.depth());
        for l in 1..=arch.depth() {
            let (rows, fan_in) = (arch.widths[l], arch.widths[l - 1]);
            let mut w = DMatrix::zeros(rows, fan_in + b);
            w.columns_mut(0, fan_in)
                .copy_from(&draw(rows, fan_in, gain, &mut rng));
            encoders.push(w);
        }
        let mut decoders = Vec::with_capacity(arch.depth().saturating_sub(1));
        for l in 2..=arch.depth() {
            let (rows, fan_in) = (arch.widths[l - 1], arch.widths[l]);
            let mut om = DMatrix::zeros(rows, fan_in + b);
            om.columns_mut(0, fan_in)
                .copy_from(&draw(rows, fan_in, 1.0, &mut rng));
            decoders.push(om);
        }
        Ok(Network {
            arch,
            encoders,
            decoders,
        })
    }

    /// Builds a network from explicit matrices, checking every shape and value.
    pub fn from_parts(
        arch: Architecture,
        encoders: Vec<DMatrix<f64>>,
        decoders: Vec<DMatrix<f64>>,
    ) -> Result<Self, ModelError> {
        arch.validate()?;
        let depth = arch.depth();
        if encoders.len() != depth {
            return Err(ModelError::Invalid {
                field: "encoders".into(),
                message: format!("expected {depth} matrices W_1..W_L, got {}", encoders.len()),
            });
        }
        if decoders.len() != depth - 1 {
            return Err(ModelError::Invalid {
                field: "decoders".into(),
                message: format!(
                    "expected {} matrices Ω_2..Ω_L, got {}",
                    depth - 1,
                    decoders.len()
                ),
            });
        }
        let net = Network {
            arch,
            encoders,
            decoders,
        };
        for l in 1..=depth {
            net.check_matrix(
                &format!("encoders[{}] (W_{l})", l - 1),
                net.w(l),
                net.arch.widths[l],
                net.arch.presyn_len(l - 1),
            )?;
        }
        for l in 2..=depth {
            net.check_matrix(
                &format!("decoders[{}] (Ω_{l})", l - 2),
                net.omega(l),
                net.arch.widths[l - 1],
                net.arch.presyn_len(l),
            )?;
        }
        Ok(net)
    }

    fn check_matrix(
        &self,
        what: &str,
        m: &DMatrix<f64>,
        rows: usize,
        cols: usize,
    ) -> Result<(), ModelError> {
        if m.nrows() != rows || m.ncols() != cols {
            return Err(ModelError::Shape {
                what: what.to_string(),
                rows,
                cols,
                got_rows: m.nrows(),
                got_cols: m.ncols(),
                widths: self.arch.widths.clone(),
                bias: self.arch.bias,
            });
        }
        check_finite(what, m)
    }

    /// The architecture.
    pub fn arch(&self) -> &Architecture {
        &self.arch
    }

    /// Number of weight layers `L`.
    pub fn depth(&self) -> usize {
        self.arch.depth()
    }

    /// Width `n_l`.
    pub fn width(&self, l: usize) -> usize {
        self.arch.widths[l]
    }

    /// Encoder weights `W_l`, `l = 1..=L`.
    pub fn w(&self, l: usize) -> &DMatrix<f64> {
        &self.encoders[l - 1]
    }

    /// Mutable encoder weights `W_l`.
    pub fn w_mut(&mut self, l: usize) -> &mut DMatrix<f64> {
        &mut self.encoders[l - 1]
    }

    /// Decoder weights `Ω_l`, `l = 2..=L`.
    pub fn omega(&self, l: usize) -> &DMatrix<f64> {
        &self.decoders[l - 2]
    }

    /// Mutable decoder weights `Ω_l`.
    pub fn omega_mut(&mut self, l: usize) -> &mut DMatrix<f64> {
        &mut self.decoders[l - 2]
    }

    /// All encoders `W_1..=W_L`.
    pub fn encoders(&self) -> &[DMatrix<f64>] {
        &self.encoders
    }

    /// All decoders `Ω_2..=Ω_L`.
    pub fn decoders(&self) -> &[DMatrix<f64>] {
        &self.decoders
    }

    /// Presynaptic vector `a_l(v) = [σ_l(v); 1]` (docs/MODEL.md §1).
    pub fn presyn(&self, l: usize, v: &DVector<f64>) -> DVector<f64> {
        let act = self.arch.activations[l];
        let n = v.len();
        let mut a = DVector::from_element(n + usize::from(self.arch.bias), 1.0);
        act.apply_into(v.as_slice(), &mut a.as_mut_slice()[..n]);
        a
    }

    /// Encoder `f_l(u) = W_l a_{l−1}(u)` (Sec. 2).
    pub fn encode(&self, l: usize, u: &DVector<f64>) -> DVector<f64> {
        self.w(l) * self.presyn(l - 1, u)
    }

    /// Decoder `g_l(v) = Ω_l a_l(v)` (Sec. 2, 10.1).
    pub fn decode(&self, l: usize, v: &DVector<f64>) -> DVector<f64> {
        self.omega(l) * self.presyn(l, v)
    }

    /// Forward pass `h_l = f_l(h_{l−1})`, `h_0 = x`.
    pub fn forward(&self, x: &DVector<f64>) -> ForwardPass {
        let mut h = Vec::with_capacity(self.depth() + 1);
        let mut a = Vec::with_capacity(self.depth() + 1);
        h.push(x.clone());
        a.push(self.presyn(0, x));
        for l in 1..=self.depth() {
            let hl = self.w(l) * &a[l - 1];
            a.push(self.presyn(l, &hl));
            h.push(hl);
        }
        ForwardPass { h, a }
    }

    /// Checked forward pass: the input length must match `n_0`.
    pub fn try_forward(&self, x: &DVector<f64>) -> Result<ForwardPass, ModelError> {
        if x.len() != self.width(0) {
            return Err(ModelError::InputLength {
                got: x.len(),
                expected: self.width(0),
            });
        }
        Ok(self.forward(x))
    }

    /// Output `h_L` of the forward pass.
    pub fn predict(&self, x: &DVector<f64>) -> DVector<f64> {
        self.forward(x).h.pop().expect("at least two layers")
    }

    /// Loss of the output.
    pub fn loss(&self, x: &DVector<f64>, y: &DVector<f64>) -> f64 {
        self.arch.loss.value(&self.predict(x), y)
    }

    /// Layer Jacobian `f_l'(h_{l−1}) = W_l[:, :n] · diag(σ'_{l−1}(h_{l−1}))` (Sec. 4).
    pub fn encoder_jacobian(&self, l: usize, h_prev: &DVector<f64>) -> DMatrix<f64> {
        let n = self.width(l - 1);
        let act = self.arch.activations[l - 1];
        let mut j = self.w(l).columns(0, n).into_owned();
        for c in 0..n {
            let s = act.derivative(h_prev[c]);
            j.column_mut(c).scale_mut(s);
        }
        j
    }

    /// Decoder Jacobian `g_l'(v) = Ω_l[:, :n_l] · diag(σ'_l(v))`.
    pub fn decoder_jacobian(&self, l: usize, v: &DVector<f64>) -> DMatrix<f64> {
        let n = self.width(l);
        let act = self.arch.activations[l];
        let mut j = self.omega(l).columns(0, n).into_owned();
        for c in 0..n {
            j.column_mut(c).scale_mut(act.derivative(v[c]));
        }
        j
    }

    /// `J_l = ∂h_L/∂h_l = Π_{k=L}^{l+1} f_k'(h_{k−1})` for `l = 0..=L` (Sec. 4); `J_L = I`.
    pub fn output_jacobians(&self, fwd: &ForwardPass) -> Vec<DMatrix<f64>> {
        let depth = self.depth();
        let mut jac = vec![DMatrix::zeros(0, 0); depth + 1];
        jac[depth] = DMatrix::identity(self.width(depth), self.width(depth));
        for l in (0..depth).rev() {
            jac[l] = &jac[l + 1] * self.encoder_jacobian(l + 1, &fwd.h[l]);
        }
        jac
    }

    /// Total number of encoder parameters.
    pub fn num_encoder_params(&self) -> usize {
        self.encoders.iter().map(|w| w.len()).sum()
    }
}

/// Errors if any entry of `m` is not finite, naming `what[row][col]`.
pub fn check_finite(what: &str, m: &DMatrix<f64>) -> Result<(), ModelError> {
    for r in 0..m.nrows() {
        for c in 0..m.ncols() {
            let value = m[(r, c)];
            if !value.is_finite() {
                return Err(ModelError::NonFinite {
                    what: what.to_string(),
                    row: r,
                    col: c,
                    value,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_net(act: Activation, bias: bool) -> Network {
        let mut arch = Architecture::new(&[3, 4, 4, 2], act, Loss::Mse).unwrap();
        arch.bias = bias;
        Network::new(arch, Init::Gaussian { gain: 1.2 }, 7).unwrap()
    }

    #[test]
    fn rejects_bad_widths() {
        assert_eq!(
            Architecture::new(&[3, 0, 2], Activation::Tanh, Loss::Mse).unwrap_err(),
            ModelError::ZeroWidth { layer: 1 }
        );
        assert_eq!(
            Architecture::new(&[3], Activation::Tanh, Loss::Mse).unwrap_err(),
            ModelError::TooFewLayers(1)
        );
    }

    #[test]
    fn shapes_follow_the_model_card() {
        for bias in [true, false] {
            let net = small_net(Activation::Tanh, bias);
            let b = usize::from(bias);
            assert_eq!(net.w(1).shape(), (4, 3 + b));
            assert_eq!(net.w(3).shape(), (2, 4 + b));
            assert_eq!(net.omega(2).shape(), (4, 4 + b));
            assert_eq!(net.omega(3).shape(), (4, 2 + b));
            assert!(net.try_forward(&DVector::zeros(2)).is_err());
        }
    }

    #[test]
    fn output_jacobian_matches_finite_differences() {
        for act in [Activation::Tanh, Activation::Softplus] {
            let net = small_net(act, true);
            let x = DVector::from_vec(vec![0.3, -0.5, 0.8]);
            let fwd = net.forward(&x);
            let jac = net.output_jacobians(&fwd);
            for l in 0..net.depth() {
                for k in 0..net.width(l) {
                    let eps = 1e-6;
                    let mut hp = fwd.h[l].clone();
                    let mut hm = fwd.h[l].clone();
                    hp[k] += eps;
                    hm[k] -= eps;
                    let (mut op, mut om) = (hp, hm);
                    for m in l + 1..=net.depth() {
                        op = net.encode(m, &op);
                        om = net.encode(m, &om);
                    }
                    let fd = (op - om) / (2.0 * eps);
                    assert!((fd - jac[l].column(k)).norm() < 1e-7);
                }
            }
        }
    }

    #[test]
    fn orthogonal_init_has_orthonormal_rows_or_columns() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let q = orthogonal_matrix(5, 3, 2.0, &mut rng);
        assert!((q.transpose() * &q - DMatrix::identity(3, 3) * 4.0).norm() < 1e-12);
        let q = orthogonal_matrix(3, 5, 1.0, &mut rng);
        assert!((&q * q.transpose() - DMatrix::identity(3, 3)).norm() < 1e-12);
    }

    #[test]
    fn softmax_ce_gradient_matches_finite_differences() {
        let h = DVector::from_vec(vec![0.2, -1.0, 2.5]);
        let y = DVector::from_vec(vec![0.0, 1.0, 0.0]);
        let g = Loss::SoftmaxCe.gradient(&h, &y);
        for i in 0..3 {
            let mut hp = h.clone();
            let mut hm = h.clone();
            hp[i] += 1e-6;
            hm[i] -= 1e-6;
            let fd = (Loss::SoftmaxCe.value(&hp, &y) - Loss::SoftmaxCe.value(&hm, &y)) / 2e-6;
            assert!((fd - g[i]).abs() < 1e-8);
        }
    }
}
