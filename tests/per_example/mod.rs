//! A per-example reference of the discrete trainer, written from docs/MODEL.md §3–§4 with
//! vector operations only: per example one forward pass, one target relaxation and one outer
//! product per layer, summed and divided by the mini-batch size. It repeats `train_one`'s
//! schedule (example order, decoder warm-up, noise seeds and draw order) so that the batched
//! trainer can be compared with it number for number.

use dtpsim::data::{Dataset, EpochSampler, Example};
use dtpsim::discrete::targets::{contraction_estimate, Order, Relaxation, Scheme};
use dtpsim::discrete::train::{Algorithm, DecoderLoss, DecoderTraining, NamedAlgorithm, Optimizer};
use dtpsim::error::TargetError;
use dtpsim::scenario::Scenario;
use dtpsim::{ForwardPass, Network};
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// What the reference run ends with.
pub struct Reference {
    pub net: Network,
    /// Mean loss over all presented examples, each before its mini-batch's update.
    pub train_loss: f64,
    /// Per hidden layer, the mean measured contraction `α_l` over the iterated relaxations
    /// (NaN if none).
    pub alpha: Vec<f64>,
    /// Serial steps of every relaxation, grouped by mini-batch.
    pub steps: Vec<Vec<usize>>,
    pub error: Option<String>,
    /// Position in the example stream (warm-up excluded) of the example whose relaxation
    /// diverged.
    pub diverged_example: Option<usize>,
}

/// `d_l = τ_l − h_l` for `l = 0..=L`, and the increment norms (docs/MODEL.md §3).
struct Relaxed {
    d: Vec<DVector<f64>>,
    increments: Vec<f64>,
    /// Per target layer, its own increment norms (iterated schemes only).
    layer_increments: Vec<Vec<f64>>,
}

impl Relaxed {
    /// The measured contraction `α_l` per target layer `l = 0..=L`.
    fn alpha(&self) -> Vec<f64> {
        self.layer_increments
            .iter()
            .map(|inc| contraction_estimate(inc))
            .collect()
    }
}

