//! End-to-end behaviour of the transport over real loopback sockets on ephemeral ports.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::codes::response_code::{
    REQUEST_CODE_NOT_SUPPORTED, SUCCESS, SYSTEM_BUSY, SYSTEM_ERROR,
};
use apogee_protocol::command::DEFAULT_MAX_FRAME_BYTES;
use apogee_protocol::{RemotingCommand, SerializeType};
use apogee_remoting::{
    HandlerFuture, RemotingClient, RemotingConfig, RemotingError, RemotingServer, RequestContext,
    Router, OVERLOAD_REMARK, SHUTTING_DOWN_REMARK,
};
use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

const ECHO: i32 = 1;
const LONG: Duration = Duration::from_secs(5);

/// Fails the test instead of hanging it.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test did not finish in time")
}

fn config() -> RemotingConfig {
    RemotingConfig {
        request_timeout_ms: 5_000,
        ..RemotingConfig::default()
    }
}

/// Answers SUCCESS, copying the request's `n` field and body back.
fn echo(_ctx: RequestContext, req: RemotingCommand) -> HandlerFuture {
    let mut resp = RemotingCommand::response(SUCCESS, None).with_body(req.body.clone());
    if let Some(n) = req.ext_fields.get("n") {
        resp.ext_fields.insert("n", n);
    }
    HandlerFuture::reply(resp)
}

async fn start(router: Router, config: RemotingConfig) -> (RemotingServer, String) {
    let server = RemotingServer::bind("127.0.0.1:0", config, router)
        .await
        .expect("bind");
    let addr = server.local_addr().to_string();
    (server, addr)
}

fn request(code: i32, n: usize) -> RemotingCommand {
    let mut req = RemotingCommand::request(code);
    req.ext_fields.insert("n", n.to_string());
    req
}

async fn write_cmd(stream: &mut TcpStream, cmd: &RemotingCommand) {
    stream
        .write_all(&cmd.to_bytes().expect("encode"))
        .await
        .expect("write");
}

