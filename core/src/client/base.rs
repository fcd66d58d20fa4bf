//! What every client state machine shares: identity, NameServer choice, the broker address
//! table, and the table of requests in flight.

use std::collections::{BTreeMap, VecDeque};

use super::{ClientConfig, ClientOutput};
use crate::namesrv::route::TopicRouteData;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::rng::SeededRng;

/// A request in flight.
#[derive(Debug)]
pub(super) struct Rpc<K> {
    pub addr: String,
    pub deadline_ms: u64,
    pub kind: K,
}

/// Requests in flight by opaque. Opaques count up from 1 and skip ones still in use.
#[derive(Debug)]
pub(super) struct RpcTable<K> {
    next_opaque: i32,
    pending: BTreeMap<i32, Rpc<K>>,
}

impl<K> Default for RpcTable<K> {
    fn default() -> Self {
        Self {
            next_opaque: 0,
            pending: BTreeMap::new(),
        }
    }
}

impl<K> RpcTable<K> {
    fn next_opaque(&mut self) -> i32 {
        loop {
            self.next_opaque = self.next_opaque.wrapping_add(1);
            if self.next_opaque > 0 && !self.pending.contains_key(&self.next_opaque) {
                return self.next_opaque;
            }
        }
    }

    /// Queues `command` to `addr` and remembers it until its response, a timeout at
    /// `deadline_ms`, or the connection closing. Returns the opaque.
    pub fn call(
        &mut self,
        outputs: &mut VecDeque<ClientOutput>,
        addr: &str,
        mut command: RemotingCommand,
        deadline_ms: u64,
        kind: K,
    ) -> i32 {
        let opaque = self.next_opaque();
        command.opaque = opaque;
        self.pending.insert(
            opaque,
            Rpc {
                addr: addr.to_owned(),
                deadline_ms,
                kind,
            },
        );
        outputs.push_back(ClientOutput::Send {
            addr: addr.to_owned(),
            command,
        });
        opaque
    }

    /// Queues `command` to `addr` with the oneway flag; nothing is remembered.
    pub fn oneway(
        &mut self,
        outputs: &mut VecDeque<ClientOutput>,
        addr: &str,
        mut command: RemotingCommand,
    ) -> i32 {
        let opaque = self.next_opaque();
        command.opaque = opaque;
        command.mark_oneway();
        outputs.push_back(ClientOutput::Send {
            addr: addr.to_owned(),
            command,
        });
        opaque
    }

    /// The request a response answers (a response from a different address than the request
    /// went to is ignored).
    pub fn take(&mut self, addr: &str, opaque: i32) -> Option<Rpc<K>> {
        match self.pending.get(&opaque) {
            Some(rpc) if rpc.addr == addr => self.pending.remove(&opaque),
            _ => None,
        }
    }

    /// Requests whose deadline has passed, in opaque order.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<(i32, Rpc<K>)> {
        let expired: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, rpc)| rpc.deadline_ms <= now_ms)
            .map(|(opaque, _)| *opaque)
            .collect();
        expired
            .into_iter()
            .filter_map(|o| self.pending.remove(&o).map(|rpc| (o, rpc)))
            .collect()
    }

    /// Requests in flight to `addr`, in opaque order.
    pub fn take_for_addr(&mut self, addr: &str) -> Vec<(i32, Rpc<K>)> {
        let gone: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, rpc)| rpc.addr == addr)
            .map(|(opaque, _)| *opaque)
            .collect();
        gone.into_iter()
            .filter_map(|o| self.pending.remove(&o).map(|rpc| (o, rpc)))
            .collect()
    }

    /// Every request in flight (shutdown).
    pub fn take_all(&mut self) -> Vec<(i32, Rpc<K>)> {
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    pub fn earliest_deadline_ms(&self) -> Option<u64> {
        self.pending.values().map(|rpc| rpc.deadline_ms).min()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i32, &Rpc<K>)> {
        self.pending.iter()
    }
}

/// Identity, NameServer choice and the broker address table.
#[derive(Debug)]
pub(super) struct ClientBase {
    pub config: ClientConfig,
    pub client_id: String,
    pub rng: SeededRng,
    /// Index into `config.namesrv_addrs` of the NameServer in use.
    namesrv_index: usize,
    /// brokerName → brokerId → address, merged from every route seen (Java's
    /// `brokerAddrTable`).
    pub broker_addrs: BTreeMap<String, BTreeMap<u64, String>>,
    /// The latest route of every topic fetched.
    pub routes: BTreeMap<String, TopicRouteData>,
    /// Broker addresses a request recently failed to reach, until when (ms). Consumers read
    /// from another member of the group meanwhile, instead of waiting for the NameServer's
    /// route to drop a dead master.
    unreachable_until_ms: BTreeMap<String, u64>,
}

/// How long an address that failed stays passed over.
pub(super) const UNREACHABLE_MS: u64 = 30_000;

