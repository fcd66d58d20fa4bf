//! `vostok admin`: mqadmin's everyday commands, with mqadmin's names, flags and table shapes,
//! against any RocketMQ cluster (Vostok's or Apache's): they send RocketMQ's own admin requests
//! to the NameServers and brokers and read the answers as fastjson writes them.
//!
//! | module | verbs |
//! |---|---|
//! | [`topic`] | updateTopic, deleteTopic, topicList, topicRoute, topicStatus, topicClusterList, updateTopicPerm |
//! | [`broker`] | clusterList, brokerStatus, getBrokerConfig, updateBrokerConfig, wipeWritePerm, addWritePerm, statsAll, haStatus |
//! | [`group`] | consumerProgress, consumerConnection, producerConnection, updateSubGroup, deleteSubGroup, resetOffsetByTime |
//! | [`message`] | queryMsgById, queryMsgByKey, queryMsgByUniqueKey, queryMsgByOffset, sendMessage, consumeMessage |
//! | [`trace`], [`dlq`] | queryMsgTraceById; resendDlq (Vostok's own: dead letters back to their group) |
//!
//! Unlike mqadmin, which prints a stack trace and exits 0 when a command fails, every failure
//! here is one line on stderr and a non-zero exit: 2 for a usage mistake (clap's, or a value
//! that does not parse), 1 when a server refused or could not be reached.

/// `println!` for a command's output: when stdout is closed early (`vostok admin … | head`),
/// the command ends quietly instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

pub mod broker;
pub mod dlq;
pub mod group;
pub mod message;
mod rpc;
pub mod topic;
pub mod trace;

pub use group::reset_offset_by_time;
pub use rpc::{Admin, BrokerOrCluster, NamesrvArg};

use crate::RunError;

/// The verbs `vostok admin` runs; each takes `-n` (or NAMESRV_ADDR) for the NameServers.
#[derive(Debug, clap::Subcommand)]
#[command(rename_all = "camelCase")]
pub enum AdminCommand {
    /// Create or update a topic on a broker (-b) or every master of a cluster (-c).
    UpdateTopic(topic::UpdateTopicArgs),
    /// Delete a topic from a cluster's masters and from the NameServers.
    DeleteTopic(topic::DeleteTopicArgs),
    /// List every topic (-c: with its cluster and consumer groups).
    TopicList(topic::TopicListArgs),
    /// Print a topic's route (-l: as a table).
    TopicRoute(topic::TopicRouteArgs),
    /// Print a topic's queues: min and max offset, last update.
    TopicStatus(topic::TopicArg),
    /// Print the clusters a topic is in.
    TopicClusterList(topic::TopicArg),
    /// Change a topic's permission on a broker or a cluster's masters.
    UpdateTopicPerm(topic::UpdateTopicPermArgs),
    /// List clusters and brokers with their load (-m: message totals).
    ClusterList(broker::ClusterListArgs),
    /// Print a broker's runtime figures.
    BrokerStatus(broker::ReadTargetArgs),
    /// Print a broker's configuration.
    GetBrokerConfig(broker::ReadTargetArgs),
    /// Change one broker configuration key at run time.
    UpdateBrokerConfig(broker::UpdateBrokerConfigArgs),
    /// Print a consumer group's progress per queue (without -g: every group).
    ConsumerProgress(group::ConsumerProgressArgs),
    /// Print a consumer group's online clients and subscriptions.
    ConsumerConnection(group::ConsumerConnectionArgs),
    /// Print a producer group's online clients.
    ProducerConnection(group::ProducerConnectionArgs),
    /// Print a message by its offset id (or, with -t, its client id) and who consumed it.
    QueryMsgById(message::QueryMsgByIdArgs),
    /// List the messages of a topic carrying a key.
    QueryMsgByKey(message::QueryMsgByKeyArgs),
    /// Print a message by the id its producer got, and who consumed it.
    QueryMsgByUniqueKey(message::QueryMsgByUniqueKeyArgs),
    /// Print the message at a queue offset.
    QueryMsgByOffset(message::QueryMsgByOffsetArgs),
    /// Show a message's trace: its send and every consumption.
    QueryMsgTraceById(trace::QueryMsgTraceArgs),
    /// Reset a consumer group's offsets on a topic to a point in time; live consumers are
    /// told and resume from there.
    #[command(alias = "reset-offset")]
    ResetOffsetByTime(group::ResetOffsetArgs),
    /// Create or update a consumer group (subscription group) on a broker or a cluster.
    UpdateSubGroup(group::UpdateSubGroupArgs),
    /// Delete a consumer group (with -c also its retry and DLQ topics).
    DeleteSubGroup(group::DeleteSubGroupArgs),
    /// Send one message.
    SendMessage(message::SendMessageArgs),
    /// Print messages of a topic, a broker or one queue (nothing is committed).
    ConsumeMessage(message::ConsumeMessageArgs),
    /// Stop a broker taking writes: its topics lose write permission on every NameServer.
    WipeWritePerm(broker::BrokerNameArg),
    /// Give a broker's topics their write permission back on every NameServer.
    AddWritePerm(broker::BrokerNameArg),
    /// Print every topic's and group's in and out TPS, today's totals and backlog.
    StatsAll(broker::StatsAllArgs),
    /// Print replication: a master's slaves (acked offset, lag in bytes and ms), a slave's
    /// link to its master.
    HaStatus(broker::HaStatusArgs),
    /// Send dead-lettered messages of a consumer group back to it: each chosen message of
    /// `%DLQ%<group>` goes to `%RETRY%<group>` with its reconsume count reset. Without -i,
    /// every message in the DLQ is resent.
    #[command(alias = "resend-dlq")]
    ResendDlq(dlq::ResendDlqArgs),
}

