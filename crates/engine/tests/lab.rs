//! Scaling lab: estimators against brute-force enumeration, problem sets, the generator, resume
//! after an interruption (tiny model), and one end-to-end sweep on the real default model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Device;
use thinkscope_engine::answer::normalize;
use thinkscope_engine::fetch;
use thinkscope_engine::lab::estimators::{
    best_of_k, binomial, maj_at_k, pass_at_k, verifier_best_of_k, weighted_maj_at_k, SampleOutcome,
};
use thinkscope_engine::lab::plot::{render_difficulty_svg, render_gap_svg, render_svg};
use thinkscope_engine::lab::problems::{generate, parse_jsonl, GeneratorKind, GeneratorSpec};
use thinkscope_engine::lab::sweep::{
    difficulty_bins, difficulty_csv, lab_strategy, read_results, run_sweep, summarize,
    summarize_problems, to_csv, walls, DifficultyBasis, ProblemRecord, RunCost, RunRecord,
    SampleRecord, SweepConfig, SweepEngine, SweepMode, SweepPoint, SweepProgress, CSV_HEADER,
    DIFFICULTY_CSV_HEADER,
};
use thinkscope_engine::lab::{LabError, Problem, ProblemSet};
use thinkscope_engine::model::sampling::Rng;
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};
use thinkscope_engine::Model;

// ---------------------------------------------------------------------------------------------
// Estimators against brute force: enumerate every k-subset as a bitmask and score it directly.

fn subsets(n: usize, k: usize) -> impl Iterator<Item = Vec<usize>> {
    (0u32..1 << n)
        .filter(move |m| m.count_ones() as usize == k)
        .map(move |m| (0..n).filter(|i| m >> i & 1 == 1).collect())
}

/// Majority vote as documented: most votes, then higher summed exp(mean log-prob), then a fair
/// coin among what is still tied; no answer in the subset scores 0.
fn brute_vote(samples: &[SampleOutcome], idx: &[usize]) -> f64 {
    let mut votes: HashMap<String, (u32, f64, bool)> = HashMap::new();
    for &i in idx {
        let s = &samples[i];
        if let Some(a) = &s.answer {
            let e = votes.entry(normalize(a)).or_insert((0, 0.0, false));
            e.0 += 1;
            e.1 += f64::from(s.mean_logprob.unwrap_or(-10.0)).exp();
            e.2 |= s.correct;
        }
    }
    let Some(top) = votes.values().map(|v| v.0).max() else {
        return 0.0;
    };
    let best = votes
        .values()
        .filter(|v| v.0 == top)
        .map(|v| v.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<bool> = votes
        .values()
        .filter(|v| v.0 == top && v.1 == best)
        .map(|v| v.2)
        .collect();
    tied.iter().filter(|c| **c).count() as f64 / tied.len() as f64
}

fn brute_maj(samples: &[SampleOutcome], k: usize) -> f64 {
    let all: Vec<f64> = subsets(samples.len(), k)
        .map(|s| brute_vote(samples, &s))
        .collect();
    all.iter().sum::<f64>() / all.len() as f64
}

/// Weighted vote as documented: the highest summed verifier score (unscored samples weigh 0),
/// then more votes, then a fair coin.
fn brute_weighted_vote(samples: &[SampleOutcome], idx: &[usize]) -> f64 {
    let mut votes: HashMap<String, (f64, u32, bool)> = HashMap::new();
    for &i in idx {
        let s = &samples[i];
        if let Some(a) = &s.answer {
            let e = votes.entry(normalize(a)).or_insert((0.0, 0, false));
            e.0 += f64::from(s.verifier.unwrap_or(0.0));
            e.1 += 1;
            e.2 |= s.correct;
        }
    }
    let Some(top) = votes.values().map(|v| v.0).reduce(f64::max) else {
        return 0.0;
    };
    let most = votes
        .values()
        .filter(|v| v.0 == top)
        .map(|v| v.1)
        .max()
        .unwrap_or(0);
    let tied: Vec<bool> = votes
        .values()
        .filter(|v| v.0 == top && v.1 == most)
        .map(|v| v.2)
        .collect();
    tied.iter().filter(|c| **c).count() as f64 / tied.len() as f64
}

fn brute_weighted(samples: &[SampleOutcome], k: usize) -> f64 {
    let all: Vec<f64> = subsets(samples.len(), k)
        .map(|s| brute_weighted_vote(samples, &s))
        .collect();
    all.iter().sum::<f64>() / all.len() as f64
}

/// Best of a subset by mean log-prob; equal best scores are a fair coin.
fn brute_best(samples: &[SampleOutcome], k: usize) -> f64 {
    brute_best_by(samples, k, |s| s.mean_logprob)
}

fn brute_best_by(
    samples: &[SampleOutcome],
    k: usize,
    by: impl Fn(&SampleOutcome) -> Option<f32>,
) -> f64 {
    let score = |i: usize| by(&samples[i]).map_or(f64::NEG_INFINITY, f64::from);
    let all: Vec<f64> = subsets(samples.len(), k)
        .map(|s| {
            let top = s
                .iter()
                .map(|&i| score(i))
                .fold(f64::NEG_INFINITY, f64::max);
            let tied: Vec<usize> = s.iter().copied().filter(|&i| score(i) == top).collect();
            tied.iter().filter(|&&i| samples[i].correct).count() as f64 / tied.len() as f64
        })
        .collect();
    all.iter().sum::<f64>() / all.len() as f64
}

/// Random sample sets with few distinct answers, missing answers, and tied scores.
fn random_samples(rng: &mut Rng, n: usize) -> Vec<SampleOutcome> {
    let answers = ["7", "7.0", "8", "12", "x"];
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            let answer = (!r.is_multiple_of(6))
                .then(|| answers[(r >> 8) as usize % answers.len()].to_owned());
            let correct = answer.as_deref().is_some_and(|a| normalize(a) == "7");
            // Scores on a coarse grid so that ties happen; some samples have none.
            let mean_logprob = (r >> 20 & 7 != 0).then(|| -(((r >> 24) % 4) as f32) * 0.25);
            let verifier = (r >> 30 & 7 != 0).then_some(((r >> 34) % 5) as f32 * 0.25);
            SampleOutcome {
                answer,
                correct,
                mean_logprob,
                verifier,
            }
        })
        .collect()
}

