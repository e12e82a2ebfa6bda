#![no_main]
//! cargo-fuzz target: `thinkscope_engine::fuzz_targets::tokenizer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| thinkscope_engine::fuzz_targets::tokenizer(data));
