//! Arbitrary bytes into the remoting frame decoder: it must return frames, ask for more bytes or
//! report an error, and never panic, loop forever or allocate without bound. Every frame it
//! returns survives encode → decode unchanged, and re-encoding is canonical.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use vostok_core::remoting::FrameDecoder;
use vostok_fuzz::assert_command_round_trip;

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(data);
    loop {
        let len_before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(command)) => {
                // A decoded frame consumes at least its 4-byte length prefix; anything less
                // would let a peer keep the decoder spinning on the same bytes.
                assert!(buf.len() < len_before, "a decoded frame consumed no input");
                assert_command_round_trip(&command);
            }
            Ok(None) => {
                assert_eq!(
                    buf.len(),
                    len_before,
                    "Ok(None) must leave the buffer untouched"
                );
                break;
            }
            Err(_) => {
                assert_eq!(
                    buf.len(),
                    len_before,
                    "an error must leave the buffer untouched"
                );
                break;
            }
        }
    }
    // Byte-at-a-time delivery: the same input fed incrementally gives the same frames.
    if data.len() <= 4096 {
        let mut whole = BytesMut::from(data);
        let mut expected = Vec::new();
        while let Ok(Some(cmd)) = decoder.decode(&mut whole) {
            expected.push(cmd);
        }
        let mut trickled = Vec::new();
        let mut buf = BytesMut::new();
        for byte in data {
            buf.extend_from_slice(&[*byte]);
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => trickled.push(cmd),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        assert_eq!(
            trickled, expected,
            "incremental decoding differs from whole decoding"
        );
    }
});
