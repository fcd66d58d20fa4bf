//! Topic verbs: updateTopic, deleteTopic, topicList, topicRoute, topicStatus, topicClusterList,
//! updateTopicPerm. Output follows mqadmin's `tools/command/topic/*SubCommand` (RocketMQ 5.x).

use std::collections::BTreeSet;

use vostok_core::remoting::codes::request;
use vostok_core::remoting::RemotingCommand;

use super::rpc::{
    expect_ok, human_time, int, json_body, perm_string, queue_of_key, Admin, BrokerOrCluster,
    NamesrvArg,
};
use crate::RunError;

/// RocketMQ's NameServer KV namespace of ordered topics' `brokerName:queues;…` (mqadmin
/// updateTopic -o true with -c).
const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

#[derive(Debug, clap::Args)]
pub struct UpdateTopicArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    #[command(flatten)]
    pub target: BrokerOrCluster,
    /// Topic name.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// Read queues.
    #[arg(
        short = 'r',
        long = "readQueueNums",
        value_name = "N",
        default_value_t = 8
    )]
    pub read_queue_nums: u32,
    /// Write queues.
    #[arg(
        short = 'w',
        long = "writeQueueNums",
        value_name = "N",
        default_value_t = 8
    )]
    pub write_queue_nums: u32,
    /// Permission: 2 (W), 4 (R) or 6 (RW).
    #[arg(short = 'p', long = "perm", value_name = "2|4|6", default_value_t = 6, value_parser = parse_perm)]
    pub perm: u32,
    /// An ordered topic (with -c also records its queues in the NameServer's ORDER_TOPIC_CONFIG).
    #[arg(short = 'o', long = "order", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub order: bool,
    /// Attributes, `+key=value,+key=value,-key` (for example `+message.type=FIFO`).
    #[arg(
        short = 'a',
        long = "attributes",
        value_name = "ATTRS",
        allow_hyphen_values = true
    )]
    pub attributes: Option<String>,
    /// A unit topic (topicSysFlag bit 0).
    #[arg(short = 'u', long = "unit", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub unit: bool,
    /// Has unit subscriptions (topicSysFlag bit 1).
    #[arg(short = 's', long = "hasUnitSub", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub has_unit_sub: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteTopicArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Topic name.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// The cluster whose masters drop the topic.
    #[arg(short = 'c', long = "clusterName", value_name = "CLUSTER")]
    pub cluster_name: String,
}

#[derive(Debug, clap::Args)]
pub struct TopicListArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Print each topic's cluster and consumer groups.
    #[arg(short = 'c', long = "clusterModel")]
    pub cluster_model: bool,
}

#[derive(Debug, clap::Args)]
pub struct TopicArg {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Topic name.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
}

#[derive(Debug, clap::Args)]
pub struct TopicRouteArgs {
    #[command(flatten)]
    pub topic: TopicArg,
    /// Print a table instead of the route's JSON.
    #[arg(short = 'l', long = "list")]
    pub list: bool,
}

#[derive(Debug, clap::Args)]
pub struct UpdateTopicPermArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    #[command(flatten)]
    pub target: BrokerOrCluster,
    /// Topic name.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// Permission: 2 (W), 4 (R) or 6 (RW).
    #[arg(short = 'p', long = "perm", value_name = "2|4|6", value_parser = parse_perm)]
    pub perm: u32,
}

fn parse_perm(text: &str) -> Result<u32, String> {
    match text.trim() {
        "2" => Ok(2),
        "4" => Ok(4),
        "6" => Ok(6),
        other => Err(format!(
            "{other:?} is not a permission: 2 (W), 4 (R) or 6 (RW)"
        )),
    }
}

/// What `UPDATE_AND_CREATE_TOPIC` carries, and how mqadmin prints it (`TopicConfig.toString`).
struct TopicConfig {
    topic: String,
    read_queue_nums: u32,
    write_queue_nums: u32,
    perm: u32,
    topic_sys_flag: u32,
    order: bool,
    attributes: Option<String>,
}

