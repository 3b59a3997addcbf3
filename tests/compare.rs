//! `dtpsim compare`: several runs' whole-test-set evaluations side by side.

mod common;

use common::{dtpsim, scratch, stderr};

/// A discrete-only classification run: 2 epochs of 30 examples in batches of 4, evaluated
/// every 3 trials on 10 test examples and on all 40 at the epoch ends (trials 0, 8 and 15).
fn scenario(lr: f64) -> String {
    serde_json::json!({
        "name": "cmp",
        "seed": 3,
        "task": {"kind": "clusters", "dim": 4, "classes": 3, "separation": 2.0},
        "data": {"train": 30, "test": 40},
        "network": {"widths": [4, 6, 3]},
        "schedule": {"epochs": 2, "warmup_trials": 0, "batch": 4, "eval_every": 3, "eval_examples": 10},
        "engine": null,
        "references": [
            {"name": "bp", "kind": "bp", "lr": lr},
            {"name": "dtp", "kind": "dtp", "beta": 0.1, "lr": lr}
        ],
        "outputs": {"plots": false}
    })
    .to_string()
}

/// A scratch folder `name` with the runs `run_a` (lr 0.05) and `run_b` (lr 0.2).
fn two_runs(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("a.json"), scenario(0.05)).unwrap();
    std::fs::write(dir.join("b.json"), scenario(0.2)).unwrap();
    for (file, out) in [("a.json", "run_a"), ("b.json", "run_b")] {
        let o = dtpsim(&["run", file, "--out", out, "--quiet"], &dir);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    dir
}

