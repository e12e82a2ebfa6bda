//! Problem sets: JSONL files (`{"question": ..., "answer": ...}`, GSM8K's `#### 42` answers
//! accepted) and a seeded generator of arithmetic and multi-step word problems.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{fnv64, LabError, Result};
use crate::answer::{answers_match, parse_number};
use crate::model::sampling::Rng;

/// One question with its known final answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable name: the file's `id` field, or `<set>-<line>` / `<generator>-<index>`.
    pub id: String,
    /// The question as put to the model.
    pub question: String,
    /// The final answer (for GSM8K, the part after `####`).
    pub answer: String,
}

impl Problem {
    /// Whether a model's extracted answer is right: numerically when both are numbers.
    pub fn check(&self, answer: &str) -> bool {
        answers_match(answer, &self.answer)
    }

    /// A fingerprint of the question and answer, so a results file never credits a result to a
    /// different problem that happens to sit at the same position.
    pub fn fingerprint(&self) -> String {
        let mut bytes = self.question.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(self.answer.as_bytes());
        format!("{:016x}", fnv64(&bytes))
    }
}

/// A named list of problems.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemSet {
    /// Where the problems came from: a file path or a generator spec.
    pub name: String,
    /// The problems, in order.
    pub problems: Vec<Problem>,
}

impl ProblemSet {
    /// Load a JSONL file (at most [`MAX_PROBLEMS`] lines of [`MAX_PROBLEM_LINE_BYTES`]).
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| LabError::io(path, e))?;
        let problems = parse_jsonl_from(std::io::BufReader::new(file), path)?;
        Ok(Self {
            name: path.display().to_string(),
            problems,
        })
    }

    /// Generate a set from a spec and a seed.
    pub fn generate(spec: &GeneratorSpec, seed: u64) -> Self {
        Self {
            name: format!("{spec} (seed {seed})"),
            problems: generate(spec, seed),
        }
    }
}

#[derive(Deserialize)]
struct RawProblem {
    #[serde(default)]
    id: Option<serde_json::Value>,
    question: Option<serde_json::Value>,
    answer: Option<serde_json::Value>,
}

/// Most problems a set may hold.
pub const MAX_PROBLEMS: usize = 100_000;
/// Longest line of a problem set.
pub const MAX_PROBLEM_LINE_BYTES: usize = 1 << 20;

/// Parse JSONL problem lines. Blank lines are skipped; any other bad line is an error naming its
/// line number. `path` is only used in messages and default ids.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Problem>> {
    parse_jsonl_from(text.as_bytes(), path)
}

/// [`parse_jsonl`] from a reader, one bounded line at a time.
pub fn parse_jsonl_from(reader: impl std::io::BufRead, path: &Path) -> Result<Vec<Problem>> {
    let stem = path.file_stem().map_or_else(
        || "problem".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let bad = |line: usize, reason: String| LabError::BadLine {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut problems = Vec::new();
    super::for_each_line(
        reader,
        path,
        MAX_PROBLEM_LINE_BYTES,
        usize::MAX,
        |line_no, line, _| {
            let line = line.trim();
            if line.is_empty() {
                return Ok(());
            }
            if problems.len() == MAX_PROBLEMS {
                return Err(bad(
                    line_no,
                    format!("the set has more than {MAX_PROBLEMS} problems"),
                ));
            }
            let raw: RawProblem = serde_json::from_str(line).map_err(|e| {
                bad(
                    line_no,
                    format!("not a JSON object with question and answer ({e})"),
                )
            })?;
            let question = match raw.question {
                Some(serde_json::Value::String(q)) if !q.trim().is_empty() => q.trim().to_owned(),
                Some(serde_json::Value::String(_)) => {
                    return Err(bad(line_no, "\"question\" is empty".into()))
                }
                Some(_) => return Err(bad(line_no, "\"question\" must be a string".into())),
                None => return Err(bad(line_no, "missing \"question\"".into())),
            };
            let answer = match raw.answer {
                Some(serde_json::Value::String(a)) => final_answer(&a),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => {
                    return Err(bad(
                        line_no,
                        "\"answer\" must be a string or a number".into(),
                    ))
                }
                None => return Err(bad(line_no, "missing \"answer\"".into())),
            };
            if answer.is_empty() {
                return Err(bad(line_no, "\"answer\" is empty".into()));
            }
            let id = match raw.id {
                Some(serde_json::Value::String(s)) if !s.is_empty() => s,
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => format!("{stem}-{line_no}"),
            };
            problems.push(Problem {
                id,
                question,
                answer,
            });
            Ok(())
        },
    )?;
    if problems.is_empty() {
        return Err(LabError::EmptySet {
            path: path.to_owned(),
        });
    }
    Ok(problems)
}

/// The final answer of an answer field: GSM8K writes the worked solution, then `#### 42`.
/// Thousands separators are dropped from numeric answers.
pub fn final_answer(field: &str) -> String {
    let tail = field
        .rfind("####")
        .map_or(field, |pos| &field[pos + "####".len()..]);
    let tail = tail.trim();
    if parse_number(tail).is_some() {
        tail.replace(',', "")
    } else {
        tail.to_owned()
    }
}

/// What a generator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorKind {
    /// Bare expressions: "What is 23 + 45?".
    Arithmetic,
    /// Short stories with one to three steps of arithmetic.
    Word,
}

/// A generator spec: `arithmetic:N[:D]` or `word:N[:D]`, N problems at difficulty D (1..=3,
/// default 1). Arithmetic: 1 is one addition or subtraction of one-digit numbers; 2 is a
/// two-digit sum or a two-operation expression; 3 is three operations with parentheses on larger
/// numbers. Word problems: one, two and three steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorSpec {
    /// Kind of problems.
    pub kind: GeneratorKind,
    /// How many.
    pub count: usize,
    /// 1: one operation on small numbers; 2: two operations; 3: three operations, larger numbers.
    pub difficulty: u8,
}

