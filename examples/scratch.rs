use dtpsim::theory::*;
use dtpsim::discrete::targets::*;
use nalgebra::DMatrix;
fn main() {
    for &gain in &[0.5, 0.8, 1.0, 1.2] {
        for &samples in &[400usize] {
            let net = fitted_tanh(8, 2, gain, 33, samples);
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
            let mut rhos = vec![];
            for _ in 0..10 {
                let x = gaussian_vector(8, 1.0, &mut rng);
                let fwd = net.forward(&x);
                let h1 = &fwd.h[1];
                let jac = DMatrix::identity(8, 8) - net.decoder_jacobian(2, &net.encode(2, h1)) * net.encoder_jacobian(2, h1);
                rhos.push(spectral_radius(&jac));
            }
            println!("gain {gain} samples {samples}: rho {:?}", rhos.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>());
        }
    }
}
