//! Random and malformed requests through both front doors (REST and
//! WebSocket): never a 5xx, never a dead server, and no change to a control
//! queue's state when the input is rejected.
//!
//! A seeded generator drives the cases (set `FUZZ_SEED` to replay a run);
//! every answer is checked, and each case aimed at the control queue is
//! followed by a snapshot of it: a rejected case must leave it as it was.

mod support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use support::ws::{Socket, Ws, WS_ACTIONS};
use support::{Harness, CLIENT_ID};
use tokio_tungstenite::tungstenite::Message;

const REST_CASES: usize = 2_500;
const WS_CASES: usize = 2_500;

/// The control queue: its state is compared around every case aimed at it.
const CONTROL: &str = "ctl";

/// A small xorshift generator: deterministic for a seed, no dependencies.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_2026_u64);
        println!("fuzz seed: {seed} (set FUZZ_SEED to replay)");
        Rng((seed << 1) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A string of awkward characters: controls, unicode, quotes, separators.
    fn text(&mut self, max: usize) -> String {
        const PARTS: &[&str] = &[
            "a", "Z", "0", "-", "_", ".", "/", "%", "?", "&", "=", " ", "\"", "'", "\\", "\0",
            "\n", "é", "☃", "𝄞", "%00", "%ff", "..", "{", "}", "[", "]", ",", ":",
        ];
        let len = self.below(max + 1);
        (0..len).map(|_| *self.pick(PARTS)).collect()
    }

    fn json(&mut self, depth: usize) -> Value {
        match self.below(if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.next() as i64 >> self.below(64)),
            3 => json!(f64::from(self.next() as u32) / 7.0),
            4 => json!(self.text(20)),
            5 => json!(*self.pick(&[
                "",
                "messages",
                "ttl",
                "ids",
                "a",
                "http://x.example/",
                "mailto:a@b"
            ])),
            6 => (0..self.below(4)).map(|_| self.json(depth - 1)).collect(),
            _ => {
                let keys = [
                    "messages",
                    "body",
                    "ttl",
                    "grace",
                    "delay",
                    "limit",
                    "subscriber",
                    "options",
                    "op",
                    "path",
                    "value",
                    "resource_types",
                    "paths",
                    "methods",
                    "expires",
                    "confirmed",
                    "metadata",
                    "x",
                ];
                (0..self.below(5))
                    .map(|_| (self.pick(&keys).to_string(), self.json(depth - 1)))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            }
        }
    }
}

/// The control queue's ids, and the state project P sees of it.
struct Control {
    messages: Vec<String>,
    claim: String,
    subscription: String,
}

async fn set_up_control(h: &Harness) -> Control {
    h.delete(&format!("/v2/queues/{CONTROL}")).await;
    assert_eq!(
        h.send("PUT", &format!("/v2/queues/{CONTROL}"), r#"{"m": 1}"#)
            .await
            .status,
        201
    );
    let messages = h
        .post_messages(
            CONTROL,
            json!([{"body": 1, "ttl": 3600}, {"body": 2, "ttl": 3600}, {"body": 3, "ttl": 3600}]),
        )
        .await;
    let claim = h
        .send(
            "POST",
            &format!("/v2/queues/{CONTROL}/claims?limit=1"),
            r#"{"ttl": 3000, "grace": 300}"#,
        )
        .await;
    assert_eq!(claim.status, 201, "{}", claim.body);
    let claim = claim
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let subscription = h
        .send(
            "POST",
            &format!("/v2/queues/{CONTROL}/subscriptions"),
            r#"{"subscriber": "http://ctl.example/", "ttl": 3600}"#,
        )
        .await;
    assert_eq!(subscription.status, 201, "{}", subscription.body);
    Control {
        messages,
        claim: claim.to_string(),
        subscription: subscription.body["subscription_id"]
            .as_str()
            .unwrap()
            .to_string(),
    }
}

/// What project P sees of the control queue (without ages).
async fn snapshot(h: &Harness, c: &Control) -> Value {
    let q = CONTROL;
    let metadata = h.get(&format!("/v2/queues/{q}")).await;
    let stats = h.get(&format!("/v2/queues/{q}/stats")).await;
    let messages = h
        .get(&format!(
            "/v2/queues/{q}/messages?echo=true&include_claimed=true"
        ))
        .await;
    let claim = h.get(&format!("/v2/queues/{q}/claims/{}", c.claim)).await;
    let subscriptions = h.get(&format!("/v2/queues/{q}/subscriptions")).await;
    let view = |list: &Value| -> Value {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|m| json!([m["id"], m["body"], m["ttl"], m["claim_id"]]))
                    .collect()
            })
            .unwrap_or_default()
    };
    let stats = &stats.body["messages"];
    json!({
        "metadata": [metadata.status.as_u16(), metadata.body],
        "stats": [stats["claimed"], stats["free"], stats["total"]],
        "messages": [messages.status.as_u16(), view(&messages.body["messages"])],
        "claim": [claim.status.as_u16(), claim.body["ttl"], view(&claim.body["messages"])],
        "subscriptions": [subscriptions.status.as_u16(), subscriptions.body["subscriptions"]
            .as_array()
            .map(|l| l.iter().map(|s| json!([s["id"], s["subscriber"], s["ttl"], s["options"]])).collect::<Vec<_>>())],
    })
}

