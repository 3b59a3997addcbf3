//! Scenario files (JSON): one experiment with the continuous engine and, optionally, discrete
//! references on the same data and schedule, plus what to trace and how to sweep it.
//!
//! Every field has a default; unknown fields are rejected; values are checked into a
//! validated scenario whose errors name the JSON path and the fix
//! (`network.widths[2]: must be at least 1`). `--set path=value` edits the JSON before it is
//! parsed, so overrides are checked like the file itself.

use crate::continuous::config::EngineConfig;
use crate::continuous::{Observer, Population, Sample};
use crate::data::Task;
use crate::discrete::train::{
    validate_algorithms, validate_task_and_network, NamedAlgorithm, NetworkConfig,
};
use crate::error::{check_positive, ConfigError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Sizes of the generated (or read) data sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DataSizes {
    /// Training examples (drawn in shuffled epochs).
    pub train: usize,
    /// Held-out test examples.
    pub test: usize,
}

impl Default for DataSizes {
    fn default() -> Self {
        DataSizes {
            train: 2000,
            test: 300,
        }
    }
}

/// A traced variable of one neuron of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Variable {
    /// Feedforward activity `h_l`.
    H,
    /// Target displacement `d_l = τ_l − h_l`.
    D,
    /// Target `τ_l = h_l + d_l`.
    Tau,
    /// Decoder-input correction `u_l` (decoder_input scheme).
    U,
    /// Pooling neuron `p_l` (one per layer: neuron 0).
    P,
    /// Delayed presynaptic trace `n̄_l` (needs `dynamics.trace.stages > 0`).
    Trace,
    /// Influence pool `q_l` (neuron 0).
    Q,
}

/// Which neuron to trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceVariable {
    pub variable: Variable,
    pub layer: usize,
    #[serde(default)]
    pub neuron: usize,
    #[serde(default)]
    pub replica: usize,
}

impl TraceVariable {
    /// Column name in `traces.csv`, e.g. `tau_l3_n0_r0`.
    pub fn column(&self) -> String {
        let v = serde_json::to_value(self.variable)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        format!("{v}_l{}_n{}_r{}", self.layer, self.neuron, self.replica)
    }

    /// Reads the variable from a sample.
    pub fn read(&self, s: &Sample) -> Option<f64> {
        let get = |p: Population| s.value(p, self.layer, self.neuron, self.replica);
        match self.variable {
            Variable::H => get(Population::H),
            Variable::D => get(Population::D),
            Variable::Tau => Some(get(Population::H)? + get(Population::D)?),
            Variable::U => get(Population::U),
            Variable::P => get(Population::Pool),
            Variable::Trace => get(Population::Trace),
            Variable::Q => get(Population::Influence),
        }
    }
}

/// What to sample into `traces.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Traces {
    /// Sampling interval in simulated time (0: no traces).
    pub interval: f64,
    /// First traced trial, counting warm-up trials (`null`: the first learning trial).
    pub start_trial: Option<usize>,
    /// Number of consecutive trials traced.
    pub trials: usize,
    /// Traced neurons; empty: `h` and `τ` of neuron 0 in every layer.
    pub variables: Vec<TraceVariable>,
}

impl Default for Traces {
    fn default() -> Self {
        Traces {
            interval: 0.1,
            start_trial: None,
            trials: 3,
            variables: Vec::new(),
        }
    }
}

impl Traces {
    /// An empty variable list means `h` and `τ` of neuron 0 of replica 0 in every layer,
    /// output first.
    pub fn resolve(&mut self, depth: usize) {
        if self.variables.is_empty() {
            for layer in (1..=depth).rev() {
                for variable in [Variable::H, Variable::Tau] {
                    self.variables.push(TraceVariable {
                        variable,
                        layer,
                        neuron: 0,
                        replica: 0,
                    });
                }
            }
        }
    }
}

/// Extra per-trial measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Diagnostics {
    /// Cosine of each trial's weight change with the fully relaxed DTP1 update (costs one
    /// discrete relaxation per replica and trial).
    pub update_cosine: bool,
}

/// Which files a run writes besides the CSVs and `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Outputs {
    pub plots: bool,
    pub weights: bool,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            plots: true,
            weights: true,
        }
    }
}

/// The default grid of `dtpsim sweep` for this scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// JSON path → values, e.g. `{"engine.protocol.t_stim": [6, 9, 15]}`.
    pub params: BTreeMap<String, Vec<Value>>,
    /// Seeds per grid point (seed, seed + 1, …).
    pub seeds: usize,
}

