//! SEND_BATCH_MESSAGE bodies: a concatenation of entries.
