use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::*;

fn norm(s: &str) -> String {
    match normalize(s.as_bytes()) {
        Ok(v) => String::from_utf8(v).unwrap(),
        Err(e) => panic!("normalize({s:?}) failed: {e}"),
    }
}

/// A small deterministic PRNG (xorshift64*), so the fuzz-style tests are reproducible.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random byte strings: uniform bytes, JSON-ish characters, and single-byte mutations of `seeds`.
pub(crate) fn garbage_inputs(seeds: &[&[u8]]) -> Vec<Vec<u8>> {
    const JSONISH: &[u8] = b"{}[]:,\"'\\ 0123456789-+.eEabcnulltrfs$_xL\n\t";
    let mut rng = Rng::new(0x5EED_1234_ABCD_0001);
    let mut out = Vec::new();
    for _ in 0..200 {
        let len = rng.below(64);
        out.push((0..len).map(|_| rng.next() as u8).collect());
    }
    for _ in 0..300 {
        let len = rng.below(96);
        out.push(
            (0..len)
                .map(|_| JSONISH[rng.below(JSONISH.len())])
                .collect(),
        );
    }
    for seed in seeds {
        if seed.is_empty() {
            continue;
        }
        for _ in 0..100 {
            let mut v = seed.to_vec();
            let i = rng.below(v.len());
            match rng.below(3) {
                0 => v[i] = rng.next() as u8,
                1 => {
                    v.remove(i);
                }
                _ => v.insert(i, JSONISH[rng.below(JSONISH.len())]),
            }
            out.push(v);
        }
    }
    out
}

const SAMPLE: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:'10.0.0.2:10911'},"brokerName":"b","cluster":"c"}],
 offsetTable : { {"topic":"t","brokerName":"b","queueId":1} : {"maxOffset":5,"minOffset":0}, },
 "list":[1,2.5,-3e2,true,false,null,"x\"y\\z"],"gone":null,"n":-1}"#;

