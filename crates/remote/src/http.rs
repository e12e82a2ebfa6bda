//! HTTP plumbing: one blocking ureq agent per [`Session`], status codes mapped to
//! [`RemoteError`]s, bounded backoff on 429, and cancellation that closes every open connection.
//!
//! Why an agent per session: `ureq::Agent::shutdown` shuts down the sockets of every request in
//! flight on that agent and fails new ones, which is exactly what Stop must do to a run's
//! streams, and nothing else.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use ureq::http::Response;
use ureq::Body;

use crate::error::{one_line, RemoteError, Result};

/// Where the server is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Base URL as the user typed it (`http://host:8000` or `http://host:8000/v1`).
    pub base_url: String,
    /// Bearer token, if the server wants one. Never serialized.
    pub api_key: Option<ApiKey>,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest silence on an open connection (no header, no next byte of a stream). Queued
    /// requests on a busy server wait this long for their turn; SSE pings reset it.
    pub read_timeout: Duration,
    /// How 429 answers are retried.
    pub retry: RetryPolicy,
}

impl ServerConfig {
    /// A server at `base_url`, with the API key from the environment.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: ApiKey::from_env(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

/// Retry budget for 429 (and 503 with `Retry-After`): exponential backoff from `first_wait`,
/// honouring `Retry-After` up to `max_wait`, at most `max_tries` attempts in all.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_tries: u32,
    /// Wait after the first refusal; doubles each time.
    pub first_wait: Duration,
    /// Longest single wait.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_tries: 5,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(8),
        }
    }
}

/// An API key. Its `Debug` hides it, it has no `Serialize`, and nothing in this crate writes it
/// anywhere but the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key from text (trimmed); `None` when empty.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim();
        (!key.is_empty()).then(|| Self(key.to_owned()))
    }

    /// `THINKSCOPE_API_KEY`, else `OPENAI_API_KEY`, else none.
    pub fn from_env() -> Option<Self> {
        ["THINKSCOPE_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .find_map(|v| std::env::var(v).ok().and_then(|k| Self::new(&k)))
    }

    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(hidden)")
    }
}

/// Turn what the user typed into the server root (no trailing `/`, no trailing `/v1`).
pub fn normalize_base_url(url: &str) -> Result<String> {
    let bad = |reason: &str| RemoteError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = url.trim();
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("no host name"));
    }
    let mut root = trimmed.trim_end_matches('/').to_owned();
    if let Some(stripped) = root.strip_suffix("/v1") {
        root = stripped.to_owned();
    }
    root.parse::<ureq::http::Uri>()
        .map_err(|e| bad(&e.to_string()))?;
    Ok(root)
}

/// One run's connections to one server: requests made through it are closed together by
/// [`Session::cancel`].
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    root: String,
    key: Option<ApiKey>,
    retry: RetryPolicy,
    read_timeout: Duration,
    agent: ureq::Agent,
    cancelled: AtomicBool,
}

/// Most bytes read from a non-streamed answer (model lists, tokenizations, error bodies).
const MAX_BODY_BYTES: u64 = 16 << 20;

impl Session {
    /// A fresh session (its own connections) to the server in `config`.
    pub fn new(config: &ServerConfig) -> Result<Self> {
        let root = normalize_base_url(&config.base_url)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .timeout_per_write(Some(config.read_timeout))
            .user_agent(concat!("thinkscope/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(64)
            .build()
            .new_agent();
        Ok(Self {
            inner: Arc::new(SessionInner {
                root,
                key: config.api_key.clone(),
                retry: config.retry,
                read_timeout: config.read_timeout,
                agent,
                cancelled: AtomicBool::new(false),
            }),
        })
    }

    /// The server root this session talks to.
    pub fn root(&self) -> &str {
        &self.inner.root
    }

    /// Close every open connection of this session now; requests in flight fail with
    /// [`RemoteError::Cancelled`], and so does every later one.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.agent.clone().shutdown();
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.root)
    }

