//! Options of the discrete references (docs/MODEL.md §4): per-layer rates, Adam for every
//! algorithm, and decoders trained on the difference reconstruction loss of Meulemans et al.
//! (2020), checked against their definitions and against the contraction they are for
//! (Sec. 6.2).

use dtpsim::data::{Dataset, Task};
use dtpsim::discrete::batch::{column_matrix, BatchPass};
use dtpsim::discrete::targets::{Order, Relaxation, Scheme};
use dtpsim::discrete::train::{
    train_one, Algorithm, DecoderLoss, DecoderTraining, NamedAlgorithm, Optimizer,
};
use dtpsim::discrete::updates::{decoder_update, difference_probe};
use dtpsim::metrics::MetricsRow;
use dtpsim::network::PerLayer;
use dtpsim::scenario::{parse_scenario, Scenario};
use dtpsim::{Activation, Architecture, Init, Loss, Network};
use nalgebra::{DMatrix, DVector};

/// A references-only teacher–student scenario with `widths` for task and student.
fn scenario(widths: &[usize], trials: usize, warmup: usize) -> Scenario {
    let mut cfg = Scenario {
        task: Task::TeacherStudent {
            widths: widths.to_vec(),
            activation: Activation::Tanh,
            gain: 1.5,
        },
        engine: None,
        seed: 3,
        ..Scenario::default()
    };
    cfg.schedule.trials = trials;
    cfg.schedule.warmup_trials = warmup;
    cfg.schedule.batch = 1;
    cfg.schedule.eval_every = trials.max(1);
    cfg.data.train = Some(400);
    cfg.data.test = Some(100);
    cfg.network.widths = widths.to_vec();
    cfg
}

fn data(cfg: &Scenario) -> Dataset {
    dtpsim::runner::dataset(cfg).unwrap()
}

fn train(cfg: &Scenario, algorithm: Algorithm, data: &Dataset) -> (Network, Vec<MetricsRow>) {
    let named = NamedAlgorithm {
        lr_schedule: Default::default(),
        adam: None,
        name: "x".into(),
        algorithm,
    };
    let mut cfg = cfg.clone();
    cfg.references = vec![named.clone()];
    cfg.validate().unwrap();
    let out = train_one(&cfg, &named, data, &|_, _| {}).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    (out.network, out.rows)
}

/// BP, DTP and DTP1 (iterated targets) at `rate` with `optimizer`.
fn algorithms(rate: PerLayer, optimizer: Optimizer) -> Vec<Algorithm> {
    vec![
        Algorithm::Bp {
            optimizer,
            lr: rate.clone(),
        },
        Algorithm::Dtp {
            beta: 0.1,
            lr: rate.clone(),
            optimizer,
            decoder: DecoderTraining::default(),
        },
        Algorithm::Dtp1 {
            beta: 0.1,
            eta: rate,
            optimizer,
            relaxation: Relaxation {
                scheme: Scheme::DecoderOutput,
                order: Order::Parallel,
                iterations: 8,
                leak: 0.5,
                tolerance: 0.0,
            },
            influence: false,
            decoder: DecoderTraining::default(),
        },
    ]
}

#[test]
fn a_rate_list_with_the_same_value_everywhere_is_the_scalar_rate() {
    // one weight layer (no decoders) and three
    for widths in [vec![5, 3], vec![5, 6, 4, 3]] {
        let depth = widths.len() - 1;
        let cfg = scenario(&widths, 30, 5);
        let data = data(&cfg);
        for optimizer in [Optimizer::Sgd, Optimizer::Adam] {
            let scalar = algorithms(PerLayer::All(0.02), optimizer);
            let list = algorithms(PerLayer::Each(vec![0.02; depth]), optimizer);
            for (a, b) in scalar.into_iter().zip(list) {
                let what = format!("{widths:?} {a:?}");
                let (net_a, _) = train(&cfg, a, &data);
                let (net_b, _) = train(&cfg, b, &data);
                assert_eq!(net_a, net_b, "{what}");
            }
        }
    }
}

