//! `dtpsim sweep`: a grid of parameter values × seeds, run in parallel (rayon), on one machine
//! or split into shards (a Slurm job array), and gathered into `sweep.csv` with one plot per
//! metric. Every run can be reproduced alone with the `dtpsim run … --set …` line printed for
//! it (and stored in its `summary.json`).
//!
//! A sweep folder holds:
//!
//! - `sweep.json`: the grid (the resolved scenario, the fixed `--set`s, the swept values, the
//!   seeds and the run order), written once by whichever process starts the sweep first and
//!   checked by every later one: a sweep with another grid is refused.
//! - `runs/NNN/`: one run folder per grid point and seed, as `dtpsim run` writes it
//!   (`summary.json` last). A run whose `summary.json` says `complete` is never run again; any
//!   other is cleared (only dtpsim's files) and run again.
//! - `sweep.csv`, `sweep_summary.csv` and the plots, built by [`gather`] from the run
//!   folders: at the end of an unsharded sweep, or by `dtpsim sweep gather DIR` once every
//!   shard has finished.
//! - With `--slurm`: `sweep.sbatch` (the job array) and `slurm/` (each task's stdout and
//!   stderr).
//!
//! Shard `I/N` (0-based) runs the runs whose number modulo `N` is `I`; see [`Shard`].

use crate::error::ConfigError;
use crate::record::{num, write_atomic, Table};
use crate::runner::{mean_finite, run_folder_status, run_scenario_replacing, RunStatus};
use crate::scenario::{parse_scenario_at, Scenario};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
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

/// One shard of a grid: shard `index` of `count` takes the runs whose number modulo `count` is
/// `index`. Shards are numbered from 0, like `$SLURM_ARRAY_TASK_ID`: `--shard 0/4` …
/// `--shard 3/4` together run the whole grid, each run exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0 ≤ index < count`.
    pub index: usize,
    /// How many shards the grid is split into.
    pub count: usize,
}

impl Shard {
    /// Whether run number `run` belongs to this shard.
    pub fn contains(&self, run: usize) -> bool {
        run % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `--shard I/N` (0 ≤ I < N); the error says how shards are numbered.
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let how = "write I/N with shards numbered from 0 like $SLURM_ARRAY_TASK_ID, e.g. --shard 0/4 … --shard 3/4";
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("--shard {text}: {how}"))?;
    let number = |s: &str| s.trim().parse::<usize>().ok();
    let (Some(index), Some(count)) = (number(i), number(n)) else {
        return Err(format!("--shard {text}: {how}"));
    };
    if count == 0 {
        return Err(format!(
            "--shard {text}: N is the number of shards and must be at least 1; {how}"
        ));
    }
    if index >= count {
        return Err(format!(
            "--shard {text}: there is no shard {index} of {count}: shards are numbered from 0, so I is 0 … {}; {how}",
            count - 1
        ));
    }
    Ok(Shard { index, count })
}

/// The message of a run that was not started because the sweep was interrupted.
const NOT_STARTED: &str = "not started: the sweep was interrupted";

/// The largest grid a sweep runs (each run writes a folder).
pub const MAX_RUNS: usize = 100_000;

/// The most runs a sweep runs at a time.
pub const MAX_JOBS: usize = 1024;

/// The sweep command as it was typed (apart from `--out`, `--jobs`, `--force`, `--shard`
/// and the Slurm options): what a Slurm task and a rerun of the sweep repeat.
#[derive(Debug, Clone, Default)]
pub struct SweepCommand {
    /// Options given before the command (`--threads`, `--max-memory`, `--max-hours`), as
    /// command-line words.
    pub global: Vec<String>,
    /// The scenario file.
    pub file: PathBuf,
    /// `--param path=v1,v2,...` values as given (empty: the scenario's `sweep` section).
    pub params: Vec<String>,
    /// `--seeds`, if given.
    pub seeds: Option<usize>,
    /// Fixed `--set path=value` overrides applied to every run.
    pub sets: Vec<String>,
}

impl SweepCommand {
    /// The words after `dtpsim` that start this sweep again into `out`, with the scenario
    /// given as `file` (absolute paths in a Slurm script).
    pub fn words(&self, file: &Path, out: &Path) -> Vec<String> {
        let mut w = self.global.clone();
        w.push("sweep".into());
        w.push(file.display().to_string());
        for p in &self.params {
            w.extend(["--param".to_string(), p.clone()]);
        }
        if let Some(s) = self.seeds {
            w.extend(["--seeds".to_string(), s.to_string()]);
        }
        for s in &self.sets {
            w.extend(["--set".to_string(), s.clone()]);
        }
        w.extend(["--out".to_string(), out.display().to_string()]);
        w
    }
}

/// A sweep checked before anything is written: the scenario parsed at every grid point and
/// sized (see [`crate::resources::check`]).
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// The command that describes the sweep.
    pub command: SweepCommand,
    /// The scenario file as an absolute path (relative data and weights paths of the scenario
    /// are resolved against its folder, so that every run is the same from any working folder).
    pub file_abs: PathBuf,
    /// The scenario with the fixed `--set`s applied.
    pub base: Scenario,
    /// The swept fields and their values, in grid order.
    pub params: Vec<(String, Vec<Value>)>,
    /// Seeds per grid point.
    pub seeds: usize,
    /// Every run of the grid, in run order.
    pub runs: Vec<SweepRun>,
    /// Each run's scenario and its `--set` arguments (fixed ones, then the run's own).
    pub scenarios: Vec<(Scenario, Vec<String>)>,
    /// The estimated memory of the largest run, in bytes.
    pub largest_memory: f64,
}

