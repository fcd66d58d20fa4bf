//! Message queries: QUERY_MESSAGE (12) by key through the key index and VIEW_MESSAGE_BY_ID (33)
//! by CommitLog offset, answered as RocketMQ's `QueryMessageProcessor` answers them.
//!
//! * QUERY_MESSAGE: body = the matching stored records concatenated (like a pull body), newest
//!   first, at most `maxNum` (capped at 64; 32 for a query by UNIQ_KEY), with the index's last
//!   update in the response header; QUERY_NOT_FOUND (22) "can not find message, maybe time range
//!   not correct" when nothing matches.
//! * VIEW_MESSAGE_BY_ID: body = the one record starting at `offset`; SYSTEM_ERROR (1) "can not
//!   find message by the offset, <offset>" when none does.

use bytes::BytesMut;

use super::Broker;
use crate::remoting::codes::response;
use crate::remoting::headers::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::index::UNIQ_KEY_QUERY_MAX_NUM;
use crate::store::{CommitLogOffset, SegmentStorage};

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn handle_query_message(
        &mut self,
        command: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let header = QueryMessageRequestHeader::parse(command)?;
        let max_num = if header.unique_key_query {
            UNIQ_KEY_QUERY_MAX_NUM
        } else {
            header.max_num.max(0) as u32
        };
        let result = match self.store.query_message(
            &header.topic,
            &header.key,
            max_num,
            header.begin_timestamp_ms,
            header.end_timestamp_ms,
        ) {
            Ok(result) => result,
            Err(err) => {
                return Ok(RemotingCommand::response_to(
                    command,
                    response::SYSTEM_ERROR,
                    Some(format!("query message failed: {err}")),
                ))
            }
        };
        let mut reply = if result.records.is_empty() {
            RemotingCommand::response_to(
                command,
                response::QUERY_NOT_FOUND,
                Some("can not find message, maybe time range not correct".to_owned()),
            )
        } else {
            let mut body = BytesMut::with_capacity(result.records.iter().map(|r| r.len()).sum());
            for record in &result.records {
                body.extend_from_slice(record);
            }
            let mut reply = RemotingCommand::response_to(command, response::SUCCESS, None);
            reply.body = body.freeze();
            reply
        };
        QueryMessageResponseHeader {
            index_last_update_timestamp_ms: result.index_last_update_timestamp_ms,
            index_last_update_phy_offset: result.index_last_update_phy_offset,
        }
        .write_to(&mut reply);
        Ok(reply)
    }

    pub(super) fn handle_view_message_by_id(
        &mut self,
        command: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let header = ViewMessageRequestHeader::parse(command)?;
        let record = u64::try_from(header.offset).ok().and_then(|offset| {
            self.store
                .read_record(CommitLogOffset(offset))
                .ok()
                .flatten()
        });
        Ok(match record {
            Some(record) => {
                let mut reply = RemotingCommand::response_to(command, response::SUCCESS, None);
                reply.body = record;
                reply
            }
            None => RemotingCommand::response_to(
                command,
                response::SYSTEM_ERROR,
                Some(format!(
                    "can not find message by the offset, {}",
                    header.offset
                )),
            ),
        })
    }
}
