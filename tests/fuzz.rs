//! Property-based fuzzing of every input reader (issue "no input can make dtpsim panic or
//! abort"): scenario files, `--set` overrides, CSV data files and weights files are fed
//! mutated inputs, and each reader must return either `Ok` or an error whose message names
//! the field or the file. A panic inside the library is caught by proptest's runner and
//! reported as a failure with the shrunk (minimal) input.
//!
//! Each property runs a bounded number of cases (`cases(…)` below) so that the file stays
//! fast in `cargo test --release`; `PROPTEST_CASES` replaces every property's count and
//! `PROPTEST_RNG_SEED` its fixed seed, for longer sessions (docs/FUZZING.md). Each property
//! prints its case count, how many inputs were accepted, and its time (`--nocapture`).
//!
//! Properties that fail because of a known finding stay here, marked `#[ignore = "finding: …"]`
//! so that the default suite passes; each finding also has a minimal reproduction below.

use dtpsim::data::Task;
use dtpsim::scenario::{parse_scenario, set_path, Scenario};
use dtpsim::{Activation, Architecture, ConfigError, Init, Loss, Network};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Longest error message accepted before it counts as echoing huge input.
const MAX_MESSAGE: usize = 1000;

// ---------------------------------------------------------------------------------------
// Running a property

/// The runner's configuration: `default_cases` cases and a fixed seed (so the default suite
/// is reproducible), unless `PROPTEST_CASES` / `PROPTEST_RNG_SEED` say otherwise. No failure
/// files are written into the source tree: findings are reproduced by the tests at the end.
fn config(default_cases: u32, seed: u64) -> Config {
    // `Config::default()` reads the PROPTEST_* environment variables.
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(seed);
    }
    config.failure_persistence = None;
    config
}

/// Runs `test` on values of `strategy`; `test` returns whether the reader accepted the input.
/// Prints the number of cases, accepted inputs and the time; panics with the minimal failing
/// input on failure (including a panic inside the library).
fn run_property<S>(
    name: &str,
    default_cases: u32,
    seed: u64,
    strategy: S,
    test: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let config = config(default_cases, seed);
    let cases = config.cases;
    let (calls, accepted) = (Cell::new(0usize), Cell::new(0usize));
    let start = Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        calls.set(calls.get() + 1);
        if test(value)? {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    });
    println!(
        "fuzz {name}: {cases} cases ({} runs, {} accepted by the reader) in {:.2} s",
        calls.get(),
        accepted.get(),
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

/// A scratch folder of this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dtpsim-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Bytes shown as text in failure reports.
#[derive(Clone)]
struct Text(Vec<u8>);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

// ---------------------------------------------------------------------------------------
// Error checks

/// The scenario's top-level fields: every scenario error path starts with one of them, or is
/// `(file)` (not JSON), `(top level)` (not an object) or `--set …` (a bad override).
const TOP_FIELDS: &[&str] = &[
    "name",
    "description",
    "seed",
    "task",
    "data",
    "network",
    "schedule",
    "engine",
    "references",
    "traces",
    "diagnostics",
    "outputs",
    "sweep",
];

/// A scenario error names a field (its JSON path) or the file, and prints as `path: message`.
fn check_config_error(e: &ConfigError) -> Result<(), TestCaseError> {
    let shown: String = e.to_string().chars().take(300).collect();
    prop_assert!(!e.message.trim().is_empty(), "empty message: {shown}");
    prop_assert!(
        e.to_string().starts_with(&format!("{}: ", e.path)),
        "not `path: message`: {shown}"
    );
    let first = e.path.split(['.', '[']).next().unwrap_or("");
    // an unknown or duplicated key is named by the path, which ends with it
    let unknown = e.message.starts_with("unknown field `") || e.message.contains("given twice");
    prop_assert!(
        matches!(e.path.as_str(), "(file)" | "(top level)")
            || e.path.starts_with("--set ")
            || TOP_FIELDS.contains(&first)
            || unknown,
        "the error does not name a scenario field: {shown}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// JSON mutations (scenarios and weights files)

/// Names of scenario fields, used as keys of added entries and as `--set` path segments.
const KEYS: &[&str] = &[
    "name",
    "description",
    "seed",
    "task",
    "kind",
    "widths",
    "activation",
    "gain",
    "dim",
    "classes",
    "separation",
    "train",
    "test",
    "inputs",
    "outputs",
    "classification",
    "data",
    "network",
    "bias",
    "init",
    "weights",
    "schedule",
    "trials",
    "warmup_trials",
    "batch",
    "eval_every",
    "engine",
    "dynamics",
    "scheme",
    "leak",
    "beta",
    "tau_h",
    "tau_d",
    "tau_p",
    "pool_eps",
    "trace",
    "delay",
    "stages",
    "influence",
    "enabled",
    "eps",
    "plasticity",
    "rule",
    "gate",
    "eta",
    "gamma",
    "relaxation_time",
    "decoder",
    "protocol",
    "t_stim",
    "t_on",
    "t_window",
    "t_gap",
    "solver",
    "method",
    "rtol",
    "atol",
    "step",
    "runaway",
    "references",
    "optimizer",
    "lr",
    "relaxation",
    "order",
    "iterations",
    "tolerance",
    "rate",
    "noise",
    "traces",
    "interval",
    "start_trial",
    "variables",
    "variable",
    "layer",
    "neuron",
    "replica",
    "diagnostics",
    "update_cosine",
    "plots",
    "sweep",
    "params",
    "seeds",
    "format",
    "version",
    "architecture",
    "activations",
    "loss",
    "encoders",
    "decoders",
];

/// Strings that mean something somewhere (enum names, special numbers, paths).
const STRINGS: &[&str] = &[
    "",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1",
    "0",
    "all",
    "last",
    "tanh",
    "linear",
    "softplus",
    "leaky_relu",
    "leaky_relu:0.1",
    "leaky_relu:NaN",
    "leaky_relu:inf",
    "leaky_relu:-1",
    "leaky_relu:",
    "teacher_student",
    "clusters",
    "csv",
    "bp",
    "dtp",
    "dtp1",
    "sgd",
    "adam",
    "decoder_output",
    "decoder_input",
    "difference",
    "parallel",
    "sequential",
    "tau_dot",
    "tau_dot_full",
    "displacement",
    "teacher",
    "always",
    "dopri5",
    "dop853",
    "rk4",
    "low_rank",
    "state",
    "gaussian",
    "orthogonal",
    "mse",
    "softmax_ce",
    "h",
    "d",
    "tau",
    "u",
    "p",
    "s",
    "dtpsim-weights",
    "Cargo.toml",
    "scenarios/quickstart.json",
    "/nonexistent/file.csv",
    "/dev/null",
    ".",
    "/",
];

/// Numbers at and around the edges: zero, ±1, the integer limits, the float limits.
const NUMBERS: &[f64] = &[
    0.0,
    0.5,
    -0.5,
    1.5,
    2.5,
    1e-12,
    1e12,
    1e300,
    -1e300,
    1e-300,
    5e-324,
    9.3e18,
    1.9e19,
    f64::MAX,
    f64::MIN,
    -0.0,
];

/// A JSON scalar: null, booleans, edge integers and floats, strings.
fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            3,
            4,
            7,
            10,
            100,
            1_000_000,
            i64::MAX,
            i64::MIN
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![u64::MAX, 1 << 63, (1 << 32) + 1, u32::MAX as u64])
            .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(NUMBERS.to_vec()).prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        prop::sample::select(STRINGS.to_vec()).prop_map(Value::from),
        "[a-z_]{0,10}".prop_map(Value::from),
        any::<String>().prop_map(|s| Value::from(s.chars().take(6).collect::<String>())),
    ]
}

