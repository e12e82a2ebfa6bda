//! The command line end to end: `thinkscope-cli` run as a user runs it, on the tiny model.

use thinkscope_engine::lab::sweep::{read_results, CSV_HEADER};
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};

// ---------------------------------------------------------------------------------------------
// The `lab` subcommand on the tiny model.

#[test]
fn cli_lab_writes_csv_and_svg_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::llama()).expect("write");
    let set = dir.path().join("set.jsonl");
    std::fs::write(
        &set,
        "{\"question\": \"what is 1 + 1 ?\", \"answer\": 2}\n{\"question\": \"what is 2 + 2 ?\", \"answer\": \"#### 4\"}\n",
    )
    .expect("write set");
    let csv = dir.path().join("out/lab.csv");
    let svg = dir.path().join("out/lab.svg");
    let lab = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"));
        cmd.args(["--device", "cpu", "lab", "--model"])
            .arg(&model)
            .args(["--max-n", "2", "--max-tokens", "4", "--seed", "3"])
            .args(["--strategies", "greedy,self-consistency"])
            .arg("--csv")
            .arg(&csv)
            .args(extra);
        cmd.output().expect("run thinkscope-cli")
    };
    let set_arg = set.to_str().expect("utf-8 path");
    let first = lab(&["--set", set_arg, "--svg", svg.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("self-consistency") && stdout.contains("derived"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(text.lines().next(), Some(CSV_HEADER));
    assert_eq!(text.lines().count(), 1 + 2 * 2, "2 strategies × N = 1, 2");
    assert!(std::fs::read_to_string(&svg)
        .expect("svg")
        .starts_with("<svg"));
    let results = dir.path().join("out/lab.results.jsonl");
    assert_eq!(read_results(&results).expect("results").len(), 4);

    // The same command again runs nothing and writes the same accuracies.
    let again = lab(&["--set", set_arg]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("resuming: 4 of 4"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&csv).expect("csv"), text);

    // Bad input: one line, non-zero exit.
    for (args, needle) in [
        (
            vec!["--generate", "algebra:3"],
            "invalid generator 'algebra:3'",
        ),
        (vec!["--set", "/nonexistent.jsonl"], "/nonexistent.jsonl"),
    ] {
        let out = lab(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
