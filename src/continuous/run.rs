//! The protocol of docs/MODEL.md §6 end to end: warm-up trials, learning trials, evaluation with
//! the exact discrete forward pass every `eval_every` learning trials, and per-trial diagnostics
//! (training loss before the trial, the measured contraction α_l at teacher offset and, on request,
//! the cosine of the trial's weight change with the fully relaxed DTP1 update).

use super::config::EngineConfig;
use super::simulation::{EngineError, EngineStats, Observer, Phase, Simulation};
use crate::checkpoint::{
    records, Checkpointing, ExampleOrder, ModelCheckpoint, ModelState, RngState,
};
use crate::data::{example_order, Dataset, EpochSampler, Example};
use crate::discrete::gauss_newton::cosine_flat;
use crate::discrete::targets::{
    influence_scales, output_displacement, relax, Order, Relaxation, Scheme,
};
use crate::discrete::updates::dtp1_delta;
use crate::error::ConfigError;
use crate::metrics::{EvaluationPlan, LayerMeans, MetricsRow, RunningMean, TestScope};
use crate::network::Network;
use crate::scenario::Schedule;
use nalgebra::DMatrix;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// What a continuous run produced; `error` is set when it stopped early (rows kept).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// One row per evaluation (model `continuous`).
    pub rows: Vec<MetricsRow>,
    /// The final weights (the last good ones if the run stopped).
    pub network: Network,
    /// Why the run stopped early.
    pub error: Option<EngineError>,
    /// Whether it stopped at a trial boundary on request ([`crate::interrupt`]).
    pub interrupted: bool,
    /// Work counters.
    pub stats: EngineStats,
    /// Matrix-product FLOPs of one vector-field evaluation.
    pub flops_per_eval: f64,
}

/// Running means between evaluations.
struct Accumulator {
    loss: RunningMean,
    alpha: LayerMeans,
    cosine: RunningMean,
    layer_cosine: LayerMeans,
    layer_step: LayerMeans,
}

impl Accumulator {
    fn new(depth: usize) -> Self {
        Accumulator {
            loss: RunningMean::default(),
            alpha: LayerMeans::new(depth),
            cosine: RunningMean::default(),
            layer_cosine: LayerMeans::weight_layers(depth),
            layer_step: LayerMeans::weight_layers(depth),
        }
    }
}

/// The update a fully relaxed trial would make (the continuous limit of T6): `η_l s_l` times
/// the replica sum of the DTP1 update with the engine's scheme relaxed to its fixed point
/// (the engine's `η` is per example: its rule sums over the replicas, docs/MODEL.md §6).
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
            total[l - 1] += dtp1_delta(&fwd, &t.d[l], l) * (d.plasticity.eta.get(l) * s[l]);
        }
    }
    total
}

/// How one layer's trial update `ΔW` agrees with the fully relaxed one `ΔW*`: the cosine
/// `⟨ΔW, ΔW*⟩/(‖ΔW‖ ‖ΔW*‖)` and the step `⟨ΔW, ΔW*⟩/‖ΔW*‖²` (the length of `ΔW` along
/// `ΔW*`, as a fraction of it). Both NaN when `ΔW*` vanishes (a layer that does not learn);
/// the cosine is 0 when only `ΔW` does.
fn agreement(dw: &DMatrix<f64>, full: &DMatrix<f64>) -> (f64, f64) {
    let full_sq = full.norm_squared();
    if full_sq == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let dot = dw.dot(full);
    let norm = dw.norm();
    let cosine = if norm == 0.0 {
        0.0
    } else {
        dot / (norm * full_sq.sqrt())
    };
    (cosine, dot / full_sq)
}

