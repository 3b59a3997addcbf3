//! Training with the discrete reference algorithms (docs/MODEL.md §3–§4) on a built-in task,
//! online (`batch_size = 1`) or in mini-batches, with evaluation on held-out data.
//!
//! Per mini-batch of `B` examples (the columns of `X`, `Y`): one forward pass
//! `H_l = W_l A_{l−1}` (Sec. 2); for target-propagation algorithms the decoders are updated
//! first, on the regular auto-encoder loss (Sec. 9, 10.2) or on the difference reconstruction
//! loss of Meulemans et al. (2020), then targets are computed with the updated decoders from
//! `d_L = −β∇ℓ` (Sec. 3) and the encoders move along their update at unit rate `u_l`:
//!
//! * `bp`: `u_l = −∂ℓ/∂W_l`;
//! * `dtp` (Lee et al. 2015): difference targets, `u_l = (τ_l − h_l) a_{l−1}ᵀ`;
//! * `dtp1` (Sec. 3): `u_l = s_l (τ_l − h_l) a_{l−1}ᵀ/‖a_{l−1}‖²`, targets from any
//!   [`Relaxation`], `s_l` the influence scale of Sec. 8 or 1;
//!
//! with `ΔW_l = r_l u_l` (SGD, `r_l` the layer's `lr` or `eta`) or Adam's step of size `r_l`
//! on the gradient `−u_l`.
//!
//! Rates are per example: with SGD a mini-batch's change is the sum of its examples' changes
//! (Adam takes their mean as its gradient), each as one matrix–matrix product per layer
//! ([`crate::discrete::updates`]). The results are those of processing the examples one by
//! one, up to rounding: each example relaxes on its own, and a diverging one is reported as
//! the first that diverged.

use crate::activation::Activation;
use crate::checkpoint::{
    records, Checkpointing, ExampleOrder, ModelCheckpoint, ModelState, RngState,
};
use crate::data::{example_order, Dataset, EpochSampler, Example, Task};
use crate::discrete::batch::{loss_sum, stack, BatchPass};
use crate::discrete::targets::{
    contraction_estimate, influence_scales_batch, output_displacements, relax_batch, BatchTargets,
    Relaxation,
};
use crate::discrete::updates::{
    bp_gradients, corrupted, decoder_noise, decoder_update, difference_probe, dtp1_update,
    dtp_update, Adam, AdamSettings,
};
use crate::error::{check_at_least, check_positive, check_range, ConfigError};
use crate::metrics::{EvaluationPlan, TestScope};
use crate::metrics::{LayerMeans, MetricsRow, RunningMean};
use crate::network::{Init, Network, PerLayer};
use crate::scenario::Scenario;
use crate::weights::WeightsFile;
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How a reference turns its update into a weight change (docs/MODEL.md §4).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// The update itself, scaled by the layer's rate: `W_l ← W_l + lr_l u_l`.
    #[default]
    Sgd,
    /// Adam (bias-corrected; β₁ 0.9, β₂ 0.999, ε 10⁻⁸ unless the reference's `adam` says
    /// otherwise) with step size `lr_l`, fed the gradient `g_l = −u_l` of the algorithm's
    /// unit-rate update `u_l`.
    Adam,
}

/// The loss the decoders descend (docs/MODEL.md §4).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DecoderLoss {
    /// The regular auto-encoder loss `½‖h_{l−1} − g_l(h_l)‖²` (Sec. 9, 10.2), with the noise
    /// of Lee et al. when `noise > 0`.
    #[default]
    Regular,
    /// The difference reconstruction loss of Meulemans et al. (2020), one layer deep:
    /// `(1/2σ²)‖g_l(f_l(h_{l−1} + σξ)) − g_l(h_l) − σξ‖²`, which trains `g_l′f_l′ ≈ I`, the
    /// contraction condition of the decoder-output iteration (Sec. 6.2).
    DifferenceReconstruction,
}

/// Decoder training (Sec. 9, 10.2; docs/MODEL.md §4): a normalised step at `rate` on the
/// `loss`, with noise `noise` and ridge `ridge`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderTraining {
    /// `η_Ω` of `ΔΩ_l = η_Ω (x − Ω_l a) aᵀ/‖a‖²` (0: decoders stay fixed).
    pub rate: f64,
    /// Standard deviation σ of the noise: for `regular`, the noise-corrupted variant of Lee
    /// et al. (0: off); for `difference_reconstruction`, the probe `σξ` (must be > 0).
    pub noise: f64,
    /// `regular` (auto-encoder) or `difference_reconstruction` (Meulemans et al. 2020).
    pub loss: DecoderLoss,
    /// Ridge `r_Ω` of the loss, `+ ½r_Ω‖Ω_l‖²`: the step becomes
    /// `η_Ω[(x − Ω_l a)aᵀ − r Ω_l]/(‖a‖² + r)` with `r = r_Ω` (regular) or `r_Ω σ²`
    /// (difference reconstruction, whose fixed point is then the damped inverse).
    pub ridge: f64,
}

