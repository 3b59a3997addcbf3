//! Throughput and memory measurements of the continuous engine (`dtpsim bench`): simulated
//! trials per wall second, achieved GFLOP/s of the vector field against a matrix-multiply peak
//! measured in the same run, time spent inside `ode_solvers` versus the vector field, and the
//! peak memory of a long run against a short one.

use crate::activation::Activation;
use crate::continuous::config::EngineConfig;
use crate::continuous::{NoObserver, Phase, Simulation};
use crate::data::Task;
use crate::network::{Architecture, Init, Loss, Network};
use nalgebra::DMatrix;
use serde::Serialize;
use std::time::Instant;

/// Best single-threaded GFLOP/s of `n × n` matrix products (nalgebra, as the engine uses).
pub fn matmul_peak(n: usize, seconds: f64) -> f64 {
    let a = DMatrix::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.5);
    let b = DMatrix::from_fn(n, n, |i, j| ((i * 5 + j * 13) % 17) as f64 / 17.0 - 0.5);
    let mut c = DMatrix::zeros(n, n);
    let flops = 2.0 * (n * n * n) as f64;
    let mut best = 0.0f64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        c.gemm(1.0, &a, &b, 0.0);
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(&c);
    best
}

/// One throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub widths: Vec<usize>,
    pub replicas: usize,
    pub trials: usize,
    pub wall_seconds: f64,
    pub trials_per_second: f64,
    /// Trials × replicas per second (examples processed in continuous time).
    pub example_trials_per_second: f64,
    pub field_evaluations: u64,
    pub accepted_steps: u64,
    /// Share of wall time spent inside the vector field (the rest is `ode_solvers` and the
    /// protocol).
    pub field_share: f64,
    /// Matrix-product GFLOP/s inside the vector field.
    pub field_gflops: f64,
    /// Bytes of the ODE state.
    pub state_bytes: usize,
}

/// Runs `trials` learning trials of the default engine on `widths` with `replicas` replicas.
pub fn throughput(
    widths: &[usize],
    replicas: usize,
    trials: usize,
    seed: u64,
) -> Result<Throughput, crate::continuous::EngineError> {
    let arch = Architecture::new(widths, Activation::Tanh, Loss::SoftmaxCe).expect("valid widths");
    let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, seed).expect("valid init");
    let task = Task::Clusters {
        dim: widths[0],
        classes: *widths.last().expect("non-empty"),
        separation: 1.0,
    };
    let data = task
        .generate(replicas * trials.max(1), 1, seed)
        .expect("valid task");
    let mut cfg = EngineConfig::default();
    cfg.protocol.replicas = replicas;
    let mut sim = Simulation::new(&net, cfg).expect("valid configuration");
    let start = Instant::now();
    for k in 0..trials {
        let batch: Vec<_> = (0..replicas)
            .map(|j| &data.train[k * replicas + j])
            .collect();
        sim.run_trial(&batch, Phase::Learn, &mut NoObserver)
            .expect("the benchmark run stays finite");
    }
    let wall = start.elapsed().as_secs_f64();
    let st = sim.stats();
    Ok(Throughput {
        widths: widths.to_vec(),
        replicas,
        trials,
        wall_seconds: wall,
        trials_per_second: trials as f64 / wall,
        example_trials_per_second: (trials * replicas) as f64 / wall,
        field_evaluations: st.field.evaluations,
        accepted_steps: st.solver.accepted_steps,
        field_share: st.field.seconds / wall,
        field_gflops: sim.flops_per_eval() * st.field.evaluations as f64 / st.field.seconds / 1e9,
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
