//! `apogee bench`: a load generator for any RocketMQ-compatible cluster, in the manner of the
//! OpenMessaging Benchmark. Producers send (sync, async with a window, or batches; open-loop at a
//! fixed rate or as fast as possible), consumers of a fresh group read from the latest offsets,
//! and the result gives throughput and HdrHistogram latency percentiles for send and end to end.
//! `--catch-up N` instead fills a backlog of N messages and times a consumer reading it.

mod admin;
mod consumer;
mod producer;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee_client::{ClientConfig, ClientInstance, MessageQueue, Producer};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::task::JoinSet;

use consumer::ConsumerPlan;
use producer::ProducerPlan;
use stats::{Clock, LatencySummary, Side, Throughput};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendMode {
    /// One request at a time per producer.
    Sync,
    /// Up to --in-flight requests at a time per producer.
    Async,
    /// SEND_BATCH_MESSAGE of --batch-size messages, up to --in-flight batches at a time.
    Batch,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct BenchArgs {
    /// Name server address(es), `;`-separated.
    #[arg(short = 'n', long = "namesrv", default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[arg(long, default_value = "ApogeeBench")]
    pub topic: String,
    /// Producer clients (each with its own connection).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer clients (each with its own connection; queues are split between them). 0 = none.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Read and write queues per broker when creating the topic.
    #[arg(long, default_value_t = 16)]
    pub queues: i32,
    /// Body size in bytes (the first 16 carry the send time for end-to-end latency).
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    #[arg(long, value_enum, default_value_t = SendMode::Async)]
    pub mode: SendMode,
    /// Messages per batch (batch mode).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Requests in flight per producer (async and batch modes).
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Total messages per second, open loop (latency counts from each send's scheduled time);
    /// 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,
    /// Write the result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Fill a backlog of this many messages (as fast as possible), then time the consumers
    /// reading it; --rate, --warmup-secs and --duration-secs do not apply.
    #[arg(long, value_name = "MESSAGES")]
    pub catch_up: Option<u64>,
    /// Use the topic as it is instead of creating or resizing it.
    #[arg(long)]
    pub no_create_topic: bool,
    /// Messages asked for per pull (brokers cap it: maxTransferCountOnMessageInMemory).
    #[arg(long, default_value_t = 32)]
    pub pull_batch: i32,
    /// After the producers stop, how long consumers may take to receive everything sent.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// Request header encoding, as Java clients' `rocketmq.serialize.type`: `json` (their
    /// default) or `rocketmq` (the binary form).
    #[arg(long, value_enum, default_value_t = HeaderEncoding::Json)]
    pub serialize_type: HeaderEncoding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderEncoding {
    Json,
    Rocketmq,
}

/// The JSON result.
#[derive(Debug, Serialize)]
pub struct Report {
    pub config: BenchArgs,
    pub load_average_start: Vec<f64>,
    pub load_average_end: Vec<f64>,
    /// Sends acknowledged within the measurement window (the whole prefill in catch-up mode).
    pub send: Throughput,
    pub send_latency_us: Option<LatencySummary>,
    /// Consume throughput over the measurement window (the backlog read in catch-up mode).
    pub consume: Option<Throughput>,
    pub end_to_end_latency_us: Option<LatencySummary>,
    /// Every message acknowledged by the broker, warm-up included.
    pub messages_sent: u64,
    /// Every message the consumers received, warm-up and drain included.
    pub messages_received: u64,
    /// Whether the consumers received at least every message sent before the drain timeout.
    pub drained: bool,
}

pub fn run(args: BenchArgs) -> ExitCode {
    if let Err(e) = validate(&args) {
        eprintln!("apogee bench: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("apogee-bench")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apogee bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run_async(args));
    // Pull loops parked in long polls are aborted; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            print_summary(&report);
            if let Some(path) = &report.config.json_out {
                let written = serde_json::to_vec_pretty(&report)
                    .map_err(|e| e.to_string())
                    .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
                if let Err(e) = written {
                    eprintln!("apogee bench: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apogee bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(a: &BenchArgs) -> Result<(), String> {
    if a.producers == 0 {
        return Err("--producers must be at least 1".into());
    }
    if a.queues < 1 || a.batch_size == 0 || a.in_flight == 0 || a.pull_batch < 1 {
        return Err(
            "--queues, --batch-size, --in-flight and --pull-batch must be at least 1".into(),
        );
    }
    if a.message_size == 0 {
        return Err("--message-size must be at least 1".into());
    }
    if a.catch_up.is_some() && a.consumers == 0 {
        return Err("--catch-up needs at least one consumer".into());
    }
    Ok(())
}

fn client_config(args: &BenchArgs, role: &str) -> ClientConfig {
    let mut config = ClientConfig::new(&args.namesrv);
    // A distinct instance name gives every client its own connection, as separate processes
    // would have.
    config.instance_name = format!("apogee-bench-{}-{role}", std::process::id());
    config.remoting.serialize_type = match args.serialize_type {
        HeaderEncoding::Json => apogee_protocol::SerializeType::Json,
        HeaderEncoding::Rocketmq => apogee_protocol::SerializeType::RocketMq,
    };
    config
}

struct Run {
    args: BenchArgs,
    clock: Clock,
    send: Arc<Side>,
    recv: Arc<Side>,
    stop: Arc<AtomicBool>,
}

async fn run_async(args: BenchArgs) -> Result<Report, String> {
    let load_average_start = stats::load_average();
    let admin = ClientInstance::get_or_create(client_config(&args, "admin"))
        .map_err(|e| format!("client: {e}"))?;
    if args.no_create_topic {
        admin
            .update_topic_route(&args.topic)
            .await
            .map_err(|e| format!("route of {}: {e}", args.topic))?;
    } else {
        admin::ensure_topic(&admin, &args.topic, args.queues).await?;
    }
    let mut queues: Vec<MessageQueue> = admin
        .route_entry(&args.topic)
        .map(|e| e.subscribe.as_ref().clone())
        .unwrap_or_default();
    queues.sort();
    if queues.is_empty() {
        return Err(format!("topic {} has no readable queue", args.topic));
    }
    let mut start_offsets = Vec::with_capacity(queues.len());
    for mq in &queues {
        let offset = admin
            .max_offset(mq)
            .await
            .map_err(|e| format!("max offset of {mq}: {e}"))?;
        start_offsets.push(offset);
    }

    let mut producers = Vec::with_capacity(args.producers);
    for i in 0..args.producers {
        let p = Producer::builder()
            .group(format!("apogee-bench-{}", std::process::id()))
            .client_config(client_config(&args, &format!("p{i}")))
            .compress_over_bytes(usize::MAX)
            .start()
            .await
            .map_err(|e| format!("producer: {e}"))?;
        producers.push(p);
    }
    let mut consumer_instances = Vec::with_capacity(args.consumers);
    for i in 0..args.consumers {
        let c = ClientInstance::get_or_create(client_config(&args, &format!("c{i}")))
            .map_err(|e| format!("consumer: {e}"))?;
        c.update_topic_route(&args.topic)
            .await
            .map_err(|e| format!("route of {}: {e}", args.topic))?;
        consumer_instances.push(c);
    }

    let run = Run {
        clock: Clock::new(),
        send: Arc::new(Side::default()),
        recv: Arc::new(Side::default()),
        stop: Arc::new(AtomicBool::new(false)),
        args,
    };
    let group = format!(
        "apogee-bench-consumer-{}-{}",
        std::process::id(),
        run.clock.epoch_us(Instant::now())
    );
    let queue_plan: Vec<(ClientInstance, MessageQueue, i64)> = queues
        .into_iter()
        .zip(start_offsets)
        .enumerate()
        .filter_map(|(j, (mq, off))| {
            let c = consumer_instances.get(j % consumer_instances.len().max(1))?;
            Some((c.clone(), mq, off))
        })
        .collect();

    let report = match run.args.catch_up {
        None => live(&run, &producers, queue_plan, group).await,
        Some(backlog) => catch_up(&run, &producers, queue_plan, group, backlog).await,
    };
    for p in &producers {
        p.shutdown().await;
    }
    for c in &consumer_instances {
        c.shutdown().await;
    }
    admin.shutdown().await;
    let mut report = report?;
    report.load_average_end = stats::load_average();
    report.load_average_start = load_average_start;
    Ok(report)
}

fn spawn_producers(
    run: &Run,
    producers: &[Producer],
    start: Instant,
    measure_from: Instant,
    stop_at: Option<Instant>,
    total_messages: Option<u64>,
) -> JoinSet<()> {
    let a = &run.args;
    let n = producers.len() as u64;
    let plan = Arc::new(ProducerPlan {
        topic: a.topic.clone(),
        mode: a.mode,
        per_request: if a.mode == SendMode::Batch {
            a.batch_size
        } else {
            1
        },
        window: if a.mode == SendMode::Sync {
            1
        } else {
            a.in_flight
        },
        message_size: a.message_size,
        rate: if total_messages.is_some() {
            0.0
        } else {
            a.rate as f64 / n as f64
        },
        start,
        measure_from,
        stop_at,
        clock: run.clock,
    });
    let mut set = JoinSet::new();
    for (i, p) in producers.iter().enumerate() {
        // Split a message budget evenly, the first producers taking the remainder.
        let share = total_messages.map(|t| t / n + u64::from((i as u64) < t % n));
        set.spawn(producer::run(
            p.clone(),
            Arc::clone(&plan),
            Arc::clone(&run.send),
            share,
            Arc::clone(&run.stop),
        ));
    }
    set
}

fn spawn_consumers(
    run: &Run,
    queue_plan: Vec<(ClientInstance, MessageQueue, i64)>,
    group: String,
    measure_from: Instant,
    measure_until: Option<Instant>,
) -> JoinSet<()> {
    let plan = Arc::new(ConsumerPlan {
        group,
        topic: run.args.topic.clone(),
        pull_batch: run.args.pull_batch,
        measure_from,
        measure_until,
        clock: run.clock,
    });
    let mut set = JoinSet::new();
    for (instance, mq, offset) in queue_plan {
        set.spawn(consumer::run_queue(
            instance,
            Arc::clone(&plan),
            Arc::clone(&run.recv),
            mq,
            offset,
        ));
    }
    set
}

/// Waits until the consumers have `target` messages or `timeout` passes; returns whether they
/// got there and when.
async fn wait_received(recv: &Side, target: u64, timeout: Duration) -> (bool, Instant) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        if recv.total_msgs.load(Ordering::Relaxed) >= target {
            return (true, now);
        }
        if now >= deadline {
            return (false, now);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Producers and consumers at the same time: warm-up, measurement, drain.
async fn live(
    run: &Run,
    producers: &[Producer],
    queue_plan: Vec<(ClientInstance, MessageQueue, i64)>,
    group: String,
) -> Result<Report, String> {
    let a = &run.args;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(a.warmup_secs);
    let end = measure_from + Duration::from_secs(a.duration_secs);
    let mut consumers = if a.consumers > 0 {
        spawn_consumers(run, queue_plan, group, measure_from, Some(end))
    } else {
        JoinSet::new()
    };
    let reporter = spawn_progress(run, start, measure_from, a.consumers > 0);
    let mut senders = spawn_producers(run, producers, start, measure_from, Some(end), None);
    while senders.join_next().await.is_some() {}
    let sent = run.send.total_msgs.load(Ordering::Relaxed);
    let drained = if a.consumers > 0 {
        wait_received(&run.recv, sent, Duration::from_secs(a.drain_timeout_secs))
            .await
            .0
    } else {
        true
    };
    consumers.abort_all();
    while consumers.join_next().await.is_some() {}
    reporter.abort();
    let secs = a.duration_secs as f64;
    Ok(Report {
        config: a.clone(),
        load_average_start: Vec::new(),
        load_average_end: Vec::new(),
        send: run.send.summary(secs),
        send_latency_us: run.send.latency_summary(),
        consume: (a.consumers > 0).then(|| run.recv.summary(secs)),
        end_to_end_latency_us: run.recv.latency_summary(),
        messages_sent: sent,
        messages_received: run.recv.total_msgs.load(Ordering::Relaxed),
        drained,
    })
}

/// Fills a backlog, then times the consumers reading all of it.
async fn catch_up(
    run: &Run,
    producers: &[Producer],
    queue_plan: Vec<(ClientInstance, MessageQueue, i64)>,
    group: String,
    backlog: u64,
) -> Result<Report, String> {
    let a = &run.args;
    let start = Instant::now();
    eprintln!("apogee bench: filling a backlog of {backlog} messages");
    let reporter = spawn_progress(run, start, start, false);
    let mut senders = spawn_producers(run, producers, start, start, None, Some(backlog));
    while senders.join_next().await.is_some() {}
    reporter.abort();
    let fill_secs = start.elapsed().as_secs_f64();
    let sent = run.send.total_msgs.load(Ordering::Relaxed);
    eprintln!("apogee bench: backlog of {sent} messages written in {fill_secs:.1} s; reading it");
    let read_start = Instant::now();
    let reporter = spawn_progress(run, read_start, read_start, true);
    let mut consumers = spawn_consumers(run, queue_plan, group, read_start, None);
    let (drained, done) =
        wait_received(&run.recv, sent, Duration::from_secs(a.drain_timeout_secs)).await;
    consumers.abort_all();
    while consumers.join_next().await.is_some() {}
    reporter.abort();
    let read_secs = done.duration_since(read_start).as_secs_f64();
    Ok(Report {
        config: a.clone(),
        load_average_start: Vec::new(),
        load_average_end: Vec::new(),
        send: run.send.summary(fill_secs),
        send_latency_us: run.send.latency_summary(),
        consume: Some(run.recv.summary(read_secs)),
        end_to_end_latency_us: None,
        messages_sent: sent,
        messages_received: run.recv.total_msgs.load(Ordering::Relaxed),
        drained,
    })
}

/// One line a second on stderr: rates over the last second and p99 so far.
fn spawn_progress(
    run: &Run,
    start: Instant,
    measure_from: Instant,
    consuming: bool,
) -> tokio::task::JoinHandle<()> {
    let send = Arc::clone(&run.send);
    let recv = Arc::clone(&run.recv);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut last = (
            send.total_msgs.load(Ordering::Relaxed),
            send.total_bytes.load(Ordering::Relaxed),
            recv.total_msgs.load(Ordering::Relaxed),
            recv.total_bytes.load(Ordering::Relaxed),
            Instant::now(),
        );
        loop {
            tick.tick().await;
            let now = Instant::now();
            let s = (
                send.total_msgs.load(Ordering::Relaxed),
                send.total_bytes.load(Ordering::Relaxed),
            );
            let r = (
                recv.total_msgs.load(Ordering::Relaxed),
                recv.total_bytes.load(Ordering::Relaxed),
            );
            let dt = now.duration_since(last.4).as_secs_f64().max(1e-9);
            let phase = if now < measure_from { "warmup" } else { "run" };
            let mut line = format!(
                "[{:>4.0}s {phase}] send {:>9.0} msg/s {:>8.1} MB/s p99 {}",
                now.duration_since(start).as_secs_f64(),
                (s.0 - last.0) as f64 / dt,
                (s.1 - last.1) as f64 / 1e6 / dt,
                fmt_us(send.p99_us()),
            );
            if consuming {
                line.push_str(&format!(
                    " | recv {:>9.0} msg/s {:>8.1} MB/s e2e p99 {}",
                    (r.0 - last.2) as f64 / dt,
                    (r.1 - last.3) as f64 / 1e6 / dt,
                    fmt_us(recv.p99_us()),
                ));
            }
            let errors = send.errors.load(Ordering::Relaxed) + recv.errors.load(Ordering::Relaxed);
            if errors > 0 {
                line.push_str(&format!(" errors {errors}"));
            }
            eprintln!("{line}");
            last = (s.0, s.1, r.0, r.1, now);
        }
    })
}

fn fmt_us(us: Option<u64>) -> String {
    match us {
        Some(us) if us >= 10_000 => format!("{:.0} ms", us as f64 / 1000.0),
        Some(us) => format!("{:.2} ms", us as f64 / 1000.0),
        None => "-".into(),
    }
}

fn fmt_latency(l: &Option<LatencySummary>) -> String {
    match l {
        Some(l) => format!(
            "p50 {} p99 {} p99.9 {} max {} ({} samples)",
            fmt_us(Some(l.p50)),
            fmt_us(Some(l.p99)),
            fmt_us(Some(l.p999)),
            fmt_us(Some(l.max)),
            l.count
        ),
        None => "-".into(),
    }
}

fn print_summary(r: &Report) {
    let s = &r.send;
    println!(
        "send:    {:.0} msg/s, {:.1} MB/s ({} messages in {:.1} s, {} errors)",
        s.msg_per_sec, s.mb_per_sec, s.messages, s.secs, s.errors
    );
    println!("send latency: {}", fmt_latency(&r.send_latency_us));
    if let Some(c) = &r.consume {
        println!(
            "consume: {:.0} msg/s, {:.1} MB/s ({} messages in {:.1} s, {} errors)",
            c.msg_per_sec, c.mb_per_sec, c.messages, c.secs, c.errors
        );
    }
    if r.end_to_end_latency_us.is_some() {
        println!(
            "end-to-end latency: {}",
            fmt_latency(&r.end_to_end_latency_us)
        );
    }
    println!(
        "messages sent {}, received {}{}; load average {:?} -> {:?}",
        r.messages_sent,
        r.messages_received,
        if r.drained { "" } else { " (NOT all received)" },
        r.load_average_start,
        r.load_average_end
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn arguments_parse_with_issue_spelling() {
        let t = T::try_parse_from([
            "t",
            "-n",
            "10.0.0.1:9876",
            "--topic",
            "X",
            "--producers",
            "2",
            "--consumers",
            "3",
            "--queues",
            "8",
            "--message-size",
            "100",
            "--mode",
            "batch",
            "--batch-size",
            "64",
            "--in-flight",
            "4",
            "--rate",
            "50000",
            "--warmup-secs",
            "0",
            "--duration-secs",
            "2",
            "--json-out",
            "/tmp/x.json",
        ])
        .unwrap();
        let a = t.args;
        assert_eq!(a.namesrv, "10.0.0.1:9876");
        assert_eq!(a.mode, SendMode::Batch);
        assert_eq!((a.producers, a.consumers, a.queues), (2, 3, 8));
        assert_eq!((a.batch_size, a.in_flight, a.rate), (64, 4, 50_000));
        assert!(validate(&a).is_ok());
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["mode"], "batch");
    }

    #[test]
    fn zero_counts_are_rejected() {
        let t = T::try_parse_from(["t", "--producers", "0"]).unwrap();
        assert!(validate(&t.args).is_err());
        let t = T::try_parse_from(["t", "--catch-up", "10", "--consumers", "0"]).unwrap();
        assert!(validate(&t.args).is_err());
    }
}
