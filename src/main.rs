//! The `dtpsim` command line. Thin: parsing and printing; the work is in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The embedded quick-start scenario run by `dtpsim` with no arguments.
const QUICKSTART: &str = include_str!("../scenarios/quickstart.json");

#[derive(Parser)]
#[command(
    name = "dtpsim",
    version,
    about = "Differential target propagation: continuous-time simulator with exact discrete references",
    long_about = "dtpsim simulates differential target propagation (DTP) as derived in \
'Deriving Differential Target Propagation from Iterating Approximate Inverses'.\n\n\
With no command it runs the embedded quick-start scenario (scenarios/quickstart.json: a \
10-10-10-10 tanh student learning a teacher network in continuous time, with discrete \
references) and writes its CSVs and plots into out/quickstart.\n\n\
Typical use:\n  dtpsim run scenarios/teacher_student.json --out out/ts\n  \
dtpsim run scenarios/teacher_student.json --set engine.dynamics.leak=1.0\n  \
dtpsim sweep scenarios/anytime.json --seeds 3 --jobs 2\n  \
dtpsim run scenarios/teacher_student_discrete.json   (references only: \"engine\": null)\n  \
dtpsim check my.json\n\n\
The equations are in docs/MODEL.md; section numbers refer to the paper."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Threads for the engine's matrix products and weight passes (default: all cores).
    /// Results do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Memory one run may use, in GiB (default: 80% of this machine's memory). Scenarios whose
    /// estimate exceeds it are refused before anything is allocated.
    #[arg(long, global = true, value_name = "GIB")]
    max_memory: Option<f64>,
    /// Hours of work one run may take, estimated at 20 GFLOP/s (default: 336, 14 days).
    #[arg(long, global = true, value_name = "HOURS")]
    max_hours: Option<f64>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario: continuous engine (+ discrete references); writes summary.json,
    /// metrics.csv, traces.csv, weights and plots.
    Run {
        /// Scenario JSON (scenarios/*.json; format in README and scenarios/scenario.schema.json).
        #[arg(required_unless_present = "resume")]
        file: Option<PathBuf>,
        /// Continue the stopped or killed run in this folder from its last checkpoints (its
        /// own scenario and --set arguments are used; checkpoints are taken at every epoch end
        /// and every outputs.checkpoint_every trials). Ends with the files an uninterrupted run
        /// writes.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["file", "out", "sets", "force"])]
        resume: Option<PathBuf>,
        /// Output folder (default out/<file stem>); must be empty or absent, see --force.
        /// summary.json is written last and marks a finished run.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a field before checking: --set engine.protocol.t_stim=9 (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Replace the earlier run in --out (only dtpsim's own files are removed); without it a
        /// folder that holds files is refused.
        #[arg(long)]
        force: bool,
        /// With --resume: continue the run to this many epochs, more than it was started with
        /// (a run given in epochs). It then ends as a run started with them would, bit for bit;
        /// refused when something depends on the run's length (a cosine rate schedule, traces
        /// of the "last" trials).
        #[arg(long, value_name = "N")]
        epochs: Option<usize>,
    },
    /// Check a scenario and print it resolved (every default filled in).
    Check {
        file: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// Run a grid of parameter values × seeds in parallel; writes sweep.csv and one plot per
    /// metric. Without --param, the scenario's own "sweep" section is used.
    Sweep(Box<SweepArgs>),
    /// Redraw the plots of a run or sweep folder from its CSV files.
    Plot { dir: PathBuf },
    /// Compare several runs: every model's test accuracy (or loss) on the whole test set at
    /// each epoch end, against training examples seen, in one plot; writes epochs.csv,
    /// compare.csv and accuracy_vs_examples.png/.svg into --out and prints a Markdown table.
    /// Runs still going (metrics.csv.partial) are read as they stand.
    Compare {
        /// Output folders of dtpsim run (a model name found in two runs is labelled run/model),
        /// or the epochs.csv of an earlier comparison (with its compare.csv beside it), whose
        /// curves a run folder of the same name replaces.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Folder for the comparison's files.
        #[arg(long, default_value = "out/compare")]
        out: PathBuf,
    },
    /// Write the weights each model of a run had at its last checkpoint, while the run goes on
    /// or after it stopped: weights_<model>_trial<N>.json (encoders and decoders; the engine's
    /// read out of its ODE state), the format network.weights reads.
    Export {
        /// The run folder (the --out of dtpsim run).
        dir: PathBuf,
        /// Folder for the weights files (default: <DIR>/export).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace weights files already there.
        #[arg(long)]
        force: bool,
    },
    /// Print the JSON Schema of the scenario format.
    Schema,
    /// Measure the continuous engine: the full-state (ode_solvers) and the low-rank path on the
    /// same scenario, ms per evaluation, trials per second, GFLOP/s of the vector field against
    /// a matrix-multiply peak, peak memory of a 10× longer run.
    Bench {
        /// Layer widths of the benchmark network.
        #[arg(long, value_delimiter = ',', default_value = "784,256,256,10")]
        widths: Vec<usize>,
        /// Replica counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        replicas: Vec<usize>,
        /// Learning trials per measurement.
        #[arg(long, default_value_t = 3)]
        trials: usize,
        /// Runs per measurement (the median is reported, with min and max).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Trials of the short memory run (the long one has 10×).
        #[arg(long, default_value_t = 4)]
        memory_trials: usize,
        /// Folder for bench.json.
        #[arg(long, default_value = "out/bench")]
        out: PathBuf,
        /// Internal: run N trials and print the peak resident memory.
        #[arg(long, hide = true)]
        memory_probe: Option<usize>,
    },
    /// Run the theory suite T1–T8: print one row per claim and write its plots.
    Theory {
        /// Folder for the plots (PNG and SVG).
        #[arg(long, default_value = "out/theory")]
        out: PathBuf,
    },
}

