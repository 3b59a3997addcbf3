//! Settings of the continuous-time engine (docs/MODEL.md §6, §9; seed paper Sec. 5, 6.2, 7.1, 8, 10.2),
//! parsed from JSON with defaults for everything and checked into a validated form whose
//! errors name the JSON path and the fix.

use crate::discrete::targets::Scheme;
pub use crate::discrete::train::DecoderLoss;
use crate::error::{check_range, ConfigError};
use serde::{Deserialize, Serialize};

/// Forward plasticity rule (docs/MODEL.md §6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PlasticityRule {
    /// `Ẇ_l = η[−γW_l + Σ_b m_p (s_l d_l)˙ n̄_{l−1}ᵀ]` (Sec. 7.1): integrates to the DTP1 update.
    #[default]
    TauDot,
    /// Uses `τ̇_l = ḣ_l + ḋ_l`; carries a Hebbian term from the forward dynamics.
    TauDotFull,
    /// `Ẇ_l = η[−γW_l + Σ_b m_p s_l d_l n̄_{l−1}ᵀ / T_r]`.
    Displacement,
}

/// Plasticity gate `m_p(t)` (docs/MODEL.md §6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// `m_p = m(t)`: plastic only while the teacher is on.
    #[default]
    Teacher,
    /// `m_p = 1`: the target decay at teacher offset undoes learning.
    Always,
}

pub use crate::network::PerLayer;

/// Forward plasticity (docs/MODEL.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Plasticity {
    /// What `Ẇ_l` follows: `tau_dot` (`ḋ_l n̄ᵀ`), `tau_dot_full` (`(ḣ_l + ḋ_l) n̄ᵀ`) or
    /// `displacement` (`d_l n̄ᵀ/T_r`).
    pub rule: PlasticityRule,
    /// When plasticity is on: `teacher` (`m_p = m`, during the teacher window) or `always`.
    pub gate: Gate,
    /// Learning rate `η`, one number or one per layer.
    pub eta: PerLayer,
    /// Weight decay `γ`.
    pub gamma: f64,
    /// `T_r` of the `displacement` rule; `null` means the relaxation window `T_stim − t_on`.
    pub relaxation_time: Option<f64>,
}

impl Default for Plasticity {
    fn default() -> Self {
        Plasticity {
            rule: PlasticityRule::TauDot,
            gate: Gate::Teacher,
            eta: PerLayer::All(0.1),
            gamma: 0.0,
            relaxation_time: None,
        }
    }
}

/// Decoder plasticity (Sec. 9, 10.2; docs/MODEL.md §6), always on: on the regular auto-encoder
/// loss, `Ω̇_l = η_Ω[−γ_Ω Ω_l + Σ_b (h_{l−1} − g_l(h_l)) n_lᵀ]`, or on the difference
/// reconstruction loss of Meulemans et al. (2020) with a probe `σξ` held through each trial,
/// `Ω̇_l = η_Ω[−γ_Ω Ω_l + Σ_b (σξ − Ω_l Δa_l) Δa_lᵀ/(ε + r_Ω σ² + q_l)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderPlasticity {
    /// `η_Ω` (per example).
    pub eta: f64,
    /// `γ_Ω`.
    pub gamma: f64,
    /// `regular` (auto-encoder) or `difference_reconstruction` (Meulemans et al. 2020).
    pub loss: DecoderLoss,
    /// Standard deviation σ of the probe `σξ` of `difference_reconstruction` (must be > 0
    /// there; the regular loss takes no noise).
    pub noise: f64,
    /// Ridge `r_Ω` of `difference_reconstruction`: `r_Ω σ²` joins `ε` in the normaliser, as in
    /// the discrete step's curvature `‖Δa‖² + r_Ω σ²` (docs/MODEL.md §4).
    pub ridge: f64,
}

impl Default for DecoderPlasticity {
    fn default() -> Self {
        DecoderPlasticity {
            eta: 0.5,
            gamma: 0.0,
            loss: DecoderLoss::Regular,
            noise: 0.0,
            ridge: 0.0,
        }
    }
}

impl DecoderPlasticity {
    /// Whether the decoders learn on the difference reconstruction loss, which adds the probe
    /// products and the probe pools `q_l` to the engine.
    pub fn probes(&self) -> bool {
        self.loss == DecoderLoss::DifferenceReconstruction
    }
}

/// Delayed presynaptic trace (Sec. 7.1): `K` leaky stages of time constant `D/K`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Trace {
    /// Mean delay `D`.
    pub delay: f64,
    /// Number of stages `K` (0: `n̄ = n`, no delay).
    pub stages: usize,
}

