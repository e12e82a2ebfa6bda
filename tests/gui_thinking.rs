//! GUI tests for thinking models: the per-pane thinking switch (enabled only where the model
//! can switch), the System 1 vs System 2 preset switching thinking off and on, a thinking run's
//! segments in the tree, nodes that show badges where their text would be unreadable on a
//! four-pane screen, and snapshot images of a thinking tree.

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use thinkscope::ui::app::PaneStatus;
use thinkscope::ui::state::{PaneSettings, SessionFile};
use thinkscope::ui::tree_view::draw::{node_text, NodeText, MIN_TEXT_PX};
use thinkscope::ui::{AppOptions, ThinkscopeApp};
use thinkscope_engine::events::{Event, RunId};
use thinkscope_engine::model::sampling::{Alternative, TokenInfo};
use thinkscope_engine::strategy::KnobValue;
use thinkscope_engine::tiny::{oracle_spec, write_tiny_model};
use thinkscope_engine::tree::{NodeId, NodeKind, Scores, Segment, Tree};

fn harness(dir: &Path, model: &str, size: [f32; 2]) -> Harness<'static, ThinkscopeApp> {
    let path = dir.join(format!("{model}.gguf"));
    if !path.exists() {
        write_tiny_model(&path, &oracle_spec(model).expect("spec")).expect("tiny model");
    }
    let app = ThinkscopeApp::new(AppOptions {
        model_path: Some(path),
        config_dir: Some(dir.join("config")),
        models_dir: dir.to_owned(),
        ..AppOptions::default()
    });
    let mut h = Harness::builder()
        .with_size(size)
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut ThinkscopeApp| app.ui(ui), app);
    wait_for(&mut h, "the model", |a| {
        a.model_ready() || a.model_error().is_some()
    });
    assert!(h.state().model_ready(), "{:?}", h.state().model_error());
    h.state_mut().clear_notices();
    h
}

/// Step frames until `done` holds (the engine works on its own threads meanwhile).
fn wait_for(
    h: &mut Harness<'static, ThinkscopeApp>,
    what: &str,
    done: impl Fn(&ThinkscopeApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

fn all_done(a: &ThinkscopeApp) -> bool {
    a.panes
        .iter()
        .all(|p| matches!(p.status, PaneStatus::Done(_)))
}

#[test]
fn the_thinking_switch_follows_the_model_and_the_preset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path(), "qwen3-thinker", [1280.0, 800.0]);
    let f = h.state().thinking_format().expect("a thinking model");
    assert!(f.switchable);
    h.get_by_label("Off").click();
    h.step();
    assert_eq!(h.state().settings.panes[0].thinking, Some(false));
    h.get_by_label("On").click();
    h.step();
    assert_eq!(h.state().settings.panes[0].thinking, Some(true));
    h.get_by_label("Default").click();
    h.step();
    assert_eq!(h.state().settings.panes[0].thinking, None);
    // The run asks for what the pane says.
    h.state_mut().settings.panes[0].thinking = Some(false);
    let config = h.state().settings.panes[0]
        .run_config("What is 2 + 3?")
        .expect("config");
    assert_eq!(config.thinking, Some(false));

    h.get_by_label("System 1 vs System 2").click();
    h.step();
    let panes = &h.state().settings.panes;
    assert_eq!(
        (panes[0].strategy.as_str(), panes[0].thinking),
        ("system1", Some(false))
    );
    assert_eq!(panes[1].thinking, Some(true), "System 2 thinks");

    // A model without delimiters: the switch is there but does nothing, and the preset leaves
    // the template's default.
    let mut h = harness(dir.path(), "llama", [1280.0, 800.0]);
    assert!(h.state().thinking_format().is_none());
    h.get_by_label("Off").click();
    h.step();
    assert_eq!(h.state().settings.panes[0].thinking, None, "disabled");
    h.get_by_label("System 1 vs System 2").click();
    h.step();
    assert!(h
        .state()
        .settings
        .panes
        .iter()
        .all(|p| p.thinking.is_none()));
}

