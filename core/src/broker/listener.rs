//! The broker's two remoting ports: `listenPort` and the VIP port `listenPort − 2`.
//!
//! What RocketMQ does, followed here (read in `BrokerController.initializeRemotingServer` and
//! `registerProcessor`, 4.9.8 and 5.3.3): the broker starts a second remoting server, the "fast"
//! server, on `listenPort − 2` (0, that is any free port, when that would be negative). Clients
//! with `vipChannelEnabled` send there (4.x clients up to 4.4 enabled it by default); a slave's
//! SlaveSynchronize asks its master for topic configs there. Every processor is registered on
//! both servers except the long-polling ones: PULL_MESSAGE, LITE_PULL_MESSAGE, PEEK_MESSAGE,
//! POP_MESSAGE, NOTIFICATION and POLLING_INFO exist on the main server only, so on the fast
//! server they reach the admin default processor, which answers REQUEST_CODE_NOT_SUPPORTED with
//! " request type N not supported", the same answer as an unknown code. A held pull must not
//! take a worker of the port meant for quick sends. RocketMQ has no key that turns the fast
//! server off, so neither does Vostok.
//!
//! The driver tells the broker which listener a connection came in on
//! ([`super::Broker::handle_connected_on`]); everything else about the two ports is the same
//! broker, with the same state.

use crate::remoting::codes::request;

/// Which listener accepted a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Listener {
    /// `listenPort`: every request code.
    #[default]
    Main,
    /// `listenPort − 2`, RocketMQ's fast server: everything but long polling.
    Vip,
}

/// The codes RocketMQ registers on its main server only: long polling and POP.
const MAIN_ONLY_CODES: &[i32] = &[
    request::PULL_MESSAGE,
    request::LITE_PULL_MESSAGE,
    request::PEEK_MESSAGE,
    request::POP_MESSAGE,
    request::NOTIFICATION,
    request::POLLING_INFO,
];

impl Listener {
    /// Whether a request with `code` is served on this listener at all (if not, it gets
    /// REQUEST_CODE_NOT_SUPPORTED like a code nobody serves).
    pub fn serves(self, code: i32) -> bool {
        match self {
            Listener::Main => true,
            Listener::Vip => !MAIN_ONLY_CODES.contains(&code),
        }
    }
}

/// The VIP port of a broker listening on `listen_port`: `listen_port − 2`, or 0 (any free port)
/// below that, as RocketMQ 5 computes it.
pub fn vip_port(listen_port: u16) -> u16 {
    listen_port.saturating_sub(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_port_is_two_below_and_never_wraps() {
        assert_eq!(vip_port(10911), 10909);
        assert_eq!(vip_port(2), 0);
        assert_eq!(vip_port(1), 0);
        assert_eq!(vip_port(0), 0);
    }

    #[test]
    fn only_long_polling_is_main_only() {
        for code in MAIN_ONLY_CODES {
            assert!(Listener::Main.serves(*code));
            assert!(!Listener::Vip.serves(*code));
        }
        for code in [
            request::SEND_MESSAGE_V2,
            request::QUERY_CONSUMER_OFFSET,
            request::GET_ALL_TOPIC_CONFIG,
            request::HEART_BEAT,
        ] {
            assert!(Listener::Vip.serves(code));
        }
    }
}