/// Trains `named` example by example with the schedule of `cfg`.
pub fn train(cfg: &Scenario, named: &NamedAlgorithm, data: &Dataset) -> Reference {
    let algorithm = &named.algorithm;
    let mut net = cfg.initial_network().unwrap();
    let mut order_rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0x9e37_79b9));
    let mut sampler = EpochSampler::new(data.train.len());
    let mut next = |rng: &mut ChaCha8Rng| &data.train[sampler.next_index(rng)];
    let (decoder, rates, optimizer) = match algorithm {
        Algorithm::Bp { lr, optimizer } => (None, lr, optimizer),
        Algorithm::Dtp {
            decoder,
            lr,
            optimizer,
            ..
        } => (Some(*decoder), lr, optimizer),
        Algorithm::Dtp1 {
            decoder,
            eta,
            optimizer,
            ..
        } => (Some(*decoder), eta, optimizer),
    };
    if let Some(dec) = &decoder {
        let mut noise = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xdec0);
        for _ in 0..cfg.schedule.warmup_trials {
            let batch: Vec<&Example> = (0..cfg.schedule.batch)
                .map(|_| next(&mut order_rng))
                .collect();
            train_decoders(&mut net, &batch, dec, &mut noise);
        }
    }
    let mut noise = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xdec1);
    let mut adam = AdamState::new(&net);
    let depth = net.depth();
    let (mut seen, mut loss_sum) = (0, 0.0);
    let mut alpha = vec![(0.0, 0usize); depth - 1];
    let mut steps = Vec::new();
    let (mut error, mut diverged_example) = (None, None);
    'batches: while seen < cfg.schedule.trials * cfg.schedule.batch {
        let b = cfg.schedule.batch;
        let batch: Vec<&Example> = (0..b).map(|_| next(&mut order_rng)).collect();
        for ex in &batch {
            loss_sum += net.arch().loss.value(&net.predict(&ex.x), &ex.y);
        }
        if let Some(dec) = &decoder {
            train_decoders(&mut net, &batch, dec, &mut noise);
        }
        let mut sum: Vec<DMatrix<f64>> = net.encoders().iter().map(|w| w * 0.0).collect();
        let mut batch_steps = Vec::new();
        for (i, ex) in batch.iter().enumerate() {
            let fwd = net.forward(&ex.x);
            let grad = net.arch().loss.gradient(fwd.output(), &ex.y);
            let (beta, relaxation) = match algorithm {
                Algorithm::Bp { .. } => {
                    for (s, g) in sum.iter_mut().zip(bp_gradient(&net, &fwd, grad)) {
                        *s += g;
                    }
                    continue;
                }
                Algorithm::Dtp { beta, .. } => (*beta, Relaxation::difference()),
                Algorithm::Dtp1 {
                    beta, relaxation, ..
                } => (*beta, *relaxation),
            };
            let t = match relax(&net, &fwd, grad * -beta, &relaxation) {
                Ok(t) => t,
                Err(e) => {
                    error = Some(format!("{}: in trial {}: {e}", named.name, seen / b));
                    diverged_example = Some(seen + i);
                    break 'batches;
                }
            };
            batch_steps.push(t.increments.len());
            // the trainer reports the contraction of DTP1's iterated relaxations only
            let dtp1 = matches!(algorithm, Algorithm::Dtp1 { relaxation, .. } if relaxation.scheme != Scheme::Difference);
            for (l, a) in t.alpha().into_iter().enumerate().filter(|_| dtp1) {
                if (1..depth).contains(&l) && a.is_finite() {
                    alpha[l - 1].0 += a;
                    alpha[l - 1].1 += 1;
                }
            }
            // the update at unit rate (docs/MODEL.md §4)
            let out2 = t.d[depth].norm_squared();
            for l in 1..=depth {
                let a = &fwd.a[l - 1];
                let dw = &t.d[l] * a.transpose();
                sum[l - 1] += match algorithm {
                    Algorithm::Dtp { .. } => dw,
                    Algorithm::Dtp1 { influence, .. } => {
                        let d2 = t.d[l].norm_squared();
                        let s = match (*influence, d2 > 0.0) {
                            (false, _) => 1.0,
                            (true, true) => out2 / d2,
                            (true, false) => 0.0,
                        };
                        let n2 = a.norm_squared();
                        if n2 == 0.0 {
                            dw * 0.0
                        } else {
                            dw * (s / n2)
                        }
                    }
                    Algorithm::Bp { .. } => unreachable!("BP continued above"),
                };
            }
        }
        steps.push(batch_steps);
        // the unit-rate update, a descent direction (BP: minus the gradient): SGD takes the
        // examples' sum (rates per example), Adam their mean as its gradient
        let sign = if matches!(algorithm, Algorithm::Bp { .. }) {
            -1.0
        } else {
            1.0
        };
        let steps_w: Vec<DMatrix<f64>> = match optimizer {
            Optimizer::Adam => {
                let lrs: Vec<f64> = (1..=depth).map(|l| rates.get(l)).collect();
                adam.step(&lrs, sum.iter().map(|s| s * (-sign / b as f64)).collect())
            }
            Optimizer::Sgd => (1..=depth)
                .map(|l| &sum[l - 1] * (sign * rates.get(l)))
                .collect(),
        };
        for (l, s) in steps_w.into_iter().enumerate() {
            *net.w_mut(l + 1) += s;
        }
        seen += b;
    }
    Reference {
        net,
        train_loss: loss_sum / seen.max(1) as f64,
        alpha: alpha.iter().map(|(s, n)| s / *n as f64).collect(),
        steps,
        error,
        diverged_example,
    }
}

