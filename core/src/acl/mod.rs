//! ACL 1.0 ("plain ACL", RocketMQ 4.x up to 5.3.2): every request signed with an account's
//! secret key and allowed by its permissions, before it runs.
//!
//! A client's RPC hook adds `AccessKey` (and `SecurityToken` when it has one) to the request's
//! ext fields, then `Signature`:
//!
//! ```text
//! Signature = Base64( HmacSHA1( secretKey,
//!               concat( values of every ext field but Signature, sorted by key ) ‖ body ) )
//! ```
//!
//! The broker checks a request as RocketMQ 4.9.8's `PlainPermissionManager.validate` does, in
//! its order, and answers a refusal with SYSTEM_ERROR (1) and the same remark (the exception's
//! text and the first frame of its Java stack, which clients show):
//!
//! 1. the peer matches `globalWhiteRemoteAddresses` → allowed, nothing else checked;
//! 2. no `AccessKey` → "No accessKey is configured";
//! 3. an unknown key → "No acl config for <key>";
//! 4. the peer matches the account's `whiteRemoteAddress` → allowed;
//! 5. a wrong signature → "Check signature failed for accessKey=<key>";
//! 6. a send to `RMQ_SYS_TRACE_TOPIC` → allowed;
//! 7. an admin code (17, 25, 200, 207, 215) from a non-admin account → "Need admin permission
//!    for request code=<code>, but accessKey=<key> is not";
//! 8. each resource the request touches (below) against the account's permission on it, else
//!    its default topic or group permission → "No default permission for topic:<t>" (or
//!    `group:<g>`). An admin account without any topic or group permission may do anything.
//!
//! Resources by request (a group `G` is its retry topic `%RETRY%G`):
//!
//! ```text
//! SEND_MESSAGE 10 / _V2 310   topic PUB (a %RETRY% topic: the sending group SUB)
//! PULL_MESSAGE 11             topic SUB, consumerGroup SUB
//! QUERY_MESSAGE 12            topic SUB
//! UPDATE_CONSUMER_OFFSET 15   topic SUB, consumerGroup SUB
//! HEART_BEAT 34               every consumer group SUB, every subscribed topic SUB
//! UNREGISTER_CLIENT 35        consumerGroup SUB
//! CONSUMER_SEND_MSG_BACK 36   group SUB
//! GET_CONSUMER_LIST_BY_GROUP 38  consumerGroup SUB
//! anything else               none: a known account and a good signature suffice
//! ```
//!
//! The server leaves `_UNIQUE_KEY_QUERY` out of the signed text, as 4.9.x does (its own
//! clients sign it, so a query by UNIQ_KEY fails there and here alike; RocketMQ 5.1 fixed the
//! client).

pub mod address;
pub mod config;
mod signature;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

pub use address::AddressPattern;
pub use config::{AccountConfig, AclDataVersion, AclFile};
pub use signature::{sign, signed_content};

use crate::remoting::codes::request;
use crate::remoting::lenient;
use crate::remoting::RemotingCommand;
use crate::topic::RETRY_GROUP_TOPIC_PREFIX;

/// Ext fields of the ACL RPC hook.
pub const ACCESS_KEY: &str = "AccessKey";
pub const SIGNATURE: &str = "Signature";
pub const SECURITY_TOKEN: &str = "SecurityToken";

/// Permission bits (`org.apache.rocketmq.acl.common.Permission`).
pub mod perm {
    pub const DENY: u8 = 1;
    pub const ANY: u8 = 1 << 1;
    pub const PUB: u8 = 1 << 2;
    pub const SUB: u8 = 1 << 3;

    /// `Permission.parsePermFromString`: anything unknown (or nothing) is DENY.
    pub fn parse(text: Option<&str>) -> u8 {
        match text.map(str::trim) {
            Some("PUB") => PUB,
            Some("SUB") => SUB,
            Some("PUB|SUB") | Some("SUB|PUB") => PUB | SUB,
            _ => DENY,
        }
    }

    /// `Permission.checkPermission`.
    pub fn allows(needed: u8, owned: u8) -> bool {
        if owned & DENY != 0 {
            return false;
        }
        if needed & ANY != 0 {
            return owned & (PUB | SUB) != 0;
        }
        needed & owned != 0
    }
}

/// Request codes only admin accounts may send (`Permission.ADMIN_CODE`).
const ADMIN_CODES: [i32; 5] = [
    request::UPDATE_AND_CREATE_TOPIC,
    request::UPDATE_BROKER_CONFIG,
    request::DELETE_TOPIC_IN_BROKER,
    request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    request::DELETE_SUBSCRIPTIONGROUP,
];

