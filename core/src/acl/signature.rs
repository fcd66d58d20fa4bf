//! The ACL 1.0 request signature (RocketMQ's `AclUtils.combineRequestContent` and
//! `AclSigner`): HmacSHA1 over the sorted ext field values and the body, in standard Base64.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::remoting::headers::UNIQUE_MSG_QUERY_FLAG;
use crate::remoting::RemotingCommand;

/// What is signed: the values of every ext field except `Signature` (and, as the 4.9.x
/// server reads it, `_UNIQUE_KEY_QUERY`), in key order, as UTF-8, then the body.
pub fn signed_content(request: &RemotingCommand) -> Vec<u8> {
    let mut fields: Vec<(&String, &String)> = request
        .ext_fields
        .iter()
        .filter(|(k, _)| k.as_str() != super::SIGNATURE && k.as_str() != UNIQUE_MSG_QUERY_FLAG)
        .collect();
    // Java's TreeMap order (String.compareTo: UTF-16 units; the same as bytes for the ASCII
    // keys RocketMQ uses).
    fields.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut content = Vec::new();
    for (_, value) in fields {
        content.extend_from_slice(value.as_bytes());
    }
    content.extend_from_slice(&request.body);
    content
}

/// Base64(HmacSHA1(secret_key, content)).
pub fn sign(content: &[u8], secret_key: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(content);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_rocketmqs_hook_does() {
        // {AccessKey: RocketMQ, topic: topicB}, body "hello", secret 12345678: computed
        // independently with Python's hmac/hashlib/base64.
        let request = RemotingCommand::request(10)
            .with_ext("topic", "topicB")
            .with_ext("AccessKey", "RocketMQ")
            .with_body(&b"hello"[..]);
        assert_eq!(signed_content(&request), b"RocketMQtopicBhello");
        assert_eq!(
            sign(&signed_content(&request), "12345678"),
            "LcizuhXPp7yw5WHeNlpfnSQxGPQ="
        );
        // The signature itself and the unique-key flag are not signed.
        let signed = request
            .clone()
            .with_ext("Signature", "x")
            .with_ext(UNIQUE_MSG_QUERY_FLAG, "true");
        assert_eq!(signed_content(&signed), signed_content(&request));
    }
}