/// A scenario: everything one run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Short name (used in plot titles).
    pub name: String,
    /// One sentence on what the scenario shows.
    pub description: String,
    /// Seed of data, initialisation and example order.
    pub seed: u64,
    pub task: Task,
    pub data: DataSizes,
    pub network: NetworkConfig,
    /// The continuous-time engine (docs/MODEL.md §6, §9).
    pub engine: EngineConfig,
    /// Discrete reference algorithms trained on the same data with the same schedule
    /// (`trials × replicas` examples, mini-batches of `replicas`).
    pub references: Vec<NamedAlgorithm>,
    pub traces: Traces,
    pub diagnostics: Diagnostics,
    pub outputs: Outputs,
    /// Default grid for `dtpsim sweep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSpec>,
}

impl Default for Scenario {
    fn default() -> Self {
        let widths = vec![10, 10, 10, 10];
        Scenario {
            name: "scenario".into(),
            description: String::new(),
            seed: 1,
            task: Task::TeacherStudent {
                widths: widths.clone(),
                activation: crate::Activation::Tanh,
                gain: 1.5,
            },
            data: DataSizes::default(),
            network: NetworkConfig {
                widths,
                ..NetworkConfig::default()
            },
            engine: EngineConfig::default(),
            references: Vec::new(),
            traces: Traces::default(),
            diagnostics: Diagnostics::default(),
            outputs: Outputs::default(),
            sweep: None,
        }
    }
}

/// The JSON Schema of the scenario format (generated from the Rust types).
pub fn schema_json() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Scenario)).expect("schemas serialise")
}

/// Sets `path` (dots and `[i]` indices, e.g. `network.widths[1]`) in a JSON value to `value`
/// (parsed as JSON when it parses, else taken as a string). Missing objects are created.
pub fn set_path(root: &mut Value, path: &str, value: &str) -> Result<(), ConfigError> {
    let parsed: Value =
        serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    let bad = |msg: String| ConfigError::new(format!("--set {path}"), msg);
    let mut tokens: Vec<(String, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        if part.is_empty() {
            return Err(bad(
                "empty path segment; write e.g. engine.protocol.t_stim=9".into(),
            ));
        }
        let (name, rest) = part
            .split_once('[')
            .map_or((part, None), |(n, r)| (n, Some(r)));
        tokens.push((name.to_string(), None));
        if let Some(rest) = rest {
            for idx in rest.split('[') {
                let i: usize = idx
                    .trim_end_matches(']')
                    .parse()
                    .map_err(|_| bad(format!("`[{idx}` is not an index")))?;
                tokens.push((String::new(), Some(i)));
            }
        }
    }
    let mut cur = root;
    for (name, index) in tokens {
        cur = match index {
            None => {
                if cur.is_null() {
                    *cur = Value::Object(Default::default());
                }
                let obj = cur.as_object_mut().ok_or_else(|| {
                    bad(format!("`{name}` is inside a value that is not an object"))
                })?;
                obj.entry(name).or_insert(Value::Null)
            }
            Some(i) => {
                let arr = cur
                    .as_array_mut()
                    .ok_or_else(|| bad(format!("[{i}] indexes a value that is not a list")))?;
                let len = arr.len();
                arr.get_mut(i).ok_or_else(|| {
                    bad(format!(
                        "index {i} is out of range (the list has {len} entries)"
                    ))
                })?
            }
        };
    }
    *cur = parsed;
    Ok(())
}

/// Parses scenario text with `--set` overrides; errors name the JSON path.
pub fn parse_scenario(text: &str, sets: &[String]) -> Result<Scenario, ConfigError> {
    let mut value: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("(file)", format!("not valid JSON: {e}")))?;
    for s in sets {
        let (path, v) = s.split_once('=').ok_or_else(|| {
            ConfigError::new(
                format!("--set {s}"),
                "write path=value, e.g. engine.protocol.t_stim=9",
            )
        })?;
        set_path(&mut value, path.trim(), v.trim())?;
    }
    let mut scenario: Scenario = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::new(
            if path == "." {
                "(top level)".to_string()
            } else {
                path
            },
            e.into_inner().to_string(),
        )
    })?;
    scenario.engine.resolve();
    if scenario.network.widths.len() >= 2 {
        scenario.traces.resolve(scenario.network.widths.len() - 1);
    }
    scenario.validate()?;
    Ok(scenario)
}

