//! GUI tests: egui_kittest drives the real app (model loading, typing, sliders, runs, panes,
//! sessions) and keeps snapshot images of the main screens.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use thinkscope::ui::app::PaneStatus;
use thinkscope::ui::autosave;
use thinkscope::ui::state::SessionFile;
use thinkscope::ui::{AppOptions, ThinkscopeApp};
use thinkscope_engine::cost::CostSnapshot;
use thinkscope_engine::events::RunOutcome;
use thinkscope_engine::strategy::{
    register, Ctx, Knob, KnobValue, LabMode, Params, StopRule, StrategyDef,
};
use thinkscope_engine::tiny::{rewrite_gguf, write_tiny_model, TinySpec};

fn harness(dir: &Path) -> Harness<'static, ThinkscopeApp> {
    let model = dir.join("tiny.gguf");
    if !model.exists() {
        write_tiny_model(&model, &TinySpec::llama()).expect("tiny model");
    }
    let app = ThinkscopeApp::new(AppOptions {
        model_path: Some(model),
        config_dir: Some(dir.join("config")),
        models_dir: dir.to_owned(),
        ..AppOptions::default()
    });
    Harness::builder()
        .with_size([1280.0, 800.0])
        // Model text may hold any character (a lone byte of a multi-byte one decodes to U+FFFD).
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut ThinkscopeApp| app.ui(ui), app)
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
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

fn ready(h: &mut Harness<'static, ThinkscopeApp>) {
    wait_for(h, "the model", |a| {
        a.model_ready() || a.model_error().is_some()
    });
    assert!(
        h.state().model_ready(),
        "model failed: {:?}",
        h.state().model_error()
    );
}

#[test]
fn type_slide_run_stop_and_compare() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    ready(&mut h);

    // Type a prompt into the editor.
    h.state_mut().settings.prompt.clear();
    h.step();
    let editor = h.get_by_role(Role::MultilineTextInput);
    editor.focus();
    editor.type_text("What is 2 + 3?");
    h.step();
    assert_eq!(h.state().settings.prompt, "What is 2 + 3?");

    // Move sliders found by their labels.
    h.get_by_role_and_label(Role::Slider, "Samples")
        .set_value_accesskit(3.0);
    h.step();
    h.get_by_role_and_label(Role::Slider, "Temperature")
        .set_value_accesskit(1.2);
    h.step();
    assert_eq!(
        h.state().settings.panes[0].knob("n"),
        Some(KnobValue::Int(3))
    );
    assert!((h.state().settings.panes[0].temperature - 1.2).abs() < 1e-3);

    // Run: nodes appear as the tree grows; the run finishes with a tree of 3 samples.
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "nodes", |a| a.panes[0].run.tree.nodes.len() > 1);
    wait_for(&mut h, "the run to end", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
    assert_eq!(h.state().panes[0].run.tree.nodes[0].children.len(), 3);
    assert!(h.state().panes[0].run.cost.generated_tokens > 0);

    // A long run can be stopped midway, keeping its tree.
    h.state_mut().settings.panes[0].strategy = "mcts".into();
    h.state_mut().settings.panes[0]
        .set_knob("iterations", KnobValue::Int(32))
        .expect("32 iterations");
    h.state_mut().settings.panes[0].max_tokens = 400;
    h.step();
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "progress", |a| a.panes[0].run.tree.nodes.len() > 3);
    let before = h.state().panes[0].run.tree.nodes.len();
    h.get_by_label("Stop").click();
    h.step();
    wait_for(&mut h, "the stop", |a| !a.busy());
    assert_eq!(
        h.state().panes[0].status,
        PaneStatus::Done(thinkscope_engine::events::RunOutcome::Cancelled)
    );
    assert!(h.state().panes[0].run.tree.nodes.len() >= before);
    assert!(
        h.state().panes[0].run.tree.nodes.len() > 3,
        "the stopped tree is kept"
    );

    // Side by side: System 1 vs System 2, started together.
    h.get_by_label("System 1 vs System 2").click();
    h.step();
    assert_eq!(h.state().panes.len(), 2);
    assert_eq!(h.state().settings.panes[0].strategy, "system1");
    assert_eq!(h.state().settings.panes[1].strategy, "self-consistency");
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "both panes", |a| {
        a.panes
            .iter()
            .all(|p| matches!(p.status, PaneStatus::Done(_)))
    });
    for p in &h.state().panes {
        assert!(p.run.tree.nodes.len() >= 2);
        assert!(p.run.cost.forward_passes > 0);
    }

    // Pane count from the toolbar.
    h.get_by_label("4").click();
    h.step();
    assert_eq!(h.state().panes.len(), 4);
}

