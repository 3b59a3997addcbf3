//! A running simulation: the flat state, the protocol of docs/MODEL.md §6 (trials of stimulus,
//! teacher, gap; warm-up), divergence detection and observers.

use super::config::{EngineConfig, Method, WeightsMode};
use super::field::{Drive, Field, FieldStats, Workspace};
use super::integrate::tableau::{dopri5, rk4};
use super::integrate::{integrate_segment, DenseSample, LowRank, SolverStats, StageForm};
use super::layout::{Block, Layout, Population};
use crate::data::Example;
use crate::discrete::targets::Scheme;
use crate::error::ConfigError;
use crate::network::{Architecture, Network};
use nalgebra::{DMatrix, DVector};
use ode_solvers::dop_shared::IntegrationError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use thiserror::Error;

/// Why a simulation stopped.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// A state entry became non-finite or ran away (beyond `solver.runaway`).
    #[error("diverged in trial {trial} at t = {time:.4}: {population} of layer {layer} {what}; lower the learning rates, add leak λ, or improve the decoders (longer warm-up)")]
    Divergence {
        /// Trial number (warm-up trials are negative in a scenario run, see [`Simulation::set_trial`]).
        trial: i64,
        /// Simulated time of the check that failed.
        time: f64,
        /// The population that diverged (`h`, `d`, `W`, …).
        population: &'static str,
        /// Its layer.
        layer: usize,
        /// What happened to it.
        what: String,
    },
    /// An evaluation of the network gave a non-finite number.
    #[error("after trial {trial} {what}; lower the learning rates or β")]
    Metrics {
        /// Learning trials completed.
        trial: i64,
        /// What was not finite.
        what: String,
    },
    /// The ODE solver gave up (step size underflow, too many steps).
    #[error("the solver failed in trial {trial} (t = {time:.4}): {message}; try a tighter solver.rtol or the rk4 method with a small solver.step")]
    Solver {
        /// Trial number.
        trial: i64,
        /// Simulated time at the start of the failed piece.
        time: f64,
        /// The solver's message.
        message: String,
    },
    /// A checkpoint could not be written (the run stops; the last checkpoint stays).
    #[error(
        "after trial {trial} the checkpoint was not written: {message}; free disk space and resume"
    )]
    Checkpoint {
        /// Learning trials done.
        trial: usize,
        /// Why.
        message: String,
    },
}

/// The change of every `W_l` over one learning trial on `example`, from the current state
/// (index `l − 1`). With small `η`, no delay and a long relaxation window this is `η` times
/// the discrete DTP1 update with the relaxation's fixed-point targets (T6); with a short
/// window it is the partial, anytime update (T7).
pub fn trial_update(
    sim: &mut Simulation,
    example: &Example,
) -> Result<Vec<DMatrix<f64>>, EngineError> {
    let before = sim.network();
    sim.run_trial(&[example], Phase::Learn, &mut NoObserver)?;
    let after = sim.network();
    Ok((1..=before.depth())
        .map(|l| after.w(l) - before.w(l))
        .collect())
}

/// A phase of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Teacher off, `η = 0`; decoders learn.
    Warmup,
    /// Teacher on during `[t_on, T_stim)`, plasticity on.
    Learn,
}

/// What an observer sees at a sample time.
pub struct Sample<'a> {
    /// Simulated time since the start of the run.
    pub time: f64,
    /// Trial number: the simulation counts from 0 unless [`Simulation::set_trial`] sets it; a
    /// scenario run numbers warm-up trials `−W … −1` and learning trials `0, 1, …`.
    pub trial: i64,
    /// Teacher gate `m(t)` on the segment being sampled.
    pub teacher: bool,
    /// Where each population sits in `state`.
    pub layout: &'a Layout,
    /// The flat state, or (for a sample from dense output) its neuron part.
    pub state: &'a [f64],
    /// The weights as a function of their flat index, for a sample from dense output (its
    /// `state` then holds only the neurons).
    pub weight: Option<&'a dyn Fn(usize) -> f64>,
}

