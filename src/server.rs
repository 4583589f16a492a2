//! The embedding API's entry: [`Server::builder`], routes, and the [`ServerHandle`] that
//! reaches (through its [`Hub`]) and stops a running server.
//!
//! Owns wiring: binding the listeners, starting one worker thread per configured worker
//! and connecting their inboxes into a hub. It does not touch connections; that is the
//! reactor's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::handler::Handler;
use crate::http::{HttpResponse, Request};
use crate::hub::{Hub, HubInner, Peer};
use crate::metrics::WorkerMetrics;
use crate::reactor::{
    bind_listeners, Admission, ListenerSpec, Worker, WorkerListener, MAX_LISTENERS,
};

use crate::reply::HttpReply;
use crate::router::{HttpRoute, Router};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound (in use, no permission, bad address).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The event loop could not be set up (out of file descriptors, usually).
    #[error("cannot start worker: {0}")]
    Io(#[from] std::io::Error),
    /// A TLS listener's certificate or key cannot be used.
    #[cfg(feature = "tls")]
    #[error("TLS: {0}")]
    Tls(#[from] crate::io::tls::TlsError),
}

/// A listening address of a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerAddr {
    /// The bound address (with the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// The framing, for a raw TCP listener (`None`: HTTP and WebSocket).
    pub raw: Option<crate::rawframe::RawFraming>,
}

/// Entry point of the embedding API.
///
/// ```no_run
/// use switchboard::{Context, Handler, Message, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
///         ctx.send(msg);
///     }
/// }
///
/// let handle = Server::builder()
///     .listen("127.0.0.1:9001".parse().unwrap())
///     .route("/echo", Echo)
///     .start()
///     .expect("server starts");
/// println!("listening on {}", handle.local_addr());
/// handle.join();
/// ```
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the default [`Config`] and a `/healthz` HTTP route.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: Config::default(),
            router: Router {
                ws: Vec::new(),
                fallback: None,
                ws_prefix: Vec::new(),
                http_prefix: Vec::new(),
                http: vec![(
                    "/healthz".to_owned(),
                    HttpRoute::Now(Arc::new(|req: &Request, _: &Hub| {
                        match req.method.as_str() {
                            "GET" | "HEAD" => HttpResponse::text(200, "ok\n"),
                            _ => HttpResponse::text(405, "use GET\n").header("Allow", "GET, HEAD"),
                        }
                    })),
                )],
            },
            errors: Vec::new(),
            #[cfg(feature = "sockjs")]
            sockjs: Vec::new(),
        }
    }
}

/// Configures routes and limits, then starts the server.
pub struct ServerBuilder {
    config: Config,
    router: Router,
    /// Mistakes in the routes, reported by [`ServerBuilder::start`].
    errors: Vec<String>,
    /// SockJS endpoints, told the engine's origin allow-list at start.
    #[cfg(feature = "sockjs")]
    sockjs: Vec<Arc<crate::sockjs::Shared>>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ws: Vec<&str> = self.router.ws.iter().map(|(p, _)| p.as_str()).collect();
        let http: Vec<&str> = self.router.http.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("ServerBuilder")
            .field("listen", &self.config.listen)
            .field("ws_routes", &ws)
            .field("http_routes", &http)
            .finish()
    }
}