/// A key: a known field name or a random one.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
        1 => "[a-z_]{0,8}",
        1 => any::<String>().prop_map(|s| s.chars().take(4).collect()),
    ]
}

/// Any JSON value, nested at most three deep.
fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// Every node's path, root first (pre-order).
fn node_paths(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(path.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    path.push(Seg::Key(k.clone()));
                    walk(c, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    path.push(Seg::Idx(i));
                    walk(c, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, seg| match seg {
        Seg::Key(k) => cur.get_mut(k.as_str()),
        Seg::Idx(i) => cur.get_mut(*i),
    })
}

/// A path as `--set` writes it: `engine.protocol.t_stim`, `references[0].beta`.
fn render_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// An edit of a JSON tree; `Index` picks the node among all nodes (pre-order).
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the node with a value.
    Replace(Index, Value),
    /// Remove the node from its object or list.
    Delete(Index),
    /// Add (or overwrite) a key in the nearest object at or above the node.
    AddKey(Index, String, Value),
    /// A change that keeps the type: another number of the same kind, a flipped boolean,
    /// another known string; mostly keeps the file valid, so that accepted inputs are common.
    Perturb(Index, u64, f64),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), arb_value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        2 => any::<Index>().prop_map(Edit::Delete),
        2 => (any::<Index>(), arb_key(), arb_value()).prop_map(|(i, k, v)| Edit::AddKey(i, k, v)),
        4 => (any::<Index>(), any::<u64>(), 0.0f64..4.0)
            .prop_map(|(i, n, f)| Edit::Perturb(i, n, f)),
    ]
}

fn apply_edit(root: &mut Value, edit: &Edit) {
    let paths = node_paths(root);
    match edit {
        Edit::Replace(i, v) => {
            if let Some(node) = node_mut(root, i.get::<Vec<Seg>>(&paths)) {
                *node = v.clone();
            }
        }
        Edit::Delete(i) => {
            let path = i.get::<Vec<Seg>>(&paths);
            if let Some((last, parent)) = path.split_last() {
                match (node_mut(root, parent), last) {
                    (Some(Value::Object(m)), Seg::Key(k)) => {
                        m.remove(k);
                    }
                    (Some(Value::Array(a)), Seg::Idx(j)) => {
                        a.remove(*j);
                    }
                    _ => {}
                }
            }
        }
        Edit::AddKey(i, k, v) => {
            let mut path = i.get::<Vec<Seg>>(&paths).clone();
            loop {
                if let Some(Value::Object(m)) = node_mut(root, &path) {
                    m.insert(k.clone(), v.clone());
                    return;
                }
                if path.pop().is_none() {
                    return;
                }
            }
        }
        Edit::Perturb(i, n, f) => {
            if let Some(node) = node_mut(root, i.get::<Vec<Seg>>(&paths)) {
                *node = perturb(node, *n, *f);
            }
        }
    }
}

/// A value of the same type as `v`: another count of similar size, another integer, the
/// float times `f`, the boolean flipped, a known string.
fn perturb(v: &Value, n: u64, f: f64) -> Value {
    match v {
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(x) if x.is_u64() => {
            let x = x.as_u64().unwrap_or(0);
            Value::from(n % (2 * x.min(1 << 20) + 3))
        }
        Value::Number(x) if x.is_i64() => Value::from(x.as_i64().unwrap_or(0).saturating_sub(1)),
        Value::Number(x) => Value::from(x.as_f64().unwrap_or(0.0) * f),
        Value::String(_) => Value::from(STRINGS[n as usize % STRINGS.len()]),
        other => other.clone(),
    }
}

/// An edit of the text after the tree edits: none, truncation, a changed byte, inserted
/// bytes, or a raw number token the JSON tree cannot hold (`1e400`, `NaN`, …).
#[derive(Debug, Clone)]
enum TextEdit {
    Truncate(Index),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    /// Replaces the digits of one number in the text.
    Number(Index, &'static str),
}

const RAW_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-0",
    "1.0",
    "0.0",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775809",
    "4294967296",
    "1e-400",
    "0x10",
    "1_0",
    "01",
    "1.",
    ".5",
    "+1",
    "1e",
];

fn arb_text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        any::<Index>().prop_map(TextEdit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| TextEdit::SetByte(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(i, b)| TextEdit::Insert(i, b)),
        (any::<Index>(), prop::sample::select(RAW_NUMBERS.to_vec()))
            .prop_map(|(i, t)| TextEdit::Number(i, t)),
    ]
}

fn apply_text_edit(text: &mut Vec<u8>, edit: &TextEdit) {
    let len = text.len();
    match edit {
        TextEdit::Truncate(i) => text.truncate(i.index(len + 1)),
        TextEdit::SetByte(i, b) => {
            if len > 0 {
                text[i.index(len)] = *b;
            }
        }
        TextEdit::Insert(i, b) => {
            let at = i.index(len + 1);
            text.splice(at..at, b.iter().copied());
        }
        TextEdit::Number(i, token) => {
            // the maximal runs of digits, signs, dots and exponents
            let mut runs = Vec::new();
            let mut j = 0;
            while j < len {
                if text[j].is_ascii_digit() {
                    let mut k = j;
                    while k < len
                        && matches!(text[k], b'0'..=b'9' | b'.' | b'e' | b'E' | b'-' | b'+')
                    {
                        k += 1;
                    }
                    runs.push(j..k);
                    j = k;
                } else {
                    j += 1;
                }
            }
            if !runs.is_empty() {
                let r = runs[i.index(runs.len())].clone();
                text.splice(r, token.bytes());
            }
        }
    }
}

/// A mutated JSON document: tree edits on a base value, then text edits on its text.
#[derive(Debug, Clone)]
struct JsonMutation {
    base: Index,
    edits: Vec<Edit>,
    pretty: bool,
    text_edits: Vec<TextEdit>,
}

fn arb_json_mutation(max_edits: usize) -> impl Strategy<Value = JsonMutation> {
    (
        any::<Index>(),
        prop::collection::vec(arb_edit(), 0..=max_edits),
        any::<bool>(),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(arb_text_edit(), 1..3),
        ],
    )
        .prop_map(|(base, edits, pretty, text_edits)| JsonMutation {
            base,
            edits,
            pretty,
            text_edits,
        })
}

impl JsonMutation {
    /// The mutated text of one of `bases` (`(text, value)` pairs). Without tree edits the
    /// original text is kept (comments of formatting and all).
    fn apply(&self, bases: &[(String, Value)]) -> String {
        let (text, value) = self.base.get(bases);
        let mut bytes = if self.edits.is_empty() {
            text.clone().into_bytes()
        } else {
            let mut v = value.clone();
            for e in &self.edits {
                apply_edit(&mut v, e);
            }
            if self.pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            }
        };
        for e in &self.text_edits {
            apply_text_edit(&mut bytes, e);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The shipped scenarios (text and parsed value), the JSON Schema excluded.
fn shipped_scenarios() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(format!("{ROOT}/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.contains("schema")
        })
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let value = serde_json::from_str(&text).unwrap();
        out.push((text, value));
    }
    assert!(out.len() >= 5, "the shipped scenarios are the fuzzing base");
    out
}

// ---------------------------------------------------------------------------------------
// Scenario properties

