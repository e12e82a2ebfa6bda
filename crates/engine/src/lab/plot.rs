//! Accuracy-vs-compute curves as a standalone SVG: tokens per problem on a log axis, one line
//! per strategy, single-run baselines (greedy) as dashed horizontal lines, and the pass@N oracle
//! of the first sampled strategy as a dotted line.

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
