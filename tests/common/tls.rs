//! A test CA made in the test (rcgen), server certificates it signs, and TLS clients that
//! trust it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
pub type TlsClient = tungstenite::WebSocket<TlsStream>;

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1 with common name `cn`: (cert PEM,
    /// key PEM, cert DER).
    pub fn issue(&self, cn: &str) -> (String, String, Vec<u8>) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Writes a certificate with common name `cn` and its key into `dir`: their paths
    /// and the certificate's DER.
    pub fn write_server_files(&self, dir: &Path, cn: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let (cert, key, der) = self.issue(cn);
        std::fs::create_dir_all(dir).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Written to the side and renamed, as a certificate tool would.
        std::fs::write(dir.join("cert.pem.new"), cert).unwrap();
        std::fs::write(dir.join("key.pem.new"), key).unwrap();
        std::fs::rename(dir.join("cert.pem.new"), &c).unwrap();
        std::fs::rename(dir.join("key.pem.new"), &k).unwrap();
        (c, k, der)
    }

    /// The CA certificate in a file (for Python, Chromium and friends).
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.cert_pem).unwrap();
        p
    }

    /// A rustls client configuration trusting this CA only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config_for(rustls::DEFAULT_VERSIONS)
    }

    /// The same, speaking only `versions` (TLS 1.2 alone, say).
    pub fn client_config_for(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A fresh directory for a test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "switchboard-tls-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TLS connection to `addr` (named `localhost`) with `config`, handshake done.
pub fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// A tungstenite client over TLS on `path`.
pub fn wss(addr: SocketAddr, path: &str, config: Arc<ClientConfig>) -> TlsClient {
    let stream = tls_connect(addr, config);
    let (ws, resp) = tungstenite::client(format!("wss://localhost:{}{path}", addr.port()), stream)
        .expect("wss handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The DER of the certificate the server presented.
pub fn peer_cert(s: &TlsStream) -> Vec<u8> {
    let certs = s.conn.peer_certificates().expect("a certificate");
    certs[0].as_ref().to_vec()
}

/// One HTTP/1.1 request over `s`; the whole response (Connection: close).
pub fn https_get(s: &mut TlsStream, path: &str) -> String {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
