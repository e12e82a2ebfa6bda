//! Chat templates and markup tokens of the tiny models, one per model family.
//!
//! The templates are short versions of the families' own (same markup, same generation prompt,
//! the same `enable_thinking` switch where the family has one), not copies of them.

use super::vocab::{Vocabulary, CONTROL, USER_DEFINED};

/// A family's chat markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyChat {
    /// ChatML (`<|im_start|>role ... <|im_end|>`): SmolLM2, Qwen2.5.
    ChatMl,
    /// Llama 3 headers and `<|eot_id|>`.
    Llama3,
    /// Qwen3: ChatML plus `<think>`/`</think>`; `enable_thinking=false` writes an empty thought.
    Qwen3,
    /// DeepSeek-R1-Distill: `<｜User｜>`/`<｜Assistant｜>`, the generation prompt opens `<think>`.
    R1Distill,
    /// Gemma: `<start_of_turn>`/`<end_of_turn>`, the assistant is `model`.
    Gemma,
    /// Phi-4-mini: `<|user|>`, `<|assistant|>`, `<|end|>`.
    Phi4,
    /// SmolLM3: ChatML, `/think` or `/no_think` in the system turn, `<think>` tokens.
    Smollm3,
}

/// Special ids and BOS policy of a vocabulary.
pub(crate) struct SpecialIds {
    pub bos: Option<usize>,
    pub eos: Option<usize>,
    pub eot: Option<usize>,
    pub add_bos: bool,
}

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const LLAMA3: &str = "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}";

const QWEN3: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %}";

const R1_DISTILL: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}{% else %}{{ message['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\n' }}{% endif %}";

const GEMMA: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

const PHI4: &str = "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}";

const SMOLLM3: &str = "{%- set think = enable_thinking is not defined or enable_thinking -%}{{- '<|im_start|>system\n' + ('/think' if think else '/no_think') + '<|im_end|>\n' }}{%- for message in messages %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- if not think %}{{- '<think>\n\n</think>\n' }}{%- endif %}{%- endif %}";

impl TinyChat {
    /// The markup tokens with their GGUF types, in id order.
    pub(crate) fn specials(self) -> Vec<(&'static str, i32)> {
        let c = |p| (p, CONTROL);
        let u = |p| (p, USER_DEFINED);
        match self {
            Self::ChatMl => vec![c("<|endoftext|>"), c("<|im_start|>"), c("<|im_end|>")],
            Self::Llama3 => vec![
                c("<|begin_of_text|>"),
                c("<|end_of_text|>"),
                c("<|start_header_id|>"),
                c("<|end_header_id|>"),
                c("<|eot_id|>"),
            ],
            Self::Qwen3 => vec![
                c("<|endoftext|>"),
                c("<|im_start|>"),
                c("<|im_end|>"),
                u("<think>"),
                u("</think>"),
            ],
            Self::R1Distill => vec![
                c("<｜begin▁of▁sentence｜>"),
                c("<｜end▁of▁sentence｜>"),
                u("<｜User｜>"),
                u("<｜Assistant｜>"),
                u("<think>"),
                u("</think>"),
            ],
            Self::Gemma => vec![
                c("<pad>"),
                c("<eos>"),
                c("<bos>"),
                ("<unk>", 2),
                c("<start_of_turn>"),
                c("<end_of_turn>"),
            ],
            Self::Phi4 => vec![
                c("<|endoftext|>"),
                c("<|system|>"),
                c("<|user|>"),
                c("<|assistant|>"),
                c("<|end|>"),
            ],
            Self::Smollm3 => vec![
                c("<|begin_of_text|>"),
                c("<|end_of_text|>"),
                c("<|im_start|>"),
                c("<|im_end|>"),
                u("<think>"),
                u("</think>"),
            ],
        }
    }

    /// The chat template.
    pub fn template(self) -> &'static str {
        match self {
            Self::ChatMl => CHATML,
            Self::Llama3 => LLAMA3,
            Self::Qwen3 => QWEN3,
            Self::R1Distill => R1_DISTILL,
            Self::Gemma => GEMMA,
            Self::Phi4 => PHI4,
            Self::Smollm3 => SMOLLM3,
        }
    }

    pub(crate) fn special_ids(self, vocab: &Vocabulary) -> SpecialIds {
        let id = |p: &str| vocab.id(p);
        let (bos, eos, eot, add_bos) = match self {
            Self::ChatMl => (id("<|im_start|>"), id("<|im_end|>"), None, false),
            Self::Llama3 => (
                id("<|begin_of_text|>"),
                id("<|eot_id|>"),
                id("<|eot_id|>"),
                true,
            ),
            Self::Qwen3 => (id("<|endoftext|>"), id("<|im_end|>"), None, false),
            Self::R1Distill => (
                id("<｜begin▁of▁sentence｜>"),
                id("<｜end▁of▁sentence｜>"),
                None,
                true,
            ),
            Self::Gemma => (id("<bos>"), id("<eos>"), id("<end_of_turn>"), true),
            Self::Phi4 => (id("<|endoftext|>"), id("<|end|>"), None, false),
            Self::Smollm3 => (id("<|begin_of_text|>"), id("<|im_end|>"), None, false),
        };
        SpecialIds {
            bos,
            eos,
            eot,
            add_bos,
        }
    }
}
