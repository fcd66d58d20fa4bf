//! Arbitrary bytes as the header of one frame with serialize type 0 (JSON): a
//! bad header is a `BadHeader` error, never a panic; a header that parses gives a command that
//! survives encode → decode, and encoding it again reproduces the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vostok_fuzz::{assert_command_round_trip, decode_whole, frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = decode_whole(frame(0, data, b"body")) {
        assert_eq!(
            &cmd.body[..],
            b"body",
            "the body is not what followed the header"
        );
        assert_command_round_trip(&cmd);
    }
});
