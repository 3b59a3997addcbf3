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
use crate::network::{Architecture, Network};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// How many examples the run uses. For generated tasks `null` means the defaults (2000
/// training, 300 test examples); for data files it means every row of the file, and a number
/// selects a seeded random subset of that many rows (never more than the file holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DataSizes {
    /// Training examples (presented in shuffled epochs); `null`: 2000 generated, or the whole file.
    pub train: Option<usize>,
    /// Held-out test examples; `null`: 300 generated, or the whole file.
    pub test: Option<usize>,
}

/// The schedule every model of a scenario follows (docs/MODEL.md §6, Protocol): the
/// continuous engine runs `warmup_trials + trials` trials of `batch` replicas; each discrete
/// reference makes the same number of updates on mini-batches of `batch` examples, drawn in
/// the same way. Learning trials are numbered `0, 1, …` and warm-up trials `−W … −1` in every
/// output file and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Learning trials (one mini-batch update each for the references). With `epochs` it is
    /// derived from the training set's size; give one of the two.
    pub trials: usize,
    /// Learning epochs (passes over the training set): sets `trials = ⌈epochs · n_train /
    /// batch⌉` once the data is loaded (a mini-batch may straddle two epochs). Every epoch
    /// starts with a fresh seeded shuffle, with or without this field.
    pub epochs: Option<usize>,
    /// Warm-up trials before learning: teacher off and `η = 0` in the continuous engine,
    /// decoder-only updates for the references (BP skips them).
    pub warmup_trials: usize,
    /// Examples per trial: the continuous engine's `B` replicas (sharing the weights, each
    /// with its own example) and the references' mini-batch size.
    pub batch: usize,
    /// Evaluate on the test set every this many learning trials; also at the end of every
    /// epoch and after the last trial.
    pub eval_every: usize,
    /// Test examples of the evaluations every `eval_every` trials: a seeded random subset of
    /// this size, the same one each time. The evaluations at epoch ends and after the last
    /// trial use the whole test set. Default: the whole test set every time.
    pub eval_examples: Option<usize>,
    /// Whether `trials` is known: given, or derived from `epochs` by
    /// [`Schedule::for_training_set`]. Checks of the trial count wait until it is.
    #[serde(skip)]
    #[schemars(skip)]
    trials_known: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            trials: 2000,
            epochs: None,
            warmup_trials: 300,
            batch: 1,
            eval_every: 100,
            eval_examples: None,
            trials_known: false,
        }
    }
}

/// Written as it can be read back: `epochs` instead of `trials` when the trials follow from
/// the epochs (a file with both is refused).
impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self.epochs {
            Some(epochs) => m.serialize_entry("epochs", &epochs)?,
            None => m.serialize_entry("trials", &self.trials)?,
        }
        m.serialize_entry("warmup_trials", &self.warmup_trials)?;
        m.serialize_entry("batch", &self.batch)?;
        m.serialize_entry("eval_every", &self.eval_every)?;
        m.serialize_entry("eval_examples", &self.eval_examples)?;
        m.end()
    }
}

impl Schedule {
    /// The same schedule with `epochs` epochs; the trial count follows from the training set
    /// again ([`Schedule::for_training_set`]).
    pub fn with_epochs(self, epochs: usize) -> Self {
        Schedule {
            epochs: Some(epochs),
            trials_known: false,
            ..self
        }
    }

    /// Warm-up plus learning trials.
    pub fn total_trials(&self) -> usize {
        self.warmup_trials.saturating_add(self.trials)
    }

    /// The first trial's number, `−W`.
    pub fn first_trial(&self) -> i64 {
        -i64::try_from(self.warmup_trials).unwrap_or(i64::MAX)
    }

    /// The schedule for a training set of `n_train` examples: `trials` from `epochs` when
    /// given (docs/MODEL.md §6, Protocol).
    pub fn for_training_set(&self, n_train: usize) -> Result<Schedule, ConfigError> {
        let Some(epochs) = self.epochs else {
            return Ok(*self);
        };
        if n_train == 0 {
            return Err(ConfigError::new("data", "the training set is empty"));
        }
        let examples = (epochs as u128) * (n_train as u128);
        let trials = examples.div_ceil(self.batch.max(1) as u128);
        if trials > MAX_TRIALS as u128 {
            return Err(ConfigError::new(
                "schedule.epochs",
                format!(
                    "{epochs} epochs of {n_train} examples in batches of {} are {trials} trials, more than {MAX_TRIALS:e}",
                    self.batch
                ),
            ));
        }
        Ok(Schedule {
            trials: trials as usize,
            trials_known: true,
            ..*self
        })
    }