impl ServerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the listen address (port 0 picks a free port; see [`ServerHandle::local_addr`]).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Sets the number of worker threads (0: one per core).
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Serves WebSocket connections on `path` (exact match, query string ignored).
    pub fn route(mut self, path: &str, handler: impl Handler) -> Self {
        self.router.ws.push((path.to_owned(), Arc::new(handler)));
        self
    }

    /// Serves WebSocket connections on every path no other route matches.
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.router.fallback = Some(self.router.ws.len());
        self.router.ws.push((String::new(), Arc::new(handler)));
        self
    }

    /// Answers plain (non-upgrade) GETs on `path`; replaces a route of the same path, so
    /// the built-in `/healthz` can be overridden. The handler also gets the [`Hub`], to
    /// push to connections or read [`Hub::metrics`].
    pub fn http_route(
        mut self,
        path: &str,
        handler: impl Fn(&Request, &Hub) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.router.http.retain(|(p, _)| p != path);
        self.router
            .http
            .push((path.to_owned(), HttpRoute::Now(Arc::new(handler))));
        self
    }

    /// Answers plain requests on `path` later or in pieces: the handler gets an
    /// [`HttpReply`] to answer from any thread — a long poll held until there is news, a
    /// stream of events. Pipelined requests behind it wait their turn; an answer not
    /// given within `http_response_timeout_ms` is a 504.
    ///
    /// ```no_run
    /// use switchboard::{http::HttpResponse, Server};
    ///
    /// let server = Server::builder()
    ///     .http_route_deferred("/slow", |_req, _hub, reply| {
    ///         std::thread::spawn(move || {
    ///             std::thread::sleep(std::time::Duration::from_millis(100));
    ///             reply.send(HttpResponse::text(200, "done\n"));
    ///         });
    ///     })
    ///     .start()
    ///     .unwrap();
    /// # server.stop();
    /// ```
    pub fn http_route_deferred(
        mut self,
        path: &str,
        handler: impl Fn(&Request, &Hub, HttpReply) + Send + Sync + 'static,
    ) -> Self {
        self.router.http.retain(|(p, _)| p != path);
        self.router
            .http
            .push((path.to_owned(), HttpRoute::Later(Arc::new(handler))));
        self
    }

    /// Adds SockJS (protocol 0.3.3) to the WebSocket route at `prefix`, which must
    /// already be added: the route's handler then also serves SockJS sessions —
    /// `<prefix>/info`, `/iframe.html`, `/{server}/{session}/{transport}` for the
    /// `websocket`, `xhr-streaming`, `xhr-polling`, `eventsource`, `htmlfile` and `jsonp`
    /// transports, and the raw WebSocket at `<prefix>/websocket`. Each session is a
    /// connection like any other to the handler (`on_open` gets the request that
    /// opened it; sends, groups, broadcasts and timers work unchanged).
    #[cfg(feature = "sockjs")]
    pub fn sockjs(mut self, prefix: &str, cfg: crate::sockjs::SockJsConfig) -> Self {
        let Some(route) = self.router.exact_ws_route(prefix) else {
            self.errors.push(format!(
                "sockjs: no WebSocket route at {prefix} to add SockJS to"
            ));
            return self;
        };
        let handler = self.router.ws[route].1.clone();
        let shared = Arc::new(crate::sockjs::Shared::new(prefix, route, cfg));
        self.sockjs.push(shared.clone());
        let serve = {
            let shared = shared.clone();
            move |req: &Request, hub: &Hub, reply: HttpReply| {
                crate::sockjs::serve(&shared, req, hub, reply)
            }
        };
        let serve: Arc<crate::router::DeferredHttpHandler> = Arc::new(serve);
        self.router.http.retain(|(p, _)| p != prefix);
        self.router
            .http
            .push((prefix.to_owned(), HttpRoute::Later(serve.clone())));
        self.router
            .http_prefix
            .push((format!("{prefix}/"), HttpRoute::Later(serve)));
        self.router
            .ws
            .push((format!("{prefix}/websocket"), handler));
        self.router.ws.push((
            format!("{prefix}/{{server}}/{{session}}/websocket"),
            Arc::new(crate::sockjs::Bridge(shared)),
        ));
        let bridge = self.router.ws.len() - 1;
        self.router.ws_prefix.push((format!("{prefix}/"), bridge));
        self
    }

    /// Serves the counters of every worker at `path` in the Prometheus text format.
    pub fn metrics_route(self, path: &str) -> Self {
        self.http_route(path, |_, hub| {
            HttpResponse::text(200, hub.metrics().to_prometheus())
                .header("X-Content-Type-Options", "nosniff")
        })
    }

    /// Binds, starts the workers and returns at once.
    pub fn start(self) -> Result<ServerHandle, ServerError> {
        if let Some(e) = self.errors.first() {
            return Err(ServerError::Config(ConfigError::Invalid(e.clone())));
        }
        let config = self.config;
        config.validate()?;
        #[cfg(feature = "sockjs")]
        for s in &self.sockjs {
            let _ = s.engine_origins.set(config.allowed_origins.clone());
        }
        let count = config.worker_count();
        let mut specs = listener_specs(&config)?;
        specs.extend(raw_specs(&config, &self.router, &specs)?);
        let (listeners, addrs) = bind_all(&specs, count, config.backlog)?;
        let local_addr = addrs[0].addr;

        let mut polls = Vec::with_capacity(count);
        let mut peers = Vec::with_capacity(count);
        let mut inboxes = Vec::with_capacity(count);
        for _ in 0..count {
            let poll = mio::Poll::new()?;
            let (peer, inbox) = Peer::new(&poll)?;
            polls.push(poll);
            peers.push(peer);
            inboxes.push(inbox);
        }
        let router = Arc::new(self.router);
        let hub = Hub {
            inner: Arc::new(HubInner {
                peers: peers.into(),
                ws_paths: router.ws.iter().map(|(p, _)| p.clone()).collect(),
                metrics: (0..count)
                    .map(|_| Arc::new(WorkerMetrics::default()))
                    .collect(),
            }),
        };
        let shutdown = Arc::new(AtomicBool::new(false));
        let admission = Arc::new(Admission::new(
            config.max_connections,
            config.max_connections_per_ip,
        ));
        let config = Arc::new(config);

        let mut threads = Vec::with_capacity(count);
        for (index, ((poll, inbox), listeners)) in
            polls.into_iter().zip(inboxes).zip(listeners).enumerate()
        {
            let worker = Worker::new(
                index,
                poll,
                listeners,
                inbox,
                hub.clone(),
                shutdown.clone(),
                admission.clone(),
                router.clone(),
                config.clone(),
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("switchboard-worker-{index}"))
                .spawn(move || worker.run())?;
            threads.push(thread);
        }
        // The main address first: scripts and tests read the first `local_addr=`.
        for a in &addrs {
            match a.raw {
                None => {
                    tracing::info!(local_addr = %a.addr, workers = count, tls = a.tls, "listening")
                }
                Some(framing) => tracing::info!(raw_addr = %a.addr, tls = a.tls, ?framing,
                    "listening for raw TCP"),
            }
        }

        Ok(ServerHandle {
            local_addr,
            addrs,
            #[cfg(feature = "tls")]
            tls: specs.iter().filter_map(|s| s.tls.clone()).collect(),
            stopper: Stopper {
                shutdown,
                hub: hub.clone(),
            },
            hub,
            threads,
        })
    }

    /// Starts the server and blocks until it stops.
    pub fn run(self) -> Result<(), ServerError> {
        self.start()?.join();
        Ok(())
    }
}

