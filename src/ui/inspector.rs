//! The node inspector: the path's text with every token shaded by its probability, its
//! alternatives on hover, and "branch here".

use eframe::egui::{self, RichText, ScrollArea, Ui};

use crate::ui::theme;
use crate::ui::tree_view::draw::segment_color;
use thinkscope_engine::tree::{NodeId, NodeKind, Segment, Tree};

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
