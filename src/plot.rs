//! Line plots in PNG and SVG with `plotters`, drawn with an embedded DejaVu Sans font
//! (`assets/fonts`, see its licence file) so they render on machines without system fonts.
//!
//! [`LinePlot`] is one chart: lines, dashed or dotted lines, markers, error bars, shaded
//! x intervals, linear, logarithmic or categorical axes. [`StackedPlot`] stacks several charts
//! on a shared x axis (one panel per layer of a trace). Ticks are chosen here rather than by
//! `plotters`: `1, 2, 5 × 10^k` on log axes with both ends of the data labelled, `1, 2, 2.5, 5
//! × 10^k` steps on linear axes, category names on categorical axes, or given grid values
//! ([`LinePlot::x_ticks`]) when their labels fit. The legend shows each entry's colour and
//! line style and goes into the corner of the plot area where it covers no data, or to the
//! right of the plot area when every corner is occupied.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn ensure_font() {
    REGISTER.call_once(|| {
        // The embedded file is a valid TTF; a failure here is a build defect.
        if register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("embedded DejaVuSans.ttf does not parse: the build is broken");
        }
    });
}

/// Error while drawing a plot (names the file).
#[derive(Debug, thiserror::Error)]
#[error("{path}: could not draw plot: {message}")]
pub struct PlotError {
    /// The file being written.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// An RGB colour.
pub type Rgb = (u8, u8, u8);

/// The categorical palette (matplotlib's `tab10`), indexed by [`Series::color`].
pub const PALETTE: [Rgb; 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Palette colour `i` (cycling).
pub fn palette(i: usize) -> Rgb {
    PALETTE[i % PALETTE.len()]
}

/// The viridis colour map at `t ∈ [0, 1]` (dark purple → blue → green → yellow), linearly
/// interpolated between eleven samples of matplotlib's table.
pub fn viridis(t: f64) -> Rgb {
    const V: [Rgb; 11] = [
        (68, 1, 84),
        (72, 36, 117),
        (65, 68, 135),
        (53, 95, 141),
        (42, 120, 142),
        (33, 145, 140),
        (34, 168, 132),
        (68, 191, 112),
        (122, 209, 81),
        (189, 223, 38),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let f = t * 10.0;
    let i = (f.floor() as usize).min(9);
    let w = f - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + w * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (V[i], V[i + 1]);
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Colour `i` of `n` values on a sequential scale (viridis without its palest end, so every
/// line stays visible on white).
pub fn sequential(i: usize, n: usize) -> Rgb {
    if n <= 1 {
        viridis(0.0)
    } else {
        viridis(0.85 * i as f64 / (n - 1) as f64)
    }
}

/// `base` lightened towards white by `t ∈ [0, 1]` (0: unchanged).
pub fn lighten(base: Rgb, t: f64) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    let f = |c: u8| (c as f64 + t * (255.0 - c as f64)).round() as u8;
    (f(base.0), f(base.1), f(base.2))
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// Line style of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dash {
    /// Solid line.
    #[default]
    Solid,
    /// Dashed: used for predictions drawn against measurements.
    Dashed,
    /// Dotted line.
    Dotted,
    /// Markers only.
    Points,
    /// Solid line with a marker at every point (measured grid points).
    LinePoints,
}

/// One labelled curve.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend text (empty: no legend entry).
    pub label: String,
    /// Points `(x, y)`; non-finite points, and non-positive ones on a log axis, are skipped.
    pub points: Vec<(f64, f64)>,
    /// Line style.
    pub dash: Dash,
    /// Index into [`PALETTE`] (series sharing a colour share an index).
    pub color: usize,
    /// Explicit colour, overriding `color` (e.g. from [`viridis`]).
    pub rgb: Option<Rgb>,
    /// Thin, slightly transparent line (many curves drawn together).
    pub thin: bool,
    /// Vertical error bars `(x, low, high)`, drawn in the series colour.
    pub bars: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A solid series with palette colour `color`.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Self {
        Series {
            label: label.into(),
            points,
            color,
            ..Series::default()
        }
    }

    /// The same series drawn dashed.
    pub fn dashed(mut self) -> Self {
        self.dash = Dash::Dashed;
        self
    }

    /// The same series drawn dotted.
    pub fn dotted(mut self) -> Self {
        self.dash = Dash::Dotted;
        self
    }

    /// The same series drawn as markers.
    pub fn markers(mut self) -> Self {
        self.dash = Dash::Points;
        self
    }

    /// The same series drawn with line style `dash`.
    pub fn styled(mut self, dash: Dash) -> Self {
        self.dash = dash;
        self
    }

    /// The same series in colour `c`.
    pub fn with_rgb(mut self, c: Rgb) -> Self {
        self.rgb = Some(c);
        self
    }

    /// The same series drawn thin and slightly transparent.
    pub fn thin(mut self) -> Self {
        self.thin = true;
        self
    }

    /// The same series with vertical error bars `(x, low, high)`.
    pub fn with_bars(mut self, bars: Vec<(f64, f64, f64)>) -> Self {
        self.bars = bars;
        self
    }

    /// The colour the series is drawn in.
    pub fn colour(&self) -> Rgb {
        self.rgb.unwrap_or_else(|| palette(self.color))
    }

    fn swatch(&self) -> Swatch {
        Swatch::Line {
            rgb: self.colour(),
            dash: self.dash,
            thin: self.thin,
        }
    }
}

/// Background shading of x intervals (e.g. teacher on), with an optional legend entry.
#[derive(Debug, Clone, Default)]
pub struct Shade {
    /// Legend text (empty: no legend entry).
    pub label: String,
    /// Fill colour (drawn at 25 % opacity).
    pub rgb: Rgb,
    /// Intervals `[x0, x1)`.
    pub intervals: Vec<(f64, f64)>,
}

/// Colour of teacher-on intervals.
pub const TEACHER_SHADE: Rgb = (255, 190, 100);
/// Colour of warm-up intervals.
pub const WARMUP_SHADE: Rgb = (170, 170, 170);

impl Shade {
    /// Intervals shaded in colour `rgb`, named `label` in the legend.
    pub fn new(label: impl Into<String>, rgb: Rgb, intervals: Vec<(f64, f64)>) -> Self {
        Shade {
            label: label.into(),
            rgb,
            intervals,
        }
    }
}

/// What a legend entry shows next to its text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Swatch {
    /// A short stretch of line in the given colour and style.
    Line {
        /// Colour.
        rgb: Rgb,
        /// Line style (dashes and markers are drawn as in the plot).
        dash: Dash,
        /// Thin line.
        thin: bool,
    },
    /// A filled patch (shaded intervals).
    Patch(Rgb),
}

/// A legend entry that is not a labelled series (e.g. one entry for many unlabelled lines).
#[derive(Debug, Clone, PartialEq)]
pub struct LegendItem {
    /// Text.
    pub label: String,
    /// Colour and style shown.
    pub swatch: Swatch,
}

impl LegendItem {
    /// An entry showing a line of colour `rgb` and style `dash`.
    pub fn line(label: impl Into<String>, rgb: Rgb, dash: Dash) -> Self {
        LegendItem {
            label: label.into(),
            swatch: Swatch::Line {
                rgb,
                dash,
                thin: false,
            },
        }
    }
}

/// A line chart with optional logarithmic or categorical axes and shaded x intervals.
#[derive(Debug, Clone, Default)]
pub struct LinePlot {
    /// Caption above the chart.
    pub title: String,
    /// x-axis description.
    pub x_label: String,
    /// y-axis description.
    pub y_label: String,
    /// Logarithmic y axis (points with `y ≤ 0` are dropped).
    pub log_y: bool,
    /// Logarithmic x axis (points with `x ≤ 0` are dropped).
    pub log_x: bool,
    /// The curves, drawn in order.
    pub series: Vec<Series>,
    /// Shaded x intervals, drawn behind the curves.
    pub shaded: Vec<Shade>,
    /// Categorical x axis: when non-empty, `x = i` is drawn at category `x_categories[i]`
    /// (fractional `x` near `i` for side-by-side groups).
    pub x_categories: Vec<String>,
    /// Preferred labelled x ticks (e.g. the values of a sweep grid); used when their labels
    /// fit side by side, else ticks are chosen automatically.
    pub x_ticks: Vec<f64>,
    /// Legend entries after those of the labelled series.
    pub legend: Vec<LegendItem>,
    /// Heading of the legend (empty: none).
    pub legend_title: String,
}

/// Several charts stacked vertically on a shared x axis, each with its own y range, sharing
/// one legend to the right (entries with the same text are shown once).
#[derive(Debug, Clone, Default)]
pub struct StackedPlot {
    /// Caption above the panels.
    pub title: String,
    /// x-axis description (under the bottom panel).
    pub x_label: String,
    /// The panels, top to bottom; each uses its `y_label`, `log_y`, `series`, `shaded` and
    /// `legend` (title, x label and categories of a panel are ignored).
    pub panels: Vec<LinePlot>,
    /// Heading of the legend (empty: none).
    pub legend_title: String,
}

// ---------------------------------------------------------------------------------------
// Ticks

/// Formats a tick value compactly: `0.25`, `16`, `2500`, `1e-5`, `2e6`.
pub fn fmt_tick(v: f64) -> String {
    if !v.is_finite() {
        return "NaN".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".into()
        } else {
            s.to_string()
        }
    } else {
        let s = format!("{v:.3e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        format!("{m}e{e}")
    }
}

/// Ticks of a linear axis over `[lo, hi]` drawn `px` pixels long with labels at least
/// `min_gap` pixels apart: major ticks at multiples of `1, 2, 2.5 or 5 × 10^k`, and minor ticks
/// between them.
pub fn linear_ticks(lo: f64, hi: f64, px: f64, min_gap: f64) -> (Vec<f64>, Vec<f64>) {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (vec![lo], Vec::new());
    }
    let span = hi - lo;
    let want = (span * min_gap / px.max(1.0)).max(span * 1e-12);
    let mag = 10f64.powf(want.log10().floor());
    let (step, sub) = [(1.0, 2.0), (2.0, 2.0), (2.5, 2.0), (5.0, 2.0), (10.0, 2.0)]
        .iter()
        .map(|&(m, s)| (m * mag, s))
        .find(|&(st, _)| st >= want * (1.0 - 1e-9))
        .unwrap_or((10.0 * mag, 2.0));
    let snap = |k: f64, st: f64| {
        let v = k * st;
        if v.abs() < st * 1e-9 {
            0.0
        } else {
            v
        }
    };
    let eps = step * 1e-9;
    let major: Vec<f64> = ((lo / step - 1e-9).ceil() as i64..=(hi / step + 1e-9).floor() as i64)
        .map(|k| snap(k as f64, step))
        .filter(|v| *v >= lo - eps && *v <= hi + eps)
        .collect();
    let fine = step / sub;
    let minor: Vec<f64> = ((lo / fine).ceil() as i64..=(hi / fine).floor() as i64)
        .map(|k| snap(k as f64, fine))
        .filter(|v| !major.iter().any(|m| (m - v).abs() < fine * 1e-6))
        .collect();
    (major, minor)
}

/// A logarithmic axis covering `[lo, hi]` (`0 < lo < hi`) drawn `px` pixels long with
/// labels at least `min_gap` pixels apart: returns `(axis_lo, axis_hi, major, minor)`. The
/// axis ends are the nearest `m × 10^k` (`m = 1..9`) outside the data and both are labelled;
/// the labels between are `1..9`, `1, 2, 5`, `1, 3`, `1` or every few decades `× 10^k`, the
/// densest that fits. Ranges under half a decade get linear steps instead.
pub fn log_ticks(lo: f64, hi: f64, px: f64, min_gap: f64) -> (f64, f64, Vec<f64>, Vec<f64>) {
    if !(lo > 0.0 && hi.is_finite()) || hi <= lo {
        let lo = if lo > 0.0 && lo.is_finite() { lo } else { 1.0 };
        return (lo / 2.0, lo * 2.0, vec![lo / 2.0, lo, lo * 2.0], Vec::new());
    }
    // the nearest decimal with 3 significant digits: m × 10^k without rounding noise
    let round = |v: f64| format!("{v:.2e}").parse::<f64>().unwrap_or(v);
    let decades = (hi / lo).log10();
    if decades < 0.5 {
        let pad = (hi / lo).powf(0.05);
        let (a, b) = (lo / pad, hi * pad);
        let (major, minor) = linear_ticks(a, b, px * 0.8, min_gap);
        if major.len() >= 2 {
            return (a, b, major, minor);
        }
    }
    let a = {
        let k = lo.log10().floor() as i32;
        let m = (lo / 10f64.powi(k) * (1.0 + 1e-9)).floor().clamp(1.0, 9.0);
        round(m * 10f64.powi(k))
    };
    let b = {
        let k = hi.log10().floor() as i32;
        let m = (hi / 10f64.powi(k) * (1.0 - 1e-9)).ceil().clamp(1.0, 10.0);
        round(m * 10f64.powi(k))
    };
    let total = (b / a).log10();
    let gap = |u: f64, v: f64| (v / u).log10() / total * px;
    let candidates: [(&[f64], i32); 9] = [
        (&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1),
        (&[1.0, 2.0, 5.0], 1),
        (&[1.0, 3.0], 1),
        (&[1.0], 1),
        (&[1.0], 2),
        (&[1.0], 3),
        (&[1.0], 5),
        (&[1.0], 10),
        (&[1.0], 30),
    ];
    let mut major = vec![a, b];
    for (mantissas, stride) in candidates {
        let mut inner = Vec::new();
        let k0 = (a.log10().floor() as i32).div_euclid(stride) * stride;
        let mut k = k0;
        while k <= b.log10().ceil() as i32 {
            for m in mantissas {
                let v = round(m * 10f64.powi(k));
                if v > a * (1.0 + 1e-9)
                    && v < b * (1.0 - 1e-9)
                    && gap(a, v) >= min_gap
                    && gap(v, b) >= min_gap
                {
                    inner.push(v);
                }
            }
            k += stride;
        }
        let mut ticks = vec![a];
        ticks.extend(inner);
        ticks.push(b);
        let fits = ticks.windows(2).all(|w| gap(w[0], w[1]) >= min_gap);
        major = ticks;
        if fits {
            break;
        }
    }
    let mut minor = Vec::new();
    if total <= 12.0 {
        for k in (a.log10().floor() as i32)..=(b.log10().ceil() as i32) {
            for m in 1..10 {
                let v = round(m as f64 * 10f64.powi(k));
                if v >= a && v <= b && !major.iter().any(|t| (t / v - 1.0).abs() < 1e-6) {
                    minor.push(v);
                }
            }
        }
    }
    (a, b, major, minor)
}

/// One axis: range, scale, ticks and (for a categorical axis) category names. Implements
/// `plotters`' `Ranged` so that the mesh is drawn at these ticks.
#[derive(Debug, Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    major: Vec<f64>,
    minor: Vec<f64>,
    categories: Vec<String>,
}

