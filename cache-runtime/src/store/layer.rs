//! Layers around a store: something that runs around every operation
//! (resilience's timeouts, retries and breaker; the injected faults of
//! `testing`), written once as a [`Layer`] and applied to any [`Store`] by
//! [`Layered`], which forwards each primitive through it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{BoxFuture, KeyTtl, Store, Swap, Write};
use crate::error::Result;

/// A store primitive, as a layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    GetWithTtl,
    GetMany,
    Write,
    SetNx,
    CompareAndSwap,
    Delete,
    Expire,
    Ttl,
    Incr,
    Members,
    RemoveMembers,
    DeleteMatching,
    Ping,
}

impl Op {
    /// The name in logs and errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetWithTtl => "get_with_ttl",
            Op::GetMany => "get_many",
            Op::Write => "write",
            Op::SetNx => "set_nx",
            Op::CompareAndSwap => "compare_and_swap",
            Op::Delete => "delete",
            Op::Expire => "expire",
            Op::Ttl => "ttl",
            Op::Incr => "incr",
            Op::Members => "members",
            Op::RemoveMembers => "remove_members",
            Op::DeleteMatching => "delete_matching",
            Op::Ping => "ping",
        }
    }

    /// Whether sending it twice is harmless: a `SET NX`, a compare-and-swap
    /// or an increment may have run before its reply was lost.
    pub(crate) fn idempotent(self) -> bool {
        !matches!(self, Op::SetNx | Op::CompareAndSwap | Op::Incr)
    }
}

/// What runs around each operation of a store.
pub(crate) trait Layer: Send + Sync + fmt::Debug + 'static {
    /// Runs `op`, calling `attempt` once per try.
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        attempt: impl Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T>>;
}

/// A store behind a layer.
pub(crate) struct Layered<L, S: ?Sized> {
    pub(crate) layer: L,
    pub(crate) inner: Arc<S>,
}

impl<L: fmt::Debug, S: fmt::Debug + ?Sized> fmt::Debug for Layered<L, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layered")
            .field("layer", &self.layer)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<L: Layer, S: Store + ?Sized> Store for Layered<L, S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.layer.call(Op::Get, move || self.inner.get(key))
    }

    fn get_with_ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Bytes, KeyTtl)>>> {
        self.layer
            .call(Op::GetWithTtl, move || self.inner.get_with_ttl(key))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        self.layer
            .call(Op::GetMany, move || self.inner.get_many(keys))
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<()>> {
        self.layer.call(Op::Write, move || self.inner.write(writes))
    }

    fn set_nx<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<bool>> {
        self.layer.call(Op::SetNx, move || self.inner.set_nx(write))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        swap: Swap,
    ) -> BoxFuture<'a, Result<bool>> {
        self.layer.call(Op::CompareAndSwap, move || {
            self.inner.compare_and_swap(key, expected, swap.clone())
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        self.layer.call(Op::Delete, move || self.inner.delete(keys))
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        self.layer
            .call(Op::Expire, move || self.inner.expire(key, ttl))
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        self.layer.call(Op::Ttl, move || self.inner.ttl(key))
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        self.layer
            .call(Op::Incr, move || self.inner.incr(key, by, ttl))
    }

    fn members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        self.layer
            .call(Op::Members, move || self.inner.members(set))
    }

    fn remove_members<'a>(
        &'a self,
        set: &'a str,
        members: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        self.layer.call(Op::RemoveMembers, move || {
            self.inner.remove_members(set, members)
        })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.layer.call(Op::DeleteMatching, move || {
            self.inner.delete_matching(pattern)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.layer.call(Op::Ping, move || self.inner.ping())
    }
}
