//! "Connect to server…" driven like a person would: the dialog's fields and its Connect button.
//! A refused port gives one clear notice; the real llama-cpp-python server (started on
//! 127.0.0.1 by the test; skipped with a note when its venv is missing) takes over the panes, a
//! run draws its tree, and the typed API key is in no saved file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use thinkscope::ui::app::PaneStatus;
use thinkscope::ui::{AppOptions, ThinkscopeApp};
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};
use thinkscope_remote::llama_server::{LlamaServer, LlamaServerOptions, StartError};

fn harness(dir: &Path) -> Harness<'static, ThinkscopeApp> {
    let model = dir.join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::llama()).expect("tiny model");
    let app = ThinkscopeApp::new(AppOptions {
        model_path: Some(model),
        config_dir: Some(dir.join("config")),
        models_dir: dir.to_owned(),
        ..AppOptions::default()
    });
    Harness::builder()
        .with_size([1280.0, 800.0])
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut ThinkscopeApp| app.ui(ui), app)
}

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

fn connect(h: &mut Harness<'static, ThinkscopeApp>, url: &str, key: &str) {
    // (The File menu's "Connect to server…" item does this; kittest cannot open egui menus.)
    h.state_mut().open_connect_dialog();
    h.run();
    h.state_mut().settings.server_url = url.to_owned();
    h.step();
    if !key.is_empty() {
        let field = h.get_by_role(eframe::egui::Role::PasswordInput);
        field.focus();
        field.type_text(key);
        h.step();
    }
    h.get_by_label("Connect").click();
    h.step();
}

fn model_path() -> PathBuf {
    let dir = std::env::var_os("THINKSCOPE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn connect_to_server_dialog() {
    // The key must come from the dialog here, not from the environment.
    std::env::remove_var("THINKSCOPE_API_KEY");
    std::env::remove_var("OPENAI_API_KEY");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path());
    wait_for(&mut h, "the local model", |a| a.model_ready());

    // A port nobody listens on: one line saying so; the local model stays in use.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    connect(&mut h, &format!("http://127.0.0.1:{dead}/v1"), "");
    wait_for(&mut h, "the refusal", |a| {
        a.notices()
            .iter()
            .any(|n| n.starts_with("could not connect"))
    });
    let notice = h
        .state()
        .notices()
        .into_iter()
        .find(|n| n.starts_with("could not connect"))
        .unwrap_or_default();
    assert!(
        notice.contains("connection refused") && !notice.contains('\n'),
        "{notice}"
    );
    assert!(h.state().model_ready());

    let server = match LlamaServer::start(
        &model_path(),
        &LlamaServerOptions {
            api_key: Some("sk-typed-in-the-dialog".into()),
            ..LlamaServerOptions::default()
        },
    ) {
        Ok(s) => s,
        Err(StartError::NoVenv(why))
            if std::env::var("THINKSCOPE_REQUIRE_LLAMA_SERVER").as_deref() != Ok("1") =>
        {
            let _ = writeln!(std::io::stderr(), "skipped: {why}");
            return;
        }
        Err(e) => panic!("llama-cpp-python server: {e}"),
    };
    h.state_mut().clear_notices();
    connect(
        &mut h,
        &format!("{}/v1", server.base_url()),
        "sk-typed-in-the-dialog",
    );
    wait_for(&mut h, "the server", |a| {
        a.notices()
            .iter()
            .any(|n| n.starts_with("Connected") || n.starts_with("could not"))
    });
    let notices = h.state().notices();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("llama-cpp-python at http://127.0.0.1")),
        "{notices:?}"
    );

    // A run on the server draws its tree.
    h.state_mut().settings.prompt = "What is 2 + 3?".into();
    h.state_mut().run_all();
    wait_for(&mut h, "the run on the server", |a| {
        matches!(a.panes[0].status, PaneStatus::Done(_))
    });
    let pane = &h.state().panes[0];
    assert!(pane.run.tree.token_count() > 0, "{}", pane.run.error_line());
    assert!(
        pane.run.cost.tokens_reused_unknown,
        "llama-cpp-python reports no reuse"
    );

    // The key is in no file the app wrote.
    h.state_mut().save_now();
    for entry in walk(&dir.path().join("config")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains("sk-typed-in-the-dialog"),
            "the key is in {}",
            entry.display()
        );
    }
    assert_eq!(
        h.state().settings.server_url,
        format!("{}/v1", server.base_url())
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
