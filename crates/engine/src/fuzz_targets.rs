//! Fuzz targets: every reader of untrusted input, driven by arbitrary bytes. They are shared by
//! the cargo-fuzz project in `fuzz/` (libFuzzer, nightly) and by the seeded mutation loop that
//! `cargo test` runs on stable (`tests/fuzz_loop.rs`), so CI exercises the same code paths the
//! long fuzzing runs do. A target returns normally for any input; a panic, an abort, a hang or
//! an unbounded allocation is a bug. [`Mutator`] and the `*_seeds` functions are the stable
//! loop's half.

use std::io::Cursor;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::Device;

use crate::answer;
use crate::lab::problems::{self, GeneratorSpec};
use crate::lab::sweep::{self, SweepConfig};
use crate::model::config::ModelConfig;
use crate::model::gguf::GgufFile;
use crate::model::sampling::Rng;
use crate::model::template::{ChatTemplate, Message};
use crate::model::tokenizer::Tokenizer;
use crate::tree::Tree;

/// Bytes of zeros the in-memory GGUF target pretends follow the input, so a truncated header
/// (the real model's, say) still reaches the config, tokenizer and template code.
const VIRTUAL_TAIL: u64 = 64 << 20;

/// The GGUF header and everything built from it, in memory: parse, model config, tokenizer
/// (encode and decode), chat template (compile and render) and every tensor's data.
pub fn gguf_header(data: &[u8]) {
    let len = data.len() as u64 + VIRTUAL_TAIL;
    let Ok(mut gguf) = GgufFile::from_reader(Path::new("fuzz.gguf"), Cursor::new(data), len) else {
        return;
    };
    let _ = ModelConfig::from_gguf(&gguf);
    if let Ok(tok) = Tokenizer::from_gguf(&gguf) {
        exercise_tokenizer(&tok, "Hello, world! 12345 <|im_start|> é 🙂\n\t x");
    }
    if let Ok(source) = gguf.string("tokenizer.chat_template") {
        if let Ok(t) = ChatTemplate::new(&source, "<s>", "</s>") {
            let _ = t.render_here(&[Message::new("user", "hi")]);
        }
    }
    for name in gguf.tensor_names().to_vec() {
        if let Ok((dims, _)) = gguf.tensor_info(&name) {
            let _ = gguf.tensor(&name, &dims, &Device::Cpu);
        }
    }
}

/// The whole model loader on a file: `Model::load`, as the app and the CLI call it.
pub fn gguf_model(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("thinkscope-fuzz-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join("model.gguf");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(model) = crate::Model::load(&path, &Device::Cpu) {
        let tok = &model.tokenizer;
        exercise_tokenizer(tok, "the answer is 42");
        let _ = crate::generate::build_prompt(&model, "hi", crate::generate::PromptFormat::Auto);
    }
}

fn exercise_tokenizer(tok: &Tokenizer, text: &str) {
    if let Ok(ids) = tok.encode_prompt(text) {
        let _ = tok.decode(&ids);
    }
    let n = tok.vocab_size().min(512) as u32;
    let _ = tok.decode(&(0..n).collect::<Vec<_>>());
    for id in 0..n {
        let _ = tok.token_text(id);
    }
    // Ids outside the vocabulary as a model's sampler would never give them.
    let _ = tok.decode(&[u32::MAX, tok.vocab_size() as u32]);
}

