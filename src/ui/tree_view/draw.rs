//! Painting the tree. Node placement comes from [`super::layout`]; this file turns it into
//! shapes for the visible part of the canvas.

use std::collections::{BTreeMap, HashSet};

use std::sync::Arc;

use eframe::egui::text::{LayoutJob, TextWrapping};
use eframe::egui::{
    self, Align2, Color32, CornerRadius, FontId, Galley, Pos2, Rect, Sense, Stroke, StrokeKind, Ui,
    Vec2,
};

use super::layout::{layout, TreeLayout, LEVEL_HEIGHT, NODE_SIZE, SLOT_WIDTH};
use crate::ui::state::ColorBy;
use crate::ui::theme;
use thinkscope_engine::answer::normalize;
use thinkscope_engine::progress::Progress;
use thinkscope_engine::tree::{Node, NodeId, NodeKind, NodeStatus, Segment, Tree};

/// Smallest font, in screen pixels, that a node's label and snippet are drawn in; below it the
/// node shows its badge instead of unreadable text.
pub const MIN_TEXT_PX: f32 = 8.5;
/// Font size of badges, in screen pixels, at every zoom.
pub const BADGE_PX: f32 = 10.0;
/// Pixels kept free between neighbouring badges (and around the badge's text).
const BADGE_GAP_PX: f32 = 6.0;
/// Node text size in pixels at zoom 1.
const TEXT_PX: f32 = 11.0;

/// What a node's box holds at a zoom.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeText {
    /// Its label and snippet, at this font size (pixels), cut to the box.
    Full {
        /// Font size of the label, in pixels (never below [`MIN_TEXT_PX`]).
        px: f32,
    },
    /// Too small for text: its answer, score or votes in a badge of readable size
    /// ([`BADGE_PX`]), cut with "…" to the room its slot leaves.
    Badge {
        /// The badge's text, whole.
        text: String,
        /// The widest the badge may be drawn, in pixels.
        max_width_px: f32,
    },
    /// Too small even for a badge, or nothing to show: colour only.
    Nothing,
}

/// What to draw in `node`'s box at `zoom` (screen pixels per world unit).
pub fn node_text(node: &Node, zoom: f32) -> NodeText {
    let px = TEXT_PX * zoom.min(1.2);
    if px >= MIN_TEXT_PX {
        return NodeText::Full { px };
    }
    let Some(badge) = badge(node) else {
        return NodeText::Nothing;
    };
    // A badge stays inside its slot and its level, so neighbours' badges never overlap; with
    // room for less than about two characters it is left out.
    let max_width_px = SLOT_WIDTH * zoom - BADGE_GAP_PX;
    if max_width_px < BADGE_PX || LEVEL_HEIGHT * zoom < BADGE_PX + BADGE_GAP_PX {
        return NodeText::Nothing;
    }
    NodeText::Badge {
        text: badge,
        max_width_px,
    }
}

/// A node's badge: its answer, else its score, votes or visits.
fn badge(node: &Node) -> Option<String> {
    if let Some(a) = node
        .answer
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        return Some(a.to_owned());
    }
    let s = &node.scores;
    s.value
        .map(|v| format!("{v:.2}"))
        .or_else(|| s.votes.map(|v| format!("{v} votes")))
        .or_else(|| s.visits.map(|v| format!("{v} visits")))
}

