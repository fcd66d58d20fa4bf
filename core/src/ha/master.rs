//! The master's side of HA v1: one [`MasterLink`] per slave connection on `haListenPort`,
//! held by [`HaMaster`] (RocketMQ's `HAService` + `HAConnection`'s read and write services).
//!
//! Per link:
//!
//! ```text
//!  accepted ──first report──▶ streaming ──(report > what it was sent | report goes back
//!     │                          │          | 20 s silent | garbage)──▶ closed, logged
//!     └─ 20 s silent ──▶ closed  └─ CommitLog ranges, ≤ haTransferBatchSize each, never across a
//!                                   segment; a heartbeat after 5 s without a write
//! ```
//!
//! The first report is where the slave wants to start: its own max, or 0 for an empty slave,
//! which RocketMQ starts at the master's last segment (a new slave gets no older history). A
//! report is also the slave's ack. Vostok is stricter than RocketMQ, which counts whatever a
//! peer reports (#3015): a report beyond what was sent on that link, or one that goes back,
//! closes the link, so an ack is only ever counted for bytes the link was shown.
//!
//! Flow control: at most [`MAX_IN_FLIGHT_BYTES`] are handed to the driver per link until it
//! reports them written ([`HaMaster::handle_written`]); a slave that never reads stops getting
//! ranges, sends no reports, and is closed by housekeeping.

use std::collections::BTreeMap;

use super::codec::{encode_frame_header, ReportDecoder, FRAME_HEADER_BYTES};
use crate::ConnId;

/// Bytes handed to the driver and not yet written, per link, before ranges wait.
pub const MAX_IN_FLIGHT_BYTES: u64 = 1024 * 1024;

/// The master's HA settings (MessageStoreConfig keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaMasterConfig {
    /// `haTransferBatchSize`: the largest body of one frame.
    pub transfer_batch_bytes: u64,
    /// `haSendHeartbeatInterval`: a heartbeat after this long without a write.
    pub heartbeat_interval_ms: u64,
    /// `haHousekeepingInterval`: close a link silent this long.
    pub housekeeping_interval_ms: u64,
    /// `mappedFileSizeCommitLog`: where segments start (a new slave starts at the last one).
    pub segment_bytes: u64,
}

