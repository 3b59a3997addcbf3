//! The protocol of DESIGN §3 end to end: warm-up trials, learning trials, evaluation with the
//! exact discrete forward pass every `eval_every` learning trials.

use super::config::EngineConfig;
use super::simulation::{EngineError, EngineStats, Observer, Phase, Simulation};
use crate::data::{evaluate, Dataset, Example};
use crate::discrete::train::{mean_squared_error, reconstruction_error};
use crate::error::ConfigError;
use crate::network::Network;
use rand::seq::SliceRandom;
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
    pub test_loss: f64,
    pub test_mse: f64,
    pub test_accuracy: f64,
    /// Relative decoder reconstruction error on the test set.
    pub reconstruction: f64,
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

fn eval_row(net: &Network, data: &Dataset, trial: usize, time: f64, start: &Instant) -> EvalRow {
    let (test_loss, test_accuracy) = evaluate(net, &data.test, data.classification);
    EvalRow {
        trial,
        time,
        test_loss,
        test_mse: if data.classification { f64::NAN } else { mean_squared_error(net, &data.test) },
        test_accuracy,
        reconstruction: reconstruction_error(net, &data.test),
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
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(usize, usize, Option<&EvalRow>),
) -> Result<RunOutcome, ConfigError> {
    let mut sim = Simulation::new(net, cfg.clone())?;
    if data.train.is_empty() {
        return Err(ConfigError::new("data", "the training set is empty"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x51_u64));
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let mut cursor = order.len();
    let b = cfg.protocol.replicas;
    let mut next_batch = |rng: &mut ChaCha8Rng| -> Vec<&Example> {
        (0..b)
            .map(|_| {
                if cursor == order.len() {
                    order.shuffle(rng);
                    cursor = 0;
                }
                cursor += 1;
                &data.train[order[cursor - 1]]
            })
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
        rows.push(eval_row(&sim.network(), data, 0, sim.time(), &start));
        for k in 1..=p.trials {
            let batch = next_batch(&mut rng);
            if let Err(e) = sim.run_trial(&batch, Phase::Learn, observer) {
                error = Some(e);
                break;
            }
            done += 1;
            let row = (k % p.eval_every == 0 || k == p.trials).then(|| eval_row(&sim.network(), data, k, sim.time(), &start));
            if let Some(r) = row {
                rows.push(r);
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
