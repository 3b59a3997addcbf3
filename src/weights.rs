//! Weights as JSON: a network with its encoders `W_l` and decoders `Ω_l` (format in the README, "Output formats").
//!
//! Schema (`format = "dtpsim-weights"`, `version = 1`); matrices are row-major nested arrays:
//!
//! ```json
//! {
//!   "format": "dtpsim-weights", "version": 1,
//!   "architecture": { "widths": [20, 20, 20], "bias": true, "loss": "mse",
//!                     "activations": [{"kind": "linear"}, {"kind": "tanh"}, {"kind": "tanh"}] },
//!   "encoders": [ [[w11, w12, ...], ...], ... ],   // W_1 .. W_L, n_l × (n_{l-1}+1)
//!   "decoders": [ [[o11, ...], ...], ... ]         // Ω_2 .. Ω_L, n_{l-1} × (n_l+1)
//! }
//! ```

use crate::error::{IoError, ModelError};
use crate::network::{Architecture, Network};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Value of the `format` field.
pub const FORMAT: &str = "dtpsim-weights";
/// Current schema version.
pub const VERSION: u32 = 1;

/// Serialised form of a [`Network`]. `null` entries are accepted by the parser only so that
/// they can be reported as non-finite values with their position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightsFile {
    /// Always `dtpsim-weights`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Widths, activations, bias and loss.
    pub architecture: Architecture,
    /// `W_l` for `l = 1..L`, row-major (`null` marks a non-finite entry on save).
    pub encoders: Vec<Vec<Vec<Option<f64>>>>,
    /// `Ω_l` for `l = 2..L`, row-major.
    pub decoders: Vec<Vec<Vec<Option<f64>>>>,
}

fn to_rows(m: &DMatrix<f64>) -> Vec<Vec<Option<f64>>> {
    (0..m.nrows())
        .map(|r| (0..m.ncols()).map(|c| Some(m[(r, c)])).collect())
        .collect()
}

fn from_rows(what: &str, rows: &[Vec<Option<f64>>]) -> Result<DMatrix<f64>, ModelError> {
    let ncols = rows.first().map_or(0, |r| r.len());
    let mut m = DMatrix::zeros(rows.len(), ncols);
    for (r, row) in rows.iter().enumerate() {
        if row.len() != ncols {
            return Err(ModelError::RaggedRow {
                what: what.to_string(),
                row: r,
                got: row.len(),
                expected: ncols,
            });
        }
        for (c, v) in row.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => m[(r, c)] = *v,
                other => {
                    return Err(ModelError::NonFinite {
                        what: what.to_string(),
                        row: r,
                        col: c,
                        value: other.unwrap_or(f64::NAN),
                    })
                }
            }
        }
    }
    Ok(m)
}

impl WeightsFile {
    /// Captures a network.
    pub fn from_network(net: &Network) -> Self {
        WeightsFile {
            format: FORMAT.to_string(),
            version: VERSION,
            architecture: net.arch().clone(),
            encoders: net.encoders().iter().map(to_rows).collect(),
            decoders: net.decoders().iter().map(to_rows).collect(),
        }
    }

    /// Rebuilds the network, checking format, version, shapes and finiteness.
    pub fn into_network(self) -> Result<Network, ModelError> {
        if self.format != FORMAT {
            return Err(ModelError::Invalid {
                field: "format".into(),
                message: format!("expected \"{FORMAT}\", got \"{}\"", self.format),
            });
        }
        if self.version != VERSION {
            return Err(ModelError::Invalid {
                field: "version".into(),
                message: format!("this dtpsim reads version {VERSION}, got {}", self.version),
            });
        }
        let enc = self
            .encoders
            .iter()
            .enumerate()
            .map(|(i, m)| from_rows(&format!("encoders[{i}]"), m))
            .collect::<Result<Vec<_>, _>>()?;
        let dec = self
            .decoders
            .iter()
            .enumerate()
            .map(|(i, m)| from_rows(&format!("decoders[{i}]"), m))
            .collect::<Result<Vec<_>, _>>()?;
        Network::from_parts(self.architecture, enc, dec)
    }
}

/// Writes `net` to `path` as pretty JSON. Refuses non-finite weights.
pub fn save(net: &Network, path: &Path) -> Result<(), IoError> {
    for (i, w) in net.encoders().iter().enumerate() {
        crate::network::check_finite(&format!("encoders[{i}]"), w).map_err(|cause| {
            IoError::Model {
                path: path.to_path_buf(),
                cause,
            }
        })?;
    }
    let text =
        serde_json::to_string(&WeightsFile::from_network(net)).map_err(|cause| IoError::Json {
            path: path.to_path_buf(),
            what: "weights",
            cause,
        })?;
    crate::record::write_atomic(path, text.as_bytes())
}

/// Reads a network from `path`.
pub fn load(path: &Path) -> Result<Network, IoError> {
    let text = std::fs::read_to_string(path).map_err(|cause| IoError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let file: WeightsFile = serde_json::from_str(&text).map_err(|cause| IoError::Json {
        path: path.to_path_buf(),
        what: "a dtpsim weights file",
        cause,
    })?;
    file.into_network().map_err(|cause| IoError::Model {
        path: path.to_path_buf(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::network::{Init, Loss};

    #[test]
    fn round_trip_is_exact() {
        let arch = Architecture::new(&[3, 5, 2], Activation::Softplus, Loss::SoftmaxCe).unwrap();
        let net = Network::new(arch, Init::Orthogonal { gain: 1.0 }, 3).unwrap();
        let text = serde_json::to_string(&WeightsFile::from_network(&net)).unwrap();
        let back: WeightsFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_network().unwrap(), net);
    }

    #[test]
    fn wrong_shape_and_null_are_reported_with_position() {
        let arch = Architecture::new(&[2, 2, 2], Activation::Tanh, Loss::Mse).unwrap();
        let net = Network::new(arch, Init::default(), 0).unwrap();
        let mut file = WeightsFile::from_network(&net);
        file.encoders[1][0].pop();
        file.encoders[1][1].pop();
        let err = file.into_network().unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::Shape {
                    got_cols: 2,
                    cols: 3,
                    ..
                }
            ),
            "{err}"
        );
        let mut file = WeightsFile::from_network(&net);
        file.decoders[0][1][2] = None;
        let err = file.into_network().unwrap_err();
        assert_eq!(
            err.to_string(),
            "decoders[0][1][2]: value NaN is not finite; weights must be finite numbers"
        );
    }
}
