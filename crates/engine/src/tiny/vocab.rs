//! Vocabularies for the tiny models, trained on a fixed corpus.
//!
//! The merges (byte-level BPE) and pieces (SentencePiece) are learned from whole texts, not from
//! pre-tokenized words, so many of them cross the places where a pre-tokenizer cuts (a letter
//! and the space after it, digit runs, a newline and the indent after it). A tokenizer that cuts
//! a text differently from llama.cpp therefore merges it differently and gives other ids, which is
//! what the tokenizer oracle tests look for. Training is deterministic: ties go to the
//! lexicographically smallest pair.

use std::collections::{BTreeMap, HashMap};

use super::byte_chars;

/// GGUF token types (llama.cpp `llama_token_type`).
pub(crate) const NORMAL: i32 = 1;
pub(crate) const CONTROL: i32 = 3;
pub(crate) const USER_DEFINED: i32 = 4;
pub(crate) const BYTE: i32 = 6;

/// The texts the vocabularies are trained on: the tokenizer stress texts of the default model's
/// llama.cpp reference, a few more that exercise contractions, casing and digits, and some prose.
pub const CORPUS: &[&str] = &[
    "Hello world!",
    "  leading spaces and trailing   ",
    "tabs\tand\nnew lines\r\nCRLF too\n\n\n",
    "Numbers: 12345, 3.14159, -42, 1e10, 2026-11-22",
    "What is 17 * 23? Think step by step.",
    "café naïve résumé — “quotes” and ‘apostrophes’",
    "東京は日本の首都です。",
    "emoji 🙂🚀 and symbols ∑∫√",
    "def f(x):\n    return x**2  # square\n",
    "Wait, let me reconsider. Alternatively, the answer is 391.",
    "The answer is \\boxed{42}.",
    "I'M SURE it's fine; they'll say we'd DONE it, HelloWorld and ÉCOLE école.",
    "Let me think. 17 * 23 = 17 * 20 + 17 * 3 = 340 + 51 = 391. So the answer is 391.",
    "First, the total is 1234567 and then 89. Second, we check: 1000 + 234 = 1234.",
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.",
    "    indented line\n\tand a tab\n\nparagraph two, with    extra   spaces.",
    // Repeated so that merges form across the places where the families' regexes differ:
    // case changes inside a word, contractions, slashes, digit runs, newline runs.
    "HelloWorld HelloWorld, it's it's IT'S IT'S, don't don't, we'll we'll, a/b/ a/b/\n\n\n",
    "HelloWorld and it's and don't and we'll: 12345 12345 123 123 1,000 1,000\n\n\n  \n  \n",
];

/// Extra whole words put in the byte-level vocabularies without the merges that would build
/// them: only a tokenizer that looks whole words up first (`ignore_merges`, Llama 3) finds them.
const WHOLE_WORDS: &[&str] = &["Ġanswer", "Ġreconsider", "Numbers", "Ġstep"];

/// A trained vocabulary, ready to write into GGUF metadata.
pub(crate) struct Vocabulary {
    /// Pieces in id order.
    pub tokens: Vec<String>,
    /// GGUF token type of each piece.
    pub types: Vec<i32>,
    /// Byte-level BPE merges, `"a b"`.
    pub merges: Option<Vec<String>>,
    /// SentencePiece scores.
    pub scores: Option<Vec<f32>>,
}

impl Vocabulary {
    /// Id of a piece.
    pub(crate) fn id(&self, piece: &str) -> Option<usize> {
        self.tokens.iter().position(|t| t == piece)
    }
}