/// Influence scaling (Sec. 8; docs/MODEL.md §6): one scale neuron `s_l` per hidden layer and
/// replica, `τ_q ṡ_l = s_l (‖d_L‖² − s_l‖d_l‖²)/(ε_q + ‖d_L‖² + s_l‖d_l‖²)`, starting at 1; each
/// hidden layer learns from the scaled displacement `s_l d_l`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct InfluenceConfig {
    /// Scale each hidden layer's update by `s_l` (off: `s_l = 1`).
    pub enabled: bool,
    /// Time constant `τ_q` of the scale neurons: `ln s_l` moves by less than `1/τ_q` per time
    /// unit, and by `(1 − s_l/s_l*)/(2τ_q)` near its fixed point `s_l* = ‖d_L‖²/‖d_l‖²`.
    pub tau: f64,
    /// `ε_q` in the denominator of `ṡ_l`: below displacements of this squared size the scale
    /// neurons slow down (it does not move the fixed point).
    pub eps: f64,
}

impl Default for InfluenceConfig {
    fn default() -> Self {
        InfluenceConfig {
            enabled: false,
            tau: 1.0,
            eps: 1e-12,
        }
    }
}

/// Every constant of the vector field (docs/MODEL.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Dynamics {
    /// Relaxation scheme of the hidden targets.
    pub scheme: Scheme,
    /// Leak `λ ≥ 0`.
    pub leak: f64,
    /// Output nudging `β` of `τ_d ḋ_L = −d_L − β m ∇ℓ`.
    pub beta: f64,
    /// Time constant of the feedforward population `τ_h`.
    pub tau_h: f64,
    /// Time constant of the target populations `τ_d` (also of `u`).
    pub tau_d: f64,
    /// Time constant of pooling and influence neurons `τ_p`.
    pub tau_p: f64,
    /// `ε` of the normalised rate `n_l = a_l/(ε + p_l)`.
    pub pool_eps: f64,
    /// The delayed presynaptic trace `n̄_l` (Sec. 7.1).
    pub trace: Trace,
    /// Influence pools and the layer scale `s_l` (Sec. 8).
    pub influence: InfluenceConfig,
    /// Encoder plasticity `Ẇ_l` (Sec. 7.1).
    pub plasticity: Plasticity,
    /// Decoder plasticity `Ω̇_l` (Sec. 10.2).
    pub decoder: DecoderPlasticity,
}

impl Default for Dynamics {
    fn default() -> Self {
        Dynamics {
            scheme: Scheme::DecoderOutput,
            leak: 0.5,
            beta: 0.2,
            tau_h: 1.0,
            tau_d: 1.0,
            tau_p: 1.0,
            pool_eps: 1e-6,
            trace: Trace::default(),
            influence: InfluenceConfig::default(),
            plasticity: Plasticity::default(),
            decoder: DecoderPlasticity::default(),
        }
    }
}

/// Timing of one trial (docs/MODEL.md §6, Protocol). How many trials there are and how many
/// examples each presents is the scenario's `schedule`, shared with the discrete references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Protocol {
    /// Stimulus duration `T_stim` (teacher on during `[t_on, T_stim)`). Give either `t_stim`
    /// or `t_window`, not both.
    pub t_stim: f64,
    /// Teacher onset `t_on` within the trial: the settle time before the teacher comes on.
    pub t_on: f64,
    /// Relaxation (teacher) window `T_stim − t_on`; when given it sets `T_stim = t_on +
    /// t_window` (handy for sweeping the window at a fixed settle time). Give either
    /// `t_stim` or `t_window`, not both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_window: Option<f64>,
    /// Blank after each stimulus (`x = 0`, teacher off); 0 = stream.
    pub t_gap: f64,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            t_stim: 15.0,
            t_on: 5.0,
            t_window: None,
            t_gap: 0.0,
        }
    }
}

impl Protocol {
    /// The share of a step in the stimulus that the top layer `h_L` of an `layers`-layer
    /// network has not yet followed at teacher onset: `h` relaxes through the layers in a
    /// cascade of `L` first-order stages with time constant `τ_h` (docs/MODEL.md §6, Settling),
    /// so after the settle `t_on` the residual of the previous stimulus's drive is
    ///
    /// `e^{−t_on/τ_h} Σ_{j<L} (t_on/τ_h)^j / j!`
    ///
    /// (the tail of an Erlang distribution).
    ///
    /// ```
    /// use dtpsim::continuous::config::Protocol;
    /// let settle = |t_on: f64| Protocol { t_on, ..Protocol::default() };
    /// // four layers after 5 time units: a quarter of the previous image is still there
    /// assert!((settle(5.0).unsettled_fraction(4, 1.0) - 0.2650).abs() < 1e-4);
    /// // after 10, one percent; a cascade twice as fast halves the time
    /// assert!((settle(10.0).unsettled_fraction(4, 1.0) - 0.0103).abs() < 1e-4);
    /// assert_eq!(settle(5.0).unsettled_fraction(4, 0.5), settle(10.0).unsettled_fraction(4, 1.0));
    /// // one layer: a single exponential
    /// assert_eq!(settle(5.0).unsettled_fraction(1, 1.0), (-5.0f64).exp());
    /// ```
    pub fn unsettled_fraction(&self, layers: usize, tau_h: f64) -> f64 {
        cascade_residual(layers, self.t_on / tau_h)
    }
}

