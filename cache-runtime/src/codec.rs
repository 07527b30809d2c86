//! Codecs, the stored-value envelope, and lease markers.
//!
//! The default entry is the value's JSON and nothing else, so `redis-cli GET`
//! shows it as is. Whatever needs more (another codec, compression, the
//! times of early refresh, stale serving and fail-safe, the index list of an
//! indexed value, an integrity signature) is framed:
//!
//! ```text
//! 0xFF 'C' version flags [soft_expiry_ms u64 LE, hard_expiry_ms u64 LE, delta_ms u32 LE]
//!                        [count u16 LE, (len u16 LE, bytes)*]   index keys
//!                        payload
//!                        [HMAC-SHA256(secret, key 0x00 everything before) 32 bytes]
//! ```
//!
//! `0xFF` never starts valid JSON (nor valid UTF-8), so a framed entry can
//! never be read as bare JSON and the reverse: a codec change, a flag change
//! or plain garbage reads as a miss, never as a wrong value.
//!
//! A computation under way holds a lease on its key: the key holds
//! `0xFF 'L'` and a random token until the result replaces it (see
//! `engine`). A lease reads as absent everywhere.
//!
//! Before a value is stored it must survive its codec: [`Codec::encode_checked`]
//! refuses values that would not decode to what was stored (JSON turns NaN
//! and infinities into `null`, which `Option<f64>` then reads as `None`).

use std::borrow::Cow;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Secret;
use crate::error::{Error, Result};

const MAGIC: [u8; 2] = [0xFF, b'C'];
const LEASE: [u8; 2] = [0xFF, b'L'];
const VERSION: u8 = 2;
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

impl Codec {
    /// Serializes a value that must read back as itself, or refuses it:
    /// JSON stores NaN and infinities as `null` (so `Some(f64::NAN)` would
    /// read back as `None`, and a plain NaN not at all), and a value whose
    /// `Deserialize` does not accept what its `Serialize` wrote would be a
    /// miss on every read, recomputed and rewritten forever.
    pub(crate) fn encode_checked<T: Serialize + DeserializeOwned>(
        self,
        value: &T,
    ) -> Result<Vec<u8>> {
        if self == Codec::Json {
            inspect(value, true)?;
        }
        let payload = self.encode(value)?;
        self.decode::<T>(&payload).map_err(|e| {
            Error::Codec(format!("the value does not decode back to its type ({e})"))
        })?;
        Ok(payload)
    }
}

/// Walks a value as serde sees it: its estimated heap size in bytes, or an
/// error if `finite_floats` and it holds a NaN or an infinity.
pub(crate) fn inspect<T: Serialize + ?Sized>(value: &T, finite_floats: bool) -> Result<usize> {
    Ok(walk(value, finite_floats)?.bytes)
}

/// Whether a value serializes as null (`None`, `()`), as `cache_none`
/// means it.
pub(crate) fn is_null<T: Serialize + ?Sized>(value: &T) -> bool {
    walk(value, false).is_ok_and(|w| w.null == Some(true))
}

fn walk<T: Serialize + ?Sized>(value: &T, finite_floats: bool) -> Result<Walker> {
    let mut walker = Walker {
        bytes: 0,
        finite_floats,
        null: None,
    };
    value
        .serialize(&mut walker)
        .map_err(|e| Error::Codec(e.0))?;
    Ok(walker)
}

/// The walker of [`inspect`]: a serializer that writes nothing.
struct Walker {
    bytes: usize,
    finite_floats: bool,
    /// Whether the outermost thing serialized was a null.
    null: Option<bool>,
}

#[derive(Debug)]
struct WalkError(String);

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl serde::ser::Error for WalkError {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        WalkError(msg.to_string())
    }
}

impl Walker {
    fn saw(&mut self, null: bool) {
        self.null.get_or_insert(null);
    }

    fn float(&mut self, finite: bool) -> std::result::Result<(), WalkError> {
        self.saw(false);
        self.bytes += 8;
        if self.finite_floats && !finite {
            return Err(WalkError(
                "the value holds a NaN or an infinite float, which JSON stores as `null`: \
                 it would not read back as stored (use `codec = \"msgpack\"` to cache it)"
                    .into(),
            ));
        }
        Ok(())
    }
}

macro_rules! walk_scalars {
    ($($method:ident: $ty:ty => $size:expr;)*) => {$(
        fn $method(self, _: $ty) -> std::result::Result<(), WalkError> {
            self.saw(false);
            self.bytes += $size;
            Ok(())
        }
    )*};
}

