//! "Local mode": a [`MessagingBackend`] over the broker in the same process
//! ([`apogee_broker::local::LocalServices`]), as RocketMQ runs its proxy inside the broker.
//!
//! What RocketMQ's proxy does is done here: routes list this broker's queues with the gRPC
//! endpoint as the address to dial; SendMessage turns each message's system properties into
//! stored properties (UNIQ_KEY = the client's message id, TAGS, KEYS, `__SHARDINGKEY` for FIFO,
//! TIMER_DELIVER_MS for DELAY, TRAN_MSG and PGROUP = topic for transactions), checks the topic's
//! `message.type` and picks the FIFO queue by consistent hash of the message group; the rest goes
//! through the broker's own processors. ReceiveMessage, AckMessage and ChangeInvisibleDuration go
//! to the broker's POP API (a receive pops every queue of the topic, FIFO when the group consumes
//! orderly); ForwardMessageToDeadLetterQueue hands the message back with delay level -1, which
//! stores it in `%DLQ%<group>`, then acks it.

mod checkback;
pub mod policy;
pub mod recall;
pub mod renew;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use apogee_broker::local::{
    LocalEndTransaction, LocalError, LocalPull, LocalServices, TransactionResolution,
};
use apogee_broker::pop::{AckOutcome, PopRequest, PopStatus, PoppedMessage, ReceiptHandle};
use apogee_protocol::body::TopicConfig;
use apogee_protocol::codes::perm;
use apogee_protocol::codes::request_code;
use apogee_protocol::codes::response_code as rc;
use apogee_protocol::header::ConsumerSendMsgBackRequestHeader;
use apogee_protocol::message::keys;
use apogee_protocol::RemotingCommand;

use crate::backend::{BackendStream, MessagingBackend, RequestContext};
use crate::convert::{
    ack_response, ack_result, broker_filter, build_send, check_invisible_ms, check_message_type,
    duration_ms, endpoints_of, map_broker_error, map_pop_error, message_queue_required,
    pop_request, popped_to_pb, required_name, resource, send_status, send_topic, timestamp,
    timestamp_ms, to_pb_message,
};
pub use crate::convert::{
    consistent_hash, java_string_hash, TopicMessageType, AUTO_RENEW_INVISIBLE_MS, MAX_INVISIBLE_MS,
    MAX_MESSAGE_GROUP_BYTES, MAX_USER_PROPERTIES, MAX_USER_PROPERTY_BYTES, MESSAGE_TYPE_ATTRIBUTE,
};
use crate::pb;
use crate::session::SessionRegistry;
use crate::status::{ok, status, RpcError, RpcResult};

/// The in-process backend.
#[derive(Debug)]
pub struct LocalBackend {
    services: LocalServices,
    /// Set again once the listener's real port is known (see [`LocalBackend::set_advertised`]).
    endpoints: RwLock<pb::Endpoints>,
    validate_message_type: bool,
    /// Push consumers' receipt handles being renewed (see [`renew`]).
    renewals: Arc<renew::Renewals>,
    renew_config: renew::RenewConfig,
    renew_task: std::sync::OnceLock<()>,
}

impl LocalBackend {
    /// `advertised` is the gRPC address clients dial (the broker's IP and the gRPC port).
    pub fn new(services: LocalServices, advertised: SocketAddr) -> Self {
        Self {
            services,
            endpoints: RwLock::new(endpoints_of(advertised)),
            validate_message_type: true,
            renewals: Arc::default(),
            renew_config: renew::RenewConfig::default(),
            renew_task: std::sync::OnceLock::new(),
        }
    }

    /// Changes how push consumers' receipt handles are renewed.
    pub fn with_renewal(mut self, config: renew::RenewConfig) -> Self {
        self.renew_config = config;
        self
    }

    /// Receipt handles being renewed right now.
    pub fn renewing(&self) -> usize {
        self.renewals.len()
    }

