//! The consuming side: one long-polling pull loop per queue (PULL_MESSAGE with the subscription in
//! the request, as a lite pull consumer sends it), starting at offsets taken before the run.
//! Answers are walked record by record without building full messages: only the body is needed,
//! for its size and for the send time stamped in it, which keeps the client cheap enough to
//! measure a broker streaming a backlog.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee_client::consumer::pull::{build_pull_request, PullRequest};
use apogee_client::consumer::subscription::build_subscription;
use apogee_client::{ClientInstance, MessageQueue, MessageSelector};
use apogee_protocol::body::MASTER_ID;
use apogee_protocol::codes::response_code;
use apogee_protocol::header::PullMessageResponseHeader;
use apogee_protocol::message::record::{body_length_position, SYS_FLAG_POSITION};
use hdrhistogram::Histogram;

use super::stats::{self, Clock, Side};

/// How long the broker may hold a pull that finds nothing.
const SUSPEND_MS: u64 = 1_000;
/// Extra time for the answer beyond the suspension.
const PULL_TIMEOUT: Duration = Duration::from_millis(SUSPEND_MS + 5_000);
const BACKOFF_ON_ERROR: Duration = Duration::from_millis(200);
const MERGE_EVERY: Duration = Duration::from_millis(250);

/// What every queue loop shares.
pub struct ConsumerPlan {
    /// The consumer group as it travels (fresh per run).
    pub group: String,
    pub topic: String,
    pub pull_batch: i32,
    /// Messages received from then on count toward consume throughput, and messages stamped
    /// from then on toward end-to-end latency.
    pub measure_from: Instant,
    /// Receipts after this are not counted toward consume throughput (drain).
    pub measure_until: Option<Instant>,
    pub clock: Clock,
}

fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Calls `f` with the body of each stored record in a pull answer; stops at the first record that
/// does not fit. Returns how many records were seen.
pub fn for_each_body(buf: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut pos = 0usize;
    let mut n = 0;
    while let Some(total) = be_i32(buf, pos) {
        let Some(rec) = usize::try_from(total)
            .ok()
            .filter(|t| *t > 0)
            .and_then(|t| buf.get(pos..pos.checked_add(t)?))
        else {
            break;
        };
        let Some(sys_flag) = be_i32(rec, SYS_FLAG_POSITION) else {
            break;
        };
        let at = body_length_position(sys_flag);
        let body = be_i32(rec, at)
            .and_then(|len| usize::try_from(len).ok())
            .and_then(|len| rec.get(at + 4..at + 4 + len));
        let Some(body) = body else {
            break;
        };
        f(body);
        n += 1;
        pos += rec.len();
    }
    n
}

/// Pulls `mq` from `offset` on, forever (the caller aborts the task).
pub async fn run_queue(
    instance: ClientInstance,
    plan: Arc<ConsumerPlan>,
    side: Arc<Side>,
    mq: MessageQueue,
    mut offset: i64,
) {
    let subscription = match build_subscription(&plan.topic, &MessageSelector::Tag("*".into()), 0) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apogee bench: subscription: {e}");
            return;
        }
    };
    let mut req = PullRequest {
        mq: mq.clone(),
        subscription,
        offset,
        max_nums: plan.pull_batch,
        max_bytes: None,
        commit_offset: None,
        suspend_timeout_ms: Some(SUSPEND_MS),
        send_subscription: true,
        lite: false,
        timeout: PULL_TIMEOUT,
    };
    let measure_from_us = plan.clock.epoch_us(plan.measure_from);
    let mut local: Histogram<u64> = stats::new_histogram();
    let mut last_merge = Instant::now();
    let mut reported_error = false;
    loop {
        req.offset = offset;
        let addr = match instance.find_broker_addr(&mq.broker_name, MASTER_ID, false) {
            Some((addr, _)) => addr,
            None => {
                let _ = instance.update_topic_route(&mq.topic).await;
                match instance.find_broker_addr(&mq.broker_name, MASTER_ID, false) {
                    Some((addr, _)) => addr,
                    None => {
                        side.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(BACKOFF_ON_ERROR).await;
                        continue;
                    }
                }
            }
        };
        let request = build_pull_request(&plan.group, &req, false);
        let response = match instance.invoke_broker(&addr, request, PULL_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                side.errors.fetch_add(1, Ordering::Relaxed);
                if !reported_error {
                    reported_error = true;
                    eprintln!(
                        "apogee bench: pull {mq} failed (further failures only counted): {e}"
                    );
                }
                tokio::time::sleep(BACKOFF_ON_ERROR).await;
                continue;
            }
        };
        let received = Instant::now();
        let known = matches!(
            response.code,
            response_code::SUCCESS
                | response_code::PULL_NOT_FOUND
                | response_code::PULL_RETRY_IMMEDIATELY
                | response_code::PULL_OFFSET_MOVED
        );
        let header = known
            .then(|| response.decode_header::<PullMessageResponseHeader>().ok())
            .flatten();
        let Some(header) = header else {
            side.errors.fetch_add(1, Ordering::Relaxed);
            if !reported_error {
                reported_error = true;
                eprintln!(
                    "apogee bench: pull {mq} answered {}: {}",
                    response.code,
                    response.remark.as_deref().unwrap_or("")
                );
            }
            tokio::time::sleep(BACKOFF_ON_ERROR).await;
            continue;
        };
        if response.code == response_code::SUCCESS {
            let counted = received >= plan.measure_from
                && plan.measure_until.is_none_or(|end| received < end);
            let received_us = plan.clock.epoch_us(received);
            let mut msgs = 0u64;
            let mut bytes = 0u64;
            for_each_body(&response.body, |body| {
                msgs += 1;
                bytes += body.len() as u64;
                if let Some(sent_us) = stats::read_stamp(body) {
                    if sent_us >= measure_from_us {
                        let us = received_us.saturating_sub(sent_us);
                        stats::record(&mut local, Duration::from_micros(us));
                    }
                }
            });
            side.add(msgs, bytes, counted);
        }
        offset = header.next_begin_offset.max(offset);
        if received.duration_since(last_merge) >= MERGE_EVERY {
            side.merge(&mut local);
            last_merge = received;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::message::properties::MessageProperties;
    use apogee_protocol::message::record::MessageRecord;
    use bytes::{Bytes, BytesMut};

    fn records(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for b in bodies {
            let mut rec = MessageRecord::new(
                "T",
                Bytes::copy_from_slice(b),
                MessageProperties::new().to_bytes(),
            );
            rec.born_host = "10.0.0.1:5000".parse().unwrap();
            rec.store_host = "10.0.0.2:10911".parse().unwrap();
            out.extend_from_slice(&rec.encode().unwrap());
        }
        out.to_vec()
    }

    #[test]
    fn walks_every_record_body_of_a_pull_answer() {
        let buf = records(&[b"one", b"", b"three33"]);
        let mut seen = Vec::new();
        assert_eq!(for_each_body(&buf, |b| seen.push(b.to_vec())), 3);
        assert_eq!(seen, vec![b"one".to_vec(), vec![], b"three33".to_vec()]);
    }

    #[test]
    fn every_truncation_stops_without_panicking() {
        let buf = records(&[b"hello", b"world!"]);
        let first_len = records(&[b"hello"]).len();
        for cut in 0..buf.len() {
            let n = for_each_body(&buf[..cut], |_| {});
            assert_eq!(n, usize::from(cut >= first_len), "cut at {cut}");
        }
    }
}
