//! CBOR encoding and decoding.
//!
//! Design: this is the only module that names `serde_cbor`. The rest of the
//! crate sees [`Value`], [`decode_value`], [`encode_value`], [`from_slice`] and
//! [`to_vec`], so replacing the (unmaintained) backend is a change to this
//! file alone.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A decoded CBOR data item, independent of the backend library.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null` or `undefined`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Major types 0 and 1.
    Integer(i128),
    /// Major type 7 floats.
    Float(f64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3.
    Text(String),
    /// Major type 4.
    Array(Vec<Value>),
    /// Major type 5, in the order the backend yields its entries.
    Map(Vec<(Value, Value)>),
    /// Major type 6.
    Tag(u64, Box<Value>),
}

/// Why CBOR bytes could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
#[error("CBOR: {0}")]
pub struct CodecError(String);

impl Value {
    /// The entry of a map whose key is the integer `key`.
    pub fn map_get_int(&self, key: i128) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Integer(i) if *i == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// The backend's error in plain words, with the byte where it went wrong.
fn plain(e: serde_cbor::Error) -> CodecError {
    use serde_cbor::error::Category;
    let at = e.offset();
    let text = e.to_string();
    let message = text[..text.rfind(" at offset ").unwrap_or(text.len())].to_owned();
    CodecError(match e.classify() {
        Category::Eof => format!("the bytes end early (cut off at byte {at})"),
        Category::Syntax if message.contains("trailing") => {
            format!("there are bytes after the end of the item (from byte {at})")
        }
        Category::Syntax => format!("not well-formed at byte {at}: {message}"),
        Category::Data | Category::Io => message,
    })
}

/// Decodes exactly one CBOR item; trailing bytes are an error.
pub fn decode_value(bytes: &[u8]) -> Result<Value, CodecError> {
    let v: serde_cbor::Value = serde_cbor::from_slice(bytes).map_err(plain)?;
    Ok(from_backend(v))
}

/// Encodes a value; map entries keep the order given.
pub fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, value);
    out
}

/// Deserializes a serde type from CBOR bytes.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    serde_cbor::from_slice(bytes).map_err(plain)
}

/// How a payload failed to be the type asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Unreadability {
    /// The bytes end in the middle of an item.
    Truncated,
    /// The bytes are not well-formed (here: CBOR; JSON uses the same kinds).
    Syntax,
    /// Well-formed, but a field is missing or of the wrong kind.
    Content,
}

/// Why a payload could not be read, with the field it went wrong in.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// What kind of failure.
    pub kind: Unreadability,
    /// The field, as `items[0].net_kg` (empty: the payload itself).
    pub path: String,
    /// The decoder's own message, without its position.
    pub message: String,
    /// Where in the bytes it went wrong, in words ("byte 5"), when known.
    pub at: Option<String>,
}

/// Deserializes like [`from_slice`], and on failure says in which field.
/// Slower than [`from_slice`]: meant for explaining a payload already refused.
pub fn from_slice_traced<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Unreadable> {
    use serde_cbor::error::Category;
    let mut de = serde_cbor::Deserializer::from_slice(bytes);
    let kind = |e: &serde_cbor::Error| match e.classify() {
        Category::Eof => Unreadability::Truncated,
        Category::Syntax => Unreadability::Syntax,
        Category::Data | Category::Io => Unreadability::Content,
    };
    let strip = |e: &serde_cbor::Error| {
        let text = e.to_string();
        let cut = text.rfind(" at offset ").unwrap_or(text.len());
        text[..cut].to_owned()
    };
    let offset = |e: &serde_cbor::Error| {
        Some(e.offset())
            .filter(|o| *o > 0)
            .map(|o| format!("byte {o}"))
    };
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Unreadable {
            kind: kind(&inner),
            path: if path == "." { String::new() } else { path },
            message: strip(&inner),
            at: offset(&inner),
        }
    })?;
    de.end().map_err(|e| Unreadable {
        kind: Unreadability::Syntax,
        path: String::new(),
        message: strip(&e),
        at: offset(&e),
    })?;
    Ok(value)
}

/// Serializes a serde type to CBOR bytes.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_cbor::to_vec(value).map_err(|e| CodecError(e.to_string()))
}

