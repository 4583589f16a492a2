//! A broadcast chat room with nicknames and rooms.
//!
//! Connect to `ws://127.0.0.1:9001/chat?name=alice`. Every text line goes to everyone in
//! your room; `/join ROOM` moves you to another room (everyone starts in `lobby`).
//! Run: `cargo run --example chat_room`.

use switchboard::http::{HttpResponse, Request};
use switchboard::{Context, Handler, Message, Server};

/// What we remember per connection: set in `on_open`, read in every later event.
struct Member {
    name: String,
    room: String,
}

struct Chat;

impl Handler for Chat {
    fn on_open(&self, ctx: &mut Context<'_>, req: &Request) -> Result<(), HttpResponse> {
        let name = req
            .query
            .as_deref()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
            .filter(|n| !n.is_empty() && n.len() <= 32)
            .ok_or_else(|| HttpResponse::text(400, "connect with ?name=NICK (1-32 bytes)\n"))?
            .to_owned();
        let room = "lobby".to_owned();
        ctx.join(&room);
        ctx.hub()
            .send_to_group(&room, Message::Text(format!("* {name} joined {room}")));
        ctx.send_text(format!(
            "welcome {name}; you are in {room}; /join ROOM to move"
        ));
        ctx.attributes_mut().insert(Member { name, room });
        Ok(())
    }

    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        let Message::Text(text) = msg else {
            return ctx.send_text("text only, please");
        };
        let Some(me) = ctx.attributes().get::<Member>() else {
            return;
        };
        let (name, room) = (me.name.clone(), me.room.clone());
        if let Some(next) = text.strip_prefix("/join ") {
            let next = next.trim().to_owned();
            ctx.leave(&room);
            ctx.join(&next);
            ctx.hub()
                .send_to_group(&room, Message::Text(format!("* {name} left for {next}")));
            ctx.hub()
                .send_to_group(&next, Message::Text(format!("* {name} joined {next}")));
            if let Some(me) = ctx.attributes_mut().get_mut::<Member>() {
                me.room = next;
            }
        } else {
            ctx.hub()
                .send_to_group(&room, Message::Text(format!("{name}: {text}")));
        }
    }

    fn on_close(&self, ctx: &mut Context<'_>, _code: u16, _reason: &str) {
        if let Some(me) = ctx.attributes().get::<Member>() {
            let line = format!("* {} left", me.name);
            ctx.hub().send_to_group(&me.room, Message::Text(line));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    Server::builder()
        .listen("127.0.0.1:9001".parse()?)
        .route("/chat", Chat)
        .metrics_route("/metrics")
        .run()?;
    Ok(())
}
