//! HTTP caching semantics, as pure functions over headers: the request's
//! and the response's `Cache-Control`, whether a response may be stored and
//! for how long, the key, the ETag and `If-None-Match`, and `Cache-Status`
//! (RFC 9111, RFC 9110 §13, RFC 9211). Nothing here does I/O, so each rule
//! has a unit test beside it.

use std::fmt::Write as _;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// The directives of a `Cache-Control` header that the layer acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` field of `headers`. Unknown directives
    /// are ignored; a qualified `no-cache="..."` or `private="..."` counts as
    /// the unqualified one (the layer cannot strip single fields on reuse).
    pub(crate) fn of(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for (name, arg) in directives(text) {
                let seconds = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    // A malformed age is no freshness at all (RFC 9111 §1.2.2).
                    "max-age" => cc.max_age = Some(seconds().unwrap_or(0)),
                    "s-maxage" => cc.s_maxage = Some(seconds().unwrap_or(0)),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// The `name[=argument]` directives of a comma-separated list; quoted
/// arguments may hold commas.
fn directives(text: &str) -> Vec<(&str, Option<&str>)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return out;
        }
        let end = rest.find([',', '=']).unwrap_or(rest.len());
        let name = rest[..end].trim();
        rest = &rest[end..];
        let mut arg = None;
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(quoted) = after.strip_prefix('"') {
                let close = quoted.find('"').unwrap_or(quoted.len());
                arg = Some(&quoted[..close]);
                rest = quoted.get(close + 1..).unwrap_or("");
            } else {
                let end = after.find(',').unwrap_or(after.len());
                arg = Some(after[..end].trim());
                rest = &after[end..];
            }
        }
        if !name.is_empty() {
            out.push((name, arg));
        }
    }
}

/// What a request asks of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Asks {
    /// `no-store`: the layer stays out of the way (neither reads nor stores).
    pub(crate) bypass: bool,
    /// `no-cache` or `max-age=0`: call the service and store its answer.
    pub(crate) revalidate: bool,
}

impl Asks {
    pub(crate) fn of(headers: &HeaderMap) -> Asks {
        let cc = CacheControl::of(headers);
        Asks {
            bypass: cc.no_store,
            revalidate: cc.no_cache || cc.max_age == Some(0),
        }
    }
}

/// The headers whose presence makes a response personal: a response marked
/// `private` is stored only when the layer varies by one of these and the
/// request carried it.
const CREDENTIALS: [HeaderName; 2] = [header::AUTHORIZATION, header::COOKIE];

/// What the storing rules need to know of the request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Credentials {
    /// It carried `Authorization`, and the layer does not vary by it.
    pub(crate) shared_authorization: bool,
    /// It carried a credential header the layer varies by: its key is
    /// that user's own.
    pub(crate) keyed: bool,
}

impl Credentials {
    pub(crate) fn of(headers: &HeaderMap, vary: &[HeaderName]) -> Credentials {
        let present = |name: &HeaderName| headers.get(name).is_some_and(|v| !v.is_empty());
        Credentials {
            shared_authorization: present(&header::AUTHORIZATION)
                && !vary.contains(&header::AUTHORIZATION),
            keyed: CREDENTIALS
                .iter()
                .any(|name| vary.contains(name) && present(name)),
        }
    }
}

/// Why a response is not stored (the `detail` of its `Cache-Status`).
pub(crate) type Unstored = &'static str;

/// How long a response may be stored: `ttl`, cut to its `s-maxage` (or
/// `max-age`); or why it may not be stored at all.
pub(crate) fn freshness(
    status: StatusCode,
    headers: &HeaderMap,
    statuses: &Statuses,
    vary: &[HeaderName],
    credentials: Credentials,
    ttl: Duration,
) -> Result<Duration, Unstored> {
    if !statuses.contains(status) {
        return Err("status");
    }
    let cc = CacheControl::of(headers);
    if cc.no_store {
        return Err("no-store");
    }
    if cc.no_cache {
        return Err("no-cache");
    }
    if cc.private && !credentials.keyed {
        return Err("private");
    }
    // RFC 9111 §3.5: an answer to a request with credentials is shared only
    // when the response says it may be.
    if credentials.shared_authorization
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err("authorization");
    }
    // Set-Cookie hands out state meant for one client.
    if headers.contains_key(header::SET_COOKIE) {
        return Err("set-cookie");
    }
    // A response that varies by a header the key does not hold could be
    // served to a request it does not fit: not stored (no vary index).
    for value in headers.get_all(header::VARY) {
        let Ok(text) = value.to_str() else {
            return Err("vary");
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" || !vary.iter().any(|v| v.as_str().eq_ignore_ascii_case(name)) {
                return Err("vary");
            }
        }
    }
    let lifetime = match cc.s_maxage.or(cc.max_age) {
        Some(seconds) => ttl.min(Duration::from_secs(seconds)),
        None => ttl,
    };
    if lifetime.is_zero() {
        return Err("max-age");
    }
    Ok(lifetime)
}