/// `ΔΩ_l = rate Σ [(x − Ω_l a) aᵀ − r Ω_l]/(‖a‖² + r)` (docs/MODEL.md §4): regular,
/// `x = h̃ = h_{l−1} + σξ`, `a = a_l(f_l(h̃))` (σ = 0: `x = h_{l−1}`, `a = a_l(h_l)`),
/// `r = r_Ω`; difference reconstruction, `x = σξ`, `a = a_l(f_l(h_{l−1} + σξ)) − a_l(h_l)`,
/// `r = r_Ω σ²`. Noise drawn example by example, layer by layer, unit by unit.
fn train_decoders(
    net: &mut Network,
    batch: &[&Example],
    dec: &DecoderTraining,
    rng: &mut ChaCha8Rng,
) {
    if dec.rate == 0.0 || net.depth() < 2 {
        return;
    }
    let mut sum: Vec<DMatrix<f64>> = net.decoders().iter().map(|m| m * 0.0).collect();
    for ex in batch {
        let fwd = net.forward(&ex.x);
        for l in 2..=net.depth() {
            let probe = if dec.noise > 0.0 {
                fwd.h[l - 1].map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    dec.noise * z
                })
            } else {
                fwd.h[l - 1].map(|_| 0.0)
            };
            let noisy = &fwd.h[l - 1] + &probe;
            let read = net.presyn(l, &net.encode(l, &noisy));
            let (target, a, ridge) = match dec.loss {
                DecoderLoss::Regular if dec.noise > 0.0 => (noisy, read, dec.ridge),
                DecoderLoss::Regular => (fwd.h[l - 1].clone(), fwd.a[l].clone(), dec.ridge),
                DecoderLoss::DifferenceReconstruction => {
                    (probe, read - &fwd.a[l], dec.ridge * dec.noise * dec.noise)
                }
            };
            let omega = net.omega(l);
            let curvature = (a.norm_squared() + ridge).max(f64::MIN_POSITIVE);
            sum[l - 2] += ((target - omega * &a) * a.transpose() - omega * ridge) / curvature;
        }
    }
    for l in 2..=net.depth() {
        *net.omega_mut(l) += &sum[l - 2] * dec.rate;
    }
}

/// `∂ℓ/∂W_l = δ_l a_{l−1}ᵀ`, `δ_{l−1} = diag(σ′(h_{l−1})) W_l[:, :n]ᵀ δ_l` (docs/MODEL.md §4).
fn bp_gradient(net: &Network, fwd: &ForwardPass, grad: DVector<f64>) -> Vec<DMatrix<f64>> {
    let depth = net.depth();
    let mut delta = grad;
    let mut out = vec![DMatrix::zeros(0, 0); depth];
    for l in (1..=depth).rev() {
        out[l - 1] = &delta * fwd.a[l - 1].transpose();
        let n = net.width(l - 1);
        let act = net.arch().activations[l - 1];
        let back = net.w(l).columns(0, n).transpose() * &delta;
        delta = back.zip_map(&fwd.h[l - 1], |g, h| g * act.derivative(h));
    }
    out
}

