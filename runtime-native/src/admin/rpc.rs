//! What every verb needs: the NameServers and brokers it talks to, over one connection per
//! address, and the checks that turn an answer into a value or a clear error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use vostok_core::namesrv::route::{ClusterInfo, TopicRouteData};
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::{lenient, RemotingCommand, SerializeType};

use crate::bench::direct::Conn;
use crate::RunError;

/// How long one admin request may take.
pub(super) const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `-n`: the NameServers, as every mqadmin command takes them.
#[derive(Clone, Debug, clap::Args)]
pub struct NamesrvArg {
    /// NameServer addresses, `host:port;host:port` (falls back to NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrvAddr", value_name = "ADDRS")]
    pub namesrv_addr: Option<String>,
}

/// `-b brokerAddr` or `-c clusterName`: the brokers a command writes to, exactly one of them.
#[derive(Clone, Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct BrokerOrCluster {
    /// One broker, `ip:port`.
    #[arg(short = 'b', long = "brokerAddr", value_name = "ADDR")]
    pub broker_addr: Option<String>,
    /// Every master of this cluster.
    #[arg(short = 'c', long = "clusterName", value_name = "CLUSTER")]
    pub cluster_name: Option<String>,
}

/// A broker a command talks to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerTarget {
    pub cluster: String,
    pub broker_name: String,
    pub broker_id: u64,
    pub addr: String,
}

/// A connection per address, opened on first use, for one command's run.
pub struct Admin {
    namesrvs: Vec<String>,
    conns: Mutex<BTreeMap<String, Arc<Conn>>>,
}