/// The status codes whose responses may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statuses([u64; 10]);

impl Statuses {
    /// RFC 9110 §15.1's heuristically cacheable codes, but 206 (the layer
    /// keeps whole bodies only).
    pub(crate) const DEFAULT: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

    pub(crate) fn new(codes: impl IntoIterator<Item = u16>) -> Statuses {
        let mut bits = [0u64; 10];
        for code in codes {
            assert!(
                (100..=599).contains(&code),
                "{code} is not an HTTP status code (100 to 599)"
            );
            bits[code as usize / 64] |= 1 << (code % 64);
        }
        Statuses(bits)
    }

    pub(crate) fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16() as usize;
        code < 640 && self.0[code / 64] & (1 << (code % 64)) != 0
    }
}

/// The key of a request: `GET /path?query`, then, when the layer varies by
/// headers, a space and a hash of their values (never the values in
/// clear). A space never occurs in a request target, so the two parts
/// cannot run into each other. HEAD shares GET's entry.
pub(crate) fn key(parts: &Parts, vary: &[HeaderName], secret: Option<&Secret>) -> String {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut key = String::with_capacity(4 + target.len() + if vary.is_empty() { 0 } else { 65 });
    key.push_str(Method::GET.as_str());
    key.push(' ');
    key.push_str(target);
    if !vary.is_empty() {
        key.push(' ');
        key.push_str(&vary_hash(&parts.headers, vary, secret));
    }
    key
}

/// A hash of the values of the `vary` headers, as hex: every value of each,
/// length-prefixed, so that distinct sets of values never hash alike. Keyed
/// with the integrity secret when one is configured, so that a leaked key
/// cannot be tested offline against guessed credentials.
fn vary_hash(headers: &HeaderMap, vary: &[HeaderName], secret: Option<&Secret>) -> String {
    fn feed(update: &mut dyn FnMut(&[u8]), headers: &HeaderMap, vary: &[HeaderName]) {
        for name in vary {
            let values = headers.get_all(name);
            update(&(values.iter().count() as u64).to_le_bytes());
            for value in values {
                update(&(value.len() as u64).to_le_bytes());
                update(value.as_bytes());
            }
        }
    }
    let digest: [u8; 32] = match secret {
        Some(secret) => {
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose())
                .expect("HMAC takes keys of any length");
            feed(&mut |b| mac.update(b), headers, vary);
            mac.finalize().into_bytes().into()
        }
        None => {
            let mut hash = Sha256::new();
            feed(&mut |b| hash.update(b), headers, vary);
            hash.finalize().into()
        }
    };
    hex(&digest)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A strong ETag for a body: 128 bits of its SHA-256.
pub(crate) fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let tag = format!("\"{}\"", hex(&digest[..16]));
    HeaderValue::from_str(&tag).expect("hex in quotes is a valid header value")
}

/// Whether `If-None-Match` matches `etag` (weak comparison, RFC 9110
/// §13.1.2): `*`, or one of its entity tags with the same opaque tag.
pub(crate) fn none_match(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Some(ours) = opaque(etag.as_bytes()) else {
        return false;
    };
    let mut rest = if_none_match.as_bytes();
    loop {
        while let [b',' | b' ' | b'\t', tail @ ..] = rest {
            rest = tail;
        }
        match rest {
            [] => return false,
            [b'*', ..] => return true,
            _ => {}
        }
        let tag_start = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(tail) = tag_start.strip_prefix(b"\"") else {
            return false;
        };
        let Some(close) = tail.iter().position(|&b| b == b'"') else {
            return false;
        };
        if &tail[..close] == ours {
            return true;
        }
        rest = &tail[close + 1..];
    }
}

/// The opaque tag of an entity tag (`"x"` or `W/"x"`), quotes removed.
fn opaque(tag: &[u8]) -> Option<&[u8]> {
    let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
    tag.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

/// The headers a `304 Not Modified` carries over from the 200 it stands for
/// (RFC 9110 §15.4.5).
pub(crate) const NOT_MODIFIED_HEADERS: [HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

/// Headers that describe one hop or one cache's handling, not the
/// response: never stored.
pub(crate) const PER_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::AGE,
    CACHE_STATUS,
];

/// The layer's member of `Cache-Status` (RFC 9211).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// Served from the cache without calling the service; `ttl` is the
    /// remaining freshness in seconds (negative: served stale).
    Hit { ttl: i64 },
    /// The service was called (`fwd`), or this request waited for another
    /// one's call (`collapsed`).
    Forward {
        fwd: &'static str,
        status: Option<u16>,
        stored: bool,
        collapsed: bool,
        ttl: Option<i64>,
        detail: Option<&'static str>,
    },
}

