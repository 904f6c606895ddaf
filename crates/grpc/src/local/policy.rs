//! A consumer group's settings as the proxy reports them to 5.x consumers: FIFO when the group
//! consumes orderly, `retryMaxTimes + 1` delivery attempts, and the group's retry policy
//! (customized delays, or exponential back-off) as the client's back-off.

use apogee_protocol::body::{GroupRetryPolicyType, SubscriptionGroupConfig};

use crate::config::{GroupPolicy, RetryBackoff};

/// The policy of `group`.
pub fn group_policy_of(group: &SubscriptionGroupConfig) -> GroupPolicy {
    let policy = &group.group_retry_policy;
    let retry = match (policy.policy_type, &policy.exponential_retry_policy) {
        (GroupRetryPolicyType::Exponential, Some(exp)) => RetryBackoff::Exponential {
            initial_ms: u64::try_from(exp.initial).unwrap_or(0),
            max_ms: u64::try_from(exp.max).unwrap_or(0),
            multiplier: exp.multiplier.max(1) as f32,
        },
        _ => {
            let delays_ms: Vec<u64> = policy
                .customized_retry_policy
                .clone()
                .unwrap_or_default()
                .next
                .iter()
                .map(|ms| u64::try_from(*ms).unwrap_or(0))
                .collect();
            if delays_ms.is_empty() {
                RetryBackoff::default()
            } else {
                RetryBackoff::Customized { delays_ms }
            }
        }
    };
    GroupPolicy {
        fifo: group.consume_message_orderly,
        max_retry_times: group.retry_max_times.max(0),
        retry,
    }
}

#[cfg(test)]
mod tests {
    use apogee_protocol::body::{CustomizedRetryPolicy, ExponentialRetryPolicy};

    use super::*;

    #[test]
    fn a_default_group_gets_the_default_policy() {
        assert_eq!(
            group_policy_of(&SubscriptionGroupConfig::new("G")),
            GroupPolicy::default()
        );
    }

    #[test]
    fn orderly_groups_are_fifo_and_retry_times_and_delays_follow_the_config() {
        let mut group = SubscriptionGroupConfig::new("G");
        group.consume_message_orderly = true;
        group.retry_max_times = 3;
        group.group_retry_policy.customized_retry_policy = Some(CustomizedRetryPolicy {
            next: vec![2_000, 4_000],
        });
        let policy = group_policy_of(&group);
        assert!(policy.fifo);
        assert_eq!(policy.max_retry_times, 3);
        assert_eq!(
            policy.retry,
            RetryBackoff::Customized {
                delays_ms: vec![2_000, 4_000]
            }
        );
    }

    #[test]
    fn an_exponential_group_policy_becomes_exponential_backoff() {
        let mut group = SubscriptionGroupConfig::new("G");
        group.group_retry_policy.policy_type = GroupRetryPolicyType::Exponential;
        group.group_retry_policy.exponential_retry_policy = Some(ExponentialRetryPolicy {
            initial: 1_000,
            max: 60_000,
            multiplier: 3,
        });
        assert_eq!(
            group_policy_of(&group).retry,
            RetryBackoff::Exponential {
                initial_ms: 1_000,
                max_ms: 60_000,
                multiplier: 3.0
            }
        );
    }
}