    /// Whether the trial count is final: given as `trials`, or derived from `epochs` (until
    /// the data is loaded, `trials` is only a placeholder).
    pub fn trials_known(&self) -> bool {
        self.epochs.is_none() || self.trials_known
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.epochs == Some(0) {
            return Err(ConfigError::new(
                "schedule.epochs",
                "must be at least 1; leave it out to give schedule.trials instead",
            ));
        }
        if self.eval_examples == Some(0) {
            return Err(ConfigError::new(
                "schedule.eval_examples",
                "must be at least 1; leave it out to evaluate on the whole test set",
            ));
        }
        for (field, v) in [
            ("schedule.batch", self.batch),
            ("schedule.eval_every", self.eval_every),
        ] {
            if v == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        for (field, v) in [
            ("schedule.trials", self.trials),
            ("schedule.warmup_trials", self.warmup_trials),
        ] {
            if v > MAX_TRIALS {
                return Err(ConfigError::new(
                    field,
                    format!("must be at most {MAX_TRIALS:e}, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// The most trials of either kind a schedule may have (trial numbers stay exact in i64).
pub const MAX_TRIALS: usize = 1_000_000_000_000;

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
    /// Influence scale neuron `s_l` (neuron 0; hidden layers `1..L−1`).
    S,
    /// Probe pool neuron `q_l` of the difference reconstruction decoders (neuron 0; layers
    /// `2..L`).
    Q,
}

impl Variable {
    /// The name used in column headers (`h`, `d`, `tau`, `u`, `p`, `trace`, `s`, `q`).
    pub fn name(self) -> &'static str {
        match self {
            Variable::H => "h",
            Variable::D => "d",
            Variable::Tau => "tau",
            Variable::U => "u",
            Variable::P => "p",
            Variable::Trace => "trace",
            Variable::S => "s",
            Variable::Q => "q",
        }
    }
}

/// One neuron, or every neuron of the layer (`"all"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum NeuronSelect {
    /// Neuron (row) index.
    One(usize),
    /// The whole layer: one column per neuron.
    All,
}

impl Default for NeuronSelect {
    fn default() -> Self {
        NeuronSelect::One(0)
    }
}

impl TryFrom<Value> for NeuronSelect {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        match &v {
            Value::String(s) if s == "all" => Ok(NeuronSelect::All),
            _ => v
                .as_u64()
                .map(|n| NeuronSelect::One(n as usize))
                .ok_or_else(|| format!("expected a neuron index (0, 1, …) or \"all\", got {v}")),
        }
    }
}

impl From<NeuronSelect> for Value {
    fn from(n: NeuronSelect) -> Value {
        match n {
            NeuronSelect::One(i) => Value::from(i),
            NeuronSelect::All => Value::from("all"),
        }
    }
}

impl JsonSchema for NeuronSelect {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NeuronSelect".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A neuron index (0, 1, …) or \"all\" for every neuron of the layer (a whole-layer trace).",
            "anyOf": [{"type": "integer", "minimum": 0}, {"const": "all"}]
        })
    }
}

/// Which neurons to trace: a variable of one layer, one neuron (or all) of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceVariable {
    /// The population: `h`, `d`, `tau`, `u`, `p`, `trace` or `s`.
    pub variable: Variable,
    /// Its layer `l` (`h`, `d`, `tau`: 1..=L; `s`: 1..L−1; `u`: 2..=L; `p`: 0..=L; `trace`: 0..L−1).
    pub layer: usize,
    /// Neuron index, or `"all"` for the whole layer.
    #[serde(default)]
    pub neuron: NeuronSelect,
    /// Replica `b` (0..batch−1).
    #[serde(default)]
    pub replica: usize,
}

/// One traced column: a variable of one neuron of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceColumn {
    /// The population.
    pub variable: Variable,
    /// Its layer.
    pub layer: usize,
    /// Neuron (row) index.
    pub neuron: usize,
    /// Replica (column) index.
    pub replica: usize,
}

impl TraceColumn {
    /// Column name in `traces.csv`, e.g. `tau_l3_n0_r0`.
    pub fn column(&self) -> String {
        format!(
            "{}_l{}_n{}_r{}",
            self.variable.name(),
            self.layer,
            self.neuron,
            self.replica
        )
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
            Variable::S => get(Population::Influence),
            Variable::Q => get(Population::ProbePool),
        }
    }
}

/// The first traced trial: a trial number, or `"last"` for the last `traces.trials` trials
/// of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum TraceStart {
    /// Learning trials are `0, 1, …`; warm-up trials `−W … −1`.
    Trial(i64),
    /// The run's last trials.
    Last,
}

impl Default for TraceStart {
    fn default() -> Self {
        TraceStart::Trial(0)
    }
}

impl TryFrom<Value> for TraceStart {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        match &v {
            Value::String(s) if s == "last" => Ok(TraceStart::Last),
            _ => v.as_i64().map(TraceStart::Trial).ok_or_else(|| {
                format!("expected a trial number (learning trials 0, 1, …; warm-up trials negative) or \"last\", got {v}")
            }),
        }
    }
}

