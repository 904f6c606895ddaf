//! `apogee admin`: RocketMQ's `mqadmin` commands, with the same names and short flags, against any
//! RocketMQ-compatible name server and broker (standard request codes only). Tables by default,
//! `--json` for scripts. Exit codes: 0 ok, 1 a request failed (code and remark printed), 2 usage.

mod broker_status;
mod cluster_list;
mod consume_message;
mod consumer_connection;
mod consumer_progress;
mod delete_sub_group;
mod delete_topic;
mod get_broker_config;
mod producer_connection;
mod query_msg_by_id;
mod query_msg_by_key;
mod query_msg_by_offset;
mod reset_offset_by_time;
mod send_message;
mod store_maintenance;
mod topic_list;
mod topic_route;
mod topic_status;
mod update_broker_config;
mod update_sub_group;
mod update_topic;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use apogee_client::{ClientConfig, ClientError, ClientInstance, MessageExt};
use apogee_protocol::body::{ClusterInfo, JsonBody, TopicRouteData, MASTER_ID};
use apogee_protocol::codes::{request_code as rc, response_code};
use apogee_protocol::RemotingCommand;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// The template topic brokers create topics from (`TBW102`).
pub(crate) const DEFAULT_TOPIC: &str = "TBW102";
/// The group mqadmin's own consumers and producers use.
pub(crate) const TOOLS_GROUP: &str = "TOOLS_CONSUMER";

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Name server address(es), `;`-separated (default: $NAMESRV_ADDR, else 127.0.0.1:9876).
    #[arg(short = 'n', long = "namesrvAddr", global = true, value_name = "ADDRS")]
    pub namesrv: Option<String>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Timeout of each request, in milliseconds.
    #[arg(long = "timeoutMillis", global = true, default_value_t = 5000)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
#[command(rename_all = "camelCase")]
pub enum AdminCommand {
    /// Update or create topic.
    UpdateTopic(update_topic::Opts),
    /// Delete topic from broker and NameServer.
    DeleteTopic(delete_topic::Opts),
    /// Fetch all topic list from name server.
    TopicList(topic_list::Opts),
    /// Examine topic route info.
    TopicRoute(topic_route::Opts),
    /// Examine topic Status info.
    TopicStatus(topic_status::Opts),
    /// Update or create subscription group.
    UpdateSubGroup(update_sub_group::Opts),
    /// Delete subscription group from broker.
    DeleteSubGroup(delete_sub_group::Opts),
    /// Query consumer's progress: per queue broker offset, consumer offset and diff.
    ConsumerProgress(consumer_progress::Opts),
    /// Query consumer's socket connection, client version and subscription.
    ConsumerConnection(consumer_connection::Opts),
    /// Query producer's socket connection and client version.
    ProducerConnection(producer_connection::Opts),
    /// Query Message by Id (offset msgId, or UNIQ_KEY with -t).
    QueryMsgById(query_msg_by_id::Opts),
    /// Query Message by Key.
    QueryMsgByKey(query_msg_by_key::Opts),
    /// Query Message by offset.
    QueryMsgByOffset(query_msg_by_offset::Opts),
    /// List cluster infos.
    ClusterList(cluster_list::Opts),
    /// Fetch broker runtime status data.
    BrokerStatus(broker_status::Opts),
    /// Reset consumer offset by timestamp (without client restart when the broker supports it).
    ResetOffsetByTime(reset_offset_by_time::Opts),
    /// Send a message.
    SendMessage(send_message::Opts),
    /// Consume message (pull and print).
    ConsumeMessage(consume_message::Opts),
    /// Get broker config by cluster or special broker.
    GetBrokerConfig(get_broker_config::Opts),
    /// Update broker's config.
    UpdateBrokerConfig(update_broker_config::Opts),
    /// Delete expired CommitLog files now, whatever the hour of deleteWhen.
    DeleteExpiredCommitLog(store_maintenance::Opts),
    /// Clean expired ConsumeQueue files on broker.
    #[command(name = "cleanExpiredCQ")]
    CleanExpiredCq(store_maintenance::Opts),
    /// Clean the queues of topics the broker no longer has.
    CleanUnusedTopic(store_maintenance::Opts),
}

