//! How close each decoder is to a local inverse of its encoder, the condition of the
//! decoder-output iteration (docs/MODEL.md §3, §4; Sec. 6.2): for weights files written by
//! `dtpsim run`, the mean over the first `n` test examples of a scenario of
//! `‖g_l′f_l′ − I‖_F/√n_{l−1}` at the forward pass, for `l = 2..L` (0 for an exact inverse,
//! 1 for `g_l′f_l′ = 0`), and the mean squared presynaptic norm `‖a_l‖²` of every layer.
//!
//! ```text
//! cargo run --release --example inverse_quality -- SCENARIO N WEIGHTS.json [WEIGHTS.json ...]
//! ```
//!
//! e.g. after the Fashion-MNIST run of the README (folder `out/fashion_mnist`):
//! `cargo run --release --example inverse_quality -- scenarios/fashion_mnist.json 200
//! out/fashion_mnist/weights_dtp1_iterated.json out/fashion_mnist/weights_dtp1_iterated_drl.json`.

// loops run over layer indices `l` as the equations do (as in the library)
#![allow(clippy::needless_range_loop)]

use dtpsim::nalgebra::DMatrix;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: inverse_quality SCENARIO N WEIGHTS.json [WEIGHTS.json ...]".into());
    }
    let path = Path::new(&args[1]);
    let text = std::fs::read_to_string(path)?;
    let scenario = dtpsim::scenario::parse_scenario_at(&text, &[], path.parent())?;
    let data = dtpsim::runner::dataset(&scenario)?;
    let n: usize = args[2].parse()?;
    let examples = &data.test[..n.min(data.test.len())];
    for file in &args[3..] {
        let net = dtpsim::weights::load(Path::new(file))?;
        let depth = net.depth();
        let mut norms = vec![0.0; depth + 1];
        let mut errors = vec![0.0; depth + 1];
        for ex in examples {
            let fwd = net.forward(&ex.x);
            for l in 0..=depth {
                norms[l] += fwd.a[l].norm_squared();
            }
            for l in 2..=depth {
                let gf =
                    net.decoder_jacobian(l, &fwd.h[l]) * net.encoder_jacobian(l, &fwd.h[l - 1]);
                let k = gf.nrows();
                errors[l] += (gf - DMatrix::<f64>::identity(k, k)).norm() / (k as f64).sqrt();
            }
        }
        let count = examples.len() as f64;
        println!("{file}");
        let norms: Vec<String> = norms.iter().map(|v| format!("{:.0}", v / count)).collect();
        println!("  mean ‖a_l‖², l = 0..{depth}: {}", norms.join(", "));
        for l in 2..=depth {
            println!("  ‖g_{l}′f_{l}′ − I‖_F/√n: {:.3}", errors[l] / count);
        }
    }
    Ok(())
}