    /// Changes the address routes advertise (e.g. once a listener on port 0 got its port).
    pub fn set_advertised(&self, advertised: SocketAddr) {
        *self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner) = endpoints_of(advertised);
    }

    /// Whether SendMessage checks the topic's `message.type` (`enableTopicMessageTypeCheck`);
    /// keep it equal to the producer settings' `validate_message_type`.
    pub fn with_validate_message_type(mut self, validate: bool) -> Self {
        self.validate_message_type = validate;
        self
    }

    /// The endpoints routes advertise.
    pub fn endpoints(&self) -> pb::Endpoints {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The topic's config, or what a send would auto-create.
    fn topic_or_template(&self, topic: &str) -> RpcResult<TopicConfig> {
        if let Some(config) = self.services.topic(topic) {
            return Ok(config);
        }
        if self.services.can_auto_create_topic(topic) {
            if let Some(template) = self
                .services
                .topic(apogee_broker::names::AUTO_CREATE_TOPIC_KEY_TOPIC)
            {
                let queues = template
                    .write_queue_nums
                    .min(self.services.default_topic_queue_nums());
                let mut config = TopicConfig::new(topic);
                config.read_queue_nums = queues;
                config.write_queue_nums = queues;
                config.perm = perm::READ | perm::WRITE;
                return Ok(config);
            }
        }
        Err(RpcError::new(
            pb::Code::TopicNotFound,
            format!("topic {topic} does not exist"),
        ))
    }

    fn queue(&self, config: &TopicConfig, id: i32, types: &[i32]) -> pb::MessageQueue {
        let readable = perm::is_readable(config.perm) && id < config.read_queue_nums;
        let writable = perm::is_writeable(config.perm)
            && perm::is_writeable(self.services.broker_permission())
            && id < config.write_queue_nums;
        let permission = match (readable, writable) {
            (true, true) => pb::Permission::ReadWrite,
            (true, false) => pb::Permission::Read,
            (false, true) => pb::Permission::Write,
            (false, false) => pb::Permission::None,
        };
        pb::MessageQueue {
            topic: Some(resource(&config.topic_name)),
            id,
            permission: permission as i32,
            broker: Some(pb::Broker {
                name: self.services.broker_name().to_owned(),
                id: self.services.broker_id() as i32,
                endpoints: Some(self.endpoints()),
            }),
            accept_message_types: types.to_vec(),
        }
    }

    fn queues(&self, config: &TopicConfig) -> Vec<pb::MessageQueue> {
        let types = TopicMessageType::of(config).accepted();
        let n = config.read_queue_nums.max(config.write_queue_nums);
        (0..n).map(|id| self.queue(config, id, &types)).collect()
    }

    async fn send_one(
        &self,
        ctx: &RequestContext,
        topic_type: TopicMessageType,
        write_queues: i32,
        message: pb::Message,
    ) -> pb::SendResultEntry {
        match self
            .try_send_one(ctx, topic_type, write_queues, message)
            .await
        {
            Ok(entry) => entry,
            Err(error) => pb::SendResultEntry {
                status: Some(error.to_status()),
                ..Default::default()
            },
        }
    }

    async fn try_send_one(
        &self,
        ctx: &RequestContext,
        topic_type: TopicMessageType,
        write_queues: i32,
        message: pb::Message,
    ) -> RpcResult<pb::SendResultEntry> {
        let topic = message
            .topic
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let built = build_send(&topic, message, ctx.remote_addr)?;
        let mut send = built.send;
        if self.validate_message_type {
            check_message_type(topic_type, &send.properties)?;
        }
        if let Some(group) = send.properties.get(keys::SHARDING_KEY) {
            if write_queues > 0 {
                send.queue_id = consistent_hash(java_string_hash(group), write_queues);
            }
        }
        let result = self.services.send(send).await.map_err(map_broker_error)?;
        let code = match result.code {
            rc::SUCCESS => pb::Code::Ok,
            rc::FLUSH_DISK_TIMEOUT => pb::Code::MasterPersistenceTimeout,
            rc::FLUSH_SLAVE_TIMEOUT => pb::Code::SlavePersistenceTimeout,
            _ => pb::Code::HaNotAvailable,
        };
        if code != pb::Code::Ok {
            return Err(RpcError::new(
                code,
                format!("send message failed, code {}", result.code),
            ));
        }
        Ok(pb::SendResultEntry {
            status: Some(ok()),
            message_id: built.message_id,
            transaction_id: result.transaction_handle.unwrap_or_default(),
            offset: result.queue_offset,
            recall_handle: result.recall_handle.unwrap_or_default(),
        })
    }
}

