//! Influence scaling in continuous time (docs/MODEL.md §6, Sec. 8): the scale neurons settle on
//! the discrete `s_l = ‖d_L‖²/‖d_l‖²` with a bounded log-rate, a trial with influence equals
//! `s_l*`-scaled DTP1 (T6b), and switching influence on never makes a stable shipped run diverge.

mod common;

use common::{dtpsim, scratch};
use dtpsim::continuous::config::PerLayer;
use dtpsim::continuous::{Population, Simulation};
use dtpsim::theory::{fitted_tanh, limit_config, noisy_example, t6_influence_limit, Recorder};

#[test]
fn t6b_one_trial_with_influence_equals_influence_scaled_dtp1() {
    let t6b = t6_influence_limit().unwrap();
    for (net, layers) in [("linear", &t6b.linear), ("tanh", &t6b.tanh)] {
        for (l, (ratio, cos)) in layers.iter().enumerate() {
            assert!(
                (ratio - 1.0).abs() <= 0.05,
                "{net} layer {}: ‖ΔW_cont‖/‖ΔW_DTP1‖ = {ratio}",
                l + 1
            );
            assert!(*cos >= 0.99, "{net} layer {}: cosine {cos}", l + 1);
        }
    }
}

#[test]
fn scale_neurons_settle_on_the_discrete_ratio_with_a_bounded_log_rate() {
    let net = fitted_tanh(6, 3, 0.5, 63, 400);
    let ex = noisy_example(&net, 64, 0.3);
    let tau_q = 0.5;
    let mut cfg = limit_config(0.0, 40.0);
    cfg.dynamics.influence.enabled = true;
    cfg.dynamics.influence.tau = tau_q;
    cfg.dynamics.plasticity.eta = PerLayer::All(0.0);
    let mut sim = Simulation::new(&net, cfg, 1).unwrap();
    let scale = |sim: &Simulation, l: usize| sim.layout().scale(l).map(|b| b.view(sim.state())[0]);
    for l in 1..=2 {
        assert_eq!(scale(&sim, l), Some(1.0));
    }
    assert_eq!(scale(&sim, 3), None, "s_L is not a neuron");
    let (t_on, t_stim) = (25.0, 65.0);
    let settle = sim.drive(&[&ex], true, false, true);
    let mut idle = Recorder {
        dt: 1.0,
        what: (Population::Influence, 1, 0),
        points: vec![],
    };
    sim.run_segment(&settle, t_on, &mut idle).unwrap();
    // with the teacher off every d is 0: the scales do not move
    assert!(
        idle.points.iter().all(|(_, s)| *s == 1.0),
        "{:?}",
        idle.points
    );
    let taught = sim.drive(&[&ex], true, true, true);
    let mut rec = Recorder {
        dt: 0.05,
        what: (Population::Influence, 1, 0),
        points: vec![],
    };
    sim.run_segment(&taught, t_stim - t_on, &mut rec).unwrap();
    for w in rec.points.windows(2) {
        let (dt, dlog) = (w[1].0 - w[0].0, (w[1].1 / w[0].1).ln().abs());
        assert!(
            dlog <= dt / tau_q * (1.0 + 1e-6),
            "ln s moved {dlog} in {dt}"
        );
    }
    let norm2 = |l: usize| sim.layout().d(l).view(sim.state()).norm_squared();
    for l in 1..=2 {
        let want = norm2(3) / norm2(l);
        let got = scale(&sim, l).unwrap();
        assert!(
            (got / want - 1.0).abs() < 1e-6,
            "layer {l}: s = {got}, ‖d_L‖²/‖d_l‖² = {want}"
        );
        assert!(
            (want - 1.0).abs() > 0.5,
            "the test needs s* far from its start"
        );
    }
}

/// Runs the quickstart scenario's engine (its whole schedule, no references, traces or
/// plots) with `sets`; returns whether it completed.
fn quickstart_completes(name: &str, sets: &[String]) -> bool {
    let dir = scratch(name);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/quickstart.json");
    let mut args = vec!["run", scenario, "--out", "out", "--quiet"];
    let mut all: Vec<String> = vec![
        "references=[]".into(),
        "traces.interval=0".into(),
        "outputs.plots=false".into(),
    ];
    all.extend_from_slice(sets);
    for s in &all {
        args.extend(["--set", s.as_str()]);
    }
    let out = dtpsim(&args, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{sets:?}: {stderr}"
    );
    out.status.success()
}

#[test]
fn influence_never_turns_a_stable_quickstart_run_into_a_divergent_one() {
    // the default rule under both gates, and the Hebbian rule under its stable gate
    // (tau_dot_full under gate always diverges by itself, through its ḣ term)
    let pairings = [
        ("tau_dot", "teacher"),
        ("tau_dot", "always"),
        ("tau_dot_full", "teacher"),
    ];
    for (rule, gate) in pairings {
        let sets = |on: bool| {
            vec![
                format!("engine.dynamics.plasticity.rule={rule}"),
                format!("engine.dynamics.plasticity.gate={gate}"),
                format!("engine.dynamics.influence.enabled={on}"),
            ]
        };
        let name = format!("influence-{rule}-{gate}");
        assert!(
            quickstart_completes(&format!("{name}-off"), &sets(false)),
            "{rule}, gate {gate}: diverged without influence"
        );
        assert!(
            quickstart_completes(&format!("{name}-on"), &sets(true)),
            "{rule}, gate {gate}: stable without influence, divergent with it"
        );
    }
}
