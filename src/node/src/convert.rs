//! ROS message → JSON value conversion for dynamically typed subscriptions.
//!
//! The mapping (documented in README.md, "Package format"):
//! - integers of every width map to JSON integers exactly (64-bit included); `char` and
//!   `wchar` map to their integer code;
//! - `float32`/`float64` map through [`peaqos_core::value`]: finite values as numbers, NaN and
//!   ±Inf as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (the SDK's canonical JSON rejects
//!   non-finite numbers); a `float32` is written as the shortest decimal that reads back as the
//!   same `float32`;
//! - `uint8[]`, `byte[]`, `char[]` (fixed, bounded or unbounded) map to a base64 string, as
//!   rosbridge does; every other array or sequence to a JSON array;
//! - strings and wide strings map to JSON strings; nested messages to JSON objects, with the
//!   fields under their ROS names (so a Header is `{"frame_id": ..., "stamp": {"nanosec", "sec"}}`);
//! - `long double` has no portable layout and maps to `null`.
use peaqos_core::value::{self, Timestamp};
use rclrs::{
    ArrayValue, BoundedSequenceValue, DynamicMessage, DynamicMessageView, SequenceValue, SimpleValue, Value as RosValue,
};
use serde_json::{Map, Value};

/// The top-level fields of a message, in JSON form.
pub fn message_to_map(msg: &DynamicMessage) -> Map<String, Value> {
    msg.iter().map(|(name, v)| (name.to_owned(), value_to_json(v))).collect()
}

fn view_to_json(view: &DynamicMessageView<'_>) -> Value {
    Value::Object(view.iter().map(|(name, v)| (name.to_owned(), value_to_json(v))).collect())
}

fn ros_string(s: &rosidl_runtime_rs::String) -> Value {
    Value::String(s.to_string())
}

fn wstring(s: &rosidl_runtime_rs::WString) -> Value {
    Value::String(s.to_string())
}

fn nums<T: Copy + Into<Value>>(xs: &[T]) -> Value {
    Value::Array(xs.iter().map(|x| (*x).into()).collect())
}

fn floats32(xs: &[f32]) -> Value {
    Value::Array(xs.iter().map(|x| value::float32(*x)).collect())
}

fn floats64(xs: &[f64]) -> Value {
    Value::Array(xs.iter().map(|x| value::float64(*x)).collect())
}

fn simple(v: SimpleValue<'_>) -> Value {
    match v {
        SimpleValue::Float(x) => value::float32(*x),
        SimpleValue::Double(x) => value::float64(*x),
        SimpleValue::LongDouble(_) => Value::Null,
        SimpleValue::Char(x) | SimpleValue::Octet(x) | SimpleValue::Uint8(x) => (*x).into(),
        SimpleValue::WChar(x) | SimpleValue::Uint16(x) => (*x).into(),
        SimpleValue::Boolean(x) => (*x).into(),
        SimpleValue::Int8(x) => (*x).into(),
        SimpleValue::Int16(x) => (*x).into(),
        SimpleValue::Uint32(x) => (*x).into(),
        SimpleValue::Int32(x) => (*x).into(),
        SimpleValue::Uint64(x) => (*x).into(),
        SimpleValue::Int64(x) => (*x).into(),
        SimpleValue::String(s) => ros_string(s),
        SimpleValue::BoundedString(s) => ros_string(&s),
        SimpleValue::WString(s) => wstring(s),
        SimpleValue::BoundedWString(s) => wstring(&s),
        SimpleValue::Message(m) => view_to_json(&m),
    }
}

/// `i8` has no `Into<Value>` for slices of it as bytes; widen explicitly.
fn i8s(xs: &[i8]) -> Value {
    Value::Array(xs.iter().map(|x| (*x as i64).into()).collect())
}

fn bools(xs: &[bool]) -> Value {
    Value::Array(xs.iter().map(|x| (*x).into()).collect())
}

fn array(v: ArrayValue<'_>) -> Value {
    match v {
        ArrayValue::FloatArray(xs) => floats32(xs),
        ArrayValue::DoubleArray(xs) => floats64(xs),
        ArrayValue::LongDoubleArray(_, n) => Value::Array(vec![Value::Null; n]),
        ArrayValue::CharArray(xs) | ArrayValue::OctetArray(xs) | ArrayValue::Uint8Array(xs) => value::bytes(xs),
        ArrayValue::WCharArray(xs) | ArrayValue::Uint16Array(xs) => nums(xs),
        ArrayValue::BooleanArray(xs) => bools(xs),
        ArrayValue::Int8Array(xs) => i8s(xs),
        ArrayValue::Int16Array(xs) => nums(xs),
        ArrayValue::Uint32Array(xs) => nums(xs),
        ArrayValue::Int32Array(xs) => nums(xs),
        ArrayValue::Uint64Array(xs) => nums(xs),
        ArrayValue::Int64Array(xs) => nums(xs),
        ArrayValue::StringArray(xs) => Value::Array(xs.iter().map(ros_string).collect()),
        ArrayValue::BoundedStringArray(xs) => Value::Array(xs.iter().map(|s| ros_string(s)).collect()),
        ArrayValue::WStringArray(xs) => Value::Array(xs.iter().map(wstring).collect()),
        ArrayValue::BoundedWStringArray(xs) => Value::Array(xs.iter().map(|s| wstring(s)).collect()),
        ArrayValue::MessageArray(ms) => Value::Array(ms.iter().map(view_to_json).collect()),
    }
}

