//! `vostok-sim`: the deterministic simulator of Vostok.
//!
//! The plan: run whole clusters (NameServers, brokers, producers, consumers) built from the same
//! core and driver code as the production binary, over a simulated network and a simulated disk,
//! with faults drawn from a seed (partitions, message loss, crashes, power cuts with torn writes,
//! disk errors, clock skew), then check invariants such as "no acknowledged message is lost under
//! SYNC_FLUSH" and "per-queue offsets are dense and ordered". A failing seed replays to the same
//! trace. None of this is built yet: the binary says so and exits with status 2, so that nothing
//! mistakes it for a passing run.

/// Exit status of a binary that does not do its job yet.
const EXIT_NOT_IMPLEMENTED: i32 = 2;

fn main() {
    eprintln!("vostok-sim: the deterministic simulator is not implemented yet");
    std::process::exit(EXIT_NOT_IMPLEMENTED);
}
