//! The json-home document of the v2 API (`GET /v2/`, WebSocket `get_home_doc`).

use serde_json::Value;

/// The document as the reference Zaqar 23 shows it in admin mode (to every caller).
const DOCUMENT: &str = include_str!("../rest/home.json");
/// Its resources that only admin mode has.
const PRIVILEGED: [&str; 5] = [
    "rel/health",
    "rel/pools",
    "rel/pool",
    "rel/flavors",
    "rel/flavor",
];

/// The home document; without admin mode, without the privileged resources (as Zaqar).
pub fn document(admin_mode: bool) -> Value {
    let mut document: Value = serde_json::from_str(DOCUMENT).unwrap_or(Value::Null);
    if !admin_mode {
        if let Some(resources) = document["resources"].as_object_mut() {
            for name in PRIVILEGED {
                resources.remove(name);
            }
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_privileged_resources_are_in_admin_mode_only() {
        let full = document(true);
        let public = document(false);
        for name in PRIVILEGED {
            assert!(full["resources"].get(name).is_some(), "{name}");
            assert!(public["resources"].get(name).is_none(), "{name}");
        }
        assert!(public["resources"].get("rel/queues").is_some());
    }
}
