//! Error types, one per concern. Every message names the offending field or file and the fix.

use std::path::PathBuf;
use thiserror::Error;

/// Invalid network architecture or weights (docs/MODEL.md §1).
#[derive(Debug, Error, PartialEq)]
pub enum ModelError {
    #[error("network.widths: need at least 2 layers (input and output), got {0}; give e.g. [20, 20, 20]")]
    /// Fewer than two widths (the count given).
    TooFewLayers(usize),
    #[error("network.widths[{layer}]: width must be at least 1, got 0")]
    /// A layer of width 0.
    ZeroWidth {
        /// The layer.
        layer: usize,
    },
    #[error("network.activations: expected {expected} entries (one per layer 0..=L), got {got}")]
    /// The activation list does not have one entry per layer.
    ActivationCount {
        /// Layers `0..=L`.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    #[error("{what}: shape is {got_rows}x{got_cols}, expected {rows}x{cols} for widths {widths:?} (bias {bias}); the weights do not match the network")]
    /// A weight matrix of the wrong shape.
    Shape {
        /// Which matrix (`encoders[1]`).
        what: String,
        /// Expected rows.
        rows: usize,
        /// Expected columns.
        cols: usize,
        /// Rows found.
        got_rows: usize,
        /// Columns found.
        got_cols: usize,
        /// The network's widths.
        widths: Vec<usize>,
        /// Whether the network has bias units.
        bias: bool,
    },
    #[error("{what}: row {row} has {got} entries, expected {expected}")]
    /// A matrix row of the wrong length.
    RaggedRow {
        /// Which matrix.
        what: String,
        /// The row.
        row: usize,
        /// Entries found.
        got: usize,
        /// Entries expected.
        expected: usize,
    },
    #[error("{what}[{row}][{col}]: value {value} is not finite; weights must be finite numbers")]
    /// A weight that is NaN or infinite.
    NonFinite {
        /// Which matrix.
        what: String,
        /// Its row.
        row: usize,
        /// Its column.
        col: usize,
        /// The value.
        value: f64,
    },
    #[error("{field}: {message}")]
    /// Any other invalid value, named by its field.
    Invalid {
        /// JSON path of the field.
        field: String,
        /// What is wrong and the fix.
        message: String,
    },
    #[error("input has length {got}, the network's input layer has width {expected}")]
    /// An input vector of the wrong length.
    InputLength {
        /// Its length.
        got: usize,
        /// The input width `n_0`.
        expected: usize,
    },
}

/// Errors of the discrete target computations (seed paper Sec. 5, 6.2, 9).
#[derive(Debug, Error, PartialEq)]
pub enum TargetError {
    #[error("target relaxation diverged at layer {layer}, iteration {iteration}: increment norm {norm:e} (the iteration's contraction rate exceeds 1: improve the decoders, add leak λ, or lower β)")]
    /// The increment norm grew past `10⁸` times the first one.
    Diverged {
        /// The layer being relaxed.
        layer: usize,
        /// The iteration (or sweep).
        iteration: usize,
        /// The increment norm reached.
        norm: f64,
    },
}

/// File and format errors around weights and configuration files. The cause is part of the
/// message (not a `source`), so it is printed once.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("{path}: {cause}")]
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    /// A file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    #[error("{path}: not valid JSON for {what}: {}", cut(.cause.to_string()))]
    /// A file is not the JSON it should be.
    Json {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// The parser's message.
        cause: serde_json::Error,
    },
    #[error("{path}: {}", cut(.cause.to_string()))]
    /// A weights file that does not describe a valid network.
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: ModelError,
    },
}

/// An invalid configuration value, named by its JSON path (`algorithms[1].beta`).
#[derive(Debug, Error, PartialEq, Clone)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// JSON path of the field (`engine.dynamics.tau_h`).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Longest path or message kept in an error: a huge input value is not echoed whole.
const ECHO_LIMIT: usize = 400;

/// `text` cut to [`ECHO_LIMIT`] characters, saying how much was cut.
pub fn cut(text: String) -> String {
    let n = text.chars().count();
    if n <= ECHO_LIMIT {
        return text;
    }
    let kept: String = text.chars().take(ECHO_LIMIT).collect();
    format!("{kept}… ({} more characters cut)", n - ECHO_LIMIT)
}

impl ConfigError {
    /// An error at `path` with a message that says what is wrong and how to fix it (both cut
    /// to a few hundred characters, so a huge bad value is not echoed whole).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: cut(path.into()),
            message: cut(message.into()),
        }
    }
}

impl From<ModelError> for ConfigError {
    /// Keeps the field a model error names (`task.train: …`); other model errors are about
    /// the network.
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Invalid { field, message } => ConfigError::new(field, message),
            other => ConfigError::new("network", other.to_string()),
        }
    }
}

/// Checks that `value` is finite and at least `min`.
pub fn check_at_least(path: &str, value: f64, min: f64) -> Result<(), ConfigError> {
    if !value.is_finite() || value < min {
        return Err(ConfigError::new(
            path,
            format!("must be a finite number ≥ {min}, got {value}"),
        ));
    }
    Ok(())
}

/// A number as a reader writes it: `0.1`, `1000`, `1e6`, `1e-300`.
fn short(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-4..1e6).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Checks that `value` lies in `[min, max]` (`min_open`: in `(min, max]`); the message gives
/// the valid range and, as `why`, what the bound means.
pub fn check_range(
    path: &str,
    value: f64,
    (min, min_open): (f64, bool),
    max: f64,
    why: &str,
) -> Result<(), ConfigError> {
    let below = if min_open { value <= min } else { value < min };
    if !value.is_finite() || below || value > max {
        let open = if min_open { "(" } else { "[" };
        let (min, max, value) = (short(min), short(max), short(value));
        return Err(ConfigError::new(
            path,
            format!("must be in {open}{min}, {max}], got {value}{why}"),
        ));
    }
    Ok(())
}

/// Checks that `value` is finite and strictly positive.
pub fn check_positive(path: &str, value: f64) -> Result<(), ConfigError> {
    if !value.is_finite() || value <= 0.0 {
        return Err(ConfigError::new(
            path,
            format!("must be a finite number > 0, got {value}"),
        ));
    }
    Ok(())
}
