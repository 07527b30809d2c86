//! The layer's response body, and the collection of a service's body up to
//! the size cap.
//!
//! A body is read into memory only as far as the cap. One that ends within
//! it can be stored; one that goes past it (or carries trailers, or fails)
//! is passed on whole: the frames already read, then the rest of the
//! original body as it arrives. Nothing is dropped, nothing waits for the
//! end of a large body.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// The body of a response that went through the layer: a stored body, or
/// the service's own body passed through.
pub struct CachedBody<B: Body> {
    kind: Kind<B>,
}

enum Kind<B: Body> {
    /// A body held in memory (a stored response, or nothing).
    Full(Option<Bytes>),
    /// The service's body: frames already read, maybe the error that ended
    /// the reading, then the rest.
    Stream {
        head: VecDeque<Frame<Bytes>>,
        error: Option<Box<B::Error>>,
        rest: Option<Pin<Box<B>>>,
    },
}

impl<B: Body> std::fmt::Debug for CachedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("CachedBody::Full")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream { head, .. } => f
                .debug_struct("CachedBody::Stream")
                .field("read_frames", &head.len())
                .finish_non_exhaustive(),
        }
    }
}

impl<B: Body> CachedBody<B> {
    /// A body held in memory.
    pub(crate) fn full(bytes: Bytes) -> Self {
        CachedBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// No body (HEAD, 304).
    pub(crate) fn empty() -> Self {
        CachedBody {
            kind: Kind::Full(None),
        }
    }

    /// The service's body, untouched.
    pub(crate) fn stream(body: B) -> Self {
        CachedBody {
            kind: Kind::Stream {
                head: VecDeque::new(),
                error: None,
                rest: Some(Box::pin(body)),
            },
        }
    }
}

impl<B> Body for CachedBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { head, error, rest } => {
                if let Some(frame) = head.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(e) = error.take() {
                    *rest = None;
                    return Poll::Ready(Some(Err(*e)));
                }
                let Some(body) = rest else {
                    return Poll::Ready(None);
                };
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => Poll::Ready(Some(Ok(frame.map_data(to_bytes)))),
                    Some(Err(e)) => {
                        *rest = None;
                        Poll::Ready(Some(Err(e)))
                    }
                    None => {
                        *rest = None;
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream { head, error, rest } => {
                head.is_empty()
                    && error.is_none()
                    && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { head, rest, .. } => {
                let read: u64 = head
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|d| d.len() as u64)
                    .sum();
                let mut hint = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
                let lower = hint.lower() + read;
                let upper = hint.upper().map(|u| u + read);
                hint.set_lower(lower);
                if let Some(upper) = upper {
                    hint.set_upper(upper);
                }
                hint
            }
        }
    }
}

fn to_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

/// A body read as far as the cap allows.
pub(crate) enum Collected<B: Body> {
    /// All of it, within the cap: storable.
    Whole(Bytes),
    /// Not storable (why), and passed on whole.
    Passed(CachedBody<B>, &'static str),
}

/// Reads `body` up to `cap` bytes.
pub(crate) async fn collect<B: Body>(body: B, cap: usize) -> Collected<B> {
    if body.size_hint().lower() > cap as u64 {
        return Collected::Passed(CachedBody::stream(body), "too-large");
    }
    let mut body = Box::pin(body);
    let mut head = VecDeque::new();
    let mut len = 0usize;
    let why = loop {
        match body.frame().await {
            None => break None,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let data = to_bytes(data);
                    len += data.len();
                    head.push_back(Frame::data(data));
                    if len > cap {
                        break Some("too-large");
                    }
                }
                Err(trailers) => {
                    if let Ok(t) = trailers.into_trailers() {
                        head.push_back(Frame::trailers(t));
                    }
                    break Some("trailers");
                }
            },
            Some(Err(e)) => {
                return Collected::Passed(
                    CachedBody {
                        kind: Kind::Stream {
                            head,
                            error: Some(Box::new(e)),
                            rest: None,
                        },
                    },
                    "body-error",
                );
            }
        }
    };
    match why {
        None => {
            let mut frames = head.into_iter().filter_map(|f| f.into_data().ok());
            match (frames.next(), frames.next()) {
                (None, _) => Collected::Whole(Bytes::new()),
                // One frame (a `Full` body): no copy.
                (Some(one), None) => Collected::Whole(one),
                (Some(first), Some(second)) => {
                    let mut whole = BytesMut::with_capacity(len);
                    for data in [first, second].into_iter().chain(frames) {
                        whole.extend_from_slice(&data);
                    }
                    Collected::Whole(whole.freeze())
                }
            }
        }
        Some(why) => Collected::Passed(
            CachedBody {
                kind: Kind::Stream {
                    head,
                    error: None,
                    rest: Some(body),
                },
            },
            why,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = Infallible> + use<> {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_collected() {
        match collect(chunks(&["ab", "cd", "e"]), 5).await {
            Collected::Whole(b) => assert_eq!(b, "abcde"),
            Collected::Passed(..) => panic!("within the cap"),
        }
        match collect(chunks(&[]), 0).await {
            Collected::Whole(b) => assert!(b.is_empty()),
            Collected::Passed(..) => panic!("empty"),
        }
    }

    #[tokio::test]
    async fn a_body_over_the_cap_passes_whole() {
        let Collected::Passed(body, why) = collect(chunks(&["ab", "cd", "ef", "gh"]), 3).await
        else {
            panic!("over the cap")
        };
        assert_eq!(why, "too-large");
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all, "abcdefgh");
    }

    #[tokio::test]
    async fn a_known_large_body_is_not_read_at_all() {
        let body = http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        let Collected::Passed(body, _) = collect(body, 4).await else {
            panic!("over the cap")
        };
        assert_eq!(body.size_hint().exact(), Some(10));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123456789");
    }
}
