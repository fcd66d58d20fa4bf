//! The replication checkers ([`super::replica`]) on hand-made histories: each bites on a bad
//! one and accepts the same history with the explanation the checker allows.

use super::*;

const B: &str = "broker-a";
const S1: &str = "broker-a-s1";
const S2: &str = "broker-a-s2";
const T: &str = "TopicA";

fn q(id: u32) -> QueueRef {
    QueueRef::new(B, T, id)
}

fn names(violations: &[Violation]) -> Vec<&'static str> {
    violations.iter().map(|v| v.invariant.name()).collect()
}

/// A SYNC_MASTER send of `key` acked at `q(0)@offset` and each slave's holding at the ack;
/// returns (invocation index, ack index).
fn acked(h: &mut History, t: u64, key: &str, offset: u64, held: &[(&str, bool)]) -> (usize, usize) {
    let op = h.send_invoked(t, "p0", T, key, key.as_bytes());
    let invoked = h.len() - 1;
    h.send_ok(t + 1, op, q(0), offset, FlushMode::Async);
    let ack = h.len() - 1;
    for (node, held) in held {
        h.replica_at_ack(t + 1, op, node, *held);
    }
    (invoked, ack)
}

fn read_back(key: &str, offset: u64) -> ReadBackRecord {
    ReadBackRecord {
        queue: q(0),
        queue_offset: offset,
        key: key.to_owned(),
        body_crc: body_crc(key.as_bytes()),
        record_crc_ok: true,
    }
}

/// Goal: an ack no slave held is caught; one slave holding it is enough.
#[test]
fn ack_no_slave_held_is_caught() {
    let mut h = History::new();
    let (_, ack) = acked(&mut h, 1, "k0", 0, &[(S1, false), (S2, false)]);
    let v = check_replica_acks(&h);
    assert_eq!(names(&v), ["sync-master-ack-before-replica"]);
    assert_eq!(v[0].event_index, ack);

    let mut h = History::new();
    acked(&mut h, 1, "k0", 0, &[(S1, false), (S2, true)]);
    assert!(check_replica_acks(&h).is_empty());
}

/// Goal: a slave that lost data while the send was in flight excuses the ack (it may have
/// held the record when the master answered), a slave process crash (page cache kept) or a
/// loss after the ack does not.
#[test]
fn ack_excused_only_by_a_loss_in_flight() {
    let mut h = History::new();
    let op = h.send_invoked(1, "p0", T, "k0", b"k0");
    h.power_lost(2, S1, PowerLossPolicy::DropUnsynced);
    h.send_ok(3, op, q(0), 0, FlushMode::Async);
    h.replica_at_ack(3, op, S1, false);
    assert!(check_replica_acks(&h).is_empty());

    let mut h = History::new();
    let op = h.send_invoked(1, "p0", T, "k0", b"k0");
    h.disk_destroyed(2, S1);
    h.send_ok(3, op, q(0), 0, FlushMode::Async);
    h.replica_at_ack(3, op, S1, false);
    assert!(check_replica_acks(&h).is_empty());

    let mut h = History::new();
    let op = h.send_invoked(1, "p0", T, "k0", b"k0");
    h.node_crashed(2, S1);
    h.power_lost(2, S1, PowerLossPolicy::KeepUnsynced);
    h.send_ok(3, op, q(0), 0, FlushMode::Async);
    h.replica_at_ack(3, op, S1, false);
    h.disk_destroyed(4, S1);
    assert_eq!(
        names(&check_replica_acks(&h)),
        ["sync-master-ack-before-replica"]
    );
}

/// Goal: a slave differing from its master is caught unless a power loss of the master
/// explains it (the difference starts at or after the master's durable end then).
#[test]
fn replica_prefix_difference_is_caught_unless_explained() {
    let mut h = History::new();
    h.replica_compared(10, S1, B, 0..500, 600, None);
    assert!(check_replica_prefix(&h).is_empty());

    let mut h = History::new();
    h.replica_compared(10, S1, B, 0..500, 600, Some(300));
    let v = check_replica_prefix(&h);
    assert_eq!(names(&v), ["replica-prefix"]);
    assert_eq!(v[0].event_index, 0);

    // The master was durable to 200 when it lost power: bytes from 200 on may differ.
    let mut h = History::new();
    h.power_lost(5, B, PowerLossPolicy::DropUnsynced);
    h.durable_at_power_loss(5, B, 200);
    h.replica_compared(10, S1, B, 0..500, 600, Some(300));
    assert!(check_replica_prefix(&h).is_empty());
    assert_eq!(statistics(&h).replica_divergences, 1);

    // Durable to 400: a difference at 300 is in what the master had synced.
    let mut h = History::new();
    h.power_lost(5, B, PowerLossPolicy::DropUnsynced);
    h.durable_at_power_loss(5, B, 400);
    h.replica_compared(10, S1, B, 0..500, 600, Some(300));
    assert_eq!(names(&check_replica_prefix(&h)), ["replica-prefix"]);

    // Another broker's power loss explains nothing.
    let mut h = History::new();
    h.durable_at_power_loss(5, "broker-b", 0);
    h.replica_compared(10, S1, B, 0..500, 600, Some(300));
    assert_eq!(names(&check_replica_prefix(&h)), ["replica-prefix"]);
}

