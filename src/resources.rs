//! What a scenario will cost, estimated before anything is allocated: memory (state, solver
//! buffers, data sets, traces, the references) and work (vector-field evaluations and the
//! FLOPs of every model). `check` prints the estimate; `check`, `run` and `sweep` refuse a
//! scenario that exceeds the limits ([`Limits`]: by default 80% of the machine's memory and
//! 14 days of work), naming the field that drives the estimate.
//!
//! The estimates are upper-bound approximations (within a small factor), not measurements:
//! their purpose is to stop a typo (`"replicas": 1000000`, `"trials": 1e12`) before it
//! allocates gigabytes or runs for years.

use crate::continuous::config::{Method, WeightsMode};
use crate::data::{Task, DEFAULT_GENERATED};
use crate::discrete::targets::Scheme;
use crate::discrete::train::Algorithm;
use crate::error::ConfigError;
use crate::scenario::Scenario;
use std::sync::RwLock;

/// Sustained FLOP rate the work estimate converts to time with: about what one core of a
/// current machine reaches in the matrix products (README, Performance: the engine's vector
/// field at B = 32 runs at 21 GFLOP/s on one thread; discrete BP in mini-batches of 32 on
/// Fashion-MNIST at about 20). Measured against whole runs on a 2-core machine, the estimate
/// is 1.6–2.3× the wall time: 6.9 h against 4.1 h for `fashion_mnist_engine.json`, 28 against
/// 12 minutes for `fashion_mnist_128.json`.
pub const FLOPS_PER_SECOND: f64 = 2e10;

/// Seconds of fixed cost per vector-field evaluation (solver steps, nonlinearities), which
/// dominates for small networks (measured: about 9 µs per evaluation for 10-10-10-10).
pub const SECONDS_PER_EVALUATION: f64 = 5e-6;

/// The largest run a command accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Bytes of memory one run may use.
    pub memory_bytes: f64,
    /// Hours of work one run may take at [`FLOPS_PER_SECOND`].
    pub hours: f64,
}

impl Limits {
    /// 80% of the machine's memory (16 GiB when it cannot be read) and 14 days.
    pub fn machine() -> Limits {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse::<f64>().ok())
            })
            .map_or(16.0 * GIB, |kib| kib * 1024.0);
        Limits {
            memory_bytes: 0.8 * total,
            hours: 14.0 * 24.0,
        }
    }
}

static LIMITS: RwLock<Option<Limits>> = RwLock::new(None);

/// Sets the limits every later check uses (the command line's `--max-memory`, `--max-hours`).
pub fn set_limits(limits: Limits) {
    *LIMITS.write().unwrap_or_else(|e| e.into_inner()) = Some(limits);
}

/// The limits in force: those set by [`set_limits`], else [`Limits::machine`].
pub fn limits() -> Limits {
    LIMITS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(Limits::machine)
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What a scenario is estimated to cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Peak memory in bytes.
    pub memory_bytes: f64,
    /// The part of the memory estimate that dominates it, and the fields that set it.
    pub memory_driver: (f64, String),
    /// Vector-field evaluations of the continuous engine (0 without one).
    pub evaluations: f64,
    /// Total floating-point operations of every model.
    pub flops: f64,
    /// The part of the work that dominates it, and the fields that set it.
    pub work_driver: (f64, String),
    /// Bytes `traces.csv` will take on disk.
    pub trace_bytes: f64,
}

impl Estimate {
    /// Hours of work at [`FLOPS_PER_SECOND`] plus [`SECONDS_PER_EVALUATION`].
    pub fn hours(&self) -> f64 {
        (self.flops / FLOPS_PER_SECOND + self.evaluations * SECONDS_PER_EVALUATION) / 3600.0
    }

    /// One line for `check`: memory, evaluations, work and the trace file's size.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "estimate: memory {}, {:.2e} FLOP (≈ {})",
            bytes(self.memory_bytes),
            self.flops,
            duration(self.hours() * 3600.0)
        );
        if self.evaluations > 0.0 {
            s.push_str(&format!(
                ", {:.2e} vector-field evaluations",
                self.evaluations
            ));
        }
        if self.trace_bytes > 0.0 {
            s.push_str(&format!(", traces.csv {}", bytes(self.trace_bytes)));
        }
        s
    }

    /// An error naming the driving fields when the estimate exceeds `limits`.
    pub fn check(&self, limits: &Limits) -> Result<(), ConfigError> {
        if self.memory_bytes > limits.memory_bytes {
            let (part, fields) = &self.memory_driver;
            return Err(ConfigError::new(
                fields.clone(),
                format!(
                    "the run would need about {} of memory ({} of it here), more than the limit of {}; make it smaller, or raise the limit with --max-memory <GiB> on a bigger machine",
                    bytes(self.memory_bytes),
                    bytes(*part),
                    bytes(limits.memory_bytes)
                ),
            ));
        }
        if self.hours() > limits.hours {
            let (part, fields) = &self.work_driver;
            return Err(ConfigError::new(
                fields.clone(),
                format!(
                    "the run would take about {} ({:.2e} FLOP, {:.2e} of it here), more than the limit of {}; make it shorter, or raise the limit with --max-hours <hours>",
                    duration(self.hours() * 3600.0),
                    self.flops,
                    part,
                    duration(limits.hours * 3600.0)
                ),
            ));
        }
        Ok(())
    }
}

