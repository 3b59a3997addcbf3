//! The continuous-time engine against its discrete limit and known solutions (docs/MODEL.md §7,
//! T6–T8), plus the engine's own invariants.

mod common;

use dtpsim::continuous::config::{
    DecoderLoss, EngineConfig, Gate, Method, PerLayer, PlasticityRule, WeightsMode,
};
use dtpsim::continuous::{Drive, NoObserver, Phase, Simulation};
use dtpsim::data::Example;
use dtpsim::theory::{
    fitted_tanh, noisy_example, t6_continuous_limit, t7_anytime, t8_delay, t8_pool,
};
use dtpsim::{Activation, Architecture, Init, Loss, Network};
use nalgebra::{DMatrix, DVector};

fn example(net: &Network, seed: u64, noise: f64) -> Example {
    noisy_example(net, seed, noise)
}

#[test]
fn t6_one_trial_of_tau_dot_equals_discrete_dtp1() {
    let t6 = t6_continuous_limit().unwrap();
    // linear net, exact inverses Ω_l = W_l⁻¹
    for (l, rel) in t6.linear_rel_error.iter().enumerate() {
        assert!(*rel < 1e-3, "layer {}: relative error {rel:e}", l + 1);
    }
    // tanh net, fitted decoders
    for (l, c) in t6.tanh_cosine.iter().enumerate() {
        assert!(*c > 0.99, "layer {}: cosine {c}", l + 1);
    }
}

/// T6d: at a finite step the output layer's drive moves with its weights during the trial, so
/// one trial is the implicit step `η D* Nᵀ`, `D* = −β∇ℓ(U₀ + η D* G)`, not the explicit DTP1
/// step; with the squared loss at `B = 1` it is `1/(1 + ηβ)` of the explicit one, and it tends
/// to it as `η → 0`.
#[test]
fn t6d_a_finite_step_is_the_implicit_step_on_the_output_loss() {
    use dtpsim::theory::{t6_proximal, PROXIMAL_BETA};
    let beta = PROXIMAL_BETA;
    for eta in [0.5, 2.0, 8.0] {
        let one = t6_proximal(eta, 1, Loss::Mse).unwrap();
        assert!(one.rel_error < 1e-6, "η {eta}, B 1: {one:?}");
        let expected = 1.0 / (1.0 + eta * beta);
        assert!(
            (one.explicit_ratio - expected).abs() < 1e-6,
            "η {eta}: ratio {} against 1/(1 + ηβ) = {expected}",
            one.explicit_ratio
        );
        let three = t6_proximal(eta, 3, Loss::Mse).unwrap();
        assert!(three.rel_error < 1e-6, "η {eta}, B 3: {three:?}");
        let softmax = t6_proximal(eta, 3, Loss::SoftmaxCe).unwrap();
        assert!(softmax.rel_error < 1e-6, "η {eta}, softmax: {softmax:?}");
        assert!(
            softmax.explicit_ratio < 1.0,
            "η {eta}, softmax: {softmax:?}"
        );
    }
    // the explicit step is the small-η limit
    let small = t6_proximal(1e-4, 3, Loss::Mse).unwrap();
    assert!((small.explicit_ratio - 1.0).abs() < 1e-4, "{small:?}");
}

/// The columns of `metrics.csv` in `dir` for the `continuous` rows after learning began.
fn continuous_metrics(dir: &std::path::Path) -> Vec<std::collections::HashMap<String, f64>> {
    let mut reader = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[0] == "continuous" && &r[1] != "0")
        .map(|r| {
            header
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.parse::<f64>().unwrap_or(f64::NAN)))
                .collect()
        })
        .collect()
}

