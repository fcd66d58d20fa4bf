//! The simulator's own tests; they exist only in the simulated build:
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test --release -p vostok-sim
//! --features defects` (scripts/test.sh step `sim`).
#![cfg(madsim)]

use vostok_sim::harness::{run_seed, RunOptions};

/// Goal: a seed is a complete description of a run. Method: run two seeds twice each, each run
/// on its own thread and runtime; the traces and digests must be identical, and the two seeds
/// must differ from each other.
#[test]
fn same_seed_same_digest() {
    let options = RunOptions::default();
    let a1 = run_seed(11, options);
    let a2 = run_seed(11, options);
    assert!(!a1.trace.is_empty(), "{}", a1.swarm);
    assert_eq!(a1.trace, a2.trace, "seed 11 diverged");
    assert_eq!(a1.digest, a2.digest);
    let b = run_seed(12, options);
    assert_ne!(a1.digest, b.digest, "different seeds, different runs");
}

/// Goal: a fault-free run is clean and delivers everything it acknowledged.
#[test]
fn fault_free_seeds_pass() {
    let options = RunOptions {
        no_faults: true,
        ..RunOptions::default()
    };
    for seed in 0..5 {
        let report = run_seed(seed, options);
        assert!(report.ok(), "{}: {:?}", report.swarm, report.violations);
        assert!(report.acked > 0, "{}", report.swarm);
    }
}

/// Goal: every seed that once found a bug stays fixed.
#[test]
fn regression_seeds_pass() {
    for (seed, found) in vostok_sim::REGRESSION_SEEDS {
        let report = run_seed(*seed, RunOptions::default());
        assert!(
            report.ok(),
            "seed {seed} (once: {found}) fails again: {:?}; replay: vostok-sim --seed {seed} --trace",
            report.violations.first()
        );
    }
}

#[cfg(feature = "defects")]
mod defects {
    use super::*;
    use vostok_core::defects::Defects;

    /// The first seed below 200 where, with `defects` on, the checkers report one of `expected`
    /// while the same seed without the defect does not.
    fn first_caught(defects: Defects, expected: &[&str]) -> Option<(u64, String)> {
        // Plain messages only: with scheduled and transactional ones the timing moves and
        // ack-before-sync is not caught below seed 200 (it is at seed 128 with plain ones).
        let with = RunOptions {
            defects,
            plain_workload: true,
            ..RunOptions::default()
        };
        let without = RunOptions {
            defects: Defects::NONE,
            ..with
        };
        let hit = |options: RunOptions, seed: u64| {
            run_seed(seed, options)
                .violations
                .iter()
                .find(|v| expected.contains(&v.invariant.name()))
                .map(|v| v.to_string())
        };
        (0..200).find_map(|seed| {
            let caught = hit(with, seed)?;
            hit(without, seed).is_none().then_some((seed, caught))
        })
    }