impl Default for DecoderTraining {
    fn default() -> Self {
        DecoderTraining {
            rate: 0.05,
            noise: 0.0,
            loss: DecoderLoss::Regular,
            ridge: 0.0,
        }
    }
}

/// A discrete learning algorithm with its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Algorithm {
    /// Back-propagation.
    Bp {
        /// `sgd` or `adam`.
        #[serde(default)]
        optimizer: Optimizer,
        /// Learning rate, one number or one per layer `[lr_1, …, lr_L]`
        /// (`ΔW_l = −lr_l ∂ℓ/∂W_l` for SGD; Adam's step size).
        lr: PerLayer,
    },
    /// Difference target propagation of Lee et al. (2015).
    Dtp {
        /// Output nudging `d_L = −β∇ℓ`.
        beta: f64,
        /// Learning rate, one number or one per layer: `ΔW_l = lr_l (τ_l − h_l) a_{l−1}ᵀ`
        /// (SGD; Adam's step size).
        lr: PerLayer,
        /// `sgd` or `adam` (Adam fed `−(τ_l − h_l) a_{l−1}ᵀ`).
        #[serde(default)]
        optimizer: Optimizer,
        /// Decoder training.
        #[serde(default)]
        decoder: DecoderTraining,
    },
    /// DTP1 of Sec. 3 with targets from `relaxation`.
    Dtp1 {
        /// Output nudging `d_L = −β∇ℓ`.
        beta: f64,
        /// Rate, one number or one per layer:
        /// `ΔW_l = η_l s_l (τ_l − h_l) a_{l−1}ᵀ/‖a_{l−1}‖²` (SGD; Adam's step size).
        #[serde(default = "one")]
        eta: PerLayer,
        /// `sgd` or `adam` (Adam fed `−s_l (τ_l − h_l) a_{l−1}ᵀ/‖a_{l−1}‖²`).
        #[serde(default)]
        optimizer: Optimizer,
        /// How the hidden targets are computed.
        #[serde(default)]
        relaxation: Relaxation,
        /// Scale each layer by `s_l = ‖τ_L − h_L‖²/‖τ_l − h_l‖²` (Sec. 8).
        #[serde(default)]
        influence: bool,
        /// Decoder training.
        #[serde(default)]
        decoder: DecoderTraining,
    },
}

fn one() -> PerLayer {
    PerLayer::All(1.0)
}

impl Algorithm {
    /// Whether the algorithm uses (and trains) decoders.
    pub fn uses_decoders(&self) -> bool {
        !matches!(self, Algorithm::Bp { .. })
    }

    /// The optimiser that turns the update into a weight change.
    pub fn optimizer(&self) -> Optimizer {
        match self {
            Algorithm::Bp { optimizer, .. }
            | Algorithm::Dtp { optimizer, .. }
            | Algorithm::Dtp1 { optimizer, .. } => *optimizer,
        }
    }

    /// The per-layer rate: `lr` of BP and DTP, `eta` of DTP1.
    pub fn rates(&self) -> &PerLayer {
        match self {
            Algorithm::Bp { lr, .. } | Algorithm::Dtp { lr, .. } => lr,
            Algorithm::Dtp1 { eta, .. } => eta,
        }
    }

    /// The decoder training (none for BP).
    pub fn decoder(&self) -> Option<&DecoderTraining> {
        match self {
            Algorithm::Bp { .. } => None,
            Algorithm::Dtp { decoder, .. } | Algorithm::Dtp1 { decoder, .. } => Some(decoder),
        }
    }

    /// Checks every value for a network of `depth` weight layers.
    fn validate(&self, path: &str, depth: usize) -> Result<(), ConfigError> {
        let rate_field = match self {
            Algorithm::Dtp1 { .. } => "eta",
            _ => "lr",
        };
        self.rates()
            .validate_non_negative(&format!("{path}.{rate_field}"), depth)?;
        match self {
            Algorithm::Bp { .. } => Ok(()),
            Algorithm::Dtp { beta, decoder, .. } => {
                check_positive(&format!("{path}.beta"), *beta)?;
                decoder.validate(&format!("{path}.decoder"))
            }
            Algorithm::Dtp1 {
                beta,
                relaxation,
                decoder,
                ..
            } => {
                check_positive(&format!("{path}.beta"), *beta)?;
                check_at_least(&format!("{path}.relaxation.leak"), relaxation.leak, 0.0)?;
                check_at_least(
                    &format!("{path}.relaxation.tolerance"),
                    relaxation.tolerance,
                    0.0,
                )?;
                if relaxation.iterations == 0 {
                    return Err(ConfigError::new(
                        format!("{path}.relaxation.iterations"),
                        "must be at least 1",
                    ));
                }
                decoder.validate(&format!("{path}.decoder"))
            }
        }
    }
}