impl TopicConfig {
    fn request(&self) -> RemotingCommand {
        let mut ask = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
            .with_ext("topic", self.topic.as_str())
            .with_ext("defaultTopic", "TBW102")
            .with_ext("readQueueNums", self.read_queue_nums)
            .with_ext("writeQueueNums", self.write_queue_nums)
            .with_ext("perm", self.perm)
            .with_ext("topicFilterType", "SINGLE_TAG")
            .with_ext("topicSysFlag", self.topic_sys_flag)
            .with_ext("order", self.order);
        if let Some(attributes) = &self.attributes {
            ask = ask.with_ext("attributes", attributes.as_str());
        }
        ask
    }

    fn describe(&self) -> String {
        format!(
            "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}, topicFilterType=SINGLE_TAG, topicSysFlag={}, order={}, attributes={{{}}}]",
            self.topic,
            self.read_queue_nums,
            self.write_queue_nums,
            perm_string(self.perm),
            self.topic_sys_flag,
            self.order,
            self.attributes.as_deref().unwrap_or_default()
        )
    }
}

pub async fn update_topic(args: UpdateTopicArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let config = TopicConfig {
        topic: args.topic.clone(),
        read_queue_nums: args.read_queue_nums,
        write_queue_nums: args.write_queue_nums,
        perm: args.perm,
        topic_sys_flag: u32::from(args.unit) | (u32::from(args.has_unit_sub) << 1),
        order: args.order,
        attributes: args.attributes.clone(),
    };
    let targets = admin.targets(&args.target).await?;
    for broker in &targets {
        let answer = admin.call(&broker.addr, config.request()).await?;
        expect_ok(
            answer,
            &format!("create topic {} on {}", args.topic, broker.addr),
        )?;
        out!("create topic to {} success.", broker.addr);
    }
    if args.order && args.target.cluster_name.is_some() {
        // The NameServer's ordered-topic configuration: every master's write queues.
        let names: BTreeSet<&str> = targets.iter().map(|b| b.broker_name.as_str()).collect();
        let order_conf = names
            .iter()
            .map(|name| format!("{name}:{}", args.write_queue_nums))
            .collect::<Vec<_>>()
            .join(";");
        for addr in admin.namesrvs() {
            let ask = RemotingCommand::request(request::PUT_KV_CONFIG)
                .with_ext("namespace", ORDER_TOPIC_CONFIG)
                .with_ext("key", args.topic.as_str())
                .with_ext("value", order_conf.as_str());
            expect_ok(
                admin.call(addr, ask).await?,
                &format!("order conf on {addr}"),
            )?;
        }
        out!(
            "set cluster orderConf. isOrder={}, orderConf=[{order_conf}]",
            args.order
        );
    }
    out!("{}", config.describe());
    Ok(())
}

pub async fn delete_topic(args: DeleteTopicArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let masters = admin
        .targets(&BrokerOrCluster {
            broker_addr: None,
            cluster_name: Some(args.cluster_name.clone()),
        })
        .await?;
    for broker in &masters {
        let ask = RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER)
            .with_ext("topic", args.topic.as_str());
        expect_ok(
            admin.call(&broker.addr, ask).await?,
            &format!("delete topic {} on {}", args.topic, broker.addr),
        )?;
    }
    out!(
        "delete topic [{}] from cluster [{}] success.",
        args.topic,
        args.cluster_name
    );
    for addr in admin.namesrvs() {
        let ask = RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV)
            .with_ext("topic", args.topic.as_str())
            .with_ext("clusterName", args.cluster_name.as_str());
        expect_ok(
            admin.call(addr, ask).await?,
            &format!("delete topic {} on NameServer {addr}", args.topic),
        )?;
    }
    out!("delete topic [{}] from NameServer success.", args.topic);
    Ok(())
}