/// Whether the control state is still whole enough to be worth comparing.
fn intact(state: &Value) -> bool {
    state["metadata"][0] == 200
        && state["claim"][0] == 200
        && state["messages"][1]
            .as_array()
            .is_some_and(|l| !l.is_empty())
        && state["subscriptions"][1]
            .as_array()
            .is_some_and(|l| !l.is_empty())
}

const PATHS: &[&str] = &[
    "/",
    "/v2",
    "/v2/",
    "/v2/ping",
    "/v2/health",
    "/v2/queues",
    "/v2/queues/{q}",
    "/v2/queues/{q}/stats",
    "/v2/queues/{q}/purge",
    "/v2/queues/{q}/share",
    "/v2/queues/{q}/messages",
    "/v2/queues/{q}/messages/{m}",
    "/v2/queues/{q}/claims",
    "/v2/queues/{q}/claims/{c}",
    "/v2/queues/{q}/subscriptions",
    "/v2/queues/{q}/subscriptions/{s}",
    "/v2/queues/{q}/subscriptions/{s}/confirm",
    "/v2/pools",
    "/v2/pools/{x}",
    "/v2/flavors",
    "/v2/flavors/{x}",
    "/v2/queues/{q}/messages/{m}/{x}",
    "/v1.1/queues",
    "/v2//queues",
];

const QUERIES: &[&str] = &[
    "",
    "",
    "?limit=abc",
    "?limit=-1",
    "?limit=0",
    "?limit=99999999999999999999999",
    "?marker=%FF%FE",
    "?ids=",
    "?ids=,,,",
    "?ids={m},{m}",
    "?ids={m}&claim_ids={c}",
    "?claim_id=",
    "?claim_id={c}",
    "?echo=maybe&include_claimed=2",
    "?detailed=yes",
    "?pop=0",
    "?pop=-3",
    "?pop=abc",
    "?pop=1&ids={m}",
    "?%%%=%%",
    "?a=b&a=c&&&=",
    "?limit=1&limit=2",
    "?with_count=true",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json",
    "application/openstack-messaging-v2.0-json-patch",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin1",
    "",
    "*/*",
];

/// One random REST request; `aimed` says whether it targets the control queue
/// of project P.
struct RestCase {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    aimed: bool,
}

fn segment(rng: &mut Rng, real: &str) -> String {
    match rng.below(8) {
        0..=2 => real.to_string(),
        3 => uuid::Uuid::new_v4().to_string(),
        4 => "x".repeat(rng.below(400)),
        5 => String::new(),
        _ => {
            let raw = rng.text(24);
            percent_encode(raw.as_bytes())
        }
    }
}

