//! The peer server the benchmarks compare against: tokio-tungstenite, written the way
//! its own examples are (`accept_hdr_async`, `split`, `forward` for echo; a broadcast
//! channel for fan-out). Every path echoes except `/broadcast`, as in `switchboard echo`.
//!
//! Run: `cargo run --release --example tokio_tungstenite_server -- 127.0.0.1:9002 [threads]`
//! (threads: 1 = a current-thread runtime, the default, comparable to `--workers 1`).

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

// The callback signature is tungstenite's; its error type is not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, hub: broadcast::Sender<Message>) {
    let _ = stream.set_nodelay(true);
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

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9002".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
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
            tokio::spawn(serve(stream, hub.clone()));
        }
    })
}