#[test]
fn a_zero_rate_freezes_its_layer_and_only_its_layer() {
    let cfg = scenario(&[5, 6, 4, 3], 30, 5);
    let data = data(&cfg);
    let start = cfg.initial_network().unwrap();
    for optimizer in [Optimizer::Sgd, Optimizer::Adam] {
        for algorithm in algorithms(PerLayer::Each(vec![0.02, 0.0, 0.02]), optimizer) {
            let what = format!("{algorithm:?}");
            let (net, _) = train(&cfg, algorithm, &data);
            assert_eq!(net.w(2), start.w(2), "{what}");
            assert_ne!(net.w(1), start.w(1), "{what}");
            assert_ne!(net.w(3), start.w(3), "{what}");
        }
    }
}

#[test]
fn adams_first_step_moves_every_weight_by_its_layers_rate_along_the_update() {
    // one learning trial, no warm-up: the SGD run at rate 1 gives the update u_l itself
    let cfg = scenario(&[5, 6, 4, 3], 1, 0);
    let data = data(&cfg);
    let start = cfg.initial_network().unwrap();
    let rates = vec![0.03, 0.001, 0.01];
    let units = algorithms(PerLayer::All(1.0), Optimizer::Sgd);
    let adams = algorithms(PerLayer::Each(rates.clone()), Optimizer::Adam);
    for (unit, adam) in units.into_iter().zip(adams) {
        let what = format!("{adam:?}");
        let (sgd_net, _) = train(&cfg, unit, &data);
        let (adam_net, _) = train(&cfg, adam, &data);
        let mut checked = 0;
        for l in 1..=3 {
            let u = sgd_net.w(l) - start.w(l);
            let step = adam_net.w(l) - start.w(l);
            for (ui, si) in u.iter().zip(step.iter()) {
                // m̂/(√v̂ + ε) = g/(|g| + ε) on the first step: size rate_l (up to ε/|g|)
                assert!(si.abs() <= rates[l - 1] * (1.0 + 1e-12), "{what}: {si}");
                if ui.abs() > 1e-4 {
                    let rel = (si.abs() - rates[l - 1]).abs() / rates[l - 1];
                    assert!(rel < 1e-3, "{what}: layer {l}: step {si}, u {ui}");
                    assert_eq!(si.signum(), ui.signum(), "{what}: layer {l}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "{what}: only {checked} entries checked");
    }
}

#[test]
fn invalid_rates_and_decoder_settings_name_the_field_and_the_fix() {
    let cases = [
        (
            r#"{"kind": "bp", "lr": [0.1, 0.2]}"#,
            "references[0].lr",
            "one value per weight layer W_1..W_3 (3 values) or a single number, got 2",
        ),
        (
            r#"{"kind": "dtp1", "beta": 0.1, "eta": [0.1, 0.2, 0.3, 0.4]}"#,
            "references[0].eta",
            "one value per weight layer W_1..W_3 (3 values) or a single number, got 4",
        ),
        (
            r#"{"kind": "dtp", "beta": 0.1, "lr": [0.1, -1, 0.1]}"#,
            "references[0].lr[1]",
            "must be a finite number ≥ 0, got -1",
        ),
        (
            r#"{"kind": "dtp1", "beta": 0.1, "decoder": {"loss": "difference_reconstruction"}}"#,
            "references[0].decoder.noise",
            "give the probe's standard deviation σ, e.g. 0.1",
        ),
        (
            r#"{"kind": "dtp", "beta": 0.1, "lr": 0.1, "decoder": {"ridge": -0.5}}"#,
            "references[0].decoder.ridge",
            "must be a finite number ≥ 0",
        ),
    ];
    for (reference, path, message) in cases {
        let text = format!(
            r#"{{"engine": null, "network": {{"widths": [10, 10, 10, 10]}},
                "references": [{{"name": "x", {}}}]}}"#,
            &reference[1..reference.len() - 1]
        );
        let err = parse_scenario(&text, &[]).unwrap_err();
        assert_eq!(err.path, path, "{reference}: {err}");
        assert!(err.message.contains(message), "{reference}: {err}");
    }
    // a list of the right length and both optimisers parse
    let ok = r#"{"engine": null, "network": {"widths": [10, 10, 10, 10]}, "references": [
        {"name": "a", "kind": "dtp1", "beta": 0.1, "eta": [0.1, 0.2, 0.3], "optimizer": "adam",
         "decoder": {"loss": "difference_reconstruction", "noise": 0.1, "ridge": 0.1}},
        {"name": "b", "kind": "dtp", "beta": 0.1, "lr": [0.1, 0.2, 0.3], "optimizer": "sgd"}]}"#;
    parse_scenario(ok, &[]).unwrap();
}

