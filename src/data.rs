//! The tasks, seeded: teacher–student regression and a Gaussian-cluster classification task
//! (generated), and data files: CSV and the IDX images of MNIST and Fashion-MNIST
//! ([`crate::idx`]). The discrete references and the continuous engine run on the same
//! networks and data.

use crate::activation::Activation;
use crate::error::ModelError;
use crate::network::{Architecture, Init, Loss, Network};
use nalgebra::DVector;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// One example `(x, y)`; for classification `y` is one-hot.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Input `x` (`n_0` values).
    pub x: DVector<f64>,
    /// Target `y` (`n_L` values; one-hot for classification).
    pub y: DVector<f64>,
}

/// A finite data set split into training and test examples.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training examples.
    pub train: Vec<Example>,
    /// Held-out test examples.
    pub test: Vec<Example>,
    /// Whether `y` is a one-hot class label (accuracy is meaningful).
    pub classification: bool,
    /// Where each set came from, for `check` and the run summary (e.g. "train: 450 examples,
    /// every row of data/train.csv").
    pub provenance: Vec<String>,
}

/// Default sizes of generated data sets when the scenario leaves `data.train`/`data.test` out.
pub const DEFAULT_GENERATED: (usize, usize) = (2000, 300);

/// A synthetic task description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Task {
    /// Regression onto a random teacher network `y = teacher(x)`, `x ~ N(0, I)`.
    TeacherStudent {
        /// Teacher widths `n_0..=n_L` (the student usually has the same).
        widths: Vec<usize>,
        /// Teacher hidden activation.
        #[serde(default)]
        activation: Activation,
        /// Teacher weights are `N(0, gain²/fan_in)`; gain > 1 makes the map more non-linear.
        gain: f64,
    },
    /// `classes` Gaussian clusters in `dim` dimensions: means `N(0, separation²·I)`,
    /// unit-variance noise; `y` is one-hot.
    Clusters {
        /// Input dimension.
        dim: usize,
        /// Number of classes (outputs).
        classes: usize,
        /// Standard deviation of the cluster means (the noise has unit variance).
        separation: f64,
    },
    /// Examples from CSV files (paths relative to the scenario file): every row holds
    /// `inputs` input values followed by `outputs` target values; a first row in which no cell
    /// is a number is taken as a header. With `classification` the targets must be one-hot. Every
    /// row is used unless `data.train`/`data.test` ask for fewer (then a seeded random subset).
    Csv {
        /// Training rows (CSV file).
        train: std::path::PathBuf,
        /// Test rows (CSV file).
        test: std::path::PathBuf,
        /// Input values per row (the first columns).
        inputs: usize,
        /// Target values per row (the columns after the inputs).
        outputs: usize,
        /// One-hot targets: softmax cross-entropy loss and accuracy.
        #[serde(default)]
        classification: bool,
        /// How a row gives its target: `one_hot` (the `outputs` columns after the inputs; one-hot
        /// when `classification`, any numbers for regression) or `class_index` (one integer
        /// class label `0..outputs` after the inputs, `outputs` being the number of classes;
        /// implies `classification`).
        #[serde(default)]
        labels: CsvLabels,
    },
    /// Images and labels in the IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw:
    /// the folder holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    /// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` (optionally ending in `.gz`).
    /// Each image is one input vector (`rows × columns` pixels, row-major), each label a class
    /// index, one-hot over `classes`: softmax cross-entropy and accuracy. Every image is used
    /// unless `data.train`/`data.test` ask for fewer (then a seeded random subset).
    Idx {
        /// Folder holding the four files, relative to the scenario file. `null`: the folder in
        /// the environment variable `DTPSIM_FASHION_MNIST`, else `/usr/share/datasets/fashion-mnist`
        /// (where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST).
        #[serde(default)]
        dir: Option<std::path::PathBuf>,
        /// Pixel scaling: `unit` (`v/255`), `symmetric` (`2v/255 − 1`), `standardize` (one mean
        /// and standard deviation over all pixels of the training file) or
        /// `standardize_per_pixel` (per pixel, over the training file).
        #[serde(default)]
        scaling: crate::idx::PixelScaling,
        /// Pixels per image, `rows × columns` of the files (784 for 28 × 28).
        #[serde(default = "idx_inputs")]
        inputs: usize,
        /// Number of classes; every label must be below it (10 for MNIST and Fashion-MNIST).
        #[serde(default = "idx_classes")]
        classes: usize,
    },
}

