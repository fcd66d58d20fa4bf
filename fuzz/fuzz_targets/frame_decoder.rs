//! Arbitrary bytes into the remoting frame decoder: it must return frames, ask for more bytes or
//! report an error, and never panic, loop forever or allocate without bound.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use vostok_core::remoting::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(data);
    loop {
        let len_before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(_command)) => {
                // A decoded frame consumes at least its 4-byte length prefix; anything less
                // would let a peer keep the decoder spinning on the same bytes.
                assert!(buf.len() < len_before, "a decoded frame consumed no input");
            }
            Ok(None) => {
                assert_eq!(
                    buf.len(),
                    len_before,
                    "Ok(None) must leave the buffer untouched"
                );
                break;
            }
            Err(_) => break,
        }
    }
});
