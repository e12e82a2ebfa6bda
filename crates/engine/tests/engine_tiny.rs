//! Engine tests on a tiny random-weight model the tests write themselves.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;
use candle_core::Device;
use thinkscope_engine::generate::{self, PromptFormat};
use thinkscope_engine::model::config::Arch;
use thinkscope_engine::tiny::{rewrite_gguf, write_tiny_model, TinySpec};
use thinkscope_engine::{Engine, EngineError, Model, SamplingParams, SeqId};

fn tiny(spec: &TinySpec) -> (tempfile::TempDir, PathBuf, Arc<Model>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, spec).expect("write tiny model");
    let model = Model::load(&path, &Device::Cpu).expect("load tiny model");
    (dir, path, Arc::new(model))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn prompts() -> Vec<Vec<u32>> {
    // Different lengths, longer than the gemma3 sliding window of 8.
    vec![
        (0..5).map(|i| 40 + i).collect(),
        (0..19).map(|i| 70 + 3 * i).collect(),
        (0..12).map(|i| 100 + 2 * i).collect(),
    ]
}

fn batched_matches_single(spec: TinySpec) {
    let (_d, _p, model) = tiny(&spec);
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    let seqs: Vec<SeqId> = prompts()
        .iter()
        .map(|p| {
            let s = engine.new_sequence();
            engine.prefill(s, p).expect("prefill");
            s
        })
        .collect();
    // Three steps, all sequences in one forward pass each.
    let mut batched = Vec::new();
    for step in 0..3u32 {
        let steps: Vec<(SeqId, u32)> = seqs
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, 50 + step * 3 + i as u32))
            .collect();
        let passes = engine.counters().forward_passes;
        batched.push(engine.decode(&steps).expect("batched decode"));
        assert_eq!(
            engine.counters().forward_passes,
            passes + 1,
            "one pass per batched step"
        );
    }
    // Each sequence alone, on a fresh engine.
    for (i, p) in prompts().iter().enumerate() {
        let mut solo = Engine::new(model.clone(), 1 << 30).expect("engine");
        let s = solo.new_sequence();
        solo.prefill(s, p).expect("prefill");
        for (step, batch_out) in batched.iter().enumerate() {
            let logits = solo
                .decode(&[(s, 50 + step as u32 * 3 + i as u32)])
                .expect("decode");
            let diff = max_abs_diff(&logits[0], &batch_out[i]);
            assert!(
                diff < 1e-4,
                "seq {i} step {step}: batched differs from single by {diff}"
            );
        }
    }
}

#[test]
fn batched_decode_equals_single_llama() {
    batched_matches_single(TinySpec::llama());
}

#[test]
fn batched_decode_equals_single_gemma3() {
    batched_matches_single(TinySpec::gemma3());
}

fn fork_matches_recompute(spec: TinySpec) {
    let (_d, _p, model) = tiny(&spec);
    let prompt: Vec<u32> = (0..21).map(|i| 60 + (i * 5) % 180).collect();
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    let root = engine.new_sequence();
    engine.prefill(root, &prompt).expect("prefill");
    let before = engine.counters();
    let a = engine.fork(root).expect("fork");
    let b = engine.fork(root).expect("fork");
    let after = engine.counters();
    assert_eq!(
        after.prompt_tokens_computed, before.prompt_tokens_computed,
        "a fork recomputes nothing"
    );
    assert_eq!(
        after.forward_passes, before.forward_passes,
        "a fork runs no forward pass"
    );
    assert_eq!(
        after.tokens_reused - before.tokens_reused,
        2 * prompt.len() as u64
    );

    // Continue the forks with different tokens, in one batch, for several steps.
    let conts: [Vec<u32>; 2] = [vec![7, 80, 81, 200], vec![9, 150, 33, 34]];
    let mut forked: [Vec<Vec<f32>>; 2] = [Vec::new(), Vec::new()];
    for (&ta, &tb) in conts[0].iter().zip(&conts[1]) {
        let out = engine.decode(&[(a, ta), (b, tb)]).expect("decode");
        forked[0].push(out[0].clone());
        forked[1].push(out[1].clone());
    }
    // The parent is untouched by its children's writes.
    assert_eq!(engine.len(root).expect("len"), prompt.len());
    let parent_next = engine.decode(&[(root, 5)]).expect("decode parent");

    for (k, cont) in conts.iter().enumerate() {
        let mut fresh = Engine::new(model.clone(), 1 << 30).expect("engine");
        let s = fresh.new_sequence();
        let mut full = prompt.clone();
        full.extend_from_slice(cont);
        let all = fresh.score(s, &full).expect("score");
        for step in 0..4 {
            let diff = max_abs_diff(&all[prompt.len() + step], &forked[k][step]);
            assert!(
                diff < 1e-4,
                "fork {k} step {step} differs from recompute by {diff}"
            );
        }
    }
    let mut fresh = Engine::new(model, 1 << 30).expect("engine");
    let s = fresh.new_sequence();
    let mut full = prompt.clone();
    full.push(5);
    let direct = fresh.prefill(s, &full).expect("prefill");
    assert!(
        max_abs_diff(&direct, &parent_next[0]) < 1e-4,
        "parent cache was corrupted by a fork"
    );
}

