//! Thinking models through runs: `enable_thinking` from a run's settings to its prompt, the
//! service's stop-before-token rule, budget forcing on `</think>` (s1: "Wait" where the model
//! would close its thinking before the minimum, the delimiter written by the strategy at the
//! maximum), and thinking/answer segments in the tree.
//!
//! The `*-thinker` tiny models are the thinking families' oracle models with `</think>` made
//! likely at every position, so the model keeps trying to end its thinking.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use thinkscope_engine::events::{RunId, RunOutcome};
use thinkscope_engine::generate::{build_chat_with, PromptFormat};
use thinkscope_engine::local::{LocalOptions, LocalService};
use thinkscope_engine::model::sampling::Sampler;
use thinkscope_engine::model::template::Message;
use thinkscope_engine::model::thinking::ThinkingFormat;
use thinkscope_engine::service::{
    BranchStop, GenBranch, GenerateRequest, RunControl, SequenceService, StopRule,
};
use thinkscope_engine::strategy::{
    register, Ctx, Knob, LabMode, Params, PromptThinking, RunConfig, Strategy, StrategyDef,
};
use thinkscope_engine::tiny::{oracle_spec, write_tiny_model};
use thinkscope_engine::tree::{NodeId, NodeKind, Segment, Tree};
use thinkscope_engine::view::{run_to_end, RunView, Watch};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::{Model, SamplingParams};

fn tiny(name: &str, dir: &Path) -> Arc<Model> {
    let path = dir.join(format!("{name}.gguf"));
    let spec = oracle_spec(name).expect("spec");
    write_tiny_model(&path, &spec).expect("write");
    Arc::new(Model::load(&path, &Device::Cpu).expect("load"))
}

fn run(model: &Arc<Model>, config: RunConfig) -> RunView {
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let view = run_to_end(&worker, RunId(1), config, Watch::default(), |_, _| {}).expect("run");
    assert_eq!(
        view.outcome,
        Some(RunOutcome::Completed),
        "{}",
        view.error_line()
    );
    view.tree.validate().expect("a possible tree");
    view
}

fn budget_forcing(min: usize, max: usize, seed: u64) -> RunConfig {
    let strategy = Strategy::named("budget-forcing")
        .and_then(|s| s.with("min_thinking", min))
        .and_then(|s| s.with("max_thinking", max))
        .and_then(|s| s.with("max_waits", 64usize))
        .expect("strategy");
    let mut c = RunConfig::new("What is 17 * 23?", strategy);
    c.temperature = 1.0;
    c.seed = seed;
    c.max_tokens = 16;
    c
}

/// One token of the chosen path: its node, whether the node was forced, the token and its
/// segment.
struct PathToken {
    node: NodeId,
    forced: bool,
    id: u32,
    segment: Option<Segment>,
}

fn chosen_path(tree: &Tree) -> Vec<PathToken> {
    let chosen = tree.chosen.expect("an answer was chosen");
    tree.path_spans(chosen)
        .into_iter()
        .flat_map(|(i, keep)| {
            let n = &tree.nodes[i];
            n.tokens[..keep]
                .iter()
                .enumerate()
                .map(move |(k, t)| PathToken {
                    node: n.id,
                    forced: n.kind == NodeKind::Forced,
                    id: t.id,
                    segment: n.segment_at(k),
                })
        })
        .collect()
}

/// Where the chosen path's thinking closes: the index of its one `</think>`, after checking
/// that the thinking is one unbroken segment up to it and the answer one after it.
fn close_index(path: &[PathToken], f: &ThinkingFormat) -> usize {
    let closes: Vec<usize> = (0..path.len())
        .filter(|&i| path[i].id == f.close_id)
        .collect();
    assert!(!closes.is_empty(), "the thinking was never closed");
    let close = closes[0];
    for (i, t) in path.iter().enumerate() {
        let expected = if i <= close {
            Segment::Thinking
        } else {
            Segment::Answer
        };
        if i <= close || closes.len() == 1 {
            assert_eq!(t.segment, Some(expected), "token {i} of the path");
        }
    }
    close
}

