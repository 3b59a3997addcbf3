//! `dtpsim sweep`: a grid of parameter values × seeds, run in parallel (rayon), aggregated
//! into `sweep.csv` with one plot per metric. Every run can be reproduced alone with the
//! `dtpsim run … --set …` line printed for it (and stored in its `summary.json`).

use crate::record::{num, write_atomic, Table};
use crate::runner::{mean_finite, run_scenario, RunStatus};
use crate::scenario::parse_scenario_at;
use rayon::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One grid point and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRun {
    /// Run number (its folder is `runs/<index>`, three digits).
    pub index: usize,
    /// The swept fields and their values at this grid point.
    pub params: Vec<(String, Value)>,
    /// The run's seed.
    pub seed: u64,
    /// The `--set` arguments that select this run (parameters, then the seed).
    pub sets: Vec<String>,
}

/// A value as it is written after `--set path=` (strings bare when they are not JSON).
pub fn set_value_text(v: &Value) -> String {
    match v {
        Value::String(s) if serde_json::from_str::<Value>(s).is_err() => s.clone(),
        other => other.to_string(),
    }
}

/// Parses `--param path=v1,v2,...` (each value JSON if it parses, else a string).
pub fn parse_param(arg: &str) -> Result<(String, Vec<Value>), String> {
    let (path, vals) = arg.split_once('=').ok_or_else(|| {
        format!("--param {arg}: write path=v1,v2,..., e.g. engine.protocol.t_stim=6,9,15")
    })?;
    let values: Vec<Value> = vals
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            serde_json::from_str(v.trim()).unwrap_or_else(|_| Value::String(v.trim().to_string()))
        })
        .collect();
    if values.is_empty() {
        return Err(format!("--param {arg}: give at least one value"));
    }
    Ok((path.trim().to_string(), values))
}