#[test]
fn sessions_and_settings_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = dir.path().join("session.json");
    {
        let mut h = harness(dir.path());
        ready(&mut h);
        h.state_mut().settings.prompt = "Name a colour.".into();
        h.state_mut().settings.panes[0].strategy = "best-of-n".into();
        h.state_mut().run_all();
        wait_for(&mut h, "the run", |a| {
            matches!(a.panes[0].status, PaneStatus::Done(_))
        });
        h.state().session().write(&session).expect("save session");
        h.state_mut().save_now();
    }
    // Settings persist across a restart.
    let mut h = harness(dir.path());
    assert_eq!(h.state().settings.prompt, "Name a colour.");
    assert_eq!(h.state().settings.panes[0].strategy, "best-of-n");
    ready(&mut h);
    // Reopen the session: the same tree comes back.
    let saved = thinkscope::ui::state::SessionFile::read(&session).expect("read");
    h.state_mut().open_session(&session).expect("open");
    h.step();
    assert_eq!(h.state().panes[0].run.tree, saved.panes[0].tree);
    assert!(!h.state().panes[0].run.tree.nodes.is_empty());

    // A broken session file is an error message, and the current work stays.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").expect("write");
    let err = h
        .state_mut()
        .open_session(&broken)
        .expect_err("broken file");
    assert!(
        format!("{err:#}").contains("not a thinkscope session"),
        "{err:#}"
    );
    assert_eq!(h.state().panes[0].run.tree, saved.panes[0].tree);
}

#[test]
fn bad_model_file_is_reported_and_the_app_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, "not a model at all").expect("write");
    let app = ThinkscopeApp::new(AppOptions {
        model_path: Some(bad),
        config_dir: None,
        models_dir: dir.path().to_owned(),
        ..AppOptions::default()
    });
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        // Model text may hold any character (a lone byte of a multi-byte one decodes to U+FFFD).
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut ThinkscopeApp| app.ui(ui), app);
    wait_for(&mut h, "the load to fail", |a| a.model_error().is_some());
    assert!(h
        .state()
        .model_error()
        .is_some_and(|e| e.contains("not a GGUF")));
    assert!(h.state().notices().iter().any(|n| n.contains("not a GGUF")));
    // Pressing Run without a model explains itself instead of failing.
    h.state_mut().run_all();
    h.step();
    assert!(h.state().notices().iter().any(|n| n.contains("not loaded")));
}

