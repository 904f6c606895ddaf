//! Throughput of the remoting transport over loopback: a no-op server and one client connection,
//! with 1 and 64 requests in flight. Run with `cargo bench -p apogee-remoting`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee_protocol::codes::response_code::SUCCESS;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RemotingClient, RemotingConfig, RemotingServer, Router};

const NOOP_CODE: i32 = 1;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

struct Row {
    name: &'static str,
    in_flight: usize,
    body_bytes: usize,
    requests: u64,
    elapsed: Duration,
}

async fn run(
    client: &RemotingClient,
    addr: &str,
    in_flight: usize,
    body_bytes: usize,
    duration: Duration,
) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let body = bytes::Bytes::from(vec![b'x'; body_bytes]);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let client = client.clone();
        let addr = addr.to_owned();
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = RemotingCommand::request(NOOP_CODE).with_body(body.clone());
                match client.invoke(&addr, req, Duration::from_secs(5)).await {
                    Ok(resp) if resp.code == SUCCESS => n += 1,
                    Ok(resp) => panic!("unexpected response code {}", resp.code),
                    Err(e) => panic!("invoke failed: {e}"),
                }
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("bench task");
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = runtime.block_on(async {
        let router = Router::new().route(NOOP_CODE, |_ctx, _req| {
            HandlerFuture::reply(RemotingCommand::response(SUCCESS, None))
        });
        let server = RemotingServer::bind("127.0.0.1:0", RemotingConfig::default(), router)
            .await
            .expect("bind");
        let addr = server.local_addr().to_string();
        let client = RemotingClient::new(RemotingConfig::default());
        let mut rows = Vec::new();
        for (name, in_flight, body_bytes) in [
            ("no-op, ping-pong", 1, 0),
            ("no-op, pipelined", 64, 0),
            ("1 KiB body, pipelined", 64, 1024),
        ] {
            run(&client, &addr, in_flight, body_bytes, WARMUP).await;
            let (requests, elapsed) = run(&client, &addr, in_flight, body_bytes, MEASURE).await;
            rows.push(Row {
                name,
                in_flight,
                body_bytes,
                requests,
                elapsed,
            });
        }
        client.close();
        server.shutdown().await;
        rows
    });
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("remoting transport, one connection over loopback, 2 runtime workers");
    println!(
        "{:<24} {:>9} {:>10} {:>11} {:>8} {:>12} {:>13}",
        "scenario", "in flight", "body bytes", "requests", "secs", "requests/s", "mean lat. us"
    );
    for r in &rows {
        let secs = r.elapsed.as_secs_f64();
        let rate = r.requests as f64 / secs;
        let latency_us = r.in_flight as f64 / rate * 1e6;
        println!(
            "{:<24} {:>9} {:>10} {:>11} {:>8.2} {:>12.0} {:>13.1}",
            r.name, r.in_flight, r.body_bytes, r.requests, secs, rate, latency_us
        );
    }
    println!("load average at end: {}", loadavg.trim());
}