fn percent_encode(raw: &[u8]) -> String {
    raw.iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn rest_case(rng: &mut Rng, h: &Harness, c: &Control) -> RestCase {
    let method = rng
        .pick(&[
            "GET", "GET", "POST", "POST", "PUT", "PATCH", "PATCH", "DELETE", "DELETE", "HEAD",
            "OPTIONS", "TRACE", "FOO",
        ])
        .to_string();
    let own_project = rng.chance(50);
    // A case on P's control queue always carries a fault, so that it should
    // be rejected; one that is accepted anyway re-baselines the snapshot.
    let aimed = own_project && rng.chance(60);
    let queue = if aimed {
        CONTROL.to_string()
    } else {
        match rng.below(4) {
            0 => format!("fq-{}", rng.below(20)),
            1 => "x".repeat(rng.below(100) + 60),
            2 => percent_encode(rng.text(10).as_bytes()),
            _ => format!("other-{}", rng.below(5)),
        }
    };
    let queue = if queue == CONTROL && !aimed {
        "not-ctl".into()
    } else {
        queue
    };
    let m = c.messages[rng.below(c.messages.len())].clone();
    let fill = |rng: &mut Rng, template: &str| {
        template
            .replace("{q}", &queue)
            .replace("{m}", &segment(rng, &m))
            .replace("{c}", &segment(rng, &c.claim))
            .replace("{s}", &segment(rng, &c.subscription))
            .replace("{x}", &segment(rng, "pool-1"))
    };
    let path = rng.pick(PATHS).to_string();
    let path = fill(rng, &path);
    let query = rng.pick(QUERIES).to_string();
    let query = fill(rng, &query);
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let project: Vec<u8> = if own_project {
        h.project.clone().into_bytes()
    } else {
        match rng.below(6) {
            0 => Vec::new(),
            1 => vec![b'p'; rng.below(600)],
            2 => rng.bytes(40),
            3 => b"project-\xff\xfe".to_vec(),
            _ => format!("fuzz-{}", rng.below(10)).into_bytes(),
        }
    };
    let client: Vec<u8> = match rng.below(8) {
        0 => Vec::new(),
        1 => b"not-a-uuid".to_vec(),
        2 => rng.bytes(40),
        3 => vec![b'a'; rng.below(2000)],
        4 => b"3381af92-2b9e-11e3-b191-71861300734".to_vec(),
        _ => CLIENT_ID.as_bytes().to_vec(),
    };
    let mut fault = false;
    if !rng.chance(10) || !aimed {
        headers.push(("X-Project-ID".into(), project));
    } else {
        fault = true;
    }
    if rng.chance(90) {
        fault |= client != CLIENT_ID.as_bytes();
        headers.push(("Client-ID".into(), client));
    } else {
        fault = true;
    }
    if rng.chance(20) {
        headers.push((
            "X-Roles".into(),
            rng.pick(&["", "member", "reader,,", "\u{e9}"])
                .as_bytes()
                .to_vec(),
        ));
    }
    if rng.chance(15) {
        headers.push((
            "Accept".into(),
            rng.pick(&["text/html", "*/*", "application/json;q=0", "\u{1}"])
                .as_bytes()
                .to_vec(),
        ));
    }
    if rng.chance(10) {
        headers.push(("URL-Signature".into(), rng.bytes(64)));
        headers.push(("URL-Expires".into(), rng.text(30).into_bytes()));
    }
    let body = match rng.below(10) {
        0 => None,
        1 => Some(rng.bytes(200)),
        2 => Some(vec![b'{'; rng.below(5000)]),
        3 => Some(format!("{{\"messages\": [{}]}}", "{\"body\": 1},".repeat(300)).into_bytes()),
        4 if !aimed => Some(vec![b' '; 300_000]),
        4 => Some(b"[".to_vec()),
        5 => Some(json!({"messages": [rng.json(2)]}).to_string().into_bytes()),
        _ => Some(rng.json(3).to_string().into_bytes()),
    };
    if body.is_some() {
        headers.push((
            "Content-Type".into(),
            rng.pick(CONTENT_TYPES).as_bytes().to_vec(),
        ));
    }
    if aimed && !fault {
        // No header fault: break the request itself instead.
        match rng.below(3) {
            0 => headers.retain(|(n, _)| n != "Client-ID"),
            1 => {
                headers.retain(|(n, _)| n != "Client-ID");
                headers.push(("Client-ID".into(), b"bad".to_vec()));
            }
            _ => headers.retain(|(n, _)| n != "X-Project-ID"),
        }
    }
    RestCase {
        method,
        path: format!("{path}{query}"),
        headers,
        body,
        aimed,
    }
}

/// Sends a case; `None` when the client itself refuses it (an invalid URL).
///
/// A case that gets no answer on a pooled connection is sent once more on a new
/// one: a kept-alive connection can be closed by the server just as the client
/// reuses it (the client sees that as a failed send); a server that does not
/// answer a case fails it twice.
async fn send(http: &reqwest::Client, h: &Harness, case: &RestCase) -> Option<(u16, String)> {
    let first = match request(http, h, case)?.send().await {
        Ok(response) => return Some(answer(response).await),
        Err(err) => err,
    };
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = request(&fresh, h, case)?.send().await.unwrap_or_else(|err| {
        panic!(
            "no answer to {} {} headers {:?} body of {:?} bytes: {first:?}, then on a new connection: {err:?}",
            case.method,
            case.path,
            case.headers,
            case.body.as_ref().map(Vec::len)
        )
    });
    eprintln!(
        "{} {}: answered on a new connection after {first:?}",
        case.method, case.path
    );
    Some(answer(response).await)
}

/// The request of a case; `None` when the client refuses it (an invalid URL).
fn request(
    http: &reqwest::Client,
    h: &Harness,
    case: &RestCase,
) -> Option<reqwest::RequestBuilder> {
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).ok()?;
    let url = reqwest::Url::parse(&format!("{}{}", h.base, case.path)).ok()?;
    let mut request = http.request(method, url);
    for (name, value) in &case.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            request = request.header(name, value);
        }
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    Some(request)
}

