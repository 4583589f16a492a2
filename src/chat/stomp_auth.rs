//! The chat node's users for the STOMP broker: the same auth modes (`jwt`, `demo`,
//! `none`) and the same handshake token as the chat endpoint, or, as stompjs and
//! stomp.py users send it, the token in CONNECT.
//!
//! Owns the mapping from STOMP credentials to a token only; verification is
//! `auth.rs`'s, and STOMP sessions do not join the chat registry.

use std::sync::Arc;

use super::auth::AuthError;
use super::config::AuthMode;
use super::node::{handshake_token, ChatNode};
use crate::http::Request;
use crate::id::ConnId;
use crate::stomp::Authenticate;

/// [`Authenticate`] for the chat node's auth settings.
pub(crate) struct StompAuth(pub(crate) Arc<ChatNode>);

impl StompAuth {
    fn verify(&self, token: &str) -> Result<String, String> {
        let node = &self.0;
        node.auth.verify(token).map(|u| u.id).map_err(|e| {
            node.metrics.auth_failed(e.reason());
            e.to_string()
        })
    }
}

impl Authenticate for StompAuth {
    fn handshake(&self, req: &Request, conn: ConnId) -> Result<Option<String>, String> {
        if self.0.auth.mode() == AuthMode::None {
            return Ok(Some(format!("anon-{conn}")));
        }
        handshake_token(req).map(|t| self.verify(&t)).transpose()
    }

    fn connect(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
        token: Option<&str>,
        conn: ConnId,
    ) -> Result<String, String> {
        if self.0.auth.mode() == AuthMode::None {
            return Ok(format!("anon-{conn}"));
        }
        // A `token` or `Authorization` header, else the passcode (a JWT as the
        // password, the usual Spring `ChannelInterceptor` setup). In demo mode a bare
        // `login` is the user id too.
        let token = token.or(passcode).filter(|t| !t.is_empty());
        let token = match (token, self.0.auth.mode()) {
            (Some(t), _) => t,
            (None, AuthMode::Demo) => login
                .filter(|l| !l.is_empty())
                .ok_or_else(|| AuthError::Missing.to_string())?,
            (None, _) => {
                self.0.metrics.auth_failed(AuthError::Missing.reason());
                return Err(
                    "no token: send it in the handshake (?token=), or in CONNECT as a token, Authorization or passcode header"
                        .into(),
                );
            }
        };
        self.verify(token)
    }
}
