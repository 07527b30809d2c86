//! Compile errors of the macros, one case per error, with their expected
//! messages (`tests/ui/*.stderr`), and cases that must compile
//! (`tests/ui/pass/`, several with `#![deny(warnings)]`).
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test --test ui`
//! and review the diff.
//!
//! Every error the macros construct has a code (`cache-macros/src/errors.rs`,
//! `Code`), constructed at one site as `Code::Name.error(span, "message")`,
//! and each code names its case here. `cargo test -p cachekit-macros` checks
//! them against each other (`errors::tests`): it tokenizes the macro crate's
//! sources and fails if an error is constructed other than through a code,
//! if a code has no site or several, if its case `tests/ui/<case>.rs` or the
//! `.stderr` is missing, or if the `.stderr` does not show the literal text
//! of the site's message. A new error thus needs a code, a case here and a
//! snapshot, or that test fails.
//!
//! Other cases show errors that rustc reports in the generated code, spanned
//! at the user's tokens: a key value that is not a `KeyPart`
//! (`key-part-not-implemented`), a return type that cannot be stored, a
//! typed `#[invalidate]` target that names no cached function, or wrong
//! arguments to it, companions in a trait impl, a duration string the
//! runtime's parser rejects (`bad-ttl-string`, `zero-ttl`: evaluated at
//! compile time, reported at the literal), hooks of the wrong type
//! (`hooks-of-the-wrong-type`, at the closure), `cache_err` on a
//! non-`Result` and `hard_timeout` without `From<Elapsed>` (at the return
//! type), and a borrowed argument a detached computation cannot copy
//! (`stale-borrowed-not-clone`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
