//! The simulator: 3 or 5 members with the real replication code (openraft, the project's
//! elections, rush and carried entries, the log and the state machine on redb) over a
//! simulated network and clock (`replication::sim`), with everything random drawn from one
//! seed. Messages are dropped, delayed up to seconds, duplicated and reordered; links cut
//! both ways or one, and made long; members crash (their disks keep only what was synced) and
//! restart, or lose their log disk and rejoin; voters leave and join, two changes at once among
//! them; a member that left may be emptied and join again under its id.
//!
//! Checked at every step (`checks`): a leader under its own committed vote; log matching; every
//! committed entry in the log of the leader of the latest term; the same entry applied at each index by
//! every member; nothing the network layer tells the leader a member holds that the member
//! lacks. At the end: the clients' registers and counter are linearizable (`linear`).
//!
//! `SIM_SEED=n cargo test -p replication --test sim -- --nocapture` replays seed `n` and
//! prints its history; `scripts/sim-seeds.sh` runs seeds for a given time and keeps the ones
//! that fail in `replication/tests/sim/regressions.txt`, which every run replays.

// The seeded runtime needs tokio's `rng_seed` (.cargo/config.toml sets the flag; a RUSTFLAGS
// of one's own replaces it): without it a seed would not replay the same run.
#[cfg(not(tokio_unstable))]
compile_error!("the simulator needs `--cfg tokio_unstable` (set in .cargo/config.toml)");

mod app;
mod checks;
mod linear;
mod run;

use std::time::{Duration, Instant};

/// Seeds run by the test command (with those in `regressions.txt`), and the simulated
/// time of each.
const SEEDS: u64 = 6;
const RUN_SECS: u64 = 60;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// Seeds that once failed, kept so that every run tries them again.
fn regressions() -> Vec<u64> {
    include_str!("regressions.txt")
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().expect("regressions.txt: one seed per line"))
        .collect()
}

/// Runs `seeds`, each for `secs` of simulated time; panics with the failing seeds' histories.
fn run_seeds(seeds: impl IntoIterator<Item = u64>, secs: u64, until: Option<Instant>) {
    let mut failed = Vec::new();
    let mut simulated = 0;
    let started = Instant::now();
    let mut ran = 0;
    for seed in seeds {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        // A panic of the harness itself fails the seed as a violation would.
        let outcome = std::panic::catch_unwind(|| run::run(seed, Duration::from_secs(secs)))
            .unwrap_or_else(|_| run::Outcome::panicked());
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
        "seeds that found a violation: {failed:?} (replay one: SIM_SEED=n cargo test -p replication --test sim -- --nocapture)"
    );
}

/// The fixed seeds and the regressions, or what `SIM_SEED`, `SIM_FIRST_SEED`, `SIM_SEEDS`,
/// `SIM_SECONDS` and `SIM_FOR_SECS` (a wall-clock budget) ask for.
#[test]
fn seeded_runs_find_no_violation() {
    let secs = env_u64("SIM_SECONDS").unwrap_or(RUN_SECS);
    if let Ok(filter) = std::env::var("SIM_LOG") {
        // The members' own logs too, on stderr (for example SIM_LOG=openraft=debug).
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    if let Some(seed) = env_u64("SIM_SEED") {
        let outcome = run::run(seed, Duration::from_secs(secs));
        for line in &outcome.history {
            println!("{line}");
        }
        println!("seed {seed}: {}", outcome.summary());
        assert!(outcome.violations.is_empty(), "{:#?}", outcome.violations);
        return;
    }
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(1);
    let count = env_u64("SIM_SEEDS").unwrap_or(SEEDS);
    let until = env_u64("SIM_FOR_SECS").map(|s| Instant::now() + Duration::from_secs(s));
    let fixed = first..first.saturating_add(count);
    let with_regressions = env_u64("SIM_FIRST_SEED").is_none();
    let seeds: Vec<u64> = if with_regressions {
        regressions().into_iter().chain(fixed).collect()
    } else {
        fixed.collect()
    };
    run_seeds(seeds, secs, until);
}
