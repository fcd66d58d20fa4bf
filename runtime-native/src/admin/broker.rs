//! Broker and cluster verbs: clusterList, brokerStatus, getBrokerConfig, updateBrokerConfig,
//! wipeWritePerm, addWritePerm, statsAll. Output follows mqadmin's `tools/command/{cluster,
//! broker,namesrv,stats}` (RocketMQ 5.x).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use vostok_core::remoting::codes::request;
use vostok_core::remoting::RemotingCommand;

use super::rpc::{expect_ok, float, int, json_body, now_ms, Admin, BrokerTarget, NamesrvArg};
use crate::RunError;

#[derive(Debug, clap::Args)]
pub struct ClusterListArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Print message totals of yesterday and today instead of the load table.
    #[arg(short = 'm', long = "moreStats")]
    pub more_stats: bool,
    /// Print again every this many seconds (until interrupted).
    #[arg(short = 'i', long = "interval", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_s: Option<u64>,
    /// Only this cluster.
    #[arg(short = 'c', long = "clusterName", value_name = "CLUSTER")]
    pub cluster_name: Option<String>,
}

/// `-b` or `-c`, one of them (brokerStatus and getBrokerConfig read; they include slaves).
#[derive(Debug, clap::Args)]
pub struct ReadTargetArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    #[command(flatten)]
    pub target: super::rpc::BrokerOrCluster,
}

#[derive(Debug, clap::Args)]
pub struct UpdateBrokerConfigArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    #[command(flatten)]
    pub target: super::rpc::BrokerOrCluster,
    /// With -c: update slaves too (true), or only masters.
    #[arg(short = 'a', long = "updateAllBroker", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub all_brokers: bool,
    /// Config key (broker.conf's name).
    #[arg(short = 'k', long = "key", value_name = "KEY")]
    pub key: String,
    /// New value.
    #[arg(
        short = 'v',
        long = "value",
        value_name = "VALUE",
        allow_hyphen_values = true
    )]
    pub value: String,
}

#[derive(Debug, clap::Args)]
pub struct BrokerNameArg {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Broker name.
    #[arg(short = 'b', long = "brokerName", value_name = "NAME")]
    pub broker_name: String,
}

#[derive(Debug, clap::Args)]
pub struct StatsAllArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Only topics with messages in or out today.
    #[arg(short = 'a', long = "activeTopic")]
    pub active_only: bool,
    /// Only this topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: Option<String>,
}

