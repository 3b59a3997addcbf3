//! Checkpoints: each model's complete state at an evaluation, so that `dtpsim run --resume DIR`
//! continues a stopped or killed run and ends bit for bit where the uninterrupted run would.
//!
//! A run folder holds `checkpoint/scenario.json` (the resolved scenario and the `--set`
//! arguments, written when the run starts) and one `checkpoint/<model>.json.gz` per model,
//! replaced atomically at every checkpoint. A checkpoint is taken right after an evaluation,
//! when the running means between evaluations are empty, so it holds only:
//!
//! * the learning trials done, the metrics rows so far and the wall-clock seconds;
//! * the example order: the random stream and the epoch's shuffled order;
//! * the model: for a reference its weights, decoder-noise stream and Adam moments; for the
//!   continuous engine its whole ODE state (every population of every replica and the
//!   weights), its time, trial counter and counters, and how many bytes of `traces.csv.partial`
//!   belong to the trials before the checkpoint.
//!
//! Numbers are written with `serde_json`'s exact float round trip, so a restored state is the
//! same bits. Random streams are kept as their seed, stream and word position.

use crate::data::EpochSampler;
use crate::error::IoError;
use crate::metrics::MetricsRow;
use crate::scenario::Scenario;
use crate::weights::WeightsFile;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The folder of a run's checkpoints.
pub fn folder(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// The checkpoint file of `model` in the run folder `out`.
pub fn model_path(out: &Path, model: &str) -> PathBuf {
    folder(out).join(format!("{model}.json.gz"))
}

/// The exact state of a ChaCha8 random stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    seed: Vec<u8>,
    stream: u64,
    /// The 128-bit word position, in decimal (JSON numbers stop at 64 bits).
    word_pos: String,
}

impl RngState {
    /// The state of `rng`.
    pub fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed().to_vec(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// The stream again, at the same position.
    pub fn restore(&self) -> Result<ChaCha8Rng, String> {
        let seed: [u8; 32] = self
            .seed
            .as_slice()
            .try_into()
            .map_err(|_| format!("a random seed has {} bytes, not 32", self.seed.len()))?;
        let pos: u128 = self
            .word_pos
            .parse()
            .map_err(|e| format!("word position {:?}: {e}", self.word_pos))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// Where the training examples stand: the random stream and the epoch's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleOrder {
    /// The stream that shuffles each epoch.
    pub rng: RngState,
    /// The current epoch's order and position.
    pub sampler: EpochSampler,
}

/// Adam's moments (`t` steps taken).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    /// Steps taken.
    pub t: i32,
    /// First moments, one column-major matrix per layer: `(rows, cols, values)`.
    pub m: Vec<(usize, usize, Vec<f64>)>,
    /// Second moments, as `m`.
    pub v: Vec<(usize, usize, Vec<f64>)>,
}

/// What a model is, beyond its metrics and example order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelState {
    /// A discrete reference.
    Reference {
        /// Encoders and decoders.
        weights: WeightsFile,
        /// The decoder-noise stream of learning (noise-corrupted decoder training).
        noise: RngState,
        /// Adam's moments, if the reference uses Adam.
        adam: Option<AdamState>,
    },
    /// The continuous engine.
    Continuous {
        /// The flat ODE state: populations of every replica, then the weights
        /// (docs/MODEL.md §6; see `continuous::layout`).
        state: Vec<f64>,
        /// Simulated time.
        time: f64,
        /// The next trial's number.
        trial: i64,
        /// Vector-field evaluations so far.
        evaluations: u64,
        /// Seconds spent in the vector field so far.
        field_seconds: f64,
        /// Accepted and rejected steps so far.
        steps: (u64, u64),
        /// Trials run so far.
        trials_run: usize,
        /// Bytes of `traces.csv.partial` written before the checkpoint and rows among them
        /// (`None` without traces).
        traces: Option<(u64, usize)>,
    },
}

/// One model's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCheckpoint {
    /// `continuous` or the reference's name.
    pub model: String,
    /// Learning trials done.
    pub trial: usize,
    /// Wall-clock seconds of the model so far.
    pub wall_seconds: f64,
    /// Every metrics row so far, as `metrics.csv` records.
    pub rows: Vec<Vec<String>>,
    /// The example order.
    pub order: ExampleOrder,
    /// The model itself.
    pub state: ModelState,
}

impl ModelCheckpoint {
    /// The metrics rows, read back from their records (exact: `metrics.csv` numbers round-trip).
    pub fn metrics_rows(&self, depth: usize) -> Result<Vec<MetricsRow>, String> {
        self.rows
            .iter()
            .map(|r| crate::metrics::parse_record(depth, r))
            .collect()
    }
}