impl CacheStatus {
    pub(crate) fn forward(fwd: &'static str, status: Option<u16>) -> CacheStatus {
        CacheStatus::Forward {
            fwd,
            status,
            stored: false,
            collapsed: false,
            ttl: None,
            detail: None,
        }
    }

    pub(crate) fn detail(mut self, why: &'static str) -> CacheStatus {
        if let CacheStatus::Forward { detail, .. } = &mut self {
            *detail = Some(why);
        }
        self
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::from("cachekit");
        match self {
            CacheStatus::Hit { ttl } => {
                let _ = write!(out, "; hit; ttl={ttl}");
            }
            CacheStatus::Forward {
                fwd,
                status,
                stored,
                collapsed,
                ttl,
                detail,
            } => {
                let _ = write!(out, "; fwd={fwd}");
                if let Some(status) = status {
                    let _ = write!(out, "; fwd-status={status}");
                }
                if let Some(ttl) = ttl {
                    let _ = write!(out, "; ttl={ttl}");
                }
                if *stored {
                    out.push_str("; stored");
                }
                if *collapsed {
                    out.push_str("; collapsed");
                }
                if let Some(detail) = detail {
                    let _ = write!(out, "; detail={detail}");
                }
            }
        }
        out
    }
}

/// Adds the layer's member to `Cache-Status`, after any member of a cache
/// nearer the origin (RFC 9211 §2).
pub(crate) fn add_cache_status(headers: &mut HeaderMap, status: &CacheStatus) {
    let ours = status.render();
    let value = match headers.get(CACHE_STATUS).and_then(|v| v.to_str().ok()) {
        Some(inner) if !inner.trim().is_empty() => format!("{inner}, {ours}"),
        _ => ours,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(CACHE_STATUS, value);
    }
}

