//! Arbitrary bytes on an HA link (RocketMQ's HA v1, `vostok_core::ha`), from either side:
//!
//! * as a master's stream to a slave: frames decoded in arbitrary chunks and appended to an
//!   empty replica store, which either takes them (written end and dispatched offset move
//!   forward, dispatched never past written) or refuses them with an error and changes nothing
//!   or keeps only what it dispatched;
//! * as a slave's reports to a master: the master's link either takes them (its ack never
//!   beyond what it sent, never going back) or closes the link.
//!
//! Nothing panics, and the decoders never hold more than one frame's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vostok_core::ha::codec::{FrameDecoder, FRAME_HEADER_BYTES, MAX_FRAME_BODY_BYTES};
use vostok_core::ha::{HaMaster, HaMasterConfig, MasterAction};
use vostok_core::store::{MemStorage, MessageStore, StoreConfig};
use vostok_core::ConnId;

fuzz_target!(|data: &[u8]| {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector >> 1).max(1);
    if selector & 1 == 0 {
        slave_side(rest, chunk);
    } else {
        master_side(rest, chunk);
    }
});

fn slave_side(bytes: &[u8], chunk: usize) {
    let config = StoreConfig {
        commitlog_segment_bytes: 4096,
        consume_queue_units_per_segment: 8,
        ..StoreConfig::default()
    };
    let mut store = MessageStore::open(MemStorage::new(), config).expect("an empty store opens");
    let mut decoder = FrameDecoder::default();
    for piece in bytes.chunks(chunk) {
        decoder.extend(piece);
        assert!(decoder.buffered_bytes() <= FRAME_HEADER_BYTES + MAX_FRAME_BODY_BYTES + chunk);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            let before = (store.written_offset(), store.dispatched_offset());
            match store.append_replicated(frame.offset, &frame.body) {
                Ok(done) => {
                    assert!(done.dispatched <= done.written);
                    assert!(done.dispatched >= before.1 || before.0 .0 == 0);
                    assert!(frame.body.is_empty() || done.written > before.0);
                }
                Err(_) => {
                    let after = (store.written_offset(), store.dispatched_offset());
                    assert!(
                        after == before || after.0 == after.1,
                        "a refused append changes nothing, or keeps only what was dispatched: \
                         {before:?} → {after:?}"
                    );
                    return;
                }
            }
        }
    }
}

fn master_side(bytes: &[u8], chunk: usize) {
    let mut master = HaMaster::new(HaMasterConfig {
        transfer_batch_bytes: 100,
        segment_bytes: 1000,
        ..HaMasterConfig::default()
    });
    let link = ConnId(1);
    master.handle_accepted(0, link, "peer".into());
    let max = 5_000;
    let mut sent = 0u64;
    for (i, piece) in bytes.chunks(chunk).enumerate() {
        let now = i as u64;
        for action in master.handle_bytes(now, link, piece, 0, max) {
            if let MasterAction::Close { .. } = action {
                assert_eq!(master.links().count(), 0);
                return;
            }
        }
        for action in master.poll(now, max, |o| o - o % 1000 + 1000) {
            match action {
                MasterAction::Transfer { offset, len, .. } => {
                    assert!(offset + len <= max && len <= 100);
                    assert!(
                        offset / 1000 == (offset + len.max(1) - 1) / 1000,
                        "one segment"
                    );
                    sent = sent.max(offset + len);
                    master.handle_written(link, 12 + len);
                }
                MasterAction::Close { .. } => return,
            }
        }
        if let Some((_, state)) = master.links().next() {
            if let (Some(acked), Some(next)) = (state.acked, state.next_transfer) {
                assert!(
                    acked <= next.max(max),
                    "an ack is never beyond what the link may see"
                );
            }
        }
    }
}