#[test]
fn fork_continues_exactly_llama() {
    fork_matches_recompute(TinySpec::llama());
}

#[test]
fn fork_continues_exactly_gemma3() {
    fork_matches_recompute(TinySpec::gemma3());
}

#[test]
fn shared_prefix_is_reused_not_recomputed() {
    let (_d, _p, model) = tiny(&TinySpec::llama());
    let mut engine = Engine::new(model, 1 << 30).expect("engine");
    let p1: Vec<u32> = (0..30).map(|i| 40 + i).collect();
    let mut p2 = p1[..24].to_vec();
    p2.extend([3, 4, 5]);
    let (_s1, _) = engine.prefill_shared(&p1).expect("first");
    let before = engine.counters();
    let (_s2, logits) = engine.prefill_shared(&p2).expect("second");
    let d = engine.counters().since(&before);
    assert_eq!(d.tokens_reused, 24);
    assert_eq!(d.prompt_tokens_computed, 3);

    let mut fresh = Engine::new(engine.model().clone(), 1 << 30).expect("engine");
    let s = fresh.new_sequence();
    let direct = fresh.prefill(s, &p2).expect("prefill");
    assert!(max_abs_diff(&direct, &logits) < 1e-4);
}

#[test]
fn kv_memory_is_shared_and_bounded() {
    let (_d, _p, model) = tiny(&TinySpec::llama());
    let layout = model.kv_layout();
    let block_bytes = layout.n_layer * 2 * layout.n_kv_head * layout.head_dim * 16 * 2;
    let mut engine = Engine::new(model, 4 * block_bytes).expect("engine");
    let root = engine.new_sequence();
    engine
        .prefill(root, &(0..32).map(|i| 40 + i).collect::<Vec<u32>>())
        .expect("two blocks");
    assert_eq!(engine.kv_used_bytes(), 2 * block_bytes);
    // Forks share the two full blocks: no memory until they write.
    let forks: Vec<SeqId> = (0..10).map(|_| engine.fork(root).expect("fork")).collect();
    assert_eq!(engine.kv_used_bytes(), 2 * block_bytes);
    engine
        .decode(&[(forks[0], 1), (forks[1], 2)])
        .expect("two new blocks fit");
    assert_eq!(engine.kv_used_bytes(), 4 * block_bytes);
    let err = engine
        .decode(&[(forks[2], 3)])
        .expect_err("budget exceeded");
    assert!(matches!(err, EngineError::KvBudgetExceeded { .. }), "{err}");
    // The failed sequence is intact and usable once memory is freed.
    assert_eq!(engine.len(forks[2]).expect("len"), 32);
    engine.release(forks[0]);
    engine.decode(&[(forks[2], 3)]).expect("fits after release");
    engine.truncate(forks[2], 10).expect("rollback");
    assert_eq!(engine.len(forks[2]).expect("len"), 10);
}

#[test]
fn sampling_is_deterministic_per_seed() {
    let (_d, _p, model) = tiny(&TinySpec::llama());
    let prompt = generate::build_prompt(&model, "hello there", PromptFormat::Auto).expect("prompt");
    let run = |seed: u64| {
        let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..SamplingParams::default()
        };
        let g =
            generate::generate(&mut engine, &prompt, &params, 24, |_, _| true).expect("generate");
        g.tokens.iter().map(|t| t.id).collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same tokens");
    assert_ne!(a, run(2), "another seed gives another sample");
}

