//! The engine on the GPU backend, on the tiny models the tests write themselves (lavapipe in CI;
//! where no adapter exists the tests say so and pass). Mirrors `engine_tiny.rs`: the same
//! sequences, forks and budgets, with every pass in WGSL shaders, and the CPU kernels as the
//! oracle for the logits.

use std::path::PathBuf;
use std::sync::Arc;

use thinkscope_engine::device::{self, ComputeDevice, DevicePref};
use thinkscope_engine::model::config::Arch;
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};
use thinkscope_engine::{Engine, Model, SeqId};

/// The best adapter, software included; `None` (reason printed) where there is none.
fn gpu() -> Option<ComputeDevice> {
    match device::select(DevicePref::Gpu) {
        Ok(sel) => Some(sel.device),
        Err(e) => {
            eprintln!("skipped: {e}; install mesa-vulkan-drivers for lavapipe");
            None
        }
    }
}

struct Pair {
    _dir: tempfile::TempDir,
    cpu: Arc<Model>,
    gpu: Arc<Model>,
}

fn tiny_pair(spec: &TinySpec, dev: &ComputeDevice) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("tiny.gguf");
    write_tiny_model(&path, spec).expect("write tiny model");
    let cpu = Arc::new(Model::load_on(&path, &ComputeDevice::Cpu).expect("load on the CPU"));
    let gpu = Arc::new(Model::load_on(&path, dev).expect("load on the GPU"));
    assert!(gpu.backend().info().gpu);
    Pair {
        _dir: dir,
        cpu,
        gpu,
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn range(v: &[f32]) -> f32 {
    v.iter().fold(f32::MIN, |m, x| m.max(*x)) - v.iter().fold(f32::MAX, |m, x| m.min(*x))
}

fn prompts() -> Vec<Vec<u32>> {
    // Different lengths, longer than the gemma3 sliding window of 8 (and, for one, than the 16
    // rows a mat-vec takes, so the prefill runs the matmul path).
    vec![
        (0..5).map(|i| 40 + i).collect(),
        (0..19).map(|i| 70 + 3 * i).collect(),
        (0..12).map(|i| 100 + 2 * i).collect(),
    ]
}

/// GPU logits equal the CPU kernels' logits. On the int8 tier (lavapipe's default) both sides
/// run the same arithmetic: 8-bit activations per 32 columns, exact integer sums, f16 keys and
/// values; they differ in float summation order, which moves an activation that sits on a
/// rounding boundary of the 8-bit quantization by one step, and then a logit by up to about a
/// percent of the row's range (the engine's own split-decode test allows the same). On the f32
/// tier the GPU does not round activations at all, so the difference is the CPU's quantization
/// error (measured 1.0–1.3% of the range on the tiny models; bound 3%). A wrong norm, rotation, window or cache slot moves logits
/// by tens of percent.
fn gpu_matches_cpu(spec: TinySpec) {
    let Some(dev) = gpu() else { return };
    let p = tiny_pair(&spec, &dev);
    let tol = if p.gpu.backend().info().device.contains("int8") {
        0.01
    } else {
        0.03
    };
    let mut worst = 0f32;
    let mut cpu = Engine::new(p.cpu.clone(), 1 << 30).expect("engine");
    let mut gpu = Engine::new(p.gpu.clone(), 1 << 30).expect("engine");
    let mut seqs = Vec::new();
    for prompt in prompts() {
        let (sc, sg) = (cpu.new_sequence(), gpu.new_sequence());
        let want = cpu.prefill(sc, &prompt).expect("cpu prefill");
        let got = gpu.prefill(sg, &prompt).expect("gpu prefill");
        let d = max_abs_diff(&got, &want) / range(&want);
        worst = worst.max(d);
        assert!(
            d < tol,
            "prefill of {} tokens: {d} of the range",
            prompt.len()
        );
        seqs.push((sc, sg));
    }
    for step in 0..4u32 {
        let cs: Vec<(SeqId, u32)> = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.0, 50 + step * 3 + i as u32))
            .collect();
        let gs: Vec<(SeqId, u32)> = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.1, 50 + step * 3 + i as u32))
            .collect();
        let want = cpu.decode(&cs).expect("cpu decode");
        let got = gpu.decode(&gs).expect("gpu decode");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let d = max_abs_diff(g, w) / range(w);
            worst = worst.max(d);
            assert!(d < tol, "seq {i} step {step}: {d} of the range");
        }
    }
    eprintln!(
        "{:?} on {}: GPU vs CPU worst {worst:.2e} of the logits range (bound {tol})",
        spec.arch, p.gpu.info.device
    );
}

