//! Reading JSON bodies as fastjson reads them: what RocketMQ's Java broker and NameServer
//! accept from every client, Vostok accepts too.
//!
//! The Java servers decode bodies with fastjson 1.x, which coerces a value to the field's type
//! wherever it can. Clients were written against that, and each sends its own shapes: the C++
//! client (and the Python, PHP and Node bindings built on it) writes enums as ordinals and
//! `subVersion` as a string; ali-ons omits fields; Go writes its own key order. A strict serde
//! struct refuses what Apache answers with SUCCESS, so every field of a body the broker or
//! NameServer reads goes through one of these `deserialize_with` functions:
//!
//! | field type | accepted (fastjson's `TypeUtils` casts and codecs) | null or absent |
//! |---|---|---|
//! | string | a string; a number or boolean as its text | default |
//! | integer | a number (fractions truncated, as Java's `intValue`); a string holding one (`""`, `"null"`: null) | default |
//! | boolean | `true`/`false`; `1`/`0`; `"true"`, `"false"`, `"1"`, `"0"`, `"Y"`, `"N"`, `"T"`, `"F"` (any case) | default |
//! | enum | its name (any case; an unknown name is null, as fastjson's default); its ordinal in Java's declaration order | default |
//! | list | an array (null elements skipped) | empty |
//! | string map | an object whose values are coerced as strings | empty |
//!
//! Unknown keys are ignored by every body struct. Anything else (an object where a number
//! belongs, an ordinal out of range, `"12abc"`) is an error naming the field's expected type
//! and the value, and the request is answered with that error, as Apache answers a body
//! fastjson cannot bind.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Java peers' bodies as JSON values, whatever map keys fastjson wrote (numbers, beans).
pub use crate::namesrv::json::parse_fastjson;

/// A Java enum: its constants' names in declaration order (ordinals are positions).
pub trait JavaEnum {
    /// The Java class name, for error messages.
    const CLASS: &'static str;
    const NAMES: &'static [&'static str];
}

/// `org.apache.rocketmq.common.protocol.heartbeat.ConsumeType`.
pub enum ConsumeType {}
impl JavaEnum for ConsumeType {
    const CLASS: &'static str = "ConsumeType";
    const NAMES: &'static [&'static str] =
        &["CONSUME_ACTIVELY", "CONSUME_PASSIVELY", "CONSUME_POP"];
}

/// `org.apache.rocketmq.common.protocol.heartbeat.MessageModel`.
pub enum MessageModel {}
impl JavaEnum for MessageModel {
    const CLASS: &'static str = "MessageModel";
    const NAMES: &'static [&'static str] = &["BROADCASTING", "CLUSTERING"];
}

/// `org.apache.rocketmq.common.consumer.ConsumeFromWhere` (deprecated constants included: they
/// hold ordinals 1–3).
pub enum ConsumeFromWhere {}
impl JavaEnum for ConsumeFromWhere {
    const CLASS: &'static str = "ConsumeFromWhere";
    const NAMES: &'static [&'static str] = &[
        "CONSUME_FROM_LAST_OFFSET",
        "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        "CONSUME_FROM_MIN_OFFSET",
        "CONSUME_FROM_MAX_OFFSET",
        "CONSUME_FROM_FIRST_OFFSET",
        "CONSUME_FROM_TIMESTAMP",
    ];
}

/// `org.apache.rocketmq.common.TopicFilterType`.
pub enum TopicFilterType {}
impl JavaEnum for TopicFilterType {
    const CLASS: &'static str = "TopicFilterType";
    const NAMES: &'static [&'static str] = &["SINGLE_TAG", "MULTI_TAG"];
}

/// How a JSON value is shown in an error: short, whatever its size.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as a string field takes it; `None` for null.
pub fn string_of(value: Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(format!("expected a string, got {}", kind(&other))),
    }
}

