//! Sweeps that outgrow one machine (issue 12): shards, idempotent reruns, `dtpsim sweep
//! gather`, and the Slurm job array of `--slurm` (its tasks run here by bash, with
//! `SLURM_ARRAY_TASK_ID` set as Slurm sets it; scripts/slurm_local.sh runs it on a real
//! single-node Slurm). A sweep made on one machine, by shards one after another, or by the
//! array's tasks gives the same files, apart from the timing fields listed in [`normalised`].

mod common;

use common::{dtpsim, scratch, stderr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXE: &str = env!("CARGO_BIN_EXE_dtpsim");

/// A short quick-start run (continuous engine, DTP1 and BP references, traces): about 0.1 s.
fn write_scenario(dir: &Path) {
    std::fs::write(dir.join("s.json"), common::tiny_quickstart().to_string()).unwrap();
}

/// The sweep of every test: two leak values × three seeds, six runs.
const GRID: [&str; 7] = [
    "sweep",
    "s.json",
    "--param",
    "engine.dynamics.leak=0.25,1",
    "--seeds",
    "3",
    "--quiet",
];

/// Runs the binary in `cwd` with `args` (and `env`).
fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(EXE);
    c.args(args).current_dir(cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("binary runs")
}

/// [`GRID`] into `out` with `extra` arguments.
fn sweep(cwd: &Path, out: &str, extra: &[&str]) -> Output {
    let mut args: Vec<&str> = GRID.to_vec();
    args.extend(["--out", out]);
    args.extend(extra);
    run(cwd, &args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path) -> BTreeMap<PathBuf, PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A file's contents with its timing fields taken out, so that two sweeps can be compared:
///
/// - `metrics.csv`, `sweep.csv`: the `wall_seconds` column;
/// - a run's `summary.json`: `seconds` and `continuous.field_seconds`;
/// - `sweep.json`: `command` (it names the sweep folder, which differs between the two);
///
/// every other file (traces, weights, `sweep_summary.csv`, every PNG and SVG) byte for byte.
fn normalised(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    match name.as_str() {
        "metrics.csv" | "sweep.csv" => {
            let mut r = csv::Reader::from_reader(&bytes[..]);
            let header = r.headers().unwrap().clone();
            let keep: Vec<usize> = (0..header.len())
                .filter(|&i| &header[i] != "wall_seconds")
                .collect();
            assert!(keep.len() < header.len(), "{name} has wall_seconds");
            let mut text: Vec<String> = vec![keep
                .iter()
                .map(|&i| header[i].to_string())
                .collect::<Vec<_>>()
                .join(",")];
            for rec in r.records() {
                let rec = rec.unwrap();
                text.push(
                    keep.iter()
                        .map(|&i| rec[i].to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            text.join("\n").into_bytes()
        }
        "summary.json" | "sweep.json" => {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for field in ["/seconds", "/continuous/field_seconds", "/command"] {
                if let Some(x) = v.pointer_mut(field) {
                    *x = serde_json::Value::Null;
                }
            }
            v.to_string().into_bytes()
        }
        _ => bytes,
    }
}

/// Asserts that the sweep folders `a` and `b` hold the same files with the same contents
/// (apart from timing, see [`normalised`]), and that no partial file is left.
fn assert_same_sweep(a: &Path, b: &Path, ignore: &[&str]) {
    let skip = |m: BTreeMap<PathBuf, PathBuf>| -> BTreeMap<PathBuf, PathBuf> {
        m.into_iter()
            .filter(|(k, _)| !ignore.iter().any(|i| k.starts_with(i)))
            .collect()
    };
    let (fa, fb) = (skip(files(a)), skip(files(b)));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "the same files"
    );
    assert!(fa.keys().all(|k| !k.to_string_lossy().contains("partial")));
    // the run folders' files and the sweep's: 6 runs × (CSVs, JSONs, plots) and the top level
    assert!(fa.len() > 6 * 8, "{}", fa.len());
    for (k, pa) in &fa {
        assert!(
            normalised(pa) == normalised(&fb[k]),
            "{} differs between {} and {}",
            k.display(),
            a.display(),
            b.display()
        );
    }
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// A full sweep and the same grid in four shards run one after another, then gathered, give
/// the same run folders, sweep.csv, summary and plots; before the gather a shard has written
/// run folders only, and gathering an unfinished sweep lists what is missing (exit 3).
#[test]
fn shards_gathered_give_the_files_of_a_full_sweep() {
    let dir = scratch("cluster-shards");
    write_scenario(&dir);
    let full = sweep(&dir, "full", &["--jobs", "2"]);
    assert_eq!(full.status.code(), Some(0), "{}", stderr(&full));
    for i in [0, 2, 1] {
        let shard = format!("{i}/4");
        let o = sweep(&dir, "sharded", &["--shard", &shard]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("shard {shard}: ")),
            "{}",
            stdout(&o)
        );
    }
    // shard 0 ran runs 000 and 004 only, and nothing is gathered yet
    assert!(dir.join("sharded/runs/004/summary.json").exists());
    assert!(!dir.join("sharded/runs/003").exists());
    assert!(!dir.join("sharded/sweep.csv").exists());
    // shard 3 (runs 003) has not run: gather lists it, writes what it can, exits 3
    let g = run(&dir, &["sweep", "gather", "sharded"], &[]);
    assert_eq!(g.status.code(), Some(3), "{}", stderr(&g));
    let err = stderr(&g);
    assert!(
        err.contains("run 003 (engine.dynamics.leak=1 seed=1): missing: no summary.json")
            && err.contains("1 of 6 runs are not complete")
            && err.contains("--param engine.dynamics.leak=0.25,1 --seeds 3 --out"),
        "{err}"
    );
    let csv = std::fs::read_to_string(dir.join("sharded/sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    assert!(csv.lines().nth(4).unwrap().contains(",missing,"), "{csv}");
    let o = sweep(&dir, "sharded", &["--shard", "3/4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let g = run(&dir, &["sweep", "gather", "sharded"], &[]);
    assert_eq!(g.status.code(), Some(0), "{}", stderr(&g));
    assert!(
        stdout(&g).contains("6 runs: 6 complete, 0 stopped, 0 failed, 0 interrupted, 0 missing")
    );
    assert_same_sweep(&dir.join("full"), &dir.join("sharded"), &[]);
    // gathering again, or gathering the full sweep, changes nothing
    let before = normalised(&dir.join("full/sweep.csv"));
    let g = run(&dir, &["sweep", "gather", "full"], &[]);
    assert_eq!(g.status.code(), Some(0), "{}", stderr(&g));
    assert!(normalised(&dir.join("full/sweep.csv")) == before);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sweep run again into its folder skips the complete runs, reruns a run without
/// summary.json, a deleted one and an interrupted one, and ends with the same sweep.
#[test]
fn a_sweep_run_again_skips_complete_runs_and_redoes_the_rest() {
    let dir = scratch("cluster-rerun");
    write_scenario(&dir);
    let first = sweep(&dir, "sw", &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let summary = |i: &str| dir.join(format!("sw/runs/{i}/summary.json"));
    let kept = mtime(&summary("000"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    // nothing to do: every run is skipped
    let again = sweep(&dir, "sw", &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let out = stdout(&again);
    assert!(
        out.contains("6 of 6 runs are complete already and are skipped"),
        "{out}"
    );
    assert!(!out.contains("run 000: dtpsim run"), "{out}");
    assert_eq!(mtime(&summary("000")), kept);
    // a run killed before its summary, a deleted run, an interrupted run
    std::fs::remove_file(summary("002")).unwrap();
    std::fs::remove_dir_all(dir.join("sw/runs/004")).unwrap();
    let text = std::fs::read_to_string(summary("005")).unwrap();
    std::fs::write(
        summary("005"),
        text.replace("\"status\": \"complete\"", "\"status\": \"interrupted\""),
    )
    .unwrap();
    std::fs::write(dir.join("sw/runs/002/metrics.csv.partial"), "model\n").unwrap();
    // gather sees them: two missing and one interrupted grid point, exit 3
    let g = run(&dir, &["sweep", "gather", "sw"], &[]);
    assert_eq!(g.status.code(), Some(3), "{}", stderr(&g));
    let listed: Vec<String> = stderr(&g)
        .lines()
        .filter(|l| l.starts_with("run "))
        .map(|l| {
            format!(
                "{} {}",
                &l[4..7],
                l.split("): ").nth(1).unwrap().split(':').next().unwrap()
            )
        })
        .collect();
    assert_eq!(
        listed,
        ["002 missing", "004 missing", "005 interrupted"],
        "{}",
        stderr(&g)
    );
    let again = sweep(&dir, "sw", &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let out = stdout(&again);
    let redone: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("run ").and_then(|l| l.split(':').next()))
        .collect();
    assert_eq!(redone, ["002", "004", "005"], "{out}");
    assert!(
        out.contains("3 of 6 runs are complete already and are skipped"),
        "{out}"
    );
    assert_eq!(mtime(&summary("000")), kept);
    assert!(summary("004").exists() && !dir.join("sw/runs/002/metrics.csv.partial").exists());
    // the same sweep as one made in one go
    let fresh = sweep(&dir, "fresh", &[]);
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));
    assert_same_sweep(&dir.join("sw"), &dir.join("fresh"), &[]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sweep folder holds one grid: another one (values, seeds, --set, the scenario file) is
/// refused with exit 2, naming the difference and leaving the folder as it was; --force starts
/// over. Bad --shard values and --shard with --force are refused with exit 2.
#[test]
fn another_grid_or_a_bad_shard_is_refused() {
    let dir = scratch("cluster-refuse");
    write_scenario(&dir);
    let o = sweep(&dir, "sw", &["--shard", "1/4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let grid = std::fs::read(dir.join("sw/sweep.json")).unwrap();
    let refuse = |args: &[&str], needles: &[&str]| {
        let o = run(&dir, args, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(std::fs::read(dir.join("sw/sweep.json")).unwrap(), grid);
    };
    let mut other = GRID.to_vec();
    other[3] = "engine.dynamics.leak=0.25,0.5";
    other.extend(["--out", "sw"]);
    refuse(
        &other,
        &[
            "--out: sw: holds another sweep: --param: the folder's sweep has engine.dynamics.leak=0.25,1, this one engine.dynamics.leak=0.25,0.5",
            "--force",
        ],
    );
    let mut seeds = GRID.to_vec();
    seeds[5] = "2";
    seeds.extend(["--out", "sw", "--shard", "0/4"]);
    refuse(
        &seeds,
        &["--seeds: the folder's sweep has 3 seeds per grid point, this one 2"],
    );
    let mut set = GRID.to_vec();
    set.extend(["--out", "sw", "--set", "engine.dynamics.beta=0.3"]);
    refuse(
        &set,
        &["--set: the folder's sweep has [], this one [engine.dynamics.beta=0.3]"],
    );
    // the scenario file changed between two shards
    let text = std::fs::read_to_string(dir.join("s.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["engine"]["dynamics"]["beta"] = 0.3.into();
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let mut changed = GRID.to_vec();
    changed.extend(["--out", "sw", "--shard", "2/4"]);
    refuse(
        &changed,
        &["differs at engine.dynamics.beta: the folder's sweep has 0.2, this one 0.3"],
    );
    std::fs::write(dir.join("s.json"), text).unwrap();
    // shard numbers
    for (shard, needle) in [
        (
            "4/4",
            "there is no shard 4 of 4: shards are numbered from 0, so I is 0 … 3",
        ),
        ("1", "write I/N"),
        ("1/0", "at least 1"),
        ("a/4", "write I/N"),
    ] {
        let mut args = GRID.to_vec();
        args.extend(["--out", "sw", "--shard", shard]);
        refuse(&args, &["--shard", needle]);
    }
    let mut forced = GRID.to_vec();
    forced.extend(["--out", "sw", "--shard", "0/4", "--force"]);
    refuse(
        &forced,
        &["--force: with --shard it would remove the runs of the other shards"],
    );
    // --force replaces the sweep, whatever its grid
    let o = run(&dir, &[&other[..], &["--force"]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.join("sw/sweep.csv")).unwrap();
    assert!(csv.contains(",0.5,") && !csv.contains(",missing,"), "{csv}");
    // a folder of something else is not a sweep folder
    let g = dtpsim(&["sweep", "gather", "s.json"], &dir);
    assert_eq!(g.status.code(), Some(2));
    assert!(stderr(&g).contains("not a sweep folder"), "{}", stderr(&g));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--slurm --dry-run` writes sweep.sbatch into the sweep folder only: the array line, each
/// task's logs in slurm/, the absolute paths; its tasks, run as Slurm runs them, make the same
/// sweep as one machine. Resubmitting asks only for the shards with runs to do. Without
/// sbatch on the PATH (and without --dry-run) nothing is written.
#[test]
fn slurm_dry_run_writes_an_array_whose_tasks_make_the_same_sweep() {
    let dir = scratch("cluster-slurm");
    write_scenario(&dir);
    let o = sweep(
        &dir,
        "sl",
        &[
            "--slurm",
            "--dry-run",
            "--max-parallel",
            "2",
            "--time",
            "0:10:00",
            "--mem",
            "1G",
            "--sbatch-arg=--account=lab",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("when every task has finished: dtpsim sweep gather"),
        "{}",
        stdout(&o)
    );
    let sl = std::fs::canonicalize(dir.join("sl")).unwrap();
    let script = std::fs::read_to_string(sl.join("sweep.sbatch")).unwrap();
    let lines: Vec<&str> = script.lines().collect();
    for want in [
        "#SBATCH --array=0-5%2".to_string(),
        format!("#SBATCH --output={}/slurm/%A_%a.out", sl.display()),
        format!("#SBATCH --error={}/slurm/%A_%a.err", sl.display()),
        "#SBATCH --time=0:10:00".into(),
        "#SBATCH --mem=1G".into(),
        "#SBATCH --account=lab".into(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} not in\n{script}");
    }
    let exec = lines.iter().find(|l| l.starts_with("exec ")).unwrap();
    let exe = std::fs::canonicalize(EXE).unwrap();
    assert!(
        exec.starts_with(&format!(
            "exec {} sweep {}/s.json ",
            exe.display(),
            std::fs::canonicalize(&dir).unwrap().display()
        )) && exec.ends_with(&format!(
            "--out {} --jobs 1 --quiet --shard \"$SLURM_ARRAY_TASK_ID/6\"",
            sl.display()
        )),
        "{exec}"
    );
    // nothing outside the sweep folder
    let mut top: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    top.sort();
    assert_eq!(top, ["s.json", "sl"]);
    // the array's tasks as Slurm starts them: bash, in another folder, with the task id
    let elsewhere = scratch("cluster-slurm-cwd");
    for task in [5, 0, 3, 1] {
        let o = Command::new("bash")
            .arg(sl.join("sweep.sbatch"))
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .current_dir(&elsewhere)
            .output()
            .unwrap();
        assert!(o.status.success(), "task {task}: {}", stderr(&o));
    }
    // resubmitting asks for the two shards left, in fewer shards the assignment changes but
    // complete runs stay skipped
    let o = sweep(&dir, "sl", &["--slurm", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = std::fs::read_to_string(sl.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=2,4\n"), "{script}");
    let o = sweep(&dir, "sl", &["--slurm", "--dry-run", "--shards", "4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = std::fs::read_to_string(sl.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0,2\n"), "{script}");
    for task in [0, 2] {
        let o = Command::new("bash")
            .arg(sl.join("sweep.sbatch"))
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .output()
            .unwrap();
        assert!(o.status.success(), "task {task}: {}", stderr(&o));
    }
    let o = sweep(&dir, "sl", &["--slurm", "--dry-run"]);
    assert!(stdout(&o).contains("all 6 runs are complete already: nothing to submit"));
    let g = run(&dir, &["sweep", "gather", "sl"], &[]);
    assert_eq!(g.status.code(), Some(0), "{}", stderr(&g));
    let full = sweep(&dir, "full", &[]);
    assert_eq!(full.status.code(), Some(0), "{}", stderr(&full));
    assert_same_sweep(&dir.join("full"), &sl, &["sweep.sbatch", "slurm"]);
    // without sbatch on the PATH, --slurm writes nothing and says what to do
    let mut args = GRID.to_vec();
    args.extend(["--out", "none", "--slurm"]);
    let o = run(&dir, &args, &[("PATH", "/nonexistent")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--slurm: sbatch is not on the PATH")
            && stderr(&o).contains("--dry-run"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("none").exists());
    // Slurm options are checked before anything is written
    let mut args = GRID.to_vec();
    args.extend(["--out", "none", "--slurm", "--dry-run", "--time", "1 hour"]);
    let o = run(&dir, &args, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--time"), "{}", stderr(&o));
    assert!(!dir.join("none").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&elsewhere).unwrap();
}

/// The comparison of [`assert_same_sweep`] for scripts/slurm_local.sh: the sweep folders
/// `$DTPSIM_SWEEP_A` and `$DTPSIM_SWEEP_B` (a Slurm array's, its `sweep.sbatch` and `slurm/`
/// aside) hold the same files. Run with `-- --ignored`; fails when the variables are not set.
#[test]
#[ignore = "compares two folders named by the environment; run by scripts/slurm_local.sh"]
fn two_sweep_folders_named_by_the_environment_are_the_same() {
    let folder = |var: &str| {
        PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
            panic!("set {var}: DTPSIM_SWEEP_A and DTPSIM_SWEEP_B name the two sweep folders")
        }))
    };
    assert_same_sweep(
        &folder("DTPSIM_SWEEP_A"),
        &folder("DTPSIM_SWEEP_B"),
        &["sweep.sbatch", "slurm"],
    );
}