fn eval_row(
    sim: &Simulation,
    plan: &EvaluationPlan,
    scope: TestScope,
    trial: usize,
    acc: &Accumulator,
    start: &Instant,
) -> MetricsRow {
    let mut row = plan.measure(scope, "continuous", &sim.network(), true, trial);
    row.time = sim.time();
    row.train_loss = acc.loss.mean();
    row.alpha = acc.alpha.means();
    row.update_cosine = acc.cosine.mean();
    row.update_cosines = acc.layer_cosine.means();
    row.update_steps = acc.layer_step.means();
    row.wall_seconds = start.elapsed().as_secs_f64();
    row
}

/// Writes the engine's checkpoint after `trial` learning trials (see [`crate::checkpoint`]).
fn checkpoint(
    sim: &Simulation,
    trial: usize,
    start: &Instant,
    rows: &[MetricsRow],
    order: ExampleOrder,
    observer: &mut dyn Observer,
    checkpointing: &Checkpointing,
) -> Result<(), crate::error::IoError> {
    let Some(save) = checkpointing.save else {
        return Ok(());
    };
    let stats = sim.stats();
    let traces = observer.checkpoint()?;
    save(&ModelCheckpoint {
        model: "continuous".into(),
        trial,
        wall_seconds: start.elapsed().as_secs_f64(),
        rows: records(rows),
        order,
        state: ModelState::Continuous {
            state: sim.state().to_vec(),
            time: sim.time(),
            trial: sim.trial(),
            evaluations: stats.field.evaluations,
            field_seconds: stats.field.seconds,
            steps: (stats.solver.accepted_steps, stats.solver.rejected_steps),
            trials_run: stats.trials,
            traces,
        },
    })
}