/// Checks one parse result: an accepted scenario passes its own validation and answers
/// `warnings()` and `trace_columns()` without panicking; an error names the field.
fn check_parse(result: &Result<Scenario, ConfigError>) -> Result<bool, TestCaseError> {
    match result {
        Ok(s) => {
            prop_assert_eq!(s.validate(), Ok(()));
            let _ = s.warnings();
            let _ = s.trace_columns();
            let _ = s.architecture();
            Ok(true)
        }
        Err(e) => {
            check_config_error(e)?;
            Ok(false)
        }
    }
}

/// The scenario parser on mutated shipped scenarios (random edits at random JSON paths with
/// random values, deleted and unknown keys, truncation, changed bytes, raw number tokens):
/// never panics; an accepted scenario validates; an error names a field, `(file)` or
/// `(top level)` and prints as `path: message`. (A document that is a JSON list is read
/// positionally and its errors are named `[i]`: that is `finding_scenario_accepts_json_lists`,
/// so for such documents only the absence of panics and a non-empty message are checked.)
#[test]
fn scenario_parser_never_panics() {
    let bases = shipped_scenarios();
    run_property(
        "scenario_parser_never_panics",
        3000,
        1,
        arb_json_mutation(4),
        |m| {
            let text = m.apply(&bases);
            let result = parse_scenario(&text, &[]);
            let is_list = serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_array());
            match &result {
                Err(e) if is_list => {
                    prop_assert!(!e.message.is_empty());
                    Ok(false)
                }
                _ => check_parse(&result),
            }
        },
    );
}

/// The resolved form round-trips: when a mutated scenario is accepted, its JSON
/// (`serde_json::to_string`) parses again to an equal scenario.
#[test]
fn scenario_resolved_form_round_trips() {
    let bases = shipped_scenarios();
    run_property(
        "scenario_resolved_form_round_trips",
        1000,
        2,
        arb_json_mutation(3),
        |m| {
            let Ok(s) = parse_scenario(&m.apply(&bases), &[]) else {
                return Ok(false);
            };
            let json = serde_json::to_string(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = parse_scenario(&json, &[]);
            prop_assert_eq!(again.as_ref(), Ok(&s), "resolved form: {}", json);
            Ok(true)
        },
    );
}

/// What `dtpsim check` does after parsing: the resource estimate (`resources::check`, on every
/// accepted scenario) and, on scenarios of modest size (every width ≤ 64, at most 8 layers,
/// at most 3000 examples, so that the test allocates little; larger sizes are
/// `huge_sizes_are_refused_by_check`), building the initial network and generating or
/// reading the data never panic, and their errors name a field.
#[test]
fn scenario_check_never_panics() {
    let bases = shipped_scenarios();
    run_property(
        "scenario_check_never_panics",
        600,
        3,
        arb_json_mutation(3),
        |m| {
            let Ok(s) = parse_scenario(&m.apply(&bases), &[]) else {
                return Ok(false);
            };
            if let Err(e) = dtpsim::resources::check(&s) {
                check_config_error(&e)?;
                return Ok(false);
            }
            if !modest(&s) {
                return Ok(false);
            }
            let _ = s.schedule.first_trial();
            if let Err(e) = s.initial_network() {
                check_config_error(&e)?;
            }
            match dtpsim::runner::dataset(&s) {
                Ok(d) => prop_assert!(!d.train.is_empty() && !d.test.is_empty()),
                Err(e) => check_config_error(&e)?,
            }
            Ok(true)
        },
    );
}

/// Whether a scenario's network and data are small enough to build in a test.
fn modest(s: &Scenario) -> bool {
    let small = |w: &[usize]| w.len() <= 8 && w.iter().all(|&n| n <= 64);
    let task_small = match &s.task {
        Task::TeacherStudent { widths, .. } => small(widths),
        Task::Clusters { dim, classes, .. } => *dim <= 64 && *classes <= 64,
        Task::Csv {
            inputs, outputs, ..
        } => *inputs <= 64 && *outputs <= 64,
        Task::Idx { .. } => false, // reads a real data set
    };
    let data_small = [s.data.train, s.data.test]
        .iter()
        .all(|n| n.is_none_or(|n| n <= 3000));
    small(&s.network.widths) && task_small && data_small
}

// ---------------------------------------------------------------------------------------
// `--set`

/// A `--set` path: known field names, random names, unicode, empty segments, indices
/// (huge, negative, unclosed, doubled) joined by dots.
fn arb_set_path() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
        1 => Just(String::new()),
        1 => "[a-z_]{1,6}",
        1 => "[α-ω🦀é]{1,3}",
        1 => any::<String>().prop_map(|s| s.chars().take(4).collect()),
    ];
    let index = prop_oneof![
        4 => (0usize..4).prop_map(|i| format!("[{i}]")),
        1 => prop::sample::select(vec![
            "[18446744073709551615]",
            "[18446744073709551616]",
            "[9223372036854775808]",
            "[-1]",
            "[",
            "]",
            "[]",
            "[a]",
            "[0]]",
            "[[0]",
            "[ 1]",
            "[+1]",
            "[0",
            "[1][0]",
        ])
        .prop_map(str::to_string),
    ];
    let segment = (name, prop::collection::vec(index, 0..3))
        .prop_map(|(n, idx)| format!("{n}{}", idx.concat()));
    prop_oneof![
        8 => prop::collection::vec(segment, 1..5).prop_map(|s| s.join(".")),
        1 => prop::sample::select(vec!["", ".", "..", "a..b", ".a", "a.", "[0]", "=", " "])
            .prop_map(str::to_string),
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

/// A `--set` value: JSON of every kind, invalid JSON (taken as a string), deep nesting.
fn arb_set_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => arb_value().prop_map(|v| v.to_string()),
        2 => prop::sample::select(vec![
            "", "1", "-1", "0", "1e300", "1e400", "NaN", "inf", "null", "true", "[1,2]",
            "[]", "{}", "{\"kind\":\"bp\"}", "\"x\"", "all", "last", "[", "{", "\"",
            "18446744073709551616", "9223372036854775808", "-9223372036854775809", " 7 ",
            "=", "a=b", "1,2",
        ])
        .prop_map(str::to_string),
        1 => (1usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => any::<String>().prop_map(|s| s.chars().take(10).collect()),
    ]
}

/// `path` split as the documented grammar says (`name` then `[i]` indices, segments joined
/// by dots); `None` for paths outside that grammar (no oracle for those).
fn strict_tokens(path: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() || name.contains(']') {
            return None;
        }
        out.push(Seg::Key(name.to_string()));
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let digits = &rest[1..close];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            out.push(Seg::Idx(digits.parse().ok()?));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(out)
}

/// Whether `set_path` can reach `path` in `root`: keys through objects or `null` (which
/// becomes an object), indices within lists.
fn reachable(root: &Value, path: &[Seg]) -> bool {
    let mut cur = Some(root);
    for seg in path {
        cur = match (cur, seg) {
            (None | Some(Value::Null), Seg::Key(_)) => None,
            (Some(Value::Object(m)), Seg::Key(k)) => m.get(k.as_str()),
            (Some(Value::Array(a)), Seg::Idx(i)) if *i < a.len() => a.get(*i),
            _ => return false,
        };
    }
    true
}

