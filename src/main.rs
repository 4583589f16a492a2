//! The `switchboard` command line: `echo` runs the bare engine, `config` prints the
//! default configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use switchboard::{Config, ServerBuilder};

#[derive(Parser)]
#[command(name = "switchboard", version, about = "A WebSocket server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bare engine: every path echoes, /broadcast fans out, /healthz answers 200.
    Echo(ServeArgs),
    /// Print the default configuration as TOML (a starting point for --config).
    Config,
    /// Load-test a WebSocket server (this one or any other).
    #[command(subcommand)]
    Bench(switchboard::bench::BenchMode),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; flags given here override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9001].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Largest message in bytes; larger closes with 1009 [default: 64 MiB].
    #[arg(long)]
    max_message_size: Option<usize>,
    /// Largest frame in bytes; larger closes with 1009 [default: 16 MiB].
    #[arg(long)]
    max_frame_size: Option<usize>,
    /// Allowed Origin (repeatable); without any, every origin is allowed.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// Subprotocol to offer (repeatable), in order of preference.
    #[arg(long = "subprotocol")]
    subprotocols: Vec<String>,
}

impl ServeArgs {
    fn into_config(self) -> Result<Config, switchboard::ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.workers {
            c.workers = v;
        }
        if let Some(v) = self.max_message_size {
            c.max_message_size = v;
        }
        if let Some(v) = self.max_frame_size {
            c.max_frame_size = v;
        }
        if !self.allowed_origins.is_empty() {
            c.allowed_origins = self.allowed_origins;
        }
        if !self.subprotocols.is_empty() {
            c.subprotocols = self.subprotocols;
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = Cli::parse();
    match cli.command {
        Command::Config => match toml::to_string(&Config::default()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(mode) => match switchboard::bench::run(mode) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Echo(args) => match args.into_config() {
            Ok(config) => serve(switchboard::echo::echo_server(config)),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Runs a server until SIGINT or SIGTERM, then shuts down gracefully. A second signal
/// exits at once.
fn serve(builder: ServerBuilder) -> ExitCode {
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match builder.start() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stopper = handle.stopper();
    std::thread::spawn(move || {
        let mut seen = 0;
        for sig in signals.forever() {
            seen += 1;
            if seen == 1 {
                tracing::info!(signal = sig, "stopping: closing connections with 1001");
                stopper.stop();
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
    handle.join();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
