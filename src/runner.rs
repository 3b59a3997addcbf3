//! `dtpsim run`: a scenario end to end. Everything is checked before anything is written;
//! outputs are written atomically and `summary.json` last, so a folder without it is
//! incomplete, and a run that stops early (divergence) keeps what it measured.
//!
//! The continuous engine (when the scenario has one) and every discrete reference run on the
//! same data, from the same initial network, with the same schedule; their evaluations share
//! one `metrics.csv` (see [`crate::metrics`]).

use crate::continuous::run::{run_protocol, RunOutcome};
use crate::data::Dataset;
use crate::discrete::train::{train_one, TrainOutcome};
use crate::error::ConfigError;
use crate::metrics::MetricsRow;
use crate::record::{create_dir, num, write_atomic, Table};
use crate::scenario::{Scenario, TraceRecorder};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a scenario run produced.
pub struct RunReport {
    /// The continuous engine's run (`None` when the scenario has no engine).
    pub continuous: Option<RunOutcome>,
    /// One outcome per reference, in the scenario's order.
    pub references: Vec<TrainOutcome>,
    /// Where each data set came from.
    pub provenance: Vec<String>,
    /// The files written.
    pub files: Vec<PathBuf>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

impl RunReport {
    /// Whether every model ran to the end.
    pub fn complete(&self) -> bool {
        self.continuous.as_ref().is_none_or(|c| c.error.is_none())
            && self.references.iter().all(|r| r.error.is_none())
    }

    /// Final evaluation of the continuous model.
    pub fn final_row(&self) -> Option<&MetricsRow> {
        self.continuous.as_ref().and_then(|c| c.rows.last())
    }