impl Sample<'_> {
    /// The target `τ_l = h_l + d_l` of `neuron` of `layer` in `replica` (`None` outside the
    /// network).
    pub fn target(&self, layer: usize, neuron: usize, replica: usize) -> Option<f64> {
        Some(
            self.value(Population::H, layer, neuron, replica)?
                + self.value(Population::D, layer, neuron, replica)?,
        )
    }

    /// Value of `population` of `layer`, `neuron` (row), replica (column).
    pub fn value(
        &self,
        population: Population,
        layer: usize,
        neuron: usize,
        replica: usize,
    ) -> Option<f64> {
        let l = self.layout;
        let block = match population {
            Population::H => (layer >= 1 && layer <= l.depth).then(|| l.h(layer)),
            Population::D => (layer >= 1 && layer <= l.depth).then(|| l.d(layer)),
            Population::U => (layer >= 2 && layer <= l.depth)
                .then(|| l.u(layer))
                .flatten(),
            Population::Pool => (layer <= l.depth).then(|| l.p(layer)),
            Population::Trace => {
                (layer < l.depth && l.stages > 0).then(|| l.stage(layer, l.stages))
            }
            Population::Influence => (layer >= 1).then(|| l.scale(layer)).flatten(),
            Population::ProbePool => (layer >= 2).then(|| l.probe_pool(layer)).flatten(),
            Population::W => (layer >= 1 && layer <= l.depth).then(|| l.w(layer)),
            Population::Omega => (layer >= 2 && layer <= l.depth).then(|| l.omega(layer)),
        }?;
        if neuron >= block.rows || replica >= block.cols {
            return None;
        }
        let index = block.start + replica * block.rows + neuron;
        match (population, self.weight) {
            (Population::W | Population::Omega, Some(weight)) => Some(weight(index)),
            _ => Some(self.state[index]),
        }
    }
}

/// Receives samples during a run (docs/MODEL.md §9: traces are sampled, never the whole
/// trajectory).
///
/// An observer that records the output target `τ_L` of replica 0 every 0.5 time units of one
/// learning trial:
///
/// ```
/// use dtpsim::continuous::{EngineConfig, Observer, Phase, Sample, Simulation};
/// use dtpsim::data::Example;
/// use dtpsim::nalgebra::DVector;
/// use dtpsim::{Activation, Architecture, Init, Loss, Network};
///
/// struct OutputTarget(Vec<(f64, f64)>);
/// impl Observer for OutputTarget {
///     fn interval(&self, _trial: i64) -> Option<f64> {
///         Some(0.5)
///     }
///     fn sample(&mut self, s: &Sample) {
///         self.0.push((s.time, s.target(2, 0, 0).unwrap()));
///     }
/// }
///
/// let arch = Architecture::new(&[3, 4, 1], Activation::Tanh, Loss::Mse).unwrap();
/// let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 7).unwrap();
/// let mut cfg = EngineConfig::default();
/// cfg.protocol.t_on = 1.0;
/// cfg.protocol.t_stim = 3.0;
/// let mut sim = Simulation::new(&net, cfg, 1).unwrap();
/// let example = Example { x: DVector::from_vec(vec![0.5, -1.0, 0.2]), y: DVector::from_vec(vec![1.0]) };
/// let mut observer = OutputTarget(Vec::new());
/// sim.run_trial(&[&example], Phase::Learn, &mut observer).unwrap();
/// // samples at 0, 0.5, …, 3 (a segment boundary at t_on = 1 is sampled on both sides)
/// assert_eq!(observer.0.first().unwrap().0, 0.0);
/// assert_eq!(observer.0.last().unwrap().0, 3.0);
/// // with the teacher on, the output target moves towards y = 1 from the activity
/// let (_, tau_end) = *observer.0.last().unwrap();
/// assert!((tau_end - sim.activity(2)[(0, 0)]).abs() > 1e-3);
/// ```
pub trait Observer {
    /// Sampling interval in simulated time during trial `trial` (`None`: no samples; the
    /// segment is then integrated in one go).
    fn interval(&self, _trial: i64) -> Option<f64> {
        None
    }
    /// Called at `t = 0` of every trial and every [`Observer::interval`] after.
    fn sample(&mut self, _sample: &Sample) {}
    /// Makes everything sampled so far durable for a checkpoint and says how to find it again:
    /// `(bytes, rows)` of the observer's file (`None`: nothing to keep).
    fn checkpoint(&mut self) -> Result<Option<(u64, usize)>, crate::error::IoError> {
        Ok(None)
    }
}

