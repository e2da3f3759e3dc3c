//! JSON documents as Zaqar reads them: parse errors, integer overflow, Python's
//! type checks and truthiness, with Zaqar's error descriptions.

use serde_json::{Map, Value};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::{invalid_body, Payload};

/// Zaqar's `deserialize`: a body is required and must be a JSON object or array.
pub fn parse_document(payload: &Payload) -> Result<Value, ZaqarError> {
    match payload {
        Payload::Absent => Err(invalid_body("Request body can not be empty")),
        Payload::TooLarge(size) => Err(too_large(*size)),
        Payload::Read(bytes) => parse_bytes(bytes),
    }
}

/// A body that is parsed only when it is not empty (`if req.content_length`);
/// `None` for an absent or empty body.
pub fn parse_optional(payload: &Payload) -> Result<Option<Value>, ZaqarError> {
    if payload.is_empty() {
        return Ok(None);
    }
    parse_document(payload).map(Some)
}

/// 413 for a body larger than any request may be.
pub fn too_large(size: u64) -> ZaqarError {
    ZaqarError::new(
        ErrorCode::PayloadTooLarge,
        format!("The request body ({size} bytes) is larger than this endpoint accepts."),
    )
}

/// Parses a JSON object or array; integers must fit in 64 signed bits.
pub fn parse_bytes(bytes: &[u8]) -> Result<Value, ZaqarError> {
    let unparsable = || invalid_body("Request body could not be parsed.");
    let text = std::str::from_utf8(bytes).map_err(|_| unparsable())?;
    let value: Value = serde_json::from_str(text).map_err(|_| unparsable())?;
    if has_overflowing_integer(text) {
        return Err(invalid_body("JSON contains integer that is too large."));
    }
    if !value.is_object() && !value.is_array() {
        return Err(unparsable());
    }
    Ok(value)
}

/// Whether valid JSON `text` has an integer literal outside `i64` (Python parses
/// it exactly and Zaqar refuses it; serde_json would silently make it a float).
fn has_overflowing_integer(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &text[start..i];
                let is_integer = !token.contains(['.', 'e', 'E']);
                if is_integer && token.parse::<i64>().is_err() {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// Python's truthiness of a JSON value (`if value:`).
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The value as a Python `int` (booleans are ints in Python), if it is one.
pub fn as_python_int(value: &Value) -> Option<i64> {
    match value {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Zaqar's `get_checked_field(document, name, int, default)`.
pub fn checked_int(
    document: &Map<String, Value>,
    name: &str,
    default: Option<i64>,
) -> Result<i64, ZaqarError> {
    match document.get(name) {
        None => default.ok_or_else(|| invalid_body(format!("Missing \"{name}\" field."))),
        Some(value) => as_python_int(value).ok_or_else(|| {
            invalid_body(format!("The value of the \"{name}\" field must be a int."))
        }),
    }
}

/// The object of a document that must be one (Zaqar's `sanitize`).
pub fn expect_object(value: Value) -> Result<Map<String, Value>, ZaqarError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(invalid_body_type()),
    }
}

/// Zaqar's `HTTPDocumentTypeNotSupported`.
pub fn invalid_body_type() -> ZaqarError {
    invalid_body("Document type not supported.")
}

/// A list of strings as Python prints it: `['a', 'b']`.
pub fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("'{}'", item.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(text: &str) -> Result<Value, ZaqarError> {
        parse_document(&Payload::Read(Bytes::copy_from_slice(text.as_bytes())))
    }

    #[test]
    fn documents_follow_zaqar_parsing_rules() {
        assert!(parse(r#"{"a": [1, -2, 3.5e10]}"#).is_ok());
        assert_eq!(parse("[]").unwrap(), Value::Array(vec![]));
        let err = parse("notjson").unwrap_err();
        assert_eq!(err.title, "Invalid request body");
        assert_eq!(err.description, "Request body could not be parsed.");
        assert_eq!(
            parse("null").unwrap_err().description,
            "Request body could not be parsed."
        );
        assert_eq!(
            parse("12").unwrap_err().description,
            "Request body could not be parsed."
        );
        assert_eq!(
            parse("").unwrap_err().description,
            "Request body could not be parsed."
        );
        assert_eq!(
            parse_document(&Payload::Absent).unwrap_err().description,
            "Request body can not be empty"
        );
        assert_eq!(
            parse_document(&Payload::TooLarge(10)).unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
    }

    #[test]
    fn integers_must_fit_in_64_bits() {
        assert!(parse(r#"{"x": 9223372036854775807}"#).is_ok());
        assert!(parse(r#"{"x": -9223372036854775808}"#).is_ok());
        assert!(parse(r#"{"x": 1e300, "s": "123456789012345678901234567890"}"#).is_ok());
        let err = parse(r#"{"x": 9223372036854775808}"#).unwrap_err();
        assert_eq!(err.description, "JSON contains integer that is too large.");
        assert!(parse(r#"["\"", 123456789012345678901234567890]"#).is_err());
    }

    #[test]
    fn python_semantics() {
        assert!(!is_truthy(&serde_json::json!(0)));
        assert!(!is_truthy(&serde_json::json!("")));
        assert!(is_truthy(&serde_json::json!([0])));
        assert_eq!(as_python_int(&serde_json::json!(true)), Some(1));
        assert_eq!(as_python_int(&serde_json::json!(60.5)), None);
        let doc = expect_object(serde_json::json!({"ttl": "x"})).unwrap();
        let err = checked_int(&doc, "ttl", Some(3)).unwrap_err();
        assert_eq!(
            err.description,
            "The value of the \"ttl\" field must be a int."
        );
        assert_eq!(checked_int(&doc, "grace", Some(3)).unwrap(), 3);
        assert_eq!(
            checked_int(&doc, "body", None).unwrap_err().description,
            "Missing \"body\" field."
        );
        assert_eq!(python_list(&["a".into(), "b".into()]), "['a', 'b']");
    }
}