impl Default for HaMasterConfig {
    fn default() -> Self {
        Self {
            transfer_batch_bytes: 32 * 1024,
            heartbeat_interval_ms: 5_000,
            housekeeping_interval_ms: 20_000,
            segment_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// What the master asks its driver to do on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterAction {
    /// Write `header`, then `len` bytes of the CommitLog from `offset` (one segment: the driver
    /// copies them straight from the file), then report `handle_written(link, header + len)`.
    Transfer {
        link: ConnId,
        header: [u8; FRAME_HEADER_BYTES],
        offset: u64,
        len: u64,
    },
    /// Close the link; `reason` is for the log.
    Close { link: ConnId, reason: String },
}

/// One slave connection.
#[derive(Clone, Debug)]
pub struct MasterLink {
    pub peer: String,
    reports: ReportDecoder,
    /// The slave's newest report (its written max), once it sent one.
    pub acked: Option<u64>,
    /// Where the next frame starts; `None` until the first report.
    pub next_transfer: Option<u64>,
    in_flight_bytes: u64,
    last_read_ms: u64,
    last_write_ms: u64,
    /// When the slave's ack last reached the master's end (for the lag in ms).
    pub caught_up_ms: u64,
    /// The slave's first report went past this master's end, which ends here.
    diverged_at: Option<u64>,
}

impl MasterLink {
    /// Reads a report; `Err` names why the link must close.
    fn take_report(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        min_offset: u64,
        max_offset: u64,
        segment_bytes: u64,
    ) -> Result<(), String> {
        self.last_read_ms = now_ms;
        let report = match self.reports.feed(bytes) {
            Ok(Some(report)) => report,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("not an HA offset report: {e}")),
        };
        match self.next_transfer {
            None => {
                // The first report: where to start.
                if report > max_offset {
                    // Said with a heartbeat at `max_offset` too (see `HaMaster::diverged`).
                    self.diverged_at = Some(max_offset);
                    return Err(format!(
                        "slave {} reports CommitLog offset {report}, beyond this master's max \
                         {max_offset}: it holds data this master does not have (diverged); it \
                         must be emptied before it can follow this master",
                        self.peer
                    ));
                }
                let start = if report == 0 {
                    max_offset - max_offset % segment_bytes
                } else {
                    report
                };
                if start < min_offset {
                    return Err(format!(
                        "slave {} asks for CommitLog offset {start}, below this master's first \
                         kept offset {min_offset}: it must be emptied and start over",
                        self.peer
                    ));
                }
                self.next_transfer = Some(start);
                self.acked = Some(report);
            }
            Some(sent) => {
                let previous = self.acked.unwrap_or(0);
                if report > sent {
                    return Err(format!(
                        "slave {} acks CommitLog offset {report}, beyond the {sent} it was sent: \
                         not counted, link closed",
                        self.peer
                    ));
                }
                if report < previous {
                    return Err(format!(
                        "slave {} reports CommitLog offset {report} after {previous}: a report \
                         may not go back, link closed",
                        self.peer
                    ));
                }
                self.acked = Some(report);
            }
        }
        if Some(max_offset) == self.acked {
            self.caught_up_ms = now_ms;
        }
        Ok(())
    }
}

/// Every slave link of a master.
#[derive(Clone, Debug, Default)]
pub struct HaMaster {
    config: HaMasterConfig,
    links: BTreeMap<ConnId, MasterLink>,
    /// Where this master's CommitLog ended when it opened, and the furthest it has sent any
    /// slave since (see [`Self::since_open`]).
    opened_at: Option<OpenedAt>,
}

#[derive(Clone, Copy, Debug)]
struct OpenedAt {
    end: u64,
    sent: u64,
}

impl HaMaster {
    pub fn new(config: HaMasterConfig) -> Self {
        Self {
            config,
            links: BTreeMap::new(),
            opened_at: None,
        }
    }

    /// This master opened with its CommitLog ending at `end`. A slave that connects claiming
    /// bytes past it can only have had them from this master since it opened. If no slave was
    /// sent that far, it holds bytes of an earlier run that a crash took from this master (a
    /// power loss of an ASYNC_FLUSH master, say), which new records overwrite at the same
    /// offsets: it is refused, as a slave beyond the master's end is. HA v1 carries no epoch:
    /// a diverged slave claiming no more than another slave was sent since cannot be told
    /// from that slave coming back over a new connection (its old one perhaps not yet seen
    /// closed here), and refusing that one would stop a healthy slave for good.
    pub fn since_open(&mut self, end: u64) {
        self.opened_at = Some(OpenedAt { end, sent: end });
    }

    pub fn links(&self) -> impl Iterator<Item = (&ConnId, &MasterLink)> {
        self.links.iter()
    }

    pub fn handle_accepted(&mut self, now_ms: u64, link: ConnId, peer: String) {
        self.links.insert(
            link,
            MasterLink {
                peer,
                reports: ReportDecoder::default(),
                acked: None,
                next_transfer: None,
                in_flight_bytes: 0,
                last_read_ms: now_ms,
                last_write_ms: now_ms,
                caught_up_ms: now_ms,
                diverged_at: None,
            },
        );
    }

    pub fn handle_closed(&mut self, link: ConnId) {
        self.links.remove(&link);
    }

    /// Bytes from a slave. `min_offset`/`max_offset` bound the master's CommitLog.
    pub fn handle_bytes(
        &mut self,
        now_ms: u64,
        link: ConnId,
        bytes: &[u8],
        min_offset: u64,
        max_offset: u64,
    ) -> Vec<MasterAction> {
        let segment_bytes = self.config.segment_bytes.max(1);
        let Some(state) = self.links.get_mut(&link) else {
            return Vec::new();
        };
        let first = state.next_transfer.is_none();
        if let Err(reason) = state.take_report(now_ms, bytes, min_offset, max_offset, segment_bytes)
        {
            return match state.diverged_at {
                Some(end) => self.diverged(link, end, reason),
                None => self.close(link, reason),
            };
        }
        if let (true, Some(opened), Some(report)) = (first, self.opened_at, state.acked) {
            if report > opened.end && report > opened.sent {
                let reason = format!(
                    "slave {} reports CommitLog offset {report}, but this master opened with its \
                     CommitLog ending at {} and has sent no slave past {} since: the slave's \
                     bytes after {} are from before a crash of this master and differ from \
                     its own (diverged); it must be emptied before it can follow this master",
                    state.peer, opened.end, opened.sent, opened.end
                );
                return self.diverged(link, opened.end, reason);
            }
        }
        Vec::new()
    }

