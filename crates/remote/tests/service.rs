//! The sequence service over the real llama-cpp-python server on the default model: prefill,
//! fork, generate under each stop rule, append, next-token log-probs, costs and cancel.

use std::sync::Arc;
use std::time::Duration;

use thinkscope_engine::generate::PromptFormat;
use thinkscope_engine::model::sampling::{Sampler, SamplingParams};
use thinkscope_engine::model::template::Message;
use thinkscope_engine::service::{
    BranchStop, GenBranch, GenerateRequest, RunControl, SequenceService, Served, StopRule,
};
use thinkscope_engine::EngineError;
use thinkscope_remote::service::SYNTHETIC_BASE;

mod common;
use common::{server, service};

/// `Served<Result<T>>` → `Served<T>`, failing the test on an error.
trait Ok<T> {
    fn ok(self, what: &str) -> Served<T>;
}

impl<T> Ok<T> for Served<thinkscope_engine::Result<T>> {
    fn ok(self, what: &str) -> Served<T> {
        match self.value {
            Ok(value) => Served {
                value,
                cost: self.cost,
            },
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn sampler(seed: u64, temperature: f32) -> Sampler {
    Sampler::new(SamplingParams {
        temperature,
        seed,
        ..SamplingParams::default()
    })
    .expect("sampler")
}

#[test]
fn the_service_over_a_real_server() {
    let Some(server) = server() else { return };
    let svc = service(&server);
    let info = svc.info();
    assert!(info.device.contains("llama-cpp-python"), "{}", info.device);
    assert!(info.has_chat_template);
    assert!(!info.capabilities.exact_entropy);
    assert!(info.capabilities.top_alternatives >= 5);
    assert!(
        info.energy_source.starts_with("unknown"),
        "{}",
        info.energy_source
    );

    let run = RunControl::new();
    let ids = svc
        .prompt_ids(
            &[Message::new("user", "What is 2+3? Answer with a number.")],
            PromptFormat::Auto,
        )
        .expect("prompt");
    assert_eq!(ids.first(), Some(&1), "starts with <|im_start|>");
    let pre = svc.prefill(&run, ids.clone()).expect("prefill");
    assert_eq!(pre.value.len, ids.len());
    assert!(!pre.value.next.top.is_empty());
    assert_eq!(
        pre.cost.prompt_tokens_computed,
        ids.len() as u64,
        "from usage"
    );

    // Greedy to the end (on a fork, so the prompt stays open): tokens stream with their
    // log-probs; the answer names 5.
    let greedy = svc.fork(&run, pre.value.seq, 1).expect("fork").value[0];
    let mut seen = Vec::new();
    let out = svc
        .generate(
            &run,
            GenerateRequest {
                branches: vec![GenBranch {
                    seq: greedy,
                    sampler: sampler(1, 0.0),
                    prior_text: String::new(),
                }],
                rule: StopRule::to_end(24),
                budget: None,
            },
            &mut |b, t| seen.push((b, t)),
        )
        .ok("generate");
    let o = &out.value[0];
    let text: String = seen.iter().map(|(_, t)| t.text.as_str()).collect();
    assert!(text.contains('5'), "{text:?}");
    assert!(
        matches!(o.stop, BranchStop::EndOfText | BranchStop::MaxTokens),
        "{:?}",
        o.stop
    );
    assert_eq!(o.len, ids.len() + seen.len());
    assert!(seen.len() <= 24);
    for (_, t) in &seen {
        assert!(t.logprob <= 0.0);
        assert!(
            t.id >= SYNTHETIC_BASE,
            "llama-cpp-python names tokens by text only"
        );
        assert_eq!(t.top[0].text, t.text, "greedy");
    }
    assert!(out.cost.generated_tokens >= seen.len() as u64);

    // Fork four ways and sample one step each: all stop at a line break or the limit, and the
    // seeds make them differ.
    let kids = svc.fork(&run, pre.value.seq, 4).expect("fork").value;
    let mut per = vec![String::new(); 4];
    let out = svc
        .generate(
            &run,
            GenerateRequest {
                branches: kids
                    .iter()
                    .enumerate()
                    .map(|(i, &seq)| GenBranch {
                        seq,
                        sampler: sampler(100 + i as u64, 1.0),
                        prior_text: String::new(),
                    })
                    .collect(),
                rule: StopRule::one_step(30),
                budget: None,
            },
            &mut |b, t| per[b].push_str(&t.text),
        )
        .ok("sampled steps");
    for (o, text) in out.value.iter().zip(&per) {
        match o.stop {
            BranchStop::StepEnd => assert!(text.ends_with('\n') || text.contains('\n'), "{text:?}"),
            BranchStop::MaxTokens | BranchStop::EndOfText => {}
            other => panic!("unexpected stop {other:?}"),
        }
    }
    let mut distinct = per.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 2, "{per:?}");

    // A budget caps the tokens of all branches together.
    let kids = svc.fork(&run, pre.value.seq, 3).expect("fork").value;
    let mut count = 0;
    let out = svc
        .generate(
            &run,
            GenerateRequest {
                branches: kids
                    .iter()
                    .enumerate()
                    .map(|(i, &seq)| GenBranch {
                        seq,
                        sampler: sampler(7 + i as u64, 1.0),
                        prior_text: String::new(),
                    })
                    .collect(),
                rule: StopRule::to_end(50),
                budget: Some(10),
            },
            &mut |_, _| count += 1,
        )
        .ok("budgeted");
    assert!(count <= 10, "{count} tokens over a budget of 10");

    // High entropy: with a threshold of 0 nats every branch stops before its second token.
    let kid = svc.fork(&run, pre.value.seq, 1).expect("fork").value[0];
    let mut got = 0;
    let out2 = svc
        .generate(
            &run,
            GenerateRequest {
                branches: vec![GenBranch {
                    seq: kid,
                    sampler: sampler(5, 1.0),
                    prior_text: String::new(),
                }],
                rule: StopRule {
                    max_tokens: 20,
                    step_end: false,
                    entropy_above: Some(0.0),
                    stop_before: Vec::new(),
                },
                budget: None,
            },
            &mut |_, _| got += 1,
        )
        .ok("entropy stop");
    assert_eq!(got, 1);
    assert_eq!(out2.value[0].stop, BranchStop::HighEntropy);
    assert!(out2.value[0].next.entropy > 0.0);
    drop(out);

    // Forced text and the verifier's next-token log-probs.
    let forced = svc.encode(" The answer is").expect("encode");
    let app = svc
        .append(&run, vec![(kid, forced.clone())])
        .expect("append");
    assert_eq!(app.value[0].len, out2.value[0].len + forced.len());
    assert!(!app.value[0].next.top.is_empty());
    let top_id = app.value[0].next.top[0].id;
    let lps = svc.next_logprobs(&run, kid, &[top_id]).expect("next").value;
    assert!(lps[0].is_some_and(|l| l <= 0.0), "{lps:?}");

    svc.release(&[kid]);
    assert!(matches!(
        svc.fork(&run, kid, 1),
        Err(EngineError::UnknownSequence(_))
    ));
}

#[test]
fn cancel_stops_a_generating_run() {
    let Some(server) = server() else { return };
    let svc = Arc::new(service(&server));
    let run = RunControl::new();
    let ids = svc
        .prompt_ids(
            &[Message::new("user", "Tell me a long story.")],
            PromptFormat::Auto,
        )
        .expect("prompt");
    let pre = svc.prefill(&run, ids).expect("prefill").value;
    let kids = svc.fork(&run, pre.seq, 3).expect("fork").value;
    let canceller = {
        let run = run.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            run.cancel();
        })
    };
    let mut got = 0;
    let served = svc.generate(
        &run,
        GenerateRequest {
            branches: kids
                .iter()
                .enumerate()
                .map(|(i, &seq)| GenBranch {
                    seq,
                    sampler: sampler(i as u64, 1.0),
                    prior_text: String::new(),
                })
                .collect(),
            rule: StopRule::to_end(1500),
            budget: None,
        },
        &mut |_, _| got += 1,
    );
    canceller.join().expect("join");
    assert!(
        matches!(served.value, Err(EngineError::Cancelled)),
        "{:?}",
        served.value
    );
    assert!(
        served.cost.generated_tokens >= got as u64,
        "the cost of a cancelled generate still counts what streamed"
    );
    assert!(got > 0 && got < 3 * 1500, "{got}");
}
