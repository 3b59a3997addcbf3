//! A running simulation: the flat state, the protocol of DESIGN §3 (trials of stimulus,
//! teacher, gap; warm-up), divergence detection and observers.

use super::config::EngineConfig;
use super::field::{Drive, Field, FieldStats};
use super::integrate::{integrate_segment, SolverStats};
use super::layout::{Block, Layout, Population};
use crate::data::Example;
use crate::error::ConfigError;
use crate::network::{Architecture, Network};
use nalgebra::{DMatrix, DVector};
use thiserror::Error;

/// Why a simulation stopped.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    #[error("diverged in trial {trial} at t = {time:.4}: {population} of layer {layer} {what}; lower the learning rates, add leak λ, or improve the decoders (longer warm-up)")]
    Divergence {
        trial: usize,
        time: f64,
        population: &'static str,
        layer: usize,
        what: String,
    },
    #[error("the solver failed in trial {trial} (t = {time:.4}): {message}; try a tighter solver.rtol or the rk4 method with a small solver.step")]
    Solver {
        trial: usize,
        time: f64,
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
    /// Trial index (warm-up trials first).
    pub trial: usize,
    /// Teacher gate `m(t)` on the segment being sampled.
    pub teacher: bool,
    pub layout: &'a Layout,
    pub state: &'a [f64],
}

impl Sample<'_> {
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
            Population::Influence => (layer >= 1 && layer <= l.depth)
                .then(|| l.q(layer))
                .flatten(),
            Population::W => (layer >= 1 && layer <= l.depth).then(|| l.w(layer)),
            Population::Omega => (layer >= 2 && layer <= l.depth).then(|| l.omega(layer)),
        }?;
        (neuron < block.rows && replica < block.cols)
            .then(|| self.state[block.start + replica * block.rows + neuron])
    }
}

/// Receives samples during a run (DESIGN §6: traces are sampled, never the whole trajectory).
pub trait Observer {
    /// Sampling interval in simulated time during trial `trial` (`None`: no samples; the
    /// segment is then integrated in one go).
    fn interval(&self, _trial: usize) -> Option<f64> {
        None
    }
    /// Called at `t = 0` of every trial and every [`Observer::interval`] after.
    fn sample(&mut self, _sample: &Sample) {}
}

/// An observer that takes no samples.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Work counters of a simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    pub field: FieldStats,
    pub solver: SolverStats,
    /// Simulated time.
    pub time: f64,
    pub trials: usize,
}

/// A simulation of the continuous-time model: the flat ODE state and the protocol.
pub struct Simulation {
    arch: Architecture,
    cfg: EngineConfig,
    layout: Layout,
    state: DVector<f64>,
    time: f64,
    trial: usize,
    stats: EngineStats,
    flops_per_eval: f64,
}

impl Simulation {
    /// Starts from `net`'s weights with all neurons at rest for a zero input: `h = d = u = 0`,
    /// pools at `‖a_l(0)‖²`, trace stages at `n_l(0)`, influence pools 0.
    pub fn new(net: &Network, cfg: EngineConfig) -> Result<Self, ConfigError> {
        cfg.validate(net.depth())?;
        let arch = net.arch().clone();
        let d = &cfg.dynamics;
        let layout = Layout::new(
            &arch,
            cfg.protocol.replicas,
            d.scheme,
            d.trace.stages,
            d.influence.enabled,
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
        })
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

    /// The engine configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Simulated time.
    pub fn time(&self) -> f64 {
        self.time
    }

    /// Trials run so far.
    pub fn trials(&self) -> usize {
        self.trial
    }

