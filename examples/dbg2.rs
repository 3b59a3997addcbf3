use ode_solvers::dop_shared::OutputType;
use ode_solvers::{DVector, Dopri5, System};
struct Lin;
impl System<f64, DVector<f64>> for Lin {
    fn system(&self, _t: f64, y: &DVector<f64>, dy: &mut DVector<f64>) {
        for i in 0..y.len() {
            dy[i] = -y[i] * (1.0 + i as f64);
        }
    }
}
fn main() {
    for (t0, t1) in [(0.0, 10.0), (5.0, 15.0)] {
        let mut s = Dopri5::new(
            Lin,
            t0,
            t1,
            t1 - t0,
            DVector::from_element(3, 1.0),
            1e-6,
            1e-8,
        );
        s.set_output(OutputType::Dense);
        let st = s.integrate().unwrap();
        println!(
            "[{t0},{t1}] x_out {:?} y_last {:?} exact {:?} {:?}",
            s.x_out(),
            s.y_out().last().unwrap().as_slice(),
            (-(t1 - t0) as f64).exp(),
            st
        );
    }
}