impl DecoderTraining {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        check_at_least(&format!("{path}.rate"), self.rate, 0.0)?;
        check_at_least(&format!("{path}.noise"), self.noise, 0.0)?;
        check_at_least(&format!("{path}.ridge"), self.ridge, 0.0)?;
        if self.loss == DecoderLoss::DifferenceReconstruction && self.noise <= 0.0 {
            return Err(ConfigError::new(
                format!("{path}.noise"),
                "must be > 0 with \"loss\": \"difference_reconstruction\" (the loss compares the decoder's reconstruction of a probe σξ with the probe itself); give the probe's standard deviation σ, e.g. 0.1",
            ));
        }
        Ok(())
    }
}

/// A named algorithm in a comparison (the name labels CSV rows, plot lines and files).
/// Unknown keys are rejected by the flattened [`Algorithm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NamedAlgorithm {
    /// Labels CSV rows, plot lines and the weights file (letters, digits, `_`, `-`).
    pub name: String,
    /// The algorithm and its hyper-parameters.
    #[serde(flatten)]
    pub algorithm: Algorithm,
    /// How the encoders' rate (`lr` or `eta`) changes over the run (default: constant).
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
    /// Adam's decay rates and `ε` (only with `"optimizer": "adam"`; default β₁ 0.9, β₂ 0.999,
    /// ε 10⁻⁸).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adam: Option<AdamSettings>,
}

impl AdamSettings {
    fn validate(&self, path: &str, optimizer: Optimizer) -> Result<(), ConfigError> {
        if optimizer != Optimizer::Adam {
            return Err(ConfigError::new(
                path,
                "is given but the optimizer is sgd: set \"optimizer\": \"adam\" or remove \"adam\"",
            ));
        }
        let decay = |field: &str, v: f64| {
            check_range(
                &format!("{path}.{field}"),
                v,
                (0.0, false),
                1.0 - f64::EPSILON,
                " (a decay rate: 1 would never forget)",
            )
        };
        decay("beta1", self.beta1)?;
        decay("beta2", self.beta2)?;
        check_range(
            &format!("{path}.eps"),
            self.eps,
            (0.0, true),
            1.0,
            " (0 would divide by zero wherever a gradient vanishes, e.g. for a constant input pixel)",
        )
    }
}

/// A factor on the encoders' rates over the run, applied to every layer's step (SGD's rate,
/// Adam's step size); decoders keep theirs (docs/MODEL.md §4). `t` counts learning trials from
/// 0, `T` is their number and `e(t) = t·B/n_train` the epochs completed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum LrSchedule {
    /// Factor 1 throughout.
    #[default]
    Constant,
    /// Cosine annealing: `floor + (1 − floor)·½(1 + cos(π t/T))`, from 1 to `floor`.
    Cosine {
        /// The factor reached at the end of the run, in `[0, 1]`.
        #[serde(default)]
        floor: f64,
    },
    /// `per_epoch^{e(t)}`: the rate is multiplied by `per_epoch` over each epoch, smoothly.
    Exponential {
        /// The factor per epoch, in `(0, 1]`.
        per_epoch: f64,
    },
}

impl LrSchedule {
    /// Whether the factor is 1 throughout.
    pub fn is_constant(&self) -> bool {
        *self == LrSchedule::Constant
    }

    /// The factor of learning trial `trial` of `trials`, with `epochs_per_trial = B/n_train`.
    ///
    /// ```
    /// use dtpsim::discrete::train::LrSchedule;
    /// let cosine = LrSchedule::Cosine { floor: 0.1 };
    /// assert_eq!(cosine.factor(0, 100, 0.01), 1.0);
    /// assert!((cosine.factor(50, 100, 0.01) - 0.55).abs() < 1e-15);
    /// let exponential = LrSchedule::Exponential { per_epoch: 0.5 };
    /// assert!((exponential.factor(200, 1000, 0.01) - 0.25).abs() < 1e-15);
    /// ```
    pub fn factor(&self, trial: usize, trials: usize, epochs_per_trial: f64) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { floor } => {
                let phase = std::f64::consts::PI * trial as f64 / trials.max(1) as f64;
                floor + (1.0 - floor) * 0.5 * (1.0 + phase.cos())
            }
            LrSchedule::Exponential { per_epoch } => {
                per_epoch.powf(trial as f64 * epochs_per_trial)
            }
        }
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Cosine { floor } => {
                check_range(&format!("{path}.floor"), floor, (0.0, false), 1.0, "")
            }
            LrSchedule::Exponential { per_epoch } => check_range(
                &format!("{path}.per_epoch"),
                per_epoch,
                (0.0, true),
                1.0,
                " (the factor per epoch)",
            ),
        }
    }
}