    /// Goal: recovery that judges a record by counting failed reads instead of comparing them
    /// is caught: seed 7004259's read faults wear off one after another, and with the defect
    /// the broker cuts its acknowledged records off after a process crash (the regression
    /// test shows the seed passes without it). Too rare in random seeds (about 1 in 5,000) for
    /// `first_caught`, so the seed that found it is the proof.
    #[test]
    fn count_recovery_reads_is_caught_by_its_seed() {
        let options = RunOptions {
            defects: Defects::NONE.with_count_recovery_reads(true),
            ..RunOptions::default()
        };
        let report = run_seed(7004259, options);
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.invariant.name() == "lost-write"),
            "{:?}",
            report.violations.first()
        );
    }

    /// Goal: acknowledging a SYNC_FLUSH send before its sync is caught (a power cut loses it).
    #[test]
    fn ack_before_sync_is_caught() {
        let caught = first_caught(Defects::NONE.with_ack_before_sync(true), &["lost-write"]);
        assert!(caught.is_some(), "ack-before-sync survived 200 seeds");
        eprintln!("ack-before-sync caught: {caught:?}");
    }

    /// Goal: a checkpoint written before its ConsumeQueue ranges are durable is caught (a power
    /// cut drops queue units the checkpoint vouches for; recovery trusts the queue, and an
    /// acknowledged message is missing from it). The checkpoint runs beside the group commit,
    /// so this ordering is its own to keep.
    #[test]
    fn checkpoint_skips_queue_sync_is_caught() {
        let caught = first_caught(
            Defects::NONE.with_checkpoint_skips_queue_sync(true),
            &["lost-write"],
        );
        assert!(
            caught.is_some(),
            "checkpoint-skips-queue-sync survived 200 seeds"
        );
        eprintln!("checkpoint-skips-queue-sync caught: {caught:?}");
    }

    /// Goal: a SYNC_MASTER that answers a send before a slave reported having it is caught:
    /// when the ack reaches the producer, no slave of the group holds the record at its
    /// CommitLog offset (or a power cut of the master then loses the only copy).
    #[test]
    fn ack_before_slave_report_is_caught() {
        let caught = first_caught(
            Defects::NONE.with_ack_before_slave_report(true),
            &["sync-master-ack-before-replica", "replica-lost-write"],
        );
        assert!(
            caught.is_some(),
            "ack-before-slave-report survived 200 seeds"
        );
        eprintln!("ack-before-slave-report caught: {caught:?}");
    }

    /// Goal: a slave that never hands back the offsets consumers committed on it while its
    /// master was away is caught: in seeds whose plan stops a group on a slave
    /// (`ReplicationPlan::stop_group`), nothing else brings the master's offsets up to what
    /// the group committed, and the master's offsets recorded once the slave could have handed
    /// them back are lower than the slave's commits (RocketMQ #1094's mass redelivery). 17 of
    /// seeds 0..200 catch it (the first is seed 8).
    #[test]
    fn slave_hands_nothing_back_is_caught() {
        let caught = first_caught(
            Defects::NONE.with_slave_hands_nothing_back(true),
            &["offset-regression"],
        );
        assert!(
            caught.is_some(),
            "slave-hands-nothing-back survived 200 seeds"
        );
        eprintln!("slave-hands-nothing-back caught: {caught:?}");
    }

    /// Goal: a POP revive that brings back acknowledged messages too is caught: in seeds with
    /// a POP group, a checkpoint some of whose messages were acked (and some not) comes due,
    /// and the acked ones are delivered again after their ack was answered ok. Seeds 0..200
    /// catch it 11 times (the first is seed 12).
    #[test]
    fn revive_ignores_acks_is_caught() {
        // The whole workload, as `vostok-sim --defect revive-ignores-acks` runs it.
        let with = RunOptions {
            defects: Defects::NONE.with_revive_ignores_acks(true),
            ..RunOptions::default()
        };
        let hit = |options: RunOptions, seed: u64| {
            run_seed(seed, options)
                .violations
                .iter()
                .find(|v| v.invariant.name() == "pop-redelivered-after-ack")
                .map(|v| v.to_string())
        };
        let caught = (0..200).find_map(|seed| {
            let caught = hit(with, seed)?;
            hit(RunOptions::default(), seed)
                .is_none()
                .then_some((seed, caught))
        });
        assert!(caught.is_some(), "revive-ignores-acks survived 200 seeds");
        eprintln!("revive-ignores-acks caught: {caught:?}");
    }

    /// Goal: an orderly POP that reads a queue whose last batch is still in flight is caught:
    /// in seeds with an orderly POP group, a second batch of one queue is handed out while a
    /// member holds the first. Seeds 0..200 catch it 20 times (the first is seed 5).
    #[test]
    fn orderly_pop_ignores_lock_is_caught() {
        // The whole workload, as `vostok-sim --defect orderly-pop-ignores-lock` runs it.
        let with = RunOptions {
            defects: Defects::NONE.with_orderly_pop_ignores_lock(true),
            ..RunOptions::default()
        };
        let hit = |options: RunOptions, seed: u64| {
            run_seed(seed, options)
                .violations
                .iter()
                .find(|v| v.invariant.name() == "pop-orderly-overlap")
                .map(|v| v.to_string())
        };
        let caught = (0..200).find_map(|seed| {
            let caught = hit(with, seed)?;
            hit(RunOptions::default(), seed)
                .is_none()
                .then_some((seed, caught))
        });
        assert!(
            caught.is_some(),
            "orderly-pop-ignores-lock survived 200 seeds"
        );
        eprintln!("orderly-pop-ignores-lock caught: {caught:?}");
    }

    /// Goal: recovery that skips the CRC check is caught (a power cut's torn sector damages the
    /// body of an un-synced record, and that record is served).
    #[test]
    fn skip_recovery_crc_is_caught() {
        let caught = first_caught(
            Defects::NONE.with_skip_recovery_crc(true),
            &["bad-crc", "corrupt"],
        );
        assert!(caught.is_some(), "skip-recovery-crc survived 200 seeds");
        eprintln!("skip-recovery-crc caught: {caught:?}");
    }

    /// Goal: a ConsumeQueue entry dropped at dispatch is caught (a hole, an undelivered message).
    #[test]
    fn dropped_consume_queue_entry_is_caught() {
        let caught = first_caught(
            Defects::NONE.with_drop_consume_queue_entry_every(7),
            &["dense-offsets", "at-least-once"],
        );
        assert!(caught.is_some(), "drop-cq-entry survived 200 seeds");
        eprintln!("drop-cq-entry caught: {caught:?}");
    }
}

/// Goal: "never early" and "a rolled-back message is never delivered" bite on the simulator's
/// histories. Method: fault-free seeds whose history records scheduled messages as due 30 s
/// later than asked (what a broker delivering them 30 s early looks like) and committed
/// transactions as rolled back (a broker delivering rolled-back messages); the same seeds
/// recorded faithfully pass.
#[test]
fn early_and_rolled_back_deliveries_are_caught() {
    use vostok_sim::scheduled::Misrecord;
    let faithful = RunOptions {
        no_faults: true,
        ..RunOptions::default()
    };
    let caught = |misrecord: Misrecord, invariant: &str| {
        (0..20).find(|&seed| {
            let report = run_seed(
                seed,
                RunOptions {
                    misrecord,
                    ..faithful
                },
            );
            let hit = report
                .violations
                .iter()
                .any(|v| v.invariant.name() == invariant);
            hit && run_seed(seed, faithful).ok()
        })
    };
    let early = caught(
        Misrecord {
            due_late_by_ms: 30_000,
            ..Misrecord::default()
        },
        "early-delivery",
    );
    assert!(early.is_some(), "an early delivery survived 20 seeds");
    let rolled_back = caught(
        Misrecord {
            commit_as_rollback: true,
            ..Misrecord::default()
        },
        "rolled-back-delivered",
    );
    assert!(
        rolled_back.is_some(),
        "a rolled-back delivery survived 20 seeds"
    );
    eprintln!("early caught at seed {early:?}, rolled-back at seed {rolled_back:?}");
}
