//! Compact ROCKETMQ binary header encoding (serialize type 1).
