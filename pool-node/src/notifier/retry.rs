//! Zaqar's retry policy (`_retry_policy` of a queue or subscription): which waits
//! come between the attempts of one delivery.

use std::time::Duration;

use serde_json::{Map, Value};

/// Zaqar's defaults (`zaqar.common.consts`).
const RETRIES_WITH_NO_DELAY: u64 = 3;
const MINIMUM_DELAY_RETRIES: u64 = 3;
const MINIMUM_DELAY: u64 = 5;
const MAXIMUM_DELAY: u64 = 30;
const MAXIMUM_DELAY_RETRIES: u64 = 3;
/// The `times` argument Zaqar passes to every backoff function.
const LINEAR_INTERVAL: u64 = 5;
/// Our cap on the retries of one delivery, whatever the policy says.
pub const MAX_RETRIES: usize = 1_000;

/// How the delays grow between `minimum_delay` and `maximum_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Linear,
    Arithmetic,
    Geometric,
    Exponential,
}

/// One effective retry policy, every key filled with Zaqar's default when unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retries_with_no_delay: u64,
    pub minimum_delay_retries: u64,
    /// Seconds.
    pub minimum_delay: u64,
    /// Seconds.
    pub maximum_delay: u64,
    pub maximum_delay_retries: u64,
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::from_json(&Map::new())
    }
}

