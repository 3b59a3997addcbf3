//! Resumable runs: a run killed or interrupted (Ctrl-C) after a checkpoint and continued with
//! `--resume` ends with the same files, bit for bit, as the uninterrupted run (apart from
//! wall-clock timing).

mod common;

use common::{dtpsim, scratch, stderr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Continuous engine with traces and difference-reconstruction decoders (probes drawn per
/// trial from the seed), BP with Adam, iterated DTP1 with noisy decoders and
/// iterated DTP1 with Adam, per-layer rates and difference-reconstruction decoders, in epochs
/// with subset evaluations and checkpoints every 20 trials.
const SCENARIO: &str = r#"{"name": "resume", "seed": 3,
 "task": {"kind": "teacher_student", "widths": [6, 8, 8, 4], "activation": "tanh", "gain": 1.5},
 "data": {"train": 60, "test": 50},
 "network": {"widths": [6, 8, 8, 4]},
 "schedule": {"epochs": 40, "warmup_trials": 20, "batch": 4, "eval_every": 10, "eval_examples": 20},
 "engine": {"protocol": {"t_stim": 8, "t_on": 3, "t_gap": 1},
   "dynamics": {"decoder": {"eta": 0.2, "loss": "difference_reconstruction", "noise": 0.1, "ridge": 0.1}}},
 "references": [
   {"name": "adam", "kind": "bp", "optimizer": "adam", "lr": 0.01},
   {"name": "dtp1", "kind": "dtp1", "beta": 0.2, "eta": 0.05,
    "relaxation": {"iterations": 5}, "decoder": {"rate": 0.05, "noise": 0.1}},
   {"name": "dtp1_adam", "kind": "dtp1", "beta": 0.2, "eta": [0.01, 0.003, 0.01],
    "optimizer": "adam", "relaxation": {"iterations": 5},
    "decoder": {"rate": 0.1, "noise": 0.1, "loss": "difference_reconstruction", "ridge": 0.1}}],
 "outputs": {"checkpoint_every": 20},
 "traces": {"interval": 0.5, "start_trial": 10, "trials": 100}}"#;

/// metrics.csv without its wall-clock column.
fn metrics_without_timing(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_killed_run_resumed_ends_bit_for_bit_as_the_uninterrupted_one() {
    let dir = scratch("resume");
    std::fs::write(dir.join("s.json"), SCENARIO).unwrap();
    let whole = dtpsim(&["run", "s.json", "--out", "whole", "--quiet"], &dir);
    assert!(whole.status.success(), "{}", stderr(&whole));
    // a complete run keeps no checkpoints, and has nothing to resume
    assert!(!dir.join("whole/checkpoint").exists());
    let again = dtpsim(&["run", "--resume", "whole"], &dir);
    let export = dtpsim(&["export", "whole"], &dir);
    assert_eq!(export.status.code(), Some(2), "{}", stderr(&export));
    assert!(
        stderr(&export).contains("weights_<model>.json"),
        "{}",
        stderr(&export)
    );
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("complete run"),
        "{}",
        stderr(&again)
    );

    // the same run, killed (SIGKILL) once every model has a checkpoint
    let resumed_from = killed_once_checkpointed(&dir, "s.json", "killed");
    let ck = dir.join("killed/checkpoint");
    assert!(
        resumed_from.iter().all(|&t| t > 0 && t < 600),
        "{resumed_from:?}"
    );

    // the weights at the checkpoints, exported while the run is stopped: each model's norms
    // are those of its last metrics row, taken at the checkpoint's trial
    let exported = dtpsim(&["export", "killed", "--out", "at_checkpoint"], &dir);
    assert!(exported.status.success(), "{}", stderr(&exported));
    for (model, trial) in MODELS.iter().zip(&resumed_from) {
        let path = dir.join(format!("at_checkpoint/weights_{model}_trial{trial}.json"));
        let net = dtpsim::weights::load(&path).unwrap();
        let c = dtpsim::checkpoint::load(&ck.join(format!("{model}.json.gz")))
            .unwrap()
            .unwrap();
        let last = c.metrics_rows(net.depth()).unwrap().pop().unwrap();
        assert_eq!(last.trial, *trial);
        let norms: Vec<f64> = net.encoders().iter().map(|w| w.norm()).collect();
        assert_eq!(norms, last.w_norms, "{model}");
    }
    let again = dtpsim(&["export", "killed", "--out", "at_checkpoint"], &dir);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));

    // starting the run again into its folder points at --resume
    let again = dtpsim(&["run", "s.json", "--out", "killed"], &dir);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("--resume killed"),
        "{}",
        stderr(&again)
    );
    let resumed = dtpsim(&["run", "--resume", "killed", "--quiet"], &dir);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_same_outputs(&dir.join("whole"), &dir.join("killed"), &resumed_from);
    assert!(
        !ck.exists(),
        "the resumed run completed: no checkpoints left"
    );

    // the same run stopped by Ctrl-C: it finishes its files as `interrupted`, keeps its
    // checkpoints, and resumes from them to the same end
    let resumed_from = stopped_once_checkpointed(&dir, "s.json", "ctrl_c", Stop::Interrupt);
    let stopped = dir.join("ctrl_c");
    let status = dtpsim::runner::run_folder_status(&stopped);
    assert_eq!(status.as_deref(), Some("interrupted"));
    for f in ["traces.csv", "metrics.csv", "weights_continuous.json"] {
        assert!(stopped.join(f).exists(), "an interrupted run finishes {f}");
    }
    let resumed = dtpsim(&["run", "--resume", "ctrl_c", "--quiet"], &dir);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_same_outputs(&dir.join("whole"), &stopped, &resumed_from);
    assert!(!stopped.join("traces.csv.partial").exists());
}

