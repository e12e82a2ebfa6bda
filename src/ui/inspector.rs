//! The node inspector: the path's text with every token shaded by its probability, its
//! alternatives on hover, and "branch here".

use eframe::egui::{self, Color32, RichText, ScrollArea, Ui};
use egui_plot::{FilledArea, HLine, Legend, Line, LineStyle, Plot, PlotPoints, Points};

use crate::ui::theme;
use crate::ui::tree_view::draw::{progress_line, segment_color};
use thinkscope_engine::progress;
use thinkscope_engine::tree::{NodeId, NodeKind, NodeStatus, Segment, Tree};

/// A branch the user asked for: at token `index` of `node`, take `token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchRequest {
    /// Node holding the token.
    pub node: NodeId,
    /// Token index in the node.
    pub index: usize,
    /// The alternative token.
    pub token: u32,
}

/// Show the inspector for `selected`; returns a branch request when one was clicked.
pub fn inspector_ui(
    ui: &mut Ui,
    tree: &Tree,
    selected: NodeId,
    can_branch: bool,
) -> Option<BranchRequest> {
    let Some(node) = tree.node(selected) else {
        ui.label("The selected node is gone.");
        return None;
    };
    let mut request = None;
    ui.heading(&node.label);
    ui.label(format!(
        "{:?} · {:?} · {} tokens",
        node.kind,
        node.status,
        node.tokens.len()
    ));
    if let Some(a) = &node.answer {
        ui.label(RichText::new(format!("Answer: {a}")).strong());
    }
    let s = &node.scores;
    let mut facts = Vec::new();
    if let Some(v) = node.own_mean_logprob() {
        facts.push(format!("mean log-prob {v:.2}"));
    }
    if !node.segments.is_empty() {
        facts.push(format!("thinking {} tokens", node.thinking_tokens()));
    }
    if let Some(v) = s.value {
        facts.push(format!("score {v:.3}"));
    }
    if let Some(v) = s.votes {
        facts.push(format!("votes {v}"));
    }
    if let Some(v) = s.visits {
        facts.push(format!("visits {v}"));
    }
    if !facts.is_empty() {
        ui.label(facts.join(" · "));
    }
    progress_ui(ui, tree, selected);
    ui.separator();
    ui.label(RichText::new("Path from the root. Token shade = how surprised the model was; hover a token for its alternatives, right-click it to branch there.").small().weak());
    ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if let Some(root) = tree.root() {
                ui.label(RichText::new(root.text.trim()).italics().weak());
                ui.separator();
            }
            if tree.path_thinks(selected) {
                ui.horizontal(|ui| {
                    for (segment, name) in [
                        (Segment::Thinking, "thinking (italic)"),
                        (Segment::Answer, "answer"),
                    ] {
                        ui.label(RichText::new("    ").background_color(segment_color(segment)));
                        ui.label(RichText::new(name).small());
                    }
                });
            }
            ui.horizontal_wrapped(|ui| {
                ui.spacing_mut().item_spacing = egui::vec2(0.0, 2.0);
                for (id, keep) in tree.path_spans(selected) {
                    let n = &tree.nodes[id];
                    if n.kind == NodeKind::Prompt {
                        continue;
                    }
                    for (i, tok) in n.tokens[..keep].iter().enumerate() {
                        let prob = tok.logprob.exp();
                        let text = tok.text.replace('\n', "¶\n");
                        let mut rich = RichText::new(text)
                            .monospace()
                            .background_color(theme::token_background(prob));
                        if n.segment_at(i) == Some(Segment::Thinking) {
                            rich = rich.italics().color(segment_color(Segment::Thinking));
                        }
                        if n.kind == NodeKind::Forced {
                            rich = rich.color(theme::FORCED).strong();
                        }
                        let resp = ui.add(egui::Label::new(rich).sense(egui::Sense::click()));
                        let resp = resp.on_hover_ui(|ui| {
                            ui.label(format!(
                                "p = {:.1}%  ·  entropy {:.2} nats",
                                prob * 100.0,
                                tok.entropy
                            ));
                            ui.separator();
                            for alt in &tok.top {
                                ui.label(
                                    RichText::new(format!(
                                        "{:>6.1}%  {:?}",
                                        alt.logprob.exp() * 100.0,
                                        alt.text
                                    ))
                                    .monospace(),
                                );
                            }
                            if can_branch {
                                ui.label(
                                    RichText::new(
                                        "Right-click to branch here with an alternative.",
                                    )
                                    .small()
                                    .weak(),
                                );
                            }
                        });
                        if can_branch && n.kind != NodeKind::Forced {
                            resp.context_menu(|ui| {
                                ui.label("Branch here with:");
                                for alt in tok.top.iter().filter(|a| a.id != tok.id) {
                                    let label = format!(
                                        "{:?}  ({:.1}%)",
                                        alt.text,
                                        alt.logprob.exp() * 100.0
                                    );
                                    if ui.button(label).clicked() {
                                        request = Some(BranchRequest {
                                            node: id,
                                            index: i,
                                            token: alt.id,
                                        });
                                        ui.close();
                                    }
                                }
                            });
                        }
                    }
                }
            });
        });
    if !can_branch {
        ui.label(
            RichText::new("Branching is available once the run has finished.")
                .small()
                .weak(),
        );
    }
    request
}