/// Most problems one generator spec may ask for.
pub const MAX_GENERATED: usize = 100_000;

impl FromStr for GeneratorSpec {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| LabError::BadGenerator {
            spec: s.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = s.trim().split(':');
        let kind = match parts.next().map(str::to_ascii_lowercase).as_deref() {
            Some("arithmetic") => GeneratorKind::Arithmetic,
            Some("word") => GeneratorKind::Word,
            _ => return Err(bad("unknown kind")),
        };
        let count: usize = parts
            .next()
            .ok_or_else(|| bad("missing the number of problems"))?
            .parse()
            .map_err(|_| bad("the number of problems is not a whole number"))?;
        if count == 0 || count > MAX_GENERATED {
            return Err(bad("the number of problems must be in 1..=100000"));
        }
        let difficulty: u8 = match parts.next() {
            Some(d) => d
                .parse()
                .map_err(|_| bad("the difficulty is not a whole number"))?,
            None => 1,
        };
        if !(1..=3).contains(&difficulty) {
            return Err(bad("the difficulty must be 1, 2 or 3"));
        }
        if parts.next().is_some() {
            return Err(bad("too many parts"));
        }
        Ok(Self {
            kind,
            count,
            difficulty,
        })
    }
}

impl fmt::Display for GeneratorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            GeneratorKind::Arithmetic => "arithmetic",
            GeneratorKind::Word => "word",
        };
        write!(f, "{kind}:{}:{}", self.count, self.difficulty)
    }
}

/// Generate problems. The same spec and seed give the same problems, and a longer set starts
/// with the problems of a shorter one.
pub fn generate(spec: &GeneratorSpec, seed: u64) -> Vec<Problem> {
    let salt = match spec.kind {
        GeneratorKind::Arithmetic => 0xA11,
        GeneratorKind::Word => 0x30D,
    };
    let mut rng = Rng::new(seed ^ (salt << 8 | u64::from(spec.difficulty)) << 32);
    let prefix = match spec.kind {
        GeneratorKind::Arithmetic => "arithmetic",
        GeneratorKind::Word => "word",
    };
    (0..spec.count)
        .map(|i| {
            let (question, answer) = match spec.kind {
                GeneratorKind::Arithmetic => arithmetic(&mut rng, spec.difficulty),
                GeneratorKind::Word => word(&mut rng, spec.difficulty),
            };
            Problem {
                id: format!("{prefix}-d{}-{:04}", spec.difficulty, i + 1),
                question,
                answer: answer.to_string(),
            }
        })
        .collect()
}

/// Uniform integer in `lo..=hi`.
fn int(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    let span = (hi - lo + 1).max(1) as u64;
    lo + (rng.next_u64() % span) as i64
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[(rng.next_u64() % items.len() as u64) as usize]
}

fn arithmetic(rng: &mut Rng, difficulty: u8) -> (String, i64) {
    loop {
        let (expr, value) = match difficulty {
            1 => {
                let (a, b) = (int(rng, 1, 9), int(rng, 1, 9));
                if rng.next_u64().is_multiple_of(2) {
                    (format!("{a} + {b}"), a + b)
                } else {
                    let (a, b) = (a.max(b), a.min(b));
                    (format!("{a} - {b}"), a - b)
                }
            }
            2 => {
                let (a, b, c) = (int(rng, 2, 9), int(rng, 2, 9), int(rng, 1, 20));
                match rng.next_u64() % 4 {
                    0 => (format!("{a} * {b} + {c}"), a * b + c),
                    1 => (format!("{a} * {b} - {c}"), a * b - c),
                    2 => {
                        let (a, b) = (int(rng, 10, 60), int(rng, 10, 60));
                        (format!("{a} + {b}"), a + b)
                    }
                    _ => {
                        let (a, b) = (int(rng, 5, 30), int(rng, 5, 30));
                        (format!("{a} + {b} - {c}"), a + b - c)
                    }
                }
            }
            _ => {
                let (a, b) = (int(rng, 12, 99), int(rng, 3, 19));
                let (c, d) = (int(rng, 3, 19), int(rng, 10, 250));
                match rng.next_u64() % 3 {
                    0 => (format!("({a} + {d}) * {b} - {c}"), (a + d) * b - c),
                    1 => (format!("{a} * {b} + {c} * {d}"), a * b + c * d),
                    _ => (
                        format!("({a} - {c}) * ({b} + {c}) - {d}"),
                        (a - c) * (b + c) - d,
                    ),
                }
            }
        };
        if value >= 0 {
            return (format!("What is {expr}?"), value);
        }
    }
}

