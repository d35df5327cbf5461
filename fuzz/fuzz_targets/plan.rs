#![no_main]
//! `cargo +nightly fuzz run plan` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/plan/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::plan(data));