/// Every topic the NameServers know (GET_ALL_TOPIC_LIST_FROM_NAMESERVER), sorted.
pub async fn all_topics(admin: &Admin) -> Result<Vec<String>, RunError> {
    let answer = admin
        .namesrv(RemotingCommand::request(
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        ))
        .await?;
    let answer = expect_ok(answer, "the topic list")?;
    let list = json_body(&answer, "the topic list")?;
    let mut topics: Vec<String> = list["topicList"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    topics.sort();
    Ok(topics)
}

/// The consumer groups subscribed to `topic` on any of its masters (QUERY_TOPIC_CONSUME_BY_WHO).
pub async fn groups_of_topic(admin: &Admin, topic: &str) -> Result<BTreeSet<String>, RunError> {
    let (_, masters) = admin.topic_masters(topic).await?;
    let mut groups = BTreeSet::new();
    for broker in masters {
        let ask =
            RemotingCommand::request(request::QUERY_TOPIC_CONSUME_BY_WHO).with_ext("topic", topic);
        let answer = expect_ok(admin.call(&broker.addr, ask).await?, "who consumes")?;
        let list = json_body(&answer, "the group list")?;
        if let Some(names) = list["groupList"].as_array() {
            groups.extend(names.iter().filter_map(|g| g.as_str().map(str::to_owned)));
        }
    }
    Ok(groups)
}

pub async fn topic_list(args: TopicListArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let topics = all_topics(&admin).await?;
    if !args.cluster_model {
        for topic in topics {
            out!("{topic}");
        }
        return Ok(());
    }
    out!(
        "{:<20}  {:<48}  {:<48}",
        "#Cluster Name",
        "#Topic",
        "#Consumer Group"
    );
    for topic in topics {
        if topic.starts_with(vostok_core::topic::RETRY_GROUP_TOPIC_PREFIX)
            || topic.starts_with(vostok_core::topic::DLQ_GROUP_TOPIC_PREFIX)
        {
            continue;
        }
        let Ok((route, _)) = admin.topic_masters(&topic).await else {
            continue;
        };
        let cluster = route
            .broker_datas
            .first()
            .map(|b| b.cluster.clone())
            .unwrap_or_default();
        let groups = groups_of_topic(&admin, &topic).await.unwrap_or_default();
        if groups.is_empty() {
            out!("{cluster:<20}  {topic:<48}  {:<48}", "");
        }
        for group in groups {
            out!("{cluster:<20}  {topic:<48}  {group:<48}");
        }
    }
    Ok(())
}

pub async fn topic_route(args: TopicRouteArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.topic.ns)?;
    let topic = &args.topic.topic;
    let route = admin.route(topic).await?;
    if !args.list {
        let ask = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC)
            .with_ext("topic", topic.as_str());
        let answer = expect_ok(admin.namesrv(ask).await?, "the route")?;
        let value = json_body(&answer, "the route")?;
        out!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    let line = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str| {
        out!("{a:<45} {b:<32} {c:<50} {d:<10} {e:<11} {f:<5}");
    };
    line(
        "#ClusterName",
        "#BrokerName",
        "#BrokerAddrs",
        "#ReadQueue",
        "#WriteQueue",
        "#Perm",
    );
    let (mut reads, mut writes) = (0, 0);
    for broker in &route.broker_datas {
        let addrs = broker
            .broker_addrs
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(", ");
        for queue in route
            .queue_datas
            .iter()
            .filter(|q| q.broker_name == broker.broker_name)
        {
            reads += queue.read_queue_nums;
            writes += queue.write_queue_nums;
            line(
                &broker.cluster,
                &broker.broker_name,
                &format!("{{{addrs}}}"),
                &queue.read_queue_nums.to_string(),
                &queue.write_queue_nums.to_string(),
                &queue.perm.to_string(),
            );
        }
    }
    out!();
    line(
        "Total:",
        &route.broker_datas.len().to_string(),
        "",
        &reads.to_string(),
        &writes.to_string(),
        "",
    );
    Ok(())
}

/// One queue of GET_TOPIC_STATS_INFO.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueStats {
    pub broker_name: String,
    pub queue_id: i32,
    pub min_offset: i64,
    pub max_offset: i64,
    pub last_update_ms: i64,
}