/// Index in the chosen path of the first token the model thought: the tokens of the nodes
/// before the first "thinking" node.
fn thinking_start(tree: &Tree) -> usize {
    let spans = tree.path_spans(tree.chosen.expect("chosen"));
    let first = spans
        .iter()
        .position(|&(i, _)| tree.nodes[i].label == "thinking")
        .expect("a thinking node");
    spans[..first].iter().map(|s| s.1).sum()
}

fn waits(tree: &Tree) -> Vec<NodeId> {
    tree.nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Forced && n.label == "Wait")
        .map(|n| n.id)
        .collect()
}

/// Generation stops *before* a `stop_before` token: the same sampler without the rule chose the
/// same tokens up to it and then that token, which the stopped branch never received.
#[test]
fn a_stop_token_is_held_back_and_the_branch_can_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("qwen3-thinker", dir.path());
    let close = model.thinking.as_ref().expect("thinking").close_id;
    let service = LocalService::start(model.clone(), LocalOptions::default()).expect("service");
    let control = RunControl::new();
    let prompt = build_chat_with(
        &model,
        &[Message::new("user", "What is 2 + 3?")],
        PromptFormat::Auto,
        None,
    )
    .expect("prompt");
    let prompt_len = prompt.len();
    let root = service.prefill(&control, prompt).expect("prefill").value;
    let seqs = service.fork(&control, root.seq, 2).expect("fork").value;
    let sampler = Sampler::new(SamplingParams {
        temperature: 1.0,
        seed: 5,
        ..SamplingParams::default()
    })
    .expect("sampler");
    let generate = |seq, rule: StopRule, sampler: Sampler| {
        let mut tokens = Vec::new();
        let request = GenerateRequest {
            branches: vec![GenBranch {
                seq,
                sampler,
                prior_text: String::new(),
            }],
            rule,
            budget: None,
        };
        let out = service
            .generate(&control, request, &mut |_, t| tokens.push(t.id))
            .value
            .expect("generate");
        (tokens, out.into_iter().next().expect("one outcome"))
    };
    let (free, _) = generate(seqs[0], StopRule::to_end(60), sampler.clone());
    let k = free
        .iter()
        .position(|&t| t == close)
        .expect("the thinker chooses </think> within 60 tokens");
    let rule = StopRule::to_end(60).stopping_before([close]);
    let (held, outcome) = generate(seqs[1], rule.clone(), sampler);
    assert_eq!(outcome.stop, BranchStop::StopToken { id: close });
    assert_eq!(held, free[..k], "the same tokens up to the held-back one");
    assert_eq!(
        outcome.len,
        prompt_len + k,
        "the stop token was not appended"
    );

    // Appending the held-back token and going on with the returned sampler continues the
    // free-running branch token for token.
    let appended = service
        .append(&control, vec![(seqs[1], vec![close])])
        .expect("append")
        .value;
    assert_eq!(appended[0].tokens[0].id, close);
    let (rest, _) = generate(seqs[1], StopRule::to_end(8), outcome.sampler);
    assert_eq!(rest[..], free[k + 1..(k + 9).min(free.len())]);
}

/// A test strategy that reports what its run's prompt became: the prompt's token ids, and where
/// the prompt leaves the thinking.
struct ReportPrompt;

impl StrategyDef for ReportPrompt {
    fn name(&self) -> &'static str {
        "test-report-prompt"
    }

    fn title(&self) -> &'static str {
        "Report the prompt (test)"
    }

    fn summary(&self) -> &'static str {
        "Prefills the prompt and answers with its token ids."
    }

    fn knobs(&self) -> Vec<Knob> {
        Vec::new()
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Single
    }

    fn run(&self, ctx: &mut Ctx, _p: &Params) -> thinkscope_engine::Result<()> {
        let root = ctx.start(false, true)?;
        let ids: Vec<String> = ctx.prompt_ids().iter().map(u32::to_string).collect();
        let report = format!("{:?} {}", ctx.prompt_thinking(), ids.join(","));
        ctx.choose(Some(root.node), Some(report), Default::default());
        Ok(())
    }
}

