//! What every model reports at an evaluation: one [`MetricsRow`] per model and evaluation,
//! the same type and the same `metrics.csv` columns for the continuous engine and for the
//! discrete references.

use crate::data::{subset_indices, Dataset, Example};
use crate::network::Network;
use crate::record::{num, Table};
use crate::scenario::Schedule;
use nalgebra::DMatrix;

/// One evaluation of one model (a row of `metrics.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// `continuous` or the reference's name.
    pub model: String,
    /// Learning trials completed (0: the evaluation before learning, after warm-up).
    pub trial: usize,
    /// Learning examples presented, `trial × batch`.
    pub examples: usize,
    /// Epochs of learning, `examples / n_train`.
    pub epoch: f64,
    /// How many test examples the test columns average over: the whole test set, or the
    /// `schedule.eval_examples` subset between epoch ends.
    pub test_examples: usize,
    /// Simulated time since the start, warm-up included (continuous engine; NaN for the
    /// references).
    pub time: f64,
    /// Mean loss of the examples since the previous evaluation, each measured with the
    /// weights before its update (NaN at trial 0).
    pub train_loss: f64,
    /// Mean loss on the test set: `½‖h_L − y‖²` (mse) or the softmax cross-entropy.
    pub test_loss: f64,
    /// Mean squared error per output unit, `‖h_L − y‖²/n_L`, on the test set (regression;
    /// NaN for classification).
    pub test_mse: f64,
    /// Test accuracy (classification; NaN otherwise).
    pub test_accuracy: f64,
    /// Mean relative reconstruction error `‖h_{l−1} − g_l(h_l)‖²/‖h_{l−1}‖²` of the decoders
    /// on the test set (NaN for BP).
    pub reconstruction: f64,
    /// Measured contraction `α_l` of the target relaxation of each hidden layer
    /// `l = 1..L−1` (index `l − 1`), the mean since the previous evaluation: `α < 1` contracts
    /// (Sec. 6.2). NaN where targets are not iterated (BP, difference targets) or nothing was
    /// measured (docs/MODEL.md §3 and §6).
    pub alpha: Vec<f64>,
    /// Mean cosine between each trial's weight change and the fully relaxed DTP1 update
    /// (continuous engine with `diagnostics.update_cosine`; NaN otherwise).
    pub update_cosine: f64,
    /// The same cosine per weight layer `l = 1..L` (index `l − 1`): mean of
    /// `⟨ΔW_l, ΔW_l*⟩/(‖ΔW_l‖ ‖ΔW_l*‖)` with `ΔW_l*` the fully relaxed DTP1 update (NaN where
    /// it is off, or the layer does not learn).
    pub update_cosines: Vec<f64>,
    /// The trial's step per weight layer against the fully relaxed one, mean of
    /// `⟨ΔW_l, ΔW_l*⟩/‖ΔW_l*‖²`: 1 in the discrete limit `η → 0`, `1/(1 + ηβ)` for the output
    /// layer alone at one replica with the squared loss (the implicit step, docs/MODEL.md §6
    /// "Finite steps"). NaN where it is off, or the layer does not learn.
    pub update_steps: Vec<f64>,
    /// Frobenius norms `‖W_1‖ … ‖W_L‖`.
    pub w_norms: Vec<f64>,
    /// Wall-clock seconds since the model started.
    pub wall_seconds: f64,
}

impl MetricsRow {
    /// The largest finite `α_l` over the hidden layers: the layer whose relaxation contracts
    /// least (NaN when none was measured).
    pub fn alpha_max(&self) -> f64 {
        self.alpha
            .iter()
            .copied()
            .filter(|a| a.is_finite())
            .fold(f64::NAN, f64::max)
    }