    /// Every model's rows: the continuous engine's first, then each reference's.
    pub fn rows(&self) -> impl Iterator<Item = &MetricsRow> {
        self.continuous
            .iter()
            .flat_map(|c| &c.rows)
            .chain(self.references.iter().flat_map(|r| &r.rows))
    }
}

/// The data set of a scenario (generated, or read from its files).
pub fn dataset(s: &Scenario) -> Result<Dataset, ConfigError> {
    s.task
        .generate(s.data.train, s.data.test, s.seed)
        .map_err(ConfigError::from)
}

fn traces_table(recorder: &TraceRecorder) -> Table {
    let mut header = vec![
        "time".to_string(),
        "trial".to_string(),
        "phase".to_string(),
        "teacher".to_string(),
    ];
    header.extend(recorder.columns.iter().map(|v| v.column()));
    let h: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let mut t = Table::new(&h);
    for r in &recorder.rows {
        let phase = if r.trial < 0 { "warmup" } else { "learning" };
        let mut row = vec![
            num(r.time),
            r.trial.to_string(),
            phase.to_string(),
            u8::from(r.teacher).to_string(),
        ];
        row.extend(r.values.iter().map(|v| num(*v)));
        t.push(row);
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
    crate::resources::check(scenario)?;
    let net = scenario.initial_network()?;
    let data = dataset(scenario)?;
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
    let sched = &scenario.schedule;
    let total = sched.total_trials() as u64;
    let multi = MultiProgress::with_draw_target(if progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let bar = |name: &str, template: &str| -> ProgressBar {
        let b = multi.add(crate::record::progress_bar(total, true, template));
        b.set_prefix(name.to_string());
        b
    };
    let mut recorder = TraceRecorder::new(scenario);
    let warm = sched.warmup_trials;
    // the references and the continuous run in parallel (references are cheap)
    let (continuous, references) = rayon::join(
        || {
            let Some(engine) = &scenario.engine else {
                return Ok(None);
            };
            let t_trial = engine.protocol.t_stim + engine.protocol.t_gap;
            let bar = bar(
                &scenario.name,
                "{prefix:>18} [{bar:30}] {pos}/{len} trials {elapsed_precise} ETA {eta} {msg}",
            );
            let outcome = run_protocol(
                &net,
                engine,
                sched,
                &data,
                scenario.seed,
                scenario.diagnostics.update_cosine,
                &mut recorder,
                &mut |done, _, row| {
                    bar.set_position(done as u64);
                    let phase = if done <= warm { "warm-up" } else { "learning" };
                    let loss = row.map_or(String::new(), |r| {
                        let acc = if r.test_accuracy.is_finite() {
                            format!(", accuracy {:.3}", r.test_accuracy)
                        } else {
                            String::new()
                        };
                        format!(" test loss {:.4}{acc}", r.test_loss)
                    });
                    bar.set_message(format!("t = {:.0} ({phase}){loss}", done as f64 * t_trial));
                },
            );
            bar.finish();
            outcome.map(Some)
        },
        || {
            scenario
                .references
                .par_iter()
                .map(|named| {
                    let bar = bar(
                        &named.name,
                        "{prefix:>18} [{bar:30}] {pos}/{len} trials {elapsed_precise} ETA {eta}",
                    );
                    let outcome =
                        train_one(scenario, named, &data, &|n| bar.set_position(n as u64));
                    bar.finish();
                    outcome
                })
                .collect::<Result<Vec<_>, _>>()
        },
    );
    let continuous = continuous?;
    let references = references?;
    let depth = net.depth();
    let mut report = RunReport {
        continuous,
        references,
        provenance: data.provenance.clone(),
        files: Vec::new(),
        seconds: 0.0,
    };

    let metrics = out.join("metrics.csv");
    crate::metrics::table(depth, report.rows()).write(&metrics)?;
    report.files.push(metrics);
    if !recorder.rows.is_empty() {
        let path = out.join("traces.csv");
        traces_table(&recorder).write(&path)?;
        report.files.push(path);
    }
    if scenario.outputs.weights {
        if let Some(c) = &report.continuous {
            let path = out.join("weights_continuous.json");
            crate::weights::save(&c.network, &path)?;
            report.files.push(path);
        }
        for r in &report.references {
            let path = out.join(format!("weights_{}.json", r.name));
            crate::weights::save(&r.network, &path)?;
            report.files.push(path);
        }
    }
    if scenario.outputs.plots {
        let labels = crate::report::RunLabels {
            title: scenario.name.clone(),
            loss: scenario.task.natural_loss(),
        };
        report
            .files
            .extend(crate::report::plot_run_dir(out, &labels)?);
    }
    report.seconds = start.elapsed().as_secs_f64();
    let summary = summary_json(scenario, sets, &report);
    write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    report.files.push(summary_path);
    Ok(report)
}

/// The final values of one model's rows, for `summary.json`.
fn finals(rows: &[MetricsRow]) -> serde_json::Value {
    let last = rows.last();
    let finite = |f: fn(&MetricsRow) -> f64| last.map(f).filter(|v| v.is_finite());
    serde_json::json!({
        "trials": last.map(|r| r.trial),
        "examples": last.map(|r| r.examples),
        "initial_test_loss": rows.first().map(|r| r.test_loss),
        "final_test_loss": finite(|r| r.test_loss),
        "final_test_mse": finite(|r| r.test_mse),
        "final_test_accuracy": finite(|r| r.test_accuracy),
    })
}

fn summary_json(scenario: &Scenario, sets: &[String], report: &RunReport) -> serde_json::Value {
    let status = match report.continuous.as_ref().and_then(|c| c.error.as_ref()) {
        None => "complete".to_string(),
        Some(e) => format!("stopped early: {e}"),
    };
    let continuous = report.continuous.as_ref().map(|c| {
        let st = c.stats;
        let mut v = finals(&c.rows);
        let extra = serde_json::json!({
            "mean_update_cosine": mean_finite(c.rows.iter().map(|r| r.update_cosine)),
            "simulated_time": st.time,
            "field_evaluations": st.field.evaluations,
            "field_seconds": st.field.seconds,
            "accepted_steps": st.solver.accepted_steps,
            "rejected_steps": st.solver.rejected_steps,
            "error": c.error.as_ref().map(|e| e.to_string()),
        });
        if let (Some(a), Some(b)) = (v.as_object_mut(), extra.as_object()) {
            a.extend(b.clone());
        }
        v
    });
    serde_json::json!({
        "dtpsim_version": env!("CARGO_PKG_VERSION"),
        "kind": "run",
        "status": status,
        "set": sets,
        "scenario": scenario,
        "data": report.provenance,
        "seconds": report.seconds,
        "continuous": continuous,
        "references": report.references.iter().map(|o| {
            let mut v = finals(&o.rows);
            if let Some(a) = v.as_object_mut() {
                a.insert("name".into(), o.name.clone().into());
                a.insert("error".into(), o.error.clone().into());
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// Mean of the finite values (None if there are none).
pub fn mean_finite(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f64)
}
