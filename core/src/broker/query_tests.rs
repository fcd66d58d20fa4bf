//! QUERY_MESSAGE and VIEW_MESSAGE_BY_ID through the broker's request contract.

use super::*;
use crate::message::offset_msg_id;
use crate::remoting::headers::QueryMessageRequestHeader;

fn send_with_keys(topic: &str, body: &[u8], keys_prop: &str) -> RemotingCommand {
    send_request(
        request::SEND_MESSAGE_V2,
        topic,
        0,
        body,
        &props(&[("KEYS", keys_prop), ("WAIT", "true")]),
    )
}

fn query(
    topic: &str,
    key: &str,
    max_num: i32,
    begin: i64,
    end: i64,
    uniq: bool,
) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::QUERY_MESSAGE);
    QueryMessageRequestHeader {
        topic: topic.into(),
        key: key.into(),
        max_num,
        begin_timestamp_ms: begin,
        end_timestamp_ms: end,
        unique_key_query: uniq,
    }
    .write_to(&mut cmd);
    cmd
}

fn view(offset: i64) -> RemotingCommand {
    RemotingCommand::request(request::VIEW_MESSAGE_BY_ID)
        .with_ext("offset", offset)
        .with_ext("topic", "TopicA")
}

fn bodies(reply: &RemotingCommand) -> Vec<String> {
    decode_records(&reply.body)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[test]
fn query_by_key_and_by_uniq_key() {
    let mut h = Harness::new(test_config());
    let mut sent = Vec::new();
    for (i, keys_prop) in ["order-1", "order-2 order-1", "order-3"].iter().enumerate() {
        h.now_ms = T0 + i as u64 * 1000;
        let reply = h.call(
            1,
            send_with_keys("TopicA", format!("m{i}").as_bytes(), keys_prop),
        );
        assert_eq!(code_of(&reply), response::SUCCESS);
        sent.push(reply);
    }
    h.call(1, send_with_keys("TopicB", b"other", "order-1"));

    let reply = h.call(2, query("TopicA", "order-1", 32, 0, i64::MAX, false));
    assert_eq!(code_of(&reply), response::SUCCESS, "{:?}", reply.remark);
    assert_eq!(bodies(&reply), vec!["m1", "m0"]);
    assert_eq!(reply.remark, None);
    let last_ts: i64 = reply.ext_num("indexLastUpdateTimestamp").unwrap();
    let last_phy: i64 = reply.ext_num("indexLastUpdatePhyoffset").unwrap();
    assert_eq!(
        last_ts,
        (T0 + 2000) as i64,
        "TopicB's send was the last one indexed"
    );
    assert!(last_phy > 0);

    // maxNum and the time range.
    let reply = h.call(2, query("TopicA", "order-1", 1, 0, i64::MAX, false));
    assert_eq!(bodies(&reply), vec!["m1"]);
    let reply = h.call(
        2,
        query("TopicA", "order-1", 32, T0 as i64, T0 as i64 + 999, false),
    );
    assert_eq!(bodies(&reply), vec!["m0"]);

    // By UNIQ_KEY (the broker generated one for each send): maxNum is the broker's own.
    let uniq = decode_records(&h.call(2, view(0)).body)[0]
        .properties
        .get("UNIQ_KEY")
        .unwrap()
        .to_owned();
    let reply = h.call(2, query("TopicA", &uniq, 0, 0, i64::MAX, true));
    assert_eq!(code_of(&reply), response::SUCCESS);
    assert_eq!(bodies(&reply), vec!["m0"]);
    // Without the flag maxNum 0 asks for nothing.
    let reply = h.call(2, query("TopicA", &uniq, 0, 0, i64::MAX, false));
    assert_eq!(code_of(&reply), response::QUERY_NOT_FOUND);
}

#[test]
fn query_that_finds_nothing_is_22_with_the_index_header() {
    let mut h = Harness::new(test_config());
    h.call(1, send_with_keys("TopicA", b"m", "k"));
    for cmd in [
        query("TopicA", "missing", 32, 0, i64::MAX, false),
        query("TopicB", "k", 32, 0, i64::MAX, false),
        query("TopicA", "k", 32, 0, T0 as i64 - 1, false),
    ] {
        let reply = h.call(2, cmd);
        assert_eq!(code_of(&reply), response::QUERY_NOT_FOUND);
        assert_eq!(
            reply.remark.as_deref(),
            Some("can not find message, maybe time range not correct")
        );
        assert_eq!(
            reply.ext("indexLastUpdateTimestamp"),
            Some(T0.to_string().as_str())
        );
        assert!(reply.body.is_empty());
    }
    // A header without its required fields is a SYSTEM_ERROR.
    let bad = RemotingCommand::request(request::QUERY_MESSAGE).with_ext("topic", "TopicA");
    assert_eq!(code_of(&h.call(2, bad)), response::SYSTEM_ERROR);
}

#[test]
fn view_message_by_offset_returns_the_stored_record() {
    let mut h = Harness::new(test_config());
    h.call(1, send_with_keys("TopicA", b"first", "a"));
    let reply = h.call(1, send_with_keys("TopicA", b"second", "b"));
    let msg_id = reply.ext("msgId").unwrap().to_owned();
    let (addr, offset) = crate::message::decode_offset_msg_id(&msg_id).unwrap();
    assert_eq!(
        msg_id,
        offset_msg_id(addr, offset),
        "the send answered an offset message id"
    );
    let reply = h.call(2, view(offset as i64));
    assert_eq!(code_of(&reply), response::SUCCESS);
    let records = decode_records(&reply.body);
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"second");
    assert_eq!(records[0].physical_offset, offset as i64);

    for bad in [offset as i64 + 1, -1, i64::MAX] {
        let reply = h.call(2, view(bad));
        assert_eq!(code_of(&reply), response::SYSTEM_ERROR);
        assert_eq!(
            reply.remark,
            Some(format!("can not find message by the offset, {bad}"))
        );
    }
    let bad = RemotingCommand::request(request::VIEW_MESSAGE_BY_ID).with_ext("offset", "x");
    assert_eq!(code_of(&h.call(2, bad)), response::SYSTEM_ERROR);
}

#[test]
fn the_index_answers_after_a_restart() {
    let mut h = Harness::new(test_config());
    h.call(1, send_with_keys("TopicA", b"kept", "survivor"));
    h.broker.shutdown(h.now_ms);
    h.drain();
    let storage = std::mem::take(h.broker.store_mut().storage_mut());
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    let reply = h.call(2, query("TopicA", "survivor", 32, 0, i64::MAX, false));
    assert_eq!(bodies(&reply), vec!["kept"]);
}