/// One line of text cut with "…" to `max_width` pixels.
fn one_line(ui: &Ui, text: String, font: FontId, color: Color32, max_width: f32) -> Arc<Galley> {
    let mut job = LayoutJob::simple_singleline(text, font, color);
    job.wrap = TextWrapping::truncate_at_width(max_width.max(1.0));
    ui.fonts_mut(|f| f.layout_job(job))
}

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
            let node = &tree.nodes[v.id];
            segment_bar(&painter, v.rect, node, self.zoom);
            match node_text(node, self.zoom) {
                NodeText::Full { px } => {
                    let font = FontId::proportional(px);
                    let dark = Color32::from_gray(20);
                    let head = match &node.answer {
                        Some(a) => format!("{}: {}", node.label, a.trim()),
                        None => node.label.clone(),
                    };
                    let inner = v.rect.width() - 10.0 * self.zoom;
                    let head = one_line(ui, head, font.clone(), dark, inner);
                    painter.galley(
                        v.rect.left_top() + Vec2::new(5.0, 3.0) * self.zoom,
                        head,
                        dark,
                    );
                    // Thinking reads in a cooler ink than the answer.
                    let ink = if node.segment_at(node.tokens.len()) == Some(Segment::Thinking) {
                        Color32::from_rgb(30, 40, 110)
                    } else {
                        dark
                    };
                    // The snippet keeps the node's last words, as many as the box holds (a
                    // monospace glyph is about 0.6 em wide; the cut at the end is a safety net).
                    let body_px = (px - 1.0).max(MIN_TEXT_PX);
                    let fits = (inner / (0.62 * body_px)).floor().max(4.0) as usize;
                    let body = one_line(
                        ui,
                        snippet(node, fits),
                        FontId::monospace(body_px),
                        ink,
                        inner,
                    );
                    let at = v.rect.left_bottom()
                        + Vec2::new(5.0 * self.zoom, -body.size().y - 6.0 * self.zoom);
                    painter.galley(at, body, ink);
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
                NodeText::Badge { text, max_width_px } => {
                    let galley = one_line(
                        ui,
                        text,
                        FontId::proportional(BADGE_PX),
                        Color32::WHITE,
                        max_width_px - BADGE_GAP_PX,
                    );
                    let pill = Rect::from_center_size(
                        v.rect.center(),
                        galley.size() + Vec2::new(6.0, 2.0),
                    );
                    painter.rect_filled(
                        pill,
                        CornerRadius::same(3),
                        Color32::from_black_alpha(190),
                    );
                    if node.status == NodeStatus::Chosen {
                        painter.rect_stroke(
                            pill,
                            CornerRadius::same(3),
                            Stroke::new(1.0, theme::CHOSEN),
                            StrokeKind::Outside,
                        );
                    }
                    painter.galley(pill.min + Vec2::new(3.0, 1.0), galley, Color32::WHITE);
                }
                NodeText::Nothing => {}
            }
            if let Some(p) = &node.progress {
                // Above the thinking/answer bar where the node has one.
                let r = if node.segments.is_empty() {
                    v.rect
                } else {
                    let h = (6.0 * self.zoom).clamp(2.0, v.rect.height() / 3.0);
                    v.rect.with_max_y(v.rect.bottom() - h)
                };
                progress_bar(&painter, r, p, self.zoom);
            }
        }
        let thinks = tree.nodes.iter().any(|n| !n.segments.is_empty());
        legend(&painter, rect, by, thinks);

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

/// A thinking model's node carries a bar along its bottom edge: its tokens in order, thinking
/// in one colour and answer in another, so where the thought closed shows at any zoom.
fn segment_bar(painter: &egui::Painter, rect: Rect, node: &Node, zoom: f32) {
    let runs = node.segment_runs();
    let len = node.tokens.len();
    if runs.is_empty() || len == 0 {
        return;
    }
    let h = (6.0 * zoom).clamp(2.0, rect.height() / 3.0);
    let w = rect.width();
    for (start, end, segment) in runs {
        let x0 = rect.left() + w * start as f32 / len as f32;
        let x1 = rect.left() + w * end as f32 / len as f32;
        let bar = Rect::from_min_max(
            Pos2::new(x0, rect.bottom() - h),
            Pos2::new(x1, rect.bottom()),
        );
        painter.rect_filled(bar, CornerRadius::ZERO, segment_color(segment));
    }
}

