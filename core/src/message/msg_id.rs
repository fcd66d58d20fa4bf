//! Message ids: the broker's offset id (store host + physical offset) and the client UNIQ_KEY.
//!
//! Both are byte strings rendered as uppercase hex.
//!
//! Offset message id (`msgId` of a send response, clients' `offsetMsgId`):
//!
//! ```text
//!   +--------------------+-------------+------------------+
//!   | store IP (4 or 16) | port (i32)  | physical offset  |
//!   |                    |             | (i64)            |
//!   +--------------------+-------------+------------------+
//!     16 bytes = 32 hex chars for IPv4, 28 bytes = 56 hex chars for IPv6
//! ```
//!
//! UNIQ_KEY (client message id), which the broker generates for messages that arrive without one:
//!
//! ```text
//!   +---------------+-----------+---------------+--------------------+-----------+
//!   | IP (4 or 16)  | pid (u16) | instance hash | ms since the month | counter   |
//!   |               |           | (u32)         | began (u32)        | (u16)     |
//!   +---------------+-----------+---------------+--------------------+-----------+
//!     16 bytes = 32 hex chars for IPv4, 28 bytes = 56 hex chars for IPv6
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::rng::SeededRng;

/// Length of an offset message id (or UNIQ_KEY) for an IPv4 host, in hex characters.
pub const MSG_ID_LEN_IPV4: usize = 32;
/// Length of an offset message id (or UNIQ_KEY) for an IPv6 host, in hex characters.
pub const MSG_ID_LEN_IPV6: usize = 56;

const DAY_MS: u64 = 86_400_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsgIdError {
    #[error("message id of {0} characters is neither 32 (IPv4) nor 56 (IPv6)")]
    BadLength(usize),
    #[error("message id is not hexadecimal")]
    BadHex,
    #[error("message id carries port {0}, outside 0..=65535")]
    BadPort(i32),
}

/// The broker's message id for a record stored at `physical_offset` by `store_host` (the
/// broker's advertised address): 32 uppercase hex characters for an IPv4 host, 56 for IPv6.
pub fn offset_msg_id(store_host: SocketAddr, physical_offset: u64) -> String {
    let mut bytes = Vec::with_capacity(28);
    push_ip(&mut bytes, store_host.ip());
    bytes.extend_from_slice(&i32::from(store_host.port()).to_be_bytes());
    bytes.extend_from_slice(&physical_offset.to_be_bytes());
    hex_upper(&bytes)
}

/// Decodes an offset message id into the store host and physical offset. The length decides
/// the address family (32 characters IPv4, 56 IPv6); hex digits of either case are accepted.
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, u64), MsgIdError> {
    let ip_len = match id.len() {
        MSG_ID_LEN_IPV4 => 4,
        MSG_ID_LEN_IPV6 => 16,
        other => return Err(MsgIdError::BadLength(other)),
    };
    let bytes = unhex(id)?;
    let (ip_bytes, rest) = bytes.split_at(ip_len);
    let (port_bytes, offset_bytes) = rest.split_at(4);
    let port = i32::from_be_bytes(array(port_bytes)?);
    let port = u16::try_from(port).map_err(|_| MsgIdError::BadPort(port))?;
    let offset = u64::from_be_bytes(array(offset_bytes)?);
    let addr = if ip_len == 4 {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(array::<4>(ip_bytes)?)), port)
    } else {
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(array::<16>(ip_bytes)?),
            port,
            0,
            0,
        ))
    };
    Ok((addr, offset))
}

/// Generates UNIQ_KEYs in the layout clients use (Java `MessageClientIDSetter`), for messages
/// that reach the broker without one.
///
/// Deterministic: time is the `now_ms` argument, the "process id" and "instance hash" come from
/// the constructor (or a [`SeededRng`]), and the counter starts at 0 and wraps at 65536. The
/// time field is milliseconds since the start of the current month in UTC, truncated to 32 bits
/// (Java uses the client's local time zone; peers treat the id as opaque, so only uniqueness
/// matters). Ids repeat only if more than 65536 are drawn within one millisecond, or if two
/// generators share an address, pid and hash — seed each broker start differently.
#[derive(Clone, Debug)]
pub struct UniqKeyGenerator {
    /// IP address, pid and instance hash: the part that never changes.
    prefix: Vec<u8>,
    counter: u16,
}