/// Goal: a replicated ack lost from the master (a power loss, allowed under ASYNC_FLUSH) must
/// be on a slave; caught when it is on none, accepted when a slave kept it or every slave that
/// held it lost data afterwards.
#[test]
fn replica_lost_write_is_caught() {
    let base = |h: &mut History| {
        let (_, ack) = acked(h, 1, "k0", 0, &[(S1, true)]);
        h.power_lost(5, B, PowerLossPolicy::DropUnsynced);
        h.durable_at_power_loss(5, B, 0);
        h.read_back_broker(20, B);
        h.read_back_queue(20, q(0), 0, 0, Vec::new());
        ack
    };
    let mut h = History::new();
    let ack = base(&mut h);
    h.replica_read_back(21, S1, B, Vec::new());
    let v = check_replica_lost_writes(&h);
    assert_eq!(names(&v), ["replica-lost-write"]);
    assert_eq!(v[0].event_index, ack);
    // The whole verdict: `lost-write` allows the master's loss (ASYNC_FLUSH), this does not.
    assert_eq!(
        names(&check_all(&h, &CheckConfig::default())),
        ["replica-lost-write"]
    );

    let mut h = History::new();
    base(&mut h);
    h.replica_read_back(21, S1, B, vec![read_back("k0", 0)]);
    assert!(check_replica_lost_writes(&h).is_empty());

    let mut h = History::new();
    base(&mut h);
    h.power_lost(10, S1, PowerLossPolicy::TearUnsynced);
    h.replica_read_back(21, S1, B, Vec::new());
    assert!(check_replica_lost_writes(&h).is_empty());

    // No slave read back: not judged.
    let mut h = History::new();
    base(&mut h);
    assert!(check_replica_lost_writes(&h).is_empty());
}

/// Goal: replication events render to one stable line each (the trace digest hashes them).
#[test]
fn replication_events_render() {
    let mut h = History::new();
    let (_, _) = acked(&mut h, 1, "k0", 0, &[(S1, true)]);
    h.disk_destroyed(2, S1);
    h.durable_at_power_loss(3, B, 64);
    h.replica_compared(4, S1, B, 0..128, 256, Some(64));
    h.replica_read_back(5, S1, B, vec![read_back("k0", 0)]);
    let lines = h.renderings();
    assert_eq!(lines[2], "#2 t=2 replica-at-ack op0 broker-a-s1 held");
    assert_eq!(lines[3], "#3 t=2 disk-destroyed broker-a-s1");
    assert_eq!(lines[4], "#4 t=3 durable-at-power-loss broker-a 64");
    assert_eq!(
        lines[5],
        "#5 t=4 replica-compare broker-a-s1 of broker-a [0,128) master_end=256 differs at 64"
    );
    assert_eq!(
        lines[6],
        "#6 t=5 replica-read-back-broker broker-a-s1 of broker-a"
    );
    assert!(lines[7].starts_with("#7 t=5 replica-read-back broker-a-s1 broker-a/TopicA/0@0 key=k0"));
}

// ---- commits on slaves ----------------------------------------------------------------------

fn cfg() -> CheckConfig {
    CheckConfig::default()
}

