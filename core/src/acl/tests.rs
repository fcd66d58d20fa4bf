//! The checks in RocketMQ 4.9.8's order, with its remarks, against its example file.

use super::*;

const EXAMPLE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
accounts:
  - accessKey: RocketMQ
    secretKey: "12345678"
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
      - groupB=PUB|SUB
  - accessKey: rocketmq2
    secretKey: "12345678"
    whiteRemoteAddress: 192.168.1.*
    admin: true
"#;

fn acl() -> PlainAcl {
    PlainAcl::build([&AclFile::parse(EXAMPLE).unwrap()]).unwrap()
}

const CLIENT: &str = "127.0.0.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `request` signed by `key` with `secret`, as the client hook does.
fn signed(request: RemotingCommand, key: &str, secret: &str) -> RemotingCommand {
    let request = request.with_ext(ACCESS_KEY, key);
    let signature = sign(&signed_content(&request), secret);
    request.with_ext(SIGNATURE, signature)
}

fn send(topic: &str) -> RemotingCommand {
    RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_ext("a", "PG")
        .with_ext("b", topic)
        .with_body(&b"body"[..])
}

fn pull(topic: &str, group: &str) -> RemotingCommand {
    RemotingCommand::request(request::PULL_MESSAGE)
        .with_ext("topic", topic)
        .with_ext("consumerGroup", group)
}

fn remark(result: Result<(), AclDenied>) -> String {
    result.expect_err("refused").remark
}

#[test]
fn unsigned_unknown_and_badly_signed_requests_are_refused_with_rocketmqs_remarks() {
    let acl = acl();
    assert_eq!(
        remark(acl.check(&send("topicB"), ip(CLIENT))),
        "org.apache.rocketmq.acl.common.AclException: No accessKey is configured, \
         org.apache.rocketmq.acl.plain.PlainPermissionManager.validate(PlainPermissionManager.java:664)"
    );
    let unknown = signed(send("topicB"), "Nobody123", "12345678");
    assert!(remark(acl.check(&unknown, ip(CLIENT))).contains("No acl config for Nobody123"));
    let wrong = signed(send("topicB"), "RocketMQ", "wrong-secret");
    assert!(remark(acl.check(&wrong, ip(CLIENT)))
        .contains("Check signature failed for accessKey=RocketMQ"));
    // A signed request changed on the way (another body) fails too.
    let mut tampered = signed(send("topicB"), "RocketMQ", "12345678");
    tampered.body = bytes::Bytes::from_static(b"other");
    assert!(acl.check(&tampered, ip(CLIENT)).is_err());
}

#[test]
fn permissions_by_resource_then_by_default() {
    let acl = acl();
    let ok = |r: RemotingCommand| acl.check(&signed(r, "RocketMQ", "12345678"), ip(CLIENT));
    assert_eq!(ok(send("topicB")), Ok(()));
    assert!(remark(ok(send("topicA"))).contains("No default permission for topic:topicA"));
    assert!(remark(ok(send("topicC"))).contains("No default permission for topic:topicC"));
    // No explicit permission: the default topic permission (DENY).
    assert!(remark(ok(send("other"))).contains("No default permission for topic:other"));
    assert_eq!(ok(pull("topicC", "groupB")), Ok(()));
    assert!(remark(ok(pull("topicC", "groupA"))).contains("No default permission for group:groupA"));
    // Default group permission SUB.
    assert_eq!(ok(pull("topicB", "anyGroup")), Ok(()));
    // The trace topic takes anyone's signed sends.
    assert_eq!(ok(send("RMQ_SYS_TRACE_TOPIC")), Ok(()));
    // Admin codes need an admin account.
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_ext("topic", "T");
    assert_eq!(
        remark(ok(create.clone())),
        "org.apache.rocketmq.acl.common.AclException: Need admin permission for request \
         code=17, but accessKey=RocketMQ is not, \
         org.apache.rocketmq.acl.plain.PlainPermissionManager.checkPerm(PlainPermissionManager.java:581)"
    );
    assert_eq!(
        acl.check(&signed(create, "rocketmq2", "12345678"), ip(CLIENT)),
        Ok(())
    );
}

#[test]
fn heartbeats_need_every_group_and_topic_they_name() {
    let acl = acl();
    let heartbeat = |group: &str, topic: &str| {
        let body = serde_json::json!({"clientID": "c", "consumerDataSet": [{"groupName": group,
            "subscriptionDataSet": [{"topic": topic}, {"topic": format!("%RETRY%{group}")}]}]});
        let r = RemotingCommand::request(request::HEART_BEAT)
            .with_body(serde_json::to_vec(&body).unwrap());
        acl.check(&signed(r, "RocketMQ", "12345678"), ip(CLIENT))
    };
    assert_eq!(heartbeat("groupB", "topicC"), Ok(()));
    assert!(remark(heartbeat("groupA", "topicC")).contains("group:groupA"));
    assert!(remark(heartbeat("groupB", "topicA")).contains("topic:topicA"));
    let bad = RemotingCommand::request(request::HEART_BEAT).with_body(&b"{"[..]);
    assert!(
        remark(acl.check(&signed(bad, "RocketMQ", "12345678"), ip(CLIENT)))
            .contains("PlainAccessValidator.parse")
    );
}

#[test]
fn white_listed_addresses_skip_the_checks() {
    let acl = acl();
    // Globally white-listed: no account needed at all.
    assert_eq!(acl.check(&send("topicA"), ip("10.10.103.9")), Ok(()));
    // The account's own white list: no signature needed, and no permission check.
    let unsigned = send("topicA").with_ext(ACCESS_KEY, "rocketmq2");
    assert_eq!(acl.check(&unsigned, ip("192.168.1.20")), Ok(()));
    assert!(acl.check(&unsigned, ip("192.168.2.20")).is_err());
}

#[test]
fn files_rocketmq_refuses_are_refused() {
    let short = "accounts:\n  - accessKey: short\n    secretKey: 12345678\n";
    assert_eq!(
        PlainAcl::build([&AclFile::parse(short).unwrap()])
            .unwrap_err()
            .0,
        "The accessKey=short and secretKey=12345678 cannot be null and length should longer than 6"
    );
    let perms = "accounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n    topicPerms:\n      - topicA\n";
    assert_eq!(
        PlainAcl::build([&AclFile::parse(perms).unwrap()])
            .unwrap_err()
            .0,
        "Parse resource permission failed for topic:topicA"
    );
    let address = "globalWhiteRemoteAddresses:\n  - 10.1.1.1,2\n";
    assert!(PlainAcl::build([&AclFile::parse(address).unwrap()]).is_err());
}

#[test]
fn a_key_defined_twice_keeps_its_first_definition() {
    let first =
        AclFile::parse("accounts:\n  - accessKey: RocketMQ\n    secretKey: 11111111\n").unwrap();
    let second =
        AclFile::parse("accounts:\n  - accessKey: RocketMQ\n    secretKey: 22222222\n").unwrap();
    let acl = PlainAcl::build([&first, &second]).unwrap();
    let create = RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG);
    assert_eq!(
        acl.check(&signed(create.clone(), "RocketMQ", "11111111"), ip(CLIENT)),
        Ok(())
    );
    assert!(acl
        .check(&signed(create, "RocketMQ", "22222222"), ip(CLIENT))
        .is_err());
}
