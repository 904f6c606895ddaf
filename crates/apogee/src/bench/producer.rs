//! One producer's load loop. Sends are scheduled open-loop when a rate is set: request `i` is due
//! at `start + i * interval` whatever the replies do, and its latency counts from that due time,
//! so a stalled broker shows up as latency instead of silently lowering the offered load
//! (no coordinated omission). Without a rate, each request goes as soon as a slot in the window
//! of requests in flight is free, and latency counts from the moment it was issued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee_client::{ClientError, Message, Producer};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::stats::{self, Clock, Side};
use super::SendMode;

/// Tokio's timers fire on a 1 ms grid, so a wait is cut short by this much: a request may go out
/// up to 1 ms early (its latency then counts from when it really went) rather than up to 1 ms
/// late (which would add timer lag to every latency).
const TIMER_SLACK: Duration = Duration::from_millis(1);
/// How often a task folds its local histogram into the shared one for progress lines.
const MERGE_EVERY: Duration = Duration::from_millis(250);

/// What every producer task does.
pub struct ProducerPlan {
    pub topic: String,
    pub mode: SendMode,
    /// Messages per request (1 unless batch mode).
    pub per_request: usize,
    /// Requests in flight at most.
    pub window: usize,
    pub message_size: usize,
    /// Messages per second for this producer; 0 = as fast as possible.
    pub rate: f64,
    /// Origin of the schedule.
    pub start: Instant,
    /// Requests due before this are warm-up: sent, not measured.
    pub measure_from: Instant,
    /// No request is issued at or after this.
    pub stop_at: Option<Instant>,
    pub clock: Clock,
}

/// Outcome of one request: messages, due time, issue time, completion time, result.
type Done = (u64, Instant, Instant, Instant, Result<(), ClientError>);

struct Recorder<'a> {
    plan: &'a ProducerPlan,
    side: &'a Side,
    local: Histogram<u64>,
    last_merge: Instant,
    reported_error: bool,
}

impl Recorder<'_> {
    fn done(&mut self, (msgs, due, issued, finished, result): Done) {
        // Latency: every request due in the window, however late it completes. Throughput:
        // what completed within the window, so an overloaded system shows its real rate.
        let measured = due >= self.plan.measure_from;
        let in_window = finished >= self.plan.measure_from
            && self.plan.stop_at.is_none_or(|end| finished < end);
        match result {
            Ok(()) => {
                let bytes = msgs * self.plan.message_size as u64;
                self.side.add(msgs, bytes, in_window);
                if measured {
                    let from = due.min(issued);
                    stats::record(&mut self.local, finished.saturating_duration_since(from));
                }
            }
            Err(e) => {
                self.side.errors.fetch_add(1, Ordering::Relaxed);
                if !self.reported_error {
                    self.reported_error = true;
                    eprintln!("apogee bench: send failed (further failures only counted): {e}");
                }
            }
        }
        if finished.duration_since(self.last_merge) >= MERGE_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.side.merge(&mut self.local);
        self.last_merge = Instant::now();
    }
}

/// Incompressible filler so that no layer can make the benchmark cheaper than real data.
pub fn filler(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Bodies are carved out of buffers of this size: one allocation per many messages.
const BODY_ARENA_BYTES: usize = 256 * 1024;

fn message(plan: &ProducerPlan, template: &[u8], due: Instant, arena: &mut BytesMut) -> Message {
    if arena.capacity() < template.len() {
        *arena = BytesMut::with_capacity(BODY_ARENA_BYTES.max(template.len()));
    }
    arena.extend_from_slice(template);
    // A request sent early (timer slack) carries its real send time, so that end-to-end latency
    // never comes out shorter than the transfer.
    let stamp = due.min(Instant::now());
    stats::stamp_body(arena, plan.clock.epoch_us(stamp));
    Message::new(plan.topic.as_str(), arena.split().freeze())
}

async fn send(
    producer: Producer,
    mode: SendMode,
    mut msgs: Vec<Message>,
) -> Result<(), ClientError> {
    match mode {
        SendMode::Batch => producer.send_batch(msgs).await.map(|_| ()),
        SendMode::Sync | SendMode::Async => match msgs.pop() {
            Some(m) => producer.send(m).await.map(|_| ()),
            None => Ok(()),
        },
    }
}

/// Runs until `stop_at`, until `max_messages` were issued, or until `stop` is raised; waits for
/// every request in flight before returning.
pub async fn run(
    producer: Producer,
    plan: Arc<ProducerPlan>,
    side: Arc<Side>,
    max_messages: Option<u64>,
    stop: Arc<AtomicBool>,
) {
    let template = filler(plan.message_size);
    let mut arena = BytesMut::new();
    let per_request = plan.per_request.max(1);
    let interval_secs = (plan.rate > 0.0).then(|| per_request as f64 / plan.rate);
    let window = plan.window.max(1);
    let mut rec = Recorder {
        plan: &plan,
        side: &side,
        local: stats::new_histogram(),
        last_merge: Instant::now(),
        reported_error: false,
    };
    let mut in_flight: JoinSet<Done> = JoinSet::new();
    let mut issued_msgs: u64 = 0;
    let mut i: u64 = 0;
    loop {
        if stop.load(Ordering::Relaxed) || max_messages.is_some_and(|m| issued_msgs >= m) {
            break;
        }
        let due = match interval_secs {
            Some(secs) => plan.start + Duration::from_secs_f64(secs * i as f64),
            None => Instant::now(),
        };
        if plan.stop_at.is_some_and(|end| due >= end) {
            break;
        }
        if interval_secs.is_some() {
            let wake = due.checked_sub(TIMER_SLACK).unwrap_or(due);
            while Instant::now() < wake {
                if in_flight.is_empty() {
                    tokio::time::sleep_until(wake.into()).await;
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.into()) => break,
                    Some(joined) = in_flight.join_next() => {
                        if let Ok(done) = joined {
                            rec.done(done);
                        }
                    }
                }
            }
        }
        while in_flight.len() >= window {
            match in_flight.join_next().await {
                Some(Ok(done)) => rec.done(done),
                Some(Err(_)) => {
                    side.errors.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        let n = match max_messages {
            Some(m) => per_request.min(usize::try_from(m - issued_msgs).unwrap_or(usize::MAX)),
            None => per_request,
        };
        let msgs: Vec<Message> = (0..n)
            .map(|_| message(&plan, &template, due, &mut arena))
            .collect();
        issued_msgs += n as u64;
        i += 1;
        let issued = Instant::now();
        if window == 1 {
            // One request at a time: no task hop between the caller and the send.
            let result = send(producer.clone(), plan.mode, msgs).await;
            rec.done((n as u64, due, issued, Instant::now(), result));
        } else {
            let p = producer.clone();
            let mode = plan.mode;
            in_flight.spawn(async move {
                // Boxed so that spawning copies a pointer, not the whole send state machine.
                let result = Box::pin(send(p, mode, msgs)).await;
                (n as u64, due, issued, Instant::now(), result)
            });
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        match joined {
            Ok(done) => rec.done(done),
            Err(_) => {
                side.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    rec.flush();
}