    /// The measurements of `net` on `test` after `trial` learning trials of `batch` examples
    /// from a training set of `n_train`; the per-interval means (`train_loss`, `alpha`,
    /// `update_cosine`), `time`
    /// and `wall_seconds` start as NaN for the caller to fill in.
    #[allow(clippy::too_many_arguments)]
    pub fn measure(
        model: &str,
        net: &Network,
        test: &[Example],
        classification: bool,
        decoders: bool,
        trial: usize,
        batch: usize,
        n_train: usize,
    ) -> MetricsRow {
        let scores = TestScores::of(net, test, classification, decoders);
        let examples = trial * batch;
        MetricsRow {
            model: model.to_string(),
            trial,
            examples,
            epoch: examples as f64 / n_train.max(1) as f64,
            test_examples: test.len(),
            time: f64::NAN,
            train_loss: f64::NAN,
            test_loss: scores.loss,
            test_mse: scores.mse,
            test_accuracy: scores.accuracy,
            reconstruction: scores.reconstruction,
            alpha: vec![f64::NAN; net.depth().saturating_sub(1)],
            update_cosine: f64::NAN,
            update_cosines: vec![f64::NAN; net.depth()],
            update_steps: vec![f64::NAN; net.depth()],
            w_norms: net.encoders().iter().map(|w| w.norm()).collect(),
            wall_seconds: f64::NAN,
        }
    }
}

/// The `metrics.csv` column names for a network of `depth` weight layers.
pub fn header(depth: usize) -> Vec<String> {
    header_with(depth, true)
}

/// [`header`], or without the per-layer update columns (`update_cosine_l`, `update_step_l`)
/// as checkpoints written before them hold it.
fn header_with(depth: usize, per_layer_updates: bool) -> Vec<String> {
    let mut h: Vec<String> = [
        "model",
        "trial",
        "examples",
        "epoch",
        "test_examples",
        "time",
        "train_loss",
        "test_loss",
        "test_mse",
        "test_accuracy",
        "reconstruction",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    h.extend((1..depth).map(|l| format!("alpha_{l}")));
    h.push("update_cosine".into());
    if per_layer_updates {
        h.extend((1..=depth).map(|l| format!("update_cosine_{l}")));
        h.extend((1..=depth).map(|l| format!("update_step_{l}")));
    }
    h.extend((1..=depth).map(|l| format!("w_norm_{l}")));
    h.push("wall_seconds".into());
    h
}

/// One CSV record of `row` in the order of [`header`].
pub fn record(row: &MetricsRow) -> Vec<String> {
    let mut r = vec![
        row.model.clone(),
        row.trial.to_string(),
        row.examples.to_string(),
        num(row.epoch),
        row.test_examples.to_string(),
        num(row.time),
        num(row.train_loss),
        num(row.test_loss),
        num(row.test_mse),
        num(row.test_accuracy),
        num(row.reconstruction),
    ];
    r.extend(row.alpha.iter().map(|v| num(*v)));
    r.push(num(row.update_cosine));
    r.extend(row.update_cosines.iter().map(|v| num(*v)));
    r.extend(row.update_steps.iter().map(|v| num(*v)));
    r.extend(row.w_norms.iter().map(|v| num(*v)));
    r.push(format!("{:.3}", row.wall_seconds));
    r
}

/// The row of a [`record`] again (for checkpoints; numbers round-trip exactly, the wall-clock
/// seconds to the millisecond). A record without the per-layer update columns (a checkpoint
/// written before them) reads them as NaN.
pub fn parse_record(depth: usize, r: &[String]) -> Result<MetricsRow, String> {
    let names = header(depth);
    let older = header_with(depth, false);
    let names = if r.len() == older.len() {
        older
    } else if r.len() == names.len() {
        names
    } else {
        return Err(format!(
            "a metrics record has {} fields, not {}",
            r.len(),
            names.len()
        ));
    };
    // the cell under column `name`, found in `header` as `record` wrote it (None: a column
    // the record's layout does not have)
    let cell = |name: &str| -> Option<&str> {
        let i = names.iter().position(|n| n == name)?;
        Some(r[i].as_str())
    };
    let num = |name: &str| -> Result<f64, String> {
        let text = cell(name).unwrap_or("NaN");
        text.parse::<f64>()
            .map_err(|e| format!("{name} {text:?}: {e}"))
    };
    let count = |name: &str| -> Result<usize, String> {
        let text = cell(name).unwrap_or("");
        text.parse::<usize>()
            .map_err(|e| format!("{name} {text:?}: {e}"))
    };
    Ok(MetricsRow {
        model: cell("model").unwrap_or_default().to_string(),
        trial: count("trial")?,
        examples: count("examples")?,
        epoch: num("epoch")?,
        test_examples: count("test_examples")?,
        time: num("time")?,
        train_loss: num("train_loss")?,
        test_loss: num("test_loss")?,
        test_mse: num("test_mse")?,
        test_accuracy: num("test_accuracy")?,
        reconstruction: num("reconstruction")?,
        alpha: (1..depth)
            .map(|l| num(&format!("alpha_{l}")))
            .collect::<Result<_, _>>()?,
        update_cosine: num("update_cosine")?,
        update_cosines: (1..=depth)
            .map(|l| num(&format!("update_cosine_{l}")))
            .collect::<Result<_, _>>()?,
        update_steps: (1..=depth)
            .map(|l| num(&format!("update_step_{l}")))
            .collect::<Result<_, _>>()?,
        w_norms: (1..=depth)
            .map(|l| num(&format!("w_norm_{l}")))
            .collect::<Result<_, _>>()?,
        wall_seconds: num("wall_seconds")?,
    })
}

/// `metrics.csv` of every model's rows, in the order given.
pub fn table<'a>(depth: usize, rows: impl IntoIterator<Item = &'a MetricsRow>) -> Table {
    let h = header(depth);
    let mut t = Table::new(&h.iter().map(String::as_str).collect::<Vec<_>>());
    for row in rows {
        t.push(record(row));
    }
    t
}