impl From<TraceStart> for Value {
    fn from(t: TraceStart) -> Value {
        match t {
            TraceStart::Trial(i) => Value::from(i),
            TraceStart::Last => Value::from("last"),
        }
    }
}

impl JsonSchema for TraceStart {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TraceStart".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "First traced trial: learning trials are 0, 1, …, warm-up trials −W … −1; \"last\" traces the run's last `trials` trials.",
            "anyOf": [{"type": "integer"}, {"const": "last"}]
        })
    }
}

/// What to sample into `traces.csv` (continuous engine only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Traces {
    /// Sampling interval in simulated time (0: no traces).
    pub interval: f64,
    /// First traced trial (learning trials 0, 1, …; warm-up trials −W … −1), or `"last"`.
    pub start_trial: TraceStart,
    /// Number of consecutive trials traced.
    pub trials: usize,
    /// Traced neurons; empty: `h` and `τ` of neuron 0 in every layer.
    pub variables: Vec<TraceVariable>,
}

impl Default for Traces {
    fn default() -> Self {
        Traces {
            interval: 0.1,
            start_trial: TraceStart::default(),
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
                        neuron: NeuronSelect::One(0),
                        replica: 0,
                    });
                }
            }
        }
    }

    /// The traced trials `first..last` of a run with `schedule`, clipped to the run (empty
    /// when tracing is off).
    pub fn trial_range(&self, schedule: &Schedule) -> std::ops::Range<i64> {
        if self.interval <= 0.0 || self.trials == 0 {
            return 0..0;
        }
        let end = schedule.trials as i64;
        let count = i64::try_from(self.trials).unwrap_or(i64::MAX);
        let first = match self.start_trial {
            TraceStart::Trial(t) => t,
            TraceStart::Last => end.saturating_sub(count),
        }
        .max(schedule.first_trial());
        first..first.saturating_add(count).min(end).max(first)
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
    /// Learning curves, weight norms, diagnostics and trace plots (PNG and SVG).
    pub plots: bool,
    /// The final weights of every model (`weights_<model>.json`).
    pub weights: bool,
    /// Learning trials between checkpoints (taken at the next evaluation); there is always one
    /// at every epoch end. `dtpsim run --resume DIR` continues from the last one.
    pub checkpoint_every: Option<usize>,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            plots: true,
            weights: true,
            checkpoint_every: None,
        }
    }
}

/// The default grid of `dtpsim sweep` for this scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// JSON path → values, e.g. `{"engine.protocol.t_window": [1, 4, 16]}`.
    pub params: BTreeMap<String, Vec<Value>>,
    /// Seeds per grid point (seed, seed + 1, …).
    pub seeds: usize,
}

/// A scenario: everything one run needs. The continuous engine and the discrete references
/// share the task, the data, the initial network and the schedule; `"engine": null` makes a
/// run of the references alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Short name (used in plot titles).
    pub name: String,
    /// One sentence on what the scenario shows.
    pub description: String,
    /// Seed of data, initialisation and example order.
    pub seed: u64,
    /// Where the examples come from.
    pub task: Task,
    /// How many examples are used.
    pub data: DataSizes,
    /// The student network (shared by every model).
    pub network: NetworkConfig,
    /// Trials, warm-up, batch and evaluation interval, shared by every model.
    pub schedule: Schedule,
    /// The continuous-time engine (docs/MODEL.md §6, §9); `null` for a run of the discrete
    /// references alone.
    pub engine: Option<EngineConfig>,
    /// Discrete reference algorithms trained on the same data with the same schedule
    /// (`trials` mini-batch updates of `batch` examples).
    pub references: Vec<NamedAlgorithm>,
    /// What the continuous engine samples into `traces.csv`.
    pub traces: Traces,
    /// Extra per-trial measurements of the continuous engine.
    pub diagnostics: Diagnostics,
    /// Which optional files a run writes.
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
            schedule: Schedule::default(),
            engine: Some(EngineConfig::default()),
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

/// Parses scenario text with `--set` overrides; errors name the JSON path. Relative paths
/// in the scenario (data files, weights) are taken relative to the working directory.
pub fn parse_scenario(text: &str, sets: &[String]) -> Result<Scenario, ConfigError> {
    parse_scenario_at(text, sets, None)
}

