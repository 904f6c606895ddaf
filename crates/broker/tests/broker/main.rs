//! End-to-end tests: an in-process broker on 127.0.0.1:0 with a temp data dir, driven over TCP by
//! a `RemotingClient` with hand-built headers and bodies, as a RocketMQ client would.

mod common;

mod admin;
mod clients;
mod delay;
mod http;
mod long_poll;
mod offsets;
mod pop;
mod query;
mod recall;
mod register;
mod reset_config;
mod restart;
mod retry;
mod send_pull;
mod sql_filter;
mod timer;
mod transaction;
