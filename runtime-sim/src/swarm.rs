//! Swarm parameters: everything a seed decides about its run, drawn once and printed.
//!
//! Swarm testing (TigerBeetle's VOPR, FoundationDB): each seed enables a random subset of the
//! fault kinds at random rates, so some seeds hammer one fault and others mix many.

use std::fmt;

use vostok_core::broker::FlushDiskType;
use vostok_core::rng::SeededRng;

use crate::replication::{ReplicaFault, ReplicationPlan};

/// One kind of fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Both directions between two nodes clogged.
    Partition,
    /// One direction between two nodes clogged.
    OneWay,
    /// Every link of one node clogged.
    Isolate,
    /// FoundationDB's swizzle-clog: clog a subset one by one, unclog in random order.
    Swizzle,
    /// Latency range and packet loss (retransmission delay on TCP) raised for a while.
    LatencyLoss,
    /// Every connection of a client node reset.
    ConnReset,
    /// kill -9 of a broker or NameServer, restarted later (page cache survives).
    KillRestart,
    /// A node frozen for a while.
    Pause,
    /// Power cut of a broker: un-synced writes dropped, kept or torn; optionally a flipped byte.
    PowerLoss,
    /// Reads of some bytes of a broker's CommitLog come back flipped, one to three times each.
    BitFlipRead,
    /// Writes fail with EIO for a while.
    WriteEio,
    /// Syncs fail with EIO for a while.
    SyncEio,
    /// The disk is full for a while.
    NoSpace,
    /// A node's clock jumps (offset) and drifts.
    Clock,
    /// A fault of a replicated group's members (only in seeds with replication; drawn from a
    /// stream of its own, see [`ReplicationPlan`]).
    Replica(ReplicaFault),
}

impl Fault {
    pub const ALL: [Fault; 14] = [
        Fault::Partition,
        Fault::OneWay,
        Fault::Isolate,
        Fault::Swizzle,
        Fault::LatencyLoss,
        Fault::ConnReset,
        Fault::KillRestart,
        Fault::Pause,
        Fault::PowerLoss,
        Fault::BitFlipRead,
        Fault::WriteEio,
        Fault::SyncEio,
        Fault::NoSpace,
        Fault::Clock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Partition => "partition",
            Fault::OneWay => "one-way",
            Fault::Isolate => "isolate",
            Fault::Swizzle => "swizzle",
            Fault::LatencyLoss => "latency-loss",
            Fault::ConnReset => "conn-reset",
            Fault::KillRestart => "kill-restart",
            Fault::Pause => "pause",
            Fault::PowerLoss => "power-loss",
            Fault::BitFlipRead => "bitflip-read",
            Fault::WriteEio => "write-eio",
            Fault::SyncEio => "sync-eio",
            Fault::NoSpace => "enospc",
            Fault::Clock => "clock",
            Fault::Replica(f) => f.name(),
        }
    }
}

/// Everything a seed decides.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub seed: u64,
    pub namesrvs: usize,
    pub brokers: usize,
    pub flush: FlushDiskType,
    pub producers: usize,
    pub messages_per_producer: usize,
    /// Percent of sends that are ordered (selector by order key) and tagged.
    pub ordered_percent: u64,
    pub tagged_percent: u64,
    /// Consumer groups and members per group; group 0 takes `*`, others a tag.
    pub groups: usize,
    pub consumers_per_group: usize,
    /// The faults enabled, and the mean gap between nemesis steps.
    pub faults: Vec<Fault>,
    pub nemesis_gap_ms: u64,
    /// How long the fault phase lasts (simulated).
    pub fault_phase_ms: u64,
    /// Delay-level, timer and transactional messages of the workload.
    pub scheduled: ScheduledMix,
    /// The largest clock offset (either way) the nemesis gives a node.
    pub max_clock_offset_ms: u64,
    /// Master–slave groups, or `None`: single brokers as before replication existed.
    pub replication: Option<ReplicationPlan>,
    /// A consumer group that consumes by POP (`SimpleConsumer`s), or `None`.
    pub pop: Option<PopPlan>,
}

/// The POP group of a seed: 1–3 `SimpleConsumer`s receiving in a loop with a short invisible
/// time, acking most messages, leaving some unacked (a consumer that failed them: they must
/// come back) and changing the invisible time of some. Drawn from a stream of its own, so the
/// other parameters of a seed do not move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PopPlan {
    pub consumers: usize,
    /// The invisible time of each receive is drawn from this range.
    pub min_invisible_ms: u64,
    pub max_invisible_ms: u64,
    /// Percent of received messages left unacked, and of those whose invisible time changes.
    pub skip_ack_percent: u64,
    pub change_percent: u64,
    /// Most messages per receive.
    pub batch: usize,
    /// Percent of receives a member pauses before (0.5–2.5 s), so that messages pile up and
    /// one receive takes several of a queue: a checkpoint some of whose messages are acked.
    pub pause_percent: u64,
    /// A second group, `gpopo`, of as many members consumes by orderly POP, the same way.
    pub orderly: bool,
}