fn sequence(v: SequenceValue<'_>) -> Value {
    match v {
        SequenceValue::FloatSequence(xs) => floats32(xs),
        SequenceValue::DoubleSequence(xs) => floats64(xs),
        SequenceValue::LongDoubleSequence(_) => Value::Array(Vec::new()),
        SequenceValue::CharSequence(xs) | SequenceValue::OctetSequence(xs) | SequenceValue::Uint8Sequence(xs) => {
            value::bytes(xs)
        }
        SequenceValue::WCharSequence(xs) | SequenceValue::Uint16Sequence(xs) => nums(xs),
        SequenceValue::BooleanSequence(xs) => bools(xs),
        SequenceValue::Int8Sequence(xs) => i8s(xs),
        SequenceValue::Int16Sequence(xs) => nums(xs),
        SequenceValue::Uint32Sequence(xs) => nums(xs),
        SequenceValue::Int32Sequence(xs) => nums(xs),
        SequenceValue::Uint64Sequence(xs) => nums(xs),
        SequenceValue::Int64Sequence(xs) => nums(xs),
        SequenceValue::StringSequence(xs) => Value::Array(xs.iter().map(ros_string).collect()),
        SequenceValue::BoundedStringSequence(xs) => Value::Array(xs.iter().map(|s| ros_string(s)).collect()),
        SequenceValue::WStringSequence(xs) => Value::Array(xs.iter().map(wstring).collect()),
        SequenceValue::BoundedWStringSequence(xs) => Value::Array(xs.iter().map(|s| wstring(s)).collect()),
        SequenceValue::MessageSequence(ms) => Value::Array(ms.iter().map(view_to_json).collect()),
    }
}

fn bounded(v: BoundedSequenceValue<'_>) -> Value {
    use BoundedSequenceValue as B;
    match v {
        B::FloatBoundedSequence(xs) => floats32(xs.as_slice()),
        B::DoubleBoundedSequence(xs) => floats64(xs.as_slice()),
        B::LongDoubleBoundedSequence(_, _) => Value::Array(Vec::new()),
        B::CharBoundedSequence(xs) | B::OctetBoundedSequence(xs) | B::Uint8BoundedSequence(xs) => {
            value::bytes(xs.as_slice())
        }
        B::WCharBoundedSequence(xs) | B::Uint16BoundedSequence(xs) => nums(xs.as_slice()),
        B::BooleanBoundedSequence(xs) => bools(xs.as_slice()),
        B::Int8BoundedSequence(xs) => i8s(xs.as_slice()),
        B::Int16BoundedSequence(xs) => nums(xs.as_slice()),
        B::Uint32BoundedSequence(xs) => nums(xs.as_slice()),
        B::Int32BoundedSequence(xs) => nums(xs.as_slice()),
        B::Uint64BoundedSequence(xs) => nums(xs.as_slice()),
        B::Int64BoundedSequence(xs) => nums(xs.as_slice()),
        B::StringBoundedSequence(xs) => Value::Array(xs.as_slice().iter().map(ros_string).collect()),
        B::BoundedStringBoundedSequence(xs) => Value::Array(xs.iter().map(|s| ros_string(s)).collect()),
        B::WStringBoundedSequence(xs) => Value::Array(xs.as_slice().iter().map(wstring).collect()),
        B::BoundedWStringBoundedSequence(xs) => Value::Array(xs.iter().map(|s| wstring(s)).collect()),
        B::MessageBoundedSequence(ms) => Value::Array(ms.iter().map(view_to_json).collect()),
    }
}

fn value_to_json(v: RosValue<'_>) -> Value {
    match v {
        RosValue::Simple(s) => simple(s),
        RosValue::Array(a) => array(a),
        RosValue::Sequence(s) => sequence(s),
        RosValue::BoundedSequence(b) => bounded(b),
    }
}

/// The message's `header.stamp` (std_msgs/Header), if it has one.
pub fn header_stamp(fields: &Map<String, Value>) -> Option<Timestamp> {
    let stamp = fields.get("header")?.get("stamp")?;
    let sec = stamp.get("sec")?.as_i64()?;
    let nanosec = stamp.get("nanosec")?.as_u64()?;
    Some(Timestamp { sec, nanosec: u32::try_from(nanosec).ok()? })
}
