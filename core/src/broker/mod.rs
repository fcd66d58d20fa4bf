//! The Broker state machine.
//!
//! Calling discipline (the same for every state machine in the core):
//! 1. feed it: `handle_connected`, `handle_request`, `handle_disconnected`, `handle_synced`,
//!    `handle_timeout`, each with the current `now_ms` (never going backwards);
//! 2. drain [`Broker::poll_output`] until it returns `None`, doing what each output says;
//! 3. sleep until [`Broker::poll_timeout`] or the next input, whichever comes first.

use std::net::SocketAddr;

use crate::remoting::RemotingCommand;
use crate::store::{
    CommitLogOffset, MessageStore, SegmentStorage, StoreConfig, StoreError, SyncRequest,
};
use crate::ConnId;

/// RocketMQ's `flushDiskType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Answer sends once written; make them durable every `flush_interval_commitlog_ms`.
    #[default]
    AsyncFlush,
    /// Answer a send (with `WAIT=true`) only once it is durable; one sync covers every waiting
    /// send (group commit).
    SyncFlush,
}

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub broker_cluster_name: String,
    pub broker_name: String,
    pub broker_id: u64,
    /// The advertised address (`brokerIP1`): what clients are told to connect to and what goes in
    /// STOREHOST and message ids. Never guessed from the host's interfaces.
    pub broker_ip1: std::net::IpAddr,
    pub listen_port: u16,
    /// NameServers to register with (`namesrvAddr`, `;`-separated in broker.conf).
    pub namesrv_addrs: Vec<String>,
    pub flush_disk_type: FlushDiskType,
    pub flush_interval_commitlog_ms: u64,
    pub auto_create_topic_enable: bool,
    pub auto_create_subscription_group: bool,
    /// Queues of an auto-created or default-created topic (`defaultTopicQueueNums`).
    pub default_topic_queue_nums: u32,
    pub register_broker_interval_ms: u64,
    /// Longest a pull may be held (`longPollingEnable`; the client's `suspendTimeoutMillis` is
    /// honoured up to this).
    pub long_polling_enable: bool,
    pub store: StoreConfig,
    /// Seed of every random choice the broker makes.
    pub seed: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_cluster_name: "DefaultCluster".to_owned(),
            broker_name: "broker-a".to_owned(),
            broker_id: 0,
            broker_ip1: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            listen_port: 10911,
            namesrv_addrs: Vec::new(),
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commitlog_ms: 500,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 4,
            register_broker_interval_ms: 30_000,
            long_polling_enable: true,
            store: StoreConfig::default(),
            seed: 0,
        }
    }
}

/// What the broker wants its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum BrokerOutput {
    /// Write a command on a client connection: a response, or a broker→client request.
    Send {
        conn: ConnId,
        command: RemotingCommand,
    },
    /// Send a request to a NameServer (REGISTER_BROKER, UNREGISTER_BROKER). The driver keeps one
    /// connection per address and feeds the response back with `handle_namesrv_response`.
    SendToNamesrv {
        addr: String,
        command: RemotingCommand,
    },
    /// Make these ranges durable, then call `handle_synced(now, up_to)`.
    Sync(SyncRequest),
    /// Close a connection (after writing what was queued before).
    Close { conn: ConnId },
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Broker<S: SegmentStorage> {
    config: BrokerConfig,
    store: MessageStore<S>,
}

impl<S: SegmentStorage> Broker<S> {
    /// Opens the store (recovering it), loads topics and consumer offsets.
    pub fn new(config: BrokerConfig, storage: S, now_ms: u64) -> Result<Self, BrokerError> {
        let _ = (config, storage, now_ms);
        todo!()
    }

    pub fn handle_connected(&mut self, now_ms: u64, conn: ConnId, peer: SocketAddr) {
        let _ = (now_ms, conn, peer);
        todo!()
    }

    pub fn handle_request(&mut self, now_ms: u64, conn: ConnId, command: RemotingCommand) {
        let _ = (now_ms, conn, command);
        todo!()
    }

    pub fn handle_disconnected(&mut self, now_ms: u64, conn: ConnId) {
        let _ = (now_ms, conn);
        todo!()
    }

    pub fn handle_namesrv_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
        let _ = (now_ms, addr, command);
        todo!()
    }

    pub fn handle_synced(&mut self, now_ms: u64, up_to: CommitLogOffset) {
        let _ = (now_ms, up_to);
        todo!()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    /// Starts a clean shutdown: unregisters from NameServers, persists offsets, answers held
    /// pulls.
    pub fn shutdown(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    pub fn poll_output(&mut self) -> Option<BrokerOutput> {
        todo!()
    }

    /// The next instant (epoch ms) `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn store(&self) -> &MessageStore<S> {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut MessageStore<S> {
        &mut self.store
    }
}
