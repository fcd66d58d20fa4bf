//! One remoting command: a request or a response.

use std::collections::BTreeMap;

use bytes::Bytes;

/// How a command's header is (or will be) encoded on the wire: the high byte of the header-length
/// word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SerializeType {
    #[default]
    Json = 0,
    /// The compact binary header ("ROCKETMQ").
    RocketMq = 1,
}

/// Flag bit 0: this command is a response.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Flag bit 1: the request expects no response.
pub const FLAG_ONEWAY: i32 = 0x2;

/// The `version` Vostok puts in what it sends: the ordinal of RocketMQ V5_3_3, so clients treat
/// it as a current broker (SQL92 needs ≥ 232, standard route JSON ≥ 401).
pub const VOSTOK_VERSION_ORDINAL: i32 = 479;

/// A request or response. Ext fields are kept in a `BTreeMap` so encoding is deterministic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code (requests) or response code (responses).
    pub code: i32,
    /// Sender language enum name ("JAVA", "GO", "RUST", …).
    pub language: String,
    pub version: i32,
    /// Request id, echoed by the response.
    pub opaque: i32,
    pub flag: i32,
    /// Human-readable status text. The binary header cannot tell an empty remark from none, so
    /// `Some("")` sent that way arrives as `None`; JSON keeps it.
    pub remark: Option<String>,
    pub ext_fields: BTreeMap<String, String>,
    pub body: Bytes,
    /// The header encoding this command arrived in, or will be sent in. A command the binary
    /// header cannot represent is sent as JSON regardless (see
    /// [`wire_serialize_type`](super::codec::wire_serialize_type)).
    pub serialize_type: SerializeType,
}

/// A required ext field is missing or does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the header field {0} is missing")]
    Missing(&'static str),
    #[error("the header field {field} has an invalid value {value:?}")]
    Invalid { field: &'static str, value: String },
}

impl RemotingCommand {
    /// A new request with the given code, no ext fields and no body.
    pub fn request(code: i32) -> Self {
        Self {
            code,
            language: "JAVA".to_owned(),
            version: VOSTOK_VERSION_ORDINAL,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: BTreeMap::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// The response to `request` with `code` and `remark`: same opaque and header encoding,
    /// response flag set.
    pub fn response_to(request: &RemotingCommand, code: i32, remark: Option<String>) -> Self {
        Self {
            code,
            language: "JAVA".to_owned(),
            version: VOSTOK_VERSION_ORDINAL,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: BTreeMap::new(),
            body: Bytes::new(),
            serialize_type: request.serialize_type,
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    pub fn with_ext(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(key.to_owned(), value.to_string());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// A required string field.
    pub fn ext_str(&self, key: &'static str) -> Result<&str, HeaderError> {
        self.ext(key).ok_or(HeaderError::Missing(key))
    }

    /// A required integer field (i32, i64, …), parsed from its decimal text.
    pub fn ext_num<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, HeaderError> {
        let text = self.ext_str(key)?;
        text.trim().parse().map_err(|_| HeaderError::Invalid {
            field: key,
            value: text.to_owned(),
        })
    }

    /// An optional integer field: `Ok(None)` when absent, an error when present but malformed.
    pub fn ext_num_opt<T: std::str::FromStr>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, HeaderError> {
        match self.ext(key) {
            None => Ok(None),
            Some(_) => self.ext_num(key).map(Some),
        }
    }

    /// An optional boolean field, parsed like Java's `Boolean.parseBoolean` (only a
    /// case-insensitive "true" is true).
    pub fn ext_bool(&self, key: &str) -> Option<bool> {
        self.ext(key).map(|v| v.eq_ignore_ascii_case("true"))
    }
}