/// The colour a segment is drawn in, in the tree and the inspector.
pub fn segment_color(segment: Segment) -> Color32 {
    match segment {
        Segment::Thinking => theme::THINKING,
        Segment::Answer => theme::ANSWER,
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

/// The node's text on one line, its last `max_chars` characters at most (with "…" in front).
fn snippet(node: &Node, max_chars: usize) -> String {
    let text = node.text.replace('\n', "¶ ");
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max_chars {
        text
    } else {
        let keep = max_chars.saturating_sub(1);
        format!(
            "…{}",
            chars[chars.len() - keep..].iter().collect::<String>()
        )
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
    if !node.segments.is_empty() {
        ui.label(format!(
            "thinking {} of {} tokens",
            node.thinking_tokens(),
            node.tokens.len()
        ));
    }
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

fn legend(painter: &egui::Painter, rect: Rect, by: ColorBy, thinks: bool) {
    if thinks {
        // The segment key sits in the top right corner, clear of the colour scale.
        let at = rect.right_top() + Vec2::new(-150.0, 10.0);
        let bg = Rect::from_min_size(at - Vec2::new(6.0, 4.0), Vec2::new(146.0, 20.0));
        painter.rect_filled(bg, CornerRadius::same(4), Color32::from_black_alpha(140));
        let mut x = at.x;
        for (segment, name) in [(Segment::Thinking, "thinking"), (Segment::Answer, "answer")] {
            let swatch = Rect::from_min_size(Pos2::new(x, at.y + 3.0), Vec2::new(22.0, 5.0));
            painter.rect_filled(swatch, CornerRadius::ZERO, segment_color(segment));
            let r = painter.text(
                Pos2::new(x + 27.0, at.y),
                Align2::LEFT_TOP,
                name,
                FontId::proportional(10.0),
                Color32::LIGHT_GRAY,
            );
            x = r.right() + 14.0;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use thinkscope_engine::events::{Event, RunId};
    use thinkscope_engine::tree::Scores;

    /// A one-node tree's node, finished with `answer` and scored `value`.
    fn node(answer: Option<&str>, value: Option<f32>) -> Node {
        let mut t = Tree::default();
        t.apply(&Event::NodeAdded {
            run: RunId(0),
            node: NodeId(0),
            parent: None,
            kind: NodeKind::Generated,
            label: "sample 1".into(),
            text: "so the answer is 42".into(),
            fork_at: None,
        });
        t.apply(&Event::NodeScored {
            run: RunId(0),
            node: NodeId(0),
            scores: Scores {
                value,
                ..Scores::default()
            },
        });
        t.apply(&Event::NodeFinished {
            run: RunId(0),
            node: NodeId(0),
            answer: answer.map(str::to_owned),
        });
        t.nodes.remove(0)
    }

    #[test]
    fn text_is_drawn_only_where_it_is_readable_and_badges_fit_their_slots() {
        let n = node(Some(" 42 "), Some(0.5));
        let (mut full, mut badges, mut nothing) = (0, 0, 0);
        for step in 1..=400 {
            let zoom = step as f32 * 0.01;
            match node_text(&n, zoom) {
                NodeText::Full { px } => {
                    full += 1;
                    assert!(px >= MIN_TEXT_PX, "zoom {zoom}: {px} px");
                }
                NodeText::Badge { text, max_width_px } => {
                    badges += 1;
                    assert!(TEXT_PX * zoom < MIN_TEXT_PX, "zoom {zoom}: text fits");
                    assert_eq!(text, "42");
                    assert!(max_width_px >= BADGE_PX);
                    assert!(max_width_px + BADGE_GAP_PX <= SLOT_WIDTH * zoom + 1e-3);
                    assert!(BADGE_PX + BADGE_GAP_PX <= LEVEL_HEIGHT * zoom + 1e-3);
                }
                NodeText::Nothing => {
                    nothing += 1;
                    assert!(
                        SLOT_WIDTH * zoom < BADGE_PX + BADGE_GAP_PX
                            || LEVEL_HEIGHT * zoom < BADGE_PX + BADGE_GAP_PX
                    );
                }
            }
        }
        assert!(
            full > 0 && badges > 0 && nothing > 0,
            "{full} {badges} {nothing}"
        );
    }

    #[test]
    fn the_badge_is_the_answer_else_the_score_else_nothing() {
        let zoom = 0.3;
        let badge = |n: &Node| match node_text(n, zoom) {
            NodeText::Badge { text, .. } => Some(text),
            NodeText::Nothing => None,
            NodeText::Full { .. } => panic!("zoom {zoom} is too small for text"),
        };
        assert_eq!(
            badge(&node(Some("Paris"), Some(0.25))).as_deref(),
            Some("Paris")
        );
        assert_eq!(badge(&node(None, Some(0.25))).as_deref(), Some("0.25"));
        assert_eq!(badge(&node(Some("  "), None)), None);
        assert_eq!(badge(&node(None, None)), None);
    }

    #[test]
    fn a_long_badge_is_cut_to_its_width_with_real_fonts() {
        let ctx = egui::Context::default();
        for _ in 0..2 {
            let _ = ctx.run_ui(egui::RawInput::default(), |ui| {
                for width in [12.0, 30.0, 80.0] {
                    let g = one_line(
                        ui,
                        "1234567890 apples and İİİ pears".into(),
                        FontId::proportional(BADGE_PX),
                        Color32::WHITE,
                        width,
                    );
                    assert!(g.size().x <= width + 0.5, "{} > {width}", g.size().x);
                    assert!(g.elided, "cut at {width} px");
                    assert_eq!(g.rows[0].glyphs.last().map(|c| c.chr), Some('…'));
                    assert_eq!(g.rows.len(), 1);
                }
                let g = one_line(
                    ui,
                    "42".into(),
                    FontId::proportional(BADGE_PX),
                    Color32::WHITE,
                    80.0,
                );
                assert!(!g.elided);
            });
        }
    }
}
