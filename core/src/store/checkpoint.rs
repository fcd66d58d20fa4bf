//! The store checkpoint and the abort marker.
