//! Self-consistency with 8 samples on the default model, in-process and through
//! llama-cpp-python's server on the same machine: wall time and tokens for each, as a table.
//!
//! ```text
//! cargo run --release -p thinkscope-remote --example self_consistency_bench [MAX_TOKENS] [REPEATS] [TOP_ALTERNATIVES]
//! ```

use std::sync::Arc;
use std::time::Duration;

use thinkscope_engine::cost::CostSnapshot;
use thinkscope_engine::device::DevicePref;
use thinkscope_engine::events::{RunId, RunOutcome};
use thinkscope_engine::fetch;
use thinkscope_engine::service::SequenceService;
use thinkscope_engine::strategy::{Knobs, RunConfig, Strategy};
use thinkscope_engine::view::{run_to_end, Watch};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::Model;
use thinkscope_remote::llama_server::{LlamaServer, LlamaServerOptions};
use thinkscope_remote::service::{RemoteOptions, RemoteService, TemplateSource};
use thinkscope_remote::{Client, ServerConfig};

fn config(max_tokens: usize, seed: u64) -> RunConfig {
    let knobs = Knobs {
        samples: Some(8),
        ..Knobs::default()
    };
    let mut c = RunConfig::new(
        "What is 7 * 8?",
        Strategy::from_name("self-consistency", &knobs).expect("strategy"),
    );
    c.max_tokens = max_tokens;
    c.seed = seed;
    c
}

fn run(worker: &Worker, id: u64, c: RunConfig) -> (CostSnapshot, Option<String>, usize) {
    let watch = Watch {
        idle_timeout: Some(Duration::from_secs(600)),
        ..Watch::default()
    };
    let view = run_to_end(worker, RunId(id), c, watch, |_, _| {}).expect("run");
    assert_eq!(
        view.outcome,
        Some(RunOutcome::Completed),
        "{}",
        view.error_line()
    );
    (view.cost, view.tree.answer.clone(), view.tree.token_count())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let max_tokens: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(128);
    let repeats: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let top: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(thinkscope_engine::service::NEXT_TOP);
    let path = fetch::default_model_path(&fetch::models_dir());

    let (model, _) = Model::load_pref(&path, DevicePref::Cpu).expect("load the model");
    let model = Arc::new(model);
    let local = Worker::spawn(model, WorkerOptions::default(), Arc::new(|| {})).expect("worker");

    let server = LlamaServer::start(&path, &LlamaServerOptions::default()).expect("server");
    let mut cfg = ServerConfig::new(server.base_url());
    cfg.api_key = None;
    let client = Client::connect(cfg, None).expect("connect");
    let options = RemoteOptions {
        chat_template: TemplateSource::from_gguf(&path).expect("template"),
        top_alternatives: top,
        ..RemoteOptions::default()
    };
    let service: Arc<dyn SequenceService> =
        Arc::new(RemoteService::new(client, options).expect("service"));
    let device_line = service.info().device.clone();
    let remote =
        Worker::with_service(service, WorkerOptions::default(), Arc::new(|| {})).expect("worker");

    println!(
        "self-consistency, 8 samples, max {max_tokens} tokens, prompt \"What is 7 * 8?\", {top} alternatives per token from the server"
    );
    println!(
        "| backend | seed | wall s | generated | prompt computed | reused | tree tokens | answer |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for seed in 1..=repeats {
        for (name, worker) in [("in-process", &local), ("llama-cpp-python server", &remote)] {
            let (cost, answer, tokens) = run(worker, seed, config(max_tokens, seed));
            println!(
                "| {name} | {seed} | {:.1} | {} | {} | {} | {tokens} | {} |",
                cost.wall_secs,
                cost.generated_tokens,
                cost.prompt_tokens_computed,
                cost.tokens_reused,
                answer.unwrap_or_else(|| "-".into()),
            );
        }
    }
    println!("server: {device_line}");
}
