//! Faults against a tiny hand-written HTTP server on 127.0.0.1 that misbehaves on purpose:
//! refused connections, 401, 429 (cleared and not), 5xx, malformed JSON, a stream cut
//! mid-token, a stalled server, and Stop closing a stream that would never end.
//! Each error must be its own variant, and its message one line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thinkscope_remote::{
    ApiKey, Client, CompletionParams, Prompt, RemoteError, RetryPolicy, ServerConfig,
};

/// What the fake server does with completion requests after the connect probe.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Good,
    Unauthorized,
    TooManyThenOk(usize),
    AlwaysTooMany,
    ServerError,
    Malformed,
    CutMidToken,
    Stall,
    Endless,
}

struct Fake {
    port: u16,
    /// Set when a write to a client fails (the client closed the stream).
    client_closed: Arc<AtomicBool>,
    completions: Arc<AtomicUsize>,
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    let mut content_length = 0usize;
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            auth = line.trim().to_owned();
        }
        if head.is_empty() {
            head = line.clone();
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    let path = head.split_whitespace().nth(1)?.to_owned();
    Some((path, auth, String::from_utf8_lossy(&body).into_owned()))
}

fn respond(stream: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

fn chunk(stream: &mut TcpStream, data: &str) -> std::io::Result<()> {
    write!(stream, "{:x}\r\n{data}\r\n", data.len())?;
    stream.flush()
}

fn token_event(text: &str, lp: f32) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"text\":{t},\"logprobs\":{{\"tokens\":[{t}],\"token_logprobs\":[{lp}],\"top_logprobs\":[{{{t}:{lp},\"zz\":-3.0}}]}},\"finish_reason\":null}}]}}\n\n",
        t = serde_json::to_string(text).unwrap_or_default()
    )
}

fn start(scenario: Scenario) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let client_closed = Arc::new(AtomicBool::new(false));
    let completions = Arc::new(AtomicUsize::new(0));
    let (closed, count) = (client_closed.clone(), completions.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (closed, count) = (closed.clone(), count.clone());
            std::thread::spawn(move || {
                let Some((path, _auth, _body)) = read_request(&mut stream) else {
                    return;
                };
                if scenario == Scenario::Unauthorized {
                    respond(
                        &mut stream,
                        "401 Unauthorized",
                        "",
                        r#"{"detail":"Invalid API key"}"#,
                    );
                    return;
                }
                match path.as_str() {
                    "/v1/models" => respond(
                        &mut stream,
                        "200 OK",
                        "",
                        r#"{"object":"list","data":[{"id":"fake-model","object":"model","owned_by":"fake"}]}"#,
                    ),
                    "/v1/completions" => {
                        let nth = count.fetch_add(1, Ordering::SeqCst);
                        // The first completion is the connect probe: answer it well.
                        let act = if nth == 0 { Scenario::Good } else { scenario };
                        complete(&mut stream, act, nth, &closed);
                    }
                    _ => respond(
                        &mut stream,
                        "404 Not Found",
                        "",
                        r#"{"detail":"Not Found"}"#,
                    ),
                }
            });
        }
    });
    Fake {
        port,
        client_closed,
        completions,
    }
}