/// The per-layer update diagnostics of `metrics.csv` against T6d through a whole run: with
/// only the output layer plastic on a linear net, the squared loss and one replica, every
/// trial's step along the fully relaxed (explicit DTP1) update is `1/(1 + ηβ)` with cosine 1,
/// and the frozen layer reports nothing; with every layer plastic at a small `η` each layer's
/// step is the discrete one (summed over the replicas: `η` is per example).
#[test]
fn per_layer_update_steps_are_the_implicit_step_and_tend_to_the_discrete_one() {
    use common::{dtpsim, scratch, stderr};
    let dir = scratch("update-steps");
    let scenario = |eta: &str, activation: &str, batch: usize| {
        format!(
            r#"{{"name": "steps", "seed": 4,
             "task": {{"kind": "teacher_student", "widths": [4, 4, 4], "activation": "{activation}", "gain": 1.0}},
             "data": {{"train": 20, "test": 10}},
             "network": {{"widths": [4, 4, 4], "activation": "{activation}", "bias": false}},
             "schedule": {{"trials": 6, "warmup_trials": 0, "batch": {batch}, "eval_every": 3}},
             "engine": {{"dynamics": {{"scheme": "difference", "leak": 0.0, "beta": 0.1, "pool_eps": 1e-12,
                "plasticity": {{"eta": {eta}}}, "decoder": {{"eta": 0.0}}}},
               "protocol": {{"t_stim": 65, "t_on": 25, "t_gap": 0}},
               "solver": {{"rtol": 1e-10, "atol": 1e-12}}}},
             "references": [],
             "diagnostics": {{"update_cosine": true}},
             "outputs": {{"plots": false}}}}"#
        )
    };
    let run = |name: &str, text: String| {
        std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
        let out = dtpsim(
            &["run", &format!("{name}.json"), "--out", name, "--quiet"],
            &dir,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let rows = continuous_metrics(&dir.join(name));
        assert_eq!(rows.len(), 2);
        rows
    };
    let (eta, beta) = (2.0, 0.1);
    for row in run("top", scenario("[0.0, 2.0]", "linear", 1)) {
        let step = row["update_step_2"];
        assert!(
            (step - 1.0 / (1.0 + eta * beta)).abs() < 1e-6,
            "step {step} against 1/(1 + ηβ) = {}",
            1.0 / (1.0 + eta * beta)
        );
        assert!((row["update_cosine_2"] - 1.0).abs() < 1e-9, "{row:?}");
        assert!(row["update_step_1"].is_nan() && row["update_cosine_1"].is_nan());
    }
    for row in run("small", scenario("1e-4", "tanh", 3)) {
        for l in 1..=2 {
            let (step, cosine) = (
                row[&format!("update_step_{l}")],
                row[&format!("update_cosine_{l}")],
            );
            assert!((step - 1.0).abs() < 1e-3, "layer {l}: step {step}");
            assert!(cosine > 0.999, "layer {l}: cosine {cosine}");
        }
    }
}

#[test]
fn t7_anytime_update_grows_monotonically_towards_the_full_update() {
    let rows = t7_anytime(&[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]).unwrap();
    for pair in rows.windows(2) {
        let ((w0, n0, c0), (w1, n1, c1)) = (pair[0], pair[1]);
        assert!(
            n1 > n0 && c1 > c0,
            "window {w0} → {w1}: norm {n0} → {n1}, cos {c0} → {c1}"
        );
    }
    assert!(rows.iter().all(|r| r.1 <= 1.0 + 1e-6), "{rows:?}");
    let (_, n, c) = *rows.last().unwrap();
    assert!(
        c > 0.999 && n > 0.95,
        "16-unit window: norm ratio {n}, cos {c}"
    );
    assert!(
        rows[0].1 < 0.2,
        "a short window gives a small partial update: {:?}",
        rows[0]
    );
}

#[test]
fn t8_pool_neuron_relaxes_to_the_squared_norm_with_time_constant_tau_p() {
    let err = t8_pool().unwrap();
    assert!(err < 1e-8, "max error {err:e}");
}

#[test]
fn t8_delay_chain_has_mean_delay_d() {
    for stages in [1usize, 4, 10] {
        let mean = t8_delay(stages, 2.0).unwrap();
        assert!((mean - 2.0).abs() < 0.02, "K = {stages}: mean delay {mean}");
    }
}

