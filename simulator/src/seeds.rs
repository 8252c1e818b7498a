//! Which seeds a test runs, from its environment: the fixed ones and the regressions, or what
//! `SIM_SEED`, `SIM_FIRST_SEED`, `SIM_SEEDS`, `SIM_SECONDS` and `SIM_FOR_SECS` (a wall-clock
//! budget) ask for; `SIM_FAILED_FILE` names a file for the seeds that failed, and `SIM_LOG`
//! (a tracing filter, such as `openraft=debug`) prints the members' own logs.

use std::time::{Duration, Instant};

use crate::run::Outcome;

/// Seeds run by the test command (with the regressions), and the simulated time of each,
/// unless a workload asks for others.
const SEEDS: u64 = 6;
const RUN_SECS: u64 = 60;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// Seeds that once failed, one per line of `text` (after a `#`, what they found).
fn regressions(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().expect("regressions.txt: one seed per line"))
        .collect()
}

/// Runs the seeds the environment asks for with `run` (by default, `seeds` fresh ones of
/// `secs` simulated seconds each, `None` for the defaults, and those of `regressions`);
/// panics with the failing seeds' histories. `test` names the test, to replay one.
pub fn seeded_runs(
    test: &str,
    regressions_txt: &str,
    defaults: (Option<u64>, Option<u64>),
    run: impl Fn(u64, Duration) -> Outcome + std::panic::RefUnwindSafe,
) {
    let secs = env_u64("SIM_SECONDS").or(defaults.1).unwrap_or(RUN_SECS);
    if let Ok(filter) = std::env::var("SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    if let Some(seed) = env_u64("SIM_SEED") {
        let outcome = run(seed, Duration::from_secs(secs));
        for line in &outcome.history {
            println!("{line}");
        }
        println!("seed {seed}: {}", outcome.summary());
        assert!(outcome.violations.is_empty(), "{:#?}", outcome.violations);
        return;
    }
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(1);
    let count = env_u64("SIM_SEEDS").or(defaults.0).unwrap_or(SEEDS);
    let until = env_u64("SIM_FOR_SECS").map(|s| Instant::now() + Duration::from_secs(s));
    let fixed = first..first.saturating_add(count);
    let seeds: Vec<u64> = if env_u64("SIM_FIRST_SEED").is_none() {
        regressions(regressions_txt)
            .into_iter()
            .chain(fixed)
            .collect()
    } else {
        fixed.collect()
    };

    let mut failed = Vec::new();
    let mut simulated = 0;
    let started = Instant::now();
    let mut ran = 0;
    for seed in seeds {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        // A panic of the harness itself fails the seed as a violation would.
        let outcome = std::panic::catch_unwind(|| run(seed, Duration::from_secs(secs)))
            .unwrap_or_else(|_| Outcome::panicked());
        simulated += secs;
        ran += 1;
        println!("seed {seed}: {}", outcome.summary());
        if !outcome.violations.is_empty() {
            println!("seed {seed} FAILED:");
            for v in &outcome.violations {
                println!("  {v}");
            }
            println!("history of seed {seed} (latest lines):");
            for line in &outcome.history {
                println!("  {line}");
            }
            failed.push(seed);
        }
    }
    println!(
        "{ran} seeds, {simulated} simulated seconds in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = std::env::var_os("SIM_FAILED_FILE") {
        let lines: String = failed.iter().map(|s| format!("{s}\n")).collect();
        std::fs::write(path, lines).expect("SIM_FAILED_FILE");
    }
    assert!(
        failed.is_empty(),
        "seeds that found a violation: {failed:?} (replay one: SIM_SEED=n cargo test -p simulator --test {test} -- --nocapture)"
    );
}
