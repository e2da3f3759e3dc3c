//! Subscription filters (a zaqar-rs extension): the option `filter` of a
//! subscription selects the messages it is notified of by fields of their JSON body,
//! in the shape of SNS filter policies. The api-node checks a filter when the
//! subscription is written ([`Filter::parse`]); the notifier tests each message
//! ([`Filter::matches`]).
//!
//! A filter is an object. Each key names a field of the body, and all keys must
//! match. The value is either an object (a filter on the field's own fields) or a
//! non-empty list of conditions, any of which may match:
//! - a string, number, boolean or `null`: the field equals it (when the field is a
//!   list, one of its items does);
//! - `{"prefix": "text"}`: the field is a string starting with `text`;
//! - `{"exists": true}` / `{"exists": false}`: the field is present / absent;
//! - `{"numeric": [">=", 10, "<", 20]}`: the field is a number in that range (one
//!   or two comparisons among `=`, `<`, `<=`, `>`, `>=`).

use serde_json::Value;

/// The most conditions one filter may hold, all levels together.
pub const MAX_CONDITIONS: usize = 100;
/// The deepest nesting of fields a filter may name.
pub const MAX_DEPTH: usize = 5;

/// A checked filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    fields: Vec<(String, Rule)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// The field is an object matching this filter.
    Nested(Filter),
    /// Any of these conditions holds.
    AnyOf(Vec<Condition>),
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Equals(Value),
    Prefix(String),
    Exists(bool),
    Numeric(Vec<(Comparison, f64)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Filter {
    /// Checks `value` as a filter; the error says what is wrong, for a 400 answer.
    pub fn parse(value: &Value) -> Result<Filter, String> {
        let mut conditions = 0;
        let filter = parse_object(value, 1, &mut conditions)?;
        if conditions > MAX_CONDITIONS {
            return Err(format!(
                "The filter has {conditions} conditions; at most {MAX_CONDITIONS} are allowed."
            ));
        }
        Ok(filter)
    }

    /// Whether a message whose body is `body` passes the filter.
    pub fn matches(&self, body: &Value) -> bool {
        let fields = body.as_object();
        self.fields.iter().all(|(name, rule)| {
            let field = fields.and_then(|fields| fields.get(name));
            match rule {
                Rule::Nested(filter) => field.is_some_and(|field| filter.matches(field)),
                Rule::AnyOf(conditions) => conditions.iter().any(|c| c.holds(field)),
            }
        })
    }
}

impl Condition {
    fn holds(&self, field: Option<&Value>) -> bool {
        match (self, field) {
            (Condition::Exists(wanted), field) => field.is_some() == *wanted,
            (_, None) => false,
            (_, Some(Value::Array(items))) => items.iter().any(|item| self.holds_on(item)),
            (_, Some(value)) => self.holds_on(value),
        }
    }

    /// Whether the condition holds on one value (a field, or one item of it).
    fn holds_on(&self, value: &Value) -> bool {
        match self {
            Condition::Exists(_) => true,
            Condition::Equals(Value::Number(wanted)) => {
                value.as_f64().is_some_and(|n| Some(n) == wanted.as_f64())
            }
            Condition::Equals(wanted) => value == wanted,
            Condition::Prefix(prefix) => value.as_str().is_some_and(|s| s.starts_with(prefix)),
            Condition::Numeric(comparisons) => value.as_f64().is_some_and(|n| {
                comparisons
                    .iter()
                    .all(|(comparison, bound)| match comparison {
                        Comparison::Eq => n == *bound,
                        Comparison::Lt => n < *bound,
                        Comparison::Le => n <= *bound,
                        Comparison::Gt => n > *bound,
                        Comparison::Ge => n >= *bound,
                    })
            }),
        }
    }
}

fn parse_object(value: &Value, depth: usize, conditions: &mut usize) -> Result<Filter, String> {
    let Some(object) = value.as_object().filter(|object| !object.is_empty()) else {
        return Err("The filter must be a non-empty object.".to_string());
    };
    if depth > MAX_DEPTH {
        return Err(format!(
            "The filter nests fields deeper than {MAX_DEPTH} levels."
        ));
    }
    let mut fields = Vec::with_capacity(object.len());
    for (name, rule) in object {
        let rule = match rule {
            Value::Object(_) => Rule::Nested(parse_object(rule, depth + 1, conditions)?),
            Value::Array(items) if !items.is_empty() => {
                *conditions += items.len();
                let parsed = items
                    .iter()
                    .map(parse_condition)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| format!("The filter of field {name:?}: {err}"))?;
                Rule::AnyOf(parsed)
            }
            _ => {
                return Err(format!(
                "The filter of field {name:?} must be a non-empty list of conditions or an object."
            ))
            }
        };
        fields.push((name.clone(), rule));
    }
    Ok(Filter { fields })
}

