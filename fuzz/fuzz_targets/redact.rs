#![no_main]
//! `cargo +nightly fuzz run redact` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/redact/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::redact(data));
