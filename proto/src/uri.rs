//! Store and catalog URIs as they may be shown: without their password; and the
//! subscriber URI of WebSocket push subscriptions.

/// `uri` with the password of its user info (`scheme://user:PASSWORD@host...`)
/// replaced by `***`, for answers, listings and logs; other URIs as they are.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    // The user info ends at the last '@' before the path (a password may hold '@').
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return uri.to_string();
    };
    let (credentials, host) = (&rest[..at], &rest[at + 1..]);
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => uri.to_string(),
    }
}

/// The scheme prefix of a WebSocket push subscription's subscriber as stored
/// (`zaqar-push+http://HOST:PORT/CONNECTION`): the api-node's own notification
/// listener. Tenants cannot give it (the api-node takes only Zaqar's subscriber
/// schemes from them), so the notifier delivers to it whatever its address.
pub const PUSH_SCHEME_PREFIX: &str = "zaqar-push+";

/// The stored subscriber of a push subscription to `url`.
pub fn push_subscriber(url: &str) -> String {
    format!("{PUSH_SCHEME_PREFIX}{url}")
}

/// The URL of a push subscription's `subscriber`; `None` for any other subscriber.
pub fn push_url(subscriber: &str) -> Option<&str> {
    subscriber.strip_prefix(PUSH_SCHEME_PREFIX)
}

/// A subscriber as clients see it: a push subscription's URL without the prefix.
pub fn shown_subscriber(subscriber: &str) -> &str {
    push_url(subscriber).unwrap_or(subscriber)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_subscribers_carry_a_prefix_that_clients_do_not_see() {
        let stored = push_subscriber("http://10.0.0.5:9001/abc");
        assert_eq!(stored, "zaqar-push+http://10.0.0.5:9001/abc");
        assert_eq!(push_url(&stored), Some("http://10.0.0.5:9001/abc"));
        assert_eq!(shown_subscriber(&stored), "http://10.0.0.5:9001/abc");
        assert_eq!(push_url("http://hook/"), None);
        assert_eq!(shown_subscriber("http://hook/"), "http://hook/");
    }

    #[test]
    fn passwords_are_hidden_and_the_rest_is_kept() {
        assert_eq!(
            redact("postgres://zaqar:s3cret@db:5432/zaqar"),
            "postgres://zaqar:***@db:5432/zaqar"
        );
        assert_eq!(
            redact("redis://:p%40ss@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redact("mongodb://u:p@ss@h1,h2/zaqar?replicaSet=rs"),
            "mongodb://u:***@h1,h2/zaqar?replicaSet=rs"
        );
        assert_eq!(
            redact("postgres://zaqar@db/zaqar"),
            "postgres://zaqar@db/zaqar"
        );
        assert_eq!(
            redact("sqlite://data/catalog.db"),
            "sqlite://data/catalog.db"
        );
        assert_eq!(redact("redis://h:6379/0?x=a@b"), "redis://h:6379/0?x=a@b");
        assert_eq!(redact("not a uri"), "not a uri");
    }
}