fn bench(
    widths: &[usize],
    replicas: &[usize],
    trials: usize,
    repeats: usize,
    memory_trials: usize,
    out: &Path,
    probe: Option<usize>,
) -> anyhow::Result<u8> {
    use dtpsim::bench::{matmul_peak, peak_rss_kib, throughput, Case};
    use dtpsim::continuous::config::{Method, WeightsMode};
    if widths.len() < 2 || widths.contains(&0) || widths[widths.len() - 1] < 2 {
        anyhow::bail!("--widths: give at least two positive widths, the last (the number of classes) at least 2, e.g. 784,256,256,10");
    }
    if replicas.is_empty() || replicas.contains(&0) {
        anyhow::bail!("--replicas: give positive replica counts, e.g. 1,32");
    }
    if trials == 0 || repeats == 0 {
        anyhow::bail!("--trials and --repeats must be at least 1");
    }
    // the benchmark as a scenario, so that it is sized like any run before it allocates
    let mut sized = dtpsim::scenario::Scenario {
        task: dtpsim::data::Task::Clusters {
            dim: widths[0],
            classes: widths[widths.len() - 1],
            separation: 1.0,
        },
        ..Default::default()
    };
    sized.network.widths = widths.to_vec();
    sized.schedule.batch = replicas.iter().copied().max().unwrap_or(1);
    sized.schedule.trials = (trials * repeats * 6).max(memory_trials * 10);
    sized.schedule.warmup_trials = 0;
    sized.data.train = Some(sized.schedule.batch * trials);
    sized.data.test = Some(1);
    if let Some(engine) = &mut sized.engine {
        engine.solver.weights = WeightsMode::State;
    }
    sized
        .validate()
        .and_then(|()| dtpsim::resources::check(&sized))
        .map_err(|e| anyhow::anyhow!("--widths, --replicas, --trials: {}", e.message))?;
    let case = |replicas, weights, method| Case {
        replicas,
        weights,
        method,
        step: 0.1,
    };
    if let Some(n) = probe {
        let t = throughput(
            widths,
            case(replicas[0], WeightsMode::LowRank, Method::Dopri5),
            n,
            1,
            1,
        )?;
        println!(
            "peak_rss_kib={} state_bytes={} trials={}",
            peak_rss_kib().unwrap_or(0),
            t.state_bytes,
            n
        );
        return Ok(0);
    }
    dtpsim::record::create_dir(out)?;
    let threads = dtpsim::linalg::threads_in_use();
    let peak = matmul_peak(256, 1.0).max(matmul_peak(512, 2.0));
    println!("matrix-multiply peak (the engine's product on {threads} threads): {peak:.2} GFLOP/s");
    println!(
        "{:>3} {:<22} {:>7} {:>17} {:>9} {:>9} {:>10} {:>8} {:>9} {:>7}",
        "B",
        "path",
        "trials",
        "seconds (min-max)",
        "trials/s",
        "ms/eval",
        "evals/unit",
        "GFLOP/s",
        "% of peak",
        "in rhs"
    );
    let mut results = Vec::new();
    let mut ratios = Vec::new();
    for &b in replicas {
        let cases = [
            case(b, WeightsMode::State, Method::Dopri5),
            case(b, WeightsMode::LowRank, Method::Dopri5),
            case(b, WeightsMode::State, Method::Rk4),
            case(b, WeightsMode::LowRank, Method::Rk4),
        ];
        let mut rows = Vec::new();
        for c in cases {
            let t = throughput(widths, c, trials, repeats, 1)?;
            println!(
                "{:>3} {:<22} {:>7} {:>6.2} ({:.2}-{:.2}) {:>9.3} {:>9.3} {:>10.1} {:>8.2} {:>8.1}% {:>6.1}%",
                b,
                c.label(),
                t.trials,
                t.wall_seconds,
                t.wall_min,
                t.wall_max,
                t.trials_per_second,
                t.ms_per_evaluation,
                t.evaluations_per_time_unit,
                t.field_gflops,
                100.0 * t.field_gflops / peak,
                100.0 * t.field_share
            );
            rows.push(t);
        }
        for (name, state, fast) in [
            ("dopri5", &rows[0], &rows[1]),
            ("rk4 h=0.1", &rows[2], &rows[3]),
        ] {
            let ratio = fast.trials_per_second / state.trials_per_second;
            println!("    B = {b}, {name}: low_rank / state = {ratio:.2}x trials per second");
            ratios.push(
                serde_json::json!({"replicas": b, "method": name, "low_rank_over_state": ratio}),
            );
        }
        results.extend(rows);
    }
    let exe = std::env::current_exe()?;
    let widths_arg = widths
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut memory = Vec::new();
    for n in [memory_trials, 10 * memory_trials] {
        let output = std::process::Command::new(&exe)
            .args([
                "bench",
                "--memory-probe",
                &n.to_string(),
                "--replicas",
                "1",
                "--widths",
                &widths_arg,
            ])
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let kib: u64 = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("peak_rss_kib="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("memory probe printed no peak: {text}"))?;
        println!(
            "peak resident memory, low_rank dopri5, {n} trials at B = 1: {:.1} MiB",
            kib as f64 / 1024.0
        );
        memory.push(serde_json::json!({"trials": n, "peak_rss_kib": kib}));
    }
    let summary = serde_json::json!({
        "dtpsim_version": env!("CARGO_PKG_VERSION"),
        "threads": threads,
        "matmul_peak_gflops": peak,
        "throughput": results,
        "ratios": ratios,
        "memory": memory,
    });
    let path = out.join("bench.json");
    dtpsim::record::write_atomic(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(0)
}

/// What `dtpsim sweep` is given.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "A sweep folder can be filled in several goes: runs whose summary.json says \
complete are skipped, the others run (again). --shard I/N runs one part of the grid; --slurm \
submits every part as a Slurm job array; `dtpsim sweep gather DIR` then builds sweep.csv and \
the plots. See \"Running on a cluster\" in the README."
)]
struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// Scenario JSON.
    #[arg(required = true)]
    file: Option<PathBuf>,
    /// A swept field and its values: --param engine.protocol.t_stim=6,9,15 (repeatable).
    #[arg(long = "param", value_name = "PATH=V1,V2,...")]
    params: Vec<String>,
    /// Seeds per grid point (seed, seed+1, ...); default: the scenario's sweep.seeds or 1.
    #[arg(long)]
    seeds: Option<usize>,
    /// Runs at a time (default: number of cores; with --slurm, --cpus).
    #[arg(long)]
    jobs: Option<usize>,
    /// Fixed overrides applied to every run.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// Output folder (default out/<file stem>_sweep): absent, empty, or holding this same
    /// sweep (its complete runs are skipped, the others run again).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Start over: replace the sweep in --out, whatever its grid (only dtpsim's own files are
    /// removed).
    #[arg(long)]
    force: bool,
    /// Run only shard I of N: the runs whose number modulo N is I. Shards are numbered from
    /// 0, like $SLURM_ARRAY_TASK_ID; --shard 0/N … --shard N-1/N together run the grid. A shard
    /// writes run folders only; gather them with `dtpsim sweep gather DIR`.
    #[arg(long, help_heading = "Cluster", value_name = "I/N", value_parser = dtpsim::sweep::parse_shard, conflicts_with = "slurm")]
    shard: Option<dtpsim::sweep::Shard>,
    /// Write sweep.sbatch into --out: a Slurm job array with one task per shard that has runs
    /// to do, and submit it with sbatch (see --dry-run); prints the job id and the gather
    /// command.
    #[arg(long, help_heading = "Cluster")]
    slurm: bool,
    /// Slurm partition of the array's tasks.
    #[arg(long, help_heading = "Cluster", requires = "slurm")]
    partition: Option<String>,
    /// Time limit of each task, in Slurm's format (2:00:00, 1-12, 30 for minutes).
    #[arg(
        long,
        help_heading = "Cluster",
        requires = "slurm",
        value_name = "TIME"
    )]
    time: Option<String>,
    /// CPUs per task (default 1); each task runs this many runs at a time unless --jobs.
    #[arg(long, help_heading = "Cluster", requires = "slurm", value_name = "C")]
    cpus: Option<usize>,
    /// Memory per task, e.g. 4G.
    #[arg(long, help_heading = "Cluster", requires = "slurm", value_name = "M")]
    mem: Option<String>,
    /// Tasks running at a time (--array=…%K).
    #[arg(long, help_heading = "Cluster", requires = "slurm", value_name = "K")]
    max_parallel: Option<usize>,
    /// Shards (array tasks) to split the grid into (default: one per run, at most 1000, the
    /// array size Slurm allows by default).
    #[arg(long, help_heading = "Cluster", requires = "slurm", value_name = "N")]
    shards: Option<usize>,
    /// A further #SBATCH option, e.g. --sbatch-arg=--account=lab (repeatable).
    #[arg(
        long = "sbatch-arg",
        help_heading = "Cluster",
        requires = "slurm",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    sbatch_args: Vec<String>,
    /// With --slurm: write sweep.sbatch (and sweep.json) but do not submit it.
    #[arg(long, help_heading = "Cluster", requires = "slurm")]
    dry_run: bool,
}