#[test]
fn a_thinking_run_has_segments_and_four_panes_show_badges_not_tiny_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path(), "qwen3-thinker", [1280.0, 800.0]);
    let close_id = h.state().thinking_format().expect("thinking").close_id;
    {
        let s = &mut h.state_mut().settings.panes[0];
        *s = PaneSettings::for_strategy("budget-forcing");
        for (k, v) in [("min_thinking", 8), ("max_thinking", 32), ("max_waits", 4)] {
            s.set_knob(k, KnobValue::Int(v)).expect(k);
        }
        s.max_tokens = 32;
        s.temperature = 1.0;
        s.seed = 3;
    }
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "the thinking run", all_done);
    let tree = &h.state().panes[0].run.tree;
    let chosen = tree.chosen.expect("an answer");
    assert!(tree.path_thinks(chosen));
    let segs: Vec<Segment> = tree
        .nodes
        .iter()
        .flat_map(|n| n.segment_runs().into_iter().map(|r| r.2))
        .collect();
    assert!(segs.contains(&Segment::Thinking) && segs.contains(&Segment::Answer));
    // Every `</think>` in the tree ends a thinking segment: what follows it is the answer.
    for n in &tree.nodes {
        for (k, t) in n.tokens.iter().enumerate() {
            if t.id == close_id && n.segment_at(k) == Some(Segment::Thinking) {
                assert_eq!(n.segment_at(k + 1), Some(Segment::Answer), "node {}", n.id);
            }
        }
    }
    // The inspector shows the selected path's segments.
    h.state_mut().panes[0].selected = Some(chosen);
    h.step();
    h.get_by_label("thinking (italic)");

    // Four panes of wide trees: their nodes are too small for text, so answers show as badges.
    h.get_by_label("4").click();
    h.step();
    for s in &mut h.state_mut().settings.panes {
        *s = PaneSettings::for_strategy("self-consistency");
        s.set_knob("n", KnobValue::Int(6)).expect("n");
        s.max_tokens = 24;
    }
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "four runs", all_done);
    for _ in 0..3 {
        h.step();
    }
    let mut badges = 0;
    for p in &h.state().panes {
        let zoom = p.zoom();
        assert!(
            11.0 * zoom < MIN_TEXT_PX,
            "six samples fit a quarter screen only small"
        );
        for n in &p.run.tree.nodes {
            match node_text(n, zoom) {
                NodeText::Full { px } => panic!("node {} drawn at {px} px", n.id),
                NodeText::Badge { text, .. } => {
                    badges += 1;
                    if let Some(a) = &n.answer {
                        assert_eq!(text, a.trim());
                    }
                }
                NodeText::Nothing => {
                    assert!(n.answer.as_deref().is_none_or(|a| a.trim().is_empty()))
                }
            }
        }
    }
    assert!(badges >= 4, "each pane's answers show: {badges}");
}

