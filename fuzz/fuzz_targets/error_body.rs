#![no_main]
//! `cargo +nightly fuzz run error_body` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/error_body/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::error_body(data));
