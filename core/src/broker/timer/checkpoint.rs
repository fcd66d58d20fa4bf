//! `config/timercheck`: the timer's durable progress (layout in the parent module's doc).

/// Where the timer checkpoint is kept (RocketMQ's `timercheck`).
pub const TIMER_CHECKPOINT_PATH: &str = "config/timercheck";
/// Bytes of the file.
pub const TIMER_CHECKPOINT_BYTES: usize = 56;

/// RocketMQ's `TimerCheckpoint`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerCheckpoint {
    /// Every slot before this time is delivered and its re-puts are durable.
    pub last_read_time_ms: i64,
    /// The timer log is durable up to this position.
    pub last_timer_log_flush_pos: i64,
    /// Every message of the timer topic before this queue offset has its unit in the log
    /// before `last_timer_log_flush_pos`.
    pub last_timer_queue_offset: i64,
    /// The same for a master (no replication here: equal to `last_timer_queue_offset`).
    pub master_timer_queue_offset: i64,
    /// `dataVersion.stateVersion`.
    pub state_version: i64,
    /// `dataVersion.timestamp`: the read time when written.
    pub timestamp_ms: i64,
    /// `dataVersion.counter`: how many times the file was written.
    pub counter: i64,
}

impl TimerCheckpoint {
    /// The 56 bytes of the file, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        [
            self.last_read_time_ms,
            self.last_timer_log_flush_pos,
            self.last_timer_queue_offset,
            self.master_timer_queue_offset,
            self.state_version,
            self.timestamp_ms,
            self.counter,
        ]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
    }

    /// Parses the file; RocketMQ's shorter files without the data version are read too.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 32 {
            return Err(format!(
                "{} bytes, expected {TIMER_CHECKPOINT_BYTES}",
                bytes.len()
            ));
        }
        let at = |i: usize| -> i64 {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, i64::from_be_bytes)
        };
        let cp = Self {
            last_read_time_ms: at(0),
            last_timer_log_flush_pos: at(1),
            last_timer_queue_offset: at(2),
            master_timer_queue_offset: at(3),
            state_version: at(4),
            timestamp_ms: at(5),
            counter: at(6),
        };
        if cp.last_read_time_ms < 0
            || cp.last_timer_log_flush_pos < 0
            || cp.last_timer_queue_offset < 0
        {
            return Err("negative positions".to_owned());
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_rejects_short_files() {
        let cp = TimerCheckpoint {
            last_read_time_ms: 1_700_000_000_000,
            last_timer_log_flush_pos: 52 * 7,
            last_timer_queue_offset: 7,
            master_timer_queue_offset: 7,
            state_version: 0,
            timestamp_ms: 1_700_000_000_000,
            counter: 3,
        };
        let bytes = cp.encode();
        assert_eq!(bytes.len(), TIMER_CHECKPOINT_BYTES);
        assert_eq!(TimerCheckpoint::decode(&bytes), Ok(cp));
        assert!(TimerCheckpoint::decode(&bytes[..20]).is_err());
    }
}
