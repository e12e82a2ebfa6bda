//! Tokenizers built from GGUF metadata with the `tokenizers` crate.
//!
//! Two vocabulary kinds are supported: byte-level BPE (`tokenizer.ggml.model = "gpt2"`, with the
//! pre-tokenizer chosen by `tokenizer.ggml.pre`) and SentencePiece BPE (`"llama"`, merges derived
//! from the piece scores, byte fallback). Control and user-defined tokens are added as special
//! tokens, so chat markup such as `<|im_start|>` is parsed as one token, as llama.cpp does.
//!
//! The vocabulary is untrusted: its size, piece lengths, merge list and special tokens are
//! bounded (so building takes bounded time and memory), every merge must join two pieces of the
//! vocabulary into a third (the `tokenizers` crate indexes out of bounds otherwise), and special
//! ids must lie inside the vocabulary. Duplicate pieces are accepted, as real files have them:
//! the first id is the one text encodes to, every id still decodes to its own piece.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer as HfTokenizer,
};

use super::gguf::GgufFile;
use crate::error::{EngineError, Result};

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Most tokens in a vocabulary (the largest real ones have about 262,000).
pub const MAX_VOCAB: usize = 1 << 22;
/// Longest piece, in bytes.
pub const MAX_PIECE_BYTES: usize = 1 << 12;
/// Most bytes of all pieces together.
pub const MAX_VOCAB_BYTES: usize = 64 << 20;
/// Most merges of a byte-level BPE vocabulary.
pub const MAX_MERGES: usize = 1 << 22;
/// Most control and user-defined tokens (they become one matching automaton).
pub const MAX_SPECIAL: usize = 1 << 16;
/// Most bytes of all control and user-defined tokens together.
pub const MAX_SPECIAL_BYTES: usize = 4 << 20;
/// Most work (bytes hashed) deriving SentencePiece merges may take: each piece of c chars and b
/// bytes costs about c * b. Gemma 3's 262,144 pieces take under 2^25.
const MAX_SPLIT_WORK: u64 = 1 << 28;

/// llama.cpp's pre-tokenizer regexes (`llm_tokenizer_bpe` in llama-vocab.cpp, in the forms it
/// runs rather than the tokenizer.json originals: `'[sS]` for `(?i:'s)`, and for GPT-4o a letter
/// class written with look-aheads, which treats letters outside ASCII as both cases).
mod pre {
    pub(super) const GPT2: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    pub(super) const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    pub(super) const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    pub(super) const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    pub(super) const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    pub(super) const DIGIT: &str = r"\p{N}";
    pub(super) const DEFAULT: [&str; 4] =
        [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];

    /// The regexes for a `tokenizer.ggml.pre` name (applied one after the other, each cutting
    /// the pieces of the previous), and whether whole words found in the vocabulary skip the
    /// merges (llama.cpp's `ignore_merges`; those families also add BOS by default). `None`: a
    /// name thinkscope does not implement.
    pub(super) fn by_name(name: &str) -> Option<(Vec<&'static str>, bool)> {
        Some(match name {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => (vec![LLAMA3], true),
            "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => (vec![LLAMA3], false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "stablelm2" | "megrez" | "hunyuan"
            | "solar-open" => (vec![QWEN2], false),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => (vec![DIGIT, GPT2], false),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
            | "trillion" | "granite-docling" | "exaone4" => (vec![GPT2], false),
            "gpt-4o" | "llama4" | "minimax-m2" => (vec![GPT4O], false),
            "tekken" => (vec![TEKKEN], true),
            // Also what llama.cpp uses, with a warning, when a file names none.
            "default" => (DEFAULT.to_vec(), false),
            _ => return None,
        })
    }

    /// Families listed in errors.
    pub(super) const SUPPORTED: &str =
        "llama-bpe (llama3), smaug-bpe, qwen2, deepseek-r1-qwen, smollm, \
        starcoder, gpt-2, gpt-4o, tekken, default and their aliases";
}