/// Byte-level BPE: every byte, `n_merges` merges learned on [`CORPUS`], the whole words, then
/// `specials` (piece, GGUF type).
pub(crate) fn byte_level_bpe(n_merges: usize, specials: &[(&str, i32)]) -> Vocabulary {
    let table = byte_chars();
    let corpus: Vec<Vec<String>> = CORPUS
        .iter()
        .map(|t| t.bytes().map(|b| table[b as usize].to_string()).collect())
        .collect();
    let merges = train(corpus, n_merges);
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let mut types = vec![NORMAL; tokens.len()];
    for (a, b) in &merges {
        let piece = format!("{a}{b}");
        if !tokens.contains(&piece) {
            tokens.push(piece);
            types.push(NORMAL);
        }
    }
    for w in WHOLE_WORDS {
        if !tokens.iter().any(|t| t == w) {
            tokens.push((*w).to_owned());
            types.push(NORMAL);
        }
    }
    push_specials(&mut tokens, &mut types, specials);
    Vocabulary {
        tokens,
        types,
        merges: Some(merges.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        scores: None,
    }
}

/// SentencePiece BPE: `specials` first (as Gemma and Llama 2 put them), the 256 byte-fallback
/// pieces, every character seen at least twice, then `n_merges` learned pieces scored so that
/// earlier merges win. `space_prefix`: train as if every text started with a space (llama.cpp
/// adds one when `tokenizer.ggml.add_space_prefix` is set).
pub(crate) fn sentencepiece(
    n_merges: usize,
    specials: &[(&str, i32)],
    space_prefix: bool,
) -> Vocabulary {
    let corpus: Vec<Vec<String>> = CORPUS
        .iter()
        .map(|t| {
            let t = if space_prefix {
                format!(" {t}")
            } else {
                (*t).to_owned()
            };
            t.replace(' ', "▁").chars().map(String::from).collect()
        })
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in corpus.iter().flatten() {
        *counts.entry(c.as_str()).or_default() += 1;
    }
    let chars: Vec<String> = counts
        .iter()
        .filter(|(_, &n)| n >= 2)
        .map(|(c, _)| (*c).to_owned())
        .collect();
    let merges = train(corpus.clone(), n_merges);

    let mut tokens = Vec::new();
    let mut types = Vec::new();
    let mut scores = Vec::new();
    push_specials(&mut tokens, &mut types, specials);
    scores.resize(tokens.len(), 0.0);
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(BYTE);
        scores.push(0.0);
    }
    for (i, c) in chars.iter().enumerate() {
        tokens.push(c.clone());
        types.push(NORMAL);
        scores.push(-10_000.0 - i as f32);
    }
    for (rank, (a, b)) in merges.iter().enumerate() {
        let piece = format!("{a}{b}");
        if !tokens.contains(&piece) {
            tokens.push(piece);
            types.push(NORMAL);
            scores.push(-(rank as f32));
        }
    }
    Vocabulary {
        tokens,
        types,
        merges: None,
        scores: Some(scores),
    }
}

fn push_specials(tokens: &mut Vec<String>, types: &mut Vec<i32>, specials: &[(&str, i32)]) {
    for (piece, ty) in specials {
        tokens.push((*piece).to_owned());
        types.push(*ty);
    }
}

/// Learn `n` merges on `seqs` (sequences of symbols), most frequent pair first.
fn train(mut seqs: Vec<Vec<String>>, n: usize) -> Vec<(String, String)> {
    let mut merges = Vec::with_capacity(n);
    while merges.len() < n {
        let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
        for s in &seqs {
            for w in s.windows(2) {
                *counts.entry((w[0].as_str(), w[1].as_str())).or_default() += 1;
            }
        }
        let Some(((a, b), count)) = counts
            .into_iter()
            .max_by(|(p, n), (q, m)| n.cmp(m).then_with(|| q.cmp(p)))
        else {
            break;
        };
        if count < 2 {
            break;
        }
        let (a, b) = (a.to_owned(), b.to_owned());
        let merged = format!("{a}{b}");
        for s in &mut seqs {
            let mut out = Vec::with_capacity(s.len());
            let mut i = 0;
            while i < s.len() {
                if i + 1 < s.len() && s[i] == a && s[i + 1] == b {
                    out.push(merged.clone());
                    i += 2;
                } else {
                    out.push(std::mem::take(&mut s[i]));
                    i += 1;
                }
            }
            *s = out;
        }
        merges.push((a, b));
    }
    merges
}
