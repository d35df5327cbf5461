#![no_main]
//! `cargo +nightly fuzz run token_response` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/token_response/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::token_response(data));