/// A tree built from events by hand, so the pictures depend on nothing numerical.
fn synthetic_session(app: &ThinkscopeApp) -> thinkscope::ui::state::SessionFile {
    use thinkscope_engine::events::{Event, RunId};
    use thinkscope_engine::model::sampling::{Alternative, TokenInfo};
    use thinkscope_engine::tree::{NodeId, NodeKind, Scores, Tree};
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
    let add = |tree: &mut Tree,
               node: usize,
               parent: Option<usize>,
               kind: NodeKind,
               label: &str,
               text: &str| {
        tree.apply(&Event::NodeAdded {
            run: RunId(1),
            node: NodeId(node),
            parent: parent.map(NodeId),
            kind,
            label: label.into(),
            text: text.into(),
            fork_at: None,
        });
    };
    add(
        &mut tree,
        0,
        None,
        NodeKind::Prompt,
        "prompt",
        "What is 17 + 25? Think step by step.",
    );
    let samples = [
        (
            "17 + 25: 7 + 5 = 12, carry 1; 1 + 2 + 1 = 4. The answer is 42.",
            -0.3,
            "42",
        ),
        ("17 + 25 = 17 + 20 + 5 = 42. The answer is 42.", -0.2, "42"),
        (
            "Adding the tens gives 30 and the ones 12, so 32. The answer is 32.",
            -1.6,
            "32",
        ),
    ];
    for (i, (text, lp, answer)) in samples.iter().enumerate() {
        add(
            &mut tree,
            i + 1,
            Some(0),
            NodeKind::Generated,
            &format!("sample {}", i + 1),
            "",
        );
        let tokens = text.split_inclusive(' ').map(|w| tok(w, *lp)).collect();
        tree.apply(&Event::TokensAppended {
            run: RunId(1),
            node: NodeId(i + 1),
            tokens,
        });
        tree.apply(&Event::NodeScored {
            run: RunId(1),
            node: NodeId(i + 1),
            scores: Scores {
                mean_logprob: Some(*lp),
                votes: Some(if *answer == "42" { 2 } else { 1 }),
                ..Scores::default()
            },
        });
        tree.apply(&Event::NodeFinished {
            run: RunId(1),
            node: NodeId(i + 1),
            answer: Some(answer.to_string()),
        });
    }
    let tally = [("42".to_string(), 2), ("32".to_string(), 1)]
        .into_iter()
        .collect();
    tree.apply(&Event::AnswerChosen {
        run: RunId(1),
        node: Some(NodeId(2)),
        answer: Some("42".into()),
        tally,
    });
    let mut session = app.session();
    session.settings.prompt = "What is 17 + 25?".into();
    session.panes[0].tree = tree;
    session.panes[0].cost = CostSnapshot {
        prompt_tokens_computed: 61,
        tokens_reused: 122,
        tokens_reused_unknown: false,
        generated_tokens: 57,
        forward_passes: 20,
        wall_secs: 2.5,
        tok_per_sec: 22.8,
        flops: 1.9e10,
        energy_joules: 50.0,
        energy_measured: false,
        energy_source: "estimated: 10 W x 2 CPU threads".into(),
        ..CostSnapshot::default()
    };
    session
}

/// Snapshots of the main screens.
#[test]
fn snapshots_of_main_screens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    ready(&mut h);
    let path = dir.path().join("fixed.json");
    synthetic_session(h.state()).write(&path).expect("write");
    h.state_mut().open_session(&path).expect("open");
    h.state_mut().panes[0].selected = Some(thinkscope_engine::tree::NodeId(2));
    h.state_mut().clear_notices();
    for _ in 0..4 {
        h.step();
    }
    h.snapshot("explore_single_pane");

    h.state_mut().panes[0].selected = None;
    h.state_mut().system1_vs_system2();
    for _ in 0..4 {
        h.step();
    }
    h.snapshot("system1_vs_system2_setup");
}

#[test]
fn lab_sweep_draws_curves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    ready(&mut h);
    h.get_by_label("Lab").click();
    h.step();
    {
        let lab = &mut h.state_mut().settings.lab;
        lab.count = 3;
        lab.max_n = 4;
        lab.max_tokens = 8;
    }
    h.step();
    h.get_by_label("Start sweep").click();
    h.step();
    wait_for(&mut h, "the sweep", |a| {
        !a.lab.running() && !a.lab.points.is_empty()
    });
    let points = &h.state().lab.points;
    // Greedy, self-consistency and best-of-N at N = 1, 2, 4.
    assert!(points
        .iter()
        .any(|p| p.strategy == "self-consistency" && p.n == 4));
    assert!(points.iter().all(|p| (0.0..=1.0).contains(&p.accuracy)));
    // The verifier strategies come from the registry: the weighted vote and best-of-N by
    // P(yes) judge the same verified pool, so every pool point carries both figures.
    for name in ["weighted-vote", "best-of-n:scorer=self-verify"] {
        assert!(
            points.iter().any(|p| p.strategy == name && p.n == 4),
            "{name}"
        );
    }
    for p in points.iter().filter(|p| p.cost_derived || p.n == 4) {
        if p.strategy == "greedy" {
            continue;
        }
        assert!(
            p.accuracy_weighted_maj.is_some() && p.accuracy_verifier.is_some(),
            "{}",
            p.strategy
        );
        assert!(p.accuracy_pass >= p.accuracy_maj - 1e-9);
    }
    // The gap and difficulty views draw from the same results.
    assert!(!h.state().lab.results.levels.is_empty());
    assert!(h.state().lab.results.pool.is_some());
    h.get_by_label("Verification gap").click();
    for _ in 0..3 {
        h.step();
    }
    h.get_by_label("By difficulty").click();
    for _ in 0..3 {
        h.step();
    }
    assert!(h
        .query_by_label_contains("Where the curves flatten")
        .is_some());
    h.get_by_label("Accuracy vs compute").click();
    for _ in 0..3 {
        h.step();
    }
    assert!(
        h.query_by_label_contains("Energy per correct answer, J (estimated")
            .is_some()
            || h.query_by_label_contains("Energy per correct answer, J (measured")
                .is_some()
    );
    for _ in 0..3 {
        h.step();
    }
    // Settings persist the view.
    assert_eq!(h.state().settings.view, thinkscope::ui::state::View::Lab);
}