impl Axis {
    /// A numeric (not categorical) axis over `[lo, hi]` with the given ticks.
    fn with_ticks(lo: f64, hi: f64, log: bool, major: Vec<f64>, minor: Vec<f64>) -> Axis {
        Axis {
            lo,
            hi,
            log,
            major,
            minor,
            categories: Vec::new(),
        }
    }

    fn frac(&self, v: f64) -> f64 {
        if self.log {
            if v <= 0.0 {
                return -1e3;
            }
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    fn label(&self, v: f64) -> String {
        if self.categories.is_empty() {
            fmt_tick(v)
        } else {
            let i = v.round();
            if i >= 0.0 && (i as usize) < self.categories.len() {
                self.categories[i as usize].clone()
            } else {
                String::new()
            }
        }
    }

    fn categorical(categories: &[String]) -> Axis {
        Axis {
            lo: -0.5,
            hi: categories.len().max(1) as f64 - 0.5,
            log: false,
            major: (0..categories.len()).map(|i| i as f64).collect(),
            minor: Vec::new(),
            categories: categories.to_vec(),
        }
    }

    /// An axis over data `[lo, hi]`: `pad` widens a linear range by that fraction on each
    /// side (log: of the decades); `preferred` are ticks to label when they fit.
    fn numeric(
        lo: f64,
        hi: f64,
        log: bool,
        px: f64,
        min_gap: f64,
        pad: f64,
        preferred: &[f64],
    ) -> Axis {
        let (mut lo, mut hi) = (lo, hi);
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = if log { (0.1, 1.0) } else { (0.0, 1.0) };
        }
        if hi <= lo {
            if log {
                (lo, hi) = (lo / 2.0, hi * 2.0);
            } else {
                let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
                (lo, hi) = (lo - d, hi + d);
            }
        }
        let pref: Vec<f64> = preferred
            .iter()
            .copied()
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .collect();
        if log {
            let (a, b) = if pad > 0.0 {
                let f = (hi / lo).powf(pad);
                (lo / f, hi * f)
            } else {
                (lo, hi)
            };
            if pref.len() >= 2 {
                let fits = pref
                    .windows(2)
                    .all(|w| (w[1] / w[0]).abs().ln() / (b / a).ln() * px >= min_gap);
                if fits {
                    let (_, _, _, minor) = log_ticks(a, b, px, min_gap);
                    let minor = minor.into_iter().filter(|v| *v >= a && *v <= b).collect();
                    return Axis::with_ticks(a, b, log, pref, minor);
                }
            }
            if pad > 0.0 {
                // padded data range, ticks inside it
                let (_, _, major, minor) = log_ticks(a, b, px, min_gap);
                let keep = |v: &f64| *v >= a * (1.0 - 1e-9) && *v <= b * (1.0 + 1e-9);
                let major: Vec<f64> = major.into_iter().filter(keep).collect();
                if major.len() >= 2 {
                    let minor = minor.into_iter().filter(keep).collect();
                    return Axis::with_ticks(a, b, log, major, minor);
                }
            }
            let (a, b, major, minor) = log_ticks(lo, hi, px, min_gap);
            Axis::with_ticks(a, b, log, major, minor)
        } else {
            let d = (hi - lo) * pad;
            let (a, b) = (lo - d, hi + d);
            if pref.len() >= 2 {
                let fits = pref
                    .windows(2)
                    .all(|w| (w[1] - w[0]).abs() / (b - a) * px >= min_gap);
                if fits {
                    return Axis::with_ticks(a, b, log, pref, Vec::new());
                }
            }
            let (major, minor) = linear_ticks(a, b, px, min_gap);
            Axis::with_ticks(a, b, log, major, minor)
        }
    }

    /// Pixel position on an axis drawn from `p0` (value `lo`) to `p1` (value `hi`).
    fn pixel(&self, v: f64, p0: f64, p1: f64) -> f64 {
        p0 + self.frac(v) * (p1 - p0)
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.pixel(*value, limit.0 as f64, limit.1 as f64)
            .clamp(-1e6, 1e6)
            .round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

// ---------------------------------------------------------------------------------------
// Layout

const WIDTH: u32 = 900;
const HEIGHT: u32 = 560;
const TITLE_H: u32 = 38;
const MARGIN_L: u32 = 8;
const MARGIN_R: u32 = 34;
const MARGIN_T: u32 = 6;
const MARGIN_B: u32 = 8;
const X_AREA: u32 = 50;
const Y_AREA: u32 = 82;
const PANEL_H: u32 = 190;
const LABEL_FONT: f64 = 14.0;
const LEGEND_ROW: i32 = 20;
const LEGEND_PAD: i32 = 8;
const SWATCH_W: i32 = 32;

fn text_size(text: &str, size: f64) -> (i32, i32) {
    ensure_font();
    let font: FontDesc = ("sans-serif", size).into_font();
    font.box_size(text)
        .map(|(w, h)| (w as i32, h as i32))
        .unwrap_or((7 * text.chars().count() as i32, size as i32))
}

/// A rectangle in pixels `(x0, y0, x1, y1)`.
type PixelRect = (f64, f64, f64, f64);

struct Legend {
    title: String,
    items: Vec<LegendItem>,
    w: i32,
    h: i32,
}

impl Legend {
    fn new(title: &str, items: Vec<LegendItem>) -> Option<Legend> {
        if items.is_empty() {
            return None;
        }
        let text_w = items
            .iter()
            .map(|i| text_size(&i.label, LABEL_FONT).0)
            .chain(std::iter::once(if title.is_empty() {
                0
            } else {
                text_size(title, LABEL_FONT).0 - SWATCH_W - 6
            }))
            .max()
            .unwrap_or(0);
        let rows = items.len() as i32 + i32::from(!title.is_empty());
        Some(Legend {
            title: title.to_string(),
            items,
            w: 2 * LEGEND_PAD + SWATCH_W + 6 + text_w,
            h: 2 * LEGEND_PAD + rows * LEGEND_ROW - 4,
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        x: i32,
        y: i32,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        area.draw(&Rectangle::new(
            [(x, y), (x + self.w, y + self.h)],
            WHITE.mix(0.92).filled(),
        ))?;
        area.draw(&Rectangle::new(
            [(x, y), (x + self.w, y + self.h)],
            RGBColor(150, 150, 150).stroke_width(1),
        ))?;
        let left = ("sans-serif", LABEL_FONT)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let mut cy = y + LEGEND_PAD + LEGEND_ROW / 2 - 2;
        if !self.title.is_empty() {
            area.draw_text(&self.title, &left, (x + LEGEND_PAD, cy))?;
            cy += LEGEND_ROW;
        }
        for item in &self.items {
            let sx = x + LEGEND_PAD;
            match item.swatch {
                Swatch::Patch(c) => {
                    area.draw(&Rectangle::new(
                        [(sx, cy - 7), (sx + SWATCH_W, cy + 7)],
                        rgb(c).mix(0.3).filled(),
                    ))?;
                    area.draw(&Rectangle::new(
                        [(sx, cy - 7), (sx + SWATCH_W, cy + 7)],
                        rgb(c).stroke_width(1),
                    ))?;
                }
                Swatch::Line { rgb: c, dash, thin } => {
                    let style = rgb(c).stroke_width(if thin { 1 } else { 2 });
                    let segs: Vec<(i32, i32)> = match dash {
                        Dash::Solid | Dash::LinePoints => vec![(0, SWATCH_W)],
                        Dash::Dashed => vec![(0, 8), (12, 20), (24, SWATCH_W)],
                        Dash::Dotted => (0..SWATCH_W).step_by(6).map(|a| (a, a + 2)).collect(),
                        Dash::Points => Vec::new(),
                    };
                    for (a, b) in segs {
                        area.draw(&PathElement::new(vec![(sx + a, cy), (sx + b, cy)], style))?;
                    }
                    if matches!(dash, Dash::Points | Dash::LinePoints) {
                        area.draw(&Circle::new((sx + SWATCH_W / 2, cy), 4, rgb(c).filled()))?;
                    }
                }
            }
            area.draw_text(&item.label, &left, (sx + SWATCH_W + 6, cy))?;
            cy += LEGEND_ROW;
        }
        Ok(())
    }
}

fn legend_items(series: &[Series], shaded: &[Shade], extra: &[LegendItem]) -> Vec<LegendItem> {
    let mut items: Vec<LegendItem> = Vec::new();
    let mut push = |item: LegendItem| {
        if !item.label.is_empty() && !items.iter().any(|i| i.label == item.label) {
            items.push(item);
        }
    };
    for s in series {
        push(LegendItem {
            label: s.label.clone(),
            swatch: s.swatch(),
        });
    }
    for it in extra {
        push(it.clone());
    }
    for s in shaded {
        if !s.intervals.is_empty() {
            push(LegendItem {
                label: s.label.clone(),
                swatch: Swatch::Patch(s.rgb),
            });
        }
    }
    items
}

impl LinePlot {
    /// A plot with title and axis labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..LinePlot::default()
        }
    }

    fn keeps_x(&self, x: f64) -> bool {
        x.is_finite() && (!self.log_x || x > 0.0)
    }

    fn keeps_y(&self, y: f64) -> bool {
        y.is_finite() && (!self.log_y || y > 0.0)
    }

    /// The drawable points of `s`.
    fn drawable(&self, s: &Series) -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|(x, y)| self.keeps_x(*x) && self.keeps_y(*y))
            .collect()
    }

    /// Data range of x (over points and error bars).
    fn x_range(&self) -> (f64, f64) {
        let mut r = (f64::INFINITY, f64::NEG_INFINITY);
        for s in &self.series {
            for (x, _) in self.drawable(s) {
                r = (r.0.min(x), r.1.max(x));
            }
            for &(x, lo, hi) in &s.bars {
                if self.keeps_x(x) && (self.keeps_y(lo) || self.keeps_y(hi)) {
                    r = (r.0.min(x), r.1.max(x));
                }
            }
        }
        r
    }

    /// Data range of y (over points and error bars).
    fn y_range(&self) -> (f64, f64) {
        let mut r = (f64::INFINITY, f64::NEG_INFINITY);
        for s in &self.series {
            for (_, y) in self.drawable(s) {
                r = (r.0.min(y), r.1.max(y));
            }
            for &(x, lo, hi) in &s.bars {
                if self.keeps_x(x) {
                    for v in [lo, hi] {
                        if self.keeps_y(v) {
                            r = (r.0.min(v), r.1.max(v));
                        }
                    }
                }
            }
        }
        r
    }

    fn has_markers(&self) -> bool {
        self.series
            .iter()
            .any(|s| matches!(s.dash, Dash::Points | Dash::LinePoints) || !s.bars.is_empty())
    }

    fn x_axis(&self, px: f64, lo: f64, hi: f64) -> Axis {
        if !self.x_categories.is_empty() {
            return Axis::categorical(&self.x_categories);
        }
        let pad = if self.has_markers() { 0.04 } else { 0.0 };
        let widest = self
            .x_ticks
            .iter()
            .map(|v| text_size(&fmt_tick(*v), LABEL_FONT).0)
            .max()
            .unwrap_or(30);
        Axis::numeric(
            lo,
            hi,
            self.log_x,
            px,
            (widest + 14).max(44) as f64,
            pad,
            &self.x_ticks,
        )
    }

    fn y_axis(&self, px: f64) -> Axis {
        let (lo, hi) = self.y_range();
        if self.log_y {
            Axis::numeric(lo, hi, true, px, 24.0, 0.0, &[])
        } else {
            Axis::numeric(lo, hi, false, px, 34.0, 0.05, &[])
        }
    }

    /// Counts sampled pixels of drawn data inside `rect` (to place the legend).
    fn hits(&self, xa: &Axis, ya: &Axis, plot: PixelRect, rect: PixelRect) -> usize {
        let (px0, py0, px1, py1) = plot;
        let to_px = |(x, y): (f64, f64)| (xa.pixel(x, px0, px1), ya.pixel(y, py1, py0));
        let inside = |(x, y): (f64, f64)| {
            x >= rect.0 - 3.0 && x <= rect.2 + 3.0 && y >= rect.1 - 3.0 && y <= rect.3 + 3.0
        };
        let mut n = 0;
        let mut segment = |a: (f64, f64), b: (f64, f64)| {
            let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
            let k = (len / 3.0).ceil().clamp(1.0, 2000.0) as usize;
            for i in 0..=k {
                let t = i as f64 / k as f64;
                if inside((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))) {
                    n += 1;
                }
            }
        };
        for s in &self.series {
            let pts: Vec<(f64, f64)> = self.drawable(s).into_iter().map(to_px).collect();
            if matches!(s.dash, Dash::Points) {
                for p in &pts {
                    segment(*p, *p);
                }
            } else {
                for w in pts.windows(2) {
                    segment(w[0], w[1]);
                }
                if pts.len() == 1 {
                    segment(pts[0], pts[0]);
                }
            }
            for &(x, lo, hi) in &s.bars {
                if self.keeps_x(x) && self.keeps_y(lo) && self.keeps_y(hi) {
                    segment(to_px((x, lo)), to_px((x, hi)));
                }
            }
        }
        n
    }