/// A tokenizer plus the special ids the engine needs.
pub struct Tokenizer {
    inner: HfTokenizer,
    /// Token strings as stored in the vocabulary, indexed by id.
    pieces: Vec<String>,
    /// Token ids that end generation (eos, end-of-turn, ...).
    pub stop_ids: Vec<u32>,
    /// Beginning-of-sequence id, if the model has one.
    pub bos_id: Option<u32>,
    /// End-of-sequence id.
    pub eos_id: Option<u32>,
    /// Whether llama.cpp would add BOS in front of a prompt.
    pub add_bos: bool,
    special: HashSet<u32>,
    /// Ids whose piece repeats an earlier one, mapped to that first id: the BPE model knows
    /// each piece once, so these decode through it.
    duplicate_of: HashMap<u32, u32>,
}

impl Tokenizer {
    /// Build the tokenizer described by the file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf<R>(gguf: &GgufFile<R>) -> Result<Self> {
        let kind = gguf.string("tokenizer.ggml.model")?;
        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        check_vocabulary(&tokens)?;
        let n = tokens.len();
        let duplicate_of = duplicates(&tokens);
        let types = gguf
            .ints_opt("tokenizer.ggml.token_type")?
            .unwrap_or_else(|| vec![1; n]);
        if types.len() != n {
            return Err(EngineError::InvalidMetadata(format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                types.len()
            )));
        }
        let id_key = |key: &str| -> Result<Option<u32>> {
            match gguf.usize_opt(key)? {
                Some(id) if id < n => Ok(Some(id as u32)),
                Some(id) => Err(EngineError::InvalidMetadata(format!(
                    "{key} = {id} is outside the vocabulary of {n} tokens"
                ))),
                None => Ok(None),
            }
        };
        let bos_id = id_key("tokenizer.ggml.bos_token_id")?;
        let eos_id = id_key("tokenizer.ggml.eos_token_id")?;
        let eot_id = id_key("tokenizer.ggml.eot_token_id")?;
        let add_space_prefix = gguf
            .bool_opt("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(kind == "llama");

        let pre = gguf
            .get_opt("tokenizer.ggml.pre")
            .and_then(|_| gguf.string("tokenizer.ggml.pre").ok())
            .unwrap_or_else(|| "default".into());
        let mut inner = match kind.as_str() {
            "gpt2" => {
                let merges = gguf.strings("tokenizer.ggml.merges")?;
                if merges.len() > MAX_MERGES {
                    return Err(EngineError::Tokenizer(format!(
                        "{} merges, more than {MAX_MERGES}",
                        merges.len()
                    )));
                }
                byte_level_bpe(&tokens, &merges, &pre)?
            }
            "llama" => {
                let scores = gguf.f32s_opt("tokenizer.ggml.scores")?.ok_or_else(|| {
                    EngineError::InvalidMetadata("missing tokenizer.ggml.scores".into())
                })?;
                if scores.len() != n {
                    return Err(EngineError::InvalidMetadata(format!(
                        "tokenizer.ggml.scores has {} entries for {n} tokens",
                        scores.len()
                    )));
                }
                sentencepiece_bpe(&tokens, &scores, &types, add_space_prefix)?
            }
            other => {
                return Err(EngineError::Tokenizer(format!(
                    "unsupported tokenizer model '{other}' (supported: gpt2, llama)"
                )))
            }
        };

        let mut special = HashSet::new();
        let mut added = Vec::new();
        let mut special_bytes = 0;
        for (id, (piece, &ty)) in tokens.iter().zip(&types).enumerate() {
            if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
                special.insert(id as u32);
                special_bytes += piece.len();
                if !piece.is_empty() {
                    added.push(AddedToken::from(piece.clone(), true));
                }
            }
        }
        if special.len() > MAX_SPECIAL || special_bytes > MAX_SPECIAL_BYTES {
            return Err(EngineError::Tokenizer(format!(
                "{} control and user-defined tokens of {special_bytes} bytes, more than \
                 {MAX_SPECIAL} tokens or {MAX_SPECIAL_BYTES} bytes",
                special.len()
            )));
        }
        inner
            .add_special_tokens(added)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        // The added vocabulary must map each special piece to its own id.
        for &id in &special {
            let piece = &tokens[id as usize];
            if let Some(found) = inner.token_to_id(piece) {
                if found != id && !piece.is_empty() {
                    tracing::warn!("special token {piece:?} maps to {found}, not {id}");
                }
            }
        }

        let mut stop_ids: Vec<u32> = eos_id.into_iter().chain(eot_id).collect();
        for name in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>"] {
            if let Some(pos) = tokens.iter().position(|t| t == name) {
                stop_ids.push(pos as u32);
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        // llama.cpp's default when the file does not say: SentencePiece adds BOS, and so do the
        // byte-level families that look whole words up (Llama 3, Tekken).
        let bos_by_default = kind == "llama"
            || (kind == "gpt2"
                && pre::by_name(&pre).is_some_and(|(_, ignore_merges)| ignore_merges));
        let add_bos = gguf
            .bool_opt("tokenizer.ggml.add_bos_token")?
            .unwrap_or(bos_by_default)
            && bos_id.is_some();

        Ok(Self {
            inner,
            pieces: tokens,
            stop_ids,
            bos_id,
            eos_id,
            add_bos,
            special,
            duplicate_of,
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Token ids for `text`; special-token markup is parsed, no BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Like [`Self::encode`], with BOS in front when the model expects one.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.bos_id);
        }
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// Text for a run of tokens (special tokens included verbatim).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let remapped: Vec<u32>;
        let ids = if self.duplicate_of.is_empty() {
            ids
        } else {
            remapped = ids
                .iter()
                .map(|id| self.duplicate_of.get(id).copied().unwrap_or(*id))
                .collect();
            &remapped
        };
        self.inner
            .decode(ids, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// Text one token contributes, suitable for showing a token on its own.
    pub fn token_text(&self, id: u32) -> String {
        if self.special.contains(&id) {
            return self.pieces.get(id as usize).cloned().unwrap_or_default();
        }
        self.decode(&[id]).unwrap_or_default()
    }

    /// Whether an id is a control or user-defined token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// The raw vocabulary piece of a token.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// Id of a vocabulary piece.
    pub fn piece_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }
}

