//! Classification of an inbound Cafe24 webhook body, tolerant of Cafe24's published quirks.
//!
//! Cafe24's own samples disagree with each other: `event_no` is sometimes a string, some bodies
//! lack the `resource` wrapper (fields at the top level), some lack `event_no` or `mall_id`.
//! The rule here: anything that is JSON is *accepted*; what cannot be routed is *parked* with a
//! reason, never rejected (a 4xx counts as a delivery failure at Cafe24, and enough of those
//! switch reception off for the whole app).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::ids::MallId;

/// A Cafe24 webhook event number (e.g. `90023` order placed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventNo(pub u32);

/// Why an authentic JSON webhook could not be routed and was parked instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParkReason {
    /// The body is JSON but not an object.
    NotAnObject,
    /// No `event_no` anywhere.
    MissingEventNo,
    /// `event_no` present but not a positive 32-bit integer (as number or digit string).
    BadEventNo,
    /// No `mall_id` in `resource` nor at the top level.
    MissingMallId,
    /// `mall_id` present but not a valid mall id.
    BadMallId,
}

impl ParkReason {
    /// Stable snake_case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::MissingEventNo => "missing_event_no",
            Self::BadEventNo => "bad_event_no",
            Self::MissingMallId => "missing_mall_id",
            Self::BadMallId => "bad_mall_id",
        }
    }
}

/// The result of classifying a JSON webhook body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified {
    /// Has a usable event number and mall id: goes to the inbox, grouped by mall.
    Routable {
        /// The event number.
        event_no: EventNo,
        /// The mall the event belongs to.
        mall_id: MallId,
    },
    /// Authentic but unroutable: goes to the parking queue with what could be read.
    Parked {
        /// Why it was parked (the first problem found; event number is checked first).
        reason: ParkReason,
        /// The event number, when it was readable.
        event_no: Option<EventNo>,
        /// The mall id, when it was readable.
        mall_id: Option<MallId>,
    },
}

/// The body is not JSON (or is truncated). Carries serde's position message, which quotes no
/// input, so it is safe to return to the caller and to log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("body is not valid JSON: {0}")]
pub struct NotJson(pub String);

fn parse_event_no(v: &Value) -> Result<EventNo, ParkReason> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0).map(EventNo).ok_or(ParkReason::BadEventNo)
}

fn parse_mall_id(v: &Value) -> Result<MallId, ParkReason> {
    v.as_str().ok_or(ParkReason::BadMallId).and_then(|s| MallId::parse(s).map_err(|_| ParkReason::BadMallId))
}

/// Classifies an already parsed webhook body.
pub fn classify_value(body: &Value) -> Classified {
    let Some(obj) = body.as_object() else {
        return Classified::Parked { reason: ParkReason::NotAnObject, event_no: None, mall_id: None };
    };
    // `resource` wrapper when present and an object; otherwise the top level holds the fields.
    let resource = obj.get("resource").and_then(Value::as_object);
    let field = |name: &str| resource.and_then(|r| r.get(name)).or_else(|| obj.get(name)).filter(|v| !v.is_null());

    let event_no = obj.get("event_no").filter(|v| !v.is_null()).map(parse_event_no);
    let mall_id = field("mall_id").map(parse_mall_id);
    verdict(event_no, mall_id)
}

/// The classification from what was read of the event number and the mall id.
fn verdict(event_no: Option<Result<EventNo, ParkReason>>, mall_id: Option<Result<MallId, ParkReason>>) -> Classified {
    match (event_no, mall_id) {
        (Some(Ok(event_no)), Some(Ok(mall_id))) => Classified::Routable { event_no, mall_id },
        (e, m) => {
            let reason = match (&e, &m) {
                (None, _) => ParkReason::MissingEventNo,
                (Some(Err(r)), _) => *r,
                (_, None) => ParkReason::MissingMallId,
                (_, Some(Err(r))) => *r,
                // Both Ok is the arm above; keep the compiler's exhaustiveness honest.
                (Some(Ok(_)), Some(Ok(_))) => ParkReason::MissingMallId,
            };
            Classified::Parked { reason, event_no: e.and_then(Result::ok), mall_id: m.and_then(Result::ok) }
        }
    }
}

/// The fields [`classify_value`] reads, borrowed from the body: one pass that validates the
/// whole document (serde skips the other fields but still checks them) without building it.
/// A field is `Some` when its key is present, `null` included, as [`classify_value`] sees it.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    event_no: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    mall_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    resource: Option<&'a RawValue>,
}

/// The `resource` object's field [`classify_value`] reads.
#[derive(Deserialize)]
struct ResourceProbe<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    mall_id: Option<&'a RawValue>,
}

/// A present key's raw value, `null` included (an `Option` field alone reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A present, non-null field's value.
fn probed(raw: Option<&RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok()).filter(|v| !v.is_null())
}

