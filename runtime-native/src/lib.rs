//! Vostok's native runtime: tokio sockets and mmap segment files around the sans-IO core.