fn idx_inputs() -> usize {
    784
}

fn idx_classes() -> usize {
    10
}

/// How a CSV row gives its target ([`Task::Csv`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CsvLabels {
    /// `outputs` target columns after the inputs (one-hot for classification).
    #[default]
    OneHot,
    /// One integer class label in `0..outputs` after the inputs; becomes a one-hot target.
    ClassIndex,
}

/// Reads every example of a CSV file (see [`Task::Csv`]).
fn read_csv(
    field: &str,
    path: &std::path::Path,
    inputs: usize,
    outputs: usize,
    labels: CsvLabels,
) -> Result<Vec<Example>, ModelError> {
    let invalid = |message: String| ModelError::Invalid {
        field: field.to_string(),
        message: format!("{}: {message}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "cannot read ({e}); give a path relative to the scenario file"
        ))
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true) // ragged rows get our own message, with the expected count
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| invalid(format!("line {}: {e}", i + 1)))?;
        let values: Result<Vec<f64>, _> = record.iter().map(|v| v.parse::<f64>()).collect();
        let values = match values {
            Ok(v) => v,
            // a header is a first row without a single number; a row of numbers with one bad
            // cell (`1,2,3x`) is data with an error, not a header
            Err(_) if i == 0 && record.iter().all(|c| c.parse::<f64>().is_err()) => continue,
            Err(e) => return Err(invalid(format!("line {}: {e}", i + 1))),
        };
        let (targets, what) = match labels {
            CsvLabels::OneHot => (outputs, format!("{outputs} outputs")),
            CsvLabels::ClassIndex => (1, "1 class index".to_string()),
        };
        let expected = inputs.checked_add(targets);
        if Some(values.len()) != expected {
            let count = expected.map_or("more".to_string(), |n| n.to_string());
            return Err(invalid(format!(
                "line {}: expected {count} numbers ({inputs} inputs + {what}), got {}",
                i + 1,
                values.len()
            )));
        }
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!(
                "line {}, column {}: value is not finite",
                i + 1,
                j + 1
            )));
        }
        let y = match labels {
            CsvLabels::OneHot => DVector::from_column_slice(&values[inputs..]),
            CsvLabels::ClassIndex => {
                let c = values[inputs];
                if c.fract() != 0.0 || c < 0.0 {
                    return Err(invalid(format!(
                        "line {}, column {}: class label {c} is not a class index; with labels class_index the last column is an integer 0..{} (use labels one_hot for {outputs} target columns)",
                        i + 1,
                        inputs + 1,
                        outputs.saturating_sub(1)
                    )));
                }
                if c >= outputs as f64 {
                    return Err(invalid(format!(
                        "line {}, column {}: class label {c} is out of range for {outputs} classes (labels 0..{}); set task.outputs (and the last entry of network.widths) to the number of classes",
                        i + 1,
                        inputs + 1,
                        outputs.saturating_sub(1)
                    )));
                }
                let mut y = DVector::zeros(outputs);
                y[c as usize] = 1.0;
                y
            }
        };
        out.push(Example {
            x: DVector::from_column_slice(&values[..inputs]),
            y,
        });
    }
    if out.is_empty() {
        return Err(invalid("holds no examples".into()));
    }
    Ok(out)
}

impl Task {
    /// Input and output widths `(n_0, n_L)` the task requires.
    pub fn io_widths(&self) -> (usize, usize) {
        match self {
            Task::TeacherStudent { widths, .. } => (widths[0], *widths.last().unwrap_or(&0)),
            Task::Clusters { dim, classes, .. } => (*dim, *classes),
            Task::Csv {
                inputs, outputs, ..
            } => (*inputs, *outputs),
            Task::Idx {
                inputs, classes, ..
            } => (*inputs, *classes),
        }
    }

    /// The loss that fits the task (`mse` for regression, `softmax_ce` for clusters).
    pub fn natural_loss(&self) -> Loss {
        match self {
            Task::TeacherStudent { .. } => Loss::Mse,
            Task::Clusters { .. } | Task::Idx { .. } => Loss::SoftmaxCe,
            Task::Csv { .. } => {
                if self.is_classification() {
                    Loss::SoftmaxCe
                } else {
                    Loss::Mse
                }
            }
        }
    }