/// Why a command failed; decides the exit code.
#[derive(Debug)]
pub(crate) enum AdminError {
    /// Bad or missing arguments: exit 2.
    Usage(String),
    /// A request failed or its answer was unusable: exit 1.
    Failed(String),
}

pub(crate) type Result<T> = std::result::Result<T, AdminError>;

impl From<ClientError> for AdminError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Broker { code, remark, addr } => {
                AdminError::Failed(failure_text(&addr, code, &remark))
            }
            other => AdminError::Failed(other.to_string()),
        }
    }
}

impl From<apogee_protocol::ProtocolError> for AdminError {
    fn from(e: apogee_protocol::ProtocolError) -> Self {
        AdminError::Failed(format!("cannot decode the answer: {e}"))
    }
}

/// `addr answered CODE_NAME (n): remark`.
pub(crate) fn failure_text(addr: &str, code: i32, remark: &str) -> String {
    format!(
        "{addr} answered {} ({code}): {remark}",
        response_code::name(code).unwrap_or("UNKNOWN")
    )
}

pub(crate) fn usage(msg: impl Into<String>) -> AdminError {
    AdminError::Usage(msg.into())
}

/// What every command works with: the client instance (name servers, connections), the output
/// mode and the request timeout.
pub(crate) struct Ctx {
    pub inst: ClientInstance,
    pub json: bool,
    pub timeout: Duration,
}

impl Ctx {
    /// Sends `request` to the name servers (failing over) and fails on any code but SUCCESS.
    pub async fn namesrv(&self, request: RemotingCommand) -> Result<RemotingCommand> {
        let (addr, response) = self.inst.invoke_name_server(request).await?;
        ok(&addr, response)
    }

    /// Sends `request` to every name server; fails on the first failure.
    pub async fn every_namesrv(&self, request: RemotingCommand) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for addr in &self.inst.config().name_server_addrs {
            self.broker(addr, request.clone()).await?;
            done.push(addr.clone());
        }
        Ok(done)
    }

    /// Sends `request` to `addr` and returns the answer whatever its code.
    pub async fn broker_raw(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<RemotingCommand> {
        Ok(self.inst.invoke_broker(addr, request, self.timeout).await?)
    }

    /// Sends `request` to `addr` and fails on any code but SUCCESS.
    pub async fn broker(&self, addr: &str, request: RemotingCommand) -> Result<RemotingCommand> {
        let response = self.broker_raw(addr, request).await?;
        ok(addr, response)
    }

    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let response = self
            .namesrv(RemotingCommand::request(rc::GET_BROKER_CLUSTER_INFO))
            .await?;
        Ok(ClusterInfo::decode(&response.body)?)
    }

    pub async fn route(&self, topic: &str) -> Result<TopicRouteData> {
        Ok(self.inst.fetch_topic_route(topic).await?)
    }

    /// `(broker name, master address)` of every master of `cluster`.
    pub async fn cluster_masters(&self, cluster: &str) -> Result<Vec<(String, String)>> {
        let info = self.cluster_info().await?;
        let Some(names) = info.cluster_addr_table.get(cluster) else {
            return Err(AdminError::Failed(format!(
                "cluster {cluster} is not known to the name server"
            )));
        };
        Ok(names
            .iter()
            .filter_map(|name| {
                let data = info.broker_addr_table.get(name)?;
                Some((name.clone(), data.broker_addrs.get(&MASTER_ID)?.clone()))
            })
            .collect())
    }

    /// `(broker name, master address)` of every master the name servers know.
    pub async fn all_masters(&self) -> Result<Vec<(String, String)>> {
        let info = self.cluster_info().await?;
        Ok(info
            .broker_addr_table
            .iter()
            .filter_map(|(name, data)| {
                Some((name.clone(), data.broker_addrs.get(&MASTER_ID)?.clone()))
            })
            .collect())
    }

    /// Broker addresses from `-b` or every master of `-c`; one of them is required.
    pub async fn targets(
        &self,
        broker_addr: Option<&str>,
        cluster: Option<&str>,
    ) -> Result<Vec<String>> {
        match (broker_addr, cluster) {
            (Some(b), _) => Ok(vec![b.to_owned()]),
            (None, Some(c)) => {
                let masters = self.cluster_masters(c).await?;
                if masters.is_empty() {
                    return Err(AdminError::Failed(format!(
                        "cluster {c} has no master broker"
                    )));
                }
                Ok(masters.into_iter().map(|(_, a)| a).collect())
            }
            (None, None) => Err(usage(
                "one of -b (broker address) or -c (cluster) is required",
            )),
        }
    }

    /// Prints `value` as JSON, or the text `table` builds.
    pub fn emit(&self, value: &Value, table: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
            );
        } else {
            print!("{}", table());
        }
    }
}

