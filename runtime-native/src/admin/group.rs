//! Consumer and producer group verbs: consumerProgress, consumerConnection, producerConnection,
//! updateSubGroup, deleteSubGroup, resetOffsetByTime. Output follows mqadmin's
//! `tools/command/{consumer,connection,offset}` (RocketMQ 5.x).

use serde_json::Value;
use vostok_core::broker::SubscriptionGroupConfig;
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::reset_offset::{
    decode_offset_table, QueueKey, ResetOffsetRequestHeader,
};
use vostok_core::remoting::version::version_name;
use vostok_core::remoting::RemotingCommand;
use vostok_core::topic::{DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};

use super::rpc::{
    expect_ok, float, int, json_body, queue_of_key, text, Admin, BrokerOrCluster, BrokerTarget,
    NamesrvArg,
};
use crate::RunError;

#[derive(Debug, clap::Args)]
pub struct ConsumerProgressArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Consumer group (without it: one line per group).
    #[arg(short = 'g', long = "groupName", value_name = "GROUP")]
    pub group: Option<String>,
    /// Only this topic of the group.
    #[arg(short = 't', long = "topicName", value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Show the client each queue is assigned to.
    #[arg(short = 's', long = "showClientIP", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub show_client_ip: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConsumerConnectionArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Consumer group.
    #[arg(short = 'g', long = "consumerGroup", value_name = "GROUP")]
    pub group: String,
    /// Ask this broker only.
    #[arg(short = 'b', long = "brokerAddr", value_name = "ADDR")]
    pub broker_addr: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ProducerConnectionArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Producer group.
    #[arg(short = 'g', long = "producerGroup", value_name = "GROUP")]
    pub group: String,
    /// A topic the group sends to (its brokers are asked).
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
}

#[derive(Debug, clap::Args)]
pub struct UpdateSubGroupArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    #[command(flatten)]
    pub target: BrokerOrCluster,
    /// Consumer group.
    #[arg(short = 'g', long = "groupName", value_name = "GROUP")]
    pub group: String,
    /// Consuming allowed.
    #[arg(short = 's', long = "consumeEnable", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub consume_enable: Option<bool>,
    /// A new group starts from the queues' minimum offset.
    #[arg(short = 'm', long = "consumeFromMinEnable", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub consume_from_min_enable: Option<bool>,
    /// Broadcast consumption allowed.
    #[arg(short = 'd', long = "consumeBroadcastEnable", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub consume_broadcast_enable: Option<bool>,
    /// The group consumes orderly.
    #[arg(short = 'o', long = "consumeMessageOrderly", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub consume_message_orderly: Option<bool>,
    /// Queues of the group's retry topic.
    #[arg(short = 'q', long = "retryQueueNums", value_name = "N")]
    pub retry_queue_nums: Option<i32>,
    /// Reconsume times before the DLQ.
    #[arg(short = 'r', long = "retryMaxTimes", value_name = "N")]
    pub retry_max_times: Option<i32>,
    /// The broker id consumers read from.
    #[arg(short = 'i', long = "brokerId", value_name = "ID")]
    pub broker_id: Option<i64>,
    /// The broker id consumers read from when consuming slowly.
    #[arg(short = 'w', long = "whichBrokerWhenConsumeSlowly", value_name = "ID")]
    pub which_broker_when_consume_slowly: Option<i64>,
    /// Tell consumers when the group's members change.
    #[arg(short = 'a', long = "notifyConsumerIdsChanged", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub notify_consumer_ids_changed: Option<bool>,
    /// Attributes, `+key=value,…`.
    #[arg(long = "attributes", value_name = "ATTRS", allow_hyphen_values = true)]
    pub attributes: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteSubGroupArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    #[command(flatten)]
    pub target: BrokerOrCluster,
    /// Consumer group.
    #[arg(short = 'g', long = "groupName", value_name = "GROUP")]
    pub group: String,
    /// Also remove the group's committed offsets.
    #[arg(short = 'r', long = "removeOffset", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub remove_offset: bool,
}

