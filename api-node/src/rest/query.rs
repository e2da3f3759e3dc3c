//! Query strings as Falcon reads them for Zaqar: blank values dropped,
//! comma-separated lists, Falcon's integer and boolean spellings.

use zaqar_proto::{ErrorCode, ZaqarError};

/// The decoded parameters of a query string.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).unwrap_or_default();
        Query {
            pairs: pairs
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .collect(),
        }
    }

    /// The last value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// An integer parameter (Falcon's `get_param_as_int`).
    pub fn int(&self, name: &str) -> Result<Option<i64>, ZaqarError> {
        self.get(name)
            .map(|value| {
                value.trim().parse::<i64>().map_err(|_| {
                    invalid(format!(
                        "The \"{name}\" parameter is invalid. The value must be an integer."
                    ))
                })
            })
            .transpose()
    }

    /// A boolean parameter (Falcon's `get_param_as_bool`), false when absent.
    pub fn flag(&self, name: &str) -> Result<bool, ZaqarError> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "True" | "t" | "yes" | "y" | "1" | "on") => Ok(true),
            Some("false" | "False" | "f" | "no" | "n" | "0" | "off") => Ok(false),
            Some(_) => Err(invalid(format!(
                "The \"{name}\" parameter is invalid. The value of the parameter must be \"true\" or \"false\"."
            ))),
        }
    }

    /// A comma-separated list parameter (every occurrence), `None` when absent.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let items: Vec<String> = self
            .pairs
            .iter()
            .filter(|(key, _)| key == name)
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect();
        (!items.is_empty()).then_some(items)
    }
}

fn invalid(description: String) -> ZaqarError {
    ZaqarError::titled(ErrorCode::BadRequest, "Invalid parameter", description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_like_falcon() {
        let query = Query::parse("limit=5&echo=yes&ids=a,b&ids=c&marker=&name=x%20y&bad=z");
        assert_eq!(query.int("limit").unwrap(), Some(5));
        assert!(query.flag("echo").unwrap());
        assert!(!query.flag("include_claimed").unwrap());
        assert_eq!(query.list("ids").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(query.get("marker"), None);
        assert_eq!(query.get("name"), Some("x y"));
        let err = query.int("bad").unwrap_err();
        assert_eq!(err.title, "Invalid parameter");
        assert_eq!(
            err.description,
            "The \"bad\" parameter is invalid. The value must be an integer."
        );
        assert!(query.flag("bad").is_err());
        assert_eq!(Query::parse("ids=").list("ids"), None);
        assert!(Query::parse("limit=1.5").int("limit").is_err());
    }
}
