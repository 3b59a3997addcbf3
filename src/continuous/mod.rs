//! The continuous-time engine (DESIGN §2–3; seed paper Sec. 7, 7.1): every population of the
//! network and the weights are ODE state, integrated with `ode_solvers`.

pub mod config;
pub mod field;
pub mod integrate;
pub mod layout;
pub mod run;
pub mod simulation;

pub use config::EngineConfig;
pub use field::Drive;
pub use layout::{Layout, Population};
pub use simulation::{trial_update, EngineError, NoObserver, Observer, Phase, Sample, Simulation};
