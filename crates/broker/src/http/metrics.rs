//! `GET /metrics`: Prometheus text format (0.0.4) with RocketMQ 5's metric names, plus the older
//! rocketmq-exporter's `rocketmq_group_diff` so existing dashboards keep working.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::broker::BrokerInner;
use crate::http::state;
use crate::traffic::RPC_BUCKETS_MS;

/// A label value escaped for the text format.
fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn render(b: &BrokerInner) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let node = format!(
        "cluster=\"{}\",node_type=\"broker\",node_id=\"{}\"",
        esc(&b.config.broker_cluster_name),
        esc(&b.config.broker_name)
    );
    let traffic = &b.stats.traffic;

    let inputs = traffic.inputs();
    head(
        &mut out,
        "rocketmq_messages_in_total",
        "counter",
        "Messages stored, per topic.",
    );
    for (topic, messages, _) in &inputs {
        let _ = writeln!(
            out,
            "rocketmq_messages_in_total{{{node},topic=\"{}\"}} {messages}",
            esc(topic)
        );
    }
    head(
        &mut out,
        "rocketmq_throughput_in_total",
        "counter",
        "Bytes stored, per topic.",
    );
    for (topic, _, bytes) in &inputs {
        let _ = writeln!(
            out,
            "rocketmq_throughput_in_total{{{node},topic=\"{}\"}} {bytes}",
            esc(topic)
        );
    }

    let outputs = traffic.outputs();
    head(
        &mut out,
        "rocketmq_messages_out_total",
        "counter",
        "Messages delivered, per topic and consumer group.",
    );
    for (topic, group, messages, _) in &outputs {
        let _ = writeln!(
            out,
            "rocketmq_messages_out_total{{{node},topic=\"{}\",consumer_group=\"{}\"}} {messages}",
            esc(topic),
            esc(group)
        );
    }
    head(
        &mut out,
        "rocketmq_throughput_out_total",
        "counter",
        "Bytes delivered, per topic and consumer group.",
    );
    for (topic, group, _, bytes) in &outputs {
        let _ = writeln!(
            out,
            "rocketmq_throughput_out_total{{{node},topic=\"{}\",consumer_group=\"{}\"}} {bytes}",
            esc(topic),
            esc(group)
        );
    }

    let groups = state::groups(b);
    head(
        &mut out,
        "rocketmq_consumer_lag_messages",
        "gauge",
        "Messages not yet consumed (broker max offset minus committed offset), per group and topic.",
    );
    for g in &groups {
        let _ = writeln!(
            out,
            "rocketmq_consumer_lag_messages{{{node},topic=\"{}\",consumer_group=\"{}\"}} {}",
            esc(&g.topic),
            esc(&g.group),
            g.lag()
        );
    }
    head(
        &mut out,
        "rocketmq_consumer_lag_latency",
        "gauge",
        "Milliseconds since the oldest unconsumed message was stored, per group and topic.",
    );
    for g in &groups {
        let _ = writeln!(
            out,
            "rocketmq_consumer_lag_latency{{{node},topic=\"{}\",consumer_group=\"{}\"}} {}",
            esc(&g.topic),
            esc(&g.group),
            g.lag_latency_ms()
        );
    }
    head(
        &mut out,
        "rocketmq_group_diff",
        "gauge",
        "GroupDiff (rocketmq-exporter): unconsumed messages per group and topic.",
    );
    for g in &groups {
        let _ = writeln!(
            out,
            "rocketmq_group_diff{{group=\"{}\",topic=\"{}\",countOfOnlineConsumers=\"{}\",msgModel=\"{}\"}} {}",
            esc(&g.group),
            esc(&g.topic),
            g.online_consumers,
            g.message_model,
            g.lag()
        );
    }

    head(
        &mut out,
        "rocketmq_rpc_latency",
        "histogram",
        "Remoting request latency in milliseconds, per request and response code.",
    );
    for ((request_code, response_code), h) in traffic.rpc() {
        let labels = format!(
            "{node},protocol_type=\"remoting\",request_code=\"{request_code}\",response_code=\"{response_code}\""
        );
        let mut cumulative = 0u64;
        for (i, bound) in RPC_BUCKETS_MS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "rocketmq_rpc_latency_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "rocketmq_rpc_latency_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let sum_ms = h.sum_us.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "rocketmq_rpc_latency_sum{{{labels}}} {sum_ms}");
        let _ = writeln!(out, "rocketmq_rpc_latency_count{{{labels}}} {count}");
    }

    let max = b.store.commitlog_max_offset();
    head(
        &mut out,
        "rocketmq_storage_size",
        "gauge",
        "Bytes of CommitLog retained.",
    );
    let _ = writeln!(
        out,
        "rocketmq_storage_size{{{node}}} {}",
        max.saturating_sub(b.store.commitlog_min_offset())
    );
    head(
        &mut out,
        "rocketmq_storage_flush_behind_bytes",
        "gauge",
        "CommitLog bytes appended but not yet flushed to disk.",
    );
    let _ = writeln!(
        out,
        "rocketmq_storage_flush_behind_bytes{{{node}}} {}",
        max.saturating_sub(b.store.flushed_offset())
    );
    let flush = b.store.commitlog_flush_stats();
    head(
        &mut out,
        "rocketmq_storage_flush_latency",
        "summary",
        "CommitLog flush rounds and the milliseconds they took.",
    );
    let _ = writeln!(
        out,
        "rocketmq_storage_flush_latency_sum{{{node}}} {}",
        flush.total_sync_us as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "rocketmq_storage_flush_latency_count{{{node}}} {}",
        flush.rounds
    );
    head(
        &mut out,
        "rocketmq_topic_number",
        "gauge",
        "Topics on this broker.",
    );
    let _ = writeln!(
        out,
        "rocketmq_topic_number{{{node}}} {}",
        b.topics.topic_names().len()
    );
    out
}