macro_rules! walk_compound {
    ($($trait:ident { $($method:ident $(($key:ident))?),* })*) => {$(
        impl serde::ser::$trait for &mut Walker {
            type Ok = ();
            type Error = WalkError;
            $(
                fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> std::result::Result<(), WalkError> {
                    $(let _ = $key;)?
                    value.serialize(&mut **self)
                }
            )*
            fn end(self) -> std::result::Result<(), WalkError> {
                Ok(())
            }
        }
    )*};
}

walk_compound! {
    SerializeSeq { serialize_element }
    SerializeTuple { serialize_element }
    SerializeTupleStruct { serialize_field }
    SerializeTupleVariant { serialize_field }
    SerializeStruct { serialize_field(key) }
    SerializeStructVariant { serialize_field(key) }
}

impl serde::ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: Serialize + ?Sized>(
        &mut self,
        key: &T,
    ) -> std::result::Result<(), WalkError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> std::result::Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> std::result::Result<(), WalkError> {
        Ok(())
    }
}

impl serde::Serializer for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    walk_scalars! {
        serialize_bool: bool => 1;
        serialize_i8: i8 => 1;
        serialize_i16: i16 => 2;
        serialize_i32: i32 => 4;
        serialize_i64: i64 => 8;
        serialize_i128: i128 => 16;
        serialize_u8: u8 => 1;
        serialize_u16: u16 => 2;
        serialize_u32: u32 => 4;
        serialize_u64: u64 => 8;
        serialize_u128: u128 => 16;
        serialize_char: char => 4;
        serialize_unit_struct: &'static str => 0;
    }

    fn serialize_f32(self, v: f32) -> std::result::Result<(), WalkError> {
        self.float(v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> std::result::Result<(), WalkError> {
        self.float(v.is_finite())
    }
    fn serialize_str(self, v: &str) -> std::result::Result<(), WalkError> {
        self.saw(false);
        // A `String`: its header and its heap buffer.
        self.bytes += 24 + v.len();
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> std::result::Result<(), WalkError> {
        self.saw(false);
        self.bytes += 24 + v.len();
        Ok(())
    }
    fn serialize_none(self) -> std::result::Result<(), WalkError> {
        self.saw(true);
        self.bytes += 1;
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(
        self,
        value: &T,
    ) -> std::result::Result<(), WalkError> {
        self.saw(false);
        value.serialize(self)
    }
    fn serialize_unit(self) -> std::result::Result<(), WalkError> {
        self.saw(true);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> std::result::Result<(), WalkError> {
        self.saw(false);
        self.bytes += 4;
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> std::result::Result<(), WalkError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> std::result::Result<(), WalkError> {
        self.saw(false);
        self.bytes += 4;
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> std::result::Result<Self, WalkError> {
        self.saw(false);
        self.bytes += 24;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> std::result::Result<Self, WalkError> {
        self.saw(false);
        Ok(self)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, WalkError> {
        self.saw(false);
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, WalkError> {
        self.saw(false);
        self.bytes += 4;
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> std::result::Result<Self, WalkError> {
        self.saw(false);
        // A hash map's table: a header and about one control byte and a
        // spare slot per entry, beyond the entries themselves.
        self.bytes += 48 + len.unwrap_or(0) * 8;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> std::result::Result<Self, WalkError> {
        self.saw(false);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, WalkError> {
        self.saw(false);
        self.bytes += 4;
        Ok(self)
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

/// When an entry goes stale and when it is gone, for entries that keep
/// their times (stale serving, early refresh, fail-safe, virtual time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// The logical expiry (ms since the Unix epoch): the TTL's end.
    pub soft_ms: u64,
    /// When the store drops the entry: the TTL plus the stale or fail-safe
    /// window.
    pub hard_ms: u64,
    /// How long the computation took (ms), for early refresh.
    pub delta_ms: u32,
}

/// Metadata stored with an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Its times, if it keeps them.
    pub times: Option<Times>,
    /// The index keys this entry is listed in.
    pub indexes: Vec<String>,
}

impl Meta {
    /// No metadata.
    pub const NONE: Meta = Meta {
        times: None,
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

/// A lease marker with a fresh random token.
pub(crate) fn lease_marker() -> Bytes {
    let mut out = Vec::with_capacity(18);
    out.extend_from_slice(&LEASE);
    out.extend_from_slice(&fastrand::u128(..).to_le_bytes());
    Bytes::from(out)
}

/// Whether stored bytes are a lease marker (a computation under way).
#[inline]
pub(crate) fn is_lease(raw: &[u8]) -> bool {
    raw.starts_with(&LEASE)
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
            && meta.times.is_none()
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
        if meta.times.is_some() {
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
        if let Some(times) = meta.times {
            out.extend_from_slice(&times.soft_ms.to_le_bytes());
            out.extend_from_slice(&times.hard_ms.to_le_bytes());
            out.extend_from_slice(&times.delta_ms.to_le_bytes());
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
        if raw.len() < 4 || raw[2] != VERSION {
            return Err(malformed("unknown version"));
        }
        let flags = raw[3];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(malformed("unknown flags"));
        }
        let body = self.verified(key, raw, flags)?;
        let mut cursor = Cursor(&body[4..]);
        let meta = read_meta(&mut cursor, flags)?;
        let codec = if flags & FLAG_MSGPACK != 0 {
            Codec::MsgPack
        } else {
            Codec::Json
        };
        Ok(Entry {
            payload: decompressed(cursor.0, flags)?,
            codec,
            meta,
        })
    }

    /// The signed part of a framed entry, once its signature is checked
    /// (or the whole entry, unsigned, when no secret is configured).
    fn verified<'a>(&self, key: &str, raw: &'a [u8], flags: u8) -> Result<&'a [u8]> {
        if flags & FLAG_MAC == 0 {
            return match self.secret {
                Some(_) => Err(Error::Codec("entry is not signed".into())),
                None => Ok(raw),
            };
        }
        let Some(secret) = &self.secret else {
            return Err(Error::Codec(
                "entry is signed, but no integrity secret is configured".into(),
            ));
        };
        if raw.len() < 4 + MAC_LEN {
            return Err(malformed("truncated signature"));
        }
        let (signed, tag) = raw.split_at(raw.len() - MAC_LEN);
        if !verify(secret, key, signed, tag) {
            return Err(Error::Codec(
                "entry signature does not match its key and value".into(),
            ));
        }
        Ok(signed)
    }
}

fn malformed(what: &str) -> Error {
    Error::Codec(format!("malformed entry: {what}"))
}

/// The times and index list of a framed entry.
fn read_meta(cursor: &mut Cursor<'_>, flags: u8) -> Result<Meta> {
    let mut meta = Meta::default();
    if flags & FLAG_TIMES != 0 {
        meta.times = Some(Times {
            soft_ms: u64::from_le_bytes(cursor.array()?),
            hard_ms: u64::from_le_bytes(cursor.array()?),
            delta_ms: u32::from_le_bytes(cursor.array()?),
        });
    }
    if flags & FLAG_INDEXES != 0 {
        let count = u16::from_le_bytes(cursor.array()?);
        for _ in 0..count {
            let len = u16::from_le_bytes(cursor.array()?) as usize;
            let index =
                std::str::from_utf8(cursor.take(len)?).map_err(|_| malformed("index key"))?;
            meta.indexes.push(index.to_owned());
        }
    }
    Ok(meta)
}

/// A payload, decompressed if its flags say it is compressed.
fn decompressed(payload: &[u8], flags: u8) -> Result<Cow<'_, [u8]>> {
    if flags & FLAG_LZ4 == 0 {
        return Ok(Cow::Borrowed(payload));
    }
    #[cfg(feature = "lz4")]
    {
        lz4_flex::decompress_size_prepended(payload)
            .map(Cow::Owned)
            .map_err(|_| malformed("compressed payload"))
    }
    #[cfg(not(feature = "lz4"))]
    {
        let _ = payload;
        Err(Error::Codec(
            "entry is compressed; enable cachekit's `lz4` feature".into(),
        ))
    }
}

/// Reads the fixed-size fields of a framed entry.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(malformed("truncated"));
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
            times: Some(Times {
                soft_ms: 123_456,
                hard_ms: 223_456,
                delta_ms: 42,
            }),
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
    fn values_that_do_not_round_trip_are_refused() {
        assert!(Codec::Json.encode_checked(&Some(f64::NAN)).is_err());
        assert!(Codec::Json.encode_checked(&f64::INFINITY).is_err());
        assert!(Codec::Json.encode_checked(&vec![1.0, f64::NAN]).is_err());
        assert!(Codec::Json.encode_checked(&Some(1.5f64)).is_ok());
        let pairs: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(
            Codec::Json.encode_checked(&pairs).is_err(),
            "non-string keys"
        );
        #[cfg(feature = "msgpack")]
        assert!(Codec::MsgPack.encode_checked(&Some(f64::NAN)).is_ok());
        assert!(is_null(&None::<u8>) && is_null(&()));
        assert!(!is_null(&Some(None::<u8>)) && !is_null(&0u8) && !is_null(&vec![()]));
        // The walk estimates heap: a string costs its length.
        let small = inspect(&"a".to_owned(), true).unwrap();
        let large = inspect(&"a".repeat(1000), true).unwrap();
        assert!(large - small == 999);
    }

    #[test]
    fn a_codec_change_is_a_miss() {
        let env = Envelope::default();
        let bytes = env.encode("k", &"text", Format::JSON, &Meta::NONE).unwrap();
        let entry = env.decode("k", &bytes).unwrap();
        assert!(entry.value::<String>(Codec::MsgPack).is_err());
    }
}