/// Runs `trials` stream trials with the teacher never on and returns (W before, W after, time).
fn teacher_off_run(rule: PlasticityRule) -> (Network, Network, f64, f64) {
    let mut cfg = EngineConfig::default();
    cfg.dynamics.plasticity.gate = Gate::Always;
    cfg.dynamics.plasticity.rule = rule;
    cfg.dynamics.plasticity.eta = PerLayer::All(0.5);
    cfg.dynamics.plasticity.gamma = 0.01;
    cfg.dynamics.decoder.eta = 0.0;
    cfg.protocol.t_on = cfg.protocol.t_stim; // the teacher never comes on
    cfg.solver.rtol = 1e-10;
    cfg.solver.atol = 1e-12;
    let net = fitted_tanh(5, 3, 1.0, 91, 200);
    let mut sim = Simulation::new(&net, cfg.clone(), 1).unwrap();
    for s in 0..5 {
        let ex = example(&net, 100 + s, 1.0);
        sim.run_trial(&[&ex], Phase::Learn, &mut NoObserver)
            .unwrap();
    }
    (net, sim.network(), sim.time(), 0.5 * 0.01)
}

#[test]
fn teacher_off_weights_change_only_by_their_decay() {
    let (before, after, t, rate) = teacher_off_run(PlasticityRule::TauDot);
    let decay = (-rate * t).exp();
    for l in 1..=3 {
        let rel = (after.w(l) - before.w(l) * decay).norm() / before.w(l).norm();
        assert!(
            rel < 1e-9,
            "W_{l}: relative deviation from pure decay {rel:e}"
        );
    }
    // the Hebbian variant does learn spuriously from the forward dynamics: the check has teeth
    let (before, after, t, rate) = teacher_off_run(PlasticityRule::TauDotFull);
    let decay = (-rate * t).exp();
    let rel = (after.w(1) - before.w(1) * decay).norm() / before.w(1).norm();
    assert!(rel > 1e-3, "tau_dot_full should deviate, got {rel:e}");
}

#[test]
fn replicas_give_the_summed_weight_derivative_of_single_runs() {
    for loss in [DecoderLoss::Regular, DecoderLoss::DifferenceReconstruction] {
        replicas_sum_to_single_runs(loss);
    }
}

/// Learning rates are per example: `B` replicas learn what `B` single runs would (`γ = 0`), with
/// each replica's own probes for difference-reconstruction decoders.
fn replicas_sum_to_single_runs(loss: DecoderLoss) {
    let net = fitted_tanh(5, 3, 0.8, 95, 200);
    let mut cfg = EngineConfig::default();
    cfg.dynamics.trace.delay = 1.0;
    cfg.dynamics.trace.stages = 2;
    cfg.dynamics.influence.enabled = true;
    cfg.dynamics.decoder.loss = loss;
    if loss == DecoderLoss::DifferenceReconstruction {
        cfg.dynamics.decoder.noise = 0.2;
        // the ridge decay is a per-replica scalar times Ω: it sums over replicas too
        cfg.dynamics.decoder.ridge = 0.5;
    }
    let mut sim = Simulation::new(&net, cfg, 3).unwrap();
    sim.set_probe_seed(9);
    let exs: Vec<Example> = (0..3).map(|s| example(&net, 200 + s, 1.0)).collect();
    let refs: Vec<&Example> = exs.iter().collect();
    // bring the replicas into distinct, non-trivial states with the teacher on
    let drive = sim.drive(&refs, true, true, true);
    sim.run_segment(&drive, 3.0, &mut NoObserver).unwrap();
    let dy = sim.derivative(&drive);
    let lay = sim.layout().clone();
    let mut sum_w: Vec<DMatrix<f64>> = (1..=3)
        .map(|l| DMatrix::zeros(lay.w(l).rows, lay.w(l).cols))
        .collect();
    let mut sum_o: Vec<DMatrix<f64>> = (2..=3)
        .map(|l| DMatrix::zeros(lay.omega(l).rows, lay.omega(l).cols))
        .collect();
    for j in 0..3 {
        let single = sim.replica(j);
        let d1 = single.derivative(&single.drive(&refs[j..=j], true, true, true));
        let one = single.layout();
        for l in 1..=3 {
            sum_w[l - 1] += one.w(l).view(d1.as_slice());
        }
        for l in 2..=3 {
            sum_o[l - 2] += one.omega(l).view(d1.as_slice());
        }
    }
    for l in 1..=3 {
        let batched = lay.w(l).view(dy.as_slice()).into_owned();
        assert!(
            (&batched - &sum_w[l - 1]).norm() <= 1e-12 * batched.norm().max(1.0),
            "W_{l} ({loss:?})"
        );
        assert!(
            batched.norm() > 1e-6,
            "W_{l} derivative is not trivially zero"
        );
    }
    for l in 2..=3 {
        let batched = lay.omega(l).view(dy.as_slice()).into_owned();
        assert!(
            (&batched - &sum_o[l - 2]).norm() <= 1e-12 * batched.norm().max(1.0),
            "Ω_{l} ({loss:?})"
        );
    }
}