/// Goal: a commit on a slave behind the group's committed offset is allowed only as far back as
/// the slave's copy of the master's offsets can lag (an instance that took the queue over while
/// the master was away started from that copy). The master held 5 at t=1 s, 12 at t=20 s and
/// 20 at t=30 s; a commit on the slave at t=31 s looks back to t=31 s − SLAVE_SYNC_LAG_MS
/// (16 s), when the master held 5: 8 is explained (counted), 3 is not. A master value at or
/// below it inside the window, or a restart of the slave or of the master inside it, explains
/// it too; one before the window does not.
#[test]
fn a_slave_commit_is_allowed_back_only_as_far_as_its_sync_lag() {
    assert_eq!(SLAVE_SYNC_LAG_MS, 15_000);
    let history = |extra: &dyn Fn(&mut History), slave_value: u64| {
        let mut h = History::new();
        h.offset_committed(1_000, "g1", q(0), 5);
        extra(&mut h);
        h.offset_committed(20_000, "g1", q(0), 12);
        h.offset_committed(30_000, "g1", q(0), 20);
        h.slave_offset_committed(31_000, S1, "g1", q(0), slave_value);
        h
    };
    let nothing = |_: &mut History| {};
    let h = history(&nothing, 8);
    assert!(check_committed_offsets(&h, &cfg()).is_empty());
    assert_eq!(statistics(&h).slave_lag_commits, 1);

    let h = history(&nothing, 3);
    let v = check_committed_offsets(&h, &cfg());
    assert_eq!(names(&v), ["offset-regression"]);
    assert_eq!(v[0].event_index, h.len() - 1);
    assert!(
        v[0].detail.contains("on slave broker-a-s1 after 20"),
        "{}",
        v[0].detail
    );
    assert_eq!(statistics(&h).slave_lag_commits, 0);

    // Explained: the master held 3 inside the window (after a reset of the group's offset),
    // or the slave restarted inside it.
    let inside = |h: &mut History| {
        h.offset_reset(16_900, "g1", q(0), 3);
        h.offset_committed(17_000, "g1", q(0), 3);
    };
    assert!(check_committed_offsets(&history(&inside, 3), &cfg()).is_empty());
    let slave_restart = |h: &mut History| {
        h.node_crashed(16_500, S1);
        h.node_restarted(17_000, S1);
    };
    assert!(check_committed_offsets(&history(&slave_restart, 3), &cfg()).is_empty());
    // Not explained: the same before the window.
    let before = |h: &mut History| {
        h.node_crashed(2_000, S1);
        h.node_restarted(2_500, S1);
    };
    assert_eq!(
        names(&check_committed_offsets(&history(&before, 3), &cfg())),
        ["offset-regression"]
    );
    // A commit on the slave early in the history, when nothing says what the master held a
    // sync interval before, is explained; one at or above the group's offset is not judged.
    let mut h = History::new();
    h.offset_committed(9_000, "g1", q(0), 20);
    h.slave_offset_committed(10_000, S1, "g1", q(0), 0);
    h.slave_offset_committed(11_000, S2, "g1", q(0), 25);
    assert!(check_committed_offsets(&h, &cfg()).is_empty());
}

/// Goal: nothing committed on a slave is lost. The master's commits recorded after a slave's
/// must not be lower (the slave hands its commits back, and the master takes the highest);
/// a master that did not take it back is caught at its commit (RocketMQ #1094: the group
/// starts again from the master's older offset). After several slaves' commits the highest is
/// owed. A restart of the master (it may come back with the offsets it persisted earlier) or a
/// stale owner's commit still explain a lower value.
#[test]
fn a_slave_commit_the_master_never_took_back_is_caught() {
    let mut h = History::new();
    h.offset_committed(1_000, "g1", q(0), 4);
    h.slave_offset_committed(5_000, S1, "g1", q(0), 10);
    h.offset_committed(30_000, "g1", q(0), 4);
    let v = check_committed_offsets(&h, &cfg());
    assert_eq!(names(&v), ["offset-regression"]);
    assert_eq!(v[0].event_index, 2);
    assert!(
        v[0].detail.contains("after 10 on slave broker-a-s1"),
        "{}",
        v[0].detail
    );

    // Two slaves: the master owes the highest of their commits.
    let mut h = History::new();
    h.slave_offset_committed(5_000, S1, "g1", q(0), 10);
    h.slave_offset_committed(5_000, S2, "g1", q(0), 7);
    h.offset_committed(30_000, "g1", q(0), 8);
    let v = check_committed_offsets(&h, &cfg());
    assert_eq!(names(&v), ["offset-regression"]);
    assert_eq!(v[0].event_index, 2);

    // Taken back: the master holds it, or more.
    for value in [10, 12] {
        let mut h = History::new();
        h.slave_offset_committed(5_000, S1, "g1", q(0), 10);
        h.slave_offset_committed(5_000, S2, "g1", q(0), 7);
        h.offset_committed(30_000, "g1", q(0), value);
        assert!(check_committed_offsets(&h, &cfg()).is_empty());
    }

    // The master restarted in between.
    let mut h = History::new();
    h.slave_offset_committed(5_000, S1, "g1", q(0), 10);
    h.node_crashed(6_000, B);
    h.node_restarted(7_000, B);
    h.offset_committed(30_000, "g1", q(0), 4);
    assert!(check_committed_offsets(&h, &cfg()).is_empty());
}

/// Goal: a slave's commit renders to one stable line.
#[test]
fn slave_commit_renders() {
    let mut h = History::new();
    h.slave_offset_committed(7, S1, "g1", q(2), 5);
    assert_eq!(
        h.renderings()[0],
        "#0 t=7 slave-commit broker-a-s1 g1 broker-a/TopicA/2=5"
    );
}