#[test]
fn a_broken_model_file_keeps_the_loaded_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    ready(&mut h);
    let bad = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(dir.path().join("tiny.gguf")).expect("read");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).expect("write");
    let ctx = h.ctx.clone();
    h.state_mut().open_model(&ctx, bad);
    wait_for(&mut h, "the error", |a| {
        a.notices().iter().any(|n| n.contains("truncated"))
    });
    assert!(h.state().model_ready(), "the working model stays loaded");
    h.state_mut().settings.panes[0].strategy = "system1".into();
    h.state_mut().run_all();
    wait_for(&mut h, "a run on the kept model", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
    assert!(h.state().panes[0].run.tree.nodes.len() >= 2);
}

/// Progress probes from the controls: the checkbox and the K / length sliders reach the run;
/// every probed node's p̂ is the share of its own probes that matched; the inspector shows the
/// selected node's figure labelled "consensus progress" without a known answer and plain
/// "progress" with one; the meters count probe tokens apart.
#[test]
fn a_run_with_progress_shows_progress_on_nodes() {
    use thinkscope::ui::state::ColorBy;
    use thinkscope::ui::tree_view::draw::{node_fill, progress_line};
    use thinkscope_engine::progress::ProgressBasis;
    use thinkscope_engine::tree::NodeKind;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    ready(&mut h);
    h.state_mut().settings.prompt = "What is 2 + 3?".into();
    h.state_mut().settings.panes[0].strategy = "self-consistency".into();
    h.state_mut().settings.panes[0]
        .set_knob("n", KnobValue::Int(2))
        .expect("2 samples");
    h.state_mut().settings.panes[0].max_tokens = 12;
    h.step();
    h.get_by_label("Progress probes (MRT)").click();
    h.step();
    assert!(h.state().settings.panes[0].progress);
    h.get_by_role_and_label(Role::Slider, "Probes K")
        .set_value_accesskit(3.0);
    h.step();
    h.get_by_role_and_label(Role::Slider, "Probe length")
        .set_value_accesskit(5.0);
    h.step();
    assert_eq!(h.state().settings.panes[0].progress_probes, 3);
    assert_eq!(h.state().settings.panes[0].probe_tokens, 5);

    let run = |h: &mut Harness<'static, ThinkscopeApp>| {
        h.get_by_label("Run").click();
        h.step();
        wait_for(h, "the probed run", |a| {
            matches!(a.panes[0].status, PaneStatus::Done(_))
        });
    };
    run(&mut h);

    let tree = h.state().panes[0].run.tree.clone();
    let probed: Vec<_> = tree.nodes.iter().filter(|n| n.progress.is_some()).collect();
    // The prompt and both samples.
    assert!(probed.len() >= 3, "{} probed nodes", probed.len());
    for n in &probed {
        let p = n.progress.as_ref().expect("progress");
        assert_eq!(p.probes.len(), 3);
        assert!(p.probes.iter().all(|q| q.tokens <= 5));
        let matched = p.probes.iter().filter(|q| q.matched).count() as f32 / 3.0;
        assert!((p.p_hat - matched).abs() < 1e-6);
        assert_eq!(p.basis, ProgressBasis::Consensus);
    }
    let cost = h.state().panes[0].run.cost.clone();
    assert_eq!(cost.probed_nodes as usize, probed.len());
    assert!(cost.probe_tokens > 0);

    // Select a sample: the inspector shows its progress, labelled as consensus progress, and
    // the chosen path's regret; the meters show the probe tokens.
    let sample = probed
        .iter()
        .find(|n| n.kind == NodeKind::Generated)
        .expect("a probed sample");
    let line = progress_line(sample.progress.as_ref().expect("progress"));
    assert!(line.contains("consensus progress"), "{line}");
    h.state_mut().panes[0].selected = Some(sample.id);
    h.state_mut().settings.color_by = ColorBy::Progress;
    for _ in 0..3 {
        h.step();
    }
    assert!(
        h.query_all_by_label(&line).next().is_some(),
        "inspector shows {line}"
    );
    assert!(h.query_all_by_label_contains("regret").next().is_some());
    assert!(h.query_all_by_label("probe tok").next().is_some());
    assert!(h
        .query_all_by_label(&cost.probe_tokens.to_string())
        .next()
        .is_some());
    // Colour by progress: a node with a Δp̂ is coloured by it, differently from one without.
    let groups = Default::default();
    let fill =
        |n: &thinkscope_engine::tree::Node| node_fill(n, ColorBy::Progress, (0.0, 1.0), &groups);
    if let Some(d) = tree.nodes.iter().find(|n| {
        n.progress
            .as_ref()
            .is_some_and(|p| p.delta.is_some_and(|d| d.abs() > 0.3))
    }) {
        let unprobed = tree
            .nodes
            .iter()
            .find(|n| n.progress.is_none() && n.kind == NodeKind::Generated);
        if let Some(u) = unprobed {
            assert_ne!(fill(d), fill(u));
        }
    }

    // With a known answer the same run is scored against it, and not called consensus.
    h.state_mut().settings.expected_answer = "5".into();
    h.step();
    run(&mut h);
    let tree = &h.state().panes[0].run.tree;
    let p = tree
        .nodes
        .iter()
        .find_map(|n| n.progress.as_ref())
        .expect("probed");
    assert_eq!(p.basis, ProgressBasis::Expected);
    assert_eq!(p.reference.as_deref(), Some("5"));
    assert!(!progress_line(p).contains("consensus"));
}