fn rows(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn compare_keeps_the_whole_test_set_rows_and_labels_clashing_models_by_run() {
    let dir = two_runs("compare");
    let o = dtpsim(&["compare", "run_a", "run_b", "--out", "cmp"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    // the same model names in both runs: labelled run/model
    for label in ["run_a/bp", "run_a/dtp", "run_b/bp", "run_b/dtp"] {
        assert!(table.contains(&format!("| {label} |")), "{table}");
    }
    assert!(dir.join("cmp/accuracy_vs_examples.png").exists());

    // epochs.csv: exactly the rows of metrics.csv evaluated on all 40 test examples
    let epochs = rows(&dir.join("cmp/epochs.csv"));
    let h = &epochs[0];
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    for run in ["run_a", "run_b"] {
        let metrics = rows(&dir.join(run).join("metrics.csv"));
        let mh = &metrics[0];
        let mcol = |name: &str| mh.iter().position(|c| c == name).unwrap();
        for model in ["bp", "dtp"] {
            let full: Vec<(&str, &str)> = metrics[1..]
                .iter()
                .filter(|r| r[mcol("model")] == model && r[mcol("test_examples")] == "40")
                .map(|r| {
                    (
                        r[mcol("examples")].as_str(),
                        r[mcol("test_accuracy")].as_str(),
                    )
                })
                .collect();
            assert_eq!(full.len(), 3, "{run} {model}: trials 0, 8 and 15");
            let kept: Vec<(f64, f64)> = epochs[1..]
                .iter()
                .filter(|r| r[col("run")] == run && r[col("model")] == model)
                .map(|r| {
                    (
                        r[col("examples")].parse().unwrap(),
                        r[col("test_accuracy")].parse().unwrap(),
                    )
                })
                .collect();
            let want: Vec<(f64, f64)> = full
                .iter()
                .map(|(e, a)| (e.parse().unwrap(), a.parse().unwrap()))
                .collect();
            assert_eq!(kept, want, "{run} {model}");
        }
    }

    // compare.csv: final and best accuracy are those of the kept rows
    let summary = rows(&dir.join("cmp/compare.csv"));
    let sh = &summary[0];
    let scol = |name: &str| sh.iter().position(|c| c == name).unwrap();
    for r in &summary[1..] {
        let kept: Vec<f64> = epochs[1..]
            .iter()
            .filter(|e| e[col("run")] == r[scol("run")] && e[col("model")] == r[scol("model")])
            .map(|e| e[col("test_accuracy")].parse().unwrap())
            .collect();
        let best = kept.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(
            r[scol("final_test_accuracy")].parse::<f64>().unwrap(),
            *kept.last().unwrap()
        );
        assert_eq!(r[scol("best_test_accuracy")].parse::<f64>().unwrap(), best);
        assert_eq!(r[scol("status")], "complete");
        assert_eq!(r[scol("epochs")].parse::<f64>().unwrap(), 2.0);
    }
}

#[test]
fn compare_names_a_folder_without_metrics_and_writes_nothing() {
    let dir = scratch("compare-missing");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let o = dtpsim(&["compare", "empty", "--out", "cmp"], &dir);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("empty") && err.contains("metrics.csv"),
        "{err}"
    );
    assert!(!dir.join("cmp").exists(), "nothing is written");
}

#[test]
fn compare_refuses_a_run_given_twice() {
    let dir = scratch("compare-twice");
    std::fs::write(dir.join("a.json"), scenario(0.05)).unwrap();
    let o = dtpsim(&["run", "a.json", "--out", "run_a", "--quiet"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dtpsim(&["compare", "run_a", "./run_a", "--out", "cmp"], &dir);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("given twice"), "{}", stderr(&o));
    assert!(!dir.join("cmp").exists(), "nothing is written");
}

#[test]
fn an_earlier_comparison_stands_in_for_its_runs_and_a_run_folder_replaces_its_rows() {
    let dir = two_runs("compare-from-file");
    let o = dtpsim(&["compare", "run_a", "run_b", "--out", "cmp"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();

    // read back alone, the comparison is written again byte for byte
    let o = dtpsim(&["compare", "cmp/epochs.csv", "--out", "again"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read("again/epochs.csv"), read("cmp/epochs.csv"));
    assert_eq!(read("again/compare.csv"), read("cmp/compare.csv"));

    // an older snapshot: run_b's last evaluation missing and run_b in progress
    std::fs::create_dir_all(dir.join("old")).unwrap();
    let epochs = read("cmp/epochs.csv");
    let last_b: Vec<&str> = ["bp", "dtp"]
        .iter()
        .map(|m| {
            epochs
                .lines()
                .rfind(|l| l.starts_with(&format!("run_b,{m},")))
                .unwrap()
        })
        .collect();
    let older: String = epochs
        .lines()
        .filter(|l| !last_b.contains(l))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("old/epochs.csv"), &older).unwrap();
    let summary = read("cmp/compare.csv").replace(",complete,", ",in progress,");
    let summary: String = summary
        .lines()
        .map(|l| {
            if l.starts_with("run_a,") {
                l.replace(",in progress,", ",complete,")
            } else {
                l.to_string()
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("old/compare.csv"), summary).unwrap();
    let o = dtpsim(&["compare", "old/epochs.csv", "--out", "stale"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("| run_b/dtp (in progress) |"));

    // the run folder replaces its curves in the file's place, given after or before the file
    for args in [["old/epochs.csv", "run_b"], ["run_b", "old/epochs.csv"]] {
        let o = dtpsim(&["compare", args[0], args[1], "--out", "updated"], &dir);
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("run_b/bp") && err.contains("run_b/dtp") && !err.contains("run_a"),
            "{err}"
        );
        assert_eq!(
            read("updated/epochs.csv"),
            read("cmp/epochs.csv"),
            "{args:?}"
        );
        assert_eq!(
            read("updated/compare.csv"),
            read("cmp/compare.csv"),
            "{args:?}"
        );
    }

    // the same run in two files, or a file without its compare.csv, is refused
    let o = dtpsim(&["compare", "cmp/epochs.csv", "old/epochs.csv"], &dir);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("another epochs.csv"), "{}", stderr(&o));
    std::fs::create_dir_all(dir.join("lone")).unwrap();
    std::fs::write(dir.join("lone/epochs.csv"), &older).unwrap();
    let o = dtpsim(&["compare", "lone/epochs.csv", "--out", "nothing"], &dir);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("lone/compare.csv"), "{err}");
    assert!(!dir.join("nothing").exists(), "nothing is written");
}