/// Parses scenario text with `--set` overrides; relative paths in it (data files, weights)
/// are resolved against `base` (the scenario file's folder) when given.
pub fn parse_scenario_at(
    text: &str,
    sets: &[String],
    base: Option<&Path>,
) -> Result<Scenario, ConfigError> {
    let mut value: Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("(file)", format!("not valid JSON: {e}")))?;
    reject_duplicate_keys(text)?;
    for s in sets {
        let (path, v) = s.split_once('=').ok_or_else(|| {
            ConfigError::new(
                format!("--set {s}"),
                "write path=value, e.g. engine.protocol.t_stim=9",
            )
        })?;
        replace_alternative(&mut value, path.trim());
        set_path(&mut value, path.trim(), v.trim())?;
    }
    let template = serde_json::to_value(Scenario::default()).unwrap_or(Value::Null);
    reject_lists_for_objects(&value, &template, "")?;
    check_exclusive_fields(&value)?;
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
    if let Some(base) = base {
        scenario.resolve_paths(base);
    }
    if let Some(engine) = &mut scenario.engine {
        if let Some(w) = engine.protocol.t_window {
            crate::error::check_range("engine.protocol.t_window", w, (0.0, true), 1e6, "")?;
        }
        engine.resolve();
    }
    if scenario.network.widths.len() >= 2 && scenario.engine.is_some() {
        scenario.traces.resolve(scenario.network.widths.len() - 1);
    }
    scenario.validate()?;
    Ok(scenario)
}

/// A key given twice in one JSON object is an error naming it (a JSON parser would silently
/// keep the last one).
fn reject_duplicate_keys(text: &str) -> Result<(), ConfigError> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    /// Walks a JSON value, remembering the path of the first duplicated key.
    struct Walk<'a> {
        path: String,
        duplicate: &'a RefCell<Option<String>>,
    }
    impl Walk<'_> {
        fn child(&self, segment: String) -> Self {
            Walk {
                path: segment,
                duplicate: self.duplicate,
            }
        }
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    *self.duplicate.borrow_mut() = Some(path);
                    return Err(serde::de::Error::custom("duplicate key"));
                }
                map.next_value_seed(self.child(path))?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(self.child(format!("{}[{i}]", self.path)))?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let duplicate = RefCell::new(None);
    let walk = Walk {
        path: String::new(),
        duplicate: &duplicate,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    if walk.deserialize(&mut de).is_err() {
        if let Some(path) = duplicate.into_inner() {
            return Err(ConfigError::new(
                path,
                "is given twice in the same object; keep one (JSON would silently use the last)",
            ));
        }
    }
    Ok(())
}