impl SweepPlan {
    /// Reads the scenario of `command`, builds its grid (from `--param`, or else the scenario's
    /// `sweep` section) and checks every run: nothing is written.
    pub fn new(command: &SweepCommand) -> anyhow::Result<SweepPlan> {
        let file = &command.file;
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
        let file_abs = std::fs::canonicalize(file)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
        let dir = file_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        let base = parse_scenario_at(&text, &command.sets, Some(&dir))
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let mut params: Vec<(String, Vec<Value>)> = command
            .params
            .iter()
            .map(|p| parse_param(p).map_err(anyhow::Error::msg))
            .collect::<Result<_, _>>()?;
        let spec = base.sweep.clone().unwrap_or_default();
        if params.is_empty() {
            params = spec.params.into_iter().collect();
        }
        if params.is_empty() {
            anyhow::bail!(
                "{}: nothing to sweep; give --param path=v1,v2 or a \"sweep\" section in the scenario",
                file.display()
            );
        }
        let seeds = command.seeds.unwrap_or(spec.seeds).max(1);
        let size = params
            .iter()
            .try_fold(seeds, |n, (_, values)| n.checked_mul(values.len().max(1)));
        match size {
            Some(n) if n <= MAX_RUNS => {}
            _ => anyhow::bail!(
                "the grid has {} runs (values of every --param × seeds), more than {MAX_RUNS}; sweep fewer values, or split the grid into several sweeps",
                size.map_or("too many".to_string(), |n| n.to_string())
            ),
        }
        let runs = grid(&params, seeds, base.seed);
        let mut scenarios = Vec::with_capacity(runs.len());
        let mut largest = 0.0f64;
        for r in &runs {
            let sets: Vec<String> = command.sets.iter().chain(&r.sets).cloned().collect();
            let named = |e: &dyn std::fmt::Display| {
                anyhow::anyhow!(
                    "{} (sweep run {}: {}): {e}",
                    file.display(),
                    r.index,
                    r.sets.join(" ")
                )
            };
            let s = parse_scenario_at(&text, &sets, Some(&dir)).map_err(|e| named(&e))?;
            let estimate = crate::resources::check(&s).map_err(|e| named(&e))?;
            largest = largest.max(estimate.memory_bytes);
            scenarios.push((s, sets));
        }
        Ok(SweepPlan {
            command: command.clone(),
            file_abs,
            base,
            params,
            seeds,
            runs,
            scenarios,
            largest_memory: largest,
        })
    }

    /// Checks `--jobs` (at most [`MAX_JOBS`], and `jobs` of the largest run within the memory
    /// limit); returns the runs at a time to use for `pending` runs.
    pub fn check_jobs(&self, jobs: usize, pending: usize) -> anyhow::Result<usize> {
        if jobs > MAX_JOBS {
            anyhow::bail!("--jobs: {jobs} runs at a time is more than {MAX_JOBS}; give at most the number of cores");
        }
        let jobs = jobs.clamp(1, pending.max(1));
        let limit = crate::resources::limits().memory_bytes;
        if jobs as f64 * self.largest_memory > limit {
            anyhow::bail!(
                "--jobs: {jobs} runs at a time would need about {} of memory (the largest run about {}), more than the limit of {}; lower --jobs or raise --max-memory",
                crate::resources::bytes(jobs as f64 * self.largest_memory),
                crate::resources::bytes(self.largest_memory),
                crate::resources::bytes(limit)
            );
        }
        Ok(jobs)
    }

    /// The grid as `sweep.json` records it, for a sweep folder `out` (absolute).
    pub fn definition(&self, out: &Path) -> anyhow::Result<SweepDefinition> {
        let command = self.command.words(&self.file_abs, out);
        Ok(SweepDefinition {
            format: DEFINITION_FORMAT.into(),
            version: 1,
            dtpsim_version: env!("CARGO_PKG_VERSION").into(),
            command: std::iter::once("dtpsim".to_string())
                .chain(command.iter().map(|w| shell_quote(w)))
                .collect::<Vec<_>>()
                .join(" "),
            scenario_file: self.file_abs.display().to_string(),
            base_set: self.command.sets.clone(),
            params: self
                .params
                .iter()
                .map(|(path, values)| SweptParam {
                    path: path.clone(),
                    values: values.clone(),
                })
                .collect(),
            seeds: self.seeds,
            scenario: serde_json::to_value(&self.base)?,
            runs: self
                .runs
                .iter()
                .map(|r| GridRun {
                    run: run_name(r.index),
                    seed: r.seed,
                    values: r.params.iter().map(|(_, v)| v.clone()).collect(),
                    set: r.sets.clone(),
                })
                .collect(),
        })
    }
}

/// The `format` field of `sweep.json`.
const DEFINITION_FORMAT: &str = "dtpsim-sweep";