#[derive(Debug, clap::Args)]
pub struct ResetOffsetArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Consumer group.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub group: String,
    /// Topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// Where to go: `now`, epoch milliseconds, `yyyy-MM-dd#HH:mm:ss:SSS` (local time), or -1
    /// for the end of every queue.
    #[arg(
        short = 's',
        long = "timestamp",
        value_name = "TIME",
        allow_hyphen_values = true
    )]
    pub timestamp: String,
    /// Also move offsets forward (false: only rewind).
    #[arg(short = 'f', long = "force", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub force: bool,
    /// Only this broker (`ip:port`; with -q and -o, one queue to an exact offset).
    #[arg(short = 'b', long = "broker", value_name = "ADDR")]
    pub broker_addr: Option<String>,
    /// Only this queue (with -b).
    #[arg(
        short = 'q',
        long = "queue",
        value_name = "QUEUE_ID",
        requires = "broker_addr"
    )]
    pub queue_id: Option<i32>,
    /// The exact offset for -b/-q.
    #[arg(
        short = 'o',
        long = "offset",
        value_name = "OFFSET",
        requires = "queue_id"
    )]
    pub offset: Option<i64>,
}

/// One queue of GET_CONSUME_STATS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueProgress {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub broker_offset: i64,
    pub consumer_offset: i64,
    pub pull_offset: i64,
    pub last_timestamp_ms: i64,
}

/// A group's progress on every broker of its topics.
#[derive(Clone, Debug, Default)]
pub struct ConsumeStats {
    pub queues: Vec<QueueProgress>,
    pub consume_tps: f64,
}

impl ConsumeStats {
    /// RocketMQ's `computeTotalDiff`: broker offset minus consumer offset, summed.
    pub fn total_diff(&self) -> i64 {
        self.queues
            .iter()
            .map(|q| q.broker_offset - q.consumer_offset)
            .sum()
    }
}

