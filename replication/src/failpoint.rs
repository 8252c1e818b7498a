//! Crash points: places where a test may ask the process to die, to prove that what is on disk
//! afterwards is all of a batch or none of it. Set `TRADEWIND_FAILPOINT=<name>[:<min>]` in
//! the environment of a real process; when execution reaches `<name>` with a batch of at least
//! `<min>` operations (or bytes, as the place says), the process aborts on the spot (no unwinding, no flushing, like a
//! power cut as far as this process is concerned). Unset, a failpoint costs one load of a
//! cached `None`.

use std::sync::OnceLock;

/// The environment variable that arms a failpoint.
pub const ENV: &str = "TRADEWIND_FAILPOINT";

fn armed() -> Option<&'static (String, usize)> {
    static SPEC: OnceLock<Option<(String, usize)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let raw = std::env::var(ENV).ok()?;
        let (name, min) = match raw.split_once(':') {
            Some((n, m)) => (n.to_owned(), m.parse().unwrap_or(0)),
            None => (raw, 0),
        };
        Some((name, min))
    })
    .as_ref()
}

/// Aborts the process if the failpoint `name` is armed for batches of `size` operations.
pub fn hit(name: &str, size: usize) {
    if let Some((armed, min)) = armed()
        && armed == name
        && size >= *min
    {
        eprintln!("failpoint {name} hit with {size} ops: aborting");
        std::process::abort();
    }
}