impl UniqKeyGenerator {
    /// A generator for host `ip` with the given pid-like and instance-hash fields.
    pub fn new(ip: IpAddr, pid: u16, instance_hash: u32) -> Self {
        let mut prefix = Vec::with_capacity(22);
        push_ip(&mut prefix, ip);
        prefix.extend_from_slice(&pid.to_be_bytes());
        prefix.extend_from_slice(&instance_hash.to_be_bytes());
        Self { prefix, counter: 0 }
    }

    /// A generator whose pid and instance-hash fields are drawn from `rng`.
    pub fn from_rng(ip: IpAddr, rng: &mut SeededRng) -> Self {
        let draw = rng.next_u64();
        Self::new(ip, (draw >> 48) as u16, draw as u32)
    }

    /// The next id: 32 uppercase hex characters for an IPv4 host, 56 for IPv6.
    pub fn next(&mut self, now_ms: u64) -> String {
        let since_month_ms = now_ms - month_start_ms(now_ms);
        let mut bytes = Vec::with_capacity(self.prefix.len() + 6);
        bytes.extend_from_slice(&self.prefix);
        // Java casts to int: the field keeps the low 32 bits.
        bytes.extend_from_slice(&(since_month_ms as u32).to_be_bytes());
        bytes.extend_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        hex_upper(&bytes)
    }
}

/// The UTC instant (epoch ms) at which the month containing `now_ms` began.
fn month_start_ms(now_ms: u64) -> u64 {
    let days = now_ms / DAY_MS;
    (days + 1 - day_of_month(days)) * DAY_MS
}

/// The day of the month (1..=31) of `days` since 1970-01-01, proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, restricted to non-negative days).
fn day_of_month(days: u64) -> u64 {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    day_of_year - (153 * month_index + 2) / 5 + 1
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    out
}

