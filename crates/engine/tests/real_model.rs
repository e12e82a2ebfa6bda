//! End-to-end tests on the real default model (SmolLM2-135M-Instruct Q4_1), fetched if missing,
//! checked against llama.cpp's outputs in `tests/data/` (reproduced by `tests/data/make_reference.py`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use candle_core::Device;
use serde::Deserialize;
use thinkscope_engine::fetch;
use thinkscope_engine::generate::{self, PromptFormat, StopReason};
use thinkscope_engine::{Engine, EngineError, Model, SamplingParams, SeqId};

#[derive(Deserialize)]
struct Reference {
    tokenize: Vec<TokCase>,
    greedy: Vec<GreedyCase>,
}

#[derive(Deserialize)]
struct TokCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct GreedyCase {
    user: String,
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

fn reference() -> Reference {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2-135m-llamacpp.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON")
}

fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = fetch::models_dir();
        fetch::fetch(&fetch::SMOLLM2_135M, &dir, &mut |_| {}).expect("fetch the default model")
    })
    .clone()
}

fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(Model::load(&model_path(), &Device::Cpu).expect("load default model"))
        })
        .clone()
}

#[test]
fn default_model_file_is_verified() {
    let path = model_path();
    assert_eq!(
        fetch::sha256_file(&path).expect("hash"),
        fetch::SMOLLM2_135M.sha256
    );
}

#[test]
fn tokenization_matches_llama_cpp() {
    let model = model();
    for case in reference().tokenize {
        let ids = model.tokenizer.encode(&case.text).expect("encode");
        assert_eq!(ids, case.ids, "tokens of {:?}", case.text);
        // Decoding gives the text back.
        assert_eq!(model.tokenizer.decode(&ids).expect("decode"), case.text);
    }
}

#[test]
fn chat_template_matches_llama_cpp_prompt() {
    let model = model();
    for case in reference().greedy {
        let ids = generate::build_prompt(&model, &case.user, PromptFormat::Auto).expect("prompt");
        assert_eq!(model.tokenizer.decode(&ids).expect("decode"), case.prompt);
        assert_eq!(ids, case.prompt_ids, "prompt ids for {:?}", case.user);
    }
}

/// Quantized arithmetic differs slightly between engines (rounding of 8-bit activations, f16
/// attention inputs, summation order), so where two candidate tokens are nearly tied the argmax may
/// flip. The oracle check is therefore: our greedy tokens equal llama.cpp's up to the first
/// divergence, and at that divergence llama.cpp's token is within `NEAR_TIE_NATS` of ours in our own
/// distribution. The bound is llama.cpp's own spread: at token 7 of "What is the capital of
/// France?" its one-token decode picked 12693 (the reference), while its batched evaluation of the
/// same sequence (llama-cpp-python 0.3.36, `logits_all`) puts 2828 ahead by 0.150 nats, so its two
/// code paths already disagree by more than 0.15 there. A real error in the forward pass, rope,
/// attention or tokenizer moves logits by far more than that and derails generation within a token
/// or two. Every reference must also agree on its first `MIN_PREFIX` tokens.
const NEAR_TIE_NATS: f32 = 0.3;
const MIN_PREFIX: usize = 5;

#[test]
fn greedy_ids_match_llama_cpp() {
    let model = model();
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    for case in reference().greedy {
        let g = generate::generate(
            &mut engine,
            &case.prompt_ids,
            &SamplingParams {
                top_alternatives: 10,
                ..SamplingParams::greedy()
            },
            case.greedy_ids.len(),
            |_, _| true,
        )
        .expect("generate");
        let ours: Vec<u32> = g.tokens.iter().map(|t| t.id).collect();
        let same = ours
            .iter()
            .zip(&case.greedy_ids)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "{:?}: {same}/{} greedy tokens match llama.cpp",
            case.user,
            case.greedy_ids.len()
        );
        assert!(
            same >= MIN_PREFIX.min(case.greedy_ids.len()),
            "{:?}: only {same} tokens agree: {ours:?} vs {:?}",
            case.user,
            case.greedy_ids
        );
        if same < case.greedy_ids.len() {
            let step = &g.tokens[same];
            let theirs = case.greedy_ids[same];
            let alt = step.top.iter().find(|a| a.id == theirs).unwrap_or_else(|| {
                panic!(
                    "{:?}: llama.cpp's token {theirs} at {same} is not in our top 10",
                    case.user
                )
            });
            let gap = step.logprob - alt.logprob;
            assert!(
                gap < NEAR_TIE_NATS,
                "{:?}: diverged at token {same} with a gap of {gap} nats",
                case.user
            );
        }
    }
}