/// A run's folder name: its number with at least three digits.
fn run_name(index: usize) -> String {
    format!("{index:03}")
}

/// `sweep.json`: a sweep's grid, written when the sweep folder is started and never changed.
/// [`gather`] builds `sweep.csv` from it and the run folders; a later sweep into the same
/// folder must have the same `base_set`, `params`, `seeds`, `scenario` and `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepDefinition {
    /// Always `dtpsim-sweep`.
    pub format: String,
    /// Version of this layout (1).
    pub version: u32,
    /// The dtpsim version that started the sweep.
    pub dtpsim_version: String,
    /// The command line that runs the sweep (again) into this folder: complete runs are
    /// skipped, the others run.
    pub command: String,
    /// The scenario file (absolute path).
    pub scenario_file: String,
    /// The fixed `--set` overrides of every run.
    pub base_set: Vec<String>,
    /// The swept fields and their values, in grid order.
    pub params: Vec<SweptParam>,
    /// Seeds per grid point.
    pub seeds: usize,
    /// The scenario with the fixed `--set`s applied, every default filled in.
    pub scenario: Value,
    /// Every run, in run order (its folder is `runs/<run>`).
    pub runs: Vec<GridRun>,
}

/// One swept field of [`SweepDefinition`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweptParam {
    /// JSON path of the field, as given to `--param` or in the scenario's `sweep` section.
    pub path: String,
    /// Its values.
    pub values: Vec<Value>,
}

/// One run of [`SweepDefinition`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridRun {
    /// Its number as its folder is named (`007`).
    pub run: String,
    /// Its seed.
    pub seed: u64,
    /// The value of each swept field, in the order of `params`.
    pub values: Vec<Value>,
    /// The `--set` arguments that select this run (parameters, then the seed).
    pub set: Vec<String>,
}

