//! thinkscope against llama.cpp on one tiny random-weight model per architecture and rope
//! variant. `tests/data/oracle/make_oracle.py` wrote the models with `write_oracle_models` below,
//! ran llama.cpp on them and committed its logits and token ids (`llamacpp.json`); these tests
//! write the same files again from the same specs and seeds, check that the bytes are the ones
//! llama.cpp saw (sha256), and compare.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::QTensor;
use candle_core::Device;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thinkscope_engine::generate::{build_chat, PromptFormat};
use thinkscope_engine::model::template::Message;
use thinkscope_engine::tiny::{oracle_spec, oracle_specs, rewrite_gguf, write_tiny_model};
use thinkscope_engine::{Engine, Model};

#[derive(Deserialize)]
struct Oracle {
    models: BTreeMap<String, OracleModel>,
}

#[derive(Deserialize)]
struct OracleModel {
    sha256: String,
    prompt: String,
    ids: Vec<u32>,
    logits: BTreeMap<String, Vec<f32>>,
    tokenize: Vec<Tokenized>,
}

#[derive(Deserialize)]
struct Tokenized {
    text: String,
    ids: Vec<u32>,
}

/// The conversation `make_oracle.py` renders (its `MESSAGES`).
const QUESTION: &str = "What is 17 * 23? Think step by step, then say: the answer is 391.";

fn oracle() -> Oracle {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/llamacpp.json");
    let text = std::fs::read_to_string(&path).expect("oracle JSON");
    serde_json::from_str(&text).expect("parse oracle JSON")
}

/// Write the named tiny model, check it is byte for byte the file llama.cpp ran, and load it.
fn load(name: &str, want: &OracleModel, dir: &Path) -> Arc<Model> {
    let spec = oracle_spec(name).unwrap_or_else(|| panic!("no tiny spec '{name}'"));
    let path = dir.join(format!("{name}.gguf"));
    write_tiny_model(&path, &spec).expect("write tiny model");
    let bytes = std::fs::read(&path).expect("read back");
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sha, want.sha256,
        "{name}: the writer no longer produces the file llama.cpp ran; rerun make_oracle.py"
    );
    Arc::new(Model::load(&path, &Device::Cpu).expect("load tiny model"))
}

/// Largest logit difference at the recorded positions, relative to the spread of llama.cpp's
/// logits at that position (max - min).
fn logit_error(name: &str) -> f32 {
    let oracle = oracle();
    let want = &oracle.models[name];
    let dir = tempfile::tempdir().expect("tempdir");
    let model = load(name, want, dir.path());
    error_of(name, model, want)
}

type Meta = Vec<(String, Value)>;
type Tensors = Vec<(String, QTensor)>;

/// The same model with one feature taken out of the file, and its error against llama.cpp.
fn ablated_error(name: &str, what: &str, edit: impl FnOnce(&mut Meta, &mut Tensors)) -> f32 {
    let oracle = oracle();
    let want = &oracle.models[name];
    let dir = tempfile::tempdir().expect("tempdir");
    load(name, want, dir.path());
    let src = dir.path().join(format!("{name}.gguf"));
    let dst = dir.path().join("ablated.gguf");
    rewrite_gguf(&src, &dst, edit).expect("rewrite");
    let model = Arc::new(Model::load(&dst, &Device::Cpu).expect("load ablated"));
    let e = error_of(&format!("{name} without {what}"), model, want);
    eprintln!("{name} without {what}: {e:.5}");
    e
}

fn error_of(name: &str, model: Arc<Model>, want: &OracleModel) -> f32 {
    let mut engine = Engine::new(model, 1 << 28).expect("engine");
    let s = engine.new_sequence();
    let got = engine.score(s, &want.ids).expect("score");
    let mut worst = 0f32;
    for (pos, row) in &want.logits {
        let p: usize = pos.parse().expect("position");
        let ours = &got[p];
        assert_eq!(ours.len(), row.len(), "{name}: vocabulary size");
        let spread = row.iter().copied().fold(f32::MIN, f32::max)
            - row.iter().copied().fold(f32::MAX, f32::min);
        let diff = ours
            .iter()
            .zip(row)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name} pos {p}: max |diff| {diff:.5}, spread {spread:.3}");
        worst = worst.max(diff / spread);
    }
    worst
}

