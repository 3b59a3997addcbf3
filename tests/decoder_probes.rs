//! The engine's difference reconstruction decoders (docs/MODEL.md §6, decoder plasticity):
//! probes held through a trial, probe pools `q_l`, and the rule
//! `Ω̇_l = η_Ω[−γ_Ω Ω_l + Σ_b ((σξ − Ω_l Δa_l) Δa_lᵀ − r_Ω σ² Ω_l)/(ε + r_Ω σ² + q_l)]`.

use dtpsim::continuous::config::{DecoderLoss, EngineConfig, PerLayer};
use dtpsim::continuous::{NoObserver, Phase, Simulation};
use dtpsim::data::Example;
use dtpsim::discrete::batch::BatchPass;
use dtpsim::discrete::updates::{decoder_update, difference_probe};
use dtpsim::theory::linear_invertible;
use dtpsim::{Activation, Architecture, Init, Loss, Network};
use nalgebra::{DMatrix, DVector};

const WIDTH: usize = 4;

/// A 4-4-4 linear net whose decoder `Ω_2` is far from `W_2`'s inverse, and one input.
fn linear_net_with_a_poor_decoder() -> (Network, Example) {
    let exact = linear_invertible(WIDTH, 2, 3.0, 7);
    let omega = exact.omega(2) * 0.4
        + DMatrix::from_fn(WIDTH, WIDTH + 1, |i, j| {
            0.1 * ((i * 7 + j * 3) % 5) as f64 - 0.2
        });
    let net =
        Network::from_parts(exact.arch().clone(), exact.encoders().to_vec(), vec![omega]).unwrap();
    let ex = Example {
        x: DVector::from_vec(vec![0.5, -0.3, 0.8, 0.1]),
        y: DVector::from_vec(vec![0.2, 0.0, -0.4, 0.3]),
    };
    (net, ex)
}

/// Forward weights frozen, decoders learning at `η_Ω = 1` on `loss`.
fn config(loss: DecoderLoss) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.dynamics.plasticity.eta = PerLayer::All(0.0);
    cfg.dynamics.decoder.eta = 1.0;
    cfg.dynamics.decoder.loss = loss;
    if loss == DecoderLoss::DifferenceReconstruction {
        cfg.dynamics.decoder.noise = 0.1;
    }
    cfg
}

/// `‖Ω_2[:, :n] W_2[:, :n] − I‖_F`: how far `g_2′ f_2′` is from the identity (Sec. 6.2).
fn inverse_defect(net: &Network) -> f64 {
    let product = net.omega(2).columns(0, WIDTH) * net.w(2).columns(0, WIDTH);
    (product - DMatrix::<f64>::identity(WIDTH, WIDTH)).norm()
}

/// Every replica sees the same input, so the regular auto-encoder loss sees one point and
/// cannot pin `Ω_2` down; each replica's own probe spans the layer, and the difference
/// reconstruction fixed point is `Ω_2 W_2 = I` exactly on a linear layer (`Δa = W_2 σξ`).
#[test]
fn probes_make_a_linear_decoder_the_inverse_from_one_input_and_the_regular_loss_does_not() {
    let (net, ex) = linear_net_with_a_poor_decoder();
    let before = inverse_defect(&net);
    assert!(before > 0.5, "the start is far from the inverse: {before}");
    let replicas = 8;
    let mut after = Vec::new();
    for loss in [DecoderLoss::DifferenceReconstruction, DecoderLoss::Regular] {
        let mut cfg = config(loss);
        cfg.solver.rtol = 1e-10;
        cfg.solver.atol = 1e-12;
        let mut sim = Simulation::new(&net, cfg, replicas).unwrap();
        sim.set_trial(-6);
        for _ in 0..6 {
            sim.run_trial(&[&ex], Phase::Warmup, &mut NoObserver)
                .unwrap();
        }
        after.push(inverse_defect(&sim.network()));
    }
    eprintln!("‖ΩW − I‖: {before} → {after:?}");
    assert!(
        after[0] < 1e-6,
        "difference reconstruction: ‖ΩW − I‖ = {:e}",
        after[0]
    );
    assert!(
        after[1] > 0.1,
        "the regular loss fits one point only: ‖ΩW − I‖ = {}",
        after[1]
    );
}

/// The probe pool relaxes to `‖Δa_l‖²` of its replica's probe (`τ_p q̇ = −q + ‖Δa‖²`), which
/// on a linear layer is `‖W_2[:, :n] σξ‖²`; different replicas get different probes.
#[test]
fn probe_pools_relax_to_the_squared_probe_difference_of_their_replica() {
    let (net, ex) = linear_net_with_a_poor_decoder();
    let mut cfg = config(DecoderLoss::DifferenceReconstruction);
    cfg.dynamics.decoder.eta = 0.0;
    let mut sim = Simulation::new(&net, cfg, 3).unwrap();
    sim.set_probe_seed(11);
    let drive = sim.drive(&[&ex], true, false, false);
    assert_eq!(drive.probe.len(), 1);
    sim.run_segment(&drive, 40.0, &mut NoObserver).unwrap();
    let q = sim
        .layout()
        .probe_pool(2)
        .unwrap()
        .view(sim.state())
        .into_owned();
    let a = net.w(2).columns(0, WIDTH).into_owned();
    for j in 0..3 {
        let expected = (&a * drive.probe[0].column(j)).norm_squared();
        assert!(
            (q[j] - expected).abs() < 1e-8 * expected,
            "replica {j}: q = {} against ‖W σξ‖² = {expected}",
            q[j]
        );
    }
    assert_ne!(drive.probe[0].column(0), drive.probe[0].column(1));
    let probe_norm = drive.probe[0].norm() / (3.0 * WIDTH as f64).sqrt();
    assert!((probe_norm - 0.1).abs() < 0.06, "σ = 0.1: rms {probe_norm}");
}

