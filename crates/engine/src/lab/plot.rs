//! Standalone SVG charts. The accuracy-vs-compute curves: tokens per problem on a log axis, one
//! line per strategy, single-run baselines (greedy) as dashed horizontal lines, and the pass@N
//! oracle of the first sampled strategy as a dotted line. The verification gap: a pool's pass@N,
//! maj@N, verifier-weighted vote and best-of-N (by verifier and by confidence) against N, with
//! the area between pass@N and the best selection rule shaded. The difficulty view: that chart
//! once per difficulty level.

use std::fmt::Write as _;
use std::path::Path;

use super::sweep::SweepPoint;
use super::{LabError, Result};

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 64.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// One strategy's points, in budget order.
struct Series<'a> {
    name: &'a str,
    points: Vec<&'a SweepPoint>,
}

impl Series<'_> {
    /// A single run repeated at every budget: drawn as a baseline.
    fn is_baseline(&self) -> bool {
        self.points.len() > 1
            && self
                .points
                .windows(2)
                .all(|w| w[0].tokens == w[1].tokens && w[0].accuracy == w[1].accuracy)
    }
}

fn group(points: &[SweepPoint]) -> Vec<Series<'_>> {
    let mut out: Vec<Series<'_>> = Vec::new();
    for p in points {
        match out.iter_mut().find(|s| s.name == p.strategy) {
            Some(s) => s.points.push(p),
            None => out.push(Series {
                name: &p.strategy,
                points: vec![p],
            }),
        }
    }
    for s in &mut out {
        s.points.sort_by_key(|p| p.n);
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick values 1, 2, 5 × 10^k inside `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

fn tick_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// Render the curves. `title` heads the chart; `note` (e.g. how costs were derived) goes under it.
pub fn render_svg(points: &[SweepPoint], title: &str, note: &str) -> String {
    let series = group(points);
    let tokens = points.iter().map(|p| p.tokens).filter(|t| *t > 0.0);
    let (mut lo, mut hi) = tokens.fold((f64::INFINITY, 0.0f64), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    if !lo.is_finite() {
        (lo, hi) = (1.0, 10.0);
    }
    // Pad by a fifth of a decade on each side so the end markers sit inside the frame.
    let (lo, hi) = (lo / 1.6, hi.max(lo * 2.0) * 1.6);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: f64| LEFT + (t.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln()) * plot_w;
    let y = |a: f64| TOP + (1.0 - a.clamp(0.0, 1.0)) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="36" font-size="11" fill="#555">{}</text>"##,
        escape(note)
    );
    // Grid and axes.
    for i in 0..=5 {
        let a = f64::from(i) / 5.0;
        let yy = y(a);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{a:.1}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    for t in ticks(lo, hi) {
        let xx = x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">tokens computed per problem (log scale)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">accuracy</text>"#,
        TOP + plot_h / 2.0
    );

    let mut legend: Vec<(String, &str, &str)> = Vec::new();
    let mut oracle_drawn = false;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if s.is_baseline() {
            let Some(p) = s.points.first() else { continue };
            let yy = y(p.accuracy);
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="7 5"/><circle cx="{:.1}" cy="{yy:.1}" r="4" fill="{color}"/>"#,
                LEFT + plot_w,
                x(p.tokens)
            );
            legend.push((format!("{} (one run)", s.name), color, "7 5"));
            continue;
        }
        let path: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.tokens), y(p.accuracy)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for p in &s.points {
            let (xx, yy) = (x(p.tokens), y(p.accuracy));
            let _ = writeln!(
                svg,
                r#"<circle cx="{xx:.1}" cy="{yy:.1}" r="3.5" fill="{color}"/><text x="{xx:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="{color}">{}</text>"#,
                yy - 7.0,
                p.n
            );
        }
        legend.push((s.name.to_owned(), color, ""));
        let sampled = s.points.iter().any(|p| p.cost_derived);
        if sampled && !oracle_drawn {
            oracle_drawn = true;
            let path: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.tokens), y(p.accuracy_pass)))
                .collect();
            let _ = writeln!(
                svg,
                r##"<polyline points="{}" fill="none" stroke="#777" stroke-width="1.5" stroke-dasharray="2 4"/>"##,
                path.join(" ")
            );
            legend.push(("pass@N (any sample right)".into(), "#777", "2 4"));
        }
    }
    // Legend to the right of the plot.
    let lx = LEFT + plot_w + 16.0;
    for (i, (name, color, dash)) in legend.iter().enumerate() {
        let ly = TOP + 12.0 + 22.0 * i as f64;
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 26.0,
            lx + 32.0,
            ly + 4.0,
            escape(name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{lx:.1}" y="{:.1}" font-size="10" fill="#555">labels: budget N</text>"##,
        TOP + 12.0 + 22.0 * legend.len() as f64
    );
    svg.push_str("</svg>\n");
    svg
}

/// Render the curves and write them to `path`.
pub fn write_svg(points: &[SweepPoint], title: &str, note: &str, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    }
    crate::atomic::write(path, render_svg(points, title, note).as_bytes())?;
    Ok(())
}

/// The verification-gap figures of a pool at one N.
struct GapRow {
    n: usize,
    pass: f64,
    maj: f64,
    best: f64,
    weighted: Option<f64>,
    verifier: Option<f64>,
}

impl GapRow {
    /// The best any selection rule did: what the gap is measured from.
    fn picked(&self) -> f64 {
        [
            Some(self.maj),
            Some(self.best),
            self.weighted,
            self.verifier,
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max)
    }
}

fn gap_rows(points: &[SweepPoint], pool: &str) -> Vec<GapRow> {
    let mut rows: Vec<GapRow> = points
        .iter()
        .filter(|p| p.strategy == pool)
        .map(|p| GapRow {
            n: p.n,
            pass: p.accuracy_pass,
            maj: p.accuracy_maj,
            best: p.accuracy_best_of_n,
            weighted: p.accuracy_weighted_maj,
            verifier: p.accuracy_verifier,
        })
        .collect();
    rows.sort_by_key(|r| r.n);
    rows
}

/// The single-run baselines among the points (greedy, say): (name, accuracy).
fn baselines(points: &[SweepPoint]) -> Vec<(String, f64)> {
    group(points)
        .iter()
        .filter(|s| s.is_baseline())
        .filter_map(|s| s.points.first().map(|p| (s.name.to_owned(), p.accuracy)))
        .collect()
}

/// The gap curves, each with its colour and dash.
const GAP_CURVES: [(&str, &str, &str); 5] = [
    ("pass@N (some sample right)", "#777", "2 4"),
    ("maj@N (majority vote)", "#1f77b4", ""),
    ("weighted maj@N (verifier-weighted vote)", "#2ca02c", ""),
    ("best-of-N by verifier P(yes)", "#9467bd", ""),
    ("best-of-N by confidence", "#ff7f0e", "6 3"),
];

/// Draw one gap panel into `svg` at (x0, y0) of size (w, h): N on a log2 axis, the pool's
/// curves, the gap between pass@N and the best selection rule shaded, baselines dashed.
#[allow(clippy::too_many_arguments)]
fn gap_panel(
    svg: &mut String,
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    rows: &[GapRow],
    baselines: &[(String, f64)],
    heading: &str,
) {
    let n_max = rows.iter().map(|r| r.n).max().unwrap_or(1).max(2) as f64;
    let x = |n: usize| x0 + ((n.max(1) as f64).log2() / n_max.log2()) * w;
    let y = |a: f64| y0 + (1.0 - a.clamp(0.0, 1.0)) * h;
    let _ = writeln!(
        svg,
        r#"<text x="{x0:.1}" y="{:.1}" font-size="12" font-weight="bold">{}</text>"#,
        y0 - 8.0,
        escape(heading)
    );
    for i in 0..=5 {
        let a = f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{x0:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{a:.1}</text>"##,
            x0 + w,
            x0 - 4.0,
            y(a) + 3.5,
            yy = y(a),
        );
    }
    for r in rows {
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{y0:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"##,
            y0 + h,
            y0 + h + 13.0,
            r.n,
            xx = x(r.n),
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="#333"/>"##
    );
    if rows.len() > 1 {
        // The verification gap: pass@N above, the best selection rule below.
        let mut poly: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.n), y(r.pass)))
            .collect();
        poly.extend(
            rows.iter()
                .rev()
                .map(|r| format!("{:.1},{:.1}", x(r.n), y(r.picked()))),
        );
        let _ = writeln!(
            svg,
            r##"<polygon points="{}" fill="#d62728" fill-opacity="0.12" stroke="none"/>"##,
            poly.join(" ")
        );
    }
    for (i, (_, color, dash)) in GAP_CURVES.iter().enumerate() {
        let values: Option<Vec<(usize, f64)>> = rows
            .iter()
            .map(|r| {
                let v = match i {
                    0 => Some(r.pass),
                    1 => Some(r.maj),
                    2 => r.weighted,
                    3 => r.verifier,
                    _ => Some(r.best),
                };
                v.map(|v| (r.n, v))
            })
            .collect();
        let Some(values) = values.filter(|v| !v.is_empty()) else {
            continue;
        };
        let path: Vec<String> = values
            .iter()
            .map(|&(n, v)| format!("{:.1},{:.1}", x(n), y(v)))
            .collect();
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for &(n, v) in &values {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                x(n),
                y(v)
            );
        }
    }
    for (i, (_, a)) in baselines.iter().enumerate() {
        let color = COLORS[(i + 5) % COLORS.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="{x0:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="7 5"/>"#,
            x0 + w,
            yy = y(*a),
        );
    }
}

fn gap_legend(svg: &mut String, lx: f64, ly: f64, baselines: &[(String, f64)]) -> f64 {
    let mut items: Vec<(String, &str, &str)> = GAP_CURVES
        .iter()
        .map(|(name, color, dash)| ((*name).to_owned(), *color, *dash))
        .collect();
    for (i, (name, _)) in baselines.iter().enumerate() {
        items.push((
            format!("{name} (one run)"),
            COLORS[(i + 5) % COLORS.len()],
            "7 5",
        ));
    }
    let mut yy = ly;
    for (name, color, dash) in &items {
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            yy + 4.0,
            escape(name)
        );
        yy += 19.0;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{lx:.1}" y="{:.1}" width="24" height="10" fill="#d62728" fill-opacity="0.12"/><text x="{:.1}" y="{:.1}" font-size="11">verification gap (right, not picked)</text>"##,
        yy - 5.0,
        lx + 30.0,
        yy + 4.0
    );
    yy + 19.0
}

fn svg_open(w: f64, h: f64, title: &str, note: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="36" font-size="11" fill="#555">{}</text>"##,
        escape(note)
    );
    svg
}

/// The verification gap of the pool strategy `pool`: pass@N, maj@N, the verifier-weighted vote,
/// best-of-N by the verifier and by confidence against N, the area between pass@N and the best
/// selection rule shaded, single-run baselines dashed.
pub fn render_gap_svg(points: &[SweepPoint], pool: &str, title: &str, note: &str) -> String {
    let rows = gap_rows(points, pool);
    let base = baselines(points);
    let (w, h) = (WIDTH + 80.0, HEIGHT);
    let mut svg = svg_open(w, h, title, note);
    let plot_w = w - LEFT - RIGHT - 80.0;
    let plot_h = h - TOP - BOTTOM - 10.0;
    gap_panel(
        &mut svg,
        LEFT,
        TOP + 14.0,
        plot_w,
        plot_h,
        &rows,
        &base,
        "accuracy against samples N (log scale)",
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">samples N</text>"#,
        LEFT + plot_w / 2.0,
        h - 14.0
    );
    gap_legend(&mut svg, LEFT + plot_w + 16.0, TOP + 24.0, &base);
    svg.push_str("</svg>\n");
    svg
}

/// The difficulty view: one gap panel per level (easiest first), each with that level's curves.
pub fn render_difficulty_svg(
    levels: &[(super::summary::DifficultyBin, Vec<SweepPoint>)],
    pool: &str,
    title: &str,
    note: &str,
) -> String {
    let cols = levels.len().clamp(1, 5);
    let rows_n = levels.len().div_ceil(cols).max(1);
    let (pw, ph) = (210.0, 190.0);
    let w = LEFT + cols as f64 * (pw + 34.0) + 250.0;
    let h = TOP + 30.0 + rows_n as f64 * (ph + 56.0) + 10.0;
    let mut svg = svg_open(w, h, title, note);
    for (i, (bin, points)) in levels.iter().enumerate() {
        let (c, r) = (i % cols, i / cols);
        let x0 = LEFT + c as f64 * (pw + 34.0);
        let y0 = TOP + 36.0 + r as f64 * (ph + 56.0);
        let rows = gap_rows(points, pool);
        let base = baselines(points);
        gap_panel(&mut svg, x0, y0, pw, ph, &rows, &base, &bin.label());
    }
    let any_base = levels
        .first()
        .map(|(_, p)| baselines(p))
        .unwrap_or_default();
    gap_legend(
        &mut svg,
        LEFT + cols as f64 * (pw + 34.0),
        TOP + 44.0,
        &any_base,
    );
    svg.push_str("</svg>\n");
    svg
}
