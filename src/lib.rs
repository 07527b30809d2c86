//! Placeholder: replaced by the facade below.
pub use cachekit_macros::{CacheKey, cached, invalidate};
pub use cachekit_runtime::*;
#[doc(hidden)]
pub mod __private {
    pub use cachekit_runtime::__private::*;
}