/// The tokenizer builder on a vocabulary taken from the input: the first byte picks the kind
/// (byte-level BPE or SentencePiece) and options, then newline-separated pieces, a NUL, merges,
/// a NUL, and text to encode.
pub fn tokenizer(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\0');
    let mut pieces: Vec<String> = parts
        .next()
        .unwrap_or_default()
        .split('\n')
        .take(2048)
        .map(str::to_owned)
        .collect();
    let merges: Vec<String> = parts
        .next()
        .unwrap_or_default()
        .split('\n')
        .filter(|m| !m.is_empty())
        .take(2048)
        .map(str::to_owned)
        .collect();
    let sample = parts.next().unwrap_or("hello world");
    let byte_level = flags & 1 == 0;
    if flags & 2 != 0 && byte_level {
        // All 256 byte pieces first, so merges can meet real pieces.
        let mut all: Vec<String> = crate::tiny::byte_chars()
            .into_iter()
            .map(String::from)
            .collect();
        all.append(&mut pieces);
        pieces = all;
    }
    let n = pieces.len();
    let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let mut meta: Vec<(String, Value)> = vec![
        (
            "tokenizer.ggml.model".into(),
            Value::String(if byte_level { "gpt2" } else { "llama" }.into()),
        ),
        ("tokenizer.ggml.tokens".into(), strings(&pieces)),
    ];
    if byte_level {
        meta.push(("tokenizer.ggml.merges".into(), strings(&merges)));
        let pre = ["default", "smollm", "llama-bpe", "qwen2"][usize::from(flags >> 2) & 3];
        meta.push(("tokenizer.ggml.pre".into(), Value::String(pre.into())));
    } else {
        let scores = (0..n).map(|i| Value::F32(-(i as f32) * 0.5)).collect();
        meta.push(("tokenizer.ggml.scores".into(), Value::Array(scores)));
    }
    // Token types from the flags: some control tokens, some user-defined, some out of range.
    let types = (0..n)
        .map(|i| {
            Value::I32(match (i + usize::from(flags)) % 11 {
                0 => 3,
                1 => 4,
                2 => 6,
                _ => 1,
            })
        })
        .collect();
    meta.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
    for (bit, key) in [
        (4, "tokenizer.ggml.bos_token_id"),
        (5, "tokenizer.ggml.eos_token_id"),
    ] {
        if flags & (1 << bit) != 0 {
            // Sometimes one past the end.
            meta.push((
                key.into(),
                Value::U32((n as u32).saturating_sub(u32::from(flags >> 7))),
            ));
        }
    }
    meta.push((
        "tokenizer.ggml.add_space_prefix".into(),
        Value::Bool(flags & 0x40 != 0),
    ));
    let Some(gguf) = metadata_only(&meta) else {
        return;
    };
    if let Ok(tok) = Tokenizer::from_gguf(&gguf) {
        exercise_tokenizer(&tok, sample);
    }
}

/// A GGUF image with metadata and no tensors, opened with the loader's parser.
fn metadata_only(meta: &[(String, Value)]) -> Option<GgufFile<Cursor<Vec<u8>>>> {
    let mut buf = Cursor::new(Vec::new());
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut buf, &refs, &[]).ok()?;
    let bytes = buf.into_inner();
    let len = bytes.len() as u64;
    GgufFile::from_reader(Path::new("fuzz.gguf"), Cursor::new(bytes), len).ok()
}

/// The chat template: source up to the first NUL, then NUL-separated message contents
/// (alternating user and assistant).
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let messages: Vec<Message> = parts
        .take(16)
        .enumerate()
        .map(|(i, c)| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, c))
        .collect();
    if let Ok(t) = ChatTemplate::new(source, "<s>", "</s>") {
        let _ = t.render_here(&messages);
    }
}

/// The session reader's engine half: a tree from JSON, validated, then walked the way the app
/// draws and inspects it.
pub fn session(data: &[u8]) {
    let Ok(tree) = serde_json::from_slice::<Tree>(data) else {
        return;
    };
    if tree.validate().is_err() {
        return;
    }
    walk_tree(&tree);
}