/// Classifies a raw webhook body as [`classify`] does, without building the document: the
/// ingest path, which needs only the verdict. A body the probe cannot read (not an object,
/// duplicate keys, not UTF-8, not JSON) goes through [`classify`], which decides. Property-
/// tested against [`classify`].
pub fn classify_body(body: &[u8]) -> Result<Classified, NotJson> {
    // Objects only: serde reads a struct from an array too (`[1, 2]`).
    let probe = std::str::from_utf8(body)
        .ok()
        .filter(|text| text.trim_start().starts_with('{'))
        .and_then(|text| serde_json::from_str::<Probe<'_>>(text).ok());
    let Some(probe) = probe else {
        return classify(body).map(|(_, c)| c);
    };
    // As in `classify_value`: a `resource` object's key, when present (even `null`), wins.
    let mall_raw = match probe.resource.filter(|r| r.get().starts_with('{')) {
        Some(r) => match serde_json::from_str::<ResourceProbe<'_>>(r.get()) {
            Ok(rp) => rp.mall_id.or(probe.mall_id),
            Err(_) => return classify(body).map(|(_, c)| c),
        },
        None => probe.mall_id,
    };
    let event_no = probed(probe.event_no).map(|v| parse_event_no(&v));
    let mall_id = probed(mall_raw).map(|v| parse_mall_id(&v));
    Ok(verdict(event_no, mall_id))
}

