//! Store and catalog URIs as they may be shown: without their password.

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

#[cfg(test)]
mod tests {
    use super::*;

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