/// Runs the schedule's warm-up and learning trials (numbered `−W … −1` and `0, 1, …`) on
/// `data.train` (shuffled epochs, seeded), evaluating on `data.test` before learning and every
/// `eval_every` learning trials. `progress(trials_done, total, new_row)` is called after every
/// trial, with the evaluation it made if any. Stops at a trial boundary when
/// [`crate::interrupt::requested`], and with an error when the test loss is not finite.
#[allow(clippy::too_many_arguments)]
pub fn run_protocol(
    net: &Network,
    cfg: &EngineConfig,
    schedule: &Schedule,
    data: &Dataset,
    seed: u64,
    update_cosine: bool,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(usize, usize, Option<&MetricsRow>),
    checkpointing: &Checkpointing,
) -> Result<RunOutcome, ConfigError> {
    let b = schedule.batch;
    let mut sim = Simulation::new(net, cfg.clone(), b)?;
    if data.train.is_empty() {
        return Err(ConfigError::new("data", "the training set is empty"));
    }
    sim.set_trial(schedule.first_trial());
    sim.set_probe_seed(seed);
    let mut rng = example_order(seed);
    let plan = EvaluationPlan::new(data, schedule, seed);
    let mut sampler = EpochSampler::new(data.train.len());
    let next_batch = |sampler: &mut EpochSampler, rng: &mut ChaCha8Rng| -> Vec<&Example> {
        (0..b)
            .map(|_| &data.train[sampler.next_index(rng)])
            .collect()
    };
    let resume = checkpointing.resume.as_ref();
    let start = resume.map_or_else(Instant::now, |c| crate::checkpoint::started(c.wall_seconds));
    let total = schedule.total_trials();
    let mut rows = Vec::new();
    let mut error = None;
    let mut done = 0usize;
    let mut interrupted = false;
    let mut first_trial = 1;
    if let Some(c) = resume {
        // the state at the checkpoint's evaluation: the ODE state, the streams and the rows
        let bad = |m: String| ConfigError::new("checkpoint of continuous", m);
        let ModelState::Continuous {
            state,
            time,
            trial,
            evaluations,
            field_seconds,
            steps,
            trials_run,
            ..
        } = &c.state
        else {
            return Err(bad("it is not the engine's checkpoint".into()));
        };
        let mut stats = sim.stats();
        stats.field.evaluations = *evaluations;
        stats.field.seconds = *field_seconds;
        (stats.solver.accepted_steps, stats.solver.rejected_steps) = *steps;
        stats.time = *time;
        stats.trials = *trials_run;
        sim.restore(state, *time, *trial, stats).map_err(bad)?;
        rng = c.order.rng.restore().map_err(bad)?;
        sampler = c.order.sampler.clone();
        rows = c.metrics_rows(net.depth()).map_err(bad)?;
        done = schedule.warmup_trials + c.trial;
        first_trial = c.trial + 1;
        progress(done, total, None);
    }
    let warmup = if resume.is_some() {
        0
    } else {
        schedule.warmup_trials
    };
    for _ in 0..warmup {
        if crate::interrupt::requested() {
            interrupted = true;
            break;
        }
        let batch = next_batch(&mut sampler, &mut rng);
        if let Err(e) = sim.run_trial(&batch, Phase::Warmup, observer) {
            error = Some(e);
            break;
        }
        done += 1;
        progress(done, total, None);
    }
    // an evaluation that is not a number ends the run: the model no longer learns
    let finite = |row: &MetricsRow| -> Result<(), EngineError> {
        if row.test_loss.is_finite() {
            Ok(())
        } else {
            Err(EngineError::Metrics {
                trial: row.trial as i64,
                what: format!("the test loss is {}", row.test_loss),
            })
        }
    };
    if error.is_none() && !interrupted {
        let mut acc = Accumulator::new(sim.network().depth());
        if resume.is_none() {
            let first = eval_row(&sim, &plan, TestScope::Full, 0, &acc, &start);
            error = finite(&first).err();
            progress(done, total, Some(&first));
            rows.push(first);
        }
        let mut last_checkpoint = first_trial - 1;
        let loss = net.arch().loss;
        for k in first_trial..=schedule.trials {
            if error.is_some() {
                break;
            }
            if crate::interrupt::requested() {
                interrupted = true;
                break;
            }
            let batch = next_batch(&mut sampler, &mut rng);
            let before = sim.network();
            for ex in &batch {
                acc.loss.add(loss.value(&before.predict(&ex.x), &ex.y));
            }
            let full = update_cosine.then(|| fully_relaxed_update(&before, cfg, &batch));
            match sim.run_trial(&batch, Phase::Learn, observer) {
                Ok(alpha) => {
                    for (i, a) in alpha.into_iter().enumerate() {
                        acc.alpha.add(i + 1, a);
                    }
                }
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
                acc.cosine.add(cosine_flat(&change, &full));
                for (l, (dw, full)) in change.iter().zip(&full).enumerate() {
                    let (cosine, step) = agreement(dw, full);
                    acc.layer_cosine.add(l + 1, cosine);
                    acc.layer_step.add(l + 1, step);
                }
            }
            done += 1;
            if let Some(scope) = plan.after(k) {
                let row = eval_row(&sim, &plan, scope, k, &acc, &start);
                error = finite(&row).err();
                progress(done, total, Some(&row));
                rows.push(row);
                acc = Accumulator::new(sim.network().depth());
                let epoch_end = scope == TestScope::Full && k < schedule.trials;
                if error.is_none() && checkpointing.due(k, epoch_end, last_checkpoint) {
                    let order = ExampleOrder {
                        rng: RngState::of(&rng),
                        sampler: sampler.clone(),
                    };
                    if let Err(e) =
                        checkpoint(&sim, k, &start, &rows, order, observer, checkpointing)
                    {
                        error = Some(EngineError::Checkpoint {
                            trial: k,
                            message: e.to_string(),
                        });
                        break;
                    }
                    last_checkpoint = k;
                }
            } else {
                progress(done, total, None);
            }
        }
    }
    let network = sim.network();
    Ok(RunOutcome {
        rows,
        network,
        error,
        interrupted,
        stats: sim.stats(),
        flops_per_eval: sim.flops_per_eval(),
    })
}
