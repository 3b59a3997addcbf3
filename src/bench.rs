//! Throughput and memory measurements of the continuous engine (`dtpsim bench`): the same
//! scenario through the full-state path (`ode_solvers`) and the low-rank path in one process,
//! as ms per vector-field evaluation, evaluations per simulated time unit, trials per second
//! and vector-field GFLOP/s against a matrix-multiply peak measured in the same process, plus
//! the peak memory of a short and a 10× longer run.

use crate::activation::Activation;
use crate::continuous::config::{EngineConfig, Method, WeightsMode};
use crate::continuous::{EngineError, NoObserver, Phase, Simulation};
use crate::data::{Dataset, Task};
use crate::linalg::Op;
use crate::network::{Architecture, Init, Loss, Network};
use nalgebra::DMatrix;
use serde::Serialize;
use std::time::Instant;

/// Best GFLOP/s of `n × n` matrix products through [`crate::linalg::gemm`] (the engine's own
/// product: the same kernel, split over the same threads).
pub fn matmul_peak(n: usize, seconds: f64) -> f64 {
    let a = DMatrix::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.5);
    let b = DMatrix::from_fn(n, n, |i, j| ((i * 5 + j * 13) % 17) as f64 / 17.0 - 0.5);
    let mut c = DMatrix::zeros(n, n);
    let flops = 2.0 * (n * n * n) as f64;
    let mut best = 0.0f64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        crate::linalg::gemm(
            1.0,
            &a.as_view(),
            Op::N,
            &b.as_view(),
            Op::N,
            0.0,
            &mut c.as_view_mut(),
        );
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(&c);
    best
}

/// One engine configuration to measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Case {
    /// Replicas `B`.
    pub replicas: usize,
    /// Which integration path holds the weights.
    pub weights: WeightsMode,
    /// Runge–Kutta method.
    pub method: Method,
    /// Step of `rk4` (ignored by `dopri5`).
    pub step: f64,
}

impl Case {
    /// Short label, e.g. `low_rank dopri5`.
    pub fn label(&self) -> String {
        let path = match self.weights {
            WeightsMode::LowRank => "low_rank",
            WeightsMode::State => "state",
        };
        match self.method {
            Method::Rk4 => format!("{path} rk4 h={}", self.step),
            Method::Dopri5 => format!("{path} dopri5"),
            Method::Dop853 => format!("{path} dop853"),
        }
    }
}

/// One throughput measurement (the median of the repeats; `wall_min`/`wall_max` give the
/// spread).
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// What was measured.
    pub case: Case,
    /// Layer widths of the benchmark network.
    pub widths: Vec<usize>,
    /// Learning trials per run.
    pub trials: usize,
    /// Runs measured (the median is reported).
    pub repeats: usize,
    /// Wall-clock seconds of the median run.
    pub wall_seconds: f64,
    /// Fastest run.
    pub wall_min: f64,
    /// Slowest run.
    pub wall_max: f64,
    /// Trials per second of the median run.
    pub trials_per_second: f64,
    /// Trials × replicas per second (examples processed in continuous time).
    pub example_trials_per_second: f64,
    /// Vector-field evaluations of the median run.
    pub field_evaluations: u64,
    /// Accepted steps.
    pub accepted_steps: u64,
    /// Rejected steps.
    pub rejected_steps: u64,
    /// Wall time per vector-field evaluation, solver work included.
    pub ms_per_evaluation: f64,
    /// Vector-field evaluations per unit of simulated time.
    pub evaluations_per_time_unit: f64,
    /// Share of wall time spent inside the vector field.
    pub field_share: f64,
    /// Matrix-product GFLOP/s inside the vector field (the batched products, plus the
    /// `E Nᵀ` products on the full-state path).
    pub field_gflops: f64,
    /// Bytes of the flat ODE state.
    pub state_bytes: usize,
}

/// The benchmark network (tanh, softmax cross-entropy) and enough data for `trials` trials.
fn setup(widths: &[usize], replicas: usize, trials: usize, seed: u64) -> (Network, Dataset) {
    let arch = Architecture::new(widths, Activation::Tanh, Loss::SoftmaxCe)
        .expect("widths checked by the caller");
    let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, seed).expect("valid init");
    let task = Task::Clusters {
        dim: widths[0],
        classes: *widths.last().expect("non-empty"),
        separation: 1.0,
    };
    let data = task
        .generate(Some(replicas * trials.max(1)), Some(1), seed)
        .expect("a valid clusters task");
    (net, data)
}

/// One run of `trials` learning trials of the default dynamics under `case`.
fn run_once(
    net: &Network,
    data: &Dataset,
    case: &Case,
    trials: usize,
) -> Result<(f64, Simulation), EngineError> {
    let mut cfg = EngineConfig::default();
    cfg.solver.weights = case.weights;
    cfg.solver.method = case.method;
    cfg.solver.step = case.step;
    let mut sim = Simulation::new(net, cfg, case.replicas).expect("a valid default configuration");
    let start = Instant::now();
    for k in 0..trials {
        let batch: Vec<_> = (0..case.replicas)
            .map(|j| &data.train[k * case.replicas + j])
            .collect();
        sim.run_trial(&batch, Phase::Learn, &mut NoObserver)?;
    }
    Ok((start.elapsed().as_secs_f64(), sim))
}

/// Measures `case` `repeats` times on `widths` and reports the median run.
pub fn throughput(
    widths: &[usize],
    case: Case,
    trials: usize,
    repeats: usize,
    seed: u64,
) -> Result<Throughput, EngineError> {
    let (net, data) = setup(widths, case.replicas, trials, seed);
    let mut runs = Vec::new();
    for _ in 0..repeats.max(1) {
        runs.push(run_once(&net, &data, &case, trials)?);
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall_min, wall_max) = (runs[0].0, runs[runs.len() - 1].0);
    let (wall, sim) = &runs[runs.len() / 2];
    let st = sim.stats();
    let evals = st.field.evaluations;
    Ok(Throughput {
        case,
        widths: widths.to_vec(),
        trials,
        repeats: runs.len(),
        wall_seconds: *wall,
        wall_min,
        wall_max,
        trials_per_second: trials as f64 / wall,
        example_trials_per_second: (trials * case.replicas) as f64 / wall,
        field_evaluations: evals,
        accepted_steps: st.solver.accepted_steps,
        rejected_steps: st.solver.rejected_steps,
        ms_per_evaluation: 1e3 * wall / evals as f64,
        evaluations_per_time_unit: evals as f64 / st.time,
        field_share: st.field.seconds / wall,
        field_gflops: sim.flops_per_eval() * evals as f64 / st.field.seconds / 1e9,
        state_bytes: std::mem::size_of_val(sim.state()),
    })
}

/// Peak resident memory of this process in KiB (`VmHWM` of `/proc/self/status`), if known.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