fn unhex(text: &str) -> Result<Vec<u8>, MsgIdError> {
    fn digit(c: u8) -> Result<u8, MsgIdError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(MsgIdError::BadHex),
        }
    }
    let text = text.as_bytes();
    if text.len() & 1 == 1 {
        return Err(MsgIdError::BadHex);
    }
    text.chunks_exact(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], MsgIdError> {
    // Lengths are fixed by the caller's length check; a mismatch would be a bug here, reported
    // as a bad length rather than a panic.
    bytes
        .try_into()
        .map_err(|_| MsgIdError::BadLength(bytes.len()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Goal: the offset id of the worked example in REMOTING.md §8.3, both ways.
    #[test]
    fn golden_offset_msg_id() {
        let host: SocketAddr = "192.168.1.10:10911".parse().unwrap();
        let id = offset_msg_id(host, 8000);
        assert_eq!(id, "C0A8010A00002A9F0000000000001F40");
        assert_eq!(decode_offset_msg_id(&id), Ok((host, 8000)));
        assert_eq!(
            decode_offset_msg_id("c0a8010a00002a9f0000000000001f40"),
            Ok((host, 8000))
        );
    }

    /// Goal: IPv6 ids are 56 characters and decode back.
    #[test]
    fn ipv6_offset_msg_id() {
        let host: SocketAddr = "[2001:db8::7]:10911".parse().unwrap();
        let id = offset_msg_id(host, u64::MAX);
        assert_eq!(id.len(), 56);
        assert_eq!(
            id,
            "20010DB800000000000000000000000700002A9FFFFFFFFFFFFFFFFF"
        );
        assert_eq!(decode_offset_msg_id(&id), Ok((host, u64::MAX)));
    }

    /// Goal: malformed ids are errors. Method: wrong length, bad digit, impossible port.
    #[test]
    fn bad_offset_msg_ids() {
        assert_eq!(decode_offset_msg_id(""), Err(MsgIdError::BadLength(0)));
        assert_eq!(
            decode_offset_msg_id("C0A8010A00002A9F0000000000001F4"),
            Err(MsgIdError::BadLength(31))
        );
        assert_eq!(
            decode_offset_msg_id("C0A8010A00002A9F0000000000001F4G"),
            Err(MsgIdError::BadHex)
        );
        // 30 ASCII hex digits plus a two-byte character: 32 bytes, not hex.
        assert_eq!(
            decode_offset_msg_id("C0A8010A00002A9F00000000000000\u{e9}"),
            Err(MsgIdError::BadHex)
        );
        assert_eq!(
            decode_offset_msg_id("C0A8010A00012A9F0000000000001F40"),
            Err(MsgIdError::BadPort(0x0001_2A9F))
        );
    }

    /// Goal: the generator reproduces the UNIQ_KEY of REMOTING.md §8.3.
    /// Method: same ip/pid/hash, a time 0x476E5C00 ms after 2024-06-01T00:00Z, second id
    /// (counter 1).
    #[test]
    fn golden_uniq_key() {
        let mut generator =
            UniqKeyGenerator::new("192.168.1.5".parse().unwrap(), 0x1092, 0x18B4_AAC2);
        let now_ms = 1_717_200_000_000 + 0x476E_5C00;
        assert_eq!(generator.next(now_ms), "C0A80105109218B4AAC2476E5C000000");
        assert_eq!(generator.next(now_ms), "C0A80105109218B4AAC2476E5C000001");
    }

    /// Goal: the month start follows the calendar (leap years, month lengths).
    #[test]
    fn month_starts() {
        // 2024-02-29T23:59:59Z belongs to February (started 2024-02-01).
        assert_eq!(month_start_ms(1_709_251_199_000), 1_706_745_600_000);
        assert_eq!(month_start_ms(1_709_251_200_000), 1_709_251_200_000);
        assert_eq!(month_start_ms(951_868_800_000), 951_868_800_000); // 2000-03-01
        assert_eq!(month_start_ms(951_868_799_999), 949_363_200_000); // 2000-02-01
        assert_eq!(month_start_ms(0), 0);
        assert_eq!(
            month_start_ms(1_717_200_000_000 + 0x476E_5C00),
            1_717_200_000_000
        );
    }

    /// Goal: the counter wraps and IPv6 ids are 56 characters; seeded generators are
    /// reproducible.
    #[test]
    fn counter_wraps_and_seeding() {
        let mut generator = UniqKeyGenerator::new("10.0.0.1".parse().unwrap(), 1, 2);
        for _ in 0..65_535 {
            generator.next(0);
        }
        assert!(generator.next(0).ends_with("FFFF"));
        assert!(generator.next(0).ends_with("0000"));

        let mut v6 = UniqKeyGenerator::new("::1".parse().unwrap(), 1, 2);
        assert_eq!(v6.next(0).len(), 56);

        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut a = UniqKeyGenerator::from_rng(ip, &mut SeededRng::new(9));
        let mut b = UniqKeyGenerator::from_rng(ip, &mut SeededRng::new(9));
        let mut c = UniqKeyGenerator::from_rng(ip, &mut SeededRng::new(10));
        let first = a.next(5);
        assert_eq!(first, b.next(5));
        assert_ne!(first, c.next(5));
        assert_eq!(first.len(), 32);
    }

    proptest! {
        /// Goal: offset ids round-trip for any host and offset.
        #[test]
        fn offset_msg_id_round_trip(
            v4 in any::<[u8; 4]>(),
            v6 in any::<[u8; 16]>(),
            use_v6 in any::<bool>(),
            port in any::<u16>(),
            offset in any::<u64>(),
        ) {
            let host = if use_v6 {
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(v6), port, 0, 0))
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(v4)), port)
            };
            let id = offset_msg_id(host, offset);
            prop_assert_eq!(id.len(), if use_v6 { 56 } else { 32 });
            prop_assert_eq!(decode_offset_msg_id(&id), Ok((host, offset)));
        }

        /// Goal: arbitrary text never panics.
        #[test]
        fn arbitrary_ids_never_panic(text in "[0-9A-Fa-fG\u{e9}]{0,60}") {
            let _ = decode_offset_msg_id(&text);
        }
    }
}
