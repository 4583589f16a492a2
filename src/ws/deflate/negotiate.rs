//! Turning a client's `Sec-WebSocket-Extensions` offers into one agreement (RFC 7692
//! §5 and §7.1), or none.
//!
//! Offers are taken in the client's order; the first permessage-deflate offer whose
//! parameters are all known, unrepeated and in range is accepted, and the others are
//! ignored (§5.1: an offer with an invalid parameter is declined, not answered with an
//! error). Other extensions are ignored.

use super::DeflateConfig;

/// The terms both sides agreed to, and the header value that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The server resets its compressor for every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor for every message.
    pub client_no_context_takeover: bool,
    /// The window (log2, 8–15) the server may compress with. 8 is below what zlib can
    /// deflate with; the server then sends stored blocks, which need no window.
    pub server_window: u8,
    /// The largest window (log2) the client may compress with.
    pub client_window: u8,
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub response: String,
}

impl Agreement {
    /// No context takeover either way, 15-bit windows: what a client that offered
    /// `server_no_context_takeover; client_no_context_takeover` gets from a server with
    /// the default settings (the bench client's terms).
    pub fn no_context_takeover() -> Agreement {
        Agreement {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_window: 15,
            client_window: 15,
            response: String::new(),
        }
    }
}

/// One offer's parameters.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// The agreement for the first acceptable permessage-deflate offer among the header
/// values `offers` (each a comma-separated list), or `None` (no extension in the 101).
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    cfg: &DeflateConfig,
) -> Option<Agreement> {
    if !cfg.enabled {
        return None;
    }
    offers
        .into_iter()
        .flat_map(split_outside_quotes)
        .filter_map(parse_offer)
        .map(|offer| accept(&offer, cfg))
        .next()
}

fn accept(offer: &Offer, cfg: &DeflateConfig) -> Agreement {
    let mut response = String::from("permessage-deflate");
    let server_no_context_takeover =
        offer.server_no_context_takeover || !cfg.server_context_takeover;
    if server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    let client_no_context_takeover =
        offer.client_no_context_takeover || !cfg.client_context_takeover;
    if client_no_context_takeover {
        // Allowed whether or not the client offered it (§7.1.1.2).
        response.push_str("; client_no_context_takeover");
    }
    let server_window = match offer.server_max_window_bits {
        Some(asked) => {
            let w = asked.min(cfg.server_max_window_bits);
            response.push_str(&format!("; server_max_window_bits={w}"));
            w
        }
        // Unannounced: a smaller window than the client allows is always fine.
        None => cfg.server_max_window_bits,
    };
    let client_window = match offer.client_max_window_bits {
        // Not offered: the client may use any window, and must not be told one.
        None => 15,
        Some(offered) => {
            let limit = offered.unwrap_or(15);
            let w = limit.min(cfg.client_max_window_bits);
            if w < limit || offered.is_some() {
                response.push_str(&format!("; client_max_window_bits={w}"));
            }
            w
        }
    };
    Agreement {
        server_no_context_takeover,
        client_no_context_takeover,
        server_window,
        client_window,
        response,
    }
}

/// A permessage-deflate offer's parameters; `None` for another extension or an offer
/// that must be declined.
fn parse_offer(ext: &str) -> Option<Offer> {
    let mut parts = ext.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut offer = Offer::default();
    for param in parts {
        if param.is_empty() {
            return None;
        }
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true
            }
            ("server_max_window_bits", Some(v)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(v)?)
            }
            ("client_max_window_bits", v) if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                })
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// 8 to 15, written as 1*DIGIT without a leading zero (§7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

/// A parameter value: a token, or a quoted string holding one (§7.1: the value must
/// conform to the token ABNF after unquoting).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None => Some(v),
    }
}

/// Splits a header value at the commas that are not inside a quoted string.
fn split_outside_quotes(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> DeflateConfig {
        DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        }
    }

    fn agree(offer: &str, cfg: &DeflateConfig) -> Option<Agreement> {
        negotiate([offer], cfg)
    }

    #[test]
    fn off_by_config_means_no_extension() {
        assert_eq!(agree("permessage-deflate", &DeflateConfig::default()), None);
    }

    #[test]
    fn defaults_ask_for_no_context_takeover_both_ways() {
        let a = agree("permessage-deflate; client_max_window_bits", &on()).unwrap();
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert_eq!((a.server_window, a.client_window), (15, 15));
    }

    #[test]
    fn context_takeover_when_configured_and_not_refused() {
        let cfg = DeflateConfig {
            server_context_takeover: true,
            client_context_takeover: true,
            ..on()
        };
        let a = agree("permessage-deflate", &cfg).unwrap();
        assert_eq!(a.response, "permessage-deflate");
        let a = agree("permessage-deflate; server_no_context_takeover", &cfg).unwrap();
        assert_eq!(a.response, "permessage-deflate; server_no_context_takeover");
        assert!(a.server_no_context_takeover && !a.client_no_context_takeover);
    }

    #[test]
    fn window_bits_are_honoured_and_limited() {
        let a = agree("permessage-deflate; server_max_window_bits=10", &on()).unwrap();
        assert_eq!(a.server_window, 10);
        assert!(a.response.ends_with("server_max_window_bits=10"));
        let a = agree("permessage-deflate; server_max_window_bits=8", &on()).unwrap();
        assert_eq!(a.server_window, 8);
        let cfg = DeflateConfig {
            client_max_window_bits: 10,
            ..on()
        };
        let a = agree("permessage-deflate; client_max_window_bits", &cfg).unwrap();
        assert_eq!(a.client_window, 10);
        assert!(a.response.ends_with("client_max_window_bits=10"));
        let a = agree("permessage-deflate; client_max_window_bits=9", &cfg).unwrap();
        assert_eq!(a.client_window, 9);
        // Without the parameter offered, the server must not limit the client.
        let a = agree("permessage-deflate", &cfg).unwrap();
        assert_eq!(a.client_window, 15);
        assert!(!a.response.contains("client_max_window_bits"));
        let a = agree("permessage-deflate; client_max_window_bits=\"12\"", &on()).unwrap();
        assert_eq!(a.client_window, 12);
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "permessage-deflate;",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agree(bad, &on()), None, "{bad}");
        }
        let a = agree(
            "foo, permessage-deflate; bogus, permessage-deflate; server_max_window_bits=9",
            &on(),
        )
        .unwrap();
        assert_eq!(a.server_window, 9);
        let a = negotiate(["x-foo", "permessage-deflate"], &on()).unwrap();
        assert_eq!(a.server_window, 15);
    }
}
