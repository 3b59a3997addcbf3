//! Butcher tableaux of the explicit Runge–Kutta methods the low-rank path runs, with the
//! coefficients `ode_solvers` 0.6.2 uses (its tables are private to the crate), so that both
//! paths integrate with the same method.
//!
//! A step from `y_0` with stages `k_s = F(t + c_s h, y_0 + h Σ_{j<s} a_{sj} k_j)` gives
//! `y_1 = y_0 + h Σ_s b_s k_s` and, for an embedded pair, the error estimate
//! `err = h Σ_s e_s k_s`.

/// Most stages of any method here (Dopri5's 7, the last one FSAL).
pub const MAX_STAGES: usize = 7;

/// An explicit Runge–Kutta method.
#[derive(Debug, Clone, PartialEq)]
pub struct Tableau {
    /// Number of stages `S`.
    pub stages: usize,
    /// `a[s][j]`, `j < s`.
    pub a: [[f64; MAX_STAGES]; MAX_STAGES],
    /// Solution weights `b_s`.
    pub b: [f64; MAX_STAGES],
    /// Nodes `c_s`.
    pub c: [f64; MAX_STAGES],
    /// Error weights `e_s = b_s − b̂_s` of an embedded pair.
    pub e: Option<[f64; MAX_STAGES]>,
    /// First same as last: the last stage is evaluated at `y_1`, so it is the next step's
    /// first stage (`a[S−1] = b`).
    pub fsal: bool,
    /// Exponent of the error in the initial-step heuristic (`1/(order + 1)`).
    pub order: u32,
}

/// Dormand–Prince 5(4) (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.5): 7 stages, FSAL,
/// with the 4th-order dense output of [`dopri5_dense_weights`].
pub fn dopri5() -> Tableau {
    let mut a = [[0.0; MAX_STAGES]; MAX_STAGES];
    a[1][..1].copy_from_slice(&[1.0 / 5.0]);
    a[2][..2].copy_from_slice(&[3.0 / 40.0, 9.0 / 40.0]);
    a[3][..3].copy_from_slice(&[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0]);
    a[4][..4].copy_from_slice(&[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ]);
    a[5][..5].copy_from_slice(&[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ]);
    let b = [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ];
    a[6] = b;
    Tableau {
        stages: 7,
        a,
        b,
        c: [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0],
        e: Some([
            71.0 / 57600.0,
            0.0,
            -71.0 / 16695.0,
            71.0 / 1920.0,
            -17253.0 / 339200.0,
            22.0 / 525.0,
            -1.0 / 40.0,
        ]),
        fsal: true,
        order: 5,
    }
}

/// The classical Runge–Kutta method of order 4 (fixed step).
pub fn rk4() -> Tableau {
    let mut a = [[0.0; MAX_STAGES]; MAX_STAGES];
    a[1][0] = 0.5;
    a[2][1] = 0.5;
    a[3][2] = 1.0;
    Tableau {
        stages: 4,
        a,
        b: [1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0, 0.0, 0.0, 0.0],
        c: [0.0, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0],
        e: None,
        fsal: false,
        order: 4,
    }
}

/// Dopri5's dense output (the interpolant `ode_solvers` builds from its `rcont` vectors,
/// Hairer's `CONTD5`) written as stage weights: `y(t + θh) = y_0 + h Σ_s w_s(θ) k_s`, with
/// `w_s(θ) = θ b_s + θθ₁(δ_{s1} − b_s) + θ²θ₁(2b_s − δ_{s1} − δ_{s7}) + θ²θ₁² d_s`, `θ₁ = 1 − θ`.
/// It is of order 4, and exact at `θ = 0` and `θ = 1`.
pub fn dopri5_dense_weights(theta: f64) -> [f64; MAX_STAGES] {
    const D: [f64; MAX_STAGES] = [
        -12715105075.0 / 11282082432.0,
        0.0,
        87487479700.0 / 32700410799.0,
        -10690763975.0 / 1880347072.0,
        701980252875.0 / 199316789632.0,
        -1453857185.0 / 822651844.0,
        69997945.0 / 29380423.0,
    ];
    let b = dopri5().b;
    let t1 = 1.0 - theta;
    let mut w = [0.0; MAX_STAGES];
    for s in 0..MAX_STAGES {
        let first = if s == 0 { 1.0 } else { 0.0 };
        let last = if s == MAX_STAGES - 1 { 1.0 } else { 0.0 };
        w[s] = theta * b[s]
            + theta * t1 * (first - b[s])
            + theta * theta * t1 * (2.0 * b[s] - first - last)
            + theta * theta * t1 * t1 * D[s];
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_the_nodes_and_weights_to_one() {
        for tab in [dopri5(), rk4()] {
            for s in 0..tab.stages {
                let row: f64 = tab.a[s].iter().sum();
                assert!((row - tab.c[s]).abs() < 1e-14, "row {s}");
            }
            assert!((tab.b.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        }
        let e = dopri5().e.expect("embedded pair");
        assert!(e.iter().sum::<f64>().abs() < 1e-14);
    }

    #[test]
    fn dense_output_is_exact_at_the_ends_of_the_step() {
        assert!(dopri5_dense_weights(0.0).iter().all(|w| *w == 0.0));
        let (w, b) = (dopri5_dense_weights(1.0), dopri5().b);
        for s in 0..MAX_STAGES {
            assert!((w[s] - b[s]).abs() < 1e-15, "stage {s}");
        }
    }
}