/// `L(Ω) = (1/2σ²)‖g_l(f_l(h_{l−1} + σξ)) − g_l(h_l) − σξ‖²`, written with the network's own
/// encoder and decoder (docs/MODEL.md §4).
fn difference_reconstruction_loss(
    net: &Network,
    l: usize,
    h_prev: &DVector<f64>,
    xi: &DVector<f64>,
    sigma: f64,
) -> f64 {
    let probe = xi * sigma;
    let h_l = net.encode(l, h_prev);
    let r = net.decode(l, &net.encode(l, &(h_prev + &probe))) - net.decode(l, &h_l) - probe;
    r.norm_squared() / (2.0 * sigma * sigma)
}

#[test]
fn the_difference_reconstruction_step_is_the_normalised_gradient_step_of_its_loss() {
    let arch = Architecture::new(&[4, 5, 6, 3], Activation::Tanh, Loss::Mse).unwrap();
    let net = Network::new(arch, Init::Gaussian { gain: 1.4 }, 7).unwrap();
    let x = DVector::from_vec(vec![0.7, -1.2, 0.3, 1.5]);
    let fwd = net.forward(&x);
    let pass = BatchPass::of_one(&fwd);
    for (l, sigma) in [(2, 0.3), (3, 0.05), (3, 1.0)] {
        let n = net.width(l - 1);
        let xi = DVector::from_fn(n, |i, _| ((i as f64 + 1.0) * 1.7).sin());
        let (probe, da) = difference_probe(&net, &pass, l, &column_matrix(&xi), sigma);
        assert_eq!(da[(net.width(l), 0)], 0.0, "the bias unit does not change");
        let rate = 0.4;
        let step = decoder_update(net.omega(l), &probe, &da, rate, 0.0);
        // ΔΩ = −rate σ²/‖Δa‖² ∂L/∂Ω, with ∂L/∂Ω by central differences of the loss
        let scale = rate * sigma * sigma / da.norm_squared();
        let loss = |omega: &DMatrix<f64>| {
            let mut m = net.clone();
            *m.omega_mut(l) = omega.clone();
            difference_reconstruction_loss(&m, l, &fwd.h[l - 1], &xi, sigma)
        };
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for i in 0..step.nrows() {
            for j in 0..step.ncols() {
                let (mut plus, mut minus) = (net.omega(l).clone(), net.omega(l).clone());
                plus[(i, j)] += h;
                minus[(i, j)] -= h;
                let grad = (loss(&plus) - loss(&minus)) / (2.0 * h);
                worst = worst.max((step[(i, j)] + scale * grad).abs());
            }
        }
        assert!(
            worst < 1e-7 * step.amax(),
            "l = {l}, σ = {sigma}: {worst:e}"
        );
        // at rate 1 the step reconstructs the probe exactly: g(f(h + σξ)) − g(h_l) = σξ
        let mut exact = net.clone();
        *exact.omega_mut(l) += decoder_update(net.omega(l), &probe, &da, 1.0, 0.0);
        let after = difference_reconstruction_loss(&exact, l, &fwd.h[l - 1], &xi, sigma);
        assert!(
            after < 1e-26,
            "l = {l}: loss {after:e} after the exact step"
        );
    }
}

/// `‖g_l′f_l′ − I‖_F` at the forward pass of `x`: how far the regular auto-encoder's Jacobian
/// is from I, the `𝓔` of the decoder-output iteration (docs/MODEL.md §3, Sec. 6.2).
fn jacobian_error(net: &Network, l: usize, x: &DVector<f64>) -> f64 {
    let fwd = net.forward(x);
    let gf = net.decoder_jacobian(l, &fwd.h[l]) * net.encoder_jacobian(l, &fwd.h[l - 1]);
    let n = gf.nrows();
    (gf - DMatrix::identity(n, n)).norm()
}