/// What a cascade of `stages` first-order stages with unit time constants has not yet
/// followed of a step in its input, `x` time constants after it: `e^{−x} Σ_{j<stages} x^j/j!`
/// (see [`Protocol::unsettled_fraction`]).
pub fn cascade_residual(stages: usize, x: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 0.0;
    for j in 0..stages {
        if j > 0 {
            term *= x / j as f64;
        }
        sum += term;
    }
    (-x).exp() * sum
}

/// Above this share of the previous stimulus still in the top layer at teacher onset
/// ([`Protocol::unsettled_fraction`]) `check` warns that the learned update is biased: on
/// Fashion-MNIST a share of 0.27 (four layers, `t_on` 5) shrank the output weights where the
/// discrete limit grew them, while on the quick-start's three layers 0.12 moved the final
/// test loss by 2% (docs/MODEL.md §6, Settling).
pub const UNSETTLED_WARNING: f64 = 0.2;

/// Integration method (the coefficients and step control of `ode_solvers`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Dormand–Prince 5(4), adaptive (default).
    #[default]
    Dopri5,
    /// Dormand–Prince 8(5,3), adaptive.
    Dop853,
    /// Classical Runge–Kutta 4, fixed step.
    Rk4,
}

/// How the integrator holds the plastic weights (docs/MODEL.md §9).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WeightsMode {
    /// Inside a Runge–Kutta step each stage's weights are a scalar times the weights at the
    /// start of the step plus low-rank factors of the earlier stages; products are formed
    /// without writing the stage weights. Same method, steps and error norm as `state`;
    /// `dopri5` and `rk4` only. Traces come from Dopri5's dense output.
    #[default]
    LowRank,
    /// The weights are part of one flat state vector integrated by `ode_solvers` (the
    /// reference path; every method).
    State,
}

/// Solver settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Solver {
    /// Runge–Kutta method.
    pub method: Method,
    /// Path that holds the weights: `low_rank` (fast, default) or `state` (reference).
    pub weights: WeightsMode,
    /// Relative tolerance of the adaptive methods (every state entry, weights included).
    pub rtol: f64,
    /// Absolute tolerance of the adaptive methods.
    pub atol: f64,
    /// Step of `rk4`.
    pub step: f64,
    /// A state entry larger than this in magnitude counts as a runaway (divergence).
    pub runaway: f64,
}

impl Default for Solver {
    fn default() -> Self {
        Solver {
            method: Method::Dopri5,
            weights: WeightsMode::LowRank,
            rtol: 1e-6,
            atol: 1e-8,
            step: 0.05,
            runaway: 1e6,
        }
    }
}

/// Everything the engine needs besides the network and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Every constant of the vector field.
    pub dynamics: Dynamics,
    /// Timing of a trial.
    pub protocol: Protocol,
    /// The integrator.
    pub solver: Solver,
}