#[test]
fn the_device_menu_moves_the_model_and_keeps_it_when_that_fails() {
    use thinkscope_engine::device::DevicePref;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    ready(&mut h);
    // Device > cpu, through the menu as a user picks it.
    h.get_by_label("Device").click();
    h.run_steps(3);
    h.get_by_label("cpu").click();
    h.run_steps(3);
    wait_for(&mut h, "the reload on the CPU", |a| !a.loading());
    assert_eq!(h.state().settings.device, DevicePref::Cpu);
    let line = h.state().device_line().expect("a model is loaded");
    assert!(line.starts_with("CPU"), "device line: {line}");

    // Device > gpu: the best adapter, even a software one, or a clear error and the CPU model kept.
    h.get_by_label("Device").click();
    h.run_steps(3);
    h.get_by_label("gpu").click();
    h.run_steps(3);
    wait_for(&mut h, "the reload on the GPU", |a| !a.loading());
    assert!(h.state().model_ready(), "a model stays loaded either way");
    let line = h.state().device_line().expect("a model is loaded");
    if line.starts_with("GPU") {
        assert_eq!(h.state().settings.device, DevicePref::Gpu);
    } else {
        eprintln!("no GPU adapter here: {:?}", h.state().notices());
        assert!(line.starts_with("CPU"), "device line: {line}");
        assert_eq!(
            h.state().settings.device,
            DevicePref::Cpu,
            "the choice falls back"
        );
        assert!(
            h.state()
                .notices()
                .iter()
                .any(|n| n.contains("could not open")),
            "the failure is reported: {:?}",
            h.state().notices()
        );
    }
    // Either way a run completes on whatever runs the model now.
    h.state_mut().settings.panes[0].strategy = "system1".into();
    h.state_mut().run_all();
    wait_for(&mut h, "a run after the switch", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
    assert!(h.state().panes[0].run.tree.nodes.len() >= 2);

    // Back to the CPU: the GPU model (and its wgpu device) is freed once its worker has gone,
    // before the test ends (a device left to process exit can crash the software driver's
    // teardown).
    let gpu = std::sync::Arc::downgrade(&h.state().local_model().expect("a local model"));
    let ctx = h.ctx.clone();
    h.state_mut().set_device(&ctx, DevicePref::Cpu);
    wait_for(&mut h, "the reload on the CPU", |a| !a.loading());
    assert!(h
        .state()
        .device_line()
        .is_some_and(|l| l.starts_with("CPU")));
    wait_for(&mut h, "the old model to be freed", |_| {
        gpu.strong_count() == 0
    });
}

fn config(dir: &Path) -> std::path::PathBuf {
    dir.join("config")
}

fn autosaved(dir: &Path) -> Option<SessionFile> {
    SessionFile::read(&config(dir).join(autosave::AUTOSAVE)).ok()
}

fn harness_opening(
    dir: &Path,
    open: Option<std::path::PathBuf>,
) -> Harness<'static, ThinkscopeApp> {
    let model = dir.join("tiny.gguf");
    if !model.exists() {
        write_tiny_model(&model, &TinySpec::llama()).expect("tiny model");
    }
    let app = ThinkscopeApp::new(AppOptions {
        model_path: Some(model),
        config_dir: Some(config(dir)),
        models_dir: dir.to_owned(),
        open,
        ..AppOptions::default()
    });
    Harness::builder()
        .with_size([1280.0, 800.0])
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut ThinkscopeApp| app.ui(ui), app)
}

