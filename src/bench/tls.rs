//! The bench client's TLS (`wss://` targets), on rustls with the aws-lc-rs provider like
//! the server: which CA to trust, and a client session per connection.
//!
//! Owns the client configuration and the session wrapper [`Session`] that `conn.rs`
//! drives (plaintext in and out, records to and from the socket). Without the `tls`
//! feature the types exist but cannot be built, so the rest of the bench needs no
//! `cfg`: a `wss://` URL is refused with a clear error.

use std::io;
use std::path::Path;

use super::BenchError;

#[cfg(feature = "tls")]
mod imp {
    use std::io::{self, Read, Write};
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use crate::bench::BenchError;

    /// What every connection to a `wss://` target shares.
    #[derive(Clone, Debug)]
    pub(crate) struct TlsTarget {
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    }

    impl TlsTarget {
        /// Trusts the certificates in `ca` (PEM) only, for server name `host`.
        pub(crate) fn new(ca: &Path, host: &str) -> Result<TlsTarget, BenchError> {
            let bad = |why: String| BenchError::Invalid(format!("--ca {}: {why}", ca.display()));
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate in the file".into()));
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.to_owned()).map_err(|e| {
                BenchError::Invalid(format!("{host:?} is not a TLS server name: {e}"))
            })?;
            Ok(TlsTarget {
                config: Arc::new(config),
                name,
            })
        }

        pub(crate) fn session(&self) -> io::Result<Session> {
            let mut c = ClientConnection::new(self.config.clone(), self.name.clone())
                .map_err(io::Error::other)?;
            // The connection queues whole frames (64 KiB echoes, 4 in flight): rustls'
            // default 64 KiB of buffered plaintext would refuse part of them.
            c.set_buffer_limit(None);
            Ok(Session(Box::new(c)))
        }

        /// A blocking TLS stream over `sock`, handshake done.
        pub(crate) fn stream(
            &self,
            mut sock: std::net::TcpStream,
        ) -> io::Result<Box<dyn super::super::Stream>> {
            let mut s = self.session()?;
            while s.0.is_handshaking() {
                s.0.complete_io(&mut sock)?;
            }
            Ok(Box::new(rustls::StreamOwned::new(*s.0, sock)))
        }
    }

    /// One connection's client session.
    #[derive(Debug)]
    pub(crate) struct Session(Box<ClientConnection>);

    impl Session {
        /// Queues plaintext (buffered until the handshake completes).
        pub(crate) fn write_plain(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.writer().write_all(data)
        }

        pub(crate) fn wants_write(&self) -> bool {
            self.0.wants_write()
        }

        pub(crate) fn write_tls(&mut self, w: &mut dyn Write) -> io::Result<usize> {
            self.0.write_tls(w)
        }

        /// Reads records from `r` and decrypts them: `Ok(0)` at EOF.
        pub(crate) fn read_tls(&mut self, r: &mut dyn Read) -> io::Result<usize> {
            let n = self.0.read_tls(r)?;
            self.0.process_new_packets().map_err(io::Error::other)?;
            Ok(n)
        }

        /// Decrypted bytes: `Ok(0)` once the server closed the session, `WouldBlock`
        /// when no more are buffered.
        pub(crate) fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.reader().read(buf)
        }
    }
}

#[cfg(not(feature = "tls"))]
mod imp {
    use std::io::{self, Read, Write};
    use std::path::Path;

    use crate::bench::BenchError;

    /// Cannot exist in a build without TLS.
    #[derive(Clone, Debug)]
    pub(crate) enum TlsTarget {}

    impl TlsTarget {
        pub(crate) fn new(_ca: &Path, _host: &str) -> Result<TlsTarget, BenchError> {
            Err(BenchError::Invalid(
                "wss:// needs a build with TLS (cargo feature `tls`)".into(),
            ))
        }
        pub(crate) fn session(&self) -> io::Result<Session> {
            match *self {}
        }
        pub(crate) fn stream(
            &self,
            _sock: std::net::TcpStream,
        ) -> io::Result<Box<dyn super::super::Stream>> {
            match *self {}
        }
    }

    /// Cannot exist in a build without TLS.
    #[derive(Debug)]
    pub(crate) enum Session {}

    impl Session {
        pub(crate) fn write_plain(&mut self, _: &[u8]) -> io::Result<()> {
            match *self {}
        }
        pub(crate) fn wants_write(&self) -> bool {
            match *self {}
        }
        pub(crate) fn write_tls(&mut self, _: &mut dyn Write) -> io::Result<usize> {
            match *self {}
        }
        pub(crate) fn read_tls(&mut self, _: &mut dyn Read) -> io::Result<usize> {
            match *self {}
        }
        pub(crate) fn read_plain(&mut self, _: &mut [u8]) -> io::Result<usize> {
            match *self {}
        }
    }
}

pub(crate) use imp::{Session, TlsTarget};

/// The TLS settings for a `wss://` target on `host`: `--ca` is required (the system's
/// roots are not loaded; a bench targets a test server).
pub(crate) fn target_for(ca: Option<&Path>, host: &str) -> Result<TlsTarget, BenchError> {
    let ca = ca.ok_or_else(|| {
        BenchError::Invalid(
            "wss:// needs --ca FILE (the PEM CA that signed the server's certificate)".into(),
        )
    })?;
    // The name checked against the certificate: the host without its port.
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    TlsTarget::new(ca, name)
}

/// `io::ErrorKind::UnexpectedEof` from a TLS reader: the server closed TCP without a
/// close_notify, which a bench treats as a close.
pub(crate) fn is_eof(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}