/// GET_TOPIC_STATS_INFO from every master of the topic: its queues, sorted, and the put TPS.
pub async fn topic_stats(admin: &Admin, topic: &str) -> Result<(Vec<QueueStats>, f64), RunError> {
    let (_, masters) = admin.topic_masters(topic).await?;
    let mut queues = Vec::new();
    let mut tps = 0.0;
    for broker in masters {
        let ask = RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_ext("topic", topic);
        let answer = expect_ok(
            admin.call(&broker.addr, ask).await?,
            &format!("the stats of {topic} on {}", broker.addr),
        )?;
        let table = json_body(&answer, "the topic stats")?;
        tps += super::rpc::float(&table, "topicPutTps");
        for (key, entry) in table["offsetTable"].as_object().into_iter().flatten() {
            let Some((_, broker_name, queue_id)) = queue_of_key(key) else {
                continue;
            };
            queues.push(QueueStats {
                broker_name,
                queue_id,
                min_offset: int(entry, "minOffset"),
                max_offset: int(entry, "maxOffset"),
                last_update_ms: int(entry, "lastUpdateTimestamp"),
            });
        }
    }
    queues.sort();
    Ok((queues, tps))
}

pub async fn topic_status(args: TopicArg) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let (queues, tps) = topic_stats(&admin, &args.topic).await?;
    out!(
        "{:<32}  {:<4}  {:<20}  {:<20}    #Last Updated",
        "#Broker Name",
        "#QID",
        "#Min Offset",
        "#Max Offset"
    );
    for q in &queues {
        let updated = if q.last_update_ms > 0 {
            human_time(q.last_update_ms)
        } else {
            String::new()
        };
        out!(
            "{:<32}  {:<4}  {:<20}  {:<20}    {updated}",
            q.broker_name,
            q.queue_id,
            q.min_offset,
            q.max_offset
        );
    }
    out!();
    out!(
        "Topic Put TPS: {}",
        vostok_core::broker::stats::java_double(tps)
    );
    Ok(())
}

pub async fn topic_cluster_list(args: TopicArg) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let route = admin.route(&args.topic).await?;
    let clusters: BTreeSet<&str> = route
        .broker_datas
        .iter()
        .map(|b| b.cluster.as_str())
        .collect();
    for cluster in clusters {
        out!("{cluster}");
    }
    Ok(())
}

pub async fn update_topic_perm(args: UpdateTopicPermArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let (route, masters) = admin.topic_masters(&args.topic).await?;
    let chosen: Vec<_> = match (&args.target.broker_addr, &args.target.cluster_name) {
        (Some(addr), _) => masters.into_iter().filter(|b| &b.addr == addr).collect(),
        (None, Some(cluster)) => masters
            .into_iter()
            .filter(|b| &b.cluster == cluster)
            .collect(),
        (None, None) => unreachable!("clap requires -b or -c"),
    };
    if chosen.is_empty() {
        return Err(RunError::Task(
            "updateTopicPerm: the broker does not exist, is not a master, or does not hold the topic"
                .to_owned(),
        ));
    }
    for broker in chosen {
        let Some(queue) = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name == broker.broker_name)
        else {
            continue;
        };
        if queue.perm == args.perm {
            out!("new perm equals to the old one!");
            continue;
        }
        let config = TopicConfig {
            topic: args.topic.clone(),
            read_queue_nums: queue.read_queue_nums,
            write_queue_nums: queue.write_queue_nums,
            perm: args.perm,
            topic_sys_flag: queue.topic_sys_flag,
            order: route.order_topic_conf.is_some(),
            attributes: None,
        };
        expect_ok(
            admin.call(&broker.addr, config.request()).await?,
            &format!("update the perm of {} on {}", args.topic, broker.addr),
        )?;
        out!(
            "update topic perm from {} to {} in {} success.",
            queue.perm,
            args.perm,
            broker.addr
        );
        out!("{}.", config.describe());
    }
    Ok(())
}