/// The trace topic anyone with a good signature may send to.
const TRACE_TOPIC: &str = crate::message::trace::DEFAULT_TRACE_TOPIC;

/// One account, compiled.
#[derive(Clone, Debug)]
struct Account {
    secret_key: String,
    white: Option<AddressPattern>,
    admin: bool,
    default_topic_perm: u8,
    default_group_perm: u8,
    /// Topic names and `%RETRY%<group>` → permission.
    perms: BTreeMap<String, u8>,
}

/// A refused request: the remark to answer it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclDenied {
    pub remark: String,
}

/// The Java frames RocketMQ 4.9.8 puts after each message (see the module doc).
const VALIDATE_FRAME: &str = "org.apache.rocketmq.acl.plain.PlainPermissionManager.validate";
const CHECK_PERM_FRAME: &str = "org.apache.rocketmq.acl.plain.PlainPermissionManager.checkPerm";
const PARSE_FRAME: &str = "org.apache.rocketmq.acl.plain.PlainAccessValidator.parse";

fn denied(message: String, frame: &str, file: &str, line: u32) -> AclDenied {
    AclDenied {
        remark: format!(
            "org.apache.rocketmq.acl.common.AclException: {message}, {frame}({file}:{line})"
        ),
    }
}

/// Every account and white-list address of the ACL files.
#[derive(Clone, Debug, Default)]
pub struct PlainAcl {
    global_white: Vec<AddressPattern>,
    accounts: BTreeMap<String, Account>,
}

/// A file that cannot be used, with RocketMQ's wording where it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AclConfigError(pub String);

fn resource_perms(
    entries: &[String],
    kind: &str,
    group: bool,
) -> Result<Vec<(String, u8)>, AclConfigError> {
    entries
        .iter()
        .map(|entry| {
            let parts: Vec<&str> = entry.split('=').collect();
            let [name, p] = parts[..] else {
                return Err(AclConfigError(format!(
                    "Parse resource permission failed for {kind}:{entry}"
                )));
            };
            let name = name.trim();
            let name = if group {
                format!("{RETRY_GROUP_TOPIC_PREFIX}{name}")
            } else {
                name.to_owned()
            };
            Ok((name, perm::parse(Some(p))))
        })
        .collect()
}

impl PlainAcl {
    /// Compiles the ACL files (the default file first). A key defined twice keeps its first
    /// definition, as RocketMQ does.
    pub fn build<'a>(files: impl IntoIterator<Item = &'a AclFile>) -> Result<Self, AclConfigError> {
        let mut acl = PlainAcl::default();
        for file in files {
            for pattern in &file.global_white_remote_addresses {
                acl.global_white
                    .push(AddressPattern::parse(pattern).map_err(AclConfigError)?);
            }
            for a in &file.accounts {
                if a.access_key.chars().count() <= 6 || a.secret_key.chars().count() <= 6 {
                    return Err(AclConfigError(format!(
                        "The accessKey={} and secretKey={} cannot be null and length should longer than 6",
                        a.access_key, a.secret_key
                    )));
                }
                let white = match a.white_remote_address.as_deref() {
                    Some(w) => Some(AddressPattern::parse(w).map_err(AclConfigError)?),
                    None => None,
                };
                let mut perms = BTreeMap::new();
                for (name, p) in resource_perms(&a.topic_perms, "topic", false)?
                    .into_iter()
                    .chain(resource_perms(&a.group_perms, "group", true)?)
                {
                    perms.insert(name, p);
                }
                acl.accounts.entry(a.access_key.clone()).or_insert(Account {
                    secret_key: a.secret_key.clone(),
                    white,
                    admin: a.admin,
                    default_topic_perm: perm::parse(a.default_topic_perm.as_deref()),
                    default_group_perm: perm::parse(a.default_group_perm.as_deref()),
                    perms,
                });
            }
        }
        Ok(acl)
    }

    /// Checks `request` from `peer` (see the module doc): `Ok` to run it.
    pub fn check(&self, request: &RemotingCommand, peer: IpAddr) -> Result<(), AclDenied> {
        let resources = resources_of(request)
            .map_err(|message| denied(message, PARSE_FRAME, "PlainAccessValidator.java", 134))?;
        let validate = |message: String, line| {
            denied(message, VALIDATE_FRAME, "PlainPermissionManager.java", line)
        };
        if self.global_white.iter().any(|w| w.matches(peer)) {
            return Ok(());
        }
        let Some(access_key) = request.ext(ACCESS_KEY) else {
            return Err(validate("No accessKey is configured".to_owned(), 664));
        };
        let Some(account) = self.accounts.get(access_key) else {
            return Err(validate(format!("No acl config for {access_key}"), 668));
        };
        if account.white.as_ref().is_some_and(|w| w.matches(peer)) {
            return Ok(());
        }
        let expected = sign(&signed_content(request), &account.secret_key);
        if request.ext(SIGNATURE) != Some(expected.as_str()) {
            return Err(validate(
                format!("Check signature failed for accessKey={access_key}"),
                684,
            ));
        }
        if resources.get(TRACE_TOPIC) == Some(&perm::PUB) {
            return Ok(());
        }
        let check_perm = |message: String, line| {
            denied(
                message,
                CHECK_PERM_FRAME,
                "PlainPermissionManager.java",
                line,
            )
        };
        if ADMIN_CODES.contains(&request.code) && !account.admin {
            return Err(check_perm(
                format!(
                    "Need admin permission for request code={}, but accessKey={access_key} is not",
                    request.code
                ),
                581,
            ));
        }
        if resources.is_empty() || (account.perms.is_empty() && account.admin) {
            return Ok(());
        }
        for (resource, needed) in &resources {
            let group = resource.strip_prefix(RETRY_GROUP_TOPIC_PREFIX);
            let (owned, line) = match account.perms.get(resource) {
                Some(p) => (*p, 611),
                None if group.is_some() => (account.default_group_perm, 606),
                None => (account.default_topic_perm, 606),
            };
            if !perm::allows(*needed, owned) {
                let shown = match group {
                    Some(g) => format!("group:{g}"),
                    None => format!("topic:{resource}"),
                };
                return Err(check_perm(
                    format!("No default permission for {shown}"),
                    line,
                ));
            }
        }
        Ok(())
    }
}