/// Student network settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Widths `n_0..=n_L`; must match the task's input and output widths.
    pub widths: Vec<usize>,
    /// Activation `σ_l` of layers `1..=L` (σ_0 is linear).
    pub activation: Activation,
    /// `σ_L`, through which the top decoder `g_L` reads the output `h_L` (the output itself is
    /// linear): `null` is `activation`. `linear` suits a softmax output, whose logits a tanh
    /// would saturate (docs/MODEL.md §1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_activation: Option<Activation>,
    /// Bias unit in `a_l`.
    pub bias: bool,
    /// Initialisation of encoders (decoders use gain 1).
    pub init: Init,
    /// Start from a weights JSON file (e.g. `weights_bp.json` of an earlier run) instead of
    /// `init`; its architecture must match `widths`, `activation`, `bias` and the task's loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<std::path::PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            widths: vec![20, 20, 20, 20],
            activation: Activation::Tanh,
            output_activation: None,
            bias: true,
            init: Init::Gaussian { gain: 1.0 },
            weights: None,
        }
    }
}

pub use crate::network::MAX_WIDTH;

/// Every width in `1..=MAX_WIDTH`.
fn check_widths(field: &str, widths: &[usize]) -> Result<(), ConfigError> {
    if let Some(i) = widths.iter().position(|&n| n == 0 || n > MAX_WIDTH) {
        return Err(ConfigError::new(
            format!("{field}[{i}]"),
            format!("must be in 1..={MAX_WIDTH}, got {}", widths[i]),
        ));
    }
    Ok(())
}

/// Checks a task and a student network against each other (shared by every configuration
/// that has both); errors name the JSON path and the fix.
pub fn validate_task_and_network(task: &Task, network: &NetworkConfig) -> Result<(), ConfigError> {
    if let Some(path) = &network.weights {
        if !path.is_file() {
            return Err(ConfigError::new(
                "network.weights",
                format!("{}: no such file; give the path (relative to the scenario file) of a weights JSON written by dtpsim, e.g. out/quickstart/weights_continuous.json", path.display()),
            ));
        }
    }
    let widths = &network.widths;
    if widths.len() < 2 {
        return Err(ConfigError::new(
            "network.widths",
            format!(
                "need at least 2 layers (input and output), got {}",
                widths.len()
            ),
        ));
    }
    check_widths("network.widths", widths)?;
    match task {
        Task::TeacherStudent {
            widths: tw, gain, ..
        } => {
            if tw.len() < 2 {
                return Err(ConfigError::new("task.widths", "need at least 2 layers"));
            }
            check_widths("task.widths", tw)?;
            check_range(
                "task.gain",
                *gain,
                (0.0, true),
                100.0,
                " (the teacher's weights are N(0, gain²/fan_in); 1–3 is the useful range)",
            )?;
        }
        Task::Clusters {
            dim,
            classes,
            separation,
        } => {
            if *dim == 0 || *dim > MAX_WIDTH {
                return Err(ConfigError::new(
                    "task.dim",
                    format!("must be in 1..={MAX_WIDTH}, got {dim}"),
                ));
            }
            if *classes < 2 || *classes > MAX_WIDTH {
                return Err(ConfigError::new(
                    "task.classes",
                    format!("must be in 2..={MAX_WIDTH}, got {classes}"),
                ));
            }
            check_range("task.separation", *separation, (0.0, false), 1e6, "")?;
        }
        Task::Csv {
            train,
            test,
            inputs,
            outputs,
            ..
        } => {
            for (field, n) in [("task.inputs", inputs), ("task.outputs", outputs)] {
                if *n == 0 || *n > MAX_WIDTH {
                    return Err(ConfigError::new(
                        field,
                        format!("must be in 1..={MAX_WIDTH}, got {n}"),
                    ));
                }
            }
            for (field, path) in [("task.train", train), ("task.test", test)] {
                if !path.is_file() {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "{}: no such file; give a path relative to the scenario file",
                            path.display()
                        ),
                    ));
                }
            }
        }
        Task::Idx { .. } => task.check_idx()?,
    }
    let (n_in, n_out) = task.io_widths();
    if widths[0] != n_in {
        return Err(ConfigError::new(
            "network.widths[0]",
            format!(
                "is {}, but the task's inputs have {n_in} dimensions; make them equal",
                widths[0]
            ),
        ));
    }
    let last = widths.len() - 1;
    if widths[last] != n_out {
        return Err(ConfigError::new(
            format!("network.widths[{last}]"),
            format!(
                "is {}, but the task's outputs have {n_out} dimensions; make them equal",
                widths[last]
            ),
        ));
    }
    let gain = match network.init {
        Init::Gaussian { gain } | Init::Orthogonal { gain } => gain,
    };
    check_range("network.init.gain", gain, (0.0, false), 100.0, "")?;
    if let Activation::LeakyRelu { slope } = network.activation {
        check_range("network.activation.slope", slope, (0.0, false), 1e3, "")?;
    }
    if let Some(Activation::LeakyRelu { slope }) = network.output_activation {
        check_range(
            "network.output_activation.slope",
            slope,
            (0.0, false),
            1e3,
            "",
        )?;
    }
    Ok(())
}

