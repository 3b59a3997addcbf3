//! The continuous-time engine (docs/MODEL.md §6, §9; seed paper Sec. 7, 7.1): every population
//! of the network and the weights are ODE state, integrated by an explicit Runge–Kutta method
//! either on one flat state vector (`ode_solvers`) or with the weights kept as low-rank stage
//! factors ([`integrate`]).

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
