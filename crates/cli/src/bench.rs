//! `thinkscope-cli bench`: prefill, single and batched decode, fork cost and peak memory.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use serde_json::json;
use thinkscope_engine::sequences::DEFAULT_KV_BUDGET_BYTES;
use thinkscope_engine::{Engine, Model, SeqId};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn bench(
    model: &Arc<Model>,
    batches: &[usize],
    prompt_tokens: usize,
    decode_tokens: usize,
    repeats: usize,
    json_out: bool,
) -> anyhow::Result<()> {
    if prompt_tokens == 0 || decode_tokens == 0 || batches.contains(&0) {
        bail!("prompt tokens, decode tokens and batch sizes must be at least 1");
    }
    let vocab = model.config.vocab as u32;
    // A deterministic pseudo-text prompt of ordinary tokens.
    let prompt: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| 200 + (i * 7919) % (vocab - 400))
        .collect();
    let mut engine = Engine::new(model.clone(), DEFAULT_KV_BUDGET_BYTES)?;
    // Warm-up.
    let s = engine.new_sequence();
    engine.prefill(s, &prompt[..prompt.len().min(16)])?;
    engine.release(s);

    let mut prefill = Vec::new();
    for _ in 0..repeats {
        let s = engine.new_sequence();
        let t = Instant::now();
        engine.prefill(s, &prompt)?;
        prefill.push(prompt_tokens as f64 / t.elapsed().as_secs_f64());
        engine.release(s);
    }
    let root = engine.new_sequence();
    engine.prefill(root, &prompt)?;
    let mut fork_micros = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let c = engine.fork(root)?;
        fork_micros.push(t.elapsed().as_secs_f64() * 1e6);
        engine.release(c);
    }
    let mut decode = serde_json::Map::new();
    let mut rows = Vec::new();
    for &b in batches {
        let mut rates = Vec::new();
        for _ in 0..repeats {
            let seqs: Vec<SeqId> = (0..b)
                .map(|_| engine.fork(root))
                .collect::<Result<_, _>>()?;
            let t = Instant::now();
            for step in 0..decode_tokens {
                let steps: Vec<(SeqId, u32)> = seqs
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (s, 300 + ((i * 31 + step * 17) as u32 % (vocab - 600))))
                    .collect();
                engine.decode(&steps)?;
            }
            rates.push((b * decode_tokens) as f64 / t.elapsed().as_secs_f64());
            for s in seqs {
                engine.release(s);
            }
        }
        let r = median(rates);
        decode.insert(b.to_string(), json!(r));
        rows.push((b, r));
    }
    let prefill_tok_s = median(prefill);
    let fork_us = median(fork_micros);
    let rss = peak_rss_mb();
    if json_out {
        let out = json!({
            "model": model.info.name,
            "device": model.info.device,
            "threads": rayon::current_num_threads(),
            "kernels": model.kernel_summary(),
            "prompt_tokens": prompt_tokens,
            "decode_tokens": decode_tokens,
            "prefill_tok_s": prefill_tok_s,
            "decode_tok_s": decode,
            "fork_micros": fork_us,
            "peak_rss_mb": rss,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("model: {} on {}", model.info.name, model.info.device);
        println!("kernels: {}", model.kernel_summary());
        println!("prefill ({prompt_tokens} tokens): {prefill_tok_s:.1} tok/s");
        for (b, r) in rows {
            println!(
                "decode batch {b:>3}: {r:.1} tok/s total ({:.1} per sequence)",
                r / b as f64
            );
        }
        println!("fork: {fork_us:.1} µs");
        println!("peak RSS: {rss:.0} MB");
    }
    Ok(())
}

/// Peak resident set size from /proc (Linux); 0 where unavailable.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