/// The relaxation of docs/MODEL.md §3 for one example, with its early stop and divergence
/// check.
fn relax(
    net: &Network,
    fwd: &ForwardPass,
    d_out: DVector<f64>,
    r: &Relaxation,
) -> Result<Relaxed, TargetError> {
    let depth = net.depth();
    let mut d: Vec<DVector<f64>> = (0..=depth).map(|l| DVector::zeros(net.width(l))).collect();
    d[depth] = d_out;
    let mut u = d.iter().map(|v| v * 0.0).collect::<Vec<_>>();
    let (iterations, order) = match r.scheme {
        Scheme::Difference => (1, Order::Sequential),
        _ => (r.iterations, r.order),
    };
    let input_side = r.scheme == Scheme::DecoderInput;
    let mut increments = Vec::new();
    let mut layer_increments = vec![Vec::new(); depth + 1];
    let iterated = r.scheme != Scheme::Difference;
    let check = |norm: f64, first: f64, layer, iteration| {
        if !norm.is_finite() || (first > 0.0 && norm > 1e8 * first) {
            Err(TargetError::Diverged {
                layer,
                iteration,
                norm,
            })
        } else {
            Ok(())
        }
    };
    // the increment of layer l: of u_l (decoder_input) or of d_{l−1} (the others)
    let increment = |d: &[DVector<f64>], u: &[DVector<f64>], l: usize| {
        let g = |v: &DVector<f64>| net.decode(l, v);
        let f = |v: &DVector<f64>| net.encode(l, v);
        if input_side {
            let below = g(&(&fwd.h[l] + &u[l])) - g(&fwd.h[l]);
            &d[l] - (f(&(&fwd.h[l - 1] + below)) - &fwd.h[l]) - &u[l] * r.leak
        } else {
            g(&(&fwd.h[l] + &d[l])) - g(&f(&(&fwd.h[l - 1] + &d[l - 1]))) - &d[l - 1] * r.leak
        }
    };
    let target_below = |u: &[DVector<f64>], l: usize| {
        net.decode(l, &(&fwd.h[l] + &u[l])) - net.decode(l, &fwd.h[l])
    };
    match order {
        Order::Sequential => {
            for l in (2..=depth).rev() {
                let mut first = 0.0;
                for it in 1..=iterations {
                    let inc = increment(&d, &u, l);
                    if input_side {
                        u[l] += &inc;
                        d[l - 1] = target_below(&u, l);
                    } else {
                        d[l - 1] += &inc;
                    }
                    let norm = inc.norm();
                    if it == 1 {
                        first = norm;
                    }
                    check(norm, first, l - 1, it)?;
                    increments.push(norm);
                    if iterated {
                        layer_increments[l - 1].push(norm);
                    }
                    if norm <= r.tolerance {
                        break;
                    }
                }
            }
        }
        Order::Parallel => {
            let mut first = 0.0;
            for it in 1..=iterations {
                let incs: Vec<DVector<f64>> = (2..=depth).map(|l| increment(&d, &u, l)).collect();
                let mut total = 0.0;
                let mut worst = (0.0, 0);
                for (l, inc) in (2..=depth).zip(incs) {
                    let n2 = inc.norm_squared();
                    if iterated {
                        layer_increments[l - 1].push(n2.sqrt());
                    }
                    total += n2;
                    if n2 >= worst.0 {
                        worst = (n2, l - 1);
                    }
                    if input_side {
                        u[l] += inc;
                    } else {
                        d[l - 1] += inc;
                    }
                }
                if input_side {
                    for l in 2..=depth {
                        d[l - 1] = target_below(&u, l);
                    }
                }
                let norm: f64 = total.sqrt();
                if it == 1 {
                    first = norm;
                }
                check(norm, first, worst.1, it)?;
                increments.push(norm);
                if norm <= r.tolerance && it > depth {
                    break;
                }
            }
        }
    }
    Ok(Relaxed {
        d,
        increments,
        layer_increments,
    })
}

/// Adam with bias correction (`β₁ = 0.9`, `β₂ = 0.999`, `ε = 10⁻⁸`), step size `lr_l` per
/// layer.
struct AdamState {
    t: i32,
    m: Vec<DMatrix<f64>>,
    v: Vec<DMatrix<f64>>,
}

impl AdamState {
    fn new(net: &Network) -> Self {
        let zeros: Vec<_> = net.encoders().iter().map(|w| w * 0.0).collect();
        AdamState {
            t: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    fn step(&mut self, lrs: &[f64], grads: Vec<DMatrix<f64>>) -> Vec<DMatrix<f64>> {
        self.t += 1;
        let (c1, c2) = (1.0 - 0.9f64.powi(self.t), 1.0 - 0.999f64.powi(self.t));
        let mut out = Vec::new();
        for (((m, v), g), lr) in self.m.iter_mut().zip(&mut self.v).zip(grads).zip(lrs) {
            *m = &*m * 0.9 + &g * (1.0 - 0.9);
            *v = &*v * 0.999 + g.component_mul(&g) * (1.0 - 0.999);
            out.push(m.zip_map(v, |mi, vi| -lr * (mi / c1) / ((vi / c2).sqrt() + 1e-8)));
        }
        out
    }
}
