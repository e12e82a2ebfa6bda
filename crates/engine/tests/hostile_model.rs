//! Hostile vocabularies and chat templates inside otherwise valid model files: errors, not
//! panics, and a model whose template is hostile still runs as plain completion.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::Device;
use thinkscope_engine::generate::{self, PromptFormat};
use thinkscope_engine::model::gguf::GgufFile;
use thinkscope_engine::model::tokenizer::{Tokenizer, MAX_PIECE_BYTES};
use thinkscope_engine::tiny::{rewrite_gguf, vocabulary, write_tiny_model, TinySpec};
use thinkscope_engine::{Engine, EngineError, Model, SamplingParams};

/// A GGUF image holding only `meta`, opened with the loader's parser.
fn gguf(meta: &[(&str, Value)]) -> GgufFile<Cursor<Vec<u8>>> {
    let mut buf = Cursor::new(Vec::new());
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut buf, &refs, &[]).expect("write");
    let bytes = buf.into_inner();
    let len = bytes.len() as u64;
    GgufFile::from_reader(Path::new("vocab.gguf"), Cursor::new(bytes), len).expect("parse")
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
}

/// Byte-level BPE metadata around `tokens` and `merges`.
fn bpe(
    tokens: &[String],
    merges: &[String],
    extra: Vec<(&'static str, Value)>,
) -> Result<Tokenizer, EngineError> {
    let mut meta = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.merges", strings(merges)),
    ];
    meta.extend(extra);
    Tokenizer::from_gguf(&gguf(&meta))
}

fn tokenizer_err(r: Result<Tokenizer, EngineError>) -> String {
    match r {
        Err(e @ (EngineError::Tokenizer(_) | EngineError::InvalidMetadata(_))) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("a hostile vocabulary was accepted"),
    }
}

#[test]
fn the_tiny_vocabulary_builds() {
    let tokens = vocabulary();
    let merges = vec!["Ġ t".to_owned(), "h e".to_owned()];
    let t = bpe(&tokens, &merges, vec![]).expect("builds");
    assert_eq!(
        t.decode(&t.encode("the cat").expect("encode"))
            .expect("decode"),
        "the cat"
    );
}

#[test]
fn merges_joining_unknown_pieces_are_errors_not_panics() {
    // "ab ab" joins two pieces into "abab", which is not in the vocabulary: the tokenizers
    // crate copies the join into a buffer as long as the longest piece and panics.
    let tokens: Vec<String> = ["a", "b", "ab"].iter().map(|s| s.to_string()).collect();
    let m = tokenizer_err(bpe(&tokens, &["ab ab".into()], vec![]));
    assert!(m.contains("\"abab\""), "{m}");
    let m = tokenizer_err(bpe(&tokens, &["a c".into()], vec![]));
    assert!(m.contains("\"c\""), "{m}");
    for bad in ["ab", " a", "a ", ""] {
        let m = tokenizer_err(bpe(&tokens, &[bad.into()], vec![]));
        assert!(m.contains("not two tokens"), "{bad:?}: {m}");
    }
}

#[test]
fn oversized_vocabularies_are_refused() {
    let m = tokenizer_err(bpe(&[], &[], vec![]));
    assert!(m.contains("empty"), "{m}");
    let long = vec!["x".repeat(MAX_PIECE_BYTES + 1)];
    let m = tokenizer_err(bpe(&long, &[], vec![]));
    assert!(m.contains("bytes long"), "{m}");
    // Many special tokens would become one huge matching automaton.
    let many: Vec<String> = (0..70_000).map(|i| format!("<s{i}>")).collect();
    let types = Value::Array(many.iter().map(|_| Value::I32(3)).collect());
    let m = tokenizer_err(bpe(&many, &[], vec![("tokenizer.ggml.token_type", types)]));
    assert!(m.contains("control and user-defined"), "{m}");
}

#[test]
fn empty_and_duplicate_pieces_and_bad_ids() {
    // Empty pieces and duplicates load (real files have them); text encodes to the first id of
    // a duplicate and every id decodes to its own piece.
    let mut tokens = vocabulary();
    let dup = tokens[b'a' as usize].clone();
    tokens.push(String::new());
    tokens.push(dup.clone());
    let n = tokens.len();
    let t = bpe(&tokens, &[], vec![]).expect("duplicates and empty pieces load");
    let id = t.encode("a").expect("encode")[0];
    assert_eq!(t.piece(id), Some(dup.as_str()));
    assert!(id < n as u32 - 1, "the first of the duplicates");
    assert_eq!(t.decode(&[n as u32 - 1]).expect("decode"), "a");
    assert_eq!(t.decode(&[n as u32 - 2]).expect("decode"), "");
    // Special ids outside the vocabulary.
    for key in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
    ] {
        let m = tokenizer_err(bpe(&tokens, &[], vec![(key, Value::U32(n as u32))]));
        assert!(m.contains("outside the vocabulary"), "{key}: {m}");
        let m = tokenizer_err(bpe(&tokens, &[], vec![(key, Value::I32(-1))]));
        assert!(m.contains("negative"), "{key}: {m}");
    }
    // Per-token arrays of the wrong length or type.
    let m = tokenizer_err(bpe(
        &tokens,
        &[],
        vec![(
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1)]),
        )],
    ));
    assert!(m.contains("entries"), "{m}");
    let m = tokenizer_err(bpe(
        &tokens,
        &[],
        vec![("tokenizer.ggml.token_type", Value::String("x".into()))],
    ));
    assert!(m.contains("integer array"), "{m}");
}