impl LocalBackend {
    /// Starts renewing the handles of `popped`, received by push consumer `client_id`.
    fn track_renewals(&self, client_id: &str, group: &str, topic: &str, popped: &[PoppedMessage]) {
        renew::ensure_task(
            &self.renew_task,
            &self.renewals,
            self.services.pop_api(),
            self.renew_config,
        );
        self.renewals.track_popped(
            client_id,
            group,
            topic,
            popped,
            self.renew_config.max_handles,
        );
    }

    /// The pop a ReceiveMessage asks for.
    fn pop_request(&self, request: pb::ReceiveMessageRequest) -> RpcResult<PopRequest> {
        let auto_renew_ms =
            i64::try_from(self.renew_config.invisible.as_millis()).unwrap_or(i64::MAX);
        let mut pop = pop_request(request, auto_renew_ms)?;
        pop.fifo = self
            .services
            .subscription_group(&pop.group)
            .is_some_and(|g| g.consume_message_orderly);
        Ok(pop)
    }
}

#[async_trait::async_trait]
impl MessagingBackend for LocalBackend {
    fn attach_sessions(&self, sessions: &Arc<SessionRegistry>) {
        checkback::install(&self.services, sessions);
    }

    async fn client_offline(
        &self,
        client_id: &str,
        _session: Option<&crate::session::ClientSession>,
        _reason: crate::backend::OfflineReason,
    ) {
        renew::release(
            &self.renewals,
            &self.services.pop_api(),
            &self.renew_config,
            client_id,
        );
    }

    async fn group_policy(
        &self,
        _ctx: &RequestContext,
        group: &pb::Resource,
    ) -> RpcResult<Option<crate::config::GroupPolicy>> {
        Ok(self
            .services
            .subscription_group(&group.name)
            .map(|g| policy::group_policy_of(&g)))
    }

    async fn query_route(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryRouteRequest,
    ) -> RpcResult<pb::QueryRouteResponse> {
        let topic = required_name(&request.topic, "topic")?;
        let config = self.topic_or_template(topic)?;
        Ok(pb::QueryRouteResponse {
            status: Some(ok()),
            message_queues: self.queues(&config),
        })
    }

    async fn send_message(
        &self,
        ctx: &RequestContext,
        request: pb::SendMessageRequest,
    ) -> RpcResult<pb::SendMessageResponse> {
        let topic = send_topic(&request)?;
        let config = self.topic_or_template(&topic)?;
        let topic_type = TopicMessageType::of(&config);
        let mut entries = Vec::with_capacity(request.messages.len());
        for message in request.messages {
            entries.push(
                self.send_one(ctx, topic_type, config.write_queue_nums, message)
                    .await,
            );
        }
        let overall = send_status(&entries);
        Ok(pb::SendMessageResponse {
            status: Some(overall),
            entries,
        })
    }

    async fn query_assignment(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryAssignmentRequest,
    ) -> RpcResult<pb::QueryAssignmentResponse> {
        let topic = required_name(&request.topic, "topic")?;
        required_name(&request.group, "group")?;
        let config = self.services.topic(topic).ok_or_else(|| {
            RpcError::new(
                pb::Code::TopicNotFound,
                format!("topic {topic} does not exist"),
            )
        })?;
        let assignments = self
            .queues(&config)
            .into_iter()
            .filter(|q| {
                q.permission == pb::Permission::Read as i32
                    || q.permission == pb::Permission::ReadWrite as i32
            })
            .map(|q| pb::Assignment {
                message_queue: Some(q),
            })
            .collect();
        Ok(pb::QueryAssignmentResponse {
            status: Some(ok()),
            assignments,
        })
    }