/// Streams tokens to text without splitting multi-byte characters.
///
/// Only a short window of recent tokens is decoded per step (as candle's `TokenOutputStream`
/// does), so streaming a long generation stays linear in its length.
#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the window that is decoded for context.
    prev: usize,
    /// End of the text already emitted.
    current: usize,
}

impl TextStream {
    /// Push one token; returns the newly completed text, if any.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prev..self.current])?;
        let text = tok.decode(&self.ids[self.prev..])?;
        if text.len() <= before.len() || text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = text.get(before.len()..).unwrap_or_default().to_owned();
        self.prev = self.current;
        self.current = self.ids.len();
        Ok(new)
    }
}

/// Bounds on the vocabulary before anything is built from it.
fn check_vocabulary(tokens: &[String]) -> Result<()> {
    let bad = |m: String| Err(EngineError::Tokenizer(m));
    if tokens.is_empty() {
        return bad("the vocabulary is empty".into());
    }
    if tokens.len() > MAX_VOCAB {
        return bad(format!(
            "the vocabulary has {} tokens, more than {MAX_VOCAB}",
            tokens.len()
        ));
    }
    let mut total = 0;
    for (id, t) in tokens.iter().enumerate() {
        if t.len() > MAX_PIECE_BYTES {
            return bad(format!(
                "token {id} is {} bytes long, more than {MAX_PIECE_BYTES}",
                t.len()
            ));
        }
        total += t.len();
    }
    if total > MAX_VOCAB_BYTES {
        return bad(format!(
            "the vocabulary's pieces take {total} bytes, more than {MAX_VOCAB_BYTES}"
        ));
    }
    Ok(())
}

/// Later ids of repeated pieces, each mapped to the piece's first id.
fn duplicates(tokens: &[String]) -> HashMap<u32, u32> {
    let mut first: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
    let mut dups = HashMap::new();
    for (id, t) in tokens.iter().enumerate() {
        let id = id as u32;
        let f = *first.entry(t.as_str()).or_insert(id);
        if f != id {
            dups.insert(id, f);
        }
    }
    if !dups.is_empty() {
        tracing::warn!(
            "{} vocabulary pieces repeat an earlier one; text encodes to the first",
            dups.len()
        );
    }
    dups
}

fn vocab_map(tokens: &[String]) -> tokenizers::models::bpe::Vocab {
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        // Duplicate pieces keep their first id, as llama.cpp does.
        vocab.entry(t.clone()).or_insert(id as u32);
    }
    vocab.into_iter().collect()
}

