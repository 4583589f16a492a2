//! Destinations as Spring's simple broker defines them, and who is subscribed to each.
//!
//! Owns the naming rules (broker prefixes such as `/topic` and `/queue`, the user prefix
//! `/user`, the application prefix `/app`) and the subscription table. It knows nothing
//! of frames on the wire or of sockets: the handler resolves a destination here, then
//! delivers to the [`Subscriber`]s it gets back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::session::AckMode;
use crate::id::ConnId;

/// The prefixes of `[stomp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    /// Broker destinations (pub/sub), e.g. `/topic`, `/queue`.
    pub broker: Vec<String>,
    /// User destinations, e.g. `/user`.
    pub user: String,
    /// Application destinations, forwarded to a backend, e.g. `/app`.
    pub app: String,
}

impl Default for Prefixes {
    fn default() -> Self {
        Prefixes {
            broker: vec!["/topic".into(), "/queue".into()],
            user: "/user".into(),
            app: "/app".into(),
        }
    }
}

/// Where a destination leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A broker destination: the table key, and the destination subscribers see.
    Broker {
        /// Key in the subscription table (`/user/alice/queue/x` for a user one).
        key: String,
        /// The `destination` header of the MESSAGE (`/user/queue/x` for a user one).
        shown: String,
    },
    /// An application destination (`/app/...`).
    App(String),
}

fn under(dest: &str, prefix: &str) -> bool {
    dest.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

impl Prefixes {
    fn is_broker(&self, dest: &str) -> bool {
        self.broker.iter().any(|p| under(dest, p))
    }

    /// Where a SUBSCRIBE by `user` to `dest` leads: `/user/queue/x` becomes that user's
    /// own `/user/<user>/queue/x`; a broker destination is itself.
    pub fn subscription(&self, dest: &str, user: &str) -> Result<Target, String> {
        if under(dest, &self.user) {
            let rest = &dest[self.user.len()..];
            if self.is_broker(rest) {
                return Ok(Target::Broker {
                    key: format!("{}/{}{}", self.user, user_segment(user), rest),
                    shown: dest.to_owned(),
                });
            }
            return Err(format!(
                "cannot subscribe to {dest:?}: a user destination is {}{}/…",
                self.user,
                self.broker.first().map_or("/queue", String::as_str)
            ));
        }
        if self.is_broker(dest) {
            return Ok(Target::Broker {
                key: dest.to_owned(),
                shown: dest.to_owned(),
            });
        }
        Err(self.unknown(dest))
    }

    /// Where a SEND (or a push) to `dest` leads: `/user/bob/queue/x` reaches bob's
    /// subscriptions to `/user/queue/x`; `/app/...` goes to the application.
    pub fn send(&self, dest: &str) -> Result<Target, String> {
        if under(dest, &self.app) {
            return Ok(Target::App(dest.to_owned()));
        }
        if under(dest, &self.user) {
            let rest = &dest[self.user.len() + 1..];
            if let Some((name, tail)) = rest.split_once('/') {
                let tail = format!("/{tail}");
                if !name.is_empty() && self.is_broker(&tail) {
                    return Ok(Target::Broker {
                        key: dest.to_owned(),
                        shown: format!("{}{tail}", self.user),
                    });
                }
            }
            return Err(format!(
                "cannot send to {dest:?}: a user destination is {}/<user>{}/…",
                self.user,
                self.broker.first().map_or("/queue", String::as_str)
            ));
        }
        if self.is_broker(dest) {
            return Ok(Target::Broker {
                key: dest.to_owned(),
                shown: dest.to_owned(),
            });
        }
        Err(self.unknown(dest))
    }

    fn unknown(&self, dest: &str) -> String {
        format!(
            "unknown destination {dest:?}: use {}, {}/… or {}/…",
            self.broker
                .iter()
                .map(|p| format!("{p}/…"))
                .collect::<Vec<_>>()
                .join(", "),
            self.user,
            self.app
        )
    }
}

/// A user name as one path segment: a `/` in it would let one user's destinations
/// reach into another's, so it is percent-encoded (as is `%` itself).
fn user_segment(user: &str) -> String {
    user.replace('%', "%25").replace('/', "%2F")
}

/// The key a push to `user`'s `/user/queue/x` (given as `tail` = `/queue/x`) uses.
pub fn user_key(prefixes: &Prefixes, user: &str, tail: &str) -> String {
    format!("{}/{}{}", prefixes.user, user_segment(user), tail)
}

/// One subscription, as the table holds it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The session's connection.
    pub conn: ConnId,
    /// Its subscription id.
    pub id: Arc<str>,
    /// The destination its MESSAGEs carry.
    pub shown: Arc<str>,
    /// Its ack mode.
    pub ack: AckMode,
    /// Whether its headers are escaped (1.1, 1.2).
    pub escapes: bool,
}

/// Who is subscribed to what, shared by every worker.
#[derive(Debug, Default)]
pub struct Table {
    by_key: RwLock<HashMap<String, Vec<Subscriber>>>,
}

impl Table {
    /// Adds a subscription under `key`.
    pub fn add(&self, key: &str, sub: Subscriber) {
        let mut g = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        g.entry(key.to_owned()).or_default().push(sub);
    }

    /// Removes subscription `id` of `conn` under `key`.
    pub fn remove(&self, key: &str, conn: ConnId, id: &str) {
        let mut g = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.get_mut(key) {
            v.retain(|s| !(s.conn == conn && &*s.id == id));
            if v.is_empty() {
                g.remove(key);
            }
        }
    }

    /// Every subscription under `key`, copied out so no lock is held while sending.
    pub fn subscribers(&self, key: &str) -> Vec<Subscriber> {
        let g = self.by_key.read().unwrap_or_else(|p| p.into_inner());
        g.get(key).cloned().unwrap_or_default()
    }

    /// Destinations with at least one subscription.
    pub fn len(&self) -> usize {
        self.by_key.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nobody is subscribed to anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_destinations_resolve_to_the_user_own_key() {
        let p = Prefixes::default();
        let sub = p.subscription("/user/queue/reply", "alice").unwrap();
        let send = p.send("/user/alice/queue/reply").unwrap();
        match (sub, send) {
            (Target::Broker { key: a, shown: s1 }, Target::Broker { key: b, shown: s2 }) => {
                assert_eq!(a, b);
                assert_eq!(s1, "/user/queue/reply");
                assert_eq!(s2, "/user/queue/reply");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_user_name_with_a_slash_cannot_reach_another_user() {
        let p = Prefixes::default();
        let Target::Broker { key, .. } = p.subscription("/user/queue/x", "bob/queue").unwrap()
        else {
            panic!()
        };
        assert_ne!(key, "/user/bob/queue/queue/x");
        assert!(p.subscription("/user/bob/queue/x", "eve").is_err());
    }

    #[test]
    fn app_and_unknown_destinations() {
        let p = Prefixes::default();
        assert_eq!(
            p.send("/app/chat").unwrap(),
            Target::App("/app/chat".into())
        );
        assert!(p.send("/elsewhere/x").is_err());
        assert!(p.send("/topic").is_err());
        assert!(p.send("/topicx/a").is_err());
        assert!(p.subscription("/app/chat", "a").is_err());
    }
}
