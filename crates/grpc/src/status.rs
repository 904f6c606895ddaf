//! RocketMQ's own result codes. Every RocketMQ response carries a `Status {code, message}` in its
//! body and travels with gRPC status OK; clients read the body status, so failures are reported
//! there (as [`RpcError`]) rather than as transport errors.

use crate::pb;

/// Builds a body `Status`.
pub fn status(code: pb::Code, message: impl Into<String>) -> pb::Status {
    pb::Status {
        code: code as i32,
        message: message.into(),
    }
}

/// `Status{OK, "OK"}`: RocketMQ puts the code name in the message of a success.
pub fn ok() -> pb::Status {
    status(pb::Code::Ok, "OK")
}

/// A failed call as the client will see it: a code from definition.proto's `Code` and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: pb::Code,
    pub message: String,
}

impl RpcError {
    pub fn new(code: pb::Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The endpoint has no implementation of `rpc` (yet, or in this mode).
    pub fn not_implemented(rpc: &str) -> Self {
        Self::new(
            pb::Code::NotImplemented,
            format!("{rpc} is not implemented by this endpoint"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(pb::Code::InternalServerError, message)
    }

    pub fn to_status(&self) -> pb::Status {
        status(self.code, self.message.clone())
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.as_str_name(),
            self.code as i32,
            self.message
        )
    }
}

impl std::error::Error for RpcError {}

pub type RpcResult<T> = Result<T, RpcError>;

/// A response (or stream item) that can carry nothing but a status: what a failed call answers.
pub trait FromStatus: Sized {
    fn from_status(status: pb::Status) -> Self;

    fn from_error(error: &RpcError) -> Self {
        Self::from_status(error.to_status())
    }
}

macro_rules! from_status_field {
    ($($ty:ident),* $(,)?) => {
        $(impl FromStatus for pb::$ty {
            // Single-field responses make the update a no-op; the macro serves both kinds.
            #[allow(clippy::needless_update)]
            fn from_status(status: pb::Status) -> Self {
                Self { status: Some(status), ..Default::default() }
            }
        })*
    };
}

from_status_field!(
    QueryRouteResponse,
    HeartbeatResponse,
    SendMessageResponse,
    QueryAssignmentResponse,
    AckMessageResponse,
    ForwardMessageToDeadLetterQueueResponse,
    UpdateOffsetResponse,
    GetOffsetResponse,
    QueryOffsetResponse,
    EndTransactionResponse,
    TelemetryCommand,
    NotifyClientTerminationResponse,
    ChangeInvisibleDurationResponse,
    RecallMessageResponse,
    SyncLiteSubscriptionResponse,
);

impl FromStatus for pb::ReceiveMessageResponse {
    fn from_status(status: pb::Status) -> Self {
        Self {
            content: Some(pb::receive_message_response::Content::Status(status)),
        }
    }
}

impl FromStatus for pb::PullMessageResponse {
    fn from_status(status: pb::Status) -> Self {
        Self {
            content: Some(pb::pull_message_response::Content::Status(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_implemented_uses_code_50100_and_names_the_rpc() {
        let error = RpcError::not_implemented("QueryRoute");
        let response = pb::QueryRouteResponse::from_error(&error);
        let status = response.status.expect("status set");
        assert_eq!(status.code, 50100);
        assert!(status.message.contains("QueryRoute"));
        assert!(response.message_queues.is_empty());
    }

    #[test]
    fn stream_items_carry_the_status_in_their_oneof() {
        let item = pb::ReceiveMessageResponse::from_status(ok());
        assert_eq!(
            item.content,
            Some(pb::receive_message_response::Content::Status(pb::Status {
                code: 20000,
                message: "OK".into()
            }))
        );
    }

    #[test]
    fn internal_error_uses_internal_server_error_code() {
        assert_eq!(RpcError::internal("boom").to_status().code, 50001);
    }
}
