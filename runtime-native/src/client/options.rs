//! Settings every client builder shares: NameServers, identity, clock, timeouts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vostok_core::client::{ClientConfig, ClientError};

use super::clock::{Clock, SystemClock};

/// RocketMQ's client connect timeout (`connectTimeoutMillis`, 3 s).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Distinguishes the clients of one process: two consumers of a group in one process must have
/// distinct client ids, or the broker would see one consumer.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// What the builders collect before the core's config is made.
#[derive(Clone)]
pub(crate) struct CommonOptions {
    pub(crate) namesrv_addrs: Vec<String>,
    pub(crate) instance_name: Option<String>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) route_refresh_interval: Option<Duration>,
    pub(crate) seed: Option<u64>,
}

impl Default for CommonOptions {
    fn default() -> Self {
        Self {
            namesrv_addrs: Vec::new(),
            instance_name: None,
            clock: SystemClock::shared(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: None,
            heartbeat_interval: None,
            route_refresh_interval: None,
            seed: None,
        }
    }
}

impl CommonOptions {
    /// Adds NameServers from `addrs`, separated by `;` as in RocketMQ's `namesrvAddr`.
    pub(crate) fn add_namesrv(&mut self, addrs: &str) {
        self.namesrv_addrs.extend(
            addrs
                .split(';')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
        );
    }

    /// The core's client config. Java's default instance name `DEFAULT` becomes
    /// `<pid>#<n>`, unique in the process.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, ClientError> {
        if self.namesrv_addrs.is_empty() {
            return Err(ClientError::InvalidMessage(
                "no NameServer address (namesrv_addr)".to_owned(),
            ));
        }
        let mut config = ClientConfig {
            namesrv_addrs: self.namesrv_addrs.clone(),
            ..ClientConfig::default()
        };
        config.instance_name = match &self.instance_name {
            Some(name) if name != "DEFAULT" => name.clone(),
            _ => format!(
                "{}#{}",
                std::process::id(),
                NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
            ),
        };
        if let Some(t) = self.request_timeout {
            config.request_timeout_ms = t.as_millis() as u64;
        }
        if let Some(t) = self.heartbeat_interval {
            config.heartbeat_broker_interval_ms = t.as_millis() as u64;
        }
        if let Some(t) = self.route_refresh_interval {
            config.poll_namesrv_interval_ms = t.as_millis() as u64;
        }
        config.seed = self.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ NEXT_INSTANCE
                    .fetch_add(1, Ordering::Relaxed)
                    .rotate_left(32)
        });
        Ok(config)
    }
}

/// Builder methods shared by every client builder.
macro_rules! common_builder_methods {
    () => {
        /// A NameServer (`host:port`); several may be given at once separated by `;`, or by
        /// calling this again.
        pub fn namesrv_addr(mut self, addr: &str) -> Self {
            self.common.add_namesrv(addr);
            self
        }

        /// The middle part of the client id (`ip@instance`). Default: `<pid>#<n>`, unique in
        /// the process.
        pub fn instance_name(mut self, name: &str) -> Self {
            self.common.instance_name = Some(name.to_owned());
            self
        }

        /// Where `now_ms` comes from (default: [`SystemClock`](crate::client::SystemClock)).
        pub fn clock(mut self, clock: std::sync::Arc<dyn crate::client::Clock>) -> Self {
            self.common.clock = clock;
            self
        }

        /// How long opening a connection may take (default 3 s).
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.connect_timeout = timeout;
            self
        }

        /// Timeout of requests other than sends and pulls (default 3 s).
        pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.request_timeout = Some(timeout);
            self
        }

        /// Heartbeat period towards brokers (default 30 s).
        pub fn heartbeat_interval(mut self, interval: std::time::Duration) -> Self {
            self.common.heartbeat_interval = Some(interval);
            self
        }

        /// Route refresh period (default 30 s).
        pub fn route_refresh_interval(mut self, interval: std::time::Duration) -> Self {
            self.common.route_refresh_interval = Some(interval);
            self
        }

        /// Seed of the client's random choices (default: from the time of day). Fix it for
        /// reproducible queue choices.
        pub fn seed(mut self, seed: u64) -> Self {
            self.common.seed = Some(seed);
            self
        }
    };
}

pub(crate) use common_builder_methods;
