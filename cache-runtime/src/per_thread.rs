//! Per-thread copies of shared values, good while the stamp they were taken
//! under is unchanged: reading one writes no cache line shared with the
//! other cores (a lock's reader count would, on every call).

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's slot for one copy, taken under a stamp of type `S`.
pub(crate) type Slot<S, T> = RefCell<Option<(S, T)>>;

/// The copy in `slot`, if it was taken under `stamp`.
#[inline]
pub(crate) fn get<S: PartialEq, T: Clone>(
    slot: &'static LocalKey<Slot<S, T>>,
    stamp: &S,
) -> Option<T> {
    slot.try_with(|slot| match &*slot.borrow() {
        Some((taken, value)) if taken == stamp => Some(value.clone()),
        _ => None,
    })
    .ok()
    .flatten()
}

/// Keeps `value` as this thread's copy, taken under `stamp`.
pub(crate) fn put<S, T>(slot: &'static LocalKey<Slot<S, T>>, stamp: S, value: T) {
    let _ = slot.try_with(|slot| *slot.borrow_mut() = Some((stamp, value)));
}