    /// GET `path` and parse the JSON answer.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(path, None)?;
        self.read_json(path, resp)
    }

    /// POST JSON to `path` and parse the JSON answer.
    pub(crate) fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| RemoteError::Unsupported(e.to_string()))?;
        let resp = self.send(path, Some(&bytes))?;
        self.read_json(path, resp)
    }

    /// POST JSON to `path` and hand back the open response body (for SSE).
    pub(crate) fn post_stream(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Box<dyn Read + Send>> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| RemoteError::Unsupported(e.to_string()))?;
        let resp = self.send(path, Some(&bytes))?;
        Ok(Box::new(resp.into_body().into_reader()))
    }

    fn read_json<T: DeserializeOwned>(&self, path: &str, resp: Response<Body>) -> Result<T> {
        let url = self.url(path);
        let text = resp
            .into_body()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|e| self.map_error(&url, e, "reading the answer"))?;
        parse_json(&url, &text)
    }

    /// One exchange with status mapping and 429 backoff. Only 2xx answers come back.
    fn send(&self, path: &str, body: Option<&[u8]>) -> Result<Response<Body>> {
        let url = self.url(path);
        let policy = self.inner.retry;
        let started = Instant::now();
        let mut wait = policy.first_wait;
        let mut tries = 0;
        loop {
            if self.is_cancelled() {
                return Err(RemoteError::Cancelled);
            }
            tries += 1;
            let result = match body {
                Some(bytes) => {
                    let mut req = self
                        .inner
                        .agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("Accept", "application/json, text/event-stream");
                    if let Some(key) = &self.inner.key {
                        req = req.header("Authorization", key.bearer());
                    }
                    req.send(bytes)
                }
                None => {
                    let mut req = self.inner.agent.get(&url);
                    if let Some(key) = &self.inner.key {
                        req = req.header("Authorization", key.bearer());
                    }
                    req.call()
                }
            };
            let resp = result.map_err(|e| self.map_error(&url, e, "waiting for the answer"))?;
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let retryable = status == 429 || (status == 503 && retry_after.is_some());
            if retryable && tries < policy.max_tries {
                let pause = retry_after.unwrap_or(wait).min(policy.max_wait);
                tracing::debug!(%url, status, ?pause, "server asks to slow down; retrying");
                self.sleep(pause)?;
                wait = (wait * 2).min(policy.max_wait);
                continue;
            }
            let message = error_message(resp);
            return Err(match status {
                401 | 403 => RemoteError::Auth {
                    url,
                    status,
                    message,
                },
                _ if retryable => RemoteError::RateLimited {
                    url,
                    status,
                    tries,
                    waited_secs: started.elapsed().as_secs_f64(),
                },
                500..=599 => RemoteError::Server {
                    url,
                    status,
                    message,
                },
                _ => RemoteError::Rejected {
                    url,
                    status,
                    message,
                },
            });
        }
    }

    /// Sleep in short steps so a cancel does not wait out a backoff.
    fn sleep(&self, total: Duration) -> Result<()> {
        let end = Instant::now() + total;
        while Instant::now() < end {
            if self.is_cancelled() {
                return Err(RemoteError::Cancelled);
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
        Ok(())
    }

    pub(crate) fn map_error(&self, url: &str, e: ureq::Error, phase: &'static str) -> RemoteError {
        if self.is_cancelled() {
            return RemoteError::Cancelled;
        }
        let url = url.to_owned();
        match e {
            ureq::Error::Timeout(t) => RemoteError::Timeout {
                url,
                secs: self.inner.read_timeout.as_secs_f64(),
                phase: match t {
                    ureq::Timeout::Connect | ureq::Timeout::Resolve => "connecting",
                    _ => phase,
                },
            },
            ureq::Error::Io(io) => self.map_io(url, &io, phase),
            ureq::Error::HostNotFound => RemoteError::Unreachable {
                url,
                reason: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => RemoteError::Unreachable {
                url,
                reason: "connection failed".into(),
            },
            ureq::Error::Tls(reason) => RemoteError::Unreachable {
                url,
                reason: format!("TLS: {reason}"),
            },
            ureq::Error::BodyExceedsLimit(n) => RemoteError::Malformed {
                url,
                reason: format!("answer longer than {n} bytes"),
                snippet: String::new(),
            },
            other => RemoteError::Unreachable {
                url,
                reason: one_line(&other.to_string(), 200),
            },
        }
    }

    pub(crate) fn map_io(
        &self,
        url: String,
        io: &std::io::Error,
        phase: &'static str,
    ) -> RemoteError {
        use std::io::ErrorKind;
        if self.is_cancelled() {
            return RemoteError::Cancelled;
        }
        if let Some(ureq::Error::Timeout(_)) =
            io.get_ref().and_then(|e| e.downcast_ref::<ureq::Error>())
        {
            return RemoteError::Timeout {
                url,
                secs: self.inner.read_timeout.as_secs_f64(),
                phase,
            };
        }
        match io.kind() {
            ErrorKind::ConnectionRefused => RemoteError::Refused { url },
            ErrorKind::TimedOut | ErrorKind::WouldBlock => RemoteError::Timeout {
                url,
                secs: self.inner.read_timeout.as_secs_f64(),
                phase,
            },
            _ => RemoteError::Unreachable {
                url,
                reason: one_line(&io.to_string(), 200),
            },
        }
    }
}

/// Parse a JSON answer, or say what it was instead.
pub(crate) fn parse_json<T: DeserializeOwned>(url: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| RemoteError::Malformed {
        url: url.to_owned(),
        reason: e.to_string(),
        snippet: one_line(text, 120),
    })
}

/// The human part of an error answer: OpenAI's `{"error": {"message"}}`, FastAPI's
/// `{"detail"}`, a bare `{"message"}`, or the text itself.
fn error_message(resp: Response<Body>) -> String {
    let reason = resp
        .status()
        .canonical_reason()
        .unwrap_or("no reason given")
        .to_owned();
    let text = resp
        .into_body()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    let from_json = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let pick = |v: &serde_json::Value| -> Option<String> {
                match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            };
            v.get("error")
                .and_then(|e| e.get("message").and_then(pick).or_else(|| pick(e)))
                .or_else(|| v.get("detail").and_then(pick))
                .or_else(|| v.get("message").and_then(pick))
        });
    let message = from_json.unwrap_or(text);
    if message.trim().is_empty() {
        reason
    } else {
        one_line(&message, 240)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_normalize_to_the_root() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8000/v1/")
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            normalize_base_url(" https://h.example/openai ")
                .ok()
                .as_deref(),
            Some("https://h.example/openai")
        );
        assert!(matches!(
            normalize_base_url("127.0.0.1:8000"),
            Err(RemoteError::BadUrl { .. })
        ));
        assert!(matches!(
            normalize_base_url("http:///v1"),
            Err(RemoteError::BadUrl { .. })
        ));
    }

    #[test]
    fn api_keys_never_show_in_debug_output() {
        let key = ApiKey::new(" sk-secret ").expect("key");
        assert_eq!(format!("{key:?}"), "ApiKey(hidden)");
        assert_eq!(key.bearer(), "Bearer sk-secret");
        assert!(ApiKey::new("  ").is_none());
    }
}
