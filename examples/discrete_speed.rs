//! Times the mini-batched discrete references (docs/MODEL.md §3–§4) at MNIST scale: a
//! 784-256-256-256-10 tanh net with softmax_ce, mini-batches of 32, 60,000 examples (one
//! epoch of 60,000 synthetic cluster examples, `Task::Clusters` with 784 dimensions and 10
//! classes). Each algorithm is trained `runs` times from the same seed; the wall time of
//! `train_one` (evaluation at the start and the end included, data generation excluded) is
//! printed per run, with the median and the spread, and the final `‖W_l‖` to the last digit
//! (the same for every run and every thread count: `RAYON_NUM_THREADS=1` runs on one
//! thread).
//!
//! ```text
//! cargo run --release --example discrete_speed -- [bp|dtp1|all] [runs] [examples]
//! ```
//!
//! `bp` is SGD; `dtp1` uses iterated targets (decoder_output, parallel, 20 sweeps, leak 0.5)
//! with decoder training. `examples` is rounded down to whole mini-batches.

use dtpsim::data::Task;
use dtpsim::discrete::targets::{Order, Relaxation, Scheme};
use dtpsim::discrete::train::{train_one, Algorithm, DecoderTraining, NamedAlgorithm, Optimizer};
use dtpsim::scenario::Scenario;
use std::time::Instant;

/// A references-only scenario: `examples / 32` trials of mini-batches of 32.
fn config(examples: usize) -> Scenario {
    let trials = (examples / 32).max(1);
    let mut cfg = Scenario {
        task: Task::Clusters {
            dim: 784,
            classes: 10,
            separation: 1.0,
        },
        engine: None,
        ..Scenario::default()
    };
    cfg.schedule.trials = trials;
    cfg.schedule.warmup_trials = 0;
    cfg.schedule.batch = 32;
    cfg.schedule.eval_every = trials;
    cfg.data.train = Some(60_000);
    cfg.data.test = Some(1_000);
    cfg.network.widths = vec![784, 256, 256, 256, 10];
    cfg
}

fn algorithms() -> Vec<NamedAlgorithm> {
    vec![
        NamedAlgorithm {
            lr_schedule: Default::default(),
            adam: None,
            name: "bp".into(),
            algorithm: Algorithm::Bp {
                optimizer: Optimizer::Sgd,
                lr: 0.05.into(),
            },
        },
        NamedAlgorithm {
            lr_schedule: Default::default(),
            adam: None,
            name: "dtp1".into(),
            algorithm: Algorithm::Dtp1 {
                beta: 0.1,
                // per example: 0.3 per mini-batch of 32 (a larger rate diverges at this batch)
                eta: (0.3 / 32.0).into(),
                optimizer: Optimizer::Sgd,
                relaxation: Relaxation {
                    scheme: Scheme::DecoderOutput,
                    order: Order::Parallel,
                    iterations: 20,
                    leak: 0.5,
                    tolerance: 0.0,
                },
                influence: false,
                decoder: DecoderTraining::default(),
            },
        },
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("all", String::as_str);
    let runs: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let examples: usize = args.get(2).map_or(Ok(60_000), |s| s.parse())?;
    let mut cfg = config(examples);
    cfg.references = algorithms()
        .into_iter()
        .filter(|a| which == "all" || a.name == which)
        .collect();
    cfg.validate()?;
    let data = dtpsim::runner::dataset(&cfg)?;
    for named in &cfg.references {
        let mut seconds = Vec::new();
        for run in 1..=runs {
            let start = Instant::now();
            let out = train_one(&cfg, named, &data, &|_, _| {})?;
            seconds.push(start.elapsed().as_secs_f64());
            let last = out.rows.last().expect("rows");
            // ‖W_l‖ to the last digit: equal across runs and thread counts (RAYON_NUM_THREADS)
            println!(
                "{} run {run}: {:.2} s, test accuracy {:.3}, ‖W_l‖ {:?}, error {:?}",
                named.name,
                seconds[run - 1],
                last.test_accuracy,
                last.w_norms,
                out.error
            );
        }
        seconds.sort_by(f64::total_cmp);
        println!(
            "{}: {} examples, batch {}: median {:.2} s (min {:.2}, max {:.2}) over {runs} runs",
            named.name,
            cfg.schedule.trials * cfg.schedule.batch,
            cfg.schedule.batch,
            seconds[seconds.len() / 2],
            seconds[0],
            seconds[seconds.len() - 1]
        );
    }
    Ok(())
}
