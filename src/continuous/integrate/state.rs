//! The full-state path: `ode_solvers` (Dopri5, Dop853, Rk4) on the flat state vector, weights
//! included (`engine.solver.weights = "state"`), the reference the low-rank path is tested
//! against.
//!
//! Dopri5 integrates a whole segment in one call, so that its step-size controller runs
//! uninterrupted, exactly as the low-rank path's. `ode_solvers` stores every output point and
//! has no step API, so the call asks for dense output at an infinite interval (one stored
//! point, the start) and the end state is taken from the last evaluation of the vector field,
//! which Dopri5 (FSAL) makes at the accepted end point `y_1` of its last step. Memory stays
//! O(state) however long the segment.
//!
//! Dop853 and Rk4 integrate in chunks of at most [`CHUNK_STEPS`] steps (sparse output; a
//! chunk that runs out of steps is continued from its last accepted state with its last step
//! size). For Rk4 the chunks do not change the steps.
//!
//! Dense output is not used for the result: in `ode_solvers` 0.6.2 the end point of a dense
//! output whose `dx` reaches `x_end` is *extrapolated* from the first step (its "endpoint
//! tolerance" branch); on `y' = −y` over `[0, 10]` it returns 287 instead of 4.5e-5 (see the
//! test `dense_output_end_point_is_wrong_in_ode_solvers` below).

use super::low_rank::MAX_STEPS;
use super::SolverStats;
use crate::continuous::config::{Method, Solver};
use crate::continuous::field::Field;
use ode_solvers::dop_shared::{IntegrationError, OutputType};
use ode_solvers::{DVector, Dop853, Dopri5, Rk4, System};
use std::cell::RefCell;

/// Steps per `ode_solvers` call: bounds the memory the crate's output vectors take.
pub const CHUNK_STEPS: usize = 16;

/// Adapter from [`Field`] to `ode_solvers::System`.
struct Adapter<'f, 'a>(&'f Field<'a>);

impl System<f64, DVector<f64>> for Adapter<'_, '_> {
    fn system(&self, t: f64, y: &DVector<f64>, dy: &mut DVector<f64>) {
        self.0.eval(t, y.as_slice(), dy.as_mut_slice());
    }
}

