//! `dtpsim compare`: the full test-set evaluations of several runs side by side — one table
//! row per model and epoch end (`epochs.csv`), one summary row per model (`compare.csv`), and
//! test accuracy (or test loss) against training examples seen for all of them
//! (`accuracy_vs_examples.png`/`.svg`, or `test_loss_vs_examples`; examples on a log axis,
//! from the first evaluation after learning began).
//!
//! A run still going (or stopped, with checkpoints) has `metrics.csv.partial` instead of
//! `metrics.csv`; it is read as it stands and marked `in progress`.
//!
//! An earlier comparison's `epochs.csv` can stand in for its runs (their folders may be long
//! gone): its curves are read back with their status from the `compare.csv` beside it, and a
//! run folder given as well replaces the same run's curves from the file, in place, so a
//! published comparison is brought up to date by naming the run that moved on.

use crate::plot::{Dash, LinePlot, Series};
use crate::record::{num, Table};
use crate::report::{fmt_sig, Columns};
use std::path::{Path, PathBuf};

/// One model of one run: its rows evaluated on the whole test set.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCurve {
    /// The run folder's name.
    pub run: String,
    /// The model (`continuous` or a reference's name).
    pub model: String,
    /// The label in plots and tables: the model, or `run/model` when two runs share a name.
    pub label: String,
    /// Whether the run finished (`metrics.csv`) or is in progress (`metrics.csv.partial`).
    pub complete: bool,
    /// Full test-set evaluations in trial order: epoch, examples seen, test examples, test
    /// loss, test accuracy, wall seconds.
    pub points: Vec<EpochPoint>,
}

/// One evaluation on the whole test set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    /// Epochs completed (fractional after a last partial epoch).
    pub epoch: f64,
    /// Training examples seen.
    pub examples: f64,
    /// Test examples evaluated.
    pub test_examples: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Test accuracy (NaN for regression).
    pub test_accuracy: f64,
    /// Wall-clock seconds since the model started.
    pub wall_seconds: f64,
}

impl ModelCurve {
    /// The last evaluation.
    pub fn last(&self) -> Option<&EpochPoint> {
        self.points.last()
    }

    /// The evaluation with the highest accuracy (the first of equals).
    pub fn best(&self) -> Option<&EpochPoint> {
        self.points
            .iter()
            .filter(|p| p.test_accuracy.is_finite())
            .fold(None, |best: Option<&EpochPoint>, p| match best {
                Some(b) if b.test_accuracy >= p.test_accuracy => Some(b),
                _ => Some(p),
            })
    }

    /// Median wall seconds per epoch over successive evaluations (NaN with fewer than two, or
    /// when the wall clock is missing).
    pub fn seconds_per_epoch(&self) -> f64 {
        let mut rates: Vec<f64> = self
            .points
            .windows(2)
            .filter_map(|w| {
                let de = w[1].epoch - w[0].epoch;
                let ds = w[1].wall_seconds - w[0].wall_seconds;
                (de > 0.0 && ds.is_finite() && ds >= 0.0).then_some(ds / de)
            })
            .collect();
        if rates.is_empty() {
            return f64::NAN;
        }
        rates.sort_by(f64::total_cmp);
        let n = rates.len();
        if n % 2 == 1 {
            rates[n / 2]
        } else {
            0.5 * (rates[n / 2 - 1] + rates[n / 2])
        }
    }
}

/// Reads the CSV file `path`, refused (with `hint`) when a column of `needed` is missing.
fn read_with(path: &Path, needed: &[&str], hint: &str) -> anyhow::Result<Columns> {
    let m = Columns::read(path)?;
    if let Some(missing) = needed.iter().find(|n| m.index(n).is_none()) {
        anyhow::bail!("{}: no column {missing:?}; {hint}", path.display());
    }
    Ok(m)
}

/// Every row of a `metrics.csv` or `epochs.csv` as an evaluation (missing cells are NaN).
fn epoch_points(m: &Columns) -> Vec<EpochPoint> {
    let (epoch, examples, test_examples, loss, accuracy, wall) = (
        m.numbers("epoch"),
        m.numbers("examples"),
        m.numbers("test_examples"),
        m.numbers("test_loss"),
        m.numbers("test_accuracy"),
        m.numbers("wall_seconds"),
    );
    (0..m.rows.len())
        .map(|i| EpochPoint {
            epoch: epoch[i],
            examples: examples[i],
            test_examples: test_examples[i],
            test_loss: loss[i],
            test_accuracy: accuracy[i],
            wall_seconds: wall[i],
        })
        .collect()
}

