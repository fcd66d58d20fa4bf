//! Tag and SQL92 filtering on pulls, CHECK_CLIENT_CONFIG, and `enablePropertyFilter`.

use super::*;

fn sql_config() -> BrokerConfig {
    let mut config = test_config();
    config.enable_property_filter = true;
    config
}

fn send_with(h: &mut Harness, tag: &str, pairs: &[(&str, &str)], body: &[u8]) {
    let mut all = vec![("TAGS", tag), ("WAIT", "true")];
    all.extend_from_slice(pairs);
    let resp = h.call(
        1,
        send_request(request::SEND_MESSAGE_V2, "TopicS", 0, body, &props(&all)),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
}

fn sql_pull(offset: i64, expression: &str) -> RemotingCommand {
    let mut cmd = pull_request(
        "GS",
        "TopicS",
        0,
        offset,
        pull_sys_flag::SUBSCRIPTION,
        Some(expression),
    );
    cmd.ext_fields
        .insert("expressionType".to_owned(), "SQL92".to_owned());
    cmd
}

fn sql_heartbeat(expression: &str) -> RemotingCommand {
    let mut cmd = heartbeat("c1", "GS", "TopicS", expression);
    let mut body: serde_json::Value = serde_json::from_slice(&cmd.body).unwrap();
    body["consumerDataSet"][0]["subscriptionDataSet"][0]["expressionType"] = "SQL92".into();
    cmd.body = Bytes::from(serde_json::to_vec(&body).unwrap());
    cmd
}

fn check_client_config(expression_type: &str, expression: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientId": "c1",
        "group": "GS",
        "subscriptionData": {"topic": "TopicS", "subString": expression,
                             "expressionType": expression_type, "subVersion": 1}
    });
    RemotingCommand::request(request::CHECK_CLIENT_CONFIG)
        .with_body(serde_json::to_vec(&body).unwrap())
}

fn bodies(resp: &RemotingCommand) -> Vec<Vec<u8>> {
    decode_records(&resp.body)
        .iter()
        .map(|r| r.body.to_vec())
        .collect()
}

#[test]
fn sql92_pull_returns_exactly_the_matching_messages() {
    // SQL conformance: `a BETWEEN 0 AND 3` with a missing property never matching.
    let mut h = Harness::new(sql_config());
    for i in 0..10 {
        let a = i.to_string();
        send_with(&mut h, "tagA", &[("a", &a)], a.as_bytes());
    }
    send_with(&mut h, "tagA", &[], b"none");
    let resp = h.call(2, sql_pull(0, "a BETWEEN 0 AND 3"));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(bodies(&resp), [b"0", b"1", b"2", b"3"]);
    assert_eq!(resp.ext("nextBeginOffset"), Some("11"));

    let resp = h.call(2, sql_pull(0, "TAGS = 'tagA' AND (a > 7 OR a IS NULL)"));
    assert_eq!(
        bodies(&resp),
        [b"8".to_vec(), b"9".to_vec(), b"none".to_vec()]
    );
}

#[test]
fn sql92_with_no_match_moves_the_consumer_past_the_examined_units() {
    let mut h = Harness::new(sql_config());
    for _ in 0..5 {
        send_with(&mut h, "t", &[("a", "1")], b"x");
    }
    let resp = h.call(2, sql_pull(0, "a = 2"));
    assert_eq!(resp.code, response::PULL_RETRY_IMMEDIATELY, "{resp:?}");
    assert_eq!(resp.remark.as_deref(), Some("NO_MATCHED_MESSAGE"));
    assert_eq!(resp.ext("nextBeginOffset"), Some("5"));
}

#[test]
fn sql92_registered_by_heartbeat_filters_pulls_without_a_subscription() {
    let mut h = Harness::new(sql_config());
    send_with(&mut h, "t", &[("k", "v1")], b"1");
    send_with(&mut h, "t", &[("k", "v2")], b"2");
    assert_eq!(
        h.call(2, sql_heartbeat("k IN ('v2')")).code,
        response::SUCCESS
    );
    let resp = h.call(2, pull_request("GS", "TopicS", 0, 0, 0, None));
    assert_eq!(bodies(&resp), [b"2"]);

    // An expression that does not compile leaves no filter data: 27 on pulls relying on it.
    assert_eq!(h.call(3, sql_heartbeat("k IN (")).code, response::SUCCESS);
    let resp = h.call(2, pull_request("GS", "TopicS", 0, 0, 0, None));
    assert_eq!(resp.code, response::FILTER_DATA_NOT_EXIST, "{resp:?}");
}

#[test]
fn sql92_invalid_expression_is_subscription_parse_failed() {
    let mut h = Harness::new(sql_config());
    send_with(&mut h, "t", &[], b"x");
    let resp = h.call(2, sql_pull(0, "a >"));
    assert_eq!(resp.code, response::SUBSCRIPTION_PARSE_FAILED);
    assert_eq!(
        resp.remark.as_deref(),
        Some("parse the consumer's subscription failed")
    );
    let resp = h.call(2, check_client_config("SQL92", "a = = 1"));
    assert_eq!(resp.code, response::SUBSCRIPTION_PARSE_FAILED);
    let remark = resp.remark.unwrap_or_default();
    assert!(remark.starts_with("Invalid MessageSelector. "), "{remark}");
    assert!(remark.contains("position 4"), "{remark}");
    assert_eq!(
        h.call(2, check_client_config("SQL92", "a = 1")).code,
        response::SUCCESS
    );
    assert_eq!(
        h.call(2, check_client_config("TAG", "*")).code,
        response::SUCCESS
    );
}

#[test]
fn sql92_is_refused_when_property_filter_is_disabled() {
    let mut h = Harness::new(test_config());
    send_with(&mut h, "t", &[("a", "1")], b"x");
    let expected = "The broker does not support consumer to filter message by SQL92";
    let resp = h.call(2, sql_pull(0, "a = 1"));
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert_eq!(resp.remark.as_deref(), Some(expected));
    let resp = h.call(2, check_client_config("SQL92", "a = 1"));
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert_eq!(resp.remark.as_deref(), Some(expected));
}

#[test]
fn tag_filter_uses_hash_codes_so_colliding_tags_both_pass_the_broker() {
    // Tag conformance: "Aa" and "BB" share a Java hash code. The ConsumeQueue holds only the
    // code, so the broker lets both through; telling them apart is the client's exact check.
    assert_eq!(
        crate::message::tag_hash_code("Aa"),
        crate::message::tag_hash_code("BB")
    );
    let mut h = Harness::new(test_config());
    send_with(&mut h, "Aa", &[], b"aa");
    send_with(&mut h, "BB", &[], b"bb");
    send_with(&mut h, "Cc", &[], b"cc");
    let resp = h.call(
        2,
        pull_request(
            "GT",
            "TopicS",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION,
            Some("Aa"),
        ),
    );
    assert_eq!(bodies(&resp), [b"aa", b"bb"]);
    // A SQL92 selector on TAGS compares the string itself.
    let mut h = Harness::new(sql_config());
    send_with(&mut h, "Aa", &[], b"aa");
    send_with(&mut h, "BB", &[], b"bb");
    let resp = h.call(2, sql_pull(0, "TAGS = 'Aa'"));
    assert_eq!(bodies(&resp), [b"aa"]);
}
