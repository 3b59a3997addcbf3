//! Running a discrete training comparison end to end: validate, generate data, train every
//! algorithm in parallel (rayon) with progress bars, and write `metrics.csv`, one weights JSON
//! per algorithm, the learning-curve plot and, last, `summary.json` (its presence marks a
//! complete output folder).

use crate::discrete::train::{train_one, TrainConfig, TrainOutcome};
use crate::error::ConfigError;
use crate::plot::{LinePlot, Series};
use crate::record::{create_dir, num, write_atomic, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Reads a JSON configuration file into `T`; errors name the file, the JSON path and the
/// problem (`algorithms[1].beta: invalid type: string "x", expected f64`).
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    parse_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses JSON text into `T`, reporting the JSON path of the first error.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(top level)".to_string()
        } else {
            path
        };
        ConfigError::new(path, e.into_inner().to_string())
    })
}

/// What a finished comparison produced.
#[derive(Debug)]
pub struct TrainReport {
    pub outcomes: Vec<TrainOutcome>,
    pub files: Vec<PathBuf>,
    pub seconds: f64,
}

/// Trains every algorithm of `cfg` and writes the outputs into `out`.
pub fn run_training(cfg: &TrainConfig, out: &Path, progress: bool) -> anyhow::Result<TrainReport> {
    cfg.validate()?;
    cfg.initial_network()?; // a bad weights file fails before anything is written
    create_dir(out)?;
    let summary_path = out.join("summary.json");
    if summary_path.exists() {
        // an old summary would make a half-rewritten folder look complete
        std::fs::remove_file(&summary_path)
            .map_err(|e| anyhow::anyhow!("{}: cannot remove: {e}", summary_path.display()))?;
    }
    let start = Instant::now();
    let data = cfg
        .task
        .generate(cfg.train_size, cfg.test_size, cfg.seed)
        .map_err(ConfigError::from)?;
    let multi = MultiProgress::with_draw_target(if progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template(
        "{prefix:>18} [{bar:30}] {pos}/{len} examples  {elapsed_precise} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let outcomes: Vec<TrainOutcome> = cfg
        .algorithms
        .par_iter()
        .map(|named| {
            let bar = multi.add(ProgressBar::new(cfg.examples as u64));
            bar.set_style(style.clone());
            bar.set_prefix(named.name.clone());
            let outcome = train_one(cfg, named, &data, &|n| bar.set_position(n as u64));
            bar.finish();
            outcome
        })
        .collect::<Result<_, _>>()?;
    let mut files = Vec::new();

    let mut table = Table::new(&[
        "algorithm",
        "examples",
        "train_loss",
        "test_loss",
        "test_mse",
        "test_accuracy",
        "reconstruction",
        "relaxation_residual",
        "wall_seconds",
    ]);
    for o in &outcomes {
        for r in &o.rows {
            table.push(vec![
                r.algorithm.clone(),
                r.examples.to_string(),
                num(r.train_loss),
                num(r.test_loss),
                num(r.test_mse),
                num(r.test_accuracy),
                num(r.reconstruction),
                num(r.relaxation_residual),
                format!("{:.3}", r.wall_seconds),
            ]);
        }
    }
    let metrics = out.join("metrics.csv");
    table.write(&metrics)?;
    files.push(metrics);
    for o in &outcomes {
        let path = out.join(format!("weights_{}.json", o.name));
        crate::weights::save(&o.network, &path)?;
        files.push(path);
    }
    let mut plot = LinePlot::new(
        "Learning curves (discrete references)",
        "examples",
        "test loss",
    );
    plot.log_y = true;
    for (i, o) in outcomes.iter().enumerate() {
        plot.series.push(Series::new(
            o.name.clone(),
            o.rows
                .iter()
                .map(|r| (r.examples as f64, r.test_loss))
                .collect(),
            i,
        ));
    }
    files.extend(plot.save(&out.join("learning_curve"))?);

    let seconds = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "dtpsim_version": env!("CARGO_PKG_VERSION"),
        "kind": "discrete_training",
        "config": cfg,
        "seconds": seconds,
        "results": outcomes.iter().map(|o| {
            let last = o.rows.last();
            serde_json::json!({
                "algorithm": o.name,
                "examples": last.map(|r| r.examples),
                "final_test_loss": last.map(|r| r.test_loss).filter(|v| v.is_finite()),
                "final_test_mse": last.map(|r| r.test_mse).filter(|v| v.is_finite()),
                "final_test_accuracy": last.map(|r| r.test_accuracy).filter(|v| v.is_finite()),
                "initial_test_loss": o.rows.first().map(|r| r.test_loss),
                "error": o.error,
            })
        }).collect::<Vec<_>>(),
    });
    write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    files.push(summary_path);
    Ok(TrainReport {
        outcomes,
        files,
        seconds,
    })
}
