//! The protocol of docs/MODEL.md §6 end to end: warm-up trials, learning trials, evaluation with the
//! exact discrete forward pass every `eval_every` learning trials, and per-trial diagnostics
//! (training loss before the trial, relaxation residual at teacher offset and, on request,
//! the cosine of the trial's weight change with the fully relaxed DTP1 update).

use super::config::EngineConfig;
use super::simulation::{EngineError, EngineStats, Observer, Phase, Simulation};
use crate::data::{evaluate, Dataset, EpochSampler, Example};
use crate::discrete::gauss_newton::cosine_flat;
use crate::discrete::targets::{
    influence_scales, output_displacement, relax, Order, Relaxation, Scheme,
};
use crate::discrete::train::{mean_squared_error, reconstruction_error};
use crate::discrete::updates::dtp1_delta;
use crate::error::ConfigError;
use crate::network::Network;
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// One evaluation of a continuous run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// Learning trials completed (warm-up excluded).
    pub trial: usize,
    /// Simulated time since the start (warm-up included).
    pub time: f64,
    /// Mean loss of the trials' examples since the previous evaluation, each measured with
    /// the weights at the start of its trial (NaN at trial 0).
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_mse: f64,
    pub test_accuracy: f64,
    /// Relative decoder reconstruction error on the test set.
    pub reconstruction: f64,
    /// Mean relaxation residual at teacher offset since the previous evaluation.
    pub relaxation_residual: f64,
    /// Mean cosine between each trial's weight change and the fully relaxed DTP1 update
    /// (NaN unless requested).
    pub update_cosine: f64,
    /// Frobenius norms `‖W_1‖ … ‖W_L‖`.
    pub w_norms: Vec<f64>,
    pub wall_seconds: f64,
}

/// What a continuous run produced; `error` is set when it stopped early (rows kept).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub rows: Vec<EvalRow>,
    pub network: Network,
    pub error: Option<EngineError>,
    pub stats: EngineStats,
    pub flops_per_eval: f64,
}

/// Running means between evaluations.
#[derive(Default)]
struct Accumulator {
    loss: (f64, usize),
    residual: (f64, usize),
    cosine: (f64, usize),
}

fn mean((sum, n): (f64, usize)) -> f64 {
    if n > 0 {
        sum / n as f64
    } else {
        f64::NAN
    }
}

fn add(acc: &mut (f64, usize), v: f64) {
    if v.is_finite() {
        acc.0 += v;
        acc.1 += 1;
    }
}

/// The update a fully relaxed trial would make (the continuous limit of T6): `η_l s_l` times
/// the replica mean of the DTP1 update with the engine's scheme relaxed to its fixed point.
pub fn fully_relaxed_update(
    net: &Network,
    cfg: &EngineConfig,
    batch: &[&Example],
) -> Vec<DMatrix<f64>> {
    let d = &cfg.dynamics;
    let relaxation = match d.scheme {
        Scheme::Difference => Relaxation::difference(),
        scheme => Relaxation {
            scheme,
            order: Order::Parallel,
            iterations: 500,
            leak: d.leak,
            tolerance: 1e-12,
        },
    };
    let mut total: Vec<DMatrix<f64>> = net
        .encoders()
        .iter()
        .map(|w| DMatrix::zeros(w.nrows(), w.ncols()))
        .collect();
    for ex in batch {
        let fwd = net.forward(&ex.x);
        let d_out = output_displacement(net, &fwd, &ex.y, d.beta);
        // a diverging relaxation has no fixed point to compare with: leave its share out
        let Ok(t) = relax(net, &fwd, &d_out, &relaxation) else {
            continue;
        };
        let s = if d.influence.enabled {
            influence_scales(&t.d)
        } else {
            vec![1.0; net.depth() + 1]
        };
        for l in 1..=net.depth() {
            total[l - 1] += dtp1_delta(&fwd, &t.d[l], l)
                * (d.plasticity.eta.get(l) * s[l] / batch.len() as f64);
        }
    }
    total
}

fn eval_row(
    sim: &Simulation,
    data: &Dataset,
    trial: usize,
    acc: &Accumulator,
    start: &Instant,
) -> EvalRow {
    let net = sim.network();
    let (test_loss, test_accuracy) = evaluate(&net, &data.test, data.classification);
    EvalRow {
        trial,
        time: sim.time(),
        train_loss: mean(acc.loss),
        test_loss,
        test_mse: if data.classification {
            f64::NAN
        } else {
            mean_squared_error(&net, &data.test)
        },
        test_accuracy,
        reconstruction: reconstruction_error(&net, &data.test),
        relaxation_residual: mean(acc.residual),
        update_cosine: mean(acc.cosine),
        w_norms: net.encoders().iter().map(|w| w.norm()).collect(),
        wall_seconds: start.elapsed().as_secs_f64(),
    }
}

/// Runs warm-up and learning trials on `data.train` (shuffled epochs, seeded), evaluating on
/// `data.test`. `progress(trials_done, total, last_row)` is called after every trial.
pub fn run_protocol(
    net: &Network,
    cfg: &EngineConfig,
    data: &Dataset,
    seed: u64,
    update_cosine: bool,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(usize, usize, Option<&EvalRow>),
) -> Result<RunOutcome, ConfigError> {
    let mut sim = Simulation::new(net, cfg.clone())?;
    if data.train.is_empty() {
        return Err(ConfigError::new("data", "the training set is empty"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x51_u64));
    let mut sampler = EpochSampler::new(data.train.len());
    let b = cfg.protocol.replicas;
    let mut next_batch = |rng: &mut ChaCha8Rng| -> Vec<&Example> {
        (0..b)
            .map(|_| &data.train[sampler.next_index(rng)])
            .collect()
    };
    let start = Instant::now();
    let p = &cfg.protocol;
    let total = p.warmup_trials + p.trials;
    let mut rows = Vec::new();
    let mut error = None;
    let mut done = 0usize;
    for _ in 0..p.warmup_trials {
        let batch = next_batch(&mut rng);
        if let Err(e) = sim.run_trial(&batch, Phase::Warmup, observer) {
            error = Some(e);
            break;
        }
        done += 1;
        progress(done, total, None);
    }
    if error.is_none() {
        let mut acc = Accumulator::default();
        rows.push(eval_row(&sim, data, 0, &acc, &start));
        let loss = net.arch().loss;
        for k in 1..=p.trials {
            let batch = next_batch(&mut rng);
            let before = sim.network();
            for ex in &batch {
                add(&mut acc.loss, loss.value(&before.predict(&ex.x), &ex.y));
            }
            let full = update_cosine.then(|| fully_relaxed_update(&before, cfg, &batch));
            match sim.run_trial(&batch, Phase::Learn, observer) {
                Ok(residual) => add(&mut acc.residual, residual),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
            if let Some(full) = full {
                let after = sim.network();
                let change: Vec<DMatrix<f64>> = (1..=after.depth())
                    .map(|l| after.w(l) - before.w(l))
                    .collect();
                add(&mut acc.cosine, cosine_flat(&change, &full));
            }
            done += 1;
            if k % p.eval_every == 0 || k == p.trials {
                rows.push(eval_row(&sim, data, k, &acc, &start));
                acc = Accumulator::default();
            }
            progress(done, total, rows.last());
        }
    }
    let network = sim.network();
    Ok(RunOutcome {
        rows,
        network,
        error,
        stats: sim.stats(),
        flops_per_eval: sim.flops_per_eval(),
    })
}