/// The answer if it is SUCCESS, else the failure with code and remark.
pub(crate) fn ok(addr: &str, response: RemotingCommand) -> Result<RemotingCommand> {
    if response.code == response_code::SUCCESS {
        Ok(response)
    } else {
        Err(AdminError::Failed(failure_text(
            addr,
            response.code,
            response.remark.as_deref().unwrap_or(""),
        )))
    }
}

/// A text table with left-aligned, padded columns.
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let _ = write!(text, "{cell:<w$}  ");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &self.headers);
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }
}

/// Milliseconds since the epoch as `yyyy-MM-dd HH:mm:ss.SSS` UTC.
pub(crate) fn fmt_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A message as JSON (body as UTF-8, lossy).
pub(crate) fn message_json(m: &MessageExt) -> Value {
    let props: BTreeMap<&str, &str> = m.properties.iter().collect();
    json!({
        "topic": m.topic,
        "msgId": m.msg_id,
        "offsetMsgId": m.offset_msg_id,
        "brokerName": m.broker_name,
        "queueId": m.queue_id,
        "queueOffset": m.queue_offset,
        "commitLogOffset": m.commit_log_offset,
        "tags": m.tags(),
        "keys": m.keys().collect::<Vec<_>>(),
        "reconsumeTimes": m.reconsume_times,
        "bornTimestamp": m.born_timestamp,
        "bornHost": m.born_host.to_string(),
        "storeTimestamp": m.store_timestamp,
        "storeHost": m.store_host.to_string(),
        "sysFlag": m.sys_flag,
        "storeSize": m.store_size,
        "properties": props,
        "body": String::from_utf8_lossy(&m.body),
    })
}

/// A message as `name: value` lines, like mqadmin's message detail.
pub(crate) fn message_text(m: &MessageExt) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<20}: {v}");
    };
    kv("OffsetID", m.offset_msg_id.clone());
    kv("MsgId", m.msg_id.clone());
    kv("Topic", m.topic.clone());
    kv("Tags", format!("[{}]", m.tags().unwrap_or("")));
    kv(
        "Keys",
        format!("[{}]", m.keys().collect::<Vec<_>>().join(" ")),
    );
    kv("Queue ID", m.queue_id.to_string());
    kv("Queue Offset", m.queue_offset.to_string());
    kv("CommitLog Offset", m.commit_log_offset.to_string());
    kv("Reconsume Times", m.reconsume_times.to_string());
    kv("Born Timestamp", fmt_ms(m.born_timestamp));
    kv("Store Timestamp", fmt_ms(m.store_timestamp));
    kv("Born Host", m.born_host.to_string());
    kv("Store Host", m.store_host.to_string());
    kv("System Flag", m.sys_flag.to_string());
    let props: Vec<String> = m
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    kv("Properties", format!("{{{}}}", props.join(", ")));
    kv(
        "Message Body",
        String::from_utf8_lossy(&m.body).into_owned(),
    );
    out
}

