//! Error types, one per concern. Every message names the offending field or file and the fix.

use std::path::PathBuf;
use thiserror::Error;

/// Invalid network architecture or weights (docs/MODEL.md §1).
#[derive(Debug, Error, PartialEq)]
pub enum ModelError {
    #[error("network.widths: need at least 2 layers (input and output), got {0}; give e.g. [20, 20, 20]")]
    TooFewLayers(usize),
    #[error("network.widths[{layer}]: width must be at least 1, got 0")]
    ZeroWidth { layer: usize },
    #[error("network.activations: expected {expected} entries (one per layer 0..=L), got {got}")]
    ActivationCount { expected: usize, got: usize },
    #[error("{what}: shape is {got_rows}x{got_cols}, expected {rows}x{cols} for widths {widths:?} (bias {bias}); the weights do not match the network")]
    Shape {
        what: String,
        rows: usize,
        cols: usize,
        got_rows: usize,
        got_cols: usize,
        widths: Vec<usize>,
        bias: bool,
    },
    #[error("{what}: row {row} has {got} entries, expected {expected}")]
    RaggedRow {
        what: String,
        row: usize,
        got: usize,
        expected: usize,
    },
    #[error("{what}[{row}][{col}]: value {value} is not finite; weights must be finite numbers")]
    NonFinite {
        what: String,
        row: usize,
        col: usize,
        value: f64,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("input has length {got}, the network's input layer has width {expected}")]
    InputLength { got: usize, expected: usize },
}

/// Errors of the discrete target computations (seed paper Sec. 5, 6.2, 9).
#[derive(Debug, Error, PartialEq)]
pub enum TargetError {
    #[error("target relaxation diverged at layer {layer}, iteration {iteration}: increment norm {norm:e} (the iteration's contraction rate exceeds 1: improve the decoders, add leak λ, or lower β)")]
    Diverged {
        layer: usize,
        iteration: usize,
        norm: f64,
    },
}

/// File and format errors around weights and configuration files. The cause is part of the
/// message (not a `source`), so it is printed once.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("{path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not valid JSON for {what}: {cause}")]
    Json {
        path: PathBuf,
        what: &'static str,
        cause: serde_json::Error,
    },
    #[error("{path}: {cause}")]
    Model { path: PathBuf, cause: ModelError },
}

/// An invalid configuration value, named by its JSON path (`algorithms[1].beta`).
#[derive(Debug, Error, PartialEq, Clone)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `path` with a message that says what is wrong and how to fix it.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
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