    /// The driver wrote `bytes` of a transfer on `link`.
    pub fn handle_written(&mut self, link: ConnId, bytes: u64) {
        if let Some(state) = self.links.get_mut(&link) {
            state.in_flight_bytes = state.in_flight_bytes.saturating_sub(bytes);
        }
    }

    /// Frames to send now (the CommitLog ends at `max_offset`; `segment_end(offset)` is the end
    /// of the segment holding `offset`), heartbeats, and links to close.
    pub fn poll(
        &mut self,
        now_ms: u64,
        max_offset: u64,
        segment_end: impl Fn(u64) -> u64,
    ) -> Vec<MasterAction> {
        let mut actions = Vec::new();
        let mut silent = Vec::new();
        for (link, state) in &mut self.links {
            if now_ms.saturating_sub(state.last_read_ms) >= self.config.housekeeping_interval_ms {
                silent.push(*link);
                continue;
            }
            let Some(mut next) = state.next_transfer else {
                continue;
            };
            while next < max_offset && state.in_flight_bytes < MAX_IN_FLIGHT_BYTES {
                let len = (max_offset - next)
                    .min(segment_end(next).saturating_sub(next))
                    .min(self.config.transfer_batch_bytes.max(1));
                if len == 0 {
                    break;
                }
                actions.push(MasterAction::Transfer {
                    link: *link,
                    header: encode_frame_header(next, len as u32),
                    offset: next,
                    len,
                });
                state.in_flight_bytes += FRAME_HEADER_BYTES as u64 + len;
                state.last_write_ms = now_ms;
                next += len;
            }
            state.next_transfer = Some(next);
            if let Some(opened) = &mut self.opened_at {
                opened.sent = opened.sent.max(next);
            }
            if now_ms.saturating_sub(state.last_write_ms) >= self.config.heartbeat_interval_ms
                && state.in_flight_bytes == 0
            {
                actions.push(MasterAction::Transfer {
                    link: *link,
                    header: encode_frame_header(next, 0),
                    offset: next,
                    len: 0,
                });
                state.in_flight_bytes += FRAME_HEADER_BYTES as u64;
                state.last_write_ms = now_ms;
            }
        }
        for link in silent {
            actions.extend(self.close(
                link,
                format!(
                    "no report for {} ms (haHousekeepingInterval)",
                    self.config.housekeeping_interval_ms
                ),
            ));
        }
        actions
    }

    /// When [`HaMaster::poll`] has something to do without new input: a heartbeat or a
    /// housekeeping close.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.links
            .values()
            .flat_map(|s| {
                let housekeeping = s.last_read_ms + self.config.housekeeping_interval_ms;
                let heartbeat = s
                    .next_transfer
                    .map(|_| s.last_write_ms + self.config.heartbeat_interval_ms);
                [Some(housekeeping), heartbeat]
            })
            .flatten()
            .min()
    }

    /// The highest offset any link acked (RocketMQ's `push2SlaveMaxOffset`).
    pub fn max_acked(&self) -> Option<u64> {
        self.links.values().filter_map(|s| s.acked).max()
    }

    /// Links whose ack is at or past `offset`.
    pub fn acks_at_least(&self, offset: u64) -> usize {
        self.links
            .values()
            .filter(|s| s.acked.is_some_and(|a| a >= offset))
            .count()
    }

    fn close(&mut self, link: ConnId, reason: String) -> Vec<MasterAction> {
        self.links.remove(&link);
        vec![MasterAction::Close { link, reason }]
    }

