//! Paths and what serves them: WebSocket routes with their handlers, an optional
//! fallback, and plain HTTP routes. Built once by the server builder, then shared
//! read-only by every worker and the hub.

use std::sync::Arc;

use crate::handler::Handler;
use crate::http::{HttpResponse, Request};
use crate::hub::Hub;
use crate::reply::HttpReply;

/// A plain HTTP endpoint: gets the request head and the hub, returns the whole response.
pub type HttpHandler = dyn Fn(&Request, &Hub) -> HttpResponse + Send + Sync + 'static;

/// A plain HTTP endpoint that answers later or in pieces, through the [`HttpReply`] it
/// is given (from any thread). It must return at once; the answer may come any time.
pub type DeferredHttpHandler = dyn Fn(&Request, &Hub, HttpReply) + Send + Sync + 'static;

/// What serves a plain HTTP path.
#[derive(Clone)]
pub(crate) enum HttpRoute {
    Now(Arc<HttpHandler>),
    Later(Arc<DeferredHttpHandler>),
}

pub(crate) struct Router {
    pub(crate) ws: Vec<(String, Arc<dyn Handler>)>,
    pub(crate) fallback: Option<usize>,
    pub(crate) http: Vec<(String, HttpRoute)>,
    /// WebSocket routes serving every path under a prefix (ending in `/`), as indexes
    /// into `ws`; an exact route wins over them, they win over the fallback.
    pub(crate) ws_prefix: Vec<(String, usize)>,
    /// Plain routes serving every path under a prefix (ending in `/`); an exact route
    /// wins over them.
    pub(crate) http_prefix: Vec<(String, HttpRoute)>,
}

impl Router {
    /// The WebSocket route index for `path`: an exact match, else the fallback.
    pub(crate) fn ws_route(&self, path: &str) -> Option<usize> {
        self.exact_ws_route(path)
            .or_else(|| {
                self.ws_prefix
                    .iter()
                    .find(|(p, _)| path.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.fallback)
    }

    /// The WebSocket route registered for exactly `path` (never the fallback).
    pub(crate) fn exact_ws_route(&self, path: &str) -> Option<usize> {
        self.ws
            .iter()
            .enumerate()
            .position(|(i, (p, _))| p == path && Some(i) != self.fallback)
    }

    pub(crate) fn handler(&self, route: usize) -> &dyn Handler {
        &*self.ws[route].1
    }

    pub(crate) fn http_route(&self, path: &str) -> Option<&HttpRoute> {
        self.http
            .iter()
            .find(|(p, _)| p == path)
            .or_else(|| {
                self.http_prefix
                    .iter()
                    .find(|(p, _)| path.starts_with(p.as_str()))
            })
            .map(|(_, h)| h)
    }
}