/// Asks a running server to shut down; cheap to clone and send to another thread (a
/// signal handler, say).
#[derive(Clone, Debug)]
pub struct Stopper {
    shutdown: Arc<AtomicBool>,
    hub: Hub,
}

impl Stopper {
    /// Starts a graceful shutdown: listeners close, open connections get close 1001, and
    /// workers exit when their connections are gone or `shutdown_timeout_ms` passes.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.hub.wake_all();
    }
}

/// What each listener serves: the main address (TLS when `[tls]` has no address of its
/// own), then the `[tls]` address.
fn listener_specs(config: &Config) -> Result<Vec<Arc<ListenerSpec>>, ServerError> {
    #[cfg(feature = "tls")]
    {
        let acceptor = match &config.tls {
            Some(t) => Some(Arc::new(crate::io::tls::TlsAcceptor::new(
                crate::io::tls::TlsFiles {
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                },
            )?)),
            None => None,
        };
        let tls_listen = config.tls.as_ref().and_then(|t| t.listen);
        let mut specs = vec![Arc::new(ListenerSpec {
            addr: config.listen,
            tls: acceptor.clone().filter(|_| tls_listen.is_none()),
            raw: None,
        })];
        if let Some(addr) = tls_listen {
            specs.push(Arc::new(ListenerSpec {
                addr,
                tls: acceptor,
                raw: None,
            }));
        }
        Ok(specs)
    }
    #[cfg(not(feature = "tls"))]
    Ok(vec![Arc::new(ListenerSpec {
        addr: config.listen,
        raw: None,
    })])
}

