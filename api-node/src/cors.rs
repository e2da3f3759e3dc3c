//! Cross-Origin Resource Sharing, as Zaqar 23 offers it through oslo.middleware's CORS
//! middleware: off until `[cors] allowed_origin` names origins; then answers from those
//! origins carry `Access-Control-Allow-Origin` (and credentials and exposed headers),
//! and preflight `OPTIONS` requests are answered 200 with the allowed method and
//! headers when the origin, the method and every requested header are permitted.
//! The defaults are Zaqar's (`zaqar/transport/middleware/cors.py`).

use serde::Deserialize;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

/// `[cors]` of the api-node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins (`https://host[:port]`, no trailing slash) whose pages may call the API;
    /// `*` for any. Empty: CORS is off.
    pub allowed_origin: Vec<String>,
    /// Whether the browser may send credentials (cookies, authorization).
    pub allow_credentials: bool,
    /// Answer headers the page's script may read.
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds (0: not said).
    pub max_age: u32,
    /// Methods the page's requests may use.
    pub allow_methods: Vec<String>,
    /// Request headers the page's requests may set, besides the simple ones.
    pub allow_headers: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        CorsConfig {
            allowed_origin: Vec::new(),
            allow_credentials: true,
            expose_headers: list(&[
                "X-Auth-Token",
                "X-Subject-Token",
                "X-Service-Token",
                "X-OpenStack-Request-ID",
            ]),
            max_age: 3600,
            allow_methods: list(&["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]),
            allow_headers: list(&[
                "X-Auth-Token",
                "X-Identity-Status",
                "X-Roles",
                "X-Service-Catalog",
                "X-User-Id",
                "X-Tenant-Id",
                "X-OpenStack-Request-ID",
                "X-Trace-Info",
                "X-Trace-HMAC",
                "Client-id",
            ]),
        }
    }
}

/// Headers a page may always send (CORS's simple headers, as oslo lists them).
const SIMPLE_HEADERS: [&str; 6] = [
    "Cache-Control",
    "Content-Language",
    "Content-Type",
    "Expires",
    "Last-Modified",
    "Pragma",
];

impl CorsConfig {
    /// Whether CORS is on.
    pub fn enabled(&self) -> bool {
        !self.allowed_origin.is_empty()
    }

    /// The origin to answer for `origin`: itself when listed, `*` when any is, else none.
    fn answer_origin<'a>(&'a self, origin: &'a str) -> Option<&'a str> {
        if self.allowed_origin.iter().any(|allowed| allowed == origin) {
            Some(origin)
        } else if self.allowed_origin.iter().any(|allowed| allowed == "*") {
            Some("*")
        } else {
            None
        }
    }

    /// Decorates `response`, the answer to a request of `method` with `headers`.
    pub fn apply(&self, method: &Method, headers: &HeaderMap, mut response: Response) -> Response {
        if !self.enabled()
            || response
                .headers()
                .contains_key("access-control-allow-origin")
        {
            return response;
        }
        let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
            return response;
        };
        if method == Method::OPTIONS {
            // A preflight is answered 200 whatever the route said (oslo does the same).
            if !response.status().is_success() {
                response = Response::new(Default::default());
                *response.status_mut() = StatusCode::OK;
            }
            self.preflight(origin, headers, &mut response);
        } else if let Some(allowed) = self.answer_origin(origin) {
            let answer = response.headers_mut();
            append_vary(answer);
            set(answer, "access-control-allow-origin", allowed);
            if self.allow_credentials {
                set(answer, "access-control-allow-credentials", "true");
            }
            if !self.expose_headers.is_empty() {
                set(
                    answer,
                    "access-control-expose-headers",
                    &self.expose_headers.join(","),
                );
            }
        }
        response
    }

    fn preflight(&self, origin: &str, headers: &HeaderMap, response: &mut Response) {
        let Some(allowed) = self.answer_origin(origin) else {
            return;
        };
        let Some(method) = headers
            .get("access-control-request-method")
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        if !self.allow_methods.iter().any(|m| m == method) {
            return;
        }
        let requested: Vec<&str> = headers
            .get_all("access-control-request-headers")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let permitted = |header: &str| {
            self.allow_headers
                .iter()
                .map(String::as_str)
                .chain(SIMPLE_HEADERS)
                .any(|allowed| allowed.eq_ignore_ascii_case(header))
        };
        if !requested.iter().all(|header| permitted(header)) {
            return;
        }
        let answer = response.headers_mut();
        set(answer, "vary", "Origin");
        set(answer, "access-control-allow-origin", allowed);
        if self.allow_credentials {
            set(answer, "access-control-allow-credentials", "true");
        }
        if self.max_age > 0 {
            set(answer, "access-control-max-age", &self.max_age.to_string());
        }
        set(answer, "access-control-allow-methods", method);
        if !requested.is_empty() {
            set(answer, "access-control-allow-headers", &requested.join(","));
        }
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn append_vary(headers: &mut HeaderMap) {
    let vary = match headers.get("vary").and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing},Origin"),
        None => "Origin".to_string(),
    };
    set(headers, "vary", &vary);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            allowed_origin: origins.iter().map(|o| o.to_string()).collect(),
            ..CorsConfig::default()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn answer(status: StatusCode) -> Response {
        let mut response = Response::new(Default::default());
        *response.status_mut() = status;
        response
    }

    #[test]
    fn an_allowed_origin_gets_the_headers_and_another_none() {
        let cors = on(&["https://app.example.com"]);
        let from = |origin| headers(&[("origin", origin)]);
        let ok = cors.apply(
            &Method::GET,
            &from("https://app.example.com"),
            answer(StatusCode::OK),
        );
        let h = ok.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(h["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("X-OpenStack-Request-ID"));
        assert_eq!(h["vary"], "Origin");
        let other = cors.apply(
            &Method::GET,
            &from("https://evil.example"),
            answer(StatusCode::OK),
        );
        assert!(!other.headers().contains_key("access-control-allow-origin"));
        let off = CorsConfig::default();
        let plain = off.apply(
            &Method::GET,
            &from("https://app.example.com"),
            answer(StatusCode::OK),
        );
        assert!(!plain.headers().contains_key("access-control-allow-origin"));
    }

    #[test]
    fn a_preflight_names_what_was_asked_when_all_is_permitted() {
        let mut cors = on(&["*"]);
        cors.allow_headers.push("X-Project-ID".into());
        let asked = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, x-project-id, client-id",
            ),
        ]);
        let ok = cors.apply(&Method::OPTIONS, &asked, answer(StatusCode::NO_CONTENT));
        let h = ok.headers();
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["access-control-allow-methods"], "POST");
        assert_eq!(
            h["access-control-allow-headers"],
            "content-type,x-project-id,client-id"
        );
        assert_eq!(h["access-control-max-age"], "3600");
        let refused_header = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-secret"),
        ]);
        let refused = cors.apply(
            &Method::OPTIONS,
            &refused_header,
            answer(StatusCode::NOT_FOUND),
        );
        assert_eq!(refused.status(), StatusCode::OK);
        assert!(!refused
            .headers()
            .contains_key("access-control-allow-origin"));
        let refused_method = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "TRACE"),
        ]);
        let refused = cors.apply(&Method::OPTIONS, &refused_method, answer(StatusCode::OK));
        assert!(!refused
            .headers()
            .contains_key("access-control-allow-origin"));
    }
}