impl SweepDefinition {
    /// Reads `dir/sweep.json`; the error names the file and says what to do.
    pub fn read(dir: &Path) -> Result<SweepDefinition, ConfigError> {
        let path = dir.join("sweep.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read ({e}): not a sweep folder; give the --out folder of a dtpsim sweep"),
            )
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("not valid JSON ({e}); it is written once when a sweep starts: start the sweep again with --force"),
            )
        })?;
        if value.get("format").and_then(Value::as_str) != Some(DEFINITION_FORMAT) {
            return Err(ConfigError::new(
                path.display().to_string(),
                "holds no grid (written by an older dtpsim, before sweeps could be sharded); run the sweep again with --force, or redraw its plots with dtpsim plot",
            ));
        }
        serde_json::from_value(value).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("not a sweep grid of this dtpsim version ({e}); run the sweep again with --force"),
            )
        })
    }

    /// How `self` (the folder's grid) differs from `other` (this sweep's), in words, or None if
    /// they are the same grid.
    pub fn difference(&self, other: &SweepDefinition) -> Option<String> {
        let params = |d: &SweepDefinition| {
            d.params
                .iter()
                .map(|p| {
                    let v: Vec<String> = p.values.iter().map(set_value_text).collect();
                    format!("{}={}", p.path, v.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        if self.params != other.params {
            return Some(format!(
                "--param: the folder's sweep has {}, this one {}",
                params(self),
                params(other)
            ));
        }
        if self.seeds != other.seeds {
            return Some(format!(
                "--seeds: the folder's sweep has {} seeds per grid point, this one {}",
                self.seeds, other.seeds
            ));
        }
        if self.base_set != other.base_set {
            return Some(format!(
                "--set: the folder's sweep has [{}], this one [{}]",
                self.base_set.join(" "),
                other.base_set.join(" ")
            ));
        }
        if let Some((path, a, b)) = json_difference(&self.scenario, &other.scenario, "") {
            return Some(format!(
                "the scenario ({}) differs at {path}: the folder's sweep has {a}, this one {b}",
                other.scenario_file
            ));
        }
        if self.runs != other.runs {
            let i = self
                .runs
                .iter()
                .zip(&other.runs)
                .position(|(a, b)| a != b)
                .unwrap_or(self.runs.len().min(other.runs.len()));
            return Some(format!(
                "the run order differs from run {} on (the folder's sweep was started by dtpsim {})",
                run_name(i),
                self.dtpsim_version
            ));
        }
        None
    }
}

/// The first place where `a` and `b` differ: its JSON path and both values (`absent` for a
/// missing key), cut to a readable length.
fn json_difference(a: &Value, b: &Value, path: &str) -> Option<(String, String, String)> {
    let shown = |v: Option<&Value>| {
        v.map_or("absent".to_string(), |v| {
            crate::error::cut(v.to_string())
                .chars()
                .take(120)
                .collect::<String>()
        })
    };
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => json_difference(u, v, &join(k)),
                (u, v) if u != v => Some((join(k), shown(u), shown(v))),
                _ => None,
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| json_difference(u, v, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some((
            if path.is_empty() {
                "(top)".into()
            } else {
                path.into()
            },
            shown(Some(a)),
            shown(Some(b)),
        )),
    }
}

/// `s` as one shell word (single-quoted unless it is plain).
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Makes `out` the folder of the sweep `def` and returns `out` as an absolute path:
///
/// - absent or empty: created, and `sweep.json` written;
/// - holding `sweep.json` with the same grid: kept as it is (the sweep continues);
/// - holding another grid, or other files: refused, unless `force`, which clears it (only
///   dtpsim's own files, see [`crate::runner::prepare_output`]) and starts over.
///
/// `sweep.json` is created with a hard link, so shards started at the same moment agree on one
/// grid. Errors are [`ConfigError`]s on `--out`, returned before anything is written.
pub fn open_sweep_folder(
    out: &Path,
    def: &SweepDefinition,
    force: bool,
) -> Result<PathBuf, ConfigError> {
    let bad = |msg: String| ConfigError::new("--out", format!("{}: {msg}", out.display()));
    let grid = out.join("sweep.json");
    // the grid of this sweep as it reads back from sweep.json
    let mine: SweepDefinition = serde_json::to_string(def)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| def.clone());
    let same_grid = |existing: SweepDefinition| {
        match existing.difference(&mine) {
        None => Ok(()),
        Some(d) => Err(bad(format!(
            "holds another sweep: {d}; give another --out, or --force to replace it (only dtpsim's files are removed)"
        ))),
    }
    };
    if !force && grid.exists() {
        let existing =
            SweepDefinition::read(out).map_err(|e| bad(format!("sweep.json: {}", e.message)))?;
        same_grid(existing)?;
    } else {
        if let Err(e) = crate::runner::prepare_output(out, force) {
            // another shard may have started this sweep a moment ago
            std::thread::sleep(std::time::Duration::from_millis(300));
            if force || !grid.exists() {
                return Err(e);
            }
            return open_sweep_folder(out, def, false);
        }
        let text = serde_json::to_string_pretty(def)
            .map_err(|e| bad(format!("cannot write sweep.json: {e}")))?;
        let tmp = out.join(format!("sweep.json.{}.partial", std::process::id()));
        std::fs::write(&tmp, text.as_bytes())
            .map_err(|e| bad(format!("cannot write {}: {e}", tmp.display())))?;
        let linked = std::fs::hard_link(&tmp, &grid);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = SweepDefinition::read(out).map_err(|e| bad(e.message))?;
                same_grid(existing)?;
            }
            // a file system without hard links
            Err(_) => write_atomic(&grid, text.as_bytes()).map_err(|e| bad(e.to_string()))?,
        }
    }
    let runs = out.join("runs");
    std::fs::create_dir_all(&runs)
        .map_err(|e| bad(format!("cannot create {}: {e}", runs.display())))?;
    let probe = runs.join(format!(".dtpsim-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| bad(format!("is not writable: {e}")))?;
    std::fs::canonicalize(out).map_err(|e| bad(format!("cannot read: {e}")))
}

/// How a sweep runs.
#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    /// Runs at a time.
    pub jobs: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Start over: clear the sweep folder (only dtpsim's files) before running.
    pub force: bool,
    /// Run only this shard of the grid (and do not gather).
    pub shard: Option<Shard>,
}

/// What a sweep (or a shard of it, or [`gather`]) found: its files and how its runs ended.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// The files written at the sweep's top level.
    pub files: Vec<PathBuf>,
    /// Runs that were complete already and were not run again.
    pub skipped: usize,
    /// Runs that completed (skipped ones included).
    pub complete: usize,
    /// Runs in which a model stopped early.
    pub stopped: usize,
    /// Runs that failed (an error before or while writing).
    pub failed: usize,
    /// Runs stopped by Ctrl-C, or not started after it.
    pub interrupted: usize,
    /// Runs without `summary.json` (only when gathering: not run yet, still running, or
    /// killed).
    pub missing: usize,
    /// One line per run that is not complete: `run 003 (leak=1 seed=2): missing: …`.
    pub unfinished: Vec<String>,
}

impl SweepOutcome {
    /// Runs counted.
    pub fn total(&self) -> usize {
        self.complete + self.stopped + self.failed + self.interrupted + self.missing
    }

    fn count(&mut self, status: &str) {
        match status {
            "complete" => self.complete += 1,
            "stopped" => self.stopped += 1,
            "interrupted" => self.interrupted += 1,
            "missing" => self.missing += 1,
            _ => self.failed += 1,
        }
    }
}

/// Runs the sweep `plan` into `out`: every run of the grid (or of `options.shard`) whose folder
/// is not complete, `jobs` at a time; complete runs are skipped. An unsharded sweep then
/// [`gather`]s `sweep.csv`, `sweep_summary.csv` and the plots; a shard writes only run
/// folders.
pub fn run_sweep(
    plan: &SweepPlan,
    out: &Path,
    options: &SweepOptions,
) -> anyhow::Result<SweepOutcome> {
    let SweepOptions {
        jobs,
        progress,
        force,
        shard,
    } = *options;
    if force && shard.is_some() {
        return Err(ConfigError::new(
            "--force",
            "with --shard it would remove the runs of the other shards; start the sweep over once (dtpsim sweep … --force --slurm, or remove the folder), then run the shards without --force",
        )
        .into());
    }
    let mine: Vec<usize> = (0..plan.runs.len())
        .filter(|&i| shard.is_none_or(|s| s.contains(i)))
        .collect();
    plan.check_jobs(jobs, mine.len())?;
    let absolute = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let def = plan.definition(&absolute)?;
    let out_abs = open_sweep_folder(out, &def, force)?;
    let run_dir = |i: usize| out.join("runs").join(run_name(i));
    let (done, todo): (Vec<usize>, Vec<usize>) = mine
        .iter()
        .partition(|&&i| run_folder_status(&run_dir(i)).as_deref() == Some("complete"));
    let jobs = plan.check_jobs(jobs, todo.len())?;
    for &i in &todo {
        let sets: Vec<String> = plan.scenarios[i]
            .1
            .iter()
            .map(|s| format!("--set {s}"))
            .collect();
        println!(
            "run {}: dtpsim run {} {}",
            run_name(i),
            plan.command.file.display(),
            sets.join(" ")
        );
    }
    if !done.is_empty() {
        println!(
            "{} of {} runs{} are complete already and are skipped",
            done.len(),
            mine.len(),
            shard.map_or(String::new(), |s| format!(" of shard {s}"))
        );
    }
    let bar = crate::record::progress_bar(
        todo.len() as u64,
        progress,
        "sweep [{bar:30}] {pos}/{len} runs {elapsed_precise} ETA {eta}",
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;
    // runs that ended without a summary.json of this sweep: their status and message
    let errors: Vec<(usize, &'static str, String)> = pool.install(|| {
        todo.par_iter()
            .filter_map(|&i| {
                // after Ctrl-C no new run starts; the running ones stop at a trial boundary
                if crate::interrupt::requested() {
                    return Some((i, "interrupted", NOT_STARTED.to_string()));
                }
                let (s, sets) = &plan.scenarios[i];
                let res = run_point(s, &run_dir(i), sets);
                bar.inc(1);
                res.err().map(|e| (i, "failed", format!("{e:#}")))
            })
            .collect()
    });
    bar.finish();
    let overrides: BTreeMap<usize, (String, String)> = errors
        .into_iter()
        .map(|(i, status, msg)| (i, (status.to_string(), msg)))
        .collect();
    let mut outcome = match shard {
        None => gather(&out_abs, &overrides)?,
        Some(_) => {
            let mut outcome = SweepOutcome::default();
            for &i in &mine {
                let (status, message) = match run_result(&out_abs, &def.runs[i], i, &overrides) {
                    Ok(r) => (r.status, r.message),
                    Err(e) => e,
                };
                outcome.count(&status);
                if status != "complete" {
                    outcome
                        .unfinished
                        .push(describe(&def.runs[i], &status, &message));
                }
            }
            outcome
        }
    };
    outcome.skipped = done.len();
    Ok(outcome)
}

/// `run 003 (leak=1 seed=2): stopped: continuous: diverged`.
fn describe(run: &GridRun, status: &str, message: &str) -> String {
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    format!("run {} ({}): {status}{msg}", run.run, run.set.join(" "))
}

/// Runs one grid point into `dir`: continued from its checkpoints when an earlier attempt of
/// the same scenario and `--set`s left some (see [`crate::checkpoint`]), else from the start
/// (an earlier attempt's files are replaced). Either way the folder ends the same.
fn run_point(
    s: &Scenario,
    dir: &Path,
    sets: &[String],
) -> anyhow::Result<crate::runner::RunReport> {
    let same = |spec: &crate::checkpoint::RunSpec| {
        spec.set == sets
            && serde_json::to_value(&spec.scenario).ok() == serde_json::to_value(s).ok()
    };
    match crate::checkpoint::load_spec(dir) {
        Ok(spec) if same(&spec) => crate::runner::resume_run(dir, false, None),
        _ => run_scenario_replacing(s, dir, false, sets),
    }
}

/// The names of the `metric:` columns of `sweep.csv`.
const METRICS: [&str; 5] = [
    "final_test_loss",
    "final_test_mse",
    "final_test_accuracy",
    "mean_update_cosine",
    "final_alpha_max",
];

/// What a run folder says about its run: status, message and the `sweep.csv` numbers.
struct RunRow {
    status: String,
    message: String,
    metrics: [f64; 5],
    seconds: f64,
}

/// Reads the run in `dir`: None when it has no `summary.json`; an error when its files do not
/// read. The numbers are those of the continuous model: its final evaluation (only when the
/// run is complete) and the mean of its finite update cosines, read from `metrics.csv`
/// (written with full precision, so they are the numbers the run computed).
fn read_run(dir: &Path) -> Option<Result<RunRow, String>> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    Some(read_run_files(dir, &text))
}