/// Several messages: JSON array, or detail blocks separated by blank lines.
pub(crate) fn emit_messages(ctx: &Ctx, msgs: &[MessageExt]) {
    let value = Value::Array(msgs.iter().map(message_json).collect());
    ctx.emit(&value, || {
        msgs.iter().map(message_text).collect::<Vec<_>>().join("\n")
    });
}

fn namesrv_addrs(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("NAMESRV_ADDR").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9876".to_owned())
}

async fn dispatch(ctx: &Ctx, cmd: AdminCommand) -> Result<()> {
    use AdminCommand as C;
    match cmd {
        C::UpdateTopic(o) => update_topic::run(ctx, o).await,
        C::DeleteTopic(o) => delete_topic::run(ctx, o).await,
        C::TopicList(o) => topic_list::run(ctx, o).await,
        C::TopicRoute(o) => topic_route::run(ctx, o).await,
        C::TopicStatus(o) => topic_status::run(ctx, o).await,
        C::UpdateSubGroup(o) => update_sub_group::run(ctx, o).await,
        C::DeleteSubGroup(o) => delete_sub_group::run(ctx, o).await,
        C::ConsumerProgress(o) => consumer_progress::run(ctx, o).await,
        C::ConsumerConnection(o) => consumer_connection::run(ctx, o).await,
        C::ProducerConnection(o) => producer_connection::run(ctx, o).await,
        C::QueryMsgById(o) => query_msg_by_id::run(ctx, o).await,
        C::QueryMsgByKey(o) => query_msg_by_key::run(ctx, o).await,
        C::QueryMsgByOffset(o) => query_msg_by_offset::run(ctx, o).await,
        C::ClusterList(o) => cluster_list::run(ctx, o).await,
        C::BrokerStatus(o) => broker_status::run(ctx, o).await,
        C::ResetOffsetByTime(o) => reset_offset_by_time::run(ctx, o).await,
        C::SendMessage(o) => send_message::run(ctx, o).await,
        C::ConsumeMessage(o) => consume_message::run(ctx, o).await,
        C::GetBrokerConfig(o) => get_broker_config::run(ctx, o).await,
        C::UpdateBrokerConfig(o) => update_broker_config::run(ctx, o).await,
        C::DeleteExpiredCommitLog(o) => {
            store_maintenance::run(
                ctx,
                o,
                rc::DELETE_EXPIRED_COMMITLOG,
                "deleteExpiredCommitLog",
            )
            .await
        }
        C::CleanExpiredCq(o) => {
            store_maintenance::run(ctx, o, rc::CLEAN_EXPIRED_CONSUMEQUEUE, "cleanExpiredCQ").await
        }
        C::CleanUnusedTopic(o) => {
            store_maintenance::run(ctx, o, rc::CLEAN_UNUSED_TOPIC, "cleanUnusedTopic").await
        }
    }
}

/// Runs one admin command and maps the outcome onto the exit code.
pub fn run(args: AdminArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apogee admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let mut config = ClientConfig::new(namesrv_addrs(args.namesrv.as_deref()));
        config.instance_name = format!("apogee-admin-{}", std::process::id());
        config.api_timeout_ms = args.timeout_ms;
        let inst = ClientInstance::new_unshared(config).map_err(AdminError::from)?;
        let ctx = Ctx {
            inst,
            json: args.json,
            timeout: Duration::from_millis(args.timeout_ms),
        };
        let result = dispatch(&ctx, args.command).await;
        ctx.inst.shutdown().await;
        result
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(AdminError::Usage(msg)) => {
            eprintln!("apogee admin: {msg}");
            ExitCode::from(2)
        }
        Err(AdminError::Failed(msg)) => {
            eprintln!("apogee admin: {msg}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(fmt_ms(0), "-");
        assert_eq!(fmt_ms(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(
            days_from_civil(2023, 11, 14),
            1_700_000_000_123 / 86_400_000
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    }

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let mut t = Table::new(&["A", "Long"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    Long\nxyz  1\n");
    }
}