/// Reads the metrics of the run in `dir` and returns every model's full test-set evaluations.
///
/// The rows kept are those evaluated on the most test examples the model ever used (the
/// whole test set at epoch ends and after the last trial, when `schedule.eval_examples` picks a
/// subset in between; every row otherwise).
pub fn read_run(dir: &Path) -> anyhow::Result<Vec<ModelCurve>> {
    let (path, complete) = if dir.join("metrics.csv").exists() {
        (dir.join("metrics.csv"), true)
    } else if dir.join("metrics.csv.partial").exists() {
        (dir.join("metrics.csv.partial"), false)
    } else {
        anyhow::bail!(
            "{}: no metrics.csv or metrics.csv.partial; give the output folder of dtpsim run",
            dir.display()
        );
    };
    let m = read_with(
        &path,
        &["model", "examples", "test_loss"],
        "is this the metrics.csv of dtpsim run?",
    )?;
    let run = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
    let models = m.text("model");
    let all = epoch_points(&m);
    let mut names: Vec<String> = Vec::new();
    for name in &models {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut curves = Vec::new();
    for name in names {
        let rows: Vec<&EpochPoint> = (0..models.len())
            .filter(|&i| models[i] == name && all[i].test_loss.is_finite())
            .map(|i| &all[i])
            .collect();
        let most = rows
            .iter()
            .map(|p| p.test_examples)
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let points = rows
            .into_iter()
            .filter(|p| !most.is_finite() || p.test_examples == most)
            .copied()
            .collect();
        curves.push(ModelCurve {
            run: run.clone(),
            label: name.clone(),
            model: name,
            complete,
            points,
        });
    }
    Ok(curves)
}

/// Reads an earlier comparison's `epochs.csv` back into curves, one per run and model in
/// file order, with each one's status (`complete` or `in progress`) from the `compare.csv`
/// beside it.
pub fn read_comparison(path: &Path) -> anyhow::Result<Vec<ModelCurve>> {
    let m = read_with(
        path,
        &["run", "model", "examples", "test_loss"],
        "give the epochs.csv written by dtpsim compare, or a run folder",
    )?;
    let summary_path = path.with_file_name("compare.csv");
    let summary = Columns::read(&summary_path).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(the compare.csv written beside {} says which of its runs were complete; keep the two files together)",
            path.display()
        )
    })?;
    let status: Vec<(String, String, String)> = summary
        .text("run")
        .into_iter()
        .zip(summary.text("model"))
        .zip(summary.text("status"))
        .map(|((r, m), s)| (r, m, s))
        .collect();
    let (runs, models) = (m.text("run"), m.text("model"));
    let mut curves: Vec<ModelCurve> = Vec::new();
    for (i, point) in epoch_points(&m).into_iter().enumerate() {
        if let Some(c) = curves
            .iter_mut()
            .find(|c| c.run == runs[i] && c.model == models[i])
        {
            c.points.push(point);
            continue;
        }
        let complete = match status
            .iter()
            .find(|(r, m, _)| *r == runs[i] && *m == models[i])
            .map(|(_, _, s)| s.as_str())
        {
            Some("complete") => true,
            Some("in progress") => false,
            other => anyhow::bail!(
                "{}: {}/{} has status {:?}, not \"complete\" or \"in progress\"; write both files again with dtpsim compare",
                summary_path.display(),
                runs[i],
                models[i],
                other.unwrap_or("(no row)")
            ),
        };
        curves.push(ModelCurve {
            run: runs[i].clone(),
            model: models[i].clone(),
            label: models[i].clone(),
            complete,
            points: vec![point],
        });
    }
    Ok(curves)
}

/// What [`compare_runs`] did.
#[derive(Debug)]
pub struct Comparison {
    /// Every model's curve, labels made unique.
    pub curves: Vec<ModelCurve>,
    /// The files written.
    pub files: Vec<PathBuf>,
    /// `run/model` curves of an earlier `epochs.csv` replaced by a run folder given too.
    pub replaced: Vec<String>,
}

