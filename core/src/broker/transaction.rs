//! Transactional messages: half messages, END_TRANSACTION and check-back.
