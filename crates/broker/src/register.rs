//! Registration with name servers (`BrokerOuterAPI.registerBrokerAll`): REGISTER_BROKER to every
//! configured name server in parallel at start (before the broker reports itself started, as
//! RocketMQ does), every `registerNameServerPeriod`, and right after a topic change;
//! UNREGISTER_BROKER at shutdown.

use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::body::{JsonBody, RegisterBrokerBody};
use apogee_protocol::codes::perm;
use apogee_protocol::codes::request_code::{REGISTER_BROKER, UNREGISTER_BROKER};
use apogee_protocol::codes::response_code::SUCCESS;
use apogee_protocol::header::{RegisterBrokerRequestHeader, UnRegisterBrokerRequestHeader};
use apogee_protocol::message::crc32_masked;
use apogee_protocol::RemotingCommand;
use apogee_remoting::RemotingClient;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::broker::BrokerInner;

/// How long UNREGISTER_BROKER may take per name server at shutdown.
const UNREGISTER_TIMEOUT_MS: u64 = 3_000;

/// The REGISTER_BROKER request for the broker's current topics, and the topic data version
/// (counter) it carries. A broker that is not both readable and writable (`brokerPermission`)
/// registers every topic with its permission masked by the broker's, as RocketMQ does, so that
/// routes steer producers (or consumers) away from it.
pub(crate) fn register_request(inner: &BrokerInner) -> Option<(RemotingCommand, i64)> {
    let mut wrapper = inner.topics.wrapper();
    let broker_perm = inner.live.broker_permission();
    if !perm::is_writeable(broker_perm) || !perm::is_readable(broker_perm) {
        for config in wrapper.topic_config_table.values_mut() {
            config.perm &= broker_perm;
        }
    }
    let version = wrapper.data_version.counter;
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: wrapper,
    };
    let bytes = match body.encode() {
        Ok(b) => b,
        Err(e) => {
            warn!("cannot encode the registration body: {e}");
            return None;
        }
    };
    let header = RegisterBrokerRequestHeader {
        broker_name: inner.config.broker_name.clone(),
        broker_addr: inner.broker_addr.clone(),
        cluster_name: inner.config.broker_cluster_name.clone(),
        ha_server_addr: inner.ha_server_addr.clone(),
        broker_id: inner.config.broker_id,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: false,
        body_crc32: crc32_masked(&bytes) as i32,
        zone_name: None,
    };
    Some((
        RemotingCommand::request_with_header(REGISTER_BROKER, &header).with_body(bytes),
        version,
    ))
}

/// Registers with every name server in parallel; returns how many accepted. Once every call has
/// finished, the topic data version it carried is published for [`BrokerInner::wait_registered`].
pub(crate) async fn register_all(inner: &BrokerInner, client: &RemotingClient) -> usize {
    let addrs = &inner.config.namesrv_addrs;
    if addrs.is_empty() {
        return 0;
    }
    let Some((request, version)) = register_request(inner) else {
        return 0;
    };
    let timeout = Duration::from_millis(inner.config.register_broker_timeout_ms);
    let mut calls = JoinSet::new();
    for addr in addrs {
        let client = client.clone();
        let request = request.clone();
        let addr = addr.clone();
        calls.spawn(async move {
            let result = client.invoke(&addr, request, timeout).await;
            (addr, result)
        });
    }
    let mut ok = 0;
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((addr, Ok(resp))) if resp.code == SUCCESS => {
                debug!(namesrv = %addr, "registered with name server");
                ok += 1;
            }
            Ok((addr, Ok(resp))) => {
                warn!(namesrv = %addr, code = resp.code, remark = ?resp.remark, "name server refused the registration")
            }
            Ok((addr, Err(e))) => warn!(namesrv = %addr, error = %e, "registration failed"),
            Err(e) => warn!("registration task failed: {e}"),
        }
    }
    inner.registered_topics_version.send_if_modified(|v| {
        let newer = version > *v;
        if newer {
            *v = version;
        }
        newer
    });
    ok
}

/// Tells every name server the broker is leaving.
pub(crate) async fn unregister_all(inner: &BrokerInner, client: &RemotingClient) {
    let header = UnRegisterBrokerRequestHeader {
        broker_name: inner.config.broker_name.clone(),
        broker_addr: inner.broker_addr.clone(),
        cluster_name: inner.config.broker_cluster_name.clone(),
        broker_id: inner.config.broker_id,
    };
    let request = RemotingCommand::request_with_header(UNREGISTER_BROKER, &header);
    let mut calls = JoinSet::new();
    for addr in &inner.config.namesrv_addrs {
        let client = client.clone();
        let request = request.clone();
        let addr = addr.clone();
        calls.spawn(async move {
            let r = client
                .invoke(&addr, request, Duration::from_millis(UNREGISTER_TIMEOUT_MS))
                .await;
            (addr, r)
        });
    }
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((addr, Ok(_))) => info!(namesrv = %addr, "unregistered from name server"),
            Ok((addr, Err(e))) => warn!(namesrv = %addr, error = %e, "unregistration failed"),
            Err(e) => warn!("unregistration task failed: {e}"),
        }
    }
}

/// The registration loop, after the first registration that [`Broker::start`] makes itself:
/// every period and after each topic change, until stopped.
///
/// [`Broker::start`]: crate::Broker::start
pub(crate) async fn run(
    inner: Arc<BrokerInner>,
    client: RemotingClient,
    mut stop: watch::Receiver<bool>,
) {
    if inner.config.namesrv_addrs.is_empty() {
        return;
    }
    let period = Duration::from_millis(inner.config.register_period_ms());
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(period) => {}
            _ = inner.topics_changed.notified() => {}
        }
        let registration = register_all(&inner, &client);
        tokio::select! {
            _ = stop.changed() => return,
            _ = registration => {}
        }
    }
}
