//! Resumable runs: a run killed after a checkpoint and continued with `--resume` ends with the
//! same files, bit for bit, as the uninterrupted run (apart from wall-clock timing).

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
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("complete run"),
        "{}",
        stderr(&again)
    );

    // the same run, killed (SIGKILL) once every model has a checkpoint
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtpsim"))
        .args(["run", "s.json", "--out", "killed", "--quiet"])
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let ck = dir.join("killed/checkpoint");
    let models = ["continuous", "adam", "dtp1", "dtp1_adam"];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !models
        .iter()
        .all(|m| ck.join(format!("{m}.json.gz")).exists())
    {
        assert!(Instant::now() < deadline, "no checkpoints appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.join("killed/summary.json").exists(),
        "the run finished before it was killed: make it longer"
    );
    let resumed_from: Vec<usize> = models
        .iter()
        .map(|m| {
            dtpsim::checkpoint::load(&ck.join(format!("{m}.json.gz")))
                .unwrap()
                .unwrap()
                .trial
        })
        .collect();
    assert!(
        resumed_from.iter().all(|&t| t > 0 && t < 600),
        "{resumed_from:?}"
    );

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
    for f in [
        "weights_continuous.json",
        "weights_adam.json",
        "weights_dtp1.json",
        "weights_dtp1_adam.json",
        "traces.csv",
    ] {
        let (a, b) = (
            std::fs::read(dir.join("whole").join(f)).unwrap(),
            std::fs::read(dir.join("killed").join(f)).unwrap(),
        );
        assert!(a == b, "{f} differs after resuming from {resumed_from:?}");
    }
    assert_eq!(
        metrics_without_timing(&dir.join("whole")),
        metrics_without_timing(&dir.join("killed"))
    );
    assert!(
        !ck.exists(),
        "the resumed run completed: no checkpoints left"
    );
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
/// left as it was; a lock left by a killed process is stale and does not block, and a run
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
