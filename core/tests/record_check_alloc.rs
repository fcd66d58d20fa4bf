//! The pull path verifies every record it serves; that check must cost no allocation (only its
//! CRCs). Counted with a global allocator of this test binary, on this thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use vostok_core::message::{keys, record_crc, MessageRecord, Properties};
use vostok_core::store::commitlog::check_record_view;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// const-initialised thread local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn checking_a_record_allocates_nothing() {
    let mut properties = Properties::new();
    properties.insert(keys::TAGS, "TagA");
    properties.insert(keys::KEYS, "order-1 order-2");
    properties.insert(keys::UNIQ_KEY, "7F00000100002A9F0000000000000001");
    record_crc::reserve(&mut properties);
    let record = MessageRecord {
        queue_id: 3,
        flag: 0,
        queue_offset: 12,
        physical_offset: 4096,
        sys_flag: 0,
        born_timestamp_ms: 1_700_000_000_000,
        born_host: "127.0.0.1:50000".parse().unwrap(),
        store_timestamp_ms: 1_700_000_000_001,
        store_host: "127.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(vec![b'x'; 1024]),
        topic: "TopicTest".to_owned(),
        properties,
    };
    let mut bytes = record.encode_to_vec().unwrap();
    record_crc::seal(&mut bytes).unwrap();

    let before = allocations();
    let mut served = 0;
    for _ in 0..1000 {
        let view = check_record_view(&bytes).expect("a sound record");
        if view.topic == "TopicTest" && view.queue_offset == 12 {
            served += 1;
        }
    }
    let during = allocations() - before;
    assert_eq!(served, 1000);
    assert_eq!(
        during, 0,
        "the check allocated {during} times over 1000 records"
    );

    // The counter counts: the owned check (topic string, property map) does allocate.
    let shared = Bytes::from(bytes);
    let before = allocations();
    let owned = vostok_core::store::commitlog::check_record(shared).expect("a sound record");
    assert!(allocations() > before);
    assert_eq!(owned.topic, "TopicTest");
}