#[test]
fn report_all() {
    for (name, _) in oracle_specs() {
        let e = logit_error(name);
        eprintln!("{name}: {e:.5}");
    }
    let drop_keys = |keys: &'static [&'static str]| {
        move |m: &mut Meta, _: &mut Tensors| m.retain(|(k, _)| !keys.contains(&k.as_str()))
    };
    ablated_error("llama3", "rope_freqs", |_, t| {
        t.retain(|(n, _)| n != "rope_freqs.weight")
    });
    ablated_error(
        "llama-linear",
        "scaling",
        drop_keys(&["llama.rope.scaling.type", "llama.rope.scaling.factor"]),
    );
    ablated_error("qwen3-yarn", "yarn (linear instead)", |m, _| {
        for (k, v) in m.iter_mut() {
            if k == "qwen3.rope.scaling.type" {
                *v = Value::String("linear".into());
            }
        }
    });
    ablated_error(
        "gemma3",
        "scaling",
        drop_keys(&["gemma3.rope.scaling.type", "gemma3.rope.scaling.factor"]),
    );
    ablated_error("phi3", "long factors", |_, t| {
        let short = t
            .iter()
            .find(|(n, _)| n == "rope_factors_short.weight")
            .map(|(_, q)| q.dequantize(&Device::Cpu).expect("deq"))
            .expect("short");
        for (n, q) in t.iter_mut() {
            if n == "rope_factors_long.weight" {
                *q = QTensor::quantize(&short, candle_core::quantized::GgmlDType::F32).expect("q");
            }
        }
    });
    ablated_error(
        "phi3",
        "attn_factor",
        drop_keys(&["phi3.rope.scaling.attn_factor"]),
    );
    ablated_error("smollm3", "its no-rope layers", |m, _| {
        for (k, v) in m.iter_mut() {
            if let Some(rest) = k.strip_prefix("smollm3.") {
                *k = format!("llama.{rest}");
            }
            if k == "general.architecture" {
                *v = Value::String("llama".into());
            }
        }
    });
}

#[test]
fn chat_prompts_and_stress_texts_tokenize_as_in_llama_cpp() {
    let oracle = oracle();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (name, want) in &oracle.models {
        let model = load(name, want, dir.path());
        let ids = build_chat(
            &model,
            &[Message::new("user", QUESTION)],
            PromptFormat::Auto,
        )
        .expect("build chat");
        if ids != want.ids {
            failures.push(format!(
                "{name}: chat prompt {:?}\n  ours  {ids:?}\n  llama {:?}",
                want.prompt, want.ids
            ));
        }
        for t in &want.tokenize {
            let ours = model.tokenizer.encode(&t.text).expect("encode");
            if ours != t.ids {
                failures.push(format!(
                    "{name}: {:?}\n  ours  {ours:?}\n  llama {:?}",
                    t.text, t.ids
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Writes the oracle's tiny models into `$THINKSCOPE_ORACLE_DIR` for `make_oracle.py`.
#[test]
#[ignore = "run by tests/data/oracle/make_oracle.py"]
fn write_oracle_models() {
    let dir = PathBuf::from(
        std::env::var_os("THINKSCOPE_ORACLE_DIR").expect("THINKSCOPE_ORACLE_DIR is not set"),
    );
    std::fs::create_dir_all(&dir).expect("create dir");
    for (name, spec) in oracle_specs() {
        write_tiny_model(&dir.join(format!("{name}.gguf")), &spec).expect("write");
    }
}
