//! What can go wrong talking to a server, one variant per thing a user can do something about.
//! Every message is one line (server text is flattened and cut), names the server, and says what
//! to try.

/// Errors from an OpenAI-compatible server or the way to it.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The base URL does not parse or uses a scheme other than http/https.
    #[error("bad server URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },

    /// Nothing listens at the address.
    #[error(
        "cannot connect to {url}: connection refused (is the server running, and on that port?)"
    )]
    Refused { url: String },

    /// DNS, routing or TLS failed before any HTTP exchange.
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },

    /// 401 or 403.
    #[error(
        "{url} rejected the API key (HTTP {status}: {message}); set THINKSCOPE_API_KEY or OPENAI_API_KEY"
    )]
    Auth {
        url: String,
        status: u16,
        message: String,
    },

    /// 429 (or 503 with Retry-After) that did not clear within the retry budget.
    #[error("{url} is rate-limiting (HTTP {status}) and still was after {tries} tries over {waited_secs:.1} s")]
    RateLimited {
        url: String,
        status: u16,
        tries: u32,
        waited_secs: f64,
    },

    /// A 5xx answer.
    #[error("{url} failed (HTTP {status}): {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },

    /// Any other 4xx answer: the server understood and said no.
    #[error("{url} refused the request (HTTP {status}): {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
    },

    /// The connection closed or broke before the stream said it was done.
    #[error("{url}: the stream was cut after {tokens} token(s) ({reason}); the tokens that arrived are kept")]
    StreamCut {
        url: String,
        tokens: usize,
        reason: String,
    },

    /// The server sent something that is not the JSON it should be.
    #[error("{url} sent malformed JSON ({reason}): {snippet}")]
    Malformed {
        url: String,
        reason: String,
        snippet: String,
    },

    /// No answer (or no next byte of a stream) within the configured time.
    #[error("{url} did not answer within {secs:.0} s ({phase}); raise the timeout if the server is busy")]
    Timeout {
        url: String,
        secs: f64,
        phase: &'static str,
    },

    /// The user stopped the run; every open stream was closed.
    #[error("cancelled")]
    Cancelled,

    /// The server lacks something the request needs.
    #[error("{0}")]
    Unsupported(String),

    /// `--api-model` names a model the server does not serve.
    #[error("{url} does not serve a model named '{model}'; it serves: {served}")]
    UnknownModel {
        url: String,
        model: String,
        served: String,
    },

    /// The server serves several models and none was chosen.
    #[error("{url} serves {count} models, pick one with --api-model: {served}")]
    AmbiguousModel {
        url: String,
        count: usize,
        served: String,
    },

    /// `/v1/models` listed nothing.
    #[error("{url} lists no models under /v1/models")]
    NoModels { url: String },
}

/// The crate's result type.
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// Server-provided text made safe for a one-line message: whitespace runs become one space and
/// the text is cut at `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_flattened_and_cut() {
        assert_eq!(one_line("a\n\n  b\tc", 100), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn every_message_is_one_line() {
        let e = RemoteError::Server {
            url: "http://x".into(),
            status: 500,
            message: one_line("boom\ntrace", 50),
        };
        assert!(!e.to_string().contains('\n'));
    }
}