/// The cartesian grid of `params` × `seeds` seeds starting at `base_seed`.
pub fn grid(params: &[(String, Vec<Value>)], seeds: usize, base_seed: u64) -> Vec<SweepRun> {
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (path, values) in params {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((path.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    let mut runs = Vec::new();
    for point in points {
        for s in 0..seeds.max(1) {
            let seed = base_seed + s as u64;
            let mut sets: Vec<String> = point
                .iter()
                .map(|(p, v)| format!("{p}={}", set_value_text(v)))
                .collect();
            sets.push(format!("seed={seed}"));
            runs.push(SweepRun {
                index: runs.len(),
                params: point.clone(),
                seed,
                sets,
            });
        }
    }
    runs
}

/// The message of a run that was not started because the sweep was interrupted.
const NOT_STARTED: &str = "not started: the sweep was interrupted";

/// How a sweep runs.
#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    /// Seeds per grid point (seed, seed + 1, …).
    pub seeds: usize,
    /// Runs at a time.
    pub jobs: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Replace an earlier sweep in the output folder (only dtpsim's files are removed).
    pub force: bool,
}

/// What a sweep produced: its files and how its runs ended.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// The files written at the sweep's top level.
    pub files: Vec<PathBuf>,
    /// Runs that completed.
    pub complete: usize,
    /// Runs in which a model stopped early.
    pub stopped: usize,
    /// Runs that failed (an error before or while writing).
    pub failed: usize,
    /// Runs stopped by Ctrl-C, or not started after it.
    pub interrupted: usize,
}

impl SweepOutcome {
    fn count(&mut self, status: RunStatus) {
        match status {
            RunStatus::Complete => self.complete += 1,
            RunStatus::Stopped => self.stopped += 1,
            RunStatus::Interrupted => self.interrupted += 1,
        }
    }
}

/// The largest grid a sweep runs (each run writes a folder).
pub const MAX_RUNS: usize = 100_000;

/// The most runs a sweep runs at a time.
pub const MAX_JOBS: usize = 1024;

/// Runs the grid for the scenario text of `file` (with `base_sets` applied first), `jobs` runs
/// at a time, into `out`. Every grid point is validated before the first run starts.
pub fn run_sweep(
    file: &Path,
    base_sets: &[String],
    params: &[(String, Vec<Value>)],
    out: &Path,
    options: &SweepOptions,
) -> anyhow::Result<SweepOutcome> {
    let SweepOptions {
        seeds,
        jobs,
        progress,
        force,
    } = *options;
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
    let dir = file.parent().unwrap_or(Path::new(""));
    let base = parse_scenario_at(&text, base_sets, Some(dir))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let size = params.iter().try_fold(seeds.max(1), |n, (_, values)| {
        n.checked_mul(values.len().max(1))
    });
    match size {
        Some(n) if n <= MAX_RUNS => {}
        _ => anyhow::bail!(
            "the grid has {} runs (values of every --param × seeds), more than {MAX_RUNS}; sweep fewer values, or split the grid into several sweeps",
            size.map_or("too many".to_string(), |n| n.to_string())
        ),
    }
    if jobs > MAX_JOBS {
        anyhow::bail!("--jobs: {jobs} runs at a time is more than {MAX_JOBS}; give at most the number of cores");
    }
    let runs = grid(params, seeds, base.seed);
    let jobs = jobs.clamp(1, runs.len().max(1));
    let mut scenarios = Vec::with_capacity(runs.len());
    let mut largest = 0.0f64;
    for r in &runs {
        let sets: Vec<String> = base_sets.iter().chain(&r.sets).cloned().collect();
        let named = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "{} (sweep run {}: {}): {e}",
                file.display(),
                r.index,
                r.sets.join(" ")
            )
        };
        let s = parse_scenario_at(&text, &sets, Some(dir)).map_err(|e| named(&e))?;
        let estimate = crate::resources::check(&s).map_err(|e| named(&e))?;
        largest = largest.max(estimate.memory_bytes);
        scenarios.push((s, sets));
    }
    let limit = crate::resources::limits().memory_bytes;
    if jobs as f64 * largest > limit {
        anyhow::bail!(
            "--jobs: {jobs} runs at a time would need about {} of memory (the largest run about {}), more than the limit of {}; lower --jobs or raise --max-memory",
            crate::resources::bytes(jobs as f64 * largest),
            crate::resources::bytes(largest),
            crate::resources::bytes(limit)
        );
    }
    crate::runner::prepare_output(out, force)?;
    let summary = out.join("sweep.json");
    for r in &runs {
        let sets: Vec<String> = base_sets
            .iter()
            .chain(&r.sets)
            .map(|s| format!("--set {s}"))
            .collect();
        println!(
            "run {:03}: dtpsim run {} {}",
            r.index,
            file.display(),
            sets.join(" ")
        );
    }
    let bar = crate::record::progress_bar(
        runs.len() as u64,
        progress,
        "sweep [{bar:30}] {pos}/{len} runs {elapsed_precise} ETA {eta}",
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;
    let results: Vec<anyhow::Result<crate::runner::RunReport>> = pool.install(|| {
        scenarios
            .par_iter()
            .zip(&runs)
            .map(|((s, sets), r)| {
                // after Ctrl-C no new run starts; the running ones stop at a trial boundary
                if crate::interrupt::requested() {
                    return Err(anyhow::anyhow!(NOT_STARTED));
                }
                let res = run_scenario(
                    s,
                    &out.join("runs").join(format!("{:03}", r.index)),
                    false,
                    sets,
                );
                bar.inc(1);
                res
            })
            .collect()
    });
    bar.finish();
    let metric_names = [
        "final_test_loss",
        "final_test_mse",
        "final_test_accuracy",
        "mean_update_cosine",
        "final_relaxation_residual",
    ];
    let mut header: Vec<String> = vec!["run".into(), "seed".into()];
    header.extend(params.iter().map(|(p, _)| format!("param:{p}")));
    header.extend(metric_names.iter().map(|m| format!("metric:{m}")));
    header.push("wall_seconds".into());
    header.push("status".into());
    header.push("message".into());
    let h: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let mut table = Table::new(&h);
    let mut failures = Vec::new();
    let mut outcome = SweepOutcome::default();
    for (r, res) in runs.iter().zip(&results) {
        let mut row = vec![format!("{:03}", r.index), r.seed.to_string()];
        row.extend(r.params.iter().map(|(_, v)| set_value_text(v)));
        match res {
            Ok(rep) => {
                // a stopped or interrupted run has no final values
                let status = rep.status();
                let last = rep.final_row().filter(|_| status == RunStatus::Complete);
                let metrics = [
                    last.map(|l| l.test_loss),
                    last.map(|l| l.test_mse),
                    last.map(|l| l.test_accuracy),
                    mean_finite(
                        rep.continuous
                            .iter()
                            .flat_map(|c| &c.rows)
                            .map(|l| l.update_cosine),
                    ),
                    last.map(|l| l.relaxation_residual),
                ];
                row.extend(metrics.iter().map(|m| num(m.unwrap_or(f64::NAN))));
                row.push(format!("{:.3}", rep.seconds));
                row.push(status.name().into());
                let errors: Vec<String> = rep
                    .model_statuses()
                    .into_iter()
                    .filter_map(|(n, _, e)| e.map(|e| format!("{n}: {e}")))
                    .collect();
                row.push(errors.join("; "));
                outcome.count(status);
                if status == RunStatus::Stopped {
                    failures.push(format!("run {:03}: {}", r.index, errors.join("; ")));
                }
            }
            Err(e) => {
                row.extend(metric_names.iter().map(|_| "NaN".to_string()));
                row.push("NaN".into());
                if e.to_string() == NOT_STARTED {
                    row.push("interrupted".into());
                    row.push("not started: the sweep was interrupted".into());
                    outcome.interrupted += 1;
                } else {
                    row.push("failed".into());
                    row.push(format!("{e:#}"));
                    outcome.failed += 1;
                    failures.push(format!("run {:03}: {e:#}", r.index));
                }
            }
        }
        table.push(row);
    }
    let files = &mut outcome.files;
    let csv_path = out.join("sweep.csv");
    table.write(&csv_path)?;
    files.push(csv_path);
    files.extend(crate::report::plot_sweep_dir(out)?);
    let json = serde_json::json!({
        "dtpsim_version": env!("CARGO_PKG_VERSION"),
        "scenario_file": file.display().to_string(),
        "base_set": base_sets,
        "params": params.iter().map(|(p, v)| serde_json::json!({"path": p, "values": v})).collect::<Vec<_>>(),
        "seeds": seeds,
        "runs": runs.iter().map(|r| serde_json::json!({"run": format!("{:03}", r.index), "set": r.sets})).collect::<Vec<_>>(),
        "failures": failures,
        "complete": outcome.complete,
        "stopped": outcome.stopped,
        "failed": outcome.failed,
        "interrupted": outcome.interrupted,
    });
    write_atomic(&summary, serde_json::to_string_pretty(&json)?.as_bytes())?;
    outcome.files.push(summary);
    for f in &failures {
        eprintln!("error: {f}");
    }
    Ok(outcome)
}
