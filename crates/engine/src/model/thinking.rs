//! Thinking models: the delimiters a reasoning model writes its thoughts between (`<think>` and
//! `</think>` for Qwen3, DeepSeek-R1-Distill, SmolLM3, Phi-4-reasoning), found in the vocabulary
//! and the chat template, and what the template does with them.
//!
//! A pair counts when both delimiters are single tokens of the vocabulary (so generation can
//! stop on, suppress or insert exactly one id) and the chat template, when there is one, writes
//! one of them: a vocabulary that merely carries the tokens (Qwen3-Instruct-2507, whose template
//! never thinks) is not a thinking model.

use serde::Serialize;

use super::template::{ChatTemplate, Message};
use super::tokenizer::Tokenizer;

/// Delimiter pairs used by open models, most common first.
const DELIMITERS: &[(&str, &str)] = &[
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("<seed:think>", "</seed:think>"),
    ("◁think▷", "◁/think▷"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
];

/// How a model marks its thinking, and what its chat template does about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThinkingFormat {
    /// The opening delimiter, e.g. `<think>`.
    pub open: String,
    /// The closing delimiter, e.g. `</think>`.
    pub close: String,
    /// Token id of `open`.
    pub open_id: u32,
    /// Token id of `close`.
    pub close_id: u32,
    /// The template reads `enable_thinking` (Qwen3, SmolLM3): thinking can be switched off.
    pub switchable: bool,
    /// With thinking on, the generation prompt already ends inside the thinking (R1-Distill's
    /// `<｜Assistant｜><think>\n`): the model's first token is a thought, and the opening
    /// delimiter never appears in its output.
    pub prompt_opens: bool,
}

impl ThinkingFormat {
    /// Find the delimiters of the model with this vocabulary and chat template
    /// (`template_source` is the template's text).
    pub fn detect(
        tokenizer: &Tokenizer,
        template: Option<&ChatTemplate>,
        template_source: Option<&str>,
    ) -> Option<Self> {
        let (open, close, open_id, close_id) = DELIMITERS.iter().find_map(|&(open, close)| {
            let open_id = single_token(tokenizer, open)?;
            let close_id = single_token(tokenizer, close)?;
            let used = template_source.is_none_or(|t| t.contains(open) || t.contains(close));
            used.then_some((open, close, open_id, close_id))
        })?;
        let switchable = template_source.is_some_and(|t| t.contains("enable_thinking"));
        let prompt_opens = template.is_some_and(|t| {
            t.render_with(&[Message::new("user", "Hi")], Some(true))
                .is_ok_and(|p| p.trim_end().ends_with(open))
        });
        Some(Self {
            open: open.to_owned(),
            close: close.to_owned(),
            open_id,
            close_id,
            switchable,
            prompt_opens,
        })
    }
}

/// The id of `piece` when the tokenizer turns it into exactly that one token.
fn single_token(tokenizer: &Tokenizer, piece: &str) -> Option<u32> {
    let id = tokenizer.piece_id(piece)?;
    let ids = tokenizer.encode(piece).ok()?;
    (ids == [id]).then_some(id)
}
