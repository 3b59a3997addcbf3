//! The `dtpsim` command line. Thin: parsing and printing; the work is in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use dtpsim::discrete::train::TrainConfig;
use dtpsim::experiment::{load_json, parse_json, run_training};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The embedded default scenario (`scenarios/teacher_student_discrete.json`).
const DEFAULT_SCENARIO: &str = include_str!("../scenarios/teacher_student_discrete.json");

#[derive(Parser)]
#[command(
    name = "dtpsim",
    version,
    about = "Differential target propagation: continuous-time simulator with exact discrete references",
    long_about = "dtpsim simulates differential target propagation (DTP) as derived in \
'Deriving Differential Target Propagation from Iterating Approximate Inverses'.\n\n\
With no command it trains BP, DTP, DTP1 (difference targets) and DTP1 (iterated targets) on \
the embedded teacher-student scenario and writes metrics.csv and a learning-curve plot into \
out/default.\n\nThe equations are in docs/MODEL.md; section numbers refer to the paper."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train discrete reference algorithms on a task and write metrics.csv, weights and plots.
    Train {
        /// Scenario JSON (see README, "Discrete training scenario"); omit for the embedded default.
        file: Option<PathBuf>,
        /// Output folder (created; summary.json is written last).
        #[arg(long, default_value = "out/train")]
        out: PathBuf,
        /// Override the number of training examples.
        #[arg(long)]
        examples: Option<usize>,
        /// Override the seed (data, initialisation, example order).
        #[arg(long)]
        seed: Option<u64>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Run the theory suite T1–T5: print one row per claim and write its plots.
    Theory {
        /// Folder for the plots (PNG and SVG).
        #[arg(long, default_value = "out/theory")]
        out: PathBuf,
    },
}

fn train(
    file: Option<&Path>,
    out: &Path,
    examples: Option<usize>,
    seed: Option<u64>,
    quiet: bool,
) -> anyhow::Result<bool> {
    let mut cfg: TrainConfig = match file {
        Some(path) => load_json(path)?,
        None => parse_json(DEFAULT_SCENARIO).context("embedded default scenario")?,
    };
    if let Some(n) = examples {
        cfg.examples = n;
    }
    if let Some(s) = seed {
        cfg.seed = s;
    }
    let report = run_training(&cfg, out, !quiet)?;
    println!(
        "{:<18} {:>10} {:>14} {:>14} {:>14} {:>10}",
        "algorithm", "examples", "initial loss", "final loss", "final mse", "accuracy"
    );
    let mut ok = true;
    for o in &report.outcomes {
        let (first, last) = (o.rows.first(), o.rows.last());
        println!(
            "{:<18} {:>10} {:>14.6} {:>14.6} {:>14.6} {:>10}",
            o.name,
            last.map_or(0, |r| r.examples),
            first.map_or(f64::NAN, |r| r.test_loss),
            last.map_or(f64::NAN, |r| r.test_loss),
            last.map_or(f64::NAN, |r| r.test_mse),
            last.filter(|r| r.test_accuracy.is_finite())
                .map_or("-".to_string(), |r| format!("{:.3}", r.test_accuracy)),
        );
        if let Some(e) = &o.error {
            eprintln!("error: {e}");
            ok = false;
        }
    }
    println!(
        "wrote {} files to {} in {:.1} s",
        report.files.len(),
        out.display(),
        report.seconds
    );
    Ok(ok)
}

fn theory(out: &Path) -> anyhow::Result<bool> {
    dtpsim::record::create_dir(out)?;
    let start = std::time::Instant::now();
    let (rows, files) = dtpsim::theory::run_all(Some(out))?;
    println!(
        "{:<5} {:<72} {:<52} {:<16} result",
        "id", "claim", "measured", "expected"
    );
    let mut ok = true;
    for r in &rows {
        let verdict = match r.pass {
            Some(true) => "pass",
            Some(false) => {
                ok = false;
                "FAIL"
            }
            None => "info",
        };
        println!(
            "{:<5} {:<72} {:<52} {:<16} {verdict}",
            r.id, r.claim, r.measured, r.expected
        );
    }
    println!(
        "plots: {}",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "theory suite finished in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        None => train(None, Path::new("out/default"), None, None, false),
        Some(Command::Train {
            file,
            out,
            examples,
            seed,
            quiet,
        }) => train(file.as_deref(), out, *examples, *seed, *quiet),
        Some(Command::Theory { out }) => theory(out),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
