//! Error types, one per concern. Every message names the offending field or file and the fix.

use std::path::PathBuf;
use thiserror::Error;

/// Invalid network architecture or weights (DESIGN §1).
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

/// File and format errors around weights and configuration files.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON for {what}: {source}")]
    Json {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Model { path: PathBuf, source: ModelError },
}
