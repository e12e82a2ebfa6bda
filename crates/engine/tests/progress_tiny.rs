//! Progress probes and verifier scorers on the tiny model: p̂ equals a brute-force recomputation
//! of the same probes, probes recompute no prefix token and leave the strategy's tree alone,
//! consensus progress is labelled as such, and the verifier-weighted vote equals a hand count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use thinkscope_engine::answer::{answers_match, extract_answer, normalize};
use thinkscope_engine::cost::CostSnapshot;
use thinkscope_engine::events::{RunId, RunOutcome};
use thinkscope_engine::generate::build_chat;
use thinkscope_engine::model::sampling::Sampler;
use thinkscope_engine::model::template::Message;
use thinkscope_engine::progress::{self, ProgressBasis, ProgressConfig};
use thinkscope_engine::service::BranchStop;
use thinkscope_engine::strategy::{registry, Knobs, LabMode, PoolRule, RunConfig, Strategy};
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};
use thinkscope_engine::tree::{NodeKind, Tree};
use thinkscope_engine::view::{run_to_end, Watch};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::{Engine, Model};

fn model() -> (tempfile::TempDir, Arc<Model>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, &TinySpec::llama()).expect("write");
    let model = Model::load(&path, &Device::Cpu).expect("load");
    (dir, Arc::new(model))
}

const PROBES: ProgressConfig = ProgressConfig {
    probes: 4,
    probe_tokens: 6,
    temperature: 0.7,
};

fn config(name: &str, knobs: Knobs, probes: Option<ProgressConfig>) -> RunConfig {
    let mut c = RunConfig::new(
        "what is 2 + 3 ?",
        Strategy::from_name(name, &knobs).expect("strategy"),
    );
    c.max_tokens = 12;
    c.temperature = 1.0;
    c.seed = 42;
    c.progress = probes;
    c
}

fn run(model: &Arc<Model>, config: RunConfig) -> (Tree, CostSnapshot) {
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let watch = Watch {
        idle_timeout: Some(Duration::from_secs(120)),
        ..Watch::default()
    };
    let view = run_to_end(&worker, RunId(1), config, watch, |_, _| {}).expect("the run ends");
    assert_eq!(
        view.outcome,
        Some(RunOutcome::Completed),
        "{:?}",
        view.errors
    );
    view.tree.validate().expect("valid tree");
    (view.tree, view.cost)
}

fn without_progress(t: &Tree) -> Tree {
    let mut t = t.clone();
    for n in &mut t.nodes {
        n.progress = None;
    }
    t
}

fn samples(n: usize) -> Knobs {
    Knobs {
        samples: Some(n),
        depth: Some(2),
        thinking: Some(16),
    }
}

/// Recompute one probe from scratch: a fresh engine prefills the whole prefix and the cue (no
/// cache, no fork), then samples with the probe's own sampler under the same stop rule.
fn brute_force_probe(
    model: &Arc<Model>,
    ids: &[u32],
    sampler: &mut Sampler,
    max: usize,
) -> (String, usize, BranchStop) {
    let mut engine = Engine::new(model.clone(), 1 << 28).expect("engine");
    let seq = engine.new_sequence();
    let mut logits = engine.prefill(seq, ids).expect("prefill");
    let context = model.config.context_length;
    let (mut text, mut tokens) = (String::new(), 0);
    loop {
        let info = sampler.sample(&logits, &model.tokenizer);
        if model.tokenizer.stop_ids.contains(&info.id) {
            return (text, tokens, BranchStop::EndOfText);
        }
        text.push_str(&info.text);
        tokens += 1;
        if engine.len(seq).expect("len") + 1 >= context {
            return (text, tokens, BranchStop::ContextFull);
        }
        if info.text.contains('\n') && text.trim().len() > 1 {
            return (text, tokens, BranchStop::StepEnd);
        }
        if tokens >= max {
            return (text, tokens, BranchStop::MaxTokens);
        }
        logits = engine.decode(&[(seq, info.id)]).expect("decode").remove(0);
    }
}

