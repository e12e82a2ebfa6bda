//! The GPU backend against llama.cpp on the tiny oracle models of `oracle.rs` (one per
//! architecture and rope variant: llama with rope_freqs and linear scaling, qwen2, qwen3 with
//! YaRN, gemma3 and its 27B attention scale, phi3 with LongRoPE and fused q/k/v and gate/up, its
//! Q8_0 twin, smollm3 with no-rope layers). The same files (checked by sha256), the same
//! llama.cpp logits, the same bounds as the CPU kernels get, with every pass in WGSL shaders:
//! lavapipe in CI; where no adapter exists the test prints why and passes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thinkscope_engine::device::{self, DevicePref};
use thinkscope_engine::tiny::{oracle_spec, write_tiny_model};
use thinkscope_engine::{Engine, Model};

#[derive(Deserialize)]
struct Oracle {
    models: BTreeMap<String, OracleModel>,
}

#[derive(Deserialize)]
struct OracleModel {
    sha256: String,
    ids: Vec<u32>,
    logits: BTreeMap<String, Vec<f32>>,
}

/// `oracle.rs`'s bounds and their reasons: f32 weights leave summation order, the f16 cache
/// and llama.cpp's f16-table GELU (1e-3; 1e-2 through Gemma 3 27B's 62 layers); Q8_0 weights add
/// each engine's own 8-bit rounding of the activations (3e-2). On the GPU the f32 weights run
/// the f32 mat-vec on every tier (they have no integer codes), Q8_0 the int8 kernels on the
/// int8 tier (the CPU kernels' arithmetic) or f32 ones below it (no activation rounding at all).
const MODELS: &[(&str, f32)] = &[
    ("llama", 1e-3),
    ("llama3", 1e-3),
    ("llama-linear", 1e-3),
    ("qwen2", 1e-3),
    ("r1-distill-qwen", 1e-3),
    ("qwen3", 1e-3),
    ("qwen3-yarn", 1e-3),
    ("gemma3", 1e-3),
    ("gemma3-27b", 1e-2),
    ("phi3", 1e-3),
    ("phi3-q8", 3e-2),
    ("smollm3", 1e-3),
];

#[test]
fn gpu_logits_match_llama_cpp_on_every_architecture() {
    let sel = match device::select(DevicePref::Gpu) {
        Ok(sel) => sel,
        Err(e) => {
            eprintln!("skipped: {e}; install mesa-vulkan-drivers for lavapipe");
            return;
        }
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/llamacpp.json");
    let oracle: Oracle =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("oracle JSON")).expect("parse");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for &(name, bound) in MODELS {
        let want = &oracle.models[name];
        let spec = oracle_spec(name).unwrap_or_else(|| panic!("no tiny spec '{name}'"));
        let file = dir.path().join(format!("{name}.gguf"));
        write_tiny_model(&file, &spec).expect("write tiny model");
        let sha: String = Sha256::digest(std::fs::read(&file).expect("read back"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, want.sha256, "{name}: not the file llama.cpp ran");
        let model = std::sync::Arc::new(Model::load_on(&file, &sel.device).expect("load on GPU"));
        let mut engine = Engine::new(model, 1 << 28).expect("engine");
        let s = engine.new_sequence();
        let got = engine.score(s, &want.ids).expect("score");
        let mut worst = 0f32;
        for (pos, row) in &want.logits {
            let ours = &got[pos.parse::<usize>().expect("position")];
            assert_eq!(ours.len(), row.len(), "{name}: vocabulary size");
            let spread = row.iter().copied().fold(f32::MIN, f32::max)
                - row.iter().copied().fold(f32::MAX, f32::min);
            let diff = ours
                .iter()
                .zip(row)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            worst = worst.max(diff / spread);
        }
        eprintln!(
            "{name} on {}: {worst:.2e} of the spread (bound {bound})",
            sel.device.describe()
        );
        if worst > bound {
            failures.push(format!("{name}: {worst} of the spread (bound {bound})"));
        }
    }
    assert!(
        failures.is_empty(),
        "GPU logits differ from llama.cpp: {failures:?}"
    );
}
