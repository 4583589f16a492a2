//! Connection limits shared by all workers: the total and the per-client-IP count.
//!
//! Touched once when a connection is accepted, once when its handshake completes and
//! once when it goes away; never per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::http::HandshakeError;

pub(crate) struct Admission {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Admission {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a newly accepted connection.
    pub(crate) fn accepted(&self, ip: IpAddr) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if self.max_per_ip > 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            *map.entry(ip).or_insert(0) += 1;
        }
    }

    /// Uncounts a connection that went away.
    pub(crate) fn released(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        if self.max_per_ip > 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }

    /// Whether a connection already counted may complete its handshake.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(), HandshakeError> {
        if self.total.load(Ordering::Relaxed) > self.max_total {
            return Err(HandshakeError::Unavailable("max_connections reached"));
        }
        if self.max_per_ip > 0 {
            let map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&ip).copied().unwrap_or(0) > self.max_per_ip {
                return Err(HandshakeError::Unavailable(
                    "max_connections_per_ip reached for this address",
                ));
            }
        }
        Ok(())
    }
}
