//! `dtpsim run`: a scenario end to end. Everything is checked before anything is written;
//! outputs are written atomically and `summary.json` last, so a folder without it is
//! incomplete, and a run that stops early (divergence) keeps what it measured.
//!
//! The continuous engine (when the scenario has one) and every discrete reference run on the
//! same data, from the same initial network, with the same schedule; their evaluations share
//! one `metrics.csv` (see [`crate::metrics`]).

use crate::checkpoint::{Checkpointing, ModelCheckpoint, ModelState};
use crate::continuous::run::{run_protocol, RunOutcome};
use crate::data::Dataset;
use crate::discrete::train::{train_with_checkpoints, TrainOutcome};
use crate::error::{ConfigError, IoError};
use crate::metrics::MetricsRow;
use crate::record::{write_atomic, Table};
use crate::scenario::{Scenario, TraceRecorder};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::IsTerminal;
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

/// How a run (or one model of it) ended: `summary.json`'s `status` and the exit code of
/// `dtpsim run` (0, 1, 130).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every model ran every trial and every evaluation is finite.
    Complete,
    /// Some model stopped early: it diverged, or an evaluation was not finite.
    Stopped,
    /// Ctrl-C stopped the run at a trial boundary.
    Interrupted,
}

impl RunStatus {
    /// The word written to `summary.json` and `sweep.csv`.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Stopped => "stopped",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn of(error: bool, interrupted: bool) -> RunStatus {
        match (error, interrupted) {
            (true, _) => RunStatus::Stopped,
            (false, true) => RunStatus::Interrupted,
            (false, false) => RunStatus::Complete,
        }
    }
}

impl RunReport {
    /// Whether every model ran to the end.
    pub fn complete(&self) -> bool {
        self.status() == RunStatus::Complete
    }

    /// The run's status: stopped if any model stopped, else interrupted if any was, else
    /// complete.
    pub fn status(&self) -> RunStatus {
        let models = self.model_statuses();
        if models.iter().any(|(_, s, _)| *s == RunStatus::Stopped) {
            RunStatus::Stopped
        } else if models.iter().any(|(_, s, _)| *s == RunStatus::Interrupted) {
            RunStatus::Interrupted
        } else {
            RunStatus::Complete
        }
    }