/// `set_path` on random roots (shipped scenarios and random JSON) with random paths and
/// values: never panics; an error names `--set <path>`; for paths of the documented grammar
/// (`a.b[1].c`) it succeeds exactly when the path is reachable (through objects, `null`, and
/// lists within range), and then the value at the path is the value given (as JSON, or as a
/// string when it is not JSON).
#[test]
fn set_path_never_panics_and_sets_the_value() {
    let bases = shipped_scenarios();
    let root = prop_oneof![
        3 => any::<Index>().prop_map(move |i| i.get(&bases).1.clone()),
        1 => arb_value(),
    ];
    run_property(
        "set_path_never_panics_and_sets_the_value",
        4000,
        4,
        (root, arb_set_path(), arb_set_value()),
        |(root, path, value)| {
            let mut edited = root.clone();
            let result = set_path(&mut edited, &path, &value);
            let oracle = strict_tokens(&path);
            match &result {
                Ok(()) => {
                    if let Some(tokens) = &oracle {
                        let expected = serde_json::from_str::<Value>(&value)
                            .unwrap_or_else(|_| Value::String(value.clone()));
                        let at = tokens.iter().try_fold(&edited, |cur, seg| match seg {
                            Seg::Key(k) => cur.get(k.as_str()),
                            Seg::Idx(i) => cur.get(*i),
                        });
                        prop_assert_eq!(at, Some(&expected), "value at {}", path);
                        prop_assert!(reachable(&root, tokens));
                    }
                }
                Err(e) => {
                    prop_assert_eq!(&e.path, &format!("--set {path}"));
                    prop_assert!(!e.message.is_empty());
                    if let Some(tokens) = &oracle {
                        prop_assert!(!reachable(&root, tokens), "{} is reachable: {}", path, e);
                    }
                }
            }
            Ok(result.is_ok())
        },
    );
}

/// `parse_scenario` with random `--set` overrides (existing paths of the scenario, random
/// paths, missing `=`) and random values: never panics, an error names a field or
/// `--set …`, an accepted scenario validates.
#[test]
fn scenario_sets_never_panic() {
    let bases = shipped_scenarios();
    let n = bases.len();
    // (path of the scenario, or a random path; value, or a change of the value there; or
    // no `=` at all)
    let set = prop_oneof![
        // an existing path of the scenario with a value of the same type
        3 => (any::<Index>(), any::<u64>(), 0.0f64..4.0)
            .prop_map(|(i, n, f)| SetArg::Perturb(i, n, f)),
        // an existing path of the scenario with any value
        2 => (any::<Index>(), arb_set_value()).prop_map(|(i, v)| SetArg::Existing(i, v)),
        2 => (arb_set_path(), arb_set_value()).prop_map(|(p, v)| SetArg::Random(p, v)),
        1 => arb_set_path().prop_map(SetArg::NoEquals),
    ];
    run_property(
        "scenario_sets_never_panic",
        1000,
        5,
        (0..n, prop::collection::vec(set, 1..4)),
        |(b, sets)| {
            let (text, value) = &bases[b];
            let paths = node_paths(value);
            let sets: Vec<String> = sets.iter().map(|a| a.render(value, &paths)).collect();
            check_parse(&parse_scenario(text, &sets))
        },
    );
}

/// One `--set` argument of `scenario_sets_never_panic`.
#[derive(Debug, Clone)]
enum SetArg {
    /// `path=value` with a path of the scenario and a value of the same type as its own.
    Perturb(Index, u64, f64),
    /// `path=value` with a path of the scenario.
    Existing(Index, String),
    /// `path=value`.
    Random(String, String),
    /// `path` without `=`.
    NoEquals(String),
}

impl SetArg {
    fn render(&self, root: &Value, paths: &[Vec<Seg>]) -> String {
        match self {
            SetArg::Perturb(i, n, f) => {
                let path = i.get::<Vec<Seg>>(paths);
                let old = node_at(root, path);
                format!("{}={}", render_path(path), perturb(old, *n, *f))
            }
            SetArg::Existing(i, v) => format!("{}={v}", render_path(i.get::<Vec<Seg>>(paths))),
            SetArg::Random(p, v) => format!("{p}={v}"),
            SetArg::NoEquals(p) => p.clone(),
        }
    }
}

/// The node at a path of `node_paths(root)`.
fn node_at<'a>(root: &'a Value, path: &[Seg]) -> &'a Value {
    path.iter().fold(root, |cur, seg| match seg {
        Seg::Key(k) => &cur[k.as_str()],
        Seg::Idx(i) => &cur[*i],
    })
}

/// A value of another JSON type than `v` (a string for numbers and booleans, a number for
/// strings, a string for lists and objects).
fn wrong_type(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::from(12345),
        _ => Value::from("wrong type"),
    }
}

/// A value of the wrong type at an existing path of a shipped scenario (`--set path=value`)
/// is rejected with an error whose path is exactly that path, so the user sees which field
/// (not only which section) is wrong. Paths whose type is free (`description`, `name`,
/// `sweep.params` values), and values the field also accepts, are skipped.
#[test]
#[ignore = "finding: type errors inside `task` and `references[i]` (internally tagged enums) name only the section"]
fn scenario_type_errors_name_the_field() {
    let bases = shipped_scenarios();
    run_property(
        "scenario_type_errors_name_the_field",
        400,
        11,
        (any::<Index>(), any::<Index>()),
        |(b, i)| {
            let (text, value) = b.get(&bases);
            let paths = node_paths(value);
            let path = i.get::<Vec<Seg>>(&paths);
            let old = node_at(value, path);
            let rendered = render_path(path);
            if path.is_empty()
                || matches!(old, Value::Object(_) | Value::Null)
                || rendered.starts_with("sweep.params")
                || ["name", "description"].contains(&rendered.as_str())
            {
                return Ok(false);
            }
            let set = format!("{rendered}={}", wrong_type(old));
            match parse_scenario(text, std::slice::from_ref(&set)) {
                Ok(_) => Ok(true),
                Err(e) => {
                    check_config_error(&e)?;
                    prop_assert_eq!(&e.path, &rendered, "--set {} gives: {}", set, e);
                    Ok(false)
                }
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// CSV data files

/// Field values that are not plain numbers, or are numbers at the edge.
const CSV_TOKENS: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "infinity",
    "1e400",
    "-1e400",
    "1e308",
    "1.7976931348623157e308",
    "-0",
    "1e-400",
    "5e-324",
    "abc",
    "",
    " ",
    "1.5.2",
    "0x10",
    "+1",
    "1_000",
    "\"3\"",
    "\"",
    "'1'",
    "١",
    "1e",
    "e5",
    "--1",
    "  7  ",
    "\t8",
    "2",
    "0",
    "1",
];

/// An edit of a CSV file.
#[derive(Debug, Clone)]
enum CsvEdit {
    /// Replace one field with a token.
    Field(Index, Index, &'static str),
    /// Append a field to a row (a ragged row).
    AddField(Index, &'static str),
    /// Remove a field from a row (a ragged row).
    DropField(Index, Index),
    /// Remove a line.
    DropLine(Index),
    /// Insert a line.
    InsertLine(Index, &'static str),
    /// Make the file empty.
    Empty,
    /// Keep only the first line.
    FirstLineOnly,
}

/// An edit of a CSV file's bytes.
#[derive(Debug, Clone)]
enum ByteEdit {
    Crlf,
    Bom,
    NoFinalNewline,
    Text(TextEdit),
}

fn arb_csv_edit() -> impl Strategy<Value = CsvEdit> {
    let token = prop::sample::select(CSV_TOKENS.to_vec());
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), token.clone())
            .prop_map(|(r, c, t)| CsvEdit::Field(r, c, t)),
        2 => (any::<Index>(), token).prop_map(|(r, t)| CsvEdit::AddField(r, t)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(r, c)| CsvEdit::DropField(r, c)),
        1 => any::<Index>().prop_map(CsvEdit::DropLine),
        2 => (
            any::<Index>(),
            prop::sample::select(vec![
                "", "#comment", ",,,", "\"", "a,b", "x,y,z", "1,2,3,4,5,6,7,8", "\"1\",\"0\"",
            ])
        )
            .prop_map(|(i, l)| CsvEdit::InsertLine(i, l)),
        1 => Just(CsvEdit::Empty),
        1 => Just(CsvEdit::FirstLineOnly),
    ]
}

fn arb_byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        1 => Just(ByteEdit::Crlf),
        1 => Just(ByteEdit::Bom),
        1 => Just(ByteEdit::NoFinalNewline),
        2 => arb_text_edit().prop_map(ByteEdit::Text),
    ]
}

/// One mutated CSV file: a valid base (optional header, `rows` rows of `inputs + outputs`
/// numbers, one-hot targets for classification), then row and byte edits.
fn arb_csv_file(
    inputs: usize,
    outputs: usize,
    classification: bool,
) -> impl Strategy<Value = Text> {
    (
        any::<bool>(),
        prop::collection::vec(
            (
                prop::collection::vec(-1e3f64..1e3, inputs),
                0..outputs.max(1),
                prop::collection::vec(-10.0f64..10.0, outputs),
            ),
            1..30,
        ),
        prop_oneof![
            3 => Just(Vec::new()),
            2 => prop::collection::vec(arb_csv_edit(), 1..4),
        ],
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(arb_byte_edit(), 1..3),
        ],
    )
        .prop_map(move |(header, rows, edits, byte_edits)| {
            let mut lines: Vec<Vec<String>> = Vec::new();
            if header {
                lines.push(
                    (0..inputs)
                        .map(|i| format!("x{i}"))
                        .chain((0..outputs).map(|j| format!("y{j}")))
                        .collect(),
                );
            }
            for (x, class, y) in rows {
                let y: Vec<f64> = if classification {
                    (0..outputs)
                        .map(|j| f64::from(u8::from(j == class)))
                        .collect()
                } else {
                    y
                };
                lines.push(x.iter().chain(&y).map(|v| v.to_string()).collect());
            }
            for e in &edits {
                edit_csv(&mut lines, e);
            }
            let mut text = lines
                .iter()
                .map(|l| l.join(",") + "\n")
                .collect::<String>()
                .into_bytes();
            for e in &byte_edits {
                match e {
                    ByteEdit::Crlf => {
                        text = String::from_utf8_lossy(&text)
                            .replace('\n', "\r\n")
                            .into_bytes()
                    }
                    ByteEdit::Bom => text.splice(0..0, "\u{feff}".bytes()).for_each(drop),
                    ByteEdit::NoFinalNewline => {
                        if text.last() == Some(&b'\n') {
                            text.pop();
                        }
                    }
                    ByteEdit::Text(t) => apply_text_edit(&mut text, t),
                }
            }
            Text(text)
        })
}

