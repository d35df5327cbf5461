#![no_main]
//! `cargo +nightly fuzz run config` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/config/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::config(data));
