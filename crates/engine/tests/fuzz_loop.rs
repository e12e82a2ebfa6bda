//! The fuzz targets (`thinkscope_engine::fuzz_targets`, also driven by cargo-fuzz in `fuzz/`)
//! under a stable, seeded mutation loop: a fixed number of mutants per target, from seeds made
//! here (the tiny models, the real model's header when it is on disk, small text inputs). Any
//! panic fails the test and leaves the input in the temp folder. Bounded by iterations, not
//! time: the same inputs run on every machine.

use std::path::PathBuf;

use thinkscope_engine::fetch;
use thinkscope_engine::fuzz_targets::{self, Mutator};
use thinkscope_engine::model::gguf::GgufFile;
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};

/// A seed, and how many of its first bytes to mutate (the header, for model files).
struct Seed {
    bytes: Vec<u8>,
    head: usize,
}

fn tiny_models() -> Vec<Seed> {
    let dir = tempfile::tempdir().expect("tempdir");
    [TinySpec::llama(), TinySpec::gemma3()]
        .iter()
        .map(|spec| {
            let p = dir.path().join("m.gguf");
            write_tiny_model(&p, spec).expect("tiny");
            let head = GgufFile::open(&p).expect("open").data_offset() as usize;
            Seed {
                bytes: std::fs::read(&p).expect("read"),
                head,
            }
        })
        .collect()
}

/// The default model's header and 4 KiB of its data, when the model is on disk (CI fetches it
/// before the tests; elsewhere this seed is skipped).
fn real_header() -> Option<Seed> {
    let path = fetch::default_model_path(&fetch::models_dir());
    let head = GgufFile::open(&path).ok()?.data_offset() as usize;
    let bytes = std::fs::read(&path).ok()?;
    Some(Seed {
        bytes: bytes[..(head + 4096).min(bytes.len())].to_vec(),
        head,
    })
}

fn run(name: &str, target: fn(&[u8]), seeds: &[Seed], iterations: usize, max_extra: usize) {
    assert!(!seeds.is_empty(), "{name} has seeds");
    let mut m = Mutator::new(0x5eed ^ name.len() as u64);
    // Seeds themselves first.
    for s in seeds {
        target(&s.bytes);
    }
    for i in 0..iterations {
        let seed = &seeds[i % seeds.len()];
        let other = &seeds[(i / seeds.len()) % seeds.len()].bytes;
        let max_len = seed.bytes.len() + max_extra;
        let input = if i % 4 != 3 && seed.head < seed.bytes.len() {
            // Mostly the header, the data left in place.
            let mut v = m.mutate(
                &seed.bytes[..seed.head],
                &other[..seed.head.min(other.len())],
                max_len,
            );
            v.extend_from_slice(&seed.bytes[seed.head..]);
            v
        } else {
            m.mutate(&seed.bytes, other, max_len)
        };
        let result = std::panic::catch_unwind(|| target(&input));
        if let Err(panic) = result {
            let path: PathBuf = std::env::temp_dir().join(format!("fuzz-loop-{name}-{i}.bin"));
            let _ = std::fs::write(&path, &input);
            eprintln!(
                "{name}: mutant {i} panicked; input saved to {}",
                path.display()
            );
            std::panic::resume_unwind(panic);
        }
    }
}

fn text(name: &str) -> Vec<Seed> {
    fuzz_targets::text_seeds(name)
        .into_iter()
        .map(|bytes| Seed {
            head: bytes.len(),
            bytes,
        })
        .collect()
}

#[test]
fn gguf_header_loop() {
    let mut seeds = tiny_models();
    run("gguf_header", fuzz_targets::gguf_header, &seeds, 1500, 256);
    if let Some(real) = real_header() {
        seeds = vec![real];
        run(
            "gguf_header_real",
            fuzz_targets::gguf_header,
            &seeds,
            40,
            256,
        );
    }
}

#[test]
fn gguf_model_loop() {
    run(
        "gguf_model",
        fuzz_targets::gguf_model,
        &tiny_models(),
        400,
        256,
    );
}

#[test]
fn gguf_structured_loop() {
    // Recipes of random bytes: each is one to six field edits of a tiny model, then a load.
    let mut rng = thinkscope_engine::model::sampling::Rng::new(0x9e37);
    for i in 0..800 {
        let len = 2 + (rng.next_u64() % 40) as usize;
        let recipe: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let result = std::panic::catch_unwind(|| fuzz_targets::gguf_structured(&recipe));
        if let Err(panic) = result {
            let path = std::env::temp_dir().join(format!("fuzz-loop-gguf_structured-{i}.bin"));
            let _ = std::fs::write(&path, &recipe);
            eprintln!(
                "gguf_structured: recipe {i} panicked; saved to {}",
                path.display()
            );
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn tokenizer_loop() {
    let seeds: Vec<Seed> = fuzz_targets::tokenizer_seeds()
        .into_iter()
        .map(|bytes| Seed {
            head: bytes.len(),
            bytes,
        })
        .collect();
    run("tokenizer", fuzz_targets::tokenizer, &seeds, 4000, 512);
}

#[test]
fn template_loop() {
    run(
        "template",
        fuzz_targets::template,
        &text("template"),
        8000,
        512,
    );
}

#[test]
fn session_problems_results_answer_loops() {
    run(
        "session",
        fuzz_targets::session,
        &text("session"),
        10000,
        512,
    );
    run(
        "problems",
        fuzz_targets::problems,
        &text("problems"),
        10000,
        512,
    );
    run(
        "results",
        fuzz_targets::results,
        &text("results"),
        10000,
        512,
    );
    run("answer", fuzz_targets::answer, &text("answer"), 20000, 256);
}