/// `dtpsim sweep gather`.
#[derive(Subcommand)]
enum SweepAction {
    /// Build sweep.csv, sweep_summary.csv and the plots of a sweep folder from its run folders
    /// (after its shards or Slurm tasks have finished). Every grid point gets a row. Exit
    /// status: 0 every run complete; 1 some run stopped (diverged) or failed; 3 some grid
    /// points have no finished run (missing or interrupted): they are listed, with the command
    /// that runs them.
    Gather {
        /// The sweep folder (the --out of dtpsim sweep).
        dir: PathBuf,
    },
}

/// The options given before the command that a Slurm task must repeat.
fn global_args(cli: &Cli) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(t) = cli.threads {
        words.extend(["--threads".to_string(), t.to_string()]);
    }
    if let Some(m) = cli.max_memory {
        words.extend(["--max-memory".to_string(), m.to_string()]);
    }
    if let Some(h) = cli.max_hours {
        words.extend(["--max-hours".to_string(), h.to_string()]);
    }
    words
}

/// Prints `sweep.csv` and the counts of a finished (or gathered) sweep; returns the exit
/// status of [`sweep_exit`].
fn sweep_report(outcome: &dtpsim::sweep::SweepOutcome, out: &Path) -> anyhow::Result<u8> {
    let table = std::fs::read_to_string(out.join("sweep.csv"))?;
    print!("{table}");
    println!(
        "{} runs: {} complete, {} stopped, {} failed, {} interrupted, {} missing; outputs in {}",
        outcome.total(),
        outcome.complete,
        outcome.stopped,
        outcome.failed,
        outcome.interrupted,
        outcome.missing,
        out.display()
    );
    Ok(sweep_exit(outcome))
}

