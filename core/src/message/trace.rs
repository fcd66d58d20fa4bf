//! Message trace data: what clients with `enableMsgTrace` send to the trace topic
//! (`RMQ_SYS_TRACE_TOPIC` unless `msgTraceTopicName` says otherwise), and how tools read it back.
//!
//! A trace message is an ordinary message of the trace topic whose `KEYS` are the traced
//! messages' ids (and their own keys), so a trace is found with QUERY_MESSAGE by key. Its body
//! is one or more contexts, each a line of fields (RocketMQ's `TraceDataEncoder`):
//!
//! ```text
//! body    = context *( context )           each context ends with FIELD (U+0002)
//! context = type *( CONTENT field )        CONTENT = U+0001
//! Pub            ts region group topic msgId tags keys storeHost bodyLength costMs msgType
//!                [offsetMsgId] success [clientHost]
//! SubBefore      ts region group requestId msgId retryTimes keys
//! SubAfter       requestId msgId costMs success keys [contextCode [ts]]
//! EndTransaction ts region group topic msgId tags keys storeHost msgType transactionId
//!                transactionState fromTransactionCheck
//! ```
//!
//! Java splits with `String.split`, which drops trailing empty fields; so does this decoder.
//! A context that does not parse (a number that is not one, too few fields) is skipped rather
//! than failing the whole message, where Java's tools give up on it.

/// The trace topic clients and brokers use by default (`TopicValidator.RMQ_SYS_TRACE_TOPIC`).
pub const DEFAULT_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Between the fields of a context (`TraceConstants.CONTENT_SPLITOR`).
pub const CONTENT_SEPARATOR: char = '\u{1}';
/// After each context (`TraceConstants.FIELD_SPLITOR`).
pub const FIELD_SEPARATOR: char = '\u{2}';

/// What a context records (`TraceType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceType {
    /// A send, as the producer saw it.
    Pub,
    /// A consumer received the message (before its listener ran).
    SubBefore,
    /// The consumer's listener finished with it.
    SubAfter,
    /// A transaction was committed or rolled back.
    EndTransaction,
}

impl TraceType {
    pub fn name(self) -> &'static str {
        match self {
            TraceType::Pub => "Pub",
            TraceType::SubBefore => "SubBefore",
            TraceType::SubAfter => "SubAfter",
            TraceType::EndTransaction => "EndTransaction",
        }
    }
}

/// One decoded context: the union of every type's fields (absent ones empty or 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_type: TraceType,
    pub timestamp_ms: i64,
    pub region_id: String,
    pub group_name: String,
    /// Pairs a SubBefore with its SubAfter.
    pub request_id: String,
    pub cost_time_ms: i32,
    pub success: bool,
    /// The consumer's outcome (`ConsumeReturnType` ordinal) of a SubAfter.
    pub context_code: i32,
    pub topic: String,
    /// The traced message's id (its `UNIQ_KEY`).
    pub msg_id: String,
    pub offset_msg_id: String,
    pub tags: String,
    pub keys: String,
    pub store_host: String,
    pub client_host: String,
    pub body_length: i32,
    /// `MessageType` ordinal: 0 normal, 1 transaction half, 2 transaction commit, 3 delay.
    pub msg_type: i32,
    pub retry_times: i32,
    pub transaction_id: String,
    pub transaction_state: String,
    pub from_transaction_check: bool,
}

impl TraceContext {
    fn new(trace_type: TraceType) -> Self {
        Self {
            trace_type,
            timestamp_ms: 0,
            region_id: String::new(),
            group_name: String::new(),
            request_id: String::new(),
            cost_time_ms: 0,
            success: true,
            context_code: 0,
            topic: String::new(),
            msg_id: String::new(),
            offset_msg_id: String::new(),
            tags: String::new(),
            keys: String::new(),
            store_host: String::new(),
            client_host: String::new(),
            body_length: 0,
            msg_type: 0,
            retry_times: 0,
            transaction_id: String::new(),
            transaction_state: String::new(),
            from_transaction_check: false,
        }
    }
}

/// Java's `Boolean.parseBoolean`.
fn java_bool(text: &str) -> bool {
    text.eq_ignore_ascii_case("true")
}

fn number<T: std::str::FromStr>(fields: &[&str], i: usize) -> Option<T> {
    fields.get(i)?.parse().ok()
}

fn text(fields: &[&str], i: usize) -> Option<String> {
    fields.get(i).map(|s| (*s).to_owned())
}

