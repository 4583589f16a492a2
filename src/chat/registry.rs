//! Who is connected: sessions by id, user, user type, tenant and channel, shared by every
//! worker and the HTTP API; plus recent message ids for de-duplication.
//!
//! Owns the maps and their consistency, behind one mutex touched on open, close,
//! (un)subscribe and each routed message; never held while sending.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::auth::User;
use crate::id::ConnId;

/// One authenticated session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The connection.
    pub id: ConnId,
    /// Its user.
    pub user: User,
    /// When it authenticated.
    pub since: Instant,
}

/// What adding a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Added.
    Ok,
    /// Added; the user's oldest session must be closed (limit reached).
    Evict(ConnId),
    /// Not added: the user is at the limit and the policy refuses.
    Refused,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<ConnId, Session>,
    by_user: HashMap<String, Vec<ConnId>>,
    by_type: HashMap<i64, HashSet<ConnId>>,
    by_tenant: HashMap<String, HashSet<ConnId>>,
    channels: HashMap<String, HashSet<ConnId>>,
    subscriptions: HashMap<ConnId, HashSet<String>>,
    recent: HashMap<String, Recent>,
    /// Keyed at random per registry, so no client can choose message ids that collide.
    id_hasher: std::collections::hash_map::RandomState,
}

/// One user's recent message ids, as keyed 64-bit hashes: a set to look up in, and the
/// same hashes in arrival order to expire from.
#[derive(Default)]
struct Recent {
    seen: HashSet<u64, BuildHasherDefault<PassThrough>>,
    order: VecDeque<(u64, Instant)>,
}

/// The set's keys are already keyed SipHash outputs: hashing them again would only cost.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in so the hasher stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl Recent {
    fn forget_older_than(&mut self, now: Instant, window: Duration) {
        while let Some(&(h, t)) = self.order.front() {
            if now.duration_since(t) <= window && self.order.len() < RECENT_PER_USER {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&h);
        }
    }
}

/// The session registry.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sessions", &self.session_count())
            .finish()
    }
}