/// Linear one-layer network from rest, teacher off, η = 0: `h(t) = h*(1 − e^{−t})` and the
/// pool `τ_p ṗ = −p + 1 + ‖h(t)‖²` have closed forms.
fn known_solution_error(method: Method, step: f64, rtol: f64) -> f64 {
    let arch = Architecture::new(&[3, 2], Activation::Linear, Loss::Mse).unwrap();
    let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 5).unwrap();
    let tau_p = 0.7;
    let mut cfg = EngineConfig::default();
    cfg.dynamics.tau_p = tau_p;
    cfg.solver.method = method;
    if method == Method::Dop853 {
        cfg.solver.weights = WeightsMode::State;
    }
    cfg.solver.step = step;
    cfg.solver.rtol = rtol;
    cfg.solver.atol = rtol * 1e-2;
    let mut sim = Simulation::new(&net, cfg, 1).unwrap();
    let ex = Example {
        x: DVector::from_vec(vec![0.7, -0.4, 1.1]),
        y: DVector::zeros(2),
    };
    let h_star = net.predict(&ex.x);
    let drive = sim.drive(&[&ex], true, false, false);
    let t = 3.0;
    sim.run_segment(&drive, t, &mut NoObserver).unwrap();
    let h_exact = &h_star * (1.0 - (-t).exp());
    let hh = h_star.norm_squared();
    let (a0, a1, a2) = (
        1.0 + hh,
        -2.0 * hh / (1.0 - tau_p),
        hh / (1.0 - 2.0 * tau_p),
    );
    let c = 1.0 - a0 - a1 - a2;
    let p_exact = a0 + a1 * (-t).exp() + a2 * (-2.0 * t).exp() + c * (-t / tau_p).exp();
    let lay = sim.layout();
    let y = sim.state();
    let h = lay.h(1).view(y).column(0).into_owned();
    let p = y[lay.p(1).start];
    (h - h_exact).amax().max((p - p_exact).abs())
}

#[test]
fn rk4_converges_at_fourth_order_and_dopri5_meets_its_tolerance() {
    let errors: Vec<f64> = [0.1, 0.05, 0.025]
        .iter()
        .map(|&h| known_solution_error(Method::Rk4, h, 1e-6))
        .collect();
    for pair in errors.windows(2) {
        let ratio = pair[0] / pair[1];
        assert!(
            (12.0..20.0).contains(&ratio),
            "halving the step divides the error by {ratio} (errors {errors:?})"
        );
    }
    for rtol in [1e-6, 1e-9] {
        let err = known_solution_error(Method::Dopri5, 0.05, rtol);
        assert!(err < 10.0 * rtol, "dopri5 rtol {rtol}: error {err:e}");
        let err = known_solution_error(Method::Dop853, 0.05, rtol);
        assert!(err < 10.0 * rtol, "dop853 rtol {rtol}: error {err:e}");
    }
}

