//! Plots of a run or sweep folder, drawn from its CSV files (so `dtpsim plot DIR` redraws
//! exactly what `dtpsim run` drew): learning curves, test accuracy, weight norms, relaxation
//! contraction α_l, update cosine, traces (one panel per layer, teacher-on and warm-up intervals
//! shaded), and for a sweep one plot per metric against the swept parameter, the learning
//! curves of every grid point and `sweep_summary.csv` (mean, min and max over seeds).

use crate::network::Loss;
use crate::plot::{
    lighten, palette, sequential, Dash, LegendItem, LinePlot, Rgb, Series, Shade, StackedPlot,
    TEACHER_SHADE, WARMUP_SHADE,
};
use crate::record::Table;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A CSV file as its header and rows of text cells.
pub struct Columns {
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells, in file order.
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

    /// A column as numbers (cells that do not parse, and missing columns, are NaN).
    pub fn numbers(&self, name: &str) -> Vec<f64> {
        match self.index(name) {
            Some(i) => self.numbers_at(i),
            None => vec![f64::NAN; self.rows.len()],
        }
    }

    fn numbers_at(&self, i: usize) -> Vec<f64> {
        self.rows
            .iter()
            .map(|r| {
                r.get(i)
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(f64::NAN)
            })
            .collect()
    }

    /// A column as text (empty cells when the column is missing).
    pub fn text(&self, name: &str) -> Vec<String> {
        match self.index(name) {
            Some(i) => self
                .rows
                .iter()
                .map(|r| r.get(i).cloned().unwrap_or_default())
                .collect(),
            None => vec![String::new(); self.rows.len()],
        }
    }
}

/// What the plots of a run are labelled with.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLabels {
    /// Title prefix of every plot (the scenario name).
    pub title: String,
    /// The loss in `metrics.csv`, named on the y axis of the learning curves.
    pub loss: Loss,
}

/// Short name of a loss: `½‖h_L − y‖²` or `softmax cross-entropy`.
pub fn loss_name(loss: Loss) -> &'static str {
    match loss {
        Loss::Mse => "½‖h_L − y‖²",
        Loss::SoftmaxCe => "softmax cross-entropy",
    }
}

/// Axis label of a loss: `"{what} ½‖h_L − y‖²"` or `"{what} (softmax cross-entropy)"`.
pub fn loss_axis_label(what: &str, loss: Loss) -> String {
    match loss {
        Loss::Mse => format!("{what} {}", loss_name(loss)),
        Loss::SoftmaxCe => format!("{what} ({})", loss_name(loss)),
    }
}

/// Row indices of each model (column `model`), `continuous` first and the references in file
/// order.
fn group_by_model(m: &Columns) -> Vec<(String, Vec<usize>)> {
    // `algorithm`: metrics.csv of dtpsim 0.1 `train`
    let names = match (m.index("model"), m.index("algorithm")) {
        (Some(_), _) => m.text("model"),
        (None, Some(_)) => m.text("algorithm"),
        (None, None) => vec!["run".to_string(); m.rows.len()],
    };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, model) in names.into_iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == model) {
            Some((_, rows)) => rows.push(i),
            None => groups.push((model, vec![i])),
        }
    }
    groups.sort_by_key(|(g, _)| g != "continuous");
    groups
}

/// The x values of metric rows: training examples when the column has values, else trials.
fn progress_axis(m: &Columns) -> (Vec<f64>, &'static str) {
    let ex = m.numbers("examples");
    if ex.iter().any(|v| v.is_finite()) {
        (ex, "training examples")
    } else {
        (m.numbers("trial"), "learning trials")
    }
}