#[test]
fn difference_reconstruction_decoders_make_the_target_iteration_contract() {
    // a saturating tanh student (teacher gain 1.5), DTP1 with iterated decoder_output targets
    let cfg = {
        let mut cfg = scenario(&[8, 8, 8, 8], 2000, 300);
        cfg.schedule.eval_every = 250;
        cfg
    };
    let data = data(&cfg);
    let dtp1 = |decoder| Algorithm::Dtp1 {
        beta: 0.1,
        eta: 0.3.into(),
        optimizer: Optimizer::Sgd,
        relaxation: Relaxation {
            scheme: Scheme::DecoderOutput,
            order: Order::Parallel,
            iterations: 20,
            leak: 0.5,
            tolerance: 0.0,
        },
        influence: false,
        decoder,
    };
    let regular = DecoderTraining {
        rate: 0.05,
        ..DecoderTraining::default()
    };
    let drl = DecoderTraining {
        noise: 0.1,
        loss: DecoderLoss::DifferenceReconstruction,
        ridge: 0.1,
        ..regular
    };
    let (net_regular, rows_regular) = train(&cfg, dtp1(regular), &data);
    let (net_drl, rows_drl) = train(&cfg, dtp1(drl), &data);
    // the measured contraction α_l (metrics.csv), averaged over the evaluations of learning
    let mean_alpha = |rows: &[MetricsRow], l: usize| {
        let learning = &rows[1..];
        learning.iter().map(|r| r.alpha[l]).sum::<f64>() / learning.len() as f64
    };
    for l in 0..2 {
        let (a_reg, a_drl) = (mean_alpha(&rows_regular, l), mean_alpha(&rows_drl, l));
        assert!(
            a_drl < a_reg,
            "α_{}: difference reconstruction {a_drl} vs regular {a_reg}",
            l + 1
        );
        for r in &rows_drl[1..] {
            assert!(
                r.alpha[l] < 1.0,
                "α_{} = {} at trial {}",
                l + 1,
                r.alpha[l],
                r.trial
            );
        }
    }
    // and the auto-encoder Jacobian g_l′f_l′ is closer to I on held-out examples
    for l in 2..=3 {
        let mean_error = |net: &Network| {
            data.test
                .iter()
                .map(|ex| jacobian_error(net, l, &ex.x))
                .sum::<f64>()
                / data.test.len() as f64
        };
        let (e_reg, e_drl) = (mean_error(&net_regular), mean_error(&net_drl));
        assert!(e_drl < e_reg, "‖g_{l}′f_{l}′ − I‖_F: {e_drl} vs {e_reg}");
    }
}

/// `lr_schedule` multiplies every encoder step by its factor: with full batches (every trial
/// the same examples) and a rate so small that the gradient stays put, the weights move by
/// `Σ_t factor(t)` times one step. Cosine from 1 to 0 over `T` trials sums to `T/2 + 1/2`, and
/// exponential at `p` per epoch (one trial an epoch here) to `(1 − p^T)/(1 − p)`.
#[test]
fn lr_schedules_scale_the_total_step_by_the_sum_of_their_factors() {
    use dtpsim::discrete::train::LrSchedule;
    let trials = 10;
    let mut cfg = scenario(&[4, 6, 3], trials, 0);
    cfg.data.train = Some(16);
    cfg.schedule.batch = 16;
    let data = data(&cfg);
    let start = cfg.initial_network().unwrap();
    let moved = |schedule: LrSchedule| {
        let named = NamedAlgorithm {
            lr_schedule: schedule,
            adam: None,
            name: "bp".into(),
            algorithm: Algorithm::Bp {
                optimizer: Optimizer::Sgd,
                lr: PerLayer::All(1e-9),
            },
        };
        let mut cfg = cfg.clone();
        cfg.references = vec![named.clone()];
        cfg.validate().unwrap();
        let out = train_one(&cfg, &named, &data, &|_, _| {}).unwrap();
        (out.network.encoders()[0].clone() - start.encoders()[0].clone()).norm()
    };
    let constant = moved(LrSchedule::Constant);
    assert!(constant > 0.0);
    let cosine = moved(LrSchedule::Cosine { floor: 0.0 }) / constant;
    let want = (trials as f64 / 2.0 + 0.5) / trials as f64;
    assert!((cosine - want).abs() < 1e-6, "cosine: {cosine} vs {want}");
    let p: f64 = 0.5;
    let exponential = moved(LrSchedule::Exponential { per_epoch: p }) / constant;
    let want = (1.0 - p.powi(trials as i32)) / (1.0 - p) / trials as f64;
    assert!(
        (exponential - want).abs() < 1e-6,
        "exponential: {exponential} vs {want}"
    );
}