/// An observer that takes no samples.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Work counters of a simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    /// Vector-field evaluations and their time.
    pub field: FieldStats,
    /// Accepted and rejected steps.
    pub solver: SolverStats,
    /// Simulated time.
    pub time: f64,
    /// Trials run.
    pub trials: usize,
}

/// A simulation of the continuous-time model (docs/MODEL.md §6): the state of every
/// population of `B` replicas and the shared weights, advanced trial by trial.
///
/// One learning trial of a 3-4-2 tanh network moves the weights by about `η` times the
/// discrete DTP1 update (T6 of the theory suite); here only its direction is checked:
///
/// ```
/// use dtpsim::continuous::{EngineConfig, NoObserver, Phase, Simulation};
/// use dtpsim::data::Example;
/// use dtpsim::nalgebra::DVector;
/// use dtpsim::{Activation, Architecture, Init, Loss, Network};
///
/// let arch = Architecture::new(&[3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
/// let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 7).unwrap();
/// let mut sim = Simulation::new(&net, EngineConfig::default(), 1).unwrap();
/// let example = Example {
///     x: DVector::from_vec(vec![0.5, -1.0, 0.2]),
///     y: DVector::from_vec(vec![0.3, -0.3]),
/// };
/// let loss = |n: &Network| Loss::Mse.value(&n.predict(&example.x), &example.y);
/// let before = loss(&sim.network());
/// sim.run_trial(&[&example], Phase::Learn, &mut NoObserver).unwrap();
/// assert_eq!(sim.trial(), 1);
/// assert!(loss(&sim.network()) < before, "one trial lowers the loss on its example");
/// ```
pub struct Simulation {
    arch: Architecture,
    cfg: EngineConfig,
    layout: Layout,
    state: DVector<f64>,
    time: f64,
    trial: i64,
    stats: EngineStats,
    flops_per_eval: f64,
    /// The vector field's buffers, kept between segments.
    workspace: Option<Workspace>,
    /// The low-rank integrator's buffers, made on first use.
    low_rank: Option<LowRank>,
    /// The state at the start of the current chunk, restored when a check fails.
    last_good: DVector<f64>,
    /// How the low-rank path holds each matrix's stages.
    stage_form: StageForm,
    /// Seed of the decoder probes (see [`Simulation::set_probe_seed`]).
    probe_seed: u64,
    /// Index of replica 0 among the replicas the probes are drawn for (a [`Simulation::replica`]
    /// draws its original replica's probes).
    first_replica: usize,
}

impl Simulation {
    /// Starts from `net`'s weights with all neurons at rest for a zero input: `h = d = u = 0`,
    /// pools at `‖a_l(0)‖²`, trace stages at `n_l(0)`, influence scales `s_l = 1`.
    /// `replicas` is `B`, the number of replicas sharing the weights (docs/MODEL.md §6).
    pub fn new(net: &Network, cfg: EngineConfig, replicas: usize) -> Result<Self, ConfigError> {
        cfg.validate(net.depth())?;
        if replicas == 0 {
            return Err(ConfigError::new("replicas", "must be at least 1"));
        }
        let arch = net.arch().clone();
        let d = &cfg.dynamics;
        let layout = Layout::new(
            &arch,
            replicas,
            d.scheme,
            d.trace.stages,
            d.influence.enabled,
            d.decoder.probes(),
        );
        let mut state = DVector::zeros(layout.len());
        let y = state.as_mut_slice();
        for l in 1..=arch.depth() {
            layout.w(l).view_mut(y).copy_from(net.w(l));
        }
        for l in 2..=arch.depth() {
            layout.omega(l).view_mut(y).copy_from(net.omega(l));
        }
        for l in 0..=arch.depth() {
            let a0 = net.presyn(l, &DVector::zeros(arch.widths[l]));
            layout.p(l).view_mut(y).fill(a0.norm_squared());
            if l < arch.depth() {
                let n0 = &a0 / (d.pool_eps + a0.norm_squared());
                for k in 1..=d.trace.stages {
                    let mut block = layout.stage(l, k).view_mut(y);
                    for j in 0..block.ncols() {
                        block.column_mut(j).copy_from(&n0);
                    }
                }
            }
            if let Some(scale) = layout.scale(l) {
                scale.view_mut(y).fill(1.0);
            }
            if let Some(q) = layout.probe_pool(l) {
                q.view_mut(y)
                    .fill(probe_pool_at_rest(net, l, d.decoder.noise));
            }
        }
        Ok(Simulation {
            arch,
            cfg,
            layout,
            state,
            time: 0.0,
            trial: 0,
            stats: EngineStats::default(),
            flops_per_eval: 0.0,
            workspace: None,
            low_rank: None,
            last_good: DVector::zeros(0),
            stage_form: StageForm::Auto,
            probe_seed: 0,
            first_replica: 0,
        })
    }

