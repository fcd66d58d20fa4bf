//! `vostok-sim`: run seeds of the deterministic simulator.
//!
//! ```text
//! vostok-sim --seeds N [--start S] [--jobs J] [--no-faults]
//!                                                   run seeds S..S+N on J threads (default: one
//!                                                   per core), one line per failure
//! vostok-sim --seed S [--trace]                     replay one seed (with its whole trace)
//! vostok-sim --regressions                          the seeds that once found a bug
//! ```
//!
//! Exit status: 0 when every seed passed, 1 when one failed, 2 for usage errors (and for a build
//! without `--cfg madsim`, which cannot simulate anything).

/// See Cargo.toml: seeds allocate at a high rate.
#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(madsim))]
fn main() {
    eprintln!("{}", vostok_sim::BUILD_HINT);
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    std::process::exit(cli::run(std::env::args().skip(1).collect()));
}

#[cfg(madsim)]
mod cli {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    use vostok_sim::harness::{run_seed, RunOptions, SeedReport};

    const USAGE: &str = "usage: vostok-sim --seeds N [--start S] [--jobs J] [--no-faults] [--defect NAME] | --seed S [--trace] [--no-faults] [--defect NAME] | --regressions";

    fn number(args: &[String], i: usize) -> Option<u64> {
        args.get(i + 1).and_then(|v| v.parse().ok())
    }