/// Everything a viewer does with a tree: must terminate and stay in range on a valid one.
pub fn walk_tree(tree: &Tree) {
    for node in &tree.nodes {
        let _ = tree.path(node.id);
        let _ = tree.path_text(node.id);
        let _ = tree.path_tokens(node.id);
        let _ = tree.depth(node.id);
        for (i, keep) in tree.path_spans(node.id) {
            assert!(keep <= tree.nodes[i].tokens.len());
        }
    }
    let _ = tree.leaves().count();
    let _ = tree.token_count();
    let _ = tree.transcript_markdown();
    let mut copy = tree.clone();
    if let Some(last) = tree.nodes.last() {
        copy.apply(&crate::events::Event::AnswerChosen {
            run: crate::events::RunId(0),
            node: Some(last.id),
            answer: None,
            tally: Default::default(),
        });
    }
}

/// The problem-set reader and generator specs.
pub fn problems(data: &[u8]) {
    if let Ok(list) = problems::parse_jsonl_from(data, Path::new("fuzz.jsonl")) {
        for p in &list {
            let _ = p.check(&p.answer);
            let _ = p.fingerprint();
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = text
        .lines()
        .next()
        .unwrap_or_default()
        .parse::<GeneratorSpec>()
    {
        if spec.count <= 64 {
            let _ = problems::generate(&spec, 7);
        }
    }
}

/// The results reader, then everything computed from the records: summaries, CSV, SVG, table.
pub fn results(data: &[u8]) {
    let Ok(records) = sweep::parse_results(data, Path::new("fuzz.jsonl")) else {
        return;
    };
    let config = SweepConfig {
        strategies: [
            "greedy",
            "chain-of-thought",
            "budget-forcing",
            "self-consistency",
            "best-of-n",
            "beam",
            "mcts",
            "entropy-branching",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        max_n: 8,
        ..SweepConfig::default()
    };
    let points = sweep::summarize(&config, &records);
    let _ = sweep::to_csv(&points);
    let _ = sweep::format_table(&points);
    let _ = crate::lab::plot::render_svg(&points, "fuzz", "note");
}

/// The answer extractor and the comparisons built on it.
pub fn answer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let got = answer::extract_answer(&text);
    let _ = answer::normalize(&text);
    let _ = answer::last_number(&text);
    let _ = answer::parse_number(&text);
    let mid = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let (a, b) = text.split_at(mid);
    let _ = answer::answers_match(a, b);
    if let Some(g) = got {
        let _ = answer::answers_match(&g, &text);
        let _ = answer::normalize(&g);
    }
}

/// The whole loader on tiny models changed field by field: the input is a recipe (which tiny
/// model, then edits such as "set this count to 2^40", "duplicate that key", "give this tensor
/// another type or offset"), so most inputs stay well-formed enough to reach the config,
/// tokenizer, template and weight code, which byte mutations rarely do.
pub fn gguf_structured(data: &[u8]) {
    let Some((&pick, recipe)) = data.split_first() else {
        return;
    };
    let seeds = tiny_seeds();
    let Some(seed) = seeds.get(usize::from(pick) % seeds.len()) else {
        return;
    };
    let Some(mut image) = GgufImage::parse(seed) else {
        return;
    };
    image.edit(&mut Recipe(recipe));
    gguf_model(&image.to_bytes());
}

/// The tiny llama and gemma3 models, written once per process.
pub fn tiny_seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("thinkscope-fuzz-seeds-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut out = Vec::new();
        for (i, spec) in [
            crate::tiny::TinySpec::llama(),
            crate::tiny::TinySpec::gemma3(),
        ]
        .iter()
        .enumerate()
        {
            let p = dir.join(format!("tiny{i}.gguf"));
            if crate::tiny::write_tiny_model(&p, spec).is_ok() {
                if let Ok(b) = std::fs::read(&p) {
                    out.push(b);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        out
    })
}

/// Bytes read as decisions; zeros once they run out.
struct Recipe<'a>(&'a [u8]);

impl Recipe<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let hi = self.byte().unwrap_or(0) as usize;
        let lo = self.byte().unwrap_or(0) as usize;
        (hi << 8 | lo) % n
    }

    fn interesting(&mut self) -> u64 {
        INTERESTING[self.below(INTERESTING.len())]
    }
}