/// Checks a list of named algorithms (non-empty, file-safe unique names, valid values) for a
/// network of `depth` weight layers.
pub fn validate_algorithms(
    algorithms: &[NamedAlgorithm],
    field: &str,
    depth: usize,
) -> Result<(), ConfigError> {
    if algorithms.is_empty() {
        return Err(ConfigError::new(
            field,
            "list at least one algorithm, e.g. {\"name\": \"bp\", \"kind\": \"bp\", \"lr\": 0.02}",
        ));
    }
    for (i, a) in algorithms.iter().enumerate() {
        let path = format!("{field}[{i}]");
        if a.name.is_empty()
            || !a
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::new(format!("{path}.name"), format!("\"{}\" must be non-empty and use only letters, digits, '_' and '-' (it names output files)", a.name)));
        }
        if algorithms[..i].iter().any(|b| b.name == a.name) {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!("\"{}\" is used twice; names must be unique", a.name),
            ));
        }
        a.algorithm.validate(&path, depth)?;
        a.lr_schedule.validate(&format!("{path}.lr_schedule"))?;
        if let Some(adam) = &a.adam {
            adam.validate(&format!("{path}.adam"), a.algorithm.optimizer())?;
        }
    }
    Ok(())
}

/// Result of training one algorithm. `error` is set when the run stopped early (divergence);
/// the rows before it are kept.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The reference's name.
    pub name: String,
    /// One row per evaluation.
    pub rows: Vec<MetricsRow>,
    /// The final weights (the last finite ones if the run stopped).
    pub network: Network,
    /// Why the run stopped early.
    pub error: Option<String>,
    /// Whether it stopped at a trial boundary on request ([`crate::interrupt`]).
    pub interrupted: bool,
}

/// Applies one decoder update summed over the mini-batch of `pass` (rates per example;
/// docs/MODEL.md §4) to `Ω_l`, `l = 2..=L`, all from the same `Ω`: the normalised ridge step
/// `ΔΩ_l = rate Σ_b [(x_b − Ω_l a_b) a_bᵀ − r Ω_l]/(‖a_b‖² + r)` ([`decoder_update`]), where
///
/// * `regular` (Sec. 9, 10.2): `x = h_{l−1}`, `a = a_l(h_l)`, `r = r_Ω`; with noise (Lee et
///   al.) `x = h̃ = h_{l−1} + σξ`, `a = a_l(f_l(h̃))`;
/// * `difference_reconstruction` (Meulemans et al. 2020): `x = σξ`,
///   `a = a_l(f_l(h_{l−1} + σξ)) − a_l(h_l)`, `r = r_Ω σ²`: the step on
///   `(1/2σ²)‖g_l(f_l(h_{l−1} + σξ)) − g_l(h_l) − σξ‖² + ½r_Ω‖Ω_l‖²` (σ = 0: no probe, no
///   step).
fn train_decoders(
    net: &mut Network,
    pass: &BatchPass,
    dec: &DecoderTraining,
    rng: &mut ChaCha8Rng,
) {
    if dec.rate == 0.0 || net.depth() < 2 {
        return;
    }
    // per example: the mini-batch's change is the sum of its examples'
    let rate = dec.rate;
    let noise = (dec.noise > 0.0).then(|| decoder_noise(net, pass.size(), rng));
    let deltas: Vec<DMatrix<f64>> = (2..=net.depth())
        .map(|l| {
            let omega = net.omega(l);
            match (dec.loss, &noise) {
                (DecoderLoss::Regular, None) => {
                    decoder_update(omega, &pass.h[l - 1], &pass.a[l], rate, dec.ridge)
                }
                (DecoderLoss::Regular, Some(xi)) => {
                    let (x, a) = corrupted(net, pass, l, &xi[l - 2], dec.noise);
                    decoder_update(omega, &x, &a, rate, dec.ridge)
                }
                (DecoderLoss::DifferenceReconstruction, Some(xi)) => {
                    let (probe, da) = difference_probe(net, pass, l, &xi[l - 2], dec.noise);
                    let ridge = dec.ridge * dec.noise * dec.noise;
                    decoder_update(omega, &probe, &da, rate, ridge)
                }
                (DecoderLoss::DifferenceReconstruction, None) => omega * 0.0,
            }
        })
        .collect();
    for (l, delta) in (2..).zip(deltas) {
        *net.omega_mut(l) += delta;
    }
}