/// The exit status of a sweep or shard: 3 if grid points are missing, 130 if a run was
/// interrupted, 1 if a run stopped or failed, else 0.
fn sweep_exit(outcome: &dtpsim::sweep::SweepOutcome) -> u8 {
    if outcome.missing > 0 {
        EXIT_INCOMPLETE
    } else if outcome.interrupted > 0 {
        EXIT_INTERRUPTED
    } else if outcome.stopped + outcome.failed > 0 {
        1
    } else {
        0
    }
}

fn sweep(args: &SweepArgs, global: Vec<String>) -> anyhow::Result<u8> {
    if let Some(SweepAction::Gather { dir }) = &args.action {
        return gather(dir);
    }
    let Some(file) = &args.file else {
        anyhow::bail!("give a scenario file: dtpsim sweep FILE [--param PATH=V1,V2 ...], or dtpsim sweep gather DIR");
    };
    let command = dtpsim::sweep::SweepCommand {
        global,
        file: file.clone(),
        params: args.params.clone(),
        seeds: args.seeds,
        sets: args.sets.clone(),
    };
    let plan = dtpsim::sweep::SweepPlan::new(&command)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let mut d = default_out(file);
        d.set_file_name(format!(
            "{}_sweep",
            d.file_name()
                .map_or("run".into(), |n| n.to_string_lossy().to_string())
        ));
        d
    });
    if args.slurm {
        let slurm = dtpsim::sweep::SlurmOptions {
            partition: args.partition.clone(),
            time: args.time.clone(),
            cpus: args.cpus,
            mem: args.mem.clone(),
            max_parallel: args.max_parallel,
            shards: args.shards,
            extra: args.sbatch_args.clone(),
            dry_run: args.dry_run,
        };
        let s = dtpsim::sweep::submit_slurm(&plan, &out, args.jobs, args.force, &slurm)?;
        let gather = format!(
            "dtpsim sweep gather {}",
            dtpsim::sweep::shell_quote(&s.out.display().to_string())
        );
        let Some(script) = &s.script else {
            println!(
                "all {} runs are complete already: nothing to submit; gather them with: {gather}",
                s.runs
            );
            return Ok(0);
        };
        let todo = format!(
            "{} runs in {} shards, {} complete already; array {}",
            s.runs, s.shards, s.complete, s.array
        );
        match &s.job_id {
            Some(id) => {
                println!("submitted Slurm job {id} ({todo})");
                println!(
                    "logs: {}/slurm/{id}_<task>.out and .err; follow it with: squeue -j {id}",
                    s.out.display()
                );
            }
            None => {
                println!(
                    "wrote {} ({todo}); not submitted (--dry-run): submit it with: sbatch {}",
                    script.display(),
                    dtpsim::sweep::shell_quote(&script.display().to_string())
                );
            }
        }
        println!("when every task has finished: {gather}");
        return Ok(0);
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let options = dtpsim::sweep::SweepOptions {
        jobs,
        progress: !args.quiet,
        force: args.force,
        shard: args.shard,
    };
    let outcome =
        dtpsim::sweep::run_sweep(&plan, &out, &options).map_err(|e| after_writing(e, &out))?;
    let Some(shard) = args.shard else {
        let code = sweep_report(&outcome, &out)?;
        for line in &outcome.unfinished {
            eprintln!("error: {line}");
        }
        return Ok(code);
    };
    for line in &outcome.unfinished {
        eprintln!("error: {line}");
    }
    println!(
        "shard {shard}: {} runs ({} skipped as complete): {} complete, {} stopped, {} failed, {} interrupted; when every shard has finished: dtpsim sweep gather {}",
        outcome.total(),
        outcome.skipped,
        outcome.complete,
        outcome.stopped,
        outcome.failed,
        outcome.interrupted,
        dtpsim::sweep::shell_quote(&out.display().to_string())
    );
    Ok(sweep_exit(&outcome))
}