/// Bytes as `12.3 MiB`.
pub fn bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i + 1 == units.len() && v >= 1024.0 {
        return format!("{b:.2e} B");
    }
    format!("{v:.1} {}", units[i])
}

/// Seconds as `3.2 s`, `4.1 min`, `2.0 h`, `3.5 days` or `1.2e5 years`.
pub fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 86400.0 * 2.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s < 86400.0 * 365.0 {
        format!("{:.1} days", s / 86400.0)
    } else {
        format!("{:.2e} years", s / 86400.0 / 365.0)
    }
}

/// Keeps the largest of named parts.
fn largest(parts: &[(f64, String)]) -> (f64, String) {
    parts
        .iter()
        .cloned()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((0.0, String::new()))
}

/// The estimate of `s` (every size in f64: nothing here can overflow).
pub fn estimate(s: &Scenario) -> Estimate {
    let f = |n: usize| n as f64;
    let w = &s.network.widths;
    let bias = f(usize::from(s.network.bias));
    let depth = w.len().saturating_sub(1);
    let encoders: f64 = (1..=depth).map(|l| f(w[l]) * (f(w[l - 1]) + bias)).sum();
    let decoders: f64 = (2..=depth).map(|l| f(w[l - 1]) * (f(w[l]) + bias)).sum();
    let params = encoders + decoders;
    let neurons: f64 = w.iter().map(|&n| f(n)).sum();
    let sched = &s.schedule;
    let batch = f(sched.batch);
    let trials = f(sched.warmup_trials) + f(sched.trials);

    // data: two vectors per example plus their headers; a data file is read whole as text
    let (n_in, n_out) = s.task.io_widths();
    let example = 8.0 * (f(n_in) + f(n_out)) + 64.0;
    let data_bytes = match &s.task {
        Task::Csv { train, test, .. } => {
            let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64);
            // the text, and the parsed numbers (at most one per two characters)
            3.0 * (size(train) + size(test))
        }
        Task::Idx { dir, .. } => {
            // the examples kept, and the pixel bytes of both files (read whole)
            let (tr, te) = crate::idx::counts(dir.as_deref()).unwrap_or((60_000, 10_000));
            let kept = f(s.data.train.unwrap_or(tr).min(tr)) + f(s.data.test.unwrap_or(te).min(te));
            kept * example + (f(tr) + f(te)) * f(n_in)
        }
        _ => {
            let n = f(s.data.train.unwrap_or(DEFAULT_GENERATED.0))
                + f(s.data.test.unwrap_or(DEFAULT_GENERATED.1));
            n * example
        }
    };
    let teacher_bytes = match &s.task {
        Task::TeacherStudent { widths, .. } => {
            8.0 * (1..widths.len())
                .map(|l| f(widths[l]) * (f(widths[l - 1]) + 1.0) * 2.0)
                .sum::<f64>()
        }
        _ => 0.0,
    };

    // every reference holds its weights, deltas, Adam moments and a mini-batch pass
    let mut reference_bytes = 0.0;
    let mut reference_flops = 0.0;
    for r in &s.references {
        reference_bytes += 8.0 * (4.0 * params + 12.0 * batch * neurons);
        let sweeps = match &r.algorithm {
            Algorithm::Dtp1 { relaxation, .. } => f(relaxation.iterations.max(1)),
            _ => 1.0,
        };
        reference_flops += trials * batch * 2.0 * params * (3.0 + 2.0 * sweeps);
    }

    let mut memory = vec![
        (
            data_bytes + teacher_bytes,
            "data.train, data.test".to_string(),
        ),
        (reference_bytes, "references".to_string()),
    ];
    let mut work = vec![(reference_flops, "schedule.trials, references".to_string())];
    let (mut evaluations, mut trace_bytes) = (0.0, 0.0);
    if let Some(engine) = &s.engine {
        let d = &engine.dynamics;
        let stages = f(d.trace.stages);
        let per_replica = neurons * (2.0 + f(usize::from(d.scheme == Scheme::DecoderInput)))
            + f(depth + 1) * 2.0
            + stages * (neurons + f(depth) * bias);
        let state = params + batch * per_replica;
        let engine_bytes = 8.0
            * match engine.solver.weights {
                // ode_solvers keeps about a dozen state-sized vectors
                WeightsMode::State => 12.0 * state,
                // two copies of the weights, explicit stage terms (≤ 7 per matrix), factors
                WeightsMode::LowRank => {
                    3.0 * state + 7.0 * params + 28.0 * batch * (neurons * 2.0 + f(depth))
                }
            }
            // the vector field's workspace: activations, rates and products per replica
            // (calibrated: 5.6 GiB measured for 10-10-10-10 at B = 200,000, estimate 6.3 GiB)
            + 8.0 * 40.0 * batch * neurons;
        memory.push((
            engine_bytes,
            "schedule.batch, network.widths, engine.dynamics.trace.stages".to_string(),
        ));
        let p = &engine.protocol;
        let time = trials * (p.t_stim + p.t_gap);
        // the fastest rate in the system bounds an explicit method's step
        let rate = [
            1.0 / d.tau_h,
            (1.0 + d.leak) / d.tau_d,
            1.0 / d.tau_p,
            if d.trace.stages > 0 {
                stages / d.trace.delay
            } else {
                0.0
            },
        ]
        .into_iter()
        .fold(0.0, f64::max);
        evaluations = match engine.solver.method {
            Method::Rk4 => 4.0 * time / engine.solver.step,
            // measured: about 13 evaluations per unit of time and unit of rate (Dopri5,
            // rtol 1e-6); Dop853 takes larger steps with more stages. Looser tolerances save
            // less than an accuracy-bound step would (rtol^{-1/5}): on the Fashion-MNIST engine
            // 17.9, 11.5 and 9.0 evaluations per time unit at rtol 1e-6, 1e-4 and 1e-3, about
            // rtol^{-1/10}; tighter ones are taken as accuracy-bound.
            Method::Dopri5 | Method::Dop853 => {
                let tolerance = 1e-6 / engine.solver.rtol;
                let exponent = if tolerance < 1.0 { 0.1 } else { 0.2 };
                13.0 * rate * time * tolerance.powf(exponent)
            }
        };
        // difference reconstruction decoders: one more column block through W_2..W_L and Ω_l
        let probes = if engine.dynamics.decoder.probes() {
            let first = f(w[1]) * (f(w[0]) + bias);
            2.0 * (params - first) * batch
        } else {
            0.0
        };
        let flops_per_eval = 6.0 * params * batch + probes;
        let driver = if engine.solver.method == Method::Rk4 {
            "schedule.trials, engine.protocol.t_stim, engine.solver.step"
        } else {
            "schedule.trials, engine.protocol.t_stim, engine.dynamics (its fastest rate)"
        };
        work.push((evaluations * flops_per_eval, driver.to_string()));
        let columns = f(s.trace_columns().len());
        let traced = s.traces.trial_range(sched);
        let traced = (traced.end - traced.start).max(0) as f64;
        if s.traces.interval > 0.0 && columns > 0.0 {
            let rows = traced * ((p.t_stim + p.t_gap) / s.traces.interval + 6.0);
            // streamed to disk as they are sampled: no memory term
            trace_bytes = rows * (columns + 4.0) * 24.0;
        }
    }
    let memory_bytes = memory.iter().map(|m| m.0).sum();
    let flops = work.iter().map(|m| m.0).sum();
    Estimate {
        memory_bytes,
        memory_driver: largest(&memory),
        evaluations,
        flops,
        work_driver: largest(&work),
        trace_bytes,
    }
}

