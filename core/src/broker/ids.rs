//! Message ids the broker hands out and the batch body it expands, as the broker needs them.
//!
//! One place for the broker to call; the byte layouts are those of REMOTING.md §4.5, §4.6, §4.10.
//!
//! ```text
//! offset msg id: store ip (4 | 16) | store port i32 | physical offset i64   → uppercase hex
//! batch entry:   total i32 | magic i32 | body crc i32 | flag i32 | body len i32 | body
//!                | props len i16 | props
//! ```

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::message::Properties;
use crate::rng::SeededRng;

/// The offset message id of a record stored at `physical_offset` on `store_host`.
pub fn offset_msg_id(store_host: SocketAddr, physical_offset: u64) -> String {
    let mut raw = Vec::with_capacity(28);
    match store_host.ip() {
        IpAddr::V4(v4) => raw.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => raw.extend_from_slice(&v6.octets()),
    }
    raw.extend_from_slice(&(store_host.port() as i32).to_be_bytes());
    raw.extend_from_slice(&physical_offset.to_be_bytes());
    hex_upper(&raw)
}

fn hex_upper(raw: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(raw.len() * 2);
    for b in raw {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xF) as usize] as char);
    }
    out
}

/// Generates UNIQ_KEYs for messages that arrive without one (ali-ons never sets it), in the
/// client layout: ip | pid-like 2 bytes | 4 bytes | time 4 bytes | counter 2 bytes. The "pid"
/// and "class loader" parts come from the broker's seed, so one seed replays the same ids.
pub struct UniqKeyGenerator {
    prefix: Vec<u8>,
    counter: u16,
}

impl UniqKeyGenerator {
    pub fn new(ip: IpAddr, rng: &mut SeededRng) -> Self {
        let mut prefix = Vec::with_capacity(22);
        match ip {
            IpAddr::V4(v4) => prefix.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => prefix.extend_from_slice(&v6.octets()),
        }
        prefix.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
        prefix.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
        Self { prefix, counter: 0 }
    }

    pub fn next(&mut self, now_ms: u64) -> String {
        let mut raw = self.prefix.clone();
        raw.extend_from_slice(&(now_ms as u32).to_be_bytes());
        raw.extend_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        hex_upper(&raw)
    }
}

/// One entry of a SEND_BATCH_MESSAGE body.
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    pub properties: Properties,
}

/// Splits a batch body into entries; `Err` carries a human-readable reason.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>, String> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<Bytes, String> {
        let end = pos
            .checked_add(n)
            .filter(|end| *end <= body.len())
            .ok_or_else(|| format!("batch entry truncated at byte {}", *pos))?;
        let out = body.slice(*pos..end);
        *pos = end;
        Ok(out)
    };
    while pos < body.len() {
        let fixed = take(&mut pos, 20)?;
        let flag = i32::from_be_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
        let body_len = i32::from_be_bytes([fixed[16], fixed[17], fixed[18], fixed[19]]);
        let body_len =
            usize::try_from(body_len).map_err(|_| format!("negative body length {body_len}"))?;
        let entry_body = take(&mut pos, body_len)?;
        let props_len = take(&mut pos, 2)?;
        let props_len = i16::from_be_bytes([props_len[0], props_len[1]]);
        let props_len = usize::try_from(props_len)
            .map_err(|_| format!("negative properties length {props_len}"))?;
        let props = take(&mut pos, props_len)?;
        let props = std::str::from_utf8(&props)
            .map_err(|_| "batch entry properties are not UTF-8".to_owned())?;
        entries.push(BatchEntry {
            flag,
            body: entry_body,
            properties: Properties::parse(props),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_msg_id_is_32_hex_chars_for_ipv4() {
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        assert_eq!(
            offset_msg_id(host, 0x1234),
            "7F00000100002A9F0000000000001234"
        );
    }
}
