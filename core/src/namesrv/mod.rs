//! The NameServer state machine: broker registrations and topic routes.
//!
//! Calling discipline: feed `handle_request` / `handle_disconnected` / `handle_timeout` with a
//! non-decreasing `now_ms`, drain [`NameServer::poll_output`], sleep until
//! [`NameServer::poll_timeout`].

pub mod register;

use crate::remoting::RemotingCommand;
use crate::ConnId;

#[derive(Clone, Debug)]
pub struct NamesrvConfig {
    /// A broker not heard from for this long is forgotten (RocketMQ: 120 s).
    pub broker_channel_expired_ms: u64,
    /// How often to scan for expired brokers (RocketMQ: 5 s).
    pub scan_not_active_broker_interval_ms: u64,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            broker_channel_expired_ms: 120_000,
            scan_not_active_broker_interval_ms: 5_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum NamesrvOutput {
    Send {
        conn: ConnId,
        command: RemotingCommand,
    },
    Close {
        conn: ConnId,
    },
}

pub struct NameServer {
    config: NamesrvConfig,
}

impl NameServer {
    pub fn new(config: NamesrvConfig) -> Self {
        Self { config }
    }

    pub fn handle_request(&mut self, now_ms: u64, conn: ConnId, command: RemotingCommand) {
        let _ = (now_ms, conn, command, &self.config);
        todo!()
    }

    pub fn handle_disconnected(&mut self, now_ms: u64, conn: ConnId) {
        let _ = (now_ms, conn);
        todo!()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!()
    }

    pub fn poll_output(&mut self) -> Option<NamesrvOutput> {
        todo!()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }
}
