//! TLS under a connection (rustls, aws-lc-rs provider): the certificate a listener serves, and
//! one connection's session as a byte pump between the socket and the plaintext its
//! protocol machine sees.
//!
//! Owns loading and reloading a listener's PEM files ([`TlsAcceptor`]) and the session
//! of one connection ([`TlsIo`]). It knows no protocol above TLS; the worker feeds the
//! plaintext to the connection's machine as it would a plain socket's bytes.
//!
//! The write path keeps the plain socket's "one write per wake-up": everything the
//! connection has queued is encrypted first (small frames gathered into one record),
//! then the records leave in one write. The session uses rustls' unbuffered API, so the
//! buffers are the worker's (its read buffer, a spare output buffer per thread) and an
//! idle connection holds none.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::UnbufferedServerConnection;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;

use super::ReadOutcome;
use crate::conn::{OutQueue, StoragePool};

/// What is wrong with a listener's certificate or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the right kind.
    #[error("cannot read {what} from {path}: {detail}")]
    File {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The key cannot sign (unsupported type) or does not belong to the certificate.
    #[error("{path}: {detail}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

/// The PEM files one listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A listener's TLS settings: the rustls configuration and the certificate it serves,
/// which [`TlsAcceptor::reload`] replaces for new connections while open ones go on.
#[derive(Debug)]
pub(crate) struct TlsAcceptor {
    files: TlsFiles,
    cert: Arc<CurrentCert>,
    config: Arc<ServerConfig>,
}

/// The certificate handed to each new handshake.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.0.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsAcceptor {
    /// Loads `files` and builds the configuration: TLS 1.2 and 1.3, ALPN `http/1.1`.
    pub(crate) fn new(files: TlsFiles) -> Result<TlsAcceptor, TlsError> {
        let key = load_certified_key(&files)?;
        let cert = Arc::new(CurrentCert(RwLock::new(key)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| TlsError::Key {
                path: files.key.clone(),
                detail: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor {
            files,
            cert,
            config: Arc::new(config),
        })
    }

    /// Reads the files again; new handshakes get the new certificate, open connections
    /// keep their sessions. On error the old certificate stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.files)?;
        match self.cert.0.write() {
            Ok(mut k) => *k = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        Ok(())
    }

    /// The certificate file, for logs.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.files.cert
    }

    /// A session for a connection just accepted (the socket back on failure).
    pub(crate) fn session(&self, sock: TcpStream) -> Result<TlsIo, (TcpStream, io::Error)> {
        match UnbufferedServerConnection::new(self.config.clone()) {
            Ok(conn) => Ok(TlsIo::new(sock, conn)),
            Err(e) => Err((sock, io::Error::other(e))),
        }
    }
}

fn load_certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let file_err = |what, path: &Path, detail: String| TlsError::File {
        what,
        path: path.to_owned(),
        detail,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| file_err("certificate", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        let detail = "no CERTIFICATE block".to_owned();
        return Err(file_err("certificate", &files.cert, detail));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_err("private key", &files.key, e.to_string()))?;
    let key_err = |detail: String| TlsError::Key {
        path: files.key.clone(),
        detail,
    };
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        key_err(format!(
            "the key does not match {}: {e}",
            files.cert.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

/// Why a TLS connection failed before carrying any plaintext, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// The client spoke plain HTTP to the TLS port; it was told so in plain text.
    PlainHttp,
    /// Anything else: a bad or refused handshake, a client that went away.
    Handshake,
}

/// One connection's TLS session and its socket, on rustls' unbuffered API: the
/// connection holds TLS bytes only while a record is incomplete or its output is not
/// yet written, so an idle session is its keys and state and no buffer (the buffered
/// API keeps a 4 KiB receive buffer for the connection's whole life).
pub(crate) struct TlsIo {
    sock: TcpStream,
    conn: UnbufferedServerConnection,
    /// The start of a record (or a handshake flight) whose rest has not arrived; empty,
    /// with no allocation, between records.
    incoming: Vec<u8>,
    /// Records not yet written (handshake messages, alerts, encrypted output), from
    /// `out_pos`; given back to the thread's spare once written.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// The first bytes were looked at for plain HTTP.
    peeked: bool,
    /// The socket reported end of stream, or the peer sent close_notify.
    eof: bool,
    /// The finished handshake was reported once.
    handshake_reported: bool,
}

impl std::fmt::Debug for TlsIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIo")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

/// The answer to a plain HTTP request on a TLS port (nginx gives a page like it).
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 56\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// or wss:// to reach it\n";

/// Most encrypted bytes queued before they are written: the output queue keeps the rest
/// of its plaintext until these have gone.
const OUTGOING_MAX: usize = 256 * 1024;

thread_local! {
    /// A worker's spare output buffer: a connection takes it to encrypt into and gives
    /// it back once its records are written, so writing allocates nothing per turn.
    static SPARE_OUT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

fn take_spare() -> Vec<u8> {
    SPARE_OUT.with(|s| s.take())
}

fn give_spare(mut v: Vec<u8>) {
    v.clear();
    if v.capacity() <= OUTGOING_MAX + 64 * 1024 {
        SPARE_OUT.with(|s| {
            let old = s.take();
            s.set(if old.capacity() >= v.capacity() {
                old
            } else {
                v
            });
        });
    }
}

impl TlsIo {
    fn new(sock: TcpStream, conn: UnbufferedServerConnection) -> TlsIo {
        TlsIo {
            sock,
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            out_pos: 0,
            peeked: false,
            eof: false,
            handshake_reported: false,
        }
    }

    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Whether the handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True once, when the handshake has completed.
    pub(crate) fn take_handshake_done(&mut self) -> bool {
        if self.handshake_reported || self.conn.is_handshaking() {
            return false;
        }
        self.handshake_reported = true;
        true
    }

    /// Whether encrypted bytes wait to be written (handshake messages, alerts).
    pub(crate) fn wants_write(&self) -> bool {
        self.out_pos < self.outgoing.len()
    }

    /// Decrypts into `buf`: TLS bytes are read into its second half (after what is left
    /// of an incomplete record) and their plaintext is copied to its start. `more` until
    /// the socket has given all it had (or always, with `until_blocked`).
    pub(crate) fn read(&mut self, buf: &mut [u8], until_blocked: bool) -> io::Result<ReadOutcome> {
        if !self.peeked {
            self.peeked = true;
            if self.speaks_plain_http()? {
                let _ = self.sock.write(PLAIN_HTTP_ANSWER);
                let _ = self.sock.shutdown(Shutdown::Write);
                return Err(failure(TlsFailure::PlainHttp, "plain HTTP on a TLS port"));
            }
        }
        let half = buf.len() / 2;
        let (plain, tls) = buf.split_at_mut(half);
        loop {
            if self.eof {
                return Ok(ReadOutcome::Eof);
            }
            let mut filled = self.incoming.len();
            if filled >= tls.len() {
                let why = "a TLS record or handshake flight larger than the read buffer";
                return Err(failure(TlsFailure::Handshake, why));
            }
            tls[..filled].copy_from_slice(&self.incoming);
            self.incoming = Vec::new();
            let mut drained = false;
            match self.sock.read(&mut tls[filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    drained = filled + n < tls.len();
                    filled += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let mut n = 0;
            let used = match self.process(&mut tls[..filled], plain, &mut n) {
                Ok(used) => used,
                // No alert: after an error rustls' unbuffered state may no longer match
                // the bytes held, and the peer learns enough from the close.
                Err(e) => return Err(failure(TlsFailure::Handshake, &e.to_string())),
            };
            if used < filled {
                self.incoming = tls[used..filled].to_vec();
            }
            if n > 0 {
                let more = until_blocked || self.eof || !drained;
                return Ok(ReadOutcome::Data { n, more });
            }
            if drained && !self.eof {
                return Ok(ReadOutcome::Blocked);
            }
        }
    }

    /// Feeds `tls` to the session until it needs more: plaintext is appended to
    /// `plain[*n..]`, handshake records to `outgoing`. Returns how many bytes of `tls` were
    /// used; the rest is an incomplete record.
    fn process(
        &mut self,
        tls: &mut [u8],
        plain: &mut [u8],
        n: &mut usize,
    ) -> Result<usize, rustls::Error> {
        let mut used = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                process_records(&mut self.conn, &mut tls[used..])?;
            match state? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let p = record.payload;
                        // Plaintext is never longer than the records it came in, which
                        // all fit in `tls`, as long as `plain`.
                        let Some(dst) = plain.get_mut(*n..*n + p.len()) else {
                            return Err(rustls::Error::General("plaintext overflow".into()));
                        };
                        dst.copy_from_slice(p);
                        *n += p.len();
                    }
                }
                ConnectionState::EncodeTlsData(mut data) => encode(&mut data, &mut self.outgoing)?,
                // The records go out with the connection's next write.
                ConnectionState::TransmitTlsData(sent) => sent.done(),
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.eof = true;
                    return Ok(used + discard);
                }
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => {
                    return Ok(used + discard);
                }
                _ => return Err(rustls::Error::General("unexpected TLS state".into())),
            }
            used += discard;
        }
    }

    /// Whether the connection's first bytes look like an HTTP request rather than a TLS
    /// record (which starts with 0x16 for a handshake).
    fn speaks_plain_http(&mut self) -> io::Result<bool> {
        let mut first = [0u8; 1];
        match self.sock.peek(&mut first) {
            Ok(1) => Ok(first[0].is_ascii_uppercase()),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing yet: look again at the next read.
                self.peeked = false;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Encrypts what `out` holds and writes the records: whether both are empty now,
    /// and how many plaintext bytes were taken.
    pub(crate) fn write_from(
        &mut self,
        out: &mut OutQueue,
        pool: &mut StoragePool,
    ) -> io::Result<(bool, usize)> {
        let mut taken = 0;
        loop {
            if !self.write_out()? {
                return Ok((false, taken));
            }
            if out.is_empty() || self.conn.is_handshaking() {
                // Plaintext waits for the handshake.
                return Ok((out.is_empty(), taken));
            }
            let mut sink = Encrypt {
                conn: &mut self.conn,
                incoming: &mut self.incoming,
                outgoing: &mut self.outgoing,
            };
            let n = out.flush(&mut sink, pool)?.1;
            taken += n;
            if n == 0 && !self.wants_write() {
                return Ok((out.is_empty(), taken));
            }
        }
    }

    /// Writes the queued records: whether they all went.
    fn write_out(&mut self) -> io::Result<bool> {
        while self.out_pos < self.outgoing.len() {
            match self.sock.write(&self.outgoing[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.outgoing.capacity() > 0 {
            give_spare(std::mem::take(&mut self.outgoing));
        }
        self.out_pos = 0;
        Ok(true)
    }

    /// Sends close_notify, then ends our side of the TCP stream.
    pub(crate) fn shutdown_write(&mut self) {
        if let Ok(status) = process_records(&mut self.conn, &mut self.incoming) {
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = status.state {
                let _ = grow_into(&mut self.outgoing, 64, |buf| {
                    traffic.queue_close_notify(buf)
                });
            }
        }
        let _ = self.write_out();
        let _ = self.sock.shutdown(Shutdown::Write);
    }
}

/// `conn.process_tls_records(incoming)`, with a panic inside rustls (a bug, but one a
/// peer might reach) contained to this connection instead of the worker.
fn process_records<'c, 'i>(
    conn: &'c mut UnbufferedServerConnection,
    incoming: &'i mut [u8],
) -> Result<UnbufferedStatus<'c, 'i, rustls::server::ServerConnectionData>, rustls::Error> {
    let common: &'c mut rustls::unbuffered::UnbufferedConnectionCommon<_> = conn;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let common = common;
        common.process_tls_records(incoming)
    }))
    .map_err(|_| rustls::Error::General("rustls panicked on this connection's input".into()))
}

/// Appends a handshake record to `outgoing`.
fn encode(
    data: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    grow_into(outgoing, 4096, |buf| match data.encode(buf) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(e)) => Err(e.required_size),
        Err(EncodeError::AlreadyEncoded) => Ok(0),
    })
    .map(|_| ())
    .map_err(|_| rustls::Error::General("TLS output too large".into()))
}

/// Appends what `write` puts in a buffer to `outgoing`: `hint` bytes of room first, more
/// if `write` asks (`Err(required)`). The buffer comes from the thread's spare when
/// `outgoing` has none.
fn grow_into<E: RequiredSize>(
    outgoing: &mut Vec<u8>,
    hint: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<usize, E> {
    if outgoing.capacity() == 0 {
        *outgoing = take_spare();
    }
    let start = outgoing.len();
    let mut room = hint;
    loop {
        outgoing.resize(start + room, 0);
        match write(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(n);
            }
            Err(e) => match e.required() {
                Some(need) if need > room => room = need,
                _ => {
                    outgoing.truncate(start);
                    return Err(e);
                }
            },
        }
    }
}

/// An error that may say how much room was missing.
trait RequiredSize {
    fn required(&self) -> Option<usize>;
}

impl RequiredSize for usize {
    fn required(&self) -> Option<usize> {
        Some(*self)
    }
}

impl RequiredSize for EncryptError {
    fn required(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(e) => Some(e.required_size),
            _ => None,
        }
    }
}