/// Schedules are checked like every other field.
#[test]
fn lr_schedule_values_out_of_range_name_the_field() {
    let text = |schedule: &str| {
        format!(
            r#"{{"engine": null, "references": [{{"name": "bp", "kind": "bp", "lr": 0.1, "lr_schedule": {schedule}}}]}}"#
        )
    };
    let err = parse_scenario(&text(r#"{"kind": "exponential", "per_epoch": 0}"#), &[]).unwrap_err();
    assert_eq!(err.path, "references[0].lr_schedule.per_epoch", "{err}");
    let err = parse_scenario(&text(r#"{"kind": "cosine", "floor": 1.5}"#), &[]).unwrap_err();
    assert_eq!(err.path, "references[0].lr_schedule.floor", "{err}");
    let ok = parse_scenario(&text(r#"{"kind": "cosine"}"#), &[]).unwrap();
    assert_eq!(
        ok.references[0].lr_schedule,
        dtpsim::discrete::train::LrSchedule::Cosine { floor: 0.0 }
    );
}

/// Adam with `β₁ = β₂ = 0` and a negligible `ε` steps every weight by `±lr` (`m̂/√v̂ = g/|g|`), so after
/// two trials each weight has moved by 0 or `2 lr`; the default decays do not (the second step
/// mixes the two gradients).
#[test]
fn adam_without_memory_steps_every_weight_by_its_rate() {
    use dtpsim::discrete::updates::AdamSettings;
    let mut cfg = scenario(&[4, 6, 3], 2, 0);
    cfg.schedule.batch = 8;
    let data = data(&cfg);
    let start = cfg.initial_network().unwrap();
    let lr = 1e-3;
    let moved = |adam: Option<AdamSettings>| {
        let named = NamedAlgorithm {
            lr_schedule: Default::default(),
            adam,
            name: "bp".into(),
            algorithm: Algorithm::Bp {
                optimizer: Optimizer::Adam,
                lr: PerLayer::All(lr),
            },
        };
        let mut cfg = cfg.clone();
        cfg.references = vec![named.clone()];
        cfg.validate().unwrap();
        let out = train_one(&cfg, &named, &data, &|_, _| {}).unwrap();
        let steps: Vec<f64> = out
            .network
            .encoders()
            .iter()
            .zip(start.encoders())
            .flat_map(|(w, w0)| (w - w0).iter().map(|d| d.abs()).collect::<Vec<_>>())
            .collect();
        steps
    };
    let memoryless = moved(Some(AdamSettings {
        beta1: 0.0,
        beta2: 0.0,
        eps: 1e-300,
    }));
    let on_grid = |d: f64| d < 1e-15 || (d - 2.0 * lr).abs() < 1e-12 * lr;
    assert!(memoryless.iter().all(|&d| on_grid(d)), "{memoryless:?}");
    assert!(
        memoryless.iter().any(|&d| d > lr),
        "some weight moved twice the same way"
    );
    let default = moved(None);
    assert!(
        default.iter().any(|&d| !on_grid(d)),
        "the default decays remember"
    );
}

/// `adam` is checked like every other field, and refused where it would be ignored.
#[test]
fn adam_settings_out_of_range_or_without_adam_name_the_field() {
    let text = |optimizer: &str, adam: &str| {
        format!(
            r#"{{"engine": null, "references": [{{"name": "bp", "kind": "bp", "lr": 0.1, "optimizer": "{optimizer}", "adam": {adam}}}]}}"#
        )
    };
    let err = parse_scenario(&text("sgd", r#"{"beta1": 0.5}"#), &[]).unwrap_err();
    assert_eq!(err.path, "references[0].adam", "{err}");
    assert!(err.to_string().contains("\"optimizer\": \"adam\""), "{err}");
    let err = parse_scenario(&text("adam", r#"{"beta2": 1.0}"#), &[]).unwrap_err();
    assert_eq!(err.path, "references[0].adam.beta2", "{err}");
    let err = parse_scenario(&text("adam", r#"{"eps": 0}"#), &[]).unwrap_err();
    assert_eq!(err.path, "references[0].adam.eps", "{err}");
    let ok = parse_scenario(&text("adam", r#"{"beta1": 0.99}"#), &[]).unwrap();
    let adam = ok.references[0].adam.expect("given");
    assert_eq!((adam.beta1, adam.beta2, adam.eps), (0.99, 0.999, 1e-8));
}
