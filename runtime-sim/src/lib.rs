//! `vostok-sim`: the deterministic simulator of Vostok.
//!
//! Whole clusters (NameServers, brokers, producers, push consumers) run the production driver
//! code of `runtime-native` over madsim's simulated network and a simulated disk ([`disk`]),
//! with faults drawn from a seed ([`swarm`]), then the core's Jepsen-style checkers
//! (`vostok_core::check`) judge the recorded history ([`harness`]). A seed replays to the same
//! trace and digest. Half of the seeds replicate their broker groups (a master and 1–2 slaves
//! over HA v1, with faults of their own and the replication checkers): [`replication`].
//!
//! Everything here exists only under `RUSTFLAGS="--cfg madsim"` (built in its own target dir):
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo build --release -p vostok-sim
//! target/sim/release/vostok-sim --seeds 100
//! ```

#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod harness;
#[cfg(madsim)]
pub mod replication;
#[cfg(madsim)]
pub mod scheduled;
#[cfg(madsim)]
pub mod swarm;

/// Seeds that once found a bug, run by CI every time (`vostok-sim --regressions`), with what
/// each found. Every one must pass.
pub const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (
        1010234,
        "a stale consumer instance's commit moved a group's offset back (redelivery, counted)",
    ),
    (
        5021529,
        "a broker whose whole log was un-synced at a power loss was read back empty and skipped",
    ),
    (
        7004259,
        "transient read faults that wore off one after another truncated acked records at recovery",
    ),
    (
        20005536,
        "an instance that got nothing from a queue committed offset 0 after another consumed it",
    ),
    (
        20008946,
        "a recovery fence sent a reconnected consumer (no heartbeat yet) back: offset moved back",
    ),
    (
        20017513,
        "an ack in flight at a power loss was judged by a later power loss (a false lost-write)",
    ),
    (
        50058809,
        "a torn timer log unit (slot time lost) passed for delivered: an acked timer never came",
    ),
    (
        60002930,
        "a delayed message went into a topic whose lost creation nothing restored: never routed",
    ),
    (
        60080330,
        "a broker's clock stepped back 4.8 s stalled its registrations: no route after healing",
    ),
    (
        70003998,
        "a NameServer restart left the broker in a 5 s reconnect backoff: no route after healing",
    ),
    (
        70092968,
        "an ack in flight across a power loss and a quick restart was judged a loss (false alarm)",
    ),
    (
        80017434,
        "a queue whose creation went with the power got no fence: a stale consumer skipped",
    ),
    (
        140000410,
        "producers left once g0 had a commit a power cut then lost: g1 never got it (harness)",
    ),
    (
        1000080,
        "a slave's full disk made it refuse its master for good: SYNC_MASTER sends failed (harness)",
    ),
    (
        2000251,
        "a flipped read in a master's transfer made its slave refuse it for good (harness)",
    ),
    (
        3000321,
        "after a master's power loss a slave kept records the master lost (replica-prefix)",
    ),
    (
        9102746,
        "a slave that outlived its master's power loss was taken back after the master's next start",
    ),
    (
        8200732,
        "a slave still served records its master lost to a power loss, then rewrote: two keys at 0@1",
    ),
    (
        20000993,
        "a master took a slave's hand-back in memory only and lost it to a crash: offsets moved back",
    ),
    (
        1000622,
        "a hand-back passed a master's recovery fence: a message at a reassigned offset was skipped",
    ),
];

/// How to build the simulator, for builds without `--cfg madsim`.
pub const BUILD_HINT: &str = "vostok-sim must be built with the simulator enabled:\n  \
RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo build --release -p vostok-sim\n  \
target/sim/release/vostok-sim --seeds 100";
