//! Every limit of the transport in one place, with unit-suffixed names and RocketMQ's defaults.

use std::time::Duration;

use apogee_protocol::command::DEFAULT_MAX_FRAME_BYTES;
use apogee_protocol::SerializeType;

/// Limits and timeouts shared by [`RemotingServer`](crate::RemotingServer) and
/// [`RemotingClient`](crate::RemotingClient). Fields that only make sense on one side say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingConfig {
    /// Largest frame accepted or sent, length prefix included. A larger incoming frame closes the
    /// connection; a larger outgoing one is refused with [`RemotingError::FrameTooLarge`](crate::RemotingError).
    /// RocketMQ: `com.rocketmq.remoting.frameMaxLength` = 16 MiB.
    pub max_frame_bytes: usize,
    /// Server only: connections beyond this many are closed as soon as they are accepted.
    /// RocketMQ sets no limit; this one is only a guard against descriptor exhaustion.
    pub max_connections: usize,
    /// Requests being handled at once on one connection. Past it, a request is answered
    /// `SYSTEM_BUSY` without running its handler (RocketMQ answers the same when a processor's
    /// queue is full; its send queue holds 10 000 requests). Long-polled pulls count here while
    /// they wait, so this must stay well above the number of queues one consumer pulls.
    pub max_in_flight_per_connection: usize,
    /// Requests this side sent on one connection and still awaits answers for; past it
    /// `invoke` fails with [`RemotingError::TooManyRequests`](crate::RemotingError).
    /// RocketMQ: `clientAsyncSemaphoreValue` = 65 535.
    pub max_pending_requests_per_connection: usize,
    /// Frames queued for a connection's writer. A full queue makes senders wait (back-pressure).
    pub outgoing_queue_capacity: usize,
    /// Close a connection after this long (at most a quarter more) without reads or writes while
    /// no request is in flight either way. 0 disables. RocketMQ: `serverChannelMaxIdleTimeSeconds` and `clientChannelMaxIdleTimeSeconds` = 120 s.
    pub idle_timeout_ms: u64,
    /// Client only: the timeout callers use when they have no better one. RocketMQ: 3 s.
    pub request_timeout_ms: u64,
    /// Client only: how long one TCP connect may take. RocketMQ: `connectTimeoutMillis` = 3 s.
    pub connect_timeout_ms: u64,
    /// Server only: how long a graceful shutdown waits for in-flight handlers and their responses
    /// before it closes the remaining connections. Matches the default request timeout, after which
    /// a waiting client has given up anyway.
    pub shutdown_grace_ms: u64,
    /// Client only: `RocketMq` sends every request with the binary header form, as RocketMQ clients
    /// do when `rocketmq.serialize.type` says `ROCKETMQ`; `Json` (their default) leaves each request
    /// in the form it was built with. Servers answer in the form of each request.
    pub serialize_type: SerializeType,
}

impl Default for RemotingConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_in_flight_per_connection: 10_000,
            max_pending_requests_per_connection: 65_535,
            outgoing_queue_capacity: 4_096,
            idle_timeout_ms: 120_000,
            request_timeout_ms: 3_000,
            connect_timeout_ms: 3_000,
            shutdown_grace_ms: 3_000,
            serialize_type: SerializeType::Json,
        }
    }
}

impl RemotingConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// `None` when idle connections are kept forever.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }
}
