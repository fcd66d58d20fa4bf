//! The key index: hash slots and linked entries that find messages by key and time range.
