//! Registration with name servers, against a fake name server that records what it receives.

use std::time::Duration;

use apogee_protocol::body::{JsonBody, RegisterBrokerBody};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::SUCCESS;
use apogee_protocol::header::{RegisterBrokerRequestHeader, UnRegisterBrokerRequestHeader};
use apogee_protocol::message::crc32_masked;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RemotingConfig, RemotingServer, RequestContext};
use tokio::sync::mpsc;

use crate::common::*;

async fn fake_namesrv() -> (RemotingServer, mpsc::UnboundedReceiver<RemotingCommand>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = RemotingServer::bind(
        "127.0.0.1:0",
        RemotingConfig::default(),
        move |_ctx: RequestContext, req: RemotingCommand| {
            let _ = tx.send(req);
            HandlerFuture::reply(RemotingCommand::response(SUCCESS, None))
        },
    )
    .await
    .unwrap();
    (server, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<RemotingCommand>) -> RemotingCommand {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a request reaches the name server")
        .expect("name server alive")
}

#[tokio::test]
async fn broker_registers_with_every_name_server_and_unregisters_at_shutdown() {
    let (ns1, mut rx1) = fake_namesrv().await;
    let (ns2, mut rx2) = fake_namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.namesrv_addrs = vec![ns1.local_addr().to_string(), ns2.local_addr().to_string()];
    let b = TestBroker::start(c).await;

    let first = next(&mut rx1).await;
    assert_eq!(first.code, rc::REGISTER_BROKER);
    assert_eq!(next(&mut rx2).await.code, rc::REGISTER_BROKER);
    let h: RegisterBrokerRequestHeader = first.decode_header().unwrap();
    assert_eq!(h.broker_name, "broker-a");
    assert_eq!(h.cluster_name, "DefaultCluster");
    assert_eq!(h.broker_addr, b.addr);
    assert_eq!(h.broker_id, 0);
    assert!(!h.compressed);
    let port: u16 = b.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(h.ha_server_addr, format!("127.0.0.1:{}", port + 1));
    assert_eq!(h.body_crc32 as u32, crc32_masked(&first.body));
    let body = RegisterBrokerBody::decode(&first.body).unwrap();
    let topics = &body.topic_config_serialize_wrapper.topic_config_table;
    assert_eq!(topics["TBW102"].perm, 7);
    let v0 = body.topic_config_serialize_wrapper.data_version;

    // A new topic is registered right away, with a newer data version.
    assert_eq!(
        b.call(send_v2(&send_header("RegT", 0, &props(&[])), b"x"))
            .await
            .code,
        SUCCESS
    );
    let again = next(&mut rx1).await;
    assert_eq!(again.code, rc::REGISTER_BROKER);
    let body = RegisterBrokerBody::decode(&again.body).unwrap();
    assert!(body
        .topic_config_serialize_wrapper
        .topic_config_table
        .contains_key("RegT"));
    assert!(body.topic_config_serialize_wrapper.data_version.counter > v0.counter);
    let h: RegisterBrokerRequestHeader = again.decode_header().unwrap();
    assert_eq!(h.body_crc32 as u32, crc32_masked(&again.body));

    b.stop().await;
    let bye = loop {
        let r = next(&mut rx2).await;
        if r.code != rc::REGISTER_BROKER {
            break r;
        }
    };
    assert_eq!(bye.code, rc::UNREGISTER_BROKER);
    let h: UnRegisterBrokerRequestHeader = bye.decode_header().unwrap();
    assert_eq!(
        (h.broker_name.as_str(), h.cluster_name.as_str(), h.broker_id),
        ("broker-a", "DefaultCluster", 0)
    );
    drop((ns1, ns2));
}

#[tokio::test]
async fn an_unreachable_name_server_does_not_stop_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // A port nothing listens on (bound then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    c.namesrv_addrs = vec![free.to_string()];
    let b = TestBroker::start(c).await;
    assert_eq!(
        b.call(send_v2(&send_header("T", 0, &props(&[])), b"x"))
            .await
            .code,
        SUCCESS
    );
    b.stop().await;
}

/// A slow name server that keeps every REGISTER_BROKER body it accepted, recorded as it answers,
/// 200 ms after the request arrived.
async fn recording_namesrv() -> (
    RemotingServer,
    std::sync::Arc<std::sync::Mutex<Vec<RegisterBrokerBody>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let server = RemotingServer::bind(
        "127.0.0.1:0",
        RemotingConfig::default(),
        move |_ctx: RequestContext, req: RemotingCommand| {
            let sink = std::sync::Arc::clone(&sink);
            HandlerFuture::new(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if req.code == rc::REGISTER_BROKER {
                    if let Ok(body) = RegisterBrokerBody::decode(&req.body) {
                        sink.lock().unwrap().push(body);
                    }
                }
                Some(RemotingCommand::response(SUCCESS, None))
            })
        },
    )
    .await
    .unwrap();
    (server, seen)
}