#[test]
fn pass_at_k_matches_brute_force() {
    for n in 1..=12 {
        for c in 0..=n {
            for k in 1..=n {
                // The first c samples are right.
                let hits: Vec<f64> = subsets(n, k)
                    .map(|s| f64::from(u8::from(s.iter().any(|&i| i < c))))
                    .collect();
                let brute = hits.iter().sum::<f64>() / hits.len() as f64;
                let est = pass_at_k(n, c, k);
                assert!(
                    (est - brute).abs() < 1e-12,
                    "n={n} c={c} k={k}: {est} vs {brute}"
                );
            }
        }
    }
    // Stable for large n where the binomials overflow.
    let p = pass_at_k(10_000, 3, 5_000);
    assert!((p - (1.0 - 0.5f64.powi(3))).abs() < 1e-3, "{p}");
}

#[test]
fn maj_at_k_matches_brute_force_exactly_on_small_cases() {
    let mut rng = Rng::new(5);
    for trial in 0..60 {
        let n = 1 + trial % 10;
        let samples = random_samples(&mut rng, n);
        for k in 1..=n {
            let est = maj_at_k(&samples, k, 1);
            let brute = brute_maj(&samples, k);
            assert!(
                (est - brute).abs() < 1e-12,
                "trial {trial} n={n} k={k}: {est} vs {brute} for {samples:?}"
            );
        }
    }
}

#[test]
fn maj_at_k_resamples_close_to_brute_force_when_subsets_are_many() {
    let mut rng = Rng::new(9);
    let samples = random_samples(&mut rng, 22);
    for k in [7, 9, 11] {
        assert!(
            binomial(22, k).expect("fits") > 50_000,
            "k={k} takes the resampling path"
        );
        let est = maj_at_k(&samples, k, 3);
        let brute = brute_maj(&samples, k);
        assert!((est - brute).abs() < 0.015, "k={k}: {est} vs {brute}");
        assert_eq!(est, maj_at_k(&samples, k, 3), "seeded: the same every time");
    }
}

#[test]
fn best_of_k_matches_brute_force() {
    let mut rng = Rng::new(17);
    for trial in 0..60 {
        let n = 1 + trial % 11;
        let samples = random_samples(&mut rng, n);
        for k in 1..=n {
            let est = best_of_k(&samples, k);
            let brute = brute_best(&samples, k);
            assert!(
                (est - brute).abs() < 1e-12,
                "trial {trial} n={n} k={k}: {est} vs {brute} for {samples:?}"
            );
        }
    }
}

#[test]
fn weighted_vote_and_verifier_best_match_brute_force() {
    let mut rng = Rng::new(29);
    for trial in 0..60 {
        let n = 1 + trial % 11;
        let samples = random_samples(&mut rng, n);
        for k in 1..=n {
            let (est, brute) = (
                weighted_maj_at_k(&samples, k, 0),
                brute_weighted(&samples, k),
            );
            assert!(
                (est - brute).abs() < 1e-12,
                "trial {trial} n={n} k={k}: weighted {est} vs {brute}"
            );
            let (est, brute) = (
                verifier_best_of_k(&samples, k),
                brute_best_by(&samples, k, |s| s.verifier),
            );
            assert!(
                (est - brute).abs() < 1e-12,
                "trial {trial} n={n} k={k}: verifier {est} vs {brute}"
            );
        }
    }
}

/// Snell et al.'s weighted best-of-N by hand: three weak votes for the wrong answer against one
/// confident vote for the right one.
#[test]
fn the_weighted_vote_equals_a_hand_computed_example() {
    let s = |a: &str, correct: bool, v: f32| SampleOutcome {
        answer: Some(a.into()),
        correct,
        mean_logprob: Some(-1.0),
        verifier: Some(v),
    };
    let samples = [
        s("5", true, 0.9),
        s("7", false, 0.4),
        s("7", false, 0.3),
        s("7", false, 0.1),
    ];
    // All four: 5 scores 0.9, 7 scores 0.8; the weighted vote is right, the plain vote wrong.
    assert_eq!(weighted_maj_at_k(&samples, 4, 0), 1.0);
    assert_eq!(maj_at_k(&samples, 4, 0), 0.0);
    // Pairs (6): with the 5 (3 pairs) it wins every time (0.9 against at most 0.4); without it
    // (3 pairs) 7 wins. 3 / 6.
    assert!((weighted_maj_at_k(&samples, 2, 0) - 0.5).abs() < 1e-12);
    // Triples (4): with the 5 (3 triples) 0.9 beats 0.7, 0.5 and 0.4; without it 7 wins. 3 / 4.
    assert!((weighted_maj_at_k(&samples, 3, 0) - 0.75).abs() < 1e-12);
    // Best-of-N by verifier picks the 0.9 whenever it is drawn: k / 4.
    for k in 1..=4 {
        assert!((verifier_best_of_k(&samples, k) - k as f64 / 4.0).abs() < 1e-12);
    }
}

