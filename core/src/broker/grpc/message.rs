//! Stored messages as the protocol's `Message`, and resource names with namespaces.
//!
//! The split of a stored message's properties follows RocketMQ's proxy: the properties RocketMQ
//! reserves for itself become `SystemProperties` fields (or stay hidden), everything else is a
//! user property.

use md5::{Digest, Md5};
use vostok_proto::prost_types;

use super::v2;
use crate::message::{keys, sys_flag, MessageRecord};

/// The sharding key of a FIFO message (`message_group`).
pub const SHARDING_KEY: &str = "__SHARDINGKEY";
/// When a timer message is due (epoch ms): `delivery_timestamp`.
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";

/// Property keys RocketMQ reserves (its `MessageConst` system keys): never shown as user
/// properties, and refused as user property keys on send.
pub const RESERVED_PROPERTY_KEYS: &[&str] = &[
    "TRACE_ON",
    "MSG_REGION",
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "BUYER_ID",
    "ORIGIN_MESSAGE_ID",
    "TRANSFER_FLAG",
    "CORRECTION_FLAG",
    "MQ2_FLAG",
    "RECONSUME_TIME",
    "UNIQ_KEY",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
    "POP_CK",
    "POP_CK_OFFSET",
    "1ST_POP_TIME",
    "TRAN_PREPARED_QUEUE_OFFSET",
    "DUP_INFO",
    "EXTEND_UNIQ_INFO",
    "INSTANCE_ID",
    "CORRELATION_ID",
    "REPLY_TO_CLIENT",
    "TTL",
    "ARRIVE_TIME",
    "PUSH_REPLY_TIME",
    "CLUSTER",
    "MSG_TYPE",
    "TRANSACTION_ID",
    "TRANSACTION_CHECK_TIMES",
    "CHECK_IMMUNITY_TIME_IN_SECONDS",
    "SHARDING_KEY",
    "__SHARDINGKEY",
    "bname",
    "TIMER_DELIVER_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELAY_MS",
    "TIMER_OUT_MS",
    "TIMER_ENQUEUE_MS",
    "TIMER_DEQUEUE_MS",
    "TIMER_ROLL_TIMES",
    "TIMER_DEL_UNIQKEY",
    "__STARTDELIVERTIME",
    "INNER_BASE",
    "INNER_NUM",
    "INNER_MULTI_DISPATCH",
    "INNER_MULTI_QUEUE_OFFSET",
    "TRACE_CONTEXT",
    "__RMQ.TRANSIENT.TRACE_CONTEXT",
    keys::CRC32,
];

/// Whether `key` is one of RocketMQ's own property keys.
pub fn is_reserved_key(key: &str) -> bool {
    RESERVED_PROPERTY_KEYS.contains(&key)
}

/// A resource's name as the broker stores it: `namespace%name` when the resource (or, failing
/// that, the call's `x-mq-namespace`) names a namespace, as RocketMQ's `NamespaceUtil` wraps it.
/// Retry and dead-letter names keep their prefix in front.
pub fn wrap_namespace(resource: &v2::Resource, header_namespace: &str) -> String {
    let namespace = if resource.resource_namespace.is_empty() {
        header_namespace
    } else {
        &resource.resource_namespace
    };
    if namespace.is_empty() || resource.name.contains('%') {
        return resource.name.clone();
    }
    format!("{namespace}%{}", resource.name)
}

/// A stored name as a resource: the namespace split off again.
pub fn resource_of(stored: &str, header_namespace: &str) -> v2::Resource {
    if let Some(name) = (!header_namespace.is_empty())
        .then(|| stored.strip_prefix(&format!("{header_namespace}%")))
        .flatten()
    {
        return v2::Resource {
            resource_namespace: header_namespace.to_owned(),
            name: name.to_owned(),
        };
    }
    v2::Resource {
        resource_namespace: String::new(),
        name: stored.to_owned(),
    }
}

