//! Who may use the console, and how a browser proves it: login with the API token, a
//! signed session cookie, CSRF tokens on every form, login rate limiting, and the
//! security headers of every answer.
//!
//! # Sessions are signed, not stored
//!
//! The chart runs two replicas behind one Service; an Ingress spreads a browser's
//! requests over both. A session kept in one replica's memory would log the user out at
//! random. So the session cookie carries its own content — expiry, a random nonce, the
//! identity shown in pause reasons — signed with HMAC-SHA256 under a key derived from the
//! API token: every replica with the same token verifies it, and changing the token ends
//! every session. The cookie is `HttpOnly`, `SameSite=Strict`, `Secure` when the browser
//! reached havoc over TLS (`X-Forwarded-Proto: https` from the Ingress), and has no
//! `Path`: the browser scopes it to the directory of the login form, which is the
//! console's root also under an Ingress path prefix. It lives [`SESSION_LIFETIME`]. Logout
//! clears the cookie and revokes the nonce in this replica (another replica accepts a
//! copied cookie until it expires: the cost of not sharing state; rotate the token to end
//! every session at once).
//!
//! # CSRF
//!
//! Every form carries a token: for a session, HMAC(key, "csrf" + nonce), checked in
//! constant time; for the login form (no session yet), a random nonce also set as a
//! cookie (double submit), kept while the browser holds it (the live updates fetch the
//! login page again). A POST without a valid session or token is `403`, and so is
//! one a browser marks `Sec-Fetch-Site: cross-site`. `SameSite=Strict` already keeps the
//! cookie off cross-site requests; the token is the second lock.
//!
//! # The token
//!
//! It travels only in the login form's POST body, is compared in constant time (the
//! API's comparison), and is never logged, stored, or put in a URL or cookie.

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, header};
use ring::{hmac, rand::SecureRandom as _};

/// How long a login lasts: about one on-call shift.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(8);
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "havoc_session";
/// The login form's CSRF cookie (double submit).
pub const LOGIN_COOKIE: &str = "havoc_login";
/// A one-time message after an action (set on the redirect, read and cleared by the next
/// page).
pub const FLASH_COOKIE: &str = "havoc_flash";
/// The longest name a login may give (it goes into pause reasons).
pub const MAX_NAME_CHARS: usize = 64;
/// Login attempts per client address in [`LOGIN_WINDOW`].
pub const LOGIN_ATTEMPTS_PER_CLIENT: usize = 5;
/// Login attempts from all clients together in [`LOGIN_WINDOW`]: behind an Ingress every
/// client has the Ingress's address, so a per-address limit alone would not bound guessing.
pub const LOGIN_ATTEMPTS_TOTAL: usize = 30;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// The Content-Security-Policy of every console answer: scripts, styles and images only
/// from havoc itself, no inline script or style, no framing, forms post only to havoc.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Adds the security headers every console answer carries.
pub fn secure_headers(headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
}

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, 16 bytes, base64url: what the CSRF token and a logout's revocation name.
    pub nonce: String,
    /// Who, as pause reasons say it: `alice (console login from 10.0.0.7)`.
    pub identity: String,
    pub expires: DateTime<Utc>,
}

/// Why a console request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not logged in (or the session expired)")]
    NoSession,
    #[error("missing or wrong form token")]
    BadCsrf,
    #[error("a cross-site request")]
    CrossSite,
}

