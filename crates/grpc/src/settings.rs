//! The Telemetry settings reply: the client's own `Settings` echoed back with the server's
//! overrides applied, as the RocketMQ proxy does. Clients take these values verbatim (Python uses
//! `max_body_size` as is; push consumers read batch size, long polling and the retry policy), so
//! every field they read is always set. Pure functions; no I/O.

use std::time::Duration;

use crate::config::{ConsumerSettings, GroupPolicy, ProducerSettings, RetryBackoff};
use crate::pb;

/// The server's answer to a client's `settings`: `client` with `producer` overrides when it
/// publishes, or `consumer` overrides (with the group's `group` policy) when it subscribes.
/// Server-side metrics export stays off, whatever the client proposed.
pub fn merge_server_settings(
    client: &pb::Settings,
    producer: &ProducerSettings,
    consumer: &ConsumerSettings,
    group: &GroupPolicy,
) -> pb::Settings {
    let mut reply = client.clone();
    match reply.pub_sub.as_mut() {
        Some(pb::settings::PubSub::Publishing(publishing)) => {
            publishing.max_body_size = producer.max_body_size_bytes;
            publishing.validate_message_type = producer.validate_message_type;
            reply.backoff_policy = Some(pb::RetryPolicy {
                max_attempts: producer.max_attempts,
                strategy: Some(pb::retry_policy::Strategy::ExponentialBackoff(
                    pb::ExponentialBackoff {
                        initial: Some(duration_ms(producer.backoff_initial_ms)),
                        max: Some(duration_ms(producer.backoff_max_ms)),
                        multiplier: producer.backoff_multiplier,
                    },
                )),
            });
        }
        Some(pb::settings::PubSub::Subscription(subscription)) => {
            subscription.fifo = Some(group.fifo);
            subscription.receive_batch_size = Some(consumer.receive_batch_size);
            subscription.long_polling_timeout = Some(duration_ms(consumer.long_polling_timeout_ms));
            reply.backoff_policy = Some(retry_policy(group));
        }
        None => {}
    }
    reply.metric = Some(pb::Metric {
        on: false,
        endpoints: None,
    });
    reply
}

/// A consumer group's redelivery policy as clients expect it: the first delivery counts as an
/// attempt, so `max_attempts` is one more than the retries.
pub fn retry_policy(group: &GroupPolicy) -> pb::RetryPolicy {
    let strategy = match &group.retry {
        RetryBackoff::Customized { delays_ms } => {
            pb::retry_policy::Strategy::CustomizedBackoff(pb::CustomizedBackoff {
                next: delays_ms.iter().map(|ms| duration_ms(*ms)).collect(),
            })
        }
        RetryBackoff::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => pb::retry_policy::Strategy::ExponentialBackoff(pb::ExponentialBackoff {
            initial: Some(duration_ms(*initial_ms)),
            max: Some(duration_ms(*max_ms)),
            multiplier: *multiplier,
        }),
    };
    pb::RetryPolicy {
        max_attempts: group.max_retry_times.saturating_add(1),
        strategy: Some(strategy),
    }
}

/// A protobuf `Duration` of `ms` milliseconds (saturating far beyond any real setting).
pub fn duration_ms(ms: u64) -> prost_types::Duration {
    to_proto_duration(Duration::from_millis(ms))
}