    /// Writes `stem.png` and `stem.svg`; returns both paths.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
        ensure_font();
        // layout: plot area of the base-size chart
        let plot: PixelRect = (
            (MARGIN_L + Y_AREA) as f64,
            (TITLE_H + MARGIN_T) as f64,
            (WIDTH - MARGIN_R) as f64,
            (HEIGHT - MARGIN_B - X_AREA) as f64,
        );
        let (xlo, xhi) = self.x_range();
        let xa = self.x_axis(plot.2 - plot.0, xlo, xhi);
        let ya = self.y_axis(plot.3 - plot.1);
        let legend = Legend::new(
            &self.legend_title,
            legend_items(&self.series, &self.shaded, &self.legend),
        );
        // the legend goes into the emptiest corner, or outside when every corner has data
        let mut inside = None;
        if let Some(l) = &legend {
            let (w, h) = (l.w as f64, l.h as f64);
            let inset = 8.0;
            if h <= (plot.3 - plot.1) * 0.8 && w <= (plot.2 - plot.0) * 0.6 {
                let corners = [
                    (plot.2 - inset - w, plot.1 + inset),
                    (plot.0 + inset, plot.1 + inset),
                    (plot.2 - inset - w, plot.3 - inset - h),
                    (plot.0 + inset, plot.3 - inset - h),
                ];
                inside = corners
                    .iter()
                    .map(|&(x, y)| ((x, y), self.hits(&xa, &ya, plot, (x, y, x + w, y + h))))
                    .filter(|(_, n)| *n == 0)
                    .map(|(c, _)| c)
                    .next();
            }
        }
        let outside = legend.is_some() && inside.is_none();
        let width = WIDTH
            + if outside {
                legend.as_ref().map_or(0, |l| l.w as u32 + 16)
            } else {
                0
            };
        let height = HEIGHT.max(legend.as_ref().map_or(0, |l| l.h as u32 + TITLE_H + 16));
        save_png_svg(stem, (width, height), |target| match target {
            Target::Png(root) => self.draw(root, &xa, &ya, legend.as_ref(), inside, height),
            Target::Svg(root) => self.draw(root, &xa, &ya, legend.as_ref(), inside, height),
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
        xa: &Axis,
        ya: &Axis,
        legend: Option<&Legend>,
        inside: Option<(f64, f64)>,
        height: u32,
    ) -> Result<(), String> {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
        root.fill(&WHITE).map_err(e)?;
        draw_title(&root, &self.title, WIDTH).map_err(e)?;
        let chart_area = root.clone().shrink((0, TITLE_H), (WIDTH, height - TITLE_H));
        let mut chart = ChartBuilder::on(&chart_area)
            .margin_top(MARGIN_T)
            .margin_bottom(MARGIN_B + (height - HEIGHT))
            .margin_left(MARGIN_L)
            .margin_right(MARGIN_R)
            .x_label_area_size(X_AREA)
            .y_label_area_size(Y_AREA)
            .build_cartesian_2d(xa.clone(), ya.clone())
            .map_err(e)?;
        draw_panel(&mut chart, self, xa, ya, true).map_err(e)?;
        if let Some(l) = legend {
            let (x, y) = match inside {
                Some((x, y)) => (x as i32, y as i32),
                None => ((WIDTH + 4) as i32, (TITLE_H + MARGIN_T) as i32),
            };
            l.draw(&root, x, y).map_err(e)?;
        }
        root.present().map_err(e)?;
        Ok(())
    }
}

/// A drawing area of one of the two file formats a figure is saved in.
enum Target<'a> {
    Png(DrawingArea<BitMapBackend<'a>, Shift>),
    Svg(DrawingArea<SVGBackend<'a>, Shift>),
}

/// Writes `stem.png` and `stem.svg` of `size` pixels with `paint`, each drawn into a temporary
/// file beside it (`stem.partial.png`) and renamed into place: a figure file is complete or
/// absent, never cut short by an interrupted run.
fn save_png_svg(
    stem: &Path,
    size: (u32, u32),
    paint: impl Fn(Target<'_>) -> Result<(), String>,
) -> Result<Vec<PathBuf>, PlotError> {
    let mut files = Vec::new();
    for ext in ["png", "svg"] {
        let path = stem.with_extension(ext);
        let tmp = stem.with_extension(format!("partial.{ext}"));
        let fail = |message: String| {
            let _ = std::fs::remove_file(&tmp);
            PlotError {
                path: path.clone(),
                message,
            }
        };
        let drawn = match ext {
            "png" => paint(Target::Png(
                BitMapBackend::new(&tmp, size).into_drawing_area(),
            )),
            _ => paint(Target::Svg(SVGBackend::new(&tmp, size).into_drawing_area())),
        };
        drawn.map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(|e| fail(e.to_string()))?;
        files.push(path);
    }
    Ok(files)
}

fn draw_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    width: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = ("sans-serif", 20.0)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(
        title,
        &style,
        ((width / 2) as i32, (TITLE_H / 2 + 2) as i32),
    )
}

/// Draws the mesh, shading, curves and error bars of `p` on `chart`.
fn draw_panel<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<Axis, Axis>>,
    p: &LinePlot,
    xa: &Axis,
    ya: &Axis,
    x_labels: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let xf = |v: &f64| xa.label(*v);
    let yf = |v: &f64| ya.label(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(xa.major.len().max(1))
        .y_labels(ya.major.len().max(1))
        .label_style(("sans-serif", LABEL_FONT))
        .axis_desc_style(("sans-serif", LABEL_FONT + 1.0))
        .bold_line_style(RGBColor(205, 205, 205).stroke_width(1))
        .light_line_style(RGBColor(238, 238, 238).stroke_width(1))
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .y_desc(p.y_label.as_str());
    if x_labels {
        mesh.x_desc(p.x_label.as_str());
    }
    mesh.draw()?;
    for shade in &p.shaded {
        let fill = rgb(shade.rgb).mix(0.25).filled();
        for &(a, b) in &shade.intervals {
            let (a, b) = (a.max(xa.lo), b.min(xa.hi));
            if b > a {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(a, ya.lo), (b, ya.hi)],
                    fill,
                )))?;
            }
        }
    }
    for s in &p.series {
        let c = rgb(s.colour());
        let (width, alpha) = if s.thin { (1, 0.55) } else { (2, 1.0) };
        let style = c.mix(alpha).stroke_width(width);
        let pts = p.drawable(s);
        match s.dash {
            Dash::Solid | Dash::LinePoints => {
                chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
            }
            Dash::Dashed => {
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 8, 5, style))?;
            }
            Dash::Dotted => {
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 2, 4, style))?;
            }
            Dash::Points => {}
        }
        if matches!(s.dash, Dash::Points | Dash::LinePoints) {
            let r = if s.dash == Dash::Points { 5 } else { 4 };
            chart.draw_series(pts.iter().map(|&q| Circle::new(q, r, c.filled())))?;
        }
        let bar_style = c.stroke_width(2);
        let bars: Vec<(f64, f64, f64)> = s
            .bars
            .iter()
            .copied()
            .filter(|&(x, lo, hi)| p.keeps_x(x) && p.keeps_y(lo) && p.keeps_y(hi))
            .collect();
        chart.draw_series(
            bars.iter()
                .map(|&(x, lo, hi)| PathElement::new(vec![(x, lo), (x, hi)], bar_style)),
        )?;
        for &(x, lo, hi) in &bars {
            for v in [lo, hi] {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x, v)) + PathElement::new(vec![(-5, 0), (5, 0)], bar_style),
                ))?;
            }
        }
    }
    Ok(())
}

