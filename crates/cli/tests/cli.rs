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

/// `strategies --json` prints the registry: every strategy with its name, summary and knobs,
/// each knob with its label, help, range and default, exactly as the engine declares them.
#[test]
fn strategies_json_is_the_registry() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .args(["strategies", "--json"])
        .output()
        .expect("run thinkscope-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let listed = listed.as_array().expect("an array");
    let registry = thinkscope_engine::strategy::registry().all();
    assert_eq!(listed.len(), registry.len());
    for (entry, def) in listed.iter().zip(&registry) {
        assert_eq!(entry["name"], def.name());
        assert_eq!(entry["summary"], def.summary());
        let knobs = entry["knobs"].as_array().expect("knobs");
        assert_eq!(knobs.len(), def.knobs().len(), "{}", def.name());
        for (k, want) in knobs.iter().zip(def.knobs()) {
            assert_eq!(k["key"], want.key);
            assert_eq!(k["label"], want.label);
            assert_eq!(k["help"], want.help);
            assert_eq!(
                k["default"],
                serde_json::to_value(want.default_value()).expect("value")
            );
            if k["type"] == "int" || k["type"] == "float" {
                assert!(k["min"].as_f64() <= k["default"].as_f64(), "{}", want.key);
                assert!(k["default"].as_f64() <= k["max"].as_f64(), "{}", want.key);
            }
        }
    }
    let beam = listed.iter().find(|e| e["name"] == "beam").expect("beam");
    let width = beam["knobs"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["key"] == "width"))
        .expect("beam width");
    assert_eq!(width["label"], "Beam width");
    assert_eq!(width["role"], "samples");
}

/// Knobs given on the command line are checked against the registry: a bad value, an unknown
/// key and a malformed pair each stop the run with one line naming the problem.
#[test]
fn bad_knobs_give_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::llama()).expect("write");
    for (args, needle) in [
        (
            vec!["--strategy", "beam", "--set", "width=99"],
            "outside [1, 16]",
        ),
        (
            vec!["--strategy", "beam", "--set", "colour=red"],
            "no parameter 'colour'",
        ),
        (vec!["--strategy", "beam", "--set", "width"], "KEY=VALUE"),
        (
            vec!["--strategy", "nonsense"],
            "unknown strategy 'nonsense'",
        ),
        (
            vec!["--strategy", "mcts", "--samples", "0"],
            "outside [1, 8]",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
            .args(["--device", "cpu", "run", "--prompt", "hi", "--model"])
            .arg(&model)
            .args(&args)
            .output()
            .expect("run thinkscope-cli");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    // A good --set takes effect: the tree has the asked-for width.
    let json = dir.path().join("run.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .args([
            "--device",
            "cpu",
            "run",
            "--prompt",
            "what is 1 + 1 ?",
            "--model",
        ])
        .arg(&model)
        .args([
            "--strategy",
            "self-consistency",
            "--set",
            "n=3",
            "--max-tokens",
            "4",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run thinkscope-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(run["config"]["strategy"]["n"], 3);
    assert_eq!(
        run["tree"]["nodes"][0]["children"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(run["cost"]["generated_tokens"].as_u64() > Some(0));
}

/// A strategy that crashes (a fault injected into the real binary) ends the run `Failed`: the
/// command exits non-zero with one line naming the crash, whether it ran alone or in a sweep.
#[test]
fn a_crashing_strategy_exits_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::llama()).expect("write");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .env("THINKSCOPE_FAULT", "strategy-panic")
        .args([
            "--device",
            "cpu",
            "run",
            "--prompt",
            "what is 1 + 1 ?",
            "--model",
        ])
        .arg(&model)
        .args(["--strategy", "self-consistency", "--max-tokens", "4"])
        .output()
        .expect("run thinkscope-cli");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("self-consistency strategy crashed") && stderr.contains("injected fault"),
        "{stderr}"
    );

    let set = dir.path().join("set.jsonl");
    std::fs::write(&set, "{\"question\": \"what is 1 + 1 ?\", \"answer\": 2}\n").expect("set");
    let lab = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .env("THINKSCOPE_FAULT", "strategy-panic")
        .args(["--device", "cpu", "lab", "--model"])
        .arg(&model)
        .arg("--set")
        .arg(&set)
        .args([
            "--strategies",
            "greedy",
            "--max-n",
            "1",
            "--max-tokens",
            "4",
            "--csv",
        ])
        .arg(dir.path().join("lab.csv"))
        .output()
        .expect("run thinkscope-cli lab");
    let stderr = String::from_utf8_lossy(&lab.stderr);
    assert!(!lab.status.success());
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:") && last.contains("crashed"),
        "{stderr}"
    );
}

