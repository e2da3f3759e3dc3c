//! Zaqar's pre-signed URLs: an HMAC-SHA256, with the server's secret key, over
//! paths, methods, project and expiry. A request carrying a valid signature
//! (`URL-Signature`, `URL-Expires`, `URL-Methods`, `URL-Paths`) may use those
//! paths with those methods until the expiry.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use zaqar_proto::timefmt::{format_utc, parse_iso8601};

/// A signed URL: what it grants and its signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedUrl {
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub project: String,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    pub expires: String,
    pub signature: String,
}

/// The signature headers of a request.
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    pub signature: &'a str,
    pub expires: Option<&'a str>,
    pub methods: Option<&'a str>,
    pub paths: Option<&'a str>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Zaqar's `create_signed_url`: `expires` (ISO 8601, default in a day) must be
/// in the future. Errors are Zaqar's descriptions.
pub fn sign(
    key: &str,
    paths: &[String],
    methods: &[String],
    project: &str,
    expires: Option<&str>,
) -> Result<SignedUrl, String> {
    if paths.is_empty() {
        return Err("`paths` must be a non-empty list".to_string());
    }
    let expires = match expires {
        None => now() + 86_400,
        Some(text) => {
            if let Ok(number) = text.trim().parse::<i64>() {
                if number != 0 {
                    return Err(format!(
                        "`expires` should be date format, for example 2016-01-01T00:00:00, not integer value: {number}"
                    ));
                }
            }
            parse_iso8601(text).ok_or_else(|| format!("Unable to parse date string '{text}'"))?
        }
    };
    if expires <= now() {
        return Err("`expires` is lower than the current time".to_string());
    }
    let mut paths = paths.to_vec();
    paths.sort();
    let mut methods = if methods.is_empty() {
        vec!["GET".to_string()]
    } else {
        methods.to_vec()
    };
    methods.sort();
    let expires = format_utc(expires);
    // Zaqar joins the fields with a literal backslash-n (a raw string), not a newline.
    let body = format!(
        "{}\\n{}\\n{project}\\n{expires}",
        paths.join(","),
        methods.join(",")
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).map_err(|err| err.to_string())?;
    mac.update(body.as_bytes());
    let signature = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(SignedUrl {
        paths,
        methods,
        project: project.to_string(),
        expires,
        signature,
    })
}

/// Zaqar's `verify_pre_signed_url`: whether a signed request may use `method`
/// on `path` for `project`.
pub fn verify(
    key: Option<&str>,
    headers: &SignatureHeaders<'_>,
    method: &str,
    path: &str,
    project: &str,
) -> bool {
    let split = |list: Option<&str>| -> Vec<String> {
        list.unwrap_or("").split(',').map(str::to_string).collect()
    };
    let (methods, paths) = (split(headers.methods), split(headers.paths));
    if !methods.iter().any(|m| m == method) {
        return false;
    }
    if !paths
        .iter()
        .any(|p| !p.is_empty() && path.contains(p.as_str()))
    {
        return false;
    }
    let Some(key) = key else { return false };
    match sign(key, &paths, &methods, project, headers.expires) {
        Ok(expected) => zaqar_proto::constant_time_eq(
            expected.signature.as_bytes(),
            headers.signature.as_bytes(),
        ),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "zaqar-reference-secret-key";

    #[test]
    fn signatures_match_the_reference() {
        // Recorded from Zaqar 23 with this secret key.
        let url = sign(
            KEY,
            &["/v2/queues/sq/messages".into()],
            &[],
            "probe17204",
            Some("2030-01-01T00:00:00"),
        )
        .unwrap();
        assert_eq!(
            url.signature,
            "1f6a75cff48f2a37159681242aa8f9e93723b3f485caa0fe4c2db82694b769cc"
        );
        assert_eq!(url.methods, ["GET"]);
        let url = sign(
            KEY,
            &[
                "/v2/queues/sq/messages".into(),
                "/v2/queues/sq/claims".into(),
            ],
            &["POST".into(), "GET".into()],
            "probe17204",
            Some("2030-01-01T00:00:00"),
        )
        .unwrap();
        assert_eq!(
            url.paths,
            ["/v2/queues/sq/claims", "/v2/queues/sq/messages"]
        );
        assert_eq!(
            url.signature,
            "5c66a780e128c3e3bde00de5b3e02c2c4295b7e4ab437a412d64dd8e90d396b5"
        );
    }

    #[test]
    fn bad_expiries_are_refused() {
        let paths = ["/p".to_string()];
        assert!(sign(KEY, &paths, &[], "p", Some("123"))
            .unwrap_err()
            .contains("not integer value: 123"));
        assert_eq!(
            sign(KEY, &paths, &[], "p", Some("2001-01-01T00:00:00")).unwrap_err(),
            "`expires` is lower than the current time"
        );
        assert_eq!(
            sign(KEY, &paths, &[], "p", Some("garbage")).unwrap_err(),
            "Unable to parse date string 'garbage'"
        );
    }

    #[test]
    fn requests_are_verified() {
        let headers = SignatureHeaders {
            signature: "1f6a75cff48f2a37159681242aa8f9e93723b3f485caa0fe4c2db82694b769cc",
            expires: Some("2030-01-01T00:00:00"),
            methods: Some("GET"),
            paths: Some("/v2/queues/sq/messages"),
        };
        assert!(verify(
            Some(KEY),
            &headers,
            "GET",
            "/v2/queues/sq/messages",
            "probe17204"
        ));
        assert!(!verify(
            Some(KEY),
            &headers,
            "POST",
            "/v2/queues/sq/messages",
            "probe17204"
        ));
        assert!(!verify(
            Some(KEY),
            &headers,
            "GET",
            "/v2/queues/sq/stats",
            "probe17204"
        ));
        assert!(!verify(
            Some(KEY),
            &headers,
            "GET",
            "/v2/queues/sq/messages",
            "other"
        ));
        assert!(!verify(
            None,
            &headers,
            "GET",
            "/v2/queues/sq/messages",
            "probe17204"
        ));
    }
}
