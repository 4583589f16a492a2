//! The `switchboard` command line: `serve` runs the chat node, `echo` the bare engine,
//! `bench` the load generator, `config` prints the effective configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
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
    /// Run the chat and push node: token auth, the JSON protocol, the push API, a demo
    /// page at /.
    Serve(ServeChatArgs),
    /// Print the chat node's effective configuration, commented (a starting point for
    /// `serve --config`); with --engine, the engine's settings for `echo --config`.
    Config(ConfigArgs),
    /// Load-test a WebSocket server (this one or any other).
    #[command(subcommand)]
    Bench(switchboard::bench::BenchMode),
}

#[derive(Args)]
struct ServeChatArgs {
    /// TOML configuration file (see `switchboard config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (same as --set listen=ADDR).
    #[arg(long)]
    listen: Option<String>,
    /// Set any field: --set auth.mode=jwt --set limits.sessions_per_user=4 (repeatable;
    /// applied after the file and SWITCHBOARD__SECTION__FIELD environment variables).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ServeChatArgs {
    fn load(&self) -> Result<switchboard::chat::ChatConfig, switchboard::ConfigError> {
        let mut sets = self.set.clone();
        if let Some(l) = &self.listen {
            sets.push(format!("listen={l}"));
        }
        switchboard::chat::ChatConfig::load(self.config.as_deref(), &sets)
    }
}

#[derive(Args)]
struct ConfigArgs {
    /// Print the engine settings (the file `echo --config` reads) instead.
    #[arg(long)]
    engine: bool,
    #[command(flatten)]
    chat: ServeChatArgs,
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
    /// Also serve the SockJS protocol test suite's endpoints: /echo, /close,
    /// /disabled_websocket_echo and /cookie_needed_echo, with a 4096-byte streaming
    /// limit.
    #[arg(long)]
    sockjs: bool,
    /// Accept permessage-deflate (same as `[deflate] enabled = true` in the file).
    #[arg(long)]
    deflate: bool,
    /// Speak TLS with this PEM certificate chain (needs --tls-key; `[tls]` in the file).
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
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
        if self.deflate {
            c.deflate.enabled = true;
        }
        match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => {
                c.tls = Some(switchboard::TlsConfig {
                    cert,
                    key,
                    listen: None,
                })
            }
            (None, None) => {}
            _ => {
                let e = "--tls-cert and --tls-key go together".to_owned();
                return Err(switchboard::ConfigError::Invalid(e));
            }
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
        // A closed stderr must not turn every log line into a panic (the subscriber
        // reports its own write errors with eprintln!, which panics then).
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = Cli::parse();
    match cli.command {
        Command::Config(args) if args.engine => match toml::to_string(&Config::default()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Config(args) => match args.chat.load() {
            Ok(c) => {
                print!("{}", c.render_commented());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            let built = args.load().and_then(switchboard::chat::chat_server);
            match built {
                Ok((builder, _node)) => serve(builder),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench(mode) => match switchboard::bench::run(mode) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Echo(args) => match (args.sockjs, args.into_config()) {
            (false, Ok(config)) => serve(switchboard::echo::echo_server(config)),
            (true, Ok(config)) => serve(switchboard::echo::sockjs_echo_server(config)),
            (_, Err(e)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Runs a server until SIGINT or SIGTERM, then shuts down gracefully. A second signal
/// exits at once. SIGHUP reloads the TLS certificates.
fn serve(builder: ServerBuilder) -> ExitCode {
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
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
    let reloader = handle.tls_reloader();
    std::thread::spawn(move || {
        let mut seen = 0;
        for sig in signals.forever() {
            if sig == SIGHUP {
                // Errors are logged by the reloader; the old certificate stays.
                if let Ok(n) = reloader.reload() {
                    tracing::info!(listeners = n, "SIGHUP: TLS certificates reloaded");
                }
                continue;
            }
            seen += 1;

            if seen == 1 {
                // Stop first: if logging fails (stderr closed by a supervisor), the
                // shutdown must still happen.
                stopper.stop();
                tracing::info!(signal = sig, "stopping: closing connections with 1001");
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
