//! What the real-server tests share: the default model's path, starting llama-cpp-python's
//! server on 127.0.0.1 (skipped with a reason unless CI requires it), and a sequence service
//! over it that renders the model's own chat template.

#![allow(dead_code)] // each test file uses its own part

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use thinkscope_remote::llama_server::{LlamaServer, LlamaServerOptions, StartError};
use thinkscope_remote::service::{RemoteOptions, RemoteService, TemplateSource};
use thinkscope_remote::{Client, ServerConfig};

/// The default model (`THINKSCOPE_MODELS_DIR`, else the repository's `models/`).
pub fn model_path() -> PathBuf {
    let dir = std::env::var_os("THINKSCOPE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A server, or `None` after printing why the test is skipped (never with
/// `THINKSCOPE_REQUIRE_LLAMA_SERVER=1`, as in CI: then a missing server fails the test).
pub fn server_with(options: &LlamaServerOptions) -> Option<LlamaServer> {
    match LlamaServer::start(&model_path(), options) {
        Ok(s) => Some(s),
        Err(StartError::NoVenv(why))
            if std::env::var("THINKSCOPE_REQUIRE_LLAMA_SERVER").as_deref() != Ok("1") =>
        {
            // Straight to stderr: libtest captures eprintln! of passing tests.
            let _ = writeln!(std::io::stderr(), "skipped: {why}");
            None
        }
        Err(e) => panic!("llama-cpp-python server: {e}"),
    }
}

/// A server with the default options.
pub fn server() -> Option<LlamaServer> {
    server_with(&LlamaServerOptions::default())
}

/// The sequence service over `server`: four requests in flight, the model's own template.
pub fn service(server: &LlamaServer) -> RemoteService {
    let mut cfg = ServerConfig::new(server.base_url());
    cfg.api_key = None;
    cfg.read_timeout = Duration::from_secs(120);
    let client = Client::connect(cfg, None).expect("connect");
    let options = RemoteOptions {
        concurrency: 4,
        // The model's own template, as the in-process engine renders it.
        chat_template: TemplateSource::from_gguf(&model_path()).expect("gguf"),
        ..RemoteOptions::default()
    };
    RemoteService::new(client, options).expect("service")
}
