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
    server.stop();
}