/// Run pane A with system1 and wait for it to end.
fn run_system1(h: &mut Harness<'static, ThinkscopeApp>, prompt: &str) {
    h.state_mut().settings.prompt = prompt.into();
    h.state_mut().settings.panes[0].strategy = "system1".into();
    h.state_mut().settings.panes[0].max_tokens = 12;
    h.state_mut().run_all();
    wait_for(h, "the run", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
}

#[test]
fn after_a_crash_the_autosave_is_offered_back_never_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tree = {
        let mut h = harness(d);
        ready(&mut h);
        run_system1(&mut h, "Name a colour.");
        let tree = h.state().panes[0].run.tree.clone();
        assert!(tree.nodes.len() >= 2);
        // A finished run is autosaved (by the writer thread) without any save by the user.
        wait_for(&mut h, "the autosave", |a| {
            autosaved(d).is_some_and(|s| s.panes[0].tree == a.panes[0].run.tree)
        });
        // A crash: nothing of the app's exit runs, as after a kill -9.
        std::mem::forget(h);
        tree
    };
    assert!(config(d).join(autosave::MARKER).exists());

    let mut h = harness(d);
    h.step();
    assert!(
        h.state().restore_offered(),
        "the crashed session is offered"
    );
    assert!(
        h.state().panes[0].run.tree.nodes.is_empty(),
        "nothing is restored without asking"
    );
    h.get_by_label("Restore previous session?");
    h.get_by_label("Restore").click();
    h.step();
    assert!(!h.state().restore_offered());
    assert_eq!(h.state().panes[0].run.tree, tree);
    assert_eq!(h.state().settings.prompt, "Name a colour.");
    // The restored session is autosaved in turn; crash again, and discard this time.
    wait_for(&mut h, "the autosave of the restored session", |a| {
        autosaved(d).is_some_and(|s| s.panes[0].tree == a.panes[0].run.tree)
    });
    std::mem::forget(h);

    let mut h = harness(d);
    h.step();
    assert!(h.state().restore_offered());
    h.get_by_label("Discard").click();
    h.step();
    assert!(!h.state().restore_offered());
    assert!(h.state().panes[0].run.tree.nodes.is_empty());
    let kept = SessionFile::read(&config(d).join(autosave::DISCARDED)).expect("kept aside");
    assert_eq!(kept.panes[0].tree, tree, "discarding keeps the file aside");
    // A clean exit clears the crash marker: the next start offers nothing.
    drop(h);
    assert!(!config(d).join(autosave::MARKER).exists());
    let mut h = harness(d);
    h.step();
    assert!(!h.state().restore_offered());
    assert!(h.query_by_label("Restore previous session?").is_none());
}

