//! Scenario files and the commands built on them: every shipped scenario is valid, the JSON
//! Schema in the repository is the one the types generate, malformed scenarios give an error
//! that names the field (exit 2, nothing written), runs and sweeps leave complete folders.

mod common;

use common::{dtpsim, scratch, stderr};
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A short version of the quick-start scenario.
fn tiny() -> serde_json::Value {
    common::tiny_quickstart()
}

#[test]
fn every_shipped_scenario_is_valid() {
    for entry in std::fs::read_dir(format!("{ROOT}/scenarios")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || name.contains("schema") {
            continue;
        }
        // a scenario on a real data set needs its files (`.ci/run` installs them)
        let text = std::fs::read_to_string(&path).unwrap();
        let fashion = "/usr/share/datasets/fashion-mnist";
        let needs_fashion = text.contains("\"idx\"") && !text.contains("\"dir\"");
        if needs_fashion
            && std::env::var_os("DTPSIM_FASHION_MNIST").is_none()
            && !Path::new(fashion).exists()
        {
            eprintln!(
                "{name}: skipped, {fashion} is absent (apt-get install dataset-fashion-mnist)"
            );
            continue;
        }
        let out = dtpsim(&["check", path.to_str().unwrap()], Path::new(ROOT));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
}

#[test]
fn the_shipped_schema_is_the_generated_one() {
    let generated = dtpsim::scenario::schema_json();
    let shipped =
        std::fs::read_to_string(format!("{ROOT}/scenarios/scenario.schema.json")).unwrap();
    assert_eq!(
        shipped.trim(),
        generated.trim(),
        "regenerate with: cargo run --release -- schema > scenarios/scenario.schema.json"
    );
    // unknown fields are rejected by the schema too, and the protocol fields are documented
    assert!(generated.contains("\"additionalProperties\": false"));
    assert!(generated.contains("Stimulus duration `T_stim`"));
}

#[test]
fn malformed_scenarios_name_the_field_and_write_nothing() {
    let dir = scratch("scn-malformed");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = tiny();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong type",
            edit(&|v| v["seed"] = "one".into()),
            "seed: invalid type: string \"one\", expected u64",
        ),
        (
            "unknown field",
            edit(&|v| v["engine"]["protocol"]["t_stimulus"] = 9.into()),
            "engine.protocol.t_stimulus: unknown field `t_stimulus`, expected one of `t_stim`",
        ),
        (
            "negative time constant",
            edit(&|v| v["engine"]["dynamics"]["tau_h"] = (-1.0).into()),
            "engine.dynamics.tau_h: must be in (0, 1e6], got -1",
        ),
        (
            "width 0",
            edit(&|v| v["network"]["widths"][2] = 0.into()),
            "network.widths[2]: must be in 1..=1000000, got 0",
        ),
        (
            "missing data file",
            edit(
                &|v| v["task"] = serde_json::json!({"kind": "csv", "train": "missing.csv", "test": "missing.csv", "inputs": 10, "outputs": 10}),
            ),
            "task.train: missing.csv: no such file",
        ),
        (
            "t_on > T_stim",
            edit(&|v| v["engine"]["protocol"]["t_on"] = 20.into()),
            "engine.protocol.t_on: 20 is after the end of the stimulus (t_stim = 15)",
        ),
        (
            "trace of a missing layer",
            edit(&|v| {
                v["traces"]["variables"] = serde_json::json!([{"variable": "h", "layer": 7}])
            }),
            "traces.variables[0].layer: h exists for layers 1..=3, got 7",
        ),
        (
            "η list of wrong length",
            edit(&|v| {
                v["engine"]["dynamics"]["plasticity"] = serde_json::json!({"eta": [0.1, 0.1]})
            }),
            "engine.dynamics.plasticity.eta: give one value per weight layer",
        ),
        (
            "unknown solver",
            edit(&|v| v["engine"]["solver"]["method"] = "euler".into()),
            "engine.solver.method: unknown variant `euler`",
        ),
        (
            "zero batch",
            edit(&|v| v["schedule"]["batch"] = 0.into()),
            "schedule.batch: must be at least 1",
        ),
        (
            "t_stim and t_window together",
            edit(&|v| v["engine"]["protocol"]["t_window"] = 4.into()),
            "engine.protocol: t_stim and t_window are both given; give one",
        ),
        (
            "traces beyond the run",
            edit(&|v| v["traces"]["start_trial"] = 5000.into()),
            "traces.start_trial: traces trials 5000..5002 but the run has trials -3..11",
        ),
        (
            "data file smaller than asked",
            edit(&|v| {
                v["task"] = serde_json::json!({"kind": "csv", "train": "rows.csv", "test": "rows.csv", "inputs": 10, "outputs": 10});
                v["data"] = serde_json::json!({"train": 3, "test": 2});
            }),
            "data.train: asks for 3 examples but",
        ),
        ("not JSON", "{\"seed\": 1,".to_string(), "not valid JSON"),
        (
            "duplicate key",
            format!("{{\"seed\": 2, {}", &tiny().to_string()[1..]),
            "seed: is given twice in the same object; keep one",
        ),
        (
            "a huge bad value is cut, not echoed whole",
            edit(&|v| v["seed"] = "x".repeat(1_000_000).into()),
            "more characters cut)",
        ),
        (
            "rtol that is not a tolerance",
            edit(&|v| v["engine"]["solver"]["rtol"] = 50.into()),
            "engine.solver.rtol: must be in (0, 0.1], got 50 (a relative error per step)",
        ),
        (
            "empty teacher window",
            edit(&|v| {
                v["engine"]["protocol"] = serde_json::json!({"t_on": 5, "t_window": 0});
            }),
            "engine.protocol.t_window: must be in (0, 1e6], got 0",
        ),
        (
            "runaway limit below the activities",
            edit(&|v| v["engine"]["solver"]["runaway"] = 1e-300.into()),
            "engine.solver.runaway: must be in [1, 1e300]",
        ),
        (
            "teacher gain out of range",
            edit(&|v| v["task"]["gain"] = 1e308.into()),
            "task.gain: must be in (0, 100], got 1e308",
        ),
        (
            "width beyond any machine",
            edit(&|v| v["network"]["widths"][1] = 18446744073709551615u64.into()),
            "network.widths[1]: must be in 1..=1000000, got 18446744073709551615",
        ),
        (
            "task/network mismatch",
            edit(&|v| v["network"]["widths"] = serde_json::json!([10, 10, 3])),
            "network.widths[2]: is 3, but the task's outputs have 10 dimensions",
        ),
    ];
    let row = vec!["0.5"; 20].join(",");
    std::fs::write(dir.join("rows.csv"), format!("{row}\n{row}\n")).unwrap();
    for (what, text, needle) in cases {
        std::fs::write(dir.join("bad.json"), text).unwrap();
        let out = dtpsim(&["run", "bad.json", "--out", "bad", "--quiet"], &dir);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(err.contains(needle), "{what}: expected {needle:?} in {err}");
        assert!(err.len() < 2000, "{what}: a {} byte message", err.len());
        assert!(
            err.contains("bad.json: "),
            "{what}: the file is named: {err}"
        );
        assert!(!dir.join("bad").exists(), "{what}: nothing may be written");
    }
    // a --set that does not fit the scenario
    std::fs::write(dir.join("ok.json"), tiny().to_string()).unwrap();
    let out = dtpsim(
        &[
            "run",
            "ok.json",
            "--set",
            "network.widths[9]=3",
            "--out",
            "bad",
        ],
        &dir,
    );
    assert!(
        stderr(&out)
            .contains("--set network.widths[9]: index 9 is out of range (the list has 4 entries)"),
        "{}",
        stderr(&out)
    );
    let out = dtpsim(&["run", "ok.json", "--set", "engine.protocol.t_on"], &dir);
    assert!(
        stderr(&out).contains("write path=value"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("bad").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_writes_a_complete_folder_and_plot_redraws_it_without_system_fonts() {
    let dir = scratch("scn-run");
    std::fs::write(dir.join("s.json"), tiny().to_string()).unwrap();
    std::fs::write(
        dir.join("empty-fonts.conf"),
        "<?xml version=\"1.0\"?><fontconfig></fontconfig>",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dtpsim"))
        .args([
            "run",
            "s.json",
            "--out",
            "run",
            "--quiet",
            "--set",
            "engine.protocol.t_gap=2",
        ])
        .current_dir(&dir)
        .env("FONTCONFIG_FILE", dir.join("empty-fonts.conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.join("run");
    for f in [
        "summary.json",
        "metrics.csv",
        "traces.csv",
        "weights_continuous.json",
        "weights_bp.json",
        "learning_curve.png",
        "learning_curve.svg",
        "traces.png",
        "weight_norms.png",
        "relaxation_alpha.png",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["scenario"]["engine"]["protocol"]["t_gap"], 2.0);
    assert_eq!(summary["set"][0], "engine.protocol.t_gap=2");
    // the trace covers teacher-off and teacher-on stretches of learning trials 0..2, numbered
    // as in metrics.csv
    let traces = std::fs::read_to_string(run.join("traces.csv")).unwrap();
    assert!(traces.starts_with("time,trial,phase,teacher,h_l3_n0_r0,tau_l3_n0_r0"));
    let column = |i: usize| -> Vec<String> {
        traces
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(i).unwrap().to_string())
            .collect()
    };
    let teacher = column(3);
    assert!(teacher.contains(&"0".into()) && teacher.contains(&"1".into()));
    let mut trials = column(1);
    trials.dedup();
    assert_eq!(trials, ["0", "1", "2"]);
    assert!(column(2).iter().all(|p| p == "learning"));
    // metrics: continuous every 4 trials (0, 4, 8, 12) and the two references
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("continuous,"))
            .count(),
        4
    );
    assert_eq!(metrics.lines().filter(|l| l.starts_with("bp,")).count(), 4);
    // plot redraws from the CSVs alone
    std::fs::remove_file(run.join("learning_curve.png")).unwrap();
    let out = dtpsim(&["plot", "run"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let png = std::fs::read(run.join("learning_curve.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_sweep_run_is_reproducible_alone_from_its_set_line() {
    let dir = scratch("scn-sweep");
    let mut v = tiny();
    v["references"] = serde_json::json!([]);
    v["traces"]["interval"] = 0.into();
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let out = dtpsim(
        &[
            "sweep",
            "s.json",
            "--param",
            "engine.dynamics.leak=0.25,1",
            "--seeds",
            "2",
            "--jobs",
            "2",
            "--out",
            "sw",
            "--quiet",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let csv = std::fs::read_to_string(dir.join("sw/sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4);
    assert!(
        dir.join("sw/sweep_final_test_loss.png").exists()
            && dir.join("sw/sweep_learning_curves.png").exists()
    );
    // one summary row per grid point (two leak values, two seeds each), and each run's plots
    let summary = std::fs::read_to_string(dir.join("sw/sweep_summary.csv")).unwrap();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 1 + 2, "{summary}");
    assert!(lines[0].starts_with(
        "param:engine.dynamics.leak,final_test_loss_mean,final_test_loss_min,final_test_loss_max"
    ));
    assert!(
        lines[1].starts_with("0.25,") && lines[1].ends_with(",2,2"),
        "{summary}"
    );
    assert!(dir.join("sw/runs/003/learning_curve.png").exists());
    // take run 003's printed command and run it alone
    let line = stdout.lines().find(|l| l.starts_with("run 003: ")).unwrap();
    let args: Vec<&str> = line
        .trim_start_matches("run 003: dtpsim ")
        .split_whitespace()
        .collect();
    let mut args: Vec<&str> = args.into_iter().collect();
    args.extend(["--out", "alone", "--quiet"]);
    let out = dtpsim(&args, &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let alone = std::fs::read_to_string(dir.join("alone/metrics.csv")).unwrap();
    let in_sweep = std::fs::read_to_string(dir.join("sw/runs/003/metrics.csv")).unwrap();
    let strip = |s: &str| {
        s.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect::<Vec<_>>()
    }; // drop wall_seconds
    assert_eq!(strip(&alone), strip(&in_sweep));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverging_run_exits_1_and_keeps_what_it_measured() {
    let dir = scratch("scn-diverge");
    let mut v = tiny();
    v["engine"]["dynamics"]["plasticity"]["eta"] = 1e4.into();
    v["engine"]["dynamics"]["beta"] = 5.0.into();
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("continuous: diverged in trial"), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "stopped");
    let c = &summary["continuous"];
    assert_eq!(c["status"], "stopped");
    assert!(c["error"]
        .as_str()
        .unwrap()
        .starts_with("diverged in trial"));
    // a stopped model has no final result, only its last evaluation
    assert!(c["final_test_loss"].is_null(), "{c}");
    assert!(c["last_evaluation"]["test_loss"].as_f64().is_some(), "{c}");
    assert_eq!(summary["references"][0]["status"], "complete");
    assert!(
        dir.join("run/metrics.csv").exists() && dir.join("run/weights_continuous.json").exists()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every model either completes with finite metrics or is reported as stopped, in the exit
/// code, in summary.json and in a sweep's table and exit code.
#[test]
fn a_stopped_reference_or_non_finite_metrics_are_never_complete() {
    let dir = scratch("scn-status");
    let mut v = tiny();
    v["traces"]["interval"] = 0.into();
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    for (set, model) in [
        ("references[1].lr=1e300", "bp"),
        ("references[0].beta=1e15", "dtp1_discrete"),
    ] {
        let out_dir = format!("run-{model}");
        let out = dtpsim(
            &["run", "s.json", "--set", set, "--out", &out_dir, "--quiet"],
            &dir,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{set}: {err}");
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(&out_dir).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["status"], "stopped", "{set}");
        let r = summary["references"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == model)
            .unwrap();
        assert_eq!(r["status"], "stopped", "{set}: {r}");
        assert!(r["final_test_loss"].is_null(), "{set}: {r}");
        assert!(err.contains(&format!("error: {model}: ")), "{set}: {err}");
    }
    // a sweep with a stopped run says so in its table and exits 1
    let out = dtpsim(
        &[
            "sweep",
            "s.json",
            "--param",
            "references[1].lr=0.01,1e300",
            "--out",
            "sw",
            "--quiet",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = std::fs::read_to_string(dir.join("sw/sweep.csv")).unwrap();
    let status: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[cells.len() - 2]
        })
        .collect();
    assert_eq!(status, ["complete", "stopped"], "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run never mixes its files with another run's: a folder holding files is refused (exit 2,
/// nothing touched) unless --force, which clears only dtpsim's own outputs.
#[test]
fn an_output_folder_is_used_only_when_empty_or_forced() {
    let dir = scratch("scn-force");
    let mut v = tiny();
    v["traces"]["interval"] = 0.into();
    v["references"] = serde_json::json!([]);
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    assert!(dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir)
        .status
        .success());
    let before = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    let out = dtpsim(
        &[
            "run", "s.json", "--out", "run", "--quiet", "--set", "seed=2",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--out: run: holds files of an earlier run"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap(),
        before
    );
    let out = dtpsim(
        &[
            "run", "s.json", "--out", "run", "--quiet", "--set", "seed=2", "--force",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(
        std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap(),
        before
    );
    // an invalid scenario leaves the earlier run as it was, even with --force
    let now = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    let out = dtpsim(
        &[
            "run",
            "s.json",
            "--out",
            "run",
            "--quiet",
            "--force",
            "--set",
            "schedule.batch=1000000",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap(),
        now
    );
    // --force clears only dtpsim's outputs
    std::fs::write(dir.join("run/notes.txt"), "mine").unwrap();
    let out = dtpsim(
        &["run", "s.json", "--out", "run", "--quiet", "--force"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds notes.txt that dtpsim did not write"),
        "{}",
        stderr(&out)
    );
    assert!(dir.join("run/notes.txt").exists() && dir.join("run/summary.json").exists());
    // no partial files are left by a complete run
    let names: Vec<String> = std::fs::read_dir(dir.join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn csv_tasks_are_read_and_bad_rows_are_named() {
    let dir = scratch("scn-csv");
    let mut rows = String::from("x1,x2,y\n");
    for i in 0..40 {
        let (a, b) = (i as f64 / 40.0, (i % 7) as f64 / 7.0);
        rows.push_str(&format!("{a},{b},{}\n", a - 0.5 * b));
    }
    std::fs::write(dir.join("train.csv"), &rows).unwrap();
    std::fs::write(dir.join("test.csv"), &rows).unwrap();
    let mut v = tiny();
    v["task"] = serde_json::json!({"kind": "csv", "train": "train.csv", "test": "test.csv", "inputs": 2, "outputs": 1});
    v["data"] = serde_json::json!({});
    v["network"]["widths"] = serde_json::json!([2, 6, 6, 1]);
    v["references"] = serde_json::json!([]);
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    assert!(metrics.lines().count() > 2);
    // a row with a missing value is reported with its line
    std::fs::write(dir.join("train.csv"), format!("{rows}0.5,0.1\n")).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "bad", "--quiet"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("train.csv: line 42: expected 3 numbers (2 inputs + 1 outputs), got 2"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("bad").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn traces_follow_the_run_numbering_for_warm_up_last_and_whole_layer_selections() {
    let dir = scratch("scn-trace-numbering");
    let mut v = tiny();
    v["references"] = serde_json::json!([]);
    v["traces"] = serde_json::json!({"interval": 1.0, "start_trial": -2, "trials": 3,
        "variables": [{"variable": "h", "layer": 1, "neuron": "all"}, {"variable": "tau", "layer": 3}]});
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "warm", "--quiet"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let traces = std::fs::read_to_string(dir.join("warm/traces.csv")).unwrap();
    let header = traces.lines().next().unwrap();
    // a whole layer is one column per neuron
    let h1: Vec<&str> = header
        .split(',')
        .filter(|c| c.starts_with("h_l1_"))
        .collect();
    assert_eq!(h1.len(), 10, "{header}");
    assert!(header.ends_with("tau_l3_n0_r0"));
    let mut trial_phase: Vec<(String, String)> = traces
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[1].to_string(), c[2].to_string())
        })
        .collect();
    trial_phase.dedup();
    let want = [("-2", "warmup"), ("-1", "warmup"), ("0", "learning")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(trial_phase, want);

    // "last": the run's last trials (12 learning trials: 10 and 11)
    let out = dtpsim(
        &[
            "run",
            "s.json",
            "--set",
            "traces.start_trial=\"last\"",
            "--set",
            "traces.trials=2",
            "--out",
            "last",
            "--quiet",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let traces = std::fs::read_to_string(dir.join("last/traces.csv")).unwrap();
    let mut trials: Vec<&str> = traces
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    trials.dedup();
    assert_eq!(trials, ["10", "11"]);

    // partly beyond the run: valid, with a warning at check and at run
    let out = dtpsim(
        &[
            "check",
            "s.json",
            "--set",
            "traces.start_trial=10",
            "--set",
            "traces.trials=5",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("warning: traces: 5 trials asked for, 2 exist in the run (trials 10..11)"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_says_which_data_will_be_used_and_paths_are_relative_to_the_scenario_file() {
    let dir = scratch("scn-check-data");
    std::fs::create_dir_all(dir.join("study/data")).unwrap();
    let mut rows = String::from("x1,x2,y\n");
    for i in 0..450 {
        rows.push_str(&format!(
            "{},{},{}\n",
            i as f64 / 450.0,
            (i % 7) as f64,
            i % 3
        ));
    }
    std::fs::write(dir.join("study/data/train.csv"), &rows).unwrap();
    std::fs::write(dir.join("study/data/test.csv"), &rows).unwrap();
    let mut v = tiny();
    v["task"] = serde_json::json!({"kind": "csv", "train": "data/train.csv", "test": "data/test.csv", "inputs": 2, "outputs": 1});
    v["network"]["widths"] = serde_json::json!([2, 6, 6, 1]);
    v["data"] = serde_json::json!({"train": 100});
    std::fs::write(dir.join("study/s.json"), v.to_string()).unwrap();
    // run from the folder above the scenario: data/… resolves against study/
    let out = dtpsim(&["check", "study/s.json"], &dir);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "data train: 100 of the 450 rows of study/data/train.csv (seeded random subset)"
        ),
        "{err}"
    );
    assert!(
        err.contains("data test: 450 examples, every row of study/data/test.csv"),
        "{err}"
    );
    assert!(
        err.contains("models: continuous, dtp1_discrete, bp; trials -3..-1 warm up, 0..11 learn"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every field of the schema is described: a property carries a description, except the
/// `kind` tag of a described variant (a constant naming it).
#[test]
fn every_schema_field_has_a_description() {
    let schema: serde_json::Value = serde_json::from_str(&dtpsim::scenario::schema_json()).unwrap();
    fn walk(node: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
            let described_variant = obj.contains_key("description");
            for (k, v) in props {
                let tag = k == "kind" && v.get("const").is_some() && described_variant;
                if !tag && v.get("description").is_none() {
                    missing.push(format!("{path}.{k}"));
                }
                walk(v, &format!("{path}.{k}"), missing);
            }
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            for (i, v) in obj
                .get(key)
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
                .enumerate()
            {
                walk(v, &format!("{path}.{key}[{i}]"), missing);
            }
        }
        for (k, v) in obj
            .get("$defs")
            .and_then(|d| d.as_object())
            .into_iter()
            .flatten()
        {
            if v.get("description").is_none() {
                missing.push(format!("#{k}"));
            }
            walk(v, &format!("#{k}"), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn a_classification_run_reports_and_plots_accuracy() {
    let dir = scratch("scn-accuracy");
    let mut v = tiny();
    v["task"] = serde_json::json!({"kind": "clusters", "dim": 4, "classes": 3, "separation": 3.0});
    v["network"]["widths"] = serde_json::json!([4, 8, 3]);
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    let acc = metrics
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "test_accuracy")
        .unwrap();
    for line in metrics.lines().skip(1) {
        let a: f64 = line.split(',').nth(acc).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&a), "{line}");
    }
    assert!(dir.join("run/accuracy.png").exists() && dir.join("run/accuracy.svg").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    assert!(summary["continuous"]["final_test_accuracy"]
        .as_f64()
        .is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `network.output_activation` is `σ_L`, the read of the top decoder only: with `linear`,
/// `g_L(h_L + d) − g_L(h_L) = Ω_L[:, ..n_L] d` exactly (no saturation of the logits), every
/// hidden layer keeps `network.activation`, and the forward pass does not change.
#[test]
fn output_activation_sets_only_the_top_decoders_read() {
    let mut v = tiny();
    v["network"]["output_activation"] = serde_json::json!("linear");
    let s = dtpsim::scenario::parse_scenario(&v.to_string(), &[]).unwrap();
    let with = s.initial_network().unwrap();
    v["network"]
        .as_object_mut()
        .unwrap()
        .remove("output_activation");
    let without = dtpsim::scenario::parse_scenario(&v.to_string(), &[])
        .unwrap()
        .initial_network()
        .unwrap();
    let acts = &with.arch().activations;
    let depth = acts.len() - 1;
    assert_eq!(acts[depth], dtpsim::Activation::Linear);
    assert!(acts[1..depth]
        .iter()
        .all(|a| *a == dtpsim::Activation::Tanh));
    assert_eq!(without.arch().activations[depth], dtpsim::Activation::Tanh);

    let n_l = with.arch().widths[depth];
    let h = nalgebra::DVector::from_fn(n_l, |i, _| 3.0 + i as f64);
    let d = nalgebra::DVector::from_fn(n_l, |i, _| 0.5 - 0.1 * i as f64);
    let diff = with.decode(depth, &(&h + &d)) - with.decode(depth, &h);
    let omega = &with.decoders()[depth - 2];
    let linear = omega.columns(0, n_l) * &d;
    assert!((&diff - &linear).amax() < 1e-12, "{diff} vs {linear}");
    // a tanh read of the same logits saturates: the difference is far from linear
    let saturated = without.decode(depth, &(&h + &d)) - without.decode(depth, &h);
    assert!((&saturated - &linear).amax() > 0.1);
    // the forward pass is the same network
    let x = nalgebra::DVector::from_element(with.arch().widths[0], 0.3);
    assert_eq!(with.forward(&x).h, without.forward(&x).h);
}

/// `check` warns when the settle `t_on` leaves much of the previous stimulus in the top layer
/// at teacher onset (`e^{−t/τ_h} Σ_{j<L} (t/τ_h)^j/j!`, docs/MODEL.md §6 Settling): four layers
/// after 5 time units (27%), not three (12%), not four after 10.5 or with a cascade twice as
/// fast; the warning names the field, the share and a settle that leaves under 1%.
#[test]
fn an_unsettled_cascade_at_teacher_onset_is_warned_about() {
    let unsettled = |widths: &[usize], t_on: f64, tau_h: f64| {
        let mut v = tiny();
        v["task"]["widths"] = serde_json::json!(widths);
        v["network"]["widths"] = serde_json::json!(widths);
        v["engine"]["protocol"] = serde_json::json!({"t_on": t_on, "t_window": 10});
        v["engine"]["dynamics"] = serde_json::json!({"tau_h": tau_h});
        let s = dtpsim::scenario::parse_scenario(&v.to_string(), &[]).unwrap();
        s.warnings()
            .into_iter()
            .filter(|w| w.contains("teacher onset"))
            .collect::<Vec<_>>()
    };
    let w = unsettled(&[10, 10, 10, 10, 10], 5.0, 1.0);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("engine.protocol.t_on = 5 with 4 layers"),
        "{}",
        w[0]
    );
    assert!(w[0].contains("27% of the previous stimulus"), "{}", w[0]);
    // 1.03% after 10, 0.71% after 10.5
    assert!(w[0].contains("a t_on of 10.5 leaves under 1%"), "{}", w[0]);
    assert!(unsettled(&[10, 10, 10, 10], 5.0, 1.0).is_empty());
    assert!(unsettled(&[10, 10, 10, 10, 10], 10.5, 1.0).is_empty());
    assert!(unsettled(&[10, 10, 10, 10, 10], 5.0, 0.5).is_empty());
    // a slow cascade: the advice scales with τ_h
    let w = unsettled(&[10, 10, 10, 10, 10], 5.0, 2.0);
    assert!(w[0].contains("a t_on of 21 leaves under 1%"), "{}", w[0]);
}

/// `check` warns when the decoders' relaxation rate `η_Ω·(γ_Ω + B)` makes the engine's ODE
/// stiff, naming the field and a rate that avoids it; below the threshold it stays quiet.
#[test]
fn stiff_decoder_rates_are_warned_about() {
    let stiff = |eta: f64, batch: usize| {
        let mut v = tiny();
        v["schedule"]["batch"] = serde_json::json!(batch);
        v["engine"]["dynamics"]["decoder"] = serde_json::json!({"eta": eta});
        let s = dtpsim::scenario::parse_scenario(&v.to_string(), &[]).unwrap();
        s.warnings()
            .into_iter()
            .filter(|w| w.contains("stiff"))
            .collect::<Vec<_>>()
    };
    let w = stiff(0.5, 32);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("engine.dynamics.decoder.eta = 0.5"),
        "{}",
        w[0]
    );
    assert!(w[0].contains("= 16 per time unit"), "{}", w[0]);
    assert!(stiff(0.1, 32).is_empty());
    assert!(stiff(0.5, 1).is_empty());
}