    async fn receive_message(
        &self,
        ctx: &RequestContext,
        request: pb::ReceiveMessageRequest,
    ) -> RpcResult<BackendStream<pb::ReceiveMessageResponse>> {
        use pb::receive_message_response::Content;
        let auto_renew = request.auto_renew;
        let pop = self.pop_request(request)?;
        let renew_for = ctx
            .client_id()
            .filter(|_| auto_renew)
            .map(|id| (id.to_owned(), pop.group.clone(), pop.topic.clone()));
        let result = self
            .services
            .pop_api()
            .pop(pop)
            .await
            .map_err(map_pop_error)?;
        let mut items = Vec::with_capacity(result.messages.len() + 2);
        let mut messages = Vec::with_capacity(result.messages.len());
        for popped in &result.messages {
            messages.push(popped_to_pb(popped)?);
        }
        if let Some((client_id, group, topic)) = renew_for.filter(|_| !messages.is_empty()) {
            self.track_renewals(&client_id, &group, &topic, &result.messages);
        }
        if result.status != PopStatus::Found || messages.is_empty() {
            items.push(pb::ReceiveMessageResponse {
                content: Some(Content::Status(status(
                    pb::Code::MessageNotFound,
                    "no match message",
                ))),
            });
        } else {
            items.push(pb::ReceiveMessageResponse {
                content: Some(Content::Status(ok())),
            });
            items.extend(messages.into_iter().map(|m| pb::ReceiveMessageResponse {
                content: Some(Content::Message(m)),
            }));
            items.push(pb::ReceiveMessageResponse {
                content: Some(Content::DeliveryTimestamp(timestamp(result.pop_time_ms))),
            });
        }
        Ok(Box::pin(tokio_stream::iter(items)))
    }

