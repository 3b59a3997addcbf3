//! # dtpsim
//!
//! A simulator of **differential target propagation** as derived in *Deriving Differential
//! Target Propagation from Iterating Approximate Inverses* (section numbers in the docs are
//! that paper's). The equations are written out in `docs/MODEL.md`.
//!
//! - [`continuous`]: the continuous-time engine (Sec. 7, 7.1, 8, 10.2). Feedforward activity
//!   `h_l`, target displacements `d_l` (targets `τ_l = h_l + d_l`), pooling neurons `p_l`,
//!   delayed presynaptic traces `n̄_l`, influence scale neurons `s_l` and the weights `W_l`, `Ω_l` are
//!   all ODE state, integrated by an explicit Runge–Kutta method; a trial is a stimulus with a
//!   teacher window, and there are no discrete phases inside the network.
//!   [`continuous::Simulation`] runs trials; an [`continuous::Observer`] samples them.
//! - [`discrete`]: the exact references (BP, DTP of Lee et al., DTP1 with iterated inverses,
//!   Gauss–Newton; Sec. 3–9), mini-batched.
//! - [`scenario`], [`runner`], [`sweep`]: scenario files, runs and grids as the `dtpsim`
//!   command line does them; [`metrics`] the measurements every model reports.
//! - [`theory`]: the theory suite T1–T8, the paper's claims checked numerically.
//!
//! The matrix type is `nalgebra`'s, re-exported as [`nalgebra`] so that a user of the crate
//! does not have to match its version.
//!
//! ```
//! use dtpsim::scenario::parse_scenario;
//!
//! // a short run of the continuous engine and a discrete reference on the same data
//! let scenario = parse_scenario(
//!     r#"{"schedule": {"trials": 20, "warmup_trials": 5, "eval_every": 10},
//!        "data": {"train": 50, "test": 20},
//!        "references": [{"name": "bp", "kind": "bp", "lr": 0.01}],
//!        "traces": {"interval": 0}}"#,
//!     &[],
//! )
//! .unwrap();
//! let out = std::env::temp_dir().join(format!("dtpsim-doc-{}", std::process::id()));
//! let report = dtpsim::runner::run_scenario(&scenario, &out, false, &[]).unwrap();
//! assert!(report.complete());
//! let continuous = report.continuous.as_ref().unwrap();
//! assert_eq!(continuous.rows.last().unwrap().trial, 20);
//! assert!(out.join("summary.json").exists());
//! # std::fs::remove_dir_all(&out).unwrap();
//! ```

// Loops run over layer indices `l` exactly as the paper's equations do (`W_l`, `a_{l−1}`,
// `J_l`); rewriting them as iterator chains would hide that correspondence.
#![allow(clippy::needless_range_loop)]
#![warn(missing_docs)]

pub mod activation;
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod continuous;
pub mod data;
pub mod discrete;
pub mod error;
pub mod idx;
pub mod interrupt;
pub mod linalg;
pub mod metrics;
pub mod network;
pub mod plot;
pub mod record;
pub mod report;
pub mod resources;
pub mod runner;
pub mod scenario;
pub mod sweep;
pub mod theory;
pub use error::ConfigError;
pub mod weights;

pub use activation::Activation;
pub use nalgebra;
pub use network::{Architecture, ForwardPass, Init, Loss, Network};