/// Sections are objects with named fields: a JSON list where the default scenario (`template`)
/// has an object is an error (serde would read it positionally).
fn reject_lists_for_objects(
    value: &Value,
    template: &Value,
    path: &str,
) -> Result<(), ConfigError> {
    let here = || {
        if path.is_empty() {
            "(top level)".to_string()
        } else {
            path.to_string()
        }
    };
    match (value, template) {
        (Value::Array(_), Value::Object(_)) => Err(ConfigError::new(
            here(),
            "is a list, but must be an object with named fields (see scenarios/scenario.schema.json)",
        )),
        (Value::Object(v), Value::Object(t)) => {
            for (k, sub) in v {
                if let Some(ts) = t.get(k) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    reject_lists_for_objects(sub, ts, &p)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Pairs of fields that say the same thing two ways; a file gives at most one of each.
const ALTERNATIVES: [(&str, &str, &str); 2] = [
    ("schedule", "trials", "epochs"),
    ("engine.protocol", "t_stim", "t_window"),
];

/// A `--set` of one field of an [`ALTERNATIVES`] pair replaces the other one given in the file
/// (`--set schedule.epochs=3` on a file with `trials`).
fn replace_alternative(value: &mut Value, path: &str) {
    for (section, a, b) in ALTERNATIVES {
        let other = if path == format!("{section}.{a}") {
            b
        } else if path == format!("{section}.{b}") {
            a
        } else {
            continue;
        };
        let mut node = &mut *value;
        for key in section.split('.') {
            match node.get_mut(key) {
                Some(next) => node = next,
                None => return,
            }
        }
        if let Some(obj) = node.as_object_mut() {
            obj.remove(other);
        }
    }
}

/// Fields that must not be given together: checked on the JSON as written, before defaults
/// are filled in.
fn check_exclusive_fields(value: &Value) -> Result<(), ConfigError> {
    let schedule = &value["schedule"];
    if schedule.get("trials").is_some() && schedule.get("epochs").is_some() {
        return Err(ConfigError::new(
            "schedule",
            "trials and epochs are both given; give one: epochs sets trials = ⌈epochs · n_train / batch⌉",
        ));
    }
    let protocol = &value["engine"]["protocol"];
    if protocol.get("t_stim").is_some() && protocol.get("t_window").is_some() {
        return Err(ConfigError::new(
            "engine.protocol",
            "t_stim and t_window are both given; give one: t_window sets t_stim = t_on + t_window",
        ));
    }
    Ok(())
}

/// Reads and checks a scenario file; the error names the file. Relative paths inside it are
/// relative to the file's folder.
pub fn load_scenario(path: &Path, sets: &[String]) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse_scenario_at(&text, sets, Some(base))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl Scenario {
    /// Makes relative data and weights paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut std::path::PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match &mut self.task {
            Task::Csv { train, test, .. } => {
                fix(train);
                fix(test);
            }
            Task::Idx { dir: Some(d), .. } => fix(d),
            _ => {}
        }
        if let Some(w) = &mut self.network.weights {
            fix(w);
        }
    }

    /// The initial student network, shared by every model: loaded from `network.weights` or
    /// drawn from `network.init` with the scenario's seed.
    pub fn initial_network(&self) -> Result<Network, ConfigError> {
        let arch = self.architecture()?;
        match &self.network.weights {
            Some(path) => {
                let net = crate::weights::load(path)
                    .map_err(|e| ConfigError::new("network.weights", e.to_string()))?;
                if net.arch() != &arch {
                    return Err(ConfigError::new(
                        "network.weights",
                        format!(
                            "{}: the file holds {}, the scenario asks for {}; make network.widths/activation/bias agree with the file",
                            path.display(),
                            net.arch().describe(),
                            arch.describe()
                        ),
                    ));
                }
                Ok(net)
            }
            None => Network::new(arch, self.network.init, self.seed)
                .map_err(|e| ConfigError::new("network", e.to_string())),
        }
    }

    /// The student architecture (its loss is the task's natural loss).
    pub fn architecture(&self) -> Result<Architecture, ConfigError> {
        let mut arch = Architecture::new(
            &self.network.widths,
            self.network.activation,
            self.task.natural_loss(),
        )
        .map_err(|e| ConfigError::new("network", e.to_string()))?;
        arch.bias = self.network.bias;
        if let (Some(out), Some(last)) =
            (self.network.output_activation, arch.activations.last_mut())
        {
            *last = out;
        }
        Ok(arch)
    }

    /// Checks every field; errors name the JSON path and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_task_and_network(&self.task, &self.network)?;
        let depth = self.network.widths.len() - 1;
        self.schedule.validate()?;
        for (field, n) in [
            ("data.train", self.data.train),
            ("data.test", self.data.test),
        ] {
            if n == Some(0) {
                return Err(ConfigError::new(
                    field,
                    "must be at least 1 (or null for every row of a data file)",
                ));
            }
        }
        if !self.references.is_empty() {
            validate_algorithms(&self.references, "references", depth)?;
        }
        match &self.engine {
            Some(engine) => {
                engine
                    .validate(depth)
                    .map_err(|e| ConfigError::new(format!("engine.{}", e.path), e.message))?;
                let p = &engine.protocol;
                if p.t_on >= p.t_stim && self.schedule.trials > 0 {
                    return Err(ConfigError::new(
                        "engine.protocol.t_on",
                        format!("{} is not before the end of the stimulus (t_stim = {}): the teacher never comes on and the learning trials cannot learn; make the window [t_on, t_stim) non-empty", p.t_on, p.t_stim),
                    ));
                }
                self.validate_traces(engine, depth)?;
            }
            None => {
                if self.references.is_empty() {
                    return Err(ConfigError::new(
                        "engine",
                        "is null and there are no references: nothing to run; give an engine or list references",
                    ));
                }
                if self.diagnostics != Diagnostics::default() {
                    return Err(ConfigError::new(
                        "diagnostics",
                        "measures the continuous engine, but \"engine\" is null; remove the section or give an engine",
                    ));
                }
                if self.traces != Traces::default() {
                    return Err(ConfigError::new(
                        "traces",
                        "samples the continuous engine, but \"engine\" is null; remove the section or give an engine",
                    ));
                }
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

    fn validate_traces(&self, engine: &EngineConfig, depth: usize) -> Result<(), ConfigError> {
        let t = &self.traces;
        if t.interval != 0.0 {
            check_positive("traces.interval", t.interval)?;
        }
        let sched = &self.schedule;
        if let TraceStart::Trial(first) = t.start_trial {
            if t.interval > 0.0 && t.trials > 0 && sched.trials_known() {
                let (lo, hi) = (sched.first_trial(), sched.trials as i64 - 1);
                let last = first.saturating_add(i64::try_from(t.trials).unwrap_or(i64::MAX) - 1);
                if first > hi || last < lo {
                    return Err(ConfigError::new(
                        "traces.start_trial",
                        format!(
                            "traces trials {first}..{last} but the run has trials {lo}..{hi} (warm-up {lo}..-1, learning 0..{hi}); give a start within the run, or \"last\""
                        ),
                    ));
                }
            }
        }
        let d = &engine.dynamics;
        let b = sched.batch;
        for (i, v) in t.variables.iter().enumerate() {
            let path = format!("traces.variables[{i}]");
            let name = v.variable.name();
            let (lo, hi) = match v.variable {
                Variable::H | Variable::D | Variable::Tau => (1, depth),
                Variable::S => (1, depth - 1),
                Variable::U | Variable::Q => (2, depth),
                Variable::P => (0, depth),
                Variable::Trace => (0, depth - 1),
            };
            if v.layer < lo || v.layer > hi {
                return Err(ConfigError::new(
                    format!("{path}.layer"),
                    format!("{name} exists for layers {lo}..={hi}, got {}", v.layer),
                ));
            }
            let width = self.trace_width(v.variable, v.layer);
            if let NeuronSelect::One(n) = v.neuron {
                if n >= width {
                    return Err(ConfigError::new(
                        format!("{path}.neuron"),
                        format!(
                            "layer {} has {width} such neurons (0..{}), got {n}; or give \"all\"",
                            v.layer,
                            width - 1,
                        ),
                    ));
                }
            }
            if v.replica >= b {
                return Err(ConfigError::new(
                    format!("{path}.replica"),
                    format!("there are {b} replicas (schedule.batch), got {}", v.replica),
                ));
            }
            let missing = match v.variable {
                Variable::U => (d.scheme != crate::discrete::targets::Scheme::DecoderInput)
                    .then_some("engine.dynamics.scheme = \"decoder_input\""),
                Variable::Trace => {
                    (d.trace.stages == 0).then_some("engine.dynamics.trace.stages > 0")
                }
                Variable::S => {
                    (!d.influence.enabled).then_some("engine.dynamics.influence.enabled = true")
                }
                Variable::Q => (!d.decoder.probes())
                    .then_some("engine.dynamics.decoder.loss = \"difference_reconstruction\""),
                _ => None,
            };
            if let Some(need) = missing {
                return Err(ConfigError::new(
                    format!("{path}.variable"),
                    format!("{name} needs {need}"),
                ));
            }
        }
        Ok(())
    }

    /// How many neurons a traced variable has in `layer`.
    fn trace_width(&self, variable: Variable, layer: usize) -> usize {
        match variable {
            Variable::P | Variable::S | Variable::Q => 1,
            Variable::Trace => self.network.widths[layer] + usize::from(self.network.bias),
            _ => self.network.widths[layer],
        }
    }

    /// The traced columns, whole-layer selections expanded (empty without an engine).
    pub fn trace_columns(&self) -> Vec<TraceColumn> {
        if self.engine.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for v in &self.traces.variables {
            let neurons = match v.neuron {
                NeuronSelect::One(n) => n..n + 1,
                NeuronSelect::All => 0..self.trace_width(v.variable, v.layer),
            };
            for neuron in neurons {
                out.push(TraceColumn {
                    variable: v.variable,
                    layer: v.layer,
                    neuron,
                    replica: v.replica,
                });
            }
        }
        out
    }

    /// This scenario for a training set of `n_train` examples: `schedule.trials` derived from
    /// `schedule.epochs` when given, and checked again with the final trial count.
    pub fn for_training_set(&self, n_train: usize) -> Result<Scenario, ConfigError> {
        let mut s = self.clone();
        s.schedule = self.schedule.for_training_set(n_train)?;
        s.validate()?;
        Ok(s)
    }

    /// What is valid but probably not what was meant (printed by `check` and `run`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(engine) = &self.engine {
            // Ω̇_l's Jacobian in Ω_l is −η_Ω(γ_Ω + Σ_b a_b n_bᵀ), whose eigenvalues reach
            // η_Ω(γ_Ω + B) when the replicas' presynaptic vectors align (docs/MODEL.md §6)
            let decoder = &engine.dynamics.decoder;
            let rate = decoder.eta * (decoder.gamma + self.schedule.batch as f64);
            if rate > STIFF_DECODER_RATE {
                out.push(format!(
                    "engine.dynamics.decoder.eta = {} with schedule.batch = {}: the decoders relax at up to η_Ω·(γ_Ω + B) = {} per time unit, which holds the explicit solver to steps of about {:.2} (stiff: many evaluations per trial); an η_Ω near {} keeps the step free",
                    decoder.eta,
                    self.schedule.batch,
                    crate::report::fmt_sig(rate, 3),
                    3.3 / rate,
                    crate::report::fmt_sig(STIFF_DECODER_RATE / (decoder.gamma + self.schedule.batch as f64), 2),
                ));
            }
            let layers = self.network.widths.len().saturating_sub(1);
            let tau_h = engine.dynamics.tau_h;
            let protocol = &engine.protocol;
            let unsettled = protocol.unsettled_fraction(layers, tau_h);
            if unsettled > crate::continuous::config::UNSETTLED_WARNING {
                // the settle that leaves 1%, in steps of τ_h/2 up to 2000 τ_h
                let settled = (1..=4000)
                    .map(|k| 0.5 * f64::from(k))
                    .find(|&x| crate::continuous::config::cascade_residual(layers, x) < 0.01)
                    .map_or("much longer".to_string(), |x| {
                        format!("of {}", crate::report::fmt_sig(x * tau_h, 3))
                    });
                out.push(format!(
                    "engine.protocol.t_on = {} with {layers} layers and engine.dynamics.tau_h = {tau_h}: at teacher onset the top layer still carries {:.0}% of the previous stimulus (a cascade of {layers} stages, docs/MODEL.md §6 Settling), which biases the learned update against the output weights; a t_on {settled} leaves under 1% (set t_window to keep the teacher window)",
                    protocol.t_on,
                    100.0 * unsettled,
                ));
            }
        }
        let t = &self.traces;
        if !self.schedule.trials_known() {
            // the trial count follows from epochs once the data is loaded
            return out;
        }
        if self.engine.is_some() && t.interval > 0.0 && t.trials > 0 {
            let range = self.traces.trial_range(&self.schedule);
            let traced = (range.end - range.start).max(0) as usize;
            if traced < t.trials {
                out.push(format!(
                    "traces: {} trials asked for, {traced} exist in the run (trials {}..{}); only those are traced",
                    t.trials,
                    range.start,
                    range.end - 1
                ));
            }
        }
        if self.schedule.eval_every > self.schedule.trials && self.schedule.trials > 0 {
            out.push(format!(
                "schedule.eval_every = {} exceeds schedule.trials = {}: the test set is evaluated only before and after learning",
                self.schedule.eval_every, self.schedule.trials
            ));
        }
        out
    }
}

/// Above this relaxation rate of the decoders (per time unit) `check` warns that the engine's
/// ODE is stiff: an explicit method's stable step (about 3.3/rate for Dopri5) falls below the
/// step its accuracy needs.
pub const STIFF_DECODER_RATE: f64 = 4.0;

/// One row of `traces.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    /// Simulated time since the start of the run.
    pub time: f64,
    /// Trial number (warm-up trials negative).
    pub trial: i64,
    /// Whether the teacher was on (`m(t) = 1`).
    pub teacher: bool,
    /// One value per traced column.
    pub values: Vec<f64>,
}

/// Samples the scenario's trace columns during the chosen trials: into memory
/// ([`TraceRecorder::rows`]), or, after [`TraceRecorder::stream_to`], straight into a CSV file
/// that is flushed at every trial's end, so a long trace never sits in memory.
pub struct TraceRecorder {
    /// Sampling interval in simulated time.
    pub interval: f64,
    /// Traced trials (run numbering).
    pub trials: std::ops::Range<i64>,
    /// What is read at each sample.
    pub columns: Vec<TraceColumn>,
    /// The samples so far (when not streaming).
    pub rows: Vec<TraceRow>,
    sink: Option<TraceSink>,
}

/// The file a streaming recorder writes: `<name>.partial` until [`TraceRecorder::finish`].
struct TraceSink {
    writer: csv::Writer<std::io::BufWriter<std::fs::File>>,
    partial: std::path::PathBuf,
    path: std::path::PathBuf,
    written: usize,
    last_trial: Option<i64>,
    error: Option<std::io::Error>,
}

impl TraceRecorder {
    /// A recorder for `scenario` (inactive when the interval or the column list is empty).
    pub fn new(scenario: &Scenario) -> Self {
        TraceRecorder {
            interval: scenario.traces.interval,
            trials: scenario.traces.trial_range(&scenario.schedule),
            columns: scenario.trace_columns(),
            rows: Vec::new(),
            sink: None,
        }
    }

    /// Whether the recorder will take any sample.
    pub fn active(&self) -> bool {
        self.interval > 0.0 && !self.columns.is_empty() && !self.trials.is_empty()
    }

    /// The header of `traces.csv`: `time, trial, phase, teacher`, then one column per traced
    /// variable.
    pub fn header(&self) -> Vec<String> {
        let mut header: Vec<String> = ["time", "trial", "phase", "teacher"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        header.extend(self.columns.iter().map(|v| v.column()));
        header
    }

    /// Streams every sample into `path` (written as `path.partial` until [`Self::finish`]).
    pub fn stream_to(&mut self, path: &Path) -> Result<(), crate::error::IoError> {
        let partial = crate::record::partial_path(path);
        let fail = |cause: std::io::Error| crate::error::IoError::Write {
            path: partial.clone(),
            cause,
        };
        let file = std::fs::File::create(&partial).map_err(fail)?;
        let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
        writer
            .write_record(self.header())
            .map_err(|e| fail(e.into()))?;
        self.sink = Some(TraceSink {
            writer,
            partial: partial.clone(),
            path: path.to_path_buf(),
            written: 0,
            last_trial: None,
            error: None,
        });
        Ok(())
    }

    /// Continues streaming into `<path>.partial` as a checkpoint left it: the file cut to its
    /// first `bytes` bytes, which hold `rows` samples (see [`crate::checkpoint`]).
    ///
    /// A run stopped by Ctrl-C finished its files, so the stream may stand under its final
    /// name `path`: it is taken back as `<path>.partial` (a killed run leaves the partial file,
    /// which is used as it is). A stream that held no sample at the checkpoint, and was removed
    /// as empty, starts again.
    pub fn resume_stream(
        &mut self,
        path: &Path,
        bytes: u64,
        rows: usize,
    ) -> Result<(), crate::error::IoError> {
        let partial = crate::record::partial_path(path);
        let fail = |cause: std::io::Error| crate::error::IoError::Write {
            path: partial.clone(),
            cause,
        };
        if !partial.exists() {
            if path.exists() {
                std::fs::rename(path, &partial).map_err(fail)?;
            } else if rows == 0 {
                return self.stream_to(path);
            }
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&partial)
            .map_err(fail)?;
        if file.metadata().map_err(fail)?.len() < bytes {
            return Err(fail(std::io::Error::other(format!(
                "holds fewer than the {bytes} bytes its checkpoint counted"
            ))));
        }
        file.set_len(bytes).map_err(fail)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(fail)?;
        let writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
        self.sink = Some(TraceSink {
            writer,
            partial: partial.clone(),
            path: path.to_path_buf(),
            written: rows,
            last_trial: None,
            error: None,
        });
        Ok(())
    }

    /// Ends a stream: flushes the file and gives it its name (or removes it when no sample
    /// was taken). Returns the file written, if any; the first write error, if one happened.
    pub fn finish(&mut self) -> Result<Option<std::path::PathBuf>, crate::error::IoError> {
        let Some(mut sink) = self.sink.take() else {
            return Ok(None);
        };
        let fail = |path: &Path, cause: std::io::Error| crate::error::IoError::Write {
            path: path.to_path_buf(),
            cause,
        };
        if let Some(e) = sink.error.take() {
            let _ = std::fs::remove_file(&sink.partial);
            return Err(fail(&sink.partial, e));
        }
        if let Err(e) = sink.writer.flush() {
            let _ = std::fs::remove_file(&sink.partial);
            return Err(fail(&sink.partial, e));
        }
        drop(sink.writer);
        if sink.written == 0 {
            let _ = std::fs::remove_file(&sink.partial);
            return Ok(None);
        }
        std::fs::rename(&sink.partial, &sink.path).map_err(|e| fail(&sink.path, e))?;
        Ok(Some(sink.path))
    }

    fn push(&mut self, row: TraceRow) {
        let Some(sink) = &mut self.sink else {
            self.rows.push(row);
            return;
        };
        if sink.error.is_some() {
            return;
        }
        // flush once per trial: a run stopped by a kill keeps every finished trial on disk
        if sink.last_trial.is_some_and(|t| t != row.trial) {
            if let Err(e) = sink.writer.flush() {
                sink.error = Some(e);
                return;
            }
        }
        sink.last_trial = Some(row.trial);
        let phase = if row.trial < 0 { "warmup" } else { "learning" };
        let mut record = vec![
            crate::record::num(row.time),
            row.trial.to_string(),
            phase.to_string(),
            u8::from(row.teacher).to_string(),
        ];
        record.extend(row.values.iter().map(|v| crate::record::num(*v)));
        match sink.writer.write_record(&record) {
            Ok(()) => sink.written += 1,
            Err(e) => sink.error = Some(e.into()),
        }
    }
}

impl Observer for TraceRecorder {
    fn checkpoint(&mut self) -> Result<Option<(u64, usize)>, crate::error::IoError> {
        let Some(sink) = &mut self.sink else {
            return Ok(None);
        };
        let fail = |cause: std::io::Error| crate::error::IoError::Write {
            path: sink.partial.clone(),
            cause,
        };
        if let Some(e) = sink.error.take() {
            return Err(fail(e));
        }
        sink.writer.flush().map_err(fail)?;
        let bytes = sink
            .writer
            .get_ref()
            .get_ref()
            .metadata()
            .map_err(fail)?
            .len();
        Ok(Some((bytes, sink.written)))
    }

    fn interval(&self, trial: i64) -> Option<f64> {
        let active =
            self.interval > 0.0 && !self.columns.is_empty() && self.trials.contains(&trial);
        active.then_some(self.interval)
    }

    fn sample(&mut self, s: &Sample) {
        if !self.trials.contains(&s.trial) {
            return;
        }
        // a segment boundary is sampled twice, at the end of one segment and the start of the
        // next, each with its own teacher gate: the gate switch is drawn at the exact time
        let row = TraceRow {
            time: s.time,
            trial: s.trial,
            teacher: s.teacher,
            values: self
                .columns
                .iter()
                .map(|v| v.read(s).unwrap_or(f64::NAN))
                .collect(),
        };
        self.push(row);
    }
}
