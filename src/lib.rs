//! # dtpsim
//!
//! A simulator of **differential target propagation** as derived in *Deriving Differential
//! Target Propagation from Iterating Approximate Inverses* (section numbers in the docs are
//! that paper's). This crate holds the network model (Sec. 2–3), the exact discrete reference
//! algorithms (BP, DTP, DTP1 with iterated inverses, Gauss–Newton; Sec. 3–9) and the theory
//! suite that checks the paper's claims numerically. The equations are written out in
//! `docs/MODEL.md`.

// Loops run over layer indices `l` exactly as the paper's equations do (`W_l`, `a_{l−1}`,
// `J_l`); rewriting them as iterator chains would hide that correspondence.
#![allow(clippy::needless_range_loop)]

pub mod activation;
pub mod bench;
pub mod continuous;
pub mod data;
pub mod discrete;
pub mod error;
pub mod linalg;
pub mod metrics;
pub mod network;
pub mod plot;
pub mod record;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sweep;
pub mod theory;
pub use error::ConfigError;
pub mod weights;

pub use activation::Activation;
pub use network::{Architecture, ForwardPass, Init, Loss, Network};
