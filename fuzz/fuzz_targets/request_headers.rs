//! Typed request headers read from fuzzed ext fields: every `parse` returns a header or a
//! `HeaderError`, never panics; headers with a `write_to` survive write → parse unchanged.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vostok_core::remoting::codes::request;
use vostok_core::remoting::headers::*;
use vostok_core::remoting::pop::*;
use vostok_core::remoting::RemotingCommand;
use vostok_fuzz::{request_with, FuzzExt};

#[derive(Debug, Arbitrary)]
struct Input {
    code: u8,
    ext: FuzzExt,
}

const CODES: [i32; 10] = [
    request::SEND_MESSAGE,
    request::SEND_MESSAGE_V2,
    request::SEND_BATCH_MESSAGE,
    request::PULL_MESSAGE,
    request::LITE_PULL_MESSAGE,
    request::HEART_BEAT,
    request::POP_MESSAGE,
    request::ACK_MESSAGE,
    request::CHANGE_MESSAGE_INVISIBLETIME,
    request::NOTIFICATION,
];

fuzz_target!(|input: Input| {
    let code = CODES[usize::from(input.code) % CODES.len()];
    let cmd = request_with(code, &input.ext, Vec::new());

    if let Ok(header) = SendMessageRequestHeader::parse(&cmd) {
        for v2 in [false, true] {
            let mut out = RemotingCommand::request(if v2 {
                request::SEND_MESSAGE_V2
            } else {
                request::SEND_MESSAGE
            });
            header.write_to(&mut out, v2);
            let parsed =
                SendMessageRequestHeader::parse(&out).expect("a written send header parses");
            assert_eq!(
                parsed, header,
                "send header changed across write/parse (v2 {v2})"
            );
        }
    }
    let _ = SendMessageRequestHeader::parse_v1(&cmd);
    let _ = SendMessageRequestHeader::parse_v2(&cmd);
    if let Ok(header) = PullMessageRequestHeader::parse(&cmd) {
        let mut out = RemotingCommand::request(request::PULL_MESSAGE);
        header.write_to(&mut out);
        let parsed = PullMessageRequestHeader::parse(&out).expect("a written pull header parses");
        assert_eq!(parsed, header, "pull header changed across write/parse");
    }
    if let Ok(header) = ConsumerGroupHeader::parse(&cmd) {
        let mut out = RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP);
        header.write_to(&mut out);
        assert_eq!(ConsumerGroupHeader::parse(&out).ok(), Some(header));
    }
    let _ = QueryConsumerOffsetRequestHeader::parse(&cmd);
    let _ = UpdateConsumerOffsetRequestHeader::parse(&cmd);
    let _ = TopicQueueRequestHeader::parse(&cmd);
    let _ = SearchOffsetRequestHeader::parse(&cmd);
    let _ = UnregisterClientRequestHeader::parse(&cmd);
    let _ = CreateTopicRequestHeader::parse(&cmd);

    // POP: headers survive write/parse; receipt handles and offset lists parse or refuse.
    if let Ok(header) = PopMessageRequestHeader::parse(&cmd) {
        let mut out = RemotingCommand::request(request::POP_MESSAGE);
        header.write_to(&mut out);
        let parsed = PopMessageRequestHeader::parse(&out).expect("a written POP header parses");
        assert_eq!(parsed, header, "POP header changed across write/parse");
    }
    if let Ok(header) = AckMessageRequestHeader::parse(&cmd) {
        let mut out = RemotingCommand::request(request::ACK_MESSAGE);
        header.write_to(&mut out);
        assert_eq!(AckMessageRequestHeader::parse(&out).ok(), Some(header));
    }
    let _ = NotificationRequestHeader::parse(&cmd);
    let _ = PopMessageResponseHeader::parse(&cmd);
    let _ = ChangeInvisibleTimeResponseHeader::parse(&cmd);
    for value in cmd.ext_fields.values() {
        if let Ok(handle) = ExtraInfo::parse(value) {
            // A handle whose broker name holds no space encodes back to one that parses the same.
            if !handle.broker_name.contains(' ') {
                assert_eq!(ExtraInfo::parse(&handle.encode()).ok(), Some(handle));
            }
        }
        if let Some(starts) = parse_start_offset_info(value) {
            let items: Vec<_> = starts.into_iter().collect();
            let again = parse_start_offset_info(&encode_start_offset_info(&items));
            assert_eq!(
                again.map(|m| m.into_iter().collect::<Vec<_>>()),
                Some(items)
            );
        }
        let _ = parse_msg_offset_info(value);
        let _ = parse_order_count_info(value);
    }
});
