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
//! then the records leave in one vectored `write_tls`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

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
        match ServerConnection::new(self.config.clone()) {
            Ok(conn) => Ok(TlsIo {
                sock,
                conn,
                peeked: false,
                eof: false,
                handshake_reported: false,
            }),
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

/// One connection's TLS session and its socket.
pub(crate) struct TlsIo {
    sock: TcpStream,
    conn: ServerConnection,
    /// The first bytes were looked at for plain HTTP.
    peeked: bool,
    /// The socket reported end of stream.
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

impl TlsIo {
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
        self.conn.wants_write()
    }

    /// Decrypts into `buf`: plaintext already decrypted first, then the socket's bytes.
    /// Says `more` until the socket would block, since a record may hold more than
    /// `buf` takes.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        if !self.peeked {
            self.peeked = true;
            if self.speaks_plain_http()? {
                let _ = self.sock.write(PLAIN_HTTP_ANSWER);
                let _ = self.sock.shutdown(Shutdown::Write);
                return Err(failure(TlsFailure::PlainHttp, "plain HTTP on a TLS port"));
            }
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => return Ok(ReadOutcome::Data { n, more: true }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(ReadOutcome::Eof),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(ReadOutcome::Eof);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // The alert rustls queued tells the peer why; best effort.
                let _ = self.conn.write_tls(&mut self.sock);
                return Err(failure(TlsFailure::Handshake, &e.to_string()));
            }
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
            let mut n = 0;
            if !out.is_empty() {
                n = out.flush(&mut Plaintext(&mut self.conn), pool)?.1;
                taken += n;
            }
            if n == 0 && !self.conn.wants_write() {
                // Nothing taken and nothing to write: rustls holds plaintext back until
                // the handshake is done.
                return Ok((out.is_empty(), taken));
            }
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut self.sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, taken)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                return Ok((true, taken));
            }
        }
    }

    /// Sends close_notify, then ends our side of the TCP stream.
    pub(crate) fn shutdown_write(&mut self) {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = self.sock.shutdown(Shutdown::Write);
    }
}

/// Plaintext into the session: rustls encrypts as it takes. A full send buffer reads
/// as `WouldBlock`, so the output queue keeps the rest for after `write_tls`.
struct Plaintext<'a>(&'a mut ServerConnection);

impl Write for Plaintext<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.writer().write(buf)? {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self.0.writer().write_vectored(bufs)? {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
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
