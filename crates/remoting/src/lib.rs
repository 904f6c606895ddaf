//! `apogee-remoting`: the async transport for RocketMQ remoting frames over tokio.
//!
//! A [`RemotingServer`] accepts connections and runs a [`RequestHandler`] (usually a [`Router`]
//! keyed by request code) for each request; a [`RemotingClient`] keeps one multiplexed connection
//! per address. Both sides share the [`ConnectionHandle`] core: responses are matched to requests
//! by `opaque` (not by order), oneway requests get no response, either side may send requests,
//! and every resource is bounded by [`RemotingConfig`].

mod client;
mod config;
mod connection;
mod error;
mod handler;
mod server;
mod util;

pub use client::RemotingClient;
pub use config::RemotingConfig;
pub use connection::{ConnectionHandle, OVERLOAD_REMARK, SHUTTING_DOWN_REMARK};
pub use error::RemotingError;
pub use handler::{not_supported, HandlerFuture, RequestContext, RequestHandler, Router};
pub use server::RemotingServer;