/// A budget-forcing tree on a thinking model, built from events so the picture depends on
/// nothing numerical: the prompt, `<think>`, a thought cut by "Wait", more thought, `</think>`
/// and the answer; beside it two samples that closed their thinking and answered.
fn thinking_session(app: &ThinkscopeApp, panes: usize) -> SessionFile {
    let tok = |text: &str, logprob: f32| TokenInfo {
        id: 1,
        text: text.into(),
        logprob,
        entropy: -logprob,
        top: vec![Alternative {
            id: 1,
            text: text.into(),
            logprob,
        }],
    };
    let mut tree = Tree::default();
    let mut next = 0;
    let mut add = |tree: &mut Tree,
                   parent: Option<usize>,
                   kind: NodeKind,
                   label: &str,
                   text: &str,
                   marks: &[(usize, Segment)],
                   lp: f32| {
        let node = next;
        next += 1;
        tree.apply(&Event::NodeAdded {
            run: RunId(1),
            node: NodeId(node),
            parent: parent.map(NodeId),
            kind,
            label: label.into(),
            text: String::new(),
            fork_at: None,
        });
        tree.apply(&Event::TokensAppended {
            run: RunId(1),
            node: NodeId(node),
            tokens: text.split_inclusive(' ').map(|w| tok(w, lp)).collect(),
        });
        for &(at, segment) in marks {
            tree.apply(&Event::SegmentStarted {
                run: RunId(1),
                node: NodeId(node),
                at,
                segment,
            });
        }
        node
    };
    use NodeKind::{Forced, Generated, Prompt};
    use Segment::{Answer, Thinking};
    let p = add(
        &mut tree,
        None,
        Prompt,
        "prompt",
        "What is 17 + 25? ",
        &[(0, Answer)],
        0.0,
    );
    let think = add(
        &mut tree,
        Some(p),
        Forced,
        "think",
        "<think> ",
        &[(0, Answer), (1, Thinking)],
        0.0,
    );
    let t1 = add(
        &mut tree,
        Some(think),
        Generated,
        "thinking",
        "7 + 5 is 12, carry the one, so 3 tens... ",
        &[(0, Thinking)],
        -0.4,
    );
    let w = add(
        &mut tree,
        Some(t1),
        Forced,
        "Wait",
        "Wait ",
        &[(0, Thinking)],
        0.0,
    );
    let t2 = add(
        &mut tree,
        Some(w),
        Generated,
        "thinking",
        "1 + 2 + 1 is 4 tens, so 42. </think> The answer is 42.",
        &[(0, Thinking), (11, Answer)],
        -0.3,
    );
    let s1 = add(
        &mut tree,
        Some(p),
        Generated,
        "sample 2",
        "<think> 17 + 25 = 32? </think> The answer is 32.",
        &[(0, Thinking), (7, Answer)],
        -1.5,
    );
    let s2 = add(
        &mut tree,
        Some(p),
        Generated,
        "sample 3",
        "<think> 20 + 22 = 42 </think> The answer is 42.",
        &[(0, Thinking), (7, Answer)],
        -0.5,
    );
    for (node, answer, votes) in [(t2, "42", 2), (s1, "32", 1), (s2, "42", 2)] {
        tree.apply(&Event::NodeScored {
            run: RunId(1),
            node: NodeId(node),
            scores: Scores {
                votes: Some(votes),
                ..Scores::default()
            },
        });
        tree.apply(&Event::NodeFinished {
            run: RunId(1),
            node: NodeId(node),
            answer: Some(answer.into()),
        });
    }
    tree.apply(&Event::AnswerChosen {
        run: RunId(1),
        node: Some(NodeId(t2)),
        answer: Some("42".into()),
        tally: [("42".to_string(), 2), ("32".to_string(), 1)]
            .into_iter()
            .collect(),
    });
    tree.validate().expect("a possible tree");
    let mut session = app.session();
    session.settings.prompt = "What is 17 + 25?".into();
    session.settings.panes = (0..panes)
        .map(|_| PaneSettings::for_strategy("budget-forcing"))
        .collect();
    let pane = session.panes[0].clone();
    session.panes = (0..panes)
        .map(|_| {
            let mut p = pane.clone();
            p.tree = tree.clone();
            p
        })
        .collect();
    session
}

#[test]
fn snapshots_of_a_thinking_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path(), "qwen3-thinker", [1280.0, 800.0]);
    let path = dir.path().join("thinking.json");
    thinking_session(h.state(), 1).write(&path).expect("write");
    h.state_mut().open_session(&path).expect("open");
    h.state_mut().panes[0].selected = Some(NodeId(4));
    h.state_mut().clear_notices();
    for _ in 0..4 {
        h.step();
    }
    h.snapshot("thinking_tree");

    let path = dir.path().join("four.json");
    thinking_session(h.state(), 4).write(&path).expect("write");
    h.state_mut().open_session(&path).expect("open");
    h.state_mut().clear_notices();
    for _ in 0..4 {
        h.step();
    }
    assert_eq!(h.state().panes.len(), 4);
    h.snapshot("thinking_four_panes");
}