/// A GGUF image as editable parts, written back byte by byte (so it can say anything).
struct GgufImage {
    version: u32,
    meta: Vec<(String, Value)>,
    /// Name, dims innermost first, ggml type number, offset.
    tensors: Vec<(String, Vec<u64>, u32, u64)>,
    pad_to: usize,
    data: Vec<u8>,
}

/// Keys worth setting: the ones the loader reads.
const KEYS: &[&str] = &[
    "general.alignment",
    "general.architecture",
    "llama.block_count",
    "llama.context_length",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.attention.key_length",
    "llama.attention.layer_norm_rms_epsilon",
    "llama.rope.dimension_count",
    "llama.rope.freq_base",
    "gemma3.attention.sliding_window",
    "gemma3.attention.sliding_window_pattern",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
    "tokenizer.chat_template",
];

const STRINGS: &[&str] = &[
    "",
    "llama",
    "gemma3",
    "qwen2",
    "qwen3",
    "gpt2",
    "smollm",
    "llama-bpe",
    "qwen2",
    "<|im_end|>",
    "{% for m in messages %}{{ m.content }}{% endfor %}",
    "{{ ' ' * 10**12 }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'x' | indent(10**12) }}",
    "Ġ t",
    "a b",
];

impl GgufImage {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let len = bytes.len() as u64;
        let g = GgufFile::from_reader(Path::new("seed.gguf"), Cursor::new(bytes), len).ok()?;
        let meta = g
            .keys()
            .iter()
            .filter_map(|k| Some((k.clone(), g.metadata().get(k)?.clone())))
            .collect();
        let mut tensors = Vec::new();
        for name in g.tensor_names() {
            let (dims, dtype) = g.tensor_info(name).ok()?;
            let ne = dims.iter().rev().map(|&d| d as u64).collect();
            let ty = crate::model::gguf::ggml_type_number(dtype);
            tensors.push((name.clone(), ne, ty, g.tensor_offset(name)?));
        }
        Some(Self {
            version: 3,
            meta,
            tensors,
            pad_to: g.alignment() as usize,
            data: bytes.get(g.data_offset() as usize..)?.to_vec(),
        })
    }

    fn value(&mut self, r: &mut Recipe<'_>, like: Option<&Value>) -> Value {
        let x = r.interesting();
        match r.below(9) {
            0 => Value::U32(x as u32),
            1 => Value::U64(x),
            2 => Value::I32(x as i32),
            3 => Value::F32(f32::from_bits(x as u32)),
            4 => Value::F32([0.0, 1e-5, 1.0, 10_000.0, f32::NAN, f32::INFINITY, -1.0][r.below(7)]),
            5 => Value::String(STRINGS[r.below(STRINGS.len())].into()),
            6 => Value::Bool(x & 1 == 1),
            7 => match like {
                Some(Value::Array(items)) => {
                    let mut items = items.clone();
                    match r.below(4) {
                        0 => items.truncate(r.below(items.len() + 1)),
                        1 if !items.is_empty() => {
                            let i = r.below(items.len());
                            let item = items[i].clone();
                            items.push(item);
                        }
                        2 if !items.is_empty() => {
                            let i = r.below(items.len());
                            items[i] = Value::String(STRINGS[r.below(STRINGS.len())].into());
                        }
                        _ => items.reverse(),
                    }
                    Value::Array(items)
                }
                _ => Value::Array(vec![Value::U32(x as u32); r.below(4)]),
            },
            _ => Value::U32(r.below(300) as u32),
        }
    }

    fn edit(&mut self, r: &mut Recipe<'_>) {
        for _ in 0..1 + r.below(6) {
            let n_meta = self.meta.len();
            let n_tensors = self.tensors.len();
            match r.below(12) {
                0 | 1 if n_meta > 0 => {
                    let i = r.below(n_meta);
                    let like = self.meta[i].1.clone();
                    self.meta[i].1 = self.value(r, Some(&like));
                }
                2 => {
                    let key = KEYS[r.below(KEYS.len())];
                    let like = self
                        .meta
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone());
                    let v = self.value(r, like.as_ref());
                    self.meta.retain(|(k, _)| k != key);
                    self.meta.push((key.into(), v));
                }
                3 if n_meta > 0 => {
                    let i = r.below(n_meta);
                    let dup = self.meta[i].clone();
                    self.meta.push(dup);
                }
                4 if n_meta > 0 => {
                    self.meta.remove(r.below(n_meta));
                }
                5 | 6 if n_tensors > 0 => {
                    let i = r.below(n_tensors);
                    let t = &mut self.tensors[i];
                    if !t.1.is_empty() {
                        let d = r.below(t.1.len());
                        t.1[d] = match r.below(3) {
                            0 => INTERESTING[r.below(INTERESTING.len())],
                            1 => t.1[d] * 2,
                            _ => t.1[d] / 2,
                        };
                    }
                }
                7 if n_tensors > 0 => {
                    let i = r.below(n_tensors);
                    self.tensors[i].2 =
                        [0, 1, 2, 3, 6, 7, 8, 9, 10, 12, 14, 16, 30, 99][r.below(14)];
                }
                8 if n_tensors > 0 => {
                    let i = r.below(n_tensors);
                    let off = &mut self.tensors[i].3;
                    *off = match r.below(3) {
                        0 => off.wrapping_add(32),
                        1 => off.wrapping_sub(32),
                        _ => INTERESTING[r.below(INTERESTING.len())],
                    };
                }
                9 if n_tensors > 0 => {
                    let i = r.below(n_tensors);
                    if r.below(2) == 0 {
                        let dup = self.tensors[i].clone();
                        self.tensors.push(dup);
                    } else {
                        self.tensors.remove(i);
                    }
                }
                10 => {
                    let cut = r.below(self.data.len() + 1);
                    self.data.truncate(cut);
                }
                _ => {
                    self.version = [1, 2, 3, 4][r.below(4)];
                    self.pad_to = [1, 8, 32, 64][r.below(4)];
                }
            }
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        fn value(out: &mut Vec<u8>, v: &Value) {
            match v {
                Value::U8(x) => out.push(*x),
                Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
                Value::Bool(x) => out.push(u8::from(*x)),
                Value::String(s) => {
                    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                Value::Array(items) => {
                    let ty = items.first().map_or(4, kind);
                    out.extend_from_slice(&ty.to_le_bytes());
                    out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    for item in items {
                        value(out, item);
                    }
                }
            }
        }
        fn kind(v: &Value) -> u32 {
            match v {
                Value::U8(_) => 0,
                Value::I8(_) => 1,
                Value::U16(_) => 2,
                Value::I16(_) => 3,
                Value::U32(_) => 4,
                Value::I32(_) => 5,
                Value::F32(_) => 6,
                Value::Bool(_) => 7,
                Value::String(_) => 8,
                Value::Array(_) => 9,
                Value::U64(_) => 10,
                Value::I64(_) => 11,
                Value::F64(_) => 12,
            }
        }
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
            value(&mut out, &Value::String(k.clone()));
            out.extend_from_slice(&kind(v).to_le_bytes());
            value(&mut out, v);
        }
        for (name, ne, ty, offset) in &self.tensors {
            value(&mut out, &Value::String(name.clone()));
            out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
            for d in ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        while !out.len().is_multiple_of(self.pad_to.max(1)) {
            out.push(0);
        }
        out.extend_from_slice(&self.data);
        out
    }
}

