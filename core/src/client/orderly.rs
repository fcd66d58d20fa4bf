//! Orderly consumption: queue locks and the one-queue-at-a-time consume loop.