/// Plaintext into the session: each write is encrypted into `outgoing` as records. Past
/// [`OUTGOING_MAX`] queued bytes it reads as `WouldBlock`, so the output queue keeps the
/// rest until the records are written.
struct Encrypt<'a> {
    conn: &'a mut UnbufferedServerConnection,
    /// The incomplete record the session has seen part of: every call must show it the
    /// bytes it has not discarded.
    incoming: &'a mut Vec<u8>,
    outgoing: &'a mut Vec<u8>,
}

impl Write for Encrypt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.outgoing.len() >= OUTGOING_MAX {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = buf.len().min(OUTGOING_MAX);
        loop {
            let status = process_records(self.conn, self.incoming).map_err(io::Error::other)?;
            if status.discard > 0 {
                // Only an incomplete record is ever held, so nothing is discarded in
                // practice; were it, the state that said so is done with.
                let discard = status.discard;
                let state = status.state;
                drop(state);
                self.incoming.drain(..discard.min(self.incoming.len()));
                continue;
            }
            match status.state.map_err(io::Error::other)? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    // A record per 16 KiB, each with a header, a tag and a type byte.
                    let hint = take + (take / 16384 + 1) * 64;
                    grow_into(self.outgoing, hint, |out| {
                        traffic.encrypt(&buf[..take], out)
                    })
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
                    return Ok(take);
                }
                // A key update or a ticket to send first.
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(&mut data, self.outgoing).map_err(io::Error::other)?
                }
                ConnectionState::TransmitTlsData(sent) => sent.done(),
                _ => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS failure as an I/O error the worker can tell apart.
fn failure(kind: TlsFailure, detail: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        TlsFailureError(kind, detail.to_owned()),
    )
}

/// The error inside [`failure`]'s `io::Error`.
#[derive(Debug)]
pub(crate) struct TlsFailureError(pub(crate) TlsFailure, String);

impl std::fmt::Display for TlsFailureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.1)
    }
}

impl std::error::Error for TlsFailureError {}

/// The kind of TLS failure behind `e`, if it is one.
pub(crate) fn failure_of(e: &io::Error) -> Option<TlsFailure> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsFailureError>())
        .map(|f| f.0)
}
