//! `switchboard bench`: a load generator for WebSocket servers (this one or any other).
//!
//! Owns the client side only: mio event loops, one per thread, driving connections that
//! mask every frame with a fresh key, check every byte they get back, and account for
//! every message (lost, corrupted, duplicated, reordered). It shares the `ws` frame
//! vocabulary with the server but none of the server's code paths.

mod chat;
pub(crate) mod conn;
mod driver;
mod modes;
mod payload;
mod report;
mod sockjs;
mod stomp_frames;
mod tls;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub use chat::ChatArgs;
pub use modes::{BroadcastArgs, ConnectArgs, EchoArgs, HoldArgs, StompArgs};
pub use sockjs::SockJsArgs;

/// Why a bench run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The URL is not `ws://host:port/path` or `wss://host:port/path`.
    #[error("bad url {0:?}: expected ws://host:port/path or wss://host:port/path")]
    Url(String),
    /// `--bind-range` is not `A.B.C.D-A.B.C.E`.
    #[error("bad --bind-range {0:?}: expected e.g. 127.0.0.1-127.0.0.20")]
    BindRange(String),
    /// The run needs more descriptors than the process may hold.
    #[error(
        "this run needs about {needed} file descriptors but the limit is {limit}; \
         use fewer connections or raise the hard limit (ulimit -Hn)"
    )]
    TooManyConnections {
        /// Descriptors the run needs.
        needed: u64,
        /// What the process may hold.
        limit: u64,
    },
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The first connection to the target failed: nothing to measure.
    #[error("cannot connect to {addr}: {why}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// Why: the socket error (`connection refused`) or the server's answer
        /// (`401 Unauthorized: ...`).
        why: String,
    },
    /// Setting up an event loop or thread failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl BenchError {
    /// The exit status for this error: 1 when the target could not be reached or
    /// refused us (the run failed), 2 for a usage or setup error.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Connect { .. } => 1,
            _ => 2,
        }
    }
}

/// Options every mode shares.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Server URL [default: ws://127.0.0.1:9001/ (what `switchboard echo` listens on);
    /// for `chat`, ws://127.0.0.1:8080/ws (what `switchboard serve` listens on)].
    #[arg(long)]
    pub url: Option<String>,
    /// Client threads, each with its own event loop.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Measured time, in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up, in seconds, excluded from rates and percentiles.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Rotate source addresses over this IPv4 range (e.g. 127.0.0.1-127.0.0.20), so one
    /// run can open more connections than one address has ephemeral ports.
    #[arg(long)]
    pub bind_range: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The server's process id (same machine): report its CPU share while the bench was
    /// measuring and the rate per fully busy server core (`hold`: its memory per
    /// connection).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// For a `wss://` URL: the PEM file of the CA to trust (only it; the system's roots
    /// are not loaded).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Offer permessage-deflate (no context takeover either way) and inflate what the
    /// server compresses.
    #[arg(long)]
    pub deflate: bool,
}

/// A blocking byte stream: a TCP socket, or TLS over one.
pub(crate) trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) path: String,
    /// For `wss://`: the client TLS settings.
    pub(crate) tls: Option<tls::TlsTarget>,
}

/// Where the engine modes connect when no `--url` is given.
pub(crate) const DEFAULT_URL: &str = "ws://127.0.0.1:9001/";
/// Where `bench stomp` connects when no `--url` is given.
pub(crate) const DEFAULT_STOMP_URL: &str = "ws://127.0.0.1:8080/stomp";
/// Where `bench chat` connects when no `--url` is given.
pub(crate) const DEFAULT_CHAT_URL: &str = "ws://127.0.0.1:8080/ws";

impl CommonArgs {
    /// The target: `--url`, else `default_url`; a bare `/` path becomes `default_path`.
    pub(crate) fn target(
        &self,
        default_url: &str,
        default_path: &str,
    ) -> Result<Target, BenchError> {
        let url = self.url.as_deref().unwrap_or(default_url);
        let (secure, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(BenchError::Url(url.to_owned())),
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path == "/" { default_path } else { path };
        let addr = host
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| BenchError::Url(url.to_owned()))?;
        let tls = match secure {
            true => Some(tls::target_for(self.ca.as_deref(), host)?),
            false => None,
        };
        Ok(Target {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
            tls,
        })
    }

    pub(crate) fn binds(&self) -> Result<Vec<IpAddr>, BenchError> {
        let Some(range) = &self.bind_range else {
            return Ok(Vec::new());
        };
        let err = || BenchError::BindRange(range.clone());
        let (a, b) = range.split_once('-').ok_or_else(err)?;
        let a: Ipv4Addr = a.trim().parse().map_err(|_| err())?;
        let b: Ipv4Addr = b.trim().parse().map_err(|_| err())?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a > 65_535 {
            return Err(err());
        }
        Ok((a..=b).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))).collect())
    }

    pub(crate) fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.max(0.1))
    }

    pub(crate) fn threads(&self) -> usize {
        self.threads.max(1)
    }
}

