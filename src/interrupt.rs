//! Ctrl-C (SIGINT) as a request to stop at the next trial boundary: every model checks
//! [`requested`] before each trial and ends its run there, so the files written are consistent
//! and `summary.json` says `interrupted`. A second Ctrl-C ends the process at once (exit 130).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once per process; later calls do nothing).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: stopping now; the run folder is incomplete");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: stopping at the next trial boundary (Ctrl-C again to stop now)");
    });
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Requests a stop, as Ctrl-C does (for tests and embedding programs).
pub fn request() {
    STOP.store(true, Ordering::SeqCst);
}

/// Clears a request (for tests and embedding programs that run again).
pub fn clear() {
    STOP.store(false, Ordering::SeqCst);
}
