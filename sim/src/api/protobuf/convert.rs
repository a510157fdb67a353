//! The conversion of a decoded k8s-pb message into the JSON the API stores: the `ToJson` trait, the `fields!` macro that lists a message's fields once, and the apimachinery types whose protobuf form differs from their JSON (Quantity, Time, MicroTime, Duration, IntOrString, RawExtension, FieldsV1, bytes).

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::jiff::Timestamp;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{Duration, FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value, json};

/// Why a message could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A field was left in the message after every listed field was taken
    /// out: the mapping does not know it, and storing the object without it
    /// would lose what the client sent.
    #[error(
        "the protobuf body sets a field of {message} that the simulator does not convert; send this object as JSON (Content-Type: application/json)"
    )]
    Unmapped {
        /// The message's OpenAPI name, e.g. `io.k8s.api.core.v1.PodSpec`.
        message: String,
    },
    /// An embedded raw object (RawExtension, FieldsV1) is not JSON.
    #[error("the protobuf body embeds a raw {what} that is not JSON; send this object as JSON")]
    RawNotJson {
        /// `RawExtension` or `FieldsV1`.
        what: &'static str,
    },
}

/// A decoded message (or field value) as its JSON form. The conversion
/// consumes the value: each message takes its fields out of itself, so that
/// what is left can be checked for anything unconverted.
pub trait ToJson {
    /// The JSON value; `Null` for what Go's JSON encoding omits (an absent
    /// optional, an empty list or map).
    fn to_json(self) -> Result<Value, ConvertError>;
}

/// How a listed field goes into its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Omitted when absent, empty (list, map) or an empty string; kept
    /// otherwise, `false` and `0` included (Go pointer fields, where they
    /// mean something).
    Plain,
    /// Also omitted when `false` or `0`: a Go non-pointer field with
    /// `omitempty`, which Go's protobuf encoding always writes.
    OmitZero,
    /// Its fields are the parent's (Go's `json:",inline"` embedding).
    Inline,
}

/// The JSON name of a field: the given one, or the Rust name in lowerCamelCase.
pub fn json_name(rust: &str, given: Option<&'static str>) -> String {
    if let Some(name) = given {
        return name.to_owned();
    }
    let rust = rust.trim_start_matches("r#");
    let mut out = String::with_capacity(rust.len());
    let mut upper = false;
    for c in rust.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Puts a converted field into its object, leaving out what Go's JSON omits.
pub fn put(out: &mut Map<String, Value>, name: String, value: Value, mode: Mode) {
    let absent = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => mode == Mode::OmitZero && !b,
        Value::Number(n) => mode == Mode::OmitZero && n.as_f64() == Some(0.0),
        Value::Array(_) | Value::Object(_) => false,
    };
    if absent {
        return;
    }
    match (mode, value) {
        (Mode::Inline, Value::Object(fields)) => out.extend(fields),
        (_, value) => {
            out.insert(name, value);
        }
    }
}

/// The guard against silent loss: after its listed fields were taken out,
/// a message must be empty.
pub fn check_empty<M: prost::Message>(rest: &M) -> Result<(), ConvertError> {
    if rest.encoded_len() == 0 {
        return Ok(());
    }
    Err(ConvertError::Unmapped {
        message: openapi_name(std::any::type_name::<M>()),
    })
}

/// `k8s_pb::api::core::v1::PodSpec` as `io.k8s.api.core.v1.PodSpec`, the
/// name the OpenAPI documents give it.
fn openapi_name(rust: &str) -> String {
    let path = rust.strip_prefix("k8s_pb::").unwrap_or(rust);
    format!("io.k8s.{}", path.replace("::", "."))
}

/// `impl ToJson` for a k8s-pb message from the list of its fields, each
/// written once (`fields! { core::Secret { metadata, data, r#type } }`):
/// `name`, `name => "jsonName"` where lowerCamelCase of the Rust name is not
/// the JSON name, and `: OmitZero` / `: Inline` (see [`Mode`]). Every field is taken out of the message; a field not listed
/// stays behind and makes the conversion fail instead of vanishing.
macro_rules! fields {
    ($($ty:ident)::+ { $($field:ident $(=> $json:literal)? $(: $mode:ident)?),* $(,)? }) => {
        impl $crate::api::protobuf::convert::ToJson for $($ty)::+ {
            #[allow(unused_mut)]
            fn to_json(mut self) -> Result<serde_json::Value, $crate::api::protobuf::convert::ConvertError> {
                #[allow(unused_imports)]
                use $crate::api::protobuf::convert::Mode::{self, *};
                let mut out = serde_json::Map::new();
                $(
                    let value = $crate::api::protobuf::convert::ToJson::to_json(std::mem::take(&mut self.$field))?;
                    let name = $crate::api::protobuf::convert::json_name(stringify!($field), None $(.or(Some($json)))?);
                    let mode: Mode = [$($mode,)? Plain][0];
                    $crate::api::protobuf::convert::put(&mut out, name, value, mode);
                )*
                $crate::api::protobuf::convert::check_empty(&self)?;
                Ok(serde_json::Value::Object(out))
            }
        }
    };
}
pub(super) use fields;

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(self) -> Result<Value, ConvertError> {
        self.map_or(Ok(Value::Null), ToJson::to_json)
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(self) -> Result<Value, ConvertError> {
        if self.is_empty() {
            return Ok(Value::Null);
        }
        self.into_iter()
            .map(ToJson::to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    }
}

impl<V: ToJson> ToJson for BTreeMap<String, V> {
    fn to_json(self) -> Result<Value, ConvertError> {
        if self.is_empty() {
            return Ok(Value::Null);
        }
        let mut out = Map::new();
        for (k, v) in self {
            out.insert(k, v.to_json()?);
        }
        Ok(Value::Object(out))
    }
}

/// `[]byte`: base64, as Go's JSON encodes it (Secret `data`, ConfigMap
/// `binaryData`).
impl ToJson for Vec<u8> {
    fn to_json(self) -> Result<Value, ConvertError> {
        Ok(json!(
            base64::engine::general_purpose::STANDARD.encode(self)
        ))
    }
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn to_json(self) -> Result<Value, ConvertError> {
                Ok(json!(self))
            }
        }
    )*};
}
scalar!(String, bool, i32, i64, f64);

