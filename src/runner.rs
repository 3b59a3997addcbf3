//! `dtpsim run`: a scenario end to end. Everything is checked before anything is written;
//! outputs are written atomically and `summary.json` last, so a folder without it is
//! incomplete, and a run that stops early (divergence) keeps what it measured.

use crate::continuous::run::{run_protocol, EvalRow, RunOutcome};
use crate::discrete::train::{train_one, MetricsRow, TrainOutcome};
use crate::error::ConfigError;
use crate::network::Network;
use crate::record::{create_dir, num, write_atomic, Table};
use crate::scenario::{Scenario, TraceRecorder};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a scenario run produced.
pub struct RunReport {
    pub continuous: RunOutcome,
    pub references: Vec<TrainOutcome>,
    pub files: Vec<PathBuf>,
    pub seconds: f64,
}

impl RunReport {
    /// Whether every model ran to the end.
    pub fn complete(&self) -> bool {
        self.continuous.error.is_none() && self.references.iter().all(|r| r.error.is_none())
    }

    /// Final evaluation of the continuous model.
    pub fn final_row(&self) -> Option<&EvalRow> {
        self.continuous.rows.last()
    }
}

/// The initial network of a scenario: from `network.weights` or `network.init`.
pub fn initial_network(s: &Scenario) -> Result<Network, ConfigError> {
    s.reference_config().initial_network()
}