/// The session keys (derived from the API token) and this replica's revoked sessions.
#[derive(Debug)]
pub struct Keys {
    session: Option<hmac::Key>,
    revoked: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl Keys {
    /// Keys for `token`; `None`: nobody can log in (mutations are off).
    pub fn new(token: Option<&str>) -> Self {
        let session = token.map(|t| {
            let root = hmac::Key::new(hmac::HMAC_SHA256, t.as_bytes());
            let derived = hmac::sign(&root, b"havoc console session key v1");
            hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
        });
        Keys {
            session,
            revoked: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether logging in is possible at all.
    pub fn enabled(&self) -> bool {
        self.session.is_some()
    }

    /// A new session for `identity`, and its cookie value.
    pub fn issue(&self, identity: &str, now: DateTime<Utc>) -> Option<(Session, String)> {
        let key = self.session.as_ref()?;
        let session = Session {
            nonce: random_token(16),
            identity: identity.to_string(),
            expires: now + SESSION_LIFETIME,
        };
        let body = format!(
            "v1.{}.{}.{}",
            session.expires.timestamp(),
            session.nonce,
            B64.encode(session.identity.as_bytes())
        );
        let mac = B64.encode(hmac::sign(key, body.as_bytes()).as_ref());
        Some((session, format!("{body}.{mac}")))
    }

    /// The session of a cookie value: signed by this token, not expired, not revoked here.
    pub fn verify(&self, cookie: &str, now: DateTime<Utc>) -> Option<Session> {
        let key = self.session.as_ref()?;
        let (body, mac) = cookie.rsplit_once('.')?;
        let mac = B64.decode(mac).ok()?;
        hmac::verify(key, body.as_bytes(), &mac).ok()?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(exp), Some(nonce), Some(identity), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires = DateTime::from_timestamp(exp.parse().ok()?, 0)?;
        if now >= expires {
            return None;
        }
        let identity = String::from_utf8(B64.decode(identity).ok()?).ok()?;
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        if revoked.contains_key(nonce) {
            return None;
        }
        Some(Session {
            nonce: nonce.to_string(),
            identity,
            expires,
        })
    }

    /// Ends a session in this replica.
    pub fn revoke(&self, session: &Session, now: DateTime<Utc>) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, expires| *expires > now);
        revoked.insert(session.nonce.clone(), session.expires);
    }

    /// The CSRF token of a session's forms.
    pub fn csrf(&self, session: &Session) -> String {
        match &self.session {
            Some(key) => {
                let tag = hmac::sign(key, format!("csrf.{}", session.nonce).as_bytes());
                B64.encode(tag.as_ref())
            }
            None => String::new(),
        }
    }

    /// Whether `given` is the session's CSRF token (constant time).
    pub fn csrf_ok(&self, session: &Session, given: &str) -> bool {
        let expected = self.csrf(session);
        !expected.is_empty() && crate::api::same(expected.as_bytes(), given.as_bytes())
    }
}

/// How many random bytes a login form's nonce has.
const LOGIN_NONCE_BYTES: usize = 24;

/// A fresh nonce for the login form (and its cookie).
pub fn login_nonce() -> String {
    random_token(LOGIN_NONCE_BYTES)
}

/// Whether a login cookie's value is one [`login_nonce`] could have made: anything else
/// (empty, forged garbage, an old format) gets a fresh nonce.
pub fn is_login_nonce(value: &str) -> bool {
    B64.decode(value)
        .is_ok_and(|b| b.len() == LOGIN_NONCE_BYTES && B64.encode(&b) == value)
}

/// Random bytes as base64url.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system's CSPRNG failing is not something a login can work around.
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        buf = (0..bytes).map(|_| rand::random::<u8>()).collect();
    }
    B64.encode(buf)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached havoc over TLS (an Ingress terminating it says so).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure under TLS, no Path (see the
/// module docs); `max_age: None` clears it.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, tls: bool) -> HeaderValue {
    let age = max_age.unwrap_or(0);
    let value = if max_age.is_some() { value } else { "" };
    let secure = if tls { "; Secure" } else { "" };
    let text = format!("{name}={value}; Max-Age={age}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a browser says the request comes from another site.
pub fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
}

/// A name given at login, made safe for a pause reason: printable, one line, short.
pub fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The identity of a login: `NAME (console login from ADDR)`.
pub fn identity(name: &str, from: Option<IpAddr>) -> String {
    let from = from.map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
    let name = clean_name(name);
    if name.is_empty() {
        format!("console login from {from}")
    } else {
        format!("{name} (console login from {from})")
    }
}

/// Sliding-window limits on login attempts, per client address and in total.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    inner: Mutex<Attempts>,
}

#[derive(Debug, Default)]
struct Attempts {
    total: VecDeque<Instant>,
    per_client: BTreeMap<Option<IpAddr>, VecDeque<Instant>>,
}