#[tokio::test]
async fn a_send_that_creates_its_topic_answers_after_the_name_server_has_the_topic() {
    let (ns, seen) = recording_namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.namesrv_addrs = vec![ns.local_addr().to_string()];
    let b = TestBroker::start(c).await;
    for topic in ["NewAtOnce", "NewToo"] {
        let r = b
            .call(send_v2(&send_header(topic, 0, &props(&[])), b"x"))
            .await;
        assert_eq!(r.code, SUCCESS, "{r:?}");
        // A consumer asking for the route right now would find it: the name server already has it.
        let known = seen.lock().unwrap().iter().any(|body| {
            body.topic_config_serialize_wrapper
                .topic_config_table
                .contains_key(topic)
        });
        assert!(
            known,
            "{topic} was not registered before the send was answered"
        );
    }
    b.stop().await;
    drop(ns);
}

#[tokio::test]
async fn a_name_server_that_never_answers_delays_a_topic_creating_send_by_at_most_a_second() {
    let answered = std::sync::atomic::AtomicBool::new(false);
    let server = RemotingServer::bind(
        "127.0.0.1:0",
        RemotingConfig::default(),
        move |_ctx: RequestContext, _req: RemotingCommand| {
            // The registration at start is answered; every later one hangs.
            if answered.swap(true, std::sync::atomic::Ordering::SeqCst) {
                HandlerFuture::new(std::future::pending::<Option<RemotingCommand>>())
            } else {
                HandlerFuture::reply(RemotingCommand::response(SUCCESS, None))
            }
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.namesrv_addrs = vec![server.local_addr().to_string()];
    let b = TestBroker::start(c).await;
    let started = std::time::Instant::now();
    let r = b
        .call(send_v2(&send_header("Stuck", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Sends to a topic that exists do not wait at all.
    let r = b
        .call(send_v2(&send_header("Stuck", 0, &props(&[])), b"y"))
        .await;
    assert_eq!(r.code, SUCCESS);
    b.stop().await;
    drop(server);
}

#[tokio::test]
async fn the_broker_has_registered_its_topics_when_start_returns() {
    let (ns, seen) = recording_namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.namesrv_addrs = vec![ns.local_addr().to_string()];
    let b = TestBroker::start(c.clone()).await;
    assert_eq!(
        b.call(send_v2(&send_header("Kept", 0, &props(&[])), b"x"))
            .await
            .code,
        SUCCESS
    );
    b.stop().await;
    seen.lock().unwrap().clear();

    // Restarted: the slow name server (200 ms) already has the topics before the first request.
    let b = TestBroker::start(c).await;
    let known = seen.lock().unwrap().iter().any(|body| {
        body.topic_config_serialize_wrapper
            .topic_config_table
            .contains_key("Kept")
    });
    assert!(known, "start returned before the first registration");
    b.stop().await;
    drop(ns);
}

/// The next REGISTER_BROKER whose topic data is newer than `after`.
async fn next_registration_after(
    rx: &mut mpsc::UnboundedReceiver<RemotingCommand>,
    after: i64,
) -> RegisterBrokerBody {
    loop {
        let r = next(rx).await;
        if r.code != rc::REGISTER_BROKER {
            continue;
        }
        let body = RegisterBrokerBody::decode(&r.body).unwrap();
        if body.topic_config_serialize_wrapper.data_version.counter > after {
            return body;
        }
    }
}

#[tokio::test]
async fn broker_permission_changes_reach_the_name_server_as_topic_permissions() {
    let (ns, mut rx) = fake_namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.namesrv_addrs = vec![ns.local_addr().to_string()];
    let b = TestBroker::start(c).await;
    let first = next_registration_after(&mut rx, -1).await;
    let topics = &first.topic_config_serialize_wrapper.topic_config_table;
    assert_eq!(topics["TBW102"].perm, 7);
    let v0 = first.topic_config_serialize_wrapper.data_version.counter;

    // Read-only (draining a broker before taking it out): every topic loses its write bit.
    let set = |p: &str| {
        RemotingCommand::request(rc::UPDATE_BROKER_CONFIG)
            .with_body(format!("brokerPermission={p}").into_bytes())
    };
    assert_eq!(b.call(set("4")).await.code, SUCCESS);
    let masked = next_registration_after(&mut rx, v0).await;
    let topics = &masked.topic_config_serialize_wrapper.topic_config_table;
    assert!(!topics.is_empty());
    for (name, t) in topics {
        assert_eq!(t.perm & 2, 0, "{name} still writable: {}", t.perm);
    }
    assert_eq!(topics["TBW102"].perm, 4);
    let v1 = masked.topic_config_serialize_wrapper.data_version.counter;

    // Back to read-write: the topics' own permissions again.
    assert_eq!(b.call(set("6")).await.code, SUCCESS);
    let restored = next_registration_after(&mut rx, v1).await;
    assert_eq!(
        restored.topic_config_serialize_wrapper.topic_config_table["TBW102"].perm,
        7
    );
    b.stop().await;
    drop(ns);
}
