//! Hostile problem sets and results files: bounded lines, clear line-numbered errors.

use std::path::Path;

use thinkscope_engine::lab::problems::{parse_jsonl, MAX_PROBLEM_LINE_BYTES};
use thinkscope_engine::lab::sweep::{parse_results, read_results, MAX_RESULT_LINE_BYTES};
use thinkscope_engine::lab::{LabError, ProblemSet};

#[track_caller]
fn bad_line(e: LabError, line: usize, needle: &str) {
    match &e {
        LabError::BadLine {
            line: l, reason, ..
        } => {
            assert_eq!(*l, line, "{e}");
            assert!(reason.contains(needle), "{e}");
        }
        _ => panic!("expected a line error, got {e}"),
    }
}

#[test]
fn problem_sets_refuse_long_lines_and_bad_bytes_by_line() {
    let ok = r#"{"question": "1 + 1?", "answer": 2}"#;
    let long = format!(
        "{ok}\n{{\"question\": \"{}\", \"answer\": 1}}\n",
        "x".repeat(MAX_PROBLEM_LINE_BYTES)
    );
    bad_line(
        parse_jsonl(&long, Path::new("p.jsonl")).expect_err("long"),
        2,
        "longer than",
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bytes.jsonl");
    let mut bytes = format!("{ok}\n\n").into_bytes();
    bytes.extend_from_slice(b"{\"question\": \"\xff\xfe\", \"answer\": 1}\n");
    std::fs::write(&p, bytes).expect("write");
    bad_line(ProblemSet::load(&p).expect_err("utf-8"), 3, "not UTF-8");

    // CRLF line ends are fine.
    let crlf = format!("{ok}\r\n{ok}\r\n");
    assert_eq!(
        parse_jsonl(&crlf, Path::new("c.jsonl"))
            .expect("crlf")
            .len(),
        2
    );
}

#[test]
fn results_files_refuse_long_lines_and_keep_line_numbers() {
    let huge = "x".repeat(MAX_RESULT_LINE_BYTES + 10);
    let text = format!("\n{huge}\n");
    let e = parse_results(text.as_bytes(), Path::new("r.jsonl")).expect_err("long");
    bad_line(e, 2, "longer than");
    let e = parse_results("\n\n[1, 2]\n{}".as_bytes(), Path::new("r.jsonl")).expect_err("bad");
    bad_line(e, 3, "not a sweep result");
    // A torn last line alone is dropped, not an error.
    assert!(
        parse_results("{\"settings\": \"a".as_bytes(), Path::new("r.jsonl"))
            .expect("torn")
            .is_empty()
    );
    // A missing file is empty; a folder is an error.
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(read_results(&dir.path().join("none.jsonl"))
        .expect("missing")
        .is_empty());
    assert!(read_results(dir.path()).is_err());
}
