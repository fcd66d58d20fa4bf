//! RocketMQ client logic as sans-IO state machines: producers and consumers that run the same way
//! under the native runtime, the simulator and the playground.