#[test]
fn progress_equals_a_brute_force_recomputation_of_the_same_probes() {
    let (_d, model) = model();
    // First without an answer: consensus progress. Its majority becomes the "known" answer of
    // the second run, so that p̂ is not trivially 0 on a random-weight model.
    let (consensus_tree, _) = run(&model, config("self-consistency", samples(3), Some(PROBES)));
    let reference = progress::consensus(&consensus_tree).expect("some probe reached an answer");
    let mut c = config("self-consistency", samples(3), Some(PROBES));
    c.expected_answer = Some(reference.clone());
    let (tree, _) = run(&model, c.clone());
    assert_eq!(
        without_progress(&tree),
        without_progress(&consensus_tree),
        "the reference does not change the run"
    );

    let prompt_ids = build_chat(
        &model,
        &[Message::new("user", tree.nodes[0].text.clone())],
        c.format,
    )
    .expect("prompt");
    let probed: Vec<_> = tree.nodes.iter().filter(|n| n.progress.is_some()).collect();
    assert!(probed.len() >= 4, "the prompt and every sample are probed");
    assert!(probed.iter().all(|n| matches!(
        n.kind,
        NodeKind::Prompt | NodeKind::Generated | NodeKind::Manual
    )));
    let mut nonzero = 0;
    for node in &probed {
        let p = node.progress.as_ref().expect("progress");
        assert_eq!(p.basis, ProgressBasis::Expected);
        assert_eq!(p.reference.as_deref(), Some(reference.as_str()));
        // The probes start where the node ends: the prompt, its path's tokens, then the cue.
        let mut ids = prompt_ids.clone();
        ids.extend(tree.path_tokens(node.id).iter().map(|t| t.id));
        assert_eq!(ids.len(), p.prefix_tokens, "node {}", node.id);
        let cue = progress::cue_for(&tree.path_text(node.id));
        let cue_ids = model.tokenizer.encode(&cue).expect("cue");
        assert_eq!(cue_ids.len(), p.cue_tokens);
        ids.extend(cue_ids);
        assert_eq!(p.probes.len(), PROBES.probes);
        let mut matched = 0;
        for (i, probe) in p.probes.iter().enumerate() {
            let params = progress::probe_sampling(&PROBES, c.top_p, c.seed, node.id, i);
            let mut sampler = Sampler::new(params).expect("sampler");
            let (text, tokens, stop) =
                brute_force_probe(&model, &ids, &mut sampler, PROBES.probe_tokens);
            assert_eq!(probe.text, text, "node {} probe {i}", node.id);
            assert_eq!((probe.tokens, probe.stop), (tokens, Some(stop)));
            let answer = extract_answer(&format!("{cue}{text}"));
            assert_eq!(probe.answer, answer);
            let right = answer
                .as_deref()
                .is_some_and(|a| answers_match(a, &reference));
            assert_eq!(probe.matched, right);
            matched += usize::from(right);
        }
        let p_hat = matched as f32 / PROBES.probes as f32;
        assert_eq!(p.p_hat, p_hat, "node {}", node.id);
        nonzero += usize::from(p_hat > 0.0);
        // Δp̂ against the nearest probed ancestor, which for a sample is the prompt.
        let parent = progress::probed_ancestor(&tree, node.id);
        match parent {
            None => assert_eq!(p.delta, None),
            Some(a) => {
                let before = tree.nodes[a].progress.as_ref().expect("ancestor").p_hat;
                assert_eq!(p.delta, Some(p_hat - before));
            }
        }
    }
    assert!(nonzero > 0, "some node's probes reach the reference");
}

