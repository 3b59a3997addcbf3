//! Output files: atomic writes so that an interrupted run never leaves a file that looks
//! complete, and small CSV helpers whose output loads in pandas.

use crate::error::IoError;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader sees either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let tmp = partial_path(path);
    std::fs::write(&tmp, bytes).map_err(|cause| IoError::Write {
        path: tmp.clone(),
        cause,
    })?;
    std::fs::rename(&tmp, path).map_err(|cause| IoError::Write {
        path: path.to_path_buf(),
        cause,
    })
}

/// `path` with `.partial` appended: the name a file has while it is being written.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// Creates `dir` (and parents), naming it in the error.
pub fn create_dir(dir: &Path) -> Result<(), IoError> {
    std::fs::create_dir_all(dir).map_err(|cause| IoError::Write {
        path: dir.to_path_buf(),
        cause,
    })
}

/// A progress bar on standard error (hidden when `show` is false) with the given template
/// (indicatif syntax), drawn with `=>` bars.
pub fn progress_bar(len: u64, show: bool, template: &str) -> indicatif::ProgressBar {
    let target = if show {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), target);
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// A CSV table built in memory and written atomically (header + rows of numbers or text).
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with the given column names.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; its length must match the header (a mismatch is a bug in the caller).
    pub fn push(&mut self, row: Vec<String>) {
        assert_eq!(
            row.len(),
            self.header.len(),
            "row length differs from the header {:?}",
            self.header
        );
        self.rows.push(row);
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders as CSV text.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.header).expect("in-memory write");
        for r in &self.rows {
            w.write_record(r).expect("in-memory write");
        }
        String::from_utf8(w.into_inner().expect("in-memory flush")).expect("utf-8 cells")
    }

    /// Writes the table to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), IoError> {
        write_atomic(path, self.to_csv().as_bytes())
    }
}

/// Formats a number for CSV with full precision (`NaN` for missing values, which pandas reads).
pub fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:e}")
    } else {
        "NaN".to_string()
    }
}