/// `run --save-session` writes the run as a session file (the format the app opens), and a run
/// that fails still saves the tree it reached.
#[test]
fn run_saves_a_session_the_app_format_reads() {
    use thinkscope_engine::session::SessionFile;
    use thinkscope_engine::strategy::KnobValue;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::llama()).expect("write");
    let session = dir.path().join("run.json");
    let json = dir.path().join("run-tree.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .args([
            "--device",
            "cpu",
            "run",
            "--prompt",
            "what is 2 + 2 ?",
            "--model",
        ])
        .arg(&model)
        .args([
            "--strategy",
            "self-consistency",
            "--samples",
            "3",
            "--max-tokens",
            "6",
            "--seed",
            "5",
            "--save-session",
        ])
        .arg(&session)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run thinkscope-cli");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s = SessionFile::read(&session).expect("a valid session file");
    assert_eq!(s.settings.prompt, "what is 2 + 2 ?");
    let pane = &s.settings.panes[0];
    assert_eq!(pane.strategy, "self-consistency");
    assert_eq!(pane.knob("n"), Some(KnobValue::Int(3)));
    assert_eq!((pane.max_tokens, pane.seed), (6, 5));
    // The same tree the --json output holds.
    let out: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let tree: thinkscope_engine::tree::Tree =
        serde_json::from_value(out["tree"].clone()).expect("tree");
    assert_eq!(s.panes[0].tree, tree);
    assert_eq!(s.panes[0].tree.nodes[0].children.len(), 3);
    assert!(s.panes[0].config.is_some());
    // The saved settings run again, to the same tree (the seed is kept).
    let again = pane.run_config(&s.settings.prompt).expect("runnable");
    assert_eq!(again.seed, 5);

    // A crash midway: non-zero exit, and the partial tree is saved all the same.
    let crashed = dir.path().join("crashed.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .env("THINKSCOPE_FAULT", "strategy-panic")
        .args(["--device", "cpu", "run", "--prompt", "1 + 1 ?", "--model"])
        .arg(&model)
        .args([
            "--strategy",
            "best-of-n",
            "--max-tokens",
            "4",
            "--save-session",
        ])
        .arg(&crashed)
        .output()
        .expect("run thinkscope-cli");
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("injected fault"), "{stderr}");
    let s = SessionFile::read(&crashed).expect("saved despite the crash");
    assert_eq!(s.settings.prompt, "1 + 1 ?");
    assert_eq!(s.settings.panes[0].strategy, "best-of-n");

    // A folder that cannot be written: one clear error line, non-zero exit.
    let nowhere = dir.path().join("missing-folder").join("s.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .args(["--device", "cpu", "run", "--prompt", "1 + 1 ?", "--model"])
        .arg(&model)
        .args([
            "--strategy",
            "greedy",
            "--max-tokens",
            "4",
            "--save-session",
        ])
        .arg(&nowhere)
        .output()
        .expect("run thinkscope-cli");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("could not save the session") && stderr.contains("missing-folder"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Progress probes and the verifier scorers from the command line.

/// `run --progress K` puts `progress` on every probed node of the JSON tree (p̂ the share of its
/// K probes that matched, consensus-labelled without --expected) and `probe_tokens` in the
/// cost; with --expected the basis is the known answer.
#[test]
fn run_with_progress_writes_progress_on_nodes_and_probe_costs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::llama()).expect("write");
    let run = |json: &std::path::Path, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
            .args(["--device", "cpu", "run", "--model"])
            .arg(&model)
            .args(["--strategy", "self-consistency", "--samples", "2"])
            .args([
                "--max-tokens",
                "8",
                "--seed",
                "1",
                "--prompt",
                "what is 2 + 3 ?",
            ])
            .args(["--progress", "3", "--probe-tokens", "4", "--json"])
            .arg(json)
            .args(extra)
            .output()
            .expect("run thinkscope-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).expect("json")).expect("parse");
        (v, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (v, stdout) = run(&dir.path().join("a.json"), &[]);
    assert!(stdout.contains("consensus progress"), "{stdout}");
    let nodes = v["tree"]["nodes"].as_array().expect("nodes");
    let probed: Vec<&serde_json::Value> =
        nodes.iter().filter(|n| !n["progress"].is_null()).collect();
    // The prompt and both samples.
    assert!(probed.len() >= 3, "{} probed", probed.len());
    let mut probe_tokens = 0;
    for n in &probed {
        let p = &n["progress"];
        let probes = p["probes"].as_array().expect("probes");
        assert_eq!(probes.len(), 3);
        let matched = probes.iter().filter(|q| q["matched"] == true).count();
        let p_hat = p["p_hat"].as_f64().expect("p_hat");
        assert!((p_hat - matched as f64 / 3.0).abs() < 1e-6);
        assert_eq!(p["basis"], "consensus");
        probe_tokens += p["cue_tokens"].as_u64().expect("cue")
            + probes
                .iter()
                .map(|q| q["tokens"].as_u64().expect("tokens"))
                .sum::<u64>();
    }
    let cost = &v["cost"];
    assert_eq!(cost["probed_nodes"].as_u64(), Some(probed.len() as u64));
    // Every probe token counted is one of the probes' own (an end token is sampled but not
    // in a probe's text, so the meter may count a few more).
    assert!(cost["probe_tokens"].as_u64().expect("probe_tokens") >= probe_tokens);

    let (v, _) = run(&dir.path().join("b.json"), &["--expected", "5"]);
    let p = v["tree"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| !n["progress"].is_null())
        .map(|n| n["progress"].clone())
        .expect("a probed node");
    assert_eq!(p["basis"], "expected");
    assert_eq!(p["reference"], "5");
}

/// The lab takes the verifier scorers and progress-scored beam as strategy specs: the weighted
/// vote and best-of-N by P(yes) get their own rows, and the pool's figures carry them.
#[test]
fn lab_takes_the_verifier_and_progress_scorers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::llama()).expect("write");
    let csv = dir.path().join("lab.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscope-cli"))
        .args(["--device", "cpu", "lab", "--model"])
        .arg(&model)
        .args(["--generate", "arithmetic:2", "--max-n", "2", "--max-tokens", "4"])
        .args([
            "--strategies",
            "self-consistency,weighted-vote,best-of-n:scorer=self-verify,beam:scorer=progress:depth=1:step_tokens=4",
        ])
        .arg("--csv")
        .arg(&csv)
        .output()
        .expect("run thinkscope-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).expect("csv");
    let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (wmaj, ver) = (col("accuracy_weighted_maj"), col("accuracy_verifier"));
    for name in ["weighted-vote,", "best-of-n:scorer=self-verify,", "beam:"] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    for line in text
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("weighted-vote,"))
    {
        let cells: Vec<&str> = line.split(',').collect();
        let w: f64 = cells[wmaj].parse().expect("weighted maj@N");
        let v: f64 = cells[ver].parse().expect("verifier");
        assert!((0.0..=1.0).contains(&w) && (0.0..=1.0).contains(&v));
    }
}