/// A fuzz target: any bytes in, nothing out, no panic.
pub type Target = fn(&[u8]);

/// Every target by name, for the stable loop and the seed writer.
pub const TARGETS: &[(&str, Target)] = &[
    ("gguf_header", gguf_header),
    ("gguf_model", gguf_model),
    ("gguf_structured", gguf_structured),
    ("tokenizer", tokenizer),
    ("template", template),
    ("session", session),
    ("problems", problems),
    ("results", results),
    ("answer", answer),
];

/// A small deterministic byte mutator in the spirit of libFuzzer's: flips, interesting
/// integers at any offset (lengths, counts, offsets, dimensions are the fields that matter in
/// GGUF), inserted, deleted and duplicated ranges, and splices of two inputs.
pub struct Mutator {
    rng: Rng,
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    16,
    31,
    32,
    33,
    63,
    64,
    127,
    128,
    255,
    256,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

impl Mutator {
    /// A mutator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
        }
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.rng.next_u64() % n as u64) as usize
        }
    }

    /// One to four mutations of `input` (spliced with `other` sometimes), at most `max_len` long.
    pub fn mutate(&mut self, input: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let len = v.len();
            match self.below(9) {
                0 if len > 0 => {
                    let i = self.below(len);
                    v[i] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let i = self.below(len);
                    v[i] = INTERESTING[self.below(INTERESTING.len())] as u8;
                }
                2 | 3 if len >= 4 => {
                    // A little-endian u32 or u64 field overwritten with an interesting value.
                    let width = if self.below(2) == 0 { 4 } else { 8 }.min(len);
                    let i = self.below(len - width + 1);
                    let x = INTERESTING[self.below(INTERESTING.len())].to_le_bytes();
                    v[i..i + width].copy_from_slice(&x[..width]);
                }
                4 => {
                    let i = self.below(len + 1);
                    let n = 1 + self.below(16);
                    let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                    v.splice(i..i, bytes);
                }
                5 if len > 0 => {
                    let i = self.below(len);
                    let n = 1 + self.below((len - i).min(64));
                    v.drain(i..i + n);
                }
                6 if len > 0 => {
                    let i = self.below(len);
                    let n = 1 + self.below((len - i).min(64));
                    let copy = v[i..i + n].to_vec();
                    let at = self.below(len + 1);
                    v.splice(at..at, copy);
                }
                7 if !other.is_empty() => {
                    let cut = self.below(len + 1);
                    let from = self.below(other.len());
                    v.truncate(cut);
                    v.extend_from_slice(&other[from..]);
                }
                8 if len > 0 => {
                    v.truncate(self.below(len));
                }
                _ => {}
            }
        }
        v.truncate(max_len);
        v
    }
}