fn edit_csv(lines: &mut Vec<Vec<String>>, edit: &CsvEdit) {
    let n = lines.len();
    match edit {
        CsvEdit::Field(r, c, t) if n > 0 => {
            let row = &mut lines[r.index(n)];
            if !row.is_empty() {
                let c = c.index(row.len());
                row[c] = t.to_string();
            }
        }
        CsvEdit::AddField(r, t) if n > 0 => lines[r.index(n)].push(t.to_string()),
        CsvEdit::DropField(r, c) if n > 0 => {
            let row = &mut lines[r.index(n)];
            if !row.is_empty() {
                let c = c.index(row.len());
                row.remove(c);
            }
        }
        CsvEdit::DropLine(r) if n > 0 => {
            lines.remove(r.index(n));
        }
        CsvEdit::InsertLine(r, l) => lines.insert(r.index(n + 1), vec![l.to_string()]),
        CsvEdit::Empty => lines.clear(),
        CsvEdit::FirstLineOnly => lines.truncate(1),
        _ => {}
    }
}

/// A CSV task and how many rows `generate` is asked for.
#[derive(Debug, Clone)]
struct CsvCase {
    inputs: usize,
    outputs: usize,
    classification: bool,
    train: Text,
    test: Text,
    n_train: Option<usize>,
    n_test: Option<usize>,
    seed: u64,
}

/// Row counts asked of `generate`: every row, none, a few, or more than any file holds.
fn arb_rows_asked() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(0)),
        3 => (1usize..8).prop_map(Some),
        1 => (8usize..40).prop_map(Some),
        1 => Just(Some(usize::MAX)),
    ]
}

/// Files written with `file_inputs`/`file_outputs` columns, read as a task with
/// `inputs`/`outputs` columns (mostly the same).
fn arb_csv_case(sizes: impl Strategy<Value = (usize, usize)>) -> impl Strategy<Value = CsvCase> {
    (
        1usize..4,
        1usize..4,
        any::<bool>(),
        prop_oneof![4 => Just(None), 1 => sizes.prop_map(Some)],
    )
        .prop_flat_map(|(fi, fo, classification, declared)| {
            let (inputs, outputs) = declared.unwrap_or((fi, fo));
            (
                arb_csv_file(fi, fo, classification),
                arb_csv_file(fi, fo, classification),
                arb_rows_asked(),
                arb_rows_asked(),
                any::<u64>(),
            )
                .prop_map(move |(train, test, n_train, n_test, seed)| CsvCase {
                    inputs,
                    outputs,
                    classification,
                    train,
                    test,
                    n_train,
                    n_test,
                    seed,
                })
        })
}

/// Writes the case's files into `dir` and calls `Task::generate`; checks the result: the
/// examples have the declared widths, finite values, the requested counts and one-hot
/// targets for classification; an error names the field (`task.train`, `data.test`, …)
/// and, when it is about a file's content, the file.
fn check_csv_case(dir: &Path, case: &CsvCase) -> Result<bool, TestCaseError> {
    let (train, test) = (dir.join("train.csv"), dir.join("test.csv"));
    std::fs::write(&train, &case.train.0).unwrap();
    std::fs::write(&test, &case.test.0).unwrap();
    let task = Task::Csv {
        train: train.clone(),
        test: test.clone(),
        inputs: case.inputs,
        outputs: case.outputs,
        classification: case.classification,
        labels: Default::default(),
    };
    match task.generate(case.n_train, case.n_test, case.seed) {
        Ok(data) => {
            for (set, asked) in [(&data.train, case.n_train), (&data.test, case.n_test)] {
                match asked {
                    Some(n) => prop_assert_eq!(set.len(), n),
                    None => prop_assert!(!set.is_empty()),
                }
                for e in set {
                    prop_assert_eq!(e.x.len(), case.inputs);
                    prop_assert_eq!(e.y.len(), case.outputs);
                    prop_assert!(e.x.iter().chain(e.y.iter()).all(|v| v.is_finite()));
                    if case.classification {
                        prop_assert!(e.y.iter().all(|v| *v == 0.0 || *v == 1.0));
                        prop_assert_eq!(e.y.sum(), 1.0);
                    }
                }
            }
            prop_assert_eq!(data.classification, case.classification);
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            let field = ["task.train", "task.test", "data.train", "data.test"]
                .into_iter()
                .find(|f| msg.starts_with(&format!("{f}: ")));
            prop_assert!(field.is_some(), "names no field: {}", msg);
            let file = if field.unwrap().ends_with("train") {
                &train
            } else {
                &test
            };
            prop_assert!(
                msg.contains(&file.display().to_string()) || msg.contains("not one-hot"),
                "names no file: {}",
                msg
            );
            // "expected N numbers (I inputs + O outputs)": N is I + O, not a wrapped sum
            if let Some(rest) = msg.split("expected ").nth(1) {
                if let Some(n) = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok()) {
                    prop_assert_eq!(
                        Some(n),
                        case.inputs.checked_add(case.outputs),
                        "wrong count in: {}",
                        msg
                    );
                }
            }
            Ok(false)
        }
    }
}

