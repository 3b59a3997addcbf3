//! The schedule every model follows (docs/MODEL.md §6, Protocol): epochs, evaluation on a
//! fixed test subset between epoch ends and on the whole test set at them, and one example
//! order for the continuous engine and the references.

mod common;

use common::{dtpsim, scratch, stderr};
use dtpsim::scenario::parse_scenario;

/// Reads a metrics.csv into (header, rows of cells).
fn metrics(dir: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

/// A small scenario with a frozen BP reference (lr 0) and a frozen continuous engine (η 0):
/// every change of their test loss comes from the examples it is measured on.
fn frozen_scenario() -> String {
    serde_json::json!({
        "name": "frozen",
        "seed": 5,
        "task": {"kind": "teacher_student", "widths": [4, 5, 3], "activation": "tanh", "gain": 1.0},
        "data": {"train": 30, "test": 40},
        "network": {"widths": [4, 5, 3]},
        "schedule": {"epochs": 2, "warmup_trials": 0, "batch": 4, "eval_every": 3, "eval_examples": 10},
        "engine": {"dynamics": {"plasticity": {"eta": 0.0}, "decoder": {"eta": 0.0}},
                   "protocol": {"t_stim": 2, "t_on": 1}},
        "references": [{"name": "bp", "kind": "bp", "lr": 0.0}],
        "traces": {"interval": 0}
    })
    .to_string()
}

#[test]
fn epochs_set_the_trials_and_epoch_ends_are_evaluated_on_the_whole_test_set() {
    let dir = scratch("schedule-epochs");
    std::fs::write(dir.join("s.json"), frozen_scenario()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "out", "--quiet"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let (header, rows) = metrics(&dir.join("out"));
    let (model, trial, examples, epoch, n_test, loss) = (
        column(&header, "model"),
        column(&header, "trial"),
        column(&header, "examples"),
        column(&header, "epoch"),
        column(&header, "test_examples"),
        column(&header, "test_loss"),
    );
    for name in ["bp", "continuous"] {
        let mine: Vec<&Vec<String>> = rows.iter().filter(|r| r[model] == name).collect();
        // 2 epochs of 30 examples in batches of 4: ⌈60/4⌉ = 15 trials
        let trials: Vec<usize> = mine.iter().map(|r| r[trial].parse().unwrap()).collect();
        // every 3 trials, and at the epoch ends: after trial 8 (32 ≥ 30 examples) and 15
        assert_eq!(trials, vec![0, 3, 6, 8, 9, 12, 15], "{name}");
        for r in &mine {
            let t: usize = r[trial].parse().unwrap();
            assert_eq!(r[examples].parse::<usize>().unwrap(), 4 * t);
            let e: f64 = r[epoch].parse().unwrap();
            assert!(
                (e - 4.0 * t as f64 / 30.0).abs() < 1e-12,
                "{name}: epoch {e}"
            );
            let full = t == 0 || t == 8 || t == 15;
            assert_eq!(
                r[n_test],
                if full { "40" } else { "10" },
                "{name} trial {t}"
            );
        }
        // frozen weights: the same subset every time, and it is not the whole set
        let of = |size: &str| -> Vec<&str> {
            mine.iter()
                .filter(|r| r[n_test] == size)
                .map(|r| r[loss].as_str())
                .collect()
        };
        let (subset, whole) = (of("10"), of("40"));
        assert!(
            subset.windows(2).all(|w| w[0] == w[1]),
            "{name}: {subset:?}"
        );
        assert!(whole.windows(2).all(|w| w[0] == w[1]), "{name}: {whole:?}");
        assert_ne!(subset[0], whole[0]);
    }
    // one example order: the frozen engine and the frozen reference saw the same examples
    let train = column(&header, "train_loss");
    let of = |name: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r[model] == name)
            .map(|r| r[train].parse().unwrap())
            .collect()
    };
    let (bp, continuous) = (of("bp"), of("continuous"));
    assert_eq!(bp.len(), continuous.len());
    for (a, b) in bp.iter().zip(&continuous) {
        // the same examples; a mini-batch and one-at-a-time forward pass round differently
        assert!(
            (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * a.abs(),
            "{bp:?} vs {continuous:?}"
        );
    }
}

#[test]
fn epochs_and_trials_are_alternatives() {
    let both = frozen_scenario().replace("\"epochs\":2", "\"epochs\":2,\"trials\":7");
    let err = parse_scenario(&both, &[]).unwrap_err().to_string();
    assert!(err.contains("trials and epochs are both given"), "{err}");
    // a --set of one replaces the other one in the file
    let s = parse_scenario(&frozen_scenario(), &["schedule.trials=7".into()]).unwrap();
    assert_eq!((s.schedule.trials, s.schedule.epochs), (7, None));
    let with_trials = frozen_scenario().replace("\"epochs\":2", "\"trials\":7");
    let s = parse_scenario(&with_trials, &["schedule.epochs=3".into()]).unwrap();
    assert_eq!(s.schedule.epochs, Some(3));
    let resolved = s.for_training_set(30).unwrap();
    assert_eq!(resolved.schedule.trials, 23, "⌈3 · 30 / 4⌉");
    // written back, the resolved scenario reads again (epochs, not both)
    let text = serde_json::to_string(&resolved).unwrap();
    assert_eq!(parse_scenario(&text, &[]).unwrap().schedule.epochs, Some(3));
    for bad in ["schedule.epochs=0", "schedule.eval_examples=0"] {
        let err = parse_scenario(&frozen_scenario(), &[bad.into()])
            .and_then(|s| s.validate().map(|_| s))
            .unwrap_err()
            .to_string();
        assert!(err.contains(bad.split('=').next().unwrap()), "{bad}: {err}");
    }
}

/// Without a terminal (a log file, a batch job) progress bars are hidden, and every
/// evaluation is one line on standard error: as many lines per model as metrics.csv rows.
#[test]
fn without_a_terminal_each_evaluation_is_a_log_line() {
    let dir = scratch("schedule-log-lines");
    std::fs::write(dir.join("s.json"), frozen_scenario()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "out"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let (header, rows) = metrics(&dir.join("out"));
    let model = column(&header, "model");
    for name in ["bp", "continuous"] {
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with(&format!("{name}: trial ")))
            .collect();
        let evaluations = rows.iter().filter(|r| r[model] == name).count();
        assert_eq!(lines.len(), evaluations, "{name}:\n{err}");
        assert!(
            lines.last().unwrap().contains("trial 15/15"),
            "{name}: {lines:?}"
        );
    }
    // --quiet silences them
    let quiet = dtpsim(&["run", "s.json", "--out", "out2", "--quiet"], &dir);
    assert!(!stderr(&quiet).contains(": trial "), "{}", stderr(&quiet));
}