#[test]
fn divergence_names_trial_time_population_and_layer() {
    let net = fitted_tanh(5, 3, 1.0, 97, 100);
    let mut cfg = EngineConfig::default();
    cfg.dynamics.plasticity.eta = PerLayer::All(1e4);
    cfg.dynamics.beta = 5.0;
    let mut sim = Simulation::new(&net, cfg, 1).unwrap();
    let mut err = None;
    for s in 0..20 {
        let ex = example(&net, 300 + s, 3.0);
        if let Err(e) = sim.run_trial(&[&ex], Phase::Learn, &mut NoObserver) {
            err = Some(e);
            break;
        }
    }
    let msg = err.expect("η = 1e4 diverges").to_string();
    assert!(
        msg.starts_with("diverged in trial ") && msg.contains(" of layer ") && msg.contains("t = "),
        "{msg}"
    );
    // the state kept is the last finite one, and the weights can still be read
    assert!(sim
        .network()
        .encoders()
        .iter()
        .all(|w| w.iter().all(|v| v.is_finite())));
}

#[test]
fn drive_without_stimulus_is_blank() {
    let net = fitted_tanh(3, 2, 1.0, 98, 50);
    let sim = Simulation::new(&net, EngineConfig::default(), 1).unwrap();
    let ex = example(&net, 1, 1.0);
    let d: Drive = sim.drive(&[&ex], false, false, true);
    assert_eq!(d.x.norm(), 0.0);
    assert_eq!(d.y.column(0), ex.y.column(0));
}

#[test]
fn dop853_on_the_low_rank_path_is_refused_naming_the_field_and_the_fix() {
    let mut cfg = EngineConfig::default();
    cfg.solver.method = Method::Dop853;
    let err = cfg.validate(3).unwrap_err().to_string();
    assert!(err.contains("solver.weights"), "{err}");
    assert!(err.contains("\"state\""), "{err}");
    cfg.solver.weights = WeightsMode::State;
    assert!(cfg.validate(3).is_ok());
}

#[test]
fn t6c_a_short_settle_leaves_a_measurable_gap_that_a_long_one_closes() {
    let (r5, c5) = dtpsim::theory::t6_settle(5.0, false).unwrap();
    let (r30, c30) = dtpsim::theory::t6_settle(30.0, false).unwrap();

    assert!((r30 - 1.0).abs() < 1e-3, "settle 30: ratio {r30}");
    assert!(c30 > 1.0 - 1e-6, "settle 30: cosine {c30}");
    // the cascade of h is still moving after 5 time units: the update is measurably off
    assert!(
        (r5 - 1.0).abs() > 10.0 * (r30 - 1.0).abs() && c5 < c30,
        "settle 5: ratio {r5}, cos {c5}; settle 30: {r30}, {c30}"
    );
}

/// T6c in a stream, as in a run: right after another example's trial the cascade still
/// carries that example's activity after a settle of 5, and the update is much further off
/// than from rest; a settle of 10 closes most of the gap and one of 30 all of it.
#[test]
fn t6c_in_a_stream_the_previous_example_lingers_after_a_short_settle() {
    let (_, rest5) = dtpsim::theory::t6_settle(5.0, false).unwrap();
    let (r5, c5) = dtpsim::theory::t6_settle(5.0, true).unwrap();
    let (r10, c10) = dtpsim::theory::t6_settle(10.0, true).unwrap();
    let (r30, c30) = dtpsim::theory::t6_settle(30.0, true).unwrap();
    assert!(
        1.0 - c5 > 10.0 * (1.0 - rest5) && (r5 - 1.0).abs() > 0.01,
        "stream, settle 5: ratio {r5}, cos {c5}; from rest: cos {rest5}"
    );
    assert!(
        (r10 - 1.0).abs() < 1e-3 && 1.0 - c10 < 1e-5,
        "stream, settle 10: ratio {r10}, cos {c10}"
    );
    assert!(
        (r30 - 1.0).abs() < 1e-5 && 1.0 - c30 < 1e-9,
        "stream, settle 30: ratio {r30}, cos {c30}"
    );
}