    /// Seeds the probes `ξ` of the difference reconstruction decoders (docs/MODEL.md §6): the
    /// probe of replica `j` in trial `k` is a function of `(seed, k, j)` alone, so a resumed
    /// run draws the same probes without any generator state. A scenario run uses its `seed`.
    pub fn set_probe_seed(&mut self, seed: u64) {
        self.probe_seed = seed;
    }

    /// Chooses how the low-rank path holds each matrix's stages (the default, `Auto`, picks by
    /// rank; the forms agree up to rounding). For tests and benchmarks.
    pub fn set_stage_form(&mut self, form: StageForm) {
        self.stage_form = form;
        self.low_rank = None;
    }

    /// The state layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The flat state.
    pub fn state(&self) -> &[f64] {
        self.state.as_slice()
    }

    /// Mutable flat state (for tests and custom initial conditions).
    pub fn state_mut(&mut self) -> &mut [f64] {
        self.state.as_mut_slice()
    }

    /// Continues from a checkpoint (see [`crate::checkpoint`]): the flat state, the time, the
    /// next trial's number and the work counters so far.
    pub fn restore(
        &mut self,
        state: &[f64],
        time: f64,
        trial: i64,
        stats: EngineStats,
    ) -> Result<(), String> {
        if state.len() != self.state.len() {
            return Err(format!(
                "a state of {} values, this simulation has {}",
                state.len(),
                self.state.len()
            ));
        }
        self.state.as_mut_slice().copy_from_slice(state);
        self.last_good.clone_from(&self.state);
        (self.time, self.trial, self.stats) = (time, trial, stats);
        Ok(())
    }

    /// The engine configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Simulated time.
    pub fn time(&self) -> f64 {
        self.time
    }

    /// The number of the next trial (0 for a new simulation; see [`Simulation::set_trial`]).
    pub fn trial(&self) -> i64 {
        self.trial
    }

    /// Numbers the next trial `n` (later trials count up from it). A scenario run starts at
    /// `−W` for `W` warm-up trials, so that learning trial `k` is trial `k` in every output
    /// file and message.
    pub fn set_trial(&mut self, n: i64) {
        self.trial = n;
    }

    /// Work counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Matrix-product FLOPs of one vector-field evaluation in the last segment.
    pub fn flops_per_eval(&self) -> f64 {
        self.flops_per_eval
    }

    /// The feedforward activity `h_l` of layer `l = 1..=L`: one column per replica.
    ///
    /// # Panics
    /// If `l` is 0 or above the depth.
    pub fn activity(&self, l: usize) -> DMatrix<f64> {
        self.layout.h(l).view(self.state.as_slice()).into_owned()
    }

    /// The target displacement `d_l = τ_l − h_l` of layer `l = 1..=L`, one column per replica.
    ///
    /// # Panics
    /// If `l` is 0 or above the depth.
    pub fn displacement(&self, l: usize) -> DMatrix<f64> {
        self.layout.d(l).view(self.state.as_slice()).into_owned()
    }

    /// The target `τ_l = h_l + d_l` of layer `l = 1..=L` (docs/MODEL.md §6), one column per
    /// replica.
    ///
    /// ```
    /// use dtpsim::continuous::{EngineConfig, Simulation};
    /// use dtpsim::{Activation, Architecture, Init, Loss, Network};
    ///
    /// let arch = Architecture::new(&[3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
    /// let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 7).unwrap();
    /// let sim = Simulation::new(&net, EngineConfig::default(), 2).unwrap();
    /// // at rest every target equals its activity: τ_l = h_l + d_l with d_l = 0
    /// assert_eq!(sim.target(2), sim.activity(2));
    /// assert_eq!(sim.target(2).shape(), (2, 2)); // n_2 neurons × B replicas
    /// ```
    ///
    /// # Panics
    /// If `l` is 0 or above the depth.
    pub fn target(&self, l: usize) -> DMatrix<f64> {
        self.activity(l) + self.displacement(l)
    }