    /// Whether the targets are class labels (one-hot `y`; accuracy is meaningful).
    pub fn is_classification(&self) -> bool {
        match self {
            Task::TeacherStudent { .. } => false,
            Task::Clusters { .. } | Task::Idx { .. } => true,
            Task::Csv {
                classification,
                labels,
                ..
            } => *classification || *labels == CsvLabels::ClassIndex,
        }
    }

    /// Checks the fields of an `idx` task (other tasks: nothing to check here). An explicit
    /// `dir` must be a folder; the default folder is looked for when the data are loaded.
    pub fn check_idx(&self) -> Result<(), crate::error::ConfigError> {
        use crate::error::ConfigError;
        let Task::Idx {
            dir,
            inputs,
            classes,
            ..
        } = self
        else {
            return Ok(());
        };
        let max = crate::network::MAX_WIDTH;
        if *inputs == 0 || *inputs > max {
            return Err(ConfigError::new(
                "task.inputs",
                format!("must be in 1..={max}, got {inputs}"),
            ));
        }
        if *classes < 2 || *classes > 256 {
            return Err(ConfigError::new(
                "task.classes",
                format!("must be in 2..=256 (IDX labels are bytes), got {classes}"),
            ));
        }
        if let Some(d) = dir {
            if !d.is_dir() {
                return Err(ConfigError::new(
                    "task.dir",
                    format!(
                        "{}: no such folder; give a folder (relative to the scenario file) holding the four IDX files, or null for ${} or {}",
                        d.display(),
                        crate::idx::ENV_DIR,
                        crate::idx::DEBIAN_DIR
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The data set with the given seed: generated tasks draw `n_train` and `n_test` examples
    /// ([`DEFAULT_GENERATED`] when `None`); CSV tasks read every row and keep a seeded random
    /// subset of `n` rows (in file order) when a size is given, an error when the file holds
    /// fewer than `n`; IDX tasks do the same with images.
    pub fn generate(
        &self,
        n_train: Option<usize>,
        n_test: Option<usize>,
        seed: u64,
    ) -> Result<Dataset, ModelError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let requested = (n_train, n_test);
        let generated = |n: Option<usize>, default: usize, set: &str| {
            let n = n.unwrap_or(default);
            (n, format!("{set}: {n} generated examples"))
        };
        let (n_train, train_note) = generated(n_train, DEFAULT_GENERATED.0, "train");
        let (n_test, test_note) = generated(n_test, DEFAULT_GENERATED.1, "test");
        match self {
            Task::TeacherStudent {
                widths,
                activation,
                gain,
            } => {
                if !gain.is_finite() || *gain <= 0.0 {
                    return Err(ModelError::Invalid {
                        field: "task.gain".into(),
                        message: format!("must be a positive number, got {gain}"),
                    });
                }
                let arch = Architecture::new(widths, *activation, Loss::Mse).map_err(|e| {
                    ModelError::Invalid {
                        field: "task.widths".into(),
                        message: e.to_string(),
                    }
                })?;
                let teacher = Network::new(arch, Init::Gaussian { gain: *gain }, rng.random())?;
                let draw = |rng: &mut ChaCha8Rng| {
                    let x = DVector::from_fn(widths[0], |_, _| StandardNormal.sample(rng));
                    let y = teacher.predict(&x);
                    Example { x, y }
                };
                let train = (0..n_train).map(|_| draw(&mut rng)).collect();
                let test = (0..n_test).map(|_| draw(&mut rng)).collect();
                Ok(Dataset {
                    train,
                    test,
                    classification: false,
                    provenance: vec![train_note, test_note],
                })
            }
            Task::Clusters {
                dim,
                classes,
                separation,
            } => {
                if *dim == 0 || *classes < 2 {
                    return Err(ModelError::Invalid {
                        field: "task".into(),
                        message: format!("clusters need dim ≥ 1 and classes ≥ 2, got dim {dim}, classes {classes}"),
                    });
                }
                let means: Vec<DVector<f64>> = (0..*classes)
                    .map(|_| {
                        DVector::from_fn(*dim, |_, _| {
                            let z: f64 = StandardNormal.sample(&mut rng);
                            separation * z
                        })
                    })
                    .collect();
                let draw = |rng: &mut ChaCha8Rng| {
                    let c = rng.random_range(0..*classes);
                    let x = DVector::from_fn(*dim, |i, _| {
                        let z: f64 = StandardNormal.sample(rng);
                        means[c][i] + z
                    });
                    let mut y = DVector::zeros(*classes);
                    y[c] = 1.0;
                    Example { x, y }
                };
                let train = (0..n_train).map(|_| draw(&mut rng)).collect();
                let test = (0..n_test).map(|_| draw(&mut rng)).collect();
                Ok(Dataset {
                    train,
                    test,
                    classification: true,
                    provenance: vec![train_note, test_note],
                })
            }
            Task::Csv {
                train,
                test,
                inputs,
                outputs,
                labels,
                ..
            } => {
                let (train, train_note) = csv_subset(
                    "train",
                    train,
                    read_csv("task.train", train, *inputs, *outputs, *labels)?,
                    requested.0,
                    seed,
                )?;
                let (test, test_note) = csv_subset(
                    "test",
                    test,
                    read_csv("task.test", test, *inputs, *outputs, *labels)?,
                    requested.1,
                    seed.wrapping_add(1),
                )?;
                let classification = self.is_classification();
                if classification {
                    for (field, set) in [("task.train", &train), ("task.test", &test)] {
                        if let Some(i) = set.iter().position(|e| {
                            e.y.iter().any(|v| *v != 0.0 && *v != 1.0) || e.y.sum() != 1.0
                        }) {
                            return Err(ModelError::Invalid {
                                field: field.into(),
                                message: format!("example {} has targets that are not one-hot; set classification to false for regression", i + 1),
                            });
                        }
                    }
                }
                Ok(Dataset {
                    train,
                    test,
                    classification,
                    provenance: vec![train_note, test_note],
                })
            }
            Task::Idx {
                dir,
                scaling,
                inputs,
                classes,
            } => crate::idx::load(
                dir.as_deref(),
                *scaling,
                *inputs,
                *classes,
                requested.0,
                requested.1,
                seed,
            ),
        }
    }
}

/// Keeps `n` of a file's `rows` (all when `n` is `None`): a seeded random subset in file
/// order; an error naming `data.<set>` when the file holds fewer.
fn csv_subset(
    set: &str,
    path: &std::path::Path,
    rows: Vec<Example>,
    n: Option<usize>,
    seed: u64,
) -> Result<(Vec<Example>, String), ModelError> {
    let total = rows.len();
    match n {
        None => Ok((
            rows,
            format!("{set}: {total} examples, every row of {}", path.display()),
        )),
        Some(n) if n > total => Err(ModelError::Invalid {
            field: format!("data.{set}"),
            message: format!(
                "asks for {n} examples but {} holds {total}; give at most {total}, or null for every row",
                path.display()
            ),
        }),
        Some(n) if n == total => Ok((
            rows,
            format!("{set}: {total} examples, every row of {}", path.display()),
        )),
        Some(n) => {
            let keep = subset_indices(total, n, seed);
            let mut rows: Vec<Option<Example>> = rows.into_iter().map(Some).collect();
            let subset = keep.iter().filter_map(|&i| rows[i].take()).collect();
            Ok((
                subset,
                format!(
                    "{set}: {n} of the {total} rows of {} (seeded random subset)",
                    path.display()
                ),
            ))
        }
    }
}

/// A seeded random choice of `n ≤ total` distinct indices of `0..total`, in increasing (file)
/// order: the subsets of data files (CSV rows, IDX images).
pub fn subset_indices(total: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5b5e);
    let mut keep = rand::seq::index::sample(&mut rng, total, n).into_vec();
    keep.sort_unstable();
    keep
}

/// The random stream that orders a run's training examples: every model of a scenario, the
/// continuous engine and each reference, draws the same examples in the same order
/// (docs/MODEL.md §6, Protocol).
pub fn example_order(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x9e37_79b9))
}

/// Draws training examples in shuffled epochs: every example once per epoch, in a new
/// random order each epoch (shared by the discrete trainer and the continuous protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSampler {
    order: Vec<usize>,
    cursor: usize,
}

impl EpochSampler {
    /// A sampler over `n` examples (the first call shuffles).
    pub fn new(n: usize) -> Self {
        EpochSampler {
            order: (0..n).collect(),
            cursor: n,
        }
    }

