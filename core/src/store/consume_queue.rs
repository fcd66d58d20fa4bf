//! ConsumeQueues: per (topic, queue) index of 20-byte units pointing into the CommitLog.
