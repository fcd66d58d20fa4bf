//! The slave's side of HA v1 (RocketMQ's `HAClient` / `DefaultHAClient`): one link to the
//! master's `haListenPort`, reports of this store's CommitLog max, frames of the master's
//! CommitLog in.
//!
//! ```text
//!  idle ──master known, retry time──▶ connecting ──connected──▶ streaming ──silent 20 s,
//!   ▲                                     │                        │        closed, bad bytes──┐
//!   └────────── 5 s later ◀── failed ─────┘                        └─ diverged ──▶ refused     │
//!   └──────────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! On connecting it reports its max at once (RocketMQ 4.x waits up to 5 s; either is fine), then
//! after every append that raised the max and after 5 s without a report. The owner applies
//! each frame to its store ([`crate::store::MessageStore::append_replicated`]) and tells the
//! link the new max with [`HaSlave::handle_appended`]. A frame that does not continue the store
//! means the slave and its master disagree: the link is closed and replication stops
//! ([`HaSlave::refuse`]) with both offsets in the reason, instead of RocketMQ's silent
//! reconnect loop (#323, #3388).

use super::codec::{encode_report, FrameDecoder, HaFrame, REPORT_BYTES};
use crate::ConnId;

/// The slave's HA settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaSlaveConfig {
    /// `haSendHeartbeatInterval`: a report after this long without one.
    pub heartbeat_interval_ms: u64,
    /// `haHousekeepingInterval`: close the link when the master is silent this long.
    pub housekeeping_interval_ms: u64,
    /// Wait between connection attempts (RocketMQ: 5 s).
    pub reconnect_interval_ms: u64,
}

impl Default for HaSlaveConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 5_000,
            housekeeping_interval_ms: 20_000,
            reconnect_interval_ms: 5_000,
        }
    }
}

/// What the slave asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlaveAction {
    /// Connect to the master's HA address, then call `handle_connected` (or
    /// `handle_connect_failed`).
    Connect { addr: String },
    /// Write an offset report on the link.
    Send {
        link: ConnId,
        report: [u8; REPORT_BYTES],
    },
    /// Close the link; `reason` is for the log.
    Close { link: ConnId, reason: String },
}

#[derive(Debug)]
enum State {
    Idle {
        retry_at_ms: u64,
    },
    Connecting,
    Streaming(Link),
    /// Replication stopped: the store and the master disagree.
    Refused {
        reason: String,
    },
}

#[derive(Debug)]
struct Link {
    id: ConnId,
    frames: FrameDecoder,
    last_read_ms: u64,
    last_report_ms: u64,
    reported: u64,
}

/// The slave's link to its master.
#[derive(Debug)]
pub struct HaSlave {
    config: HaSlaveConfig,
    /// `haMasterAddress`, or what the NameServer said (`haServerAddr`).
    master_addr: Option<String>,
    state: State,
}

impl HaSlave {
    pub fn new(config: HaSlaveConfig, master_addr: Option<String>) -> Self {
        Self {
            config,
            master_addr,
            state: State::Idle { retry_at_ms: 0 },
        }
    }

    pub fn master_addr(&self) -> Option<&str> {
        self.master_addr.as_deref()
    }

    /// The link while streaming.
    pub fn link(&self) -> Option<ConnId> {
        match &self.state {
            State::Streaming(link) => Some(link.id),
            _ => None,
        }
    }

    /// While streaming: when the master last sent something and this slave last reported.
    pub fn last_read_and_report_ms(&self) -> Option<(u64, u64)> {
        match &self.state {
            State::Streaming(link) => Some((link.last_read_ms, link.last_report_ms)),
            _ => None,
        }
    }

    /// Why replication stopped, once it has.
    pub fn refused(&self) -> Option<&str> {
        match &self.state {
            State::Refused { reason } => Some(reason),
            _ => None,
        }
    }

