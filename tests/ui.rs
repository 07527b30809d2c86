//! Compile errors of the macros, one case per error, with their expected
//! messages (`tests/ui/*.stderr`), and cases that must compile.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test --test ui`
//! and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