/// The retry topic standing for group `g`.
fn group_resource(g: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{g}")
}

/// What HEART_BEAT's body names, read as the broker reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct HeartbeatGroups {
    #[serde(deserialize_with = "lenient::list")]
    consumer_data_set: Vec<ConsumerGroupData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ConsumerGroupData {
    #[serde(deserialize_with = "lenient::string")]
    group_name: String,
    #[serde(deserialize_with = "lenient::list")]
    subscription_data_set: Vec<SubscribedTopic>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SubscribedTopic {
    #[serde(deserialize_with = "lenient::string")]
    topic: String,
}

/// The resources `request` touches and the permission each needs (`PlainAccessValidator.parse`:
/// a field the request lacks names no resource). `Err`: a heartbeat body the check cannot read.
fn resources_of(request: &RemotingCommand) -> Result<BTreeMap<String, u8>, String> {
    let mut out = BTreeMap::new();
    let field = |key: &str| request.ext(key).map(str::to_owned);
    let group = |key: &str| request.ext(key).map(group_resource);
    let mut add = |name: Option<String>, p: u8| {
        if let Some(name) = name {
            out.insert(name, p);
        }
    };
    match request.code {
        request::SEND_MESSAGE | request::SEND_MESSAGE_V2 => {
            let v2 = request.code == request::SEND_MESSAGE_V2;
            let topic = field(if v2 { "b" } else { "topic" });
            if topic
                .as_deref()
                .is_some_and(|t| t.starts_with(RETRY_GROUP_TOPIC_PREFIX))
            {
                // RocketMQ reads `group` of a V1 header, which has none: no resource then.
                add(group(if v2 { "a" } else { "group" }), perm::SUB);
            } else {
                add(topic, perm::PUB);
            }
        }
        request::CONSUMER_SEND_MSG_BACK => add(group("group"), perm::SUB),
        request::PULL_MESSAGE => {
            add(field("topic"), perm::SUB);
            add(group("consumerGroup"), perm::SUB);
        }
        request::QUERY_MESSAGE => add(field("topic"), perm::SUB),
        request::HEART_BEAT => {
            let body: HeartbeatGroups = lenient::from_body(&request.body, "HeartbeatData")?;
            for consumer in body.consumer_data_set {
                add(Some(group_resource(&consumer.group_name)), perm::SUB);
                for sub in consumer.subscription_data_set {
                    if !sub.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
                        add(Some(sub.topic), perm::SUB);
                    }
                }
            }
        }
        request::UNREGISTER_CLIENT | request::GET_CONSUMER_LIST_BY_GROUP => {
            add(group("consumerGroup"), perm::SUB);
        }
        request::UPDATE_CONSUMER_OFFSET => {
            add(group("consumerGroup"), perm::SUB);
            add(field("topic"), perm::SUB);
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