/// Integrates `field` from `t0` to `t1` starting at `y`; returns the state at `t1`.
pub fn integrate_segment(
    field: &Field,
    y: DVector<f64>,
    t0: f64,
    t1: f64,
    solver: &Solver,
    stats: &mut SolverStats,
) -> Result<DVector<f64>, IntegrationError> {
    if t1 <= t0 {
        return Ok(y);
    }
    let span = t1 - t0;
    match solver.method {
        Method::Dopri5 => dopri5_whole(field, y, t0, t1, solver, stats),
        Method::Dop853 => {
            let mut y = y;
            let mut t = t0;
            let mut h = 0.0; // 0: let the solver choose the first step
            loop {
                let (result, x_out, y_last) = adaptive_chunk(field, t, t1, y, h, solver);
                match result {
                    Ok(st) => {
                        stats.accepted_steps += st.accepted_steps as u64;
                        stats.rejected_steps += st.rejected_steps as u64;
                        return Ok(y_last);
                    }
                    Err(IntegrationError::MaxNumStepReached { .. }) if x_out.len() >= 2 => {
                        let n = x_out.len();
                        stats.accepted_steps += (n - 1) as u64;
                        h = x_out[n - 1] - x_out[n - 2];
                        t = x_out[n - 1];
                        y = y_last;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Method::Rk4 => {
            // equal steps that end exactly on t1
            let n_steps = (span / solver.step).ceil().max(1.0) as usize;
            let h = span / n_steps as f64;
            let mut y = y;
            let mut done = 0usize;
            while done < n_steps {
                let chunk = CHUNK_STEPS.min(n_steps - done);
                let a = t0 + done as f64 * h;
                let b = if done + chunk == n_steps {
                    t1
                } else {
                    t0 + (done + chunk) as f64 * h
                };
                // a hair above (b − a)/chunk so that the crate's ceil() never adds a step
                let mut s = Rk4::new(
                    Adapter(field),
                    a,
                    y,
                    b,
                    (b - a) / chunk as f64 * (1.0 + 1e-12),
                );
                let st = s.integrate()?;
                stats.accepted_steps += st.accepted_steps as u64;
                y = s
                    .y_out()
                    .last()
                    .cloned()
                    .expect("rk4 output holds the end point");
                done += chunk;
            }
            Ok(y)
        }
    }
}

type ChunkResult = (
    Result<ode_solvers::dop_shared::Stats, IntegrationError>,
    Vec<f64>,
    DVector<f64>,
);

/// Adapter that also keeps the state of the last evaluation at the end time `end`.
struct EndCapture<'f, 'a> {
    field: &'f Field<'a>,
    end: f64,
    last: &'f RefCell<Option<DVector<f64>>>,
}

impl System<f64, DVector<f64>> for EndCapture<'_, '_> {
    fn system(&self, t: f64, y: &DVector<f64>, dy: &mut DVector<f64>) {
        self.field.eval(t, y.as_slice(), dy.as_mut_slice());
        if (t - self.end).abs() <= 1e-12 * self.end.abs().max(1.0) {
            let mut last = self.last.borrow_mut();
            match last.as_mut() {
                Some(v) => v.copy_from(y),
                None => *last = Some(y.clone()),
            }
        }
    }
}

/// One Dopri5 call over the whole segment (see the module documentation).
fn dopri5_whole(
    field: &Field,
    y: DVector<f64>,
    t0: f64,
    t1: f64,
    solver: &Solver,
    stats: &mut SolverStats,
) -> Result<DVector<f64>, IntegrationError> {
    let span = t1 - t0;
    let last = RefCell::new(None);
    let capture = EndCapture {
        field,
        end: t1,
        last: &last,
    };
    let mut s = Dopri5::from_param(
        capture,
        t0,
        t1,
        f64::INFINITY,
        y,
        solver.rtol,
        solver.atol,
        0.9,
        0.04,
        0.2,
        10.0,
        span,
        0.0,
        MAX_STEPS,
        1000,
        OutputType::Dense,
    );
    let st = s.integrate()?;
    stats.accepted_steps += st.accepted_steps as u64;
    stats.rejected_steps += st.rejected_steps as u64;
    drop(s);
    Ok(last
        .into_inner()
        .expect("Dopri5 evaluates the field at its end point"))
}

/// One call of Dop853 with sparse output and at most [`CHUNK_STEPS`] steps; returns the
/// outcome, the output times and the last output state.
fn adaptive_chunk(
    field: &Field,
    t0: f64,
    t1: f64,
    y: DVector<f64>,
    h: f64,
    solver: &Solver,
) -> ChunkResult {
    let span = t1 - t0;
    let mut s = Dop853::from_param(
        Adapter(field),
        t0,
        t1,
        span,
        y,
        solver.rtol,
        solver.atol,
        0.9,
        0.0,
        0.333,
        6.0,
        span,
        h,
        CHUNK_STEPS as u32,
        1000,
        OutputType::Sparse,
    );
    let r = s.integrate();
    let y_last = s
        .y_out()
        .last()
        .cloned()
        .expect("sparse output holds the start point");
    (r, s.x_out().clone(), y_last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ode_solvers::System;

    struct Decay;
    impl System<f64, DVector<f64>> for Decay {
        fn system(&self, _t: f64, y: &DVector<f64>, dy: &mut DVector<f64>) {
            dy.copy_from(&(-y));
        }
    }

    /// Documents the upstream defect that made us avoid dense output: if this starts failing,
    /// `ode_solvers` was fixed and dense output could be used again.
    #[test]
    fn dense_output_end_point_is_wrong_in_ode_solvers() {
        let mut s = Dopri5::new(
            Decay,
            0.0,
            10.0,
            10.0,
            DVector::from_element(1, 1.0),
            1e-6,
            1e-8,
        );
        s.set_output(OutputType::Dense);
        s.integrate().unwrap();
        let end = s.y_out().last().unwrap()[0];
        assert!((end - (-10f64).exp()).abs() > 1.0, "dense end point {end}");
    }
}