/// [`read_run`] of a run whose `summary.json` reads as `text`.
fn read_run_files(dir: &Path, text: &str) -> Result<RunRow, String> {
    let summary_path = dir.join("summary.json");
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("{}: not valid JSON: {e}", summary_path.display()))?;
    let status = v["status"]
        .as_str()
        .ok_or_else(|| format!("{}: no status", summary_path.display()))?
        .to_string();
    let message = v["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let seconds = v["seconds"].as_f64().unwrap_or(f64::NAN);
    let metrics_path = dir.join("metrics.csv");
    let cannot = |e: &dyn std::fmt::Display| format!("{}: {e}", metrics_path.display());
    let mut reader = csv::Reader::from_path(&metrics_path).map_err(|e| cannot(&e))?;
    let header = reader.headers().map_err(|e| cannot(&e))?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| cannot(&format!("no column {name}")))
    };
    let model = column("model")?;
    let wanted = [
        column("test_loss")?,
        column("test_mse")?,
        column("test_accuracy")?,
    ];
    // the measured contraction of every hidden layer (none for a one-layer network)
    let alphas: Vec<usize> = (0..header.len())
        .filter(|&c| header.get(c).is_some_and(|h| h.starts_with("alpha_")))
        .collect();
    let cosine = column("update_cosine")?;
    let number = |record: &csv::StringRecord, c: usize| {
        record
            .get(c)
            .and_then(|t| t.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let mut last: Option<[f64; 4]> = None;
    let mut cosines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| cannot(&e))?;
        if record.get(model) != Some("continuous") {
            continue;
        }
        let [loss, mse, accuracy] = wanted.map(|c| number(&record, c));
        // the layer that contracts least: the largest finite α_l
        let alpha_max = alphas
            .iter()
            .map(|&c| number(&record, c))
            .filter(|a| a.is_finite())
            .fold(f64::NAN, f64::max);
        last = Some([loss, mse, accuracy, alpha_max]);
        cosines.push(number(&record, cosine));
    }
    // a stopped or interrupted run has no final values
    let last = last.filter(|_| status == RunStatus::Complete.name());
    let f = |k: usize| last.map_or(f64::NAN, |l| l[k]);
    let metrics = [
        f(0),
        f(1),
        f(2),
        mean_finite(cosines.into_iter()).unwrap_or(f64::NAN),
        f(3),
    ];
    Ok(RunRow {
        status,
        message,
        metrics,
        seconds,
    })
}

