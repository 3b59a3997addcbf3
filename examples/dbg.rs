use dtpsim::continuous::config::*;
use dtpsim::continuous::*;
use dtpsim::data::Task;
use dtpsim::*;
fn main() {
    let task = Task::TeacherStudent {
        widths: vec![10, 10, 10, 10],
        activation: Activation::Tanh,
        gain: 1.5,
    };
    let data = task.generate(20, 3, 1).unwrap();
    let arch = Architecture::new(&[10, 10, 10, 10], Activation::Tanh, Loss::Mse).unwrap();
    let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 1).unwrap();
    for method in [Method::Dopri5, Method::Dop853, Method::Rk4] {
        for seg in [1.0, 5.0, 10.0] {
            let mut cfg = EngineConfig::default();
            cfg.solver.method = method;
            let mut sim = Simulation::new(&net, cfg).unwrap();
            let drive = sim.drive(&[&data.train[0]], true, false, false);
            let mut t = 0.0;
            let mut res = Ok(());
            while t < 15.0 - 1e-9 && res.is_ok() {
                res = sim.run_segment(&drive, seg, &mut NoObserver);
                t += seg;
            }
            let om = sim.layout().omega(3);
            let v = &sim.state()[om.range()];
            println!(
                "{method:?} seg {seg}: |Om3| {:.4e} {:?} steps {:?}",
                v.iter().map(|x| x * x).sum::<f64>().sqrt(),
                res.err(),
                sim.stats().solver
            );
        }
    }
}