/// A protobuf `Timestamp` of epoch milliseconds.
pub fn timestamp_of_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Epoch milliseconds of a protobuf `Timestamp` (clients send whole seconds or milliseconds).
pub fn ms_of_timestamp(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// Milliseconds of a protobuf `Duration`, never negative.
pub fn ms_of_duration(d: &prost_types::Duration) -> u64 {
    let ms = d
        .seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(d.nanos) / 1_000_000);
    ms.max(0) as u64
}

/// A protobuf `Duration` of milliseconds.
pub fn duration_of_ms(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// The type a stored message was sent as, from its flags and properties (the rule of RocketMQ's
/// `TopicMessageType.parseFromMessageProperty`).
pub fn message_type_of(record: &MessageRecord) -> v2::MessageType {
    let p = &record.properties;
    if p.get(keys::TRAN_MSG) == Some("true")
        || record.sys_flag & sys_flag::TRANSACTION_MASK != sys_flag::TRANSACTION_NOT_TYPE
    {
        v2::MessageType::Transaction
    } else if p.get(keys::DELAY).is_some()
        || p.get(TIMER_DELIVER_MS).is_some()
        || p.get("TIMER_DELAY_SEC").is_some()
        || p.get("TIMER_DELAY_MS").is_some()
    {
        v2::MessageType::Delay
    } else if p.get(SHARDING_KEY).is_some() {
        v2::MessageType::Fifo
    } else {
        v2::MessageType::Normal
    }
}

/// The upper-case hex MD5 of a body: the digest every client checks the same way (CRC32 is
/// printed differently by each of them).
pub fn md5_digest(body: &[u8]) -> v2::Digest {
    let sum = Md5::digest(body);
    let mut hex = String::with_capacity(32);
    for b in sum {
        hex.push_str(&format!("{b:02X}"));
    }
    v2::Digest {
        r#type: v2::DigestType::Md5 as i32,
        checksum: hex,
    }
}

/// A stored message as a gRPC `Message`: topic (namespace split off), user properties, the
/// system properties a stored message has, and the body as stored. `body` is the body to send
/// (the caller inflates a compressed one). The delivery fields (receipt handle, attempt,
/// invisible duration) are the caller's.
pub fn to_grpc_message(record: &MessageRecord, body: bytes::Bytes, namespace: &str) -> v2::Message {
    let p = &record.properties;
    let user_properties = p
        .iter()
        .filter(|(k, _)| !is_reserved_key(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let message_id = p.get(keys::UNIQ_KEY).map(str::to_owned).unwrap_or_else(|| {
        crate::message::offset_msg_id(record.store_host, record.physical_offset as u64)
    });
    let keys: Vec<String> = p
        .get(keys::KEYS)
        .map(|k| {
            k.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let delivery_timestamp = p
        .get(TIMER_DELIVER_MS)
        .and_then(|v| v.parse::<i64>().ok())
        .map(timestamp_of_ms);
    let system_properties = v2::SystemProperties {
        tag: p.get(keys::TAGS).map(str::to_owned),
        keys,
        message_id,
        body_digest: Some(md5_digest(&body)),
        body_encoding: v2::Encoding::Identity as i32,
        message_type: message_type_of(record) as i32,
        born_timestamp: Some(timestamp_of_ms(record.born_timestamp_ms)),
        born_host: record.born_host.ip().to_string(),
        store_timestamp: Some(timestamp_of_ms(record.store_timestamp_ms)),
        store_host: record.store_host.to_string(),
        delivery_timestamp,
        receipt_handle: None,
        queue_id: record.queue_id,
        queue_offset: Some(record.queue_offset),
        invisible_duration: None,
        delivery_attempt: Some(record.reconsume_times.saturating_add(1)),
        message_group: p.get(SHARDING_KEY).map(str::to_owned),
        trace_context: None,
        orphaned_transaction_recovery_duration: None,
        dead_letter_queue: None,
        lite_topic: None,
        priority: None,
    };
    v2::Message {
        topic: Some(resource_of(&record.topic, namespace)),
        user_properties,
        system_properties: Some(system_properties),
        body: body.to_vec(),
    }
}
