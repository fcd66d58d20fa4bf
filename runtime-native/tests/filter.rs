//! Tag and SQL92 filtering against `vostok standalone` with `enablePropertyFilter=true`, over
//! raw remoting frames (RocketMQ conformance: tag, SQL).

mod common;

use common::*;

const TOPIC: &str = "FilterTopic";

fn started() -> (Standalone, RawConn) {
    let broker = Standalone::start_with(BrokerOptions {
        broker_conf: Some("enablePropertyFilter=true\n".to_owned()),
        ..BrokerOptions::default()
    });
    let conn = RawConn::connect(&broker.broker_addr);
    (broker, conn)
}

/// SEND_MESSAGE_V2 to queue 0 with a tag and user properties.
fn send(conn: &mut RawConn, tag: &str, props: &[(&str, &str)], body: &[u8]) {
    let mut all = vec![("TAGS", tag), ("WAIT", "true")];
    all.extend_from_slice(props);
    let ext = [
        ("a", "filter-test-producer".to_string()),
        ("b", TOPIC.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", "0".to_string()),
        ("f", "0".to_string()),
        ("g", "0".to_string()),
        ("h", "0".to_string()),
        ("i", encode_properties(&all)),
        ("j", "0".to_string()),
        ("k", "false".to_string()),
        ("m", "false".to_string()),
    ];
    let f = conn.request(code::SEND_MESSAGE_V2, &ext, body);
    assert_eq!(f.code(), 0, "send failed: {:?}", f.header);
}

fn pull(conn: &mut RawConn, expression_type: &str, expression: &str) -> Frame {
    let mut ext = pull_ext("filter-group", TOPIC, 0, 0);
    for (k, v) in ext.iter_mut() {
        match *k {
            "subscription" => *v = expression.to_owned(),
            "expressionType" => *v = expression_type.to_owned(),
            _ => {}
        }
    }
    conn.request(code::PULL_MESSAGE, &ext, &[])
}

fn bodies(f: &Frame) -> Vec<String> {
    decode_records(&f.body)
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[test]
fn sql_filter_by_property_between_in_and_is_null() {
    let (_broker, mut conn) = started();
    for i in 0..6 {
        let a = i.to_string();
        let colour = if i % 2 == 0 { "red" } else { "blue" };
        send(
            &mut conn,
            "tagA",
            &[("a", &a), ("colour", colour)],
            a.as_bytes(),
        );
    }
    send(&mut conn, "tagB", &[], b"bare");

    let f = pull(
        &mut conn,
        "SQL92",
        "a BETWEEN 1 AND 4 AND colour IN ('red')",
    );
    assert_eq!(f.code(), 0, "{:?}", f.header);
    assert_eq!(bodies(&f), ["2", "4"]);
    let f = pull(&mut conn, "SQL92", "a IS NULL OR a >= 5");
    assert_eq!(bodies(&f), ["5", "bare"]);
    let f = pull(&mut conn, "sql92", "TAGS <> 'tagA' AND colour IS NULL");
    assert_eq!(bodies(&f), ["bare"]);
}

#[test]
fn sql_filter_invalid_expression_is_refused() {
    let (_broker, mut conn) = started();
    send(&mut conn, "t", &[], b"x");
    let f = pull(&mut conn, "SQL92", "a BETWEEN 1");
    assert_eq!(f.code(), 23, "SUBSCRIPTION_PARSE_FAILED: {:?}", f.header);
    assert_eq!(f.remark(), "parse the consumer's subscription failed");

    let body = serde_json::json!({
        "clientId": "c1",
        "group": "filter-group",
        "subscriptionData": {"topic": TOPIC, "subString": "a IN ()", "expressionType": "SQL92"}
    });
    let f = conn.request(46, &[], &serde_json::to_vec(&body).unwrap());
    assert_eq!(f.code(), 23, "CHECK_CLIENT_CONFIG: {:?}", f.header);
    assert!(
        f.remark().starts_with("Invalid MessageSelector. "),
        "{}",
        f.remark()
    );
}

#[test]
fn tag_filter_with_colliding_hash_codes_is_settled_by_the_client() {
    // "Aa" and "BB" have the same Java String.hashCode: the broker, which only sees the
    // ConsumeQueue's code, returns both; a client's exact tag check keeps them apart.
    let (_broker, mut conn) = started();
    send(&mut conn, "Aa", &[], b"aa");
    send(&mut conn, "BB", &[], b"bb");
    send(&mut conn, "Cc", &[], b"cc");
    let f = pull(&mut conn, "TAG", "Aa");
    assert_eq!(bodies(&f), ["aa", "bb"]);
    let exact: Vec<String> = decode_records(&f.body)
        .into_iter()
        .filter(|r| r.properties.iter().any(|(k, v)| k == "TAGS" && v == "Aa"))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(exact, ["aa"]);
}
