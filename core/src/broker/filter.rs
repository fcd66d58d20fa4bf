//! Message filtering for pulls: tag hash codes from the ConsumeQueue, and SQL92 selectors over
//! each record's properties when `enablePropertyFilter` is on.
//!
//! A SQL92 selector cannot be decided from a ConsumeQueue unit, so every unit passes the store's
//! tag filter and the records it returns are decoded and tested here. The broker keeps reading
//! until it has the pull's count or has examined [`PULL_FILTER_UNITS_MIN`] units; when none
//! matched it answers NO_MATCHED_MESSAGE with the offset after the last unit examined, so the
//! consumer moves past them (RocketMQ's `getMessage` with an `ExpressionMessageFilter`).

use std::sync::Arc;

use super::clients::Subscription;
use super::Broker;
use crate::filter::{FilterError, SqlFilter};
use crate::message::record::MessageRecord;
use crate::store::message_store::PULL_FILTER_UNITS_MIN;
use crate::store::{GetResult, GetStatus, QueueOffset, SegmentStorage, StoreError};

/// The expression type of SQL92 subscriptions.
pub(super) const SQL92: &str = "SQL92";

/// What CHECK_CLIENT_CONFIG and pulls say when property filtering is off.
pub(super) fn unsupported_remark(expression_type: &str) -> String {
    format!("The broker does not support consumer to filter message by {expression_type}")
}

/// A subscription's compiled selector (or why it does not compile). Compared by text.
#[derive(Clone, Debug)]
pub(super) struct CompiledSelector(pub Result<Arc<SqlFilter>, FilterError>);

impl CompiledSelector {
    /// Compiles `expression` for an expression type other than TAG; unknown types never compile
    /// (RocketMQ has no filter for them).
    pub fn compile(expression_type: &str, expression: &str) -> Self {
        if expression_type != SQL92 {
            return Self(Err(FilterError {
                message: format!("no filter for expression type {expression_type}"),
                position: 0,
            }));
        }
        Self(SqlFilter::compile(expression).map(Arc::new))
    }

    pub fn filter(&self) -> Option<&SqlFilter> {
        self.0.as_ref().ok().map(|f| f.as_ref())
    }
}

impl PartialEq for CompiledSelector {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Ok(a), Ok(b)) => a.expression() == b.expression(),
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for CompiledSelector {}

/// Whether a stored record passes a selector. A record that does not decode does not.
pub(super) fn record_matches(filter: &SqlFilter, record: &bytes::Bytes) -> bool {
    match MessageRecord::decode(record, false) {
        Ok(message) => filter.matches(&|name| message.properties.get(name)),
        Err(_) => false,
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// Reads up to `max_count` messages of a queue that pass `subscription`.
    pub(super) fn get_filtered(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_count: u32,
        subscription: &Subscription,
    ) -> Result<GetResult, StoreError> {
        let Some(selector) = subscription.selector.as_ref().and_then(|s| s.filter()) else {
            let by_tag = |tags_code: i64| subscription.matches(tags_code);
            return self.store.get(topic, queue_id, offset, max_count, &by_tag);
        };
        let every = |_: i64| true;
        let mut first = self.store.get(topic, queue_id, offset, max_count, &every)?;
        if first.status != GetStatus::Found {
            return Ok(first);
        }
        let mut batch = std::mem::take(&mut first.records);
        let mut out = first;
        let mut next = out.next_begin_offset;
        loop {
            out.records
                .extend(batch.drain(..).filter(|r| record_matches(selector, r)));
            let examined = next.0.saturating_sub(offset.0);
            // A damaged record ends the pull before it (see MessageStore::get).
            if out.records.len() >= max_count as usize
                || examined >= PULL_FILTER_UNITS_MIN
                || out.damaged.is_some()
            {
                break;
            }
            let more = self.store.get(
                topic,
                queue_id,
                next,
                max_count - out.records.len() as u32,
                &every,
            )?;
            if more.damaged.is_some() {
                out.damaged = more.damaged;
                next = more.next_begin_offset;
            }
            if more.status != GetStatus::Found {
                break;
            }
            out.max_offset = more.max_offset;
            next = more.next_begin_offset;
            batch = more.records;
        }
        out.next_begin_offset = next;
        out.status = if out.records.is_empty() {
            GetStatus::NoMatchedMessage
        } else {
            GetStatus::Found
        };
        Ok(out)
    }
}
