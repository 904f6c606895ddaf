//! The client's error type. A broker or name server answer other than success keeps its
//! response code and remark, so callers can branch on the same codes a Java client sees.

use std::io;

use apogee_protocol::codes::response_code;
use apogee_protocol::ProtocolError;
use apogee_remoting::RemotingError;
use thiserror::Error;

/// Everything a client call can fail with.
#[derive(Debug, Error)]
pub enum ClientError {
    /// A broker or name server answered with a response code that means failure.
    #[error("{addr} answered {code} ({}): {remark}", response_code::name(*.code).unwrap_or("UNKNOWN"))]
    Broker {
        /// The RocketMQ response code (`TOPIC_NOT_EXIST` = 17, `SYSTEM_BUSY` = 2, ...).
        code: i32,
        /// The remark of the answer, empty when there was none.
        remark: String,
        /// The address that answered.
        addr: String,
    },
    /// The request could not be delivered or answered (connect failure, timeout, closed
    /// connection).
    #[error("remoting error: {0}")]
    Remoting(#[from] RemotingError),
    /// A frame, header or body that could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// No name server knows the topic and no fallback applies.
    #[error("no route for topic {topic}")]
    NoRoute { topic: String },
    /// The route names a broker for which no address (or no master) is known.
    #[error("no address known for broker {broker_name}")]
    BrokerNotFound { broker_name: String },
    /// Every attempt of a send failed; `last` is the error of the final attempt.
    #[error("send to {topic} failed after {attempts} attempts (brokers {brokers:?}): {last}")]
    SendFailed {
        topic: String,
        attempts: u32,
        brokers: Vec<String>,
        last: Box<ClientError>,
    },
    /// The operation ran out of its overall time budget.
    #[error("{what} timed out after {timeout_ms} ms")]
    Timeout { what: &'static str, timeout_ms: u64 },
    /// A caller-supplied value is not acceptable (bad topic name, empty body, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operation is not possible in the current state (not started, queue not assigned, ...).
    #[error("illegal state: {0}")]
    IllegalState(String),
    /// The client or its instance has been shut down.
    #[error("client is shut down")]
    Shutdown,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl ClientError {
    /// The RocketMQ response code behind this error, when it came from a peer's answer (also
    /// through [`ClientError::SendFailed`]).
    pub fn response_code(&self) -> Option<i32> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            ClientError::SendFailed { last, .. } => last.response_code(),
            _ => None,
        }
    }

    /// A failure answer from `addr`.
    pub(crate) fn broker(code: i32, remark: Option<String>, addr: &str) -> Self {
        ClientError::Broker {
            code,
            remark: remark.unwrap_or_default(),
            addr: addr.to_owned(),
        }
    }

    /// True for the codes a Java producer retries on another broker (`DefaultMQProducer`'s
    /// `retryResponseCodes`) and for every transport failure.
    pub(crate) fn is_retryable_send(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => RETRY_RESPONSE_CODES.contains(code),
            ClientError::Remoting(_) | ClientError::BrokerNotFound { .. } => true,
            _ => false,
        }
    }
}

/// Response codes after which a synchronous send is retried on another broker.
pub const RETRY_RESPONSE_CODES: &[i32] = &[
    response_code::TOPIC_NOT_EXIST,
    response_code::SERVICE_NOT_AVAILABLE,
    response_code::SYSTEM_ERROR,
    response_code::SYSTEM_BUSY,
    response_code::NO_PERMISSION,
    response_code::NO_BUYER_ID,
    response_code::NOT_IN_CURRENT_UNIT,
    response_code::GO_AWAY,
];

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_error_names_the_code_and_keeps_the_remark() {
        let e = ClientError::broker(17, Some("topic[T] not exist".into()), "10.0.0.1:10911");
        assert_eq!(e.response_code(), Some(17));
        let text = e.to_string();
        assert!(text.contains("TOPIC_NOT_EXIST"), "{text}");
        assert!(text.contains("topic[T] not exist"), "{text}");
    }

    #[test]
    fn send_failed_exposes_the_code_of_the_last_attempt() {
        let e = ClientError::SendFailed {
            topic: "T".into(),
            attempts: 3,
            brokers: vec!["a".into(), "b".into()],
            last: Box::new(ClientError::broker(2, None, "x")),
        };
        assert_eq!(e.response_code(), Some(2));
    }

    #[test]
    fn only_java_retry_codes_and_transport_errors_are_retryable() {
        assert!(ClientError::broker(response_code::SYSTEM_BUSY, None, "a").is_retryable_send());
        assert!(ClientError::broker(response_code::TOPIC_NOT_EXIST, None, "a").is_retryable_send());
        assert!(
            !ClientError::broker(response_code::MESSAGE_ILLEGAL, None, "a").is_retryable_send()
        );
        assert!(ClientError::Remoting(RemotingError::ConnectionClosed).is_retryable_send());
        assert!(!ClientError::InvalidArgument("x".into()).is_retryable_send());
    }
}
