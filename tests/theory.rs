//! The theory suite T1–T5 (docs/MODEL.md §7) as tests: each fails if the equation it checks is wrong.

use dtpsim::discrete::targets::{Relaxation, Scheme};
use dtpsim::error::TargetError;
use dtpsim::theory::*;

#[test]
fn t1_dtp1_update_moves_layer_exactly_to_its_target() {
    let worst = t1_realises_target();
    assert!(worst <= 1e-9, "T1 relative error {worst:e}");
}

#[test]
fn t2_exact_inverses_give_the_gauss_newton_direction_and_not_bp() {
    let t2 = t2_gauss_newton();
    assert!(
        t2.cos_gn_exact >= 1.0 - 1e-6,
        "cos(DTP1, GN) = {}",
        t2.cos_gn_exact
    );
    assert!(
        t2.cos_bp_ill_conditioned < 0.99,
        "cos(DTP1, BP) = {}",
        t2.cos_bp_ill_conditioned
    );
    // tanh net with fitted decoders and converged iterated targets: GN alignment → 1 as β → 0
    let (beta, gn, bp) = *t2.beta_sweep.last().unwrap();
    assert!(beta <= 1e-3);
    assert!(gn >= 0.999, "cos GN at β = {beta}: {gn}");
    assert!(
        bp < gn - 0.01,
        "BP should be measurably less aligned: {bp} vs {gn}"
    );
    let (_, gn_large, _) = t2.beta_sweep[0];
    assert!(
        gn_large < gn,
        "alignment should improve as β shrinks: {gn_large} → {gn}"
    );
}

#[test]
fn t3_contraction_rate_matches_the_spectral_radius() {
    for scheme in [Scheme::DecoderOutput, Scheme::DecoderInput] {
        let c = t3_linear(0.5, scheme, 40).unwrap();
        let rel = (c.measured - c.predicted).abs() / c.predicted;
        assert!(
            rel <= 0.1,
            "{scheme:?}: rate {} vs {}",
            c.measured,
            c.predicted
        );
        // and ‖ε_t‖ really is exponential: 40 iterations shrink it by ~0.5^39
        let shrink = c.increments.last().unwrap() / c.increments[0];
        assert!(
            shrink < 1e-9 && shrink > 1e-14,
            "{scheme:?}: shrink {shrink:e}"
        );
    }
    let c = t3_tanh();
    assert!(
        c.predicted > 0.1 && c.predicted < 0.95,
        "case should contract visibly: ρ = {}",
        c.predicted
    );
    assert!(
        (c.measured - c.predicted).abs() / c.predicted <= 0.1,
        "tanh: rate {} vs ρ {}",
        c.measured,
        c.predicted
    );
}

#[test]
fn t3_divergence_is_reported_not_propagated() {
    match t3_linear(1.3, Scheme::DecoderOutput, 500) {
        Err(TargetError::Diverged {
            layer,
            iteration,
            norm,
        }) => {
            assert_eq!(layer, 1);
            assert!(
                norm.is_finite(),
                "diverged with finite evidence, not NaN: {norm}"
            );
            // 1e8 growth at rate 1.3 takes about ln(1e8)/ln(1.3) ≈ 70 iterations
            assert!((50..120).contains(&iteration), "iteration {iteration}");
        }
        other => panic!("expected a divergence error, got {other:?}"),
    }
    // just below 1 it converges, however slowly
    assert!(t3_linear(0.95, Scheme::DecoderOutput, 500).is_ok());
}

#[test]
fn t4_parallel_sweeps_reach_the_sequential_fixed_point_sooner() {
    let t4 = t4_parallel(1e-8);
    assert!(
        t4.distance <= 1e-8,
        "parallel fixed point differs by {:e}",
        t4.distance
    );
    assert!(
        t4.parallel_sweeps < t4.sequential_steps,
        "{} sweeps vs {} sequential steps",
        t4.parallel_sweeps,
        t4.sequential_steps
    );
}

#[test]
fn t5_influence_scaling_moves_layers_in_proportion_to_their_influence() {
    let lin = linear_invertible(6, 4, 4.0, 52);
    let t5 = t5_influence(&lin, 0.01, &Relaxation::difference());
    assert!(t5.max_rel_error <= 1e-4, "linear: {:e}", t5.max_rel_error);
    // the layers really differ in influence, so the check is not vacuous
    let infl: Vec<f64> = t5.layers.iter().map(|l| l.3).collect();
    let spread = infl.iter().cloned().fold(0.0, f64::max)
        / infl.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(spread > 1.5, "influences {infl:?}");
    // s_L = 1
    assert_eq!(t5.layers.last().unwrap().2, 1.0);
    let tanh = fitted_tanh(8, 4, 0.5, 53, 400);
    let t5 = t5_influence(&tanh, 1e-3, &converged_relaxation());
    assert!(t5.max_rel_error <= 2e-2, "tanh: {:e}", t5.max_rel_error);
}

#[test]
fn theory_run_writes_its_plots() {
    let dir = std::env::temp_dir().join(format!("dtpsim-theory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rows, files) = run_all(Some(&dir)).unwrap();
    assert!(rows.iter().all(|r| r.pass != Some(false)), "{rows:#?}");
    for name in ["t3_contraction", "t2_alignment", "t4_parallel"] {
        for ext in ["png", "svg"] {
            let p = dir.join(format!("{name}.{ext}"));
            assert!(
                files.contains(&p) && std::fs::metadata(&p).unwrap().len() > 1000,
                "{p:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn t3e_measured_contraction_is_the_alpha_of_the_decoder_in_discrete_and_continuous_time() {
    for alpha in [0.6, 0.8] {
        let (discrete, continuous) = t3_measured_contraction(alpha).unwrap();
        assert!(
            (discrete - alpha).abs() <= 1e-6,
            "discrete α_1 = {discrete} ≠ {alpha}"
        );
        assert!(
            (continuous - alpha).abs() <= 1e-3,
            "continuous α_1 = {continuous} ≠ {alpha}"
        );
    }
}