pub fn to_proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        // subsec_nanos() < 1e9, always fits.
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GrpcConfig;

    fn producer_settings() -> pb::Settings {
        pb::Settings {
            client_type: Some(pb::ClientType::Producer as i32),
            request_timeout: Some(duration_ms(3_000)),
            pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                topics: vec![pb::Resource {
                    resource_namespace: String::new(),
                    name: "TopicA".into(),
                }],
                max_body_size: 0,
                validate_message_type: false,
            })),
            metric: Some(pb::Metric {
                on: true,
                endpoints: None,
            }),
            ..Default::default()
        }
    }

    fn consumer_settings() -> pb::Settings {
        pb::Settings {
            client_type: Some(pb::ClientType::PushConsumer as i32),
            pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
                group: Some(pb::Resource {
                    resource_namespace: String::new(),
                    name: "GroupA".into(),
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn merge(client: &pb::Settings, group: &GroupPolicy) -> pb::Settings {
        let config = GrpcConfig::default();
        merge_server_settings(client, &config.producer, &config.consumer, group)
    }

    #[test]
    fn producer_reply_sets_body_limit_type_check_and_exponential_backoff() {
        let reply = merge(&producer_settings(), &GroupPolicy::default());
        let Some(pb::settings::PubSub::Publishing(publishing)) = &reply.pub_sub else {
            panic!("publishing expected, got {:?}", reply.pub_sub);
        };
        assert_eq!(publishing.max_body_size, 4_194_304);
        assert!(publishing.validate_message_type);
        assert_eq!(publishing.topics[0].name, "TopicA", "topics are echoed");
        let backoff = reply.backoff_policy.expect("backoff set");
        assert_eq!(backoff.max_attempts, 3);
        let Some(pb::retry_policy::Strategy::ExponentialBackoff(exp)) = backoff.strategy else {
            panic!("exponential backoff expected");
        };
        assert_eq!(
            exp.initial,
            Some(prost_types::Duration {
                seconds: 0,
                nanos: 10_000_000
            })
        );
        assert_eq!(
            exp.max,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 0
            })
        );
        assert_eq!(exp.multiplier, 2.0);
        assert_eq!(
            reply.request_timeout,
            Some(duration_ms(3_000)),
            "client fields kept"
        );
        assert_eq!(
            reply.metric,
            Some(pb::Metric {
                on: false,
                endpoints: None
            })
        );
    }

    #[test]
    fn consumer_reply_sets_fifo_batch_long_polling_and_customized_backoff() {
        let reply = merge(&consumer_settings(), &GroupPolicy::default());
        let Some(pb::settings::PubSub::Subscription(sub)) = &reply.pub_sub else {
            panic!("subscription expected");
        };
        assert_eq!(sub.fifo, Some(false));
        assert_eq!(sub.receive_batch_size, Some(32));
        assert_eq!(sub.long_polling_timeout, Some(duration_ms(20_000)));
        assert_eq!(sub.group.as_ref().map(|g| g.name.as_str()), Some("GroupA"));
        let backoff = reply.backoff_policy.expect("backoff set");
        assert_eq!(backoff.max_attempts, 17);
        let Some(pb::retry_policy::Strategy::CustomizedBackoff(custom)) = backoff.strategy else {
            panic!("customized backoff expected");
        };
        assert_eq!(custom.next.len(), 18);
        assert_eq!(custom.next[0], duration_ms(1_000));
        assert_eq!(custom.next[17], duration_ms(7_200_000));
    }

    #[test]
    fn consumer_reply_follows_the_group_policy() {
        let group = GroupPolicy {
            fifo: true,
            max_retry_times: 3,
            retry: RetryBackoff::Exponential {
                initial_ms: 5_000,
                max_ms: 60_000,
                multiplier: 2.0,
            },
        };
        let reply = merge(&consumer_settings(), &group);
        let Some(pb::settings::PubSub::Subscription(sub)) = &reply.pub_sub else {
            panic!("subscription expected");
        };
        assert_eq!(sub.fifo, Some(true));
        let backoff = reply.backoff_policy.expect("backoff set");
        assert_eq!(backoff.max_attempts, 4);
        assert!(matches!(
            backoff.strategy,
            Some(pb::retry_policy::Strategy::ExponentialBackoff(_))
        ));
    }

    #[test]
    fn settings_without_pub_sub_are_echoed_with_metrics_off() {
        let client = pb::Settings {
            client_type: Some(pb::ClientType::Producer as i32),
            ..Default::default()
        };
        let reply = merge(&client, &GroupPolicy::default());
        assert_eq!(reply.pub_sub, None);
        assert_eq!(reply.backoff_policy, None);
        assert_eq!(reply.client_type, client.client_type);
    }

    #[test]
    fn durations_split_into_seconds_and_nanos() {
        assert_eq!(
            duration_ms(1_500),
            prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            duration_ms(u64::MAX).seconds,
            i64::try_from(u64::MAX / 1000).unwrap_or(0)
        );
    }
}