const NAMES: &[&str] = &[
    "Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Lena", "Omar",
    "Priya", "Sam", "Tom", "Zoe",
];

fn word(rng: &mut Rng, difficulty: u8) -> (String, i64) {
    let name = pick(rng, NAMES);
    loop {
        let (question, value) = match difficulty {
            1 => {
                let (a, b) = (int(rng, 2, 9), int(rng, 1, 9));
                match rng.next_u64() % 3 {
                    0 => (
                        format!("{name} has {a} apples and buys {b} more. How many apples does {name} have now?"),
                        a + b,
                    ),
                    1 => {
                        let (a, b) = (a.max(b), a.min(b));
                        (
                            format!("A box holds {a} pencils. {name} takes {b} of them out. How many pencils are left in the box?"),
                            a - b,
                        )
                    }
                    _ => {
                        let (a, b) = (int(rng, 2, 6), int(rng, 2, 5));
                        (
                            format!("Each bag holds {a} marbles. How many marbles are in {b} bags?"),
                            a * b,
                        )
                    }
                }
            }
            2 => {
                let (a, b, c) = (int(rng, 2, 9), int(rng, 3, 12), int(rng, 1, 30));
                match rng.next_u64() % 3 {
                    0 => (
                        format!("{name} buys {a} packs of {b} stickers and gives {c} stickers to a friend. How many stickers does {name} have left?"),
                        a * b - c,
                    ),
                    1 => (
                        format!("A train travels {b} km every hour for {a} hours, then {c} km more. How many km does it travel in total?"),
                        a * b + c,
                    ),
                    _ => {
                        let money = int(rng, 20, 100);
                        (
                            format!("{name} has {money} dollars and buys {a} books at {b} dollars each. How many dollars does {name} have left?"),
                            money - a * b,
                        )
                    }
                }
            }
            _ => {
                let (a, b) = (int(rng, 2, 9), int(rng, 4, 12));
                let (c, d) = (int(rng, 2, 30), int(rng, 5, 60));
                match rng.next_u64() % 3 {
                    0 => (
                        format!("A bakery bakes {a} trays of {b} muffins in the morning and {c} more muffins in the afternoon. It sells {d} muffins. How many muffins are left?"),
                        a * b + c - d,
                    ),
                    1 => (
                        format!("{name} earns {b} dollars an hour, works {a} hours on Monday and {} hours on Tuesday, then spends {d} dollars. How many dollars does {name} have left?", c % 9 + 1),
                        b * (a + c % 9 + 1) - d,
                    ),
                    _ => (
                        format!("A hall has {a} rows of {b} chairs. {} chairs are broken and taken away, and {c} new chairs arrive. How many chairs are in the hall now?", d % (a * b)),
                        a * b - d % (a * b) + c,
                    ),
                }
            }
        };
        if value >= 0 {
            return (question, value);
        }
    }
}

/// Where a sweep's problems come from, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemSource {
    /// A JSONL file.
    File(PathBuf),
    /// A generator spec.
    Generate(GeneratorSpec),
}

impl ProblemSource {
    /// Load or generate the problems (`seed` feeds the generator).
    pub fn load(&self, seed: u64) -> Result<ProblemSet> {
        match self {
            Self::File(path) => ProblemSet::load(path),
            Self::Generate(spec) => Ok(ProblemSet::generate(spec, seed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_answers() {
        assert_eq!(final_answer("She has 3 + 4 = 7.\n#### 1,234"), "1234");
        assert_eq!(final_answer(" 42 "), "42");
        assert_eq!(final_answer("Paris"), "Paris");
    }

    #[test]
    fn generated_answers_are_right() {
        for kind in [GeneratorKind::Arithmetic, GeneratorKind::Word] {
            for difficulty in 1..=3 {
                let spec = GeneratorSpec {
                    kind,
                    count: 50,
                    difficulty,
                };
                for p in generate(&spec, 3) {
                    let v: i64 = p.answer.parse().expect("integer answer");
                    assert!(v >= 0, "{p:?}");
                }
            }
        }
    }
}
