//! Tree layout and draw preparation for 1k and 10k nodes: `cargo bench --bench tree_layout`.
//!
//! Prints a table of medians. Draw preparation is measured for the whole tree in view (the worst
//! case, zoomed out) and for a zoomed-in viewport (what panning mostly costs).

use std::collections::HashSet;
use std::time::Instant;

use eframe::egui::{Pos2, Rect, Vec2};
use thinkscope::ui::state::ColorBy;
use thinkscope::ui::tree_view::draw::node_visuals;
use thinkscope::ui::tree_view::layout::layout;
use thinkscope_engine::events::{Event, RunId};
use thinkscope_engine::model::sampling::{Rng, TokenInfo};
use thinkscope_engine::tree::{NodeId, NodeKind, Tree};

/// A random tree of `n` nodes (each new node hangs under a random recent node, like a search).
fn tree(n: usize) -> Tree {
    let mut rng = Rng::new(1);
    let mut t = Tree::default();
    for i in 0..n {
        let parent = (i > 0).then(|| {
            let window = i.min(64);
            i - 1 - (rng.next_u64() as usize % window)
        });
        t.apply(&Event::NodeAdded {
            run: RunId(0),
            node: NodeId(i),
            parent: parent.map(NodeId),
            kind: if i == 0 {
                NodeKind::Prompt
            } else {
                NodeKind::Generated
            },
            label: format!("node {i}"),
            text: String::new(),
            fork_at: None,
        });
        let tokens = (0..8)
            .map(|k| TokenInfo {
                id: k,
                text: " tok".into(),
                logprob: -(rng.next_f64() as f32) * 3.0,
                entropy: rng.next_f64() as f32 * 3.0,
                top: Vec::new(),
            })
            .collect();
        t.apply(&Event::TokensAppended {
            run: RunId(0),
            node: NodeId(i),
            tokens,
        });
    }
    t
}

fn median_micros(mut f: impl FnMut(), reps: usize) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!("| nodes | layout (µs) | draw prep, whole tree (µs) | shapes | draw prep, zoomed in (µs) | shapes |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [1_000, 10_000] {
        let t = tree(n);
        let collapsed = HashSet::new();
        let lay = layout(&t, &collapsed);
        let layout_us = median_micros(|| drop(std::hint::black_box(layout(&t, &collapsed))), 21);
        let [x0, y0, x1, y1] = lay.bounds;
        let screen = Rect::from_min_size(Pos2::ZERO, Vec2::new(1000.0, 700.0));
        let fit_zoom = (1000.0 / (x1 - x0)).min(700.0 / (y1 - y0));
        let center_world = Vec2::new((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let whole = node_visuals(
            &t,
            &lay,
            screen.center(),
            center_world,
            fit_zoom,
            screen,
            ColorBy::Logprob,
        )
        .len();
        let whole_us = median_micros(
            || {
                drop(std::hint::black_box(node_visuals(
                    &t,
                    &lay,
                    screen.center(),
                    center_world,
                    fit_zoom,
                    screen,
                    ColorBy::Logprob,
                )))
            },
            21,
        );
        let root = lay.pos[0].map_or(Vec2::ZERO, |p| Vec2::new(p[0], p[1]));
        let zoomed = node_visuals(
            &t,
            &lay,
            screen.center(),
            root,
            0.5,
            screen,
            ColorBy::Logprob,
        )
        .len();
        let zoomed_us = median_micros(
            || {
                drop(std::hint::black_box(node_visuals(
                    &t,
                    &lay,
                    screen.center(),
                    root,
                    0.5,
                    screen,
                    ColorBy::Logprob,
                )))
            },
            21,
        );
        println!("| {n} | {layout_us:.0} | {whole_us:.0} | {whole} | {zoomed_us:.0} | {zoomed} |");
    }
}
