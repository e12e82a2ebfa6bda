//! Painting the tree. Node placement comes from [`super::layout`]; this file turns it into
//! shapes for the visible part of the canvas.

use std::collections::{BTreeMap, HashSet};

use eframe::egui::{
    self, Align2, Color32, CornerRadius, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Ui, Vec2,
};

use super::layout::{layout, TreeLayout, NODE_SIZE};
use crate::ui::state::ColorBy;
use crate::ui::theme;
use thinkscope_engine::answer::normalize;
use thinkscope_engine::progress::Progress;
use thinkscope_engine::tree::{Node, NodeId, NodeKind, NodeStatus, Tree};

/// Pan, zoom and collapse state of one canvas.
pub struct TreeView {
    /// World point at the centre of the canvas.
    pub pan: Vec2,
    /// Screen pixels per world unit.
    pub zoom: f32,
    /// Nodes whose subtrees are hidden.
    pub collapsed: HashSet<NodeId>,
    /// Keep the whole tree in view while it grows.
    pub follow: bool,
    layout: TreeLayout,
    layout_collapsed: usize,
}

impl Default for TreeView {
    fn default() -> Self {
        Self {
            pan: Vec2::ZERO,
            zoom: 1.0,
            collapsed: HashSet::new(),
            follow: true,
            layout: TreeLayout::default(),
            layout_collapsed: 0,
        }
    }
}

/// What the user did on the canvas this frame.
#[derive(Default)]
pub struct CanvasOutput {
    /// A node was clicked.
    pub clicked: Option<NodeId>,
    /// Where the canvas is on screen (for PNG export).
    pub rect: Option<Rect>,
}

/// One node ready to paint.
#[derive(Clone, Debug)]
pub struct NodeVisual {
    /// The node.
    pub id: NodeId,
    /// Its box on screen.
    pub rect: Rect,
    /// Fill colour.
    pub fill: Color32,
    /// Outline.
    pub stroke: Stroke,
}

/// Colour of a node under a measure, with the scale's range for score colouring.
pub fn node_fill(
    node: &Node,
    by: ColorBy,
    score_range: (f32, f32),
    groups: &BTreeMap<String, usize>,
) -> Color32 {
    let neutral = Color32::from_gray(90);
    if node.kind == NodeKind::Prompt {
        return Color32::from_rgb(60, 72, 96);
    }
    if node.kind == NodeKind::Forced {
        return theme::FORCED;
    }
    let base = match by {
        ColorBy::Logprob => node
            .own_mean_logprob()
            .map_or(neutral, |lp| theme::red_green(1.0 + lp / 4.0)),
        ColorBy::Entropy => node
            .mean_entropy()
            .map_or(neutral, |h| theme::calm_hot(h / 4.0)),
        ColorBy::Score => node.scores.value.map_or(neutral, |v| {
            let (lo, hi) = score_range;
            theme::red_green(if hi > lo { (v - lo) / (hi - lo) } else { 1.0 })
        }),
        ColorBy::VoteGroup => node
            .answer
            .as_ref()
            .and_then(|a| groups.get(&normalize(a)))
            .map_or(neutral, |&i| theme::category(i)),
        ColorBy::Progress => progress_fill(node).unwrap_or(neutral),
    };
    if node.status == NodeStatus::Pruned {
        base.gamma_multiply(0.35)
    } else {
        base
    }
}

/// Screen shapes for the nodes of `layout` that intersect `clip`, given pan and zoom.
pub fn node_visuals(
    tree: &Tree,
    layout: &TreeLayout,
    center: Pos2,
    pan: Vec2,
    zoom: f32,
    clip: Rect,
    by: ColorBy,
) -> Vec<NodeVisual> {
    let (lo, hi) = tree
        .nodes
        .iter()
        .filter_map(|n| n.scores.value)
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let groups: BTreeMap<String, usize> = tree
        .nodes
        .iter()
        .filter_map(|n| n.answer.as_deref().map(normalize))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, i))
        .collect();
    let size = Vec2::new(NODE_SIZE[0], NODE_SIZE[1]) * zoom;
    let mut out = Vec::new();
    for &id in &layout.visible {
        let Some(p) = layout.pos[id] else { continue };
        let c = center + (Vec2::new(p[0], p[1]) - pan) * zoom;
        let rect = Rect::from_center_size(c, size);
        if !clip.intersects(rect) {
            continue;
        }
        let node = &tree.nodes[id];
        let fill = node_fill(node, by, (lo, hi), &groups);
        let stroke = match node.status {
            NodeStatus::Chosen => Stroke::new(3.0, theme::CHOSEN),
            NodeStatus::Running => Stroke::new(2.0, theme::RUNNING),
            NodeStatus::Pruned => Stroke::new(1.0, theme::PRUNED),
            NodeStatus::Finished => Stroke::new(1.0, Color32::from_gray(160)),
        };
        out.push(NodeVisual {
            id,
            rect,
            fill,
            stroke,
        });
    }
    out
}

