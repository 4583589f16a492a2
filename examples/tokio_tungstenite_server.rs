//! The peer server the benchmarks compare against: tokio-tungstenite, written the way
//! its own examples are (`accept_hdr_async`, `split`, `forward` for echo; a broadcast
//! channel for fan-out). Every path echoes except `/broadcast`, as in `switchboard echo`.
//!
//! Run: `cargo run --release --example tokio_tungstenite_server -- 127.0.0.1:9002 [threads]
//! [cert.pem key.pem]` (threads: 1 = a current-thread runtime, the default, comparable to
//! `--workers 1`; with a certificate and key it speaks `wss://` through tokio-rustls on
//! the aws-lc-rs provider, as switchboard does, ALPN `http/1.1`).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

// The callback signature is tungstenite's; its error type is not ours to shrink.
#[allow(clippy::result_large_err)]
async fn accept(stream: TcpStream, tls: Option<TlsAcceptor>, hub: broadcast::Sender<Message>) {
    let _ = stream.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                serve(stream, hub).await
            }
        }
        None => serve(stream, hub).await,
    }
}

#[allow(clippy::result_large_err)]
async fn serve<S>(stream: S, hub: broadcast::Sender<Message>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut path = String::new();
    let ws = match tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    })
    .await
    {
        Ok(ws) => ws,
        Err(_) => return,
    };
    let (mut write, read) = ws.split();
    if path == "/broadcast" {
        let mut rx = hub.subscribe();
        let forward = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(msg) => {
                        if write.send(msg).await.is_err() {
                            break;
                        }
                    }
                    // A subscriber that fell behind skips what it missed.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let _ = read
            .try_for_each(|msg| {
                if msg.is_text() || msg.is_binary() {
                    let _ = hub.send(msg);
                }
                futures_util::future::ready(Ok(()))
            })
            .await;
        forward.abort();
    } else {
        let _ = read
            .try_filter(|msg| futures_util::future::ready(msg.is_text() || msg.is_binary()))
            .forward(write)
            .await;
    }
}

/// A TLS acceptor for `cert` and `key` (PEM files).
fn tls_acceptor(cert: &str, key: &str) -> std::io::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(std::io::Error::other)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9002".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let tls = match (args.next(), args.next()) {
        (Some(cert), Some(key)) => Some(tls_acceptor(&cert, &key)?),
        _ => None,
    };
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("tokio-tungstenite listening on {}", listener.local_addr()?);
        // Lagging subscribers skip messages (RecvError::Lagged) rather than grow memory.
        let (hub, _) = broadcast::channel::<Message>(4096);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(accept(stream, tls.clone(), hub.clone()));
        }
    })
}