    pub fn run(args: Vec<String>) -> i32 {
        let mut seeds = None;
        let mut start = 0;
        let mut one = None;
        let mut regressions = false;
        let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut trace = false;
        let mut options = RunOptions::default();
        let mut flags = String::new();
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "--seeds" => match number(&args, i) {
                    Some(n) => {
                        seeds = Some(n);
                        i += 1;
                    }
                    None => return usage(),
                },
                "--start" => match number(&args, i) {
                    Some(n) => {
                        start = n;
                        i += 1;
                    }
                    None => return usage(),
                },
                "--seed" => match number(&args, i) {
                    Some(n) => {
                        one = Some(n);
                        i += 1;
                    }
                    None => return usage(),
                },
                "--jobs" => match number(&args, i) {
                    Some(n) if n > 0 => {
                        jobs = n as usize;
                        i += 1;
                    }
                    _ => return usage(),
                },
                "--trace" => trace = true,
                "--regressions" => regressions = true,
                "--no-faults" => options.no_faults = true,
                "--defect" => match args.get(i + 1).map(|d| defect(d)) {
                    Some(Some(defects)) => {
                        options.defects = defects;
                        flags.push_str(&format!(" --defect {}", args[i + 1]));
                        i += 1;
                    }
                    _ => return usage(),
                },
                _ => return usage(),
            }
            i += 1;
        }
        if options.no_faults {
            flags.push_str(" --no-faults");
        }
        if regressions {
            if seeds.is_some() || one.is_some() {
                return usage();
            }
            return run_regressions(options, &flags);
        }
        match (seeds, one) {
            (None, Some(seed)) => {
                let report = run_seed(seed, options);
                println!("{}", report.swarm);
                if trace {
                    for line in &report.trace {
                        println!("{line}");
                    }
                }
                for v in &report.violations {
                    println!("FAIL seed={seed} {v}");
                }
                println!(
                    "seed={seed} digest={:016x} events={} acked={} deliveries={} sim_ms={} {}",
                    report.digest.0,
                    report.trace.len(),
                    report.acked,
                    report.deliveries,
                    report.sim_ms,
                    if report.ok() { "ok" } else { "FAILED" }
                );
                i32::from(!report.ok())
            }
            (Some(n), None) => {
                let began = Instant::now();
                let mut failed = 0u64;
                let mut sim_ms = 0u64;
                let (mut slave_deliveries, mut seeds_reading_slaves) = (0u64, 0u64);
                for (seed, report) in run_parallel(start..start + n, jobs, options) {
                    sim_ms += report.sim_ms;
                    slave_deliveries += report.slave_deliveries;
                    seeds_reading_slaves += u64::from(report.slave_deliveries > 0);
                    println!("{} digest={:016x}", report.swarm, report.digest.0);
                    if let Some(v) = report.violations.first() {
                        failed += 1;
                        println!(
                            "FAIL seed={seed} {}: {} | first violating event #{}: {} | replay: vostok-sim --seed {seed} --trace{flags}",
                            v.invariant, v.detail, v.event_index, v.event
                        );
                    }
                }
                let secs = began.elapsed().as_secs_f64().max(1e-9);
                println!(
                    "{n} seeds, {failed} failed, {:.1} seeds/s, simulated/real time {:.0}x, \
                     {slave_deliveries} deliveries served by slaves in {seeds_reading_slaves} seeds",
                    n as f64 / secs,
                    sim_ms as f64 / 1000.0 / secs
                );
                i32::from(failed > 0)
            }
            _ => usage(),
        }
    }

    /// Runs `seeds` on `jobs` threads (each seed is a whole simulation of its own, with no state
    /// shared with the others) and yields the reports in seed order, each as soon as it and
    /// every seed before it are done: the output is the same whatever the number of jobs.
    fn run_parallel(
        seeds: std::ops::Range<u64>,
        jobs: usize,
        options: RunOptions,
    ) -> impl Iterator<Item = (u64, SeedReport)> {
        let next = Arc::new(AtomicU64::new(seeds.start));
        let (tx, rx) = mpsc::channel();
        for _ in 0..jobs.max(1) {
            let (next, tx, end) = (next.clone(), tx.clone(), seeds.end);
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end || tx.send((seed, run_seed(seed, options))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut done: BTreeMap<u64, SeedReport> = BTreeMap::new();
        let mut want = seeds.start;
        std::iter::from_fn(move || loop {
            if let Some(report) = done.remove(&want) {
                want += 1;
                return Some((want - 1, report));
            }
            let (seed, report) = rx.recv().ok()?;
            done.insert(seed, report);
        })
    }

    /// Every seed of [`vostok_sim::REGRESSION_SEEDS`]: one line each, a FAIL line with the
    /// replay command for a failure.
    fn run_regressions(options: RunOptions, flags: &str) -> i32 {
        let mut failed = 0;
        for (seed, found) in vostok_sim::REGRESSION_SEEDS {
            let report = run_seed(*seed, options);
            match report.violations.first() {
                None => println!("regression seed {seed} ok ({found})"),
                Some(v) => {
                    failed += 1;
                    println!(
                        "FAIL seed={seed} {}: {} | first violating event #{}: {} | once found: {found} | replay: vostok-sim --seed {seed} --trace{flags}",
                        v.invariant, v.detail, v.event_index, v.event
                    );
                }
            }
        }
        println!(
            "{} regression seeds, {failed} failed",
            vostok_sim::REGRESSION_SEEDS.len()
        );
        i32::from(failed > 0)
    }

    /// A defect by name (`ack-before-sync`, `skip-recovery-crc`, `drop-cq-entry`,
    /// `count-recovery-reads`, `checkpoint-skips-queue-sync`, `ack-before-slave-report`,
    /// `slave-hands-nothing-back`, `revive-ignores-acks`, `orderly-pop-ignores-lock`); needs
    /// the `defects` feature.
    #[cfg(feature = "defects")]
    fn defect(name: &str) -> Option<vostok_core::defects::Defects> {
        let none = vostok_core::defects::Defects::NONE;
        match name {
            "ack-before-sync" => Some(none.with_ack_before_sync(true)),
            "skip-recovery-crc" => Some(none.with_skip_recovery_crc(true)),
            "drop-cq-entry" => Some(none.with_drop_consume_queue_entry_every(7)),
            "count-recovery-reads" => Some(none.with_count_recovery_reads(true)),
            "checkpoint-skips-queue-sync" => Some(none.with_checkpoint_skips_queue_sync(true)),
            "ack-before-slave-report" => Some(none.with_ack_before_slave_report(true)),
            "slave-hands-nothing-back" => Some(none.with_slave_hands_nothing_back(true)),
            "revive-ignores-acks" => Some(none.with_revive_ignores_acks(true)),
            "orderly-pop-ignores-lock" => Some(none.with_orderly_pop_ignores_lock(true)),
            _ => None,
        }
    }

    #[cfg(not(feature = "defects"))]
    fn defect(_name: &str) -> Option<vostok_core::defects::Defects> {
        eprintln!("vostok-sim: --defect needs a build with --features defects");
        None
    }

    fn usage() -> i32 {
        eprintln!("{USAGE}");
        2
    }
}
