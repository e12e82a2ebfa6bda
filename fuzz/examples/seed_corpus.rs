//! Writes the seed corpora into `corpus/<target>/`: the tiny models (as `tiny.rs` writes them),
//! the default model's header plus 4 KiB (when the model is in the models folder; the file
//! itself is never copied whole), recipes for the structured target, and the text seeds. The
//! corpus is generated, not committed: `cargo run --release --example seed_corpus` in `fuzz/`.

use std::path::Path;

use thinkscope_engine::fetch;
use thinkscope_engine::fuzz_targets;
use thinkscope_engine::model::gguf::GgufFile;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn main() {
    for (i, model) in fuzz_targets::tiny_seeds().iter().enumerate() {
        write("gguf_model", &format!("tiny{i}.gguf"), model);
        write("gguf_header", &format!("tiny{i}.gguf"), model);
    }
    let real = fetch::default_model_path(&fetch::models_dir());
    match GgufFile::open(&real) {
        Ok(g) => {
            let head = g.data_offset() as usize + 4096;
            let bytes = std::fs::read(&real).expect("read the model");
            write("gguf_header", "smollm2-header.gguf", &bytes[..head.min(bytes.len())]);
        }
        Err(e) => eprintln!("no real-model seed ({e})"),
    }
    for i in 0..16u8 {
        write("gguf_structured", &format!("recipe{i}"), &[i % 2, i, i.wrapping_mul(37), 0, i]);
    }
    for (i, s) in fuzz_targets::tokenizer_seeds().iter().enumerate() {
        write("tokenizer", &format!("seed{i}"), s);
    }
    for t in ["template", "session", "problems", "results", "answer"] {
        for (i, s) in fuzz_targets::text_seeds(t).iter().enumerate() {
            write(t, &format!("seed{i}"), s);
        }
    }
    println!("seed corpora written under corpus/");
}
