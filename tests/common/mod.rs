//! Helpers shared by the integration tests that drive the `dtpsim` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary with `args` in `cwd`.
pub fn dtpsim(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dtpsim"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("binary runs")
}

/// A fresh, empty scratch folder unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dtpsim-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The standard error of a finished command as text.
#[allow(dead_code)] // not every test crate uses every helper
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The quick-start scenario cut to 3 warm-up and 12 learning trials on 50 training and 20
/// test examples (about 0.1 s).
#[allow(dead_code)] // not every test crate uses every helper
pub fn tiny_quickstart() -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/scenarios/quickstart.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["schedule"]["trials"] = 12.into();
    v["schedule"]["warmup_trials"] = 3.into();
    v["schedule"]["eval_every"] = 4.into();
    v["data"]["train"] = 50.into();
    v["data"]["test"] = 20.into();
    v
}