impl StackedPlot {
    /// A stacked plot with title and x-axis label (add panels to `panels`).
    pub fn new(title: impl Into<String>, x_label: impl Into<String>) -> Self {
        StackedPlot {
            title: title.into(),
            x_label: x_label.into(),
            ..StackedPlot::default()
        }
    }

    /// Writes `stem.png` and `stem.svg`; returns both paths.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
        ensure_font();
        let n = self.panels.len().max(1) as u32;
        let plot_w = (WIDTH - MARGIN_L - Y_AREA - MARGIN_R) as f64;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in &self.panels {
            let (a, b) = p.x_range();
            lo = lo.min(a);
            hi = hi.max(b);
        }
        let template = self.panels.first().cloned().unwrap_or_default();
        let xa = template.x_axis(plot_w, lo, hi);
        let yas: Vec<Axis> = self
            .panels
            .iter()
            .map(|p| p.y_axis((PANEL_H - 2 * MARGIN_T) as f64))
            .collect();
        // curves of every panel, then the shading
        let series: Vec<Series> = self.panels.iter().flat_map(|p| p.series.clone()).collect();
        let extra: Vec<LegendItem> = self.panels.iter().flat_map(|p| p.legend.clone()).collect();
        let shaded: Vec<Shade> = self.panels.iter().flat_map(|p| p.shaded.clone()).collect();
        let legend = Legend::new(&self.legend_title, legend_items(&series, &shaded, &extra));
        let width = WIDTH + legend.as_ref().map_or(0, |l| l.w as u32 + 16);
        let height = (TITLE_H + n * PANEL_H + X_AREA + MARGIN_B)
            .max(legend.as_ref().map_or(0, |l| l.h as u32 + TITLE_H + 16));
        save_png_svg(stem, (width, height), |target| match target {
            Target::Png(root) => self.draw(root, &xa, &yas, legend.as_ref()),
            Target::Svg(root) => self.draw(root, &xa, &yas, legend.as_ref()),
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
        xa: &Axis,
        yas: &[Axis],
        legend: Option<&Legend>,
    ) -> Result<(), String> {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
        root.fill(&WHITE).map_err(e)?;
        draw_title(&root, &self.title, WIDTH).map_err(e)?;
        let last = self.panels.len().saturating_sub(1);
        for (i, (p, ya)) in self.panels.iter().zip(yas).enumerate() {
            let top = TITLE_H + i as u32 * PANEL_H;
            let h = if i == last {
                PANEL_H + X_AREA + MARGIN_B
            } else {
                PANEL_H
            };
            let area = root.clone().shrink((0, top), (WIDTH, h));
            let mut panel = p.clone();
            panel.x_label = self.x_label.clone();
            let mut chart = ChartBuilder::on(&area)
                .margin_top(MARGIN_T)
                .margin_bottom(if i == last { MARGIN_B } else { MARGIN_T })
                .margin_left(MARGIN_L)
                .margin_right(MARGIN_R)
                .x_label_area_size(if i == last { X_AREA } else { 0 })
                .y_label_area_size(Y_AREA)
                .build_cartesian_2d(xa.clone(), ya.clone())
                .map_err(e)?;
            draw_panel(&mut chart, &panel, xa, ya, i == last).map_err(e)?;
        }
        if let Some(l) = legend {
            l.draw(&root, (WIDTH + 4) as i32, (TITLE_H + MARGIN_T) as i32)
                .map_err(e)?;
        }
        root.present().map_err(e)?;
        Ok(())
    }
}

/// At most about `4 × buckets` points of `points` (sorted by x) that keep the shape of the
/// curve: the first, lowest, highest and last point of each of `buckets` equal x intervals.
pub fn decimate(points: &[(f64, f64)], buckets: usize) -> Vec<(f64, f64)> {
    if points.len() <= 4 * buckets.max(1) {
        return points.to_vec();
    }
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let width = (x1 - x0) / buckets as f64;
    if width.is_nan() || width <= 0.0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(4 * buckets);
    let mut start = 0;
    while start < points.len() {
        let b = ((points[start].0 - x0) / width).floor();
        let mut end = start + 1;
        while end < points.len() && ((points[end].0 - x0) / width).floor() <= b {
            end += 1;
        }
        let chunk = &points[start..end];
        let (mut imin, mut imax) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.1 < chunk[imin].1 {
                imin = i;
            }
            if p.1 > chunk[imax].1 {
                imax = i;
            }
        }
        let mut keep = vec![0, imin, imax, chunk.len() - 1];
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|i| chunk[i]));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dtpsim-plot-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_png_and_svg_with_text() {
        let dir = tmp("basic");
        let mut p = LinePlot::new("test", "x", "y");
        p.log_y = true;
        p.series.push(Series::new(
            "a",
            vec![(0.0, 1.0), (1.0, 0.1), (2.0, 0.01)],
            0,
        ));
        p.series
            .push(Series::new("b", vec![(0.0, 1.0), (2.0, 0.1)], 1).dashed());
        p.shaded
            .push(Shade::new("teacher on", TEACHER_SHADE, vec![(0.5, 1.0)]));
        let files = p.save(&dir.join("plot")).unwrap();
        let png = std::fs::read(&files[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(
            svg.contains("\ntest\n</text>"),
            "caption text is drawn in the SVG"
        );
        for label in ["teacher on", "0.01", "\n1\n</text>"] {
            assert!(svg.contains(label), "{label} is drawn");
        }
        // drawn beside and renamed into place: only the two figures remain
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["plot.png", "plot.svg"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tick_format_is_compact() {
        assert_eq!(fmt_tick(0.25), "0.25");
        assert_eq!(fmt_tick(16.0), "16");
        assert_eq!(fmt_tick(0.1 + 0.2), "0.3");
        assert_eq!(fmt_tick(2500.0), "2500");
        assert_eq!(fmt_tick(1e-5), "1e-5");
        assert_eq!(fmt_tick(2e6), "2e6");
        assert_eq!(fmt_tick(-0.5), "-0.5");
        assert_eq!(fmt_tick(0.0), "0");
    }

    #[test]
    fn log_ticks_label_both_ends() {
        for (lo, hi) in [
            (0.25, 16.0),
            (0.03, 0.8),
            (0.5, 4.4),
            (1e-7, 0.3),
            (2.0, 3000.0),
        ] {
            let (a, b, major, _) = log_ticks(lo, hi, 450.0, 24.0);
            assert!(a <= lo && b >= hi, "[{a}, {b}] covers [{lo}, {hi}]");
            let first = major[0];
            let last = *major.last().unwrap();
            assert!(
                (first / a - 1.0).abs() < 1e-9 && (last / b - 1.0).abs() < 1e-9,
                "{lo}..{hi}: ticks {major:?} end at the axis ends [{a}, {b}]"
            );
            assert!(major.len() >= 2);
            let gap = major
                .windows(2)
                .map(|w| (w[1] / w[0]).log10() / (b / a).log10() * 450.0)
                .fold(f64::INFINITY, f64::min);
            assert!(gap >= 24.0, "{lo}..{hi}: ticks {major:?} too dense");
        }
        let labels = |lo, hi, px, gap| {
            let (a, b, major, _) = log_ticks(lo, hi, px, gap);
            (a, b, major.iter().map(|v| fmt_tick(*v)).collect::<Vec<_>>())
        };
        assert_eq!(
            labels(0.03, 0.8, 450.0, 24.0),
            (
                0.03,
                0.8,
                vec!["0.03", "0.05", "0.1", "0.2", "0.5", "0.8"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(
            labels(0.47, 4.4, 450.0, 24.0).2,
            ["0.4", "0.5", "1", "2", "5"]
        );
        // a narrow x axis
        assert_eq!(
            labels(0.25, 16.0, 300.0, 44.0).2,
            ["0.2", "0.5", "1", "2", "5", "10", "20"]
        );
        assert_eq!(
            labels(0.25, 16.0, 780.0, 44.0)
                .2
                .first()
                .map(String::as_str),
            Some("0.2")
        );
    }

    #[test]
    fn preferred_ticks_are_the_grid_when_they_fit() {
        let grid = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
        let a = Axis::numeric(0.25, 16.0, true, 780.0, 44.0, 0.04, &grid);
        assert_eq!(a.major, grid);
        assert!(a.lo < 0.25 && a.hi > 16.0);
        // too crowded: automatic ticks
        let dense: Vec<f64> = (1..=40).map(|i| i as f64).collect();
        let a = Axis::numeric(1.0, 40.0, false, 780.0, 44.0, 0.04, &dense);
        assert!(a.major.len() < 20);
    }

    #[test]
    fn linear_ticks_are_round() {
        let (major, _) = linear_ticks(4500.0, 4545.0, 780.0, 60.0);
        assert_eq!(
            major,
            [4500.0, 4505.0, 4510.0, 4515.0, 4520.0, 4525.0, 4530.0, 4535.0, 4540.0, 4545.0]
        );
        let (major, _) = linear_ticks(-0.12, 0.93, 450.0, 34.0);
        assert!(major.contains(&0.0) && major.iter().all(|v| (-0.12..=0.93).contains(v)));
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), (68, 1, 84));
        assert_eq!(viridis(1.0), (253, 231, 37));
        assert_ne!(sequential(0, 3), sequential(2, 3));
    }

    #[test]
    fn decimation_keeps_extremes() {
        let pts: Vec<(f64, f64)> = (0..10_000)
            .map(|i| {
                (
                    i as f64,
                    if i == 5000 {
                        10.0
                    } else {
                        (i as f64 * 0.01).sin()
                    },
                )
            })
            .collect();
        let d = decimate(&pts, 100);
        assert!(d.len() <= 400);
        assert!(d.contains(&(5000.0, 10.0)));
        assert_eq!(d[0], pts[0]);
        assert_eq!(*d.last().unwrap(), *pts.last().unwrap());
    }

    #[test]
    fn stacked_and_categorical_plots_render() {
        let dir = tmp("stacked");
        let mut s = StackedPlot::new("stack", "time");
        for l in 0..2 {
            let mut p = LinePlot::new("", "", format!("layer {l}"));
            p.series.push(Series::new(
                "h",
                (0..50)
                    .map(|i| (i as f64, (i as f64 * 0.1).sin() * 10f64.powi(-l)))
                    .collect(),
                0,
            ));
            p.shaded
                .push(Shade::new("teacher on", TEACHER_SHADE, vec![(10.0, 20.0)]));
            s.panels.push(p);
        }
        let files = s.save(&dir.join("stack")).unwrap();
        assert_eq!(files.len(), 2);
        let mut p = LinePlot::new("cat", "gate", "loss");
        p.x_categories = vec!["teacher".into(), "always".into()];
        p.series.push(
            Series::new("t_gap=0", vec![(0.0, 1.0), (1.0, 2.0)], 0)
                .markers()
                .with_bars(vec![(0.0, 0.9, 1.1), (1.0, 1.8, 2.2)]),
        );
        let files = p.save(&dir.join("cat")).unwrap();
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.contains("always") && svg.contains("teacher"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
