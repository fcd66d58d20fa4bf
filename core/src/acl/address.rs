//! White-list address patterns of `plain_acl.yml` (RocketMQ's `RemoteAddressStrategyFactory`),
//! matched against a client's IP address.
//!
//! ```text
//! ""                                    never matches
//! *   *.*.*.*   *:*:*:*:*:*:*:*          every address
//! 192.168.1.{1,2,3}   fe80::{a,b}       the listed last parts
//! 192.168.1.1,192.168.1.2               the listed addresses
//! 192.168.*.*   192.168.1-9.*   10.1.1.100-200
//!                                       a range: the first octet after the fixed prefix that is
//!                                       `*` or `a-b` decides, later octets are not looked at
//! fe80::1:*   fe80::1:10-1f   fe80::1-f:* a range in the last group (hex), or the second last
//!                                       followed by `:*`
//! 192.168.1.7   ::1                     one address
//! ```
//!
//! A pattern RocketMQ refuses (not an address, a bound out of 0–255) is an error with RocketMQ's
//! wording. One difference: a `*` in the first octet, which makes RocketMQ fail every match with
//! a NullPointerException, is refused when the file is loaded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressPattern {
    /// A blank pattern.
    Never,
    Any,
    Listed(Vec<IpAddr>),
    /// IPv4: the first `fixed.len()` octets equal, the next one in `[start, end]`.
    V4Range {
        fixed: Vec<u8>,
        start: u8,
        end: u8,
    },
    /// IPv6: the first `fixed.len()` groups equal, the next one in `[start, end]`.
    V6Range {
        fixed: Vec<u16>,
        start: u16,
        end: u16,
    },
}

fn examine_error(pattern: &str) -> String {
    format!("Netaddress examine Exception netaddress is {pattern}")
}

fn scope_error(pattern: &str) -> String {
    format!("Netaddress examine scope Exception netaddress is {pattern}")
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok()
}

/// An IPv4-mapped IPv6 address is its IPv4 address (a dual-stack listener reports those).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl AddressPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.trim().is_empty() {
            return Ok(AddressPattern::Never);
        }
        if matches!(pattern, "*" | "*.*.*.*" | "*:*:*:*:*:*:*:*") {
            return Ok(AddressPattern::Any);
        }
        if pattern.ends_with('}') {
            let v6 = pattern.contains(':');
            let cut = if v6 {
                pattern.rfind(':')
            } else {
                pattern.rfind('.')
            };
            let cut = cut.ok_or_else(|| examine_error(pattern))?;
            let (prefix, last) = (&pattern[..cut], &pattern[cut + 1..]);
            let items = last
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .ok_or_else(|| examine_error(pattern))?;
            let separator = if v6 { ':' } else { '.' };
            let listed = items
                .split(',')
                .map(|item| parse_ip(&format!("{prefix}{separator}{item}")))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| examine_error(pattern))?;
            return Ok(AddressPattern::Listed(listed));
        }
        if pattern.contains(',') {
            let listed = pattern
                .split(',')
                .map(parse_ip)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| examine_error(pattern))?;
            return Ok(AddressPattern::Listed(listed));
        }
        if pattern.contains('*') || pattern.contains('-') {
            return if pattern.contains(':') {
                Self::parse_v6_range(pattern)
            } else {
                Self::parse_v4_range(pattern)
            };
        }
        parse_ip(pattern)
            .map(|ip| AddressPattern::Listed(vec![ip]))
            .ok_or_else(|| examine_error(pattern))
    }

    /// `lo-hi` or `*` in `radix`, within `max`: `Some((lo, hi))`; `None` for a fixed part.
    fn bounds(
        part: &str,
        radix: u32,
        max: u32,
        pattern: &str,
    ) -> Result<Option<(u32, u32)>, String> {
        let part = part.trim();
        if part == "*" {
            return Ok(Some((0, max)));
        }
        let Some((lo, hi)) = part.split_once('-') else {
            return Ok(None);
        };
        let parse =
            |t: &str| u32::from_str_radix(t.trim(), radix).map_err(|_| scope_error(pattern));
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > max || hi > max || lo > hi {
            return Err(format!(
                "RangeRemoteAddressStrategy netaddress examine scope Exception start is {lo} , end is {hi}"
            ));
        }
        Ok(Some((lo, hi)))
    }

    fn parse_v4_range(pattern: &str) -> Result<Self, String> {
        let parts: Vec<&str> = pattern.split('.').collect();
        if parts.len() != 4 {
            return Err(scope_error(pattern));
        }
        for index in 1..4 {
            if let Some((start, end)) = Self::bounds(parts[index], 10, 255, pattern)? {
                let fixed = parts[..index]
                    .iter()
                    .map(|p| p.trim().parse::<u8>().map_err(|_| scope_error(pattern)))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(AddressPattern::V4Range {
                    fixed,
                    start: start as u8,
                    end: end as u8,
                });
            }
        }
        Err(scope_error(pattern))
    }

    fn parse_v6_range(pattern: &str) -> Result<Self, String> {
        // The range is the last group, or the second last one followed by `:*`.
        let (head, range, any_after) = match pattern.strip_suffix(":*") {
            Some(rest) if rest.contains(['*', '-']) => {
                let cut = rest.rfind(':').ok_or_else(|| scope_error(pattern))?;
                (&rest[..cut], &rest[cut + 1..], true)
            }
            _ => {
                let cut = pattern.rfind(':').ok_or_else(|| scope_error(pattern))?;
                (&pattern[..cut], &pattern[cut + 1..], false)
            }
        };
        let (start, end) =
            Self::bounds(range, 16, 0xffff, pattern)?.ok_or_else(|| scope_error(pattern))?;
        // Expand the fixed head by completing it into a whole address.
        let groups_in_range = if any_after { 2 } else { 1 };
        let filler = vec!["0"; groups_in_range].join(":");
        let full: Ipv6Addr = format!("{head}:{filler}")
            .parse()
            .map_err(|_| scope_error(pattern))?;
        let fixed = full.segments()[..8 - groups_in_range].to_vec();
        Ok(AddressPattern::V6Range {
            fixed,
            start: start as u16,
            end: end as u16,
        })
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            AddressPattern::Never => false,
            AddressPattern::Any => true,
            AddressPattern::Listed(listed) => listed.iter().any(|l| canonical(*l) == ip),
            AddressPattern::V4Range { fixed, start, end } => match ip {
                IpAddr::V4(v4) => {
                    let octets = v4.octets();
                    octets[..fixed.len()] == fixed[..]
                        && (*start..=*end).contains(&octets[fixed.len()])
                }
                IpAddr::V6(_) => false,
            },
            AddressPattern::V6Range { fixed, start, end } => match ip {
                IpAddr::V6(v6) => {
                    let groups = v6.segments();
                    groups[..fixed.len()] == fixed[..]
                        && (*start..=*end).contains(&groups[fixed.len()])
                }
                IpAddr::V4(_) => false,
            },
        }
    }
}