const MODELS: [&str; 4] = ["continuous", "adam", "dtp1", "dtp1_adam"];

/// The weights, traces and metrics (timing aside) of two runs of [`SCENARIO`] are the same, bit
/// for bit; `resumed_from` names the checkpoints one of them continued from.
fn assert_same_outputs(a: &Path, b: &Path, resumed_from: &[usize]) {
    for f in MODELS
        .iter()
        .map(|m| format!("weights_{m}.json"))
        .chain(["traces.csv".to_string()])
    {
        let (x, y) = (
            std::fs::read(a.join(&f)).unwrap(),
            std::fs::read(b.join(&f)).unwrap(),
        );
        assert!(x == y, "{f} differs after resuming from {resumed_from:?}");
    }
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b));
}

/// Starts `dtpsim run <scenario> --out <out>` in `dir`, kills it (SIGKILL) once every model has
/// a checkpoint, and returns the trial of each model's checkpoint.
fn killed_once_checkpointed(dir: &Path, scenario: &str, out: &str) -> Vec<usize> {
    let resumed_from = stopped_once_checkpointed(dir, scenario, out, Stop::Kill);
    assert!(
        !dir.join(out).join("summary.json").exists(),
        "the run finished before it was killed: make it longer"
    );
    resumed_from
}

/// How a run is stopped.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGKILL: the process ends at once and finishes nothing.
    Kill,
    /// SIGINT (Ctrl-C): the run stops at the next trial boundary and finishes its files.
    Interrupt,
}

/// [`killed_once_checkpointed`] with the stop given.
fn stopped_once_checkpointed(dir: &Path, scenario: &str, out: &str, stop: Stop) -> Vec<usize> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtpsim"))
        .args(["run", scenario, "--out", out, "--quiet"])
        .current_dir(dir)
        .spawn()
        .unwrap();
    let ck = dir.join(out).join("checkpoint");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !MODELS
        .iter()
        .all(|m| ck.join(format!("{m}.json.gz")).exists())
    {
        assert!(Instant::now() < deadline, "no checkpoints appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    match stop {
        Stop::Kill => child.kill().unwrap(),
        // SAFETY: kill(2) with the id of a child this test started and has not yet waited for
        Stop::Interrupt => assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0),
    }
    let status = child.wait().unwrap();
    if let Stop::Interrupt = stop {
        assert_eq!(
            status.code(),
            Some(130),
            "an interrupted run exits with 130"
        );
    }
    MODELS
        .iter()
        .map(|m| {
            dtpsim::checkpoint::load(&ck.join(format!("{m}.json.gz")))
                .unwrap()
                .unwrap()
                .trial
        })
        .collect()
}

/// `--resume DIR --epochs N` extends a stopped run: it then ends as a run started with `N`
/// epochs, bit for bit; fewer epochs than the run has, and `--epochs` without `--resume`, are
/// refused.
#[test]
fn a_resumed_run_extended_to_more_epochs_ends_as_one_started_with_them() {
    let dir = scratch("resume-extend");
    std::fs::write(dir.join("s40.json"), SCENARIO).unwrap();
    let longer = SCENARIO.replace("\"epochs\": 40", "\"epochs\": 50");
    assert_ne!(longer, SCENARIO);
    std::fs::write(dir.join("s50.json"), longer).unwrap();
    let whole = dtpsim(&["run", "s50.json", "--out", "whole", "--quiet"], &dir);
    assert!(whole.status.success(), "{}", stderr(&whole));

    let resumed_from = killed_once_checkpointed(&dir, "s40.json", "extended");
    let fewer = dtpsim(&["run", "--resume", "extended", "--epochs", "40"], &dir);
    assert_eq!(fewer.status.code(), Some(2), "{}", stderr(&fewer));
    assert!(
        stderr(&fewer).contains("--epochs") && stderr(&fewer).contains("more than"),
        "{}",
        stderr(&fewer)
    );
    let alone = dtpsim(&["run", "s40.json", "--epochs", "50"], &dir);
    assert_eq!(alone.status.code(), Some(2), "{}", stderr(&alone));
    assert!(
        stderr(&alone).contains("--resume") && !dir.join("s40").exists(),
        "{}",
        stderr(&alone)
    );
    let extended = dtpsim(
        &["run", "--resume", "extended", "--epochs", "50", "--quiet"],
        &dir,
    );
    assert!(extended.status.success(), "{}", stderr(&extended));
    assert_same_outputs(&dir.join("whole"), &dir.join("extended"), &resumed_from);
}