/// The node's progress and, along its path (the whole chosen path when the node is on it), p̂
/// over tokens with the regret against the run's best p̂ shaded.
fn progress_ui(ui: &mut Ui, tree: &Tree, selected: NodeId) {
    let Some(node) = tree.node(selected) else {
        return;
    };
    // A node on the chosen path shows the whole chosen path.
    let end = match (node.status, tree.chosen) {
        (NodeStatus::Chosen, Some(c)) => c,
        _ => selected,
    };
    let curve = progress::path_curve(tree, end);
    if curve.is_empty() {
        return;
    }
    ui.separator();
    if let Some(p) = &node.progress {
        ui.label(RichText::new(progress_line(p)).strong());
        let answers: Vec<String> = p
            .probes
            .iter()
            .map(|q| {
                let a = q.answer.as_deref().unwrap_or("–");
                if q.matched {
                    format!("✔{a}")
                } else {
                    a.to_owned()
                }
            })
            .collect();
        ui.label(RichText::new(format!("probe answers: {}", answers.join("  "))).small())
            .on_hover_text(
                p.probes
                    .iter()
                    .map(|q| format!("{:?}", q.text))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        ui.label(RichText::new(p.basis.label()).small().weak());
    }
    let end_tokens = tree
        .path_tokens(end)
        .len()
        .max(curve.last().map_or(0, |c| c.0));
    let best = progress::best_p_hat(tree).unwrap_or(1.0);
    let area = progress::regret(&curve, best, end_tokens);
    ui.label(
        RichText::new(format!(
            "{} path: regret {:.1} token·p against the best p̂ of the run ({best:.2}), {:.2} per token",
            if end == selected { "This" } else { "Chosen" },
            area,
            area / end_tokens.max(1) as f64
        ))
        .small(),
    );
    // p̂ holds from one probe point to the next: a step curve.
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (i, &(x, p)) in curve.iter().enumerate() {
        let next = curve.get(i + 1).map_or(end_tokens.max(x), |c| c.0);
        for xx in [x, next] {
            // A repeated point makes the line's tessellation blow up (a zero-length segment has
            // no direction), so the step curve skips them.
            let point = (xx as f64, f64::from(p));
            if xs.last().copied() == Some(point.0) && ys.last().copied() == Some(point.1) {
                continue;
            }
            xs.push(point.0);
            ys.push(point.1);
        }
    }
    let tops = vec![f64::from(best); xs.len()];
    let line: Vec<[f64; 2]> = xs.iter().zip(&ys).map(|(x, y)| [*x, *y]).collect();
    let marks: Vec<[f64; 2]> = curve
        .iter()
        .map(|&(x, p)| [x as f64, f64::from(p)])
        .collect();
    Plot::new(("progress_plot", selected.index()))
        .height(150.0)
        .legend(Legend::default())
        .include_y(0.0)
        .include_y(1.0)
        .include_x(0.0)
        .x_axis_label("tokens on the path")
        .y_axis_label("p̂")
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.add(
                FilledArea::new("regret", &xs, &ys, &tops)
                    .fill_color(Color32::from_rgba_unmultiplied(230, 90, 90, 60)),
            );
            plot.hline(
                HLine::new("best p̂ of the run", f64::from(best))
                    .color(Color32::GRAY)
                    .style(LineStyle::dashed_loose()),
            );
            plot.line(
                Line::new("p̂", PlotPoints::from(line))
                    .color(theme::CHOSEN)
                    .width(2.0)
                    // A step curve repeats x at each step; egui_plot would draw those as a band.
                    .allow_band(false),
            );
            plot.points(
                Points::new("probe points", PlotPoints::from(marks))
                    .color(theme::CHOSEN)
                    .radius(3.0),
            );
        });
}