/// `Cache-Status` (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn parts(uri: &str, pairs: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::get(uri).body(()).unwrap();
        *request.headers_mut() = headers(pairs);
        request.into_parts().0
    }

    const TTL: Duration = Duration::from_secs(60);

    fn fresh(pairs: &[(&str, &str)], vary: &[HeaderName], c: Credentials) -> Result<u64, Unstored> {
        let statuses = Statuses::new(Statuses::DEFAULT);
        freshness(StatusCode::OK, &headers(pairs), &statuses, vary, c, TTL).map(|d| d.as_secs())
    }

    #[test]
    fn cache_control_directives_parse_with_quotes_and_case() {
        let cc = CacheControl::of(&headers(&[
            (
                "cache-control",
                "Public, max-age=30, private=\"set-cookie, x\"",
            ),
            ("cache-control", "s-maxage = 10 ,no-cache"),
        ]));
        assert!(cc.public && cc.private && cc.no_cache && !cc.no_store);
        assert_eq!((cc.max_age, cc.s_maxage), (Some(30), Some(10)));
        assert_eq!(
            CacheControl::of(&headers(&[("cache-control", "max-age=soon")])).max_age,
            Some(0)
        );
        let asks = Asks::of(&headers(&[("cache-control", "max-age=0")]));
        assert!(asks.revalidate && !asks.bypass);
        assert!(Asks::of(&headers(&[("cache-control", "no-store")])).bypass);
    }

    #[test]
    fn what_may_be_stored_and_for_how_long() {
        let none = Credentials::default();
        assert_eq!(fresh(&[], &[], none), Ok(60));
        assert_eq!(fresh(&[("cache-control", "max-age=5")], &[], none), Ok(5));
        assert_eq!(
            fresh(&[("cache-control", "max-age=5, s-maxage=20")], &[], none),
            Ok(20)
        );
        assert_eq!(
            fresh(&[("cache-control", "max-age=600")], &[], none),
            Ok(60)
        );
        assert_eq!(
            fresh(&[("cache-control", "max-age=0")], &[], none),
            Err("max-age")
        );
        assert_eq!(
            fresh(&[("cache-control", "no-store")], &[], none),
            Err("no-store")
        );
        assert_eq!(
            fresh(&[("set-cookie", "a=b")], &[], none),
            Err("set-cookie")
        );
        assert_eq!(fresh(&[("vary", "*")], &[], none), Err("vary"));
        assert_eq!(
            fresh(&[("vary", "Accept-Encoding")], &[], none),
            Err("vary")
        );
        assert_eq!(
            fresh(
                &[("vary", "accept-encoding, Authorization")],
                &[header::ACCEPT_ENCODING, header::AUTHORIZATION],
                none
            ),
            Ok(60)
        );
        let status = |code| {
            freshness(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                &Statuses::new(Statuses::DEFAULT),
                &[],
                none,
                TTL,
            )
        };
        assert!(status(404).is_ok() && status(308).is_ok());
        assert_eq!(status(500), Err("status"));
        assert_eq!(status(206), Err("status"));
        assert_eq!(status(302), Err("status"));
    }

    #[test]
    fn private_answers_are_stored_only_under_the_credential_that_makes_them_private() {
        let vary = [header::AUTHORIZATION];
        let private = [("cache-control", "private, max-age=10")];
        let with = |pairs: &[(&str, &str)]| Credentials::of(&headers(pairs), &vary);
        assert_eq!(
            fresh(&private, &vary, with(&[("authorization", "Bearer a")])),
            Ok(10)
        );
        // No credential: the key is everyone's.
        assert_eq!(fresh(&private, &vary, with(&[])), Err("private"));
        // A cookie the layer does not vary by does not make the key personal.
        assert_eq!(
            fresh(&private, &vary, with(&[("cookie", "s=1")])),
            Err("private")
        );
        // Authorization the layer does not vary by: only explicitly shared answers.
        let shared = Credentials::of(&headers(&[("authorization", "Bearer a")]), &[]);
        assert_eq!(fresh(&[], &[], shared), Err("authorization"));
        assert_eq!(fresh(&[("cache-control", "public")], &[], shared), Ok(60));
    }

    #[test]
    fn keys_hold_the_target_and_a_hash_of_the_varied_values() {
        let vary = [header::AUTHORIZATION];
        let a = key(
            &parts("/r?x=1", &[("authorization", "Bearer a")]),
            &vary,
            None,
        );
        let b = key(
            &parts("/r?x=1", &[("authorization", "Bearer b")]),
            &vary,
            None,
        );
        let none = key(&parts("/r?x=1", &[]), &vary, None);
        assert!(a.starts_with("GET /r?x=1 ") && a.len() == "GET /r?x=1 ".len() + 64);
        assert!(!a.contains("Bearer"), "never the value in clear");
        assert!(a != b && a != none && b != none);
        assert_eq!(key(&parts("/r", &[]), &[], None), "GET /r");
        // Two values of one header are not one value holding both.
        let two = key(
            &parts("/", &[("authorization", "a"), ("authorization", "b")]),
            &vary,
            None,
        );
        let one = key(&parts("/", &[("authorization", "ab")]), &vary, None);
        assert_ne!(two, one);
        let secret = Secret::new("0123456789abcdef0123");
        let keyed = key(
            &parts("/r?x=1", &[("authorization", "Bearer a")]),
            &vary,
            Some(&secret),
        );
        assert_ne!(keyed, a);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = etag(b"hello");
        let t = tag.to_str().unwrap().to_owned();
        let matches = |inm: &str| none_match(&HeaderValue::from_str(inm).unwrap(), &tag);
        assert!(matches(&t));
        assert!(matches(&format!("W/{t}")));
        assert!(matches(&format!("\"other\", {t}")));
        assert!(matches("*"));
        assert!(!matches("\"other\""));
        assert!(!matches("\"a,b\", \"c\""));
        assert!(!matches("garbage"));
        assert_ne!(etag(b"hello"), etag(b"hellp"));
    }

    #[test]
    fn cache_status_members_follow_rfc_9211() {
        assert_eq!(CacheStatus::Hit { ttl: 4 }.render(), "cachekit; hit; ttl=4");
        let stored = CacheStatus::Forward {
            fwd: "miss",
            status: Some(200),
            stored: true,
            collapsed: false,
            ttl: None,
            detail: None,
        };
        assert_eq!(
            stored.render(),
            "cachekit; fwd=miss; fwd-status=200; stored"
        );
        assert_eq!(
            CacheStatus::forward("stale", Some(503))
                .detail("fail-safe")
                .render(),
            "cachekit; fwd=stale; fwd-status=503; detail=fail-safe"
        );
        let mut h = headers(&[("cache-status", "inner; hit")]);
        add_cache_status(&mut h, &CacheStatus::Hit { ttl: 1 });
        assert_eq!(h[CACHE_STATUS], "inner; hit, cachekit; hit; ttl=1");
    }
}
