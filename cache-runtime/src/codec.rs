//! Codecs and the stored-value envelope.
//!
//! The default entry is the value's JSON and nothing else, so `redis-cli GET`
//! shows it as is. Whatever needs more (another codec, compression, the
//! timestamps of early refresh and stale serving, the index list of an
//! indexed value, an integrity signature) is framed:
//!
//! ```text
//! 0xFF 'C' version flags [soft_expiry_ms u64 LE, delta_ms u32 LE]
//!                        [count u16 LE, (len u16 LE, bytes)*]   index keys
//!                        payload
//!                        [HMAC-SHA256(secret, key 0x00 everything before) 32 bytes]
//! ```
//!
//! `0xFF` never starts valid JSON (nor valid UTF-8), so a framed entry can
//! never be read as bare JSON and the reverse: a codec change, a flag change
//! or plain garbage reads as a miss, never as a wrong value.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Secret;
use crate::error::{Error, Result};

const MAGIC: [u8; 2] = [0xFF, b'C'];
const VERSION: u8 = 1;
const MAC_LEN: usize = 32;

const FLAG_MSGPACK: u8 = 0b0000_0001;
const FLAG_LZ4: u8 = 0b0000_0100;
const FLAG_TIMES: u8 = 0b0000_1000;
const FLAG_INDEXES: u8 = 0b0001_0000;
const FLAG_MAC: u8 = 0b0010_0000;
const KNOWN_FLAGS: u8 = FLAG_MSGPACK | FLAG_LZ4 | FLAG_TIMES | FLAG_INDEXES | FLAG_MAC;

/// How values are serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (serde_json): readable in `redis-cli`. The default.
    #[default]
    Json,
    /// MessagePack (rmp-serde): smaller and faster, not readable. Feature
    /// `msgpack`.
    MsgPack,
}

impl Codec {
    fn flag(self) -> u8 {
        match self {
            Codec::Json => 0,
            Codec::MsgPack => FLAG_MSGPACK,
        }
    }

    /// Serializes a value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        match self {
            Codec::Json => serde_json::to_vec(value)
                .map_err(|e| Error::Codec(format!("JSON encoding failed: {e}"))),
            Codec::MsgPack => {
                #[cfg(feature = "msgpack")]
                {
                    rmp_serde::to_vec_named(value)
                        .map_err(|e| Error::Codec(format!("MessagePack encoding failed: {e}")))
                }
                #[cfg(not(feature = "msgpack"))]
                {
                    Err(Error::Config(
                        "the MessagePack codec needs cachekit's `msgpack` feature".into(),
                    ))
                }
            }
        }
    }

    /// Whether a payload is the codec's null (`None`, `()`).
    pub fn is_null(self, payload: &[u8]) -> bool {
        match self {
            Codec::Json => payload == b"null",
            Codec::MsgPack => payload == [0xC0],
        }
    }

    /// Deserializes a value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            Codec::Json => serde_json::from_slice(bytes)
                .map_err(|e| Error::Codec(format!("JSON decoding failed: {e}"))),
            Codec::MsgPack => {
                #[cfg(feature = "msgpack")]
                {
                    rmp_serde::from_slice(bytes)
                        .map_err(|e| Error::Codec(format!("MessagePack decoding failed: {e}")))
                }
                #[cfg(not(feature = "msgpack"))]
                {
                    let _ = bytes;
                    Err(Error::Config(
                        "the MessagePack codec needs cachekit's `msgpack` feature".into(),
                    ))
                }
            }
        }
    }
}

/// How an entry is written: codec, compression, and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Format {
    /// The codec.
    pub codec: Codec,
    /// Compress payloads of at least this many bytes (LZ4, feature `lz4`).
    pub compress_above: Option<u32>,
}

impl Format {
    /// JSON, uncompressed.
    pub const JSON: Format = Format {
        codec: Codec::Json,
        compress_above: None,
    };
}

/// Metadata stored with an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Logical expiry (ms since the Unix epoch) for early refresh and stale
    /// serving; the store keeps the entry longer when stale serving is on.
    pub soft_expiry_ms: Option<u64>,
    /// How long the computation took (ms), for early refresh.
    pub delta_ms: u32,
    /// The index keys this entry is listed in.
    pub indexes: Vec<String>,
}

impl Meta {
    /// No metadata.
    pub const NONE: Meta = Meta {
        soft_expiry_ms: None,
        delta_ms: 0,
        indexes: Vec::new(),
    };
}

/// A decoded entry: the (decompressed) payload, its codec and metadata.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The serialized value.
    pub payload: Cow<'a, [u8]>,
    /// The codec of `payload`.
    pub codec: Codec,
    /// The metadata.
    pub meta: Meta,
}

