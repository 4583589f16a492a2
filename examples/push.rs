//! A push service: a plain thread, owned by the application, pushes the time to every
//! client on `/time` once a second through the hub.
//!
//! Run: `cargo run --example push`, then connect to ws://127.0.0.1:9001/time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard::{Context, Handler, Message, Server};

/// Clients only listen; anything they send is ignored.
struct Listener;

impl Handler for Listener {
    fn on_message(&self, _ctx: &mut Context<'_>, _msg: Message) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let handle = Server::builder()
        .listen("127.0.0.1:9001".parse()?)
        .route("/time", Listener)
        .start()?;
    let hub = handle.hub();
    std::thread::spawn(move || loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        hub.broadcast("/time", Message::Text(format!("{{\"now_ms\":{now}}}")));
        std::thread::sleep(Duration::from_secs(1));
    });
    handle.join();
    Ok(())
}
