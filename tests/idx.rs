//! IDX data (MNIST / Fashion-MNIST layout) and class-index CSV labels: tiny files written by
//! the tests load raw and gzip-compressed; every malformed file gives exit 2, a message naming
//! the file and the fault, and no output folder. With Debian's `dataset-fashion-mnist`
//! installed, the real files load whole and the shipped scenario is a short smoke run.

mod common;

use common::{dtpsim, scratch, stderr};
use dtpsim::data::Task;
use dtpsim::idx::{PixelScaling, DEBIAN_DIR, IMAGES_MAGIC, LABELS_MAGIC};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The bytes of an IDX file: magic number, sizes, data.
fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Pixels (2 × 3 images) and labels (3 classes) of a tiny set of `n` images.
fn tiny_set(n: usize, offset: usize) -> (Vec<u8>, Vec<u8>) {
    let labels: Vec<u8> = (0..n).map(|i| ((i + offset) % 3) as u8).collect();
    let pixels: Vec<u8> = (0..n * 6)
        .map(|k| {
            let (i, p) = (k / 6, k % 6);
            // class c lights pixels 2c and 2c+1; noise elsewhere
            if p / 2 == usize::from(labels[i]) {
                200 + (k % 50) as u8
            } else {
                (k * 37 % 60) as u8
            }
        })
        .collect();
    (pixels, labels)
}