/// GET_BROKER_RUNTIME_INFO: the broker's KV table, sorted.
pub async fn runtime_info(admin: &Admin, addr: &str) -> Result<BTreeMap<String, String>, RunError> {
    let answer = admin
        .call(
            addr,
            RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO),
        )
        .await?;
    let answer = expect_ok(answer, &format!("the runtime info of {addr}"))?;
    let body = json_body(&answer, "the runtime info")?;
    Ok(body["table"]
        .as_object()
        .map(|t| {
            t.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

pub async fn cluster_list(args: ClusterListArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    loop {
        let brokers = admin.brokers(args.cluster_name.as_deref()).await?;
        if args.more_stats {
            print_more_stats(&admin, &brokers).await;
        } else {
            print_base(&admin, &brokers).await;
        }
        let Some(interval_s) = args.interval_s else {
            return Ok(());
        };
        tokio::time::sleep(Duration::from_secs(interval_s)).await;
    }
}

async fn print_base(admin: &Admin, brokers: &[BrokerTarget]) {
    out!(
        "{:<22}  {:<22}  {:<4}  {:<22} {:<16}  {:>16}  {:>30}  {:<22}  {:<11}  {:<12}  {:<8}  {:<10}",
        "#Cluster Name", "#Broker Name", "#BID", "#Addr", "#Version", "#InTPS(LOAD)",
        "#OutTPS(LOAD)", "#Timer(Progress)", "#PCWait(ms)", "#Hour", "#SPACE", "#ACTIVATED"
    );
    for b in brokers {
        // A broker that does not answer still gets its row, with nothing measured (as mqadmin).
        let kv = runtime_info(admin, &b.addr).await.unwrap_or_default();
        let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
        let first = |k: &str| {
            get(k)
                .split(' ')
                .next()
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let hour = get("earliestMessageTimeStamp")
            .parse::<i64>()
            .map_or(0.0, |t| (now_ms() - t) as f64 / 3_600_000.0);
        let space = get("commitLogDiskRatio").parse::<f64>().unwrap_or(0.0);
        let or_n = |k: &str| kv.get(k).cloned().unwrap_or_else(|| "N".to_owned());
        let num = |k: &str| get(k).parse::<f64>().unwrap_or(0.0);
        out!(
            "{:<22}  {:<22}  {:<4}  {:<22} {:<16}  {:>16}  {:>30}  {:<22}  {:>11}  {:<12}  {:<8}  {:>10}",
            b.cluster,
            b.broker_name,
            b.broker_id,
            b.addr,
            get("brokerVersionDesc"),
            format!(
                "{:9.2}({},{}ms)",
                first("putTps"),
                get("sendThreadPoolQueueSize"),
                get("sendThreadPoolQueueHeadWaitTimeMills")
            ),
            format!(
                "{:9.2}({},{}ms|{},{}ms)",
                first("getTransferredTps"),
                get("pullThreadPoolQueueSize"),
                get("pullThreadPoolQueueHeadWaitTimeMills"),
                or_n("ackThreadPoolQueueSize"),
                or_n("ackThreadPoolQueueHeadWaitTimeMills")
            ),
            format!(
                "{}-{}({:.1}w, {:.1}, {:.1})",
                num("timerReadBehind") as i64,
                num("timerOffsetBehind") as i64,
                num("timerCongestNum") / 10_000.0,
                num("timerEnqueueTps"),
                num("timerDequeueTps")
            ),
            get("pageCacheLockTimeMills"),
            format!("{hour:2.2}"),
            format!("{space:.4}"),
            get("brokerActive") == "true",
        );
    }
}

async fn print_more_stats(admin: &Admin, brokers: &[BrokerTarget]) {
    out!(
        "{:<16}  {:<32} {:>14} {:>14} {:>14} {:>14}",
        "#Cluster Name",
        "#Broker Name",
        "#InTotalYest",
        "#OutTotalYest",
        "#InTotalToday",
        "#OutTotalToday"
    );
    for b in brokers.iter().filter(|b| b.broker_id == 0) {
        let kv = runtime_info(admin, &b.addr).await.unwrap_or_default();
        let n = |k: &str| kv.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        out!(
            "{:<16}  {:<32} {:>14} {:>14} {:>14} {:>14}",
            b.cluster,
            b.broker_name,
            n("msgPutTotalTodayMorning") - n("msgPutTotalYesterdayMorning"),
            n("msgGetTotalTodayMorning") - n("msgGetTotalYesterdayMorning"),
            n("msgPutTotalTodayNow") - n("msgPutTotalTodayMorning"),
            n("msgGetTotalTodayNow") - n("msgGetTotalTodayMorning"),
        );
    }
}

/// `-b` as given; `-c`: every broker of the cluster, slaves included.
async fn read_targets(
    admin: &Admin,
    target: &super::rpc::BrokerOrCluster,
) -> Result<Vec<BrokerTarget>, RunError> {
    match &target.cluster_name {
        Some(cluster) => admin.brokers(Some(cluster)).await,
        None => admin.targets(target).await,
    }
}

pub async fn broker_status(args: ReadTargetArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let by_cluster = args.target.cluster_name.is_some();
    let mut failures = Vec::new();
    for b in read_targets(&admin, &args.target).await? {
        match runtime_info(&admin, &b.addr).await {
            Ok(kv) => {
                for (k, v) in kv {
                    if by_cluster {
                        out!("{:<24} {k:<32}: {v}", b.addr);
                    } else {
                        out!("{k:<32}: {v}");
                    }
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    fail_if_any(failures)
}

pub async fn get_broker_config(args: ReadTargetArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let mut failures = Vec::new();
    for b in read_targets(&admin, &args.target).await? {
        let prefix = if args.target.cluster_name.is_none() {
            format!("============{}============", b.addr)
        } else if b.broker_id == 0 {
            format!("============Master: {}============", b.addr)
        } else {
            format!(
                "============My Master: {}=====Slave: {}============",
                b.broker_name, b.addr
            )
        };
        out!("{prefix}");
        let answer = admin
            .call(
                &b.addr,
                RemotingCommand::request(request::GET_BROKER_CONFIG),
            )
            .await
            .and_then(|a| expect_ok(a, &format!("the config of {}", b.addr)));
        match answer {
            Ok(answer) => {
                let text = String::from_utf8_lossy(&answer.body);
                let mut props: Vec<(&str, &str)> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .map(|l| l.split_once('=').unwrap_or((l, "")))
                    .collect();
                props.sort();
                if props.is_empty() {
                    out!("Broker[{}] has no config property!", b.addr);
                }
                for (k, v) in props {
                    out!("{k:<50}=  {v}");
                }
                out!();
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    fail_if_any(failures)
}

pub async fn update_broker_config(args: UpdateBrokerConfigArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let targets = match (&args.target.cluster_name, args.all_brokers) {
        (Some(cluster), true) => admin.brokers(Some(cluster)).await?,
        _ => admin.targets(&args.target).await?,
    };
    let body = format!("{}={}", args.key, args.value);
    for b in targets {
        let ask = RemotingCommand::request(request::UPDATE_BROKER_CONFIG)
            .with_body(body.clone().into_bytes());
        expect_ok(
            admin.call(&b.addr, ask).await?,
            &format!("update {} on {}", args.key, b.addr),
        )?;
        out!("update broker config success, {}", b.addr);
    }
    Ok(())
}

/// wipeWritePerm (`wipe = true`) or addWritePerm on every NameServer.
pub async fn write_perm(args: BrokerNameArg, wipe: bool) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let (code, count_key, verb) = if wipe {
        (request::WIPE_WRITE_PERM_OF_BROKER, "wipeTopicCount", "wipe")
    } else {
        (request::ADD_WRITE_PERM_OF_BROKER, "addTopicCount", "add")
    };
    let mut failures = Vec::new();
    for addr in admin.namesrvs() {
        let ask = RemotingCommand::request(code).with_ext("brokerName", args.broker_name.as_str());
        match admin.call(addr, ask).await.and_then(|a| expect_ok(a, verb)) {
            Ok(answer) => out!(
                "{verb} write perm of broker[{}] in name server[{addr}] OK, {}",
                args.broker_name,
                answer.ext(count_key).unwrap_or("0")
            ),
            Err(e) => {
                out!(
                    "{verb} write perm of broker[{}] in name server[{addr}] Failed",
                    args.broker_name
                );
                failures.push(e.to_string());
            }
        }
    }
    fail_if_any(failures)
}

/// VIEW_BROKER_STATS_DATA of one item: (minute TPS, mqadmin's 24-hour sum).
async fn stats_of(admin: &Admin, addr: &str, name: &str, key: &str) -> Option<(f64, i64)> {
    let ask = RemotingCommand::request(request::VIEW_BROKER_STATS_DATA)
        .with_ext("statsName", name)
        .with_ext("statsKey", key);
    let answer = expect_ok(admin.call(addr, ask).await.ok()?, "stats").ok()?;
    let data: Value = json_body(&answer, "stats").ok()?;
    let minute_tps = float(&data["statsMinute"], "tps");
    // mqadmin's compute24HourSum: the day's sum, else the hour's, else the minute's.
    let sum = ["statsDay", "statsHour", "statsMinute"]
        .iter()
        .map(|w| int(&data[*w], "sum"))
        .find(|s| *s != 0)
        .unwrap_or(0);
    Some((minute_tps, sum))
}

pub async fn stats_all(args: StatsAllArgs) -> Result<(), RunError> {
    use vostok_core::broker::stats::{GROUP_GET_NUMS, TOPIC_PUT_NUMS};
    let admin = Admin::new(&args.ns)?;
    out!(
        "{:<64}  {:<64} {:>12} {:>11} {:>11} {:>14} {:>14}",
        "#Topic",
        "#Consumer Group",
        "#Accumulation",
        "#InTPS",
        "#OutTPS",
        "#InMsg24Hour",
        "#OutMsg24Hour"
    );
    for topic in super::topic::all_topics(&admin).await? {
        if topic.starts_with(vostok_core::topic::RETRY_GROUP_TOPIC_PREFIX)
            || topic.starts_with(vostok_core::topic::DLQ_GROUP_TOPIC_PREFIX)
            || args.topic.as_ref().is_some_and(|t| t != &topic)
        {
            continue;
        }
        let Ok((_, masters)) = admin.topic_masters(&topic).await else {
            continue;
        };
        let (mut in_tps, mut in_today) = (0.0, 0);
        for b in &masters {
            if let Some((tps, sum)) = stats_of(&admin, &b.addr, TOPIC_PUT_NUMS, &topic).await {
                in_tps += tps;
                in_today += sum;
            }
        }
        let groups = super::topic::groups_of_topic(&admin, &topic)
            .await
            .unwrap_or_default();
        if groups.is_empty() {
            if !args.active_only || in_today > 0 {
                out!(
                    "{topic:<64}  {:<64} {:>12} {in_tps:>11.2} {:>11} {in_today:>14} {:>14}",
                    "",
                    0,
                    "",
                    "NO_CONSUMER"
                );
            }
            continue;
        }
        for group in groups {
            let (mut out_tps, mut out_today) = (0.0, 0);
            let key = format!("{topic}@{group}");
            for b in &masters {
                if let Some((tps, sum)) = stats_of(&admin, &b.addr, GROUP_GET_NUMS, &key).await {
                    out_tps += tps;
                    out_today += sum;
                }
            }
            let accumulation = super::group::consume_stats(&admin, &group, Some(&topic))
                .await
                .map(|s| s.total_diff().max(0))
                .unwrap_or(0);
            if !args.active_only || in_today > 0 || out_today > 0 {
                out!(
                    "{topic:<64}  {group:<64} {accumulation:>12} {in_tps:>11.2} {out_tps:>11.2} {in_today:>14} {out_today:>14}"
                );
            }
        }
    }
    Ok(())
}

/// Ok when nothing failed; otherwise every failure, one per line.
pub(super) fn fail_if_any(failures: Vec<String>) -> Result<(), RunError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(RunError::Task(failures.join("\n")))
    }
}

#[derive(Debug, clap::Args)]
pub struct HaStatusArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    #[command(flatten)]
    pub target: super::rpc::BrokerOrCluster,
}

/// mqadmin's haStatus: per master, its slaves (address, acked offset, bytes behind, status,
/// and, beyond mqadmin, how many ms behind); per slave, its link to its master.
pub async fn ha_status(args: HaStatusArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let mut failures = Vec::new();
    for b in read_targets(&admin, &args.target).await? {
        let answer = admin
            .call(
                &b.addr,
                RemotingCommand::request(request::GET_BROKER_HA_STATUS),
            )
            .await
            .and_then(|a| expect_ok(a, &format!("the HA status of {}", b.addr)));
        let info = match answer.and_then(|a| json_body(&a, "the HA status")) {
            Ok(info) => info,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        if info["master"] == true {
            let links = info["haConnectionInfo"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            out!(
                "\n#MasterAddr\t{}\n#MasterCommitLogMaxOffset\t{}\n#SlaveNum\t{}\n#InSyncSlaveNum\t{}",
                b.addr,
                int(&info, "masterCommitLogMaxOffset"),
                links.len(),
                int(&info, "inSyncSlaveNums")
            );
            out!(
                "{:<32}  {:<16} {:>16} {:>16} {:>16} {:>16} {:>12}",
                "#SlaveAddr",
                "#SlaveAckOffset",
                "#Diff",
                "#TransferSpeed(KB/s)",
                "#Status",
                "#TransferFromWhere",
                "#LagMs"
            );
            for l in &links {
                out!(
                    "{:<32}  {:<16} {:>16} {:>16.2} {:>16} {:>16} {:>12}",
                    super::rpc::text(l, "addr"),
                    int(l, "slaveAckOffset"),
                    int(l, "diff"),
                    float(l, "transferredByteInSecond") / 1024.0,
                    if l["inSync"] == true {
                        "OK"
                    } else {
                        "Fall Behind"
                    },
                    int(l, "transferFromWhere"),
                    int(l, "lagMillis")
                );
            }
        } else {
            let c = &info["haClientRuntimeInfo"];
            out!("\n#MasterAddr\t{}", super::rpc::text(c, "masterAddr"));
            out!("#CommitLogMaxOffset\t{}", int(c, "maxOffset"));
            out!(
                "#TransferSpeed(KB/s)\t{:.2}",
                float(c, "transferredByteInSecond") / 1024.0
            );
            out!(
                "#LastReadTime\t{}",
                super::rpc::human_time(int(c, "lastReadTimestamp"))
            );
            out!(
                "#LastWriteTime\t{}",
                super::rpc::human_time(int(c, "lastWriteTimestamp"))
            );
            out!("#MasterFlushOffset\t{}", int(c, "masterFlushOffset"));
            if let Some(reason) = c["refused"].as_str() {
                out!("#Refused\t{reason}");
            }
        }
    }
    fail_if_any(failures)
}