/// Parses and classifies a raw webhook body.
pub fn classify(body: &[u8]) -> Result<(Value, Classified), NotJson> {
    let value: Value = serde_json::from_slice(body).map_err(|e| NotJson(e.to_string()))?;
    let c = classify_value(&value);
    Ok((value, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What [`classify_body`] must agree with: [`classify`]'s verdict, or its refusal.
    fn by_value(body: &[u8]) -> Result<Classified, NotJson> {
        classify(body).map(|(_, c)| c)
    }

    fn agree(text: &str) -> Result<(), TestCaseError> {
        let fast = classify_body(text.as_bytes()).map_err(|_| ());
        prop_assert_eq!(fast, by_value(text.as_bytes()).map_err(|_| ()), "{}", text);
        Ok(())
    }

    /// JSON text built from the keys and values classification cares about, nested, with
    /// duplicate keys, nulls, escapes and whitespace (as text, so duplicates survive).
    fn json_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("event_no"),
            Just("mall_id"),
            Just("resource"),
            Just("event\\u005fno"),
            Just("mall_ids"),
            Just("x"),
        ];
        leaf().prop_recursive(3, 24, 5, move |inner| {
            proptest::collection::vec((key.clone(), inner), 0..5).prop_map(|fields| {
                let body: Vec<String> = fields.iter().map(|(k, v)| format!(" \"{k}\" : {v} ")).collect();
                format!("{{{}}}", body.join(","))
            })
        })
    }

    /// A webhook's shape: each of `event_no`, `mall_id` and `resource` (an object with its own
    /// optional `mall_id`, or any other value) present or not, with any of the leaf values.
    fn webhook_shape() -> impl Strategy<Value = String> {
        let field = |name: &'static str, v: BoxedStrategy<String>| {
            proptest::option::of(v).prop_map(move |v| v.map(|v| format!("\"{name}\":{v}")))
        };
        let resource = prop_oneof![
            leaf(),
            (field("mall_id", leaf()), field("x", leaf()))
                .prop_map(|(m, x)| { format!("{{{}}}", [m, x].into_iter().flatten().collect::<Vec<_>>().join(",")) }),
        ]
        .boxed();
        (field("event_no", leaf()), field("mall_id", leaf()), field("resource", resource))
            .prop_map(|(e, m, r)| format!("{{{}}}", [e, m, r].into_iter().flatten().collect::<Vec<_>>().join(",")))
    }

    fn leaf() -> BoxedStrategy<String> {
        prop_oneof![
            Just("null".to_owned()),
            Just("90023".to_owned()),
            Just("\"90023\"".to_owned()),
            Just("\" 12 \"".to_owned()),
            Just("0".to_owned()),
            Just("-1".to_owned()),
            Just("4294967296".to_owned()),
            Just("1.5".to_owned()),
            Just("\"shop\"".to_owned()),
            Just("\"Shop-1\"".to_owned()),
            Just("\"\"".to_owned()),
            Just("true".to_owned()),
            Just("[1,\"a\"]".to_owned()),
        ]
        .boxed()
    }

    proptest! {
        // A divergence can hide in one shape of several hundred (a `resource.mall_id: null`
        // beside a top-level `mall_id`): enough cases to meet it every run.
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn classify_body_agrees_with_classify(nested in json_text(), shaped in webhook_shape()) {
            agree(&nested)?;
            agree(&shaped)?;
        }


        #[test]
        fn classify_body_agrees_with_classify_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(classify_body(&body).map_err(|_| ()), by_value(&body).map_err(|_| ()));
        }
    }

    #[test]
    fn classify_body_agrees_with_classify_on_cafe24_samples_and_quirks() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cafe24");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            assert_eq!(classify_body(&body).map_err(|_| ()), by_value(&body).map_err(|_| ()));
            n += 1;
        }
        assert!(n > 5, "the fixtures were read");
        for body in [
            r#"{"event_no":90023,"resource":{"mall_id":null},"mall_id":"shop"}"#,
            r#"{"event_no":90023,"resource":null,"mall_id":"shop"}"#,
            r#"{"event_no":90023,"resource":"x","mall_id":"shop"}"#,
            r#"{"event_no":90023,"resource":{"mall_id":"a"},"resource":{"mall_id":"b"}}"#,
            r#"{"event_no":1,"event_no":2,"mall_id":"shop"}"#,
            r#"[1,2]"#,
            r#"{"event_no":90023,"mall_id":"shop"} trailing"#,
        ] {
            assert_eq!(
                classify_body(body.as_bytes()).map_err(|_| ()),
                by_value(body.as_bytes()).map_err(|_| ()),
                "{body}"
            );
        }
    }

    fn c(body: &str) -> Classified {
        classify(body.as_bytes()).map(|(_, c)| c).unwrap()
    }

    fn routable(e: u32, m: &str) -> Classified {
        Classified::Routable { event_no: EventNo(e), mall_id: MallId::parse(m).unwrap() }
    }

    #[test]
    fn standard_shape_is_routable() {
        assert_eq!(c(r#"{"event_no":90023,"resource":{"mall_id":"shop1","order_id":"x"}}"#), routable(90023, "shop1"));
    }

    #[test]
    fn string_event_no_is_accepted() {
        assert_eq!(c(r#"{"event_no":" 90001 ","resource":{"mall_id":"shop1"}}"#), routable(90001, "shop1"));
    }

    #[test]
    fn payload_without_resource_wrapper_is_routable() {
        assert_eq!(c(r#"{"event_no":90077,"mall_id":"leesunsin","client_id":"c"}"#), routable(90077, "leesunsin"));
    }

    #[test]
    fn resource_wins_over_top_level_mall_id() {
        assert_eq!(c(r#"{"event_no":1,"mall_id":"top","resource":{"mall_id":"inner"}}"#), routable(1, "inner"));
    }

    #[test]
    fn unroutable_json_is_parked_with_a_reason() {
        let cases = [
            (r#"[1,2]"#, ParkReason::NotAnObject),
            (r#""text""#, ParkReason::NotAnObject),
            (r#"{"resource":{"mall_id":"shop1"}}"#, ParkReason::MissingEventNo),
            (r#"{"event_no":null,"resource":{"mall_id":"shop1"}}"#, ParkReason::MissingEventNo),
            (r#"{"event_no":"abc","resource":{"mall_id":"shop1"}}"#, ParkReason::BadEventNo),
            (r#"{"event_no":-5,"resource":{"mall_id":"shop1"}}"#, ParkReason::BadEventNo),
            (r#"{"event_no":0,"resource":{"mall_id":"shop1"}}"#, ParkReason::BadEventNo),
            (r#"{"event_no":1.5,"resource":{"mall_id":"shop1"}}"#, ParkReason::BadEventNo),
            (r#"{"event_no":99999999999,"resource":{"mall_id":"shop1"}}"#, ParkReason::BadEventNo),
            (r#"{"event_no":90023,"resource":{}}"#, ParkReason::MissingMallId),
            (r#"{"event_no":90023,"resource":{"mall_id":42}}"#, ParkReason::BadMallId),
            (r#"{"event_no":90023,"resource":{"mall_id":"../etc"}}"#, ParkReason::BadMallId),
        ];
        for (body, want) in cases {
            match c(body) {
                Classified::Parked { reason, .. } => assert_eq!(reason, want, "{body}"),
                other => panic!("{body} → {other:?}"),
            }
        }
    }

    #[test]
    fn parked_keeps_what_was_readable() {
        assert_eq!(
            c(r#"{"event_no":90023,"resource":{"mall_id":""}}"#),
            Classified::Parked { reason: ParkReason::BadMallId, event_no: Some(EventNo(90023)), mall_id: None }
        );
    }

    #[test]
    fn non_json_and_truncated_bodies_are_errors() {
        assert!(classify(b"event_no=90023").is_err());
        assert!(classify(br#"{"event_no":90023,"resource":{"mall"#).is_err());
        assert!(classify(b"").is_err());
        assert!(classify(&[0xff, 0xfe]).is_err());
    }
}
