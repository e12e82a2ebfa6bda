//! `--backend openai` end to end: `thinkscope-cli` run as a user runs it against the real
//! llama-cpp-python server on the default model, started on 127.0.0.1 by the test (skipped, with
//! a line saying why, when its venv is missing; CI requires it).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use thinkscope_remote::llama_server::{LlamaServer, LlamaServerOptions, StartError};

fn model_path() -> PathBuf {
    let dir = std::env::var_os("THINKSCOPE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn server(options: &LlamaServerOptions) -> Option<LlamaServer> {
    match LlamaServer::start(&model_path(), options) {
        Ok(s) => Some(s),
        Err(StartError::NoVenv(why))
            if std::env::var("THINKSCOPE_REQUIRE_LLAMA_SERVER").as_deref() != Ok("1") =>
        {
            let _ = writeln!(std::io::stderr(), "skipped: {why}");
            None
        }
        Err(e) => panic!("llama-cpp-python server: {e}"),
    }
}

fn cli(url: &str, args: &[&str], key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"));
    cmd.args(args)
        .args(["--backend", "openai", "--base-url", url])
        .env_remove("OPENAI_API_KEY")
        .env_remove("THINKSCOPE_API_KEY");
    if let Some(k) = key {
        cmd.env("THINKSCOPE_API_KEY", k);
    }
    cmd.output().expect("run thinkscope-cli")
}

#[test]
fn generate_run_and_lab_over_a_server() {
    let Some(server) = server(&LlamaServerOptions::default()) else {
        return;
    };
    let url = format!("{}/v1", server.base_url());

    // generate --json: tokens with log-probs and alternatives, usage-based cost, reuse unknown.
    let out = cli(
        &url,
        &[
            "generate",
            "--prompt",
            "What is 2+3? Answer with a number.",
            "--temperature",
            "0",
            "--max-tokens",
            "16",
            "--json",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["text"].as_str().is_some_and(|t| t.contains('5')), "{v}");
    let tokens = v["tokens"].as_array().expect("tokens");
    assert!(!tokens.is_empty() && tokens.len() <= 16);
    assert!(tokens
        .iter()
        .all(|t| t["logprob"].as_f64().is_some_and(|l| l <= 0.0)));
    assert!(
        v["cost"]["tokens_reused"].is_null(),
        "reuse is unknown: {v}"
    );
    assert!(v["device"]
        .as_str()
        .is_some_and(|d| d.contains("llama-cpp-python")));

    // run: a strategy, its answer and its meters.
    let out = cli(
        &url,
        &[
            "run",
            "--strategy",
            "self-consistency",
            "--samples",
            "2",
            "--max-tokens",
            "32",
            "--prompt",
            "What is 2 + 3?",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("answer:") && stdout.contains("votes:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unknown (not reported by the server)"),
        "{stdout}"
    );

    // lab: a sweep over the server, then the same command resumes from the results file.
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("lab.csv");
    let csv_arg = csv.to_str().expect("utf-8 path");
    let lab = || {
        cli(
            &url,
            &[
                "lab",
                "--generate",
                "arithmetic:2",
                "--strategies",
                "greedy",
                "--max-n",
                "1",
                "--max-tokens",
                "24",
                "--concurrency",
                "2",
                "--csv",
                csv_arg,
            ],
            None,
        )
    };
    let first = lab();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(csv.is_file());
    let again = lab();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("resuming: 2 of 2"), "{stderr}");
}

#[test]
fn a_wrong_url_a_wrong_key_and_an_unknown_model_are_one_line_errors() {
    let options = LlamaServerOptions {
        api_key: Some("right-key".into()),
        ..LlamaServerOptions::default()
    };
    let Some(server) = server(&options) else {
        return;
    };
    let url = format!("{}/v1", server.base_url());
    let args = [
        "run",
        "--strategy",
        "system1",
        "--prompt",
        "hi",
        "--max-tokens",
        "4",
    ];
    let one_line_error = |out: &Output| -> String {
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };

    let wrong_key = one_line_error(&cli(&url, &args, Some("wrong-key")));
    assert!(wrong_key.contains("rejected the API key"), "{wrong_key}");
    assert!(
        !wrong_key.contains("wrong-key"),
        "the key is not echoed: {wrong_key}"
    );

    let dead = format!("http://127.0.0.1:{}/v1", server.port() ^ 1);
    let refused = one_line_error(&cli(&dead, &args, Some("right-key")));
    assert!(refused.contains("connection refused"), "{refused}");

    let mut with_model = args.to_vec();
    with_model.extend(["--api-model", "gpt-9"]);
    let unknown = one_line_error(&cli(&url, &with_model, Some("right-key")));
    assert!(
        unknown.contains("does not serve a model named 'gpt-9'"),
        "{unknown}"
    );

    let no_url = Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .args(args)
        .args(["--backend", "openai"])
        .output()
        .expect("run");
    let missing = one_line_error(&no_url);
    assert!(missing.contains("--base-url"), "{missing}");
}
