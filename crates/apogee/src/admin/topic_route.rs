//! `topicRoute`: GET_ROUTEINFO_BY_TOPIC (105).

use clap::Args;
use serde_json::json;

use super::{Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let route = ctx.route(&o.topic).await?;
    let brokers: Vec<_> = route
        .broker_datas
        .iter()
        .map(|b| {
            json!({
                "cluster": b.cluster,
                "brokerName": b.broker_name,
                "brokerAddrs": b.broker_addrs.iter().map(|(id, a)| (id.to_string(), a.clone()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            })
        })
        .collect();
    let queues: Vec<_> = route
        .queue_datas
        .iter()
        .map(|q| {
            json!({
                "brokerName": q.broker_name,
                "readQueueNums": q.read_queue_nums,
                "writeQueueNums": q.write_queue_nums,
                "perm": q.perm,
                "topicSysFlag": q.topic_sys_flag,
            })
        })
        .collect();
    let value = json!({
        "topic": o.topic,
        "brokerDatas": brokers,
        "queueDatas": queues,
        "orderTopicConf": route.order_topic_conf,
    });
    ctx.emit(&value, || {
        let mut b = Table::new(&["Cluster", "Broker Name", "BID", "Addr"]);
        for d in &route.broker_datas {
            for (id, addr) in &d.broker_addrs {
                b.row(vec![
                    d.cluster.clone(),
                    d.broker_name.clone(),
                    id.to_string(),
                    addr.clone(),
                ]);
            }
        }
        let mut q = Table::new(&["Broker Name", "Read Queues", "Write Queues", "Perm"]);
        for d in &route.queue_datas {
            q.row(vec![
                d.broker_name.clone(),
                d.read_queue_nums.to_string(),
                d.write_queue_nums.to_string(),
                d.perm.to_string(),
            ]);
        }
        format!("{}\n{}", b.render(), q.render())
    });
    Ok(())
}
