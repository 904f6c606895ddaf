//! Lenient JSON for fastjson peers.