/// The records of `rows`, for a checkpoint.
pub fn records(rows: &[MetricsRow]) -> Vec<Vec<String>> {
    rows.iter().map(crate::metrics::record).collect()
}

/// Writes `checkpoint` to `path` atomically (gzip JSON).
pub fn save(checkpoint: &ModelCheckpoint, path: &Path) -> Result<(), IoError> {
    let fail = |cause: std::io::Error| IoError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let json = serde_json::to_vec(checkpoint).map_err(|cause| IoError::Json {
        path: path.to_path_buf(),
        what: "checkpoint",
        cause,
    })?;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json).map_err(fail)?;
    let bytes = gz.finish().map_err(fail)?;
    crate::record::write_atomic(path, &bytes)
}

/// Reads a checkpoint; `None` if there is none at `path`.
pub fn load(path: &Path) -> Result<Option<ModelCheckpoint>, IoError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(IoError::Read {
                path: path.to_path_buf(),
                cause,
            })
        }
    };
    let mut json = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut json)
        .map_err(|cause| IoError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|cause| IoError::Json {
            path: path.to_path_buf(),
            what: "checkpoint",
            cause,
        })
}

/// What `checkpoint/scenario.json` holds: the run's resolved scenario and its `--set`s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// The resolved scenario (paths absolute).
    pub scenario: Scenario,
    /// The `--set` arguments it was made with.
    pub set: Vec<String>,
}

/// Writes the run's scenario for `--resume`.
pub fn save_spec(out: &Path, spec: &RunSpec) -> Result<(), IoError> {
    let path = folder(out).join("scenario.json");
    std::fs::create_dir_all(folder(out)).map_err(|cause| IoError::Write {
        path: folder(out),
        cause,
    })?;
    let text = serde_json::to_string_pretty(spec).map_err(|cause| IoError::Json {
        path: path.clone(),
        what: "run scenario",
        cause,
    })?;
    crate::record::write_atomic(&path, text.as_bytes())
}

/// Reads the scenario of the run in `out` (written by [`save_spec`]).
pub fn load_spec(out: &Path) -> Result<RunSpec, IoError> {
    let path = folder(out).join("scenario.json");
    let text = std::fs::read_to_string(&path).map_err(|cause| IoError::Read {
        path: path.clone(),
        cause,
    })?;
    serde_json::from_str(&text).map_err(|cause| IoError::Json {
        path,
        what: "run scenario",
        cause,
    })
}

/// Stores one model's checkpoint (the runner writes it to [`model_path`]).
pub type SaveCheckpoint<'a> = dyn Fn(&ModelCheckpoint) -> Result<(), IoError> + Sync + 'a;

/// When a model takes its checkpoints and where it resumes from.
pub struct Checkpointing<'a> {
    /// The checkpoint to continue from (`None`: from the start).
    pub resume: Option<ModelCheckpoint>,
    /// A checkpoint at the first evaluation at or after every this many learning trials;
    /// there is always one at every epoch end (`None`: only there).
    pub every: Option<usize>,
    /// Stores a checkpoint (`None`: no checkpoints, e.g. a library call).
    pub save: Option<&'a SaveCheckpoint<'a>>,
}

impl Checkpointing<'_> {
    /// No checkpoints and no resume.
    pub fn none() -> Self {
        Checkpointing {
            resume: None,
            every: None,
            save: None,
        }
    }

    /// Whether the evaluation after `trial` learning trials (`epoch_end`: on the whole test set
    /// at an epoch end) takes a checkpoint, the last one having been after `last`.
    pub fn due(&self, trial: usize, epoch_end: bool, last: usize) -> bool {
        self.save.is_some()
            && trial > 0
            && (epoch_end || self.every.is_some_and(|n| trial >= last.saturating_add(n)))
    }
}

/// The start instant of a model that had run `wall_seconds` before its checkpoint, so that its
/// wall-clock column goes on counting.
pub fn started(wall_seconds: f64) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_sub(std::time::Duration::from_secs_f64(wall_seconds.max(0.0)))
        .unwrap_or(now)
}

/// `(rows, cols, column-major values)` of each matrix.
pub fn matrices(ms: &[nalgebra::DMatrix<f64>]) -> Vec<(usize, usize, Vec<f64>)> {
    ms.iter()
        .map(|m| (m.nrows(), m.ncols(), m.as_slice().to_vec()))
        .collect()
}

/// The matrices of [`matrices`] again.
pub fn from_matrices(
    ms: &[(usize, usize, Vec<f64>)],
) -> Result<Vec<nalgebra::DMatrix<f64>>, String> {
    ms.iter()
        .map(|(r, c, v)| {
            if r * c == v.len() {
                Ok(nalgebra::DMatrix::from_column_slice(*r, *c, v))
            } else {
                Err(format!("a {r}×{c} matrix with {} values", v.len()))
            }
        })
        .collect()
}