    /// Index of the next example.
    pub fn next_index(&mut self, rng: &mut ChaCha8Rng) -> usize {
        if self.cursor == self.order.len() {
            rand::seq::SliceRandom::shuffle(self.order.as_mut_slice(), rng);
            self.cursor = 0;
        }
        self.cursor += 1;
        self.order[self.cursor - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_reproducible_from_their_seed() {
        let task = Task::TeacherStudent {
            widths: vec![4, 6, 3],
            activation: Activation::Tanh,
            gain: 1.5,
        };
        let a = task.generate(Some(5), Some(2), 11).unwrap();
        let b = task.generate(Some(5), Some(2), 11).unwrap();
        let c = task.generate(Some(5), Some(2), 12).unwrap();
        assert_eq!(a.train, b.train);
        assert_ne!(a.train, c.train);
        assert_eq!(a.train[0].y.len(), 3);
    }

    #[test]
    fn clusters_are_one_hot_and_separable_when_far_apart() {
        let task = Task::Clusters {
            dim: 5,
            classes: 3,
            separation: 10.0,
        };
        let d = task.generate(Some(50), Some(10), 1).unwrap();
        for ex in &d.train {
            assert_eq!(ex.y.sum(), 1.0);
        }
        assert!(d.classification);
    }

    fn csv_task(dir: &std::path::Path, rows: usize) -> Task {
        std::fs::create_dir_all(dir).unwrap();
        let text: String = std::iter::once("x,y\n".to_string())
            .chain((0..rows).map(|i| format!("{i},{}\n", 2 * i)))
            .collect();
        std::fs::write(dir.join("train.csv"), &text).unwrap();
        std::fs::write(dir.join("test.csv"), &text).unwrap();
        Task::Csv {
            train: dir.join("train.csv"),
            test: dir.join("test.csv"),
            inputs: 1,
            outputs: 1,
            classification: false,
            labels: CsvLabels::OneHot,
        }
    }

    #[test]
    fn csv_class_index_labels_are_one_hot_targets() {
        let dir = std::env::temp_dir().join(format!("dtpsim-csv-ci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.csv");
        std::fs::write(&path, "a,b,label\n0.5,1,2\n-1,0,0\n").unwrap();
        let task = Task::Csv {
            train: path.clone(),
            test: path.clone(),
            inputs: 2,
            outputs: 3,
            classification: false,
            labels: CsvLabels::ClassIndex,
        };
        assert_eq!(task.natural_loss(), Loss::SoftmaxCe);
        let d = task.generate(None, None, 1).unwrap();
        assert!(d.classification);
        assert_eq!(d.train[0].x.as_slice(), &[0.5, 1.0]);
        assert_eq!(d.train[0].y.as_slice(), &[0.0, 0.0, 1.0]);
        assert_eq!(d.train[1].y.as_slice(), &[1.0, 0.0, 0.0]);
        for (row, fault) in [
            (
                "1,1,2.5",
                "line 2, column 3: class label 2.5 is not a class index",
            ),
            (
                "1,1,3",
                "line 2, column 3: class label 3 is out of range for 3 classes",
            ),
            (
                "1,1,1,0",
                "line 2: expected 3 numbers (2 inputs + 1 class index), got 4",
            ),
        ] {
            std::fs::write(&path, format!("a,b,label\n{row}\n")).unwrap();
            let e = task.generate(None, None, 1).unwrap_err().to_string();
            assert!(e.starts_with("task.train: ") && e.contains(fault), "{e}");
            assert!(e.contains("d.csv"), "{e}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn csv_files_are_used_whole_unless_fewer_rows_are_asked_for() {
        let dir = std::env::temp_dir().join(format!("dtpsim-csv-{}", std::process::id()));
        let task = csv_task(&dir, 450);
        let all = task.generate(None, None, 3).unwrap();
        assert_eq!((all.train.len(), all.test.len()), (450, 450));
        assert!(all.provenance[1].contains("every row"));

        // a subset is seeded, random (not the first rows), distinct, and in file order
        let sub = task.generate(Some(100), Some(300), 3).unwrap();
        assert_eq!((sub.train.len(), sub.test.len()), (100, 300));
        let first: Vec<f64> = sub.test.iter().map(|e| e.x[0]).collect();
        assert!(
            first.windows(2).all(|w| w[0] < w[1]),
            "file order, no repeats"
        );
        assert!(
            *first.last().unwrap() > 300.0,
            "not just the first 300 rows"
        );
        let again = task.generate(Some(100), Some(300), 3).unwrap();
        assert_eq!(sub.test, again.test);
        let other = task.generate(Some(100), Some(300), 4).unwrap();
        assert_ne!(sub.test, other.test);
        assert!(sub.provenance[1].contains("300 of the 450 rows"));

        // more than the file holds is an error naming the field and the file's size
        let err = task.generate(Some(500), None, 3).unwrap_err().to_string();
        assert!(err.contains("data.train") && err.contains("450"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