#[test]
fn bare_integer_keys_are_quoted() {
    assert_eq!(
        norm(r#"{0:"a",-1:"b", 12 :3}"#),
        r#"{"0":"a","-1":"b","12":3}"#
    );
    let m: BTreeMap<i64, String> = from_str(r#"{0:"a",-1:"b"}"#).unwrap();
    assert_eq!(m.get(&0).map(String::as_str), Some("a"));
    assert_eq!(m.get(&-1).map(String::as_str), Some("b"));
}

#[test]
fn bare_identifier_keys_are_quoted() {
    assert_eq!(
        norm(r#"{offsetTable:{}, $x_1:true}"#),
        r#"{"offsetTable":{},"$x_1":true}"#
    );
}

#[test]
fn single_quoted_strings_become_double_quoted() {
    assert_eq!(norm(r#"{'a':'it\'s "q"'}"#), r#"{"a":"it's \"q\""}"#);
}

#[test]
fn object_keys_become_strings_of_their_canonical_json() {
    let a = norm(r#"{{"topic":"t","brokerName":"b","queueId":0}:1}"#);
    let b = norm(r#"{ { "brokerName" : "b", "queueId":0, "topic":"t" } : 1 }"#);
    assert_eq!(
        a,
        r#"{"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"t\"}":1}"#
    );
    assert_eq!(a, b);
    assert_eq!(norm(r#"{[1, 2]:3}"#), r#"{"[1,2]":3}"#);
}

#[test]
fn null_members_are_dropped_and_null_elements_kept() {
    assert_eq!(norm(r#"{"a":null,"b":1,"c":null}"#), r#"{"b":1}"#);
    assert_eq!(norm(r#"{"a":null}"#), r#"{}"#);
    assert_eq!(norm(r#"[null,1]"#), r#"[null,1]"#);
}

#[test]
fn trailing_commas_bom_and_whitespace_are_accepted() {
    assert_eq!(norm("\u{feff} {\"a\":[1,2,],} \n"), r#"{"a":[1,2]}"#);
}

#[test]
fn string_oddities_are_made_standard() {
    assert_eq!(norm("\"a\tb\""), r#""a\u0009b""#);
    assert_eq!(norm(r#""\x41\n\u0042""#), r#""\u0041\n\u0042""#);
    assert_eq!(norm("\"é\""), "\"é\"");
}

#[test]
fn fastjson_number_suffixes_and_plus_sign_are_dropped() {
    assert_eq!(norm("[1L,2.5D,+3]"), "[1,2.5,3]");
}

#[test]
fn standard_json_passes_through_unchanged_apart_from_whitespace() {
    let doc = r#"{"a":[1,-2.5e3,true,false,"s\"\\\/\b\f\n\r\t\u00e9"],"b":{"c":{}}}"#;
    assert_eq!(norm(doc), doc);
}

#[test]
fn sample_fastjson_document_parses() {
    let v: serde_json::Value = from_str(SAMPLE).unwrap();
    assert_eq!(v["brokerDatas"][0]["brokerAddrs"]["1"], "10.0.0.2:10911");
    assert!(v.get("gone").is_none());
    assert_eq!(
        v["offsetTable"][r#"{"brokerName":"b","queueId":1,"topic":"t"}"#]["maxOffset"],
        5
    );
}

#[test]
fn garbage_is_rejected_with_an_error() {
    let bad = [
        "",
        " ",
        "{",
        "}",
        "[",
        "{\"a\"}",
        "{\"a\":}",
        "{a b:1}",
        "{:1}",
        "{,}",
        "{\"a\":1,,\"b\":2}",
        "[1,,2]",
        "[,]",
        "[1 2]",
        "tru",
        "nul",
        "NaN",
        "\"abc",
        "'abc",
        "\"\\",
        "\"\\x4\"",
        "{\"a\":1}x",
        "{\"a\":1}{",
        "@",
        "{\"a\":[}",
        "{{\"a\":1}}",
    ];
    for b in bad {
        assert!(
            from_slice::<serde_json::Value>(b.as_bytes()).is_err(),
            "accepted {b:?}"
        );
    }
}

#[test]
fn depth_up_to_the_limit_is_accepted_and_beyond_it_rejected() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(from_str::<serde_json::Value>(&nested(MAX_DEPTH)).is_ok());
    assert!(from_str::<serde_json::Value>(&nested(MAX_DEPTH + 1)).is_err());
    assert!(normalize(nested(129).as_bytes()).is_err());
    // Far too deep for a naive recursive parser's stack.
    assert!(normalize(nested(200_000).as_bytes()).is_err());
    let objects = format!(
        "{}1{}",
        "{a:".repeat(MAX_DEPTH + 1),
        "}".repeat(MAX_DEPTH + 1)
    );
    assert!(normalize(objects.as_bytes()).is_err());
}

#[test]
fn depth_inside_object_keys_counts_too() {
    let deep_key = format!("{{{}1{}:1}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(normalize(deep_key.as_bytes()).is_err());
}

#[test]
fn object_keys_nested_in_object_keys_are_bounded() {
    let wrap = |inner: &str| format!("{{{inner}:1}}");
    let mut doc = r#"{"a":1}"#.to_string();
    for _ in 0..MAX_KEY_NESTING {
        doc = wrap(&doc);
    }
    // `doc` now holds MAX_KEY_NESTING object keys, each inside the previous one.
    assert!(normalize(doc.as_bytes()).is_ok());
    assert!(normalize(wrap(&doc).as_bytes()).is_err());
}

#[test]
fn every_prefix_of_a_valid_document_is_an_error() {
    let doc = SAMPLE.trim().as_bytes();
    assert!(from_slice::<serde_json::Value>(doc).is_ok());
    for end in 0..doc.len() {
        assert!(
            from_slice::<serde_json::Value>(&doc[..end]).is_err(),
            "prefix of {end} bytes accepted"
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut accepted = 0;
    for input in garbage_inputs(&[SAMPLE.as_bytes()]) {
        if let Ok(text) = normalize(&input) {
            // Whatever the reader passes on is standard JSON, or the parser says why not.
            let _ = serde_json::from_slice::<serde_json::Value>(&text);
            accepted += 1;
        }
        let _ = from_slice::<BTreeMap<String, serde_json::Value>>(&input);
    }
    // Some inputs are valid (a lone number, mutations that keep the sample valid); most are not.
    assert!(accepted < 150, "accepted {accepted} of 600");
}

#[test]
fn large_inputs_are_processed_in_one_pass() {
    // 100k members with bare keys and one long escaped string: finishes quickly if linear.
    let mut doc = String::from("{");
    for i in 0..100_000 {
        doc.push_str(&format!("{i}:{i},"));
    }
    doc.push_str(&format!("s:\"{}\"}}", "\\\"".repeat(100_000)));
    let m: BTreeMap<String, serde_json::Value> = from_str(&doc).unwrap();
    assert_eq!(m.len(), 100_001);
}

// ---- writer ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Plain {
    a_list: Vec<Option<i32>>,
    b_map: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    c_none: Option<String>,
    d_text: String,
    e_unit: Kind,
    f_tuple: (u8, bool),
    g_newtype: Wrapper,
    h_variant: Shape,
}

#[derive(Serialize)]
enum Kind {
    Alpha,
}

#[derive(Serialize)]
struct Wrapper(i64);

#[derive(Serialize)]
enum Shape {
    Point { x: i32 },
}

#[test]
fn standard_form_equals_serde_json_for_string_keyed_values() {
    let mut b_map = BTreeMap::new();
    b_map.insert("x\"y".to_string(), 1.5);
    b_map.insert("é\u{1}".to_string(), 0.0);
    let v = Plain {
        a_list: vec![Some(1), None, Some(-7)],
        b_map,
        c_none: None,
        d_text: "tab\there \\ </script> \u{2028}".into(),
        e_unit: Kind::Alpha,
        f_tuple: (255, true),
        g_newtype: Wrapper(i64::MIN),
        h_variant: Shape::Point { x: 3 },
    };
    let ours = to_string(&v, JsonForm::Standard).unwrap();
    assert_eq!(ours, serde_json::to_string(&v).unwrap());
    // Without non-string keys the two forms agree.
    assert_eq!(ours, to_string(&v, JsonForm::Fastjson).unwrap());
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyFields {
    broker_name: String,
    queue_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
struct StructKey(KeyFields);

impl<'de> Deserialize<'de> for StructKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ObjectKey::<KeyFields>::deserialize(d).map(|k| StructKey(k.0))
    }
}

#[test]
fn integer_keys_are_bare_in_fastjson_form_and_quoted_in_standard_form() {
    let m: BTreeMap<i64, i64> = [(-1, 5), (0, 12), (1, 30)].into_iter().collect();
    assert_eq!(
        to_string(&m, JsonForm::Fastjson).unwrap(),
        "{-1:5,0:12,1:30}"
    );
    assert_eq!(
        to_string(&m, JsonForm::Standard).unwrap(),
        r#"{"-1":5,"0":12,"1":30}"#
    );
    assert_eq!(
        to_string(&m, JsonForm::Standard).unwrap(),
        serde_json::to_string(&m).unwrap()
    );
    for form in [JsonForm::Fastjson, JsonForm::Standard] {
        let back: BTreeMap<i64, i64> = from_slice(&to_vec(&m, form).unwrap()).unwrap();
        assert_eq!(back, m);
    }
    let b: BTreeMap<bool, u8> = [(true, 1)].into_iter().collect();
    assert_eq!(to_string(&b, JsonForm::Fastjson).unwrap(), "{true:1}");
    assert_eq!(to_string(&b, JsonForm::Standard).unwrap(), r#"{"true":1}"#);
}

#[test]
fn object_keys_are_raw_in_fastjson_form_and_strings_in_standard_form() {
    let k = |b: &str, q| {
        StructKey(KeyFields {
            broker_name: b.into(),
            queue_id: q,
        })
    };
    let m: BTreeMap<StructKey, i64> = [(k("b", 0), 7), (k("a\"x", 3), 9)].into_iter().collect();
    let fj = to_string(&m, JsonForm::Fastjson).unwrap();
    assert_eq!(
        fj,
        r#"{{"brokerName":"a\"x","queueId":3}:9,{"brokerName":"b","queueId":0}:7}"#
    );
    let std_form = to_string(&m, JsonForm::Standard).unwrap();
    assert_eq!(
        std_form,
        r#"{"{\"brokerName\":\"a\\\"x\",\"queueId\":3}":9,"{\"brokerName\":\"b\",\"queueId\":0}":7}"#
    );
    // The standard form is real JSON.
    assert!(serde_json::from_str::<serde_json::Value>(&std_form).is_ok());
    for text in [fj, std_form] {
        let back: BTreeMap<StructKey, i64> = from_str(&text).unwrap();
        assert_eq!(back, m);
    }
    // A struct key value elsewhere (not as a key) reads as a plain object.
    let v: Vec<StructKey> = from_str(r#"[{"brokerName":"b","queueId":0}]"#).unwrap();
    assert_eq!(v, vec![k("b", 0)]);
}

#[test]
fn object_key_written_by_reader_round_trips_through_standard_writer() {
    // What the reader makes of a fastjson object key is exactly what the standard writer emits.
    let fj = r#"{{"queueId":0,"brokerName":"b"}:1}"#;
    let m: BTreeMap<StructKey, i64> = from_str(fj).unwrap();
    assert_eq!(
        to_string(&m, JsonForm::Standard).unwrap(),
        norm(r#"{{"brokerName":"b","queueId":0}:1}"#)
    );
}

// ---- lenient field helpers ----

lenient::wire_enum! {
    enum Color: "Color" {
        Red = 0, "RED" | "R";
        Green = 1, "GREEN";
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Lenient {
    #[serde(deserialize_with = "lenient::int64")]
    n: i64,
    #[serde(deserialize_with = "lenient::int32")]
    m: i32,
    #[serde(deserialize_with = "lenient::boolean")]
    b: bool,
    #[serde(deserialize_with = "lenient::string")]
    s: String,
    #[serde(deserialize_with = "lenient::enum_or_none")]
    e: Option<Color>,
}

#[test]
fn lenient_fields_accept_strings_numbers_and_absence() {
    let v: Lenient = from_str(r#"{"n":"1700000000000","m":7.0,"b":"1","s":42,"e":1}"#).unwrap();
    assert_eq!(
        v,
        Lenient {
            n: 1_700_000_000_000,
            m: 7,
            b: true,
            s: "42".into(),
            e: Some(Color::Green),
        }
    );
    assert_eq!(from_str::<Lenient>("{}").unwrap(), Lenient::default());
    let v: Lenient = from_str(r#"{"b":"false","e":"r","n":-3}"#).unwrap();
    assert_eq!((v.b, v.e, v.n), (false, Some(Color::Red), -3));
    let v: Lenient = from_str(r#"{"b":0,"e":"PURPLE","s":true}"#).unwrap();
    assert_eq!((v.b, v.e, v.s.as_str()), (false, None, "true"));
    // Unknown enum values that are objects or arrays are consumed, not misparsed.
    let v: Lenient = from_str(r#"{"e":{"x":[1,{"y":2}]},"n":5}"#).unwrap();
    assert_eq!((v.e, v.n), (None, 5));
    assert!(from_str::<Lenient>(r#"{"m":3000000000}"#).is_err());
    assert!(from_str::<Lenient>(r#"{"n":"abc"}"#).is_err());
    assert!(from_str::<Lenient>(r#"{"b":"maybe"}"#).is_err());
}

#[test]
fn wire_enums_read_names_aliases_and_ordinals_and_write_names() {
    for text in [r#""GREEN""#, "1", r#""1""#, r#""green""#] {
        assert_eq!(from_str::<Color>(text).unwrap(), Color::Green, "{text}");
    }
    assert_eq!(from_str::<Color>(r#""R""#).unwrap(), Color::Red);
    assert!(from_str::<Color>("2").is_err());
    assert!(from_str::<Color>(r#""BLUE""#).is_err());
    assert_eq!(
        to_string(&Color::Red, JsonForm::Standard).unwrap(),
        r#""RED""#
    );
    assert_eq!(Color::Green.ordinal(), 1);
    assert_eq!(Color::Green.name(), "GREEN");
}
