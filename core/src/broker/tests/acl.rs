//! ACL 1.0 on the broker: refused requests never run, signed ones do, and the ACL admin
//! requests change the files through the driver.

use super::*;
use crate::acl::{sign, signed_content, AclFile, ACCESS_KEY, SIGNATURE};
use crate::broker::acl::codes;

const DEFAULT_FILE: &str = "/opt/rocketmq/conf/plain_acl.yml";
const FILE: &str = r#"
accounts:
  - accessKey: RocketMQ
    secretKey: "12345678"
    defaultTopicPerm: PUB|SUB
    defaultGroupPerm: SUB
  - accessKey: rocketmq2
    secretKey: "12345678"
    admin: true
"#;

fn with_acl() -> Harness {
    let mut h = Harness::new(BrokerConfig {
        acl_enable: true,
        ..test_config()
    });
    h.broker
        .handle_acl_files(vec![(DEFAULT_FILE.to_owned(), FILE.to_owned())])
        .unwrap();
    h
}

fn signed(request: RemotingCommand, key: &str) -> RemotingCommand {
    let request = request.with_ext(ACCESS_KEY, key);
    let signature = sign(&signed_content(&request), "12345678");
    request.with_ext(SIGNATURE, signature)
}

fn stored(h: &Harness) -> u64 {
    h.broker.store().max_offset("TopicA", 0).0
}

#[test]
fn an_unsigned_request_is_refused_and_never_runs() {
    let mut h = with_acl();
    let resp = h.call(1, send_v2("TopicA", 0, b"m", "t"));
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp
        .remark
        .as_deref()
        .unwrap()
        .starts_with("org.apache.rocketmq.acl.common.AclException: No accessKey is configured"));
    assert!(
        !h.broker.topics().contains_key("TopicA"),
        "not even auto-created"
    );
    // Oneway: no answer either, and nothing stored.
    let mut oneway = send_v2("TopicA", 0, b"m", "t");
    oneway.flag |= crate::remoting::command::FLAG_ONEWAY;
    assert!(h.request(1, oneway).is_empty());
    // A refused heartbeat registers nothing.
    assert_eq!(
        h.call(1, heartbeat("c1", "G1", "TopicA", "*")).code,
        response::SYSTEM_ERROR
    );
    assert!(h.broker.clients.consumers.is_empty());

    let resp = h.call(1, signed(send_v2("TopicA", 0, b"m", "t"), "RocketMQ"));
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    assert_eq!(stored(&h), 1);
}

#[test]
fn admin_codes_need_an_admin_account_and_unserved_codes_are_not_checked() {
    let mut h = with_acl();
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "TopicN")
        .with_ext("readQueueNums", 1)
        .with_ext("writeQueueNums", 1)
        .with_ext("perm", 6);
    let resp = h.call(1, signed(create.clone(), "RocketMQ"));
    assert!(resp
        .remark
        .unwrap()
        .contains("Need admin permission for request code=17"));
    let resp = h.call(1, signed(create, "rocketmq2"));
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    let unknown = h.call(1, RemotingCommand::request(9999));
    assert_eq!(unknown.code, response::REQUEST_CODE_NOT_SUPPORTED);
}

/// The write the driver is asked to do, answered as it would after writing.
fn written(h: &mut Harness, out: Vec<BrokerOutput>) -> (String, AclFile, RemotingCommand) {
    let (path, contents, answer) = out
        .into_iter()
        .find_map(|o| match o {
            BrokerOutput::WriteAclFile {
                path,
                contents,
                answer,
            } => Some((path, contents, answer)),
            _ => None,
        })
        .expect("a file to write");
    let _ = h;
    (
        path,
        AclFile::parse(&contents).expect("written file parses"),
        answer.expect("an answer").success,
    )
}