impl Admin {
    /// The NameServers from `-n`, else NAMESRV_ADDR.
    pub fn new(arg: &NamesrvArg) -> Result<Self, RunError> {
        let addrs = arg
            .namesrv_addr
            .clone()
            .or_else(|| std::env::var("NAMESRV_ADDR").ok())
            .ok_or_else(|| RunError::Usage("-n (or NAMESRV_ADDR) is required".to_owned()))?;
        let namesrvs: Vec<String> = addrs
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if namesrvs.is_empty() {
            return Err(RunError::Usage(format!("-n {addrs:?}: no address")));
        }
        Ok(Self {
            namesrvs,
            conns: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn namesrvs(&self) -> &[String] {
        &self.namesrvs
    }

    async fn conn(&self, addr: &str) -> Result<Arc<Conn>, RunError> {
        if let Some(conn) = self.conns.lock().expect("unpoisoned").get(addr) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(Conn::connect(addr, SerializeType::Json).await?);
        self.conns
            .lock()
            .expect("unpoisoned")
            .insert(addr.to_owned(), conn.clone());
        Ok(conn)
    }

    /// One request to `addr`, whatever its answer's code.
    pub async fn call(
        &self,
        addr: &str,
        command: RemotingCommand,
    ) -> Result<RemotingCommand, RunError> {
        let conn = self.conn(addr).await?;
        match conn.call(command, ADMIN_TIMEOUT).await {
            Ok(answer) => Ok(answer),
            Err(e) => {
                // A broken connection is not reused.
                self.conns.lock().expect("unpoisoned").remove(addr);
                Err(RunError::Task(format!("{addr}: {e}")))
            }
        }
    }

    /// One request to the first NameServer that answers.
    pub async fn namesrv(&self, command: RemotingCommand) -> Result<RemotingCommand, RunError> {
        let mut last_error = None;
        for addr in &self.namesrvs {
            match self.call(addr, command.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| RunError::Usage("no NameServer address".to_owned())))
    }

    /// The topic's route.
    pub async fn route(&self, topic: &str) -> Result<TopicRouteData, RunError> {
        let ask =
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
        let answer = self.namesrv(ask).await?;
        if answer.code == response::TOPIC_NOT_EXIST {
            return Err(RunError::Task(format!(
                "topic {topic} does not exist (no route)"
            )));
        }
        let answer = expect_ok(answer, &format!("the route of {topic}"))?;
        TopicRouteData::parse(&answer.body)
            .map_err(|e| RunError::Task(format!("the route of {topic}: {e}")))
    }

    /// Every cluster and broker the NameServer knows.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, RunError> {
        let answer = self
            .namesrv(RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO))
            .await?;
        let answer = expect_ok(answer, "the cluster list")?;
        ClusterInfo::parse(&answer.body)
            .map_err(|e| RunError::Task(format!("the cluster list: {e}")))
    }

    /// Every broker of the cluster info (masters and slaves), sorted by cluster, name and id;
    /// only those of `cluster` when given.
    pub async fn brokers(&self, cluster: Option<&str>) -> Result<Vec<BrokerTarget>, RunError> {
        let info = self.cluster_info().await?;
        if let Some(cluster) = cluster {
            if !info.cluster_addr_table.contains_key(cluster) {
                return Err(RunError::Task(format!("cluster {cluster} does not exist")));
            }
        }
        let mut brokers = Vec::new();
        for (cluster_name, names) in &info.cluster_addr_table {
            if cluster.is_some_and(|c| c != cluster_name) {
                continue;
            }
            for name in names {
                let Some(data) = info.broker_addr_table.get(name) else {
                    continue;
                };
                for (id, addr) in &data.broker_addrs {
                    brokers.push(BrokerTarget {
                        cluster: cluster_name.clone(),
                        broker_name: name.clone(),
                        broker_id: *id,
                        addr: addr.clone(),
                    });
                }
            }
        }
        brokers.sort();
        Ok(brokers)
    }

    /// `-b` as given, or every master of `-c`.
    pub async fn targets(&self, target: &BrokerOrCluster) -> Result<Vec<BrokerTarget>, RunError> {
        if let Some(addr) = &target.broker_addr {
            let known = self.brokers(None).await.unwrap_or_default();
            return Ok(vec![known.into_iter().find(|b| &b.addr == addr).unwrap_or(
                BrokerTarget {
                    cluster: String::new(),
                    broker_name: String::new(),
                    broker_id: 0,
                    addr: addr.clone(),
                },
            )]);
        }
        let cluster = target.cluster_name.as_deref();
        let masters: Vec<BrokerTarget> = self
            .brokers(cluster)
            .await?
            .into_iter()
            .filter(|b| b.broker_id == 0)
            .collect();
        if masters.is_empty() {
            return Err(RunError::Task(format!(
                "cluster {} has no master broker",
                cluster.unwrap_or_default()
            )));
        }
        Ok(masters)
    }

    /// The master of every broker name in the topic's route, with the route.
    pub async fn topic_masters(
        &self,
        topic: &str,
    ) -> Result<(TopicRouteData, Vec<BrokerTarget>), RunError> {
        let route = self.route(topic).await?;
        let masters = route
            .broker_datas
            .iter()
            .filter_map(|b| {
                b.broker_addrs.get(&0).map(|addr| BrokerTarget {
                    cluster: b.cluster.clone(),
                    broker_name: b.broker_name.clone(),
                    broker_id: 0,
                    addr: addr.clone(),
                })
            })
            .collect();
        Ok((route, masters))
    }
}

/// The answer when it is SUCCESS; otherwise an error naming `what`, the code and the remark.
pub fn expect_ok(answer: RemotingCommand, what: &str) -> Result<RemotingCommand, RunError> {
    if answer.code == response::SUCCESS {
        return Ok(answer);
    }
    Err(RunError::Task(format!(
        "{what}: code {} {}",
        answer.code,
        answer.remark.unwrap_or_default()
    )))
}

/// A JSON body as a Java broker or Vostok writes it (fastjson's map keys read as strings).
pub fn json_body(answer: &RemotingCommand, what: &str) -> Result<Value, RunError> {
    lenient::parse_fastjson(&answer.body).map_err(|e| RunError::Task(format!("{what}: {e}")))
}

/// A `MessageQueue` map key (`{"brokerName":…,"queueId":…,"topic":…}`) as (topic, broker, queue).
pub fn queue_of_key(key: &str) -> Option<(String, String, i32)> {
    let key: Value = serde_json::from_str(key).ok()?;
    Some((
        key.get("topic")?.as_str()?.to_owned(),
        key.get("brokerName")?.as_str()?.to_owned(),
        i32::try_from(key.get("queueId")?.as_i64()?).ok()?,
    ))
}

/// An integer member (fastjson writes numbers; a string holding one is read too).
pub fn int(value: &Value, name: &str) -> i64 {
    match value.get(name) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A floating-point member; 0 when absent.
pub fn float(value: &Value, name: &str) -> f64 {
    match value.get(name) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A string member; empty when absent.
pub fn text(value: &Value, name: &str) -> String {
    match value.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Epoch milliseconds as RocketMQ's `UtilAll.timeMillisToHumanString2`: local time,
/// `yyyy-MM-dd HH:mm:ss,SSS`.
pub fn human_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S,%3f")
                .to_string()
        })
        .unwrap_or_default()
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RocketMQ's `PermName.perm2String`: `R`, `W`, `X` or `-` for readable, writeable, inherited.
pub fn perm_string(perm: u32) -> String {
    let flag = |bit: u32, c: char| if perm & bit != 0 { c } else { '-' };
    [flag(4, 'R'), flag(2, 'W'), flag(1, 'X')].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_print_as_perm2string() {
        assert_eq!(perm_string(6), "RW-");
        assert_eq!(perm_string(4), "R--");
        assert_eq!(perm_string(7), "RWX");
    }
}