#[test]
fn gpu_logits_equal_cpu_logits_llama() {
    gpu_matches_cpu(TinySpec::llama());
}

#[test]
fn gpu_logits_equal_cpu_logits_gemma3() {
    gpu_matches_cpu(TinySpec::gemma3());
}

/// A batched decode step on the GPU equals each sequence decoded alone (the same kernels, the
/// same sums per row: the batch only shares the weight reads).
fn batched_matches_single(spec: TinySpec) {
    let Some(dev) = gpu() else { return };
    let p = tiny_pair(&spec, &dev);
    let model = p.gpu;
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    let seqs: Vec<SeqId> = prompts()
        .iter()
        .map(|pr| {
            let s = engine.new_sequence();
            engine.prefill(s, pr).expect("prefill");
            s
        })
        .collect();
    let mut batched = Vec::new();
    for step in 0..3u32 {
        let steps: Vec<(SeqId, u32)> = seqs
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, 50 + step * 3 + i as u32))
            .collect();
        let passes = engine.counters().forward_passes;
        batched.push(engine.decode(&steps).expect("batched decode"));
        assert_eq!(engine.counters().forward_passes, passes + 1);
    }
    for (i, pr) in prompts().iter().enumerate() {
        let mut solo = Engine::new(model.clone(), 1 << 30).expect("engine");
        let s = solo.new_sequence();
        solo.prefill(s, pr).expect("prefill");
        for (step, batch_out) in batched.iter().enumerate() {
            let logits = solo
                .decode(&[(s, 50 + step as u32 * 3 + i as u32)])
                .expect("decode");
            let diff = max_abs_diff(&logits[0], &batch_out[i]);
            assert!(
                diff < 1e-4,
                "seq {i} step {step}: batched differs by {diff}"
            );
        }
    }
}

#[test]
fn gpu_batched_decode_equals_single_llama() {
    batched_matches_single(TinySpec::llama());
}

#[test]
fn gpu_batched_decode_equals_single_gemma3() {
    batched_matches_single(TinySpec::gemma3());
}

/// Forks share the prompt's blocks (nothing recomputed, no pass run), their first writes copy
/// the shared partial block on the device, and their continuations equal a fresh pass over the
/// whole text; the parent's cache is untouched. The fresh pass runs the prompt and continuation
/// as one prefill, the forks as a prefill plus single-token steps: the same arithmetic in other
/// summation orders, so the bound is float noise, not quantization steps.
fn fork_matches_recompute(spec: TinySpec) {
    let Some(dev) = gpu() else { return };
    let p = tiny_pair(&spec, &dev);
    let model = p.gpu;
    let prompt: Vec<u32> = (0..21).map(|i| 60 + (i * 5) % 180).collect();
    let mut engine = Engine::new(model.clone(), 1 << 30).expect("engine");
    let root = engine.new_sequence();
    engine.prefill(root, &prompt).expect("prefill");
    let before = engine.counters();
    let a = engine.fork(root).expect("fork");
    let b = engine.fork(root).expect("fork");
    let after = engine.counters();
    assert_eq!(
        after.prompt_tokens_computed, before.prompt_tokens_computed,
        "a fork recomputes nothing"
    );
    assert_eq!(after.forward_passes, before.forward_passes);
    assert_eq!(
        after.tokens_reused - before.tokens_reused,
        2 * prompt.len() as u64
    );
    let conts: [Vec<u32>; 2] = [vec![7, 80, 81, 200], vec![9, 150, 33, 34]];
    let mut forked: [Vec<Vec<f32>>; 2] = [Vec::new(), Vec::new()];
    for (&ta, &tb) in conts[0].iter().zip(&conts[1]) {
        let out = engine.decode(&[(a, ta), (b, tb)]).expect("decode");
        forked[0].push(out[0].clone());
        forked[1].push(out[1].clone());
    }
    assert_eq!(
        engine.counters().prompt_tokens_computed,
        before.prompt_tokens_computed,
        "zero prefix tokens recomputed after the fork"
    );
    assert_eq!(engine.len(root).expect("len"), prompt.len());
    let parent_next = engine.decode(&[(root, 5)]).expect("decode parent");
    let mut worst = 0f32;
    for (k, cont) in conts.iter().enumerate() {
        let mut fresh = Engine::new(model.clone(), 1 << 30).expect("engine");
        let s = fresh.new_sequence();
        let mut full = prompt.clone();
        full.extend_from_slice(cont);
        let all = fresh.score(s, &full).expect("score");
        for step in 0..4 {
            let want = &all[prompt.len() + step];
            let diff = max_abs_diff(want, &forked[k][step]) / range(want);
            worst = worst.max(diff);
            assert!(
                diff < 1e-3,
                "fork {k} step {step} differs from recompute by {diff}"
            );
        }
    }
    let mut fresh = Engine::new(model, 1 << 30).expect("engine");
    let s = fresh.new_sequence();
    let mut full = prompt.clone();
    full.push(5);
    let direct = fresh.prefill(s, &full).expect("prefill");
    let diff = max_abs_diff(&direct, &parent_next[0]) / range(&direct);
    assert!(diff < 1e-3, "parent cache was corrupted by a fork ({diff})");
    eprintln!(
        "{:?}: fork vs recompute worst {worst:.2e} of the range",
        spec.arch
    );
}

