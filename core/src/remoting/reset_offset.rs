//! Offset reset by timestamp: the header shared by INVOKE_BROKER_TO_RESET_OFFSET (222,
//! admin → broker) and RESET_CONSUMER_CLIENT_OFFSET (220, broker → client), and their
//! `ResetOffsetBody`.
//!
//! Header ext fields: `topic`, `group`, `timestamp` (epoch ms; −1 means "the max offset"),
//! `isForce` (reset even forward of the committed offset); RocketMQ 5 admin tools add
//! `queueId` (−1 = every queue) and `offset`.
//!
//! The body is written in fastjson's dialect, with each `MessageQueue` as an object key
//! (REMOTING.md §5.9):
//!
//! ```text
//! {"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:5,{"brokerName":"b","queueId":1,"topic":"T"}:7}}
//! ```
//!
//! The decoder also accepts standard JSON whose keys are that object as a string.

use serde::{Deserialize, Serialize};

use super::{HeaderError, RemotingCommand};

/// The header of 222 and 220.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOffsetRequestHeader {
    pub topic: String,
    pub group: String,
    /// Epoch ms; −1 resets to the max offset.
    pub timestamp_ms: i64,
    pub is_force: bool,
    /// RocketMQ 5: one queue (−1 or absent: every queue).
    pub queue_id: Option<i32>,
    /// RocketMQ 5: an explicit offset for `queue_id` (−1 or absent: by timestamp).
    pub offset: Option<i64>,
}

impl ResetOffsetRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: cmd.ext_str("topic")?.to_owned(),
            group: cmd.ext_str("group")?.to_owned(),
            timestamp_ms: cmd.ext_num("timestamp")?,
            is_force: cmd.ext_bool("isForce").unwrap_or(false),
            queue_id: cmd.ext_num_opt("queueId")?,
            offset: cmd.ext_num_opt("offset")?,
        })
    }

    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("topic".to_owned(), self.topic.clone());
        ext.insert("group".to_owned(), self.group.clone());
        ext.insert("timestamp".to_owned(), self.timestamp_ms.to_string());
        ext.insert("isForce".to_owned(), self.is_force.to_string());
        if let Some(queue_id) = self.queue_id {
            ext.insert("queueId".to_owned(), queue_id.to_string());
        }
        if let Some(offset) = self.offset {
            ext.insert("offset".to_owned(), offset.to_string());
        }
    }
}

/// RocketMQ's `MessageQueue` as it appears in JSON bodies (keys in Java's alphabetical order).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueKey {
    #[serde(default)]
    pub broker_name: String,
    #[serde(default)]
    pub queue_id: i32,
    #[serde(default)]
    pub topic: String,
}

/// Encodes a `ResetOffsetBody` in fastjson's object-key dialect.
pub fn encode_offset_table(table: &[(QueueKey, i64)]) -> Vec<u8> {
    let mut out = String::from("{\"offsetTable\":{");
    for (i, (queue, offset)) in table.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(queue).unwrap_or_default());
        out.push(':');
        out.push_str(&offset.to_string());
    }
    out.push_str("}}");
    out.into_bytes()
}

/// Decodes a `ResetOffsetBody`: fastjson object keys, or keys holding that object as a string.
pub fn decode_offset_table(body: &[u8]) -> Result<Vec<(QueueKey, i64)>, String> {
    let mut p = Parser { buf: body, pos: 0 };
    p.expect(b'{')?;
    let mut table = Vec::new();
    let mut first = true;
    loop {
        p.skip_ws();
        if p.peek() == Some(b'}') {
            break;
        }
        if !first {
            p.expect(b',')?;
        }
        first = false;
        let name: String = p.value()?;
        p.expect(b':')?;
        if name != "offsetTable" {
            p.value::<serde::de::IgnoredAny>()?;
            continue;
        }
        p.expect(b'{')?;
        let mut first_entry = true;
        loop {
            p.skip_ws();
            if p.peek() == Some(b'}') {
                p.pos += 1;
                break;
            }
            if !first_entry {
                p.expect(b',')?;
                p.skip_ws();
            }
            first_entry = false;
            let queue: QueueKey = if p.peek() == Some(b'"') {
                let text: String = p.value()?;
                serde_json::from_str(&text).map_err(|e| format!("bad queue key: {e}"))?
            } else {
                p.value()?
            };
            p.expect(b':')?;
            let offset: i64 = p.value()?;
            table.push((queue, offset));
        }
    }
    Ok(table)
}

/// Walks a JSON text whose object keys may themselves be objects.
struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self
            .buf
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected '{}' at byte {} of the offset table",
                byte as char, self.pos
            ))
        }
    }

    /// One complete JSON value from the current position.
    fn value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, String> {
        self.skip_ws();
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
        match stream.next() {
            Some(Ok(v)) => {
                self.pos += stream.byte_offset();
                Ok(v)
            }
            Some(Err(e)) => Err(format!("bad offset table at byte {}: {e}", self.pos)),
            None => Err("the offset table ends early".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(topic: &str, id: i32) -> QueueKey {
        QueueKey {
            broker_name: "broker-a".into(),
            queue_id: id,
            topic: topic.into(),
        }
    }

    #[test]
    fn offset_table_round_trips_in_fastjson_dialect() {
        let table = vec![(q("T", 0), 5), (q("T", 1), 7)];
        let body = encode_offset_table(&table);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "{\"offsetTable\":{{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"T\"}:5,\
             {\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"T\"}:7}}"
        );
        assert_eq!(decode_offset_table(&body).unwrap(), table);
    }

    #[test]
    fn offset_table_accepts_string_keys_and_spaces() {
        let body = br#" { "offsetTable" : { "{\"topic\":\"T\",\"brokerName\":\"broker-a\",\"queueId\":3}" : 9 } , "x": [1] } "#;
        assert_eq!(decode_offset_table(body).unwrap(), vec![(q("T", 3), 9)]);
        assert_eq!(decode_offset_table(b"{}").unwrap(), vec![]);
    }

    #[test]
    fn bad_offset_tables_are_errors() {
        for body in [
            &b""[..],
            b"{\"offsetTable\":{{\"topic\":1}:5}}",
            b"{\"offsetTable\":{{\"topic\":\"T\"}:\"x\"}}",
            b"{\"offsetTable\":{{\"topic\":\"T\"}:5",
            b"[1]",
        ] {
            assert!(decode_offset_table(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn header_round_trips() {
        let header = ResetOffsetRequestHeader {
            topic: "T".into(),
            group: "G".into(),
            timestamp_ms: 1_700_000_000_000,
            is_force: true,
            queue_id: Some(-1),
            offset: None,
        };
        let mut cmd =
            RemotingCommand::request(super::super::codes::request::INVOKE_BROKER_TO_RESET_OFFSET);
        header.write_to(&mut cmd);
        assert_eq!(ResetOffsetRequestHeader::parse(&cmd).unwrap(), header);
        cmd.ext_fields.remove("timestamp");
        assert!(ResetOffsetRequestHeader::parse(&cmd).is_err());
    }
}