    async fn ack_message(
        &self,
        _ctx: &RequestContext,
        request: pb::AckMessageRequest,
    ) -> RpcResult<pb::AckMessageResponse> {
        let group = required_name(&request.group, "group")?;
        let topic = required_name(&request.topic, "topic")?;
        if request.entries.is_empty() {
            return Err(RpcError::new(pb::Code::BadRequest, "no entry to ack"));
        }
        let api = self.services.pop_api();
        let entries: Vec<pb::AckMessageResultEntry> = request
            .entries
            .iter()
            .map(|entry| {
                let outcome = if entry.receipt_handle.is_empty() {
                    Err(RpcError::new(
                        pb::Code::InvalidReceiptHandle,
                        "receipt handle cannot be empty",
                    ))
                } else {
                    let handle = self.renewals.take(group, &entry.receipt_handle);
                    api.ack(group, topic, &handle, None)
                        .map_err(map_pop_error)
                        .and_then(|outcome| match outcome {
                            // Acking what is no longer in flight (acked already) succeeds, as
                            // the broker's ack does.
                            AckOutcome::Acked | AckOutcome::NotInFlight => Ok(()),
                            AckOutcome::Stale => Err(RpcError::new(
                                pb::Code::InvalidReceiptHandle,
                                "receipt handle is expired: the message was delivered again",
                            )),
                        })
                };
                ack_result(entry, outcome)
            })
            .collect();
        Ok(ack_response(entries))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        ctx: &RequestContext,
        request: pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse> {
        let group = required_name(&request.group, "group")?.to_owned();
        let topic = required_name(&request.topic, "topic")?.to_owned();
        let current = self.renewals.take(&group, &request.receipt_handle);
        let handle = ReceiptHandle::parse(&current).map_err(map_pop_error)?;
        let commit_log_offset = handle.commit_log_offset.ok_or_else(|| {
            RpcError::new(
                pb::Code::InvalidReceiptHandle,
                "receipt handle has no commit log offset",
            )
        })?;
        // The broker's send-back with delay level -1 copies the message into %DLQ%<group>.
        let header = ConsumerSendMsgBackRequestHeader {
            offset: commit_log_offset,
            group: group.clone(),
            delay_level: -1,
            origin_msg_id: Some(request.message_id.clone()).filter(|id| !id.is_empty()),
            origin_topic: Some(topic.clone()),
            unit_mode: false,
            max_reconsume_times: Some(request.max_delivery_attempts.max(1) - 1),
        };
        let response = self
            .services
            .invoke(
                ctx.remote_addr,
                RemotingCommand::request_with_header(request_code::CONSUMER_SEND_MSG_BACK, &header),
            )
            .await;
        if response.code != rc::SUCCESS {
            return Err(map_broker_error(LocalError {
                code: response.code,
                remark: response.remark.unwrap_or_default(),
            }));
        }
        self.services
            .pop_api()
            .ack(&group, &topic, &current, None)
            .map_err(map_pop_error)?;
        Ok(pb::ForwardMessageToDeadLetterQueueResponse { status: Some(ok()) })
    }

    async fn change_invisible_duration(
        &self,
        _ctx: &RequestContext,
        request: pb::ChangeInvisibleDurationRequest,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse> {
        let group = required_name(&request.group, "group")?;
        let topic = required_name(&request.topic, "topic")?;
        if request.receipt_handle.is_empty() {
            return Err(RpcError::new(
                pb::Code::InvalidReceiptHandle,
                "receipt handle cannot be empty",
            ));
        }
        let invisible_ms = request
            .invisible_duration
            .as_ref()
            .map(duration_ms)
            .ok_or_else(|| {
                RpcError::new(
                    pb::Code::IllegalInvisibleTime,
                    "invisible duration is required",
                )
            })?;
        check_invisible_ms(invisible_ms)?;
        let current = self.renewals.take(group, &request.receipt_handle);
        let changed = self
            .services
            .pop_api()
            .change_invisible(group, topic, &current, None, invisible_ms)
            .map_err(map_pop_error)?;
        Ok(pb::ChangeInvisibleDurationResponse {
            status: Some(ok()),
            receipt_handle: changed.receipt_handle,
        })
    }

    async fn end_transaction(
        &self,
        ctx: &RequestContext,
        request: pb::EndTransactionRequest,
    ) -> RpcResult<pb::EndTransactionResponse> {
        let topic = required_name(&request.topic, "topic")?.to_owned();
        if request.transaction_id.is_empty() {
            return Err(RpcError::new(
                pb::Code::InvalidTransactionId,
                "transaction id cannot be empty",
            ));
        }
        let resolution = match pb::TransactionResolution::try_from(request.resolution) {
            Ok(pb::TransactionResolution::Commit) => TransactionResolution::Commit,
            Ok(pb::TransactionResolution::Rollback) => TransactionResolution::Rollback,
            // Unknown leaves the half message to the check-back, as the broker does.
            _ => {
                return Ok(pb::EndTransactionResponse { status: Some(ok()) });
            }
        };
        let from_check = request.source == pb::TransactionSource::SourceServerCheck as i32;
        let end = LocalEndTransaction {
            producer_group: topic.clone(),
            topic,
            msg_id: request.message_id,
            transaction_handle: request.transaction_id,
            resolution,
            from_check,
            peer: ctx.remote_addr,
        };
        match self.services.end_transaction(end).await {
            Ok(()) => Ok(pb::EndTransactionResponse { status: Some(ok()) }),
            Err(e) if e.code == rc::INVALID_PARAMETER => {
                Err(RpcError::new(pb::Code::InvalidTransactionId, e.remark))
            }
            Err(e) => Err(map_broker_error(e)),
        }
    }

    async fn pull_message(
        &self,
        ctx: &RequestContext,
        request: pb::PullMessageRequest,
    ) -> RpcResult<BackendStream<pb::PullMessageResponse>> {
        use pb::pull_message_response::Content;
        let group = required_name(&request.group, "group")?.to_owned();
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?.to_owned();
        let (expression_type, expression) = broker_filter(request.filter_expression);
        let result = self
            .services
            .pull(LocalPull {
                group,
                topic,
                queue_id: queue.id,
                offset: request.offset,
                max_messages: request.batch_size.clamp(1, 32),
                expression_type: expression_type.to_owned(),
                expression,
                peer: ctx.remote_addr,
            })
            .await
            .map_err(map_broker_error)?;
        let head = match result.code {
            rc::SUCCESS => ok(),
            rc::PULL_OFFSET_MOVED => status(pb::Code::IllegalOffset, "the offset is out of range"),
            _ => status(pb::Code::MessageNotFound, "no new message"),
        };
        let mut items = vec![pb::PullMessageResponse {
            content: Some(Content::Status(head)),
        }];
        items.extend(result.messages.iter().map(|r| pb::PullMessageResponse {
            content: Some(Content::Message(to_pb_message(r))),
        }));
        items.push(pb::PullMessageResponse {
            content: Some(Content::NextOffset(result.next_offset)),
        });
        Ok(Box::pin(tokio_stream::iter(items)))
    }

    async fn update_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::UpdateOffsetRequest,
    ) -> RpcResult<pb::UpdateOffsetResponse> {
        let group = required_name(&request.group, "group")?;
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?;
        self.services
            .update_consumer_offset(group, topic, queue.id, request.offset)
            .await
            .map_err(map_broker_error)?;
        Ok(pb::UpdateOffsetResponse { status: Some(ok()) })
    }

    async fn get_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::GetOffsetRequest,
    ) -> RpcResult<pb::GetOffsetResponse> {
        let group = required_name(&request.group, "group")?;
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?;
        match self
            .services
            .query_consumer_offset(group, topic, queue.id)
            .await
            .map_err(map_broker_error)?
        {
            Some(offset) => Ok(pb::GetOffsetResponse {
                status: Some(ok()),
                offset,
            }),
            None => Err(RpcError::new(
                pb::Code::OffsetNotFound,
                format!("group {group} has no offset for {topic} queue {}", queue.id),
            )),
        }
    }

