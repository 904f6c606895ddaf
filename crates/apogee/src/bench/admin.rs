//! Creates the benchmark topic the way `mqadmin updateTopic -c` does: the cluster's brokers come
//! from GET_BROKER_CLUSTER_INFO, each master gets UPDATE_AND_CREATE_TOPIC, and then the name server
//! is polled until the route shows the requested queue count.

use std::time::{Duration, Instant};

use apogee_client::ClientInstance;
use apogee_protocol::body::{ClusterInfo, JsonBody, TopicConfig};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::CreateTopicRequestHeader;
use apogee_protocol::RemotingCommand;

/// How long a broker may take to register the new topic with the name server.
const ROUTE_WAIT: Duration = Duration::from_secs(15);

/// The master addresses of every broker group the name server knows, in name order.
pub async fn master_addrs(instance: &ClientInstance) -> Result<Vec<String>, String> {
    let (addr, response) = instance
        .invoke_name_server(RemotingCommand::request(
            request_code::GET_BROKER_CLUSTER_INFO,
        ))
        .await
        .map_err(|e| format!("cluster info: {e}"))?;
    if response.code != response_code::SUCCESS {
        return Err(format!(
            "cluster info: {addr} answered {}: {}",
            response.code,
            response.remark.unwrap_or_default()
        ));
    }
    let info = ClusterInfo::decode(&response.body).map_err(|e| format!("cluster info: {e}"))?;
    let masters: Vec<String> = info
        .broker_addr_table
        .values()
        .filter_map(|b| b.master_addr().map(str::to_owned))
        .collect();
    if masters.is_empty() {
        return Err("the name server knows no broker master".into());
    }
    Ok(masters)
}

/// Creates (or resizes) `topic` with `queues` read and write queues on every master, then waits
/// until the name server's route lists them.
pub async fn ensure_topic(
    instance: &ClientInstance,
    topic: &str,
    queues: i32,
) -> Result<(), String> {
    let masters = master_addrs(instance).await?;
    for addr in &masters {
        let header = CreateTopicRequestHeader {
            topic: topic.to_owned(),
            default_topic: "TBW102".to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: TopicConfig::DEFAULT_PERM,
            topic_filter_type: "SINGLE_TAG".to_owned(),
            topic_sys_flag: Some(0),
            order: false,
            attributes: None,
            force: false,
        };
        let request =
            RemotingCommand::request_with_header(request_code::UPDATE_AND_CREATE_TOPIC, &header);
        let response = instance
            .invoke_broker(addr, request, instance.config().api_timeout())
            .await
            .map_err(|e| format!("create topic on {addr}: {e}"))?;
        if response.code != response_code::SUCCESS {
            return Err(format!(
                "create topic on {addr}: code {}: {}",
                response.code,
                response.remark.unwrap_or_default()
            ));
        }
    }
    let wanted = queues * i32::try_from(masters.len()).unwrap_or(i32::MAX);
    let deadline = Instant::now() + ROUTE_WAIT;
    loop {
        if let Ok(route) = instance.fetch_topic_route(topic).await {
            let have: i32 = route.queue_datas.iter().map(|q| q.write_queue_nums).sum();
            if have >= wanted {
                instance
                    .update_topic_route(topic)
                    .await
                    .map_err(|e| format!("route of {topic}: {e}"))?;
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the name server did not list {queues} queues of {topic} on {} broker(s) within {} s",
                masters.len(),
                ROUTE_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