#[test]
fn greedy_answer_is_coherent_and_stable() {
    let model = model();
    let prompt = generate::build_prompt(
        &model,
        "What is the capital of France? Answer in one word.",
        PromptFormat::Auto,
    )
    .expect("prompt");
    let run = || {
        let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
        generate::generate(
            &mut engine,
            &prompt,
            &SamplingParams::greedy(),
            32,
            |_, _| true,
        )
        .expect("generate")
    };
    let a = run();
    assert!(a.text.contains("Paris"), "answer: {:?}", a.text);
    assert_eq!(a.stop_reason, StopReason::EndOfText);
    // The streamed text is exactly the decoding of the tokens (the end token excluded).
    let ids: Vec<u32> = a.tokens[..a.tokens.len() - 1]
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(a.text, model.tokenizer.decode(&ids).expect("decode"));
    assert_eq!(a.text, run().text, "greedy output is stable across runs");
}

#[test]
fn forked_branches_share_the_prompt() {
    let model = model();
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    let prompt =
        generate::build_prompt(&model, "Name a colour.", PromptFormat::Auto).expect("prompt");
    let root = engine.new_sequence();
    let logits = engine.prefill(root, &prompt).expect("prefill");
    let first = thinkscope_engine::model::sampling::top_k_ids(&logits, 4);
    let branches: Vec<SeqId> = (0..4).map(|_| engine.fork(root).expect("fork")).collect();
    let c = engine.counters();
    assert_eq!(c.prompt_tokens_computed as usize, prompt.len());
    assert_eq!(c.tokens_reused as usize, 4 * prompt.len());
    // Four different continuations in one batched step, checked against recomputation.
    let steps: Vec<(SeqId, u32)> = branches.iter().zip(&first).map(|(&b, &t)| (b, t)).collect();
    let out = engine.decode(&steps).expect("decode");
    for (k, &t) in first.iter().enumerate() {
        let mut fresh = Engine::new(model.clone(), 1 << 30).expect("engine");
        let s = fresh.new_sequence();
        let mut full = prompt.clone();
        full.push(t);
        let direct = fresh.prefill(s, &full).expect("prefill");
        let diff = direct
            .iter()
            .zip(&out[k])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        // Q4_1 × Q8_1 dot products are exact integer sums per block; f32 accumulation order is
        // the only difference, so logits agree to well within 1e-2.
        assert!(diff < 1e-2, "branch {k} differs from recompute by {diff}");
    }
}

#[test]
fn bad_inputs_on_real_model() {
    let model = model();
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(model_path()).expect("read model");
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");
    assert!(matches!(
        Model::load(&truncated, &Device::Cpu),
        Err(EngineError::Corrupt { .. })
    ));
    let mut corrupt = bytes[..4096].to_vec();
    corrupt[0] = b'X';
    let path = dir.path().join("magic.gguf");
    std::fs::write(&path, &corrupt).expect("write");
    assert!(matches!(
        Model::load(&path, &Device::Cpu),
        Err(EngineError::NotGguf { .. })
    ));
    // Longer than the 8192-token context window.
    let long = "word ".repeat(9000);
    assert!(matches!(
        generate::build_prompt(&model, &long, PromptFormat::Auto),
        Err(EngineError::ContextOverflow { context: 8192, .. })
    ));
}