/// `dtpsim sweep gather DIR`.
fn gather(dir: &Path) -> anyhow::Result<u8> {
    let outcome = dtpsim::sweep::gather(dir, &Default::default())?;
    sweep_report(&outcome, dir)?;
    let code = if outcome.missing + outcome.interrupted > 0 {
        EXIT_INCOMPLETE
    } else {
        sweep_exit(&outcome)
    };
    for line in &outcome.unfinished {
        eprintln!("{line}");
    }
    if !outcome.unfinished.is_empty() {
        let def = dtpsim::sweep::SweepDefinition::read(dir)?;
        eprintln!(
            "{} of {} runs are not complete; run them (complete runs are skipped) with: {}",
            outcome.unfinished.len(),
            outcome.total(),
            def.command
        );
        if dir.join("slurm").is_dir() {
            eprintln!(
                "or submit them as a job array: the same command with --slurm; the tasks' logs are in {}",
                dir.join("slurm").display()
            );
        }
    }
    Ok(code)
}

fn plot(dir: &Path) -> anyhow::Result<u8> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a folder; give the output folder of dtpsim run or sweep",
            dir.display()
        );
    }
    let mut files = Vec::new();
    if dir.join("sweep.csv").exists() {
        files.extend(dtpsim::report::plot_sweep_dir(dir)?);
        // and every run of the sweep
        let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        runs.sort();
        for run in runs.iter().filter(|r| r.join("metrics.csv").exists()) {
            files.extend(plot_run(run)?);
        }
    }
    if dir.join("metrics.csv").exists() || dir.join("traces.csv").exists() {
        files.extend(plot_run(dir)?);
    }
    if files.is_empty() {
        anyhow::bail!(
            "{}: no metrics.csv, traces.csv or sweep.csv to plot",
            dir.display()
        );
    }
    for f in &files {
        println!("{}", f.display());
    }
    Ok(0)
}