#[test]
fn probes_recompute_no_prefix_token_and_leave_the_strategy_alone() {
    let (_d, model) = model();
    for name in [
        "chain-of-thought",
        "self-consistency",
        "budget-forcing",
        "entropy-branching",
    ] {
        let (plain, plain_cost) = run(&model, config(name, samples(2), None));
        let (probed, cost) = run(&model, config(name, samples(2), Some(PROBES)));
        assert_eq!(
            without_progress(&probed),
            plain,
            "{name}: same tree with probes on"
        );
        // The strategy's own meters are untouched; the probes have their own.
        assert_eq!(
            (
                cost.prompt_tokens_computed,
                cost.tokens_reused,
                cost.generated_tokens,
                cost.forward_passes
            ),
            (
                plain_cost.prompt_tokens_computed,
                plain_cost.tokens_reused,
                plain_cost.generated_tokens,
                plain_cost.forward_passes
            ),
            "{name}"
        );
        assert_eq!(plain_cost.probe_tokens, 0);
        let nodes: Vec<_> = probed
            .nodes
            .iter()
            .filter_map(|n| n.progress.as_ref())
            .collect();
        assert_eq!(cost.probed_nodes as usize, nodes.len(), "{name}");
        let k = PROBES.probes as u64;
        let cue: u64 = nodes.iter().map(|p| p.cue_tokens as u64).sum();
        let sampled: u64 = nodes
            .iter()
            .flat_map(|p| &p.probes)
            .map(|q| q.tokens as u64 + u64::from(q.stop == Some(BranchStop::EndOfText)))
            .sum();
        let reused: u64 = nodes
            .iter()
            .map(|p| p.prefix_tokens as u64 + k * (p.prefix_tokens + p.cue_tokens) as u64)
            .sum();
        // Each node's cue is computed once and nothing before it: the whole prefix of every
        // probe comes from the cache.
        assert_eq!(cost.probe_cue_tokens, cue, "{name}");
        assert_eq!(cost.probe_tokens, cue + sampled, "{name}");
        assert_eq!(cost.probe_tokens_reused, reused, "{name}");
        assert!(cost.probe_secs > 0.0 && cost.probe_secs <= cost.wall_secs);
        assert!(cost.probe_flops > 0.0);
    }
}

#[test]
fn consensus_progress_is_labelled_and_scored_against_the_final_majority() {
    let (_d, model) = model();
    let (tree, _) = run(&model, config("budget-forcing", samples(2), Some(PROBES)));
    let consensus = progress::consensus(&tree);
    let probed: Vec<_> = tree
        .nodes
        .iter()
        .filter_map(|n| n.progress.as_ref())
        .collect();
    assert!(probed.len() >= 2);
    for p in &probed {
        assert_eq!(p.basis, ProgressBasis::Consensus);
        assert_eq!(
            p.reference, consensus,
            "every node against the final majority"
        );
        let right = p.probes.iter().filter(|q| q.matched).count();
        assert_eq!(p.p_hat, right as f32 / p.probes.len() as f32);
    }
    assert!(ProgressBasis::Consensus.label().contains("consensus"));
    assert!(ProgressBasis::Consensus
        .label()
        .contains("not a known answer"));
    let json = serde_json::to_value(&tree).expect("json");
    let first = json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n.get("progress").is_some())
        .expect("a node with progress");
    assert_eq!(first["progress"]["basis"], "consensus");
    // With a known answer the same probes are scored against it instead.
    let mut c = config("budget-forcing", samples(2), Some(PROBES));
    c.expected_answer = Some("5".into());
    let (known, _) = run(&model, c);
    assert!(known
        .nodes
        .iter()
        .filter_map(|n| n.progress.as_ref())
        .all(|p| p.basis == ProgressBasis::Expected && p.reference.as_deref() == Some("5")));
}

