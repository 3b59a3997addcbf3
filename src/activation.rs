//! Pointwise non-linearities `σ_l` of the presynaptic vector `a_l(v) = [σ_l(v); 1]`
//! (docs/MODEL.md §1; seed paper Sec. 2–3, where `f_l(h_{l-1}) = W_l σ(h_{l-1})`).

use serde::{Deserialize, Serialize};

/// `tanh x`, within 2 units in the last place of the correctly rounded value (Cephes' `tanh`:
/// a rational approximation `x + x³P(x²)/Q(x²)` for `|x| < 0.625`, else `1 − 2/(e^{2|x|} + 1)`
/// with a Padé `exp`), written without branches or calls so that a loop over a slice
/// vectorises; the same arithmetic on every processor. Every `tanh` of dtpsim is this one
/// (docs/MODEL.md §1); it is about 4× faster than the C library's in the engine's loops.
///
/// ```
/// use dtpsim::activation::tanh;
/// for x in [-3.0, -0.7, -1e-9, 0.0, 0.3, 0.625, 5.0, 30.0] {
///     assert!((tanh(x) - x.tanh()).abs() <= 2.0 * f64::EPSILON * x.tanh().abs());
/// }
/// assert!(tanh(f64::NAN).is_nan());
/// assert_eq!(tanh(f64::INFINITY), 1.0);
/// ```
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let ax = x.abs();
    // |x| ≥ 0.625: 1 − 2/(z + 1), z = e^{2|x|} (tanh is 1 in double precision beyond 22)
    let z = exp_pade(2.0 * ax.min(22.0));
    let large = 1.0 - 2.0 / (z + 1.0);
    // |x| < 0.625: x + x·x²·P(x²)/Q(x²)
    let s = x * x;
    let p =
        (-9.643_991_794_250_523e-1 * s - 9.928_772_310_019_186e1) * s - 1.614_687_684_417_084_5e3;
    let q = ((s + 1.128_116_784_916_329_3e2) * s + 2.235_488_390_601_004_5e3) * s
        + 4.844_063_053_251_255e3;
    let small = ax + ax * s * (p / q);
    let t = (if ax < 0.625 { small } else { large }).copysign(x);
    if x.is_nan() {
        x
    } else {
        t
    }
}

/// `eᵗ` for `0 ≤ t ≤ 44` (Cephes' `exp`): `t = k ln 2 + r` with `|r| ≤ ln 2 / 2` (Cody–Waite,
/// `k` rounded by the 1.5·2⁵² shift), `eʳ = 1 + 2rP(r²)/(Q(r²) − rP(r²))`, times `2ᵏ` built
/// in the exponent bits.
#[inline(always)]
fn exp_pade(t: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_457_519_531_25e-1;
    const LN2_LO: f64 = 1.428_606_820_309_417_3e-6;
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵²
    let shifted = t * LOG2E + SHIFT;
    let k = shifted - SHIFT;
    let r = t - k * LN2_HI - k * LN2_LO;
    let r2 = r * r;
    let p = r * ((1.261_771_930_748_105_9e-4 * r2 + 3.029_944_077_074_419_6e-2) * r2 + 1.0);
    let q = ((3.001_985_051_386_644_5e-6 * r2 + 2.524_483_403_496_841e-3) * r2
        + 2.272_655_482_081_550_3e-1)
        * r2
        + 2.0;
    let e_r = 1.0 + 2.0 * (p / (q - p));
    // k (0 ≤ k ≤ 64) sits in the low bits of `shifted`
    let k_bits = shifted.to_bits().wrapping_sub(SHIFT.to_bits());
    e_r * f64::from_bits(k_bits.wrapping_add(1023) << 52)
}

/// A pointwise activation function with its derivative.
///
/// ```
/// use dtpsim::Activation;
/// assert_eq!(Activation::Linear.apply(-2.0), -2.0);
/// assert!((Activation::Tanh.derivative(0.0) - 1.0).abs() < 1e-15);
/// // softplus(0) = ln 2, softplus'(0) = 1/2
/// assert!((Activation::Softplus.apply(0.0) - 2f64.ln()).abs() < 1e-15);
/// assert!((Activation::Softplus.derivative(0.0) - 0.5).abs() < 1e-15);
/// ```
///
/// In JSON an activation is a string: `"tanh"`, `"linear"`, `"softplus"`, `"leaky_relu"`
/// (slope 0.01) or `"leaky_relu:0.1"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum Activation {
    /// `σ(v) = tanh v` (the default for hidden layers).
    #[default]
    Tanh,
    /// `σ(v) = v`.
    Linear,
    /// `σ(v) = ln(1 + eᵛ)`.
    Softplus,
    /// `σ(v) = v` for `v ≥ 0`, `slope·v` otherwise.
    LeakyRelu {
        /// Slope on the negative side (0.01 is customary).
        slope: f64,
    },
}

