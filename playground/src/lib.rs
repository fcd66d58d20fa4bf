//! Vostok's playground: the real core compiled to WebAssembly. Not built yet beyond this crate.

pub use vostok_core as core;