/// The plots of one run folder; the title and the loss come from its summary when it has one
/// (a stopped run may not).
fn plot_run(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let scenario = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            serde_json::from_value::<dtpsim::scenario::Scenario>(v["scenario"].clone()).ok()
        });
    let labels = dtpsim::report::RunLabels {
        title: scenario
            .as_ref()
            .map_or_else(|| "run".into(), |s| s.name.clone()),
        loss: scenario.map_or(dtpsim::Loss::Mse, |s| s.task.natural_loss()),
    };
    dtpsim::report::plot_run_dir(dir, &labels)
}

/// `dtpsim check`: the resolved scenario on stdout; on stderr what the run will use (data,
/// models, trials) and any warnings.
fn check(file: &Path, s: &dtpsim::scenario::Scenario) -> anyhow::Result<u8> {
    // the estimate comes first: nothing is allocated for a scenario that would not fit
    dtpsim::resources::check(s)?;
    s.initial_network()?;
    let data = dtpsim::runner::dataset(s)?;
    // with schedule.epochs the trial count follows from the training set
    let resolved = s.for_training_set(data.train.len())?;
    let s = &resolved;
    let estimate = dtpsim::resources::check(s)?;
    println!("{}", serde_json::to_string_pretty(s)?);
    for line in &data.provenance {
        eprintln!("data {line}");
    }
    let mut models: Vec<String> = s.engine.iter().map(|_| "continuous".to_string()).collect();
    models.extend(s.references.iter().map(|r| r.name.clone()));
    let sched = &s.schedule;
    eprintln!(
        "models: {}; trials {}..-1 warm up, 0..{} learn, batch {}, evaluated every {} trials",
        models.join(", "),
        sched.first_trial(),
        sched.trials as i64 - 1,
        sched.batch,
        sched.eval_every
    );
    eprintln!("{}", estimate.describe());
    print_warnings(s);
    eprintln!("{}: valid", file.display());
    Ok(0)
}

/// Exit status of a run or sweep stopped by Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Exit status of an error after the output folder was started (a write failed): the folder
/// holds an incomplete run, without `summary.json`.
const EXIT_INCOMPLETE: u8 = 3;

