//! Starts llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for tests and benchmarks:
//! a free port, readiness by polling `/v1/models`, the process killed on drop.
//!
//! The venv comes from `THINKSCOPE_LLAMA_VENV` (default `~/.cache/thinkscope/llama-venv`,
//! which `.ci/llama-server-venv.sh` creates). Without it, [`LlamaServer::start`] says why, so a
//! test can print that it skipped.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options for the server process.
#[derive(Clone, Debug, Default)]
pub struct LlamaServerOptions {
    /// Require this API key (`--api_key`).
    pub api_key: Option<String>,
    /// Context window (`--n_ctx`); the server's default is 2048.
    pub n_ctx: Option<usize>,
}

/// A running llama-cpp-python server; killed when dropped.
pub struct LlamaServer {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

/// Why no server could be started.
#[derive(Debug)]
pub enum StartError {
    /// The venv (or its python) is missing: tests skip, saying so.
    NoVenv(String),
    /// The process did not come up.
    Failed(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoVenv(s) | StartError::Failed(s) => f.write_str(s),
        }
    }
}

/// The venv holding llama-cpp-python's server.
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("THINKSCOPE_LLAMA_VENV").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/thinkscope/llama-venv")
}

/// How long the server may take to load the model and answer.
const READY_WITHIN: Duration = Duration::from_secs(120);

impl LlamaServer {
    /// Start a server for `model` and wait until it answers.
    pub fn start(model: &Path, options: &LlamaServerOptions) -> Result<Self, StartError> {
        let venv = venv_dir();
        let python = venv.join("bin/python");
        if !python.is_file() {
            return Err(StartError::NoVenv(format!(
                "no llama-cpp-python venv at {} (run .ci/llama-server-venv.sh or set THINKSCOPE_LLAMA_VENV)",
                venv.display()
            )));
        }
        if !model.is_file() {
            return Err(StartError::Failed(format!(
                "model file not found: {}",
                model.display()
            )));
        }
        // A port nobody holds right now; the server binds it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| StartError::Failed(format!("no free port: {e}")))?;
        let log = std::env::temp_dir().join(format!("thinkscope-llama-server-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| StartError::Failed(format!("{e}: {}", log.display())))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| StartError::Failed(e.to_string()))?;
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // The default lets each new request cut the stream in progress short (it sends
            // [DONE] early): fatal for many branches in flight.
            .args(["--interrupt_requests", "False", "--verbose", "False"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file));
        if let Some(key) = &options.api_key {
            cmd.args(["--api_key", key]);
        }
        if let Some(n) = options.n_ctx {
            cmd.args(["--n_ctx", &n.to_string()]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| StartError::Failed(format!("{e}: {}", python.display())))?;
        let mut server = Self {
            child: Some(child),
            port,
            log,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last part of the server's log (for failing tests).
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    /// Kill the server now (tests of a server dying mid-run).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let started = Instant::now();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        let url = format!("{}/v1/models", self.base_url());
        while started.elapsed() < READY_WITHIN {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let tail = self.log_tail();
                    self.child = None;
                    return Err(StartError::Failed(format!(
                        "llama-cpp-python server exited ({status}) before it was ready: {tail}"
                    )));
                }
            }
            // Any HTTP answer (200, or 401 with a key) means it is up.
            if agent.get(&url).call().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let tail = self.log_tail();
        self.kill();
        Err(StartError::Failed(format!(
            "llama-cpp-python server not ready within {} s: {tail}",
            READY_WITHIN.as_secs()
        )))
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
