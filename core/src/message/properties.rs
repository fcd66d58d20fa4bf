//! The property string: `name U+0001 value U+0002` per pair.

/// A message's properties in the order they arrived (order is preserved so a stored record
/// keeps what the producer sent). Lookups are linear: messages carry a handful of properties.
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
    pub fn parse(text: &str) -> Self {
        let _ = text;
        todo!()
    }

    /// Encodes with a separator after every pair, including the last.
    pub fn encode(&self) -> String {
        todo!()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let _ = name;
        todo!()
    }

    /// Sets `name`, replacing an existing value in place.
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        let _ = (name, value.into());
        todo!()
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let _ = name;
        todo!()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}