#[test]
fn gpu_fork_continues_exactly_llama() {
    fork_matches_recompute(TinySpec::llama());
}

#[test]
fn gpu_fork_continues_exactly_gemma3() {
    fork_matches_recompute(TinySpec::gemma3());
}

/// Gemma 3's sliding window on the GPU: decoding one token at position 239 (its first three
/// layers see only the last 8 positions) gives the logits of that position inside one
/// whole-prompt pass, and both equal the CPU kernels' (which the engine's own tests check
/// against an f64 reference); the bounds are those of `gpu_matches_cpu` and `fork_matches_recompute`.
#[test]
fn gpu_sliding_window_holds_gemma3() {
    let Some(dev) = gpu() else { return };
    let p = tiny_pair(&TinySpec::gemma3(), &dev);
    assert_eq!(p.gpu.config.arch, Arch::Gemma3);
    let windows: Vec<_> = (0..p.gpu.config.n_layer)
        .map(|l| p.gpu.config.layer_window(l))
        .collect();
    assert_eq!(windows, vec![Some(8), Some(8), Some(8), None]);
    let tokens: Vec<u32> = (0..240).map(|i| 30 + (i * 37) % 150).collect();
    let mut whole = Engine::new(p.gpu.clone(), 1 << 30).expect("engine");
    let s = whole.new_sequence();
    let want = whole.prefill(s, &tokens).expect("prefill");
    let mut split = Engine::new(p.gpu.clone(), 1 << 30).expect("engine");
    let s = split.new_sequence();
    split.prefill(s, &tokens[..239]).expect("prefill");
    let got = split.decode(&[(s, tokens[239])]).expect("decode");
    let d = max_abs_diff(&got[0], &want) / range(&want);
    assert!(
        d < 1e-3,
        "decode differs from the one-pass prompt by {d} of the range"
    );
    let mut cpu = Engine::new(p.cpu.clone(), 1 << 30).expect("engine");
    let s = cpu.new_sequence();
    let cpu_logits = cpu.prefill(s, &tokens).expect("prefill");
    let d = max_abs_diff(&want, &cpu_logits) / range(&cpu_logits);
    let tol = if p.gpu.info.device.contains("int8") {
        0.01
    } else {
        0.03
    };
    assert!(
        d < tol,
        "GPU differs from the CPU at position 239 by {d} of the range"
    );
}