/// Decodes one context's fields; `None` when it does not parse.
fn decode_context(fields: &[&str]) -> Option<TraceContext> {
    let mut c = match *fields.first()? {
        "Pub" => {
            let mut c = TraceContext::new(TraceType::Pub);
            c.timestamp_ms = number(fields, 1)?;
            c.region_id = text(fields, 2)?;
            c.group_name = text(fields, 3)?;
            c.topic = text(fields, 4)?;
            c.msg_id = text(fields, 5)?;
            c.tags = text(fields, 6)?;
            c.keys = text(fields, 7)?;
            c.store_host = text(fields, 8)?;
            c.body_length = number(fields, 9)?;
            c.cost_time_ms = number(fields, 10)?;
            c.msg_type = number(fields, 11)?;
            match fields.len() {
                13 => c.success = java_bool(fields[12]),
                n if n >= 14 => {
                    c.offset_msg_id = fields[12].to_owned();
                    c.success = java_bool(fields[13]);
                    c.client_host = text(fields, 14).unwrap_or_default();
                }
                _ => {}
            }
            c
        }
        "SubBefore" => {
            let mut c = TraceContext::new(TraceType::SubBefore);
            c.timestamp_ms = number(fields, 1)?;
            c.region_id = text(fields, 2)?;
            c.group_name = text(fields, 3)?;
            c.request_id = text(fields, 4)?;
            c.msg_id = text(fields, 5)?;
            c.retry_times = number(fields, 6)?;
            c.keys = text(fields, 7).unwrap_or_default();
            c
        }
        "SubAfter" => {
            let mut c = TraceContext::new(TraceType::SubAfter);
            c.request_id = text(fields, 1)?;
            c.msg_id = text(fields, 2)?;
            c.cost_time_ms = number(fields, 3)?;
            c.success = java_bool(fields.get(4)?);
            c.keys = text(fields, 5).unwrap_or_default();
            if fields.len() >= 7 {
                c.context_code = number(fields, 6)?;
            }
            if fields.len() >= 8 {
                c.timestamp_ms = number(fields, 7)?;
            }
            c
        }
        "EndTransaction" => {
            let mut c = TraceContext::new(TraceType::EndTransaction);
            c.timestamp_ms = number(fields, 1)?;
            c.region_id = text(fields, 2)?;
            c.group_name = text(fields, 3)?;
            c.topic = text(fields, 4)?;
            c.msg_id = text(fields, 5)?;
            c.tags = text(fields, 6)?;
            c.keys = text(fields, 7)?;
            c.store_host = text(fields, 8)?;
            c.msg_type = number(fields, 9)?;
            c.transaction_id = text(fields, 10)?;
            c.transaction_state = text(fields, 11)?;
            c.from_transaction_check = java_bool(fields.get(12)?);
            c
        }
        _ => return None,
    };
    c.msg_id = c.msg_id.trim().to_owned();
    Some(c)
}

/// Splits as Java's `String.split` does: trailing empty pieces dropped.
fn java_split(text: &str, separator: char) -> Vec<&str> {
    let mut pieces: Vec<&str> = text.split(separator).collect();
    while pieces.last() == Some(&"") {
        pieces.pop();
    }
    pieces
}

/// Every context of a trace message's body that parses, in order.
pub fn decode(trace_data: &str) -> Vec<TraceContext> {
    java_split(trace_data, FIELD_SEPARATOR)
        .into_iter()
        .filter_map(|context| decode_context(&java_split(context, CONTENT_SEPARATOR)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &[&str]) -> String {
        let mut s = fields.join("\u{1}");
        s.push(FIELD_SEPARATOR);
        s
    }

    #[test]
    fn decodes_each_context_type_as_java_writes_it() {
        let body = [
            line(&[
                "Pub",
                "1718000000000",
                "DefaultRegion",
                "PG",
                "TopicA",
                "7F00000100002A9F0000000000000000",
                "TagA",
                "k1",
                "127.0.0.1:10911",
                "11",
                "3",
                "0",
                "7F00000100002A9F00000000000000FF",
                "true",
            ]),
            line(&[
                "SubBefore",
                "1718000000100",
                "DefaultRegion",
                "CG",
                "req-1",
                "7F00000100002A9F0000000000000000",
                "0",
                "k1",
            ]),
            line(&[
                "SubAfter",
                "req-1",
                "7F00000100002A9F0000000000000000",
                "5",
                "false",
                "k1",
                "1",
                "1718000000105",
            ]),
            line(&[
                "EndTransaction",
                "1718000000200",
                "DefaultRegion",
                "PG",
                "TopicA",
                "id2",
                "null",
                "",
                "127.0.0.1:10911",
                "2",
                "tx-1",
                "COMMIT_MESSAGE",
                "false",
            ]),
        ]
        .concat();
        let contexts = decode(&body);
        assert_eq!(contexts.len(), 4);
        let pubc = &contexts[0];
        assert_eq!(pubc.trace_type, TraceType::Pub);
        assert_eq!(
            (pubc.group_name.as_str(), pubc.topic.as_str()),
            ("PG", "TopicA")
        );
        assert_eq!(pubc.offset_msg_id, "7F00000100002A9F00000000000000FF");
        assert_eq!(
            (pubc.cost_time_ms, pubc.body_length, pubc.success),
            (3, 11, true)
        );
        let before = &contexts[1];
        assert_eq!(
            (before.group_name.as_str(), before.request_id.as_str()),
            ("CG", "req-1")
        );
        let after = &contexts[2];
        assert_eq!(after.trace_type, TraceType::SubAfter);
        assert_eq!(
            (after.cost_time_ms, after.success, after.context_code),
            (5, false, 1)
        );
        assert_eq!(after.timestamp_ms, 1718000000105);
        assert_eq!(contexts[3].transaction_state, "COMMIT_MESSAGE");
    }

    #[test]
    fn old_and_short_shapes_and_garbage() {
        // 4.x before offsetMsgId: success at 12; a 5.x clientHost at 14.
        let old = line(&[
            "Pub", "1", "r", "g", "t", "m", "", "", "h", "1", "2", "0", "false",
        ]);
        assert!(!decode(&old)[0].success);
        let new = line(&[
            "Pub", "1", "r", "g", "t", "m", "", "", "h", "1", "2", "0", "o", "true", "10.0.0.1",
        ]);
        assert_eq!(decode(&new)[0].client_host, "10.0.0.1");
        // A SubAfter of an old client: no context code, no timestamp.
        let after = line(&["SubAfter", "r", "m", "4", "true", "k"]);
        assert_eq!(decode(&after)[0].timestamp_ms, 0);
        // Bad numbers, unknown types and too few fields are skipped; the rest still decodes.
        let mixed = [
            line(&["Pub", "soon", "r", "g"]),
            line(&["Recall", "1"]),
            line(&["SubBefore", "1"]),
            after.clone(),
        ]
        .concat();
        assert_eq!(decode(&mixed).len(), 1);
        assert!(decode("").is_empty());
        assert!(decode("\u{2}\u{2}").is_empty());
    }
}
