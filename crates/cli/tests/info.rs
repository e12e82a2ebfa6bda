//! `thinkscope-cli info` on each tiny oracle model: the architecture and the features that
//! shape its forward pass and its prompts.

use thinkscope_engine::tiny::{oracle_specs, write_tiny_model};

/// A model, its architecture, and (description field, phrase it must contain) pairs.
type Expected = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[test]
fn info_describes_every_architecture_and_rope_variant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let want: &[Expected] = &[
        (
            "llama",
            "llama",
            &[
                ("rope", "interleaved pairs, all 32 dims"),
                ("rope_scaling", "none"),
            ],
        ),
        (
            "llama3",
            "llama",
            &[(
                "rope_scaling",
                "Llama 3 frequency factors (rope_freqs, 16 values, 1.00 to 8.00)",
            )],
        ),
        ("llama-linear", "llama", &[("rope_scaling", "linear x4")]),
        (
            "qwen2",
            "qwen2",
            &[("rope", "NeoX halves"), ("features", "q/k/v biases")],
        ),
        (
            "r1-distill-qwen",
            "qwen2",
            &[("thinking", "<think>"), ("thinking", "the prompt opens it")],
        ),
        (
            "qwen3",
            "qwen3",
            &[
                ("features", "q/k RMS norms"),
                ("thinking", "switches it with enable_thinking"),
            ],
        ),
        (
            "qwen3-yarn",
            "qwen3",
            &[(
                "rope_scaling",
                "YaRN x4 from an original context of 4096 (q and k magnitude 1.1386)",
            )],
        ),
        (
            "gemma3",
            "gemma3",
            &[
                ("rope", "(sliding-window layers: 20000)"),
                ("rope_scaling", "linear x8 on the global layers"),
                (
                    "sliding_window",
                    "8 tokens on layers [0, 1, 2]; global layers [3]",
                ),
            ],
        ),
        (
            "phi3",
            "phi3",
            &[
                ("rope", "NeoX halves, 24 of 32 dims"),
                (
                    "rope_scaling",
                    "LongRoPE, long factors (context 256 > original 32), attention factor 1.2649",
                ),
                ("fused_tensors", "attn_qkv split into q, k, v"),
                ("fused_tensors", "ffn_up split into gate, up"),
            ],
        ),
        (
            "smollm3",
            "smollm3",
            &[("no_rope_layers", "[3]"), ("thinking", "</think>")],
        ),
    ];
    let specs = oracle_specs();
    for (name, arch, lines) in want {
        let spec = &specs.iter().find(|(n, _)| n == name).expect("spec").1;
        let path = dir.path().join(format!("{name}.gguf"));
        write_tiny_model(&path, spec).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
            .args(["--device", "cpu", "info", "--model"])
            .arg(&path)
            .output()
            .expect("run thinkscope-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let d = &json["description"];
        assert_eq!(d["architecture"], *arch, "{name}");
        for (field, phrase) in *lines {
            let text = d[*field].to_string();
            assert!(
                text.contains(phrase),
                "{name}: {field} = {text}, wanted {phrase:?}"
            );
        }
    }
}