impl Entry<'_> {
    /// Deserializes the value, checking that it was written with `expected`.
    pub fn value<T: DeserializeOwned>(&self, expected: Codec) -> Result<T> {
        if self.codec != expected {
            return Err(Error::Codec(format!(
                "entry was written with {:?}, read with {expected:?}",
                self.codec
            )));
        }
        self.codec.decode(&self.payload)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Encodes and decodes entries, signing them when an integrity secret is set.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    secret: Option<Secret>,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl Envelope {
    /// An envelope that signs with `secret`, if any.
    pub fn new(secret: Option<Secret>) -> Self {
        Envelope { secret }
    }

    /// Whether entries are signed.
    pub fn signs(&self) -> bool {
        self.secret.is_some()
    }

    /// Serializes `value` and frames it for `key`.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        format: Format,
        meta: &Meta,
    ) -> Result<Bytes> {
        let payload = format.codec.encode(value)?;
        self.frame(key, payload, format, meta)
    }

    /// Frames an already serialized payload for `key`.
    pub fn frame(&self, key: &str, payload: Vec<u8>, format: Format, meta: &Meta) -> Result<Bytes> {
        let compress = format
            .compress_above
            .is_some_and(|min| payload.len() >= min as usize);
        let bare = format.codec == Codec::Json
            && !compress
            && meta.soft_expiry_ms.is_none()
            && meta.indexes.is_empty()
            && self.secret.is_none();
        if bare {
            return Ok(Bytes::from(payload));
        }
        let mut flags = format.codec.flag();
        let payload: Cow<'_, [u8]> = if compress {
            #[cfg(feature = "lz4")]
            {
                flags |= FLAG_LZ4;
                Cow::Owned(lz4_flex::compress_prepend_size(&payload))
            }
            #[cfg(not(feature = "lz4"))]
            {
                return Err(Error::Config(
                    "compression needs cachekit's `lz4` feature".into(),
                ));
            }
        } else {
            Cow::Borrowed(&payload)
        };
        if meta.soft_expiry_ms.is_some() {
            flags |= FLAG_TIMES;
        }
        if !meta.indexes.is_empty() {
            flags |= FLAG_INDEXES;
        }
        if self.secret.is_some() {
            flags |= FLAG_MAC;
        }
        let mut out = Vec::with_capacity(payload.len() + 48);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(flags);
        if let Some(expiry) = meta.soft_expiry_ms {
            out.extend_from_slice(&expiry.to_le_bytes());
            out.extend_from_slice(&meta.delta_ms.to_le_bytes());
        }
        if !meta.indexes.is_empty() {
            let count = u16::try_from(meta.indexes.len())
                .map_err(|_| Error::invalid("an entry can be listed in at most 65535 indexes"))?;
            out.extend_from_slice(&count.to_le_bytes());
            for index in &meta.indexes {
                let len =
                    u16::try_from(index.len()).map_err(|_| Error::invalid("index key too long"))?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(index.as_bytes());
            }
        }
        out.extend_from_slice(&payload);
        if let Some(secret) = &self.secret {
            let tag = sign(secret, key, &out);
            out.extend_from_slice(&tag);
        }
        Ok(Bytes::from(out))
    }

    /// Unframes a stored entry read at `key`. Any error means the entry is
    /// not usable and must be treated as a miss.
    pub fn decode<'a>(&self, key: &str, raw: &'a [u8]) -> Result<Entry<'a>> {
        if !raw.starts_with(&MAGIC) {
            if self.secret.is_some() {
                return Err(Error::Codec("entry is not signed".into()));
            }
            return Ok(Entry {
                payload: Cow::Borrowed(raw),
                codec: Codec::Json,
                meta: Meta::NONE,
            });
        }
        let bad = |what: &str| Error::Codec(format!("malformed entry: {what}"));
        if raw.len() < 4 || raw[2] != VERSION {
            return Err(bad("unknown version"));
        }
        let flags = raw[3];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(bad("unknown flags"));
        }
        let mut body = raw;
        if flags & FLAG_MAC != 0 {
            let Some(secret) = &self.secret else {
                return Err(Error::Codec(
                    "entry is signed, but no integrity secret is configured".into(),
                ));
            };
            if raw.len() < 4 + MAC_LEN {
                return Err(bad("truncated signature"));
            }
            let (signed, tag) = raw.split_at(raw.len() - MAC_LEN);
            if !verify(secret, key, signed, tag) {
                return Err(Error::Codec(
                    "entry signature does not match its key and value".into(),
                ));
            }
            body = signed;
        } else if self.secret.is_some() {
            return Err(Error::Codec("entry is not signed".into()));
        }
        let mut cursor = Cursor(&body[4..]);
        let mut meta = Meta::default();
        if flags & FLAG_TIMES != 0 {
            meta.soft_expiry_ms = Some(u64::from_le_bytes(cursor.array()?));
            meta.delta_ms = u32::from_le_bytes(cursor.array()?);
        }
        if flags & FLAG_INDEXES != 0 {
            let count = u16::from_le_bytes(cursor.array()?);
            for _ in 0..count {
                let len = u16::from_le_bytes(cursor.array()?) as usize;
                let index = std::str::from_utf8(cursor.take(len)?).map_err(|_| bad("index key"))?;
                meta.indexes.push(index.to_owned());
            }
        }
        let payload = cursor.0;
        let codec = if flags & FLAG_MSGPACK != 0 {
            Codec::MsgPack
        } else {
            Codec::Json
        };
        let payload = if flags & FLAG_LZ4 != 0 {
            #[cfg(feature = "lz4")]
            {
                Cow::Owned(
                    lz4_flex::decompress_size_prepended(payload)
                        .map_err(|_| bad("compressed payload"))?,
                )
            }
            #[cfg(not(feature = "lz4"))]
            {
                return Err(Error::Codec(
                    "entry is compressed; enable cachekit's `lz4` feature".into(),
                ));
            }
        } else {
            Cow::Borrowed(payload)
        };
        Ok(Entry {
            payload,
            codec,
            meta,
        })
    }
}