/// Most message ids remembered per user for de-duplication.
const RECENT_PER_USER: usize = 1024;

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a session, applying the per-user limit.
    pub fn add(&self, session: Session, limit: usize, close_oldest: bool) -> Added {
        let mut g = self.lock();
        let existing = g.by_user.get(&session.user.id).map_or(0, Vec::len);
        let mut outcome = Added::Ok;
        if existing >= limit {
            if !close_oldest {
                return Added::Refused;
            }
            if let Some(&oldest) = g.by_user.get(&session.user.id).and_then(|v| v.first()) {
                remove_locked(&mut g, oldest);
                outcome = Added::Evict(oldest);
            }
        }
        let id = session.id;
        g.by_user
            .entry(session.user.id.clone())
            .or_default()
            .push(id);
        if let Some(t) = session.user.user_type {
            g.by_type.entry(t).or_default().insert(id);
        }
        if let Some(t) = &session.user.tenant_id {
            g.by_tenant.entry(t.clone()).or_default().insert(id);
        }
        g.sessions.insert(id, session);
        outcome
    }

    /// Removes a session and its subscriptions (a no-op for an unknown id).
    pub fn remove(&self, id: ConnId) {
        remove_locked(&mut self.lock(), id);
    }

    /// The session `id`, if authenticated and open.
    pub fn get(&self, id: ConnId) -> Option<Session> {
        self.lock().sessions.get(&id).cloned()
    }

    /// Every session of `user`, oldest first.
    pub fn by_user(&self, user: &str) -> Vec<ConnId> {
        self.lock().by_user.get(user).cloned().unwrap_or_default()
    }

    /// Every session whose user has `user_type`.
    pub fn by_type(&self, user_type: i64) -> Vec<ConnId> {
        self.lock()
            .by_type
            .get(&user_type)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every session of `user` with `user_type`.
    pub fn by_type_and_user(&self, user_type: i64, user: &str) -> Vec<ConnId> {
        let g = self.lock();
        g.by_user
            .get(user)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|id| {
                        g.sessions.get(id).and_then(|s| s.user.user_type) == Some(user_type)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every session of `tenant`.
    pub fn by_tenant(&self, tenant: &str) -> Vec<ConnId> {
        self.lock()
            .by_tenant
            .get(tenant)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every authenticated session.
    pub fn all(&self) -> Vec<ConnId> {
        self.lock().sessions.keys().copied().collect()
    }

    /// Subscribes a session to a channel; false if it already was.
    pub fn subscribe(&self, id: ConnId, channel: &str) -> bool {
        let mut g = self.lock();
        let fresh = g.channels.entry(channel.to_owned()).or_default().insert(id);
        g.subscriptions
            .entry(id)
            .or_default()
            .insert(channel.to_owned());
        fresh
    }

    /// Unsubscribes; false if it was not subscribed.
    pub fn unsubscribe(&self, id: ConnId, channel: &str) -> bool {
        let mut g = self.lock();
        let was = g.channels.get_mut(channel).is_some_and(|m| m.remove(&id));
        if g.channels.get(channel).is_some_and(HashSet::is_empty) {
            g.channels.remove(channel);
        }
        if let Some(s) = g.subscriptions.get_mut(&id) {
            s.remove(channel);
        }
        was
    }

    /// Every subscriber of `channel`.
    pub fn channel(&self, channel: &str) -> Vec<ConnId> {
        self.lock()
            .channels
            .get(channel)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// True the first time `(user, msg_id)` is seen within `window` (among the user's
    /// last 1,024 ids).
    pub fn first_delivery(&self, user: &str, msg_id: &str, window: Duration) -> bool {
        let now = Instant::now();
        let mut g = self.lock();
        let h = g.id_hasher.hash_one(msg_id);
        if !g.recent.contains_key(user) {
            g.recent.insert(user.to_owned(), Recent::default());
        }
        let Some(recent) = g.recent.get_mut(user) else {
            return true;
        };
        recent.forget_older_than(now, window);
        if !recent.seen.insert(h) {
            return false;
        }
        recent.order.push_back((h, now));
        true
    }

    /// Forgets `(user, msg_id)` (its delivery failed), so the client's retry is not taken
    /// for a duplicate. The id stays in the expiry order and is dropped from there later.
    pub fn forget_delivery(&self, user: &str, msg_id: &str) {
        let mut g = self.lock();
        let h = g.id_hasher.hash_one(msg_id);
        if let Some(recent) = g.recent.get_mut(user) {
            recent.seen.remove(&h);
        }
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// (users online, sessions, channels).
    pub fn counts(&self) -> (usize, usize, usize) {
        let g = self.lock();
        (g.by_user.len(), g.sessions.len(), g.channels.len())
    }

    /// Online users (id and session count), sorted, at most `limit`.
    pub fn online(&self, limit: usize) -> Vec<(String, usize)> {
        let g = self.lock();
        let mut v: Vec<(String, usize)> = g
            .by_user
            .iter()
            .map(|(u, s)| (u.clone(), s.len()))
            .collect();
        v.sort();
        v.truncate(limit);
        v
    }
}

fn remove_locked(g: &mut Inner, id: ConnId) {
    if let Some(s) = g.sessions.remove(&id) {
        if let Some(v) = g.by_user.get_mut(&s.user.id) {
            v.retain(|x| *x != id);
            if v.is_empty() {
                g.by_user.remove(&s.user.id);
                g.recent.remove(&s.user.id);
            }
        }
        if let Some(t) = s.user.user_type {
            if let Some(set) = g.by_type.get_mut(&t) {
                set.remove(&id);
                if set.is_empty() {
                    g.by_type.remove(&t);
                }
            }
        }
        if let Some(t) = &s.user.tenant_id {
            if let Some(set) = g.by_tenant.get_mut(t) {
                set.remove(&id);
                if set.is_empty() {
                    g.by_tenant.remove(t);
                }
            }
        }
    }
    if let Some(chans) = g.subscriptions.remove(&id) {
        for c in chans {
            if let Some(set) = g.channels.get_mut(&c) {
                set.remove(&id);
                if set.is_empty() {
                    g.channels.remove(&c);
                }
            }
        }
    }
}