fn from_backend(v: serde_cbor::Value) -> Value {
    use serde_cbor::Value as B;
    match v {
        B::Null => Value::Null,
        B::Bool(b) => Value::Bool(b),
        B::Integer(i) => Value::Integer(i),
        B::Float(f) => Value::Float(f),
        B::Bytes(b) => Value::Bytes(b),
        B::Text(t) => Value::Text(t),
        B::Array(a) => Value::Array(a.into_iter().map(from_backend).collect()),
        B::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (from_backend(k), from_backend(v)))
                .collect(),
        ),
        B::Tag(t, inner) => Value::Tag(t, Box::new(from_backend(*inner))),
        // serde_cbor's Value is non-exhaustive; nothing else is produced today.
        _ => Value::Null,
    }
}

// Design: encoding is written out (RFC 8949 §3, preferred serialization of
// lengths and integers) rather than delegated, because COSE needs
// byte-exact control of the bytes that get signed.
fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Integer(i) => {
            if *i >= 0 {
                write_head(out, 0, (*i).min(u64::MAX as i128) as u64);
            } else {
                write_head(out, 1, (-1 - *i).min(u64::MAX as i128) as u64);
            }
        }
        Value::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Bytes(b) => {
            write_head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            write_head(out, 3, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                write_value(out, item);
            }
        }
        Value::Map(entries) => {
            write_head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                write_value(out, k);
                write_value(out, v);
            }
        }
        Value::Tag(tag, inner) => {
            write_head(out, 6, *tag);
            write_value(out, inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_where_in_plain_words() {
        let item = encode_value(&Value::Array(vec![
            Value::Text("abc".into()),
            Value::Integer(7),
        ]));
        let cut = decode_value(&item[..3]).unwrap_err().to_string();
        assert_eq!(cut, "CBOR: the bytes end early (cut off at byte 3)");
        let extra = decode_value(&[&item[..], &[0]].concat())
            .unwrap_err()
            .to_string();
        assert!(
            extra.starts_with("CBOR: there are bytes after the end"),
            "{extra}"
        );
        for e in [cut, extra] {
            assert!(!e.contains("EOF") && !e.contains("offset"), "{e}");
        }
    }

    #[test]
    fn round_trips_through_the_backend() {
        let v = Value::Tag(
            18,
            Box::new(Value::Array(vec![
                Value::Bytes(vec![0xa1, 0x01, 0x27]),
                Value::Map(vec![(Value::Integer(4), Value::Bytes(b"k1".to_vec()))]),
                Value::Text("héllo".into()),
                Value::Integer(-70000),
                Value::Integer(1_800_000_000),
                Value::Float(480.5),
                Value::Bool(true),
                Value::Null,
            ])),
        );
        let bytes = encode_value(&v);
        assert_eq!(decode_value(&bytes).unwrap(), v);
    }

    #[test]
    fn encodes_rfc8949_examples() {
        assert_eq!(encode_value(&Value::Integer(0)), [0x00]);
        assert_eq!(encode_value(&Value::Integer(24)), [0x18, 0x18]);
        assert_eq!(encode_value(&Value::Integer(1000)), [0x19, 0x03, 0xe8]);
        assert_eq!(encode_value(&Value::Integer(-1)), [0x20]);
        assert_eq!(encode_value(&Value::Integer(-1000)), [0x39, 0x03, 0xe7]);
        assert_eq!(encode_value(&Value::Text("a".into())), [0x61, 0x61]);
    }

    #[test]
    fn rejects_trailing_bytes_and_truncation() {
        assert!(decode_value(&[0x01, 0x02]).is_err());
        assert!(decode_value(&[0x62, 0x61]).is_err());
        // A byte string that claims 4 GiB must fail fast, not allocate.
        assert!(decode_value(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0x00]).is_err());
    }

    #[test]
    fn refuses_deep_nesting() {
        let deep = vec![0x81u8; 10_000];
        assert!(decode_value(&deep).is_err());
    }

    #[test]
    fn refuses_huge_declared_lengths_without_trusting_them() {
        // A byte string, a text string, an array and a map, each claiming
        // 2^63 entries with nothing behind: refused, nothing preallocated.
        for head in [0x5b_u8, 0x7b, 0x9b, 0xbb] {
            let mut b = vec![head];
            b.extend_from_slice(&(1u64 << 63).to_be_bytes());
            assert!(decode_value(&b).is_err(), "{head:#x}");
        }
    }
}