impl TreeView {
    fn ensure_layout(&mut self, tree: &Tree) {
        if self.layout.node_count != tree.nodes.len()
            || self.layout_collapsed != self.collapsed.len()
        {
            self.layout = layout(tree, &self.collapsed);
            self.layout_collapsed = self.collapsed.len();
        }
    }

    /// Pan and zoom so the whole tree fits `rect`.
    pub fn fit(&mut self, rect: Rect) {
        let [x0, y0, x1, y1] = self.layout.bounds;
        if !x0.is_finite() {
            return;
        }
        let (w, h) = ((x1 - x0).max(1.0), (y1 - y0).max(1.0));
        self.zoom = ((rect.width() - 40.0) / w)
            .min((rect.height() - 40.0) / h)
            .clamp(0.02, 1.5);
        self.pan = Vec2::new((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    }

    /// Draw the canvas filling the available space.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        tree: &Tree,
        by: ColorBy,
        selected: Option<NodeId>,
    ) -> CanvasOutput {
        self.ensure_layout(tree);
        let size = ui.available_size().max(Vec2::new(50.0, 50.0));
        let (response, painter) = ui.allocate_painter(size, Sense::click_and_drag());
        let rect = response.rect;
        painter.rect_filled(rect, CornerRadius::same(4), ui.visuals().extreme_bg_color);
        let mut out = CanvasOutput {
            rect: Some(rect),
            ..CanvasOutput::default()
        };
        if tree.nodes.is_empty() {
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                "Press Run: the reasoning tree grows here.",
                FontId::proportional(15.0),
                ui.visuals().weak_text_color(),
            );
            return out;
        }

        // Input: drag pans, scroll or pinch zooms about the pointer.
        if response.dragged() {
            self.pan -= response.drag_delta() / self.zoom;
            self.follow = false;
        }
        if response.hovered() {
            let (scroll, pinch) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = pinch * (scroll * 0.0025).exp();
            if (factor - 1.0).abs() > 1e-4 {
                if let Some(p) = response.hover_pos() {
                    let world = self.pan + (p - rect.center()) / self.zoom;
                    self.zoom = (self.zoom * factor).clamp(0.02, 4.0);
                    self.pan = world - (p - rect.center()) / self.zoom;
                    self.follow = false;
                }
            }
        }
        if self.follow {
            self.fit(rect);
        }

        let center = rect.center();
        let to_screen = |p: [f32; 2]| center + (Vec2::new(p[0], p[1]) - self.pan) * self.zoom;
        let painter = painter.with_clip_rect(rect);
        let half_h = NODE_SIZE[1] / 2.0 * self.zoom;
        for &(a, b) in &self.layout.edges {
            let (Some(pa), Some(pb)) = (self.layout.pos[a], self.layout.pos[b]) else {
                continue;
            };
            let (sa, sb) = (
                to_screen(pa) + Vec2::new(0.0, half_h),
                to_screen(pb) - Vec2::new(0.0, half_h),
            );
            if !rect.intersects(Rect::from_two_pos(sa, sb)) {
                continue;
            }
            let on_path = tree.nodes[b].status == NodeStatus::Chosen;
            let stroke = if on_path {
                Stroke::new(3.0, theme::CHOSEN)
            } else {
                Stroke::new(1.2, Color32::from_gray(120))
            };
            let mid = Pos2::new(sb.x, (sa.y + sb.y) / 2.0);
            painter.line_segment([sa, Pos2::new(sa.x, mid.y)], stroke);
            painter.line_segment([Pos2::new(sa.x, mid.y), mid], stroke);
            painter.line_segment([mid, sb], stroke);
        }

        let visuals = node_visuals(tree, &self.layout, center, self.pan, self.zoom, rect, by);
        let show_text = self.zoom > 0.45;
        let radius = CornerRadius::same((6.0 * self.zoom.min(1.0)) as u8);
        let pointer = response.hover_pos();
        let mut hovered = None;
        for v in &visuals {
            painter.rect_filled(v.rect, radius, v.fill);
            let stroke = if Some(v.id) == selected {
                Stroke::new(3.0, Color32::WHITE)
            } else {
                v.stroke
            };
            painter.rect_stroke(v.rect, radius, stroke, StrokeKind::Outside);
            if pointer.is_some_and(|p| v.rect.contains(p)) {
                hovered = Some(v.id);
            }
            if show_text {
                let node = &tree.nodes[v.id];
                let font = FontId::proportional(11.0 * self.zoom.min(1.2));
                let dark = Color32::from_gray(20);
                let head = match (&node.answer, node.kind) {
                    (Some(a), _) => format!("{}: {}", node.label, short(a, 14)),
                    _ => node.label.clone(),
                };
                painter.text(
                    v.rect.left_top() + Vec2::new(5.0, 3.0) * self.zoom,
                    Align2::LEFT_TOP,
                    head,
                    font.clone(),
                    dark,
                );
                let snippet = snippet(node);
                painter.text(
                    v.rect.left_bottom() + Vec2::new(5.0, -3.0) * self.zoom,
                    Align2::LEFT_BOTTOM,
                    snippet,
                    FontId::monospace(10.0 * self.zoom.min(1.2)),
                    dark,
                );
                if let Some(p) = &node.progress {
                    progress_bar(&painter, v.rect, p, self.zoom);
                }
                if self.collapsed.contains(&v.id) && !node.children.is_empty() {
                    painter.text(
                        v.rect.center_bottom() + Vec2::new(0.0, 8.0),
                        Align2::CENTER_TOP,
                        format!("+{}", node.children.len()),
                        font,
                        ui.visuals().text_color(),
                    );
                }
            }
        }
        legend(&painter, rect, by);

        if response.double_clicked() {
            if let Some(id) = hovered {
                if !self.collapsed.remove(&id) {
                    self.collapsed.insert(id);
                }
            }
        } else if response.clicked() {
            out.clicked = hovered;
        }
        if let Some(id) = hovered {
            let node = &tree.nodes[id];
            response.on_hover_ui_at_pointer(|ui| node_tooltip(ui, tree, node));
        }
        out
    }
}