    async fn query_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryOffsetRequest,
    ) -> RpcResult<pb::QueryOffsetResponse> {
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?;
        let offset = match pb::QueryOffsetPolicy::try_from(request.query_offset_policy) {
            Ok(pb::QueryOffsetPolicy::Beginning) => self.services.min_offset(topic, queue.id).await,
            Ok(pb::QueryOffsetPolicy::End) => self.services.max_offset(topic, queue.id).await,
            Ok(pb::QueryOffsetPolicy::Timestamp) => {
                let ts = request
                    .timestamp
                    .as_ref()
                    .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "timestamp is required"))?;
                self.services
                    .offset_by_timestamp(topic, queue.id, timestamp_ms(ts))
                    .await
            }
            Err(_) => {
                return Err(RpcError::new(
                    pb::Code::BadRequest,
                    "unknown query offset policy",
                ))
            }
        }
        .map_err(map_broker_error)?;
        Ok(pb::QueryOffsetResponse {
            status: Some(ok()),
            offset,
        })
    }

    async fn recall_message(
        &self,
        ctx: &RequestContext,
        request: pb::RecallMessageRequest,
    ) -> RpcResult<pb::RecallMessageResponse> {
        recall::recall(&self.services, request, ctx.remote_addr).await
    }

    async fn sync_lite_subscription(
        &self,
        _: &RequestContext,
        _: pb::SyncLiteSubscriptionRequest,
    ) -> RpcResult<pb::SyncLiteSubscriptionResponse> {
        Err(RpcError::not_implemented("SyncLiteSubscription"))
    }
}