/// The targets of a mini-batch for the encoder updates (Sec. 3), or the error of its first
/// example that failed: a non-finite output, or a diverging relaxation (docs/MODEL.md §3).
fn batch_targets(
    net: &Network,
    pass: &BatchPass,
    y: &DMatrix<f64>,
    beta: f64,
    relaxation: &Relaxation,
    trial: usize,
) -> Result<BatchTargets, String> {
    let d_out = output_displacements(net, pass, y, beta);
    let targets = relax_batch(net, pass, d_out, relaxation);
    if let Some(b) = pass.first_non_finite_output() {
        // example by example, an output is checked before that example relaxes
        if targets.as_ref().err().is_none_or(|e| e.example >= b) {
            return Err(non_finite_output(trial));
        }
    }
    targets.map_err(|e| format!("in trial {trial}: {}", e.error))
}

fn non_finite_output(trial: usize) -> String {
    format!("in trial {trial} the network output became non-finite; lower the learning rate")
}

/// The encoder changes `ΔW_1..ΔW_L` of one mini-batch (docs/MODEL.md §4), or the error
/// message. Each algorithm's update `u_l` at unit rate (BP: `−∂ℓ/∂W_l`; DTP:
/// `(τ_l − h_l) a_{l−1}ᵀ`; DTP1: `s_l (τ_l − h_l) a_{l−1}ᵀ/‖a_{l−1}‖²`) becomes
/// `ΔW_l = rate_l Σ_b u_{l,b}` (SGD: rates per example) or Adam's step of size `rate_l` on the
/// gradient `−⟨u_l⟩_b` (the batch mean). Adds
/// each example's measured contraction `α_l` of DTP1's iterated relaxation to `alpha`
/// (docs/MODEL.md §3). `trial` numbers the messages.
fn encoder_steps(
    net: &Network,
    algorithm: &Algorithm,
    pass: &BatchPass,
    y: &DMatrix<f64>,
    adam: Option<&mut Adam>,
    alpha: &mut LayerMeans,
    trial: usize,
) -> Result<Vec<DMatrix<f64>>, String> {
    let (depth, batch) = (net.depth(), pass.size() as f64);
    // SGD: rates are per example, so the mini-batch's change is the sum of its examples'
    // (the mean times B); Adam takes the mean unit-rate update as its gradient
    let (rates, per_example): (Vec<f64>, f64) = match &adam {
        None => (algorithm.rates().values(depth), 1.0),
        Some(_) => (vec![1.0; depth], 1.0 / batch),
    };
    let updates: Vec<DMatrix<f64>> = match algorithm {
        Algorithm::Bp { .. } => {
            if pass.first_non_finite_output().is_some() {
                return Err(non_finite_output(trial));
            }
            let grads = bp_gradients(net, pass, y);
            if let Some(adam) = adam {
                return Ok(adam.step(&grads));
            }
            // the gradients are batch means: times B, the sum of the examples' gradients
            grads
                .iter()
                .zip(&rates)
                .map(|(g, r)| g * (-r * batch))
                .collect()
        }
        Algorithm::Dtp { beta, .. } => {
            // Lee et al.: difference targets, u_l = (τ_l − h_l) a_{l−1}ᵀ
            let t = batch_targets(net, pass, y, *beta, &Relaxation::difference(), trial)?;
            let step = |l: usize| dtp_update(&t.d[l], &pass.a[l - 1], rates[l - 1] * per_example);
            (1..=depth).map(step).collect()
        }
        Algorithm::Dtp1 {
            beta,
            relaxation,
            influence,
            ..
        } => {
            // Sec. 3: u_l = s_l (τ_l − h_l) a_{l−1}ᵀ/‖a_{l−1}‖²
            let t = batch_targets(net, pass, y, *beta, relaxation, trial)?;
            // difference targets are computed, not iterated: no layer increments, no α
            for example in &t.layer_increments {
                for (l, inc) in example.iter().enumerate() {
                    alpha.add(l, contraction_estimate(inc));
                }
            }
            let mut scales = match influence {
                true => influence_scales_batch(&t.d),
                false => vec![vec![1.0; pass.size()]; depth + 1],
            };
            for (l, layer) in scales.iter_mut().enumerate().skip(1) {
                for s in layer {
                    *s *= rates[l - 1] * per_example;
                }
            }
            let step = |l: usize| dtp1_update(&t.d[l], &pass.a[l - 1], &scales[l]);
            (1..=depth).map(step).collect()
        }
    };
    Ok(match adam {
        Some(adam) => adam.step(&updates.iter().map(|u| -u).collect::<Vec<_>>()),
        None => updates,
    })
}

