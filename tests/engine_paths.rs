//! The low-rank Runge–Kutta path against the `ode_solvers` full-state path (docs/MODEL.md §9):
//! the same method on the same ODE, so the same weights, neurons and traces, and the same
//! steps.

use dtpsim::continuous::config::{DecoderLoss, EngineConfig, Method, PlasticityRule, WeightsMode};
use dtpsim::continuous::integrate::StageForm;
use dtpsim::continuous::{Observer, Phase, Population, Sample, Simulation};
use dtpsim::data::Example;
use dtpsim::discrete::targets::Scheme;
use dtpsim::theory::{fitted_tanh, noisy_example};
use dtpsim::Network;

/// Samples `h` and `d` of every neuron of layer 1 and `W_2[0, 0]` of replica 0.
struct Traces {
    dt: f64,
    rows: Vec<Vec<f64>>,
}

impl Observer for Traces {
    fn interval(&self, _trial: i64) -> Option<f64> {
        Some(self.dt)
    }
    fn sample(&mut self, s: &Sample) {
        let mut row = vec![s.time];
        for i in 0..5 {
            row.push(s.value(Population::H, 1, i, 0).unwrap());
            row.push(s.value(Population::D, 1, i, 0).unwrap());
        }
        row.push(s.value(Population::W, 2, 0, 0).unwrap());
        self.rows.push(row);
    }
}

/// The full-state path, and the low-rank path with every matrix's stages factored or explicit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    State,
    Factored,
    Explicit,
}

struct Outcome {
    net: Network,
    state: Vec<f64>,
    traces: Vec<Vec<f64>>,
    accepted: u64,
    rejected: u64,
    evaluations: u64,
}

/// One warm-up and five learning trials on a 4-5-5-3 tanh net with fitted decoders.
fn run(cfg: &EngineConfig, b: usize, path: Path, trace_dt: Option<f64>) -> Outcome {
    let net = fitted_tanh(5, 3, 0.8, 95, 200);
    let mut cfg = cfg.clone();
    cfg.solver.weights = match path {
        Path::State => WeightsMode::State,
        Path::Factored | Path::Explicit => WeightsMode::LowRank,
    };
    let mut sim = Simulation::new(&net, cfg, b).unwrap();
    match path {
        Path::Factored => sim.set_stage_form(StageForm::Factored),
        Path::Explicit => sim.set_stage_form(StageForm::Explicit),
        Path::State => {}
    }
    let examples: Vec<Example> = (0..6 * b as u64)
        .map(|s| noisy_example(&net, 300 + s, 0.2))
        .collect();
    let mut traces = Traces {
        dt: trace_dt.unwrap_or(0.0),
        rows: Vec::new(),
    };
    for (k, chunk) in examples.chunks(b).enumerate() {
        let batch: Vec<&Example> = chunk.iter().collect();
        let phase = if k == 0 { Phase::Warmup } else { Phase::Learn };
        if trace_dt.is_some() {
            sim.run_trial(&batch, phase, &mut traces).unwrap();
        } else {
            sim.run_trial(&batch, phase, &mut dtpsim::continuous::NoObserver)
                .unwrap();
        }
    }
    let st = sim.stats();
    Outcome {
        net: sim.network(),
        state: sim.state().to_vec(),
        traces: traces.rows,
        accepted: st.solver.accepted_steps,
        rejected: st.solver.rejected_steps,
        evaluations: st.field.evaluations,
    }
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    diff / norm.max(1e-300)
}

/// Configurations that exercise every term the low-rank stages carry: weight decay (`μ ≠ 0`
/// makes the stage weights' scalar `c_s ≠ 1`), replicas, traces, influence, every scheme and
/// plasticity rule, and both decoder losses.
fn configurations() -> Vec<(&'static str, EngineConfig, usize)> {
    let mut base = EngineConfig::default();
    base.protocol.t_stim = 6.0;
    base.protocol.t_on = 2.0;
    base.protocol.t_gap = 1.0;
    base.dynamics.plasticity.eta = dtpsim::continuous::config::PerLayer::All(0.02);
    base.dynamics.decoder.eta = 0.05;
    let mut decay = base.clone();
    decay.dynamics.plasticity.gamma = 0.2;
    decay.dynamics.decoder.gamma = 0.1;
    let mut rich = decay.clone();
    rich.dynamics.trace.stages = 2;
    rich.dynamics.trace.delay = 0.5;
    rich.dynamics.influence.enabled = true;
    rich.dynamics.plasticity.rule = PlasticityRule::TauDotFull;
    let mut input = decay.clone();
    input.dynamics.scheme = Scheme::DecoderInput;
    input.dynamics.plasticity.rule = PlasticityRule::Displacement;
    let mut difference = base.clone();
    difference.dynamics.scheme = Scheme::Difference;
    let mut probed = decay.clone();
    probed.dynamics.decoder.loss = DecoderLoss::DifferenceReconstruction;
    probed.dynamics.decoder.noise = 0.3;
    probed.dynamics.decoder.ridge = 0.1;
    let mut probed_input = probed.clone();
    probed_input.dynamics.scheme = Scheme::DecoderInput;
    vec![
        ("default", base, 1),
        ("decay, B = 3", decay, 3),
        ("traces, influence, tau_dot_full", rich, 3),
        ("decoder_input, displacement", input, 3),
        ("difference", difference, 1),
        ("difference reconstruction decoders", probed, 3),
        ("decoder_input, difference reconstruction", probed_input, 2),
    ]
}

