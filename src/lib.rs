//! # dtpsim
//!
//! A simulator of **differential target propagation** as derived in *Deriving Differential
//! Target Propagation from Iterating Approximate Inverses* (section numbers in the docs are
//! that paper's). This crate holds the network model (Sec. 2–3), the exact discrete reference
//! algorithms (BP, DTP, DTP1 with iterated inverses, Gauss–Newton; Sec. 3–9) and the theory
//! suite that checks the paper's claims numerically. The equations are written out in
//! `docs/MODEL.md`.

pub mod activation;
pub mod data;
pub mod discrete;
pub mod error;
pub mod network;
pub mod plot;
pub mod record;
pub mod theory;
pub mod weights;

pub use activation::Activation;
pub use network::{Architecture, ForwardPass, Init, Loss, Network};
