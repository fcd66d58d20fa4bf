//! Arbitrary text as a property string: parsing never fails or panics, parsing is idempotent
//! (parse → encode → parse gives the same properties) and encoding a parsed string is canonical
//! (encode → parse → encode gives the same text). Every parsed pair is one a peer reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vostok_core::message::Properties;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let props = Properties::parse(&text);
    for (name, value) in props.iter() {
        assert!(
            !name.is_empty() && !value.is_empty(),
            "an empty name or value was kept"
        );
        assert!(!name.contains('\u{1}') && !name.contains('\u{2}'));
        assert!(!value.contains('\u{2}'));
        assert_eq!(props.get(name), Some(value));
    }
    let encoded = props.encode();
    assert_eq!(encoded.len(), props.encoded_len());
    let again = Properties::parse(&encoded);
    assert_eq!(again, props, "parse(encode(p)) != p");
    assert_eq!(again.encode(), encoded, "encoding is not canonical");
    if text.ends_with('\u{2}') || text.is_empty() {
        // A string already in canonical form (every pair qualifies, no duplicates) is kept.
        if props.len() == text.matches('\u{2}').count() {
            assert_eq!(encoded, text, "a canonical property string changed");
        }
    }
});