#[test]
fn sentencepiece_vocabularies_are_checked() {
    let tokens: Vec<String> = ["<unk>", "▁", "a", "▁a", "aa"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let sp = |tokens: &[String], scores: Value| {
        Tokenizer::from_gguf(&gguf(&[
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", strings(tokens)),
            ("tokenizer.ggml.scores", scores),
        ]))
    };
    let scores = |n: usize| Value::Array((0..n).map(|i| Value::F32(-(i as f32))).collect());
    let t = sp(&tokens, scores(tokens.len())).expect("builds");
    assert!(!t.encode("a a").expect("encode").is_empty());
    let m = tokenizer_err(sp(&tokens, scores(2)));
    assert!(m.contains("scores has 2 entries"), "{m}");
    // NaN scores sort without panicking.
    let nan = Value::Array(tokens.iter().map(|_| Value::F32(f32::NAN)).collect());
    sp(&tokens, nan).expect("NaN scores are only an order");
    // Pieces whose split work would take minutes are refused.
    let long: Vec<String> = (0..300)
        .map(|i| format!("{i}{}", "é".repeat(1000)))
        .collect();
    let m = tokenizer_err(sp(&long, scores(long.len())));
    assert!(m.contains("too long"), "{m}");
}

fn tiny_with_template(template: &str) -> (tempfile::TempDir, Arc<Model>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("tiny.gguf");
    write_tiny_model(&src, &TinySpec::llama()).expect("tiny");
    let dst = dir.path().join("hostile.gguf");
    rewrite_gguf(&src, &dst, |meta, _| {
        meta.retain(|(k, _)| k != "tokenizer.chat_template");
        meta.push((
            "tokenizer.chat_template".into(),
            Value::String(template.into()),
        ));
    })
    .expect("rewrite");
    let model = Model::load(&dst, &Device::Cpu).expect("a hostile template does not stop loading");
    (dir, Arc::new(model))
}

fn runs_as_plain_completion(model: &Arc<Model>) {
    let ids = generate::build_prompt(model, "hello", PromptFormat::Raw).expect("raw prompt");
    let mut engine = Engine::new(model.clone(), 1 << 28).expect("engine");
    let params = SamplingParams {
        temperature: 0.0,
        ..SamplingParams::default()
    };
    let g = generate::generate(&mut engine, &ids, &params, 4, |_, _| true).expect("generate");
    assert!(!g.tokens.is_empty());
}

#[test]
fn a_template_that_loops_forever_errors_and_plain_completion_still_works() {
    let (_d, model) = tiny_with_template(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}\
         {% endfor %}{% endfor %}{% endfor %}",
    );
    let err = generate::build_prompt(&model, "hello", PromptFormat::Auto).expect_err("fuel");
    let m = err.to_string();
    assert!(matches!(err, EngineError::Template(_)), "{m}");
    assert!(m.contains("ran too long"), "{m}");
    assert!(
        m.contains("plain text"),
        "the message says how to go on: {m}"
    );
    runs_as_plain_completion(&model);
}

#[test]
fn a_template_asking_for_a_terabyte_errors_and_plain_completion_still_works() {
    for template in [
        "{{ ' ' * 10**12 }}",
        "{{ messages[0].content | indent(10**12) }}",
        "{{ messages | tojson(indent=10**12) }}",
        "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
    ] {
        let (_d, model) = tiny_with_template(template);
        let err = generate::build_prompt(&model, "hello", PromptFormat::Auto)
            .expect_err("a hostile template must fail");
        assert!(matches!(err, EngineError::Template(_)), "{template}: {err}");
        runs_as_plain_completion(&model);
    }
}

#[test]
fn a_template_that_does_not_compile_still_loads() {
    let (_d, model) = tiny_with_template("{% for m in messages %}{{ m.content ");
    let t = model.template.as_ref().expect("kept");
    assert!(t.error().is_some());
    let err = generate::build_prompt(&model, "hello", PromptFormat::Auto).expect_err("broken");
    assert!(matches!(err, EngineError::Template(_)), "{err}");
    runs_as_plain_completion(&model);
}