/// The masters serving `group`: those of its retry topic (and of `topic` when given), as
/// RocketMQ's `examineConsumeStats` finds them.
async fn group_brokers(
    admin: &Admin,
    group: &str,
    topic: Option<&str>,
) -> Result<Vec<BrokerTarget>, RunError> {
    let mut topics = vec![format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")];
    topics.extend(topic.map(str::to_owned));
    let mut brokers = Vec::new();
    let mut last_error = None;
    for t in &topics {
        match admin.topic_masters(t).await {
            Ok((_, masters)) => brokers.extend(masters),
            Err(e) => last_error = Some(e),
        }
    }
    brokers.sort();
    brokers.dedup();
    if brokers.is_empty() {
        return Err(
            last_error.unwrap_or_else(|| RunError::Task(format!("no broker serves group {group}")))
        );
    }
    Ok(brokers)
}

/// GET_CONSUME_STATS from every broker of the group, merged.
pub async fn consume_stats(
    admin: &Admin,
    group: &str,
    topic: Option<&str>,
) -> Result<ConsumeStats, RunError> {
    let mut stats = ConsumeStats::default();
    for b in group_brokers(admin, group, topic).await? {
        let ask = RemotingCommand::request(request::GET_CONSUME_STATS)
            .with_ext("consumerGroup", group)
            .with_ext("topic", topic.unwrap_or_default());
        let answer = admin.call(&b.addr, ask).await?;
        if answer.code == response::CONSUMER_NOT_ONLINE
            || answer.code == response::SUBSCRIPTION_GROUP_NOT_EXIST
        {
            continue;
        }
        let answer = expect_ok(
            answer,
            &format!("the consume stats of {group} on {}", b.addr),
        )?;
        let body = json_body(&answer, "the consume stats")?;
        stats.consume_tps += float(&body, "consumeTps");
        for (key, entry) in body["offsetTable"].as_object().into_iter().flatten() {
            let Some((topic, broker_name, queue_id)) = queue_of_key(key) else {
                continue;
            };
            stats.queues.push(QueueProgress {
                topic,
                broker_name,
                queue_id,
                broker_offset: int(entry, "brokerOffset"),
                consumer_offset: int(entry, "consumerOffset"),
                pull_offset: int(entry, "pullOffset"),
                last_timestamp_ms: int(entry, "lastTimestamp"),
            });
        }
    }
    stats.queues.sort();
    Ok(stats)
}

/// GET_CONSUMER_CONNECTION_LIST: the first broker of the group that knows it online.
pub async fn consumer_connection(
    admin: &Admin,
    group: &str,
    broker_addr: Option<&str>,
) -> Result<Value, RunError> {
    let addrs: Vec<String> = match broker_addr {
        Some(addr) => vec![addr.to_owned()],
        None => group_brokers(admin, group, None)
            .await?
            .into_iter()
            .map(|b| b.addr)
            .collect(),
    };
    let mut last_error = RunError::Task(format!("the consumer group {group} is not online"));
    for addr in addrs {
        let ask = RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST)
            .with_ext("consumerGroup", group);
        match admin
            .call(&addr, ask)
            .await
            .and_then(|a| expect_ok(a, &format!("the connections of {group}")))
        {
            Ok(answer) => return json_body(&answer, "the consumer connections"),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

pub async fn consumer_progress(args: ConsumerProgressArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let Some(group) = &args.group else {
        return all_groups_progress(&admin).await;
    };
    let stats = consume_stats(&admin, group, args.topic.as_deref()).await?;
    let assignment = if args.show_client_ip {
        queue_assignment(&admin, group).await
    } else {
        Default::default()
    };
    if args.show_client_ip {
        out!(
            "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} {:<20} {:<20}#LastTime",
            "#Topic",
            "#Broker Name",
            "#QID",
            "#Broker Offset",
            "#Consumer Offset",
            "#Client IP",
            "#Diff",
            "#Inflight"
        );
    } else {
        out!(
            "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} {:<20}#LastTime",
            "#Topic",
            "#Broker Name",
            "#QID",
            "#Broker Offset",
            "#Consumer Offset",
            "#Diff",
            "#Inflight"
        );
    }
    let (mut diff_total, mut inflight_total) = (0, 0);
    for q in &stats.queues {
        let diff = q.broker_offset - q.consumer_offset;
        let inflight = q.pull_offset - q.consumer_offset;
        diff_total += diff;
        inflight_total += inflight;
        let last = if q.last_timestamp_ms == 0 {
            "N/A".to_owned()
        } else {
            chrono::DateTime::from_timestamp_millis(q.last_timestamp_ms)
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default()
        };
        if args.show_client_ip {
            let client = assignment
                .get(&(q.topic.clone(), q.broker_name.clone(), q.queue_id))
                .map_or("N/A", String::as_str);
            out!(
                "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {client:<20} {diff:<20} {inflight:<20} {last}",
                q.topic, q.broker_name, q.queue_id, q.broker_offset, q.consumer_offset
            );
        } else {
            out!(
                "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {diff:<20} {inflight:<20} {last}",
                q.topic,
                q.broker_name,
                q.queue_id,
                q.broker_offset,
                q.consumer_offset
            );
        }
    }
    out!();
    out!("Consume TPS: {:.2}", stats.consume_tps);
    out!("Consume Diff Total: {diff_total}");
    out!("Consume Inflight Total: {inflight_total}");
    Ok(())
}

/// Which client holds each queue, from each online consumer's running info (the clients'
/// `mqTable`), as mqadmin's `-s true` finds it; the clients' IPs.
async fn queue_assignment(
    admin: &Admin,
    group: &str,
) -> std::collections::BTreeMap<(String, String, i32), String> {
    let mut assignment = std::collections::BTreeMap::new();
    let Ok(connections) = consumer_connection(admin, group, None).await else {
        return assignment;
    };
    let Ok(brokers) = group_brokers(admin, group, None).await else {
        return assignment;
    };
    let Some(broker) = brokers.first() else {
        return assignment;
    };
    for conn in connections["connectionSet"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let client_id = text(conn, "clientId");
        let ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO)
            .with_ext("consumerGroup", group)
            .with_ext("clientId", client_id.as_str())
            .with_ext("jstackEnable", false);
        let Ok(answer) = admin
            .call(&broker.addr, ask)
            .await
            .and_then(|a| expect_ok(a, "running info"))
        else {
            continue;
        };
        let Ok(info) = json_body(&answer, "running info") else {
            continue;
        };
        let ip = client_id.split('@').next().unwrap_or_default().to_owned();
        for key in info["mqTable"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if let Some(queue) = queue_of_key(key) {
                assignment.insert(queue, ip.clone());
            }
        }
    }
    assignment
}

async fn all_groups_progress(admin: &Admin) -> Result<(), RunError> {
    out!(
        "{:<64}  {:<6}  {:<24} {:<5}  {:<14}  {:<7}  #Diff Total",
        "#Group",
        "#Count",
        "#Version",
        "#Type",
        "#Model",
        "#TPS"
    );
    for topic in super::topic::all_topics(admin).await? {
        let Some(group) = topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) else {
            continue;
        };
        let stats = consume_stats(admin, group, None).await.unwrap_or_default();
        let connections = consumer_connection(admin, group, None).await.ok();
        let members = connections
            .as_ref()
            .and_then(|c| c["connectionSet"].as_array().cloned())
            .unwrap_or_default();
        let (version, kind, model) = match &connections {
            Some(c) if !members.is_empty() => {
                let min_version = members.iter().map(|m| int(m, "version")).min().unwrap_or(0);
                let kind = if text(c, "consumeType") == "CONSUME_ACTIVELY" {
                    "PULL"
                } else {
                    "PUSH"
                };
                (version_name(min_version), kind, text(c, "messageModel"))
            }
            _ => ("OFFLINE".to_owned(), "", String::new()),
        };
        out!(
            "{group:<64}  {:<6}  {version:<24} {kind:<5}  {model:<14}  {:<7}  {}",
            members.len(),
            stats.consume_tps as i64,
            stats.total_diff()
        );
    }
    Ok(())
}

pub async fn print_consumer_connection(args: ConsumerConnectionArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let cc = consumer_connection(&admin, &args.group, args.broker_addr.as_deref()).await?;
    out!(
        "{:<36} {:<22} {:<10} #Version",
        "#ClientId",
        "#ClientAddr",
        "#Language"
    );
    let mut members: Vec<&Value> = cc["connectionSet"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    members.sort_by_key(|m| text(m, "clientId"));
    for m in members {
        out!(
            "{:<36} {:<22} {:<10} {}",
            text(m, "clientId"),
            text(m, "clientAddr"),
            text(m, "language"),
            version_name(int(m, "version"))
        );
    }
    out!();
    out!("Below is subscription:");
    out!("{:<20} #SubExpression", "#Topic");
    for (topic, sub) in cc["subscriptionTable"].as_object().into_iter().flatten() {
        out!("{topic:<20} {}", text(sub, "subString"));
    }
    out!();
    out!("ConsumeType: {}", text(&cc, "consumeType"));
    out!("MessageModel: {}", text(&cc, "messageModel"));
    out!("ConsumeFromWhere: {}", text(&cc, "consumeFromWhere"));
    Ok(())
}

pub async fn producer_connection(args: ProducerConnectionArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let (_, masters) = admin.topic_masters(&args.topic).await?;
    let mut last_error = RunError::Task(format!("the producer group {} is not online", args.group));
    for b in masters {
        let ask = RemotingCommand::request(request::GET_PRODUCER_CONNECTION_LIST)
            .with_ext("producerGroup", args.group.as_str());
        let answer = match admin
            .call(&b.addr, ask)
            .await
            .and_then(|a| expect_ok(a, "the producer connections"))
        {
            Ok(answer) => answer,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        let body = json_body(&answer, "the producer connections")?;
        let mut members: Vec<&Value> = body["connectionSet"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        members.sort_by_key(|m| text(m, "clientId"));
        for (i, m) in members.iter().enumerate() {
            out!(
                "{:04}  {:<32} {:<22} {:<8} {}",
                i + 1,
                text(m, "clientId"),
                text(m, "clientAddr"),
                text(m, "language"),
                version_name(int(m, "version"))
            );
        }
        return Ok(());
    }
    Err(last_error)
}

pub async fn update_sub_group(args: UpdateSubGroupArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let mut config = SubscriptionGroupConfig::new(&args.group);
    config.consume_enable = args.consume_enable.unwrap_or(config.consume_enable);
    config.consume_from_min_enable = args
        .consume_from_min_enable
        .unwrap_or(config.consume_from_min_enable);
    config.consume_broadcast_enable = args
        .consume_broadcast_enable
        .unwrap_or(config.consume_broadcast_enable);
    config.consume_message_orderly = args
        .consume_message_orderly
        .unwrap_or(config.consume_message_orderly);
    config.retry_queue_nums = args.retry_queue_nums.unwrap_or(config.retry_queue_nums);
    config.retry_max_times = args.retry_max_times.unwrap_or(config.retry_max_times);
    config.broker_id = args.broker_id.unwrap_or(config.broker_id);
    config.which_broker_when_consume_slowly = args
        .which_broker_when_consume_slowly
        .unwrap_or(config.which_broker_when_consume_slowly);
    config.notify_consumer_ids_changed_enable = args
        .notify_consumer_ids_changed
        .unwrap_or(config.notify_consumer_ids_changed_enable);
    if let Some(attributes) = &args.attributes {
        config.attributes = parse_attributes(attributes)?;
    }
    let body = serde_json::to_vec(&config)
        .map_err(|e| RunError::Task(format!("encoding the group: {e}")))?;
    for b in admin.targets(&args.target).await? {
        let ask = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(body.clone());
        expect_ok(
            admin.call(&b.addr, ask).await?,
            &format!("create group {} on {}", args.group, b.addr),
        )?;
        out!("create subscription group to {} success.", b.addr);
    }
    out!(
        "SubscriptionGroupConfig{{groupName={}, consumeEnable={}, consumeFromMinEnable={}, consumeBroadcastEnable={}, consumeMessageOrderly={}, retryQueueNums={}, retryMaxTimes={}, brokerId={}, whichBrokerWhenConsumeSlowly={}, notifyConsumerIdsChangedEnable={}, groupSysFlag={}, consumeTimeoutMinute={}, attributes={:?}}}",
        config.group_name,
        config.consume_enable,
        config.consume_from_min_enable,
        config.consume_broadcast_enable,
        config.consume_message_orderly,
        config.retry_queue_nums,
        config.retry_max_times,
        config.broker_id,
        config.which_broker_when_consume_slowly,
        config.notify_consumer_ids_changed_enable,
        config.group_sys_flag,
        config.consume_timeout_minute,
        config.attributes
    );
    Ok(())
}

/// `+key=value,+key=value,-key` (RocketMQ's `AttributeParser`): `-key` removes (an empty value).
fn parse_attributes(text: &str) -> Result<std::collections::BTreeMap<String, String>, RunError> {
    let mut attributes = std::collections::BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(set) = item.strip_prefix('+') {
            let (k, v) = set.split_once('=').ok_or_else(|| {
                RunError::Usage(format!("--attributes {item:?}: expected +key=value"))
            })?;
            attributes.insert(format!("+{k}"), v.to_owned());
        } else if let Some(key) = item.strip_prefix('-') {
            attributes.insert(format!("-{key}"), String::new());
        } else {
            return Err(RunError::Usage(format!(
                "--attributes {item:?}: expected +key=value or -key"
            )));
        }
    }
    Ok(attributes)
}

pub async fn delete_sub_group(args: DeleteSubGroupArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    for b in admin.targets(&args.target).await? {
        let ask = RemotingCommand::request(request::DELETE_SUBSCRIPTIONGROUP)
            .with_ext("groupName", args.group.as_str())
            .with_ext("cleanOffset", args.remove_offset);
        expect_ok(
            admin.call(&b.addr, ask).await?,
            &format!("delete group {} on {}", args.group, b.addr),
        )?;
        match &args.target.cluster_name {
            Some(cluster) => out!(
                "delete subscription group [{}] from broker [{}] in cluster [{cluster}] success.",
                args.group,
                b.addr
            ),
            None => out!(
                "delete subscription group [{}] from broker [{}] success.",
                args.group,
                b.addr
            ),
        }
    }
    if let Some(cluster) = &args.target.cluster_name {
        // As mqadmin: the group's retry and dead-letter topics go too, from the cluster's
        // masters and the NameServers.
        for prefix in [RETRY_GROUP_TOPIC_PREFIX, DLQ_GROUP_TOPIC_PREFIX] {
            let topic = format!("{prefix}{}", args.group);
            super::topic::delete_topic(super::topic::DeleteTopicArgs {
                ns: args.ns.clone(),
                topic,
                cluster_name: cluster.clone(),
            })
            .await?;
        }
    }
    Ok(())
}

/// `now`, epoch milliseconds, -1, or mqadmin's `yyyy-MM-dd#HH:mm:ss:SSS` in local time.
pub fn parse_timestamp(text: &str) -> Result<i64, RunError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(super::rpc::now_ms());
    }
    if let Ok(ms) = text.parse::<i64>() {
        if ms >= -1 {
            return Ok(ms);
        }
    }
    if let Ok(local) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d#%H:%M:%S:%3f") {
        if let Some(t) = local.and_local_timezone(chrono::Local).earliest() {
            return Ok(t.timestamp_millis());
        }
    }
    Err(RunError::Usage(format!(
        "-s {text}: expected now, epoch milliseconds, yyyy-MM-dd#HH:mm:ss:SSS, or -1"
    )))
}