/// Draws every plot a run folder's CSVs support (`metrics.csv`: learning curves, accuracy for
/// classification, weight norms, contraction α_l, update cosine; `traces.csv`: traces);
/// returns the files written.
pub fn plot_run_dir(dir: &Path, labels: &RunLabels) -> anyhow::Result<Vec<PathBuf>> {
    let title = labels.title.as_str();
    let mut files = Vec::new();
    let metrics = dir.join("metrics.csv");
    if metrics.exists() {
        let m = Columns::read(&metrics)?;
        let (x, x_label) = progress_axis(&m);
        let groups = group_by_model(&m);
        let col = |idx: &[usize], name: &str| {
            let v = m.numbers(name);
            idx.iter().map(|&i| (x[i], v[i])).collect::<Vec<_>>()
        };
        let finite = |pts: &[(f64, f64)]| pts.iter().any(|(a, b)| a.is_finite() && b.is_finite());

        let mut p = LinePlot::new(
            format!("{title}: learning curves"),
            x_label,
            loss_axis_label("loss", labels.loss),
        );
        p.log_y = true;
        for (c, (model, idx)) in groups.iter().enumerate() {
            let test = col(idx, "test_loss");
            if finite(&test) {
                p.series
                    .push(Series::new(format!("{model} — test"), test, c));
            }
            let train = col(idx, "train_loss");
            if finite(&train) {
                p.series
                    .push(Series::new(format!("{model} — train"), train, c).dashed());
            }
        }
        files.extend(p.save(&dir.join("learning_curve"))?);

        if m.numbers("test_accuracy").iter().any(|v| v.is_finite()) {
            let mut p = LinePlot::new(
                format!("{title}: test accuracy"),
                x_label,
                "test accuracy (fraction correct)",
            );
            for (c, (model, idx)) in groups.iter().enumerate() {
                let acc = col(idx, "test_accuracy");
                if finite(&acc) {
                    p.series.push(Series::new(model.clone(), acc, c));
                }
            }
            files.extend(p.save(&dir.join("accuracy"))?);
        }

        // the continuous model's diagnostics (a discrete-only run: its first model's norms)
        let main = groups
            .iter()
            .find(|(g, _)| g == "continuous")
            .or(groups.first());
        if let Some((model, idx)) = main {
            let norms: Vec<&String> = m
                .header
                .iter()
                .filter(|h| h.starts_with("w_norm_"))
                .collect();
            let mut p = LinePlot::new(
                format!("{title}: weight norms ({model})"),
                x_label,
                "‖W_l‖ (Frobenius)",
            );
            for (c, name) in norms.iter().enumerate() {
                let pts = col(idx, name);
                if finite(&pts) {
                    p.series.push(Series::new(
                        format!("‖W_{}‖", name.trim_start_matches("w_norm_")),
                        pts,
                        c,
                    ));
                }
            }
            if !p.series.is_empty() {
                files.extend(p.save(&dir.join("weight_norms"))?);
            }
        }
        // the measured contraction α_l of every model that iterates its targets
        let alphas: Vec<&String> = m
            .header
            .iter()
            .filter(|h| h.starts_with("alpha_"))
            .collect();
        let mut p = LinePlot::new(
            format!("{title}: contraction of the target relaxation"),
            x_label,
            "α_l (< 1: the relaxation contracts, Sec. 6.2)",
        );
        for (c, (model, idx)) in groups.iter().enumerate() {
            for (k, name) in alphas.iter().enumerate() {
                let pts: Vec<(f64, f64)> = col(idx, name)
                    .into_iter()
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                if !pts.is_empty() {
                    let layer = name.trim_start_matches("alpha_");
                    let series = Series::new(format!("{model} α_{layer}"), pts, c);
                    p.series
                        .push(if k % 2 == 1 { series.dashed() } else { series });
                }
            }
        }
        if !p.series.is_empty() {
            files.extend(p.save(&dir.join("relaxation_alpha"))?);
        }
        if let Some((_, idx)) = groups.iter().find(|(g, _)| g == "continuous") {
            let finite_col = |name: &str| -> Vec<(f64, f64)> {
                col(idx, name)
                    .into_iter()
                    .filter(|(_, v)| v.is_finite())
                    .collect()
            };
            let layers = |prefix: &str| -> Vec<(String, Vec<(f64, f64)>)> {
                m.header
                    .iter()
                    .filter_map(|h| h.strip_prefix(prefix))
                    .map(|l| (l.to_string(), finite_col(&format!("{prefix}{l}"))))
                    .filter(|(_, pts)| !pts.is_empty())
                    .collect()
            };
            let pts = finite_col("update_cosine");
            if !pts.is_empty() {
                let mut p = LinePlot::new(
                    format!("{title}: trial update vs fully relaxed DTP1 update"),
                    x_label,
                    "cosine",
                );
                p.series.push(Series::new("all layers", pts, 0));
                for (c, (l, pts)) in layers("update_cosine_").into_iter().enumerate() {
                    p.series
                        .push(Series::new(format!("W_{l}"), pts, c + 1).dashed());
                }
                files.extend(p.save(&dir.join("update_cosine"))?);
            }
            let mut p = LinePlot::new(
                format!("{title}: trial step along the fully relaxed DTP1 update"),
                x_label,
                "⟨ΔW_l, ΔW_l*⟩/‖ΔW_l*‖² (1: the discrete limit)",
            );
            for (c, (l, pts)) in layers("update_step_").into_iter().enumerate() {
                p.series.push(Series::new(format!("W_{l}"), pts, c + 1));
            }
            if !p.series.is_empty() {
                files.extend(p.save(&dir.join("update_step"))?);
            }
        }
    }
    let traces = dir.join("traces.csv");
    if traces.exists() {
        files.extend(plot_traces(&traces, &dir.join("traces"), title)?);
    }
    Ok(files)
}

// ---------------------------------------------------------------------------------------
// Traces

/// A variable column of `traces.csv`, named `{var}_l{layer}_n{neuron}_r{replica}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceColumn {
    /// Variable: `h`, `d`, `tau`, `u`, `p`, `trace` or `s`.
    pub var: String,
    /// Layer (1-based).
    pub layer: usize,
    /// Neuron in the layer.
    pub neuron: usize,
    /// Replica.
    pub replica: usize,
}

