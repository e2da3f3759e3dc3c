//! The `zaqar` binary: one subcommand per role, and `standalone` for all three in one
//! process.

mod admin_cmd;
mod api_node_cmd;
mod catalog_cmd;
mod cluster_auth;
mod config;
mod grpc;
mod grpc_metrics;
mod metrics;
mod pool_node_cmd;
mod project_limits_cmd;
mod redrive_cmd;
mod shutdown;
mod standalone;
mod traces;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::shutdown::Shutdown;

/// mimalloc instead of glibc's malloc: a request allocates and frees many small
/// buffers, and glibc's malloc/free (with its fastbin consolidation) was about a
/// sixth of the CPU of a post (see docs/benchmarks.md). It is built not to ask for
/// transparent huge pages (`no_thp` in Cargo.toml): backed by 2 MiB pages, its
/// arenas made 1,000 waiting claims cost about 14 MiB more, for no speed measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// zaqar-rs: a multi-tenant message queue service speaking the OpenStack Zaqar v2 API.
///
/// Settings come from the defaults, then an optional --config TOML file, then
/// ZAQAR_* environment variables, then flags. Logs follow RUST_LOG (default: info, with openraft at warn).
#[derive(Debug, Parser)]
#[command(name = "zaqar", version)]
struct Cli {
    /// Log lines as text for people, or as one JSON object each for log shippers
    /// (with the request span, and so the request id, of the line).
    #[arg(long, env = "ZAQAR_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the Prometheus metrics of this process's roles on http://ADDR/metrics
    /// (e.g. 0.0.0.0:9464); off by default.
    #[arg(long, env = "ZAQAR_METRICS_LISTEN", global = true)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Export OpenTelemetry traces over OTLP/gRPC to this endpoint
    /// (e.g. http://otel-collector:4317); off by default.
    #[arg(long, env = "ZAQAR_OTLP_ENDPOINT", global = true)]
    otlp_endpoint: Option<String>,
    /// The share of the traces starting in this process that are kept (0 to 1); a
    /// request that comes with a trace context follows its caller's choice.
    #[arg(
        long,
        env = "ZAQAR_TRACE_SAMPLE_RATIO",
        global = true,
        default_value_t = 1.0
    )]
    trace_sample_ratio: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Catalog, one pool-node and api-node in one process (REST on --listen).
    Standalone(standalone::StandaloneArgs),
    /// The REST API, forwarding to pool-nodes found through the catalog.
    ApiNode(api_node_cmd::ApiNodeArgs),
    /// The gRPC PoolService over one message store, registered with the catalog.
    PoolNode(pool_node_cmd::PoolNodeArgs),
    /// The gRPC CatalogService and AdminService: pools and queue placement, on raft
    /// (default) or a database.
    Catalog(catalog_cmd::CatalogArgs),
    /// Operate a catalog over its AdminService: pools, placements, raft nodes.
    Admin(admin_cmd::AdminArgs),
    /// Move the messages of a dead letter queue to another queue, at a bounded rate.
    Redrive(redrive_cmd::RedriveArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A command-line tool: errors to stderr, no traces.
    let is_tool = matches!(cli.command, Command::Admin(_) | Command::Redrive(_));
    let traces = match cli.otlp_endpoint.clone().filter(|_| !is_tool) {
        None => None,
        Some(endpoint) => {
            let settings = traces::TraceSettings {
                endpoint,
                sample_ratio: cli.trace_sample_ratio,
            };
            match traces::Traces::start(&settings, cli.command.service_name()) {
                Ok(started) => Some(started),
                Err(err) => {
                    eprintln!("error: {err:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let (traces, tracer) = match traces {
        Some((traces, tracer)) => (Some(traces), Some(tracer)),
        None => (None, None),
    };
    init_logs(cli.log_format, tracer);
    let outcome = run(cli.command, cli.metrics_listen).await;
    if let Some(traces) = traces {
        traces.stop().await;
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_tool => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "zaqar stopped");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG, as text or as JSON lines; with `tracer`,
/// spans also go to OpenTelemetry (unfiltered by RUST_LOG, so that a trace is whole
/// whatever the log level).
fn init_logs(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::Tracer>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().with_current_span(true).boxed(),
    };
    let spans = tracer.map(|tracer| {
        // Without code locations, thread names and busy/idle times: each costs
        // work on every span (and every poll of an instrumented future), sampled or not.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(traces::SampledOnly)
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .init();
}

impl Command {
    /// The name of this process's service in traces.
    fn service_name(&self) -> &'static str {
        match self {
            Command::Standalone(_) => "zaqar-standalone",
            Command::ApiNode(_) => "zaqar-api-node",
            Command::PoolNode(_) => "zaqar-pool-node",
            Command::Catalog(_) => "zaqar-catalog",
            Command::Admin(_) => "zaqar-admin",
            Command::Redrive(_) => "zaqar-redrive",
        }
    }
}

/// Validates the settings of `command`, then runs it until shutdown, serving its
/// metrics on `metrics_listen` if set.
async fn run(command: Command, metrics_listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = metrics_listen {
        match &command {
            Command::Standalone(_) => {
                metrics::add(zaqar_api_node::metrics::register);
                metrics::add(zaqar_pool_node::metrics::register);
            }
            Command::ApiNode(_) => metrics::add(zaqar_api_node::metrics::register),
            Command::PoolNode(_) => metrics::add(zaqar_pool_node::metrics::register),
            // A raft node adds its own when it starts.
            Command::Catalog(_) | Command::Admin(_) | Command::Redrive(_) => {}
        }
        // The roles that serve gRPC.
        if matches!(
            command,
            Command::Standalone(_) | Command::PoolNode(_) | Command::Catalog(_)
        ) {
            metrics::add(grpc_metrics::register);
        }
        if !matches!(command, Command::Admin(_) | Command::Redrive(_)) {
            metrics::serve(addr)?;
        }
    }
    match command {
        Command::Standalone(args) => standalone::run(args.config()?, Shutdown::on_signals()).await,
        Command::ApiNode(args) => api_node_cmd::run(args.config()?, Shutdown::on_signals()).await,
        Command::PoolNode(args) => pool_node_cmd::run(args.config()?, Shutdown::on_signals()).await,
        Command::Catalog(args) => catalog_cmd::run(args.config()?, Shutdown::on_signals()).await,
        Command::Admin(args) => admin_cmd::run(args).await,
        Command::Redrive(args) => redrive_cmd::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pool.toml");
        std::fs::write(&file, "name = \"from-file\"\nweight = 7\n").unwrap();
        let cli = Cli::try_parse_from([
            "zaqar",
            "pool-node",
            "--config",
            file.to_str().unwrap(),
            "--weight",
            "9",
            "--group",
            "",
        ])
        .unwrap();
        let Command::PoolNode(args) = cli.command else {
            panic!("not pool-node")
        };
        let config = args.config().unwrap();
        assert_eq!(
            (config.name.as_str(), config.weight, config.flavor.as_str()),
            ("from-file", 9, "")
        );
        assert_eq!(config.catalog, "http://127.0.0.1:7000");
        let cli = Cli::try_parse_from(["zaqar", "pool-node", "--flavor", "gold"]).unwrap();
        let Command::PoolNode(args) = cli.command else {
            panic!("not pool-node")
        };
        assert_eq!(args.config().unwrap().flavor, "gold", "--flavor is --group");
        for flag in ["--flavor", "--group"] {
            let add = [
                "zaqar",
                "admin",
                "pools",
                "add",
                "p2",
                "--uri",
                "redis://h:6379/0",
                "--endpoint",
                "http://h:7001",
                flag,
                "gold",
            ];
            assert!(
                Cli::try_parse_from(add).is_ok(),
                "zaqar admin pools add {flag}"
            );
        }
    }

    #[test]
    fn invalid_flags_fail_before_anything_starts() {
        let cli = Cli::try_parse_from(["zaqar", "catalog", "--uri", "mysql://somewhere"]).unwrap();
        let Command::Catalog(args) = cli.command else {
            panic!("not catalog")
        };
        assert!(args.config().is_err());
        assert!(Cli::try_parse_from(["zaqar", "catalog", "--listen", "not-an-address"]).is_err());
        let raft_flag_with_uri = [
            "zaqar",
            "catalog",
            "--uri",
            "sqlite://c.db",
            "--node-id",
            "2",
        ];
        let Command::Catalog(args) = Cli::try_parse_from(raft_flag_with_uri).unwrap().command
        else {
            panic!("not catalog")
        };
        assert!(args.config().is_err());
    }

    #[test]
    fn catalog_members_and_admin_commands_parse() {
        let cli = Cli::try_parse_from([
            "zaqar",
            "catalog",
            "--node-id",
            "2",
            "--raft-listen",
            "127.0.0.1:7101",
            "--members",
            "1=127.0.0.1:7100,2=127.0.0.1:7101",
        ])
        .unwrap();
        let Command::Catalog(args) = cli.command else {
            panic!("not catalog")
        };
        let raft = args.config().unwrap().raft_config().unwrap();
        assert_eq!(raft.initial_members.len(), 2);
        let cli = Cli::try_parse_from([
            "zaqar",
            "admin",
            "--catalog",
            "http://a:7000,http://b:7000",
            "--json",
            "pools",
            "add",
            "p1",
            "--uri",
            "redis://r:6379/0",
            "--endpoint",
            "http://p:7001",
            "--weight",
            "-1",
        ])
        .unwrap();
        let Command::Admin(args) = cli.command else {
            panic!("not admin")
        };
        assert_eq!(args.catalog.len(), 2);
        assert!(matches!(
            args.command,
            admin_cmd::AdminCommand::Pools(admin_cmd::PoolsCommand::Add { weight: -1, .. })
        ));
        let cli =
            Cli::try_parse_from(["zaqar", "admin", "flavors", "add", "gold", "--pools", "a,b"])
                .unwrap();
        let Command::Admin(args) = cli.command else {
            panic!("not admin")
        };
        let admin_cmd::AdminCommand::Flavors(admin_cmd::FlavorsCommand::Add { pools, .. }) =
            args.command
        else {
            panic!("not flavors add")
        };
        assert_eq!(pools, ["a", "b"]);
    }
}