pub async fn reset_offset(args: ResetOffsetArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let timestamp_ms = parse_timestamp(&args.timestamp)?;
    let table = reset_offset_by_time(
        &admin,
        &args.group,
        &args.topic,
        timestamp_ms,
        args.force,
        args.broker_addr
            .as_deref()
            .map(|b| (b, args.queue_id, args.offset)),
    )
    .await?;
    out!("{:<40}  {:<40}  #offset", "#brokerName", "#queueId");
    for (queue, offset) in table {
        out!(
            "{:<40}  {:<40}  {offset}",
            queue.broker_name,
            queue.queue_id
        );
    }
    Ok(())
}

/// Resets `group` on `topic` to `timestamp_ms` on every master broker of the topic (or one
/// broker, one queue, to an exact offset); returns the offsets the brokers set, sorted.
pub async fn reset_offset_by_time(
    admin: &Admin,
    group: &str,
    topic: &str,
    timestamp_ms: i64,
    force: bool,
    only: Option<(&str, Option<i32>, Option<i64>)>,
) -> Result<Vec<(QueueKey, i64)>, RunError> {
    let (_, masters) = admin.topic_masters(topic).await?;
    let mut table = Vec::new();
    for broker in &masters {
        let (queue_id, offset) = match only {
            Some((addr, _, _)) if addr != broker.addr => continue,
            Some((_, queue_id, offset)) => (queue_id, offset),
            None => (None, None),
        };
        let mut ask = RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET);
        ResetOffsetRequestHeader {
            topic: topic.to_owned(),
            group: group.to_owned(),
            timestamp_ms,
            is_force: force,
            queue_id,
            offset,
        }
        .write_to(&mut ask);
        let answer = admin.call(&broker.addr, ask).await?;
        if answer.code != response::SUCCESS {
            return Err(RunError::Task(format!(
                "broker {} ({}) refused the reset (code {}): {}",
                broker.broker_name,
                broker.addr,
                answer.code,
                answer.remark.unwrap_or_default()
            )));
        }
        let offsets = decode_offset_table(&answer.body).map_err(|e| {
            RunError::Task(format!(
                "broker {}: bad offset table: {e}",
                broker.broker_name
            ))
        })?;
        table.extend(offsets);
    }
    if let Some((addr, _, _)) = only {
        if !masters.iter().any(|b| b.addr == addr) {
            return Err(RunError::Task(format!(
                "{addr} is not a master broker of {topic}"
            )));
        }
    }
    table.sort();
    Ok(table)
}