fn metrics_table(depth: usize, cont: &RunOutcome, refs: &[TrainOutcome], replicas: usize) -> Table {
    let mut header: Vec<String> = [
        "model",
        "trial",
        "examples",
        "time",
        "train_loss",
        "test_loss",
        "test_mse",
        "test_accuracy",
        "reconstruction",
        "relaxation_residual",
        "update_cosine",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend((1..=depth).map(|l| format!("w_norm_{l}")));
    header.push("wall_seconds".into());
    let refs_header: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let mut t = Table::new(&refs_header);
    for r in &cont.rows {
        let mut row = vec![
            "continuous".to_string(),
            r.trial.to_string(),
            (r.trial * replicas).to_string(),
            num(r.time),
            num(r.train_loss),
            num(r.test_loss),
            num(r.test_mse),
            num(r.test_accuracy),
            num(r.reconstruction),
            num(r.relaxation_residual),
            num(r.update_cosine),
        ];
        row.extend(r.w_norms.iter().map(|v| num(*v)));
        row.push(format!("{:.3}", r.wall_seconds));
        t.push(row);
    }
    for o in refs {
        for r in &o.rows {
            let MetricsRow {
                examples,
                train_loss,
                test_loss,
                test_mse,
                test_accuracy,
                reconstruction,
                relaxation_residual,
                w_norms,
                wall_seconds,
                ..
            } = r;
            let mut row = vec![
                o.name.clone(),
                (examples / replicas).to_string(),
                examples.to_string(),
                "NaN".into(),
                num(*train_loss),
                num(*test_loss),
                num(*test_mse),
                num(*test_accuracy),
                num(*reconstruction),
                num(*relaxation_residual),
                "NaN".into(),
            ];
            row.extend(w_norms.iter().map(|v| num(*v)));
            row.push(format!("{wall_seconds:.3}"));
            t.push(row);
        }
    }
    t
}

/// Runs `scenario` into `out`. `sets` are recorded in the summary for reproduction.
pub fn run_scenario(
    scenario: &Scenario,
    out: &Path,
    progress: bool,
    sets: &[String],
) -> anyhow::Result<RunReport> {
    scenario.validate()?;
    let net = initial_network(scenario)?;
    let data = scenario
        .task
        .generate(scenario.data.train, scenario.data.test, scenario.seed)
        .map_err(ConfigError::from)?;
    create_dir(out)?;
    let summary_path = out.join("summary.json");
    if summary_path.exists() {
        std::fs::remove_file(&summary_path).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot remove the old summary: {e}",
                summary_path.display()
            )
        })?;
    }
    let start = Instant::now();
    let p = &scenario.engine.protocol;
    let total = (p.warmup_trials + p.trials) as u64;
    let bar = crate::record::progress_bar(
        total,
        progress,
        "{prefix} [{bar:30}] {pos}/{len} trials {elapsed_precise} ETA {eta} {msg}",
    );
    bar.set_prefix(scenario.name.clone());
    let mut recorder = TraceRecorder::new(scenario);
    let t_trial = p.t_stim + p.t_gap;
    let warm = p.warmup_trials;
    // references and the continuous run in parallel (references are cheap)
    let cfg = scenario.reference_config();
    let (continuous, references) = rayon::join(
        || {
            run_protocol(
                &net,
                &scenario.engine,
                &data,
                scenario.seed,
                scenario.diagnostics.update_cosine,
                &mut recorder,
                &mut |done, _, row| {
                    bar.set_position(done as u64);
                    let phase = if done <= warm { "warm-up" } else { "learning" };
                    let loss =
                        row.map_or(String::new(), |r| format!(" test loss {:.4}", r.test_loss));
                    bar.set_message(format!("t = {:.0} ({phase}){loss}", done as f64 * t_trial));
                },
            )
        },
        || {
            scenario
                .references
                .par_iter()
                .map(|named| train_one(&cfg, named, &data, &|_| {}))
                .collect::<Result<Vec<_>, _>>()
        },
    );
    bar.finish();
    let continuous = continuous?;
    let references = references?;
    let depth = net.depth();

    let mut files = Vec::new();
    let metrics = out.join("metrics.csv");
    metrics_table(depth, &continuous, &references, p.replicas).write(&metrics)?;
    files.push(metrics);
    if !recorder.rows.is_empty() {
        let mut header = vec![
            "time".to_string(),
            "trial".to_string(),
            "teacher".to_string(),
        ];
        header.extend(recorder.variables.iter().map(|v| v.column()));
        let h: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
        let mut t = Table::new(&h);
        for r in &recorder.rows {
            let mut row = vec![
                num(r.time),
                r.trial.to_string(),
                u8::from(r.teacher).to_string(),
            ];
            row.extend(r.values.iter().map(|v| num(*v)));
            t.push(row);
        }
        let path = out.join("traces.csv");
        t.write(&path)?;
        files.push(path);
    }
    if scenario.outputs.weights {
        let path = out.join("weights_continuous.json");
        crate::weights::save(&continuous.network, &path)?;
        files.push(path);
        for r in &references {
            let path = out.join(format!("weights_{}.json", r.name));
            crate::weights::save(&r.network, &path)?;
            files.push(path);
        }
    }
    if scenario.outputs.plots {
        files.extend(crate::report::plot_run_dir(out, &scenario.name)?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let st = continuous.stats;
    let last = continuous.rows.last();
    let summary = serde_json::json!({
        "dtpsim_version": env!("CARGO_PKG_VERSION"),
        "kind": "continuous_run",
        "status": match &continuous.error { None => "complete".to_string(), Some(e) => format!("stopped early: {e}") },
        "set": sets,
        "scenario": scenario,
        "seconds": seconds,
        "continuous": {
            "trials": last.map(|r| r.trial),
            "initial_test_loss": continuous.rows.first().map(|r| r.test_loss),
            "final_test_loss": last.map(|r| r.test_loss).filter(|v| v.is_finite()),
            "final_test_mse": last.map(|r| r.test_mse).filter(|v| v.is_finite()),
            "final_test_accuracy": last.map(|r| r.test_accuracy).filter(|v| v.is_finite()),
            "mean_update_cosine": mean_finite(continuous.rows.iter().map(|r| r.update_cosine)),
            "simulated_time": st.time,
            "field_evaluations": st.field.evaluations,
            "field_seconds": st.field.seconds,
            "accepted_steps": st.solver.accepted_steps,
            "rejected_steps": st.solver.rejected_steps,
            "error": continuous.error.as_ref().map(|e| e.to_string()),
        },
        "references": references.iter().map(|o| serde_json::json!({
            "name": o.name,
            "final_test_loss": o.rows.last().map(|r| r.test_loss).filter(|v| v.is_finite()),
            "final_test_mse": o.rows.last().map(|r| r.test_mse).filter(|v| v.is_finite()),
            "final_test_accuracy": o.rows.last().map(|r| r.test_accuracy).filter(|v| v.is_finite()),
            "error": o.error,
        })).collect::<Vec<_>>(),
    });
    write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    files.push(summary_path);
    Ok(RunReport {
        continuous,
        references,
        files,
        seconds,
    })
}

/// Mean of the finite values (None if there are none).
pub fn mean_finite(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f64)
}
