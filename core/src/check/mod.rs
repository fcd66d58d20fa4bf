//! Jepsen-style history checkers, pure and shared by the simulator and the playground.
