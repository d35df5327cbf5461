#![no_main]
//! `cargo +nightly fuzz run graph_page` (see fuzz/Cargo.toml); the corpus is `fuzz/corpus/graph_page/`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| csp_sync::fuzz::graph_page(data));