/// One handshake with the target before the load starts, so a server that is down or
/// refuses the client ends the run at once with the reason, instead of a run of errors.
pub(crate) fn preflight(
    target: &Target,
    path: &str,
    timeout: Duration,
) -> Result<Preflight, BenchError> {
    let fail = |why: String| BenchError::Connect {
        addr: target.addr,
        why,
    };
    let io_fail = |e: std::io::Error| fail(e.to_string().to_lowercase());
    let sock = std::net::TcpStream::connect_timeout(&target.addr, timeout).map_err(io_fail)?;
    sock.set_read_timeout(Some(timeout)).map_err(io_fail)?;
    let mut s: Box<dyn Stream> = match &target.tls {
        Some(t) => t.stream(sock).map_err(io_fail)?,
        None => Box::new(sock),
    };
    s.write_all(&conn::request(&target.host, path))
        .map_err(io_fail)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                return Err(fail(
                    "the server closed the connection without answering".into(),
                ))
            }
            Ok(n) if got.len() < 16 * 1024 => got.extend_from_slice(&buf[..n]),
            Ok(_) => return Err(fail("the server's answer has no end of headers".into())),
            Err(e) => return Err(io_fail(e)),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]);
    let status = head.lines().next().unwrap_or("").trim();
    if status.starts_with("HTTP/1.1 101") {
        let rest = got[head_end..].to_vec();
        return Ok(Preflight {
            addr: target.addr,
            sock: s,
            buf: rest,
        });
    }
    let status = status.strip_prefix("HTTP/1.1 ").unwrap_or(status);
    let body = String::from_utf8_lossy(&got[head_end..]);
    let body: String = body.trim().chars().take(300).collect();
    Err(fail(if body.is_empty() {
        status.to_owned()
    } else {
        format!("{status}: {body}")
    }))
}

/// The connection a successful preflight opened, to read the server's first message.
pub(crate) struct Preflight {
    addr: SocketAddr,
    sock: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Preflight {
    /// The first text message the server sends (within the socket's read timeout).
    pub(crate) fn first_text(mut self) -> Result<String, BenchError> {
        let addr = self.addr;
        let fail = |why: String| BenchError::Connect { addr, why };
        let mut chunk = [0u8; 4096];
        loop {
            match conn::next_frame(&self.buf, 1 << 20) {
                Ok(Some(f)) if f.op == crate::ws::OpCode::Text => {
                    let payload = &self.buf[f.head..f.head + f.len];
                    return Ok(String::from_utf8_lossy(payload).into_owned());
                }
                Ok(Some(f)) => {
                    self.buf.drain(..f.head + f.len);
                }
                Ok(None) => match self.sock.read(&mut chunk) {
                    Ok(0) => {
                        return Err(fail(
                            "the server closed the connection after the handshake".into(),
                        ))
                    }
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) => {
                        return Err(fail(format!(
                            "no message from the server after the handshake ({e})"
                        )))
                    }
                },
                Err(e) => return Err(fail(e)),
            }
        }
    }
}

/// How long the preflight handshake may take: the run's own length, at most 10 s.
pub(crate) fn preflight_timeout(common: &CommonArgs) -> Duration {
    (common.warmup() + common.duration()).min(Duration::from_secs(10))
}

/// Raises the descriptor limit as far as allowed and checks `connections` fit.
pub(crate) fn ensure_fds(connections: u64) -> Result<(), BenchError> {
    let needed = connections + 64;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    if needed > limit {
        return Err(BenchError::TooManyConnections { needed, limit });
    }
    Ok(())
}

/// Runs a mode and prints its report; the exit status is non-zero when any message was
/// lost, corrupted, duplicated or reordered, or connections failed.
pub fn run(mode: BenchMode) -> Result<bool, BenchError> {
    let (json, report) = match mode {
        BenchMode::Echo(a) => modes::echo(a)?,
        BenchMode::Broadcast(a) => modes::broadcast(a)?,
        BenchMode::Connect(a) => modes::connect(a)?,
        BenchMode::Hold(a) => modes::hold(a)?,
        BenchMode::Chat(a) => chat::chat(a)?,
        BenchMode::Stomp(a) => modes::stomp(a)?,
        BenchMode::Sockjs(a) => sockjs::sockjs(a)?,
    };
    let ok = report.clean();
    if json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
        if !ok {
            println!("RESULT          FAILED: messages lost, corrupted, duplicated or reordered, or connections failed");
        }
    }
    Ok(ok)
}

/// The bench modes.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchMode {
    /// N connections × K messages in flight × S bytes; every echo checked byte for byte
    /// and in order.
    Echo(EchoArgs),
    /// N subscribers, P publishers; deliveries/s, fan-out latency, gaps, duplicates, loss.
    Broadcast(BroadcastArgs),
    /// Handshakes per second with C in progress.
    Connect(ConnectArgs),
    /// Open N connections and keep them idle; with --server-pid, server memory per
    /// connection.
    Hold(HoldArgs),
    /// U users of a chat node send private, group and channel messages at a rate;
    /// latency per type, every delivery accounted for.
    Chat(ChatArgs),
    /// N subscribers of a STOMP topic, P publishers SENDing to it; deliveries/s, fan-out
    /// latency, gaps, duplicates, loss (as `broadcast`, through a STOMP broker).
    Stomp(StompArgs),
    /// STOMP fan-out received over SockJS xhr-streaming (or a plain WebSocket, to
    /// compare): one publisher at a rate, N subscribers.
    Sockjs(SockJsArgs),
}
