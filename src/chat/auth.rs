//! Turning a token into a user: JWT (HS256, RS256, ES256), demo (the token is the user
//! id) or none (anonymous).
//!
//! Owns token verification only; where the token comes from (query, header, message) is
//! the handler's business.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::config::{AuthConfig, AuthMode};
use crate::config::ConfigError;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id (`sub`).
    pub id: String,
    /// `user_type` claim, if any.
    pub user_type: Option<i64>,
    /// `tenant_id` claim, if any.
    pub tenant_id: Option<String>,
    /// Display name (`name` claim), else the id.
    pub name: String,
    /// When the token stops being valid (seconds since the epoch), for JWTs.
    pub expires_at: Option<u64>,
}

/// Why a token was refused. The text says why, and never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was given and the mode needs one.
    #[error("no token")]
    Missing,
    /// The JWT's `exp` has passed.
    #[error("invalid token: expired")]
    Expired,
    /// The JWT's signature does not verify with the configured key.
    #[error("invalid token: bad signature")]
    BadSignature,
    /// The token is malformed, uses another algorithm or lacks a claim.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl AuthError {
    /// A short label for logs and metrics: `missing`, `expired`, `bad_signature` or
    /// `malformed`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::BadSignature => "bad_signature",
            AuthError::Invalid(_) => "malformed",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            _ => AuthError::Invalid(e.to_string()),
        }
    }
}

/// An id claim as Java back ends write it: a string, or a number (`Long`) taken as its
/// decimal string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdClaim {
    Text(String),
    Number(serde_json::Number),
}

impl From<IdClaim> for String {
    fn from(c: IdClaim) -> String {
        match c {
            IdClaim::Text(s) => s,
            IdClaim::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<IdClaim>,
    exp: u64,
    #[serde(default)]
    user_type: Option<i64>,
    #[serde(default)]
    tenant_id: Option<IdClaim>,
    #[serde(default)]
    name: Option<String>,
}

/// Verifies tokens for the configured mode.
pub struct Authenticator {
    mode: AuthMode,
    key: Option<(DecodingKey, Algorithm)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Authenticator {
    /// Loads the key the mode needs.
    pub fn new(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        let key = match cfg.mode {
            AuthMode::Jwt if !cfg.jwt_public_key_file.is_empty() => {
                let pem = std::fs::read(&cfg.jwt_public_key_file).map_err(|source| {
                    ConfigError::Read {
                        path: cfg.jwt_public_key_file.clone(),
                        source,
                    }
                })?;
                let bad = |e: jsonwebtoken::errors::Error| {
                    ConfigError::Invalid(format!("auth.jwt_public_key_file: {e}"))
                };
                Some(match cfg.jwt_algorithm.as_str() {
                    "ES256" => (
                        DecodingKey::from_ec_pem(&pem).map_err(bad)?,
                        Algorithm::ES256,
                    ),
                    _ => (
                        DecodingKey::from_rsa_pem(&pem).map_err(bad)?,
                        Algorithm::RS256,
                    ),
                })
            }
            AuthMode::Jwt => Some((
                DecodingKey::from_secret(cfg.jwt_secret.as_bytes()),
                Algorithm::HS256,
            )),
            _ => None,
        };
        Ok(Authenticator {
            mode: cfg.mode,
            key,
        })
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Verifies `token`.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        match (&self.mode, &self.key) {
            (AuthMode::Jwt, Some((key, alg))) => {
                let mut v = Validation::new(*alg);
                // `sub` is checked below: the library's own check wants a string, and
                // Java back ends write numeric ids.
                v.set_required_spec_claims(&["exp"]);
                v.leeway = 0;
                let c = decode::<Claims>(token, key, &v)?.claims;
                let sub = c.sub.map(String::from).unwrap_or_default();
                if sub.is_empty() {
                    return Err(AuthError::Invalid("missing or empty sub".into()));
                }
                Ok(User {
                    name: c.name.unwrap_or_else(|| sub.clone()),
                    id: sub,
                    user_type: c.user_type,
                    tenant_id: c.tenant_id.map(String::from),
                    expires_at: Some(c.exp),
                })
            }
            (AuthMode::Demo, _) => {
                if token.len() > 128 {
                    return Err(AuthError::Invalid(
                        "demo user ids are at most 128 bytes".into(),
                    ));
                }
                Ok(User {
                    id: token.to_owned(),
                    user_type: None,
                    tenant_id: None,
                    name: token.to_owned(),
                    expires_at: None,
                })
            }
            _ => Err(AuthError::Invalid(
                "tokens are not used in this mode".into(),
            )),
        }
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
