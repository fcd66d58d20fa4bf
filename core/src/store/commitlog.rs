//! The CommitLog: every message of every topic, appended to segments named by their start offset.
