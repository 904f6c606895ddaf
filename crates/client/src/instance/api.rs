//! The request/response calls of the instance (RocketMQ's `MQClientAPIImpl` and `MQAdminImpl`):
//! name-server failover, broker calls with the broker name attached, consumer lists, queue
//! offsets and committed consumer offsets.

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::collections::BTreeSet;

use apogee_protocol::body::{
    GetConsumerListByGroupResponseBody, JsonBody, LockBatchRequestBody, LockBatchResponseBody,
    MessageQueue, UnlockBatchRequestBody,
};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{
    BoundaryType, CommandHeader, ConsumerSendMsgBackRequestHeader,
    GetConsumerListByGroupRequestHeader, GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use apogee_protocol::RemotingCommand;

use super::ClientInstance;
use crate::error::{ClientError, Result};
use crate::message::MessageExt;

/// The extFields key of `RpcRequestHeader.brokerName`: the broker a request is meant for.
/// Brokers ignore it; proxies route by it.
pub(crate) const EXT_BROKER_NAME: &str = "bname";

/// A request with `header` and the target broker's name.
pub(crate) fn broker_request<H: CommandHeader>(
    code: i32,
    header: &H,
    broker_name: &str,
) -> RemotingCommand {
    let mut request = RemotingCommand::request_with_header(code, header);
    if !broker_name.is_empty() {
        request.ext_fields.insert(EXT_BROKER_NAME, broker_name);
    }
    request
}

impl ClientInstance {
    /// Sends `request` to a name server: the current one first, then each other in turn; the
    /// first that answers becomes the current one. Returns the address that answered.
    pub async fn invoke_name_server(
        &self,
        request: RemotingCommand,
    ) -> Result<(String, RemotingCommand)> {
        self.check_running()?;
        let addrs = &self.inner.config.name_server_addrs;
        if addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no name server address".into(),
            ));
        }
        let start = self.inner.name_server_index.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..addrs.len() {
            let index = (start + i) % addrs.len();
            let Some(addr) = addrs.get(index) else {
                continue;
            };
            let mut req = request.clone();
            req.language = self.inner.config.language;
            match self
                .inner
                .remoting
                .invoke(addr, req, self.inner.config.api_timeout())
                .await
            {
                Ok(response) => {
                    if i > 0 {
                        self.inner.name_server_index.store(index, Ordering::Relaxed);
                    }
                    return Ok((addr.clone(), response));
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "name server call failed");
                    last = Some(e);
                }
            }
        }
        Err(last.map_or(ClientError::Shutdown, ClientError::Remoting))
    }

    /// Sends `request` to `addr` and waits for the answer.
    pub async fn invoke_broker(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        self.check_running()?;
        request.language = self.inner.config.language;
        Ok(self.inner.remoting.invoke(addr, request, timeout).await?)
    }

    /// Sends `request` to `addr` without waiting for an answer.
    pub async fn invoke_broker_oneway(
        &self,
        addr: &str,
        mut request: RemotingCommand,
    ) -> Result<()> {
        self.check_running()?;
        request.language = self.inner.config.language;
        Ok(self.inner.remoting.invoke_oneway(addr, request).await?)
    }

    /// Sends `request` to the master of `mq`'s broker and fails on any code but SUCCESS.
    async fn invoke_master_ok(
        &self,
        mq: &MessageQueue,
        request: RemotingCommand,
    ) -> Result<RemotingCommand> {
        let addr = self
            .master_addr_or_refresh(&mq.broker_name, &mq.topic)
            .await?;
        let response = self
            .invoke_broker(&addr, request, self.config().api_timeout())
            .await?;
        if response.code != response_code::SUCCESS {
            return Err(ClientError::broker(response.code, response.remark, &addr));
        }
        Ok(response)
    }

    /// The ids of the consumers of `group` that a broker serving `topic` knows
    /// (GET_CONSUMER_LIST_BY_GROUP). The broker is one that holds the topic, its master if
    /// online.
    pub async fn consumer_id_list(&self, topic: &str, group: &str) -> Result<Vec<String>> {
        let entry = match self.route_entry(topic) {
            Some(e) => e,
            None => self.update_topic_route(topic).await?,
        };
        let mut candidates: Vec<&apogee_protocol::body::BrokerData> = entry
            .route
            .broker_datas
            .iter()
            .filter(|b| !b.broker_addrs.is_empty())
            .collect();
        if candidates.is_empty() {
            return Err(ClientError::NoRoute {
                topic: topic.to_owned(),
            });
        }
        let start = crate::util::random_u64() as usize % candidates.len();
        candidates.rotate_left(start);
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_owned(),
        };
        let mut last = None;
        for bd in candidates {
            let Some(addr) = bd
                .master_addr()
                .or_else(|| bd.broker_addrs.values().next().map(String::as_str))
            else {
                continue;
            };
            let request = RemotingCommand::request_with_header(
                request_code::GET_CONSUMER_LIST_BY_GROUP,
                &header,
            );
            match self
                .invoke_broker(addr, request, self.config().api_timeout())
                .await
            {
                Ok(resp) if resp.code == response_code::SUCCESS => {
                    let body = GetConsumerListByGroupResponseBody::decode(&resp.body)?;
                    return Ok(body.consumer_id_list);
                }
                Ok(resp) => last = Some(ClientError::broker(resp.code, resp.remark, addr)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::NoRoute {
            topic: topic.to_owned(),
        }))
    }

    /// The next offset to be written in `mq` (GET_MAX_OFFSET).
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let header = GetMaxOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            committed: true,
        };
        let resp = self
            .invoke_master_ok(
                mq,
                broker_request(request_code::GET_MAX_OFFSET, &header, &mq.broker_name),
            )
            .await?;
        Ok(resp.decode_header::<GetMaxOffsetResponseHeader>()?.offset)
    }

    /// The first retained offset of `mq` (GET_MIN_OFFSET).
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let header = GetMinOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
        };
        let resp = self
            .invoke_master_ok(
                mq,
                broker_request(request_code::GET_MIN_OFFSET, &header, &mq.broker_name),
            )
            .await?;
        Ok(resp.decode_header::<GetMinOffsetResponseHeader>()?.offset)
    }

    /// The offset of the first message of `mq` stored at or after `timestamp_ms`
    /// (SEARCH_OFFSET_BY_TIMESTAMP, lower boundary).
    pub async fn search_offset(&self, mq: &MessageQueue, timestamp_ms: i64) -> Result<i64> {
        let header = SearchOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            timestamp: timestamp_ms,
            boundary_type: Some(BoundaryType::Lower),
        };
        let resp = self
            .invoke_master_ok(
                mq,
                broker_request(
                    request_code::SEARCH_OFFSET_BY_TIMESTAMP,
                    &header,
                    &mq.broker_name,
                ),
            )
            .await?;
        Ok(resp.decode_header::<SearchOffsetResponseHeader>()?.offset)
    }

    /// Store time of the oldest message of `mq` (GET_EARLIEST_MSG_STORETIME).
    pub async fn earliest_msg_store_time(&self, mq: &MessageQueue) -> Result<i64> {
        let header = GetEarliestMsgStoretimeRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
        };
        let resp = self
            .invoke_master_ok(
                mq,
                broker_request(
                    request_code::GET_EARLIEST_MSG_STORETIME,
                    &header,
                    &mq.broker_name,
                ),
            )
            .await?;
        Ok(resp
            .decode_header::<GetEarliestMsgStoretimeResponseHeader>()?
            .timestamp)
    }

    /// `group`'s committed offset of `mq` (QUERY_CONSUMER_OFFSET); `None` when the broker has
    /// none (QUERY_NOT_FOUND).
    pub async fn query_consumer_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
    ) -> Result<Option<i64>> {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            set_zero_if_not_found: None,
        };
        let addr = self
            .master_addr_or_refresh(&mq.broker_name, &mq.topic)
            .await?;
        let request = broker_request(
            request_code::QUERY_CONSUMER_OFFSET,
            &header,
            &mq.broker_name,
        );
        let resp = self
            .invoke_broker(&addr, request, self.config().api_timeout())
            .await?;
        match resp.code {
            response_code::SUCCESS => Ok(Some(
                resp.decode_header::<QueryConsumerOffsetResponseHeader>()?
                    .offset,
            )),
            response_code::QUERY_NOT_FOUND => Ok(None),
            code => Err(ClientError::broker(code, resp.remark, &addr)),
        }
    }

    /// Commits `offset` as `group`'s offset of `mq` (UPDATE_CONSUMER_OFFSET), oneway as Java's
    /// periodic persistence does, or waiting for the broker's answer.
    pub async fn update_consumer_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
        oneway: bool,
    ) -> Result<()> {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
        };
        let addr = self
            .master_addr_or_refresh(&mq.broker_name, &mq.topic)
            .await?;
        let request = broker_request(
            request_code::UPDATE_CONSUMER_OFFSET,
            &header,
            &mq.broker_name,
        );
        if oneway {
            return self.invoke_broker_oneway(&addr, request).await;
        }
        let resp = self
            .invoke_broker(&addr, request, self.config().api_timeout())
            .await?;
        if resp.code != response_code::SUCCESS {
            return Err(ClientError::broker(resp.code, resp.remark, &addr));
        }
        Ok(())
    }

    /// Hands a message a consumer failed to process back to the broker
    /// (CONSUMER_SEND_MSG_BACK): the broker re-delivers it through the group's retry topic
    /// after `delay_level` (0: the broker picks `3 + reconsumeTimes`; -1: straight to the
    /// dead-letter queue). `msg.topic` must be the topic as it travels. Goes to the master of
    /// `msg.broker_name`, or to the message's store host when that broker is unknown.
    pub async fn send_message_back(
        &self,
        msg: &MessageExt,
        group: &str,
        delay_level: i32,
        max_reconsume_times: i32,
    ) -> Result<()> {
        let addr = self
            .master_addr(&msg.broker_name)
            .unwrap_or_else(|| msg.store_host.to_string());
        let header = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset,
            group: group.to_owned(),
            delay_level,
            origin_msg_id: Some(msg.msg_id.clone()),
            origin_topic: Some(msg.topic.clone()),
            unit_mode: false,
            max_reconsume_times: Some(max_reconsume_times),
        };
        let request = broker_request(
            request_code::CONSUMER_SEND_MSG_BACK,
            &header,
            &msg.broker_name,
        );
        let resp = self
            .invoke_broker(&addr, request, self.config().api_timeout())
            .await?;
        if resp.code != response_code::SUCCESS {
            return Err(ClientError::broker(resp.code, resp.remark, &addr));
        }
        Ok(())
    }

    /// Locks `mqs` (all of one broker) for `group` on that broker's master (LOCK_BATCH_MQ), as
    /// orderly consumers do before consuming; returns the queues this client now holds.
    pub async fn lock_batch_mq(
        &self,
        broker_name: &str,
        group: &str,
        mqs: BTreeSet<MessageQueue>,
    ) -> Result<BTreeSet<MessageQueue>> {
        let addr = self
            .master_addr(broker_name)
            .ok_or_else(|| ClientError::BrokerNotFound {
                broker_name: broker_name.to_owned(),
            })?;
        let body = LockBatchRequestBody {
            client_id: self.inner.client_id.clone(),
            consumer_group: group.to_owned(),
            mq_set: mqs,
            only_this_broker: false,
        };
        let request =
            RemotingCommand::request(request_code::LOCK_BATCH_MQ).with_body(body.encode()?);
        let resp = self
            .invoke_broker(&addr, request, self.config().api_timeout())
            .await?;
        if resp.code != response_code::SUCCESS {
            return Err(ClientError::broker(resp.code, resp.remark, &addr));
        }
        Ok(LockBatchResponseBody::decode(&resp.body)?.lock_ok_mq_set)
    }

    /// Releases locks taken with [`lock_batch_mq`](Self::lock_batch_mq) (UNLOCK_BATCH_MQ),
    /// oneway or waiting for the broker.
    pub async fn unlock_batch_mq(
        &self,
        broker_name: &str,
        group: &str,
        mqs: BTreeSet<MessageQueue>,
        oneway: bool,
    ) -> Result<()> {
        let addr = self
            .master_addr(broker_name)
            .ok_or_else(|| ClientError::BrokerNotFound {
                broker_name: broker_name.to_owned(),
            })?;
        let body = UnlockBatchRequestBody {
            client_id: self.inner.client_id.clone(),
            consumer_group: group.to_owned(),
            mq_set: mqs,
            only_this_broker: false,
        };
        let request =
            RemotingCommand::request(request_code::UNLOCK_BATCH_MQ).with_body(body.encode()?);
        if oneway {
            return self.invoke_broker_oneway(&addr, request).await;
        }
        let resp = self
            .invoke_broker(&addr, request, self.config().api_timeout())
            .await?;
        if resp.code != response_code::SUCCESS {
            return Err(ClientError::broker(resp.code, resp.remark, &addr));
        }
        Ok(())
    }
}