impl LoginLimiter {
    /// Counts an attempt from `client` at `now`; `Err(wait)` when over a limit (the
    /// attempt is then not counted, and the token is not even compared).
    pub fn attempt(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut a = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < LOGIN_WINDOW;
        a.total.retain(fresh);
        a.per_client.retain(|_, q| {
            q.retain(fresh);
            !q.is_empty()
        });
        let wait = |q: &VecDeque<Instant>| {
            q.front().map_or(Duration::ZERO, |t| {
                LOGIN_WINDOW.saturating_sub(now.saturating_duration_since(*t))
            })
        };
        if a.total.len() >= LOGIN_ATTEMPTS_TOTAL {
            return Err(wait(&a.total));
        }
        let mine = a.per_client.entry(client).or_default();
        if mine.len() >= LOGIN_ATTEMPTS_PER_CLIENT {
            return Err(wait(mine));
        }
        mine.push_back(now);
        a.total.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn sessions_verify_only_with_the_same_token_before_expiry_and_until_revoked() {
        let now = t("2026-12-01T10:00:00Z");
        let keys = Keys::new(Some("token-a"));
        let (session, cookie) = keys.issue("alice (console)", now).expect("issued");
        assert_eq!(keys.verify(&cookie, now), Some(session.clone()));
        // Another replica with the same token accepts it; a different token does not.
        assert!(Keys::new(Some("token-a")).verify(&cookie, now).is_some());
        assert!(Keys::new(Some("token-b")).verify(&cookie, now).is_none());
        assert!(Keys::new(None).verify(&cookie, now).is_none());
        // Expiry.
        assert!(keys.verify(&cookie, now + SESSION_LIFETIME).is_none());
        // Tampering: another identity or expiry with the old signature.
        let (body, mac) = cookie.rsplit_once('.').expect("signed");
        let forged_identity = body.replace(
            &B64.encode("alice (console)"),
            &B64.encode("mallory (console)"),
        );
        assert!(
            keys.verify(&format!("{forged_identity}.{mac}"), now)
                .is_none()
        );
        let later = (now + chrono::Duration::days(30)).timestamp().to_string();
        let forged_expiry = body.replace(&session.expires.timestamp().to_string(), &later);
        assert!(
            keys.verify(&format!("{forged_expiry}.{mac}"), now)
                .is_none()
        );
        assert!(keys.verify("garbage", now).is_none());
        // Logout.
        keys.revoke(&session, now);
        assert!(keys.verify(&cookie, now).is_none());
        // The token appears nowhere in the cookie.
        assert!(!cookie.contains("token-a"));
    }

    #[test]
    fn csrf_tokens_are_per_session_and_checked_exactly() {
        let now = t("2026-12-01T10:00:00Z");
        let keys = Keys::new(Some("token"));
        let (a, _) = keys.issue("a", now).expect("a");
        let (b, _) = keys.issue("b", now).expect("b");
        let ta = keys.csrf(&a);
        assert!(keys.csrf_ok(&a, &ta));
        assert!(!keys.csrf_ok(&b, &ta), "another session's token");
        assert!(!keys.csrf_ok(&a, ""));
        assert!(!keys.csrf_ok(&a, &ta[..ta.len() - 1]));
        assert!(
            !Keys::new(None).csrf_ok(&a, ""),
            "no keys: no token is valid"
        );
    }

    #[test]
    fn login_attempts_are_limited_per_client_and_in_total() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        let a: Option<IpAddr> = Some("10.0.0.1".parse().expect("ip"));
        for _ in 0..LOGIN_ATTEMPTS_PER_CLIENT {
            assert!(limiter.attempt(a, start).is_ok());
        }
        let wait = limiter
            .attempt(a, start)
            .expect_err("over the client limit");
        assert!(wait > Duration::ZERO && wait <= LOGIN_WINDOW, "{wait:?}");
        // Another client is not affected until the total is reached.
        let mut n = LOGIN_ATTEMPTS_PER_CLIENT;
        for i in 0.. {
            let other: Option<IpAddr> = Some(IpAddr::from([10, 0, 1, (i % 200) as u8]));
            if limiter.attempt(other, start).is_err() {
                break;
            }
            n += 1;
        }
        assert_eq!(n, LOGIN_ATTEMPTS_TOTAL);
        // After the window, attempts are allowed again.
        assert!(limiter.attempt(a, start + LOGIN_WINDOW).is_ok());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_only_under_tls() {
        let plain = set_cookie(SESSION_COOKIE, "v", Some(60), false);
        let plain = plain.to_str().expect("ascii");
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure") && !plain.contains("Path="));
        let tls = set_cookie(SESSION_COOKIE, "v", Some(60), true);
        assert!(tls.to_str().expect("ascii").contains("; Secure"));
        let cleared = set_cookie(SESSION_COOKIE, "v", None, false);
        assert!(
            cleared
                .to_str()
                .expect("ascii")
                .starts_with("havoc_session=; Max-Age=0")
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https, http"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; havoc_session=xyz"),
        );
        assert!(over_tls(&h));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn identities_are_one_short_line() {
        let ip = Some("10.1.2.3".parse().expect("ip"));
        assert_eq!(identity("", ip), "console login from 10.1.2.3");
        assert_eq!(
            identity(" alice\n\u{7}", ip),
            "alice (console login from 10.1.2.3)"
        );
        assert_eq!(clean_name(&"x".repeat(100)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn every_answer_gets_the_security_headers() {
        let mut h = HeaderMap::new();
        secure_headers(&mut h);
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
}