#[test]
fn progress_scores_beam_and_mcts_deterministically() {
    let (_d, model) = model();
    for (name, key, value) in [
        ("beam", "scorer", "progress"),
        ("mcts", "value", "progress"),
    ] {
        let mut c = config(name, samples(2), None);
        c.strategy.set_text(key, value).expect("progress scorer");
        let (a, cost) = run(&model, c.clone());
        let (b, _) = run(&model, c);
        assert_eq!(a, b, "{name}: same seed, same tree");
        assert!(cost.probed_nodes > 0, "{name} probes its steps");
        // Scorer probes never peek at a known answer: they are consensus progress.
        let steps: Vec<_> = a.nodes.iter().filter(|n| n.progress.is_some()).collect();
        assert!(!steps.is_empty());
        assert!(steps.iter().all(|n| n
            .progress
            .as_ref()
            .is_some_and(|p| p.basis == ProgressBasis::Consensus)));
        if name == "beam" {
            // Every scored step's value is its p̂ (against the majority at the time) plus a tie
            // break below one probe's worth.
            for n in a.nodes.iter().filter(|n| n.label.starts_with("step")) {
                if let (Some(v), Some(_)) = (n.scores.value, &n.progress) {
                    assert!((0.0..=1.0 + 0.01).contains(&v), "{v}");
                }
            }
        }
    }
}

#[test]
fn the_weighted_vote_equals_a_hand_count_of_the_verifier_scores() {
    let (_d, model) = model();
    let (tree, cost) = run(&model, config("weighted-vote", samples(4), None));
    assert!(cost.verify_tokens > 0, "each sample is verified");
    // Each verifier question hangs under a sample's answer node and holds P(yes).
    let mut weights: BTreeMap<String, f64> = BTreeMap::new();
    let mut votes: BTreeMap<String, u32> = BTreeMap::new();
    let mut verified = 0;
    for eval in tree
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Evaluation && n.label == "verify")
    {
        verified += 1;
        let p = eval.scores.value.expect("P(yes)");
        assert!((0.0..=1.0).contains(&p));
        let leaf = &tree.nodes[eval.parent.expect("under its sample")];
        assert_eq!(
            leaf.scores.value,
            Some(p),
            "the sample carries its verifier score"
        );
        if let Some(a) = &leaf.answer {
            *weights.entry(normalize(a)).or_default() += f64::from(p);
            *votes.entry(normalize(a)).or_default() += 1;
        }
    }
    assert_eq!(verified, 4);
    let winner = weights
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then(votes[a.0].cmp(&votes[b.0])))
        .map(|(k, _)| k.clone());
    assert_eq!(tree.answer.as_deref().map(normalize), winner);
    assert_eq!(tree.tally, votes, "the tally counts the samples per answer");
}

#[test]
fn the_new_scorers_are_in_the_registry() {
    let r = registry();
    let wv = r.get("weighted-vote").expect("weighted vote");
    assert_eq!(
        wv.lab_mode(),
        LabMode::Pool {
            rule: PoolRule::WeightedMajority
        }
    );
    let bon = Strategy::named("best-of-n")
        .and_then(|s| s.with("scorer", "self-verify"))
        .expect("best-of-n by verifier");
    assert_eq!(
        bon.def().expect("def").lab_mode_for(bon.params()),
        LabMode::Pool {
            rule: PoolRule::Verifier
        }
    );
    for (name, key) in [("beam", "scorer"), ("mcts", "value")] {
        assert!(Strategy::named(name)
            .and_then(|s| s.with(key, "progress"))
            .is_ok());
    }
    let mut bad = config(
        "system1",
        Knobs::default(),
        Some(ProgressConfig::with_probes(0)),
    );
    assert!(bad.validate().is_err(), "zero probes");
    bad.progress = Some(ProgressConfig {
        probe_tokens: 10_000,
        ..PROBES
    });
    assert!(bad.validate().is_err(), "absurd probe length");
}

/// A service that reports no log-probabilities (as some OpenAI-compatible servers do): the
/// tiny model's service with its capabilities turned down.
struct NoLogprobs {
    inner: Arc<dyn thinkscope_engine::service::SequenceService>,
    info: thinkscope_engine::service::ServiceInfo,
}

