//! Plots of a run or sweep folder, drawn from its CSV files (so `dtpsim plot DIR` redraws
//! exactly what `dtpsim run` drew): learning curves, weight norms, relaxation residual,
//! update cosine, traces with the teacher gate shaded, and sweep summaries.

use crate::plot::{LinePlot, Series};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A CSV file as named columns of numbers (text cells that do not parse are NaN) plus the raw
/// text of one chosen key column.
pub struct Columns {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Columns {
    /// Reads `path`.
    pub fn read(path: &Path) -> anyhow::Result<Columns> {
        let mut r =
            csv::Reader::from_path(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let header = r
            .headers()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .iter()
            .map(String::from)
            .collect();
        let mut rows = Vec::new();
        for rec in r.records() {
            rows.push(
                rec.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                    .iter()
                    .map(String::from)
                    .collect(),
            );
        }
        Ok(Columns { header, rows })
    }

    /// Index of a column.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// A column as numbers.
    pub fn numbers(&self, name: &str) -> Vec<f64> {
        match self.index(name) {
            Some(i) => self
                .rows
                .iter()
                .map(|r| r[i].parse().unwrap_or(f64::NAN))
                .collect(),
            None => vec![f64::NAN; self.rows.len()],
        }
    }

    /// A column as text.
    pub fn text(&self, name: &str) -> Vec<String> {
        match self.index(name) {
            Some(i) => self.rows.iter().map(|r| r[i].clone()).collect(),
            None => vec![String::new(); self.rows.len()],
        }
    }
}

fn group_by_model(m: &Columns) -> BTreeMap<String, Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, model) in m.text("model").into_iter().enumerate() {
        groups.entry(model).or_default().push(i);
    }
    groups
}