fn report_prompt(model: &Arc<Model>, thinking: Option<bool>) -> (String, Vec<u32>, Tree) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| register(Arc::new(ReportPrompt)).expect("register"));
    let mut config = RunConfig::new(
        "What is 17 * 23?",
        Strategy::named("test-report-prompt").expect("registered"),
    );
    config.thinking = thinking;
    let view = run(model, config);
    let report = view.tree.answer.clone().expect("a report");
    let (state, ids) = report.split_once(' ').expect("state and ids");
    let ids = ids.split(',').map(|t| t.parse().expect("id")).collect();
    (state.to_owned(), ids, view.tree)
}

#[test]
fn enable_thinking_goes_from_the_run_to_the_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("qwen3", dir.path());
    let f = model.thinking.clone().expect("thinking");
    let question = [Message::new("user", "What is 17 * 23?")];
    for (thinking, state, root) in [
        (None, PromptThinking::Ahead, Segment::Answer),
        (Some(true), PromptThinking::Ahead, Segment::Answer),
        (Some(false), PromptThinking::Closed, Segment::Answer),
    ] {
        let (got_state, ids, tree) = report_prompt(&model, thinking);
        let expected =
            build_chat_with(&model, &question, PromptFormat::Auto, thinking).expect("prompt");
        assert_eq!(ids, expected, "thinking {thinking:?}");
        assert_eq!(got_state, format!("{state:?}"), "thinking {thinking:?}");
        assert_eq!(ids.contains(&f.close_id), thinking == Some(false));
        assert_eq!(tree.nodes[0].segment_at(0), Some(root));
    }

    // R1-Distill's prompt opens the thinking; it has no switch, so "off" changes nothing.
    let r1 = tiny("r1-distill-qwen", dir.path());
    for thinking in [None, Some(false)] {
        let (state, ids, tree) = report_prompt(&r1, thinking);
        assert_eq!(state, "Open");
        assert_eq!(ids.last(), r1.tokenizer.encode("\n").expect("nl").last());
        assert_eq!(tree.nodes[0].segment_at(0), Some(Segment::Thinking));
    }

    // A model without delimiters has no segments at all.
    let llama = tiny("llama", dir.path());
    let (state, _, tree) = report_prompt(&llama, Some(false));
    assert_eq!(state, "Plain");
    assert!(tree.nodes.iter().all(|n| n.segments.is_empty()));
}

/// s1 on `</think>`: below the minimum the model's attempts to close its thinking become
/// "Wait"; past it, its own `</think>` goes in and it answers.
#[test]
fn budget_forcing_puts_wait_where_the_thinking_would_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["qwen3-thinker", "r1-distill-qwen-thinker"] {
        let model = tiny(name, dir.path());
        let f = model.thinking.clone().expect("thinking");
        let (min, max) = (24, 96);
        let view = run(&model, budget_forcing(min, max, 3));
        let tree = &view.tree;
        let path = chosen_path(tree);
        let close = close_index(&path, &f);

        // The thinking opens once: written by the strategy for Qwen3 (whose template leaves it
        // to the model), already in R1-Distill's prompt.
        let opens: Vec<&PathToken> = path.iter().filter(|t| t.id == f.open_id).collect();
        if f.prompt_opens {
            assert!(opens.is_empty(), "{name}: the prompt opened the thinking");
        } else {
            assert_eq!(opens.len(), 1, "{name}");
            assert!(opens[0].forced, "{name}: the strategy opens the thinking");
        }
        let start = thinking_start(tree);
        let thought = close - start;
        assert!(
            thought >= min,
            "{name}: the thinking closed after {thought} tokens, before the minimum {min}"
        );
        assert!(!path[close].forced, "{name}: the model closed it itself");

        // The model tried to close early: "Wait" went in, inside the thinking, each time right
        // where the model had chosen `</think>` (the distribution there put it first or near).
        let w = waits(tree);
        assert!(!w.is_empty(), "{name}: the thinker tries to stop early");
        for &id in &w {
            let n = &tree.nodes[id];
            assert_eq!(n.segment_at(0), Some(Segment::Thinking), "{name}");
            assert!(
                n.tokens[0].top.iter().any(|a| a.id == f.close_id),
                "{name}: Wait inserted where </think> was likely"
            );
            assert!(n.tokens.iter().all(|t| t.id != f.close_id));
        }
        // No `</think>` anywhere in the tree before the minimum, on any branch.
        for n in &tree.nodes {
            for (k, t) in n.tokens.iter().enumerate() {
                if t.id == f.close_id && n.segment_at(k) == Some(Segment::Thinking) {
                    let spans = tree.path_spans(n.id);
                    let before: usize = spans[..spans.len() - 1].iter().map(|s| s.1).sum();
                    assert!(before + k - start >= min, "{name}: node {}", n.id);
                }
            }
        }
        // After the thinking: an answer node in the answer segment, and an answer read from it.
        let answer_node = &tree.nodes[path[path.len() - 1].node];
        assert_eq!(answer_node.segment_at(0), Some(Segment::Answer), "{name}");
        assert!(tree.answer.is_some(), "{name}");
    }
}

