//! JSON header encoding (serialize type 0).