/// `W_l ← W_l + ΔW_l` for every layer, unless some updated `W_l` is not finite: then the
/// weights stay as they were (the last finite ones are saved with the partial metrics) and
/// the first such `l` is returned.
fn apply_encoder_steps(net: &mut Network, steps: &[DMatrix<f64>]) -> Result<(), usize> {
    let updated: Vec<DMatrix<f64>> = net
        .encoders()
        .iter()
        .zip(steps)
        .map(|(w, s)| w + s)
        .collect();
    if let Some(i) = updated
        .iter()
        .position(|w| w.iter().any(|v| !v.is_finite()))
    {
        return Err(i + 1);
    }
    for (l, w) in (1..).zip(updated) {
        *net.w_mut(l) = w;
    }
    Ok(())
}

/// Trains one algorithm on `data` with the scenario's schedule, seed and initial network
/// (the same as the continuous engine's): `warmup_trials` decoder-only updates (BP skips
/// them), then `trials` updates on mini-batches of `batch` examples drawn in shuffled epochs,
/// evaluated every `eval_every` trials. Calls `progress(trials_done, new_row)` after every trial
/// (warm-up included) and with every evaluation. Stops at a trial boundary when
/// [`crate::interrupt::requested`], and with an error when the test loss is not finite.
pub fn train_one(
    scenario: &Scenario,
    named: &NamedAlgorithm,
    data: &Dataset,
    progress: &(dyn Fn(usize, Option<&MetricsRow>) + Sync),
) -> Result<TrainOutcome, ConfigError> {
    train_with_checkpoints(scenario, named, data, progress, &Checkpointing::none())
}

