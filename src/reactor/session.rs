//! What the application keeps with an open connection ([`Session`]) and what a handler
//! call borrows from the worker ([`HandlerEnv`]): the one place a `Context` is built.
//!
//! Owns the handler call itself (panics contained, actions collected). It knows no
//! sockets and no protocol machine; the worker lends it a session and takes the actions
//! back.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;

use crate::attributes::Attributes;
use crate::handler::Handler;
use crate::http::UpgradePolicy;
use crate::hub::{Action, Context, Hub};
use crate::id::ConnId;
use crate::router::Router;
use crate::ws::close_code;

/// What the application keeps with an open connection.
pub(super) struct Session {
    pub(super) route: u32,
    /// Index into the configured subprotocols.
    pub(super) protocol: Option<u8>,
    /// Shared with every connection on the same path (see `Worker::intern_path`).
    pub(super) path: Arc<str>,
    pub(super) attributes: Attributes,
    // Boxed on purpose: 8 bytes per connection instead of a `Vec`'s 24 while unused.
    #[allow(clippy::box_collection)]
    pub(super) groups: Option<Box<Vec<Arc<str>>>>,
}

impl Session {
    pub(super) fn route(&self) -> usize {
        self.route as usize
    }

    pub(super) fn groups(&self) -> &[Arc<str>] {
        self.groups.as_deref().map_or(&[], |g| g.as_slice())
    }
}

/// What a handler call needs besides the connection: kept apart from the connection
/// table so a connection can be borrowed mutably while these are lent out.
pub(super) struct HandlerEnv {
    pub(super) router: Arc<Router>,
    pub(super) hub: Hub,
    pub(super) policy: UpgradePolicy,
    /// Reused between handler calls so collecting actions does not allocate.
    pub(super) actions: Cell<Vec<Action>>,
}

impl HandlerEnv {
    /// Runs one handler callback with a context over `session`, returning what it asked
    /// for.
    #[inline]
    pub(super) fn run(
        &self,
        id: ConnId,
        remote_ip: IpAddr,
        session: &mut Session,
        f: impl FnOnce(&dyn Handler, &mut Context<'_>),
    ) -> Vec<Action> {
        let mut actions = self.actions.take();
        let handler = self.router.handler(session.route());
        let mut ctx = Context {
            id,
            remote_ip,
            path: &session.path,
            protocol: session
                .protocol
                .and_then(|i| self.policy.subprotocols.get(i as usize))
                .map(String::as_str),
            attributes: &mut session.attributes,
            actions: &mut actions,
            hub: &self.hub,
        };
        // A panicking handler must not take the worker (and every connection on it)
        // down: the panic is contained to this connection, which is closed with 1011.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(handler, &mut ctx)));
        if outcome.is_err() {
            tracing::error!(%id, "handler panicked; closing the connection with 1011");
            actions.push(Action::Close(
                close_code::INTERNAL_ERROR,
                "internal error".into(),
            ));
        }
        actions
    }
}
