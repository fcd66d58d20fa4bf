//! One checker per invariant; see the table in the module docs.

use super::{CheckConfig, CheckReport, History, Stats, Violation};

/// Runs every checker; the violations come in event order.
pub fn check_all(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// [`check_all`] plus the run's [`Stats`].
pub fn check_report(history: &History, config: &CheckConfig) -> CheckReport {
    CheckReport {
        violations: check_all(history, config),
        stats: statistics(history),
    }
}

/// Counts sends, outcomes, deliveries, retry duplicates and faults.
pub fn statistics(history: &History) -> Stats {
    let _ = history;
    todo!()
}

/// `lost-write`: every acked send is in the final read-back of its queue.
pub fn check_lost_writes(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `phantom`: every delivered or read-back key was sent, and not by a send that definitely
/// failed.
pub fn check_phantoms(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `corrupt`: every delivered or read-back body checksum equals the sent one.
pub fn check_corruption(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `dense-offsets`: each read-back queue holds exactly one record per offset in
/// `[min_offset, max_offset)`.
pub fn check_dense_offsets(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `inconsistent-offsets`: one (queue, offset) never holds two keys, unless its broker lost
/// power in between.
pub fn check_consistent_offsets(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `order`: one producer's acked sends with one order key to one queue sit in send order.
pub fn check_order(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `offset-regression` and `offset-past-max`.
pub fn check_committed_offsets(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `at-least-once`: after `Drained`, every acked message reached every subscribed group.
pub fn check_at_least_once(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `bad-crc`: no record whose stored CRC mismatches its body is ever served.
pub fn check_bad_crc(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `early-delivery`: no delay or timer message is delivered before its due time.
pub fn check_delay(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}

/// `rolled-back-delivered`: a rolled-back transactional message is never delivered, and no half
/// message is delivered before its commit.
pub fn check_transactions(history: &History, config: &CheckConfig) -> Vec<Violation> {
    let _ = (history, config);
    todo!()
}