/// Compares the runs in `inputs` (run folders, or the `epochs.csv` of an earlier comparison,
/// see [`read_comparison`]): writes `epochs.csv`, `compare.csv` and the plot into `out`. A
/// curve read from a run folder replaces the same run and model of an `epochs.csv`, in its
/// place; two folders, or two files, with the same run and model are refused.
pub fn compare_runs(inputs: &[PathBuf], out: &Path) -> anyhow::Result<Comparison> {
    if inputs.is_empty() {
        anyhow::bail!("compare: give at least one run folder");
    }
    // read everything before writing anything
    let same = |a: &ModelCurve, b: &ModelCurve| a.run == b.run && a.model == b.model;
    // each input's curves, and whether they came from an epochs.csv
    let mut read: Vec<(Vec<ModelCurve>, bool)> = Vec::new();
    let mut seen = Vec::new();
    for input in inputs {
        let canonical = input.canonicalize().unwrap_or_else(|_| input.clone());
        if seen.contains(&canonical) {
            anyhow::bail!("{}: given twice; name each run once", input.display());
        }
        seen.push(canonical);
        let file = input.is_file();
        let these = if file {
            read_comparison(input)?
        } else {
            read_run(input)?
        };
        let earlier = read.iter().filter(|(_, f)| *f == file).flat_map(|(c, _)| c);
        if let Some(c) = these.iter().find(|c| earlier.clone().any(|o| same(o, c))) {
            anyhow::bail!(
                "{}: another {} also has run {:?} with a model {:?}; {}",
                input.display(),
                if file { "epochs.csv" } else { "run folder" },
                c.run,
                c.model,
                if file {
                    "give one of the two files"
                } else {
                    "rename one run folder"
                }
            );
        }
        read.push((these, file));
    }
    let folder_curve = |c: &ModelCurve| {
        read.iter()
            .filter(|(_, f)| !f)
            .flat_map(|(c, _)| c)
            .find(|o| same(o, c))
    };
    let mut replaced = Vec::new();
    let mut curves: Vec<ModelCurve> = Vec::new();
    for (these, file) in &read {
        for c in these {
            match (file, folder_curve(c)) {
                // a file's curve the run folder replaces, in the file's place
                (true, Some(newer)) => {
                    replaced.push(format!("{}/{}", c.run, c.model));
                    curves.push(newer.clone());
                }
                (true, None) => curves.push(c.clone()),
                // a folder's curve that replaces a file's goes in the file's place
                (false, _) if read.iter().any(|(o, f)| *f && o.iter().any(|o| same(o, c))) => {}
                (false, _) => curves.push(c.clone()),
            }
        }
    }
    let clash = |c: &ModelCurve, all: &[ModelCurve]| {
        all.iter()
            .filter(|o| o.model == c.model && o.run != c.run)
            .count()
            > 0
    };
    let snapshot = curves.clone();
    for c in &mut curves {
        if clash(c, &snapshot) {
            c.label = format!("{}/{}", c.run, c.model);
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("--out {}: cannot create the folder: {e}", out.display()))?;
    let mut files = Vec::new();

    let mut epochs = Table::new(&[
        "run",
        "model",
        "epoch",
        "examples",
        "test_examples",
        "test_loss",
        "test_accuracy",
        "wall_seconds",
    ]);
    for c in &curves {
        for p in &c.points {
            epochs.push(vec![
                c.run.clone(),
                c.model.clone(),
                num(p.epoch),
                num(p.examples),
                num(p.test_examples),
                num(p.test_loss),
                num(p.test_accuracy),
                num(p.wall_seconds),
            ]);
        }
    }
    let path = out.join("epochs.csv");
    epochs.write(&path)?;
    files.push(path);

    let mut summary = Table::new(&[
        "run",
        "model",
        "status",
        "epochs",
        "examples",
        "final_test_accuracy",
        "best_test_accuracy",
        "best_epoch",
        "final_test_loss",
        "seconds_per_epoch",
    ]);
    for c in &curves {
        let last = c.last();
        let best = c.best();
        summary.push(vec![
            c.run.clone(),
            c.model.clone(),
            if c.complete {
                "complete"
            } else {
                "in progress"
            }
            .into(),
            num(last.map_or(f64::NAN, |p| p.epoch)),
            num(last.map_or(f64::NAN, |p| p.examples)),
            num(last.map_or(f64::NAN, |p| p.test_accuracy)),
            num(best.map_or(f64::NAN, |p| p.test_accuracy)),
            num(best.map_or(f64::NAN, |p| p.epoch)),
            num(last.map_or(f64::NAN, |p| p.test_loss)),
            num(c.seconds_per_epoch()),
        ]);
    }
    let path = out.join("compare.csv");
    summary.write(&path)?;
    files.push(path);

    let classification = curves
        .iter()
        .any(|c| c.points.iter().any(|p| p.test_accuracy.is_finite()));
    let (stem, y_label) = if classification {
        ("accuracy_vs_examples", "test accuracy (whole test set)")
    } else {
        ("test_loss_vs_examples", "test loss (whole test set)")
    };
    let mut p = LinePlot::new(
        if classification {
            "test accuracy against training examples seen"
        } else {
            "test loss against training examples seen"
        },
        "training examples seen",
        y_label,
    );
    p.log_y = !classification;
    // from the first evaluation after learning began, on a log axis: the untrained point would
    // stretch the y range over the chance level, and the early epochs hold most of the change
    p.log_x = true;
    for (i, c) in curves.iter().enumerate() {
        let pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|q| {
                let y = if classification {
                    q.test_accuracy
                } else {
                    q.test_loss
                };
                (q.examples, y)
            })
            .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite())
            .collect();
        if pts.is_empty() {
            continue;
        }
        let label = if c.complete {
            c.label.clone()
        } else {
            format!("{} (in progress)", c.label)
        };
        let dash = curve_style(i, pts.len());
        p.series.push(Series::new(label, pts, i).styled(dash));
    }
    files.extend(p.save(&out.join(stem))?);
    Ok(Comparison {
        curves,
        files,
        replaced,
    })
}