    /// The network with the current weights `W_l`, `Ω_l` (for the exact discrete forward pass).
    pub fn network(&self) -> Network {
        let y = self.state.as_slice();
        let enc = (1..=self.arch.depth())
            .map(|l| self.layout.w(l).view(y).into_owned())
            .collect();
        let dec = (2..=self.arch.depth())
            .map(|l| self.layout.omega(l).view(y).into_owned())
            .collect();
        Network::from_parts(self.arch.clone(), enc, dec)
            .expect("the layout matches the architecture")
    }

    /// A single-replica simulation holding replica `j`'s neuron state, the shared weights and (for
    /// difference-reconstruction decoders) replica `j`'s probes.
    pub fn replica(&self, j: usize) -> Simulation {
        let mut single = Simulation::new(&self.network(), self.cfg.clone(), 1)
            .expect("same validated configuration");
        let (src, dst) = (self.state.as_slice(), single.state.as_mut_slice());
        let lay = &self.layout;
        let one = &single.layout;
        let mut copy = |from: Block, to: Block| {
            let col = from.view(src).column(j).into_owned();
            to.view_mut(dst).column_mut(0).copy_from(&col);
        };
        for l in 0..=lay.depth {
            if l >= 1 {
                copy(lay.h(l), one.h(l));
                copy(lay.d(l), one.d(l));
                if let (Some(a), Some(b)) = (lay.scale(l), one.scale(l)) {
                    copy(a, b);
                }
            }
            if l >= 2 {
                if let (Some(a), Some(b)) = (lay.u(l), one.u(l)) {
                    copy(a, b);
                }
            }
            copy(lay.p(l), one.p(l));
            if let (Some(a), Some(b)) = (lay.probe_pool(l), one.probe_pool(l)) {
                copy(a, b);
            }
            if l < lay.depth {
                for k in 1..=lay.stages {
                    copy(lay.stage(l, k), one.stage(l, k));
                }
            }
        }
        single.time = self.time;
        single.trial = self.trial;
        single.probe_seed = self.probe_seed;
        single.first_replica = self.first_replica + j;
        single
    }

    /// Evaluates the vector field at the current state under `drive` (tests, benchmarks).
    pub fn derivative(&self, drive: &Drive) -> DVector<f64> {
        let field = Field::new(&self.arch, &self.layout, &self.cfg, drive);
        let mut dy = DVector::zeros(self.state.len());
        field.eval(self.time, self.state.as_slice(), dy.as_mut_slice());
        dy
    }

    /// Builds the drive of one segment from per-replica examples.
    pub fn drive(
        &self,
        examples: &[&Example],
        stimulus: bool,
        teacher: bool,
        forward_plastic: bool,
    ) -> Drive {
        let b = self.layout.replicas;
        let n0 = self.arch.widths[0];
        let nl = self.arch.widths[self.arch.depth()];
        let mut x = DMatrix::zeros(n0, b);
        let mut y = DMatrix::zeros(nl, b);
        for j in 0..b {
            let ex = examples[j % examples.len()];
            if stimulus {
                x.column_mut(j).copy_from(&ex.x);
            }
            y.column_mut(j).copy_from(&ex.y);
        }
        let dec = &self.cfg.dynamics.decoder;
        let probe = if dec.probes() {
            let mut probe: Vec<DMatrix<f64>> = (1..self.arch.depth())
                .map(|l| DMatrix::zeros(self.arch.widths[l], b))
                .collect();
            for j in 0..b {
                let mut rng = probe_rng(self.probe_seed, self.trial, self.first_replica + j);
                for layer in probe.iter_mut() {
                    for v in layer.column_mut(j).iter_mut() {
                        let xi: f64 = StandardNormal.sample(&mut rng);
                        *v = dec.noise * xi;
                    }
                }
            }
            probe
        } else {
            Vec::new()
        };
        Drive {
            x,
            y,
            teacher: if teacher { 1.0 } else { 0.0 },
            forward_plastic,
            probe,
        }
    }