/// Seeds for the text targets: small inputs that reach deep into each reader.
pub fn text_seeds(target: &str) -> Vec<Vec<u8>> {
    let s: &[&str] = match target {
        "template" => &[
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}\0hello\0hi there",
            "{% set ns = namespace(s='') %}{% for m in messages %}{% set ns.s = ns.s + m.content %}{% endfor %}{{ ns.s | trim | upper }}{{ ns.s | length }}\0a\0b\0c",
            "{{ messages | tojson(indent=2) }}{{ 'x' | indent(4) }}{{ ' a '.strip() }}{{ '%05d' | format(3) }}{{ range(3) | join(',') }}\0q",
            "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(5) }}{{ raise_exception('no') if messages | length > 3 }}\0x",
        ],
        "session" => &[
            r#"{"nodes":[{"id":0,"parent":null,"children":[1,2],"kind":"prompt","label":"prompt","text":"2+2?","tokens":[],"status":"finished","scores":{},"answer":null},{"id":1,"parent":0,"children":[],"kind":"generated","label":"a","fork_at":null,"text":"4","tokens":[{"id":5,"text":"4","logprob":-0.1,"entropy":0.5,"top":[{"id":5,"text":"4","logprob":-0.1}]}],"status":"chosen","scores":{"votes":2},"answer":"4"},{"id":2,"parent":0,"children":[],"kind":"generated","label":"b","fork_at":0,"text":"5","tokens":[],"status":"pruned","scores":{},"answer":null}],"chosen":1,"answer":"4","tally":{"4":2}}"#,
        ],
        "problems" => &[
            "{\"question\": \"What is 2 + 2?\", \"answer\": 4}\n{\"id\": \"g1\", \"question\": \"Tom has 3 apples\", \"answer\": \"so #### 1,234\"}\n\n",
            "arithmetic:4:2\n",
            "word:3:3\n{\"question\": \"x\", \"answer\": \"y\"}",
        ],
        "results" => &[
            "{\"settings\":\"s\",\"problem\":0,\"problem_id\":\"p0\",\"fingerprint\":\"f\",\"strategy\":\"self-consistency\",\"expected\":\"4\",\"runs\":[{\"n\":8,\"answer\":\"4\",\"correct\":true,\"samples\":[{\"answer\":\"4\",\"correct\":true,\"mean_logprob\":-0.2,\"tokens\":10},{\"answer\":\"5\",\"correct\":false,\"mean_logprob\":-0.9,\"tokens\":12},{\"answer\":null,\"correct\":false,\"mean_logprob\":null,\"tokens\":3}],\"cost\":{\"prompt_tokens\":20,\"generated_tokens\":25,\"wall_secs\":0.5,\"energy_joules\":1.0}}]}\n{\"settings\":\"s\",\"problem\":0,\"problem_id\":\"p0\",\"fingerprint\":\"f\",\"strategy\":\"beam\",\"expected\":\"4\",\"runs\":[{\"n\":1,\"answer\":\"4\",\"correct\":true,\"samples\":[],\"cost\":{}},{\"n\":2,\"answer\":null,\"correct\":false,\"samples\":[{\"answer\":\"4\",\"correct\":true,\"mean_logprob\":-0.1,\"tokens\":1}],\"cost\":{}}]}\n",
        ],
        "answer" => &[
            "so x = 3, thus \\boxed{\\frac{1}{2}}.",
            "İİİ The Answer Is: 1,234.5 apples",
            "We add 2 and 3 to get -5.",
            "final answer: Paris",
        ],
        _ => &[],
    };
    s.iter().map(|x| x.as_bytes().to_vec()).collect()
}