/// The `[[raw]]` listeners, after the others (whose TLS acceptor they share).
fn raw_specs(
    config: &Config,
    router: &crate::router::Router,
    others: &[Arc<ListenerSpec>],
) -> Result<Vec<Arc<ListenerSpec>>, ServerError> {
    let mut specs = Vec::with_capacity(config.raw.len());
    for r in &config.raw {
        let Some(route) = router.ws_route(&r.route) else {
            let e = format!(
                "raw listener {}: no WebSocket route {:?}",
                r.listen, r.route
            );
            return Err(ServerError::Config(ConfigError::Invalid(e)));
        };
        let max = match r.max_message_size {
            0 => config.max_message_size,
            n => n,
        };
        #[cfg(feature = "tls")]
        let tls = match r.tls {
            true => others.iter().find_map(|s| s.tls.clone()),
            false => None,
        };
        let _ = others;
        specs.push(Arc::new(ListenerSpec {
            addr: r.listen,
            #[cfg(feature = "tls")]
            tls,
            raw: Some(crate::reactor::RawSpec {
                route,
                path: r.route.as_str().into(),
                framing: r.framing,
                max,
            }),
        }));
    }
    Ok(specs)
}

/// Binds every spec's address once per worker: the listeners by worker, and each
/// spec's bound address.
fn bind_all(
    specs: &[Arc<ListenerSpec>],
    count: usize,
    backlog: i32,
) -> Result<(Vec<Vec<WorkerListener>>, Vec<ListenerAddr>), ServerError> {
    if specs.len() > MAX_LISTENERS {
        let e = format!("at most {MAX_LISTENERS} listening addresses");
        return Err(ServerError::Config(ConfigError::Invalid(e)));
    }
    let mut by_worker: Vec<Vec<WorkerListener>> = (0..count).map(|_| Vec::new()).collect();
    let mut addrs = Vec::with_capacity(specs.len());
    for spec in specs {
        let addr = spec.addr;
        let socks = bind_listeners(addr, count, backlog)
            .map_err(|source| ServerError::Bind { addr, source })?;
        addrs.push(ListenerAddr {
            addr: socks[0].local_addr()?,
            tls: spec.is_tls(),
            raw: spec.raw.as_ref().map(|r| r.framing),
        });
        for (worker, sock) in by_worker.iter_mut().zip(socks) {
            worker.push(WorkerListener {
                sock,
                spec: spec.clone(),
            });
        }
    }
    Ok((by_worker, addrs))
}

/// Reads the certificate and key of every TLS listener again, for new connections; open
/// ones keep their sessions. Cheap to clone and send to another thread (a `SIGHUP`
/// handler).
#[cfg(feature = "tls")]
#[derive(Clone, Debug)]
pub struct TlsReloader(Vec<Arc<crate::io::tls::TlsAcceptor>>);

#[cfg(feature = "tls")]
impl TlsReloader {
    /// Reloads every TLS listener's files; how many were reloaded. A listener whose new
    /// files are bad keeps its old certificate, and the first such error is returned
    /// after the others were tried.
    pub fn reload(&self) -> Result<usize, crate::io::tls::TlsError> {
        let mut first_err = None;
        let mut done = 0;
        for acceptor in &self.0 {
            match acceptor.reload() {
                Ok(()) => {
                    done += 1;
                    tracing::info!(cert = %acceptor.cert_path().display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!("TLS certificate not reloaded, the old one stays: {e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(done), Err)
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    addrs: Vec<ListenerAddr>,
    #[cfg(feature = "tls")]
    tls: Vec<Arc<crate::io::tls::TlsAcceptor>>,
    stopper: Stopper,
    hub: Hub,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every listening address, the main one first.
    pub fn addrs(&self) -> &[ListenerAddr] {
        &self.addrs
    }

    /// The first address that speaks TLS, if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find(|a| a.tls).map(|a| a.addr)
    }

    /// The first raw TCP listener's address, if any.
    pub fn raw_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find(|a| a.raw.is_some()).map(|a| a.addr)
    }

    /// A handle that reloads the TLS listeners' certificates from any thread.
    #[cfg(feature = "tls")]
    pub fn tls_reloader(&self) -> TlsReloader {
        TlsReloader(self.tls.clone())
    }

    /// The hub, to send to connections from any thread.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// A handle that can stop the server from any thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits until every worker has exited.
    pub fn join(self) {
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }

    /// Shuts down gracefully and waits for the workers.
    pub fn stop(self) {
        self.stopper.stop();
        self.join();
    }
}
