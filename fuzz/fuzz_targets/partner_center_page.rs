#![no_main]
//! `cargo +nightly fuzz run partner_center_page` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/partner_center_page/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::partner_center_page(data));
