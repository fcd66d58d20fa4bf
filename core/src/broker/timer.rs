//! Timer messages at any delivery time: the timer wheel and timer log.
