//! The client against the real llama-cpp-python server on the real default model
//! (SmolLM2-135M-Instruct Q4_1), started on 127.0.0.1 by the test. Without the venv the tests
//! print that they skipped and why; CI sets THINKSCOPE_REQUIRE_LLAMA_SERVER=1, which turns a
//! missing venv into a failure.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thinkscope_remote::llama_server::{LlamaServer, LlamaServerOptions};
use thinkscope_remote::pool::run_bounded;
use thinkscope_remote::{
    ApiKey, Client, CompletionParams, Dialect, Prompt, RemoteError, ServerConfig, TokenizeRoute,
};

mod common;
use common::server_with as server;

fn config(server: &LlamaServer) -> ServerConfig {
    let mut c = ServerConfig::new(server.base_url());
    c.api_key = None;
    c.read_timeout = Duration::from_secs(120);
    c
}

const CHAT: &str =
    "<|im_start|>user\nWhat is 2+3? Answer with a number.<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn real_server_paths() {
    let Some(server) = server(&LlamaServerOptions::default()) else {
        return;
    };
    let client = Client::connect(config(&server), None).expect("connect");
    let info = client.info();
    assert_eq!(
        info.dialect,
        Dialect::LlamaCppPython,
        "{}",
        server.log_tail()
    );
    assert!(
        info.model.ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{}",
        info.model
    );
    let caps = &info.capabilities;
    assert!(caps.logprobs, "{}", caps.describe());
    assert!(caps.top_logprobs >= 5, "{}", caps.describe());
    assert!(!caps.n, "llama-cpp-python ignores n");
    assert_eq!(caps.tokenize, Some(TokenizeRoute::Extras));
    assert!(!caps.token_id_prompts, "its prompt field is text only");
    assert!(!caps.token_ids_in_output);

    // Tokenizer endpoints: the chat marker is one special token (which llama-cpp-python's
    // detokenizer leaves out), and plain text round-trips.
    let ids = client.tokenize("<|im_start|>user\nHi").expect("tokenize");
    assert_eq!(
        ids.first(),
        Some(&1),
        "<|im_start|> is token 1 in SmolLM2: {ids:?}"
    );
    assert_eq!(client.detokenize(&ids).expect("detokenize"), "user\nHi");
    let text = "Question: what is 12*7?\nAnswer: 84";
    let ids = client.tokenize(text).expect("tokenize");
    assert_eq!(client.detokenize(&ids).expect("detokenize"), text);

    // llama-cpp-python renders no chat templates over HTTP.
    assert_eq!(client.render_chat(&[("user", "Hi")]).expect("render"), None);

    // Greedy: each token is the most likely one, its log-prob is the top alternative's, the
    // alternatives are sorted, and the answer names 5.
    let session = client.session().expect("session");
    let mut params = CompletionParams::new(Prompt::Text(CHAT.into()), 12);
    params.top_logprobs = 5;
    let mut toks = Vec::new();
    let out = client
        .complete(&session, &params, &mut |_, t| {
            toks.push(t);
            ControlFlow::Continue(())
        })
        .expect("greedy completion");
    let choice = &out.choices[0];
    assert!(
        !toks.is_empty() && toks.len() <= 12,
        "{} tokens",
        toks.len()
    );
    assert_eq!(choice.tokens, toks.len());
    assert!(choice.text.contains('5'), "answer: {:?}", choice.text);
    assert!(matches!(
        choice.finish_reason.as_deref(),
        Some("stop" | "length")
    ));
    for t in &toks {
        let lp = t.logprob.expect("logprob");
        assert!(lp <= 0.0 && lp.is_finite());
        assert_eq!(t.top.len(), 5);
        assert!(t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        assert_eq!(t.top[0].text, t.text, "greedy picks the top alternative");
        assert!((t.top[0].logprob - lp).abs() < 1e-4);
    }
    assert_eq!(
        choice.text,
        toks.iter().map(|t| t.text.as_str()).collect::<String>()
    );

    // Unstreamed: the same greedy first token, and usage (llama-cpp-python streams have none).
    let mut one = CompletionParams::new(Prompt::Text(CHAT.into()), 1);
    one.top_logprobs = 5;
    let (first, single) = client
        .complete_unstreamed(&session, &one)
        .expect("unstreamed");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].text, toks[0].text);
    // Close, not equal: this request re-evaluates only the prompt's last token against the
    // server's cached prefix, and llama.cpp's quantized kernels round a one-token batch
    // differently from a whole-prompt batch (seen: 0.06 nats).
    assert!(
        (first[0].logprob.unwrap_or(0.0) - toks[0].logprob.unwrap_or(1.0)).abs() < 0.25,
        "{:?} vs {:?}",
        first[0],
        toks[0]
    );
    let usage = single.usage.expect("usage in unstreamed answers");
    assert_eq!(usage.completion_tokens, 1);
    assert_eq!(
        usage.prompt_tokens,
        client.tokenize(CHAT).expect("ids").len() as u64
    );

    // Many branches in flight: four seeded samples through the pool, all complete, and the
    // seeds make them differ.
    let texts = Mutex::new(Vec::new());
    let results = run_bounded(
        (0..4u64).collect(),
        4,
        &|seed, _emit: &dyn Fn(())| {
            let mut p = CompletionParams::new(Prompt::Text(CHAT.into()), 16);
            p.temperature = 1.0;
            p.seed = Some(seed + 11);
            let r = client.complete(&session, &p, &mut |_, _| ControlFlow::Continue(()));
            if let Ok(o) = &r {
                if let Ok(mut t) = texts.lock() {
                    t.push(o.choices[0].text.clone());
                }
            }
            r.map(|_| ())
        },
        &mut |()| {},
        &mut || false,
        &|| {},
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut texts = texts.into_inner().expect("texts");
    texts.sort();
    texts.dedup();
    assert!(texts.len() >= 2, "seeded samples all equal: {texts:?}");

    // Stop mid-run closes every stream: three long requests, cancelled after the first tokens.
    let run = client.session().expect("session");
    let first_token = AtomicBool::new(false);
    let started = Instant::now();
    let mut cancelled_at = None;
    let results = run_bounded(
        (0..3u64).collect(),
        3,
        &|seed, emit: &dyn Fn(())| {
            let mut p = CompletionParams::new(Prompt::Text(CHAT.into()), 400);
            p.temperature = 1.0;
            p.seed = Some(seed);
            client.complete(&run, &p, &mut |_, _| {
                emit(());
                ControlFlow::Continue(())
            })
        },
        &mut |()| first_token.store(true, Ordering::SeqCst),
        &mut || {
            let stop = first_token.load(Ordering::SeqCst);
            if stop && cancelled_at.is_none() {
                cancelled_at = Some(Instant::now());
            }
            stop
        },
        &|| run.cancel(),
    );
    let after_cancel = cancelled_at.map(|t| t.elapsed()).unwrap_or_default();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(RemoteError::Cancelled))),
        "{results:?}"
    );
    // The server is free again: a fresh request is served (it did not go on generating 3×400
    // tokens for closed streams first).
    let fresh = client.session().expect("session");
    let before = Instant::now();
    client
        .complete(
            &fresh,
            &CompletionParams::new(Prompt::Text(CHAT.into()), 2),
            &mut |_, _| ControlFlow::Continue(()),
        )
        .expect("served after the cancel");
    eprintln!(
        "cancel: all streams closed {after_cancel:?} after Stop; next request served in {:?} (run {:?})",
        before.elapsed(),
        started.elapsed()
    );
}

