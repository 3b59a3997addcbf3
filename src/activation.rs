//! Pointwise non-linearities `σ_l` of the presynaptic vector `a_l(v) = [σ_l(v); 1]`
//! (docs/MODEL.md §1; seed paper Sec. 2–3, where `f_l(h_{l-1}) = W_l σ(h_{l-1})`).

use serde::{Deserialize, Serialize};

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
            Activation::Tanh => v.tanh(),
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

    /// `σ'(v)`.
    #[inline]
    pub fn derivative(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => {
                let t = v.tanh();
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
