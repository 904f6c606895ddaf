//! Client membership: HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38),
//! CHECK_CLIENT_CONFIG (46) (`ClientManageProcessor`, `ConsumerManageProcessor.getConsumerListByGroup`).
//! Membership changes send NOTIFY_CONSUMER_IDS_CHANGED (40) to the group's channels. Heartbeats
//! register the SQL92 filters of their subscriptions; a bad expression does not fail the
//! heartbeat (as in RocketMQ) but is refused by CHECK_CLIENT_CONFIG, which Java consumers send
//! before they start, and reported to the pulls that need it.

use std::sync::Arc;

use apogee_protocol::body::{
    CheckClientRequestBody, ConsumerData, GetConsumerListByGroupResponseBody, HeartbeatData,
    JsonBody, SubscriptionData,
};
use apogee_protocol::codes::perm;
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{GetConsumerListByGroupRequestHeader, UnregisterClientRequestHeader};
use apogee_protocol::message::java_string_hash;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{not_supported, HandlerFuture, RequestContext};

use super::{header, persist_error, respond, success, try_reply};
use crate::broker::BrokerInner;
use crate::filter::{tags_of, unsupported_remark, ExpressionKind, SUB_ALL};
use crate::manager::{lock, now_ms, ClientChannel, ConsumerRegistration};
use crate::names;

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let response = match req.code {
        rc::HEART_BEAT => try_reply!(heartbeat(b, &ctx, &req)),
        rc::UNREGISTER_CLIENT => try_reply!(unregister(b, &ctx, &req)),
        rc::CHECK_CLIENT_CONFIG => check_client_config(b, &req),
        rc::GET_CONSUMER_LIST_BY_GROUP => {
            let h: GetConsumerListByGroupRequestHeader = try_reply!(header(&req));
            let ids = b.consumers.client_ids(&h.consumer_group);
            if ids.is_empty() {
                respond(
                    SYSTEM_ERROR,
                    format!("no consumer for this group, {}", h.consumer_group),
                )
            } else {
                let body = GetConsumerListByGroupResponseBody {
                    consumer_id_list: ids,
                };
                match body.encode() {
                    Ok(bytes) => success().with_body(bytes),
                    Err(e) => respond(SYSTEM_ERROR, e.to_string()),
                }
            }
        }
        _ => not_supported(&req),
    };
    HandlerFuture::reply(response)
}

fn channel(ctx: &RequestContext, req: &RemotingCommand, client_id: &str) -> ClientChannel {
    ClientChannel {
        connection: ctx.connection().clone(),
        client_id: client_id.to_owned(),
        language: req.language,
        version: req.version,
        last_update_ms: now_ms(),
    }
}

/// Fills `tagsSet`/`codeSet` from the expression when a client left them out (the C++ client
/// does), so the registered subscription reads the same as a Java client's.
fn normalized(sub: &SubscriptionData) -> SubscriptionData {
    let mut sub = sub.clone();
    if sub.expression_type.is_empty() {
        sub.expression_type = crate::filter::EXPRESSION_TYPE_TAG.to_owned();
    }
    if sub.sub_string.trim().is_empty() {
        sub.sub_string = SUB_ALL.to_owned();
    }
    if sub.expression_type == crate::filter::EXPRESSION_TYPE_TAG
        && sub.tags_set.is_empty()
        && sub.code_set.is_empty()
    {
        sub.tags_set = tags_of(&sub.sub_string);
        sub.code_set = sub.tags_set.iter().map(|t| java_string_hash(t)).collect();
    }
    sub
}

fn heartbeat(
    b: &Arc<BrokerInner>,
    ctx: &RequestContext,
    req: &RemotingCommand,
) -> Result<RemotingCommand, RemotingCommand> {
    let data = HeartbeatData::decode(&req.body).map_err(|e| {
        respond(
            SYSTEM_ERROR,
            format!("cannot decode the heartbeat body: {e}"),
        )
    })?;
    let channel = channel(ctx, req, &data.client_id);
    b.watch_connection(ctx.connection());
    let v2 = data.heartbeat_fingerprint != 0;
    let mut sub_changed = !v2;
    for consumer in &data.consumer_data_set {
        if v2 {
            let mut prints = lock(&b.heartbeat_fingerprints);
            let previous = prints.insert(consumer.group_name.clone(), data.heartbeat_fingerprint);
            // Java only compares fingerprints. A subscription-less heartbeat for a group this
            // broker has never seen (it restarted) also asks the client for the full data, or the
            // broker would never learn the group's subscriptions.
            let unknown = previous.is_none() && data.without_sub;
            if unknown || previous.is_some_and(|p| p != data.heartbeat_fingerprint) {
                sub_changed = true;
            }
        }
        register_consumer(b, consumer, channel.clone(), v2 && data.without_sub)?;
    }
    for producer in &data.producer_data_set {
        if !producer.group_name.is_empty() {
            b.producers.register(&producer.group_name, channel.clone());
        }
    }
    let mut response = success();
    response
        .ext_fields
        .insert(names::IS_SUPPORT_HEART_BEAT_V2, "true");
    response.ext_fields.insert(
        names::IS_SUB_CHANGE,
        if sub_changed { "true" } else { "false" },
    );
    Ok(response)
}

