//! What the layer keeps of a response, and its stored form.
//!
//! In process (the embedded store, the tier) an entry is a [`Stored`]
//! behind an `Arc`: a hit clones the `Arc`. On a shared store it is the
//! response in the shape of an HTTP/1.1 message, readable with
//! `redis-cli GET`, inside the engine's usual envelope:
//!
//! ```text
//! cachekit-http/1 200 1733120000123 5000\r\n     version, status, stored at (ms), fresh for (ms)
//! content-type: application/json\r\n
//! etag: "2cf24dba5fb0a30e26e83b2ac5b9e29e"\r\n
//! \r\n
//! {"user_id":7,...}                               the body, as it was sent
//! ```
//!
//! Header values cannot hold CR or LF, so the lines split unambiguously;
//! the body is everything after the blank line.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::rules;

use crate::codec::Codec;
use crate::engine::Storage;
use crate::error::{Error, Result};
use crate::local::PayloadFn;

/// The first token of the stored form: a change of layout is a miss.
const VERSION: &str = "cachekit-http/1";

/// A stored response.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    /// Every header but the per-hop ones, with its ETag.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// When it was stored, in ms on the cache's clock.
    pub(crate) stored_ms: u64,
    /// How long it is fresh, in ms: the layer's TTL, or less if the
    /// response's `s-maxage`/`max-age` says so.
    pub(crate) fresh_ms: u64,
}

/// The engine's value: a stored response, shared.
pub(crate) type Value = Arc<Stored>;

impl Stored {
    /// What the layer keeps of a response of the service: its headers but
    /// the per-hop ones, with a strong ETag of the body when it is a
    /// success and has none.
    pub(crate) fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        stored_ms: u64,
        fresh: Duration,
    ) -> Stored {
        for name in &rules::PER_HOP {
            headers.remove(name);
        }
        if status.is_success() && !headers.contains_key(header::ETAG) {
            headers.insert(header::ETAG, rules::etag(&body));
        }
        Stored {
            status,
            headers,
            body,
            stored_ms,
            fresh_ms: fresh.as_millis().min(u128::from(u64::MAX)) as u64,
        }
    }

    /// Its age at `now_ms`, in ms.
    pub(crate) fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.stored_ms)
    }

    /// Its remaining freshness at `now_ms`, in whole seconds (negative when
    /// stale, rounded down).
    pub(crate) fn ttl_secs(&self, now_ms: u64) -> i64 {
        let left = self.fresh_ms as i64 - self.age_ms(now_ms) as i64;
        left.div_euclid(1000)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(64 + headers + self.body.len());
        let first = format!(
            "{VERSION} {} {} {}\r\n",
            self.status.as_u16(),
            self.stored_ms,
            self.fresh_ms
        );
        out.extend_from_slice(first.as_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Stored> {
        let bad = |what: &str| Error::Codec(format!("not a stored HTTP response: {what}"));
        let mut rest = bytes;
        let mut line = || -> Result<&[u8]> {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("truncated"))?;
            let (line, tail) = rest.split_at(end);
            rest = &tail[2..];
            Ok(line)
        };
        let first = std::str::from_utf8(line()?).map_err(|_| bad("first line"))?;
        let mut fields = first.split(' ');
        if fields.next() != Some(VERSION) {
            return Err(bad("version"));
        }
        let mut number = || -> Result<u64> {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad("first line"))
        };
        let status = u16::try_from(number()?)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| bad("status"))?;
        let (stored_ms, fresh_ms) = (number()?, number()?);
        let mut headers = HeaderMap::new();
        loop {
            let header = line()?;
            if header.is_empty() {
                break;
            }
            let colon = header
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| bad("header"))?;
            let name = HeaderName::from_bytes(&header[..colon]).map_err(|_| bad("header name"))?;
            let value = header[colon + 1..]
                .strip_prefix(b" ")
                .unwrap_or(&header[colon + 1..]);
            let value = HeaderValue::from_bytes(value).map_err(|_| bad("header value"))?;
            headers.append(name, value);
        }
        Ok(Stored {
            status,
            headers,
            body: Bytes::copy_from_slice(rest),
            stored_ms,
            fresh_ms,
        })
    }
}

/// How the engine weighs, writes and reads stored responses: in the form
/// above, whatever the configured codec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire;

fn payload(value: &(dyn Any + Send + Sync), _: Codec) -> Result<Vec<u8>> {
    value
        .downcast_ref::<Value>()
        .map(|stored| stored.encode())
        .ok_or_else(|| Error::Codec("held value of another type".into()))
}

impl Storage<Value> for Wire {
    fn weight(value: &Value) -> usize {
        let headers: usize = value
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        std::mem::size_of::<Stored>() + headers + value.body.len()
    }

    fn is_null(_: &Value) -> bool {
        false
    }

    fn encode(value: &Value, _: Codec) -> Result<Vec<u8>> {
        Ok(value.encode())
    }

    fn decode(bytes: &[u8], _: Codec) -> Result<Value> {
        Stored::decode(bytes).map(Arc::new)
    }

    fn payload_fn() -> Option<PayloadFn> {
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &'static [u8]) -> Stored {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-many", HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("b: c"));
        headers.insert(
            "x-bytes",
            HeaderValue::from_bytes(b"caf\xc3\xa9 \xff").unwrap(),
        );
        Stored {
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::from_static(body),
            stored_ms: 1_733_120_000_123,
            fresh_ms: 5_000,
        }
    }

    #[test]
    fn the_stored_form_round_trips_and_reads_like_http() {
        for body in [&b"{\"a\":1}"[..], b"", b"\r\n\r\nbinary\x00\xff\r\n"] {
            let stored = sample(body);
            let bytes = stored.encode();
            let back = Stored::decode(&bytes).unwrap();
            assert_eq!(back.status, stored.status);
            assert_eq!(back.headers, stored.headers);
            assert_eq!(back.body, stored.body);
            assert_eq!(
                (back.stored_ms, back.fresh_ms),
                (stored.stored_ms, stored.fresh_ms)
            );
        }
        let text = String::from_utf8_lossy(&sample(b"{}").encode()).into_owned();
        assert!(
            text.starts_with(
                "cachekit-http/1 404 1733120000123 5000\r\ncontent-type: application/json\r\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn other_bytes_are_refused() {
        for bad in [
            &b""[..],
            b"{\"json\": true}",
            b"cachekit-http/2 200 1 1\r\n\r\n",
            b"cachekit-http/1 999 1 1\r\n\r\n",
            b"cachekit-http/1 200 1\r\n\r\n",
            b"cachekit-http/1 200 1 1\r\nno colon\r\n\r\n",
            b"cachekit-http/1 200 1 1\r\nx: y\r\n",
        ] {
            assert!(
                Stored::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ttl_counts_down_into_the_negative() {
        let s = sample(b"");
        let at = |ms| s.ttl_secs(s.stored_ms + ms);
        assert_eq!(
            (at(0), at(999), at(4_999), at(5_000), at(5_001), at(7_500)),
            (5, 4, 0, 0, -1, -3)
        );
    }
}