/// A value as an integer field in `[min, max]` (Java type `java`) takes it; `None` for null and
/// the empty string.
fn integer_of(value: &Value, min: i64, max: i64, java: &str) -> Result<Option<i64>, String> {
    let out_of_range = || format!("{} is out of range for a Java {java}", shown(value));
    let n = match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => i64::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            // Java's intValue of a decimal: truncated toward zero.
            (None, Some(f))
                if f.is_finite() && f.trunc() >= min as f64 && f.trunc() <= max as f64 =>
            {
                f.trunc() as i64
            }
            _ => return Err(out_of_range()),
        },
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || t.eq_ignore_ascii_case("null") {
                return Ok(None);
            }
            match t.parse::<i64>() {
                Ok(i) => i,
                // "12.0": a decimal in a string, truncated as above.
                Err(_) => match t.parse::<f64>() {
                    Ok(f) if f.is_finite() && t.contains('.') => {
                        if f.trunc() < min as f64 || f.trunc() > max as f64 {
                            return Err(out_of_range());
                        }
                        f.trunc() as i64
                    }
                    _ => return Err(format!("expected a Java {java}, got {}", shown(value))),
                },
            }
        }
        other => return Err(format!("expected a Java {java}, got {}", kind(other))),
    };
    if n < min || n > max {
        return Err(out_of_range());
    }
    Ok(Some(n))
}

/// A value as a boolean field takes it; `None` for null and the empty string.
fn bool_of(value: &Value) -> Result<Option<bool>, String> {
    let bad = || format!("expected a boolean, got {}", shown(value));
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Some(i == 1)),
            None => Err(bad()),
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "" | "null" => Ok(None),
            "true" | "1" | "y" | "t" => Ok(Some(true)),
            "false" | "0" | "n" | "f" => Ok(Some(false)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// A value as a field of Java enum `E` takes it: the constant's canonical name; `None` for
/// null, the empty string and an unknown name.
pub fn enum_of<E: JavaEnum>(value: &Value) -> Result<Option<&'static str>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            Ok(E::NAMES.iter().copied().find(|n| n.eq_ignore_ascii_case(s)))
        }
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| E::NAMES.get(i).copied())
            .map(Some)
            .ok_or_else(|| format!("parse enum {} error, value : {n}", E::CLASS)),
        other => Err(format!(
            "expected a {} name or ordinal, got {}",
            E::CLASS,
            kind(other)
        )),
    }
}

/// Decodes a body of type `T` (named `what` in errors): JSON text whose object members that
/// are `null` count as absent (fastjson leaves such a field at its default), then each field
/// through this module's functions.
pub fn from_body<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid {what}: {e}"))?;
    drop_null_members(&mut value);
    T::deserialize(value).map_err(|e| format!("the body is not valid {what}: {e}"))
}

/// Removes every object member whose value is `null`, at any depth.
pub fn drop_null_members(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|_, v| !v.is_null());
            members.values_mut().for_each(drop_null_members);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_members),
        _ => {}
    }
}

fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

/// An optional string field.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string_of(value(d)?).map_err(D::Error::custom)
}

/// A string field; null gives the empty string.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string(d)?.unwrap_or_default())
}

/// An optional Java `long` field.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    integer_of(&value(d)?, i64::MIN, i64::MAX, "long").map_err(D::Error::custom)
}

/// A Java `long` field; null gives 0.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(opt_i64(d)?.unwrap_or_default())
}

/// A Java `int` field; null gives 0.
pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = value(d)?;
    let n = integer_of(&v, i64::from(i32::MIN), i64::from(i32::MAX), "int");
    Ok(n.map_err(D::Error::custom)?.unwrap_or_default() as i32)
}

/// A Java `int` field that must not be negative (queue counts, permissions, flags); null
/// gives 0.
pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = value(d)?;
    let n = integer_of(&v, 0, i64::from(i32::MAX), "int (not negative)");
    Ok(n.map_err(D::Error::custom)?.unwrap_or_default() as u32)
}

/// An optional boolean field.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    bool_of(&value(d)?).map_err(D::Error::custom)
}

/// A boolean field; null gives false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or_default())
}

/// An optional field of Java enum `E`, as its canonical name.
pub fn opt_enum<'de, D: Deserializer<'de>, E: JavaEnum>(d: D) -> Result<Option<String>, D::Error> {
    let v = value(d)?;
    Ok(enum_of::<E>(&v)
        .map_err(D::Error::custom)?
        .map(str::to_owned))
}