/// Reads the fixed-size fields of a framed entry.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Codec("malformed entry: truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
}

fn mac(secret: &Secret, key: &str, signed: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.expose())
        .expect("HMAC takes keys of any length");
    mac.update(key.as_bytes());
    mac.update(&[0]);
    mac.update(signed);
    mac
}

fn sign(secret: &Secret, key: &str, signed: &[u8]) -> [u8; MAC_LEN] {
    mac(secret, key, signed).finalize().into_bytes().into()
}

fn verify(secret: &Secret, key: &str, signed: &[u8], tag: &[u8]) -> bool {
    mac(secret, key, signed).verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct User {
        id: u64,
        name: String,
    }

    #[test]
    fn json_entries_are_bare() {
        let env = Envelope::default();
        let user = User {
            id: 7,
            name: "Ada".into(),
        };
        let bytes = env
            .encode("user:7", &user, Format::JSON, &Meta::NONE)
            .unwrap();
        assert_eq!(&bytes[..], br#"{"id":7,"name":"Ada"}"#);
        let entry = env.decode("user:7", &bytes).unwrap();
        assert_eq!(entry.value::<User>(Codec::Json).unwrap(), user);
    }

    #[test]
    fn metadata_round_trips() {
        let env = Envelope::default();
        let meta = Meta {
            soft_expiry_ms: Some(123_456),
            delta_ms: 42,
            indexes: vec!["ns#idx:user:alice".into(), "ns#idx:org:1".into()],
        };
        let bytes = env.encode("k", &5u32, Format::JSON, &meta).unwrap();
        assert_eq!(bytes[0], 0xFF);
        let entry = env.decode("k", &bytes).unwrap();
        assert_eq!(entry.meta, meta);
        assert_eq!(entry.value::<u32>(Codec::Json).unwrap(), 5);
        // Garbage and truncations are errors, never panics.
        for cut in 0..bytes.len() {
            let _ = env.decode("k", &bytes[..cut]);
        }
        assert!(env.decode("k", b"\xFFC\x09\x00").is_err());
        assert!(env.decode("k", b"\xFFC\x01\x80").is_err());
    }

    #[test]
    fn signatures_bind_key_and_value() {
        let signed = Envelope::new(Some(Secret::new("0123456789abcdef0123")));
        let bytes = signed
            .encode("user:7", &7u32, Format::JSON, &Meta::NONE)
            .unwrap();
        assert!(signed.decode("user:7", &bytes).is_ok());
        assert!(
            signed.decode("user:8", &bytes).is_err(),
            "copied to another key"
        );
        assert!(signed.decode("user:7", b"7").is_err(), "unsigned value");
        let mut tampered = bytes.to_vec();
        tampered[4] ^= 1;
        assert!(signed.decode("user:7", &tampered).is_err());
        let other = Envelope::new(Some(Secret::new("another secret, other party")));
        assert!(other.decode("user:7", &bytes).is_err());
        assert!(Envelope::default().decode("user:7", &bytes).is_err());
    }

    #[test]
    fn a_codec_change_is_a_miss() {
        let env = Envelope::default();
        let bytes = env.encode("k", &"text", Format::JSON, &Meta::NONE).unwrap();
        let entry = env.decode("k", &bytes).unwrap();
        assert!(entry.value::<String>(Codec::MsgPack).is_err());
    }
}
