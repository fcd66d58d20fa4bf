//! The property string: `name U+0001 value U+0002` per pair.
//!
//! ```text
//!   +------+----+-------+----+------+----+-------+----+
//!   | name | 01 | value | 02 | name | 01 | value | 02 | ...
//!   +------+----+-------+----+------+----+-------+----+
//! ```
//!
//! Writers (Java, Go, ali-ons, the Rust client) put U+0002 after every pair, including the last;
//! readers tolerate a missing final separator. The text is UTF-8; in stored records and batch
//! entries it is prefixed by an int16 length, so it is limited to [`PROPERTIES_LEN_MAX`] bytes.

/// Separates a name from its value (Java `NAME_VALUE_SEPARATOR`).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends a pair (Java `PROPERTY_SEPARATOR`).
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// The largest encoded property string a record or batch entry can carry (int16 length).
pub const PROPERTIES_LEN_MAX: usize = i16::MAX as usize;

/// A message's properties in the order they arrived (order is preserved so a stored record
/// keeps what the producer sent). Lookups are linear: messages carry a handful of properties.
///
/// Names are unique: parsing keeps the last value of a repeated name (at the position of its
/// first occurrence) and [`Properties::insert`] replaces in place.
///
/// Round-trip caveat: a name containing U+0001 or U+0002, a value containing U+0002, or an empty
/// name or value cannot survive [`Properties::encode`] followed by [`Properties::parse`]; such
/// pairs are accepted here (the type does not police callers) but a peer would read them
/// differently. Values may contain U+0001: only the first U+0001 of a pair separates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    pairs: Vec<(String, String)>,
}

impl Properties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a property string the way Java does: split on U+0002, keep items that contain
    /// U+0001 with a non-empty name and value, last duplicate wins, a missing trailing separator
    /// is tolerated.
    ///
    /// Never fails: items that do not qualify are dropped silently, exactly as Java drops them.
    pub fn parse(text: &str) -> Self {
        let mut props = Properties::new();
        for item in text.split(PROPERTY_SEPARATOR) {
            // The first U+0001 separates; later ones belong to the value (Java `indexOf`).
            let Some((name, value)) = item.split_once(NAME_VALUE_SEPARATOR) else {
                continue;
            };
            if name.is_empty() || value.is_empty() {
                continue;
            }
            props.insert(name, value);
        }
        props
    }

    /// Encodes with a separator after every pair, including the last.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len());
        for (name, value) in &self.pairs {
            out.push_str(name);
            out.push(NAME_VALUE_SEPARATOR);
            out.push_str(value);
            out.push(PROPERTY_SEPARATOR);
        }
        out
    }

    /// The length in bytes of [`Properties::encode`]'s output, without building it.
    pub fn encoded_len(&self) -> usize {
        self.pairs
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, replacing an existing value in place.
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.pairs.iter_mut().find(|(k, _)| k == name) {
            Some((_, existing)) => *existing = value,
            None => self.pairs.push((name.to_owned(), value)),
        }
    }

    /// Removes `name`, returning its value; the other pairs keep their order.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self.pairs.iter().position(|(k, _)| k == name)?;
        Some(self.pairs.remove(index).1)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Properties {
    /// Collects pairs with [`Properties::insert`] semantics (a repeated name replaces in place).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut props = Properties::new();
        for (name, value) in iter {
            props.insert(name.as_ref(), value);
        }
        props
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pairs(props: &Properties) -> Vec<(&str, &str)> {
        props.iter().collect()
    }

    /// Goal: the canonical writer output parses back to its pairs in order.
    /// Method: parse the property string of REMOTING.md §8.3.
    #[test]
    fn parses_canonical_string() {
        let text = "UNIQ_KEY\u{1}C0A80105109218B4AAC2476E5C000001\u{2}WAIT\u{1}true\u{2}TAGS\u{1}tagA\u{2}";
        let props = Properties::parse(text);
        assert_eq!(
            pairs(&props),
            vec![
                ("UNIQ_KEY", "C0A80105109218B4AAC2476E5C000001"),
                ("WAIT", "true"),
                ("TAGS", "tagA"),
            ]
        );
        assert_eq!(props.encode(), text);
        assert_eq!(props.encoded_len(), 62);
    }

    /// Goal: the Java parser's leniency rules. Method: feed each corner case and compare.
    #[test]
    fn java_parser_rules() {
        // Missing trailing separator.
        assert_eq!(
            pairs(&Properties::parse("A\u{1}1\u{2}B\u{1}2")),
            vec![("A", "1"), ("B", "2")]
        );
        // Empty name, empty value, no U+0001 at all, empty items: dropped.
        assert_eq!(
            pairs(&Properties::parse(
                "\u{1}x\u{2}E\u{1}\u{2}plain\u{2}\u{2}\u{2}K\u{1}v\u{2}"
            )),
            vec![("K", "v")]
        );
        // Only the first U+0001 separates.
        assert_eq!(
            pairs(&Properties::parse("K\u{1}a\u{1}b\u{2}")),
            vec![("K", "a\u{1}b")]
        );
        // Last duplicate wins, at the first occurrence's position.
        assert_eq!(
            pairs(&Properties::parse("A\u{1}1\u{2}B\u{1}2\u{2}A\u{1}3\u{2}")),
            vec![("A", "3"), ("B", "2")]
        );
        assert!(Properties::parse("").is_empty());
        assert_eq!(Properties::new().encode(), "");
    }

    /// Goal: map operations keep order and replace in place.
    #[test]
    fn insert_get_remove() {
        let mut props = Properties::new();
        props.insert("A", "1");
        props.insert("B", "2");
        props.insert("A", "3");
        assert_eq!(pairs(&props), vec![("A", "3"), ("B", "2")]);
        assert_eq!(props.get("A"), Some("3"));
        assert_eq!(props.get("C"), None);
        assert_eq!(props.remove("A"), Some("3".to_owned()));
        assert_eq!(props.remove("A"), None);
        assert_eq!(pairs(&props), vec![("B", "2")]);
        assert_eq!(props.len(), 1);
        assert!(props.contains("B"));
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        "[^\u{1}\u{2}]{1,12}"
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        // A value may hold U+0001 (only a pair's first one separates) but never U+0002.
        "[^\u{2}]{1,20}"
    }

    proptest! {
        /// Goal: encode then parse is the identity for well-formed pairs.
        #[test]
        fn round_trip(input in proptest::collection::vec((name_strategy(), value_strategy()), 0..8)) {
            let props: Properties = input.into_iter().collect();
            let text = props.encode();
            prop_assert_eq!(text.len(), props.encoded_len());
            prop_assert_eq!(Properties::parse(&text), props);
        }

        /// Goal: arbitrary text never panics and yields only qualifying pairs.
        #[test]
        fn arbitrary_text_never_panics(text in "[a-c\u{1}\u{2}\u{e9}]{0,40}") {
            let props = Properties::parse(&text);
            for (name, value) in props.iter() {
                prop_assert!(!name.is_empty() && !value.is_empty());
                prop_assert!(!name.contains(NAME_VALUE_SEPARATOR));
                prop_assert!(!name.contains(PROPERTY_SEPARATOR));
                prop_assert!(!value.contains(PROPERTY_SEPARATOR));
            }
        }

        #[test]
        fn any_string_never_panics(text in any::<String>()) {
            let _ = Properties::parse(&text);
        }
    }
}