/// An error that happened after `out` received files: marked so that `main` exits with
/// [`EXIT_INCOMPLETE`] (2 is kept for "nothing written").
#[derive(Debug)]
struct Incomplete(anyhow::Error);

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Incomplete {}

/// Marks `e` as [`Incomplete`] when `out` holds anything (the error came after writing began).
fn after_writing(e: anyhow::Error, out: &Path) -> anyhow::Error {
    let written = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if written && e.downcast_ref::<dtpsim::ConfigError>().is_none() {
        anyhow::Error::new(Incomplete(e)).context(format!(
            "{} holds an incomplete run (no summary.json)",
            out.display()
        ))
    } else {
        e
    }
}

/// A scenario error found after parsing (a data file, a weights file) names the scenario file
/// like a parse error does.
fn name_file(e: anyhow::Error, file: &Path) -> anyhow::Error {
    if e.downcast_ref::<dtpsim::ConfigError>().is_some() {
        anyhow::anyhow!("{}: {e}", file.display())
    } else {
        e
    }
}

fn print_warnings(s: &dtpsim::scenario::Scenario) {
    for w in s.warnings() {
        eprintln!("warning: {w}");
    }
}

fn default_out(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().to_string());
    Path::new("out").join(stem)
}

fn run(
    scenario: dtpsim::scenario::Scenario,
    out: &Path,
    sets: &[String],
    quiet: bool,
    force: bool,
) -> anyhow::Result<u8> {
    print_warnings(&scenario);
    let run = if force {
        dtpsim::runner::run_scenario_replacing
    } else {
        dtpsim::runner::run_scenario
    };
    let report = run(&scenario, out, !quiet, sets).map_err(|e| after_writing(e, out))?;
    print_report(&report, out)
}

/// The table of a finished run in `out` and its status line; the exit status.
fn print_report(report: &dtpsim::runner::RunReport, out: &Path) -> anyhow::Result<u8> {
    println!(
        "{:<18} {:>8} {:>14} {:>14} {:>10}",
        "model", "trials", "initial loss", "final loss", "accuracy"
    );
    let acc = |v: f64| {
        if v.is_finite() {
            format!("{v:.3}")
        } else {
            "-".into()
        }
    };
    let mut models: Vec<(&str, &[dtpsim::metrics::MetricsRow])> = Vec::new();
    if let Some(c) = &report.continuous {
        models.push(("continuous", &c.rows));
    }
    models.extend(
        report
            .references
            .iter()
            .map(|r| (r.name.as_str(), &r.rows[..])),
    );
    for (name, rows) in models {
        if let (Some(f), Some(l)) = (rows.first(), rows.last()) {
            println!(
                "{:<18} {:>8} {:>14.6} {:>14.6} {:>10}",
                name,
                l.trial,
                f.test_loss,
                l.test_loss,
                acc(l.test_accuracy)
            );
        }
    }
    match &report.continuous {
        Some(c) => {
            // the counters cover every sitting of a resumed run, and so does the last row's clock
            let st = c.stats;
            let total = c
                .rows
                .last()
                .map_or(0.0, |r| r.wall_seconds)
                .max(report.seconds);
            let sitting = if total > report.seconds + 1.0 {
                format!("; this sitting {:.1} s", report.seconds)
            } else {
                String::new()
            };
            println!(
                "simulated time {:.0} in {:.1} s ({} vector-field evaluations, {:.0}% of the time in the vector field{sitting})",
                st.time,
                total,
                st.field.evaluations,
                100.0 * st.field.seconds / total.max(1e-9)
            );
        }
        None => println!("finished in {:.1} s", report.seconds),
    }
    for (name, _, error) in report.model_statuses() {
        if let Some(e) = error {
            eprintln!("error: {name}: {e}");
        }
    }
    let status = report.status();
    println!("{}: outputs in {}", status.name(), out.display());
    Ok(match status {
        dtpsim::runner::RunStatus::Complete => 0,
        dtpsim::runner::RunStatus::Stopped => 1,
        dtpsim::runner::RunStatus::Interrupted => EXIT_INTERRUPTED,
    })
}

fn theory(out: &Path) -> anyhow::Result<u8> {
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
    Ok(if ok { 0 } else { 1 })
}

