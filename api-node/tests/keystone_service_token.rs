//! The Keystone validator against a fake Keystone (warp) that counts calls: the
//! service token is obtained once and reused, renewed when Keystone refuses it,
//! answers (valid or not) are cached until their ttl ends, and bogus tokens never
//! push a valid one out of its cache.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Reply};
use zaqar_api_node::keystone::{Keystone, KeystoneConfig};
use zaqar_proto::ErrorCode;

#[derive(Default)]
struct FakeKeystone {
    logins: AtomicUsize,
    validations: AtomicUsize,
    service_tokens: Mutex<HashSet<String>>,
}

impl FakeKeystone {
    fn login(&self) -> warp::reply::Response {
        let n = self.logins.fetch_add(1, Ordering::SeqCst);
        let token = format!("svc-{n}");
        self.service_tokens.lock().unwrap().insert(token.clone());
        let body = json!({"token": {"expires_at": "2999-01-01T00:00:00.000000Z"}});
        let reply = warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED);
        warp::reply::with_header(reply, "X-Subject-Token", token).into_response()
    }

    fn validate(&self, headers: &HeaderMap) -> warp::reply::Response {
        self.validations.fetch_add(1, Ordering::SeqCst);
        let header = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let service = header("x-auth-token");
        if !self.service_tokens.lock().unwrap().contains(service) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if !header("x-subject-token").starts_with("user-good") {
            return StatusCode::NOT_FOUND.into_response();
        }
        warp::reply::json(&json!({"token": {
            "expires_at": "2999-01-01T00:00:00.000000Z",
            "project": {"id": "p-1", "name": "a"},
            "roles": [{"id": "r", "name": "member"}],
        }}))
        .into_response()
    }
}

async fn serve(fake: Arc<FakeKeystone>) -> String {
    let login = {
        let fake = fake.clone();
        warp::post().map(move || fake.login())
    };
    let validate = warp::get()
        .and(warp::header::headers_cloned())
        .map(move |headers: HeaderMap| fake.validate(&headers));
    let routes = warp::path!("v3" / "auth" / "tokens").and(login.or(validate).unify());
    let (addr, server) = warp::serve(routes).bind_ephemeral(([127, 0, 0, 1], 0));
    tokio::spawn(server);
    format!("http://{addr}")
}

fn validator(url: String, cache_ttl_ms: u64) -> Keystone {
    let config = KeystoneConfig {
        auth_url: url,
        username: "zaqar".into(),
        password: "p".into(),
        project_name: "service".into(),
        cache_ttl_ms,
        ..KeystoneConfig::default()
    };
    let timeout = Duration::from_secs(2);
    Keystone::new(&config, timeout, timeout).unwrap()
}

#[tokio::test]
async fn the_service_token_is_reused_and_renewed_when_refused() {
    let fake = Arc::new(FakeKeystone::default());
    let keystone = validator(serve(fake.clone()).await, 60_000);
    let info = keystone.validate("user-good-1").await.unwrap();
    assert_eq!(info.project.as_deref(), Some("p-1"));
    assert_eq!(info.roles, ["member"]);
    keystone.validate("user-good-2").await.unwrap();
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1, "one login, reused");

    // Keystone forgets the service token: the next validation logs in again.
    fake.service_tokens.lock().unwrap().clear();
    keystone.validate("user-good-3").await.unwrap();
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2);
    let err = keystone.validate("user-bad").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn answers_are_cached_until_the_ttl_ends() {
    let fake = Arc::new(FakeKeystone::default());
    let keystone = validator(serve(fake.clone()).await, 300);
    for _ in 0..3 {
        keystone.validate("user-good").await.unwrap();
        keystone.validate("user-bad").await.unwrap_err();
    }
    assert_eq!(fake.validations.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    keystone.validate("user-good").await.unwrap();
    keystone.validate("user-bad").await.unwrap_err();
    assert_eq!(fake.validations.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_flood_of_bogus_tokens_never_pushes_out_a_valid_one() {
    let fake = Arc::new(FakeKeystone::default());
    let url = serve(fake.clone()).await;
    let config = KeystoneConfig {
        auth_url: url,
        username: "zaqar".into(),
        password: "p".into(),
        project_name: "service".into(),
        cache_size: 10,
        invalid_cache_size: 10,
        ..KeystoneConfig::default()
    };
    let timeout = Duration::from_secs(2);
    let keystone = Keystone::new(&config, timeout, timeout).unwrap();
    keystone.validate("user-good").await.unwrap();
    // 100 times more bogus tokens than either cache holds, the valid one not used meanwhile.
    for n in 0..1_000 {
        let err = keystone.validate(&format!("bogus-{n}")).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }
    keystone.validate("user-good").await.unwrap();
    // One validation of the valid token (still cached), one per bogus token.
    assert_eq!(fake.validations.load(Ordering::SeqCst), 1 + 1_000);
    // A refused token is refused again from the cache while it is in it.
    keystone.validate("bogus-999").await.unwrap_err();
    assert_eq!(fake.validations.load(Ordering::SeqCst), 1 + 1_000);
}