/// At the maximum the strategy closes the thinking itself and asks for the answer: with the
/// minimum at the maximum the model can never close it on its own.
#[test]
fn budget_forcing_closes_the_thinking_at_the_maximum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("qwen3-thinker", dir.path());
    let f = model.thinking.clone().expect("thinking");
    let budget = 24;
    let view = run(&model, budget_forcing(budget, budget, 9));
    let tree = &view.tree;
    let path = chosen_path(tree);
    let close = close_index(&path, &f);
    assert!(path[close].forced, "the strategy wrote </think>");
    let cut = &tree.nodes[path[close].node];
    assert_eq!(cut.label, "budget reached");
    let thought = close - thinking_start(tree);
    assert!(thought >= budget, "thought {thought} < {budget}");
    assert!(
        !waits(tree).is_empty(),
        "the model tried to stop before the budget"
    );
    assert!(
        path[..close].iter().all(|t| t.id != f.close_id),
        "the model never closed it itself"
    );
    let answer = &tree.nodes[tree.chosen.expect("chosen")];
    assert_eq!(answer.label, "answer");
    assert_eq!(answer.segment_at(0), Some(Segment::Answer));
    assert!(answer.thinking_tokens() == 0 || answer.tokens.iter().any(|t| t.id == f.open_id));
}

/// With thinking switched off the prompt holds an empty thought, and budget forcing works on
/// the end of text as it does for models without delimiters: no thinking is opened.
#[test]
fn budget_forcing_with_thinking_off_does_not_open_a_thought() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("qwen3-thinker", dir.path());
    let f = model.thinking.clone().expect("thinking");
    let mut config = budget_forcing(8, 32, 1);
    config.thinking = Some(false);
    let view = run(&model, config);
    let tree = &view.tree;
    assert!(tree.nodes.iter().all(|n| n.label != "think"));
    assert!(view.tree.nodes[0].segment_at(0) == Some(Segment::Answer));
    // What it writes is the answer, and nothing holds its `</think>`s back (they close
    // nothing): the end of text is what budget forcing watches here.
    let first = &tree.nodes[1];
    assert_eq!(first.label, "thinking");
    assert_eq!(first.segment_at(0), Some(Segment::Answer));
    assert!(first.tokens.iter().any(|t| t.id == f.close_id));
    assert_eq!(first.thinking_tokens(), 0);
}

/// Segments survive a session file, and a tree saved before segments existed still loads.
#[test]
fn segments_round_trip_and_old_trees_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny("r1-distill-qwen-thinker", dir.path());
    let view = run(&model, budget_forcing(16, 48, 2));
    let text = serde_json::to_string(&view.tree).expect("json");
    let back: Tree = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, view.tree);
    assert!(back.nodes.iter().any(|n| n.thinking_tokens() > 0));

    let mut old: serde_json::Value = serde_json::from_str(&text).expect("value");
    for n in old["nodes"].as_array_mut().expect("nodes") {
        n.as_object_mut().expect("node").remove("segments");
    }
    let old: Tree = serde_json::from_value(old).expect("an old tree loads");
    old.validate().expect("valid");
    assert!(old.nodes.iter().all(|n| n.segments.is_empty()));
    assert_eq!(
        old.path_answer_text(old.chosen.expect("chosen")),
        old.path_text(old.chosen.expect("chosen"))
    );
}