/// Draws every plot a run folder's CSVs support; returns the files written.
pub fn plot_run_dir(dir: &Path, title: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let metrics = dir.join("metrics.csv");
    if metrics.exists() {
        let m = Columns::read(&metrics)?;
        let trial = m.numbers("trial");
        let groups = group_by_model(&m);
        // continuous first, references after, stable colours
        let mut order: Vec<&String> = groups.keys().filter(|k| *k == "continuous").collect();
        order.extend(groups.keys().filter(|k| *k != "continuous"));
        let mut p = LinePlot::new(
            format!("{title}: learning curves"),
            "learning trial",
            "loss (solid: test, dashed: train)",
        );
        p.log_y = true;
        for (c, model) in order.iter().enumerate() {
            let idx = &groups[*model];
            let col = |name: &str| {
                let v = m.numbers(name);
                idx.iter().map(|&i| (trial[i], v[i])).collect::<Vec<_>>()
            };
            p.series
                .push(Series::new(format!("{model} test"), col("test_loss"), c));
            p.series
                .push(Series::new("", col("train_loss"), c).dashed());
        }
        files.extend(p.save(&dir.join("learning_curve"))?);

        if let Some(idx) = groups.get("continuous") {
            let norms: Vec<String> = m
                .header
                .iter()
                .filter(|h| h.starts_with("w_norm_"))
                .cloned()
                .collect();
            let mut p = LinePlot::new(
                format!("{title}: weight norms"),
                "learning trial",
                "‖W_l‖ (Frobenius)",
            );
            for (c, name) in norms.iter().enumerate() {
                let v = m.numbers(name);
                p.series.push(Series::new(
                    name.replace("w_norm_", "W_"),
                    idx.iter().map(|&i| (trial[i], v[i])).collect(),
                    c,
                ));
            }
            files.extend(p.save(&dir.join("weight_norms"))?);

            let res = m.numbers("relaxation_residual");
            let pts: Vec<(f64, f64)> = idx
                .iter()
                .map(|&i| (trial[i], res[i]))
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .collect();
            if !pts.is_empty() {
                let mut p = LinePlot::new(
                    format!("{title}: relaxation residual at teacher offset"),
                    "learning trial",
                    "τ_d‖ḋ‖/‖d‖ (0 = fully relaxed)",
                );
                p.log_y = true;
                p.series.push(Series::new("continuous", pts, 0));
                files.extend(p.save(&dir.join("relaxation_residual"))?);
            }
            let cos = m.numbers("update_cosine");
            let pts: Vec<(f64, f64)> = idx
                .iter()
                .map(|&i| (trial[i], cos[i]))
                .filter(|(_, v)| v.is_finite())
                .collect();
            if !pts.is_empty() {
                let mut p = LinePlot::new(
                    format!("{title}: trial update vs fully relaxed DTP1 update"),
                    "learning trial",
                    "cosine",
                );
                p.series.push(Series::new("continuous", pts, 0));
                files.extend(p.save(&dir.join("update_cosine"))?);
            }
        }
    }
    let traces = dir.join("traces.csv");
    if traces.exists() {
        let t = Columns::read(&traces)?;
        if !t.rows.is_empty() {
            let time = t.numbers("time");
            let teacher = t.numbers("teacher");
            let mut p = LinePlot::new(
                format!("{title}: traces (shaded: teacher on)"),
                "simulated time",
                "activity",
            );
            // teacher-on intervals
            let mut start = None;
            for i in 0..time.len() {
                match (teacher[i] > 0.5, start) {
                    (true, None) => start = Some(time[i]),
                    (false, Some(s)) => {
                        p.shaded.push((s, time[i]));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let (Some(s), Some(&end)) = (start, time.last()) {
                p.shaded.push((s, end));
            }
            let vars: Vec<&String> = t.header.iter().skip(3).collect();
            let mut colours: BTreeMap<String, usize> = BTreeMap::new();
            for name in vars {
                // same neuron, same colour: h solid, τ dashed, others markers
                let (kind, key) = name.split_once('_').unwrap_or((name.as_str(), ""));
                let next = colours.len();
                let c = *colours.entry(key.to_string()).or_insert(next);
                let v = t.numbers(name);
                let s = Series::new(name.clone(), time.iter().copied().zip(v).collect(), c);
                p.series.push(match kind {
                    "h" => s,
                    "tau" | "d" => s.dashed(),
                    _ => s.dashed(),
                });
            }
            files.extend(p.save(&dir.join("traces"))?);
        }
    }
    Ok(files)
}

/// Draws one plot per metric of a sweep folder's `sweep.csv`: mean over seeds against the
/// first swept parameter (solid), with the minimum and maximum over seeds (dashed), one colour
/// per combination of the other parameters.
pub fn plot_sweep_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let s = Columns::read(&dir.join("sweep.csv"))?;
    let params: Vec<String> = s
        .header
        .iter()
        .filter_map(|h| h.strip_prefix("param:").map(String::from))
        .collect();
    let metrics: Vec<String> = s
        .header
        .iter()
        .filter_map(|h| h.strip_prefix("metric:").map(String::from))
        .collect();
    let Some(x_param) = params.first() else {
        return Ok(Vec::new());
    };
    let x_text = s.text(&format!("param:{x_param}"));
    let x_numeric: Vec<f64> = x_text
        .iter()
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    let numeric = x_numeric.iter().all(|v| v.is_finite());
    let mut labels: Vec<String> = Vec::new();
    for v in &x_text {
        if !labels.contains(v) {
            labels.push(v.clone());
        }
    }
    let xs: Vec<f64> = if numeric {
        x_numeric
    } else {
        x_text
            .iter()
            .map(|v| labels.iter().position(|l| l == v).unwrap_or(0) as f64)
            .collect()
    };
    let others: Vec<Vec<String>> = params[1..]
        .iter()
        .map(|p| s.text(&format!("param:{p}")))
        .collect();
    let group_of = |i: usize| {
        params[1..]
            .iter()
            .zip(&others)
            .map(|(p, v)| format!("{p}={}", v[i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut files = Vec::new();
    for metric in &metrics {
        let vals = s.numbers(&format!("metric:{metric}"));
        // group → x → values
        let mut grid: BTreeMap<String, BTreeMap<i64, (f64, Vec<f64>)>> = BTreeMap::new();
        for i in 0..s.rows.len() {
            if vals[i].is_finite() {
                let key = (xs[i] * 1e9).round() as i64;
                grid.entry(group_of(i))
                    .or_default()
                    .entry(key)
                    .or_insert((xs[i], Vec::new()))
                    .1
                    .push(vals[i]);
            }
        }
        if grid.is_empty() {
            continue;
        }
        let x_label = if numeric {
            x_param.clone()
        } else {
            format!(
                "{x_param}: {}",
                labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("{i}={l}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut p = LinePlot::new(
            format!("sweep: {metric}"),
            x_label,
            format!("{metric} (mean; dashed: min, max over seeds)"),
        );
        // a positive grid spanning more than a decade reads better on a log axis
        let (lo, hi) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        p.log_x = numeric && lo > 0.0 && hi / lo >= 10.0;
        for (c, (group, points)) in grid.iter().enumerate() {
            let stat = |f: &dyn Fn(&[f64]) -> f64| {
                points.values().map(|(x, v)| (*x, f(v))).collect::<Vec<_>>()
            };
            let label = if group.is_empty() {
                metric.clone()
            } else {
                group.clone()
            };
            p.series.push(Series::new(
                label,
                stat(&|v| v.iter().sum::<f64>() / v.len() as f64),
                c,
            ));
            if points.values().any(|(_, v)| v.len() > 1) {
                p.series.push(
                    Series::new(
                        "",
                        stat(&|v| v.iter().cloned().fold(f64::INFINITY, f64::min)),
                        c,
                    )
                    .dashed(),
                );
                p.series.push(
                    Series::new(
                        "",
                        stat(&|v| v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
                        c,
                    )
                    .dashed(),
                );
            }
        }
        let name: String = metric
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
            .collect();
        files.extend(p.save(&dir.join(format!("sweep_{name}")))?);
    }
    // learning curves of the continuous model, one line per grid point (mean over seeds)
    let runs = s.text("run");
    let mut curves: BTreeMap<String, BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let path = dir.join("runs").join(run).join("metrics.csv");
        let Ok(m) = Columns::read(&path) else {
            continue;
        };
        let label = params
            .iter()
            .map(|p| {
                format!(
                    "{}={}",
                    p.rsplit('.').next().unwrap_or(p),
                    s.text(&format!("param:{p}"))[i]
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let (models, trial, loss) = (m.text("model"), m.numbers("trial"), m.numbers("test_loss"));
        for j in 0..models.len() {
            if models[j] == "continuous" && loss[j].is_finite() {
                curves
                    .entry(label.clone())
                    .or_default()
                    .entry(trial[j] as i64)
                    .or_default()
                    .push(loss[j]);
            }
        }
    }
    if !curves.is_empty() {
        let mut p = LinePlot::new(
            "sweep: learning curves (continuous, mean over seeds)",
            "learning trial",
            "test loss",
        );
        p.log_y = true;
        for (c, (label, pts)) in curves.iter().enumerate() {
            p.series.push(Series::new(
                label.clone(),
                pts.iter()
                    .map(|(t, v)| (*t as f64, v.iter().sum::<f64>() / v.len() as f64))
                    .collect(),
                c,
            ));
        }
        files.extend(p.save(&dir.join("sweep_learning_curves"))?);
    }
    Ok(files)
}
