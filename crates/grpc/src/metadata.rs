//! The `x-mq-*` request headers, read leniently. SDKs disagree on almost every header (Node sends
//! language `HTTP`, the Rust SDK `x-mq-protocol-version` and RFC 3339 dates, Python an
//! `authorization` header even without credentials), so nothing here is required or validated:
//! each value is kept as sent, and callers decide what they need (only the client id, for
//! session bookkeeping).

use tonic::metadata::MetadataMap;

pub const CLIENT_ID: &str = "x-mq-client-id";
pub const LANGUAGE: &str = "x-mq-language";
pub const CLIENT_VERSION: &str = "x-mq-client-version";
/// Java, Python and Node clients.
pub const PROTOCOL: &str = "x-mq-protocol";
/// The Rust SDK's spelling of the protocol header.
pub const PROTOCOL_VERSION: &str = "x-mq-protocol-version";
pub const DATE_TIME: &str = "x-mq-date-time";
pub const REQUEST_ID: &str = "x-mq-request-id";
pub const NAMESPACE: &str = "x-mq-namespace";
/// Read only to be ignored: authentication is not enforced by this endpoint.
pub const AUTHORIZATION: &str = "authorization";

/// What a client said about itself in one request's headers. `authorization` and session tokens
/// are deliberately not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMetadata {
    /// `x-mq-client-id`; `None` when absent, empty or not valid ASCII.
    pub client_id: Option<String>,
    /// `x-mq-language` as sent (`JAVA`, `PYTHON`, `RUST`, `HTTP` from Node, …).
    pub language: Option<String>,
    pub client_version: Option<String>,
    /// `x-mq-protocol` or, failing that, `x-mq-protocol-version` (`v2`, `GRPC_V2`, `2.0.0`).
    pub protocol: Option<String>,
    /// `x-mq-date-time` unparsed: SDKs use two different formats.
    pub date_time: Option<String>,
    pub request_id: Option<String>,
    /// `x-mq-namespace`; an empty value counts as absent.
    pub namespace: Option<String>,
}

impl ClientMetadata {
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        Self {
            client_id: text(metadata, CLIENT_ID),
            language: text(metadata, LANGUAGE),
            client_version: text(metadata, CLIENT_VERSION),
            protocol: text(metadata, PROTOCOL).or_else(|| text(metadata, PROTOCOL_VERSION)),
            date_time: text(metadata, DATE_TIME),
            request_id: text(metadata, REQUEST_ID),
            namespace: text(metadata, NAMESPACE),
        }
    }
}

/// The call's deadline as the client set it (`grpc-timeout`: at most 8 digits and a unit, H M S
/// m u n); `None` when absent or malformed.
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = metadata.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC deadline header.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The header's value, trimmed; `None` if missing, empty, or not printable ASCII.
fn text(metadata: &MetadataMap, key: &str) -> Option<String> {
    let value = metadata.get(key)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_reads_every_unit_and_rejects_junk() {
        use std::time::Duration;
        let with = |v: &str| {
            let mut m = MetadataMap::new();
            m.insert(GRPC_TIMEOUT, v.parse().expect("ascii"));
            grpc_timeout(&m)
        };
        assert_eq!(with("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(with("3M"), Some(Duration::from_secs(180)));
        assert_eq!(with("23S"), Some(Duration::from_secs(23)));
        assert_eq!(with("29999m"), Some(Duration::from_millis(29_999)));
        assert_eq!(with("7u"), Some(Duration::from_micros(7)));
        assert_eq!(with("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(with(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }
    use tonic::metadata::MetadataValue;

    fn map(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        for (key, value) in pairs {
            let value: MetadataValue<_> = value.parse().expect("test header value");
            metadata.insert(*key, value);
        }
        metadata
    }

    #[test]
    fn java_headers_are_read() {
        let meta = ClientMetadata::from_metadata(&map(&[
            (CLIENT_ID, "host@1234@0@abc"),
            (LANGUAGE, "JAVA"),
            (CLIENT_VERSION, "5.0.7"),
            (PROTOCOL, "v2"),
            (DATE_TIME, "20261124T094508Z"),
            (REQUEST_ID, "5f0c6f0e-0000-4000-8000-000000000000"),
            (NAMESPACE, ""),
        ]));
        assert_eq!(meta.client_id.as_deref(), Some("host@1234@0@abc"));
        assert_eq!(meta.language.as_deref(), Some("JAVA"));
        assert_eq!(meta.client_version.as_deref(), Some("5.0.7"));
        assert_eq!(meta.protocol.as_deref(), Some("v2"));
        assert_eq!(meta.date_time.as_deref(), Some("20261124T094508Z"));
        assert!(meta.request_id.is_some());
        assert_eq!(meta.namespace, None, "an empty namespace means none");
    }

    #[test]
    fn rust_sdk_protocol_version_header_stands_in_for_x_mq_protocol() {
        let meta = ClientMetadata::from_metadata(&map(&[
            (CLIENT_ID, "vm@5788#0"),
            (LANGUAGE, "RUST"),
            (PROTOCOL_VERSION, "2.0.0"),
            (DATE_TIME, "2026-11-24T09:45:08.38Z"),
        ]));
        assert_eq!(meta.client_id.as_deref(), Some("vm@5788#0"));
        assert_eq!(meta.protocol.as_deref(), Some("2.0.0"));
        assert_eq!(meta.date_time.as_deref(), Some("2026-11-24T09:45:08.38Z"));
        assert_eq!(meta.request_id, None);
    }

    #[test]
    fn node_http_language_is_kept_as_sent() {
        let meta = ClientMetadata::from_metadata(&map(&[(CLIENT_ID, "n@1"), (LANGUAGE, "HTTP")]));
        assert_eq!(meta.language.as_deref(), Some("HTTP"));
    }

    #[test]
    fn missing_or_blank_client_id_is_none() {
        assert_eq!(
            ClientMetadata::from_metadata(&MetadataMap::new()),
            ClientMetadata::default()
        );
        let meta = ClientMetadata::from_metadata(&map(&[(CLIENT_ID, "   ")]));
        assert_eq!(meta.client_id, None);
    }

    #[test]
    fn non_ascii_header_value_is_treated_as_absent() {
        let mut metadata = MetadataMap::new();
        let value =
            MetadataValue::try_from(&[b'x', 0xc3, 0xa9][..]).expect("obs-text is a legal value");
        metadata.insert(LANGUAGE, value);
        assert_eq!(ClientMetadata::from_metadata(&metadata).language, None);
    }
}