fn complete(stream: &mut TcpStream, act: Scenario, nth: usize, closed: &AtomicBool) {
    let sse_head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    match act {
        Scenario::TooManyThenOk(k) if nth <= k => {
            respond(
                stream,
                "429 Too Many Requests",
                "Retry-After: 0\r\n",
                r#"{"error":{"message":"slow down"}}"#,
            );
        }
        Scenario::AlwaysTooMany => {
            respond(
                stream,
                "429 Too Many Requests",
                "",
                r#"{"error":{"message":"slow down"}}"#,
            );
        }
        Scenario::ServerError => respond(
            stream,
            "500 Internal Server Error",
            "",
            r#"{"error":{"message":"CUDA out of memory\nTraceback: ...","type":"internal_server_error"}}"#,
        ),
        Scenario::Stall => std::thread::sleep(Duration::from_secs(5)),
        Scenario::Malformed => {
            let _ = stream.write_all(sse_head.as_bytes());
            let _ = chunk(stream, &token_event(" 4", -0.2));
            let _ = chunk(stream, "data: {this is not json}\n\n");
            let _ = chunk(stream, "data: [DONE]\n\n");
            let _ = stream.write_all(b"0\r\n\r\n");
        }
        Scenario::CutMidToken => {
            let _ = stream.write_all(sse_head.as_bytes());
            let _ = chunk(stream, &token_event(" 4", -0.2));
            let _ = chunk(stream, &token_event(" 5", -0.3));
            // Half an event, then the connection dies.
            let _ = chunk(stream, "data: {\"choices\":[{\"index\":0,\"te");
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Scenario::Endless => {
            let _ = stream.write_all(sse_head.as_bytes());
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if chunk(stream, &token_event(" x", -0.5)).is_err() {
                    closed.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        _ => {
            let _ = stream.write_all(sse_head.as_bytes());
            let _ = chunk(stream, &token_event(" 4", -0.2));
            let _ = chunk(stream, &token_event("\n", -0.1));
            let _ = chunk(
                stream,
                "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
            );
            let _ = chunk(stream, "data: [DONE]\n\n");
            let _ = stream.write_all(b"0\r\n\r\n");
        }
    }
}

fn config(port: u16) -> ServerConfig {
    let mut c = ServerConfig::new(format!("http://127.0.0.1:{port}/v1"));
    c.api_key = ApiKey::new("test-key");
    c.read_timeout = Duration::from_secs(2);
    c.retry = RetryPolicy {
        max_tries: 4,
        first_wait: Duration::from_millis(10),
        max_wait: Duration::from_millis(50),
    };
    c
}

fn params() -> CompletionParams {
    let mut p = CompletionParams::new(Prompt::Text("2+2=".into()), 8);
    p.top_logprobs = 2;
    p
}

/// Run one completion after connecting; return the error and the tokens that arrived first.
fn run(scenario: Scenario) -> (RemoteError, Vec<String>) {
    let fake = start(scenario);
    let client = Client::connect(config(fake.port), None).expect("connect");
    let session = client.session().expect("session");
    let mut got = Vec::new();
    let err = client
        .complete(&session, &params(), &mut |_, t| {
            got.push(t.text);
            ControlFlow::Continue(())
        })
        .expect_err("this scenario fails");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    (err, got)
}

#[test]
fn a_good_stream_gives_tokens_logprobs_and_sorted_alternatives() {
    let fake = start(Scenario::Good);
    let client = Client::connect(config(fake.port), None).expect("connect");
    assert_eq!(client.info().model, "fake-model");
    let caps = &client.info().capabilities;
    assert!(caps.logprobs);
    assert!(!caps.n, "one choice came back for n=2");
    assert!(caps.tokenize.is_none());
    let session = client.session().expect("session");
    let mut toks = Vec::new();
    let out = client
        .complete(&session, &params(), &mut |_, t| {
            toks.push(t);
            ControlFlow::Continue(())
        })
        .expect("complete");
    assert_eq!(out.choices[0].text, " 4\n");
    assert_eq!(out.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(toks.len(), 2);
    assert_eq!(toks[0].logprob, Some(-0.2));
    assert_eq!(toks[0].top[0].text, " 4");
    assert_eq!(toks[0].top[1].logprob, -3.0);
    assert!(out.usage.is_none(), "the fake sends no usage");
}

#[test]
fn connection_refused_is_one_clear_line() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = Client::connect(config(port), None).err().expect("refused");
    assert!(matches!(err, RemoteError::Refused { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("connection refused") && !msg.contains('\n'),
        "{msg}"
    );
}

#[test]
fn a_wrong_key_says_so_in_one_line() {
    let fake = start(Scenario::Unauthorized);
    let err = Client::connect(config(fake.port), None).err().expect("401");
    assert!(
        matches!(err, RemoteError::Auth { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("Invalid API key") && msg.contains("THINKSCOPE_API_KEY"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn rate_limits_are_retried_then_given_up_on() {
    let fake = start(Scenario::TooManyThenOk(2));
    let client = Client::connect(config(fake.port), None).expect("connect");
    let session = client.session().expect("session");
    let out = client
        .complete(&session, &params(), &mut |_, _| ControlFlow::Continue(()))
        .expect("cleared after two 429s");
    assert_eq!(out.choices[0].text, " 4\n");
    assert_eq!(
        fake.completions.load(Ordering::SeqCst),
        4,
        "probe + 2 refused + 1 served"
    );

    let (err, _) = run(Scenario::AlwaysTooMany);
    assert!(
        matches!(err, RemoteError::RateLimited { tries: 4, .. }),
        "{err:?}"
    );
}

#[test]
fn server_errors_carry_the_servers_message_on_one_line() {
    let (err, _) = run(Scenario::ServerError);
    assert!(
        matches!(err, RemoteError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("CUDA out of memory Traceback"),
        "{err}"
    );
}

#[test]
fn malformed_json_is_reported_and_what_came_before_is_kept() {
    let (err, got) = run(Scenario::Malformed);
    assert!(matches!(err, RemoteError::Malformed { .. }), "{err:?}");
    assert_eq!(got, vec![" 4"]);
}

#[test]
fn a_stream_cut_mid_token_keeps_the_tokens_that_arrived() {
    let (err, got) = run(Scenario::CutMidToken);
    assert!(
        matches!(err, RemoteError::StreamCut { tokens: 2, .. }),
        "{err:?}"
    );
    assert_eq!(got, vec![" 4", " 5"]);
}

#[test]
fn a_stalled_server_times_out() {
    // The fake sleeps 5 s and then closes; a timeout (not a cut stream) means the client gave up
    // on its own 2 s read timeout first.
    let (err, _) = run(Scenario::Stall);
    assert!(matches!(err, RemoteError::Timeout { .. }), "{err:?}");
}

#[test]
fn cancel_closes_an_endless_stream_at_once() {
    let fake = start(Scenario::Endless);
    let client = Client::connect(config(fake.port), None).expect("connect");
    let session = client.session().expect("session");
    let canceller = {
        let session = session.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            session.cancel();
        })
    };
    let mut got = 0;
    let err = client
        .complete(&session, &params(), &mut |_, _| {
            got += 1;
            ControlFlow::Continue(())
        })
        .expect_err("cancelled");
    canceller.join().expect("join");
    assert!(matches!(err, RemoteError::Cancelled), "{err:?}");
    assert!(got > 0, "tokens arrived before the cancel");
    // The server notices the closed connection on its next write (every 20 ms).
    let wait = Instant::now();
    while !fake.client_closed.load(Ordering::SeqCst) && wait.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        fake.client_closed.load(Ordering::SeqCst),
        "the stream was closed"
    );
    // A cancelled session refuses new requests.
    let again = client.complete(&session, &params(), &mut |_, _| ControlFlow::Continue(()));
    assert!(matches!(again, Err(RemoteError::Cancelled)));
}

#[test]
fn a_client_side_stop_closes_the_stream_early() {
    let fake = start(Scenario::Endless);
    let client = Client::connect(config(fake.port), None).expect("connect");
    let session = client.session().expect("session");
    let mut got = 0;
    let out = client
        .complete(&session, &params(), &mut |_, _| {
            got += 1;
            if got == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("closed early");
    assert_eq!(out.choices[0].tokens, 3);
    assert!(out.choices[0].closed_early);
    assert_eq!(out.choices[0].finish_reason, None);
}

#[test]
fn bad_urls_and_unknown_models_are_one_line_errors() {
    let err = Client::connect(ServerConfig::new("localhost:8000"), None)
        .err()
        .expect("bad url");
    assert!(matches!(err, RemoteError::BadUrl { .. }), "{err}");
    let fake = start(Scenario::Good);
    let err = Client::connect(config(fake.port), Some("gpt-9"))
        .err()
        .expect("unknown model");
    assert!(
        err.to_string().contains("'fake-model'") && !err.to_string().contains('\n'),
        "{err}"
    );
}
