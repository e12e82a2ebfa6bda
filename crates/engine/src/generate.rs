//! Prompt building and single-stream generation, shared by the CLI, the GUI and the strategies.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::sampling::{Sampler, SamplingParams, TokenInfo};
use crate::model::template::Message;
use crate::model::tokenizer::TextStream;
use crate::model::Model;
use crate::sequences::{Counters, Engine};

/// How a prompt becomes tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// The model's chat template when it has one, plain text otherwise.
    #[default]
    Auto,
    /// Plain completion: the text as is.
    Raw,
}

/// Token ids for a user prompt. Fails on an empty prompt or one that fills the context window.
pub fn build_prompt(model: &Model, user: &str, format: PromptFormat) -> Result<Vec<u32>> {
    build_chat(model, &[Message::new("user", user)], format)
}

/// Token ids for a conversation (the chat template opens the assistant's turn).
pub fn build_chat(model: &Model, messages: &[Message], format: PromptFormat) -> Result<Vec<u32>> {
    build_chat_with(model, messages, format, None)
}

/// [`build_chat`] with thinking switched on or off for templates that have the switch
/// (`enable_thinking`, see [`crate::model::thinking::ThinkingFormat::switchable`]); `None` keeps
/// the template's default.
pub fn build_chat_with(
    model: &Model,
    messages: &[Message],
    format: PromptFormat,
    enable_thinking: Option<bool>,
) -> Result<Vec<u32>> {
    if messages.iter().all(|m| m.content.trim().is_empty()) {
        return Err(EngineError::InvalidParameter("the prompt is empty".into()));
    }
    let tok = &model.tokenizer;
    let ids = match (&model.template, format) {
        (Some(template), PromptFormat::Auto) => {
            // The template is the model file's code: when it fails (it does not compile, raises,
            // or hits a limit) say so and how to run without it, rather than guess a format.
            let text = template
                .render_with(messages, enable_thinking)
                .map_err(|e| match e {
                    EngineError::Template(m) => EngineError::Template(format!(
                        "{m}; the prompt can still run as plain text (the raw prompt format)"
                    )),
                    e => e,
                })?;
            let bos_in_text = tok
                .bos_id
                .and_then(|b| tok.piece(b))
                .is_some_and(|p| !p.is_empty() && text.starts_with(p));
            if bos_in_text {
                tok.encode(&text)?
            } else {
                tok.encode_prompt(&text)?
            }
        }
        // Plain completion never touches the template, so it works whatever the template does.
        (None, PromptFormat::Auto) | (_, PromptFormat::Raw) => {
            let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            tok.encode_prompt(&text.join("\n\n"))?
        }
    };
    let context = model.config.context_length;
    if ids.len() >= context {
        return Err(EngineError::ContextOverflow {
            tokens: ids.len(),
            context,
        });
    }
    Ok(ids)
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-turn token.
    EndOfText,
    /// `max_tokens` reached.
    MaxTokens,
    /// The context window is full.
    ContextFull,
    /// The caller asked to stop.
    Cancelled,
}

/// The result of one generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Generation {
    /// The completion text (without the end token).
    pub text: String,
    /// Every generated token, the end token included.
    pub tokens: Vec<TokenInfo>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Work counters of this generation.
    pub counters: Counters,
    /// Wall time of the prompt's forward pass.
    pub prefill_secs: f64,
    /// Wall time of the decode steps.
    pub decode_secs: f64,
}

/// Generate up to `max_tokens` after `prompt`. `on_text` receives each completed piece of text
/// and returns `false` to stop.
pub fn generate(
    engine: &mut Engine,
    prompt: &[u32],
    params: &SamplingParams,
    max_tokens: usize,
    mut on_text: impl FnMut(&TokenInfo, &str) -> bool,
) -> Result<Generation> {
    let mut sampler = Sampler::new(params.clone())?;
    let start_counters = engine.counters();
    let t0 = Instant::now();
    let (seq, mut logits) = engine.prefill_shared(prompt)?;
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let model = engine.model().clone();
    let context = model.config.context_length;
    let mut stream = TextStream::default();
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut stop_reason = StopReason::MaxTokens;
    let result = (|| -> Result<()> {
        for _ in 0..max_tokens {
            let info = engine.sample(&logits, &mut sampler);
            let id = info.id;
            tokens.push(info);
            if model.tokenizer.stop_ids.contains(&id) {
                stop_reason = StopReason::EndOfText;
                return Ok(());
            }
            let piece = stream.push(&model.tokenizer, id)?;
            text.push_str(&piece);
            if let Some(last) = tokens.last() {
                if !on_text(last, &piece) {
                    stop_reason = StopReason::Cancelled;
                    return Ok(());
                }
            }
            if engine.len(seq)? + 1 > context {
                stop_reason = StopReason::ContextFull;
                return Ok(());
            }
            if tokens.len() == max_tokens {
                return Ok(());
            }
            logits = engine.decode(&[(seq, id)])?.pop().unwrap_or_default();
        }
        Ok(())
    })();
    engine.release(seq);
    result?;
    Ok(Generation {
        text,
        tokens,
        prompt_tokens: prompt.len(),
        stop_reason,
        counters: engine.counters().since(&start_counters),
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
    })
}