impl EngineConfig {
    /// Checks every field for a network with `depth` weight layers. Paths are relative to the
    /// engine section (`dynamics.tau_h`, `protocol.t_on`, …).
    pub fn validate(&self, depth: usize) -> Result<(), ConfigError> {
        let d = &self.dynamics;
        // the upper bounds keep the system integrable in a sensible number of steps: a rate
        // beyond them (λ/τ_d, 1/τ) or a time beyond 1e6 is a typo, not a model
        let time = |path: &str, v: f64| check_range(path, v, (0.0, true), 1e6, "");
        let rate = " (larger values make the ODE too stiff to integrate)";
        check_range("dynamics.leak", d.leak, (0.0, false), 1e3, rate)?;
        check_range("dynamics.beta", d.beta, (0.0, false), 1e3, "")?;
        time("dynamics.tau_h", d.tau_h)?;
        time("dynamics.tau_d", d.tau_d)?;
        time("dynamics.tau_p", d.tau_p)?;
        time("dynamics.influence.tau", d.influence.tau)?;
        let eps = " (a regulariser: small against ‖a‖², which is ≥ 1 with a bias unit)";
        check_range("dynamics.pool_eps", d.pool_eps, (0.0, true), 1.0, eps)?;
        check_range("dynamics.trace.delay", d.trace.delay, (0.0, false), 1e6, "")?;
        if d.trace.stages > 1000 {
            return Err(ConfigError::new(
                "dynamics.trace.stages",
                format!("must be at most 1000, got {}", d.trace.stages),
            ));
        }
        if d.trace.stages > 0 && d.trace.delay <= 0.0 {
            return Err(ConfigError::new(
                "dynamics.trace.delay",
                format!(
                    "must be > 0 with {} stages; set stages to 0 for no delay",
                    d.trace.stages
                ),
            ));
        }
        check_range(
            "dynamics.influence.eps",
            d.influence.eps,
            (0.0, true),
            1.0,
            "",
        )?;
        d.plasticity
            .eta
            .validate("dynamics.plasticity.eta", depth)?;
        check_range(
            "dynamics.plasticity.gamma",
            d.plasticity.gamma,
            (0.0, false),
            1e3,
            rate,
        )?;
        if let Some(tr) = d.plasticity.relaxation_time {
            time("dynamics.plasticity.relaxation_time", tr)?;
        }
        check_range(
            "dynamics.decoder.eta",
            d.decoder.eta,
            (0.0, false),
            1e3,
            rate,
        )?;
        check_range(
            "dynamics.decoder.gamma",
            d.decoder.gamma,
            (0.0, false),
            1e3,
            rate,
        )?;
        check_range(
            "dynamics.decoder.noise",
            d.decoder.noise,
            (0.0, false),
            10.0,
            " (the probe's standard deviation)",
        )?;
        check_range(
            "dynamics.decoder.ridge",
            d.decoder.ridge,
            (0.0, false),
            1e6,
            "",
        )?;
        match d.decoder.loss {
            DecoderLoss::DifferenceReconstruction if d.decoder.noise <= 0.0 => {
                return Err(ConfigError::new(
                    "dynamics.decoder.noise",
                    "must be > 0 with \"loss\": \"difference_reconstruction\" (the decoders learn to map the change a probe σξ makes back onto the probe); give the probe's standard deviation σ, e.g. 0.1",
                ));
            }
            DecoderLoss::Regular if d.decoder.noise != 0.0 => {
                return Err(ConfigError::new(
                    "dynamics.decoder.noise",
                    "is used only with \"loss\": \"difference_reconstruction\"; the engine's regular decoders learn without noise (set noise to 0, or choose that loss)",
                ));
            }
            DecoderLoss::Regular if d.decoder.ridge != 0.0 => {
                return Err(ConfigError::new(
                    "dynamics.decoder.ridge",
                    "is used only with \"loss\": \"difference_reconstruction\"; the regular decoders' weight decay is dynamics.decoder.gamma (set ridge to 0)",
                ));
            }
            _ => {}
        }
        let p = &self.protocol;
        if let Some(w) = p.t_window {
            time("protocol.t_window", w)?;
            if (p.t_stim - (p.t_on + w)).abs() > 1e-12 {
                return Err(ConfigError::new(
                    "protocol.t_window",
                    "was not applied: call EngineConfig::resolve() after parsing",
                ));
            }
        }
        time("protocol.t_stim", p.t_stim)?;
        check_range("protocol.t_on", p.t_on, (0.0, false), 1e6, "")?;
        if p.t_on > p.t_stim {
            return Err(ConfigError::new("protocol.t_on", format!("{} is after the end of the stimulus (t_stim = {}); the teacher must come on within the stimulus", p.t_on, p.t_stim)));
        }
        check_range("protocol.t_gap", p.t_gap, (0.0, false), 1e6, "")?;
        let s = &self.solver;
        check_range(
            "solver.rtol",
            s.rtol,
            (0.0, true),
            0.1,
            " (a relative error per step)",
        )?;
        check_range(
            "solver.atol",
            s.atol,
            (0.0, true),
            0.1,
            " (an absolute error per step)",
        )?;
        check_range(
            "solver.step",
            s.step,
            (1e-6, false),
            p.t_stim,
            " (the rk4 step; at most t_stim)",
        )?;
        check_range(
            "solver.runaway",
            s.runaway,
            (1.0, false),
            1e300,
            " (activities are of order 1; the limit must lie above them)",
        )?;
        if s.weights == WeightsMode::LowRank && s.method == Method::Dop853 {
            return Err(ConfigError::new(
                "solver.weights",
                "\"low_rank\" runs dopri5 and rk4; for dop853 set solver.weights to \"state\" (or use dopri5)",
            ));
        }
        Ok(())
    }

    /// Applies derived settings: `t_window` sets `T_stim = t_on + t_window` and is then
    /// cleared, so the resolved configuration states `T_stim` once.
    pub fn resolve(&mut self) {
        if let Some(w) = self.protocol.t_window.take() {
            self.protocol.t_stim = self.protocol.t_on + w;
        }
    }

    /// `T_r` of the displacement rule.
    pub fn relaxation_time(&self) -> f64 {
        self.dynamics
            .plasticity
            .relaxation_time
            .unwrap_or((self.protocol.t_stim - self.protocol.t_on).max(f64::MIN_POSITIVE))
    }
}