    /// Integrates for `duration` under `drive`, sampling for `observer` (at the start, every
    /// [`Observer::interval`], and at the end). On the low-rank path with Dopri5 the samples
    /// come from the method's dense output and the segment is one solver run; otherwise the
    /// solver is restarted at every sample time.
    pub fn run_segment(
        &mut self,
        drive: &Drive,
        duration: f64,
        observer: &mut dyn Observer,
    ) -> Result<(), EngineError> {
        let ws = self
            .workspace
            .take()
            .unwrap_or_else(|| Workspace::new(&self.arch, &self.layout, self.cfg.dynamics.scheme));
        let field = Field::with_workspace(&self.arch, &self.layout, &self.cfg, drive, ws);
        let low_rank = self.cfg.solver.weights == WeightsMode::LowRank;
        self.flops_per_eval = field.flops_per_eval(!low_rank);
        let (start, end) = (self.time, self.time + duration);
        let interval = observer.interval(self.trial).filter(|dt| *dt > 0.0);
        if self.last_good.len() != self.state.len() {
            self.last_good = self.state.clone();
        }
        let low_rank = low_rank.then(|| {
            let form = self.stage_form;
            self.low_rank
                .get_or_insert_with(|| LowRank::new(&self.layout, form))
        });
        let mut run = SegmentRun {
            field: &field,
            cfg: &self.cfg,
            trial: self.trial,
            teacher: drive.teacher > 0.0,
            state: &mut self.state,
            last_good: &mut self.last_good,
            stats: &mut self.stats.solver,
            low_rank,
        };
        let times = sample_times(start, end, interval);
        let result = if run.low_rank.is_some() && self.cfg.solver.method == Method::Dopri5 {
            run.dense(&times, start, end, observer)
        } else {
            run.chunked(&times, start, end, interval.is_some(), observer)
        };
        let fs = field.stats();
        self.stats.field.evaluations += fs.evaluations;
        self.stats.field.seconds += fs.seconds;
        self.workspace = Some(field.into_workspace());
        let reached = match &result {
            Ok(()) => end,
            Err((_, t)) => *t,
        }
        .max(self.time);
        self.stats.time += reached - self.time;
        self.time = reached;
        result.map_err(|(e, _)| e)
    }

    /// Runs one trial (docs/MODEL.md §6, Protocol): stimulus for `T_stim` with the teacher on during
    /// `[t_on, T_stim)` (learning phase only), then `T_gap` of blank input. Returns, for a
    /// learning trial, the measured contraction `α_l` of every hidden layer at teacher offset,
    /// index `l − 1`, the mean over replicas (see [`Simulation::contraction`]); empty in
    /// warm-up.
    pub fn run_trial(
        &mut self,
        examples: &[&Example],
        phase: Phase,
        observer: &mut dyn Observer,
    ) -> Result<Vec<f64>, EngineError> {
        let p = self.cfg.protocol.clone();
        let learn = phase == Phase::Learn;
        let settle = self.drive(examples, true, false, learn);
        self.run_segment(&settle, p.t_on, observer)?;
        let taught = self.drive(examples, true, learn, learn);
        self.run_segment(&taught, p.t_stim - p.t_on, observer)?;
        let alpha = if learn {
            let per_replica = self.contraction(&taught);
            per_replica
                .iter()
                .map(|layer| {
                    let mut mean = crate::metrics::RunningMean::default();
                    layer.iter().for_each(|a| mean.add(*a));
                    mean.mean()
                })
                .collect()
        } else {
            Vec::new()
        };
        if p.t_gap > 0.0 {
            let blank = self.drive(examples, false, false, learn);
            self.run_segment(&blank, p.t_gap, observer)?;
        }
        self.trial += 1;
        self.stats.trials += 1;
        Ok(alpha)
    }