/// `auto` takes a hardware GPU and never a software one; `gpu` takes a software one too.
#[test]
fn auto_never_takes_a_software_adapter() {
    let hardware = thinkscope_gpu::list_adapters().iter().any(|a| !a.software);
    let auto = device::select(DevicePref::Auto).expect("auto always has a device");
    match (&auto.device, hardware) {
        (ComputeDevice::Gpu(ctx), true) => assert!(!ctx.adapter().software),
        (ComputeDevice::Cpu, false) => {
            let note = auto.note.expect("auto says why it runs on the CPU");
            assert!(note.contains("CPU"), "{note}");
        }
        (d, _) => panic!("auto chose {} with hardware={hardware}", d.describe()),
    }
    if let Some(ComputeDevice::Gpu(ctx)) = gpu() {
        assert!(ctx.description().starts_with("GPU: "));
    }
    assert_eq!("gpu".parse::<DevicePref>(), Ok(DevicePref::Gpu));
    assert!("cuda".parse::<DevicePref>().is_err());
}

/// The cache budget is enforced against what the device can hold, and a refused step leaves
/// the sequence intact.
#[test]
fn gpu_kv_budget_is_bounded_by_the_device() {
    let Some(dev) = gpu() else { return };
    let p = tiny_pair(&TinySpec::llama(), &dev);
    let limit = p
        .gpu
        .backend()
        .kv_budget_limit()
        .expect("a GPU backend states its cache limit");
    assert!(limit > 0);
    let layout = p.gpu.kv_layout();
    let block_bytes = layout.block_values() * 2;
    let mut engine = Engine::new(p.gpu.clone(), 4 * block_bytes).expect("engine");
    let root = engine.new_sequence();
    engine
        .prefill(root, &(0..32).map(|i| 40 + i).collect::<Vec<u32>>())
        .expect("two blocks");
    assert_eq!(engine.kv_used_bytes(), 2 * block_bytes);
    let forks: Vec<SeqId> = (0..3).map(|_| engine.fork(root).expect("fork")).collect();
    engine
        .decode(&[(forks[0], 1), (forks[1], 2)])
        .expect("two new blocks fit");
    assert!(engine.decode(&[(forks[2], 3)]).is_err(), "budget exceeded");
    assert_eq!(engine.len(forks[2]).expect("len"), 32);
    engine.release(forks[0]);
    engine.decode(&[(forks[2], 3)]).expect("fits after release");
    // A budget above the device's limit is clipped to it.
    let big = Engine::new(p.gpu.clone(), usize::MAX / 2).expect("engine");
    assert!(big.kv_budget_bytes() <= limit);
}

#[test]
fn every_strategy_runs_a_short_run_on_the_gpu() {
    use std::time::Duration;
    use thinkscope_engine::events::{RunId, RunOutcome};
    use thinkscope_engine::strategy::{registry, Knobs, RunConfig, Strategy};
    use thinkscope_engine::tree::NodeKind;
    use thinkscope_engine::view::{run_to_end, Watch};
    use thinkscope_engine::worker::{Worker, WorkerOptions};

    let Some(dev) = gpu() else { return };
    let pair = tiny_pair(&TinySpec::llama(), &dev);
    let worker = Worker::spawn(pair.gpu.clone(), WorkerOptions::default(), Arc::new(|| {}))
        .expect("worker on the GPU model");
    let line = worker.service().info().device.clone();
    assert!(line.starts_with("GPU"), "device line {line:?}");
    let knobs = Knobs {
        samples: Some(2),
        depth: Some(2),
        thinking: Some(12),
    };
    for (k, name) in registry().names().into_iter().enumerate() {
        let mut config = RunConfig::new(
            "what is 2 + 3 ?",
            Strategy::from_name(name, &knobs).expect("strategy"),
        );
        config.max_tokens = 8;
        config.temperature = 1.0;
        config.seed = 7;
        let watch = Watch {
            idle_timeout: Some(Duration::from_secs(300)),
            ..Watch::default()
        };
        let view = run_to_end(&worker, RunId(k as u64 + 1), config, watch, |_, _| {})
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            view.outcome,
            Some(RunOutcome::Completed),
            "{name}: {}",
            view.error_line()
        );
        // Sampled tokens (an end-of-text one included, which no node keeps) and passes run.
        assert!(
            view.cost.generated_tokens > 0 && view.cost.forward_passes > 0,
            "{name}: nothing ran on the GPU: {:?}",
            view.cost
        );
        assert!(
            view.tree
                .nodes
                .iter()
                .any(|n| n.kind == NodeKind::Generated),
            "{name}: no generated node"
        );
    }
}
