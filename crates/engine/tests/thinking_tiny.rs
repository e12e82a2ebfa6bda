//! Thinking models on the tiny oracle models: the delimiters found in the vocabulary and the
//! template, and the template's `enable_thinking` switch.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::Device;
use thinkscope_engine::generate::{build_chat_with, PromptFormat};
use thinkscope_engine::model::template::Message;
use thinkscope_engine::model::thinking::ThinkingFormat;
use thinkscope_engine::tiny::{oracle_spec, rewrite_gguf, write_tiny_model, TinyChat};
use thinkscope_engine::Model;

fn tiny(name: &str, dir: &Path) -> Model {
    let path = dir.join(format!("{name}.gguf"));
    let spec = oracle_spec(name).expect("spec");
    write_tiny_model(&path, &spec).expect("write");
    Model::load(&path, &Device::Cpu).expect("load")
}

fn question() -> [Message; 1] {
    [Message::new("user", "What is 17 * 23?")]
}

#[test]
fn qwen3_thinks_and_can_be_switched_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("qwen3", dir.path());
    let t = model.thinking.clone().expect("qwen3 is a thinking model");
    assert_eq!((t.open.as_str(), t.close.as_str()), ("<think>", "</think>"));
    assert!(t.switchable, "Qwen3's template reads enable_thinking");
    assert!(!t.prompt_opens, "Qwen3 writes <think> itself");
    let tok = &model.tokenizer;
    assert_eq!(tok.encode("<think>").expect("encode"), [t.open_id]);
    assert_eq!(tok.encode("</think>").expect("encode"), [t.close_id]);
    assert_ne!(t.open_id, t.close_id);

    let template = model.template.as_ref().expect("template");
    let default = template.render(&question()).expect("render");
    let on = template
        .render_with(&question(), Some(true))
        .expect("render on");
    let off = template
        .render_with(&question(), Some(false))
        .expect("render off");
    assert_eq!(default, on, "thinking is Qwen3's default");
    assert!(!on.contains("<think>"), "{on:?}");
    assert!(
        off.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "switched off, the thought is written empty: {off:?}"
    );

    let ids_on = build_chat_with(&model, &question(), PromptFormat::Auto, Some(true)).expect("on");
    let ids_off =
        build_chat_with(&model, &question(), PromptFormat::Auto, Some(false)).expect("off");
    assert!(!ids_on.contains(&t.open_id) && !ids_on.contains(&t.close_id));
    let blank = tok.encode("\n\n").expect("encode");
    let empty_thought = [&[t.open_id][..], &blank, &[t.close_id], &blank].concat();
    assert!(ids_off.ends_with(&empty_thought), "{ids_off:?}");
    assert_eq!(ids_off[..ids_off.len() - empty_thought.len()], ids_on[..]);
}

#[test]
fn r1_distill_opens_the_thinking_in_its_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("r1-distill-qwen", dir.path());
    let t = model
        .thinking
        .clone()
        .expect("R1-Distill is a thinking model");
    assert_eq!(t.open, "<think>");
    assert!(t.prompt_opens, "its generation prompt ends with <think>");
    assert!(!t.switchable, "its template has no switch");
    let ids = build_chat_with(&model, &question(), PromptFormat::Auto, None).expect("prompt");
    let newline = model.tokenizer.encode("\n").expect("encode");
    assert_eq!(
        &ids[ids.len() - 1 - newline.len()..],
        [&[t.open_id][..], &newline].concat(),
        "the prompt ends inside the thinking"
    );
    // Switching off changes nothing for a template without the switch.
    let off = build_chat_with(&model, &question(), PromptFormat::Auto, Some(false)).expect("off");
    assert_eq!(ids, off);
}

#[test]
fn smollm3_switches_by_its_system_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("smollm3", dir.path());
    let t = model.thinking.clone().expect("SmolLM3 is a thinking model");
    assert!(t.switchable && !t.prompt_opens);
    let template = model.template.as_ref().expect("template");
    let on = template.render_with(&question(), None).expect("on");
    let off = template.render_with(&question(), Some(false)).expect("off");
    assert!(on.contains("/think") && !on.contains("/no_think"), "{on:?}");
    assert!(
        off.contains("/no_think") && off.ends_with("<think>\n\n</think>\n"),
        "{off:?}"
    );
}

#[test]
fn models_without_delimiters_do_not_think() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["llama", "llama3", "qwen2", "gemma3", "phi3"] {
        let model = tiny(name, dir.path());
        assert_eq!(model.thinking, None, "{name}");
    }
}

/// A vocabulary that carries `<think>` but a template that never writes it (Qwen3-Instruct-2507)
/// is not a thinking model; without any template (a base model) the vocabulary decides.
#[test]
fn delimiters_count_only_where_the_template_uses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny("qwen3", dir.path());
    let src = dir.path().join("qwen3.gguf");
    let edited = |name: &str, template: Option<&str>| {
        let dst = dir.path().join(name);
        rewrite_gguf(&src, &dst, |m, _| {
            m.retain(|(k, _)| k != "tokenizer.chat_template");
            if let Some(t) = template {
                m.push(("tokenizer.chat_template".into(), Value::String(t.into())));
            }
        })
        .expect("rewrite");
        Model::load(&dst, &Device::Cpu).expect("load")
    };
    let instruct = edited("instruct.gguf", Some(TinyChat::ChatMl.template()));
    assert_eq!(instruct.thinking, None);
    let base = edited("base.gguf", None);
    let t: ThinkingFormat = base.thinking.expect("the vocabulary has the pair");
    assert!(!t.switchable && !t.prompt_opens);
}