/// Zaqar's error body: `{"title", "description"}` (Falcon's own 404 and 405
/// carry only a title, as Zaqar's).
fn has_zaqar_error_body(status: u16, body: &str) -> bool {
    let titled_only = status == 404 || status == 405;
    matches!(serde_json::from_str(body), Ok(Value::Object(map))
        if map.get("title").is_some_and(Value::is_string)
            && (titled_only || map.get("description").is_some_and(Value::is_string)))
}

async fn answer(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    (status, body)
}

/// Checks the control queue after a case aimed at it; a rejected case must
/// have left it unchanged, an accepted one sets a new baseline.
async fn check_control(
    h: &Harness,
    control: &mut Control,
    baseline: &mut Value,
    accepted: bool,
    what: &str,
) {
    let now = snapshot(h, control).await;
    if accepted {
        *baseline = now;
    } else {
        assert_eq!(
            &now, baseline,
            "rejected input changed the control queue: {what}"
        );
    }
    if !intact(baseline) {
        *control = set_up_control(h).await;
        *baseline = snapshot(h, control).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_rest_requests_never_fail_the_server_or_change_rejected_state() {
    let h = Harness::start().await;
    let http = reqwest::Client::new();
    let mut rng = Rng::seeded();
    let mut control = set_up_control(&h).await;
    let mut baseline = snapshot(&h, &control).await;
    assert!(intact(&baseline), "{baseline}");
    let started = Instant::now();
    let (mut sent, mut rejected, mut aimed, mut accepted_aimed) = (0, 0, 0, 0);
    for _ in 0..REST_CASES {
        let case = rest_case(&mut rng, &h, &control);
        let Some((status, body)) = send(&http, &h, &case).await else {
            continue;
        };
        sent += 1;
        let what = format!(
            "{} {} headers {:?} body {:?} -> {status} {body}",
            case.method,
            case.path,
            case.headers
                .iter()
                .map(|(n, v)| (n, String::from_utf8_lossy(v)))
                .collect::<Vec<_>>(),
            case.body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).to_string())
        );
        assert!(status < 500, "5xx: {what}");
        assert!(
            status < 400 || case.method == "HEAD" || has_zaqar_error_body(status, &body),
            "an error without Zaqar's body: {what}"
        );
        let accepted = (200..300).contains(&status);
        if !accepted {
            rejected += 1;
        }
        if case.aimed {
            aimed += 1;
            accepted_aimed += usize::from(accepted);
            check_control(&h, &mut control, &mut baseline, accepted, &what).await;
        }
    }
    assert_eq!(h.get("/v2/ping").await.status, 204);
    assert_eq!(snapshot(&h, &control).await, baseline);
    println!(
        "rest fuzz: {sent} cases sent ({rejected} rejected; {aimed} on the control queue, \
         {accepted_aimed} of them accepted) in {:?}",
        started.elapsed()
    );
    assert!(sent > REST_CASES / 2, "too few cases reached the server");
    assert!(aimed > 100 && rejected > sent / 2);
}

