//! Line plots in PNG and SVG with `plotters`, drawn with an embedded DejaVu Sans font
//! (`assets/fonts`, see its licence file) so they render on machines without system fonts.

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
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
    pub path: PathBuf,
    pub message: String,
}

/// Line style of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dash {
    #[default]
    Solid,
    /// Dashed: used for predictions drawn against measurements.
    Dashed,
    /// Markers only.
    Points,
}

/// One labelled curve.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub dash: Dash,
    /// Index into the palette (series sharing a colour share an index).
    pub color: usize,
}

impl Series {
    /// A solid series with palette colour `color`.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Self {
        Series {
            label: label.into(),
            points,
            dash: Dash::Solid,
            color,
        }
    }

    /// The same series drawn dashed.
    pub fn dashed(mut self) -> Self {
        self.dash = Dash::Dashed;
        self
    }

    /// The same series drawn as markers.
    pub fn markers(mut self) -> Self {
        self.dash = Dash::Points;
        self
    }
}

/// A line chart with optional logarithmic y axis and shaded x intervals (e.g. gates).
#[derive(Debug, Clone, Default)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    /// Logarithmic x axis (points with `x ≤ 0` are dropped).
    pub log_x: bool,
    pub series: Vec<Series>,
    /// Intervals `[x0, x1)` shaded in the background.
    pub shaded: Vec<(f64, f64)>,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

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

    /// Whether a point can be drawn (finite, positive on a log axis).
    fn keeps(&self, x: f64, y: f64) -> bool {
        x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0) && (!self.log_x || x > 0.0)
    }

    /// Data bounds over finite points (positive y only on a log axis), padded.
    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| self.keeps(*x, *y));
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if !x0.is_finite() {
            return ((0.0, 1.0), if self.log_y { (0.1, 1.0) } else { (0.0, 1.0) });
        }
        if x1 <= x0 {
            x1 = if self.log_x { x0 * 10.0 } else { x0 + 1.0 };
        }
        if self.log_y {
            if y1 <= y0 {
                y1 = y0 * 10.0;
            }
            ((x0, x1), (y0 / 1.5, y1 * 1.5))
        } else {
            if y1 <= y0 {
                y1 = y0 + 1.0;
            }
            let pad = 0.05 * (y1 - y0);
            ((x0, x1), (y0 - pad, y1 + pad))
        }
    }

    /// Writes `stem.png` and `stem.svg`; returns both paths.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
        ensure_font();
        let png = stem.with_extension("png");
        let svg = stem.with_extension("svg");
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |e: String| PlotError {
                path: path.clone(),
                message: e,
            }
        };
        {
            let root = BitMapBackend::new(&png, (900, 560)).into_drawing_area();
            self.draw(root).map_err(err(&png))?;
        }
        {
            let root = SVGBackend::new(&svg, (900, 560)).into_drawing_area();
            self.draw(root).map_err(err(&svg))?;
        }
        Ok(vec![png, svg])
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), String> {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
        root.fill(&WHITE).map_err(e)?;
        let ((x0, x1), (y0, y1)) = self.bounds();
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(75);
        let log_y = self.log_y;
        let y_format = move |v: &f64| {
            if log_y && (v.abs() < 1e-3 || v.abs() >= 1e4) {
                format!("{v:.0e}")
            } else if log_y {
                let s = format!("{v:.3}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                let s = format!("{v:.4}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            }
        };
        let x_format = |v: &f64| {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        macro_rules! body {
            ($chart:ident) => {{
                $chart
                    .configure_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .label_style(("sans-serif", 14))
                    .x_label_formatter(&x_format)
                    .y_label_formatter(&y_format)
                    .draw()
                    .map_err(e)?;
                for &(a, b) in &self.shaded {
                    $chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(a.max(x0), y0), (b.min(x1), y1)],
                            RGBColor(255, 200, 120).mix(0.25).filled(),
                        )))
                        .map_err(e)?;
                }
                for s in &self.series {
                    let color = PALETTE[s.color % PALETTE.len()];
                    let pts: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|(x, y)| {
                            x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0)
                        })
                        .collect();
                    let anno = match s.dash {
                        Dash::Solid => $chart
                            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                            .map_err(e)?,
                        Dash::Dashed => $chart
                            .draw_series(DashedLineSeries::new(pts, 8, 5, color.stroke_width(2)))
                            .map_err(e)?,
                        Dash::Points => $chart
                            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                            .map_err(e)?,
                    };
                    if !s.label.is_empty() {
                        anno.label(s.label.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    }
                }
                if self.series.iter().any(|s| !s.label.is_empty()) {
                    $chart
                        .configure_series_labels()
                        .label_font(("sans-serif", 14))
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .position(SeriesLabelPosition::UpperRight)
                        .draw()
                        .map_err(e)?;
                }
            }};
        }
        match (self.log_x, self.log_y) {
            (false, false) => {
                let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?;
                body!(chart);
            }
            (false, true) => {
                let mut chart = builder
                    .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                    .map_err(e)?;
                body!(chart);
            }
            (true, false) => {
                let mut chart = builder
                    .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                    .map_err(e)?;
                body!(chart);
            }
            (true, true) => {
                let mut chart = builder
                    .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                    .map_err(e)?;
                body!(chart);
            }
        }
        root.present().map_err(e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_png_and_svg_with_text() {
        let dir = std::env::temp_dir().join(format!("dtpsim-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = LinePlot::new("test", "x", "y");
        p.log_y = true;
        p.series.push(Series::new(
            "a",
            vec![(0.0, 1.0), (1.0, 0.1), (2.0, 0.01)],
            0,
        ));
        p.series
            .push(Series::new("b", vec![(0.0, 1.0), (2.0, 0.1)], 1).dashed());
        p.shaded.push((0.5, 1.0));
        let files = p.save(&dir.join("plot")).unwrap();
        let png = std::fs::read(&files[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(
            svg.contains("\ntest\n</text>"),
            "caption text is drawn in the SVG"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
