//! Discrete training: every algorithm learns, runs are reproducible, classification works, and
//! the mini-batched trainer equals a per-example reference.

mod per_example;

use dtpsim::data::{Dataset, Task};
use dtpsim::discrete::targets::{Order, Relaxation, Scheme};
use dtpsim::discrete::train::{
    train_one, Algorithm, DecoderLoss, DecoderTraining, NamedAlgorithm, Optimizer,
};
use dtpsim::network::PerLayer;
use dtpsim::scenario::Scenario;
use dtpsim::Activation;
use nalgebra::DMatrix;

/// BP, DTP, DTP1 with difference targets, DTP1 with iterated decoder_output targets.
fn four_references() -> Vec<NamedAlgorithm> {
    let named = |name: &str, algorithm| NamedAlgorithm {
        lr_schedule: Default::default(),
        adam: None,
        name: name.into(),
        algorithm,
    };
    let dtp1 = |relaxation| Algorithm::Dtp1 {
        beta: 0.1,
        eta: 0.3.into(),
        optimizer: Optimizer::Sgd,
        relaxation,
        influence: false,
        decoder: DecoderTraining::default(),
    };
    vec![
        named(
            "bp",
            Algorithm::Bp {
                optimizer: Optimizer::Sgd,
                lr: 0.01.into(),
            },
        ),
        named(
            "dtp",
            Algorithm::Dtp {
                beta: 0.1,
                lr: 0.02.into(),
                optimizer: Optimizer::Sgd,
                decoder: DecoderTraining::default(),
            },
        ),
        named("dtp1_difference", dtp1(Relaxation::difference())),
        named(
            "dtp1_iterated",
            dtp1(Relaxation {
                scheme: Scheme::DecoderOutput,
                order: Order::Parallel,
                iterations: 20,
                leak: 0.5,
                tolerance: 0.0,
            }),
        ),
    ]
}

/// A references-only scenario on an 8-8-8-8 teacher–student task.
fn small_config() -> Scenario {
    let mut cfg = Scenario {
        task: Task::TeacherStudent {
            widths: vec![8, 8, 8, 8],
            activation: dtpsim::Activation::Tanh,
            gain: 1.5,
        },
        engine: None,
        references: four_references(),
        ..Scenario::default()
    };
    cfg.schedule.trials = 1500;
    cfg.schedule.warmup_trials = 300;
    cfg.schedule.batch = 1;
    cfg.schedule.eval_every = 500;
    cfg.data.train = Some(1000);
    cfg.data.test = Some(200);
    cfg.network.widths = vec![8, 8, 8, 8];
    cfg
}

fn data(cfg: &Scenario) -> Dataset {
    dtpsim::runner::dataset(cfg).unwrap()
}

#[test]
fn every_algorithm_reduces_the_test_loss() {
    let mut cfg = small_config();
    cfg.references.push(NamedAlgorithm {
        lr_schedule: Default::default(),
        adam: None,
        name: "adam".into(),
        algorithm: Algorithm::Bp {
            optimizer: Optimizer::Adam,
            lr: 0.003.into(),
        },
    });
    cfg.references.push(NamedAlgorithm {
        lr_schedule: Default::default(),
        adam: None,
        name: "dtp1_input_influence".into(),
        algorithm: Algorithm::Dtp1 {
            beta: 0.1,
            eta: 0.3.into(),
            optimizer: Optimizer::Sgd,
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
                ..DecoderTraining::default()
            },
        },
    });
    cfg.validate().unwrap();
    let data = data(&cfg);
    for named in &cfg.references {
        let out = train_one(&cfg, named, &data, &|_, _| {}).unwrap();
        assert!(out.error.is_none(), "{:?}", out.error);
        let (first, last) = (out.rows.first().unwrap(), out.rows.last().unwrap());
        assert_eq!(last.trial, cfg.schedule.trials);
        assert!(
            last.test_loss < 0.6 * first.test_loss,
            "{}: {} → {}",
            named.name,
            first.test_loss,
            last.test_loss
        );
        // the contraction of the target iteration, per hidden layer: none for difference
        // targets (not iterated) and BP
        assert_eq!(last.alpha.len(), 2);
        for alpha in &last.alpha {
            match named.name.as_str() {
                "dtp1_difference" | "bp" | "dtp" | "adam" => {
                    assert!(alpha.is_nan(), "{}: {alpha}", named.name)
                }
                _ => assert!(alpha.is_finite(), "{}: {alpha}", named.name),
            }
        }
        // mse per output unit is 2·loss/n_L for the ½‖·‖² loss
        assert!((last.test_mse - 2.0 * last.test_loss / 8.0).abs() < 1e-12);
    }
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let cfg = small_config();
    let data = data(&cfg);
    let a = train_one(&cfg, &cfg.references[3], &data, &|_, _| {}).unwrap();
    let b = train_one(&cfg, &cfg.references[3], &data, &|_, _| {}).unwrap();
    assert_eq!(a.network, b.network);
    let mut other = cfg.clone();
    other.seed = 99;
    let c = train_one(&other, &other.references[3], &data, &|_, _| {}).unwrap();
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
    cfg.schedule.trials = 2000;
    cfg.references.truncate(1);
    cfg.validate().unwrap();
    let data = data(&cfg);
    let out = train_one(&cfg, &cfg.references[0], &data, &|_, _| {}).unwrap();
    let last = out.rows.last().unwrap();
    assert!(last.test_accuracy > 0.9, "accuracy {}", last.test_accuracy);
}