    /// Every model's name, status and error message.
    pub fn model_statuses(&self) -> Vec<(String, RunStatus, Option<String>)> {
        let mut out = Vec::new();
        if let Some(c) = &self.continuous {
            let error = c.error.as_ref().map(|e| e.to_string());
            out.push((
                "continuous".to_string(),
                RunStatus::of(error.is_some(), c.interrupted),
                error,
            ));
        }
        for r in &self.references {
            out.push((
                r.name.clone(),
                RunStatus::of(r.error.is_some(), r.interrupted),
                r.error.clone(),
            ));
        }
        out
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

/// The files dtpsim writes into a run or sweep folder (and nothing else): `--force` clears a
/// folder only when everything in it matches.
fn written_by_dtpsim(name: &str, is_dir: bool) -> bool {
    if is_dir {
        // `slurm`: the job array's logs of a sweep run with --slurm; `export`: dtpsim export
        return name == "runs" || name == "slurm" || name == "checkpoint" || name == "export";
    }
    let ext = |e: &str| name.ends_with(e);
    matches!(
        name,
        "summary.json"
            | "metrics.csv"
            | "traces.csv"
            | "sweep.csv"
            | "sweep.json"
            | "sweep_summary.csv"
            | "sweep.sbatch"
            | RUN_LOCK
    ) || ext(".partial")
        || ext(".png")
        || ext(".svg")
        || (name.starts_with("weights_") && ext(".json"))
}

/// Makes `out` an empty, writable folder before anything runs. A folder that holds files is
/// refused (so a run never mixes its files with another's), unless `force`: then it is
/// cleared, provided everything in it is a dtpsim output. Errors are [`ConfigError`]s on
/// `--out`: nothing has been written when one is returned.
pub fn prepare_output(out: &Path, force: bool) -> Result<(), ConfigError> {
    let bad = |msg: String| ConfigError::new("--out", format!("{}: {msg}", out.display()));
    if let Some(pid) = live_lock(out) {
        return Err(bad(busy(pid)));
    }
    if out.exists() && !out.is_dir() {
        return Err(bad("exists and is not a folder; give a folder name".into()));
    }
    if out.is_dir() {
        let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(out)
            .map_err(|e| bad(format!("cannot read: {e}")))?
            .filter_map(Result::ok)
            .collect();
        if !entries.is_empty() {
            let names: Vec<String> = entries
                .iter()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
            let shown = names.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
            let foreign = entries.iter().find(|e| {
                let dir = e.file_type().is_ok_and(|t| t.is_dir());
                !written_by_dtpsim(&e.file_name().to_string_lossy(), dir)
            });
            if !force {
                // an unfinished run with checkpoints can be continued instead
                let resumable = crate::checkpoint::folder(out)
                    .join("scenario.json")
                    .exists()
                    && !out.join("summary.json").exists();
                let resume = if resumable {
                    format!(", or dtpsim run --resume {} to continue it", out.display())
                } else {
                    String::new()
                };
                return Err(bad(format!(
                    "holds files of an earlier run ({shown}{}); give another --out, or --force to replace them{resume}",
                    if names.len() > 4 { ", …" } else { "" }
                )));
            }
            if let Some(f) = foreign {
                return Err(bad(format!(
                    "holds {} that dtpsim did not write; --force clears only dtpsim's own outputs: give another --out",
                    f.file_name().to_string_lossy()
                )));
            }
            for e in entries {
                let path = e.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|err| bad(format!("cannot clear {}: {err}", path.display())))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| bad(format!("cannot create: {e}")))?;
    let probe = out.join(".dtpsim-write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| bad(format!("is not writable: {e}")))?;
    Ok(())
}

/// The file that marks a folder as being written by a run: it holds the process id and, where
/// the system tells it, `boot <id>` of the machine's boot it was written under ([`boot_id`]).
const RUN_LOCK: &str = "run.lock";

/// This boot of this machine (Linux's `/proc/sys/kernel/random/boot_id`; `None` elsewhere). A
/// lock written under another boot, after a reboot or on another machine the folder was
/// copied from, is stale whatever its process id: that id names an unrelated process here.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The text of a lock held by this process.
fn lock_text() -> String {
    match boot_id() {
        Some(boot) => format!("{}\nboot {boot}\n", std::process::id()),
        None => format!("{}\n", std::process::id()),
    }
}

/// Why a folder held by process `pid` is refused.
fn busy(pid: u32) -> String {
    format!("another dtpsim process (pid {pid}) is writing into this folder; wait for it to end or stop it, then run again (two runs in one folder would append the same rows and overwrite each other's checkpoints)")
}

/// Whether process `pid` is running (on other systems than Unix: assumed not, so a lock
/// never outlives its run there).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let ok = unsafe { libc::kill(pid, 0) } == 0;
        ok || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// What `out/run.lock` says of the process holding it.
enum LockHolder {
    /// No lock, or one left by a process that no longer runs (a killed run) or that ran
    /// under another boot.
    None,
    /// A running process.
    Live(u32),
    /// A lock without a process id: one being written this instant, or a damaged one.
    Unreadable,
}

fn lock_holder(out: &Path) -> LockHolder {
    let Ok(text) = std::fs::read_to_string(out.join(RUN_LOCK)) else {
        return LockHolder::None;
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let pid = lines.next().map(str::parse::<u32>);
    let boot = lines
        .next()
        .and_then(|l| l.strip_prefix("boot "))
        .map(str::trim);
    let other_boot = matches!((boot, boot_id()), (Some(then), Some(now)) if then != now);
    match pid {
        Some(Ok(pid)) if pid != std::process::id() && !other_boot && process_alive(pid) => {
            LockHolder::Live(pid)
        }
        Some(Ok(_)) => LockHolder::None,
        _ => LockHolder::Unreadable,
    }
}

/// The process holding `out`'s lock, if it is still running.
fn live_lock(out: &Path) -> Option<u32> {
    match lock_holder(out) {
        LockHolder::Live(pid) => Some(pid),
        _ => None,
    }
}

/// `out/run.lock` while this process writes into `out` (a run or a resumed run), removed when
/// the run ends however it ends; a second process on the same folder is refused. The file is
/// created atomically (`create_new`), so of two runs started at once only one gets it.
struct RunLock(PathBuf);

impl RunLock {
    fn acquire(out: &Path, flag: &str) -> Result<Self, ConfigError> {
        use std::io::Write;
        let bad = |msg: String| ConfigError::new(flag, format!("{}: {msg}", out.display()));
        let path = out.join(RUN_LOCK);
        // a second attempt follows the removal of a stale lock
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    // one write, so a reader sees no lock text or all of it
                    file.write_all(lock_text().as_bytes())
                        .map_err(|e| bad(format!("cannot write {RUN_LOCK}: {e}")))?;
                    return Ok(RunLock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match lock_holder(out) {
                    LockHolder::Live(pid) => return Err(bad(busy(pid))),
                    LockHolder::Unreadable => {
                        return Err(bad(format!(
                            "{RUN_LOCK} holds no process id: another run is starting this instant, or the file is damaged; if no dtpsim process writes into this folder, delete {RUN_LOCK} and run again"
                        )))
                    }
                    LockHolder::None => {
                        let _ = std::fs::remove_file(&path);
                    }
                },
                Err(e) => return Err(bad(format!("cannot create {RUN_LOCK}: {e}"))),
            }
        }
        Err(bad(format!(
            "{RUN_LOCK} came back at once after a stale one was removed: another run is starting; run again when it has"
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `metrics.csv` while the models run: every evaluation is appended to `metrics.csv.partial`
/// and flushed as it is made (models interleave); at the end the complete file is written in
/// a fixed order and the partial one removed.
struct MetricsSink {
    writer: std::sync::Mutex<Option<csv::Writer<std::fs::File>>>,
    partial: PathBuf,
    error: std::sync::Mutex<Option<std::io::Error>>,
}

impl MetricsSink {
    fn create(path: &Path, depth: usize) -> Result<Self, IoError> {
        let partial = crate::record::partial_path(path);
        let fail = |cause: std::io::Error| IoError::Write {
            path: partial.clone(),
            cause,
        };
        let mut writer = csv::Writer::from_writer(std::fs::File::create(&partial).map_err(fail)?);
        writer
            .write_record(crate::metrics::header(depth))
            .and_then(|()| writer.flush().map_err(Into::into))
            .map_err(|e| fail(e.into()))?;
        Ok(MetricsSink {
            writer: std::sync::Mutex::new(Some(writer)),
            partial,
            error: std::sync::Mutex::new(None),
        })
    }

    fn push(&self, row: &MetricsRow) {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = guard.as_mut() else { return };
        let written = w
            .write_record(crate::metrics::record(row))
            .map_err(std::io::Error::from)
            .and_then(|()| w.flush());
        if let Err(e) = written {
            *guard = None;
            *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
    }

    /// Writes the complete table to `path` in place of the partial file.
    fn finish(self, path: &Path, table: &Table) -> Result<(), IoError> {
        drop(self.writer);
        let error = self.error.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(cause) = error {
            return Err(IoError::Write {
                path: self.partial,
                cause,
            });
        }
        // written through the same `.partial` name and renamed: the partial file becomes the
        // complete one
        table.write(path)
    }
}

/// Runs `scenario` into `out`, which must be empty or absent (see [`prepare_output`]). `sets`
/// are recorded in the summary for reproduction.
///
/// Files are written as the run goes: `metrics.csv.partial` and `traces.csv.partial` grow and
/// are flushed at every evaluation and trial; at the end they become `metrics.csv` and
/// `traces.csv`, then the weights and plots are written, and `summary.json` last. A run
/// stopped by Ctrl-C ([`crate::interrupt`]) ends at a trial boundary and is written the same
/// way with status `interrupted`.
pub fn run_scenario(
    scenario: &Scenario,
    out: &Path,
    progress: bool,
    sets: &[String],
) -> anyhow::Result<RunReport> {
    run_into(scenario, out, progress, sets, Start::Empty)
}

/// Continues the run in `out` from its checkpoints (see [`crate::checkpoint`]): the scenario
/// and `--set`s are the run's own (`checkpoint/scenario.json`), each model restarts from its
/// last checkpoint (from the beginning if it has none), and the run ends with the files an
/// uninterrupted run writes, bit for bit apart from timing. A complete run is refused.
///
/// With `epochs`, the run is extended to that many epochs (see [`extend_to_epochs`]) and then
/// ends as a run started with them would.
pub fn resume_run(out: &Path, progress: bool, epochs: Option<usize>) -> anyhow::Result<RunReport> {
    let longer = if epochs.is_some() {
        " (to train longer, start a run with more epochs)"
    } else {
        "; there is nothing to resume"
    };
    let mut spec = checkpointed_spec(out, "--resume", longer)?;
    if let Some(n) = epochs {
        extend_to_epochs(&mut spec, n)?;
    }
    run_into(&spec.scenario, out, progress, &spec.set, Start::Resume)
}

/// The scenario and `--set`s of the run in `dir` that has checkpoints to read (`--resume`,
/// `export`). A complete run (which keeps none; `complete` says what to do instead) and a
/// folder without `checkpoint/scenario.json` are refused, errors in the name of `command`.
fn checkpointed_spec(
    dir: &Path,
    command: &str,
    complete: &str,
) -> anyhow::Result<crate::checkpoint::RunSpec> {
    let bad = |msg: String| ConfigError::new(command, format!("{}: {msg}", dir.display()));
    if run_folder_status(dir).as_deref() == Some(RunStatus::Complete.name()) {
        return Err(bad(format!(
            "is a complete run, which keeps no checkpoints{complete}"
        ))
        .into());
    }
    if !crate::checkpoint::folder(dir)
        .join("scenario.json")
        .exists()
    {
        return Err(bad(
            "holds no checkpoint/scenario.json: give the --out folder of a dtpsim run that has taken a checkpoint".into(),
        )
        .into());
    }
    Ok(crate::checkpoint::load_spec(dir)?)
}

/// The checkpoint of each model of `scenario` (`continuous` for the engine, then the references
/// by name) that the run folder `dir` holds; models without one are left out.
fn load_checkpoints(
    dir: &Path,
    scenario: &Scenario,
) -> Result<BTreeMap<String, ModelCheckpoint>, IoError> {
    let names = scenario
        .engine
        .iter()
        .map(|_| "continuous".to_string())
        .chain(scenario.references.iter().map(|r| r.name.clone()));
    let mut checkpoints = BTreeMap::new();
    for name in names {
        if let Some(c) = crate::checkpoint::load(&crate::checkpoint::model_path(dir, &name))? {
            checkpoints.insert(name, c);
        }
    }
    Ok(checkpoints)
}

/// One model's weights written by [`export_checkpoints`].
#[derive(Debug, Clone)]
pub struct Exported {
    /// `continuous` or the reference's name.
    pub model: String,
    /// Learning trials done at the checkpoint.
    pub trial: usize,
    /// Epochs of learning at the checkpoint (`metrics.csv`'s `epoch` of its last row).
    pub epoch: f64,
    /// The weights file written.
    pub path: PathBuf,
}

/// Writes the weights (encoders and decoders) each model of the run in `dir` had at its last
/// checkpoint into `out` as `weights_<model>_trial<N>.json`, the format `network.weights`
/// reads, while the run goes on or after it stopped. The engine's weights are read out of its
/// ODE state (docs/MODEL.md §6). An existing file is refused unless `force`; nothing is
/// written when any model fails.
pub fn export_checkpoints(dir: &Path, out: &Path, force: bool) -> anyhow::Result<Vec<Exported>> {
    let bad = |msg: String| ConfigError::new("export", format!("{}: {msg}", dir.display()));
    let spec = checkpointed_spec(
        dir,
        "export",
        ": its final weights are its weights_<model>.json",
    )?;
    let scenario = &spec.scenario;
    let mut networks = Vec::new();
    for (name, c) in load_checkpoints(dir, scenario)? {
        let broken = |m: String| ConfigError::new(format!("checkpoint of {name}"), m);
        let network = match &c.state {
            ModelState::Reference { weights, .. } => weights
                .clone()
                .into_network()
                .map_err(|e| broken(e.to_string()))?,
            ModelState::Continuous {
                state, time, trial, ..
            } => {
                let Some(engine) = &scenario.engine else {
                    return Err(
                        broken("an engine checkpoint in a run without an engine".into()).into(),
                    );
                };
                crate::resources::check(scenario)?;
                let net = scenario.initial_network()?;
                let mut sim = crate::continuous::Simulation::new(
                    &net,
                    engine.clone(),
                    scenario.schedule.batch,
                )?;
                sim.restore(state, *time, *trial, Default::default())
                    .map_err(broken)?;
                sim.network()
            }
        };
        let epoch = c
            .metrics_rows(scenario.architecture()?.depth())
            .map_err(broken)?
            .last()
            .map_or(f64::NAN, |r| r.epoch);
        let path = out.join(format!("weights_{name}_trial{}.json", c.trial));
        networks.push((
            network,
            Exported {
                model: name,
                trial: c.trial,
                epoch,
                path,
            },
        ));
    }
    if networks.is_empty() {
        return Err(bad("has not taken a checkpoint yet (one is taken at every epoch end and every outputs.checkpoint_every trials)".into()).into());
    }
    if !force {
        if let Some((_, e)) = networks.iter().find(|(_, e)| e.path.exists()) {
            return Err(ConfigError::new(
                "--out",
                format!(
                    "{} exists; give another --out, or --force to replace it",
                    e.path.display()
                ),
            )
            .into());
        }
    }
    std::fs::create_dir_all(out).map_err(|cause| IoError::Write {
        path: out.to_path_buf(),
        cause,
    })?;
    for (net, e) in &networks {
        crate::weights::save(net, &e.path)?;
    }
    Ok(networks.into_iter().map(|(_, e)| e).collect())
}

/// Sets the run's `schedule.epochs` to `n` (and records `--set schedule.epochs=n`), so that a
/// resumed run goes on to `n` epochs. Nothing a run has done depends on its length except a
/// rate schedule over the whole run and traces of the last trials; runs with those are
/// refused, so the extended run ends as one started with `n` epochs would.
pub fn extend_to_epochs(
    spec: &mut crate::checkpoint::RunSpec,
    n: usize,
) -> Result<(), ConfigError> {
    let s = &mut spec.scenario;
    let Some(epochs) = s.schedule.epochs else {
        return Err(ConfigError::new(
            "--epochs",
            format!(
                "the run was given as schedule.trials = {}, not in epochs; only a run in epochs can be extended",
                s.schedule.trials
            ),
        ));
    };
    if n <= epochs {
        return Err(ConfigError::new(
            "--epochs",
            format!("the run has {epochs} epochs; give more than that to extend it"),
        ));
    }
    for (i, r) in s.references.iter().enumerate() {
        if !r.lr_schedule.is_constant() {
            return Err(ConfigError::new(
                format!("references[{i}].lr_schedule"),
                format!(
                    "\"{}\" follows the run's length, so extending the run would change the steps already taken; start a new run with {n} epochs",
                    r.name
                ),
            ));
        }
    }
    if s.traces.start_trial == crate::scenario::TraceStart::Last {
        return Err(ConfigError::new(
            "traces.start_trial",
            format!("is \"last\", which follows the run's length; start a new run with {n} epochs, or trace from a trial number"),
        ));
    }
    s.schedule = s.schedule.with_epochs(n);
    spec.set.push(format!("schedule.epochs={n}"));
    Ok(())
}

/// [`run_scenario`] into a folder that may hold an earlier run, which is replaced (see
/// [`prepare_output`] with `force`) once the scenario, its data and its size have been checked:
/// an invalid scenario leaves the earlier run as it was.
pub fn run_scenario_replacing(
    scenario: &Scenario,
    out: &Path,
    progress: bool,
    sets: &[String],
) -> anyhow::Result<RunReport> {
    run_into(scenario, out, progress, sets, Start::Replace)
}

/// The `status` of the run in `dir` from its `summary.json` (`complete`, `stopped`,
/// `interrupted`), or None when it has none (not run, still running, or killed).
pub fn run_folder_status(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("status")?.as_str().map(String::from)
}

/// How a run treats its output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The folder must be empty or absent.
    Empty,
    /// An earlier run in the folder is replaced.
    Replace,
    /// The run in the folder is continued from its checkpoints.
    Resume,
}

/// What a progress bar and log line show of an evaluation: epoch, test loss and
/// (classification) accuracy, and how many test examples they are over. Accuracy gets the
/// digits its test set resolves (at least 3; 4 on 10,000 images), so 0.8495 is not shown as 0.850.
fn progress_message(r: &MetricsRow) -> String {
    let acc = if r.test_accuracy.is_finite() {
        format!(
            ", accuracy {:.*}",
            accuracy_digits(r.test_examples),
            r.test_accuracy
        )
    } else {
        String::new()
    };
    format!(
        "epoch {:.2}: test loss {:.4}{acc} ({} test examples)",
        r.epoch, r.test_loss, r.test_examples
    )
}

/// Seconds left for a model at trial `done` of `total`, at this sitting's pace: it began at
/// trial `first` (its checkpoint's, or 0) `elapsed` seconds ago. `None` before the first trial
/// of the sitting and at the end.
fn time_left(done: usize, first: usize, total: usize, elapsed: f64) -> Option<f64> {
    (done > first && done < total && elapsed > 0.0)
        .then(|| (total - done) as f64 * elapsed / (done - first) as f64)
}

/// Decimal digits that show an accuracy over `n` examples (a multiple of `1/n`) without
/// rounding it across a step of `1/n`: `⌈log₁₀ n⌉`, at least 3.
fn accuracy_digits(n: usize) -> usize {
    let mut digits = 0;
    while 10usize.saturating_pow(digits as u32) < n {
        digits += 1;
    }
    digits.max(3)
}

fn run_into(
    scenario: &Scenario,
    out: &Path,
    progress: bool,
    sets: &[String],
    start_from: Start,
) -> anyhow::Result<RunReport> {
    scenario.validate()?;
    crate::resources::check(scenario)?;
    let net = scenario.initial_network()?;
    let data = dataset(scenario)?;
    // with schedule.epochs the trial count follows from the training set
    let resolved = scenario.for_training_set(data.train.len())?;
    let scenario = &resolved;
    crate::resources::check(scenario)?;
    let resuming = start_from == Start::Resume;
    let mut resume_from: BTreeMap<String, ModelCheckpoint> = BTreeMap::new();
    let _lock;
    if resuming {
        _lock = RunLock::acquire(out, "--resume")?;
        resume_from = load_checkpoints(out, scenario)?;
        // an older summary (interrupted, stopped) is replaced when the run ends; the metrics
        // table a Ctrl-C finished would stand beside the one growing again from the checkpoints
        // (its rows up to them are in the checkpoints, later ones are computed again)
        let _ = std::fs::remove_file(out.join("summary.json"));
        let _ = std::fs::remove_file(out.join("metrics.csv"));
    } else {
        prepare_output(out, start_from == Start::Replace)?;
        _lock = RunLock::acquire(out, "--out")?;
    }
    // what --resume continues (after a resume the same, or with --epochs the longer schedule)
    crate::checkpoint::save_spec(
        out,
        &crate::checkpoint::RunSpec {
            scenario: scenario.clone(),
            set: sets.to_vec(),
        },
    )?;
    let save_checkpoint = |c: &ModelCheckpoint| {
        crate::checkpoint::save(c, &crate::checkpoint::model_path(out, &c.model))
    };
    let checkpointing = |name: &str| Checkpointing {
        resume: resume_from.get(name).cloned(),
        every: scenario.outputs.checkpoint_every,
        save: Some(&save_checkpoint),
    };
    let start = Instant::now();
    let sched = &scenario.schedule;
    let total = sched.total_trials() as u64;
    let multi = MultiProgress::with_draw_target(if progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    // bars need a terminal: into a log file (nohup, a batch job) each evaluation is a line
    let plain = progress && !std::io::stderr().is_terminal();
    let log_row = |name: &str, done: usize, r: &MetricsRow| {
        if plain {
            let elapsed = start.elapsed().as_secs_f64();
            let first = resume_from.get(name).map_or(0, |c| c.trial);
            let left = time_left(done, first, sched.trials, elapsed)
                .map(|s| format!(", about {} left", crate::resources::duration(s)))
                .unwrap_or_default();
            eprintln!(
                "{name}: trial {done}/{} after {elapsed:.0} s{left}, {}",
                sched.trials,
                progress_message(r)
            );
        }
    };
    let bar = |name: &str, template: &str| -> ProgressBar {
        let b = multi.add(crate::record::progress_bar(total, true, template));
        b.set_prefix(name.to_string());
        b
    };
    let depth = net.depth();
    let metrics_path = out.join("metrics.csv");
    let sink = MetricsSink::create(&metrics_path, depth)?;
    // a resumed run's partial metrics: every row up to each model's checkpoint
    for c in resume_from.values() {
        for row in c
            .metrics_rows(depth)
            .map_err(|e| ConfigError::new(format!("checkpoint of {}", c.model), e))?
        {
            sink.push(&row);
        }
    }
    let mut recorder = TraceRecorder::new(scenario);
    if recorder.active() {
        let kept = match resume_from.get("continuous").map(|c| &c.state) {
            Some(ModelState::Continuous { traces, .. }) => *traces,
            _ => None,
        };
        match kept {
            Some((bytes, rows)) => recorder.resume_stream(&out.join("traces.csv"), bytes, rows)?,
            None => recorder.stream_to(&out.join("traces.csv"))?,
        }
    }
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
            let mut last = String::new();
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
                    if let Some(r) = row {
                        sink.push(r);
                        log_row("continuous", r.trial, r);
                        last = format!(" {}", progress_message(r));
                    }
                    let phase = if done <= warm { "warm-up" } else { "learning" };
                    bar.set_message(format!("t = {:.0} ({phase}){last}", done as f64 * t_trial));
                },
                &checkpointing("continuous"),
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
                        "{prefix:>18} [{bar:30}] {pos}/{len} trials {elapsed_precise} ETA {eta} {msg}",
                    );
                    let outcome = train_with_checkpoints(scenario, named, &data, &|n, row| {
                        bar.set_position(n as u64);
                        if let Some(r) = row {
                            sink.push(r);
                            log_row(&named.name, r.trial, r);
                            bar.set_message(progress_message(r));
                        }
                    }, &checkpointing(&named.name));
                    bar.finish();
                    outcome
                })
                .collect::<Result<Vec<_>, _>>()
        },
    );
    let continuous = continuous?;
    let references = references?;
    let mut report = RunReport {
        continuous,
        references,
        provenance: data.provenance.clone(),
        files: Vec::new(),
        seconds: 0.0,
    };

    sink.finish(&metrics_path, &crate::metrics::table(depth, report.rows()))?;
    report.files.push(metrics_path);
    report.files.extend(recorder.finish()?);
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
    let summary_path = out.join("summary.json");
    let summary = summary_json(scenario, sets, &report);
    write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    report.files.push(summary_path);
    if report.status() == RunStatus::Complete {
        // a complete run has nothing to resume: its checkpoints would only take space
        let _ = std::fs::remove_dir_all(crate::checkpoint::folder(out));
    }
    Ok(report)
}

/// One model's numbers for `summary.json`: the final ones only when it completed (a stopped
/// model's last evaluation is not a final result), the last evaluation always.
fn model_json(rows: &[MetricsRow], status: RunStatus, error: Option<String>) -> serde_json::Value {
    let last = rows.last();
    let done = status == RunStatus::Complete;
    let finite = |f: fn(&MetricsRow) -> f64| last.filter(|_| done).map(f).filter(|v| v.is_finite());
    serde_json::json!({
        "status": status.name(),
        "error": error,
        "trials": last.map(|r| r.trial),
        "examples": last.map(|r| r.examples),
        "initial_test_loss": rows.first().map(|r| r.test_loss).filter(|v| v.is_finite()),
        "final_test_loss": finite(|r| r.test_loss),
        "final_test_mse": finite(|r| r.test_mse),
        "final_test_accuracy": finite(|r| r.test_accuracy),
        "last_evaluation": last.map(|r| serde_json::json!({
            "trial": r.trial,
            "test_loss": Some(r.test_loss).filter(|v| v.is_finite()),
            "test_accuracy": Some(r.test_accuracy).filter(|v| v.is_finite()),
        })),
    })
}

fn summary_json(scenario: &Scenario, sets: &[String], report: &RunReport) -> serde_json::Value {
    let statuses = report.model_statuses();
    let status_of = |name: &str| {
        statuses
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, e)| (*s, e.clone()))
            .unwrap_or((RunStatus::Complete, None))
    };
    let continuous = report.continuous.as_ref().map(|c| {
        let st = c.stats;
        let (status, error) = status_of("continuous");
        let mut v = model_json(&c.rows, status, error);
        let extra = serde_json::json!({
            "mean_update_cosine": mean_finite(c.rows.iter().map(|r| r.update_cosine)),
            "simulated_time": st.time,
            "field_evaluations": st.field.evaluations,
            "field_seconds": st.field.seconds,
            "accepted_steps": st.solver.accepted_steps,
            "rejected_steps": st.solver.rejected_steps,
        });
        if let (Some(a), Some(b)) = (v.as_object_mut(), extra.as_object()) {
            a.extend(b.clone());
        }
        v
    });
    let errors: Vec<String> = statuses
        .iter()
        .filter_map(|(n, _, e)| e.as_ref().map(|e| format!("{n}: {e}")))
        .collect();
    serde_json::json!({
        "dtpsim_version": env!("CARGO_PKG_VERSION"),
        "kind": "run",
        "status": report.status().name(),
        "errors": errors,
        "set": sets,
        "scenario": scenario,
        "data": report.provenance,
        "seconds": report.seconds,
        "continuous": continuous,
        "references": report.references.iter().map(|o| {
            let (status, error) = status_of(&o.name);
            let mut v = model_json(&o.rows, status, error);
            if let Some(a) = v.as_object_mut() {
                a.insert("name".into(), o.name.clone().into());
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// Mean of the finite values (None if there are none).
pub fn mean_finite(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut mean = crate::metrics::RunningMean::default();
    values.for_each(|v| mean.add(v));
    Some(mean.mean()).filter(|m| !m.is_nan())
}

#[cfg(test)]
mod tests {
    use super::{accuracy_digits, time_left};

    /// The pace is this sitting's: a run resumed at trial 900 of 1,000 that took 10 s for 50
    /// trials has 10 s left, not the 1.1 s the whole run's count would give.
    #[test]
    fn time_left_counts_this_sittings_trials() {
        assert_eq!(time_left(950, 900, 1000, 10.0), Some(10.0));
        assert_eq!(time_left(500, 0, 1000, 10.0), Some(10.0));
        assert_eq!(time_left(900, 900, 1000, 3.0), None);
        assert_eq!(time_left(1000, 0, 1000, 3.0), None);
    }

    /// Every accuracy a test set of `n` can give (`k/n`) prints differently from its neighbours,
    /// so a printed accuracy names one count of correct examples.
    #[test]
    fn printed_accuracies_resolve_their_test_set() {
        for n in [1, 7, 100, 999, 1000, 2000, 3000, 10_000, 60_000] {
            let d = accuracy_digits(n);
            let printed: Vec<String> = (0..=n)
                .map(|k| format!("{:.*}", d, k as f64 / n as f64))
                .collect();
            for pair in printed.windows(2) {
                assert_ne!(pair[0], pair[1], "n = {n}, {d} digits");
            }
        }
        assert_eq!(format!("{:.*}", accuracy_digits(10_000), 0.8495), "0.8495");
        assert_eq!(accuracy_digits(100), 3);
    }
}