    /// Closes a diverged slave's link after a heartbeat naming `end`, where this master's own
    /// bytes end for it: the slave sees it differs and stops (it serves no reads of a log its
    /// master does not share) instead of reconnecting blind.
    fn diverged(&mut self, link: ConnId, end: u64, reason: String) -> Vec<MasterAction> {
        self.links.remove(&link);
        vec![
            MasterAction::Transfer {
                link,
                header: encode_frame_header(end, 0),
                offset: end,
                len: 0,
            },
            MasterAction::Close { link, reason },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::encode_report;
    use super::*;

    const SEGMENT: u64 = 1000;

    fn master() -> HaMaster {
        HaMaster::new(HaMasterConfig {
            transfer_batch_bytes: 300,
            heartbeat_interval_ms: 5_000,
            housekeeping_interval_ms: 20_000,
            segment_bytes: SEGMENT,
        })
    }

    fn segment_end(offset: u64) -> u64 {
        offset - offset % SEGMENT + SEGMENT
    }

    fn transfers(actions: &[MasterAction]) -> Vec<(u64, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                MasterAction::Transfer { offset, len, .. } => Some((*offset, *len)),
                MasterAction::Close { .. } => None,
            })
            .collect()
    }

    #[test]
    fn nothing_is_sent_before_the_first_report_then_ranges_never_cross_a_segment() {
        let mut m = master();
        let link = ConnId(1);
        m.handle_accepted(0, link, "10.0.0.9:4000".into());
        assert!(transfers(&m.poll(10, 2_500, segment_end)).is_empty());
        assert!(m
            .handle_bytes(10, link, &encode_report(700), 0, 2_500)
            .is_empty());
        let sent = transfers(&m.poll(10, 2_500, segment_end));
        assert_eq!(
            sent,
            vec![
                (700, 300),
                (1000, 300),
                (1300, 300),
                (1600, 300),
                (1900, 100),
                (2000, 300),
                (2300, 200)
            ]
        );
        // Acks up to what was sent count; more does not.
        assert!(m
            .handle_bytes(20, link, &encode_report(1900), 0, 2_500)
            .is_empty());
        assert_eq!(m.max_acked(), Some(1900));
        assert_eq!(m.acks_at_least(1900), 1);
        let closed = m.handle_bytes(30, link, &encode_report(2_600), 0, 2_600);
        assert!(
            matches!(&closed[..], [MasterAction::Close { reason, .. }] if reason.contains("beyond the 2500"))
        );
        assert_eq!(m.max_acked(), None, "a closed link counts for nothing");
    }

    #[test]
    fn an_empty_slave_starts_at_the_last_segment_and_a_diverged_one_is_refused() {
        let mut m = master();
        m.handle_accepted(0, ConnId(1), "a".into());
        m.handle_bytes(0, ConnId(1), &encode_report(0), 0, 2_500);
        assert_eq!(transfers(&m.poll(0, 2_500, segment_end))[0], (2_000, 300));

        m.handle_accepted(0, ConnId(2), "b".into());
        let closed = m.handle_bytes(0, ConnId(2), &encode_report(3_000), 0, 2_500);
        // A heartbeat at the master's end tells the slave where they part, then the close.
        assert!(
            matches!(&closed[..], [MasterAction::Transfer { offset: 2_500, len: 0, .. },
            MasterAction::Close { reason, .. }]
            if reason.contains("3000") && reason.contains("2500") && reason.contains("diverged"))
        );

        m.handle_accepted(0, ConnId(3), "c".into());
        let closed = m.handle_bytes(0, ConnId(3), &encode_report(500), 1_000, 2_500);
        assert!(
            matches!(&closed[..], [MasterAction::Close { reason, .. }] if reason.contains("below"))
        );
    }

