//! Results do not depend on the thread count (docs/MODEL.md §9): a run whose products and
//! weight passes are large enough to be split over threads (`B = 16`, widths 300-300-300-10)
//! writes bit-identical weights, metrics and traces with `--threads 1` and `--threads 2`.
//! The tolerance is zero: no split ever changes the order in which an entry is summed.

mod common;

use common::{dtpsim, scratch};

const SCENARIO: &str = r#"{
  "name": "threads",
  "seed": 3,
  "task": {"kind": "teacher_student", "widths": [300, 300, 300, 10], "activation": "tanh", "gain": 1.0},
  "data": {"train": 64, "test": 20},
  "network": {"widths": [300, 300, 300, 10], "activation": "tanh"},
  "schedule": {"trials": 2, "warmup_trials": 1, "eval_every": 1, "batch": 16},
  "engine": {"protocol": {"t_stim": 4, "t_on": 1}},
  "references": [],
  "traces": {"interval": 0.5, "trials": 1}
}"#;

/// The CSV without its last column (`wall_seconds`, a timing).
fn without_timing(csv: &str) -> String {
    csv.lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn one_and_two_threads_give_identical_results() {
    let dir = scratch("threads");
    std::fs::write(dir.join("threads.json"), SCENARIO).unwrap();
    for (threads, out) in [("1", "one"), ("2", "two")] {
        let o = dtpsim(
            &[
                "run",
                "threads.json",
                "--out",
                out,
                "--threads",
                threads,
                "--quiet",
            ],
            &dir,
        );
        assert!(o.status.success(), "{}", common::stderr(&o));
    }
    let read = |run: &str, file: &str| std::fs::read_to_string(dir.join(run).join(file)).unwrap();
    assert_eq!(
        read("one", "weights_continuous.json"),
        read("two", "weights_continuous.json")
    );
    assert_eq!(read("one", "traces.csv"), read("two", "traces.csv"));
    assert_eq!(
        without_timing(&read("one", "metrics.csv")),
        without_timing(&read("two", "metrics.csv"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