impl PopPlan {
    /// The POP group of `seed`: in about half of the seeds without clock faults. A broker
    /// answers a POP POLLING_TIMEOUT at once when its clock is past the request's `bornTime +
    /// pollTime` by more than 500 ms (RocketMQ's `isTimeoutTooMuch`), and holds an empty one
    /// until that time on its own clock: POP needs the clocks of its consumers and brokers
    /// closer than the poll time, and the nemesis' offsets (up to 5 s either way, kept after
    /// healing) starve the group of a broker.
    fn draw(seed: u64, faults: &[Fault]) -> Option<PopPlan> {
        let mut rng = SeededRng::new(seed ^ 0x504f_5047_524f_5550);
        let mut pick = |lo: u64, hi: u64| lo + rng.below(hi - lo + 1);
        if pick(0, 1) == 0 || faults.contains(&Fault::Clock) {
            return None;
        }
        let min_invisible_ms = pick(2_000, 4_000);
        Some(PopPlan {
            consumers: pick(1, 3) as usize,
            min_invisible_ms,
            max_invisible_ms: min_invisible_ms + pick(0, 2_000),
            skip_ack_percent: pick(5, 25),
            change_percent: pick(0, 15),
            batch: pick(2, 4) as usize,
            pause_percent: pick(0, 30),
            orderly: pick(0, 1) == 1,
        })
    }
}

impl fmt::Display for PopPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x invisible={}-{}ms skip_ack={}% change={}% batch={} pause={}%{}",
            self.consumers,
            self.min_invisible_ms,
            self.max_invisible_ms,
            self.skip_ack_percent,
            self.change_percent,
            self.batch,
            self.pause_percent,
            if self.orderly { " orderly" } else { "" }
        )
    }
}

/// The share of the workload's sends that are delayed (level 1–3), timers (1–5 s ahead) or
/// transactional, drawn from a stream of its own so the other parameters of a seed do not move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduledMix {
    pub delay_percent: u64,
    pub timer_percent: u64,
    pub transaction_percent: u64,
}

impl ScheduledMix {
    /// Plain messages only.
    pub const NONE: ScheduledMix = ScheduledMix {
        delay_percent: 0,
        timer_percent: 0,
        transaction_percent: 0,
    };

    /// Draws the mix of `seed` and the nemesis' largest clock offset.
    fn draw(seed: u64) -> (ScheduledMix, u64) {
        let mut rng = SeededRng::new(seed ^ 0x5343_4845_4455_4c45);
        let mut pick = |lo: u64, hi: u64| lo + rng.below(hi - lo + 1);
        let mix = ScheduledMix {
            delay_percent: pick(0, 20),
            timer_percent: pick(0, 20),
            transaction_percent: pick(0, 30),
        };
        let max_clock_offset_ms = pick(0, 5_000);
        (mix, max_clock_offset_ms)
    }
}

impl Swarm {
    /// Draws the parameters of `seed`; `no_faults` leaves the nemesis idle.
    pub fn draw(seed: u64, no_faults: bool) -> Swarm {
        let mut rng = SeededRng::new(seed ^ 0x5157_4152_4d00_0000);
        let mut pick = |lo: u64, hi: u64| lo + rng.below(hi - lo + 1);
        let namesrvs = pick(1, 2) as usize;
        let brokers = pick(1, 3) as usize;
        let flush = if pick(0, 1) == 0 {
            FlushDiskType::SyncFlush
        } else {
            FlushDiskType::AsyncFlush
        };
        let producers = pick(1, 2) as usize;
        let messages_per_producer = pick(10, 30) as usize;
        let ordered_percent = pick(0, 50);
        let tagged_percent = pick(0, 60);
        let groups = pick(1, 2) as usize;
        let consumers_per_group = pick(1, 2) as usize;
        let mut faults = Vec::new();
        if !no_faults {
            // Each fault kind is on with probability one half (swarm testing).
            for f in Fault::ALL {
                if pick(0, 1) == 1 {
                    faults.push(f);
                }
            }
        }
        let nemesis_gap_ms = pick(300, 2_000);
        let fault_phase_ms = pick(5_000, 15_000);
        let (scheduled, max_clock_offset_ms) = ScheduledMix::draw(seed);
        let replication = ReplicationPlan::draw(seed, brokers, no_faults);
        let pop = PopPlan::draw(seed, &faults);
        Swarm {
            seed,
            namesrvs,
            brokers,
            flush,
            producers,
            messages_per_producer,
            ordered_percent,
            tagged_percent,
            groups,
            consumers_per_group,
            faults,
            nemesis_gap_ms,
            fault_phase_ms,
            scheduled,
            max_clock_offset_ms,
            replication,
            pop,
        }
    }

    /// The faults the nemesis picks from: the swarm's, plus the replicated groups' own.
    pub fn nemesis_faults(&self) -> Vec<Fault> {
        let mut faults = self.faults.clone();
        if let Some(plan) = &self.replication {
            faults.extend(plan.faults.iter().map(|f| Fault::Replica(*f)));
        }
        faults
    }
}

impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<&str> = self.faults.iter().map(|x| x.name()).collect();
        write!(
            f,
            "seed={} namesrvs={} brokers={} flush={:?} producers={}x{} ordered={}% tagged={}% groups={}x{} faults=[{}] gap={}ms fault_phase={}ms delay={}% timer={}% tx={}% max_clock_offset={}ms repl={} pop={}",
            self.seed,
            self.namesrvs,
            self.brokers,
            self.flush,
            self.producers,
            self.messages_per_producer,
            self.ordered_percent,
            self.tagged_percent,
            self.groups,
            self.consumers_per_group,
            faults.join(","),
            self.nemesis_gap_ms,
            self.fault_phase_ms,
            self.scheduled.delay_percent,
            self.scheduled.timer_percent,
            self.scheduled.transaction_percent,
            self.max_clock_offset_ms,
            match &self.replication {
                Some(plan) => plan.to_string(),
                None => "none".to_owned(),
            },
            match &self.pop {
                Some(plan) => plan.to_string(),
                None => "none".to_owned(),
            }
        )
    }
}