/// [`train_one`] that takes checkpoints and may continue from one (see [`crate::checkpoint`]).
pub fn train_with_checkpoints(
    scenario: &Scenario,
    named: &NamedAlgorithm,
    data: &Dataset,
    progress: &(dyn Fn(usize, Option<&MetricsRow>) + Sync),
    checkpointing: &Checkpointing,
) -> Result<TrainOutcome, ConfigError> {
    let mut net = scenario.initial_network()?;
    let mut interrupted = false;
    let sched = &scenario.schedule;
    let seed = scenario.seed;
    let mut rng = example_order(seed);
    let mut sampler = EpochSampler::new(data.train.len());
    let next_batch = |sampler: &mut EpochSampler, rng: &mut ChaCha8Rng| -> Vec<&Example> {
        (0..sched.batch)
            .map(|_| &data.train[sampler.next_index(rng)])
            .collect()
    };
    let resume = checkpointing.resume.as_ref();
    let start = resume.map_or_else(Instant::now, |c| crate::checkpoint::started(c.wall_seconds));
    let algorithm = &named.algorithm;
    let decoder = algorithm.decoder().copied();
    if let (Some(dec), None) = (&decoder, resume) {
        let mut noise_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdec0);
        for k in 0..sched.warmup_trials {
            if crate::interrupt::requested() {
                interrupted = true;
                break;
            }
            let pass = net.forward_batch(stack(&next_batch(&mut sampler, &mut rng)).0);
            train_decoders(&mut net, &pass, dec, &mut noise_rng);
            progress(k + 1, None);
        }
    }
    let mut noise_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdec1);
    let mut adam = (algorithm.optimizer() == Optimizer::Adam).then(|| {
        Adam::new(
            algorithm.rates().values(net.depth()),
            net.encoders(),
            named.adam.unwrap_or_default(),
        )
    });
    let decoders = algorithm.uses_decoders();
    let depth = net.depth();
    let plan = EvaluationPlan::new(data, sched, seed);
    let evaluate_now =
        |scope: TestScope, net: &Network, trial: usize, loss: &RunningMean, alpha: &LayerMeans| {
            let mut row = plan.measure(scope, &named.name, net, decoders, trial);
            row.train_loss = loss.mean();
            row.alpha = alpha.means();
            row.wall_seconds = start.elapsed().as_secs_f64();
            row
        };
    let mut rows = Vec::new();
    let mut error = None;
    let record = |row: MetricsRow, rows: &mut Vec<MetricsRow>, error: &mut Option<String>| {
        // a model whose test loss is not a number has stopped learning, whatever its weights
        if !row.test_loss.is_finite() {
            *error = Some(format!(
                "{}: after trial {} the test loss is {}; lower the learning rate or β",
                named.name, row.trial, row.test_loss
            ));
        }
        progress(sched.warmup_trials + row.trial, Some(&row));
        rows.push(row);
    };
    let mut first_trial = 0;
    if let Some(c) = resume {
        // the state at the checkpoint's evaluation: weights, streams, moments and rows
        let bad = |m: String| ConfigError::new(format!("checkpoint of {}", named.name), m);
        let ModelState::Reference {
            weights,
            noise,
            adam: moments,
        } = &c.state
        else {
            return Err(bad("it is not a reference's checkpoint".into()));
        };
        net = weights
            .clone()
            .into_network()
            .map_err(|e| bad(e.to_string()))?;
        noise_rng = noise.restore().map_err(bad)?;
        rng = c.order.rng.restore().map_err(bad)?;
        sampler = c.order.sampler.clone();
        if let (Some(adam), Some(m)) = (adam.as_mut(), moments) {
            adam.restore(m).map_err(bad)?;
        }
        rows = c.metrics_rows(depth).map_err(bad)?;
        first_trial = c.trial;
        progress(sched.warmup_trials + first_trial, None);
    } else if !interrupted {
        let first = evaluate_now(
            TestScope::Full,
            &net,
            0,
            &RunningMean::default(),
            &LayerMeans::new(depth),
        );
        record(first, &mut rows, &mut error);
    }
    let mut last_checkpoint = first_trial;
    let (mut loss, mut alpha) = (RunningMean::default(), LayerMeans::new(depth));
    for trial in first_trial..sched.trials {
        if interrupted || error.is_some() {
            break;
        }
        if crate::interrupt::requested() {
            interrupted = true;
            break;
        }
        let batch = next_batch(&mut sampler, &mut rng);
        let (x, y) = stack(&batch);
        // one pass serves the loss, the decoders and the targets: decoder training leaves W as it is
        let pass = net.forward_batch(x);
        // the batch mean: batches are equal, so the mean of them is the mean over examples
        loss.add(loss_sum(net.arch().loss, pass.output(), &y) / batch.len() as f64);
        if let Some(dec) = &decoder {
            train_decoders(&mut net, &pass, dec, &mut noise_rng);
        }
        let mut steps =
            match encoder_steps(&net, algorithm, &pass, &y, adam.as_mut(), &mut alpha, trial) {
                Ok(steps) => steps,
                Err(message) => {
                    error = Some(format!("{}: {message}", named.name));
                    break;
                }
            };
        let factor = named.lr_schedule.factor(
            trial,
            sched.trials,
            sched.batch as f64 / data.train.len() as f64,
        );
        if factor != 1.0 {
            steps.iter_mut().for_each(|s| *s *= factor);
        }
        if let Err(l) = apply_encoder_steps(&mut net, &steps) {
            error = Some(format!(
                "{}: in trial {trial} the update of W_{l} became non-finite; lower the learning rate",
                named.name,
            ));
            break;
        }
        let done = trial + 1;
        if let Some(scope) = plan.after(done) {
            let row = evaluate_now(scope, &net, done, &loss, &alpha);
            record(row, &mut rows, &mut error);
            loss = RunningMean::default();
            alpha = LayerMeans::new(depth);
            let epoch_end = scope == TestScope::Full && done < sched.trials;
            if error.is_none() && checkpointing.due(done, epoch_end, last_checkpoint) {
                let checkpoint = ModelCheckpoint {
                    model: named.name.clone(),
                    trial: done,
                    wall_seconds: start.elapsed().as_secs_f64(),
                    rows: records(&rows),
                    order: ExampleOrder {
                        rng: RngState::of(&rng),
                        sampler: sampler.clone(),
                    },
                    state: ModelState::Reference {
                        weights: WeightsFile::from_network(&net),
                        noise: RngState::of(&noise_rng),
                        adam: adam.as_ref().map(Adam::state),
                    },
                };
                if let Some(save) = checkpointing.save {
                    if let Err(e) = save(&checkpoint) {
                        error = Some(format!("{}: checkpoint not written: {e}", named.name));
                        break;
                    }
                }
                last_checkpoint = done;
            }
        } else {
            progress(sched.warmup_trials + done, None);
        }
    }
    Ok(TrainOutcome {
        name: named.name.clone(),
        interrupted,
        rows,
        network: net,
        error,
    })
}