/// Refuses `s` when its estimate exceeds the limits in force.
pub fn check(s: &Scenario) -> Result<Estimate, ConfigError> {
    let e = estimate(s);
    e.check(&limits())?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_readable_units() {
        assert_eq!(bytes(512.0), "512.0 B");
        assert_eq!(bytes(21.3 * 1024.0 * 1024.0), "21.3 MiB");
        assert_eq!(duration(3.04), "3.0 s");
        assert_eq!(duration(7200.0), "2.0 h");
        assert!(duration(1e12).ends_with("years"));
    }

    #[test]
    fn the_estimate_grows_with_the_fields_that_drive_it() {
        let base = Scenario::default();
        let e0 = estimate(&base);
        assert!(e0.memory_bytes > 0.0 && e0.flops > 0.0 && e0.evaluations > 0.0);
        let mut wide = base.clone();
        wide.schedule.batch = 1000;
        let e1 = estimate(&wide);
        assert!(e1.memory_bytes > 10.0 * e0.memory_bytes);
        assert!(e1.memory_driver.1.contains("schedule.batch"));
        let mut stiff = base.clone();
        stiff.engine.as_mut().unwrap().dynamics.leak = 999.0;
        assert!(estimate(&stiff).evaluations > 300.0 * e0.evaluations);
        // Dopri5's evaluations scale as rtol^{-1/10} above 1e-6 and rtol^{-1/5} below
        let with_rtol = |rtol: f64| {
            let mut s = base.clone();
            s.engine.as_mut().unwrap().solver.rtol = rtol;
            estimate(&s).evaluations / e0.evaluations
        };
        assert!((with_rtol(1e-6) - 1.0).abs() < 1e-12);
        assert!((with_rtol(1e-3) - 1e-3f64.powf(0.1)).abs() < 1e-12);
        assert!((with_rtol(1e-8) - 100f64.powf(0.2)).abs() < 1e-12);
        let limits = Limits {
            memory_bytes: 1e12,
            hours: 1.0,
        };
        let mut long = base;
        long.schedule.trials = 1_000_000_000;
        let err = estimate(&long).check(&limits).unwrap_err();
        assert!(err.path.contains("schedule.trials"), "{err}");
        assert!(err.message.contains("--max-hours"), "{err}");
    }
}