impl ClientBase {
    pub fn new(config: ClientConfig) -> Self {
        let mut rng = SeededRng::new(config.seed);
        let namesrv_index = if config.namesrv_addrs.is_empty() {
            0
        } else {
            rng.below(config.namesrv_addrs.len() as u64) as usize
        };
        Self {
            client_id: config.client_id(),
            config,
            rng,
            namesrv_index,
            broker_addrs: BTreeMap::new(),
            routes: BTreeMap::new(),
            unreachable_until_ms: BTreeMap::new(),
        }
    }

    /// The NameServer in use, if any is configured.
    pub fn namesrv(&self) -> Option<&str> {
        let addrs = &self.config.namesrv_addrs;
        if addrs.is_empty() {
            return None;
        }
        addrs
            .get(self.namesrv_index % addrs.len())
            .map(String::as_str)
    }

    /// `addr` failed: move to the next NameServer if it was the one in use.
    pub fn namesrv_failed(&mut self, addr: &str) {
        if self.namesrv() == Some(addr) {
            self.namesrv_index = (self.namesrv_index + 1) % self.config.namesrv_addrs.len().max(1);
        }
    }

    /// Records `route` for `topic` and merges its broker addresses.
    pub fn store_route(&mut self, topic: &str, route: TopicRouteData) {
        for broker in &route.broker_datas {
            self.broker_addrs
                .insert(broker.broker_name.clone(), broker.broker_addrs.clone());
        }
        self.routes.insert(topic.to_owned(), route);
    }

    /// The master address of `broker_name` (id 0).
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.broker_addrs
            .get(broker_name)
            .and_then(|addrs| addrs.get(&0))
            .map(String::as_str)
    }

    /// A request to `addr` failed without an answer: pass it over for [`UNREACHABLE_MS`].
    pub fn mark_unreachable(&mut self, now_ms: u64, addr: &str) {
        self.unreachable_until_ms
            .insert(addr.to_owned(), now_ms + UNREACHABLE_MS);
    }

    /// An answer came from `addr`.
    pub fn mark_reachable(&mut self, addr: &str) {
        self.unreachable_until_ms.remove(addr);
    }

    /// Whether `addr` is not being passed over after a failure.
    pub fn reachable(&self, now_ms: u64, addr: &str) -> bool {
        self.unreachable_until_ms
            .get(addr)
            .is_none_or(|until| now_ms >= *until)
    }

    /// The member of `broker_name` to pull from (Java's `findBrokerAddressInSubscribe` with
    /// `onlyThisBroker=false`): `broker_id` (the last pull's `suggestWhichBrokerId`) when the
    /// route has it and it is reachable, else the lowest-id reachable member (the master when
    /// it is up, a slave while it is not), else the lowest id. Returns (address, broker id).
    pub fn subscribe_addr(
        &self,
        now_ms: u64,
        broker_name: &str,
        broker_id: u64,
    ) -> Option<(String, u64)> {
        let members = self.broker_addrs.get(broker_name)?;
        let pick = |(id, addr): (&u64, &String)| (addr.clone(), *id);
        members
            .get_key_value(&broker_id)
            .filter(|(_, addr)| self.reachable(now_ms, addr))
            .or_else(|| {
                members
                    .iter()
                    .find(|(_, addr)| self.reachable(now_ms, addr))
            })
            .or_else(|| members.iter().next())
            .map(pick)
    }

    /// The member of `broker_name` for offset queries and commits (Java's
    /// `findBrokerAddressInAdmin`): the master, or a slave while the master is gone from the
    /// route or unreachable. A Vostok slave hands such commits back to its master.
    pub fn admin_addr(&self, now_ms: u64, broker_name: &str) -> Option<String> {
        self.subscribe_addr(now_ms, broker_name, 0)
            .map(|(addr, _)| addr)
    }

    /// Every master address, in broker-name order (heartbeat and unregister targets).
    pub fn master_addrs(&self) -> Vec<String> {
        self.broker_addrs
            .values()
            .filter_map(|addrs| addrs.get(&0).cloned())
            .collect()
    }

    /// Every broker address (masters and slaves), in broker-name then id order.
    pub fn all_broker_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = Vec::new();
        for member in self.broker_addrs.values() {
            for addr in member.values() {
                if !addrs.contains(addr) {
                    addrs.push(addr.clone());
                }
            }
        }
        addrs
    }

    /// Answers a broker→client request the state machine does not serve.
    pub fn reject_request(
        &self,
        addr: &str,
        command: &RemotingCommand,
        outputs: &mut VecDeque<ClientOutput>,
    ) {
        if command.is_response() || command.is_oneway() {
            return;
        }
        let reply = RemotingCommand::response_to(
            command,
            response::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(" request type {} not supported", command.code)),
        );
        outputs.push_back(ClientOutput::Send {
            addr: addr.to_owned(),
            command: reply,
        });
    }
}