fn register_consumer(
    b: &Arc<BrokerInner>,
    consumer: &ConsumerData,
    channel: ClientChannel,
    without_sub: bool,
) -> Result<(), RemotingCommand> {
    let group = consumer.group_name.as_str();
    // Unknown groups that cannot be created (auto-create off, or a bad name) are skipped, as in Java.
    let Some(group_config) = b.groups.find_or_create(group).map_err(persist_error)? else {
        return Ok(());
    };
    let has_order_topic = consumer
        .subscription_data_set
        .iter()
        .any(|s| b.topics.is_order_topic(&s.topic));
    let topic_sys_flag = if consumer.unit_mode { 0x2 } else { 0 };
    b.topics
        .create_in_send_back(
            &names::retry_topic(group),
            group_config.retry_queue_nums,
            perm::READ | perm::WRITE,
            has_order_topic,
            topic_sys_flag,
        )
        .map_err(persist_error)?;
    let subs: Vec<SubscriptionData> = consumer
        .subscription_data_set
        .iter()
        .map(normalized)
        .collect();
    let membership = b.consumers.register(
        ConsumerRegistration {
            group,
            consume_type: consumer.consume_type,
            message_model: consumer.message_model,
            consume_from_where: consumer.consume_from_where,
            subscriptions: if without_sub { None } else { Some(&subs) },
            notify_enabled: group_config.notify_consumer_ids_changed_enable,
        },
        channel,
    );
    if membership.changed {
        tracing::info!(group, "consumer group membership changed");
    }
    b.apply_membership(membership);
    if !without_sub {
        register_filters(b, group, &subs);
    }
    Ok(())
}

/// Compiles the group's SQL92 subscriptions; the heartbeat succeeds whatever they hold.
fn register_filters(b: &BrokerInner, group: &str, subs: &[SubscriptionData]) {
    for (topic, why) in b.filters.register_group(group, subs) {
        tracing::warn!(group, topic = %topic, "consumer subscribed with a bad filter: {why}");
    }
    // Filters of groups that went away are dropped once they outnumber the live groups.
    let registered = b.filters.group_count();
    if registered > 64 {
        let online: std::collections::HashSet<String> =
            b.consumers.group_names().into_iter().collect();
        if registered > online.len() * 2 {
            b.filters.retain_groups(|g| online.contains(g));
        }
    }
}

/// CHECK_CLIENT_CONFIG (`ClientManageProcessor.checkClientConfig`): whether this broker can
/// filter by the subscription, with the parser's message when the expression is bad.
fn check_client_config(b: &BrokerInner, req: &RemotingCommand) -> RemotingCommand {
    let body = match CheckClientRequestBody::decode(&req.body) {
        Ok(body) => body,
        Err(e) => {
            return respond(
                SYSTEM_ERROR,
                format!("cannot decode the check-client body: {e}"),
            )
        }
    };
    let Some(sub) = body.subscription_data else {
        return success();
    };
    match ExpressionKind::of(Some(&sub.expression_type)) {
        ExpressionKind::Tag => success(),
        _ if !b.config.enable_property_filter => {
            respond(SYSTEM_ERROR, unsupported_remark(&sub.expression_type))
        }
        ExpressionKind::Sql92 => match b.filters.compile(&sub.sub_string) {
            Ok(_) => success(),
            Err(e) => {
                tracing::warn!(
                    client = body.client_id.as_deref().unwrap_or(""),
                    group = body.group.as_deref().unwrap_or(""),
                    topic = %sub.topic,
                    "consumer checked a bad filter: {e}"
                );
                respond(SUBSCRIPTION_PARSE_FAILED, e.to_string())
            }
        },
        ExpressionKind::Other(ty) => respond(
            SUBSCRIPTION_PARSE_FAILED,
            format!("unknown expression type {ty:?}: this broker filters by TAG or SQL92"),
        ),
    }
}

fn unregister(
    b: &Arc<BrokerInner>,
    ctx: &RequestContext,
    req: &RemotingCommand,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: UnregisterClientRequestHeader = header(req)?;
    let id = ctx.connection().id();
    if let Some(group) = h.producer_group.as_deref().filter(|g| !g.is_empty()) {
        b.producers.unregister(group, id);
    }
    if let Some(group) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
        let notify = b
            .groups
            .get(group)
            .map(|g| g.notify_consumer_ids_changed_enable)
            .unwrap_or(true);
        let membership = b.consumers.unregister(group, id, notify);
        b.apply_membership(membership);
    }
    Ok(success())
}
