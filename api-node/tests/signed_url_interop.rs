//! Pre-signed URLs agree with the reference Zaqar 23: replays
//! tests/compat/signed_urls.json (recorded by tests/compat/signed_urls.py from
//! real Zaqar with the same secret key). zaqar-rs must sign the same inputs
//! into the same URLs, accept the URLs Zaqar signed, and refuse the bad ones
//! (forged, expired, wrong method, path or project) with Zaqar's answer.

mod support;

use serde_json::Value;
use support::Harness;

const RECORDED: &str = include_str!("../../tests/compat/signed_urls.json");

fn recorded() -> Value {
    serde_json::from_str(RECORDED).expect("signed_urls.json is JSON")
}

async fn harness(fixture: &Value) -> Harness {
    let key = fixture["secret_key"].as_str().unwrap().to_string();
    Harness::start_with(|config| config.signed_url_secret_key = Some(key)).await
}

fn list(value: &Value) -> String {
    let items: Vec<&str> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item.as_str().unwrap())
        .collect();
    items.join(",")
}

/// The body Zaqar's recording sent with a signed request (see `use` in signed_urls.py).
fn body_of(method: &str, path: &str) -> Option<&'static str> {
    match method {
        "POST" if path.ends_with("/messages") => {
            Some(r#"{"messages": [{"body": "signed", "ttl": 300}]}"#)
        }
        "POST" if path.ends_with("/claims") => Some(r#"{"ttl": 60, "grace": 60}"#),
        _ => None,
    }
}

#[tokio::test]
async fn zaqar_rs_signs_what_zaqar_signs() {
    let fixture = recorded();
    let h = harness(&fixture).await;
    let shares = fixture["shares"].as_array().unwrap();
    assert!(!shares.is_empty());
    for share in shares {
        let project = share["project"].as_str().unwrap();
        let path = format!("/v2/queues/{}/share", share["queue"].as_str().unwrap());
        let request = share["request"].to_string();
        let answer = h
            .call("POST", &path, Some(&request), &[("X-Project-ID", project)])
            .await;
        assert_eq!(answer.status, 200, "{request}: {}", answer.body);
        assert_eq!(answer.body, share["reply"], "{request}");
    }
}

#[tokio::test]
async fn urls_signed_by_zaqar_are_accepted() {
    let fixture = recorded();
    let h = harness(&fixture).await;
    let mut uses = 0;
    for share in fixture["shares"].as_array().unwrap() {
        let reply = &share["reply"];
        let (methods, paths) = (list(&reply["methods"]), list(&reply["paths"]));
        let headers = [
            ("URL-Signature", reply["signature"].as_str().unwrap()),
            ("URL-Expires", reply["expires"].as_str().unwrap()),
            ("URL-Methods", methods.as_str()),
            ("URL-Paths", paths.as_str()),
            ("X-Project-ID", reply["project"].as_str().unwrap()),
        ];
        for used in share["uses"].as_array().unwrap() {
            let method = used["method"].as_str().unwrap();
            let path = used["path"].as_str().unwrap();
            let answer = h.call(method, path, body_of(method, path), &headers).await;
            // The same answer as Zaqar's: the signature let the request through
            // to the route, whose own answer (405 for GET claims, ...) follows.
            assert_eq!(
                answer.status.as_u16(),
                used["status"].as_u64().unwrap() as u16,
                "{method} {path}: {}",
                answer.body
            );
            uses += 1;
        }
    }
    assert!(uses >= 10, "{uses} signed requests replayed");
}

#[tokio::test]
async fn bad_signatures_get_zaqars_answer() {
    let fixture = recorded();
    let h = harness(&fixture).await;
    let rejections = fixture["rejections"].as_array().unwrap();
    let labels: Vec<&str> = rejections
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    for label in [
        "forged_signature",
        "expired",
        "wrong_method",
        "wrong_path",
        "wrong_project",
    ] {
        assert!(labels.contains(&label), "no {label} case recorded");
    }
    for rejection in rejections {
        let headers: Vec<(&str, &str)> = rejection["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str().unwrap()))
            .collect();
        let method = rejection["method"].as_str().unwrap();
        let path = rejection["path"].as_str().unwrap();
        let answer = h.call(method, path, None, &headers).await;
        let label = &rejection["label"];
        assert_eq!(
            answer.status.as_u16(),
            rejection["status"].as_u64().unwrap() as u16,
            "{label}: {}",
            answer.body
        );
        assert_eq!(answer.body, rejection["body"], "{label}");
    }
}