/// Test examples per batched forward pass of an evaluation: large enough for matrix–matrix
/// speed, small enough that the pass of a wide network stays a few MiB.
const EVALUATION_CHUNK: usize = 250;

/// The test columns of a [`MetricsRow`], from one batched forward pass per chunk of
/// [`EVALUATION_CHUNK`] examples (each column of a batched pass is the single-example pass,
/// `discrete::batch`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestScores {
    /// Mean loss `ℓ(h_L, y)`.
    pub loss: f64,
    /// Fraction of examples whose largest output is the label's (classification; NaN
    /// otherwise).
    pub accuracy: f64,
    /// Mean squared error per output unit, `⟨‖h_L − y‖²⟩/n_L` (regression; NaN for
    /// classification).
    pub mse: f64,
    /// Mean relative reconstruction error of the decoders,
    /// `⟨‖h_{l−1} − g_l(h_l)‖²/‖h_{l−1}‖²⟩` over examples and layers `l = 2..=L` (NaN without
    /// decoders or hidden layers).
    pub reconstruction: f64,
}

impl TestScores {
    /// The scores of `net` on `examples`; `decoders` says whether the reconstruction error is
    /// measured.
    pub fn of(net: &Network, examples: &[Example], classification: bool, decoders: bool) -> Self {
        let nan = f64::NAN;
        if examples.is_empty() {
            return TestScores {
                loss: nan,
                accuracy: nan,
                mse: nan,
                reconstruction: nan,
            };
        }
        let depth = net.depth();
        let reconstructs = decoders && depth >= 2;
        let loss_fn = net.arch().loss;
        let (mut loss, mut squared, mut reconstruction) = (0.0, 0.0, 0.0);
        let mut correct = 0usize;
        for chunk in examples.chunks(EVALUATION_CHUNK) {
            let x = DMatrix::from_fn(net.width(0), chunk.len(), |i, b| chunk[b].x[i]);
            let pass = net.forward_batch(x);
            for (b, ex) in chunk.iter().enumerate() {
                let out = pass.output().column(b).into_owned();
                loss += loss_fn.value(&out, &ex.y);
                squared += (&out - &ex.y).norm_squared();
                correct += usize::from(out.imax() == ex.y.imax());
            }
            if reconstructs {
                for l in 2..=depth {
                    let decoded = net.decode_batch(l, &pass.h[l]);
                    for (b, column) in pass.h[l - 1].column_iter().enumerate() {
                        let err = (column - decoded.column(b)).norm_squared();
                        reconstruction += err / column.norm_squared().max(1e-300);
                    }
                }
            }
        }
        let n = examples.len() as f64;
        TestScores {
            loss: loss / n,
            accuracy: if classification {
                correct as f64 / n
            } else {
                nan
            },
            mse: if classification {
                nan
            } else {
                squared / (n * net.width(depth) as f64)
            },
            reconstruction: if reconstructs {
                reconstruction / (n * (depth - 1) as f64)
            } else {
                nan
            },
        }
    }
}

