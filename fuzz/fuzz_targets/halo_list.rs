#![no_main]
//! `cargo +nightly fuzz run halo_list` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/halo_list/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::halo_list(data));
