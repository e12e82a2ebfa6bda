//! The JSON on the wire: `/v1/models`, `/v1/completions` requests and stream chunks, usage, and
//! the two log-prob shapes servers send (OpenAI's legacy completions object, and llama.cpp
//! server's `content` list with token ids).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /v1/models`.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelList {
    #[serde(default)]
    pub data: Vec<ModelCard>,
}

/// One served model.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ModelCard {
    pub id: String,
    #[serde(default)]
    pub owned_by: Option<String>,
    /// vLLM's context length.
    #[serde(default)]
    pub max_model_len: Option<u64>,
    /// llama.cpp server's metadata (`n_ctx_train`, ...).
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
}

/// A prompt as text or token ids.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text the server tokenizes.
    Text(String),
    /// Token ids (vLLM, SGLang, llama.cpp server).
    Ids(Vec<u32>),
}

/// `stream_options`.
#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

/// `POST /v1/completions` body.
#[derive(Debug, Serialize)]
pub(crate) struct CompletionRequest<'a> {
    pub model: &'a str,
    pub prompt: &'a Prompt,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub stop: &'a [String],
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Server-specific knobs (`repeat_penalty`, `return_tokens_as_token_ids`, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One SSE chunk (or a whole non-streamed answer).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// llama.cpp server's timings (`cache_n` = prompt tokens served from cache).
    #[serde(default)]
    pub timings: Option<Timings>,
    /// Some servers put an error object in the stream instead of failing the request.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// A choice inside a chunk.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChunkChoice {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The two shapes of `logprobs`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Logprobs {
    /// llama.cpp server: `{"content": [{id, token, logprob, top_logprobs: [{id, token, logprob}]}]}`.
    Content { content: Vec<ContentLogprob> },
    /// OpenAI legacy completions: parallel lists, top alternatives keyed by their text.
    Legacy {
        #[serde(default)]
        tokens: Vec<String>,
        #[serde(default)]
        token_logprobs: Vec<Option<f32>>,
        #[serde(default)]
        top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    },
}

/// A token in llama.cpp server's shape.
#[derive(Debug, Deserialize)]
pub(crate) struct ContentLogprob {
    #[serde(default)]
    pub id: Option<u32>,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub logprob: Option<f32>,
    #[serde(default)]
    pub top_logprobs: Vec<ContentAlternative>,
}

/// An alternative in llama.cpp server's shape.
#[derive(Debug, Deserialize)]
pub(crate) struct ContentAlternative {
    #[serde(default)]
    pub id: Option<u32>,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub logprob: Option<f32>,
}

/// `usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Prompt tokens the server counted.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens it generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Its breakdown of the prompt, where it gives one.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the server's prefix cache.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// llama.cpp server's `timings`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct Timings {
    #[serde(default)]
    pub cache_n: Option<u64>,
}

/// `POST /tokenize` (vLLM, SGLang, llama.cpp server) and `/extras/tokenize` answers.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenizeAnswer {
    pub tokens: Vec<TokenEntry>,
}

/// llama.cpp server returns `{id, piece}` objects when asked for pieces; plain ids otherwise.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum TokenEntry {
    Id(u32),
    WithPiece { id: u32 },
}

impl TokenEntry {
    pub(crate) fn id(&self) -> u32 {
        match self {
            TokenEntry::Id(id) | TokenEntry::WithPiece { id } => *id,
        }
    }
}

/// `/detokenize` answers: vLLM says `prompt`, llama.cpp says `content`, llama-cpp-python `text`.
#[derive(Debug, Deserialize)]
pub(crate) struct DetokenizeAnswer {
    #[serde(alias = "prompt", alias = "content")]
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_logprob_shapes_parse() {
        let legacy: Chunk = serde_json::from_str(
            r#"{"choices":[{"text":" 5","index":0,"logprobs":{"tokens":[" 5"],"text_offset":[3],
            "token_logprobs":[-0.1],"top_logprobs":[{" 5":-0.1," 6":-2.5}]},"finish_reason":null}]}"#,
        )
        .expect("legacy");
        assert!(matches!(
            legacy.choices[0].logprobs,
            Some(Logprobs::Legacy { ref top_logprobs, .. }) if top_logprobs[0].as_ref().map(|t| t.len()) == Some(2)
        ));
        let content: Chunk = serde_json::from_str(
            r#"{"choices":[{"text":" 5","index":0,"logprobs":{"content":[{"id":642,"token":" 5",
            "bytes":[32,53],"logprob":-0.1,"top_logprobs":[{"id":642,"token":" 5","bytes":[32,53],"logprob":-0.1}]}]}}]}"#,
        )
        .expect("content");
        assert!(matches!(
            content.choices[0].logprobs,
            Some(Logprobs::Content { ref content }) if content[0].id == Some(642)
        ));
    }

    #[test]
    fn usage_with_and_without_cached_tokens() {
        let u: Usage = serde_json::from_str(
            r#"{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":8}}"#,
        )
        .expect("usage");
        assert_eq!(
            u.prompt_tokens_details.and_then(|d| d.cached_tokens),
            Some(8)
        );
        let u: Usage = serde_json::from_str(r#"{"prompt_tokens":9}"#).expect("usage");
        assert_eq!(u.prompt_tokens_details, None);
    }

    #[test]
    fn token_id_prompts_serialize_as_a_list() {
        let p = Prompt::Ids(vec![1, 2]);
        assert_eq!(serde_json::to_string(&p).ok().as_deref(), Some("[1,2]"));
    }
}