fn short(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn snippet(node: &Node) -> String {
    let text = node.text.replace('\n', "¶ ");
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 24 {
        text
    } else {
        format!("…{}", chars[chars.len() - 23..].iter().collect::<String>())
    }
}

/// The hover card of a node.
pub fn node_tooltip(ui: &mut Ui, tree: &Tree, node: &Node) {
    ui.set_max_width(360.0);
    ui.strong(format!(
        "{} · {:?} · {:?}",
        node.label, node.kind, node.status
    ));
    ui.label(format!(
        "{} tokens, depth {}",
        node.tokens.len(),
        tree.depth(node.id)
    ));
    if let Some(lp) = node.own_mean_logprob() {
        ui.label(format!(
            "mean log-prob {lp:.2} (p ≈ {:.0}%)",
            lp.exp() * 100.0
        ));
    }
    if let Some(h) = node.mean_entropy() {
        ui.label(format!("mean entropy {h:.2} nats"));
    }
    let s = &node.scores;
    if let Some(v) = s.value {
        ui.label(format!("score {v:.3}"));
    }
    if let Some(v) = s.votes {
        ui.label(format!("votes {v}"));
    }
    if let Some(v) = s.visits {
        ui.label(format!("visits {v}"));
    }
    if let Some(a) = &node.answer {
        ui.label(egui::RichText::new(format!("answer: {a}")).strong());
    }
    if let Some(p) = &node.progress {
        ui.label(progress_line(p));
    }
    ui.separator();
    ui.label(
        egui::RichText::new(short(&node.text, 400))
            .monospace()
            .small(),
    );
}

fn legend(painter: &egui::Painter, rect: Rect, by: ColorBy) {
    let origin = rect.left_bottom() + Vec2::new(10.0, -30.0);
    let w = 120.0;
    let (lo, hi, ramp): (&str, &str, fn(f32) -> Color32) = match by {
        ColorBy::Logprob => ("unlikely", "confident", theme::red_green),
        ColorBy::Entropy => ("calm", "unsure", theme::calm_hot),
        ColorBy::Score => ("low score", "high", theme::red_green),
        ColorBy::VoteGroup => ("", "", theme::red_green),
        ColorBy::Progress => ("Δp̂ lost", "gained", theme::diverging),
    };
    let bg = Rect::from_min_size(origin - Vec2::new(6.0, 18.0), Vec2::new(w + 90.0, 42.0));
    painter.rect_filled(bg, CornerRadius::same(4), Color32::from_black_alpha(140));
    painter.text(
        origin - Vec2::new(0.0, 16.0),
        Align2::LEFT_TOP,
        format!("colour: {}", by.label()),
        FontId::proportional(11.0),
        Color32::WHITE,
    );
    if by == ColorBy::VoteGroup {
        for i in 0..6 {
            painter.rect_filled(
                Rect::from_min_size(
                    origin + Vec2::new(i as f32 * 20.0, 0.0),
                    Vec2::new(16.0, 10.0),
                ),
                CornerRadius::ZERO,
                theme::category(i),
            );
        }
        painter.text(
            origin + Vec2::new(0.0, 12.0),
            Align2::LEFT_TOP,
            "one colour per answer",
            FontId::proportional(10.0),
            Color32::LIGHT_GRAY,
        );
        return;
    }
    let steps = 24;
    for i in 0..steps {
        let t = i as f32 / (steps - 1) as f32;
        let r = Rect::from_min_size(
            origin + Vec2::new(t * w, 0.0),
            Vec2::new(w / steps as f32 + 1.0, 10.0),
        );
        painter.rect_filled(r, CornerRadius::ZERO, ramp(t));
    }
    painter.text(
        origin + Vec2::new(0.0, 12.0),
        Align2::LEFT_TOP,
        lo,
        FontId::proportional(10.0),
        Color32::LIGHT_GRAY,
    );
    painter.text(
        origin + Vec2::new(w, 12.0),
        Align2::RIGHT_TOP,
        hi,
        FontId::proportional(10.0),
        Color32::LIGHT_GRAY,
    );
}

/// The colour of a node's Δp̂ (none when it was not probed or has no probed ancestor).
fn progress_fill(node: &Node) -> Option<Color32> {
    let d = node.progress.as_ref()?.delta?;
    Some(theme::diverging(0.5 + d / 2.0))
}

/// A node's progress in one line: "p̂ 0.62 (Δp̂ +0.25), consensus progress vs 42".
pub fn progress_line(p: &Progress) -> String {
    format!(
        "p̂ {:.2}{} · {} vs {} · {} probes",
        p.p_hat,
        p.delta
            .map_or_else(String::new, |d| format!(" (Δp̂ {d:+.2})")),
        p.basis.short(),
        p.reference.as_deref().unwrap_or("(no answer yet)"),
        p.probes.len()
    )
}

/// A small bar along the bottom of a node: p̂ filled, the part gained since the parent green or
/// the part lost red, and a tick at the parent's p̂.
fn progress_bar(painter: &egui::Painter, rect: Rect, p: &Progress, zoom: f32) {
    if zoom < 0.2 {
        return;
    }
    let h = (4.0 * zoom).clamp(2.0, 6.0);
    let track = Rect::from_min_max(
        Pos2::new(rect.left() + 3.0, rect.bottom() - h - 2.0),
        Pos2::new(rect.right() - 3.0, rect.bottom() - 2.0),
    );
    let at = |v: f32| track.left() + track.width() * v.clamp(0.0, 1.0);
    painter.rect_filled(track, CornerRadius::same(1), Color32::from_black_alpha(110));
    let now = Rect::from_min_max(track.min, Pos2::new(at(p.p_hat), track.bottom()));
    painter.rect_filled(now, CornerRadius::same(1), Color32::from_gray(230));
    if let Some(d) = p.delta.filter(|d| d.abs() > 1e-6) {
        let before = p.p_hat - d;
        let (a, b) = (at(before.min(p.p_hat)), at(before.max(p.p_hat)));
        let color = if d > 0.0 {
            theme::diverging(1.0)
        } else {
            theme::diverging(0.0)
        };
        painter.rect_filled(
            Rect::from_min_max(Pos2::new(a, track.top()), Pos2::new(b, track.bottom())),
            CornerRadius::ZERO,
            color,
        );
        painter.line_segment(
            [
                Pos2::new(at(before), track.top() - 1.5),
                Pos2::new(at(before), track.bottom() + 1.5),
            ],
            Stroke::new(1.0, Color32::WHITE),
        );
    }
}