/// Runs one admin command, printing its result on stdout.
pub async fn run(command: AdminCommand) -> Result<(), RunError> {
    use AdminCommand as C;
    match command {
        C::UpdateTopic(a) => topic::update_topic(a).await,
        C::DeleteTopic(a) => topic::delete_topic(a).await,
        C::TopicList(a) => topic::topic_list(a).await,
        C::TopicRoute(a) => topic::topic_route(a).await,
        C::TopicStatus(a) => topic::topic_status(a).await,
        C::TopicClusterList(a) => topic::topic_cluster_list(a).await,
        C::UpdateTopicPerm(a) => topic::update_topic_perm(a).await,
        C::ClusterList(a) => broker::cluster_list(a).await,
        C::BrokerStatus(a) => broker::broker_status(a).await,
        C::GetBrokerConfig(a) => broker::get_broker_config(a).await,
        C::UpdateBrokerConfig(a) => broker::update_broker_config(a).await,
        C::ConsumerProgress(a) => group::consumer_progress(a).await,
        C::ConsumerConnection(a) => group::print_consumer_connection(a).await,
        C::ProducerConnection(a) => group::producer_connection(a).await,
        C::QueryMsgById(a) => message::query_msg_by_id(a).await,
        C::QueryMsgByKey(a) => message::query_msg_by_key(a).await,
        C::QueryMsgByUniqueKey(a) => message::query_msg_by_unique_key(a).await,
        C::QueryMsgByOffset(a) => message::query_msg_by_offset(a).await,
        C::QueryMsgTraceById(a) => trace::run(a).await,
        C::ResetOffsetByTime(a) => group::reset_offset(a).await,
        C::UpdateSubGroup(a) => group::update_sub_group(a).await,
        C::DeleteSubGroup(a) => group::delete_sub_group(a).await,
        C::SendMessage(a) => message::send_message(a).await,
        C::ConsumeMessage(a) => message::consume_message(a).await,
        C::WipeWritePerm(a) => broker::write_perm(a, true).await,
        C::AddWritePerm(a) => broker::write_perm(a, false).await,
        C::StatsAll(a) => broker::stats_all(a).await,
        C::HaStatus(a) => broker::ha_status(a).await,
        C::ResendDlq(a) => dlq::run(a).await,
    }
}