/// The message of a grid point without `summary.json`.
const MISSING: &str = "no summary.json: not run yet, still running, or killed before it finished";

/// The result of run number `i` of the sweep in `dir`: read from its folder, unless
/// `overrides` gives its status and message (a run that failed or was not started in this
/// process); the status and message of a run without numbers.
fn run_result(
    dir: &Path,
    run: &GridRun,
    i: usize,
    overrides: &BTreeMap<usize, (String, String)>,
) -> Result<RunRow, (String, String)> {
    match overrides.get(&i) {
        Some(o) => Err(o.clone()),
        None => match read_run(&dir.join("runs").join(&run.run)) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(("failed".into(), e)),
            None => Err(("missing".into(), MISSING.into())),
        },
    }
}

/// Builds `sweep.csv`, `sweep_summary.csv` and the sweep plots of the sweep folder `dir` from
/// its `sweep.json` and run folders. Every grid point has a row: a run without `summary.json`
/// has status `missing` (or the status and message given for it in `overrides`, which an
/// unsharded sweep uses for runs that failed or were not started). Returns the counts and one
/// line per run that is not complete; what can be written is written even then.
pub fn gather(
    dir: &Path,
    overrides: &BTreeMap<usize, (String, String)>,
) -> anyhow::Result<SweepOutcome> {
    let def = SweepDefinition::read(dir)?;
    let mut header: Vec<String> = vec!["run".into(), "seed".into()];
    header.extend(def.params.iter().map(|p| format!("param:{}", p.path)));
    header.extend(METRICS.iter().map(|m| format!("metric:{m}")));
    header.push("wall_seconds".into());
    header.push("status".into());
    header.push("message".into());
    let h: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let mut table = Table::new(&h);
    let mut outcome = SweepOutcome::default();
    for (i, run) in def.runs.iter().enumerate() {
        let mut row = vec![run.run.clone(), run.seed.to_string()];
        row.extend(run.values.iter().map(set_value_text));
        let (status, message) = match run_result(dir, run, i, overrides) {
            Ok(r) => {
                row.extend(r.metrics.iter().map(|m| num(*m)));
                row.push(format!("{:.3}", r.seconds));
                (r.status, r.message)
            }
            Err((status, message)) => {
                row.extend(METRICS.iter().map(|_| "NaN".to_string()));
                row.push("NaN".into());
                (status, message)
            }
        };
        outcome.count(&status);
        if status != "complete" {
            outcome.unfinished.push(describe(run, &status, &message));
        }
        row.push(status);
        row.push(message);
        table.push(row);
    }
    let csv_path = dir.join("sweep.csv");
    table.write(&csv_path)?;
    outcome.files.push(csv_path);
    outcome.files.extend(crate::report::plot_sweep_dir(dir)?);
    Ok(outcome)
}

/// How `--slurm` writes the job array (each `None` leaves the cluster's default).
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` per task (Slurm's formats: `MM`, `HH:MM:SS`, `D-HH:MM`, …).
    pub time: Option<String>,
    /// `--cpus-per-task`; each task runs this many runs at a time (unless `--jobs`).
    pub cpus: Option<usize>,
    /// `--mem` per task (`4G`, `500M`).
    pub mem: Option<String>,
    /// Tasks running at once (`--array=…%K`).
    pub max_parallel: Option<usize>,
    /// Shards, one task each (default: one per run, at most [`DEFAULT_MAX_SHARDS`]).
    pub shards: Option<usize>,
    /// Further `#SBATCH` options, e.g. `--account=lab`.
    pub extra: Vec<String>,
    /// Write the script but do not submit it.
    pub dry_run: bool,
}

