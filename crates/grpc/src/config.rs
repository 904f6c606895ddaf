//! Settings of the gRPC endpoint: transport limits, session bookkeeping, and the client settings
//! the server imposes through Telemetry. Defaults follow the RocketMQ 5.x proxy (`ProxyConfig`,
//! `SubscriptionGroupConfig`), so clients behave as they would against Apache RocketMQ.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::GrpcError;

/// RocketMQ's gRPC port.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8081";
/// Largest request the server decodes: 32 messages of 4 MiB plus 2 MiB of properties, as the
/// proxy allows (`grpcMaxInboundMessageSize`).
pub const DEFAULT_MAX_INBOUND_MESSAGE_BYTES: usize = 130 * 1024 * 1024;
/// Largest message body producers are told to send (`maxMessageSize`).
pub const DEFAULT_MAX_BODY_SIZE_BYTES: i32 = 4 * 1024 * 1024;
/// A client with no Telemetry stream that has not called for this long is forgotten
/// (`grpcClientIdleTimeMills`).
pub const DEFAULT_CLIENT_IDLE_TIMEOUT_MS: u64 = 120_000;
/// Delays a consumer group retries with unless it is configured otherwise: RocketMQ's delay
/// levels 3..18 (1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h).
pub const DEFAULT_RETRY_DELAYS_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// Everything the gRPC endpoint can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// `host:port` to listen on; port 0 picks a free port.
    pub listen_addr: String,
    /// Largest gRPC message decoded from a client; larger ones fail with RESOURCE_EXHAUSTED.
    pub max_inbound_message_bytes: usize,
    /// HTTP/2 streams one connection may have open at once (None: no limit).
    pub max_concurrent_streams: Option<u32>,
    /// Clients tracked at once; a new client beyond this gets TOO_MANY_REQUESTS.
    pub max_client_sessions: usize,
    /// See [`DEFAULT_CLIENT_IDLE_TIMEOUT_MS`].
    pub client_idle_timeout_ms: u64,
    /// Server-to-client commands queued per Telemetry stream before pushes fail.
    pub telemetry_queue_capacity: usize,
    /// HTTP/2 ping interval on idle connections, so a vanished client's Telemetry stream (which
    /// keeps its session alive) is noticed; 0 turns pings off.
    pub http2_keepalive_interval_ms: u64,
    /// How long a ping may go unanswered before the connection is closed.
    pub http2_keepalive_timeout_ms: u64,
    /// How long `shutdown()` lets open calls finish before cutting connections.
    pub shutdown_grace_ms: u64,
    /// Overrides sent to producers.
    pub producer: ProducerSettings,
    /// Overrides sent to consumers.
    pub consumer: ConsumerSettings,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen_addr: DEFAULT_LISTEN_ADDR.to_owned(),
            max_inbound_message_bytes: DEFAULT_MAX_INBOUND_MESSAGE_BYTES,
            max_concurrent_streams: None,
            max_client_sessions: 65_536,
            client_idle_timeout_ms: DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
            telemetry_queue_capacity: 64,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 20_000,
            shutdown_grace_ms: 5_000,
            producer: ProducerSettings::default(),
            consumer: ConsumerSettings::default(),
        }
    }
}