#[test]
fn estimators_at_one_and_at_n() {
    let mut rng = Rng::new(23);
    let samples = random_samples(&mut rng, 8);
    let right = samples.iter().filter(|s| s.correct).count() as f64 / 8.0;
    // With one sample every rule is the plain accuracy.
    assert!((pass_at_k(8, (right * 8.0) as usize, 1) - right).abs() < 1e-12);
    assert!((maj_at_k(&samples, 1, 0) - right).abs() < 1e-12);
    assert!((best_of_k(&samples, 1) - right).abs() < 1e-12);
    // With all of them there is one subset.
    let all: Vec<usize> = (0..8).collect();
    assert_eq!(maj_at_k(&samples, 8, 0), brute_vote(&samples, &all));
    assert_eq!(maj_at_k(&[], 3, 0), 0.0);
    assert_eq!(best_of_k(&[], 3), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Problem sets and the generator.

#[test]
fn jsonl_problem_sets_parse_plain_and_gsm8k_answers() {
    let text = r#"{"question": "What is 2 + 2?", "answer": "4"}

{"question": "How many?", "answer": 1200, "id": "q-two"}
{"question": "Natalia sold clips...", "answer": "She sold 48/2 = 24 clips.\n#### 1,272", "extra": true}
{"question": "Capital of France?", "answer": "Paris"}
"#;
    let p = parse_jsonl(text, Path::new("set.jsonl")).expect("parses");
    assert_eq!(p.len(), 4);
    assert_eq!(p[0].id, "set-1");
    assert_eq!(p[0].answer, "4");
    assert_eq!(p[1].id, "q-two");
    assert_eq!(p[1].answer, "1200");
    assert_eq!(p[2].answer, "1272");
    assert!(p[2].check("1,272") && p[2].check("1272.0") && !p[2].check("1271"));
    assert!(p[3].check("paris"));
}

#[test]
fn bad_problem_lines_are_reported_with_their_line_number() {
    let good = r#"{"question": "q", "answer": "1"}"#;
    for (bad, reason) in [
        ("not json", "not a JSON object"),
        (r#"{"answer": "1"}"#, "missing \"question\""),
        (r#"{"question": "q"}"#, "missing \"answer\""),
        (
            r#"{"question": 3, "answer": "1"}"#,
            "\"question\" must be a string",
        ),
        (
            r#"{"question": "  ", "answer": "1"}"#,
            "\"question\" is empty",
        ),
        (
            r#"{"question": "q", "answer": [1]}"#,
            "\"answer\" must be a string or a number",
        ),
        (
            "{\"question\": \"q\", \"answer\": \"#### \"}",
            "\"answer\" is empty",
        ),
    ] {
        let text = format!("{good}\n\n{bad}\n{good}\n");
        let err = parse_jsonl(&text, Path::new("p.jsonl")).expect_err(bad);
        let LabError::BadLine { line, .. } = &err else {
            panic!("{bad}: wrong error {err:?}");
        };
        assert_eq!(*line, 3, "{bad}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("line 3: ") && msg.contains(reason) && msg.ends_with("p.jsonl"),
            "{bad}: {msg}"
        );
    }
    let empty = parse_jsonl("\n\n", Path::new("e.jsonl")).expect_err("empty");
    assert!(matches!(empty, LabError::EmptySet { .. }));
    let missing = ProblemSet::load(Path::new("/nonexistent/set.jsonl")).expect_err("missing");
    assert!(
        missing.to_string().ends_with("/nonexistent/set.jsonl"),
        "{missing}"
    );
}

#[test]
fn generator_specs_parse_and_reject_nonsense() {
    let s: GeneratorSpec = "arithmetic:8".parse().expect("spec");
    assert_eq!(
        (s.kind, s.count, s.difficulty),
        (GeneratorKind::Arithmetic, 8, 1)
    );
    let s: GeneratorSpec = "word:3:2".parse().expect("spec");
    assert_eq!((s.kind, s.count, s.difficulty), (GeneratorKind::Word, 3, 2));
    assert_eq!(s.to_string(), "word:3:2");
    for bad in [
        "algebra:3",
        "arithmetic",
        "arithmetic:0",
        "arithmetic:x",
        "arithmetic:4:0",
        "arithmetic:4:4",
        "word:2:1:9",
    ] {
        let err = bad.parse::<GeneratorSpec>().expect_err(bad);
        assert!(err.to_string().contains(bad), "{err}");
    }
}

/// Evaluate "What is EXPR?" with + - * and parentheses.
fn eval_question(q: &str) -> i64 {
    fn expr(t: &[String], i: &mut usize) -> i64 {
        let mut v = term(t, i);
        while *i < t.len() && (t[*i] == "+" || t[*i] == "-") {
            let op = t[*i].clone();
            *i += 1;
            let r = term(t, i);
            v = if op == "+" { v + r } else { v - r };
        }
        v
    }
    fn term(t: &[String], i: &mut usize) -> i64 {
        let mut v = atom(t, i);
        while *i < t.len() && t[*i] == "*" {
            *i += 1;
            v *= atom(t, i);
        }
        v
    }
    fn atom(t: &[String], i: &mut usize) -> i64 {
        *i += 1;
        if t[*i - 1] == "(" {
            let v = expr(t, i);
            *i += 1; // ")"
            v
        } else {
            t[*i - 1].parse().expect("number")
        }
    }
    let e = q
        .strip_prefix("What is ")
        .and_then(|s| s.strip_suffix('?'))
        .expect("question form");
    let spaced = e.replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<String> = spaced.split_whitespace().map(str::to_owned).collect();
    let mut i = 0;
    let v = expr(&tokens, &mut i);
    assert_eq!(i, tokens.len(), "parsed all of {q}");
    v
}

#[test]
fn generator_is_deterministic_prefix_stable_and_right() {
    for kind in [GeneratorKind::Arithmetic, GeneratorKind::Word] {
        for difficulty in 1..=3 {
            let spec = |count| GeneratorSpec {
                kind,
                count,
                difficulty,
            };
            let a = generate(&spec(40), 7);
            assert_eq!(a, generate(&spec(40), 7), "same seed, same problems");
            assert_ne!(a, generate(&spec(40), 8), "another seed, other problems");
            assert_eq!(
                generate(&spec(10), 7)[..],
                a[..10],
                "a longer set extends a shorter one"
            );
            let distinct: std::collections::HashSet<&str> =
                a.iter().map(|p| p.question.as_str()).collect();
            assert!(distinct.len() > 20, "{kind:?} d{difficulty} varies");
            for p in &a {
                let v: i64 = p.answer.parse().expect("integer answer");
                assert!(v >= 0, "{p:?}");
                if kind == GeneratorKind::Arithmetic {
                    assert_eq!(eval_question(&p.question), v, "{p:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Summaries, CSV and plot from hand-made records (no model).

fn sample(answer: &str, correct: bool, lp: f32, tokens: u64) -> SampleRecord {
    SampleRecord {
        answer: Some(answer.into()),
        correct,
        mean_logprob: Some(lp),
        tokens,
        verifier: None,
    }
}

fn cost(prompt: u64, generated: u64, secs: f64) -> RunCost {
    RunCost {
        prompt_tokens: prompt,
        generated_tokens: generated,
        wall_secs: secs,
        energy_joules: secs * 20.0,
        ..RunCost::default()
    }
}

fn record(problem: usize, strategy: &str, run: RunRecord) -> ProblemRecord {
    ProblemRecord {
        settings: "s".into(),
        problem,
        problem_id: format!("p{problem}"),
        fingerprint: format!("f{problem}"),
        strategy: strategy.into(),
        expected: "7".into(),
        runs: vec![run],
        shared_from: None,
    }
}

#[test]
fn summaries_derive_smaller_budgets_from_the_pool() {
    let config = SweepConfig {
        strategies: vec![
            "greedy".into(),
            "self-consistency".into(),
            "best-of-n".into(),
        ],
        max_n: 4,
        ..SweepConfig::default()
    };
    let pool = RunRecord {
        n: 4,
        answer: Some("7".into()),
        correct: true,
        samples: vec![
            sample("7", true, -0.5, 10),
            sample("7", true, -0.9, 10),
            sample("8", false, -0.1, 10),
            sample("9", false, -0.3, 10),
        ],
        cost: cost(20, 40, 4.0),
    };
    let greedy = RunRecord {
        n: 1,
        answer: Some("8".into()),
        correct: false,
        samples: vec![sample("8", false, -0.2, 5)],
        cost: cost(15, 5, 0.5),
    };
    let records = vec![
        record(0, "system1", greedy),
        record(0, "self-consistency", pool.clone()),
        record(0, "best-of-n", pool),
    ];
    let points = summarize(&config, &records);
    assert_eq!(points.len(), 9, "3 strategies × N = 1, 2, 4");
    let at = |s: &str, n: usize| {
        points
            .iter()
            .find(|p| p.strategy == s && p.n == n)
            .expect("point")
    };
    for n in [1, 2, 4] {
        let g = at("greedy", n);
        assert_eq!((g.accuracy, g.tokens, g.cost_derived), (0.0, 20.0, false));
    }
    let sc1 = at("self-consistency", 1);
    assert!((sc1.accuracy_pass - 0.5).abs() < 1e-12);
    assert!(
        (sc1.tokens - 30.0).abs() < 1e-9,
        "prompt + 1/4 of the generated tokens"
    );
    assert!((sc1.wall_secs - 2.0).abs() < 1e-9 && sc1.cost_derived);
    let sc2 = at("self-consistency", 2);
    assert!((sc2.accuracy_pass - 5.0 / 6.0).abs() < 1e-12);
    let sc4 = at("self-consistency", 4);
    assert_eq!((sc4.tokens, sc4.cost_derived), (60.0, false));
    // Two votes for 7 against one each for 8 and 9: the vote is right.
    assert_eq!(sc4.accuracy_maj, 1.0);
    assert_eq!(sc4.accuracy, sc4.accuracy_maj);
    // The most confident sample (8) is wrong.
    let bon4 = at("best-of-n", 4);
    assert_eq!((bon4.accuracy, bon4.accuracy_best_of_n), (0.0, 0.0));

    let csv = to_csv(&points);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    assert_eq!(lines.count(), 9);
    for col in [
        "strategy",
        "n",
        "accuracy_pass",
        "accuracy_maj",
        "accuracy_best_of_n",
        "tokens",
        "wall_secs",
        "energy_joules",
        "energy_measured",
        "problems",
    ] {
        assert!(CSV_HEADER.split(',').any(|c| c == col), "{col}");
    }
    let svg = render_svg(&points, "t & t", "note");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("t &amp; t"));
    assert!(
        svg.contains("stroke-dasharray=\"7 5\""),
        "greedy is a dashed baseline"
    );
    assert_eq!(
        svg.matches("<polyline").count(),
        3,
        "two curves and the pass@N oracle"
    );
}

fn verified(answer: &str, correct: bool, lp: f32, v: f32) -> SampleRecord {
    SampleRecord {
        verifier: Some(v),
        ..sample(answer, correct, lp, 10)
    }
}

/// A verified pool of four on problem `p`: `right` of its samples say 7.
fn verified_pool(right: usize) -> RunRecord {
    let samples = (0..4)
        .map(|i| {
            if i < right {
                verified("7", true, -0.5, 0.2 + 0.1 * i as f32)
            } else {
                verified("8", false, -0.1, 0.6)
            }
        })
        .collect();
    RunRecord {
        n: 4,
        answer: None,
        correct: false,
        samples,
        cost: RunCost {
            verify_tokens: 8,
            ..cost(28, 40, 4.0)
        },
    }
}

#[test]
fn verified_pools_give_the_verifier_curves_and_charge_the_verifier_only_where_read() {
    let config = SweepConfig {
        strategies: vec![
            "greedy".into(),
            "self-consistency".into(),
            "weighted-vote".into(),
            "best-of-n:scorer=self-verify".into(),
        ],
        max_n: 4,
        ..SweepConfig::default()
    };
    assert!(config.needs_verifier());
    assert!(config.settings_key("m").ends_with(" verify=1"));
    let greedy = |right: bool| RunRecord {
        n: 1,
        answer: Some("7".into()),
        correct: right,
        samples: vec![sample("7", right, -0.2, 5)],
        cost: cost(15, 5, 0.5),
    };
    // Problem 0: two of four right, and the two wrong ones trusted more (0.6 each).
    let mut records = Vec::new();
    for (p, right) in [(0, 2), (1, 4), (2, 0)] {
        records.push(record(p, "system1", greedy(p == 1)));
        for key in [
            "self-consistency",
            "weighted-vote",
            "best-of-n:scorer=self-verify",
        ] {
            records.push(record(p, key, verified_pool(right)));
        }
    }
    let points = summarize(&config, &records);
    let at = |s: &str, n: usize| {
        points
            .iter()
            .find(|p| p.strategy == s && p.n == n)
            .expect("point")
    };
    let sc = at("self-consistency", 4);
    // Problem 0: 7 and 8 tie on votes, 8 is more confident: maj wrong; weighted 0.5 vs 1.2:
    // wrong; the verifier's favourite (0.6) is wrong. Problem 1 is right everywhere, 2 nowhere.
    assert!((sc.accuracy_maj - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(
        sc.accuracy_weighted_maj.map(|a| (a * 3.0).round()),
        Some(1.0)
    );
    assert_eq!(sc.accuracy_verifier.map(|a| (a * 3.0).round()), Some(1.0));
    assert!(
        (sc.accuracy_pass - 2.0 / 3.0).abs() < 1e-12,
        "the gap: problem 0"
    );
    assert_eq!(
        at("weighted-vote", 4).accuracy,
        sc.accuracy_weighted_maj.expect("w")
    );
    assert_eq!(
        at("best-of-n:scorer=self-verify", 2).accuracy,
        at("self-consistency", 2).accuracy_verifier.expect("v")
    );
    // Self-consistency does not read the verifier: its 8 question tokens are not charged, so
    // even N = 4 is derived; the verifier strategies pay for them and N = 4 is measured.
    assert_eq!((sc.tokens, sc.cost_derived), (60.0, true));
    let wv = at("weighted-vote", 4);
    assert_eq!((wv.tokens, wv.cost_derived), (68.0, false));
    assert!((at("weighted-vote", 1).tokens - (20.0 + 48.0 / 4.0)).abs() < 1e-9);
    // Energy per correct answer: all the energy over the expected right answers.
    let e = wv.energy_per_correct.expect("some right");
    assert!((e - wv.energy_joules_total / (wv.accuracy * 3.0)).abs() < 1e-9);
    let csv = to_csv(&points);
    for col in [
        "accuracy_weighted_maj",
        "accuracy_verifier",
        "energy_per_correct_joules",
    ] {
        assert!(CSV_HEADER.split(',').any(|c| c == col), "{col}");
    }
    assert_eq!(csv.lines().count(), 1 + 4 * 3);

    // Difficulty: pass@1 is 0.5, 1 and 0: three levels of one problem, easiest first.
    let bins = difficulty_bins(&config, &records, 3);
    assert_eq!(bins.len(), 3);
    assert!(bins.iter().all(|b| b.basis == DifficultyBasis::PassAt1));
    assert_eq!(
        bins.iter().map(|b| b.problems.clone()).collect::<Vec<_>>(),
        [vec![1], vec![0], vec![2]]
    );
    assert_eq!((bins[0].lo, bins[0].hi), (1.0, 1.0));
    assert!(
        bins[1].label().contains("pass@1 0.50"),
        "{}",
        bins[1].label()
    );
    // Two levels asked for: 1 and 0.5 together (never splitting equal pass@1), then 0.
    let two = difficulty_bins(&config, &records, 2);
    assert_eq!(
        two.iter().map(|b| b.problems.len()).collect::<Vec<_>>(),
        [2, 1]
    );
    let levels: Vec<_> = bins
        .iter()
        .map(|b| {
            (
                b.clone(),
                summarize_problems(&config, &records, |p| b.problems.contains(&p)),
            )
        })
        .collect();
    assert_eq!(
        levels[0].1.iter().find(|p| p.n == 4).map(|p| p.problems),
        Some(1)
    );
    let easy = levels[0]
        .1
        .iter()
        .find(|p| p.strategy == "self-consistency" && p.n == 4);
    assert_eq!(easy.map(|p| p.accuracy_maj), Some(1.0));
    let dcsv = difficulty_csv(&levels);
    assert!(dcsv.starts_with(DIFFICULTY_CSV_HEADER));
    assert_eq!(dcsv.lines().count(), 1 + 3 * 4 * 3);
    // Without a pool, greedy splits the set in two.
    let greedy_only = SweepConfig {
        strategies: vec!["greedy".into()],
        ..config.clone()
    };
    let g = difficulty_bins(&greedy_only, &records, 5);
    assert_eq!(g.len(), 2);
    assert_eq!(
        (g[0].basis, g[0].problems.clone()),
        (DifficultyBasis::Greedy, vec![1])
    );

    let gap = render_gap_svg(&points, "self-consistency", "t", "n");
    assert!(gap.starts_with("<svg") && gap.trim_end().ends_with("</svg>"));
    assert_eq!(gap.matches("<polygon").count(), 1, "the gap is shaded");
    assert_eq!(gap.matches("<polyline").count(), 5, "five curves");
    let diff = render_difficulty_svg(&levels, "self-consistency", "t", "n");
    assert_eq!(
        diff.matches("<polygon").count(),
        3,
        "one shaded gap per level"
    );
}

fn point(strategy: &str, n: usize, accuracy: f64, pass: f64) -> SweepPoint {
    SweepPoint {
        strategy: strategy.into(),
        n,
        problems: 1,
        accuracy,
        accuracy_pass: pass,
        accuracy_maj: accuracy,
        accuracy_best_of_n: accuracy,
        accuracy_weighted_maj: None,
        accuracy_verifier: None,
        tokens: n as f64 * 10.0,
        wall_secs: 1.0,
        energy_joules: 1.0,
        tokens_total: 0.0,
        wall_secs_total: 0.0,
        energy_joules_total: 0.0,
        energy_per_correct: None,
        energy_measured: false,
        cost_derived: n < 16,
    }
}

#[test]
fn walls_are_where_doublings_stop_paying() {
    let pts: Vec<SweepPoint> = [
        (1, 0.40, 0.40),
        (2, 0.50, 0.60),
        (4, 0.55, 0.75),
        (8, 0.56, 0.85),
        (16, 0.565, 0.92),
    ]
    .into_iter()
    .map(|(n, a, p)| point("self-consistency", n, a, p))
    .collect();
    let w = walls(&pts, 0.02);
    let find = |c: &str| w.iter().find(|w| w.curve == c).expect(c);
    // maj@N gains 10, 5, 1, 0.5 points: flat from N = 4.
    assert_eq!(find("maj@N").n, Some(4));
    assert!((find("maj@N").gain_after - 0.01).abs() < 1e-9);
    // pass@N still gains 7 points at the last doubling.
    assert_eq!(find("pass@N").n, None);
    assert_eq!(find("self-consistency").n, Some(4));
    assert!(
        w.iter().all(|w| w.curve != "weighted maj@N"),
        "no verifier, no curve"
    );
}

#[test]
fn strategy_specs_set_knobs_and_are_checked() {
    let beam = lab_strategy("beam:scorer=progress").expect("spec");
    assert_eq!(beam.key, "beam:scorer=progress");
    assert_eq!(beam.mode, SweepMode::PerBudget { knob: "width" });
    let bon = lab_strategy(" best-of-n : scorer = self-verify ").expect("spaces");
    assert_eq!(bon.key, "best-of-n:scorer=self-verify");
    assert!(matches!(bon.mode, SweepMode::Pool { .. }));
    assert_eq!(lab_strategy("greedy").expect("alias").key, "system1");
    for (spec, needle) in [
        ("beam:width=3", "the budget N sets width"),
        ("beam:scorer", "not KEY=VALUE"),
        ("beam:scorer=magic", "not one of"),
        ("beam:wings=2", "no parameter 'wings'"),
    ] {
        let err = lab_strategy(spec).expect_err(spec);
        assert!(err.to_string().contains(needle), "{spec}: {err}");
    }
    let both = SweepConfig {
        strategies: vec!["best-of-n".into(), "best-of-n:scorer=self-verify".into()],
        ..SweepConfig::default()
    };
    assert_eq!(both.lab_strategies().expect("parse").len(), 2);
    let twice = SweepConfig {
        strategies: vec![
            "beam:scorer=progress".into(),
            "beam : scorer=progress".into(),
        ],
        ..SweepConfig::default()
    };
    let mut t = twice.clone();
    t.problems.problems.push(Problem {
        id: "p".into(),
        question: "q".into(),
        answer: "1".into(),
    });
    assert!(t
        .validate()
        .expect_err("twice")
        .to_string()
        .contains("listed twice"));
}

// ---------------------------------------------------------------------------------------------
// Sweeps on the tiny model: resume after an interruption.

fn tiny_model(dir: &Path) -> Arc<Model> {
    let path = dir.join("tiny.gguf");
    write_tiny_model(&path, &TinySpec::llama()).expect("write");
    Arc::new(Model::load(&path, &Device::Cpu).expect("load"))
}

fn tiny_config() -> SweepConfig {
    let problems = (0..4)
        .map(|i| Problem {
            id: format!("t{i}"),
            question: format!("what is {i} + 3 ?"),
            answer: (i + 3).to_string(),
        })
        .collect();
    SweepConfig {
        strategies: vec![
            "greedy".into(),
            "self-consistency".into(),
            "best-of-n".into(),
        ],
        max_n: 4,
        problems: ProblemSet {
            name: "tiny".into(),
            problems,
        },
        seed: 11,
        max_tokens: 8,
        temperature: 1.0,
        top_p: 0.95,
        thinking: None,
    }
}

/// A record without its timings, which differ from run to run.
fn timeless(r: &ProblemRecord) -> ProblemRecord {
    let mut r = r.clone();
    for run in &mut r.runs {
        run.cost.wall_secs = 0.0;
        run.cost.energy_joules = 0.0;
    }
    r
}

#[test]
fn sweep_resumes_after_an_interruption_without_losing_finished_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let config = tiny_config();

    // Uninterrupted.
    let whole_path = dir.path().join("whole.jsonl");
    let never = AtomicBool::new(false);
    let whole = run_sweep(
        &SweepEngine::local(model.clone()),
        &config,
        &whole_path,
        &never,
        &mut |_| {},
    )
    .expect("sweep");
    assert!(whole.completed);
    assert_eq!(whole.records.len(), 12);
    assert_eq!(read_results(&whole_path).expect("read").len(), 12);
    assert!(whole.records.iter().all(|r| r.runs[0].cost.tokens() > 0));
    let pool = whole
        .records
        .iter()
        .find(|r| r.strategy == "self-consistency")
        .expect("pool");
    assert_eq!(pool.runs[0].samples.len(), 4, "one sample per budget unit");
    assert!(whole
        .records
        .iter()
        .filter(|r| r.strategy == "best-of-n")
        .all(|r| r.shared_from.as_deref() == Some("self-consistency")));

    // Interrupted once the second problem's pool run is under way: the cancel reaches the
    // engine within a forward pass. (A run that finishes before the cancel lands is kept.)
    let path = dir.path().join("resumed.jsonl");
    let cancel = AtomicBool::new(false);
    let cut = run_sweep(
        &SweepEngine::local(model.clone()),
        &config,
        &path,
        &cancel,
        &mut |p| {
            if let SweepProgress::PairStarted {
                problem: 1,
                strategy,
                ..
            } = &p
            {
                if strategy == "self-consistency" {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        },
    )
    .expect("cancelled sweep");
    assert!(!cut.completed);
    let kept = read_results(&path).expect("read");
    assert!(
        (4..=5).contains(&kept.len()),
        "the first problem and the second's greedy run are on disk, the rest is not: {}",
        kept.len()
    );
    assert_eq!(
        kept.iter().map(timeless).collect::<Vec<_>>(),
        whole.records[..kept.len()]
            .iter()
            .map(timeless)
            .collect::<Vec<_>>()
    );
    // A kill during a write leaves a torn last line; the resume must cope.
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(r#"{"settings":"model=tiny max_n=4","probl"#);
    std::fs::write(&path, text).expect("write");

    // Resume: the finished pairs are skipped, the rest run.
    let mut started = Vec::new();
    let mut resumed_from = None;
    let resumed = run_sweep(
        &SweepEngine::local(model),
        &config,
        &path,
        &never,
        &mut |p| match p {
            SweepProgress::Started { done, total, .. } => resumed_from = Some((done, total)),
            SweepProgress::PairStarted {
                problem, strategy, ..
            } => started.push((problem, strategy)),
            _ => {}
        },
    )
    .expect("resumed sweep");
    assert!(resumed.completed);
    assert_eq!(resumed_from, Some((kept.len(), 12)));
    assert_eq!(resumed.resumed, kept.len());
    assert_eq!(started.len(), 12 - kept.len());
    assert!(
        started.iter().all(|(p, _)| *p > 0),
        "problem 0 is not run again"
    );
    let on_disk = read_results(&path).expect("read");
    assert_eq!(
        on_disk.len(),
        12,
        "the torn line is dropped, nothing is doubled"
    );

    let a: Vec<ProblemRecord> = whole.records.iter().map(timeless).collect();
    let b: Vec<ProblemRecord> = resumed.records.iter().map(timeless).collect();
    assert_eq!(
        a, b,
        "a resumed sweep gives the uninterrupted sweep's results"
    );
    assert_eq!(
        to_csv(&summarize(&config, &whole.records))
            .lines()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>(),
        to_csv(&summarize(&config, &resumed.records))
            .lines()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>(),
        "same accuracies"
    );

    // A third run finds everything done and runs nothing.
    let mut ran = 0;
    let again = run_sweep(
        &SweepEngine::local(tiny_model(dir.path())),
        &config,
        &path,
        &never,
        &mut |p| {
            if matches!(p, SweepProgress::PairStarted { .. }) {
                ran += 1;
            }
        },
    )
    .expect("nothing to do");
    assert!(again.completed);
    assert_eq!((ran, again.resumed), (0, 12));

    // Other settings do not reuse these records.
    let mut other = config.clone();
    other.max_tokens = 6;
    other.strategies = vec!["greedy".into()];
    let mut done_before = None;
    run_sweep(
        &SweepEngine::local(tiny_model(dir.path())),
        &other,
        &path,
        &never,
        &mut |p| {
            if let SweepProgress::Started { done, ignored, .. } = p {
                done_before = Some((done, ignored));
            }
        },
    )
    .expect("other settings");
    assert_eq!(done_before, Some((0, 12)));
}

#[test]
fn bad_sweep_settings_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let never = AtomicBool::new(false);
    for (change, needle) in [
        (
            Box::new(|c: &mut SweepConfig| c.max_n = 65) as Box<dyn Fn(&mut SweepConfig)>,
            "max N 65",
        ),
        (
            Box::new(|c: &mut SweepConfig| c.strategies = vec![]),
            "no strategies",
        ),
        (
            Box::new(|c: &mut SweepConfig| c.strategies = vec!["sorcery".into()]),
            "unknown strategy 'sorcery'",
        ),
        (
            Box::new(|c: &mut SweepConfig| c.strategies = vec!["greedy".into(), "system1".into()]),
            "listed twice",
        ),
        (
            Box::new(|c: &mut SweepConfig| {
                c.strategies = vec!["entropy-branching".into()];
                c.max_n = 1;
            }),
            "accepts none of the budgets",
        ),
        (
            Box::new(|c: &mut SweepConfig| c.max_tokens = 0),
            "max tokens",
        ),
    ] {
        let mut config = tiny_config();
        change(&mut config);
        let err = run_sweep(
            &SweepEngine::local(model.clone()),
            &config,
            &dir.path().join("r.jsonl"),
            &never,
            &mut |_| {},
        )
        .expect_err(needle);
        assert!(err.to_string().contains(needle), "{err}");
    }
    // A corrupt line in the middle of a results file is an error, not silently dropped.
    let path = dir.path().join("corrupt.jsonl");
    std::fs::write(&path, "garbage\n{}\n").expect("write");
    let err = read_results(&path).expect_err("corrupt");
    assert!(err.to_string().starts_with("line 1: "), "{err}");
}

#[test]
fn search_strategies_run_once_per_budget_they_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = tiny_config();
    config.problems.problems.truncate(1);
    config.strategies = vec![
        "chain-of-thought".into(),
        "beam".into(),
        "entropy-branching".into(),
    ];
    let never = AtomicBool::new(false);
    let outcome = run_sweep(
        &SweepEngine::local(tiny_model(dir.path())),
        &config,
        &dir.path().join("r.jsonl"),
        &never,
        &mut |_| {},
    )
    .expect("sweep");
    let ns = |s: &str| -> Vec<usize> {
        outcome
            .records
            .iter()
            .find(|r| r.strategy == s)
            .expect(s)
            .runs
            .iter()
            .map(|r| r.n)
            .collect()
    };
    assert_eq!(ns("chain-of-thought"), [1]);
    assert_eq!(ns("beam"), [1, 2, 4]);
    assert_eq!(
        ns("entropy-branching"),
        [2, 4],
        "it needs two branches at least"
    );
    let points = summarize(&config, &outcome.records);
    let rows: Vec<(&str, usize)> = points.iter().map(|p| (p.strategy.as_str(), p.n)).collect();
    assert_eq!(
        rows,
        [
            ("chain-of-thought", 1),
            ("chain-of-thought", 2),
            ("chain-of-thought", 4),
            ("beam", 1),
            ("beam", 2),
            ("beam", 4),
            ("entropy-branching", 2),
            ("entropy-branching", 4),
        ]
    );
    assert!(
        points.iter().all(|p| !p.cost_derived),
        "every cost is measured"
    );
    let beam = outcome
        .records
        .iter()
        .find(|r| r.strategy == "beam")
        .expect("beam");
    assert!(
        beam.runs
            .iter()
            .all(|r| r.cost.tokens() > 0 && r.cost.wall_secs > 0.0),
        "each width is a run of its own, measured"
    );
}

#[test]
fn a_sweep_runs_the_new_scorers_on_the_tiny_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = tiny_config();
    config.problems.problems.truncate(2);
    config.max_n = 2;
    config.strategies = vec![
        "self-consistency".into(),
        "weighted-vote".into(),
        "best-of-n:scorer=self-verify".into(),
        "beam:scorer=progress".into(),
    ];
    let never = AtomicBool::new(false);
    let outcome = run_sweep(
        &SweepEngine::local(tiny_model(dir.path())),
        &config,
        &dir.path().join("r.jsonl"),
        &never,
        &mut |_| {},
    )
    .expect("sweep");
    assert!(outcome.completed);
    assert_eq!(outcome.records.len(), 8);
    for r in &outcome.records {
        assert!(r.settings.ends_with(" verify=1"));
    }
    let pools: Vec<_> = outcome
        .records
        .iter()
        .filter(|r| r.strategy != "beam:scorer=progress")
        .collect();
    for r in &pools {
        let run = &r.runs[0];
        assert_eq!(run.samples.len(), 2);
        assert!(run
            .samples
            .iter()
            .all(|s| s.verifier.is_some_and(|v| (0.0..=1.0).contains(&v))));
        assert!(run.cost.verify_tokens > 0);
    }
    assert!(pools
        .iter()
        .filter(|r| r.strategy != "self-consistency")
        .all(|r| r.shared_from.as_deref() == Some("self-consistency")));
    let beam = outcome
        .records
        .iter()
        .filter(|r| r.strategy == "beam:scorer=progress")
        .collect::<Vec<_>>();
    assert_eq!(beam.len(), 2);
    assert!(beam.iter().all(|r| r.runs.len() == 2
        && r.runs.iter().all(|run| run.cost.probe_tokens > 0
            && run.cost.tokens()
                == run.cost.prompt_tokens + run.cost.generated_tokens + run.cost.probe_tokens)));
    let points = summarize(&config, &outcome.records);
    assert_eq!(points.len(), 4 * 2);
    assert!(points
        .iter()
        .filter(|p| p.strategy != "beam:scorer=progress")
        .all(|p| p.accuracy_weighted_maj.is_some() && p.accuracy_verifier.is_some()));
}

// ---------------------------------------------------------------------------------------------
// The real default model, end to end.

fn default_model() -> Arc<Model> {
    let path: PathBuf = fetch::fetch(&fetch::SMOLLM2_135M, &fetch::models_dir(), &mut |_| {})
        .expect("fetch the default model");
    Arc::new(Model::load(&path, &Device::Cpu).expect("load"))
}

#[test]
fn real_model_sweep_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec: GeneratorSpec = "arithmetic:4".parse().expect("spec");
    let config = SweepConfig {
        strategies: vec!["greedy".into(), "self-consistency".into()],
        max_n: 4,
        problems: ProblemSet::generate(&spec, 1),
        seed: 1,
        max_tokens: 64,
        ..SweepConfig::default()
    };
    let never = AtomicBool::new(false);
    let outcome = run_sweep(
        &SweepEngine::local(default_model()),
        &config,
        &dir.path().join("results.jsonl"),
        &never,
        &mut |_| {},
    )
    .expect("sweep");
    assert!(outcome.completed);
    let points = summarize(&config, &outcome.records);
    let csv_path = dir.path().join("out.csv");
    thinkscope_engine::lab::write_csv(&points, &csv_path).expect("csv");
    let csv = std::fs::read_to_string(&csv_path).expect("read csv");
    eprintln!("{csv}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let keys: Vec<(String, usize)> = rows
        .iter()
        .map(|r| (r[col("strategy")].clone(), r[col("n")].parse().expect("n")))
        .collect();
    let expected: Vec<(String, usize)> = ["greedy", "self-consistency"]
        .iter()
        .flat_map(|s| [1, 2, 4].map(|n| (s.to_string(), n)))
        .collect();
    assert_eq!(keys, expected);
    let num = |r: &Vec<String>, c: &str| r[col(c)].parse::<f64>().expect(c);
    for r in &rows {
        for c in [
            "accuracy_pass",
            "accuracy_maj",
            "accuracy_best_of_n",
            "accuracy",
        ] {
            let v = num(r, c);
            assert!((0.0..=1.0).contains(&v), "{c} = {v}");
        }
        assert!(
            num(r, "tokens") > 0.0 && num(r, "wall_secs") > 0.0 && num(r, "energy_joules") > 0.0
        );
        assert_eq!(r[col("problems")], "4");
    }
    let sc: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[col("strategy")] == "self-consistency")
        .collect();
    for w in sc.windows(2) {
        assert!(
            num(w[1], "accuracy_pass") >= num(w[0], "accuracy_pass") - 1e-9,
            "pass@k never falls as k grows"
        );
        assert!(
            num(w[1], "tokens") > num(w[0], "tokens"),
            "more samples cost more"
        );
    }
    // The baseline is the same at every N; pass@1 of the pool is each sample's mean accuracy.
    let greedy: Vec<f64> = rows
        .iter()
        .filter(|r| r[col("strategy")] == "greedy")
        .map(|r| num(r, "accuracy"))
        .collect();
    assert!(greedy.windows(2).all(|w| w[0] == w[1]));
    let samples: Vec<&SampleRecord> = outcome
        .records
        .iter()
        .filter(|r| r.strategy == "self-consistency")
        .flat_map(|r| r.runs[0].samples.iter())
        .collect();
    assert_eq!(samples.len(), 16);
    let mean = samples.iter().filter(|s| s.correct).count() as f64 / 16.0;
    assert!((num(sc[0], "accuracy_pass") - mean).abs() < 1e-4);
}

/// A strategy that panics on one problem (the one asking for 2 + 3) and answers the others
/// greedily.
struct PanicsOnOne;

impl thinkscope_engine::strategy::StrategyDef for PanicsOnOne {
    fn name(&self) -> &'static str {
        "test-lab-panics"
    }

    fn title(&self) -> &'static str {
        "Panics on one problem (test)"
    }

    fn summary(&self) -> &'static str {
        "Greedy, except that it panics on 2 + 3."
    }

    fn knobs(&self) -> Vec<thinkscope_engine::strategy::Knob> {
        Vec::new()
    }

    fn lab_mode(&self) -> thinkscope_engine::strategy::LabMode {
        thinkscope_engine::strategy::LabMode::Single
    }

    fn run(
        &self,
        ctx: &mut thinkscope_engine::strategy::Ctx,
        _p: &thinkscope_engine::strategy::Params,
    ) -> thinkscope_engine::Result<()> {
        let root = ctx.start(true, false)?;
        let prompt = ctx.config().prompt.clone();
        let mut b = [ctx.continue_in_new_node(&root, "answer")];
        ctx.generate(&mut b, &thinkscope_engine::strategy::StopRule::to_end(8))?;
        if prompt.contains("2 + 3") {
            panic!("lab strategy bug on {}", prompt.len());
        }
        let answer = ctx.finish(&b[0]);
        ctx.choose(Some(b[0].node), answer, Default::default());
        Ok(())
    }
}

#[test]
fn a_strategy_that_panics_on_one_problem_fails_that_pair_and_the_sweep_finishes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        thinkscope_engine::strategy::register(Arc::new(PanicsOnOne)).expect("register")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
    let config = SweepConfig {
        strategies: vec!["greedy".into(), "test-lab-panics".into()],
        ..tiny_config()
    };
    let path = dir.path().join("results.jsonl");
    let never = AtomicBool::new(false);
    let mut seen = Vec::new();
    let outcome = run_sweep(
        &SweepEngine::local(model.clone()),
        &config,
        &path,
        &never,
        &mut |p| {
            if let SweepProgress::PairFailed { failure, .. } = p {
                seen.push(failure);
            }
        },
    )
    .expect("the sweep goes on past a crash");
    assert!(outcome.completed);
    assert_eq!(outcome.failed.len(), 1, "{:?}", outcome.failed);
    let f = &outcome.failed[0];
    assert_eq!(
        (f.problem_id.as_str(), f.strategy.as_str()),
        ("t2", "test-lab-panics")
    );
    assert!(f.message.contains("lab strategy bug"), "{}", f.message);
    assert_eq!(seen, outcome.failed, "reported as it happened");
    // Every other pair finished and is in the file; the failed one is not.
    assert_eq!(outcome.records.len(), 7);
    let saved = read_results(&path).expect("read");
    assert_eq!(saved.len(), 7);
    assert!(!saved
        .iter()
        .any(|r| r.problem_id == "t2" && r.strategy == "test-lab-panics"));
    // Summaries still come out of what finished.
    assert!(!summarize(&config, &outcome.records).is_empty());

    // A rerun resumes the seven and retries only the failed pair.
    let mut started = Vec::new();
    let again = run_sweep(
        &SweepEngine::local(model),
        &config,
        &path,
        &never,
        &mut |p| {
            if let SweepProgress::PairStarted {
                problem_id,
                strategy,
                ..
            } = p
            {
                started.push((problem_id, strategy));
            }
        },
    )
    .expect("rerun");
    assert_eq!(
        started,
        vec![("t2".to_string(), "test-lab-panics".to_string())]
    );
    assert_eq!(again.failed.len(), 1);
    assert_eq!(again.resumed, 7);
}