/// Parses a trace column name (`tau_l3_n0_r0` → `tau`, layer 3, neuron 0, replica 0); `None`
/// for other columns (`time`, `trial`, `phase`, `teacher`).
pub fn parse_trace_column(name: &str) -> Option<TraceColumn> {
    let mut parts = name.rsplitn(4, '_');
    let r = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let n = parts.next()?.strip_prefix('n')?.parse().ok()?;
    let l = parts.next()?.strip_prefix('l')?.parse().ok()?;
    let var = parts.next()?;
    if var.is_empty() {
        return None;
    }
    Some(TraceColumn {
        var: var.to_string(),
        layer: l,
        neuron: n,
        replica: r,
    })
}

/// Display order, legend text, colour family and line style of each trace variable.
fn var_style(var: &str) -> (usize, String, Rgb, Dash) {
    match var {
        "h" => (0, "h (activity)".into(), (31, 119, 180), Dash::Solid),
        "tau" => (1, "τ = h + d (target)".into(), (230, 100, 0), Dash::Dashed),
        "d" => (
            2,
            "d (target displacement)".into(),
            (44, 160, 44),
            Dash::Solid,
        ),
        "u" => (3, "u".into(), (148, 103, 189), Dash::Solid),
        "p" => (4, "p (pool)".into(), (140, 86, 75), Dash::Solid),
        "trace" => (
            5,
            "n̄ (presynaptic trace)".into(),
            (227, 119, 194),
            Dash::Solid,
        ),
        "s" => (6, "s (influence scale)".into(), (23, 160, 180), Dash::Solid),
        other => (7, other.to_string(), (110, 110, 110), Dash::Dotted),
    }
}

/// Number of colours of the categorical palette.
const PALETTE_LEN: usize = crate::plot::PALETTE.len();

/// More neurons than this per layer and variable are drawn as thin unlabelled lines.
const FEW_UNITS: usize = 8;

/// The columns (index, name) of each variable of a layer, keyed by (display order, variable).
type VarColumns = BTreeMap<(usize, String), Vec<(usize, TraceColumn)>>;