fn byte_level_bpe(tokens: &[String], merges: &[String], pre: &str) -> Result<HfTokenizer> {
    let vocab = vocab_map(tokens);
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        let Some((a, b)) = m
            .split_once(' ')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        else {
            return Err(EngineError::InvalidMetadata(format!(
                "merge {i} ({m:?}) is not two tokens separated by a space"
            )));
        };
        // Both halves and their join must be pieces: the BPE builder copies the join into a
        // buffer as long as the longest piece, out of bounds for a join it does not know.
        let joined = format!("{a}{b}");
        if let Some(missing) = [a, b, joined.as_str()]
            .into_iter()
            .find(|p| !vocab.contains_key(*p))
        {
            return Err(EngineError::InvalidMetadata(format!(
                "merge {i} ({m:?}) uses {missing:?}, which is not in the vocabulary"
            )));
        }
        pairs.push((a.to_owned(), b.to_owned()));
    }
    let Some((regexes, ignore_merges)) = pre::by_name(pre) else {
        return Err(EngineError::Tokenizer(format!(
            "unsupported pre-tokenizer '{pre}' (tokenizer.ggml.pre; supported: {})",
            pre::SUPPORTED
        )));
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| EngineError::Tokenizer(format!("building BPE: {e}")))?;
    let mut tok = HfTokenizer::new(bpe);

    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
    for pattern in regexes {
        steps.push(
            Split::new(
                SplitPattern::Regex(pattern.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?
            .into(),
        );
    }
    // The regexes did the splitting; the byte-level step only maps bytes to characters.
    steps.push(ByteLevel::new(false, true, false).into());
    let pre_tokenizer: PreTokenizerWrapper = PreSequence::new(steps).into();
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tok)
}

/// SentencePiece BPE: merges are all splits of a piece into two pieces of the vocabulary, ranked
/// by the merged piece's score (higher merges first), the way SentencePiece applies them.
fn sentencepiece_bpe(
    tokens: &[String],
    scores: &[f32],
    types: &[i64],
    add_space_prefix: bool,
) -> Result<HfTokenizer> {
    let vocab = vocab_map(tokens);
    let mut ranked: Vec<(f32, u32, u32, usize)> = Vec::new();
    let mut work = 0u64;
    for (id, piece) in tokens.iter().enumerate() {
        // Only normal pieces are produced by merging.
        if types.get(id) != Some(&1) || piece.chars().nth(1).is_none() {
            continue;
        }
        work += (piece.chars().count() * piece.len()) as u64;
        if work > MAX_SPLIT_WORK {
            return Err(EngineError::Tokenizer(format!(
                "the vocabulary's pieces are too long to derive merges from (over \
                 {MAX_SPLIT_WORK} bytes of splits by token {id})"
            )));
        }
        for (split, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(split);
            if let (Some(&ia), Some(&ib)) = (vocab.get(a), vocab.get(b)) {
                ranked.push((scores.get(id).copied().unwrap_or(0.0), ia, ib, id));
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.3.cmp(&y.3)).then(x.1.cmp(&y.1)));
    let merges = ranked
        .into_iter()
        .map(|(_, a, b, _)| (tokens[a as usize].clone(), tokens[b as usize].clone()))
        .collect();
    let unk = tokens
        .iter()
        .find(|t| t.as_str() == "<unk>")
        .cloned()
        .unwrap_or_else(|| "<unk>".into());
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true)
        .unk_token(unk)
        .build()
        .map_err(|e| EngineError::Tokenizer(format!("building BPE: {e}")))?;
    let mut tok = HfTokenizer::new(bpe);
    let replace = Replace::new(" ", "▁").map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        tokenizers::normalizers::Sequence::new(vec![
            Prepend::new("▁".into()).into(),
            replace.into(),
        ])
        .into()
    } else {
        replace.into()
    };
    tok.with_normalizer(Some(normalizer))
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    let replace_back = tokenizers::decoders::DecoderWrapper::Replace(
        Replace::new("▁", " ").map_err(|e| EngineError::Tokenizer(e.to_string()))?,
    );
    let mut decoders: Vec<DecoderWrapper> =
        vec![replace_back, ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tok)
}
