//! Exact discrete reference algorithms (docs/MODEL.md §3–§5): the batched forward pass,
//! target computation, weight updates, Gauss–Newton directions and a training loop.

pub mod batch;
pub mod gauss_newton;
pub mod targets;
pub mod train;
pub mod updates;
