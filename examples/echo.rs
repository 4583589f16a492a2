//! The smallest server: every message comes back to its sender.
//!
//! Run: `cargo run --example echo` then connect to ws://127.0.0.1:9001/echo
//! (e.g. `python3 -m websockets ws://127.0.0.1:9001/echo`).

use switchboard::{Context, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        ctx.send(msg);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    Server::builder()
        .listen("127.0.0.1:9001".parse()?)
        .route("/echo", Echo)
        .run()?;
    Ok(())
}