#[test]
fn opening_a_session_over_unsaved_work_asks_and_keeps_a_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut h = harness(d);
    ready(&mut h);
    run_system1(&mut h, "Count to three.");
    let mine = h.state().panes[0].run.tree.clone();
    assert!(h.state().unsaved_work());
    let file = d.join("other.json");
    let other = synthetic_session(h.state());
    other.write(&file).expect("write");

    // Cancel keeps the work.
    h.state_mut().request_open_session(&file);
    // A new window is sized in one frame and shown in the next.
    h.step();
    h.step();
    assert!(h.state().open_pending());
    assert_eq!(h.state().panes[0].run.tree, mine, "nothing replaced yet");
    h.get_by_label("Cancel").click();
    h.step();
    assert!(!h.state().open_pending());
    assert_eq!(h.state().panes[0].run.tree, mine);

    // Replace opens the file and keeps the replaced trees in the config folder.
    h.state_mut().request_open_session(&file);
    h.step();
    h.step();
    h.get_by_label("Replace").click();
    h.step();
    assert_eq!(h.state().panes[0].run.tree, other.panes[0].tree);
    let before = SessionFile::read(&config(d).join(autosave::BEFORE_OPEN)).expect("copy");
    assert_eq!(before.panes[0].tree, mine);
    // What was just opened is on disk: opening again asks nothing.
    assert!(!h.state().unsaved_work());
    h.state_mut().request_open_session(&file);
    h.step();
    assert!(!h.state().open_pending());

    // A file that is not a session is a message; the open trees stay.
    let bad = d.join("bad.json");
    std::fs::write(&bad, "[1, 2, 3]").expect("write");
    h.state_mut().request_open_session(&bad);
    h.step();
    assert!(!h.state().open_pending());
    assert!(h
        .state()
        .notices()
        .iter()
        .any(|n| n.contains("not a thinkscope session") && n.ends_with("bad.json")));
    assert_eq!(h.state().panes[0].run.tree, other.panes[0].tree);
}

#[test]
fn a_session_named_on_the_command_line_opens_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let file = d.join("start.json");
    {
        let h = harness_opening(d, None);
        synthetic_session(h.state()).write(&file).expect("write");
    }
    let want = SessionFile::read(&file).expect("read");
    let mut h = harness_opening(d, Some(file.clone()));
    h.step();
    assert_eq!(h.state().panes[0].run.tree, want.panes[0].tree);
    assert_eq!(h.state().settings.prompt, want.settings.prompt);
    assert!(h.state().notices().iter().any(|n| n.starts_with("Opened")));
    drop(h);

    // A tree exported as JSON opens the same way, as one pane.
    let exported = d.join("tree.json");
    std::fs::write(
        &exported,
        serde_json::to_string_pretty(&want.panes[0].tree).expect("json"),
    )
    .expect("write");
    let mut h = harness_opening(d, Some(exported));
    h.step();
    assert_eq!(h.state().panes[0].run.tree, want.panes[0].tree);
    drop(h);

    // A broken file is a clear message at start, and the app runs on with nothing lost.
    let broken = d.join("broken.json");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&broken, &text[..text.len() / 2]).expect("write");
    let mut h = harness_opening(d, Some(broken));
    ready(&mut h);
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.contains("the session was not opened") && n.ends_with("broken.json")),
        "{:?}",
        h.state().notices()
    );
    run_system1(&mut h, "Still works?");
    assert_eq!(
        h.state().panes[0].status,
        PaneStatus::Done(RunOutcome::Completed)
    );
}

/// A strategy that panics mid-run, registered the way any strategy is.
struct Panics;

impl StrategyDef for Panics {
    fn name(&self) -> &'static str {
        "test-panics"
    }

    fn title(&self) -> &'static str {
        "Panics (test)"
    }

    fn summary(&self) -> &'static str {
        "Writes a few tokens, then panics."
    }

    fn knobs(&self) -> Vec<Knob> {
        Vec::new()
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Single
    }

    fn run(&self, ctx: &mut Ctx, _p: &Params) -> thinkscope_engine::Result<()> {
        let root = ctx.start(true, false)?;
        let mut b = [ctx.continue_in_new_node(&root, "doomed")];
        ctx.generate(&mut b, &StopRule::to_end(3))?;
        let n = ctx.tree().nodes.len();
        panic!("strategy bug with {n} nodes");
    }
}

#[test]
fn a_panicking_strategy_fails_its_pane_with_the_message_and_the_next_run_works() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| register(Arc::new(Panics)).expect("register"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    ready(&mut h);
    h.state_mut().settings.panes[0].strategy = "test-panics".into();
    h.step();
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "the run to end", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
    assert_eq!(
        h.state().panes[0].status,
        PaneStatus::Done(RunOutcome::Failed)
    );
    // The pane says why, in its own header.
    let shown = h.get_by_label_contains("run failed:");
    let text = format!("{shown:?}");
    assert!(text.contains("strategy bug with"), "{text}");
    assert!(
        h.state().panes[0].run.tree.nodes.len() >= 2,
        "the partial tree stays"
    );
    // The same pane runs again.
    h.state_mut().settings.panes[0].strategy = "system1".into();
    h.state_mut().settings.panes[0].max_tokens = 8;
    h.step();
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "the next run", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
    assert_eq!(
        h.state().panes[0].status,
        PaneStatus::Done(RunOutcome::Completed)
    );
    assert!(h.query_by_label_contains("run failed:").is_none());
}