/// Reads and checks a scenario file; the error names the file.
pub fn load_scenario(path: &Path, sets: &[String]) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    parse_scenario(&text, sets).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl Scenario {
    /// Checks every field; errors name the JSON path and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_task_and_network(&self.task, &self.network)?;
        let depth = self.network.widths.len() - 1;
        self.engine
            .validate(depth)
            .map_err(|e| ConfigError::new(format!("engine.{}", e.path), e.message))?;
        if self.data.train == 0 {
            return Err(ConfigError::new("data.train", "must be at least 1"));
        }
        if self.data.test == 0 {
            return Err(ConfigError::new("data.test", "must be at least 1"));
        }
        if !self.references.is_empty() {
            validate_algorithms(&self.references, "references")?;
        }
        let t = &self.traces;
        if t.interval != 0.0 {
            check_positive("traces.interval", t.interval)?;
        }
        let d = &self.engine.dynamics;
        let b = self.engine.protocol.replicas;
        for (i, v) in t.variables.iter().enumerate() {
            let path = format!("traces.variables[{i}]");
            let (lo, hi) = match v.variable {
                Variable::H | Variable::D | Variable::Tau | Variable::Q => (1, depth),
                Variable::U => (2, depth),
                Variable::P => (0, depth),
                Variable::Trace => (0, depth - 1),
            };
            if v.layer < lo || v.layer > hi {
                return Err(ConfigError::new(
                    format!("{path}.layer"),
                    format!(
                        "{} exists for layers {lo}..={hi}, got {}",
                        v.column(),
                        v.layer
                    ),
                ));
            }
            let width = match v.variable {
                Variable::P | Variable::Q => 1,
                Variable::Trace => self.network.widths[v.layer] + usize::from(self.network.bias),
                _ => self.network.widths[v.layer],
            };
            if v.neuron >= width {
                return Err(ConfigError::new(
                    format!("{path}.neuron"),
                    format!(
                        "layer {} has {width} such neurons (0..{}), got {}",
                        v.layer,
                        width - 1,
                        v.neuron
                    ),
                ));
            }
            if v.replica >= b {
                return Err(ConfigError::new(
                    format!("{path}.replica"),
                    format!(
                        "there are {b} replicas (engine.protocol.replicas), got {}",
                        v.replica
                    ),
                ));
            }
            let missing = match v.variable {
                Variable::U => (d.scheme != crate::discrete::targets::Scheme::DecoderInput)
                    .then_some("engine.dynamics.scheme = \"decoder_input\""),
                Variable::Trace => {
                    (d.trace.stages == 0).then_some("engine.dynamics.trace.stages > 0")
                }
                Variable::Q => {
                    (!d.influence.enabled).then_some("engine.dynamics.influence.enabled = true")
                }
                _ => None,
            };
            if let Some(need) = missing {
                return Err(ConfigError::new(
                    format!("{path}.variable"),
                    format!("{} needs {need}", v.column()),
                ));
            }
        }
        if let Some(sweep) = &self.sweep {
            for (k, vals) in &sweep.params {
                if vals.is_empty() {
                    return Err(ConfigError::new(
                        format!("sweep.params.{k}"),
                        "give at least one value",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The discrete training configuration of the references (same data and schedule).
    pub fn reference_config(&self) -> crate::discrete::train::TrainConfig {
        let p = &self.engine.protocol;
        crate::discrete::train::TrainConfig {
            task: self.task.clone(),
            network: self.network.clone(),
            train_size: self.data.train,
            test_size: self.data.test,
            examples: p.trials * p.replicas,
            batch_size: p.replicas,
            eval_every: p.eval_every * p.replicas,
            warmup: p.warmup_trials * p.replicas,
            seed: self.seed,
            algorithms: self.references.clone(),
        }
    }
}

/// One row of `traces.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    pub time: f64,
    pub trial: usize,
    pub teacher: bool,
    pub values: Vec<f64>,
}

/// Samples the scenario's trace variables during the chosen trials.
pub struct TraceRecorder {
    pub interval: f64,
    pub first: usize,
    pub last: usize,
    pub variables: Vec<TraceVariable>,
    pub rows: Vec<TraceRow>,
}

impl TraceRecorder {
    /// A recorder for `scenario` (inactive when the interval or the variable list is empty).
    pub fn new(scenario: &Scenario) -> Self {
        let t = &scenario.traces;
        let first = t
            .start_trial
            .unwrap_or(scenario.engine.protocol.warmup_trials);
        TraceRecorder {
            interval: t.interval,
            first,
            last: first + t.trials,
            variables: t.variables.clone(),
            rows: Vec::new(),
        }
    }
}

impl Observer for TraceRecorder {
    fn interval(&self, trial: usize) -> Option<f64> {
        let active = self.interval > 0.0
            && !self.variables.is_empty()
            && (self.first..self.last).contains(&trial);
        active.then_some(self.interval)
    }

    fn sample(&mut self, s: &Sample) {
        if s.trial < self.first || s.trial >= self.last {
            return;
        }
        // a segment boundary is sampled twice, at the end of one segment and the start of the
        // next, each with its own teacher gate: the gate switch is drawn at the exact time
        self.rows.push(TraceRow {
            time: s.time,
            trial: s.trial,
            teacher: s.teacher,
            values: self
                .variables
                .iter()
                .map(|v| v.read(s).unwrap_or(f64::NAN))
                .collect(),
        });
    }
}