#[test]
fn a_diverging_run_stops_with_an_error_and_keeps_its_rows() {
    let mut cfg = small_config();
    cfg.references = vec![NamedAlgorithm {
        lr_schedule: Default::default(),
        adam: None,
        name: "too_fast".into(),
        algorithm: Algorithm::Bp {
            optimizer: Optimizer::Sgd,
            lr: 50.0.into(),
        },
    }];
    let data = data(&cfg);
    let out = train_one(&cfg, &cfg.references[0], &data, &|_, _| {}).unwrap();
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

/// Every algorithm variant the trainer offers: BP, DTP of Lee et al. and DTP1 with SGD and
/// Adam, one rate and per-layer rates; decoders trained on the regular loss (plain and
/// noisy, with and without ridge) and on the difference reconstruction loss (with and without
/// ridge); DTP1 with every scheme, order, influence setting, with and without the early stop
/// on `tolerance`.
fn every_variant() -> Vec<NamedAlgorithm> {
    let decoder = DecoderTraining {
        rate: 0.05,
        ..DecoderTraining::default()
    };
    let noisy = DecoderTraining {
        noise: 0.1,
        ..decoder
    };
    let ridged = DecoderTraining {
        ridge: 0.5,
        ..noisy
    };
    let drl = DecoderTraining {
        rate: 0.3,
        noise: 0.2,
        loss: DecoderLoss::DifferenceReconstruction,
        ridge: 0.0,
    };
    let drl_ridge = DecoderTraining { ridge: 0.1, ..drl };
    let named = |name: String, algorithm| NamedAlgorithm {
        lr_schedule: Default::default(),
        adam: None,
        name,
        algorithm,
    };
    let mut out = Vec::new();
    for optimizer in [Optimizer::Sgd, Optimizer::Adam] {
        let (one, each) = match optimizer {
            Optimizer::Sgd => (0.05, vec![0.05, 0.02, 0.08]),
            Optimizer::Adam => (0.01, vec![0.01, 0.003, 0.02]),
        };
        for lr in [one.into(), PerLayer::Each(each)] {
            let list = matches!(lr, PerLayer::Each(_));
            out.push(named(
                format!("bp_{optimizer:?}_list{list}"),
                Algorithm::Bp {
                    optimizer,
                    lr: lr.clone(),
                },
            ));
            for dec in [decoder, noisy, ridged, drl, drl_ridge] {
                out.push(named(
                    format!(
                        "dtp_{optimizer:?}_list{list}_{:?}_noise{}_ridge{}",
                        dec.loss,
                        dec.noise > 0.0,
                        dec.ridge > 0.0
                    ),
                    Algorithm::Dtp {
                        beta: 0.1,
                        lr: lr.clone(),
                        optimizer,
                        decoder: dec,
                    },
                ));
            }
        }
    }
    let scheme_orders = [
        (Scheme::Difference, Order::Sequential),
        (Scheme::DecoderOutput, Order::Sequential),
        (Scheme::DecoderOutput, Order::Parallel),
        (Scheme::DecoderInput, Order::Sequential),
        (Scheme::DecoderInput, Order::Parallel),
    ];
    for (scheme, order) in scheme_orders {
        for influence in [false, true] {
            for tolerance in [0.0, EARLY_STOP] {
                if scheme == Scheme::Difference && tolerance > 0.0 {
                    continue;
                }
                let relaxation = Relaxation {
                    scheme,
                    order,
                    iterations: 6,
                    leak: if influence { 0.0 } else { 0.3 },
                    tolerance,
                };
                out.push(named(
                    format!(
                        "dtp1_{scheme:?}_{order:?}_influence{influence}_stop{}",
                        tolerance > 0.0
                    ),
                    Algorithm::Dtp1 {
                        beta: 0.1,
                        eta: 0.5.into(),
                        optimizer: Optimizer::Sgd,
                        relaxation,
                        influence,
                        decoder: if influence { noisy } else { decoder },
                    },
                ));
            }
        }
        // per-layer rates, Adam, difference-reconstruction decoders
        let relaxation = Relaxation {
            scheme,
            order,
            iterations: 6,
            leak: 0.3,
            tolerance: 0.0,
        };
        for (optimizer, eta) in [
            (Optimizer::Sgd, vec![0.5, 0.2, 0.8]),
            (Optimizer::Adam, vec![0.01, 0.003, 0.02]),
        ] {
            for (dec, influence) in [(drl, false), (drl_ridge, true)] {
                out.push(named(
                    format!(
                        "dtp1_{scheme:?}_{order:?}_{optimizer:?}_ridge{}_influence{influence}",
                        dec.ridge > 0.0
                    ),
                    Algorithm::Dtp1 {
                        beta: 0.1,
                        eta: PerLayer::Each(eta.clone()),
                        optimizer,
                        relaxation,
                        influence,
                        decoder: dec,
                    },
                ));
            }
        }
    }
    out
}

/// A tolerance at which some examples of a mini-batch stop early and others do not.
const EARLY_STOP: f64 = 5e-2;

/// Small nets: 5-7-6-3 tanh with bias (mse and softmax_ce), and softplus without bias.
fn small_nets() -> Vec<Scenario> {
    let base = |task: Task, activation: Activation, bias: bool| {
        let mut cfg = Scenario {
            task,
            seed: 5,
            engine: None,
            references: four_references(),
            ..Scenario::default()
        };
        cfg.data.train = Some(40);
        cfg.data.test = Some(10);
        cfg.schedule.warmup_trials = 6;
        cfg.network.widths = vec![5, 7, 6, 3];
        cfg.network.activation = activation;
        cfg.network.bias = bias;
        cfg
    };
    let teacher = Task::TeacherStudent {
        widths: vec![5, 7, 6, 3],
        activation: Activation::Tanh,
        gain: 1.5,
    };
    let clusters = Task::Clusters {
        dim: 5,
        classes: 3,
        separation: 2.0,
    };
    vec![
        base(teacher.clone(), Activation::Tanh, true),
        base(clusters, Activation::Tanh, true),
        base(teacher, Activation::Softplus, false),
    ]
}

/// Agreement of the batched trainer with the per-example oracle: the same arithmetic in
/// another order. Rates are per example, so at B = 8 the SGD steps are 8 examples' worth
/// (η up to 6.4 per step here) and the round-off of the two orders grows with them over the
/// 4 trials: 1e-10 relative (about 3e-12 is seen).
fn assert_close(what: &str, got: &DMatrix<f64>, want: &DMatrix<f64>) {
    let err = (got - want).amax();
    let scale = want.amax();
    assert!(
        err <= 1e-10 * scale,
        "{what}: error {err:e}, scale {scale:e}"
    );
}

fn assert_close_scalar(what: &str, got: f64, want: f64, tolerance: f64) {
    let same = (got.is_nan() && want.is_nan()) || (got - want).abs() <= tolerance * want.abs();
    assert!(same, "{what}: {got} vs {want}");
}

#[test]
fn mini_batched_training_equals_the_per_example_reference() {
    let mut mixed_stops = 0;
    for (n, net_cfg) in small_nets().into_iter().enumerate() {
        let data = data(&net_cfg);
        for batch_size in [1, 3, 8] {
            for named in every_variant() {
                let mut cfg = net_cfg.clone();
                cfg.schedule.batch = batch_size;
                cfg.schedule.trials = 4;
                cfg.schedule.eval_every = 4;
                cfg.references = vec![named.clone()];
                cfg.validate().unwrap();
                let what = format!("net {n}, B = {batch_size}, {}", named.name);
                let out = train_one(&cfg, &named, &data, &|_, _| {}).unwrap();
                let reference = per_example::train(&cfg, &named, &data);
                assert_eq!(out.error, reference.error, "{what}");
                for l in 1..=3 {
                    let (got, want) = (out.network.w(l), reference.net.w(l));
                    assert_close(&format!("{what}: W_{l}"), got, want);
                }
                for l in 2..=3 {
                    let (got, want) = (out.network.omega(l), reference.net.omega(l));
                    assert_close(&format!("{what}: Ω_{l}"), got, want);
                }
                let last = out.rows.last().unwrap();
                assert_eq!(last.examples, 4 * batch_size);
                assert_close_scalar(&what, last.train_loss, reference.train_loss, 1e-12);
                // α is a ratio of late increments, each a difference of decoder outputs of size
                // ‖h‖ (docs/MODEL.md §3): their rounding, ~10⁻¹⁶‖h‖, is a larger part of a
                // small increment (seen: 1.1e-12 of α where decoders trained on the difference
                // reconstruction loss make the increments fall fast)
                for (l, (got, want)) in last.alpha.iter().zip(&reference.alpha).enumerate() {
                    assert_close_scalar(&format!("{what}: α_{}", l + 1), *got, *want, 1e-10);
                }
                mixed_stops += reference
                    .steps
                    .iter()
                    .filter(|s| s.iter().min() != s.iter().max())
                    .count();
            }
        }
    }
    // the early stop is per example: some mini-batches must hold examples that stop at
    // different steps, or the tolerance variants test nothing
    assert!(
        mixed_stops >= 30,
        "{mixed_stops} mini-batches with mixed stops"
    );
}

#[test]
fn a_diverging_relaxation_is_reported_for_the_same_example_as_per_example() {
    let (mut reported, mut inside_a_batch) = (0, 0);
    for batch_size in [1, 3, 8] {
        for (scheme, order) in [
            (Scheme::DecoderOutput, Order::Sequential),
            (Scheme::DecoderOutput, Order::Parallel),
            (Scheme::DecoderInput, Order::Sequential),
            (Scheme::DecoderInput, Order::Parallel),
        ] {
            for iterations in [20, 21, 22, 60] {
                let mut cfg = small_nets().remove(0);
                // linear layers: the iteration is linear and grows as α^t (tanh bounds it);
                // near the iteration where ‖ε‖ crosses 10⁸‖ε_1‖ some examples diverge and
                // others do not
                cfg.network.activation = Activation::Linear;
                cfg.network.init = dtpsim::Init::Gaussian { gain: 2.0 };
                cfg.schedule.warmup_trials = 0;
                cfg.schedule.batch = batch_size;
                cfg.schedule.trials = 16usize.div_ceil(batch_size);
                let named = NamedAlgorithm {
                    lr_schedule: Default::default(),
                    adam: None,
                    name: "diverging".into(),
                    algorithm: Algorithm::Dtp1 {
                        beta: 1.0,
                        eta: 1.0.into(),
                        optimizer: Optimizer::Sgd,
                        relaxation: Relaxation {
                            scheme,
                            order,
                            iterations,
                            leak: 0.0,
                            tolerance: 0.0,
                        },
                        influence: false,
                        decoder: DecoderTraining {
                            rate: 0.0,
                            ..DecoderTraining::default()
                        },
                    },
                };
                let data = data(&cfg);
                let out = train_one(&cfg, &named, &data, &|_, _| {}).unwrap();
                let reference = per_example::train(&cfg, &named, &data);
                let Some(want) = reference.error else {
                    assert!(out.error.is_none(), "{:?}", out.error);
                    continue;
                };
                // example, layer and iteration agree; the norm's last digits may round apart
                let got = out.error.expect("the batched run diverges too");
                let head = |s: &str| s.split("increment norm").next().unwrap().to_string();
                assert_eq!(head(&got), head(&want), "B = {batch_size}");
                reported += 1;
                if !reference
                    .diverged_example
                    .unwrap()
                    .is_multiple_of(batch_size)
                {
                    inside_a_batch += 1;
                }
            }
        }
    }
    assert!(reported >= 12, "only {reported} runs diverged");
    assert!(
        inside_a_batch >= 2,
        "{inside_a_batch} diverged behind a batch's first example"
    );
}