/// Seeds for the tokenizer target.
pub fn tokenizer_seeds() -> Vec<Vec<u8>> {
    vec![
        b"\x02\xc4\xa0t\nhe\n\xc4\xa0the\0\xc4\xa0 t\nh e\n\xc4\xa0t he\0the cat in the hat"
            .to_vec(),
        b"\x01<unk>\n\xe2\x96\x81\na\n\xe2\x96\x81a\naa\0\0a aa aaa".to_vec(),
        b"\x32<|im_start|>\n<|im_end|>\nab\na\nb\0a b\0<|im_start|>ab<|im_end|>".to_vec(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unedited_image_writes_back_a_loadable_model() {
        for seed in tiny_seeds() {
            let image = GgufImage::parse(seed).expect("parse");
            let dir = tempfile::tempdir().expect("tempdir");
            let p = dir.path().join("m.gguf");
            std::fs::write(&p, image.to_bytes()).expect("write");
            crate::Model::load(&p, &Device::Cpu).expect("loads");
        }
    }

    #[test]
    fn recipes_reach_the_loader_past_the_header() {
        // Single edits of the tiny model: a good share must still parse, so the structured
        // target exercises config, tokenizer and weights, not only the header checks.
        let seed = &tiny_seeds()[0];
        let mut parsed = 0;
        for i in 0..200u32 {
            let mut image = GgufImage::parse(seed).expect("parse");
            let recipe: Vec<u8> = [0u8, 0].iter().copied().chain(i.to_be_bytes()).collect();
            image.edit(&mut Recipe(&recipe));
            let b = image.to_bytes();
            let len = b.len() as u64;
            if GgufFile::from_reader(Path::new("m"), Cursor::new(b), len).is_ok() {
                parsed += 1;
            }
        }
        assert!(parsed > 50, "{parsed} of 200 edited images parse");
    }
}