/// How the `i`-th curve of the comparison plot, with `points` points, is drawn: a single
/// evaluation (a run in its first epochs) as a marker, not an invisible line; past the
/// palette's colours, which repeat, dashed, so no two curves look alike.
fn curve_style(i: usize, points: usize) -> Dash {
    if points == 1 {
        Dash::Points
    } else if i >= crate::plot::PALETTE.len() {
        Dash::Dashed
    } else {
        Dash::Solid
    }
}

/// The comparison as a Markdown table (final and best accuracy, epochs, seconds per epoch),
/// for a README or a lab notebook.
pub fn markdown_table(curves: &[ModelCurve]) -> String {
    let mut s = String::from(
        "| model | epochs | final test accuracy | best (epoch) | final test loss | wall time per epoch |\n|---|---|---|---|---|---|\n",
    );
    for c in curves {
        let last = c.last();
        let best = c.best();
        let status = if c.complete { "" } else { " (in progress)" };
        let spe = c.seconds_per_epoch();
        s.push_str(&format!(
            "| {}{status} | {} | {} | {} | {} | {} |\n",
            c.label,
            last.map_or("–".into(), |p| fmt_sig(p.epoch, 3)),
            last.map_or("–".into(), |p| fmt_sig(p.test_accuracy, 4)),
            best.map_or("–".into(), |p| format!(
                "{} ({})",
                fmt_sig(p.test_accuracy, 4),
                fmt_sig(p.epoch, 3)
            )),
            last.map_or("–".into(), |p| fmt_sig(p.test_loss, 4)),
            if spe.is_finite() {
                format!("{} s", fmt_sig(spe, 3))
            } else {
                "–".into()
            },
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(f64, f64, f64)]) -> ModelCurve {
        ModelCurve {
            run: "r".into(),
            model: "m".into(),
            label: "m".into(),
            complete: true,
            points: points
                .iter()
                .map(|&(epoch, acc, wall)| EpochPoint {
                    epoch,
                    examples: epoch * 100.0,
                    test_examples: 10.0,
                    test_loss: 1.0,
                    test_accuracy: acc,
                    wall_seconds: wall,
                })
                .collect(),
        }
    }

    #[test]
    fn curves_past_the_palette_are_dashed_and_single_points_are_markers() {
        let n = crate::plot::PALETTE.len();
        assert_eq!(curve_style(0, 5), Dash::Solid);
        assert_eq!(curve_style(n - 1, 5), Dash::Solid);
        // the same colour as curve 0 again, told apart by its dashes
        assert_eq!(crate::plot::palette(n), crate::plot::palette(0));
        assert_eq!(curve_style(n, 5), Dash::Dashed);
        assert_eq!(curve_style(n + 3, 1), Dash::Points);
        assert_eq!(curve_style(2, 1), Dash::Points);
    }

    #[test]
    fn best_is_the_first_highest_and_seconds_per_epoch_the_median_rate() {
        let c = curve(&[
            (0.0, 0.1, 0.0),
            (1.0, 0.8, 10.0),
            (2.0, 0.9, 30.0),
            (3.0, 0.9, 40.0),
            (3.5, 0.85, 45.0),
        ]);
        assert_eq!(c.best().unwrap().epoch, 2.0);
        // rates 10, 20, 10, 10 → median 10
        assert_eq!(c.seconds_per_epoch(), 10.0);
        assert!(curve(&[(0.0, 0.1, 0.0)]).seconds_per_epoch().is_nan());
    }
}