/// Reads one frame; `None` at end of stream.
async fn read_cmd(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<RemotingCommand> {
    loop {
        if let Some(cmd) =
            RemotingCommand::decode_frame(buf, DEFAULT_MAX_FRAME_BYTES).expect("decodable frame")
        {
            return Some(cmd);
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// True once the peer has closed the stream (EOF or reset).
async fn wait_closed_by_peer(stream: &mut TcpStream) {
    let mut scratch = [0u8; 1024];
    loop {
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_matched_by_opaque_when_answered_out_of_order() {
    within(async {
        let gates: Arc<HashMap<String, Arc<Notify>>> = Arc::new(
            ["a", "b"]
                .iter()
                .map(|k| (k.to_string(), Arc::new(Notify::new())))
                .collect(),
        );
        let handler_gates = Arc::clone(&gates);
        let router =
            Router::new().route(ECHO, move |_ctx: RequestContext, req: RemotingCommand| {
                let key = req.ext_fields.get("key").unwrap_or_default().to_owned();
                let gate = handler_gates.get(&key).cloned();
                HandlerFuture::new(async move {
                    if let Some(gate) = gate {
                        gate.notified().await;
                    }
                    Some(RemotingCommand::response(SUCCESS, Some(key)))
                })
            });
        let (_server, addr) = start(router, config()).await;
        let client = RemotingClient::new(config());
        let call = |key: &str| {
            let client = client.clone();
            let addr = addr.clone();
            let mut req = RemotingCommand::request(ECHO);
            req.ext_fields.insert("key", key);
            tokio::spawn(async move { client.invoke(&addr, req, LONG).await })
        };
        let a = call("a");
        let b = call("b");
        gates["b"].notify_one();
        let b = b.await.unwrap().expect("b answered");
        assert_eq!(b.remark.as_deref(), Some("b"));
        assert!(!a.is_finished(), "a must still wait for its own response");
        gates["a"].notify_one();
        let a = a.await.unwrap().expect("a answered");
        assert_eq!(a.remark.as_deref(), Some("a"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_matches_responses_by_opaque_not_by_order() {
    within(async {
        // A hand-written peer that answers two requests in reverse order.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let first = read_cmd(&mut s, &mut buf).await.unwrap();
            let second = read_cmd(&mut s, &mut buf).await.unwrap();
            for req in [&second, &first] {
                let n = req.ext_fields.get("n").unwrap().to_owned();
                let resp = RemotingCommand::response_to(req, SUCCESS, Some(n));
                write_cmd(&mut s, &resp).await;
            }
            wait_closed_by_peer(&mut s).await;
        });
        let client = RemotingClient::new(config());
        let conn = client.connection(&addr).await.unwrap();
        let (r1, r2) = tokio::join!(
            conn.invoke(request(ECHO, 1), LONG),
            conn.invoke(request(ECHO, 2), LONG)
        );
        assert_eq!(r1.unwrap().remark.as_deref(), Some("1"));
        assert_eq!(r2.unwrap().remark.as_deref(), Some("2"));
        client.close();
        peer.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_invokes_share_one_connection_and_get_their_own_responses() {
    within(async {
        let (server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let client = RemotingClient::new(config());
        let mut tasks = Vec::new();
        for t in 0..64 {
            let client = client.clone();
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let n = t * 1000 + i;
                    let req = request(ECHO, n).with_body(n.to_string().into_bytes());
                    let resp = client.invoke(&addr, req, LONG).await.unwrap();
                    assert_eq!(resp.ext_fields.get("n"), Some(n.to_string().as_str()));
                    assert_eq!(&resp.body[..], n.to_string().as_bytes());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(server.connection_count(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_make_a_single_connection() {
    within(async {
        let (server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let client = RemotingClient::new(config());
        let calls: Vec<_> = (0..32)
            .map(|i| {
                let client = client.clone();
                let addr = addr.clone();
                tokio::spawn(async move { client.invoke(&addr, request(ECHO, i), LONG).await })
            })
            .collect();
        let mut ids = Vec::new();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        for conn in server.connections() {
            ids.push(conn.id());
        }
        assert_eq!(ids.len(), 1, "one connection for all callers");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_request_runs_the_handler_and_gets_no_reply() {
    within(async {
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let router = Router::new().route(ECHO, echo).route(
            2,
            move |_ctx: RequestContext, req: RemotingCommand| {
                let _ = seen_tx.send(req.opaque);
                // Even a returned response must not be sent for a oneway request.
                HandlerFuture::reply(RemotingCommand::response(SUCCESS, Some("oops".into())))
            },
        );
        let (_server, addr) = start(router, config()).await;

        // Through the client API.
        let client = RemotingClient::new(config());
        client
            .invoke_oneway(&addr, RemotingCommand::request(2))
            .await
            .unwrap();
        seen_rx.recv().await.expect("handler ran");

        // On the wire: the only frame back is the answer to the normal request.
        let mut raw = TcpStream::connect(&addr).await.unwrap();
        let mut oneway = RemotingCommand::request(2).with_opaque(100);
        oneway.mark_oneway();
        write_cmd(&mut raw, &oneway).await;
        write_cmd(&mut raw, &request(ECHO, 7).with_opaque(101)).await;
        let mut buf = BytesMut::new();
        let resp = read_cmd(&mut raw, &mut buf).await.unwrap();
        assert_eq!(resp.opaque, 101);
        assert!(resp.is_response());
        assert_eq!(seen_rx.recv().await, Some(100));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_code_is_answered_request_code_not_supported() {
    within(async {
        let (_server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let client = RemotingClient::new(config());
        let resp = client
            .invoke(&addr, RemotingCommand::request(777), LONG)
            .await
            .unwrap();
        assert_eq!(resp.code, REQUEST_CODE_NOT_SUPPORTED);
        assert_eq!(
            resp.remark.as_deref(),
            Some(" request type 777 not supported")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_fallback_handles_codes_without_a_route() {
    within(async {
        let router = Router::new().route(ECHO, echo).fallback(
            |_ctx: RequestContext, req: RemotingCommand| {
                HandlerFuture::reply(RemotingCommand::response(
                    SUCCESS,
                    Some(format!("fallback {}", req.code)),
                ))
            },
        );
        let (_server, addr) = start(router, config()).await;
        let client = RemotingClient::new(config());
        let resp = client
            .invoke(&addr, RemotingCommand::request(55), LONG)
            .await
            .unwrap();
        assert_eq!(resp.remark.as_deref(), Some("fallback 55"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_the_in_flight_limit_is_answered_system_busy_without_running_the_handler() {
    within(async {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let (s, r, n) = (
            Arc::clone(&started),
            Arc::clone(&release),
            Arc::clone(&runs),
        );
        let router =
            Router::new().route(ECHO, move |_ctx: RequestContext, _req: RemotingCommand| {
                n.fetch_add(1, Ordering::SeqCst);
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                HandlerFuture::new(async move {
                    s.notify_one();
                    r.notified().await;
                    Some(RemotingCommand::response(SUCCESS, None))
                })
            });
        let server_config = RemotingConfig {
            max_in_flight_per_connection: 1,
            ..config()
        };
        let (_server, addr) = start(router, server_config).await;
        let client = RemotingClient::new(config());
        let conn = client.connection(&addr).await.unwrap();
        let first = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.invoke(request(ECHO, 1), LONG).await })
        };
        started.notified().await;
        let busy = conn.invoke(request(ECHO, 2), LONG).await.unwrap();
        assert_eq!(busy.code, SYSTEM_BUSY);
        assert_eq!(busy.remark.as_deref(), Some(OVERLOAD_REMARK));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the refused request's handler never ran"
        );
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().code, SUCCESS);
        // With the slot free again, requests are handled.
        release.notify_one();
        assert_eq!(
            conn.invoke(request(ECHO, 3), LONG).await.unwrap().code,
            SUCCESS
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_times_out_and_the_late_response_is_dropped() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (timed_out_tx, mut timed_out_rx) = mpsc::unbounded_channel::<()>();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let late = read_cmd(&mut s, &mut buf).await.unwrap();
            timed_out_rx.recv().await.unwrap();
            // The answer to the abandoned request comes first, then the answer to the next one.
            write_cmd(
                &mut s,
                &RemotingCommand::response_to(&late, SUCCESS, Some("late".into())),
            )
            .await;
            let next = read_cmd(&mut s, &mut buf).await.unwrap();
            write_cmd(
                &mut s,
                &RemotingCommand::response_to(&next, SUCCESS, Some("next".into())),
            )
            .await;
            wait_closed_by_peer(&mut s).await;
        });
        let client = RemotingClient::new(config());
        let conn = client.connection(&addr).await.unwrap();
        let err = conn
            .invoke(request(ECHO, 1), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RemotingError::Timeout { timeout_ms: 50 }),
            "{err:?}"
        );
        assert_eq!(
            conn.pending_requests(),
            0,
            "a timed-out request leaves the table"
        );
        timed_out_tx.send(()).unwrap();
        let next = conn.invoke(request(ECHO, 2), LONG).await.unwrap();
        assert_eq!(next.remark.as_deref(), Some("next"));
        assert!(!conn.is_closed());
        client.close();
        peer.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_handler_can_invoke_the_client_over_the_same_connection() {
    within(async {
        const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
        const HEART_BEAT: i32 = 34;
        let (keep_tx, mut keep_rx) = mpsc::unbounded_channel();
        let router = Router::new().route(
            HEART_BEAT,
            move |ctx: RequestContext, _req: RemotingCommand| {
                let conn = ctx.connection().clone();
                let _ = keep_tx.send(conn.clone());
                HandlerFuture::new(async move {
                    let answer = conn
                        .invoke(RemotingCommand::request(NOTIFY_CONSUMER_IDS_CHANGED), LONG)
                        .await;
                    let remark = match answer {
                        Ok(resp) => resp.remark.unwrap_or_default(),
                        Err(e) => format!("failed: {e}"),
                    };
                    Some(RemotingCommand::response(SUCCESS, Some(remark)))
                })
            },
        );
        let (_server, addr) = start(router, config()).await;
        let client_router = Router::new().route(
            NOTIFY_CONSUMER_IDS_CHANGED,
            |ctx: RequestContext, _req: RemotingCommand| {
                HandlerFuture::reply(RemotingCommand::response(
                    SUCCESS,
                    Some(format!("client at {}", ctx.connection().local_addr())),
                ))
            },
        );
        let client = RemotingClient::with_handler(config(), client_router);
        let conn = client.connection(&addr).await.unwrap();
        let expected = format!("client at {}", conn.local_addr());
        let resp = client
            .invoke(&addr, RemotingCommand::request(HEART_BEAT), LONG)
            .await
            .unwrap();
        assert_eq!(resp.remark.as_deref(), Some(expected.as_str()));

        // The remembered server-side handle reaches the client later too.
        let remembered = keep_rx.recv().await.unwrap();
        assert_eq!(remembered.peer_addr(), conn.local_addr());
        let resp = remembered
            .invoke(RemotingCommand::request(NOTIFY_CONSUMER_IDS_CHANGED), LONG)
            .await
            .unwrap();
        assert_eq!(resp.remark.as_deref(), Some(expected.as_str()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_handler_answers_server_requests_not_supported() {
    within(async {
        let (server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let client = RemotingClient::new(config());
        client.invoke(&addr, request(ECHO, 1), LONG).await.unwrap();
        let server_side = server.connections().pop().unwrap();
        let resp = server_side
            .invoke(RemotingCommand::request(39), LONG)
            .await
            .unwrap();
        assert_eq!(resp.code, REQUEST_CODE_NOT_SUPPORTED);
    })
    .await;
}

async fn assert_malformed_input_closes_only_its_connection(garbage: Vec<u8>) {
    let (server, addr) = start(Router::new().route(ECHO, echo), config()).await;
    let client = RemotingClient::new(config());
    client.invoke(&addr, request(ECHO, 1), LONG).await.unwrap();
    let mut bad = TcpStream::connect(&addr).await.unwrap();
    bad.write_all(&garbage).await.unwrap();
    wait_closed_by_peer(&mut bad).await;
    let resp = client.invoke(&addr, request(ECHO, 2), LONG).await.unwrap();
    assert_eq!(resp.code, SUCCESS);
    assert!(!client.connection(&addr).await.unwrap().is_closed());
    assert!(!server.is_stopped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_only_that_connection() {
    within(assert_malformed_input_closes_only_its_connection(
        b"\xff\xff\xff\xfe GET / HTTP/1.1\r\n\r\n".to_vec(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_length_closes_only_that_connection() {
    let mut frame = Vec::new();
    frame.put_u32(DEFAULT_MAX_FRAME_BYTES as u32); // + 4-byte prefix = one byte over the limit
    frame.put_u32(10);
    within(assert_malformed_input_closes_only_its_connection(frame)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_json_header_closes_only_that_connection() {
    let header = b"{\"code\":1,\"opaque\":";
    let mut frame = Vec::new();
    frame.put_u32(4 + header.len() as u32);
    frame.put_u32(header.len() as u32);
    frame.put_slice(header);
    within(assert_malformed_input_closes_only_its_connection(frame)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_length_beyond_the_frame_closes_only_that_connection() {
    let mut frame = Vec::new();
    frame.put_u32(8);
    frame.put_u32(500);
    frame.put_u32(0);
    within(assert_malformed_input_closes_only_its_connection(frame)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_invoke_fails_promptly_when_the_peer_sends_a_malformed_frame() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::new();
            read_cmd(&mut s, &mut buf).await.unwrap();
            s.write_all(&[0xff; 16]).await.unwrap();
            wait_closed_by_peer(&mut s).await;
        });
        let client = RemotingClient::new(config());
        let err = client
            .invoke(&addr, request(ECHO, 1), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(err, RemotingError::ConnectionClosed), "{err:?}");
        peer.await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_outgoing_request_is_refused_and_the_connection_keeps_working() {
    within(async {
        let (_server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let small = RemotingConfig {
            max_frame_bytes: 1024,
            ..config()
        };
        let client = RemotingClient::new(small);
        // Body alone too big: refused before queueing.
        let err = client
            .invoke(
                &addr,
                RemotingCommand::request(ECHO).with_body(vec![0u8; 2000]),
                LONG,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RemotingError::FrameTooLarge {
                    max_bytes: 1024,
                    ..
                }
            ),
            "{err:?}"
        );
        // Header pushes it over: refused by the writer after encoding.
        let mut req = RemotingCommand::request(ECHO).with_body(vec![0u8; 900]);
        req.ext_fields.insert("padding", "p".repeat(200));
        let err = client.invoke(&addr, req, LONG).await.unwrap_err();
        assert!(
            matches!(
                err,
                RemotingError::FrameTooLarge {
                    max_bytes: 1024,
                    ..
                }
            ),
            "{err:?}"
        );
        let mut oneway = RemotingCommand::request(ECHO).with_body(vec![0u8; 900]);
        oneway.ext_fields.insert("padding", "p".repeat(200));
        client.invoke_oneway(&addr, oneway).await.unwrap();
        let resp = client.invoke(&addr, request(ECHO, 5), LONG).await.unwrap();
        assert_eq!(resp.ext_fields.get("n"), Some("5"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_is_replaced_by_system_error() {
    within(async {
        let router = Router::new().route(ECHO, |_ctx: RequestContext, _req: RemotingCommand| {
            HandlerFuture::reply(
                RemotingCommand::response(SUCCESS, None).with_body(vec![1u8; 4096]),
            )
        });
        let server_config = RemotingConfig {
            max_frame_bytes: 1024,
            ..config()
        };
        let (_server, addr) = start(router, server_config).await;
        let client = RemotingClient::new(config());
        let resp = client.invoke(&addr, request(ECHO, 1), LONG).await.unwrap();
        assert_eq!(resp.code, SYSTEM_ERROR);
        assert!(resp
            .remark
            .unwrap()
            .contains("exceeds the limit of 1024 bytes"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_at_once() {
    within(async {
        let server_config = RemotingConfig {
            max_connections: 1,
            ..config()
        };
        let (server, addr) = start(Router::new().route(ECHO, echo), server_config).await;
        let first = RemotingClient::new(config());
        first.invoke(&addr, request(ECHO, 1), LONG).await.unwrap();
        let second = RemotingClient::new(config());
        let err = second
            .invoke(&addr, request(ECHO, 2), LONG)
            .await
            .unwrap_err();
        assert!(matches!(err, RemotingError::ConnectionClosed), "{err:?}");
        assert_eq!(server.connection_count(), 1);
        first.invoke(&addr, request(ECHO, 3), LONG).await.unwrap();
    })
    .await;
}

/// For tests on tokio's paused clock, where a real-time bound would not apply: virtual time
/// jumps ahead whenever the runtime is idle.
async fn within_virtual_hour<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(3600), f)
        .await
        .expect("test did not finish in virtual time")
}

#[tokio::test(start_paused = true)]
async fn idle_connection_is_closed_by_the_server_after_the_default_120_s() {
    within_virtual_hour(async {
        let (server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let client = RemotingClient::new(RemotingConfig {
            idle_timeout_ms: 0,
            ..config()
        });
        client.invoke(&addr, request(ECHO, 1), LONG).await.unwrap();
        let conn = client.connection(&addr).await.unwrap();
        let quiet_since = tokio::time::Instant::now();
        conn.closed().await;
        let waited = quiet_since.elapsed();
        assert!(
            waited >= Duration::from_secs(120),
            "closed after {waited:?}"
        );
        assert!(
            waited <= Duration::from_secs(150),
            "closed after {waited:?}"
        );
        // The next call reconnects.
        let resp = client.invoke(&addr, request(ECHO, 2), LONG).await.unwrap();
        assert_eq!(resp.code, SUCCESS);
        let now = client.connection(&addr).await.unwrap();
        assert_ne!(now.id(), conn.id());
        assert_eq!(server.connection_count(), 1);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn connection_waiting_for_a_slow_handler_is_not_idle() {
    within_virtual_hour(async {
        let release = Arc::new(Notify::new());
        let r = Arc::clone(&release);
        let router =
            Router::new().route(ECHO, move |_ctx: RequestContext, _req: RemotingCommand| {
                let r = Arc::clone(&r);
                HandlerFuture::new(async move {
                    r.notified().await;
                    Some(RemotingCommand::response(SUCCESS, None))
                })
            });
        let (_server, addr) = start(router, config()).await;
        let client = RemotingClient::new(RemotingConfig {
            idle_timeout_ms: 0,
            ..config()
        });
        let conn = client.connection(&addr).await.unwrap();
        let call = {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.invoke(request(ECHO, 1), Duration::from_secs(1000))
                    .await
            })
        };
        // Several idle periods pass (in virtual time) while the handler waits.
        tokio::time::sleep(Duration::from_secs(500)).await;
        assert!(!conn.is_closed());
        release.notify_one();
        assert_eq!(call.await.unwrap().unwrap().code, SUCCESS);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_delivers_the_response_of_an_in_flight_handler() {
    within(async {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, r) = (Arc::clone(&started), Arc::clone(&release));
        let router =
            Router::new().route(ECHO, move |_ctx: RequestContext, _req: RemotingCommand| {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                HandlerFuture::new(async move {
                    s.notify_one();
                    r.notified().await;
                    Some(RemotingCommand::response(SUCCESS, Some("finished".into())))
                })
            });
        let (server, addr) = start(router, config()).await;
        let server = Arc::new(server);
        let client = RemotingClient::new(config());
        let call = {
            let client = client.clone();
            let addr = addr.clone();
            tokio::spawn(async move { client.invoke(&addr, request(ECHO, 1), LONG).await })
        };
        started.notified().await;
        let server_side = server.connections().pop().unwrap();
        let shutdown = {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.shutdown().await })
        };
        server_side.draining().await;
        assert!(!server_side.is_closed(), "still open while a handler runs");
        // New requests on a draining connection are refused with a retryable code.
        let conn = client.connection(&addr).await.unwrap();
        let refused = conn.invoke(request(ECHO, 2), LONG).await.unwrap();
        assert_eq!(refused.code, SYSTEM_BUSY);
        assert_eq!(refused.remark.as_deref(), Some(SHUTTING_DOWN_REMARK));
        release.notify_one();
        let resp = call.await.unwrap().unwrap();
        assert_eq!(resp.remark.as_deref(), Some("finished"));
        shutdown.await.unwrap();
        assert!(server.is_stopped());
        assert!(server_side.is_closed());
        assert!(TcpStream::connect(&addr).await.is_err(), "listener is gone");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_gives_up_on_a_stuck_handler_after_the_grace_period() {
    within(async {
        let started = Arc::new(Notify::new());
        let s = Arc::clone(&started);
        let router =
            Router::new().route(ECHO, move |_ctx: RequestContext, _req: RemotingCommand| {
                let s = Arc::clone(&s);
                HandlerFuture::new(async move {
                    s.notify_one();
                    std::future::pending::<()>().await;
                    None
                })
            });
        let server_config = RemotingConfig {
            shutdown_grace_ms: 50,
            ..config()
        };
        let (server, addr) = start(router, server_config).await;
        let client = RemotingClient::new(config());
        let call = {
            let client = client.clone();
            tokio::spawn(async move { client.invoke(&addr, request(ECHO, 1), LONG).await })
        };
        started.notified().await;
        server.shutdown().await;
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, RemotingError::ConnectionClosed), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_is_answered_system_error_and_the_connection_survives() {
    within(async {
        let router = Router::new()
            .route(ECHO, echo)
            .route(
                2,
                |_ctx: RequestContext, _req: RemotingCommand| -> HandlerFuture {
                    panic!("sync boom")
                },
            )
            .route(3, |_ctx: RequestContext, _req: RemotingCommand| {
                HandlerFuture::new(async {
                    tokio::task::yield_now().await;
                    panic!("async boom")
                })
            });
        let (server, addr) = start(router, config()).await;
        let client = RemotingClient::new(config());
        let conn = client.connection(&addr).await.unwrap();
        for (code, text) in [(2, "sync boom"), (3, "async boom")] {
            let resp = conn
                .invoke(RemotingCommand::request(code), LONG)
                .await
                .unwrap();
            assert_eq!(resp.code, SYSTEM_ERROR);
            assert!(resp.remark.as_deref().unwrap().contains(text), "{resp:?}");
        }
        let resp = conn.invoke(request(ECHO, 9), LONG).await.unwrap();
        assert_eq!(resp.ext_fields.get("n"), Some("9"));
        assert!(!conn.is_closed());
        assert_eq!(server.connections().pop().unwrap().in_flight_requests(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_the_server_closed_the_connection() {
    within(async {
        let (server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let client = RemotingClient::new(config());
        client.invoke(&addr, request(ECHO, 1), LONG).await.unwrap();
        let before = client.connection(&addr).await.unwrap();
        for conn in server.connections() {
            conn.close();
        }
        before.closed().await;
        let resp = client.invoke(&addr, request(ECHO, 2), LONG).await.unwrap();
        assert_eq!(resp.ext_fields.get("n"), Some("2"));
        assert_ne!(client.connection(&addr).await.unwrap().id(), before.id());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_use_the_serialize_type_of_the_request() {
    within(async {
        let (_server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let mut raw = TcpStream::connect(&addr).await.unwrap();
        let mut buf = BytesMut::new();
        for (opaque, st, type_byte) in [
            (1, SerializeType::Json, 0u8),
            (2, SerializeType::RocketMq, 1),
        ] {
            let req = request(ECHO, opaque as usize)
                .with_opaque(opaque)
                .with_serialize_type(st);
            write_cmd(&mut raw, &req).await;
            // Check the type byte on the wire before decoding.
            while buf.len() < 8 {
                assert!(raw.read_buf(&mut buf).await.unwrap() > 0);
            }
            assert_eq!(buf[4], type_byte, "{st:?}");
            let resp = read_cmd(&mut raw, &mut buf).await.unwrap();
            assert_eq!(resp.serialize_type, st);
            assert_eq!(resp.opaque, opaque);
            assert_eq!(resp.ext_fields.get("n"), Some(opaque.to_string().as_str()));
        }
        let client = RemotingClient::new(config());
        let resp = client
            .invoke(
                &addr,
                request(ECHO, 3).with_serialize_type(SerializeType::RocketMq),
                LONG,
            )
            .await
            .unwrap();
        assert_eq!(resp.serialize_type, SerializeType::RocketMq);
        // A client configured for the binary form sends a plain (JSON-built) request in it.
        let binary = RemotingClient::new(RemotingConfig {
            serialize_type: SerializeType::RocketMq,
            ..config()
        });
        let resp = binary.invoke(&addr, request(ECHO, 4), LONG).await.unwrap();
        assert_eq!(resp.serialize_type, SerializeType::RocketMq);
        assert_eq!(resp.ext_fields.get("n"), Some("4"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_a_connect_error() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let client = RemotingClient::new(config());
        let err = client
            .invoke(&addr, request(ECHO, 1), LONG)
            .await
            .unwrap_err();
        assert!(matches!(err, RemotingError::Connect { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_client_refuses_calls_and_closes_its_connections() {
    within(async {
        let (_server, addr) = start(Router::new().route(ECHO, echo), config()).await;
        let client = RemotingClient::new(config());
        client.invoke(&addr, request(ECHO, 1), LONG).await.unwrap();
        let conn = client.connection(&addr).await.unwrap();
        client.close();
        conn.closed().await;
        let err = client
            .invoke(&addr, request(ECHO, 2), LONG)
            .await
            .unwrap_err();
        assert!(matches!(err, RemotingError::Shutdown), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_request_limit_is_enforced() {
    within(async {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, r) = (Arc::clone(&started), Arc::clone(&release));
        let router =
            Router::new().route(ECHO, move |_ctx: RequestContext, _req: RemotingCommand| {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                HandlerFuture::new(async move {
                    s.notify_one();
                    r.notified().await;
                    Some(RemotingCommand::response(SUCCESS, None))
                })
            });
        let (_server, addr) = start(router, config()).await;
        let client = RemotingClient::new(RemotingConfig {
            max_pending_requests_per_connection: 1,
            ..config()
        });
        let conn = client.connection(&addr).await.unwrap();
        let first = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.invoke(request(ECHO, 1), LONG).await })
        };
        started.notified().await;
        assert_eq!(conn.pending_requests(), 1);
        let err = conn.invoke(request(ECHO, 2), LONG).await.unwrap_err();
        assert!(
            matches!(err, RemotingError::TooManyRequests { limit: 1 }),
            "{err:?}"
        );
        release.notify_one();
        first.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_connection_still_reads_responses_a_running_handler_waits_for() {
    within(async {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, r) = (Arc::clone(&started), Arc::clone(&release));
        let router =
            Router::new().route(ECHO, move |ctx: RequestContext, _req: RemotingCommand| {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                let conn = ctx.connection().clone();
                HandlerFuture::new(async move {
                    s.notify_one();
                    r.notified().await;
                    // Ask the client something while the server is shutting down.
                    let answer = conn.invoke(RemotingCommand::request(40), LONG).await;
                    Some(RemotingCommand::response(
                        SUCCESS,
                        Some(match answer {
                            Ok(resp) => resp.remark.unwrap_or_default(),
                            Err(e) => format!("failed: {e}"),
                        }),
                    ))
                })
            });
        let (server, addr) = start(router, config()).await;
        let client_router =
            Router::new().route(40, |_ctx: RequestContext, _req: RemotingCommand| {
                HandlerFuture::reply(RemotingCommand::response(
                    SUCCESS,
                    Some("from client".into()),
                ))
            });
        let client = RemotingClient::with_handler(config(), client_router);
        let call = {
            let client = client.clone();
            let addr = addr.clone();
            tokio::spawn(async move { client.invoke(&addr, request(ECHO, 1), LONG).await })
        };
        started.notified().await;
        let server_side = server.connections().pop().unwrap();
        let server = Arc::new(server);
        let shutdown = {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.shutdown().await })
        };
        server_side.draining().await;
        release.notify_one();
        let resp = call.await.unwrap().unwrap();
        assert_eq!(resp.remark.as_deref(), Some("from client"));
        shutdown.await.unwrap();
    })
    .await;
}
