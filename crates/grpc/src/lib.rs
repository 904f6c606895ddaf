//! `apogee-grpc`: the RocketMQ 5.x gRPC endpoint (`apache.rocketmq.v2.MessagingService`, port
//! 8081) that the official 5.x clients (Java, Go, Python, Node, C#, C++, Rust) talk to.
//!
//! The schema lives in `proto/` (written from apache/rocketmq-apis; see the note atop each
//! file); `build.rs` compiles it with `protox`, so no `protoc` is needed. [`pb`] holds the
//! generated types, server and client. [`GrpcServer`] serves them over a [`MessagingBackend`]:
//! Telemetry settings, Heartbeat, NotifyClientTermination and the client [`SessionRegistry`] are
//! handled here; broker work is the backend's ([`NotImplementedBackend`] answers NOT_IMPLEMENTED).
//!
//! ```no_run
//! # async fn run() -> Result<(), apogee_grpc::GrpcError> {
//! use std::sync::Arc;
//! let backend = Arc::new(apogee_grpc::NotImplementedBackend);
//! let handle = apogee_grpc::GrpcServer::start(apogee_grpc::GrpcConfig::default(), backend).await?;
//! println!("listening on {}", handle.local_addr());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

pub mod backend;
pub mod config;
pub mod convert;
pub mod error;
pub mod local;
pub mod metadata;
pub mod remote;
pub mod renew;
pub mod server;
pub mod service;
pub mod session;
pub mod settings;
pub mod status;

/// Types and stubs generated from `proto/apache/rocketmq/v2/*.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::all,
    unreachable_pub
)]
pub mod pb {
    tonic::include_proto!("apache.rocketmq.v2");
}

/// The compiled schema (`google.protobuf.FileDescriptorSet`, imports included), for reflection
/// and for checking the schema at run time.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rocketmq_v2_descriptor.bin"));

pub use backend::{
    BackendStream, MessagingBackend, NotImplementedBackend, OfflineReason, RequestContext,
};
pub use config::{
    ConsumerSettings, GroupPolicy, GrpcConfig, ProducerSettings, RetryBackoff, DEFAULT_LISTEN_ADDR,
};
pub use error::GrpcError;
pub use local::LocalBackend;
pub use metadata::ClientMetadata;
pub use remote::{RemoteBackend, RemoteConfig};
pub use server::{GrpcServer, GrpcServerHandle};
pub use service::MessagingServiceImpl;
pub use session::{ClientSession, PushError, SessionError, SessionRegistry};
pub use status::{FromStatus, RpcError, RpcResult};