mod no_logprobs {
    use super::NoLogprobs;
    use std::sync::Arc;
    use thinkscope_engine::error::Result;
    use thinkscope_engine::generate::PromptFormat;
    use thinkscope_engine::model::sampling::TokenInfo;
    use thinkscope_engine::model::template::Message;
    use thinkscope_engine::service::{
        Appended, BranchOutcome, GenerateRequest, Prefilled, RunControl, SeqId, SequenceService,
        Served, ServiceInfo,
    };

    impl SequenceService for NoLogprobs {
        fn info(&self) -> &ServiceInfo {
            &self.info
        }
        fn prompt_ids(&self, m: &[Message], f: PromptFormat) -> Result<Vec<u32>> {
            self.inner.prompt_ids(m, f)
        }
        fn render_chat(&self, m: &[Message]) -> Option<Result<String>> {
            self.inner.render_chat(m)
        }
        fn encode(&self, text: &str) -> Result<Vec<u32>> {
            self.inner.encode(text)
        }
        fn prefill(&self, run: &Arc<RunControl>, t: Vec<u32>) -> Result<Served<Prefilled>> {
            self.inner.prefill(run, t)
        }
        fn fork(&self, run: &Arc<RunControl>, s: SeqId, n: usize) -> Result<Served<Vec<SeqId>>> {
            self.inner.fork(run, s, n)
        }
        fn generate(
            &self,
            run: &Arc<RunControl>,
            r: GenerateRequest,
            on_token: &mut dyn FnMut(usize, TokenInfo),
        ) -> Served<Result<Vec<BranchOutcome>>> {
            self.inner.generate(run, r, on_token)
        }
        fn append(
            &self,
            run: &Arc<RunControl>,
            items: Vec<(SeqId, Vec<u32>)>,
        ) -> Result<Served<Vec<Appended>>> {
            self.inner.append(run, items)
        }
        fn next_logprobs(
            &self,
            _run: &Arc<RunControl>,
            _s: SeqId,
            ids: &[u32],
        ) -> Result<Served<Vec<Option<f32>>>> {
            Ok(Served::free(vec![None; ids.len()]))
        }
        fn release(&self, seqs: &[SeqId]) {
            self.inner.release(seqs)
        }
    }
}

/// On a service without log-probabilities the self-verifier refuses with a capability error
/// (rather than scoring every sample 0.5), while progress probes, which only sample, still run.
#[test]
fn the_verifier_refuses_a_service_without_logprobs_and_probes_still_run() {
    let (_dir, model) = model();
    let local =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let mut info = local.service().info().clone();
    info.capabilities.top_alternatives = 0;
    info.capabilities.full_logprobs = false;
    let service = Arc::new(NoLogprobs {
        inner: local.service().clone(),
        info,
    });
    let worker =
        Worker::with_service(service, WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let watch = || Watch {
        idle_timeout: Some(Duration::from_secs(120)),
        ..Watch::default()
    };
    for name in ["weighted-vote", "best-of-n"] {
        let mut c = config(name, samples(2), None);
        if name == "best-of-n" {
            c.strategy
                .set(
                    "scorer",
                    thinkscope_engine::strategy::KnobValue::Text("self-verify".into()),
                )
                .expect("scorer");
        }
        let view = run_to_end(&worker, RunId(1), c, watch(), |_, _| {}).expect("ends");
        assert_eq!(view.outcome, Some(RunOutcome::Failed), "{name}");
        assert!(
            view.error_line().contains("self-verifier") && view.error_line().contains("log-prob"),
            "{name}: {}",
            view.error_line()
        );
    }
    let view = run_to_end(
        &worker,
        RunId(2),
        config("self-consistency", samples(2), Some(PROBES)),
        watch(),
        |_, _| {},
    )
    .expect("ends");
    assert_eq!(
        view.outcome,
        Some(RunOutcome::Completed),
        "{:?}",
        view.errors
    );
    assert!(view.tree.nodes.iter().any(|n| n.progress.is_some()));
}