#[test]
fn tokens_carry_logprob_entropy_and_alternatives() {
    let (_d, _p, model) = tiny(&TinySpec::llama());
    let prompt = generate::build_prompt(&model, "the tin", PromptFormat::Auto).expect("prompt");
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    let params = SamplingParams {
        top_alternatives: 4,
        ..SamplingParams::greedy()
    };
    let g = generate::generate(&mut engine, &prompt, &params, 8, |_, _| true).expect("generate");
    assert!(!g.tokens.is_empty());
    let max_entropy = (model.config.vocab as f32).ln();
    for t in &g.tokens {
        assert_eq!(t.top.len(), 4);
        // Greedy picks the most likely token, which heads the alternatives.
        assert_eq!(t.top[0].id, t.id);
        assert!((t.top[0].logprob - t.logprob).abs() < 1e-6);
        assert!(t.logprob <= 0.0);
        assert!(t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        assert!(t.entropy >= 0.0 && t.entropy <= max_entropy + 1e-3);
    }
    assert_eq!(g.counters.generated_tokens as usize, g.tokens.len());
    assert_eq!(g.counters.prompt_tokens_computed as usize, prompt.len());
}

#[test]
fn chat_template_and_special_tokens() {
    let (_d, _p, model) = tiny(&TinySpec::llama());
    let ids = generate::build_prompt(&model, "hi", PromptFormat::Auto).expect("prompt");
    let start = model.tokenizer.piece_id("<|im_start|>").expect("special");
    assert_eq!(ids[0], start, "markup is one special token");
    let text = model.tokenizer.decode(&ids).expect("decode");
    assert_eq!(
        text,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    let raw = generate::build_prompt(&model, "hi", PromptFormat::Raw).expect("raw");
    assert_eq!(model.tokenizer.decode(&raw).expect("decode"), "hi");
    assert!(matches!(
        generate::build_prompt(&model, "   ", PromptFormat::Auto),
        Err(EngineError::InvalidParameter(_))
    ));
}

#[test]
fn bad_token_and_context_overflow_are_errors() {
    let (_d, _p, model) = tiny(&TinySpec::llama());
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    let s = engine.new_sequence();
    let err = engine.prefill(s, &[1, 2, 99_999]).expect_err("bad id");
    assert!(
        matches!(err, EngineError::InvalidToken { id: 99_999, .. }),
        "{err}"
    );
    assert_eq!(
        engine.len(s).expect("len"),
        0,
        "a failed pass leaves the sequence unchanged"
    );
    let long = "a".repeat(400);
    let err = generate::build_prompt(&model, &long, PromptFormat::Raw).expect_err("too long");
    assert!(
        matches!(err, EngineError::ContextOverflow { context: 256, .. }),
        "{err}"
    );
    let err = engine.prefill(s, &vec![40; 300]).expect_err("too long");
    assert!(matches!(err, EngineError::ContextOverflow { .. }), "{err}");
    let err = engine.decode(&[(s, 1), (s, 2)]).expect_err("duplicate");
    assert!(matches!(err, EngineError::InvalidParameter(_)), "{err}");
    assert!(matches!(
        engine.decode(&[(SeqId(12345), 1)]),
        Err(EngineError::UnknownSequence(SeqId(12345)))
    ));
    let bad = SamplingParams {
        top_p: 0.0,
        ..SamplingParams::default()
    };
    assert!(matches!(
        bad.validate(),
        Err(EngineError::InvalidParameter(_))
    ));
}

fn load_err(path: &std::path::Path) -> EngineError {
    match Model::load(path, &Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e,
    }
}

#[test]
fn bad_files_give_typed_errors() {
    let (dir, path, _) = tiny(&TinySpec::llama());
    let d = dir.path();

    let missing = d.join("nope.gguf");
    assert!(matches!(
        load_err(&missing),
        EngineError::ModelNotFound { .. }
    ));

    let text = d.join("text.gguf");
    std::fs::write(&text, "this is not a model").expect("write");
    assert!(matches!(load_err(&text), EngineError::NotGguf { .. }));

    let bytes = std::fs::read(&path).expect("read");
    for cut in [10, 200, bytes.len() / 2, bytes.len() - 1] {
        let truncated = d.join(format!("cut{cut}.gguf"));
        std::fs::write(&truncated, &bytes[..cut]).expect("write");
        let err = load_err(&truncated);
        assert!(
            matches!(err, EngineError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
    }

    type Meta = Vec<(String, Value)>;
    let edit = |name: &str, f: &dyn Fn(&mut Meta)| {
        let p = d.join(name);
        rewrite_gguf(&path, &p, |m, _| f(m)).expect("rewrite");
        load_err(&p)
    };
    let set = |m: &mut Vec<(String, Value)>, key: &str, v: Value| {
        m.retain(|(k, _)| k != key);
        m.push((key.to_owned(), v));
    };
    let err = edit("arch.gguf", &|m| {
        set(m, "general.architecture", Value::String("mamba".into()))
    });
    assert!(
        matches!(err, EngineError::UnsupportedArchitecture(ref a) if a == "mamba"),
        "{err}"
    );
    let err = edit("bos.gguf", &|m| {
        set(m, "tokenizer.ggml.bos_token_id", Value::U32(1_000_000))
    });
    assert!(matches!(err, EngineError::InvalidMetadata(_)), "{err}");
    let err = edit("width.gguf", &|m| {
        set(m, "llama.embedding_length", Value::U32(96))
    });
    assert!(matches!(err, EngineError::InvalidTensor(_)), "{err}");
    let err = edit("heads.gguf", &|m| {
        set(m, "llama.attention.head_count_kv", Value::U32(3))
    });
    assert!(matches!(err, EngineError::InvalidMetadata(_)), "{err}");
    let err = edit("layers.gguf", &|m| {
        set(m, "llama.block_count", Value::U32(u32::MAX))
    });
    assert!(matches!(err, EngineError::InvalidMetadata(_)), "{err}");
    let err = edit("nokey.gguf", &|m| {
        m.retain(|(k, _)| k != "llama.context_length")
    });
    assert!(matches!(err, EngineError::InvalidMetadata(_)), "{err}");
    let p = d.join("notensor.gguf");
    rewrite_gguf(&path, &p, |_, t| {
        t.retain(|(n, _)| n != "blk.1.ffn_up.weight")
    })
    .expect("rewrite");
    assert!(matches!(load_err(&p), EngineError::InvalidTensor(_)));
}

#[test]
fn gemma3_tiny_has_sliding_and_global_layers() {
    let (_d, _p, model) = tiny(&TinySpec::gemma3());
    assert_eq!(model.config.arch, Arch::Gemma3);
    let windows: Vec<_> = (0..model.config.n_layer)
        .map(|l| model.config.layer_window(l))
        .collect();
    assert_eq!(windows, vec![Some(8), Some(8), Some(8), None]);
}

/// Decoding one token at a long position (its attention split over the threads in chunks of
/// positions, then merged, whenever there are two or more threads) gives the logits of the same
/// position inside a whole-prompt pass. The attention itself is checked against an f64 reference
/// to 1e-5 in `attention.rs`; here, end to end, the two paths sum floats in different orders, and
/// an activation that lands on a rounding boundary of the 8-bit quantization then moves by one
/// step, so the bound is one percent of the logits' range rather than float noise. A wrong merge
/// (a missing rescale, a lost chunk) moves them by tens of percent.
fn long_decode_matches_one_pass(spec: TinySpec) {
    let (_d, _p, model) = tiny(&spec);
    let tokens: Vec<u32> = (0..240).map(|i| 30 + (i * 37) % 150).collect();
    let mut whole = Engine::new(model.clone(), 1 << 30).expect("engine");
    let s = whole.new_sequence();
    let want = whole.prefill(s, &tokens).expect("prefill");
    let mut split = Engine::new(model, 1 << 30).expect("engine");
    let s = split.new_sequence();
    split.prefill(s, &tokens[..239]).expect("prefill");
    let got = split.decode(&[(s, tokens[239])]).expect("decode");
    let diff = max_abs_diff(&got[0], &want);
    let range =
        want.iter().fold(f32::MIN, |m, v| m.max(*v)) - want.iter().fold(f32::MAX, |m, v| m.min(*v));
    assert!(
        diff < 0.01 * range,
        "decode differs from the one-pass prompt by {diff} (logit range {range})"
    );
}

#[test]
fn long_decode_matches_one_pass_llama() {
    long_decode_matches_one_pass(TinySpec::llama());
}

#[test]
fn long_decode_matches_one_pass_gemma3() {
    long_decode_matches_one_pass(TinySpec::gemma3());
}