/// Intervals `[t0, t1)` of `time` where `on[i]` holds.
fn intervals(time: &[f64], on: impl Fn(usize) -> bool) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &t) in time.iter().enumerate() {
        match (on(i), start) {
            (true, None) => start = Some(t),
            (false, Some(s)) => {
                out.push((s, t));
                start = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(&end)) = (start, time.last()) {
        out.push((s, end));
    }
    out
}

/// Draws `traces.csv` (at `csv`) as `stem.png`/`stem.svg`: one panel per layer (top layer on
/// top), each variable in its own colour family and line style, many neurons as thin lines
/// with one legend entry per variable, teacher-on and warm-up intervals shaded.
pub fn plot_traces(csv: &Path, stem: &Path, title: &str) -> anyhow::Result<Vec<PathBuf>> {
    let t = Columns::read(csv)?;
    if t.rows.is_empty() {
        return Ok(Vec::new());
    }
    let time = t.numbers("time");
    let teacher = t.numbers("teacher");
    let phase = t.text("phase");
    let mut shades = vec![Shade::new(
        "teacher on",
        TEACHER_SHADE,
        intervals(&time, |i| teacher[i] > 0.5),
    )];
    let warm = intervals(&time, |i| {
        let p = phase[i].as_str();
        p == "warmup" || p == "warm-up"
    });
    if !warm.is_empty() {
        shades.push(Shade::new("warm-up", WARMUP_SHADE, warm));
    }
    // layer → var → columns
    let mut layers: BTreeMap<usize, VarColumns> = BTreeMap::new();
    for (i, name) in t.header.iter().enumerate() {
        if let Some(c) = parse_trace_column(name) {
            let order = var_style(&c.var).0;
            layers
                .entry(c.layer)
                .or_default()
                .entry((order, c.var.clone()))
                .or_default()
                .push((i, c));
        }
    }
    // units of each variable over all layers (for consistent shades and labels)
    let mut units: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    let mut many: BTreeMap<String, bool> = BTreeMap::new();
    let mut replicas = false;
    for vars in layers.values() {
        for ((_, var), cols) in vars {
            let u = units.entry(var.clone()).or_default();
            for (_, c) in cols {
                u.push((c.neuron, c.replica));
                replicas |= c.replica > 0;
            }
            *many.entry(var.clone()).or_default() |= cols.len() > FEW_UNITS;
        }
    }
    for u in units.values_mut() {
        u.sort_unstable();
        u.dedup();
    }
    let lines: usize = layers.values().flat_map(|v| v.values()).map(Vec::len).sum();
    // about 400 000 points in all (the SVG stays a few MB), min and max kept per bucket
    let buckets = (100_000 / lines.max(1)).clamp(100, 1200);
    let mut plot = StackedPlot::new(format!("{title}: traces"), "simulated time");
    for (layer, vars) in layers.iter().rev() {
        let width = vars
            .values()
            .flat_map(|cols| cols.iter().map(|(_, c)| (c.neuron, c.replica)))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let y_label = if width > FEW_UNITS {
            format!("layer {layer} ({width} neurons)")
        } else {
            format!("layer {layer}")
        };
        let mut panel = LinePlot::new("", "", y_label);
        panel.shaded = shades.clone();
        for ((_, var), cols) in vars {
            let (_, name, base, dash) = var_style(var);
            let all = &units[var];
            // one legend entry per neuron when every layer traces a few, else per variable
            let per_neuron = !many[var] && all.len() > 1;
            let thin = cols.len() > FEW_UNITS;
            for (j, (i, c)) in cols.iter().enumerate() {
                // shades: by neuron over all layers when labelled, else within the layer
                let (rank, count) = if per_neuron {
                    let r = all.iter().position(|u| *u == (c.neuron, c.replica));
                    (r.unwrap_or(0), all.len())
                } else {
                    (j, cols.len())
                };
                let colour = if count <= 1 {
                    base
                } else {
                    lighten(base, 0.55 * rank as f64 / (count - 1) as f64)
                };
                let v = t.numbers_at(*i);
                let pts: Vec<(f64, f64)> = time
                    .iter()
                    .copied()
                    .zip(v)
                    .filter(|(a, b)| a.is_finite() && b.is_finite())
                    .collect();
                let label = match (per_neuron, replicas) {
                    (false, _) => String::new(),
                    (true, false) => format!("{var} n{}", c.neuron),
                    (true, true) => format!("{var} n{} r{}", c.neuron, c.replica),
                };
                let mut s = Series::new(label, crate::plot::decimate(&pts, buckets), 0)
                    .with_rgb(colour)
                    .styled(dash);
                if thin {
                    s = s.thin();
                }
                panel.series.push(s);
            }
            if !per_neuron {
                panel
                    .legend
                    .push(LegendItem::line(name.clone(), base, dash));
            }
        }
        plot.panels.push(panel);
    }
    if plot.panels.is_empty() {
        return Ok(Vec::new());
    }
    Ok(plot.save(stem)?)
}

// ---------------------------------------------------------------------------------------
// Sweeps

/// Whether the values of a parameter are categories (any value that is not a finite number:
/// strings such as `gated`, booleans) rather than numbers.
pub fn is_categorical(values: &[String]) -> bool {
    values
        .iter()
        .any(|v| !v.trim().parse::<f64>().is_ok_and(f64::is_finite))
}

/// The distinct values of a parameter in display order: ascending numbers (`2` before `16`)
/// for a numeric parameter, order of first appearance for categories.
pub fn sort_levels(values: &[String]) -> Vec<String> {
    let mut levels: Vec<String> = Vec::new();
    for v in values {
        if !levels.contains(v) {
            levels.push(v.clone());
        }
    }
    if !is_categorical(&levels) {
        levels.sort_by(|a, b| {
            let (x, y): (f64, f64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
            x.total_cmp(&y)
        });
    }
    levels
}

/// Formats a number with `digits` significant digits, without trailing zeros (`NaN` for a
/// missing value): `2.92149`, `0.00349613`, `1.5e-7`.
pub fn fmt_sig(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "NaN".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let digits = digits.max(1);
    let e = v.abs().log10().floor() as i32;
    if (-5..digits as i32).contains(&e) {
        let decimals = (digits as i32 - 1 - e).max(0) as usize;
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            &s
        };
        s.to_string()
    } else {
        let s = format!("{v:.prec$e}", prec = digits - 1);
        let (m, ex) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        format!("{m}e{ex}")
    }
}

/// One swept parameter of a `sweep.csv`.
struct Param {
    /// JSON path (without the `param:` prefix).
    path: String,
    /// Text value in each row.
    values: Vec<String>,
    /// Distinct values in display order.
    levels: Vec<String>,
    categorical: bool,
}

impl Param {
    fn short(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    fn level(&self, row: usize) -> usize {
        self.levels
            .iter()
            .position(|l| *l == self.values[row])
            .unwrap_or(0)
    }

    fn number(&self, level: usize) -> f64 {
        self.levels[level].trim().parse().unwrap_or(f64::NAN)
    }

    /// Colour of level `i`: sequential for numbers, the palette for categories.
    fn colour(&self, i: usize) -> Rgb {
        if self.categorical {
            palette(i)
        } else {
            sequential(i, self.levels.len())
        }
    }

    /// Whether a numeric axis of this parameter reads better logarithmic.
    fn log_scale(&self) -> bool {
        let v: Vec<f64> = (0..self.levels.len()).map(|i| self.number(i)).collect();
        !self.categorical
            && v.len() >= 3
            && v.iter().all(|x| *x > 0.0)
            && v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                / v.iter().cloned().fold(f64::INFINITY, f64::min)
                >= 10.0
    }
}

struct Sweep {
    table: Columns,
    params: Vec<Param>,
    metrics: Vec<String>,
}

impl Sweep {
    fn read(dir: &Path) -> anyhow::Result<Sweep> {
        let table = Columns::read(&dir.join("sweep.csv"))?;
        let params = table
            .header
            .iter()
            .filter_map(|h| h.strip_prefix("param:"))
            .map(|p| {
                let values = table.text(&format!("param:{p}"));
                Param {
                    path: p.to_string(),
                    levels: sort_levels(&values),
                    categorical: is_categorical(&values),
                    values,
                }
            })
            .collect();
        let metrics = table
            .header
            .iter()
            .filter_map(|h| h.strip_prefix("metric:").map(String::from))
            .collect();
        Ok(Sweep {
            table,
            params,
            metrics,
        })
    }

    /// Rows of each grid point, keyed by the level of every parameter (display order).
    fn grid(&self) -> BTreeMap<Vec<usize>, Vec<usize>> {
        let mut g: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
        for row in 0..self.table.rows.len() {
            let key = self.params.iter().map(|p| p.level(row)).collect();
            g.entry(key).or_default().push(row);
        }
        g
    }
}

/// Mean, minimum and maximum of the finite values (NaN when there are none).
fn stats(values: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (
        v.iter().sum::<f64>() / v.len() as f64,
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// Writes `sweep_summary.csv` next to `dir/sweep.csv`: one row per grid point (numbers in
/// ascending order, categories in sweep order) with its `param:…` columns, then for each
/// metric `{metric}_mean`, `{metric}_min` and `{metric}_max` over the seeds' finite values
/// (6 significant digits, `NaN` when none), then `seeds` (runs at the point) and `complete`
/// (runs whose status is `complete`). Returns its path.
pub fn write_sweep_summary(dir: &Path) -> anyhow::Result<PathBuf> {
    let s = Sweep::read(dir)?;
    let mut header: Vec<String> = s
        .params
        .iter()
        .map(|p| format!("param:{}", p.path))
        .collect();
    for m in &s.metrics {
        header.extend(["mean", "min", "max"].iter().map(|k| format!("{m}_{k}")));
    }
    header.push("seeds".into());
    header.push("complete".into());
    let h: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut table = Table::new(&h);
    let status = s.table.text("status");
    let values: Vec<Vec<f64>> = s
        .metrics
        .iter()
        .map(|m| s.table.numbers(&format!("metric:{m}")))
        .collect();
    for (key, rows) in s.grid() {
        let mut row: Vec<String> = s
            .params
            .iter()
            .zip(&key)
            .map(|(p, &l)| p.levels[l].clone())
            .collect();
        for v in &values {
            let (mean, lo, hi) = stats(rows.iter().map(|&r| v[r]));
            row.extend([mean, lo, hi].iter().map(|x| fmt_sig(*x, 6)));
        }
        row.push(rows.len().to_string());
        row.push(
            rows.iter()
                .filter(|&&r| status[r].trim() == "complete")
                .count()
                .to_string(),
        );
        table.push(row);
    }
    let path = dir.join("sweep_summary.csv");
    table.write(&path)?;
    Ok(path)
}

/// Style of the curve of group `g` of `n` (grid points sharing the values `key` of the
/// parameters `by`): with lines, colour by the first parameter and line style by the second;
/// markers only (categorical x), one colour per group when two or more parameters vary.
fn group_style(by: &[&Param], key: &[usize], numeric_x: bool, g: usize, n: usize) -> (Rgb, Dash) {
    let colour = match by {
        [] => palette(0),
        [p] => p.colour(key[0]),
        [p, ..] if numeric_x => p.colour(key[0]),
        _ if n <= PALETTE_LEN => palette(g),
        _ => sequential(g, n),
    };
    let dash = match (numeric_x, by.get(1).map(|_| key[1] % 3)) {
        (false, _) => Dash::Points,
        (true, None | Some(0)) => Dash::LinePoints,
        (true, Some(1)) => Dash::Dashed,
        (true, _) => Dash::Dotted,
    };
    (colour, dash)
}

fn group_label(by: &[&Param], key: &[usize]) -> String {
    by.iter()
        .zip(key)
        .map(|(p, &l)| format!("{} = {}", p.short(), p.levels[l]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `sweep_summary.csv` (see [`write_sweep_summary`]) and draws, from a sweep folder's
/// `sweep.csv`, one plot per metric: the mean over seeds with min–max error bars against the
/// first swept parameter (a categorical axis for strings and booleans, a log axis for a
/// positive grid spanning a decade), one curve per combination of the other parameters
/// (colour from a sequential map for a numeric parameter); and the learning curves of every
/// grid point (mean over seeds). Returns the files written.
pub fn plot_sweep_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![write_sweep_summary(dir)?];
    let s = Sweep::read(dir)?;
    if s.params.is_empty() {
        return Ok(files);
    }
    // parameters with one value are constants: neither axis nor curve
    let varying: Vec<&Param> = s.params.iter().filter(|p| p.levels.len() > 1).collect();
    let x = varying.first().copied().unwrap_or(&s.params[0]);
    let x_index = s.params.iter().position(|p| p.path == x.path).unwrap_or(0);
    let by: Vec<&Param> = varying
        .iter()
        .copied()
        .filter(|p| p.path != x.path)
        .collect();
    let by_index: Vec<usize> = by
        .iter()
        .map(|b| s.params.iter().position(|p| p.path == b.path).unwrap_or(0))
        .collect();
    let grid = s.grid();
    let seeds = grid.values().map(Vec::len).max().unwrap_or(0);
    for metric in &s.metrics {
        let vals = s.table.numbers(&format!("metric:{metric}"));
        // group key → x level → values
        let mut groups: BTreeMap<Vec<usize>, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
        for (key, rows) in &grid {
            let g: Vec<usize> = by_index.iter().map(|&i| key[i]).collect();
            let v: Vec<f64> = rows
                .iter()
                .map(|&r| vals[r])
                .filter(|v| v.is_finite())
                .collect();
            if !v.is_empty() {
                groups
                    .entry(g)
                    .or_default()
                    .entry(key[x_index])
                    .or_default()
                    .extend(v);
            }
        }
        if groups.is_empty() {
            continue;
        }
        let pretty = metric.replace('_', " ");
        let spread = groups
            .values()
            .flat_map(|g| g.values())
            .any(|v| v.len() > 1);
        let y_label = if spread {
            format!("{pretty} (mean over {seeds} seeds; bars: min–max)")
        } else if seeds == 1 {
            pretty.clone()
        } else {
            format!("{pretty} (mean over seeds)")
        };
        let mut p = LinePlot::new(
            format!("sweep: {pretty} vs {}", x.short()),
            &x.path,
            y_label,
        );
        let numeric_x = !x.categorical;
        if numeric_x {
            p.log_x = x.log_scale();
            p.x_ticks = (0..x.levels.len()).map(|i| x.number(i)).collect();
        } else {
            p.x_categories = x.levels.clone();
        }
        let all: Vec<f64> = groups
            .values()
            .flat_map(|g| g.values().flatten().copied())
            .collect();
        let (lo, hi) = all
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        p.log_y = lo > 0.0 && hi / lo >= 30.0;
        let n = groups.len();
        for (g, (key, points)) in groups.iter().enumerate() {
            let dodge = if numeric_x || n == 1 {
                0.0
            } else {
                (g as f64 - (n - 1) as f64 / 2.0) * (0.6 / n as f64).min(0.15)
            };
            let xv = |l: usize| {
                if numeric_x {
                    x.number(l)
                } else {
                    l as f64 + dodge
                }
            };
            let mut pts = Vec::new();
            let mut bars = Vec::new();
            for (&l, v) in points {
                let (mean, min, max) = stats(v.iter().copied());
                pts.push((xv(l), mean));
                if v.len() > 1 {
                    bars.push((xv(l), min, max));
                }
            }
            let (colour, dash) = group_style(&by, key, numeric_x, g, n);
            p.series.push(
                Series::new(group_label(&by, key), pts, g)
                    .with_rgb(colour)
                    .styled(dash)
                    .with_bars(bars),
            );
        }
        let name: String = metric
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
            .collect();
        files.extend(p.save(&dir.join(format!("sweep_{name}")))?);
    }
    files.extend(sweep_learning_curves(dir, &s, &grid, &varying)?);
    Ok(files)
}

/// Values of a curve over seeds: rounded x → (x, values).
type Curve = BTreeMap<i64, (f64, Vec<f64>)>;

/// Test loss against examples of every grid point (mean over seeds), of the continuous model
/// (or, in discrete-only runs, of each run's first model).
fn sweep_learning_curves(
    dir: &Path,
    s: &Sweep,
    grid: &BTreeMap<Vec<usize>, Vec<usize>>,
    varying: &[&Param],
) -> anyhow::Result<Vec<PathBuf>> {
    let runs = s.table.text("run");
    let idx: Vec<usize> = varying
        .iter()
        .map(|v| s.params.iter().position(|p| p.path == v.path).unwrap_or(0))
        .collect();
    // grid point → x (rounded key) → (x, losses over seeds)
    let mut curves: BTreeMap<Vec<usize>, Curve> = BTreeMap::new();
    let mut x_label = "training examples";
    let mut models: Vec<String> = Vec::new();
    for (key, rows) in grid {
        let k: Vec<usize> = idx.iter().map(|&i| key[i]).collect();
        for &r in rows {
            let path = dir.join("runs").join(&runs[r]).join("metrics.csv");
            let Ok(m) = Columns::read(&path) else {
                continue;
            };
            let (xs, label) = progress_axis(&m);
            x_label = label;
            let groups = group_by_model(&m);
            let Some((model, rows)) = groups.first() else {
                continue;
            };
            if !models.contains(model) {
                models.push(model.clone());
            }
            let loss = m.numbers("test_loss");
            for &j in rows {
                if loss[j].is_finite() && xs[j].is_finite() {
                    curves
                        .entry(k.clone())
                        .or_default()
                        .entry((xs[j] * 1e6).round() as i64)
                        .or_insert((xs[j], Vec::new()))
                        .1
                        .push(loss[j]);
                }
            }
        }
    }
    if curves.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = LinePlot::new(
        format!(
            "sweep: learning curves ({}, mean over seeds)",
            models.join(", ")
        ),
        x_label,
        "test loss",
    );
    p.log_y = true;
    for (c, (key, pts)) in curves.iter().enumerate() {
        let (colour, dash) = group_style(varying, key, true, c, curves.len());
        let dash = if dash == Dash::LinePoints {
            Dash::Solid
        } else {
            dash
        };
        let label = if varying.is_empty() {
            "mean over seeds".to_string()
        } else {
            group_label(varying, key)
        };
        p.series.push(
            Series::new(
                label,
                pts.values()
                    .map(|(x, v)| (*x, v.iter().sum::<f64>() / v.len() as f64))
                    .collect(),
                c,
            )
            .with_rgb(colour)
            .styled(dash),
        );
    }
    Ok(p.save(&dir.join("sweep_learning_curves"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dtpsim-report-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn trace_columns_parse() {
        assert_eq!(
            parse_trace_column("tau_l3_n0_r0"),
            Some(TraceColumn {
                var: "tau".into(),
                layer: 3,
                neuron: 0,
                replica: 0
            })
        );
        assert_eq!(
            parse_trace_column("trace_l1_n255_r2").map(|c| (c.var, c.layer, c.neuron, c.replica)),
            Some(("trace".into(), 1, 255, 2))
        );
        for other in [
            "time",
            "trial",
            "phase",
            "teacher",
            "h_l1_n0",
            "_l1_n0_r0",
            "h_lx_n0_r0",
        ] {
            assert_eq!(parse_trace_column(other), None, "{other}");
        }
    }

    #[test]
    fn categorical_detection() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(is_categorical(&s(&["always", "gated"])));
        assert!(is_categorical(&s(&["true", "false"])));
        assert!(is_categorical(&s(&["1", "difference"])));
        assert!(!is_categorical(&s(&["0.25", "16", "1e-3", "-2"])));
    }

    #[test]
    fn levels_sort_numerically() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sort_levels(&s(&["1", "16", "2", "0.5", "16", "10"])),
            s(&["0.5", "1", "2", "10", "16"])
        );
        // categories keep the sweep's order
        assert_eq!(
            sort_levels(&s(&["teacher", "always", "teacher"])),
            s(&["teacher", "always"])
        );
    }

    #[test]
    fn significant_digits() {
        assert_eq!(fmt_sig(2.921485401245727, 6), "2.92149");
        assert_eq!(fmt_sig(0.0034961287983915175, 6), "0.00349613");
        assert_eq!(fmt_sig(1.5e-7, 6), "1.5e-7");
        assert_eq!(fmt_sig(123456789.0, 6), "1.23457e8");
        assert_eq!(fmt_sig(100.0, 6), "100");
        assert_eq!(fmt_sig(-0.5, 6), "-0.5");
        assert_eq!(fmt_sig(f64::NAN, 6), "NaN");
    }

    const SWEEP: &str = "\
run,seed,param:engine.protocol.t_window,param:engine.gate,metric:final_test_loss,metric:final_test_accuracy,wall_seconds,status
000,1,2,teacher,1.0,NaN,1.0,complete
001,2,2,teacher,3.0,NaN,1.0,complete
002,1,2,always,5.0,NaN,1.0,complete
003,2,2,always,NaN,NaN,1.0,failed: diverged
004,1,16,teacher,0.5,NaN,1.0,complete
005,2,16,teacher,0.25,NaN,1.0,stopped: runaway
006,1,16,always,7.0,NaN,1.0,complete
007,2,16,always,9.0,NaN,1.0,complete
008,1,0.5,teacher,2.0,NaN,1.0,complete
009,2,0.5,teacher,2.0,NaN,1.0,complete
010,1,0.5,always,2.0,NaN,1.0,complete
011,2,0.5,always,4.0,NaN,1.0,complete
";

    #[test]
    fn sweep_summary_groups_grid_points() {
        let dir = tmp("summary");
        std::fs::write(dir.join("sweep.csv"), SWEEP).unwrap();
        let path = write_sweep_summary(&dir).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "param:engine.protocol.t_window,param:engine.gate,final_test_loss_mean,\
             final_test_loss_min,final_test_loss_max,final_test_accuracy_mean,\
             final_test_accuracy_min,final_test_accuracy_max,seeds,complete"
        );
        assert_eq!(
            &lines[1..],
            [
                "0.5,teacher,2,2,2,NaN,NaN,NaN,2,2",
                "0.5,always,3,2,4,NaN,NaN,NaN,2,2",
                "2,teacher,2,1,3,NaN,NaN,NaN,2,2",
                "2,always,5,5,5,NaN,NaN,NaN,2,1",
                "16,teacher,0.375,0.25,0.5,NaN,NaN,NaN,2,1",
                "16,always,8,7,9,NaN,NaN,NaN,2,2",
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sweep_plots_render() {
        let dir = tmp("sweep");
        std::fs::write(dir.join("sweep.csv"), SWEEP).unwrap();
        let files = plot_sweep_dir(&dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"sweep_summary.csv".to_string()));
        assert!(names.contains(&"sweep_final_test_loss.svg".to_string()));
        assert!(
            !names.iter().any(|n| n.contains("accuracy")),
            "all-NaN metric: no plot"
        );
        let svg = std::fs::read_to_string(dir.join("sweep_final_test_loss.svg")).unwrap();
        // the grid values label the x axis, the categories name the curves
        for label in [
            "\n0.5\n</text>",
            "\n16\n</text>",
            "gate = teacher",
            "gate = always",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn traces_plot_writes_png_and_svg() {
        let dir = tmp("traces");
        let mut csv = String::from(
            "time,trial,phase,teacher,h_l1_n0_r0,tau_l1_n0_r0,h_l2_n0_r0,tau_l2_n0_r0,d_l2_n0_r0\n",
        );
        for i in 0..40 {
            let t = i as f64 * 0.5;
            let trial = i / 10 - 2;
            let phase = if trial < 0 { "warmup" } else { "learning" };
            let teacher = u8::from(i % 10 >= 5);
            let h = (t * 0.3).sin();
            csv.push_str(&format!(
                "{t},{trial},{phase},{teacher},{h},{},{},{},{}\n",
                h + 0.1,
                0.01 * h,
                0.012 * h,
                0.002 * h
            ));
        }
        std::fs::write(dir.join("traces.csv"), csv).unwrap();
        let files = plot_traces(&dir.join("traces.csv"), &dir.join("traces"), "t").unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(&std::fs::read(&files[0]).unwrap()[1..4], b"PNG");
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        for label in [
            "layer 1",
            "layer 2",
            "teacher on",
            "warm-up",
            "τ = h + d (target)",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn whole_layer_traces_get_one_legend_entry_per_variable() {
        let dir = tmp("whole");
        let n = 12;
        let mut csv = String::from("time,trial,phase,teacher");
        for var in ["h", "tau"] {
            for j in 0..n {
                csv.push_str(&format!(",{var}_l1_n{j}_r0"));
            }
        }
        csv.push_str(",h_l2_n0_r0,h_l2_n1_r0\n");
        for i in 0..30 {
            csv.push_str(&format!("{i},0,learning,{}", u8::from(i >= 15)));
            for k in 0..2 * n + 2 {
                csv.push_str(&format!(",{}", (i as f64 * 0.1 + k as f64).sin()));
            }
            csv.push('\n');
        }
        std::fs::write(dir.join("traces.csv"), csv).unwrap();
        let files = plot_traces(&dir.join("traces.csv"), &dir.join("traces"), "t").unwrap();
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.contains("layer 1 (12 neurons)"));
        assert!(svg.contains("h (activity)") && svg.contains("τ = h + d (target)"));
        assert!(!svg.contains("h n0"), "no per-neuron legend entries");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn classification_run_gets_accuracy_plot() {
        let dir = tmp("run");
        let csv = "\
model,trial,examples,time,train_loss,test_loss,test_mse,test_accuracy,reconstruction,alpha_1,update_cosine,w_norm_1,w_norm_2,wall_seconds
bp,0,0,NaN,NaN,2.3,NaN,0.1,NaN,NaN,NaN,1,1,0
bp,10,100,NaN,1.5,1.2,NaN,0.6,NaN,NaN,NaN,1.1,1.2,0.1
bp,20,200,NaN,0.9,0.8,NaN,0.8,NaN,NaN,NaN,1.2,1.3,0.2
";
        std::fs::write(dir.join("metrics.csv"), csv).unwrap();
        let labels = RunLabels {
            title: "mnist".into(),
            loss: Loss::SoftmaxCe,
        };
        let files = plot_run_dir(&dir, &labels).unwrap();
        assert!(files.iter().any(|f| f.ends_with("accuracy.png")));
        let svg = std::fs::read_to_string(dir.join("learning_curve.svg")).unwrap();
        for label in ["loss (softmax cross-entropy)", "bp — test", "bp — train"] {
            assert!(svg.contains(label), "{label}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