impl Activation {
    /// `σ(v)`.
    #[inline]
    pub fn apply(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => tanh(v),
            Activation::Linear => v,
            Activation::Softplus => {
                // numerically stable ln(1 + e^v)
                if v > 30.0 {
                    v
                } else {
                    v.max(0.0) + (-v.abs()).exp().ln_1p()
                }
            }
            Activation::LeakyRelu { slope } => {
                if v >= 0.0 {
                    v
                } else {
                    slope * v
                }
            }
        }
    }

    /// `dst[i] = σ(src[i])` over two slices of one length (`tanh` four lanes at a time under
    /// AVX2; the same values as [`Activation::apply`]).
    pub fn apply_into(self, src: &[f64], dst: &mut [f64]) {
        match self {
            Activation::Tanh => crate::linalg::tanh_into(dst, src),
            _ => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = self.apply(v);
                }
            }
        }
    }

    /// `σ'(v)`.
    #[inline]
    pub fn derivative(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => {
                let t = tanh(v);
                1.0 - t * t
            }
            Activation::Linear => 1.0,
            Activation::Softplus => 1.0 / (1.0 + (-v).exp()),
            Activation::LeakyRelu { slope } => {
                if v >= 0.0 {
                    1.0
                } else {
                    slope
                }
            }
        }
    }

    /// Short name used in CLI flags and plots (`tanh`, `linear`, `softplus`, `leaky_relu`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Linear => "linear",
            Activation::Softplus => "softplus",
            Activation::LeakyRelu { .. } => "leaky_relu",
        }
    }

    /// Parses `tanh`, `linear`, `softplus`, `leaky_relu` (slope 0.01) or `leaky_relu:0.1`.
    pub fn parse(s: &str) -> Option<Activation> {
        match s {
            "tanh" => Some(Activation::Tanh),
            "linear" => Some(Activation::Linear),
            "softplus" => Some(Activation::Softplus),
            "leaky_relu" => Some(Activation::LeakyRelu { slope: 0.01 }),
            _ => s
                .strip_prefix("leaky_relu:")
                .and_then(|x| x.parse::<f64>().ok())
                .filter(|slope| slope.is_finite())
                .map(|slope| Activation::LeakyRelu { slope }),
        }
    }
}

impl schemars::JsonSchema for Activation {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Activation".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "tanh, linear, softplus, leaky_relu (slope 0.01) or leaky_relu:<slope>",
            "pattern": "^(tanh|linear|softplus|leaky_relu(:[-+0-9.eE]+)?)$"
        })
    }
}

impl TryFrom<String> for Activation {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Activation::parse(&s).ok_or_else(|| {
            format!("unknown activation \"{s}\"; use tanh, linear, softplus, leaky_relu or leaky_relu:<slope>")
        })
    }
}

impl From<Activation> for String {
    fn from(a: Activation) -> String {
        match a {
            Activation::LeakyRelu { slope } if slope != 0.01 => format!("leaky_relu:{slope}"),
            other => other.name().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`tanh`] against the C library's (itself within 1 ulp): at most 2 ulp apart on a dense
    /// grid over [−25, 25], at tiny arguments, and at the switch point 0.625; odd; NaN stays
    /// NaN; ±∞ gives ±1.
    #[test]
    fn tanh_is_within_two_ulp_of_the_c_library() {
        let ulps = |x: f64| {
            let (mine, libm) = (tanh(x), x.tanh());
            if mine == libm {
                0.0
            } else {
                ((mine - libm) / (libm.abs() * f64::EPSILON)).abs()
            }
        };
        let n = 2_000_000;
        let mut worst = (0.0, 0.0);
        let grid = (0..=n).map(|i| -25.0 + 50.0 * i as f64 / n as f64 + 1.3e-9);
        let tiny = (0..2000).map(|i| 1e-300 * 1.4f64.powi(i));
        let edge = (-50..=50).map(|i| 0.625 + i as f64 * f64::EPSILON);
        for x in grid.chain(tiny).chain(edge) {
            for x in [x, -x] {
                let u = ulps(x);
                if u > worst.0 {
                    worst = (u, x);
                }
                assert_eq!(tanh(-x).to_bits(), (-tanh(x)).to_bits(), "odd at {x}");
            }
        }
        assert!(worst.0 <= 2.0, "{} ulp at x = {}", worst.0, worst.1);
        assert!(tanh(f64::NAN).is_nan());
        assert_eq!(tanh(f64::INFINITY), 1.0);
        assert_eq!(tanh(f64::NEG_INFINITY), -1.0);
        assert_eq!(tanh(0.0).to_bits(), 0f64.to_bits());
        assert_eq!(tanh(-0.0).to_bits(), (-0f64).to_bits());
    }

    #[test]
    fn derivatives_match_central_differences() {
        let acts = [
            Activation::Tanh,
            Activation::Linear,
            Activation::Softplus,
            Activation::LeakyRelu { slope: 0.1 },
        ];
        for act in acts {
            for &v in &[-2.3, -0.7, 0.4, 1.9] {
                let h = 1e-6;
                let fd = (act.apply(v + h) - act.apply(v - h)) / (2.0 * h);
                assert!((fd - act.derivative(v)).abs() < 1e-8, "{act:?} at {v}");
            }
        }
    }

    #[test]
    fn parse_round_trips_names() {
        for s in ["tanh", "linear", "softplus", "leaky_relu"] {
            assert_eq!(Activation::parse(s).unwrap().name(), s);
        }
        assert_eq!(
            Activation::parse("leaky_relu:0.2"),
            Some(Activation::LeakyRelu { slope: 0.2 })
        );
        assert_eq!(Activation::parse("relu6"), None);
        let json = serde_json::to_string(&Activation::LeakyRelu { slope: 0.2 }).unwrap();
        assert_eq!(json, "\"leaky_relu:0.2\"");
        let back: Activation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Activation::LeakyRelu { slope: 0.2 });
        assert!(serde_json::from_str::<Activation>("\"relu6\"").is_err());
    }
}