    /// The master's HA address as the NameServer or the config gives it. A new address drops
    /// the link to the old one; `None` keeps the old one (RocketMQ keeps retrying it).
    pub fn set_master_addr(&mut self, addr: Option<String>) -> Vec<SlaveAction> {
        let Some(addr) = addr.filter(|a| !a.is_empty()) else {
            return Vec::new();
        };
        if self.master_addr.as_deref() == Some(addr.as_str()) {
            return Vec::new();
        }
        self.master_addr = Some(addr);
        match std::mem::replace(&mut self.state, State::Idle { retry_at_ms: 0 }) {
            State::Streaming(link) => vec![SlaveAction::Close {
                link: link.id,
                reason: "the master's HA address changed".to_owned(),
            }],
            State::Refused { reason } => {
                self.state = State::Refused { reason };
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    pub fn handle_connected(
        &mut self,
        now_ms: u64,
        link: ConnId,
        written: u64,
    ) -> Vec<SlaveAction> {
        if !matches!(self.state, State::Connecting) {
            return vec![SlaveAction::Close {
                link,
                reason: "not expecting a connection".to_owned(),
            }];
        }
        self.state = State::Streaming(Link {
            id: link,
            frames: FrameDecoder::default(),
            last_read_ms: now_ms,
            last_report_ms: now_ms,
            reported: written,
        });
        vec![SlaveAction::Send {
            link,
            report: encode_report(written),
        }]
    }

    pub fn handle_connect_failed(&mut self, now_ms: u64) {
        if matches!(self.state, State::Connecting) {
            self.state = State::Idle {
                retry_at_ms: now_ms + self.config.reconnect_interval_ms,
            };
        }
    }

    /// The link closed (by the master, the network, or an action of ours).
    pub fn handle_closed(&mut self, now_ms: u64, link: ConnId) {
        if self.link() == Some(link) {
            self.state = State::Idle {
                retry_at_ms: now_ms + self.config.reconnect_interval_ms,
            };
        }
    }

    /// Bytes from the master: the complete frames in them, for the owner to append in order.
    /// Bad bytes close the link (the action says why).
    pub fn handle_bytes(
        &mut self,
        now_ms: u64,
        link: ConnId,
        bytes: &[u8],
    ) -> (Vec<HaFrame>, Vec<SlaveAction>) {
        let State::Streaming(state) = &mut self.state else {
            return (Vec::new(), Vec::new());
        };
        if state.id != link {
            return (Vec::new(), Vec::new());
        }
        state.last_read_ms = now_ms;
        state.frames.extend(bytes);
        let mut frames = Vec::new();
        loop {
            match state.frames.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, Vec::new()),
                Err(e) => {
                    let actions = vec![SlaveAction::Close {
                        link,
                        reason: format!("the master sent bytes that are not HA v1: {e}"),
                    }];
                    self.state = State::Idle {
                        retry_at_ms: now_ms + self.config.reconnect_interval_ms,
                    };
                    return (frames, actions);
                }
            }
        }
    }

    /// The store now ends at `written`: report it if it grew.
    pub fn handle_appended(&mut self, now_ms: u64, written: u64) -> Vec<SlaveAction> {
        let State::Streaming(state) = &mut self.state else {
            return Vec::new();
        };
        if written <= state.reported {
            return Vec::new();
        }
        state.reported = written;
        state.last_report_ms = now_ms;
        vec![SlaveAction::Send {
            link: state.id,
            report: encode_report(written),
        }]
    }

    /// Drops the link and connects again after the reconnect interval: what the master sent
    /// could not be stored this time (a full disk, a read of the master's file that came back
    /// damaged), which may not happen again. The slave resumes from its own end.
    pub fn drop_link(&mut self, now_ms: u64, reason: String) -> Vec<SlaveAction> {
        let actions = match &self.state {
            State::Streaming(link) => vec![SlaveAction::Close {
                link: link.id,
                reason,
            }],
            _ => Vec::new(),
        };
        if !matches!(self.state, State::Refused { .. }) {
            self.state = State::Idle {
                retry_at_ms: now_ms + self.config.reconnect_interval_ms,
            };
        }
        actions
    }

    /// Stops replicating: the store and the master disagree (`reason` names both offsets).
    pub fn refuse(&mut self, reason: String) -> Vec<SlaveAction> {
        let actions = match &self.state {
            State::Streaming(link) => vec![SlaveAction::Close {
                link: link.id,
                reason: reason.clone(),
            }],
            _ => Vec::new(),
        };
        self.state = State::Refused { reason };
        actions
    }

    /// Connects, reports when idle, and closes a silent link, as time requires; `written` is
    /// the store's CommitLog max.
    pub fn poll(&mut self, now_ms: u64, written: u64) -> Vec<SlaveAction> {
        match &mut self.state {
            State::Idle { retry_at_ms } if now_ms >= *retry_at_ms => match &self.master_addr {
                Some(addr) => {
                    let addr = addr.clone();
                    self.state = State::Connecting;
                    vec![SlaveAction::Connect { addr }]
                }
                None => Vec::new(),
            },
            State::Streaming(link) => {
                if now_ms.saturating_sub(link.last_read_ms) >= self.config.housekeeping_interval_ms
                {
                    let id = link.id;
                    self.state = State::Idle {
                        retry_at_ms: now_ms + self.config.reconnect_interval_ms,
                    };
                    return vec![SlaveAction::Close {
                        link: id,
                        reason: format!(
                            "the master sent nothing for {} ms (haHousekeepingInterval)",
                            self.config.housekeeping_interval_ms
                        ),
                    }];
                }
                if now_ms.saturating_sub(link.last_report_ms) >= self.config.heartbeat_interval_ms {
                    link.last_report_ms = now_ms;
                    link.reported = link.reported.max(written);
                    return vec![SlaveAction::Send {
                        link: link.id,
                        report: encode_report(link.reported),
                    }];
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// When [`HaSlave::poll`] has something to do without new input.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match &self.state {
            State::Idle { retry_at_ms } => self.master_addr.as_ref().map(|_| *retry_at_ms),
            State::Streaming(link) => Some(
                (link.last_report_ms + self.config.heartbeat_interval_ms)
                    .min(link.last_read_ms + self.config.housekeeping_interval_ms),
            ),
            State::Connecting | State::Refused { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::encode_frame_header;
    use super::*;

    #[test]
    fn it_connects_reports_its_max_at_once_and_after_each_append() {
        let mut s = HaSlave::new(HaSlaveConfig::default(), None);
        assert!(s.poll(0, 0).is_empty(), "no master known yet");
        assert!(s.set_master_addr(Some("10.0.0.1:10912".into())).is_empty());
        assert_eq!(
            s.poll(0, 0),
            vec![SlaveAction::Connect {
                addr: "10.0.0.1:10912".into()
            }]
        );
        let link = ConnId(7);
        assert_eq!(
            s.handle_connected(1, link, 800),
            vec![SlaveAction::Send {
                link,
                report: encode_report(800)
            }]
        );
        let mut wire = encode_frame_header(800, 3).to_vec();
        wire.extend(b"abc");
        wire.extend(&encode_frame_header(803, 2)[..5]);
        let (frames, actions) = s.handle_bytes(2, link, &wire);
        assert!(actions.is_empty());
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].offset, &frames[0].body[..]), (800, &b"abc"[..]));
        assert_eq!(
            s.handle_appended(2, 803),
            vec![SlaveAction::Send {
                link,
                report: encode_report(803)
            }]
        );
        assert!(
            s.handle_appended(2, 803).is_empty(),
            "only when the max grew"
        );
        // 5 s without a report: one more.
        assert_eq!(
            s.poll(5_002, 803),
            vec![SlaveAction::Send {
                link,
                report: encode_report(803)
            }]
        );
    }

    #[test]
    fn a_silent_master_is_dropped_and_retried_a_refused_one_is_not() {
        let mut s = HaSlave::new(HaSlaveConfig::default(), Some("m:1".into()));
        s.poll(0, 0);
        s.handle_connected(0, ConnId(1), 0);
        s.handle_bytes(1_000, ConnId(1), &encode_frame_header(0, 0));
        let actions = s.poll(21_000, 0);
        assert!(
            matches!(&actions[..], [SlaveAction::Close { reason, .. }] if reason.contains("haHousekeepingInterval"))
        );
        assert_eq!(s.next_deadline_ms(), Some(26_000));
        assert!(s.poll(25_000, 0).is_empty());
        assert!(matches!(
            &s.poll(26_000, 0)[..],
            [SlaveAction::Connect { .. }]
        ));
        s.handle_connect_failed(26_001);
        assert_eq!(s.next_deadline_ms(), Some(31_001));

        s.poll(31_001, 0);
        s.handle_connected(31_002, ConnId(2), 0);
        let actions = s.refuse("master sent offset 500, this store ends at 400".into());
        assert!(matches!(
            &actions[..],
            [SlaveAction::Close {
                link: ConnId(2),
                ..
            }]
        ));
        assert!(s
            .refused()
            .is_some_and(|r| r.contains("500") && r.contains("400")));
        assert!(s.poll(100_000, 0).is_empty(), "never retried");
        assert_eq!(s.next_deadline_ms(), None);
    }

    #[test]
    fn garbage_from_the_master_closes_the_link() {
        let mut s = HaSlave::new(HaSlaveConfig::default(), Some("m:1".into()));
        s.poll(0, 0);
        s.handle_connected(0, ConnId(1), 0);
        let mut wire = encode_frame_header(0, 0)[..8].to_vec();
        wire.extend((-3i32).to_be_bytes());
        let (frames, actions) = s.handle_bytes(1, ConnId(1), &wire);
        assert!(frames.is_empty());
        assert!(
            matches!(&actions[..], [SlaveAction::Close { reason, .. }] if reason.contains("not HA v1"))
        );
        assert_eq!(s.link(), None);
    }
}