/// Which test examples an evaluation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestScope {
    /// The seeded `schedule.eval_examples` subset (the whole test set without it).
    Subset,
    /// The whole test set.
    Full,
}

/// When every model is evaluated and on which test examples (docs/MODEL.md §6, Protocol):
/// before learning, every `eval_every` learning trials on the seeded subset of
/// `schedule.eval_examples` test examples (the same subset each time; the whole test set
/// without it), and on the whole test set at every epoch end and after the last trial.
#[derive(Debug, Clone)]
pub struct EvaluationPlan<'a> {
    data: &'a Dataset,
    subset: Option<Vec<Example>>,
    schedule: Schedule,
}

impl<'a> EvaluationPlan<'a> {
    /// The plan of `schedule` on `data`; the subset is drawn from `seed`.
    pub fn new(data: &'a Dataset, schedule: &Schedule, seed: u64) -> Self {
        let total = data.test.len();
        let subset = schedule.eval_examples.filter(|&n| n < total).map(|n| {
            subset_indices(total, n, seed ^ 0xe7a1)
                .into_iter()
                .map(|i| data.test[i].clone())
                .collect()
        });
        EvaluationPlan {
            data,
            subset,
            schedule: *schedule,
        }
    }

    /// Whether learning trial number `done − 1` (after which `done` trials are complete) ends
    /// with an evaluation, and on which examples.
    pub fn after(&self, done: usize) -> Option<TestScope> {
        let (n, b) = (self.data.train.len().max(1), self.schedule.batch);
        let epoch_end = done >= 1 && (done * b) / n > ((done - 1) * b) / n;
        if done == self.schedule.trials || epoch_end {
            Some(TestScope::Full)
        } else if done.is_multiple_of(self.schedule.eval_every) {
            Some(TestScope::Subset)
        } else {
            None
        }
    }

    /// [`MetricsRow::measure`] of `net` after `trial` trials on the examples of `scope`.
    pub fn measure(
        &self,
        scope: TestScope,
        model: &str,
        net: &Network,
        decoders: bool,
        trial: usize,
    ) -> MetricsRow {
        let test = match (scope, &self.subset) {
            (TestScope::Subset, Some(subset)) => subset.as_slice(),
            _ => self.data.test.as_slice(),
        };
        MetricsRow::measure(
            model,
            net,
            test,
            self.data.classification,
            decoders,
            trial,
            self.schedule.batch,
            self.data.train.len(),
        )
    }
}

/// One [`RunningMean`] per layer between evaluations: per hidden layer `l = 1..L−1` the
/// contraction `α_l`, per weight layer `l = 1..L` the update agreement.
#[derive(Debug, Clone)]
pub struct LayerMeans(Vec<RunningMean>);

impl LayerMeans {
    /// Empty means for the hidden layers `1..L−1` of a network of `depth` weight layers.
    pub fn new(depth: usize) -> Self {
        LayerMeans(vec![RunningMean::default(); depth.saturating_sub(1)])
    }

    /// Empty means for the weight layers `1..L` of a network of `depth` weight layers.
    pub fn weight_layers(depth: usize) -> Self {
        LayerMeans(vec![RunningMean::default(); depth])
    }

    /// Adds `v` to layer `l` (from 1) if it is finite.
    pub fn add(&mut self, l: usize, v: f64) {
        if let Some(m) = self.0.get_mut(l.wrapping_sub(1)) {
            m.add(v);
        }
    }

    /// The means, index `l − 1` (NaN where nothing finite was added).
    pub fn means(&self) -> Vec<f64> {
        self.0.iter().map(RunningMean::mean).collect()
    }
}

/// A running mean of the finite values added.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunningMean {
    sum: f64,
    count: usize,
}

