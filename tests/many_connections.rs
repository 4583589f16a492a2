//! 1,000 concurrent connections on a single worker, all open at once, each echoed.

mod common;

use common::*;
use tungstenite::Message;

#[test]
fn a_thousand_concurrent_connections_on_one_worker() {
    let server = start_echo(config(1));
    let addr = server.local_addr();
    let mut clients: Vec<_> = (0..1000).map(|_| connect(addr, "/")).collect();
    // Every connection sends before any reads, so all 1,000 are open and busy at once.
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(Message::Text(format!("client {i}"))).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read().unwrap(), Message::Text(format!("client {i}")));
    }
    for c in clients.iter_mut() {
        c.close(None).unwrap();
    }
    for c in clients.iter_mut() {
        loop {
            match c.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("unclean close: {e}"),
            }
        }
    }
    drop(clients);
    // No slot leaks: every connection is released once the clients are gone.
    let hub = server.hub();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hub.metrics().connections_open > 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", hub.metrics());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(hub.metrics().connections_total, 1000);
    server.stop();
}
