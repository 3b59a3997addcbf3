//! Exact discrete reference algorithms (DESIGN §4): target computation, weight updates,
//! Gauss–Newton directions and a training loop.

pub mod gauss_newton;
pub mod targets;
pub mod train;
pub mod updates;