impl RetryPolicy {
    /// The policy that applies, as Zaqar chooses it: the queue's when either policy
    /// sets `ignore_subscription_override`, else the subscription's if it has one,
    /// else the queue's (the chosen object is taken whole, keys are not merged).
    pub fn effective(subscription: &Map<String, Value>, queue: &Map<String, Value>) -> Self {
        let ignore = |policy: &Map<String, Value>| {
            policy
                .get("ignore_subscription_override")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        if ignore(subscription) || ignore(queue) || subscription.is_empty() {
            RetryPolicy::from_json(queue)
        } else {
            RetryPolicy::from_json(subscription)
        }
    }

    /// Reads one `_retry_policy` object; a missing or ill-typed key takes its default.
    pub fn from_json(policy: &Map<String, Value>) -> Self {
        let number =
            |key: &str, default: u64| policy.get(key).and_then(Value::as_u64).unwrap_or(default);
        let backoff = match policy.get("retry_backoff_function").and_then(Value::as_str) {
            Some("arithmetic") => Backoff::Arithmetic,
            Some("geometric") => Backoff::Geometric,
            Some("exponential") => Backoff::Exponential,
            _ => Backoff::Linear,
        };
        RetryPolicy {
            retries_with_no_delay: number("retries_with_no_delay", RETRIES_WITH_NO_DELAY),
            minimum_delay_retries: number("minimum_delay_retries", MINIMUM_DELAY_RETRIES),
            minimum_delay: number("minimum_delay", MINIMUM_DELAY),
            maximum_delay: number("maximum_delay", MAXIMUM_DELAY),
            maximum_delay_retries: number("maximum_delay_retries", MAXIMUM_DELAY_RETRIES),
            backoff,
        }
    }

    /// The wait before each retry after a failed first attempt, in order: the
    /// immediate retries, `minimum_delay_retries` waits of `minimum_delay`, the
    /// backoff steps, then `maximum_delay_retries` waits of `maximum_delay`. At most
    /// [`MAX_RETRIES`] waits.
    pub fn schedule(&self) -> Vec<Duration> {
        let seconds = |n: u64, delay: u64| std::iter::repeat_n(delay, n as usize);
        seconds(self.retries_with_no_delay.min(MAX_RETRIES as u64), 0)
            .chain(seconds(
                self.minimum_delay_retries.min(MAX_RETRIES as u64),
                self.minimum_delay,
            ))
            .chain(self.backoff_steps())
            .chain(seconds(
                self.maximum_delay_retries.min(MAX_RETRIES as u64),
                self.maximum_delay,
            ))
            .take(MAX_RETRIES)
            .map(Duration::from_secs)
            .collect()
    }

    /// Zaqar's backoff functions over (minimum_delay, maximum_delay, LINEAR_INTERVAL).
    /// Where Zaqar's formula would divide by zero (fewer than two steps, or a zero
    /// minimum delay for the geometric kinds) there is at most one step.
    fn backoff_steps(&self) -> Vec<u64> {
        let (min, max) = (self.minimum_delay, self.maximum_delay);
        if self.backoff == Backoff::Linear {
            return (min..max)
                .step_by(LINEAR_INTERVAL as usize)
                .take(MAX_RETRIES)
                .collect();
        }
        let steps = (max.saturating_sub(min) / LINEAR_INTERVAL).min(MAX_RETRIES as u64);
        if steps == 0 {
            return Vec::new();
        }
        if steps == 1 || (min == 0 && self.backoff != Backoff::Arithmetic) {
            return vec![min];
        }
        let (minf, maxf, n) = (min as f64, max as f64, steps as f64);
        (1..=steps)
            .map(|a| {
                let a = a as f64;
                let value = match self.backoff {
                    Backoff::Arithmetic => {
                        let d = 2.0 * (maxf - minf) / (n * (n - 1.0));
                        minf + (a - 1.0) * a * d / 2.0
                    }
                    Backoff::Geometric | Backoff::Exponential | Backoff::Linear => {
                        let k = 10f64.powf((maxf / minf).log10() / (n - 1.0));
                        if self.backoff == Backoff::Geometric {
                            minf * k.powf(a - 1.0)
                        } else {
                            (minf / k) * k.powf(a)
                        }
                    }
                };
                value as u64
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: Value) -> RetryPolicy {
        RetryPolicy::from_json(value.as_object().unwrap())
    }

    fn secs(schedule: &[Duration]) -> Vec<u64> {
        schedule.iter().map(Duration::as_secs).collect()
    }

    #[test]
    fn zaqar_defaults_give_three_immediate_retries_then_backoff_to_thirty_seconds() {
        let schedule = secs(&RetryPolicy::default().schedule());
        assert_eq!(schedule, [0, 0, 0, 5, 5, 5, 5, 10, 15, 20, 25, 30, 30, 30]);
    }

    #[test]
    fn backoff_functions_match_zaqars_values() {
        let steps = |name: &str| {
            policy(json!({"retry_backoff_function": name, "minimum_delay": 5, "maximum_delay": 30}))
                .backoff_steps()
        };
        // Values computed with zaqar.notification.tasks.webhook's functions.
        assert_eq!(steps("linear"), [5, 10, 15, 20, 25]);
        assert_eq!(steps("arithmetic"), [5, 7, 12, 20, 30]);
        assert_eq!(steps("geometric"), [5, 7, 12, 19, 30]);
        assert_eq!(steps("exponential"), [5, 7, 12, 19, 30]);
    }

    #[test]
    fn degenerate_policies_do_not_divide_by_zero() {
        for name in ["arithmetic", "geometric", "exponential", "linear"] {
            let p = policy(
                json!({"retry_backoff_function": name, "minimum_delay": 0, "maximum_delay": 7}),
            );
            assert!(p.backoff_steps().len() <= 2, "{name}");
            let p = policy(
                json!({"retry_backoff_function": name, "minimum_delay": 9, "maximum_delay": 3}),
            );
            assert!(p.backoff_steps().is_empty(), "{name}");
        }
        let huge =
            policy(json!({"maximum_delay": u64::MAX / 2, "maximum_delay_retries": u64::MAX}));
        assert_eq!(huge.schedule().len(), MAX_RETRIES);
    }

    #[test]
    fn the_queue_policy_wins_only_when_asked_or_when_the_subscription_has_none() {
        let sub = json!({"retries_with_no_delay": 1})
            .as_object()
            .unwrap()
            .clone();
        let queue = json!({"retries_with_no_delay": 7})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            RetryPolicy::effective(&sub, &queue).retries_with_no_delay,
            1
        );
        assert_eq!(
            RetryPolicy::effective(&Map::new(), &queue).retries_with_no_delay,
            7
        );
        let mut forcing = queue.clone();
        forcing.insert("ignore_subscription_override".into(), json!(true));
        assert_eq!(
            RetryPolicy::effective(&sub, &forcing).retries_with_no_delay,
            7
        );
        // The chosen policy is taken whole: unset keys take Zaqar's defaults.
        assert_eq!(
            RetryPolicy::effective(&sub, &queue).minimum_delay,
            MINIMUM_DELAY
        );
    }
}
