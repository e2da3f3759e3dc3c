//! Property tests of the parsers that read client input: none panics, whatever
//! it is given. Query strings, JSON bodies, JSON patches of queue metadata and
//! their application, retry policies, signed-URL fields and WebSocket frames
//! (JSON and MessagePack); whole requests are fuzzed by `front_door_fuzz.rs`.
//! Each property runs proptest's default 256 cases; `PROPTEST_CASES=1000000`
//! runs a million (see the note of issue 15).

use proptest::prelude::*;
use serde_json::{Map, Value};
use zaqar_api_node::operations::json::parse_bytes;
use zaqar_api_node::operations::metadata::{
    apply_changes, check_reserved, check_retry_policy, parse_changes, reserved_keys,
};
use zaqar_api_node::rest::query::Query;
use zaqar_api_node::signed_url::{verify, SignatureHeaders};
use zaqar_api_node::websocket::protocol::{decode, Encoding};
use zaqar_proto::limits::Limits;

/// Any JSON value, a few levels deep, with the keys and strings the parsers
/// look for among random ones.
fn json() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("op".to_string()),
        Just("path".to_string()),
        Just("value".to_string()),
        Just("action".to_string()),
        Just("body".to_string()),
        Just("headers".to_string()),
        Just("queue_name".to_string()),
        Just("messages".to_string()),
        Just("ttl".to_string()),
        Just("_max_messages_post_size".to_string()),
        Just("minimum_delay".to_string()),
        Just("retries_with_no_delay".to_string()),
        "\\PC{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        prop_oneof![
            Just("add".to_string()),
            Just("replace".to_string()),
            Just("remove".to_string()),
            Just("/metadata/x".to_string()),
            Just("message_post".to_string()),
            Just("queue_create".to_string()),
            Just("subscription_create".to_string()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => Map::from_iter([("value".to_string(), other)]),
    }
}

proptest! {
    #[test]
    fn query_strings_never_panic(raw in "\\PC{0,80}", name in "[a-z_]{0,12}") {
        let query = Query::parse(&raw);
        let _ = (query.get(&name), query.string(&name), query.list(&name));
        let _ = (query.int(&name), query.flag(&name));
        for name in ["limit", "marker", "echo", "include_claimed", "ids", "pop", "claim_id"] {
            let _ = (query.int(name), query.flag(name), query.list(name));
        }
    }

    #[test]
    fn json_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_bytes(&bytes);
    }

    #[test]
    fn json_bodies_of_numbers_never_panic(text in "[\\[\\]{}:,\"a-z0-9.eE+-]{0,64}") {
        let _ = parse_bytes(text.as_bytes());
    }

    #[test]
    fn metadata_patches_never_panic(patch in json(), stored in json()) {
        let limits = Limits::default();
        if let Ok(changes) = parse_changes(&patch) {
            let mut metadata = object(stored);
            let _ = apply_changes(&mut metadata, changes, &reserved_keys(&limits));
            let _ = check_reserved(&metadata, &limits);
        }
        let _ = check_reserved(&object(patch.clone()), &limits);
        let _ = check_retry_policy(Some(&patch));
    }

    #[test]
    fn signed_url_fields_never_panic(
        signature in "\\PC{0,70}",
        expires in proptest::option::of("\\PC{0,30}"),
        methods in proptest::option::of("[A-Z,]{0,20}"),
        paths in proptest::option::of("\\PC{0,40}"),
        method in "[A-Z]{0,7}",
        path in "\\PC{0,40}",
        project in "\\PC{0,20}",
        key in proptest::option::of("\\PC{0,20}"),
    ) {
        let headers = SignatureHeaders {
            signature: &signature,
            expires: expires.as_deref(),
            methods: methods.as_deref(),
            paths: paths.as_deref(),
        };
        let _ = verify(key.as_deref(), &headers, &method, &path, &project);
    }

    #[test]
    fn websocket_frames_never_panic(frame in json(), admin_mode in any::<bool>()) {
        let text = frame.to_string();
        let _ = decode(text.as_bytes(), Encoding::Json, admin_mode);
        if let Ok(packed) = rmp_serde::to_vec_named(&frame) {
            let _ = decode(&packed, Encoding::MessagePack, admin_mode);
        }
    }

    #[test]
    fn websocket_frames_of_raw_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
        admin_mode in any::<bool>(),
    ) {
        let _ = decode(&bytes, Encoding::Json, admin_mode);
        let _ = decode(&bytes, Encoding::MessagePack, admin_mode);
    }
}
