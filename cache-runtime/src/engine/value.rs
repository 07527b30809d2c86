//! What the engine can do with a value: serialize it (a shared store) or
//! only hold it (process scope). [`Serde`] and [`Opaque`] are the two
//! strategies; the engine is written once over [`Storage`].

use std::any::Any;

use crate::codec::{self, Codec};
use crate::error::{Error, Result};
use crate::local::PayloadFn;

use super::{CacheValue, ProcessValue};

/// How values of type `V` are weighed, checked and (maybe) serialized.
pub(crate) trait Storage<V>: Copy + Send + Sync + 'static {
    /// The estimated heap size of a value, in bytes.
    fn weight(value: &V) -> usize;
    /// Whether the value is `None` or `()` (its serialization is null).
    fn is_null(value: &V) -> bool;
    /// Serializes a value that reads back as itself, or says why not.
    fn encode(value: &V, codec: Codec) -> Result<Vec<u8>>;
    /// Deserializes a value.
    fn decode(bytes: &[u8], codec: Codec) -> Result<V>;
    /// How a held value becomes bytes again, if it can.
    fn payload_fn() -> Option<PayloadFn>;
}

/// Values of a shared store: serde.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Serde;

/// Values of process scope: held, never serialized.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opaque;

fn payload<V: CacheValue>(value: &(dyn Any + Send + Sync), codec: Codec) -> Result<Vec<u8>> {
    let value = value
        .downcast_ref::<V>()
        .ok_or_else(|| Error::Codec("held value of another type".into()))?;
    codec.encode(value)
}

impl<V: CacheValue> Storage<V> for Serde {
    fn weight(value: &V) -> usize {
        std::mem::size_of::<V>() + codec::inspect(value, false).unwrap_or(0)
    }

    fn is_null(value: &V) -> bool {
        codec::is_null(value)
    }

    fn encode(value: &V, codec: Codec) -> Result<Vec<u8>> {
        codec.encode_checked(value)
    }

    fn decode(bytes: &[u8], codec: Codec) -> Result<V> {
        codec.decode(bytes)
    }

    fn payload_fn() -> Option<PayloadFn> {
        Some(payload::<V>)
    }
}

impl<V: ProcessValue> Storage<V> for Opaque {
    fn weight(_: &V) -> usize {
        std::mem::size_of::<V>()
    }

    fn is_null(_: &V) -> bool {
        false
    }

    fn encode(_: &V, _: Codec) -> Result<Vec<u8>> {
        Err(Error::Codec(
            "a process-scope value is never serialized".into(),
        ))
    }

    fn decode(_: &[u8], _: Codec) -> Result<V> {
        Err(Error::Codec(
            "a process-scope value is never deserialized".into(),
        ))
    }

    fn payload_fn() -> Option<PayloadFn> {
        None
    }
}