#[test]
fn resume_names_a_folder_that_is_not_a_run() {
    let dir = scratch("resume-bad");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let out = dtpsim(&["run", "--resume", "empty"], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--resume") && err.contains("checkpoint/scenario.json"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A folder another live process is writing into is refused, by name and process id, and
/// left as it was; a lock left by a killed process, or written under another boot of the
/// machine (or on another machine), is stale and does not block, and a run
/// removes its own lock when it ends.
#[test]
fn a_folder_being_written_is_refused_and_a_stale_lock_is_not() {
    let dir = scratch("resume-lock");
    let scenario = r#"{"name": "lock", "seed": 1,
     "task": {"kind": "teacher_student", "widths": [3, 4, 2], "activation": "tanh", "gain": 1.0},
     "data": {"train": 20, "test": 10},
     "network": {"widths": [3, 4, 2]},
     "schedule": {"trials": 5, "warmup_trials": 0, "batch": 2, "eval_every": 5},
     "engine": null,
     "references": [{"name": "bp", "kind": "bp", "lr": 0.1}]}"#;
    std::fs::write(dir.join("s.json"), scenario).unwrap();
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // this test process is alive: its id in the lock stands for another run
    let live = std::process::id();
    std::fs::write(out_dir.join("run.lock"), format!("{live}\n")).unwrap();
    for args in [
        &["run", "s.json", "--out", "out"][..],
        &["run", "s.json", "--out", "out", "--force"][..],
    ] {
        let out = dtpsim(args, &dir);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("pid {live}")) && err.contains("--out"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the lock: nothing written or cleared");
    }
    // the same live process id, written under this boot, is a live run
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
    if let Some(boot) = &boot {
        std::fs::write(
            out_dir.join("run.lock"),
            format!("{live}\nboot {}\n", boot.trim()),
        )
        .unwrap();
        let out = dtpsim(&["run", "s.json", "--out", "out", "--force"], &dir);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("pid {live}")));
        // written under another boot (a reboot, or the folder copied from another machine),
        // the id names an unrelated process here: stale
        std::fs::write(
            out_dir.join("run.lock"),
            format!("{live}\nboot 00000000-0000-0000-0000-000000000000\n"),
        )
        .unwrap();
        let out = dtpsim(&["run", "s.json", "--out", "out", "--force"], &dir);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            !out_dir.join("run.lock").exists(),
            "the run removed its lock"
        );
    }
    // no process has an id above Linux's largest pid_max (2^22)
    std::fs::write(out_dir.join("run.lock"), "4194305\n").unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "out", "--force"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out_dir.join("summary.json").exists());
    assert!(
        !out_dir.join("run.lock").exists(),
        "the run removed its lock"
    );
}

/// Runs whose past depends on their length cannot be extended: a cosine rate schedule (its
/// steps follow the total trial count) and traces of the "last" trials; nor can a run given
/// in trials.
#[test]
fn extending_is_refused_where_the_run_depends_on_its_length() {
    let extend = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let scenario = dtpsim::scenario::parse_scenario(SCENARIO, &sets).unwrap();
        let mut spec = dtpsim::checkpoint::RunSpec {
            scenario,
            set: sets,
        };
        dtpsim::runner::extend_to_epochs(&mut spec, 50)
            .map(|_| spec)
            .map_err(|e| e.to_string())
    };
    let spec = extend(&[]).unwrap();
    assert_eq!(spec.scenario.schedule.epochs, Some(50));
    assert_eq!(spec.set.last().unwrap(), "schedule.epochs=50");
    let cosine = extend(&[r#"references[0].lr_schedule={"kind":"cosine"}"#]).unwrap_err();
    assert!(cosine.contains("references[0].lr_schedule"), "{cosine}");
    let last = extend(&[r#"traces.start_trial="last""#]).unwrap_err();
    assert!(last.contains("traces.start_trial"), "{last}");
    let trials = extend(&["schedule.epochs=null", "schedule.trials=100"]).unwrap_err();
    assert!(trials.contains("schedule.trials"), "{trials}");
}