#[test]
fn acl_admin_requests_change_the_file_and_what_is_allowed_at_once() {
    let mut h = with_acl();
    let update = RemotingCommand::request(request::UPDATE_AND_CREATE_ACL_CONFIG)
        .with_ext("accessKey", "NewUser1")
        .with_ext("secretKey", "12345678")
        .with_ext("defaultTopicPerm", "PUB")
        .with_ext("topicPerms", "TopicX=PUB,TopicY=SUB");
    let out = h.request(1, signed(update, "rocketmq2"));
    assert!(responses_on(&out, 1).is_empty(), "answered once written");
    let (path, file, answer) = written(&mut h, out);
    assert_eq!(path, DEFAULT_FILE);
    assert_eq!(answer.code, response::SUCCESS);
    let account = file
        .accounts
        .iter()
        .find(|a| a.access_key == "NewUser1")
        .unwrap();
    assert_eq!(account.topic_perms, ["TopicX=PUB", "TopicY=SUB"]);
    assert_eq!(file.data_version.map(|v| v.counter), Some(1));
    // The new account signs sends at once.
    let resp = h.call(1, signed(send_v2("TopicA", 0, b"m", "t"), "NewUser1"));
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);

    // Bad permissions are refused with RocketMQ's code and text.
    let bad = RemotingCommand::request(request::UPDATE_AND_CREATE_ACL_CONFIG)
        .with_ext("accessKey", "NewUser1")
        .with_ext("secretKey", "12345678")
        .with_ext("topicPerms", "TopicX=ALL");
    let resp = h.call(1, signed(bad, "rocketmq2"));
    assert_eq!(resp.code, codes::UPDATE_AND_CREATE_ACL_CONFIG_FAILED);
    assert!(resp
        .remark
        .unwrap()
        .starts_with("Parse resource permission error for TopicX=ALL."));

    // Version info.
    let info = h.call(
        1,
        signed(
            RemotingCommand::request(request::GET_BROKER_CLUSTER_ACL_INFO),
            "rocketmq2",
        ),
    );
    assert_eq!(info.code, response::SUCCESS);
    assert!(info.ext("version").unwrap().starts_with("{\"counter\":1,"));
    assert!(info
        .ext("allAclFileVersion")
        .unwrap()
        .contains(DEFAULT_FILE));
    assert_eq!(info.ext("clusterName"), Some("DefaultCluster"));

    // Delete: unknown keys fail, known ones go.
    let delete = |key: &str| {
        signed(
            RemotingCommand::request(request::DELETE_ACL_CONFIG).with_ext("accessKey", key),
            "rocketmq2",
        )
    };
    let resp = h.call(1, delete("Nobody123"));
    assert_eq!(resp.code, codes::DELETE_ACL_CONFIG_FAILED);
    let out = h.request(1, delete("NewUser1"));
    let (_, file, _) = written(&mut h, out);
    assert!(file.accounts.iter().all(|a| a.access_key != "NewUser1"));
    let resp = h.call(1, signed(send_v2("TopicA", 0, b"m", "t"), "NewUser1"));
    assert!(resp.remark.unwrap().contains("No acl config for NewUser1"));

    // Global white list: everyone from there needs no account.
    let white = RemotingCommand::request(request::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG)
        .with_ext("globalWhiteAddrs", "10.0.0.*")
        .with_ext("aclFileFullPath", DEFAULT_FILE);
    let out = h.request(1, signed(white, "rocketmq2"));
    let (_, file, _) = written(&mut h, out);
    assert_eq!(file.global_white_remote_addresses, ["10.0.0.*"]);
    // Connection 1's peer is 10.0.0.1 (the harness's addresses).
    assert_eq!(
        h.call(1, send_v2("TopicA", 0, b"m", "t")).code,
        response::SUCCESS
    );
}

#[test]
fn a_file_that_does_not_compile_leaves_the_acl_as_it_was() {
    let mut h = with_acl();
    let err = h
        .broker
        .handle_acl_files(vec![(
            DEFAULT_FILE.to_owned(),
            "accounts:\n  - accessKey: short\n    secretKey: x\n".to_owned(),
        )])
        .unwrap_err();
    assert!(err.0.contains("length should longer than 6"));
    let resp = h.call(1, signed(send_v2("TopicA", 0, b"m", "t"), "RocketMQ"));
    assert_eq!(resp.code, response::SUCCESS);
}

#[test]
fn every_served_code_is_served() {
    let mut h = Harness::new(test_config());
    for code in SERVED_CODES {
        let resp = h.request(1, RemotingCommand::request(*code));
        for r in responses_on(&resp, 1) {
            assert_ne!(r.code, response::REQUEST_CODE_NOT_SUPPORTED, "code {code}");
        }
    }
}