    /// Work counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Matrix-product FLOPs of one vector-field evaluation in the last segment.
    pub fn flops_per_eval(&self) -> f64 {
        self.flops_per_eval
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

    /// A single-replica simulation holding replica `j`'s neuron state and the shared weights.
    pub fn replica(&self, j: usize) -> Simulation {
        let mut cfg = self.cfg.clone();
        cfg.protocol.replicas = 1;
        let mut single =
            Simulation::new(&self.network(), cfg).expect("same validated configuration");
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
                if let (Some(a), Some(b)) = (lay.q(l), one.q(l)) {
                    copy(a, b);
                }
            }
            if l >= 2 {
                if let (Some(a), Some(b)) = (lay.u(l), one.u(l)) {
                    copy(a, b);
                }
            }
            copy(lay.p(l), one.p(l));
            if l < lay.depth {
                for k in 1..=lay.stages {
                    copy(lay.stage(l, k), one.stage(l, k));
                }
            }
        }
        single.time = self.time;
        single.trial = self.trial;
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
        Drive {
            x,
            y,
            teacher: if teacher { 1.0 } else { 0.0 },
            forward_plastic,
        }
    }

    /// Integrates for `duration` under `drive`, sampling for `observer`.
    pub fn run_segment(
        &mut self,
        drive: &Drive,
        duration: f64,
        observer: &mut dyn Observer,
    ) -> Result<(), EngineError> {
        let field = Field::new(&self.arch, &self.layout, &self.cfg, drive);
        self.flops_per_eval = field.flops_per_eval();
        let end = self.time + duration;
        let interval = observer.interval(self.trial).filter(|dt| *dt > 0.0);
        let mut t = self.time;
        let result = loop {
            if let Some(_dt) = interval {
                observer.sample(&Sample {
                    time: t,
                    trial: self.trial,
                    teacher: drive.teacher > 0.0,
                    layout: &self.layout,
                    state: self.state.as_slice(),
                });
            }
            if t >= end - 1e-12 {
                break Ok(());
            }
            let next = match interval {
                Some(dt) => (t + dt).min(end),
                None => end,
            };
            let next = if end - next < 1e-9 { end } else { next };
            let y = std::mem::replace(&mut self.state, DVector::zeros(0));
            match integrate_segment(
                &field,
                y.clone(),
                t,
                next,
                &self.cfg.solver,
                &mut self.stats.solver,
            ) {
                Ok(new) => self.state = new,
                Err(e) => {
                    self.state = y;
                    break Err(EngineError::Solver {
                        trial: self.trial,
                        time: t,
                        message: e.to_string(),
                    });
                }
            }
            if let Some(f) = field.fault() {
                break Err(EngineError::Divergence {
                    trial: self.trial,
                    time: f.time,
                    population: f.population.name(),
                    layer: f.layer,
                    what: "has a non-finite time derivative".into(),
                });
            }
            if let Some(e) = self.check_state(next) {
                // keep the last state that passed the check (the start of this chunk)
                self.state = y;
                break Err(e);
            }
            t = next;
            if interval.is_none() {
                break Ok(());
            }
        };
        let fs = field.stats();
        self.stats.field.evaluations += fs.evaluations;
        self.stats.field.seconds += fs.seconds;
        self.stats.time += t.max(self.time) - self.time;
        self.time = t.max(self.time);
        if result.is_ok() {
            self.time = end;
        }
        result
    }

    /// A non-finite or runaway entry of the state, located.
    fn check_state(&self, time: f64) -> Option<EngineError> {
        let limit = self.cfg.solver.runaway;
        let i = self
            .state
            .iter()
            .position(|v| !v.is_finite() || v.abs() > limit)?;
        let (population, layer) = self.layout.locate(i);
        let v = self.state[i];
        Some(EngineError::Divergence {
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

    /// Runs one trial (DESIGN §3): stimulus for `T_stim` with the teacher on during
    /// `[t_on, T_stim)` (learning phase only), then `T_gap` of blank input. Returns the
    /// relaxation residual at teacher offset (see [`Simulation::relaxation_residual`]).
    pub fn run_trial(
        &mut self,
        examples: &[&Example],
        phase: Phase,
        observer: &mut dyn Observer,
    ) -> Result<f64, EngineError> {
        let p = self.cfg.protocol.clone();
        let learn = phase == Phase::Learn;
        let settle = self.drive(examples, true, false, learn);
        self.run_segment(&settle, p.t_on, observer)?;
        let taught = self.drive(examples, true, learn, learn);
        self.run_segment(&taught, p.t_stim - p.t_on, observer)?;
        let residual = if learn {
            self.relaxation_residual(&taught)
        } else {
            f64::NAN
        };
        if p.t_gap > 0.0 {
            let blank = self.drive(examples, false, false, learn);
            self.run_segment(&blank, p.t_gap, observer)?;
        }
        self.trial += 1;
        self.stats.trials += 1;
        Ok(residual)
    }

    /// How far the targets are from relaxed under `drive`: `τ_d ‖Ḋ‖ / ‖D‖` over every target
    /// population and replica (0 at a fixed point, about 1 right after the teacher comes on).
    pub fn relaxation_residual(&self, drive: &Drive) -> f64 {
        let dy = self.derivative(drive);
        let (mut num, mut den) = (0.0, 0.0);
        for l in 1..=self.layout.depth {
            num += self.layout.d(l).view(dy.as_slice()).norm_squared();
            den += self.layout.d(l).view(self.state.as_slice()).norm_squared();
        }
        if den > 0.0 {
            self.cfg.dynamics.tau_d * (num / den).sqrt()
        } else {
            f64::NAN
        }
    }
}