/// The most shards `--slurm` makes without `--shards`: Slurm's default `MaxArraySize` (1001)
/// allows array indices 0 … 1000.
pub const DEFAULT_MAX_SHARDS: usize = 1000;

/// What `--slurm` did.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The sweep folder (absolute).
    pub out: PathBuf,
    /// `sweep.sbatch`, or None when every run is complete (nothing to submit).
    pub script: Option<PathBuf>,
    /// The job id printed by `sbatch --parsable` (None with `--dry-run`).
    pub job_id: Option<String>,
    /// The `--array` value: the shards with runs to do, and `%K`.
    pub array: String,
    /// Shards of the grid (`N` of `--shard I/N`).
    pub shards: usize,
    /// Runs of the grid.
    pub runs: usize,
    /// Runs that are complete already (skipped by the tasks).
    pub complete: usize,
}

/// `ids` (ascending) as a Slurm array range list: `0-3,5,7-9`.
fn array_ranges(ids: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The path of `program` on `PATH`, if it is there.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Checks the Slurm options that go into `#SBATCH` lines.
fn check_slurm_options(o: &SlurmOptions) -> Result<(), ConfigError> {
    let word = |flag: &str, v: &Option<String>, ok: &dyn Fn(char) -> bool, example: &str| match v {
        Some(s) if s.is_empty() || !s.chars().all(ok) => Err(ConfigError::new(
            flag,
            format!("{s:?} is not a value sbatch takes; give e.g. {flag} {example}"),
        )),
        _ => Ok(()),
    };
    word(
        "--partition",
        &o.partition,
        &|c| c.is_ascii_alphanumeric() || "-_.,".contains(c),
        "cpu",
    )?;
    word(
        "--time",
        &o.time,
        &|c| c.is_ascii_digit() || ":-".contains(c),
        "2:00:00 (hours:minutes:seconds; or days-hours, 1-12)",
    )?;
    word(
        "--mem",
        &o.mem,
        &|c| c.is_ascii_alphanumeric(),
        "4G (per task; K, M, G or T)",
    )?;
    for (flag, v) in [
        ("--cpus", o.cpus),
        ("--max-parallel", o.max_parallel),
        ("--shards", o.shards),
    ] {
        if v == Some(0) {
            return Err(ConfigError::new(flag, "give at least 1"));
        }
    }
    for e in &o.extra {
        if !e.starts_with('-') || e.contains(['\n', '\r']) {
            return Err(ConfigError::new(
                "--sbatch-arg",
                format!("{e:?}: give one sbatch option per --sbatch-arg, e.g. --sbatch-arg=--account=lab"),
            ));
        }
    }
    Ok(())
}

/// `--slurm`: prepares the sweep folder `out` (as [`run_sweep`] does, `force` included),
/// writes `out/sweep.sbatch`, a job array with one task per shard that still has runs to do
/// (each task runs `dtpsim sweep FILE … --shard $SLURM_ARRAY_TASK_ID/N --out OUT` with the
/// absolute paths of this executable, the scenario and the folder; stdout and stderr go to
/// `out/slurm/<job>_<task>.out|.err`), and submits it with `sbatch --parsable` unless
/// `dry_run`. Nothing is written outside `out`; without `sbatch` on the PATH (and no
/// `--dry-run`) nothing is written at all.
pub fn submit_slurm(
    plan: &SweepPlan,
    out: &Path,
    jobs: Option<usize>,
    force: bool,
    slurm: &SlurmOptions,
) -> anyhow::Result<Submission> {
    check_slurm_options(slurm)?;
    let sbatch = match (slurm.dry_run, on_path("sbatch")) {
        (true, _) => None,
        (false, Some(p)) => Some(p),
        (false, None) => {
            return Err(ConfigError::new(
                "--slurm",
                "sbatch is not on the PATH: run this on the cluster's login node, or give --dry-run to only write sweep.sbatch",
            )
            .into())
        }
    };
    let cpus = slurm.cpus.unwrap_or(1);
    let jobs = jobs.unwrap_or(cpus);
    let shards = slurm
        .shards
        .unwrap_or(DEFAULT_MAX_SHARDS)
        .min(plan.runs.len());
    let per_task = plan.runs.len().div_ceil(shards);
    plan.check_jobs(jobs, per_task)?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| anyhow::anyhow!("--slurm: cannot find this dtpsim executable: {e}"))?;
    let absolute = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let def = plan.definition(&absolute)?;
    let out_abs = open_sweep_folder(out, &def, force)?;
    let complete: Vec<bool> = (0..plan.runs.len())
        .map(|i| {
            run_folder_status(&out_abs.join("runs").join(run_name(i))).as_deref()
                == Some("complete")
        })
        .collect();
    let pending: Vec<usize> = (0..shards)
        .filter(|&s| (s..plan.runs.len()).step_by(shards).any(|i| !complete[i]))
        .collect();
    let done = complete.iter().filter(|c| **c).count();
    let mut array = array_ranges(&pending);
    if let Some(k) = slurm.max_parallel {
        array.push_str(&format!("%{k}"));
    }
    let mut submission = Submission {
        out: out_abs.clone(),
        script: None,
        job_id: None,
        array: array.clone(),
        shards,
        runs: plan.runs.len(),
        complete: done,
    };
    if pending.is_empty() {
        return Ok(submission);
    }
    let logs = out_abs.join("slurm");
    crate::record::create_dir(&logs)?;
    let mut task = vec![exe.display().to_string()];
    let words = plan.command.words(&plan.file_abs, &out_abs);
    task.extend(words);
    task.extend(["--jobs".to_string(), jobs.to_string(), "--quiet".into()]);
    let task: Vec<String> = task.iter().map(|w| shell_quote(w)).collect();
    let gather = format!(
        "{} sweep gather {}",
        shell_quote(&exe.display().to_string()),
        shell_quote(&out_abs.display().to_string())
    );
    let name = format!(
        "dtpsim-{}",
        plan.base.name.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_"
        )
    );
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!(
            "# Written by dtpsim sweep --slurm: {} runs in {shards} shards (task I runs the runs",
            plan.runs.len()
        ),
        format!(
            "# whose number modulo {shards} is I; complete runs are skipped). When every task has"
        ),
        format!("# finished: {gather}"),
        format!("#SBATCH --job-name={name}"),
        format!("#SBATCH --array={array}"),
        format!("#SBATCH --output={}/%A_%a.out", logs.display()),
        format!("#SBATCH --error={}/%A_%a.err", logs.display()),
        format!("#SBATCH --chdir={}", out_abs.display()),
        "#SBATCH --ntasks=1".to_string(),
        format!("#SBATCH --cpus-per-task={cpus}"),
    ];
    if let Some(p) = &slurm.partition {
        lines.push(format!("#SBATCH --partition={p}"));
    }
    if let Some(t) = &slurm.time {
        lines.push(format!("#SBATCH --time={t}"));
    }
    if let Some(m) = &slurm.mem {
        lines.push(format!("#SBATCH --mem={m}"));
    }
    lines.extend(slurm.extra.iter().map(|e| format!("#SBATCH {e}")));
    lines.push("set -eu".into());
    lines.push(
        ": \"${SLURM_ARRAY_TASK_ID:?submit this script with sbatch: it is a job array}\"".into(),
    );
    lines.push(format!(
        "exec {} --shard \"$SLURM_ARRAY_TASK_ID/{shards}\"",
        task.join(" ")
    ));
    let script = out_abs.join("sweep.sbatch");
    write_atomic(&script, (lines.join("\n") + "\n").as_bytes())?;
    submission.script = Some(script.clone());
    if let Some(sbatch) = sbatch {
        let output = std::process::Command::new(&sbatch)
            .arg("--parsable")
            .arg(&script)
            .output()
            .map_err(|e| anyhow::anyhow!("--slurm: cannot run {}: {e}", sbatch.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let id = stdout
            .lines()
            .next()
            .and_then(|l| l.split(';').next())
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()));
        match (output.status.success(), id) {
            (true, Some(id)) => submission.job_id = Some(id.to_string()),
            _ => anyhow::bail!(
                "--slurm: sbatch refused {} ({}): {}{}; the script is kept: fix what sbatch names (--partition, --time, --mem, --shards for the array size, --sbatch-arg) and run this command again, or edit the script and submit it with sbatch",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            ),
        }
    }
    Ok(submission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_runs_once_and_bad_ones_say_how_they_are_numbered() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| parse_shard(&format!("{i}/3")).unwrap())
            .collect();
        for run in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.contains(run)).count(), 1);
        }
        assert!(shards[1].contains(4) && shards[1].contains(7));
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3", "1/3/4"] {
            let e = parse_shard(bad).unwrap_err();
            assert!(e.starts_with(&format!("--shard {bad}: ")), "{e}");
            assert!(e.contains("numbered from 0"), "{e}");
        }
        assert!(parse_shard("3/3").unwrap_err().contains("I is 0 … 2"));
    }

    #[test]
    fn array_ranges_are_compressed() {
        assert_eq!(array_ranges(&[0, 1, 2, 3, 5, 7, 8, 9]), "0-3,5,7-9");
        assert_eq!(array_ranges(&[4]), "4");
        assert_eq!(array_ranges(&[]), "");
    }

    #[test]
    fn differences_name_the_path() {
        let a = serde_json::json!({"engine": {"dynamics": {"leak": 0.5}}, "w": [1, 2]});
        let b = serde_json::json!({"engine": {"dynamics": {"leak": 1.0}}, "w": [1, 2]});
        assert_eq!(
            json_difference(&a, &b, ""),
            Some(("engine.dynamics.leak".into(), "0.5".into(), "1.0".into()))
        );
        let c = serde_json::json!({"engine": {"dynamics": {"leak": 0.5}}, "w": [1, 3]});
        assert_eq!(json_difference(&a, &c, "").unwrap().0, "w[1]");
        assert_eq!(json_difference(&a, &a, ""), None);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(
            shell_quote("engine.dynamics.leak=0.25,1"),
            "engine.dynamics.leak=0.25,1"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
