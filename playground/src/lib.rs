//! `vostok-playground`: Vostok in the browser.
//!
//! The plan: compile the real sans-IO core to WebAssembly, run a seeded in-memory cluster inside
//! the page (segment files in memory, virtual time), and let a static web page render the events
//! and snapshots the core emits: topics and queues, CommitLog and ConsumeQueue bytes, offsets and
//! lag, rebalancing, faults injected at a click. The page never re-implements protocol logic; a
//! seed plus the user's timestamped actions replays a session exactly. Not built yet: today this
//! crate only re-exports the core, which already builds for `wasm32-unknown-unknown`
//! (`scripts/test.sh wasm` proves it).

pub use vostok_core as core;
