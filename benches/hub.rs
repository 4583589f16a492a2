//! Hub benchmarks: broadcast fan-out (encode once and share vs a copy per recipient) and
//! cross-worker routing through the inboxes, end to end over loopback.
//!
//! Run: `cargo bench --bench hub`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::bench_support::FanoutQueues;
use switchboard::{Config, ConnId, Context, Handler, Message, Server};

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_1000_recipients");
    for size in [64usize, 4096] {
        let msg = Message::Binary(vec![7; size]);
        let mut queues = FanoutQueues::new(1000);
        g.throughput(Throughput::Elements(1000));
        g.bench_with_input(
            BenchmarkId::new("encode_once_shared", size),
            &size,
            |b, _| {
                b.iter(|| {
                    queues.push_shared(black_box(&msg));
                    black_box(queues.queued());
                    queues.clear();
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("copy_per_recipient", size),
            &size,
            |b, _| {
                b.iter(|| {
                    queues.push_copied(black_box(&msg));
                    black_box(queues.queued());
                    queues.clear();
                })
            },
        );
    }
    g.finish();
}

/// Tells each client its id on open; ignores what clients send.
struct Tell;
impl Handler for Tell {
    fn on_open(
        &self,
        ctx: &mut Context<'_>,
        _req: &switchboard::http::Request,
    ) -> Result<(), switchboard::http::HttpResponse> {
        let id = ctx.id().to_string();
        ctx.send_text(id);
        Ok(())
    }
    fn on_message(&self, _ctx: &mut Context<'_>, _msg: Message) {}
}

/// A raw client: the id the server told it, and its socket.
fn client(addr: SocketAddr) -> (ConnId, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    // Read the 101 head and the id frame behind it, in as few reads as they arrive.
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    let id = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let frame = &got[end + 4..];
            if frame.len() >= 2 && frame.len() >= 2 + (frame[1] & 0x7f) as usize {
                break frame[2..2 + (frame[1] & 0x7f) as usize].to_vec();
            }
        }
    };
    (String::from_utf8(id).unwrap().parse().unwrap(), s)
}

fn drain(s: &mut TcpStream, mut bytes: usize, buf: &mut [u8]) {
    while bytes > 0 {
        let n = s.read(buf).unwrap();
        assert!(n > 0);
        bytes -= n;
    }
}

fn routing(c: &mut Criterion) {
    let handle = Server::builder()
        .config(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: 2,
            heartbeat_interval_ms: 0,
            idle_timeout_ms: 0,
            ..Config::default()
        })
        .route("/b", Tell)
        .start()
        .unwrap();
    let hub = handle.hub();
    let clients: Vec<(ConnId, TcpStream)> = (0..100).map(|_| client(handle.local_addr())).collect();
    let mut buf = vec![0u8; 1 << 16];
    const BATCH: usize = 1000;
    let payload = vec![b'x'; 32];
    let frame_len = 2 + payload.len();

    let mut g = c.benchmark_group("hub_routing");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(BATCH as u64));
    // One connection, from the bench thread into its worker's inbox and out its socket.
    g.bench_function("send_to_one_connection_x1000", |b| {
        let (id, _) = &clients[0];
        let mut sock = clients[0].1.try_clone().unwrap();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..BATCH {
                    hub.send(*id, Message::Binary(payload.clone()));
                }
                drain(&mut sock, BATCH * frame_len, &mut buf);
            }
            start.elapsed()
        })
    });
    // 100 connections on both workers; each send_many is one command per worker.
    let ids: Vec<ConnId> = clients.iter().map(|(id, _)| *id).collect();
    let mut socks: Vec<TcpStream> = clients
        .iter()
        .map(|(_, s)| s.try_clone().unwrap())
        .collect();
    g.throughput(Throughput::Elements((10 * ids.len()) as u64));
    g.bench_function("send_many_100_connections_x10", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..10 {
                    hub.send_many(&ids, Message::Binary(payload.clone()));
                }
                for s in socks.iter_mut() {
                    drain(s, 10 * frame_len, &mut buf);
                }
            }
            start.elapsed()
        })
    });
    g.finish();
    handle.stop();
}

/// Connect, upgrade, read the 101, reset: the accept path with one and two workers, each
/// worker with its own SO_REUSEPORT listener.
fn accept(c: &mut Criterion) {
    let mut g = c.benchmark_group("accept");
    g.measurement_time(Duration::from_secs(3));
    for workers in [1usize, 2] {
        let handle = Server::builder()
            .config(Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                workers,
                ..Config::default()
            })
            .route("/b", Tell)
            .start()
            .unwrap();
        let addr = handle.local_addr();
        g.bench_function(
            BenchmarkId::new("handshake_roundtrip_workers", workers),
            |b| {
                b.iter(|| {
                    let (_, s) = client(addr);
                    // Reset instead of FIN: no TIME_WAIT, so the bench cannot run out of
                    // ephemeral ports.
                    socket2::SockRef::from(&s)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                })
            },
        );
        handle.stop();
    }
    g.finish();
}

criterion_group!(benches, fanout, routing, accept);
criterion_main!(benches);
