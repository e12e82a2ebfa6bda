//! Sweep figures as CSV and as a table for the terminal.

use std::fmt::Write as _;
use std::path::Path;

use super::summary::SweepPoint;
use super::{LabError, Result};

/// The CSV header [`write_csv`] writes.
pub const CSV_HEADER: &str = "strategy,n,accuracy_pass,accuracy_maj,accuracy_best_of_n,accuracy,\
tokens,wall_secs,energy_joules,tokens_total,wall_secs_total,energy_joules_total,energy_measured,\
cost,problems";

/// The points as CSV. Per-problem figures are means over the problems; `cost` is `measured`, or
/// `derived` where the figures of a smaller N come from a subset of a larger run.
pub fn to_csv(points: &[SweepPoint]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for p in points {
        let _ = writeln!(
            out,
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.1},{:.3},{:.2},{:.0},{:.2},{:.1},{},{},{}",
            csv_field(&p.strategy),
            p.n,
            p.accuracy_pass,
            p.accuracy_maj,
            p.accuracy_best_of_n,
            p.accuracy,
            p.tokens,
            p.wall_secs,
            p.energy_joules,
            p.tokens_total,
            p.wall_secs_total,
            p.energy_joules_total,
            p.energy_measured,
            if p.cost_derived {
                "derived"
            } else {
                "measured"
            },
            p.problems,
        );
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

/// Write the points as CSV to `path`.
pub fn write_csv(points: &[SweepPoint], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    }
    crate::atomic::write(path, to_csv(points).as_bytes())?;
    Ok(())
}

/// The points as a plain-text table for a terminal.
pub fn format_table(points: &[SweepPoint]) -> String {
    let mut out = format!(
        "{:<18} {:>3} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>9}  {}\n",
        "strategy", "N", "acc", "pass@N", "maj@N", "best@N", "tok/prob", "s/prob", "J/prob", "cost"
    );
    for p in points {
        let _ = writeln!(
            out,
            "{:<18} {:>3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>9.0} {:>8.2} {:>9.1}  {}",
            p.strategy,
            p.n,
            p.accuracy,
            p.accuracy_pass,
            p.accuracy_maj,
            p.accuracy_best_of_n,
            p.tokens,
            p.wall_secs,
            p.energy_joules,
            if p.cost_derived {
                "derived"
            } else {
                "measured"
            },
        );
    }
    out
}
