//! The little STOMP the bench speaks, shared by `bench stomp` and `bench sockjs`: the
//! frames a client sends to join a topic, and what it tells apart in what it reads.
//!
//! Owns frame text only; no sockets, no accounting.

/// What a STOMP client reads: only what a run needs to tell apart.
pub(crate) enum StompIn<'a> {
    /// A `MESSAGE`'s body.
    Message(&'a [u8]),
    Receipt,
    /// An `ERROR`'s `message` header.
    Error(String),
    /// `CONNECTED`, a heart-beat, anything else.
    Other,
}

/// Classifies one frame (a whole WebSocket message, or one SockJS message).
pub(crate) fn stomp_in(data: &[u8]) -> StompIn<'_> {
    let Some(split) = data.windows(2).position(|w| w == b"\n\n") else {
        return StompIn::Other;
    };
    let body = &data[split + 2..];
    let body = body
        .iter()
        .rposition(|&b| b == 0)
        .map_or(body, |end| &body[..end]);
    if data.starts_with(b"MESSAGE\n") {
        StompIn::Message(body)
    } else if data.starts_with(b"RECEIPT\n") {
        StompIn::Receipt
    } else if data.starts_with(b"ERROR\n") {
        let head = String::from_utf8_lossy(&data[..split]);
        let why = head.lines().find_map(|l| l.strip_prefix("message:"));
        StompIn::Error(why.unwrap_or("").to_owned())
    } else {
        StompIn::Other
    }
}

/// `CONNECT` for `user` (demo auth: the passcode is the user id), no heart-beats.
pub(crate) fn connect(user: &str) -> String {
    format!("CONNECT\naccept-version:1.2\nhost:bench\nlogin:{user}\npasscode:{user}\nheart-beat:0,0\n\n\0")
}

/// `SUBSCRIBE` to `dest` asking for a receipt: once it comes, the subscription is in place.
pub(crate) fn subscribe(dest: &str) -> String {
    format!("SUBSCRIBE\nid:0\ndestination:{dest}\nreceipt:subscribed\n\n\0")
}

/// `SEND`'s head for bodies of `size` bytes to `dest`; the body and a NUL follow.
pub(crate) fn send_head(dest: &str, size: usize) -> Vec<u8> {
    format!("SEND\ndestination:{dest}\ncontent-length:{size}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_told_apart() {
        let m = b"MESSAGE\ndestination:/t\nsubscription:0\n\nbody\0";
        assert!(matches!(stomp_in(m), StompIn::Message(b"body")));
        assert!(matches!(
            stomp_in(b"RECEIPT\nreceipt-id:x\n\n\0"),
            StompIn::Receipt
        ));
        assert!(matches!(stomp_in(b"ERROR\nmessage:no\n\n\0"), StompIn::Error(w) if w == "no"));
        assert!(matches!(
            stomp_in(b"CONNECTED\nversion:1.2\n\n\0"),
            StompIn::Other
        ));
        assert!(matches!(stomp_in(b"\n"), StompIn::Other));
    }
}
