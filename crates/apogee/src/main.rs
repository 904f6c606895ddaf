//! The `apogee` executable: one binary, one subcommand per role: the servers (`standalone`,
//! `namesrv`, `broker`), the 5.x gRPC `proxy` in front of a cluster, `admin` (mqadmin's commands),
//! the load generator (`bench`) and the offline store tools.

mod admin;
mod bench;
mod inspect;
mod proxy;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc's malloc: on the message path (header maps, records, replies) glibc's
/// allocator took about 15% of both the broker's and the client's CPU in `apogee bench` profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "apogee",
    version,
    about = "A RocketMQ-compatible message queue in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Name server and broker in one process, data in ./data, RocketMQ's default ports.
    Standalone(server::ServerArgs),
    /// The name server alone (port 9876).
    Namesrv(server::ServerArgs),
    /// A broker alone (port 10911), registering with --namesrv-addr.
    Broker(server::ServerArgs),
    /// The 5.x gRPC endpoint (port 8081) in front of a cluster reached through --namesrv-addr.
    Proxy(proxy::ProxyArgs),
    /// RocketMQ's mqadmin commands (same names and flags) against any RocketMQ-compatible cluster.
    Admin(admin::AdminArgs),
    /// Load generator against any RocketMQ-compatible cluster: send and end-to-end throughput
    /// and latency, or (--catch-up) a consumer reading a backlog.
    Bench(Box<bench::BenchArgs>),
    /// Offline tools for a store directory.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Reads a store's files read-only, without taking its lock and without changing anything.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// The store root (the folder holding commitlog/, consumequeue/, checkpoint).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub what: InspectWhat,
}

#[derive(Subcommand)]
pub(crate) enum InspectWhat {
    /// CommitLog segments: start, size, records, store times, write position.
    Segments,
    /// Records in log order.
    Records {
        /// CommitLog offset of the first record (default: the oldest).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Every consume queue with its min and max offsets.
    Queues,
    /// Entries of one consume queue.
    Queue {
        #[arg(long)]
        topic: String,
        #[arg(long = "queue-id")]
        queue_id: i32,
        /// Logical offset of the first entry (default: the queue's min).
        #[arg(long)]
        from: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Checks every record (layout, CRC, offsets) and every queue entry against its record;
    /// exits 1 if anything is damaged.
    Verify {
        /// How many problems to list (all are counted).
        #[arg(long, default_value_t = 20)]
        max_problems: usize,
    },
    /// Both checkpoint slots.
    Checkpoint,
}

fn serve(role: server::Role, args: server::ServerArgs) -> ExitCode {
    match server::run(role, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apogee: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Standalone(args) => serve(server::Role::Standalone, args),
        Command::Namesrv(args) => serve(server::Role::Namesrv, args),
        Command::Broker(args) => serve(server::Role::Broker, args),
        Command::Proxy(args) => match proxy::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("apogee proxy: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Admin(args) => admin::run(args),
        Command::Bench(args) => bench::run(*args),
        Command::Store {
            command: StoreCommand::Inspect(args),
        } => inspect::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn inspect_arguments_parse_with_json_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "apogee",
            "store",
            "inspect",
            "--dir",
            "/x",
            "queue",
            "--topic",
            "T",
            "--queue-id",
            "3",
            "--from",
            "5",
            "--json",
        ])
        .unwrap();
        let Command::Store {
            command: StoreCommand::Inspect(a),
        } = cli.command
        else {
            panic!("not inspect");
        };
        assert!(a.json);
        assert!(matches!(
            a.what,
            InspectWhat::Queue {
                queue_id: 3,
                from: Some(5),
                limit: 100,
                ..
            }
        ));
    }
}