#[test]
fn a_hostile_template_fails_the_run_and_stop_and_quit_still_work() {
    use candle_core::quantized::gguf_file::Value;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let src = d.join("plain.gguf");
    write_tiny_model(&src, &TinySpec::llama()).expect("tiny");
    // `harness` opens tiny.gguf: make that the hostile one.
    rewrite_gguf(&src, &d.join("tiny.gguf"), |meta, _| {
        meta.retain(|(k, _)| k != "tokenizer.chat_template");
        meta.push((
            "tokenizer.chat_template".into(),
            Value::String(
                "{% for a in range(100000) %}{% for b in range(100000) %}\
                 {% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}"
                    .into(),
            ),
        ));
    })
    .expect("rewrite");
    let mut h = harness(d);
    ready(&mut h);
    h.state_mut().settings.panes[0].strategy = "self-consistency".into();
    h.step();
    // Stop right after Run: the UI never waits on the render.
    h.get_by_label("Run").click();
    h.step();
    h.get_by_label("Stop").click();
    h.step();
    wait_for(&mut h, "the stop", |a| !a.busy());
    // Run to the end: the template's error, in the pane.
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "the run to end", |a| !a.busy());
    assert_eq!(
        h.state().panes[0].status,
        PaneStatus::Done(RunOutcome::Failed)
    );
    let text = format!("{:?}", h.get_by_label_contains("run failed:"));
    assert!(text.contains("ran too long"), "{text}");
    // Quit: dropping the app (worker and all) returns.
    drop(h);
}

/// A run saved the way `thinkscope-cli run --save-session` saves it opens in the app: the same
/// tree, the pane set up to run it again.
#[test]
fn a_session_saved_by_the_cli_opens_and_runs_again() {
    use thinkscope_engine::events::RunId;
    use thinkscope_engine::session::{PaneSettings, SessionFile as EngineSession};
    use thinkscope_engine::strategy::{Knobs, RunConfig, Strategy};
    use thinkscope_engine::view::{run_to_end, Watch};
    use thinkscope_engine::worker::{Worker, WorkerOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let model_path = d.join("tiny.gguf");
    write_tiny_model(&model_path, &TinySpec::llama()).expect("tiny model");
    let model = Arc::new(
        thinkscope_engine::Model::load(&model_path, &candle_core::Device::Cpu).expect("load"),
    );
    let worker = Worker::spawn(model, WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let knobs = Knobs {
        samples: Some(2),
        ..Knobs::default()
    };
    let config = RunConfig {
        prompt: "what is 3 + 4 ?".into(),
        format: Default::default(),
        strategy: Strategy::from_name("self-consistency", &knobs).expect("strategy"),
        temperature: 0.7,
        top_p: 0.95,
        seed: 3,
        max_tokens: 6,
        budget_tokens: None,
        expected_answer: None,
        thinking: None,
        progress: None,
    };
    let view = run_to_end(
        &worker,
        RunId(1),
        config.clone(),
        Watch::default(),
        |_, _| {},
    )
    .expect("run");
    let file = d.join("from-cli.json");
    EngineSession::from_run(&config, view.tree.clone(), view.cost.clone())
        .write(&file)
        .expect("write");
    drop(worker);

    let mut h = harness_opening(d, Some(file));
    ready(&mut h);
    assert_eq!(h.state().panes[0].run.tree, view.tree);
    assert_eq!(h.state().settings.prompt, "what is 3 + 4 ?");
    assert_eq!(
        h.state().settings.panes[0],
        PaneSettings::from_config(&config)
    );
    assert_eq!(
        h.state().panes[0].status,
        PaneStatus::Done(RunOutcome::Completed)
    );
    // Run it again in the app: the same settings give a tree of the same shape.
    h.get_by_label("Run").click();
    h.step();
    wait_for(&mut h, "the rerun", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
    assert_eq!(
        h.state().panes[0].run.tree.nodes[0].children.len(),
        view.tree.nodes[0].children.len()
    );
}
