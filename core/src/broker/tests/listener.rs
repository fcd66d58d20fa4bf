//! The VIP port (`listenPort − 2`): the same broker, minus long polling.

use super::*;

/// Connection 9 is accepted on the VIP port (the harness's 1–4 are on the main port).
const VIP: u64 = 9;

fn with_vip_connection() -> Harness {
    let mut h = Harness::new(test_config());
    h.broker.handle_connected_on(
        h.now_ms,
        ConnId(VIP),
        "10.0.0.9:40009".parse().unwrap(),
        Listener::Vip,
    );
    h
}

#[test]
fn a_vip_connection_sends_and_reads_offsets_but_cannot_pull() {
    // Goal: RocketMQ's fast server serves sends and offset requests but has no pull processor.
    // Method: send on the VIP connection, read the queue's max offset there, then pull the same
    // message there (refused, 3) and on a main-port connection (served).
    let mut h = with_vip_connection();
    let sent = h.call(VIP, send_v2("TopicVip", 0, b"fast", "t"));
    assert_eq!(sent.code, response::SUCCESS, "{sent:?}");
    let max = h.call(
        VIP,
        RemotingCommand::request(request::GET_MAX_OFFSET)
            .with_ext("topic", "TopicVip")
            .with_ext("queueId", 0),
    );
    assert_eq!(max.code, response::SUCCESS, "{max:?}");
    assert_eq!(max.ext("offset"), Some("1"));

    let refused = h.call(
        VIP,
        pull_request(
            "G",
            "TopicVip",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION,
            Some("*"),
        ),
    );
    assert_eq!(refused.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        refused.remark.as_deref(),
        Some(" request type 11 not supported")
    );
    let mut lite = pull_request(
        "G",
        "TopicVip",
        0,
        0,
        pull_sys_flag::SUBSCRIPTION,
        Some("*"),
    );
    lite.code = request::LITE_PULL_MESSAGE;
    let refused = h.call(VIP, lite);
    assert_eq!(refused.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        refused.remark.as_deref(),
        Some(" request type 361 not supported")
    );

    let pulled = h.call(
        1,
        pull_request(
            "G",
            "TopicVip",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION,
            Some("*"),
        ),
    );
    assert_eq!(pulled.code, response::SUCCESS, "{pulled:?}");
    let bodies: Vec<_> = decode_records(&pulled.body)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, vec![Bytes::from_static(b"fast")]);
}

#[test]
fn a_connection_id_reused_after_a_vip_connection_is_a_main_one() {
    // Goal: the listener belongs to the connection, not to its id for ever.
    let mut h = with_vip_connection();
    h.broker.handle_disconnected(h.now_ms, ConnId(VIP));
    h.broker
        .handle_connected(h.now_ms, ConnId(VIP), "10.0.0.9:40010".parse().unwrap());
    h.call(VIP, send_v2("TopicVip", 0, b"m", "t"));
    let pulled = h.call(
        VIP,
        pull_request(
            "G",
            "TopicVip",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION,
            Some("*"),
        ),
    );
    assert_eq!(pulled.code, response::SUCCESS, "{pulled:?}");
}