/// The four file names (raw; `.gz` appended when compressed).
const NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Writes a tiny IDX data set (30 training, 12 test images of 2 × 3 pixels, 3 classes) into
/// `dir`, gzip-compressed when `gz`; returns the four paths.
fn write_tiny(dir: &Path, gz: bool) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let (tp, tl) = tiny_set(30, 0);
    let (sp, sl) = tiny_set(12, 1);
    let contents = [
        idx_bytes(IMAGES_MAGIC, &[30, 2, 3], &tp),
        idx_bytes(LABELS_MAGIC, &[30], &tl),
        idx_bytes(IMAGES_MAGIC, &[12, 2, 3], &sp),
        idx_bytes(LABELS_MAGIC, &[12], &sl),
    ];
    NAMES
        .iter()
        .zip(contents)
        .map(|(name, bytes)| {
            let (path, bytes) = if gz {
                (dir.join(format!("{name}.gz")), gzip(&bytes))
            } else {
                (dir.join(name), bytes)
            };
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn idx_task(dir: Option<PathBuf>, scaling: PixelScaling, inputs: usize, classes: usize) -> Task {
    Task::Idx {
        dir,
        scaling,
        inputs,
        classes,
    }
}

/// A short references-only scenario on the tiny set in `data/` (relative to the scenario).
fn tiny_scenario() -> serde_json::Value {
    serde_json::json!({
        "name": "tiny_idx",
        "seed": 3,
        "task": {"kind": "idx", "dir": "data", "inputs": 6, "classes": 3},
        "data": {"train": 20, "test": 12},
        "network": {"widths": [6, 8, 3], "activation": "tanh"},
        "schedule": {"trials": 60, "warmup_trials": 10, "batch": 1, "eval_every": 30},
        "engine": null,
        "references": [{"name": "bp", "kind": "bp", "optimizer": "adam", "lr": 0.01}],
        "outputs": {"plots": false}
    })
}

/// Exit 2, no panic, every needle in the message, no output folder.
fn expect_refused(out: &Output, run_dir: &Path, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
    assert!(
        !run_dir.exists(),
        "nothing is written: {}",
        run_dir.display()
    );
}

#[test]
fn tiny_idx_files_load_raw_and_gzip_alike() {
    let dir = scratch("idx-load");
    write_tiny(&dir.join("raw"), false);
    write_tiny(&dir.join("gz"), true);
    let load = |sub: &str, scaling| {
        idx_task(Some(dir.join(sub)), scaling, 6, 3)
            .generate(None, None, 1)
            .unwrap()
    };
    let raw = load("raw", PixelScaling::Unit);
    let gz = load("gz", PixelScaling::Unit);
    assert_eq!(raw.train, gz.train);
    assert_eq!(raw.test, gz.test);
    assert_eq!((raw.train.len(), raw.test.len()), (30, 12));
    assert!(raw.classification);
    let (pixels, labels) = tiny_set(30, 0);
    for (i, ex) in raw.train.iter().enumerate() {
        // row-major pixels over 255, one-hot labels
        assert_eq!(ex.x.len(), 6);
        for p in 0..6 {
            assert_eq!(ex.x[p], f64::from(pixels[i * 6 + p]) / 255.0);
        }
        assert_eq!(ex.y.len(), 3);
        assert_eq!(ex.y.sum(), 1.0);
        assert_eq!(ex.y[usize::from(labels[i])], 1.0);
    }
    assert!(raw.provenance[0].contains("30 examples, every image of"));
    assert!(gz.provenance[0].contains("train-images-idx3-ubyte.gz"));

    // scalings: [-1, 1]; standardised on the training file (global and per pixel)
    let sym = load("raw", PixelScaling::Symmetric);
    assert!(sym
        .train
        .iter()
        .all(|e| e.x.iter().all(|v| (-1.0..=1.0).contains(v))));
    let all = |d: &dtpsim::data::Dataset| -> Vec<f64> {
        d.train.iter().flat_map(|e| e.x.iter().copied()).collect()
    };
    let g = all(&load("raw", PixelScaling::Standardize));
    let mean = g.iter().sum::<f64>() / g.len() as f64;
    let var = g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / g.len() as f64;
    assert!(
        mean.abs() < 1e-9 && (var - 1.0).abs() < 1e-9,
        "{mean} {var}"
    );
    let pp = load("raw", PixelScaling::StandardizePerPixel);
    for p in 0..6 {
        let col: Vec<f64> = pp.train.iter().map(|e| e.x[p]).collect();
        let m = col.iter().sum::<f64>() / 30.0;
        let v = col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 30.0;
        assert!(
            m.abs() < 1e-9 && (v - 1.0).abs() < 1e-9,
            "pixel {p}: {m} {v}"
        );
    }

    // a subset is seeded, in file order; more than the file holds is an error
    let task = idx_task(Some(dir.join("gz")), PixelScaling::Unit, 6, 3);
    let sub = task.generate(Some(10), Some(5), 7).unwrap();
    assert_eq!((sub.train.len(), sub.test.len()), (10, 5));
    assert_eq!(
        sub.train,
        task.generate(Some(10), Some(5), 7).unwrap().train
    );
    assert!(
        sub.provenance[0].contains("10 of the 30 images"),
        "{:?}",
        sub.provenance
    );
    let err = task.generate(Some(31), None, 7).unwrap_err().to_string();
    assert!(
        err.contains("data.train") && err.contains("holds 30"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_scenario_on_idx_files_runs_and_reports_accuracy() {
    let dir = scratch("idx-run");
    write_tiny(&dir.join("study/data"), true);
    std::fs::write(dir.join("study/s.json"), tiny_scenario().to_string()).unwrap();
    // run from the folder above: task.dir is relative to the scenario file
    let out = dtpsim(&["run", "study/s.json", "--out", "run", "--quiet"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    let acc = summary["references"][0]["final_test_accuracy"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&acc), "{summary}");
    assert!(summary["data"][0]
        .as_str()
        .unwrap()
        .contains("20 of the 30 images of study/data/train-images-idx3-ubyte.gz"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_folder_comes_from_the_environment_when_the_scenario_leaves_it_out() {
    let dir = scratch("idx-env");
    write_tiny(&dir.join("elsewhere"), false);
    let mut v = tiny_scenario();
    v["task"].as_object_mut().unwrap().remove("dir");
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let check = |env: &Path| {
        Command::new(env!("CARGO_BIN_EXE_dtpsim"))
            .args(["check", "s.json"])
            .current_dir(&dir)
            .env("DTPSIM_FASHION_MNIST", env)
            .output()
            .unwrap()
    };
    let out = check(&dir.join("elsewhere"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("folder chosen by $DTPSIM_FASHION_MNIST"),
        "{}",
        stderr(&out)
    );
    // a folder that is not there: the message says how to get the data
    let out = check(&dir.join("missing"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for n in [
        "missing: no such folder (chosen by $DTPSIM_FASHION_MNIST)",
        "apt-get install dataset-fashion-mnist",
        "task.dir",
    ] {
        assert!(err.contains(n), "missing {n:?} in {err}");
    }
    // an explicit task.dir that is not a folder is refused when the scenario is read
    let mut v = tiny_scenario();
    v["task"]["dir"] = "nowhere".into();
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run"], &dir);
    expect_refused(
        &out,
        &dir.join("run"),
        &["task.dir", "nowhere: no such folder"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each malformed file, raw and gzip-compressed: exit 2, the file and the fault named,
/// nothing written.
#[test]
fn malformed_idx_files_exit_2_naming_the_file_and_the_fault() {
    let dir = scratch("idx-bad");
    std::fs::write(dir.join("s.json"), tiny_scenario().to_string()).unwrap();
    let (tp, tl) = tiny_set(30, 0);
    let good_images = idx_bytes(IMAGES_MAGIC, &[30, 2, 3], &tp);
    let good_labels = idx_bytes(LABELS_MAGIC, &[30], &tl);
    // (file index in NAMES, replacement content, expected fragments)
    let cases: Vec<(usize, Vec<u8>, Vec<&str>)> = vec![
        (
            0,
            idx_bytes(LABELS_MAGIC, &[180], &tp),
            vec![
                "wrong magic number 0x00000801, expected 0x00000803",
                "IDX labels file where the images file belongs",
            ],
        ),
        (
            1,
            idx_bytes(0x0000_0c01, &[30], &tl),
            vec!["wrong magic number 0x00000c01, expected 0x00000801"],
        ),
        (
            0,
            good_images[..good_images.len() - 7].to_vec(),
            vec!["truncated: holds 173 of the 180 data bytes its header announces (30 × 2 × 3)"],
        ),
        (
            0,
            good_images[..9].to_vec(),
            vec!["the header is truncated"],
        ),
        (
            1,
            [good_labels.clone(), vec![9, 9, 9]].concat(),
            vec!["3 bytes follow the 30 data bytes its header announces (30)"],
        ),
        (
            1,
            idx_bytes(LABELS_MAGIC, &[29], &tl[..29]),
            vec![
                "holds 29 labels for the 30 images of",
                "label count must equal the image count",
            ],
        ),
        (
            1,
            idx_bytes(LABELS_MAGIC, &[30], &[tl[..29].to_vec(), vec![7]].concat()),
            vec![
                "task.classes",
                "label 7 of example 30 is not below task.classes = 3",
            ],
        ),
        (
            0,
            idx_bytes(IMAGES_MAGIC, &[15, 3, 4], &tp),
            vec![
                "task.inputs",
                "images are 3 × 4 = 12 pixels, task.inputs is 6",
            ],
        ),
        (
            0,
            Vec::new(),
            vec!["holds 0 bytes, fewer than the 4-byte IDX magic number"],
        ),
    ];
    for gz in [false, true] {
        for (k, (file, bytes, needles)) in cases.iter().enumerate() {
            let data = dir.join("data");
            let _ = std::fs::remove_dir_all(&data);
            let paths = write_tiny(&data, gz);
            let content = if gz { gzip(bytes) } else { bytes.clone() };
            std::fs::write(&paths[*file], content).unwrap();
            let name = paths[*file]
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let out = dtpsim(&["run", "s.json", "--out", "run"], &dir);
            let mut all = needles.clone();
            all.push(&name);
            expect_refused(&out, &dir.join("run"), &all);
            eprintln!("case {k} (gz {gz}): {}", stderr(&out).trim());
        }
    }
    // a damaged gzip stream (cut short), a missing file
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let paths = write_tiny(&data, true);
    let z = std::fs::read(&paths[2]).unwrap();
    std::fs::write(&paths[2], &z[..z.len() / 2]).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run"], &dir);
    expect_refused(
        &out,
        &dir.join("run"),
        &[
            "t10k-images-idx3-ubyte.gz",
            "gzip data is truncated or damaged",
        ],
    );
    std::fs::remove_file(&paths[3]).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run"], &dir);
    expect_refused(
        &out,
        &dir.join("run"),
        &["holds no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn csv_class_index_labels_become_one_hot_and_bad_labels_are_named() {
    let dir = scratch("idx-csv");
    let mut rows = String::from("x1,x2,label\n");
    for i in 0..60 {
        let c = i % 3;
        rows.push_str(&format!(
            "{},{},{c}\n",
            c as f64 + 0.1 * (i % 5) as f64,
            (i % 7) as f64 / 7.0
        ));
    }
    std::fs::write(dir.join("train.csv"), &rows).unwrap();
    std::fs::write(dir.join("test.csv"), &rows).unwrap();
    let v = serde_json::json!({
        "seed": 1,
        "task": {"kind": "csv", "train": "train.csv", "test": "test.csv", "inputs": 2, "outputs": 3, "labels": "class_index"},
        "data": {"train": 40},
        "network": {"widths": [2, 6, 3], "activation": "tanh"},
        "schedule": {"trials": 40, "warmup_trials": 0, "batch": 1, "eval_every": 20},
        "engine": null,
        "references": [{"name": "bp", "kind": "bp", "lr": 0.05}],
        "outputs": {"plots": false}
    });
    std::fs::write(dir.join("s.json"), v.to_string()).unwrap();
    let out = dtpsim(&["run", "s.json", "--out", "run", "--quiet"], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    // class indices make a classification task: accuracy is reported
    let acc = summary["references"][0]["final_test_accuracy"].as_f64();
    assert!(acc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{summary}");
    for (bad, needles) in [
        (
            "0.5,0.5,1.5\n",
            vec![
                "train.csv: line 62, column 3: class label 1.5 is not a class index",
                "integer 0..2",
            ],
        ),
        (
            "0.5,0.5,3\n",
            vec![
                "train.csv: line 62, column 3: class label 3 is out of range for 3 classes",
                "set task.outputs",
            ],
        ),
        (
            "0.5,0.5,-1\n",
            vec!["line 62, column 3: class label -1 is not a class index"],
        ),
        (
            "0.5,0.5,0,1\n",
            vec!["line 62: expected 3 numbers (2 inputs + 1 class index), got 4"],
        ),
    ] {
        std::fs::write(dir.join("train.csv"), format!("{rows}{bad}")).unwrap();
        let out = dtpsim(&["run", "s.json", "--out", "bad"], &dir);
        expect_refused(&out, &dir.join("bad"), &needles);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Debian folder, or `None` with a note.
fn debian() -> Option<PathBuf> {
    let dir = PathBuf::from(DEBIAN_DIR);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {DEBIAN_DIR} is absent (apt-get install dataset-fashion-mnist)");
        None
    }
}

#[test]
fn the_debian_fashion_mnist_files_load_whole() {
    let Some(dir) = debian() else { return };
    let start = Instant::now();
    let task = idx_task(Some(dir.clone()), PixelScaling::Unit, 784, 10);
    let d = task.generate(None, None, 1).unwrap();
    eprintln!(
        "loaded 70,000 images in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!((d.train.len(), d.test.len()), (60_000, 10_000));
    let mut counts = [0usize; 10];
    for ex in d.train.iter().chain(&d.test) {
        assert_eq!((ex.x.len(), ex.y.len()), (784, 10));
        assert!(ex.x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(ex.y.sum(), 1.0);
        assert!(ex.y.iter().all(|&v| v == 0.0 || v == 1.0));
        counts[ex.y.imax()] += 1;
    }
    // Fashion-MNIST is balanced: 7,000 images of each class over both sets
    assert_eq!(counts, [7000; 10]);
    drop(d);
    // standardised on the training file: mean 0, variance 1 over the training pixels
    let task = idx_task(Some(dir), PixelScaling::Standardize, 784, 10);
    let d = task.generate(None, Some(10), 1).unwrap();
    let (mut s, mut q, mut n) = (0.0, 0.0, 0.0);
    for ex in &d.train {
        for &v in ex.x.iter() {
            s += v;
            q += v * v;
            n += 1.0;
        }
    }
    let mean = s / n;
    assert!(mean.abs() < 1e-9 && (q / n - mean * mean - 1.0).abs() < 1e-9);
}

#[test]
fn the_fashion_mnist_scenario_is_a_short_smoke_run() {
    let (dir, _) = dtpsim::idx::resolve_dir(None);
    if !dir.is_dir() {
        eprintln!(
            "skipped: {} is absent (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let out_dir = scratch("idx-smoke");
    let start = Instant::now();
    let out = dtpsim(
        &[
            "run",
            &format!("{ROOT}/scenarios/fashion_mnist.json"),
            "--out",
            "run",
            "--quiet",
        ],
        &out_dir,
    );
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("run/summary.json")).unwrap())
            .unwrap();
    let mut line = String::new();
    for r in summary["references"].as_array().unwrap() {
        let acc = r["final_test_accuracy"].as_f64().unwrap();
        line.push_str(&format!("{} {:.3}  ", r["name"].as_str().unwrap(), acc));
        // 1,000 examples of 10 balanced classes: well above chance (0.1)
        assert!(acc > 0.3, "{}: {acc}", r["name"]);
    }
    eprintln!("fashion_mnist.json in {secs:.1} s: test accuracy {line}");
    assert!(out_dir.join("run/accuracy.png").exists());
    std::fs::remove_dir_all(&out_dir).unwrap();
}