fn main() -> ExitCode {
    // A closed pipe (`dtpsim compare … | head`) ends the process quietly, as it does for
    // other command-line tools, instead of a panic on the next print.
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Some(threads) = cli.threads {
        dtpsim::linalg::set_threads(threads);
    }
    let mut limits = dtpsim::resources::Limits::machine();
    for (flag, value) in [
        ("--max-memory", cli.max_memory),
        ("--max-hours", cli.max_hours),
    ] {
        if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            eprintln!("error: {flag}: give a positive number");
            return ExitCode::from(2);
        }
    }
    if let Some(gib) = cli.max_memory {
        limits.memory_bytes = gib * 1024.0 * 1024.0 * 1024.0;
    }
    if let Some(hours) = cli.max_hours {
        limits.hours = hours;
    }
    dtpsim::resources::set_limits(limits);
    dtpsim::interrupt::install();
    let result = match &cli.command {
        // the embedded demo replaces its own earlier output (and only dtpsim's files)
        None => dtpsim::scenario::parse_scenario(QUICKSTART, &[])
            .context("embedded quick-start scenario")
            .and_then(|s| run(s, Path::new("out/quickstart"), &[], false, true)),
        Some(Command::Run {
            resume: Some(dir),
            quiet,
            epochs,
            ..
        }) => dtpsim::runner::resume_run(dir, !quiet, *epochs)
            .map_err(|e| after_writing(e, dir))
            .and_then(|report| print_report(&report, dir)),
        Some(Command::Run {
            resume: None,
            epochs: Some(n),
            ..
        }) => Err(dtpsim::error::ConfigError::new(
            "--epochs",
            format!("extends a stopped run and needs --resume DIR; to run a scenario for {n} epochs, use --set schedule.epochs={n}"),
        )
        .into()),
        Some(Command::Run {
            file: Some(file),
            out,
            sets,
            quiet,
            force,
            ..
        }) => dtpsim::scenario::load_scenario(file, sets).and_then(|s| {
            let out = out.clone().unwrap_or_else(|| default_out(file));
            run(s, &out, sets, *quiet, *force).map_err(|e| name_file(e, file))
        }),
        Some(Command::Run { file: None, .. }) => Err(anyhow::anyhow!(
            "run: give a scenario file, or --resume DIR"
        )),
        Some(Command::Check { file, sets }) => dtpsim::scenario::load_scenario(file, sets)
            .and_then(|s| check(file, &s).map_err(|e| name_file(e, file))),
        Some(Command::Sweep(args)) => sweep(args, global_args(&cli)),
        Some(Command::Plot { dir }) => plot(dir),
        Some(Command::Compare { runs, out }) => {
            dtpsim::compare::compare_runs(runs, out).map(|c| {
                for r in &c.replaced {
                    eprintln!("note: {r}: the run folder's evaluations replace the epochs.csv rows");
                }
                print!("{}", dtpsim::compare::markdown_table(&c.curves));
                for f in &c.files {
                    println!("{}", f.display());
                }
                0
            })
        }
        Some(Command::Export { dir, out, force }) => {
            let out = out.clone().unwrap_or_else(|| dir.join("export"));
            dtpsim::runner::export_checkpoints(dir, &out, *force).map(|written| {
                for e in &written {
                    println!(
                        "{}: trial {} (epoch {:.2}) -> {}",
                        e.model,
                        e.trial,
                        e.epoch,
                        e.path.display()
                    );
                }
                0
            })
        }
        Some(Command::Schema) => {
            println!("{}", dtpsim::scenario::schema_json());
            Ok(0)
        }
        Some(Command::Theory { out }) => theory(out),
        Some(Command::Bench {
            widths,
            replicas,
            trials,
            repeats,
            memory_trials,
            out,
            memory_probe,
        }) => bench(
            widths,
            replicas,
            *trials,
            *repeats,
            *memory_trials,
            out,
            *memory_probe,
        ),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let incomplete = e.chain().any(|c| c.downcast_ref::<Incomplete>().is_some());
            ExitCode::from(if incomplete { EXIT_INCOMPLETE } else { 2 })
        }
    }
}
