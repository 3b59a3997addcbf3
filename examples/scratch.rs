use dtpsim::continuous::config::*;
use dtpsim::continuous::run::run_protocol;
use dtpsim::continuous::NoObserver;
use dtpsim::data::Task;
use dtpsim::*;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gate = if args.get(1).map(|s| s.as_str()) == Some("always") {
        Gate::Always
    } else {
        Gate::Teacher
    };
    let trials: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let task = Task::TeacherStudent {
        widths: vec![10, 10, 10, 10],
        activation: Activation::Tanh,
        gain: 1.5,
    };
    let data = task.generate(2000, 300, 1).unwrap();
    let arch = Architecture::new(&[10, 10, 10, 10], Activation::Tanh, Loss::Mse).unwrap();
    let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 1).unwrap();
    let mut cfg = EngineConfig::default();
    cfg.protocol.trials = trials;
    cfg.dynamics.plasticity.gate = gate;
    let t = std::time::Instant::now();
    let out = run_protocol(
        &net,
        &cfg,
        &data,
        1,
        true,
        &mut NoObserver,
        &mut |_, _, _| {},
    )
    .unwrap();
    for r in &out.rows {
        println!(
            "{:5} t={:8.0} loss={:.4} mse={:.4} recon={:.3} res={:.3} cos={:.3} w={:?}",
            r.trial,
            r.time,
            r.test_loss,
            r.test_mse,
            r.reconstruction,
            r.relaxation_residual,
            r.update_cosine,
            r.w_norms
                .iter()
                .map(|v| (v * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
    println!(
        "{:?} err={:?} stats={:?}",
        t.elapsed(),
        out.error,
        out.stats
    );
}
