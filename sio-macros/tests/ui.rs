//! Compile-time behaviour of the macros: `ui/pass` must compile, `ui/fail` must fail with the
//! `.stderr` beside each case. Regenerate those with `TRYBUILD=overwrite cargo test -p
//! sio-macros --test ui`, then read every one: the message must help and point at the right
//! token.

// rustc's wording and spans change between releases; the .stderr files are those of 1.95,
// the toolchain of this workspace (`rust-version`).
#[rustversion::attr(not(stable(1.95)), ignore = "the .stderr files are rustc 1.95's")]
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
