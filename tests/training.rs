//! Discrete training: every algorithm learns, runs are reproducible, classification works.

use dtpsim::data::Task;
use dtpsim::discrete::targets::{Order, Relaxation, Scheme};
use dtpsim::discrete::train::{
    train_one, Algorithm, DecoderTraining, NamedAlgorithm, Optimizer, TrainConfig,
};

fn small_config() -> TrainConfig {
    let mut cfg = TrainConfig {
        task: Task::TeacherStudent {
            widths: vec![8, 8, 8, 8],
            activation: dtpsim::Activation::Tanh,
            gain: 1.5,
        },
        train_size: 1000,
        test_size: 200,
        examples: 1500,
        eval_every: 500,
        warmup: 300,
        ..TrainConfig::default()
    };
    cfg.network.widths = vec![8, 8, 8, 8];
    cfg
}

#[test]
fn every_algorithm_reduces_the_test_loss() {
    let mut cfg = small_config();
    cfg.algorithms.push(NamedAlgorithm {
        name: "adam".into(),
        algorithm: Algorithm::Bp {
            optimizer: Optimizer::Adam,
            lr: 0.003,
        },
    });
    cfg.algorithms.push(NamedAlgorithm {
        name: "dtp1_input_influence".into(),
        algorithm: Algorithm::Dtp1 {
            beta: 0.1,
            eta: 0.3,
            relaxation: Relaxation {
                scheme: Scheme::DecoderInput,
                order: Order::Sequential,
                iterations: 2,
                leak: 0.0,
                tolerance: 0.0,
            },
            influence: true,
            decoder: DecoderTraining {
                rate: 0.05,
                noise: 0.1,
            },
        },
    });
    cfg.validate().unwrap();
    let data = cfg
        .task
        .generate(cfg.train_size, cfg.test_size, cfg.seed)
        .unwrap();
    for named in &cfg.algorithms {
        let out = train_one(&cfg, named, &data, &|_| {}).unwrap();
        assert!(out.error.is_none(), "{:?}", out.error);
        let (first, last) = (out.rows.first().unwrap(), out.rows.last().unwrap());
        assert_eq!(last.examples, cfg.examples);
        assert!(
            last.test_loss < 0.6 * first.test_loss,
            "{}: {} → {}",
            named.name,
            first.test_loss,
            last.test_loss
        );
        // mse per output unit is 2·loss/n_L for the ½‖·‖² loss
        assert!((last.test_mse - 2.0 * last.test_loss / 8.0).abs() < 1e-12);
    }
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let cfg = small_config();
    let data = cfg
        .task
        .generate(cfg.train_size, cfg.test_size, cfg.seed)
        .unwrap();
    let a = train_one(&cfg, &cfg.algorithms[3], &data, &|_| {}).unwrap();
    let b = train_one(&cfg, &cfg.algorithms[3], &data, &|_| {}).unwrap();
    assert_eq!(a.network, b.network);
    let mut other = cfg.clone();
    other.seed = 99;
    let c = train_one(&other, &other.algorithms[3], &data, &|_| {}).unwrap();
    assert_ne!(a.network, c.network);
}

#[test]
fn bp_learns_cluster_classification_with_softmax_cross_entropy() {
    let mut cfg = small_config();
    cfg.task = Task::Clusters {
        dim: 6,
        classes: 3,
        separation: 2.0,
    };
    cfg.network.widths = vec![6, 10, 3];
    cfg.examples = 2000;
    cfg.algorithms.truncate(1);
    cfg.validate().unwrap();
    let data = cfg
        .task
        .generate(cfg.train_size, cfg.test_size, cfg.seed)
        .unwrap();
    let out = train_one(&cfg, &cfg.algorithms[0], &data, &|_| {}).unwrap();
    let last = out.rows.last().unwrap();
    assert!(last.test_accuracy > 0.9, "accuracy {}", last.test_accuracy);
}

#[test]
fn a_diverging_run_stops_with_an_error_and_keeps_its_rows() {
    let mut cfg = small_config();
    cfg.algorithms = vec![NamedAlgorithm {
        name: "too_fast".into(),
        algorithm: Algorithm::Bp {
            optimizer: Optimizer::Sgd,
            lr: 50.0,
        },
    }];
    let data = cfg
        .task
        .generate(cfg.train_size, cfg.test_size, cfg.seed)
        .unwrap();
    let out = train_one(&cfg, &cfg.algorithms[0], &data, &|_| {}).unwrap();
    let err = out.error.expect("diverges");
    assert!(
        err.contains("too_fast") && err.contains("learning rate"),
        "{err}"
    );
    assert!(!out.rows.is_empty());
    assert!(out
        .rows
        .iter()
        .all(|r| r.test_loss.is_finite() || r.examples > 0));
}
