//! Scripted fake name servers and brokers built from `RemotingServer`: each answers with a
//! closure, records every request it gets (with the connection it came on) and lets the test
//! wait for the next one.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apogee_client::ClientConfig;
use apogee_protocol::body::{BrokerData, JsonBody, QueueData, TopicRouteData};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{
    GetRouteInfoRequestHeader, SendMessageRequestHeader, SendMessageResponseHeader,
};
use apogee_protocol::message::{keys, MessageProperties, OffsetMsgId};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{
    ConnectionHandle, HandlerFuture, RemotingConfig, RemotingServer, RequestContext,
};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(10);

/// A request as a fake server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub request: RemotingCommand,
    pub conn: ConnectionHandle,
}

pub struct Fake {
    pub server: RemotingServer,
    pub addr: String,
    rx: mpsc::UnboundedReceiver<Seen>,
}

type Script = dyn Fn(&RemotingCommand) -> Option<RemotingCommand> + Send + Sync;

impl Fake {
    /// A server on 127.0.0.1:0 answering with `script` (`None`: no answer).
    pub async fn start(
        script: impl Fn(&RemotingCommand) -> Option<RemotingCommand> + Send + Sync + 'static,
    ) -> Fake {
        let (tx, rx) = mpsc::unbounded_channel();
        let script: Arc<Script> = Arc::new(script);
        let server = RemotingServer::bind(
            "127.0.0.1:0",
            RemotingConfig::default(),
            move |ctx: RequestContext, req: RemotingCommand| {
                let _ = tx.send(Seen {
                    request: req.clone(),
                    conn: ctx.connection().clone(),
                });
                HandlerFuture::ready(script(&req).map(|r| r.with_opaque(req.opaque)))
            },
        )
        .await
        .expect("fake server binds");
        let addr = server.local_addr().to_string();
        Fake { server, addr, rx }
    }

    /// The next request with `code` (earlier ones with other codes are skipped).
    pub async fn next_with_code(&mut self, code: i32) -> Seen {
        loop {
            let seen = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no request with code {code} arrived"))
                .expect("fake server alive");
            if seen.request.code == code {
                return seen;
            }
        }
    }

    /// Every request received so far that has `code`, without waiting.
    pub fn drain_with_code(&mut self, code: i32) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Ok(seen) = self.rx.try_recv() {
            if seen.request.code == code {
                out.push(seen);
            }
        }
        out
    }
}

/// A route where each broker has `queues` read and write queues and a master at its address.
pub fn route(brokers: &[(&str, &str)], queues: i32) -> TopicRouteData {
    TopicRouteData {
        broker_datas: brokers
            .iter()
            .map(|(name, addr)| BrokerData {
                broker_addrs: BTreeMap::from([(0, (*addr).to_owned())]),
                broker_name: (*name).to_owned(),
                cluster: "DefaultCluster".into(),
                ..Default::default()
            })
            .collect(),
        queue_datas: brokers
            .iter()
            .map(|(name, _)| QueueData {
                broker_name: (*name).to_owned(),
                perm: 6,
                read_queue_nums: queues,
                write_queue_nums: queues,
                topic_sys_flag: 0,
            })
            .collect(),
        ..Default::default()
    }
}

/// A fake name server serving `routes` (topic -> route); other topics are TOPIC_NOT_EXIST.
pub async fn name_server(routes: HashMap<String, TopicRouteData>) -> Fake {
    Fake::start(move |req| {
        if req.code != request_code::GET_ROUTEINFO_BY_TOPIC {
            return Some(RemotingCommand::response(response_code::SUCCESS, None));
        }
        let topic = req
            .decode_header::<GetRouteInfoRequestHeader>()
            .map(|h| h.topic)
            .unwrap_or_default();
        Some(match routes.get(&topic) {
            Some(r) => RemotingCommand::response(response_code::SUCCESS, None)
                .with_body(r.encode_standard().expect("route encodes")),
            None => RemotingCommand::response(
                response_code::TOPIC_NOT_EXIST,
                Some(format!(
                    "No topic route info in name server for the topic: {topic}"
                )),
            ),
        })
    })
    .await
}

/// The answer a broker at `addr` gives to a send: a fresh queue offset and the message's
/// UNIQ_KEY as transaction id.
pub fn send_ok(addr: &str, req: &RemotingCommand, next_offset: &AtomicI64) -> RemotingCommand {
    let h = SendMessageRequestHeader::from_ext_fields_v2(&req.ext_fields).expect("V2 send header");
    let props = MessageProperties::decode_str(h.properties.as_deref().unwrap_or_default());
    let offset = next_offset.fetch_add(1, Ordering::SeqCst);
    let store_host = addr.parse().expect("socket address");
    let header = SendMessageResponseHeader {
        msg_id: OffsetMsgId::new(store_host, 1000 + offset).to_string(),
        queue_id: h.queue_id,
        queue_offset: offset,
        transaction_id: props.get(keys::UNIQ_KEY).map(str::to_owned),
        ..Default::default()
    };
    let mut r = RemotingCommand::response(response_code::SUCCESS, None).with_header(&header);
    r.ext_fields.insert("MSG_REGION", "DefaultRegion");
    r.ext_fields.insert("TRACE_ON", "true");
    r
}

/// The send header of a request.
pub fn send_header_of(req: &RemotingCommand) -> SendMessageRequestHeader {
    SendMessageRequestHeader::from_ext_fields_v2(&req.ext_fields).expect("V2 send header")
}

/// A client configuration for `name_server` with an instance name of its own, so that tests
/// running in parallel never share an instance.
pub fn client_config(name_server: &str, instance: &str) -> ClientConfig {
    let mut c = ClientConfig::new(name_server);
    c.instance_name = instance.to_owned();
    c.client_ip = Some("127.0.0.1".into());
    c
}