/// A quantity is its canonical string (`100m`, `1Gi`).
impl ToJson for Quantity {
    fn to_json(mut self) -> Result<Value, ConvertError> {
        let value = self.string.take().to_json()?;
        check_empty(&self)?;
        Ok(value)
    }
}

/// `metav1.Time`: RFC 3339 in whole seconds (Go drops the nanoseconds a
/// protobuf Time carries); the zero time (no seconds) is `null`.
impl ToJson for Time {
    fn to_json(mut self) -> Result<Value, ConvertError> {
        let seconds = self.seconds.take();
        self.nanos.take();
        check_empty(&self)?;
        Ok(match seconds {
            None => Value::Null,
            Some(s) => json!(timestamp(s, 0).to_string()),
        })
    }
}

/// `metav1.MicroTime`: RFC 3339 with six fractional digits.
impl ToJson for MicroTime {
    fn to_json(mut self) -> Result<Value, ConvertError> {
        let seconds = self.seconds.take();
        let nanos = self.nanos.take().unwrap_or_default();
        check_empty(&self)?;
        Ok(match seconds {
            None => Value::Null,
            Some(s) => json!(
                timestamp(s, nanos)
                    .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string()
            ),
        })
    }
}

fn timestamp(seconds: i64, nanos: i32) -> Timestamp {
    Timestamp::new(seconds, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `metav1.Duration`: Go's `time.Duration` text (`1h2m3.5s`).
impl ToJson for Duration {
    fn to_json(mut self) -> Result<Value, ConvertError> {
        let nanos = self.duration.take();
        check_empty(&self)?;
        Ok(nanos.map_or(Value::Null, |n| json!(go_duration(n))))
    }
}

/// Go's `time.Duration.String()`.
fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let text = format!("{rest:0digits$}");
        format!("{whole}.{}", text.trim_end_matches('0'))
    };
    if n == 0 {
        return "0s".into();
    }
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let seconds = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `IntOrString`: type 1 is the string, anything else the integer.
impl ToJson for IntOrString {
    fn to_json(mut self) -> Result<Value, ConvertError> {
        let kind = self.r#type.take();
        let int = self.int_val.take().unwrap_or_default();
        let text = self.str_val.take().unwrap_or_default();
        check_empty(&self)?;
        Ok(if kind == Some(1) {
            json!(text)
        } else {
            json!(int)
        })
    }
}

/// `runtime.RawExtension`: the embedded object, which must be JSON.
impl ToJson for RawExtension {
    fn to_json(mut self) -> Result<Value, ConvertError> {
        let raw = self.raw.take();
        check_empty(&self)?;
        raw_json(raw, "RawExtension")
    }
}

/// `metav1.FieldsV1` (managed fields): its raw JSON.
impl ToJson for FieldsV1 {
    fn to_json(mut self) -> Result<Value, ConvertError> {
        let raw = self.raw.take();
        check_empty(&self)?;
        raw_json(raw, "FieldsV1")
    }
}

fn raw_json(raw: Option<Vec<u8>>, what: &'static str) -> Result<Value, ConvertError> {
    match raw {
        None => Ok(Value::Null),
        Some(bytes) if bytes.is_empty() => Ok(Value::Null),
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|_| ConvertError::RawNotJson { what })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_pb::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    #[test]
    fn quantities_are_their_strings() {
        let q = Quantity {
            string: Some("250m".into()),
        };
        assert_eq!(q.to_json().unwrap(), json!("250m"));
    }

    #[test]
    fn times_are_rfc3339_in_seconds_and_the_zero_time_is_null() {
        let t = Time {
            seconds: Some(1_700_000_000),
            nanos: Some(123),
        };
        assert_eq!(t.to_json().unwrap(), json!("2023-11-14T22:13:20Z"));
        assert_eq!(Time::default().to_json().unwrap(), Value::Null);
    }

    #[test]
    fn micro_times_keep_six_fractional_digits() {
        let t = MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        };
        assert_eq!(t.to_json().unwrap(), json!("2023-11-14T22:13:20.123456Z"));
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        let d = |n: i64| go_duration(n);
        assert_eq!(d(0), "0s");
        assert_eq!(d(1_500), "1.5µs");
        assert_eq!(d(2_000_000), "2ms");
        assert_eq!(d(90_000_000_000), "1m30s");
        assert_eq!(d(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(d(-5_000_000_000), "-5s");
        let pb = Duration {
            duration: Some(3_600_000_000_000),
        };
        assert_eq!(pb.to_json().unwrap(), json!("1h0m0s"));
    }

    #[test]
    fn int_or_string_is_a_number_or_a_string_by_its_type() {
        let int = IntOrString {
            r#type: Some(0),
            int_val: Some(8080),
            str_val: Some(String::new()),
        };
        let text = IntOrString {
            r#type: Some(1),
            int_val: Some(0),
            str_val: Some("25%".into()),
        };
        assert_eq!(int.to_json().unwrap(), json!(8080));
        assert_eq!(text.to_json().unwrap(), json!("25%"));
    }

    #[test]
    fn raw_extensions_are_their_json_and_refuse_anything_else() {
        let raw = RawExtension {
            raw: Some(br#"{"a":1}"#.to_vec()),
        };
        assert_eq!(raw.to_json().unwrap(), json!({"a": 1}));
        let binary = RawExtension {
            raw: Some(b"k8s\0\x01".to_vec()),
        };
        assert!(matches!(
            binary.to_json(),
            Err(ConvertError::RawNotJson { .. })
        ));
    }

    #[test]
    fn bytes_are_base64_and_kept_in_maps_even_when_empty() {
        let map: BTreeMap<String, Vec<u8>> =
            [("a".to_owned(), b"b".to_vec()), ("e".to_owned(), vec![])].into();
        assert_eq!(map.to_json().unwrap(), json!({"a": "Yg==", "e": ""}));
        assert_eq!(
            BTreeMap::<String, String>::new().to_json().unwrap(),
            Value::Null
        );
    }

    #[test]
    fn go_omits_absent_and_empty_fields_and_keeps_pointer_zeros() {
        let mut out = Map::new();
        put(&mut out, "a".into(), Value::Null, Mode::Plain);
        put(&mut out, "b".into(), json!(""), Mode::Plain);
        put(&mut out, "c".into(), json!(false), Mode::Plain);
        put(&mut out, "d".into(), json!(0), Mode::Plain);
        put(&mut out, "e".into(), json!(0), Mode::OmitZero);
        put(&mut out, "f".into(), json!(false), Mode::OmitZero);
        put(&mut out, "g".into(), json!({}), Mode::Plain);
        put(&mut out, "h".into(), json!({"name": "x"}), Mode::Inline);
        assert_eq!(
            Value::Object(out),
            json!({"c": false, "d": 0, "g": {}, "name": "x"})
        );
    }

    #[test]
    fn json_names_are_lower_camel_case_unless_given() {
        assert_eq!(json_name("r#type", None), "type");
        assert_eq!(json_name("owner_references", None), "ownerReferences");
        assert_eq!(json_name("host_ipc", Some("hostIPC")), "hostIPC");
    }

    /// A message whose mapping leaves out a field the client set is refused,
    /// naming the message, rather than stored without it.
    #[test]
    fn a_field_the_mapping_does_not_list_refuses_the_message() {
        struct Partial(LabelSelector);
        impl ToJson for Partial {
            fn to_json(mut self) -> Result<Value, ConvertError> {
                let mut out = Map::new();
                let labels = std::mem::take(&mut self.0.match_labels).to_json()?;
                put(&mut out, "matchLabels".into(), labels, Mode::Plain);
                check_empty(&self.0)?;
                Ok(Value::Object(out))
            }
        }
        let only_labels = LabelSelector {
            match_labels: [("app".to_owned(), "x".to_owned())].into(),
            match_expressions: vec![],
        };
        assert_eq!(
            Partial(only_labels).to_json().unwrap(),
            json!({"matchLabels": {"app": "x"}})
        );
        let with_expressions = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![Default::default()],
        };
        let err = Partial(with_expressions).to_json().unwrap_err();
        assert_eq!(
            err,
            ConvertError::Unmapped {
                message: "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector".into()
            }
        );
        assert!(err.to_string().contains("send this object as JSON"));
    }

    #[test]
    fn listed_messages_convert_every_field_they_carry() {
        let meta = ObjectMeta {
            name: Some("s".into()),
            namespace: Some(String::new()),
            generation: Some(0),
            creation_timestamp: Some(Time::default()),
            labels: [("app".to_owned(), String::new())].into(),
            ..Default::default()
        };
        assert_eq!(
            meta.to_json().unwrap(),
            json!({"name": "s", "labels": {"app": ""}})
        );
    }
}
