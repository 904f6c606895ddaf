//! RecallMessage. A DELAY message the broker put in its timer comes back from the send with a
//! recall handle (RocketMQ 5.3's `v1` format, [`RecallHandle`], made and checked by the broker);
//! recalling runs the broker's RECALL_MESSAGE processor, and its refusals are mapped by
//! [`crate::convert::map_recall_error`], as the remote backend maps a remote broker's.

use apogee_broker::local::LocalServices;

use crate::convert::map_recall_error;
use crate::pb;
use crate::status::{ok, RpcResult};

pub use apogee_protocol::header::RecallHandle;

/// Cancels the delay message `request.recall_handle` names.
pub(super) async fn recall(
    services: &LocalServices,
    request: pb::RecallMessageRequest,
    peer: Option<std::net::SocketAddr>,
) -> RpcResult<pb::RecallMessageResponse> {
    let topic = super::required_name(&request.topic, "topic")?;
    let message_id = services
        .recall(topic, None, &request.recall_handle, peer)
        .await
        .map_err(map_recall_error)?;
    Ok(pb::RecallMessageResponse {
        status: Some(ok()),
        message_id,
    })
}