#[test]
fn killing_the_server_mid_stream_gives_an_error_and_keeps_the_tokens() {
    let Some(mut server) = server(&LlamaServerOptions::default()) else {
        return;
    };
    let client = Client::connect(config(&server), None).expect("connect");
    let session = client.session().expect("session");
    let mut params = CompletionParams::new(Prompt::Text(CHAT.into()), 400);
    params.temperature = 1.0;
    params.seed = Some(3);
    let mut got = Vec::new();
    let err = client
        .complete(&session, &params, &mut |_, t| {
            got.push(t.text);
            if got.len() == 5 {
                server.kill();
            }
            ControlFlow::Continue(())
        })
        .expect_err("the server died");
    assert!(got.len() >= 5, "tokens before the kill are kept: {got:?}");
    assert!(
        matches!(err, RemoteError::StreamCut { .. }),
        "{err:?} after {} tokens",
        got.len()
    );
    assert!(!err.to_string().contains('\n'));
    // And a new connection to the dead server is refused, in one line.
    let err = Client::connect(config(&server), None).err().expect("dead");
    assert!(matches!(err, RemoteError::Refused { .. }), "{err:?}");
}

#[test]
fn a_wrong_key_and_a_wrong_url_give_one_line_errors() {
    let options = LlamaServerOptions {
        api_key: Some("right-key".into()),
        ..LlamaServerOptions::default()
    };
    let Some(server) = server(&options) else {
        return;
    };
    let mut cfg = config(&server);
    cfg.api_key = ApiKey::new("wrong-key");
    let err = Client::connect(cfg.clone(), None).err().expect("wrong key");
    assert!(
        matches!(err, RemoteError::Auth { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("Invalid API key") && !msg.contains('\n'),
        "{msg}"
    );
    assert!(!msg.contains("wrong-key"), "the key is never echoed: {msg}");

    cfg.api_key = ApiKey::new("right-key");
    Client::connect(cfg.clone(), None).expect("right key connects");

    cfg.base_url = format!("http://127.0.0.1:{}/v1", server.port() ^ 1);
    let err = Client::connect(cfg, None).err().expect("wrong port");
    assert!(matches!(err, RemoteError::Refused { .. }), "{err:?}");
    assert!(!err.to_string().contains('\n'));
}
