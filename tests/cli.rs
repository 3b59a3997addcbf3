//! The command line: bad input gives a clear error (exit 2, never a panic) and writes nothing
//! that looks complete; good input leaves its outputs.

mod common;

use common::{dtpsim, scratch};
use std::process::Output;

fn scenario() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/teacher_student_discrete.json"
    ))
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["schedule"]["trials"] = 200.into();
    v["schedule"]["eval_every"] = 100.into();
    v["schedule"]["warmup_trials"] = 50.into();
    v
}

fn expect_clean_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "missing {n:?} in: {stderr}");
    }
    stderr
}

#[test]
fn a_references_only_scenario_writes_metrics_weights_plots_and_summary_last() {
    let dir = scratch("cli-train");
    std::fs::write(dir.join("s.json"), scenario().to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "metrics.csv",
        "learning_curve.png",
        "learning_curve.svg",
        "summary.json",
        "weights_bp.json",
        "weights_dtp1_iterated.json",
    ] {
        assert!(dir.join("run").join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(dir.join("run/metrics.csv")).unwrap();
    // the one metrics format of every run: no continuous rows without an engine
    assert!(csv.starts_with("model,trial,examples,epoch,test_examples,time,train_loss,test_loss,test_mse,test_accuracy,reconstruction,alpha_1,alpha_2,update_cosine,update_cosine_1,update_cosine_2,update_cosine_3,update_step_1,update_step_2,update_step_3,w_norm_1,w_norm_2,w_norm_3,wall_seconds"));
    assert_eq!(csv.lines().count(), 1 + 4 * 3);
    assert!(!csv.contains("\ncontinuous,"));
    assert!(!dir.join("run/traces.csv").exists());
    // the saved weights load back as the starting point of a new run
    let mut s = scenario();
    s["network"]["weights"] = "run/weights_bp.json".into();
    std::fs::write(dir.join("resume.json"), s.to_string()).unwrap();
    let out = dtpsim(&["run", "resume.json", "--out", "run2", "--quiet"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_weights_files_are_reported_by_name() {
    let dir = scratch("cli-weights");
    std::fs::write(dir.join("s.json"), scenario().to_string()).unwrap();
    assert!(dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir)
        .status
        .success());
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/weights_bp.json")).unwrap())
            .unwrap();

    let mut wrong_shape = good.clone();
    wrong_shape["encoders"][1].as_array_mut().unwrap().pop();
    let mut non_finite = good.clone();
    non_finite["decoders"][0][3][5] = serde_json::Value::Null;
    let cases = [
        (
            "shape.json",
            wrong_shape.to_string(),
            vec![
                "network.weights",
                "shape.json",
                "encoders[1]",
                "19x21, expected 20x21",
            ],
        ),
        (
            "nan.json",
            non_finite.to_string(),
            vec!["decoders[0][3][5]", "not finite"],
        ),
        (
            "truncated.json",
            good.to_string()[..200].to_string(),
            vec!["truncated.json", "not valid JSON"],
        ),
    ];
    for (name, text, needles) in cases {
        std::fs::write(dir.join(name), text).unwrap();
        let mut s = scenario();
        s["network"]["weights"] = name.into();
        std::fs::write(dir.join("s2.json"), s.to_string()).unwrap();
        let out = dtpsim(&["run", "s2.json", "--out", "bad", "--quiet"], &dir);
        expect_clean_error(&out, &needles);
        assert!(
            !dir.join("bad").exists(),
            "nothing is written for invalid input"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_scenarios_name_the_field_and_the_fix() {
    let dir = scratch("cli-scenario");
    let mut zero_width = scenario();
    zero_width["network"]["widths"][1] = 0.into();
    let mut unknown = scenario();
    unknown["references"][2]["relaxation"]["sweeps"] = 3.into();
    let mut wrong_type = scenario();
    wrong_type["schedule"]["trials"] = "many".into();
    let mut negative = scenario();
    negative["references"][1]["beta"] = (-0.1).into();
    let mut old_dialect = scenario();
    old_dialect["examples"] = 200.into();
    let mut traces_without_engine = scenario();
    traces_without_engine["traces"] = serde_json::json!({"interval": 0.5});
    let mut mismatch = scenario();
    mismatch["network"]["widths"] = serde_json::json!([20, 20, 5]);
    let cases = [
        (
            zero_width,
            vec!["network.widths[1]: must be in 1..=1000000, got 0"],
        ),
        (
            unknown,
            vec![
                "references[2]",
                "unknown field `sweeps`, expected one of `scheme`",
            ],
        ),
        (wrong_type, vec!["schedule.trials", "invalid type"]),
        (negative, vec!["references[1].beta", "> 0"]),
        (old_dialect, vec!["unknown field `examples`"]),
        (
            traces_without_engine,
            vec!["traces: samples the continuous engine, but \"engine\" is null"],
        ),
        (
            mismatch,
            vec!["network.widths[2]", "task's outputs have 20"],
        ),
    ];
    for (i, (value, needles)) in cases.into_iter().enumerate() {
        let name = format!("bad{i}.json");
        std::fs::write(dir.join(&name), value.to_string()).unwrap();
        let out = dtpsim(&["run", &name, "--out", "bad", "--quiet"], &dir);
        expect_clean_error(&out, &needles);
        assert!(!dir.join("bad").exists());
    }
    let out = dtpsim(&["run", "missing.json", "--quiet"], &dir);
    expect_clean_error(&out, &["missing.json", "cannot read"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverging_algorithm_exits_1_and_keeps_everything_written() {
    let dir = scratch("cli-diverge");
    let mut s = scenario();
    s["references"][0]["lr"] = 50.0.into();
    std::fs::write(dir.join("s.json"), s.to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bp: ") && stderr.contains("lower the learning rate"),
        "{stderr}"
    );
    let summary = std::fs::read_to_string(dir.join("run/summary.json")).unwrap();
    assert!(summary.contains("lower the learning rate"));
    assert!(dir.join("run/weights_dtp1_iterated.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sizes are checked before anything is allocated: each case is refused in well under a
/// second, with exit 2, the field and the flag that raises the limit.
#[test]
fn oversized_runs_are_refused_before_allocating() {
    let dir = scratch("cli-sizes");
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/quickstart.json");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "check",
                quickstart,
                "--set",
                "network.widths=[10,40000,40000,10]",
            ],
            vec!["network.widths", "GiB of memory", "--max-memory"],
        ),
        (
            vec![
                "run",
                quickstart,
                "--set",
                "schedule.batch=1000000",
                "--out",
                "big",
            ],
            vec!["schedule.batch", "--max-memory"],
        ),
        (
            vec!["check", quickstart, "--set", "data.train=1000000000"],
            vec!["data.train", "--max-memory"],
        ),
        (
            vec!["check", quickstart, "--set", "schedule.trials=100000000000"],
            vec!["schedule.trials", "--max-hours"],
        ),
        (
            vec!["check", quickstart, "--set", "engine.dynamics.leak=1e6"],
            vec!["engine.dynamics.leak: must be in [0, 1000], got 1e6"],
        ),
        (
            vec!["check", quickstart, "--max-memory", "0.00001"],
            vec!["--max-memory"],
        ),
        (
            vec![
                "sweep", quickstart, "--param", "seed=1,2", "--jobs", "100000", "--out", "sw",
            ],
            vec!["--jobs", "at most"],
        ),
        (
            vec!["bench", "--widths", "10,1", "--out", "b"],
            vec!["--widths", "at least 2"],
        ),
    ];
    for (args, needles) in cases {
        let start = std::time::Instant::now();
        let out = dtpsim(&args, &dir);
        let err = expect_clean_error(&out, &needles);
        assert!(start.elapsed().as_secs_f64() < 5.0, "{args:?}: {err}");
    }
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing is written"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Metrics are on disk while a run goes, and Ctrl-C (SIGINT) stops it at a trial boundary
/// with a consistent, marked folder: exit 130, `summary.json` status `interrupted`, complete
/// CSVs, no partial files.
#[test]
fn an_interrupted_run_keeps_a_consistent_marked_folder() {
    let dir = scratch("cli-sigint");
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/quickstart.json");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dtpsim"))
        .args([
            "run",
            quickstart,
            "--set",
            "schedule.trials=1000000",
            "--set",
            "schedule.eval_every=20",
            "--set",
            "schedule.warmup_trials=10",
            "--set",
            "traces.start_trial=0",
            "--out",
            "run",
            "--quiet",
            "--max-hours",
            "1000",
        ])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until some evaluations are on disk
    let partial = dir.join("run/metrics.csv.partial");
    let start = std::time::Instant::now();
    loop {
        // the engine's own evaluations (the references are faster): learning, and traced
        let lines = std::fs::read_to_string(&partial).map_or(0, |t| {
            t.lines().filter(|l| l.starts_with("continuous,")).count()
        });
        if lines >= 2 {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "no metrics on disk after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(130), "{err}");
    let run = dir.join("run");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "interrupted");
    assert_eq!(summary["continuous"]["status"], "interrupted");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(metrics.lines().count() >= 4, "{metrics}");
    assert!(run.join("traces.csv").exists() && run.join("learning_curve.png").exists());
    let partials: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
