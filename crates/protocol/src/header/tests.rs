//! Tests for every header. The generic checks run over [`CASES`], built from each header's
//! [`HeaderSchema`]: adding a header means adding one row there.

use std::fmt::Debug;

use super::*;
use crate::codes::request_code;
use crate::command::{ExtFields, RemotingCommand, SerializeType};
use crate::error::ProtocolError;

// ---- the generic checks ---------------------------------------------------------------------------

trait TestHeader: CommandHeader + HeaderSchema + PartialEq + Debug + Default {}
impl<T: CommandHeader + HeaderSchema + PartialEq + Debug + Default> TestHeader for T {}

struct Case {
    name: &'static str,
    fields: &'static [FieldSpec],
    round_trip: fn(&'static str),
    missing: fn(&'static str),
    invalid: fn(&'static str),
    padded: fn(&'static str),
    unknown_ignored: fn(&'static str),
    minimal: fn(&'static str),
}

macro_rules! case {
    ($t:ty) => {
        Case {
            name: stringify!($t),
            fields: <$t as HeaderSchema>::FIELDS,
            round_trip: check_round_trip::<$t>,
            missing: check_missing_required::<$t>,
            invalid: check_invalid_values::<$t>,
            padded: check_padded_values::<$t>,
            unknown_ignored: check_unknown_keys_ignored::<$t>,
            minimal: check_minimal::<$t>,
        }
    };
}

const CASES: &[Case] = &[
    // rpc
    case!(RpcRequestHeader),
    // send
    case!(SendMessageRequestHeader),
    case!(SendMessageRequestHeaderV2),
    case!(SendMessageResponseHeader),
    case!(ReplyMessageRequestHeader),
    // pull
    case!(PullMessageRequestHeader),
    case!(PullMessageResponseHeader),
    // offsets
    case!(QueryConsumerOffsetRequestHeader),
    case!(QueryConsumerOffsetResponseHeader),
    case!(UpdateConsumerOffsetRequestHeader),
    case!(UpdateConsumerOffsetResponseHeader),
    case!(GetMaxOffsetRequestHeader),
    case!(GetMaxOffsetResponseHeader),
    case!(GetMinOffsetRequestHeader),
    case!(GetMinOffsetResponseHeader),
    case!(GetEarliestMsgStoretimeRequestHeader),
    case!(GetEarliestMsgStoretimeResponseHeader),
    case!(SearchOffsetRequestHeader),
    case!(SearchOffsetResponseHeader),
    case!(QueryConsumeTimeSpanRequestHeader),
    case!(QueryCorrectionOffsetHeader),
    case!(CloneGroupOffsetRequestHeader),
    case!(QueryConsumeQueueRequestHeader),
    // client
    case!(HeartbeatRequestHeader),
    case!(UnregisterClientRequestHeader),
    case!(UnregisterClientResponseHeader),
    case!(GetConsumerListByGroupRequestHeader),
    case!(GetConsumerListByGroupResponseHeader),
    case!(NotifyConsumerIdsChangedRequestHeader),
    case!(LockBatchMqRequestHeader),
    case!(UnlockBatchMqRequestHeader),
    // name server
    case!(GetRouteInfoRequestHeader),
    case!(RegisterBrokerRequestHeader),
    case!(RegisterBrokerResponseHeader),
    case!(UnRegisterBrokerRequestHeader),
    case!(BrokerHeartbeatRequestHeader),
    case!(QueryDataVersionRequestHeader),
    case!(QueryDataVersionResponseHeader),
    case!(PutKVConfigRequestHeader),
    case!(GetKVConfigRequestHeader),
    case!(GetKVConfigResponseHeader),
    case!(DeleteKVConfigRequestHeader),
    case!(GetKVListByNamespaceRequestHeader),
    case!(DeleteTopicFromNamesrvRequestHeader),
    case!(RegisterTopicRequestHeader),
    case!(RegisterOrderTopicRequestHeader),
    case!(GetTopicsByClusterRequestHeader),
    case!(WipeWritePermOfBrokerRequestHeader),
    case!(WipeWritePermOfBrokerResponseHeader),
    case!(AddWritePermOfBrokerRequestHeader),
    case!(AddWritePermOfBrokerResponseHeader),
    // topic and group admin
    case!(CreateTopicRequestHeader),
    case!(DeleteTopicRequestHeader),
    case!(GetTopicStatsInfoRequestHeader),
    case!(GetTopicConfigRequestHeader),
    case!(GetAllTopicConfigRequestHeader),
    case!(GetAllTopicConfigResponseHeader),
    case!(GetAllSubscriptionGroupRequestHeader),
    case!(GetAllSubscriptionGroupResponseHeader),
    case!(DeleteSubscriptionGroupRequestHeader),
    case!(GetSubscriptionGroupConfigRequestHeader),
    case!(UpdateGroupForbiddenRequestHeader),
    // transactions
    case!(EndTransactionRequestHeader),
    case!(EndTransactionResponseHeader),
    case!(CheckTransactionStateRequestHeader),
    case!(CheckTransactionStateResponseHeader),
    case!(ResumeCheckHalfMessageRequestHeader),
    // consumers
    case!(ConsumerSendMsgBackRequestHeader),
    case!(GetConsumeStatsRequestHeader),
    case!(GetConsumerConnectionListRequestHeader),
    case!(GetProducerConnectionListRequestHeader),
    case!(GetAllProducerInfoRequestHeader),
    case!(ResetOffsetRequestHeader),
    case!(GetConsumerStatusRequestHeader),
    case!(GetConsumerRunningInfoRequestHeader),
    case!(ConsumeMessageDirectlyResultRequestHeader),
    case!(QueryTopicConsumeByWhoRequestHeader),
    case!(QueryTopicsByConsumerRequestHeader),
    case!(QuerySubscriptionByConsumerRequestHeader),
    // query
    case!(QueryMessageRequestHeader),
    case!(QueryMessageResponseHeader),
    case!(ViewMessageRequestHeader),
    case!(ViewMessageResponseHeader),
    // pop
    case!(PopMessageRequestHeader),
    case!(PopMessageResponseHeader),
    case!(AckMessageRequestHeader),
    case!(ChangeInvisibleTimeRequestHeader),
    case!(ChangeInvisibleTimeResponseHeader),
    case!(PeekMessageRequestHeader),
    case!(NotificationRequestHeader),
    case!(NotificationResponseHeader),
    case!(PollingInfoRequestHeader),
    case!(PollingInfoResponseHeader),
    // recall
    case!(RecallMessageRequestHeader),
    case!(RecallMessageResponseHeader),
    // broker admin
    case!(GetBrokerConfigResponseHeader),
    case!(GetConsumeStatsInBrokerHeader),
    case!(ViewBrokerStatsDataRequestHeader),
    case!(CheckRocksdbCqWriteProgressRequestHeader),
    case!(ExportRocksDbConfigToJsonRequestHeader),
    case!(GetBrokerMemberGroupRequestHeader),
    case!(AddBrokerRequestHeader),
    case!(RemoveBrokerRequestHeader),
    case!(NotifyMinBrokerIdChangeRequestHeader),
    case!(ExchangeHaInfoRequestHeader),
    case!(ExchangeHaInfoResponseHeader),
    case!(ResetMasterFlushOffsetHeader),
    case!(NotifyBrokerRoleChangedRequestHeader),
];

/// A valid wire value for field number `i`, distinct per field so that swapped fields show up.
fn sample(spec: &FieldSpec, i: usize) -> String {
    match spec.kind {
        FieldKind::String => format!("{}-v{i}", spec.wire),
        // Alternate signs: negative numbers are valid too (queueId -1).
        FieldKind::Int => format!("{}", (7 + i as i32) * if i & 1 == 0 { 1 } else { -1 }),
        FieldKind::Long => format!("{}", 1_700_000_000_000i64 + i as i64),
        // True differs from every default false; `committed` (default true) is covered elsewhere.
        FieldKind::Bool => "true".to_owned(),
        FieldKind::Enum(names) => names.last().copied().unwrap_or_default().to_owned(),
    }
}

fn full_ext<H: HeaderSchema>() -> ExtFields {
    H::FIELDS
        .iter()
        .enumerate()
        .map(|(i, spec)| (spec.wire, sample(spec, i)))
        .collect()
}

fn sorted(ext: &ExtFields) -> Vec<(String, String)> {
    let mut v: Vec<_> = ext
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    v.sort();
    v
}

fn write<H: CommandHeader>(h: &H) -> ExtFields {
    let mut ext = ExtFields::new();
    h.write_ext_fields(&mut ext);
    ext
}

fn without(ext: &ExtFields, key: &str) -> ExtFields {
    ext.iter().filter(|(k, _)| *k != key).collect()
}

fn with(ext: &ExtFields, key: &str, value: &str) -> ExtFields {
    let mut out = ext.clone();
    out.insert(key, value);
    out
}

fn check_round_trip<H: TestHeader>(name: &str) {
    let ext = full_ext::<H>();
    let h = H::from_ext_fields(&ext).unwrap_or_else(|e| panic!("{name}: {e}"));
    if !H::FIELDS.is_empty() {
        assert_ne!(h, H::default(), "{name}: every field was set");
    }
    let out = write(&h);
    assert_eq!(sorted(&out), sorted(&ext), "{name}: written fields");
    assert_eq!(H::from_ext_fields(&out).as_ref(), Ok(&h), "{name}: re-read");
}

fn check_missing_required<H: TestHeader>(name: &str) {
    let ext = full_ext::<H>();
    for spec in H::FIELDS.iter().filter(|s| s.required) {
        let got = H::from_ext_fields(&without(&ext, spec.wire));
        assert_eq!(
            got,
            Err(ProtocolError::MissingField(spec.wire)),
            "{name}: without {}",
            spec.wire
        );
        if !matches!(spec.kind, FieldKind::String) {
            let got = H::from_ext_fields(&with(&ext, spec.wire, "  "));
            assert_eq!(
                got,
                Err(ProtocolError::MissingField(spec.wire)),
                "{name}: blank {}",
                spec.wire
            );
        }
    }
}

fn check_invalid_values<H: TestHeader>(name: &str) {
    let ext = full_ext::<H>();
    for spec in H::FIELDS {
        if matches!(spec.kind, FieldKind::String | FieldKind::Enum(_)) {
            continue;
        }
        let got = H::from_ext_fields(&with(&ext, spec.wire, "x1"));
        assert_eq!(
            got,
            Err(ProtocolError::InvalidField {
                field: spec.wire,
                value: "x1".to_owned()
            }),
            "{name}: {}",
            spec.wire
        );
    }
}

fn check_padded_values<H: TestHeader>(name: &str) {
    let ext = full_ext::<H>();
    let expected = H::from_ext_fields(&ext).unwrap_or_else(|e| panic!("{name}: {e}"));
    let padded: ExtFields = H::FIELDS
        .iter()
        .enumerate()
        .map(|(i, spec)| match spec.kind {
            FieldKind::String => (spec.wire, sample(spec, i)),
            _ => (spec.wire, format!(" {}\n", sample(spec, i))),
        })
        .collect();
    assert_eq!(H::from_ext_fields(&padded), Ok(expected), "{name}");
}

/// Keys real clients add to requests (RpcRequestHeader, ACL signing, zone hook).
const FOREIGN_KEYS: &[(&str, &str)] = &[
    ("ns", "n1"),
    ("nsd", "false"),
    ("bname", "broker-a"),
    ("oway", "true"),
    ("lo", "false"),
    ("AccessKey", "ak"),
    ("Signature", "c2ln"),
    ("SecurityToken", "tok"),
    ("unexpectedNumber", "not-a-number"),
];

fn check_unknown_keys_ignored<H: TestHeader>(name: &str) {
    let ext = full_ext::<H>();
    let expected = H::from_ext_fields(&ext).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut noisy = ext.clone();
    for (k, v) in FOREIGN_KEYS {
        if !H::FIELDS.iter().any(|s| s.wire == *k) {
            noisy.insert(*k, *v);
        }
    }
    assert_eq!(H::from_ext_fields(&noisy), Ok(expected), "{name}");
}

fn check_minimal<H: TestHeader>(name: &str) {
    let full = full_ext::<H>();
    let minimal: ExtFields = full
        .iter()
        .filter(|(k, _)| H::FIELDS.iter().any(|s| s.wire == *k && s.required))
        .collect();
    let h = H::from_ext_fields(&minimal).unwrap_or_else(|e| panic!("{name}: {e}"));
    let out = write(&h);
    let mut expected_keys: Vec<&str> = H::FIELDS
        .iter()
        .filter(|s| s.required || s.defaulted)
        .map(|s| s.wire)
        .collect();
    expected_keys.sort();
    let mut keys: Vec<&str> = out.iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(
        keys, expected_keys,
        "{name}: absent optionals are not written"
    );
    assert_eq!(H::from_ext_fields(&out), Ok(h), "{name}: re-read");
    if H::FIELDS.iter().all(|s| !s.required) {
        assert_eq!(
            H::from_ext_fields(&ExtFields::new()),
            Ok(H::default()),
            "{name}"
        );
    }
}

fn run(check: impl Fn(&Case)) {
    for case in CASES {
        check(case);
    }
}

#[test]
fn every_header_round_trips_with_every_field_present() {
    run(|c| (c.round_trip)(c.name));
}

#[test]
fn every_header_names_the_missing_required_field() {
    run(|c| (c.missing)(c.name));
}

#[test]
fn every_header_rejects_unparsable_numbers_and_booleans_naming_the_field() {
    run(|c| (c.invalid)(c.name));
}

#[test]
fn every_header_trims_numbers_and_booleans() {
    run(|c| (c.padded)(c.name));
}

#[test]
fn every_header_ignores_unknown_ext_fields() {
    run(|c| (c.unknown_ignored)(c.name));
}

#[test]
fn every_header_writes_only_present_fields_and_defaults() {
    run(|c| (c.minimal)(c.name));
}

#[test]
fn every_header_has_distinct_wire_names_and_is_listed_once() {
    for (i, case) in CASES.iter().enumerate() {
        for (j, a) in case.fields.iter().enumerate() {
            assert!(!a.wire.is_empty());
            for b in &case.fields[j + 1..] {
                assert_ne!(a.wire, b.wire, "{}", case.name);
            }
        }
        for other in &CASES[i + 1..] {
            assert_ne!(case.name, other.name);
        }
    }
}

// ---- schema facts ------------------------------------------------------------------------------

fn spec_of<H: HeaderSchema>(wire: &str) -> FieldSpec {
    *H::FIELDS
        .iter()
        .find(|s| s.wire == wire)
        .unwrap_or_else(|| panic!("no field {wire}"))
}

#[test]
fn schema_marks_required_optional_and_defaulted_fields() {
    let topic = spec_of::<GetMaxOffsetRequestHeader>("topic");
    assert!(topic.required && !topic.defaulted);
    assert_eq!(topic.kind, FieldKind::String);
    let committed = spec_of::<GetMaxOffsetRequestHeader>("committed");
    assert!(!committed.required && committed.defaulted);
    assert_eq!(committed.kind, FieldKind::Bool);
    let sub = spec_of::<PullMessageRequestHeader>("subscription");
    assert!(!sub.required && !sub.defaulted);
    assert_eq!(
        spec_of::<PullMessageRequestHeader>("queueOffset").kind,
        FieldKind::Long
    );
    assert_eq!(
        spec_of::<SearchOffsetRequestHeader>("boundaryType").kind,
        FieldKind::Enum(&["LOWER", "UPPER"])
    );
}

#[test]
fn pull_request_wire_names_match_java() {
    let names: Vec<&str> = PullMessageRequestHeader::FIELDS
        .iter()
        .map(|s| s.wire)
        .collect();
    assert_eq!(
        names,
        [
            "consumerGroup",
            "topic",
            "queueId",
            "queueOffset",
            "maxMsgNums",
            "sysFlag",
            "commitOffset",
            "suspendTimeoutMillis",
            "subscription",
            "subVersion",
            "expressionType",
            "maxMsgBytes",
            "requestSource",
            "proxyFrowardClientId",
        ]
    );
}

// ---- send: V1 <-> V2 ------------------------------------------------------------------------------

const PROPS: &str = "TAGS\u{1}TagA\u{2}KEYS\u{1}order-1\u{2}WAIT\u{1}true\u{2}UNIQ_KEY\u{1}7F0000010B6418B4AAC2520E2D7D0000\u{2}";

/// Reference §10.2: the V2 extFields a Java producer sends for a ZLIB-compressed body.
fn golden_v2_ext() -> ExtFields {
    [
        ("a", "P1"),
        ("b", "T1"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "2"),
        ("f", "769"),
        ("g", "1700000000123"),
        ("h", "0"),
        ("i", PROPS),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
        ("n", "broker-a"),
    ]
    .into_iter()
    .collect()
}

fn golden_v1() -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "P1".into(),
        topic: "T1".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: 0x301,
        born_timestamp: 1_700_000_000_123,
        flag: 0,
        properties: Some(PROPS.into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    }
}

#[test]
fn v2_send_header_of_the_reference_decodes_to_the_v1_struct() {
    let v1 = SendMessageRequestHeader::from_ext_fields_v2(&golden_v2_ext());
    assert_eq!(v1, Ok(golden_v1()));
}

#[test]
fn v1_send_header_reencodes_to_exact_v2_keys() {
    let mut ext = ExtFields::new();
    golden_v1().write_ext_fields_v2(&mut ext);
    assert_eq!(sorted(&ext), sorted(&golden_v2_ext()));
    assert!(
        ext.get("l").is_none(),
        "absent maxReconsumeTimes is not written"
    );
}

#[test]
fn v1_send_header_writes_java_long_names() {
    let ext = write(&golden_v1());
    let expected: ExtFields = [
        ("producerGroup", "P1"),
        ("topic", "T1"),
        ("defaultTopic", "TBW102"),
        ("defaultTopicQueueNums", "4"),
        ("queueId", "2"),
        ("sysFlag", "769"),
        ("bornTimestamp", "1700000000123"),
        ("flag", "0"),
        ("properties", PROPS),
        ("reconsumeTimes", "0"),
        ("unitMode", "false"),
        ("batch", "false"),
        ("bname", "broker-a"),
    ]
    .into_iter()
    .collect();
    assert_eq!(ext, expected, "declaration order and values");
}

#[test]
fn every_v2_letter_maps_to_its_v1_field() {
    // Distinct values per letter, so a swapped mapping cannot pass.
    let v2 = SendMessageRequestHeaderV2 {
        a: "group".into(),
        b: "topic".into(),
        c: "template".into(),
        d: 1,
        e: 2,
        f: 3,
        g: 4,
        h: 5,
        i: Some("props".into()),
        j: Some(6),
        k: Some(true),
        l: Some(7),
        m: Some(false),
        n: Some("broker".into()),
    };
    let v1 = SendMessageRequestHeader::from(v2.clone());
    assert_eq!(
        (
            v1.producer_group.as_str(),
            v1.topic.as_str(),
            v1.default_topic.as_str()
        ),
        ("group", "topic", "template")
    );
    assert_eq!(
        (
            v1.default_topic_queue_nums,
            v1.queue_id,
            v1.sys_flag,
            v1.born_timestamp,
            v1.flag
        ),
        (1, 2, 3, 4, 5)
    );
    assert_eq!(v1.properties.as_deref(), Some("props"));
    assert_eq!(v1.reconsume_times, Some(6));
    assert_eq!(v1.unit_mode, Some(true));
    assert_eq!(v1.max_reconsume_times, Some(7));
    assert_eq!(v1.batch, Some(false));
    assert_eq!(v1.broker_name.as_deref(), Some("broker"));
    assert_eq!(SendMessageRequestHeaderV2::from(v1), v2);
}

#[test]
fn decode_send_request_picks_the_header_form_by_code() {
    let mut v1_ext = ExtFields::new();
    golden_v1().write_ext_fields(&mut v1_ext);
    let v2_ext = golden_v2_ext();
    let rows: &[(
        i32,
        &ExtFields,
        Result<SendMessageRequestHeader, ProtocolError>,
    )] = &[
        (request_code::SEND_MESSAGE, &v1_ext, Ok(golden_v1())),
        (request_code::SEND_REPLY_MESSAGE, &v1_ext, Ok(golden_v1())),
        (request_code::SEND_MESSAGE_V2, &v2_ext, Ok(golden_v1())),
        (request_code::SEND_BATCH_MESSAGE, &v2_ext, Ok(golden_v1())),
        (
            request_code::SEND_REPLY_MESSAGE_V2,
            &v2_ext,
            Ok(golden_v1()),
        ),
        (
            request_code::SEND_MESSAGE,
            &v2_ext,
            Err(ProtocolError::MissingField("producerGroup")),
        ),
        (
            request_code::SEND_MESSAGE_V2,
            &v1_ext,
            Err(ProtocolError::MissingField("a")),
        ),
        (
            request_code::SEND_BATCH_MESSAGE,
            &v1_ext,
            Err(ProtocolError::MissingField("a")),
        ),
    ];
    for (code, ext, expected) in rows {
        assert_eq!(&decode_send_request(*code, ext), expected, "code {code}");
    }
    assert!(send_uses_v2_header(310) && send_uses_v2_header(320) && send_uses_v2_header(325));
    assert!(!send_uses_v2_header(10) && !send_uses_v2_header(324));
}

#[test]
fn batch_flag_one_from_the_cpp_client_means_a_batch() {
    let ext = with(&golden_v2_ext(), "m", "1");
    let h = decode_send_request(request_code::SEND_BATCH_MESSAGE, &ext);
    assert_eq!(h.map(|h| h.is_batch()), Ok(true));
    let ext = with(&golden_v2_ext(), "m", "0");
    let h = decode_send_request(request_code::SEND_BATCH_MESSAGE, &ext);
    assert_eq!(h.map(|h| h.is_batch()), Ok(false));
}

// ---- lenient values ---------------------------------------------------------------------------------

#[test]
fn booleans_accept_any_case_and_one_zero() {
    let rows = [
        ("true", Ok(true)),
        ("TRUE", Ok(true)),
        ("True", Ok(true)),
        ("1", Ok(true)),
        (" 1 ", Ok(true)),
        ("false", Ok(false)),
        ("FALSE", Ok(false)),
        ("0", Ok(false)),
        (
            "yes",
            Err(ProtocolError::InvalidField {
                field: "unitMode",
                value: "yes".into(),
            }),
        ),
        (
            "2",
            Err(ProtocolError::InvalidField {
                field: "unitMode",
                value: "2".into(),
            }),
        ),
    ];
    let base: ExtFields = [("offset", "100"), ("group", "G"), ("delayLevel", "0")]
        .into_iter()
        .collect();
    for (raw, expected) in rows {
        let h = ConsumerSendMsgBackRequestHeader::from_ext_fields(&with(&base, "unitMode", raw));
        assert_eq!(h.map(|h| h.unit_mode), expected, "{raw:?}");
    }
}

#[test]
fn numbers_are_trimmed_and_range_checked() {
    let base: ExtFields = [("topic", "T"), ("queueId", "0")].into_iter().collect();
    let rows = [
        ("3", Ok(3)),
        (" 3", Ok(3)),
        ("3\n", Ok(3)),
        ("-1", Ok(-1)),
        ("+5", Ok(5)),
        ("2147483647", Ok(i32::MAX)),
        (
            "2147483648",
            Err(ProtocolError::InvalidField {
                field: "queueId",
                value: "2147483648".into(),
            }),
        ),
        (
            "3.0",
            Err(ProtocolError::InvalidField {
                field: "queueId",
                value: "3.0".into(),
            }),
        ),
        ("", Err(ProtocolError::MissingField("queueId"))),
    ];
    for (raw, expected) in rows {
        let h = GetMinOffsetRequestHeader::from_ext_fields(&with(&base, "queueId", raw));
        assert_eq!(h.map(|h| h.queue_id), expected, "{raw:?}");
    }
}

#[test]
fn blank_optional_number_reads_as_absent() {
    let ext: ExtFields = [("topic", "T"), ("queueId", "1"), ("timestamp", "5")]
        .into_iter()
        .collect();
    let h = SearchOffsetRequestHeader::from_ext_fields(&with(&ext, "boundaryType", ""));
    assert_eq!(h.map(|h| h.boundary_type), Ok(None));
    let ext: ExtFields = [("consumerGroup", "G"), ("topic", "T"), ("queueId", "1")]
        .into_iter()
        .collect();
    let h =
        QueryConsumerOffsetRequestHeader::from_ext_fields(&with(&ext, "setZeroIfNotFound", " "));
    assert_eq!(h.map(|h| h.set_zero_if_not_found), Ok(None));
}

#[test]
fn strings_are_kept_exactly_including_blank_and_spaces() {
    let ext: ExtFields = [("topic", " T1 "), ("queueId", "0")].into_iter().collect();
    let h = GetMinOffsetRequestHeader::from_ext_fields(&ext);
    assert_eq!(h.map(|h| h.topic), Ok(" T1 ".to_owned()));
    let ext: ExtFields = [("value", "")].into_iter().collect();
    let h = GetKVConfigResponseHeader::from_ext_fields(&ext);
    assert_eq!(h.map(|h| h.value), Ok(Some(String::new())));
}

#[test]
fn defaults_apply_when_the_key_is_absent() {
    let h = GetMaxOffsetRequestHeader::from_ext_fields(
        &[("topic", "T"), ("queueId", "1")].into_iter().collect(),
    );
    assert_eq!(h.map(|h| h.committed), Ok(true));
    assert!(GetMaxOffsetRequestHeader::default().committed);

    let h = ResetOffsetRequestHeader::from_ext_fields(
        &[
            ("group", "G"),
            ("topic", "T"),
            ("timestamp", "1"),
            ("isForce", "true"),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(h.map(|h| (h.queue_id, h.offset)), Ok((-1, None)));

    let h = CreateTopicRequestHeader::from_ext_fields(
        &[
            ("topic", "T"),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", "8"),
            ("writeQueueNums", "8"),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(h.map(|h| (h.order, h.force)), Ok((false, false)));

    let h = RegisterBrokerRequestHeader::default();
    assert_eq!((h.compressed, h.body_crc32), (false, 0));
}

#[test]
fn boundary_type_reads_like_java_and_writes_the_enum_name() {
    let base: ExtFields = [("topic", "T"), ("queueId", "1"), ("timestamp", "5")]
        .into_iter()
        .collect();
    for (raw, expected) in [
        ("upper", BoundaryType::Upper),
        ("UPPER", BoundaryType::Upper),
        (" Upper ", BoundaryType::Upper),
        ("lower", BoundaryType::Lower),
        ("LOWER", BoundaryType::Lower),
        ("sideways", BoundaryType::Lower),
    ] {
        let h = SearchOffsetRequestHeader::from_ext_fields(&with(&base, "boundaryType", raw));
        assert_eq!(h.map(|h| h.boundary()), Ok(expected), "{raw:?}");
    }
    let h = SearchOffsetRequestHeader::from_ext_fields(&base);
    assert_eq!(
        h.map(|h| (h.boundary_type, h.boundary())),
        Ok((None, BoundaryType::Lower))
    );
    let h = SearchOffsetRequestHeader {
        topic: "T".into(),
        queue_id: 1,
        timestamp: 5,
        boundary_type: Some(BoundaryType::Upper),
    };
    assert_eq!(write(&h).get("boundaryType"), Some("UPPER"));
}

// ---- golden ext-field maps -----------------------------------------------------------------------------

#[test]
fn java_push_consumer_pull_request_decodes() {
    let ext: ExtFields = [
        ("consumerGroup", "G1"),
        ("topic", "T1"),
        ("queueId", "3"),
        ("queueOffset", "120"),
        ("maxMsgNums", "32"),
        ("sysFlag", "3"),
        ("commitOffset", "118"),
        ("suspendTimeoutMillis", "15000"),
        ("subscription", "TagA || TagB"),
        ("subVersion", "1700000000000"),
        ("expressionType", "TAG"),
        ("lo", "false"),
        ("bname", "broker-a"),
    ]
    .into_iter()
    .collect();
    let expected = PullMessageRequestHeader {
        consumer_group: "G1".into(),
        topic: "T1".into(),
        queue_id: 3,
        queue_offset: 120,
        max_msg_nums: 32,
        sys_flag: 3,
        commit_offset: 118,
        suspend_timeout_millis: 15000,
        subscription: Some("TagA || TagB".into()),
        sub_version: 1_700_000_000_000,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        request_source: None,
        proxy_forward_client_id: None,
    };
    assert_eq!(
        PullMessageRequestHeader::from_ext_fields(&ext),
        Ok(expected)
    );
    let rpc = RpcRequestHeader::from_ext_fields(&ext);
    assert_eq!(
        rpc.map(|r| (r.broker_name, r.logical, r.namespace)),
        Ok((Some("broker-a".into()), Some(false), None))
    );
}

#[test]
fn pull_response_writes_java_names() {
    let h = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 42,
        min_offset: 0,
        max_offset: 43,
        ..Default::default()
    };
    let expected: ExtFields = [
        ("suggestWhichBrokerId", "0"),
        ("nextBeginOffset", "42"),
        ("minOffset", "0"),
        ("maxOffset", "43"),
    ]
    .into_iter()
    .collect();
    assert_eq!(write(&h), expected);
}

#[test]
fn send_response_writes_java_names() {
    let h = SendMessageResponseHeader {
        msg_id: "0A00000100002A9F0000000000000000".into(),
        queue_id: 1,
        queue_offset: 7,
        transaction_id: Some("7F0000010B6418B4AAC2520E2D7D0000".into()),
        ..Default::default()
    };
    let expected: ExtFields = [
        ("msgId", "0A00000100002A9F0000000000000000"),
        ("queueId", "1"),
        ("queueOffset", "7"),
        ("transactionId", "7F0000010B6418B4AAC2520E2D7D0000"),
    ]
    .into_iter()
    .collect();
    assert_eq!(write(&h), expected);
}

#[test]
fn register_broker_request_decodes_with_zone_name() {
    let ext: ExtFields = [
        ("brokerName", "broker-a"),
        ("brokerAddr", "10.0.0.1:10911"),
        ("clusterName", "DefaultCluster"),
        ("haServerAddr", "10.0.0.1:10912"),
        ("brokerId", "0"),
        ("compressed", "false"),
        ("bodyCrc32", "123456"),
        ("__ZONE_NAME", "zone-1"),
    ]
    .into_iter()
    .collect();
    let h = RegisterBrokerRequestHeader::from_ext_fields(&ext);
    assert_eq!(
        h,
        Ok(RegisterBrokerRequestHeader {
            broker_name: "broker-a".into(),
            broker_addr: "10.0.0.1:10911".into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: "10.0.0.1:10912".into(),
            broker_id: 0,
            heartbeat_timeout_millis: None,
            enable_acting_master: None,
            compressed: false,
            body_crc32: 123456,
            zone_name: Some("zone-1".into()),
        })
    );
}

#[test]
fn unique_key_query_flag_is_read_from_its_extra_key() {
    let ext: ExtFields = [
        ("topic", "T1"),
        ("key", "7F0000010B6418B4AAC2520E2D7D0000"),
        ("maxNum", "32"),
        ("beginTimestamp", "0"),
        ("endTimestamp", "9223372036854775807"),
        ("_UNIQUE_KEY_QUERY", "true"),
    ]
    .into_iter()
    .collect();
    let h = QueryMessageRequestHeader::from_ext_fields(&ext);
    assert_eq!(
        h.map(|h| (h.is_unique_key_query(), h.end_timestamp)),
        Ok((true, i64::MAX))
    );
}

#[test]
fn unregister_client_uses_the_upper_case_client_id_key() {
    let ext: ExtFields = [("clientID", "10.0.0.5@12345"), ("producerGroup", "P1")]
        .into_iter()
        .collect();
    let h = UnregisterClientRequestHeader::from_ext_fields(&ext);
    assert_eq!(
        h,
        Ok(UnregisterClientRequestHeader {
            client_id: "10.0.0.5@12345".into(),
            producer_group: Some("P1".into()),
            consumer_group: None,
        })
    );
    let ext: ExtFields = [("clientId", "10.0.0.5@12345")].into_iter().collect();
    assert_eq!(
        UnregisterClientRequestHeader::from_ext_fields(&ext),
        Err(ProtocolError::MissingField("clientID"))
    );
}

// ---- through the frame codec ----------------------------------------------------------------------

#[test]
fn cpp_client_json_numbers_decode_into_typed_headers() {
    let header = br#"{"code":11,"extFields":{"consumerGroup":"G1","topic":"T1","queueId":3,"queueOffset":0,"maxMsgNums":32,"sysFlag":2,"commitOffset":0,"suspendTimeoutMillis":20000,"subscription":"*","subVersion":0},"flag":0,"language":"CPP","opaque":4,"version":0}"#;
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4 + header.len() as i32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as i32).to_be_bytes());
    frame.extend_from_slice(header);
    let cmd = RemotingCommand::decode_bytes(&frame).expect("frame decodes");
    let h: PullMessageRequestHeader = cmd.decode_header().expect("header decodes");
    assert_eq!(
        (
            h.queue_id,
            h.max_msg_nums,
            h.sys_flag,
            h.suspend_timeout_millis
        ),
        (3, 32, 2, 20000)
    );
    assert_eq!(h.subscription.as_deref(), Some("*"));
}

#[test]
fn v2_send_header_survives_both_frame_encodings() {
    for st in [SerializeType::Json, SerializeType::RocketMq] {
        let mut cmd =
            RemotingCommand::request(request_code::SEND_MESSAGE_V2).with_serialize_type(st);
        golden_v1().write_ext_fields_v2(&mut cmd.ext_fields);
        let bytes = cmd.to_bytes().expect("encodes");
        let back = RemotingCommand::decode_bytes(&bytes).expect("decodes");
        assert_eq!(
            decode_send_request(back.code, &back.ext_fields),
            Ok(golden_v1()),
            "{st:?}"
        );
    }
}

#[test]
fn typed_header_round_trips_through_a_request_frame() {
    let h = PopMessageRequestHeader {
        consumer_group: "G1".into(),
        topic: "T1".into(),
        queue_id: -1,
        max_msg_nums: 16,
        invisible_time: 60_000,
        poll_time: 20_000,
        born_time: 1_700_000_000_000,
        init_mode: 1,
        exp_type: Some("TAG".into()),
        exp: Some("*".into()),
        order: false,
        attempt_id: None,
    };
    let cmd = RemotingCommand::request_with_header(request_code::POP_MESSAGE, &h);
    let bytes = cmd.to_bytes().expect("encodes");
    let back = RemotingCommand::decode_bytes(&bytes).expect("decodes");
    assert_eq!(back.decode_header::<PopMessageRequestHeader>(), Ok(h));
}

#[test]
fn direct_v2_write_matches_the_converted_v2_header_in_order() {
    let mut direct = ExtFields::new();
    golden_v1().write_ext_fields_v2(&mut direct);
    let mut converted = ExtFields::new();
    SendMessageRequestHeaderV2::from(golden_v1()).write_ext_fields(&mut converted);
    assert_eq!(direct, converted);
    let all = SendMessageRequestHeader {
        properties: None,
        reconsume_times: Some(3),
        unit_mode: Some(true),
        batch: Some(true),
        max_reconsume_times: Some(16),
        broker_name: None,
        ..golden_v1()
    };
    let mut direct = ExtFields::new();
    all.write_ext_fields_v2(&mut direct);
    let mut converted = ExtFields::new();
    SendMessageRequestHeaderV2::from(all).write_ext_fields(&mut converted);
    assert_eq!(direct, converted);
}
