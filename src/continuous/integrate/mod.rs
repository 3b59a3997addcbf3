//! Integration of one protocol segment (docs/MODEL.md §9). Two paths run the same explicit
//! Runge–Kutta methods with the same step-size control on the same ODE:
//!
//! * [`state`]: `ode_solvers` on the flat state vector, weights included
//!   (`engine.solver.weights = "state"`; every method);
//! * [`low_rank`]: the weights kept as a scalar times their value at the start of the step
//!   plus low-rank stage factors (`"low_rank"`, the default; `dopri5` and `rk4`).
//!
//! [`tableau`] holds the Butcher tableaux and the dense output they share.

pub mod low_rank;
pub mod state;
pub mod tableau;

pub use low_rank::{DenseSample, LowRank, StageForm};
pub use state::{integrate_segment, CHUNK_STEPS};

/// Solver work of one or more segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SolverStats {
    /// Steps accepted by the error control (every step for rk4).
    pub accepted_steps: u64,
    /// Steps rejected by the error control.
    pub rejected_steps: u64,
}