/// A list field: an array whose null elements are skipped; null gives an empty list.
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match value(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .filter(|v| !v.is_null())
            .enumerate()
            .map(|(i, v)| {
                T::deserialize(v).map_err(|e| D::Error::custom(format!("element {i}: {e}")))
            })
            .collect(),
        other => Err(D::Error::custom(format!(
            "expected an array, got {}",
            kind(&other)
        ))),
    }
}

/// An optional list field (see [`list`]).
pub fn opt_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    list(d).map(Some)
}

/// A `Map<String, String>` field: values coerced as strings (null values dropped); null gives
/// an empty map.
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    match value(d)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(entries) => {
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                match string_of(v) {
                    Ok(Some(s)) => {
                        out.insert(k, s);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(D::Error::custom(format!("value of {k:?}: {e}"))),
                }
            }
            Ok(out)
        }
        other => Err(D::Error::custom(format!(
            "expected an object, got {}",
            kind(&other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_as_fastjson_casts_them() {
        let int = |v: Value| integer_of(&v, i64::from(i32::MIN), i64::from(i32::MAX), "int");
        assert_eq!(int(json!(7)), Ok(Some(7)));
        assert_eq!(int(json!("7")), Ok(Some(7)));
        assert_eq!(int(json!(" -7 ")), Ok(Some(-7)));
        assert_eq!(int(json!(7.9)), Ok(Some(7)));
        assert_eq!(int(json!("7.0")), Ok(Some(7)));
        assert_eq!(int(json!(true)), Ok(Some(1)));
        assert_eq!(int(json!("")), Ok(None));
        assert_eq!(int(json!(null)), Ok(None));
        assert!(int(json!("7abc"))
            .unwrap_err()
            .contains("expected a Java int"));
        assert!(int(json!(1u64 << 40)).unwrap_err().contains("out of range"));
        assert!(int(json!({})).unwrap_err().contains("an object"));
    }

    #[test]
    fn enums_by_name_or_ordinal() {
        assert_eq!(
            enum_of::<MessageModel>(&json!("CLUSTERING")),
            Ok(Some("CLUSTERING"))
        );
        assert_eq!(
            enum_of::<MessageModel>(&json!("clustering")),
            Ok(Some("CLUSTERING"))
        );
        // Java declares BROADCASTING first.
        assert_eq!(enum_of::<MessageModel>(&json!(0)), Ok(Some("BROADCASTING")));
        assert_eq!(enum_of::<MessageModel>(&json!(1)), Ok(Some("CLUSTERING")));
        assert_eq!(
            enum_of::<ConsumeFromWhere>(&json!(4)),
            Ok(Some("CONSUME_FROM_FIRST_OFFSET"))
        );
        assert_eq!(enum_of::<ConsumeType>(&json!("SOMETHING_NEW")), Ok(None));
        assert_eq!(
            enum_of::<ConsumeType>(&json!(9)),
            Err("parse enum ConsumeType error, value : 9".to_owned())
        );
        assert!(enum_of::<ConsumeType>(&json!(-1)).is_err());
        assert!(enum_of::<ConsumeType>(&json!([1])).is_err());
    }

    #[test]
    fn booleans_and_strings() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!(0), Some(false)),
            (json!(1), Some(true)),
            (json!("TRUE"), Some(true)),
            (json!("n"), Some(false)),
            (json!(null), None),
        ] {
            assert_eq!(bool_of(&v), Ok(want), "{v}");
        }
        assert!(bool_of(&json!("maybe")).is_err());
        assert_eq!(string_of(json!(12)), Ok(Some("12".to_owned())));
        assert_eq!(string_of(json!(false)), Ok(Some("false".to_owned())));
        assert!(string_of(json!({"a": 1})).is_err());
    }

    #[test]
    fn long_values_are_shown_short_in_errors() {
        let long = Value::String("x".repeat(10_000));
        let err = integer_of(&long, 0, 1, "int").unwrap_err();
        assert!(err.len() < 100, "{err}");
    }
}