/// CSV data files (ragged rows, non-numbers, NaN/inf, huge numbers, empty and header-only
/// files, random bytes, CRLF, BOM, truncation) read by `Task::generate` with row counts
/// `None`, 0, small or `usize::MAX`: never panics; see `check_csv_case` for what an accepted
/// data set and an error must look like.
#[test]
fn csv_data_never_panics() {
    let dir = scratch("csv");
    run_property(
        "csv_data_never_panics",
        1500,
        6,
        arb_csv_case((0usize..5, 0usize..5)),
        |case| check_csv_case(&dir, &case),
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// CSV tasks that declare absurd column counts (`usize::MAX` inputs or outputs, so that
/// `inputs + outputs` overflows): never panics, same checks as `csv_data_never_panics`.
#[test]
fn csv_extreme_column_counts_never_panic() {
    let dir = scratch("csv-extreme");
    let huge = prop::sample::select(vec![usize::MAX, usize::MAX - 1, 1 << 63, 1, 2]);
    run_property(
        "csv_extreme_column_counts_never_panic",
        200,
        7,
        arb_csv_case((huge.clone(), huge)),
        |case| check_csv_case(&dir, &case),
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Weights files

/// A network to save: 2–4 layers of width 1–5, any activation, bias or not, either loss.
fn arb_network() -> impl Strategy<Value = Network> {
    (
        prop::collection::vec(1usize..6, 2..5),
        prop::sample::select(vec![
            Activation::Tanh,
            Activation::Linear,
            Activation::Softplus,
            Activation::LeakyRelu { slope: 0.1 },
        ]),
        any::<bool>(),
        prop::sample::select(vec![Loss::Mse, Loss::SoftmaxCe]),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(widths, act, bias, loss, orthogonal, seed)| {
            let mut arch = Architecture::new(&widths, act, loss).unwrap();
            arch.bias = bias;
            let init = if orthogonal {
                Init::Orthogonal { gain: 1.0 }
            } else {
                Init::Gaussian { gain: 1.0 }
            };
            Network::new(arch, init, seed).unwrap()
        })
}

/// Loads `path`; an accepted network saves and loads back equal; an error names the file
/// and, when the JSON is well-formed, the field (`encoders[0]…`, `format`, …).
fn check_weights_load(path: &Path) -> Result<bool, TestCaseError> {
    match dtpsim::weights::load(path) {
        Ok(net) => {
            prop_assert_eq!(net.arch().validate(), Ok(()));
            let again = path.with_extension("again.json");
            dtpsim::weights::save(&net, &again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back =
                dtpsim::weights::load(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, net);
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            let prefix = format!("{}: ", path.display());
            prop_assert!(msg.starts_with(&prefix), "names no file: {}", msg);
            if let dtpsim::error::IoError::Model { cause, .. } = &e {
                if let dtpsim::error::ModelError::Shape { rows, cols, .. } = cause {
                    // every matrix of a valid architecture has a row and a column
                    prop_assert!(*rows >= 1 && *cols >= 1, "expected shape in: {}", msg);
                }
                let cause = cause.to_string();
                prop_assert!(
                    [
                        "encoders",
                        "decoders",
                        "format",
                        "version",
                        "network.widths",
                        "network.activations"
                    ]
                    .iter()
                    .any(|f| cause.starts_with(f)),
                    "names no field: {}",
                    msg
                );
            }
            Ok(false)
        }
    }
}

/// Weights files saved by `weights::save` for random small networks, then mutated (numbers
/// to null, strings, huge or raw tokens; rows, entries and keys dropped or added;
/// architecture, format and version changed; truncation and changed bytes) and loaded:
/// never panics, see `check_weights_load`.
#[test]
fn weights_files_never_panic() {
    let dir = scratch("weights");
    let base = dir.join("base.json");
    let file = dir.join("mutated.json");
    run_property(
        "weights_files_never_panic",
        1500,
        8,
        (arb_network(), arb_json_mutation(3)),
        |(net, m)| {
            dtpsim::weights::save(&net, &base).unwrap();
            let text = std::fs::read_to_string(&base).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            std::fs::write(&file, m.apply(&[(text, value)])).unwrap();
            check_weights_load(&file)
        },
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Weights files whose architecture declares absurd widths (`usize::MAX`, 2⁶³, …) next to
/// otherwise valid matrices: never panics (no allocation follows the declared widths), the
/// error names the file and the field, with a real expected shape.
#[test]
fn weights_extreme_widths_never_panic() {
    let dir = scratch("weights-extreme");
    let base = dir.join("base.json");
    let file = dir.join("mutated.json");
    let huge = prop::sample::select(vec![usize::MAX, usize::MAX - 1, 1 << 63, 1 << 40, 0, 1]);
    run_property(
        "weights_extreme_widths_never_panic",
        200,
        9,
        (arb_network(), any::<Index>(), huge, any::<bool>()),
        |(net, layer, width, bias)| {
            dtpsim::weights::save(&net, &base).unwrap();
            let mut value: Value =
                serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
            let widths = value["architecture"]["widths"].as_array_mut().unwrap();
            let l = layer.index(widths.len());
            widths[l] = Value::from(width);
            value["architecture"]["bias"] = Value::from(bias);
            std::fs::write(&file, value.to_string()).unwrap();
            check_weights_load(&file)
        },
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Message length

/// A long string of 2,000–5,000 copies of one character, shown short in failure reports.
#[derive(Clone)]
struct Long(usize, char);

impl Long {
    fn text(&self) -> String {
        std::iter::repeat_n(self.1, self.0).collect()
    }
}

impl std::fmt::Debug for Long {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} × {}", self.1, self.0)
    }
}

fn arb_long() -> impl Strategy<Value = Long> {
    (
        2000usize..5000,
        prop::sample::select(vec!['x', 'é', '1', ' ']),
    )
        .prop_map(|(n, c)| Long(n, c))
}

/// Scenario error messages stay short (≤ 1,000 characters) when the input holds a huge
/// string: as an unknown key, as the value of a random field, inside a list, as a `--set`
/// path or value. (A document that is a JSON list is `finding_scenario_accepts_json_lists`:
/// there only the length is checked.)
#[test]
fn error_messages_do_not_echo_huge_input() {
    let bases = shipped_scenarios();
    let where_ = prop::sample::select(vec!["key", "value", "list", "set_path", "set_value"]);
    run_property(
        "error_messages_do_not_echo_huge_input",
        300,
        10,
        (any::<Index>(), any::<Index>(), where_, arb_long()),
        |(b, at, where_, long)| {
            let (text, value) = b.get(&bases);
            let long = long.text();
            let mut v = value.clone();
            let paths = node_paths(&v);
            let mut sets = Vec::new();
            match where_ {
                "key" => apply_edit(&mut v, &Edit::AddKey(at, long, Value::from(1))),
                "value" => apply_edit(&mut v, &Edit::Replace(at, Value::from(long))),
                "list" => apply_edit(
                    &mut v,
                    &Edit::Replace(at, Value::Array(vec![Value::from(long); 3])),
                ),
                "set_path" => sets.push(format!("{long}=1")),
                _ => sets.push(format!(
                    "{}={long}",
                    render_path(at.get::<Vec<Seg>>(&paths))
                )),
            }
            let text = if sets.is_empty() {
                v.to_string()
            } else {
                text.clone()
            };
            let is_list = v.is_array() && sets.is_empty();
            match parse_scenario(&text, &sets) {
                Ok(_) => Ok(true),
                Err(e) => {
                    if !is_list {
                        check_config_error(&e)?;
                    }
                    let shown = e.to_string();
                    prop_assert!(
                        shown.chars().count() <= MAX_MESSAGE,
                        "a {}-character message for a huge string in a {}: {}…",
                        shown.chars().count(),
                        where_,
                        shown.chars().take(200).collect::<String>()
                    );
                    Ok(false)
                }
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// Integer edges of the schedule and the traces

/// Integer fields of the schedule, data and traces set (`--set`) to the edges of their types
/// (2⁶³ − 1, 2⁶³, 2⁶⁴ − 1, −2⁶³, 10¹², …): parsing, `first_trial`, `total_trials`,
/// `warnings` and `trace_columns` never panic, and an accepted schedule is one the run can
/// number: warm-up and learning trials fit an `i64` and their sum fits a `usize`; a trace
/// range quoted in an error is not reversed.
#[test]
fn scenario_extreme_integers_never_panic() {
    let bases = shipped_scenarios();
    let field = prop::sample::select(vec![
        "schedule.trials",
        "schedule.warmup_trials",
        "schedule.batch",
        "schedule.eval_every",
        "traces.trials",
        "traces.start_trial",
        "traces.interval",
        "data.train",
        "data.test",
        "seed",
    ]);
    let number = prop::sample::select(vec![
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "-9223372036854775808",
        "-9223372036854775807",
        "4294967296",
        "1000000000000",
        "0",
        "1",
        "-1",
        "3",
    ]);
    run_property(
        "scenario_extreme_integers_never_panic",
        400,
        12,
        (any::<Index>(), prop::collection::vec((field, number), 1..4)),
        |(b, sets)| {
            let (text, _) = b.get(&bases);
            let sets: Vec<String> = sets.iter().map(|(f, v)| format!("{f}={v}")).collect();
            match parse_scenario(text, &sets) {
                Ok(s) => {
                    let sched = &s.schedule;
                    prop_assert!(
                        i64::try_from(sched.warmup_trials).is_ok()
                            && i64::try_from(sched.trials).is_ok()
                            && sched.warmup_trials.checked_add(sched.trials).is_some(),
                        "accepted a schedule whose trials cannot be numbered: {:?}",
                        sched
                    );
                    prop_assert_eq!(
                        i128::from(sched.first_trial()),
                        -(sched.warmup_trials as i128)
                    );
                    prop_assert!(sched.total_trials() >= sched.trials);
                    let _ = s.warnings();
                    let _ = s.trace_columns();
                    Ok(true)
                }
                Err(e) => {
                    check_config_error(&e)?;
                    if let Some(range) = e
                        .message
                        .strip_prefix("traces trials ")
                        .and_then(|r| r.split(' ').next())
                    {
                        let ends: Vec<i128> =
                            range.split("..").filter_map(|x| x.parse().ok()).collect();
                        prop_assert!(
                            ends.len() == 2 && ends[0] <= ends[1],
                            "reversed range in: {}",
                            e
                        );
                    }
                    Ok(false)
                }
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// Findings: minimal reproductions (ignored until fixed)

/// The quick-start scenario with `sets` applied.
fn quickstart(sets: &[&str]) -> Result<Scenario, ConfigError> {
    let text = std::fs::read_to_string(format!("{ROOT}/scenarios/quickstart.json")).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    parse_scenario(&text, &sets)
}

/// Finding: `schedule.warmup_trials` is not bounded and `Schedule::first_trial` negates it
/// as an `i64`: `--set schedule.warmup_trials=9223372036854775808` panics ("attempt to
/// negate with overflow", in `Scenario::validate_traces`) with overflow checks, and
/// `--set schedule.warmup_trials=18446744073709551615` is accepted with a first trial of +1.
#[test]
fn finding_warmup_trials_overflow_first_trial() {
    for set in [
        "schedule.warmup_trials=9223372036854775808",
        "schedule.warmup_trials=18446744073709551615",
    ] {
        match std::panic::catch_unwind(|| quickstart(&[set])) {
            Ok(Ok(s)) => assert_eq!(
                i128::from(s.schedule.first_trial()),
                -(s.schedule.warmup_trials as i128),
                "--set {set}"
            ),
            Ok(Err(e)) => assert_eq!(e.path, "schedule.warmup_trials", "{e}"),
            Err(_) => panic!("parse_scenario panicked on --set {set}"),
        }
    }
}

/// Finding: `--set schedule.trials=9223372036854775808` panics in
/// `Scenario::validate_traces` (`sched.trials as i64 - 1`, "attempt to subtract with
/// overflow"); without overflow checks the scenario is valid and `check` warns "3 trials
/// asked for, 0 exist in the run (trials 0..-1)".
#[test]
fn finding_trials_overflow_trial_numbers() {
    let s = std::panic::catch_unwind(|| quickstart(&["schedule.trials=9223372036854775808"]));
    match s {
        Ok(Ok(s)) => assert!(s.warnings().is_empty(), "{:?}", s.warnings()),
        Ok(Err(e)) => assert_eq!(e.path, "schedule.trials", "{e}"),
        Err(_) => panic!("parse_scenario panicked"),
    }
}

/// Finding: `--set traces.start_trial=9223372036854775807` panics while formatting the error
/// (`first + t.trials as i64 - 1`, "attempt to add with overflow"); without overflow checks
/// the message quotes a reversed range "traces trials 9223372036854775807..-9223372036854775807".
#[test]
fn finding_start_trial_overflows_in_message() {
    let e = std::panic::catch_unwind(|| quickstart(&["traces.start_trial=9223372036854775807"]))
        .expect("parse_scenario panicked")
        .unwrap_err();
    // the traced range is not reversed (the run's own warm-up range may be negative)
    let traced = e.message.split(" but ").next().unwrap();
    assert!(!traced.contains("..-"), "{e}");
}

/// Finding: a weights file whose `architecture.widths` holds 18446744073709551615 (with
/// `bias: true`) panics in `Architecture::presyn_len` ("attempt to add with overflow") with
/// overflow checks; without, the error claims an expected shape with 0 columns.
#[test]
fn finding_weights_width_overflow() {
    let dir = scratch("finding-weights");
    let path = dir.join("w.json");
    let text = r#"{"format":"dtpsim-weights","version":1,
        "architecture":{"widths":[18446744073709551615,1],"activations":["linear","tanh"],"bias":true,"loss":"mse"},
        "encoders":[[[0.5]]],"decoders":[]}"#;
    std::fs::write(&path, text).unwrap();
    let e = std::panic::catch_unwind(|| dtpsim::weights::load(&path))
        .expect("weights::load panicked")
        .unwrap_err();
    assert!(!e.to_string().contains("x0 for widths"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Finding: a CSV task with `inputs` 18446744073709551615 and `outputs` 1 panics in
/// `read_csv` (`inputs + outputs`, "attempt to add with overflow") with overflow checks;
/// without, the message says "expected 0 numbers".
#[test]
fn finding_csv_column_count_overflow() {
    let dir = scratch("finding-csv");
    std::fs::write(dir.join("train.csv"), "1,2\n").unwrap();
    std::fs::write(dir.join("test.csv"), "1,2\n").unwrap();
    let task = Task::Csv {
        train: dir.join("train.csv"),
        test: dir.join("test.csv"),
        inputs: usize::MAX,
        outputs: 1,
        classification: false,
        labels: Default::default(),
    };
    let e = std::panic::catch_unwind(|| task.generate(None, None, 1))
        .expect("Task::generate panicked")
        .unwrap_err();
    assert!(!e.to_string().contains("expected 0 numbers"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Sizes beyond the machine are refused with an error (exit status 2), not a panic or an
/// abort on allocation (before 5565b39: `data.train=18446744073709551615` panicked with
/// "capacity overflow", `data.train=1000000000000000` and `network.widths[1]=1000000000000`
/// aborted with "memory allocation of … bytes failed"). Runs the binary: an abort cannot be
/// caught in-process.
#[test]
fn huge_sizes_are_refused_by_check() {
    let dir = scratch("finding-sizes");
    std::fs::copy(
        format!("{ROOT}/scenarios/quickstart.json"),
        dir.join("q.json"),
    )
    .unwrap();
    let mut failures = Vec::new();
    for set in [
        "data.train=18446744073709551615",
        "data.train=1000000000000000",
        "network.widths[1]=1000000000000",
        "network.widths[1]=18446744073709551615",
        "task.widths[1]=1000000000000",
        "task.widths[1]=18446744073709551615",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dtpsim"))
            .args(["check", "q.json", "--set", set])
            .current_dir(&dir)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        if out.status.code() != Some(2) {
            let err = String::from_utf8_lossy(&out.stderr);
            failures.push(format!("--set {set}: {:?}: {}", out.status, err.trim()));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Finding: `task.activation` is not validated, so `"leaky_relu:NaN"` is accepted by the
/// parser (the network's activation is checked, the teacher's is not); the resolved scenario
/// then does not round-trip to an equal one (NaN ≠ NaN), and the error comes only when the
/// data is generated, naming `task.widths: network.activations[1].slope`.
#[test]
#[ignore = "finding: the NaN slope is now refused, but the error names `task`, not `task.activation` (internally tagged enum)"]
fn finding_task_activation_nan_accepted() {
    match quickstart(&["task.activation=leaky_relu:NaN"]) {
        Ok(s) => {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(parse_scenario(&json, &[]), Ok(s));
        }
        Err(e) => assert_eq!(e.path, "task.activation", "{e}"),
    }
}

/// Finding: a value of the wrong type inside `task` or a reference is reported against the
/// section, not the field: `--set task.gain=\"x\"` gives `task: invalid type: string "x",
/// expected f64`, `--set references[0].beta=\"x\"` gives `references[0]: …`.
#[test]
#[ignore = "finding: type errors inside `task` and `references[i]` name only the section"]
fn finding_tagged_enum_errors_name_the_section() {
    for (set, field) in [
        ("task.gain=\"x\"", "task.gain"),
        ("references[0].beta=\"x\"", "references[0].beta"),
    ] {
        let e = quickstart(&[set]).unwrap_err();
        assert_eq!(e.path, field, "--set {set}: {e}");
    }
}

/// Finding: a scenario, or any section of it, may be a JSON list read positionally (serde's
/// sequence form of a struct): `[]` is the default scenario, `["n", "d", 5]` sets name,
/// description and seed, `--set 'schedule=[10,0,1,1]'` sets the schedule, and an error in
/// such a list is named by position (`["n", "d", "x"]` gives `[2]: invalid type: string "x",
/// expected u64`), not by field.
#[test]
fn finding_scenario_accepts_json_lists() {
    let e = parse_scenario("[]", &[]).expect_err("`[]` is not a scenario");
    assert_eq!(e.path, "(top level)", "{e}");
    let e = parse_scenario(r#"["n", "d", "x"]"#, &[]).unwrap_err();
    assert_eq!(e.path, "(top level)", "{e}");
    let e = quickstart(&["schedule=[10,0,1,1]"]).expect_err("a list is not a schedule");
    assert_eq!(e.path, "schedule", "{e}");
}

/// Scenario errors do not quote a huge offending input whole (each of these inputs has 3,000
/// characters; the messages stay under 1,000).
#[test]
fn scenario_messages_do_not_echo_huge_input() {
    let long = "x".repeat(3000);
    let ones = vec!["1"; 1500].join(",");
    let mut long_messages = Vec::new();
    for set in [
        format!("{long}=1"),                                // unknown key
        format!("engine.{long}=1"),                         // unknown nested key
        format!("task.kind={long}"),                        // unknown variant
        format!("schedule.trials={long}"),                  // invalid type: string "…"
        format!("network.activation={long}"),               // unknown activation "…"
        format!("references[0].name={}", "é".repeat(3000)), // invalid name "…"
        format!("traces.start_trial=[{ones}]"),             // … got [1,1,1,…]
        format!("network.weights={long}"),                  // no such file
        format!("sweep.params.{long}=[]"),                  // path of the sweep key
        format!("network.widths[{long}]=1"),                // `[…` is not an index
        long.clone(),                                       // --set without `=`
    ] {
        if let Err(e) = quickstart(&[set.as_str()]) {
            let n = e.to_string().chars().count();
            if n > MAX_MESSAGE {
                let start: String = set.chars().take(40).collect();
                long_messages.push(format!("--set {start}…: {n} characters"));
            }
        }
    }
    assert!(long_messages.is_empty(), "{}", long_messages.join("\n"));
}

/// Finding: weights-file errors quote the offending input whole: a 3,000-character `format`,
/// activation name or unknown key gives a message of more than 3,000 characters
/// (`…: format: expected "dtpsim-weights", got "xxx…"`, `…: unknown activation "xxx…"`,
/// `…: unknown field `xxx…``).
#[test]
fn finding_weights_messages_echo_huge_input() {
    let dir = scratch("finding-weights-echo");
    let path = dir.join("w.json");
    let arch = Architecture::new(&[3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
    let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 7).unwrap();
    dtpsim::weights::save(&net, &path).unwrap();
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let long = "x".repeat(3000);
    let mut long_messages = Vec::new();
    for what in ["format", "activation", "key"] {
        let mut v = base.clone();
        match what {
            "format" => v["format"] = Value::from(long.clone()),
            "activation" => v["architecture"]["activations"][1] = Value::from(long.clone()),
            _ => v[long.as_str()] = Value::from(1),
        }
        std::fs::write(&path, v.to_string()).unwrap();
        let n = dtpsim::weights::load(&path)
            .unwrap_err()
            .to_string()
            .chars()
            .count();
        if n > MAX_MESSAGE {
            long_messages.push(format!("a huge {what}: {n} characters"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(long_messages.is_empty(), "{}", long_messages.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Sanity of the fuzzing base

/// The mutation base is valid: every shipped scenario parses, and a saved weights file loads.
#[test]
fn fuzzing_base_is_valid() {
    for (text, _) in shipped_scenarios() {
        parse_scenario(&text, &[]).unwrap();
    }
    let dir = scratch("base");
    let arch = Architecture::new(&[3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
    let net = Network::new(arch, Init::Gaussian { gain: 1.0 }, 7).unwrap();
    dtpsim::weights::save(&net, &dir.join("w.json")).unwrap();
    assert_eq!(dtpsim::weights::load(&dir.join("w.json")).unwrap(), net);
    std::fs::remove_dir_all(&dir).ok();
}