/// Probes are a function of (seed, trial, replica) alone: the same in a fresh simulation, and
/// new for another seed or trial.
#[test]
fn probes_depend_only_on_seed_trial_and_replica() {
    let (net, ex) = linear_net_with_a_poor_decoder();
    let cfg = config(DecoderLoss::DifferenceReconstruction);
    let probe = |seed: u64, trial: i64, replicas: usize| {
        let mut sim = Simulation::new(&net, cfg.clone(), replicas).unwrap();
        sim.set_probe_seed(seed);
        sim.set_trial(trial);
        sim.drive(&[&ex], true, true, true).probe[0].clone()
    };
    let a = probe(3, 5, 4);
    assert_eq!(a, probe(3, 5, 4));
    assert_eq!(a.columns(0, 2), probe(3, 5, 2));
    assert_ne!(a, probe(4, 5, 4));
    assert_ne!(a, probe(3, 6, 4));
    let regular = Simulation::new(&net, config(DecoderLoss::Regular), 4).unwrap();
    assert!(regular.drive(&[&ex], true, true, true).probe.is_empty());
}

/// Settled (forward weights frozen, teacher off, `q_l = ‖Δa_l‖²`), one unit of time of the
/// engine's rule is the discrete normalised step of docs/MODEL.md §4 at rate `η_Ω`, ridge decay
/// `−r_Ω σ² Ω_l/(‖Δa‖² + r_Ω σ²)` included, summed over the replicas' examples and probes.
#[test]
fn settled_decoder_rate_is_the_discrete_difference_reconstruction_step_with_its_ridge() {
    let arch = Architecture::new(&[4, 5, 6, 3], Activation::Tanh, Loss::Mse).unwrap();
    let net = Network::new(arch, Init::Gaussian { gain: 1.4 }, 7).unwrap();
    let exs: Vec<Example> = (0..3)
        .map(|b| Example {
            x: DVector::from_fn(4, |i, _| ((i + 3 * b) as f64 * 1.3).sin()),
            y: DVector::zeros(3),
        })
        .collect();
    let refs: Vec<&Example> = exs.iter().collect();
    let (sigma, ridge, rate) = (0.3, 0.5, 0.7);
    let mut cfg = config(DecoderLoss::DifferenceReconstruction);
    cfg.dynamics.decoder.noise = sigma;
    cfg.dynamics.decoder.ridge = ridge;
    cfg.dynamics.pool_eps = 1e-14;
    cfg.solver.rtol = 1e-10;
    cfg.solver.atol = 1e-12;
    // settle activity and probe pools with the decoders frozen, then read the rate at η_Ω
    let mut frozen = cfg.clone();
    frozen.dynamics.decoder.eta = 0.0;
    let mut settle = Simulation::new(&net, frozen, 3).unwrap();
    settle.set_probe_seed(5);
    let drive = settle.drive(&refs, true, false, false);
    settle.run_segment(&drive, 60.0, &mut NoObserver).unwrap();
    cfg.dynamics.decoder.eta = rate;
    let mut sim = Simulation::new(&net, cfg, 3).unwrap();
    sim.set_probe_seed(5);
    sim.state_mut().copy_from_slice(settle.state());
    let dy = sim.derivative(&drive);
    for l in 2..=3 {
        let engine = sim.layout().omega(l).view(dy.as_slice()).into_owned();
        // the discrete step, and how much of it is the ridge decay `−Σ_b rate r σ² Ω/(‖Δa_b‖² + r σ²)`
        let r = ridge * sigma * sigma;
        let mut discrete = DMatrix::zeros(engine.nrows(), engine.ncols());
        let mut decay_rate = 0.0;
        for (b, ex) in exs.iter().enumerate() {
            let pass = BatchPass::of_one(&net.forward(&ex.x));
            let xi = drive.probe[l - 2].columns(b, 1) / sigma;
            let (probe, da) = difference_probe(&net, &pass, l, &xi, sigma);
            discrete += decoder_update(net.omega(l), &probe, &da, rate, r);
            decay_rate += rate * r / (da.norm_squared() + r);
        }
        let without_ridge = &discrete + net.omega(l) * decay_rate;
        let rel = (&engine - &discrete).norm() / discrete.norm();
        eprintln!("Ω_{l}: engine against the discrete step, relative {rel:e}");
        assert!(rel < 1e-8, "Ω_{l}: relative difference {rel:e}");
        // the ridge decay is a real part of the step here: leaving it out is far off
        let off = (&engine - &without_ridge).norm() / discrete.norm();
        assert!(off > 1e-2, "Ω_{l}: the ridge term is {off:e} of the step");
    }
}

#[test]
fn the_decoder_loss_settings_are_checked() {
    // the message of the configuration `config(loss)` with `edit` applied
    let refusal = |loss: DecoderLoss, edit: &dyn Fn(&mut EngineConfig)| {
        let mut cfg = config(loss);
        edit(&mut cfg);
        cfg.validate(2).unwrap_err().to_string()
    };
    let e = refusal(DecoderLoss::DifferenceReconstruction, &|c| {
        c.dynamics.decoder.noise = 0.0
    });
    assert!(
        e.contains("dynamics.decoder.noise") && e.contains("> 0"),
        "{e}"
    );
    let e = refusal(DecoderLoss::Regular, &|c| c.dynamics.decoder.noise = 0.1);
    assert!(e.contains("dynamics.decoder.noise"), "{e}");
    let e = refusal(DecoderLoss::Regular, &|c| c.dynamics.decoder.ridge = 0.1);
    assert!(
        e.contains("dynamics.decoder.ridge") && e.contains("gamma"),
        "{e}"
    );
}
