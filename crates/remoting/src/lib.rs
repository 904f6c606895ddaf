//! `apogee-remoting`: the async transport for RocketMQ remoting frames.