impl GrpcConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), GrpcError> {
        let bad = |what: &str| Err(GrpcError::InvalidConfig(what.to_owned()));
        if self.max_inbound_message_bytes == 0 {
            return bad("max_inbound_message_bytes must be > 0");
        }
        if self.max_client_sessions == 0 {
            return bad("max_client_sessions must be > 0");
        }
        if self.client_idle_timeout_ms == 0 {
            return bad("client_idle_timeout_ms must be > 0");
        }
        if self.telemetry_queue_capacity == 0 {
            return bad("telemetry_queue_capacity must be > 0");
        }
        if self.producer.max_body_size_bytes <= 0 {
            // Clients apply the value verbatim: 0 would make them refuse every message.
            return bad("producer.max_body_size_bytes must be > 0");
        }
        if self.producer.max_attempts <= 0 {
            return bad("producer.max_attempts must be > 0");
        }
        if self.consumer.receive_batch_size <= 0 {
            return bad("consumer.receive_batch_size must be > 0");
        }
        if self.consumer.default_group.max_retry_times < 0 {
            return bad("consumer.default_group.max_retry_times must be >= 0");
        }
        self.consumer.default_group.retry.validate()
    }

    pub fn client_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.client_idle_timeout_ms)
    }

    /// `None` when pings are off.
    pub fn http2_keepalive_interval(&self) -> Option<Duration> {
        (self.http2_keepalive_interval_ms > 0)
            .then(|| Duration::from_millis(self.http2_keepalive_interval_ms))
    }

    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.http2_keepalive_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// What producers are told in the Telemetry settings reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerSettings {
    /// `publishing.max_body_size`.
    pub max_body_size_bytes: i32,
    /// `publishing.validate_message_type` (`enableTopicMessageTypeCheck`).
    pub validate_message_type: bool,
    /// Send attempts, the first included (`grpcClientProducerMaxAttempts`).
    pub max_attempts: i32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_multiplier: f32,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            max_body_size_bytes: DEFAULT_MAX_BODY_SIZE_BYTES,
            validate_message_type: true,
            max_attempts: 3,
            backoff_initial_ms: 10,
            backoff_max_ms: 1_000,
            backoff_multiplier: 2.0,
        }
    }
}

/// What consumers are told in the Telemetry settings reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// `subscription.receive_batch_size` (`grpcClientConsumerLongPollingBatchSize`).
    pub receive_batch_size: i32,
    /// `subscription.long_polling_timeout` (`grpcClientConsumerMaxLongPollingTimeoutMillis`).
    pub long_polling_timeout_ms: u64,
    /// Used for a group the backend knows nothing about.
    pub default_group: GroupPolicy,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            receive_batch_size: 32,
            long_polling_timeout_ms: 20_000,
            default_group: GroupPolicy::default(),
        }
    }
}

/// The per-group part of a consumer's settings (from the subscription group config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupPolicy {
    /// `consumeMessageOrderly`: the group consumes FIFO.
    pub fifo: bool,
    /// `retryMaxTimes`; clients are told `max_attempts = max_retry_times + 1`.
    pub max_retry_times: i32,
    pub retry: RetryBackoff,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        Self {
            fifo: false,
            max_retry_times: 16,
            retry: RetryBackoff::default(),
        }
    }
}

/// A consumer group's redelivery schedule (`GroupRetryPolicy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RetryBackoff {
    /// The n-th retry waits `delays_ms[n]` (the last entry once the list runs out).
    Customized { delays_ms: Vec<u64> },
    Exponential {
        initial_ms: u64,
        max_ms: u64,
        multiplier: f32,
    },
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff::Customized {
            delays_ms: DEFAULT_RETRY_DELAYS_MS.to_vec(),
        }
    }
}

impl RetryBackoff {
    fn validate(&self) -> Result<(), GrpcError> {
        match self {
            RetryBackoff::Customized { delays_ms } if delays_ms.is_empty() => {
                Err(GrpcError::InvalidConfig(
                    "a customized retry backoff needs at least one delay".into(),
                ))
            }
            RetryBackoff::Exponential { multiplier, .. }
                if !multiplier.is_finite() || *multiplier < 1.0 =>
            {
                Err(GrpcError::InvalidConfig(
                    "an exponential retry backoff needs multiplier >= 1".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_rocketmq_proxy() {
        let config = GrpcConfig::default();
        assert_eq!(config.listen_addr, "0.0.0.0:8081");
        assert_eq!(config.producer.max_body_size_bytes, 4 * 1024 * 1024);
        assert_eq!(config.producer.max_attempts, 3);
        assert_eq!(config.consumer.receive_batch_size, 32);
        assert_eq!(config.consumer.long_polling_timeout_ms, 20_000);
        assert_eq!(config.consumer.default_group.max_retry_times, 16);
        assert_eq!(config.client_idle_timeout_ms, 120_000);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn validate_rejects_a_zero_body_size_that_would_block_every_send() {
        let mut config = GrpcConfig::default();
        config.producer.max_body_size_bytes = 0;
        assert!(matches!(
            config.validate(),
            Err(GrpcError::InvalidConfig(_))
        ));
    }

    #[test]
    fn validate_rejects_an_empty_customized_backoff() {
        let mut config = GrpcConfig::default();
        config.consumer.default_group.retry = RetryBackoff::Customized { delays_ms: vec![] };
        assert!(config.validate().is_err());
    }
}