    #[test]
    fn a_report_that_goes_back_or_garbage_closes_the_link() {
        let mut m = master();
        m.handle_accepted(0, ConnId(1), "a".into());
        m.handle_bytes(0, ConnId(1), &encode_report(100), 0, 2_500);
        m.poll(0, 2_500, segment_end);
        m.handle_bytes(0, ConnId(1), &encode_report(400), 0, 2_500);
        let closed = m.handle_bytes(0, ConnId(1), &encode_report(200), 0, 2_500);
        assert!(
            matches!(&closed[..], [MasterAction::Close { reason, .. }] if reason.contains("go back"))
        );

        m.handle_accepted(0, ConnId(2), "b".into());
        let closed = m.handle_bytes(0, ConnId(2), &[0xFF; 8], 0, 2_500);
        assert!(matches!(&closed[..], [MasterAction::Close { .. }]));
    }

    #[test]
    fn a_slave_that_never_reads_stops_getting_ranges_and_is_closed_by_housekeeping() {
        let mut m = master();
        m.handle_accepted(0, ConnId(1), "a".into());
        m.handle_bytes(0, ConnId(1), &encode_report(0), 0, 0);
        let big = 10 * MAX_IN_FLIGHT_BYTES;
        let sent: u64 = transfers(&m.poll(1, big, |o| o + 1_000_000_000))
            .iter()
            .map(|(_, len)| len + FRAME_HEADER_BYTES as u64)
            .sum();
        assert!(sent <= MAX_IN_FLIGHT_BYTES + 300 + 12, "bounded: {sent}");
        assert!(
            transfers(&m.poll(2, big, |o| o + 1_000_000_000)).is_empty(),
            "nothing more until written"
        );
        m.handle_written(ConnId(1), sent);
        assert!(!transfers(&m.poll(3, big, |o| o + 1_000_000_000)).is_empty());
        let closed = m.poll(20_000, big, |o| o + 1_000_000_000);
        assert!(closed.iter().any(|a| matches!(a, MasterAction::Close { reason, .. } if reason.contains("haHousekeepingInterval"))));
        assert_eq!(m.links().count(), 0);
    }

    #[test]
    fn an_idle_link_gets_a_heartbeat_at_its_next_offset() {
        let mut m = master();
        m.handle_accepted(0, ConnId(1), "a".into());
        m.handle_bytes(0, ConnId(1), &encode_report(500), 0, 500);
        assert!(m.poll(100, 500, segment_end).is_empty());
        assert_eq!(m.next_deadline_ms(), Some(5_000));
        m.handle_bytes(4_000, ConnId(1), &encode_report(500), 0, 500);
        let actions = m.poll(5_000, 500, segment_end);
        assert_eq!(
            actions,
            vec![MasterAction::Transfer {
                link: ConnId(1),
                header: encode_frame_header(500, 0),
                offset: 500,
                len: 0
            }]
        );
    }

    #[test]
    fn a_slave_claiming_bytes_past_where_a_restarted_master_opened_is_refused() {
        // Goal: after a crash took a master's tail, a slave that still holds it reports an
        // offset inside what the master has written since: its bytes there differ. Refused
        // until this master has sent some slave past that offset.
        let mut master = HaMaster::new(HaMasterConfig {
            segment_bytes: SEGMENT,
            ..HaMasterConfig::default()
        });
        master.since_open(300);
        master.handle_accepted(0, ConnId(1), "s1".into());
        let actions = master.handle_bytes(0, ConnId(1), &encode_report(350), 0, 400);
        assert!(
            matches!(&actions[..], [MasterAction::Transfer { offset: 300, len: 0, .. },
                MasterAction::Close { reason, .. }]
                if reason.contains("350") && reason.contains("opened with its CommitLog ending at 300")),
            "{actions:?}"
        );
        // A slave at the master's opening end is served up to 400; from then on a slave
        // claiming 350 may be that one coming back over a new connection: taken.
        master.handle_accepted(0, ConnId(2), "s2".into());
        assert!(master
            .handle_bytes(0, ConnId(2), &encode_report(300), 0, 400)
            .is_empty());
        master.poll(0, 400, |o| o - o % SEGMENT + SEGMENT);
        master.handle_accepted(0, ConnId(3), "s2 again".into());
        assert!(master
            .handle_bytes(0, ConnId(3), &encode_report(350), 0, 400)
            .is_empty());
    }
}