/// The loopback address, for tests and defaults.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, ip: &str) -> bool {
        AddressPattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .matches(ip.parse().unwrap())
    }

    #[test]
    fn patterns_match_as_rocketmq_matches_them() {
        assert!(m("*", "10.1.2.3") && m("*.*.*.*", "::1"));
        assert!(!m("", "10.1.2.3"));
        assert!(m("192.168.1.{1,2}", "192.168.1.2") && !m("192.168.1.{1,2}", "192.168.1.3"));
        assert!(m("10.0.0.1,10.0.0.2", "10.0.0.2") && !m("10.0.0.1,10.0.0.2", "10.0.0.3"));
        assert!(m("192.168.*.*", "192.168.200.7") && !m("192.168.*.*", "192.169.0.1"));
        // The first range octet decides; later ones are not looked at (RocketMQ's rule).
        assert!(m("192.168.*.5", "192.168.9.9"));
        assert!(m("10.1.1.100-200", "10.1.1.150") && !m("10.1.1.100-200", "10.1.1.99"));
        assert!(m("10.1-9.*.*", "10.5.0.0") && !m("10.1-9.*.*", "10.10.0.0"));
        assert!(m("127.0.0.1", "127.0.0.1") && !m("127.0.0.1", "127.0.0.2"));
        assert!(
            m("127.0.0.1", "::ffff:127.0.0.1"),
            "a mapped address is its IPv4 one"
        );
        assert!(m("fe80::1:*", "fe80::1:ab") && !m("fe80::1:*", "fe80::2:ab"));
        assert!(m("fe80::10-1f", "fe80::1a") && !m("fe80::10-1f", "fe80::20"));
        assert!(m("::1", "::1"));
    }

    #[test]
    fn bad_patterns_are_refused_with_rocketmqs_wording() {
        let err = |p: &str| AddressPattern::parse(p).unwrap_err();
        assert_eq!(
            err("192.168.1.1,2,3"),
            "Netaddress examine Exception netaddress is 192.168.1.1,2,3"
        );
        assert_eq!(
            err("not-an-ip.x"),
            "Netaddress examine scope Exception netaddress is not-an-ip.x"
        );
        assert_eq!(
            err("10.1.1.200-100"),
            "RangeRemoteAddressStrategy netaddress examine scope Exception start is 200 , end is 100"
        );
        assert!(AddressPattern::parse("*.1.1.1").is_err());
        assert!(AddressPattern::parse("hostname").is_err());
    }
}
