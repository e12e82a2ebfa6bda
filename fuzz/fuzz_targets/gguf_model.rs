#![no_main]
//! cargo-fuzz target: `thinkscope_engine::fuzz_targets::gguf_model`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| thinkscope_engine::fuzz_targets::gguf_model(data));