    /// The measured contraction of the target relaxation under `drive`, per hidden layer
    /// `l = 1..L−1` (index `l − 1`) and replica (docs/MODEL.md §6):
    ///
    /// `α_l = 1 + τ_d (v̇_l · v̈_l)/‖v̇_l‖²`,
    ///
    /// where `v_l` is the iterated variable (`d_l`; `u_{l+1}` for `decoder_input`) and `v̈_l`
    /// the rate of `v̇_l` along the trajectory, a central difference of the vector field over
    /// `±10⁻³ τ_d`. This is the discrete α of Sec. 6.2 (the ratio of successive increments) in
    /// continuous form: a parallel sweep is a forward-Euler step of length `τ_d`, whose
    /// amplification of a mode that decays at rate `r` is `1 − τ_d r`. NaN for `difference`
    /// targets and where `v̇_l = 0`.
    pub fn contraction(&self, drive: &Drive) -> Vec<Vec<f64>> {
        let (lay, dynm) = (&self.layout, &self.cfg.dynamics);
        let hidden = lay.depth.saturating_sub(1);
        let nan = vec![vec![f64::NAN; lay.replicas]; hidden];
        let iterated = |l: usize| match dynm.scheme {
            Scheme::Difference => None,
            Scheme::DecoderOutput => Some(lay.d(l)),
            Scheme::DecoderInput => lay.u(l + 1),
        };
        if dynm.scheme == Scheme::Difference {
            return nan;
        }
        let field = Field::new(&self.arch, lay, &self.cfg, drive);
        let y = self.state.as_slice();
        let eval = |state: &[f64]| {
            let mut dy = vec![0.0; state.len()];
            field.eval(self.time, state, &mut dy);
            dy
        };
        let rate = eval(y);
        let step = 1e-3 * dynm.tau_d;
        let shifted = |sign: f64| -> Vec<f64> {
            let state: Vec<f64> = y
                .iter()
                .zip(&rate)
                .map(|(v, r)| v + sign * step * r)
                .collect();
            eval(&state)
        };
        let (ahead, behind) = (shifted(1.0), shifted(-1.0));
        (1..=hidden)
            .map(|l| {
                let Some(block) = iterated(l) else {
                    return vec![f64::NAN; lay.replicas];
                };
                let (v, a, b) = (block.view(&rate), block.view(&ahead), block.view(&behind));
                (0..lay.replicas)
                    .map(|j| {
                        let speed2 = v.column(j).norm_squared();
                        let accel = (a.column(j) - b.column(j)) / (2.0 * step);
                        if speed2 > 0.0 {
                            1.0 + dynm.tau_d * v.column(j).dot(&accel) / speed2
                        } else {
                            f64::NAN
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// The sample times of a segment `[start, end]` for an observer sampling every `interval`:
/// `start`, every `interval` after, and `end` (a last gap shorter than 1e-9 is merged into
/// `end`). Empty without an interval.
fn sample_times(start: f64, end: f64, interval: Option<f64>) -> Vec<f64> {
    let Some(dt) = interval else {
        return Vec::new();
    };
    let mut times = Vec::new();
    let mut t = start;
    loop {
        times.push(t);
        if t >= end - 1e-12 {
            return times;
        }
        let next = (t + dt).min(end);
        t = if end - next < 1e-9 { end } else { next };
    }
}

/// One segment's integration: the field, the state it advances and the checks after it.
struct SegmentRun<'s, 'f> {
    field: &'s Field<'f>,
    cfg: &'s EngineConfig,
    trial: i64,
    teacher: bool,
    state: &'s mut DVector<f64>,
    last_good: &'s mut DVector<f64>,
    stats: &'s mut SolverStats,
    low_rank: Option<&'s mut LowRank>,
}

/// An error and the time the simulation stays at.
type SegmentError = (EngineError, f64);

impl SegmentRun<'_, '_> {
    /// One low-rank Dopri5 run over `[start, end]`, samples from its dense output.
    fn dense(
        &mut self,
        times: &[f64],
        start: f64,
        end: f64,
        observer: &mut dyn Observer,
    ) -> Result<(), SegmentError> {
        let layout = self.field.layout;
        let (trial, teacher) = (self.trial, self.teacher);
        let mut observe = |s: &DenseSample| {
            observer.sample(&Sample {
                time: s.time,
                trial,
                teacher,
                layout,
                state: s.neurons,
                weight: Some(s.weight),
            })
        };
        self.last_good.copy_from(self.state);
        let outcome = if end > start {
            let lr = self.low_rank.as_mut().expect("the low-rank path");
            let solver = &self.cfg.solver;
            lr.adaptive(
                &dopri5(),
                self.field,
                self.state.as_mut_slice(),
                start,
                end,
                solver.rtol,
                solver.atol,
                self.stats,
                times,
                &mut observe,
            )
        } else {
            let y = self.state.as_slice();
            for &t in times {
                observe(&DenseSample {
                    time: t,
                    neurons: &y[layout.neurons()],
                    weight: &|i| y[i],
                });
            }
            Ok(())
        };
        let result = match outcome {
            Err(e) => Err(self.solver_error(start, e)),
            Ok(()) => self.checks(end),
        };
        result.map_err(|e| (e, start))
    }

    /// `[start, end]` in pieces between sample times, the solver restarted at each.
    fn chunked(
        &mut self,
        times: &[f64],
        start: f64,
        end: f64,
        sampled: bool,
        observer: &mut dyn Observer,
    ) -> Result<(), SegmentError> {
        let bounds = if sampled {
            times.to_vec()
        } else {
            vec![start, end]
        };
        for (i, &t) in bounds.iter().enumerate() {
            if sampled {
                observer.sample(&Sample {
                    time: t,
                    trial: self.trial,
                    teacher: self.teacher,
                    layout: self.field.layout,
                    state: self.state.as_slice(),
                    weight: None,
                });
            }
            let Some(&next) = bounds.get(i + 1) else {
                break;
            };
            if next <= t {
                continue;
            }
            self.last_good.copy_from(self.state);
            let solver = &self.cfg.solver;
            let step = match self.low_rank.as_mut() {
                Some(lr) => {
                    let y = self.state.as_mut_slice();
                    lr.fixed(&rk4(), self.field, y, t, next, solver.step, self.stats);
                    Ok(())
                }
                None => {
                    let y = self.state.clone();
                    integrate_segment(self.field, y, t, next, solver, self.stats)
                        .map(|new| *self.state = new)
                }
            };
            if let Err(e) = step {
                self.state.copy_from(self.last_good);
                return Err((self.solver_error(t, e), t));
            }
            self.checks(next).map_err(|e| (e, t))?;
        }
        Ok(())
    }

    fn solver_error(&self, time: f64, e: IntegrationError) -> EngineError {
        EngineError::Solver {
            trial: self.trial,
            time,
            message: e.to_string(),
        }
    }

    /// A non-finite derivative seen by the field, or a non-finite or runaway state entry
    /// (then the state is put back to the start of the chunk).
    fn checks(&mut self, time: f64) -> Result<(), EngineError> {
        if let Some(f) = self.field.fault() {
            return Err(EngineError::Divergence {
                trial: self.trial,
                time: f.time,
                population: f.population.name(),
                layer: f.layer,
                what: "has a non-finite time derivative".into(),
            });
        }
        let limit = self.cfg.solver.runaway;
        let Some(i) = self
            .state
            .iter()
            .position(|v| !v.is_finite() || v.abs() > limit)
        else {
            return Ok(());
        };
        let (population, layer) = self.field.layout.locate(i);
        let v = self.state[i];
        self.state.copy_from(self.last_good);
        Err(EngineError::Divergence {
            trial: self.trial,
            time,
            population: population.name(),
            layer,
            what: if v.is_finite() {
                format!("reached {v:.3e}, beyond solver.runaway = {limit:e}")
            } else {
                format!("became {v}")
            },
        })
    }
}

/// The generator of replica `replica`'s decoder probes in trial `trial`: a ChaCha8 stream keyed
/// by `(seed, trial, replica)` (docs/MODEL.md §6), independent of the batch size and of how
/// the run was split into sittings.
fn probe_rng(seed: u64, trial: i64, replica: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&trial.to_le_bytes());
    key[16..24].copy_from_slice(&(replica as u64).to_le_bytes());
    key[24..].copy_from_slice(b"dtpprobe");
    ChaCha8Rng::from_seed(key)
}

/// The probe pool `q_l` at rest for a zero input (docs/MODEL.md §6): the mean of `‖Δa_l‖²`
/// over probes to first order in σ, `σ² ‖diag(a_l′(f_l(0))) f_l′(0)‖²_F`.
fn probe_pool_at_rest(net: &Network, l: usize, noise: f64) -> f64 {
    let rest = DVector::zeros(net.width(l - 1));
    let (f, jacobian) = (net.encode(l, &rest), net.encoder_jacobian(l, &rest));
    let act = net.arch().activations[l];
    let sum: f64 = (0..f.len())
        .map(|i| act.derivative(f[i]).powi(2) * jacobian.row(i).norm_squared())
        .sum();
    noise * noise * sum
}
