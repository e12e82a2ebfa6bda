//! Sweep figures as CSV and as a table for the terminal; the difficulty view as CSV.

use std::fmt::Write as _;
use std::path::Path;

use super::summary::{DifficultyBin, SweepPoint, Wall};
use super::{LabError, Result};

/// The CSV header [`write_csv`] writes.
pub const CSV_HEADER: &str = "strategy,n,accuracy_pass,accuracy_maj,accuracy_best_of_n,\
accuracy_weighted_maj,accuracy_verifier,accuracy,tokens,wall_secs,energy_joules,\
energy_per_correct_joules,tokens_total,wall_secs_total,energy_joules_total,energy_measured,cost,\
problems";

/// The header of [`difficulty_csv`].
pub const DIFFICULTY_CSV_HEADER: &str = "level,basis,success_lo,success_hi,level_problems,\
strategy,n,accuracy,accuracy_pass,accuracy_maj,accuracy_best_of_n,accuracy_weighted_maj,\
accuracy_verifier,tokens,energy_per_correct_joules,cost";

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(String::new, |x| format!("{x:.digits$}"))
}

fn cost_word(p: &SweepPoint) -> &'static str {
    if p.cost_derived {
        "derived"
    } else {
        "measured"
    }
}

/// The points as CSV. Per-problem figures are means over the problems; `cost` is `measured`, or
/// `derived` where the figures of a smaller N come from a subset of a larger run. The verifier
/// columns are empty where the samples were not verified, and energy per correct answer where
/// none was right.
pub fn to_csv(points: &[SweepPoint]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for p in points {
        let _ = writeln!(
            out,
            "{},{},{:.4},{:.4},{:.4},{},{},{:.4},{:.1},{:.3},{:.2},{},{:.0},{:.2},{:.1},{},{},{}",
            csv_field(&p.strategy),
            p.n,
            p.accuracy_pass,
            p.accuracy_maj,
            p.accuracy_best_of_n,
            opt(p.accuracy_weighted_maj, 4),
            opt(p.accuracy_verifier, 4),
            p.accuracy,
            p.tokens,
            p.wall_secs,
            p.energy_joules,
            opt(p.energy_per_correct, 2),
            p.tokens_total,
            p.wall_secs_total,
            p.energy_joules_total,
            p.energy_measured,
            cost_word(p),
            p.problems,
        );
    }
    out
}

/// One row per (difficulty level, strategy, N).
pub fn difficulty_csv(levels: &[(DifficultyBin, Vec<SweepPoint>)]) -> String {
    let mut out = String::from(DIFFICULTY_CSV_HEADER);
    out.push('\n');
    for (bin, points) in levels {
        for p in points {
            let _ = writeln!(
                out,
                "{},{},{:.4},{:.4},{},{},{},{:.4},{:.4},{:.4},{:.4},{},{},{:.1},{},{}",
                bin.level,
                match bin.basis {
                    super::summary::DifficultyBasis::PassAt1 => "pass@1",
                    super::summary::DifficultyBasis::Greedy => "greedy",
                },
                bin.lo,
                bin.hi,
                bin.problems.len(),
                csv_field(&p.strategy),
                p.n,
                p.accuracy,
                p.accuracy_pass,
                p.accuracy_maj,
                p.accuracy_best_of_n,
                opt(p.accuracy_weighted_maj, 4),
                opt(p.accuracy_verifier, 4),
                p.tokens,
                opt(p.energy_per_correct, 2),
                cost_word(p),
            );
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Write `text` to `path` atomically, creating its folder.
pub fn write_text(text: &str, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    }
    crate::atomic::write(path, text.as_bytes())?;
    Ok(())
}

/// Write the points as CSV to `path`.
pub fn write_csv(points: &[SweepPoint], path: &Path) -> Result<()> {
    write_text(&to_csv(points), path)
}

/// The points as a plain-text table for a terminal.
pub fn format_table(points: &[SweepPoint]) -> String {
    let mut out = format!(
        "{:<28} {:>3} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>7} {:>7} {:>8}  {}\n",
        "strategy",
        "N",
        "acc",
        "pass@N",
        "maj@N",
        "best@N",
        "wmaj@N",
        "ver@N",
        "tok/prob",
        "s/prob",
        "J/prob",
        "J/right",
        "cost"
    );
    let dash = |v: Option<f64>, d: usize| v.map_or_else(|| "–".to_owned(), |x| format!("{x:.d$}"));
    for p in points {
        let _ = writeln!(
            out,
            "{:<28} {:>3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6} {:>6} {:>8.0} {:>7.2} {:>7.1} {:>8}  {}",
            p.strategy,
            p.n,
            p.accuracy,
            p.accuracy_pass,
            p.accuracy_maj,
            p.accuracy_best_of_n,
            dash(p.accuracy_weighted_maj, 3),
            dash(p.accuracy_verifier, 3),
            p.tokens,
            p.wall_secs,
            p.energy_joules,
            dash(p.energy_per_correct, 1),
            cost_word(p),
        );
    }
    out
}

/// The walls in words, one line each.
pub fn format_walls(walls: &[Wall], threshold: f64) -> String {
    let mut out = String::new();
    for w in walls {
        let _ = match w.n {
            Some(n) => writeln!(
                out,
                "{}: flat from N = {n} at {:.3} (no doubling after it gains {:.1} points or more; the most is {:+.1})",
                w.curve,
                w.accuracy,
                threshold * 100.0,
                w.gain_after * 100.0
            ),
            None => writeln!(
                out,
                "{}: still rising at the largest N ({:.3}; the last doubling gained {:+.1} points)",
                w.curve,
                w.accuracy,
                w.gain_after * 100.0
            ),
        };
    }
    out
}