/// One random WebSocket frame; `aimed` as for REST.
fn ws_frame(rng: &mut Rng, h: &Harness, c: &Control) -> (Message, bool) {
    match rng.below(12) {
        // Over the frame size cap (1 MiB by default): the server closes.
        0 if rng.chance(2) => return (Message::text("x".repeat((1 << 20) + 1)), false),
        0 => return (Message::text(rng.text(60)), false),
        1 => return (Message::binary(rng.bytes(100)), false),
        2 => {
            let v = rng.json(3);
            return (Message::text(v.to_string()), false);
        }
        _ => {}
    }
    let own = rng.chance(50);
    let aimed = own && rng.chance(60);
    let action = match rng.below(WS_ACTIONS.len() + 2) {
        i if i < WS_ACTIONS.len() => WS_ACTIONS[i],
        i if i == WS_ACTIONS.len() => "nope",
        _ => "",
    }
    .to_string();
    let mut headers = serde_json::Map::new();
    let project = if own {
        json!(h.project)
    } else {
        match rng.below(5) {
            0 => json!(rng.text(30)),
            1 => json!("p".repeat(rng.below(600))),
            2 => rng.json(1),
            _ => json!(format!("fuzz-{}", rng.below(10))),
        }
    };
    let client = match rng.below(6) {
        0 => json!("not-a-uuid"),
        1 => rng.json(1),
        2 => json!(rng.text(40)),
        _ => json!(CLIENT_ID),
    };
    let bad_client = client != json!(CLIENT_ID);
    let mut fault = bad_client;
    if !aimed || rng.chance(80) {
        headers.insert("X-Project-ID".into(), project);
    } else {
        fault = true;
    }
    if rng.chance(85) {
        headers.insert("Client-ID".into(), client);
    } else {
        fault = true;
    }
    if aimed && !fault {
        headers.insert("Client-ID".into(), json!("bad"));
    }
    let queue = if aimed {
        json!(CONTROL)
    } else {
        match rng.below(4) {
            0 => json!(format!("fq-{}", rng.below(20))),
            1 => rng.json(1),
            2 => json!("x".repeat(rng.below(100) + 60)),
            _ => json!(rng.text(10)),
        }
    };
    let queue = if queue == json!(CONTROL) && !aimed {
        json!("not-ctl")
    } else {
        queue
    };
    let mut body = match rng.json(2) {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    if rng.chance(90) {
        body.insert("queue_name".into(), queue);
    }
    let id = |rng: &mut Rng, real: &str| match rng.below(4) {
        0 => json!(real),
        1 => rng.json(1),
        2 => json!(uuid::Uuid::new_v4().to_string()),
        _ => json!(rng.text(30)),
    };
    for (key, real) in [
        ("message_id", c.messages[0].clone()),
        ("claim_id", c.claim.clone()),
        ("subscription_id", c.subscription.clone()),
        ("pool_name", "pool-1".to_string()),
    ] {
        if rng.chance(30) {
            let value = id(rng, &real);
            body.insert(key.into(), value);
        }
    }
    if rng.chance(20) {
        let ids = (0..rng.below(4)).map(|_| id(rng, &c.messages[1])).collect();
        body.insert("message_ids".into(), Value::Array(ids));
    }
    let mut request = serde_json::Map::new();
    if rng.chance(95) {
        request.insert("action".into(), json!(action));
    }
    if rng.chance(95) {
        let headers = if rng.chance(5) {
            rng.json(1)
        } else {
            Value::Object(headers)
        };
        request.insert("headers".into(), headers);
    }
    if rng.chance(95) {
        let body = if rng.chance(5) {
            rng.json(1)
        } else {
            Value::Object(body)
        };
        request.insert("body".into(), body);
    }
    if rng.chance(5) {
        request.insert("action".into(), rng.json(1));
    }
    let request = Value::Object(request);
    let frame = if rng.chance(15) {
        Message::binary(rmp_serde::to_vec_named(&request).unwrap())
    } else {
        Message::text(request.to_string())
    };
    (frame, aimed)
}

/// Sends a frame and returns the reply's status, or `None` if the server
/// closed the connection.
async fn exchange(socket: &mut Socket, frame: Message) -> Option<(u64, String)> {
    socket.send(frame).await.ok()?;
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let reply: Value = serde_json::from_str(&text).unwrap();
                    return Some((
                        reply["headers"]["status"].as_u64().unwrap(),
                        text.to_string(),
                    ));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let reply: Value = rmp_serde::from_slice(&bytes).unwrap();
                    return Some((
                        reply["headers"]["status"].as_u64().unwrap(),
                        reply.to_string(),
                    ));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the server stopped answering")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_websocket_frames_never_fail_the_server_or_change_rejected_state() {
    let h = Harness::start().await;
    let mut rng = Rng::seeded();
    let mut control = set_up_control(&h).await;
    let mut baseline = snapshot(&h, &control).await;
    let mut ws = Ws::connect(&h).await;
    let started = Instant::now();
    let (mut sent, mut rejected, mut aimed, mut closed) = (0, 0, 0, 0);
    for _ in 0..WS_CASES {
        let (frame, is_aimed) = ws_frame(&mut rng, &h, &control);
        let what = format!("{frame:?}").chars().take(2000).collect::<String>();
        sent += 1;
        let oversized = frame.len() > 1 << 20;
        let Some((status, reply)) = exchange(&mut ws.socket, frame).await else {
            // Only a frame over the size cap closes the connection.
            assert!(oversized, "the server closed the connection after {what}");
            closed += 1;
            ws = Ws::connect(&h).await;
            continue;
        };
        assert!(status < 500, "5xx: {what} -> {reply}");
        let accepted = (200..300).contains(&status);
        rejected += usize::from(!accepted);
        if is_aimed {
            aimed += 1;
            check_control(&h, &mut control, &mut baseline, accepted, &what).await;
        }
    }
    // The server still answers, on this connection and on REST.
    let mut fresh = Ws::connect(&h).await;
    fresh.ok("ping_node", json!({}), 204).await;
    assert_eq!(h.get("/v2/ping").await.status, 204);
    assert_eq!(snapshot(&h, &control).await, baseline);
    println!(
        "websocket fuzz: {sent} frames ({rejected} rejected, {aimed} on the control queue, \
         {closed} closed the connection) in {:?}",
        started.elapsed()
    );
    assert!(aimed > 100 && rejected > sent / 2);
}

/// An oversized body gets its answer and the connection stays usable: the
/// server reads (and drops) the rest of the body instead of resetting the
/// connection under the answer. Found by the REST fuzz above.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_bodies_get_their_answer_on_a_reused_connection() {
    let h = Harness::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v2/queues/big/messages", h.base);
    for round in 0..200 {
        let big = http
            .post(&url)
            .header("X-Project-ID", &h.project)
            .header("Client-ID", CLIENT_ID)
            .header("Content-Type", "application/json")
            .body(vec![b' '; 300_000 + round])
            .send()
            .await
            .unwrap_or_else(|err| panic!("round {round}: no answer to an oversized body: {err}"));
        // Zaqar's "Message collection size is too large" is a 400.
        let status = big.status();
        let body = big.text().await.unwrap();
        assert_eq!(status, 400, "round {round}: {body}");
        assert!(body.contains("too large"), "round {round}: {body}");
        let ping = http
            .patch(format!("{}/v2/ping", h.base))
            .body("[1]")
            .header("X-Project-ID", &h.project)
            .header("Client-ID", CLIENT_ID)
            .send()
            .await
            .unwrap_or_else(|err| panic!("round {round}: the next request failed: {err}"));
        assert_eq!(ping.status(), 405);
    }
}