fn parse_condition(item: &Value) -> Result<Condition, String> {
    let Value::Object(condition) = item else {
        return match item {
            Value::Array(_) => Err("a condition cannot be a list.".to_string()),
            literal => Ok(Condition::Equals(literal.clone())),
        };
    };
    let mut keys = condition.iter();
    let only = match (keys.next(), keys.next()) {
        (Some(pair), None) => pair,
        _ => {
            return Err(
                "a condition object has exactly one of prefix, exists, numeric.".to_string(),
            )
        }
    };
    match only {
        (key, Value::String(prefix)) if key == "prefix" => Ok(Condition::Prefix(prefix.clone())),
        (key, Value::Bool(exists)) if key == "exists" => Ok(Condition::Exists(*exists)),
        (key, Value::Array(range)) if key == "numeric" => parse_numeric(range),
        (key, _) => Err(format!(
            "unknown or malformed condition {key:?} (prefix takes a string, exists a boolean, numeric a list)."
        )),
    }
}

fn parse_numeric(range: &[Value]) -> Result<Condition, String> {
    let malformed = || {
        "numeric takes one or two pairs of an operator (=, <, <=, >, >=) and a number.".to_string()
    };
    if !matches!(range.len(), 2 | 4) {
        return Err(malformed());
    }
    let comparisons = range
        .chunks(2)
        .map(|pair| {
            let comparison = match pair[0].as_str() {
                Some("=") => Comparison::Eq,
                Some("<") => Comparison::Lt,
                Some("<=") => Comparison::Le,
                Some(">") => Comparison::Gt,
                Some(">=") => Comparison::Ge,
                _ => return Err(malformed()),
            };
            let bound = pair[1].as_f64().ok_or_else(malformed)?;
            Ok((comparison, bound))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Condition::Numeric(comparisons))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(value: Value) -> Filter {
        Filter::parse(&value).unwrap()
    }

    #[test]
    fn every_field_must_match_and_any_of_its_conditions() {
        let f = filter(json!({"kind": ["order", "refund"], "region": [{"prefix": "eu-"}]}));
        assert!(f.matches(&json!({"kind": "order", "region": "eu-west"})));
        assert!(f.matches(&json!({"kind": "refund", "region": "eu-", "x": 1})));
        assert!(!f.matches(&json!({"kind": "order", "region": "us-east"})));
        assert!(!f.matches(&json!({"kind": "invoice", "region": "eu-west"})));
        assert!(!f.matches(&json!({"region": "eu-west"})));
        assert!(!f.matches(&json!("order")));
    }

    #[test]
    fn numbers_compare_as_numbers_and_lists_match_by_item() {
        let f = filter(json!({"price": [{"numeric": [">=", 10, "<", 20]}, 100]}));
        assert!(f.matches(&json!({"price": 10})));
        assert!(f.matches(&json!({"price": 19.5})));
        assert!(f.matches(&json!({"price": 100.0})));
        assert!(!f.matches(&json!({"price": 20})));
        assert!(!f.matches(&json!({"price": "15"})));
        let tags = filter(json!({"tags": ["urgent"]}));
        assert!(tags.matches(&json!({"tags": ["late", "urgent"]})));
        assert!(!tags.matches(&json!({"tags": []})));
    }

    #[test]
    fn exists_nesting_and_literals() {
        let f = filter(json!({"trace": [{"exists": false}], "meta": {"source": ["api", null]}}));
        assert!(f.matches(&json!({"meta": {"source": "api"}})));
        assert!(f.matches(&json!({"meta": {"source": null}})));
        assert!(!f.matches(&json!({"meta": {"source": "api"}, "trace": 1})));
        assert!(!f.matches(&json!({"meta": "api"})));
        let flag = filter(json!({"done": [true], "owner": [{"exists": true}]}));
        assert!(flag.matches(&json!({"done": true, "owner": null})));
        assert!(!flag.matches(&json!({"done": "true", "owner": 1})));
    }

    #[test]
    fn malformed_filters_are_refused_with_a_reason() {
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": [1]}}}}}});
        let many = json!({"n": (0..101).collect::<Vec<_>>()});
        for bad in [
            json!([]),
            json!({}),
            json!({"a": []}),
            json!({"a": 1}),
            json!({"a": [[1]]}),
            json!({"a": [{"prefix": 1}]}),
            json!({"a": [{"exists": "yes"}]}),
            json!({"a": [{"numeric": [">", "1"]}]}),
            json!({"a": [{"numeric": ["~", 1]}]}),
            json!({"a": [{"numeric": [">", 1, "<"]}]}),
            json!({"a": [{"prefix": "x", "exists": true}]}),
            json!({"a": [{"anything-but": ["x"]}]}),
            deep,
            many,
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
        assert!(Filter::parse(&json!({"a": {"b": {"c": {"d": {"e": [1]}}}}})).is_ok());
    }
}
