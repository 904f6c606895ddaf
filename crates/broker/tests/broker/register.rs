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