impl RunningMean {
    /// Adds `v` if it is finite.
    pub fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.sum += v;
            self.count += 1;
        }
    }

    /// The mean (NaN when nothing finite was added).
    pub fn mean(&self) -> f64 {
        if self.count > 0 {
            self.sum / self.count as f64
        } else {
            f64::NAN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::network::{Architecture, Init, Loss};
    use nalgebra::DVector;

    /// The batched scores equal the single-example definitions, across chunk boundaries.
    #[test]
    fn batched_scores_are_the_per_example_means() {
        for (loss, classification) in [(Loss::SoftmaxCe, true), (Loss::Mse, false)] {
            let arch = Architecture::new(&[5, 8, 7, 4], Activation::Tanh, loss).expect("widths");
            let net = Network::new(arch, Init::default(), 11).expect("init");
            let n = 2 * EVALUATION_CHUNK + 17;
            let examples: Vec<Example> = (0..n)
                .map(|k| Example {
                    x: DVector::from_fn(5, |i, _| ((k * 5 + i) as f64 * 0.731).sin() * 1.5),
                    y: DVector::from_fn(4, |i, _| f64::from(u8::from(i == k % 4))),
                })
                .collect();
            let scores = TestScores::of(&net, &examples, classification, true);
            let (mut loss_sum, mut squared, mut correct, mut rec) = (0.0, 0.0, 0, 0.0);
            for ex in &examples {
                let fwd = net.forward(&ex.x);
                let out = &fwd.h[3];
                loss_sum += loss.value(out, &ex.y);
                squared += (out - &ex.y).norm_squared();
                correct += usize::from(out.imax() == ex.y.imax());
                for l in 2..=3 {
                    let err = (&fwd.h[l - 1] - net.decode(l, &fwd.h[l])).norm_squared();
                    rec += err / fwd.h[l - 1].norm_squared();
                }
            }
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
            assert!(close(scores.loss, loss_sum / n as f64));
            assert!(close(scores.reconstruction, rec / (2 * n) as f64));
            if classification {
                assert_eq!(scores.accuracy, correct as f64 / n as f64);
                assert!(scores.mse.is_nan());
            } else {
                assert!(close(scores.mse, squared / (4 * n) as f64));
                assert!(scores.accuracy.is_nan());
            }
            let without = TestScores::of(&net, &examples, classification, false);
            assert!(without.reconstruction.is_nan());
            assert_eq!(without.loss, scores.loss);
        }
    }

    /// A record reads back as the row it was written from, and a record of the layout before
    /// the per-layer update columns (an older checkpoint's) reads them as NaN.
    #[test]
    fn records_read_back_exactly_and_older_ones_without_the_per_layer_update_columns() {
        let depth = 3;
        let row = MetricsRow {
            model: "continuous".into(),
            trial: 7,
            examples: 21,
            epoch: 0.35,
            test_examples: 10,
            time: 105.0,
            train_loss: 0.1 + 0.2,
            test_loss: 1.0 / 3.0,
            test_mse: f64::NAN,
            test_accuracy: 0.7,
            reconstruction: 0.25,
            alpha: vec![f64::NAN, 0.5],
            update_cosine: 0.9,
            update_cosines: vec![0.8, 0.85, 0.99],
            update_steps: vec![0.7, f64::NAN, 0.875],
            w_norms: vec![1.5, 2.5, std::f64::consts::PI],
            wall_seconds: 1.25,
        };
        let record = record(&row);
        assert_eq!(record.len(), header(depth).len());
        let back = parse_record(depth, &record).unwrap();
        // NaN ≠ NaN: compare the records
        assert_eq!(super::record(&back), record);
        assert_eq!(back.update_steps[2], 0.875);
        let names = header(depth);
        let older: Vec<String> = record
            .iter()
            .zip(&names)
            .filter(|(_, n)| !n.starts_with("update_cosine_") && !n.starts_with("update_step_"))
            .map(|(v, _)| v.clone())
            .collect();
        assert_eq!(older.len(), names.len() - 2 * depth);
        let old = parse_record(depth, &older).unwrap();
        assert!(old
            .update_cosines
            .iter()
            .chain(&old.update_steps)
            .all(|v| v.is_nan()));
        assert_eq!(old.w_norms, row.w_norms);
        assert_eq!(old.update_cosine, row.update_cosine);
        let short = parse_record(depth, &older[1..]).unwrap_err();
        assert!(short.contains("fields"), "{short}");
    }
}