#[test]
fn both_paths_give_the_same_weights_and_neurons_at_tight_tolerance() {
    for (name, mut cfg, b) in configurations() {
        cfg.solver.rtol = 1e-10;
        cfg.solver.atol = 1e-12;
        let state = run(&cfg, b, Path::State, None);
        for form in [Path::Factored, Path::Explicit] {
            let fast = run(&cfg, b, form, None);
            let name = format!("{name}, {form:?}");
            for l in 1..=3 {
                let e = rel(fast.net.w(l).as_slice(), state.net.w(l).as_slice());
                assert!(e <= 1e-9, "{name}: W_{l} differs by {e:e}");
                let change = rel(
                    fast.net.w(l).as_slice(),
                    fitted_tanh(5, 3, 0.8, 95, 200).w(l).as_slice(),
                );
                assert!(change > 1e-4, "{name}: W_{l} did not learn ({change:e})");
            }
            for l in 2..=3 {
                let e = rel(fast.net.omega(l).as_slice(), state.net.omega(l).as_slice());
                assert!(e <= 1e-9, "{name}: Ω_{l} differs by {e:e}");
            }
            let e = rel(&fast.state, &state.state);
            eprintln!("{name}: state relative difference {e:.2e} at rtol 1e-10");
            assert!(e <= 1e-9, "{name}: state differs by {e:e}");
        }
    }
}

#[test]
fn both_paths_take_the_same_steps_at_the_default_tolerance() {
    for (name, cfg, b) in configurations() {
        let state = run(&cfg, b, Path::State, None);
        for form in [Path::Factored, Path::Explicit] {
            let fast = run(&cfg, b, form, None);
            let name = format!("{name}, {form:?}");
            eprintln!(
            "{name}: accepted {} / {}, rejected {} / {}, evaluations {} / {} (low-rank / state)",
            fast.accepted,
            state.accepted,
            fast.rejected,
            state.rejected,
            fast.evaluations,
            state.evaluations
        );
            let close = |a: u64, b: u64| (a as f64 - b as f64).abs() <= 0.01 * a.max(b) as f64;
            assert!(
                close(fast.accepted, state.accepted),
                "{name}: accepted {} vs {}",
                fast.accepted,
                state.accepted
            );
            assert!(
                close(fast.rejected, state.rejected),
                "{name}: rejected {} vs {}",
                fast.rejected,
                state.rejected
            );
            let e = rel(&fast.state, &state.state);
            assert!(e <= 1e-5, "{name}: state differs by {e:e}");
        }
    }
}

#[test]
fn traces_from_dense_output_match_the_restarted_reference_and_cost_no_extra_steps() {
    let (_, mut cfg, b) = configurations().remove(1);
    cfg.solver.rtol = 1e-10;
    cfg.solver.atol = 1e-12;
    let reference = run(&cfg, b, Path::State, Some(0.25));
    for form in [Path::Factored, Path::Explicit] {
        let fast = run(&cfg, b, form, Some(0.25));
        let untraced = run(&cfg, b, form, None);
        assert_eq!(fast.traces.len(), reference.traces.len());
        eprintln!(
            "traced: {} evaluations (reference path restarted at samples: {}), untraced {}",
            fast.evaluations, reference.evaluations, untraced.evaluations
        );
        for (a, b) in fast.traces.iter().zip(&reference.traces) {
            assert_eq!(a[0], b[0], "sample times");
            let e = rel(&a[1..], &b[1..]);
            assert!(e <= 1e-9, "trace at t = {} differs by {e:e}", a[0]);
        }
        assert_eq!(fast.evaluations, untraced.evaluations);
        assert_eq!(fast.state, untraced.state, "sampling changes nothing");
    }
}

#[test]
fn rk4_paths_agree() {
    let (_, mut cfg, b) = configurations().remove(2);
    cfg.solver.method = Method::Rk4;
    cfg.solver.step = 0.05;
    let state = run(&cfg, b, Path::State, None);
    for form in [Path::Factored, Path::Explicit] {
        let fast = run(&cfg, b, form, None);
        assert_eq!(fast.accepted, state.accepted);
        let e = rel(&fast.state, &state.state);
        assert!(e <= 1e-10, "rk4 {form:?}: state differs by {e:e}");
    }
}

#[test]
fn dense_output_samples_every_time_the_restarted_reference_samples() {
    // times that are not binary fractions: the last step ends at t1 only up to rounding
    let (_, mut cfg, b) = configurations().remove(0);
    cfg.protocol.t_on = 2.1;
    cfg.protocol.t_stim = 6.3;
    cfg.protocol.t_gap = 0.7;
    let reference = run(&cfg, b, Path::State, Some(0.3));
    let fast = run(&cfg, b, Path::Factored, Some(0.3));
    let times = |o: &Outcome| o.traces.iter().map(|r| r[0]).collect::<Vec<f64>>();
    assert_eq!(times(&fast), times(&reference));
    assert!(fast.traces.len() > 100);
}
