//! Where tree nodes go: a pure function of the tree's shape, tested and benchmarked apart from
//! drawing.
//!
//! Leaves take consecutive slots left to right in depth-first order, each parent sits centred
//! over its first and last child, and depth grows downwards. Collapsed subtrees are hidden.

use std::collections::HashSet;

use thinkscope_engine::tree::{NodeId, Tree};

/// Horizontal distance between leaf slots, in world units.
pub const SLOT_WIDTH: f32 = 170.0;
/// Vertical distance between depths, in world units.
pub const LEVEL_HEIGHT: f32 = 90.0;
/// Size of a node box, in world units.
pub const NODE_SIZE: [f32; 2] = [150.0, 44.0];

/// Positions of the visible nodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TreeLayout {
    /// Centre of each node, indexed by node id; `None` when hidden inside a collapsed subtree.
    pub pos: Vec<Option<[f32; 2]>>,
    /// Visible nodes in depth-first order.
    pub visible: Vec<NodeId>,
    /// Parent-child pairs between visible nodes.
    pub edges: Vec<(NodeId, NodeId)>,
    /// Bounding box of all node boxes: min x, min y, max x, max y.
    pub bounds: [f32; 4],
    /// Number of nodes the layout was computed for.
    pub node_count: usize,
}

/// Lay out `tree`, hiding the descendants of `collapsed` nodes.
pub fn layout(tree: &Tree, collapsed: &HashSet<NodeId>) -> TreeLayout {
    let n = tree.nodes.len();
    let mut out = TreeLayout {
        pos: vec![None; n],
        node_count: n,
        ..TreeLayout::default()
    };
    if n == 0 {
        return out;
    }
    // Post-order without recursion: trees can be 10,000 nodes deep.
    let mut x = vec![0f32; n];
    let mut depth = vec![0usize; n];
    let mut next_slot = 0f32;
    let mut stack: Vec<(NodeId, bool)> = vec![(NodeId(0), false)];
    while let Some((id, expanded)) = stack.pop() {
        let node = &tree.nodes[id];
        let open = !collapsed.contains(&id) && !node.children.is_empty();
        if !expanded {
            out.visible.push(id);
            if open {
                stack.push((id, true));
                for &c in node.children.iter().rev() {
                    if c.index() < n {
                        depth[c] = depth[id] + 1;
                        out.edges.push((id, c));
                        stack.push((c, false));
                    }
                }
            } else {
                x[id] = next_slot;
                next_slot += 1.0;
            }
        } else {
            let first = node.children.first().copied().unwrap_or(id);
            let last = node.children.last().copied().unwrap_or(id);
            x[id] = (x[first] + x[last]) / 2.0;
        }
    }
    let (hw, hh) = (NODE_SIZE[0] / 2.0, NODE_SIZE[1] / 2.0);
    let mut b = [
        f32::INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
    ];
    for &id in &out.visible {
        let p = [x[id] * SLOT_WIDTH, depth[id] as f32 * LEVEL_HEIGHT];
        out.pos[id] = Some(p);
        b = [
            b[0].min(p[0] - hw),
            b[1].min(p[1] - hh),
            b[2].max(p[0] + hw),
            b[3].max(p[1] + hh),
        ];
    }
    out.bounds = b;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use thinkscope_engine::events::{Event, RunId};
    use thinkscope_engine::tree::NodeKind;

    fn tree(parents: &[Option<usize>]) -> Tree {
        let mut t = Tree::default();
        for (i, p) in parents.iter().enumerate() {
            t.apply(&Event::NodeAdded {
                run: RunId(0),
                node: NodeId(i),
                parent: p.map(NodeId),
                kind: NodeKind::Generated,
                label: String::new(),
                text: String::new(),
                fork_at: None,
            });
        }
        t
    }

    #[test]
    fn parents_are_centred_over_children_and_leaves_do_not_overlap() {
        //        0
        //     1     2
        //    3 4    5
        let t = tree(&[None, Some(0), Some(0), Some(1), Some(1), Some(2)]);
        let l = layout(&t, &HashSet::new());
        let x = |i: usize| l.pos[i].map(|p| p[0]).unwrap_or(f32::NAN);
        let y = |i: usize| l.pos[i].map(|p| p[1]).unwrap_or(f32::NAN);
        assert_eq!(x(1), (x(3) + x(4)) / 2.0);
        assert_eq!(x(0), (x(1) + x(2)) / 2.0);
        assert!(x(3) < x(4) && x(4) < x(5));
        assert!(y(0) < y(1) && y(1) < y(3));
        assert_eq!(l.edges.len(), 5);
        assert_eq!(l.visible.len(), 6);
    }

    #[test]
    fn collapsed_subtrees_are_hidden() {
        let t = tree(&[None, Some(0), Some(0), Some(1), Some(1), Some(2)]);
        let l = layout(&t, &HashSet::from([NodeId(1)]));
        assert!(l.pos[3].is_none() && l.pos[4].is_none());
        assert!(l.pos[1].is_some());
        assert_eq!(l.visible.len(), 4);
    }

    #[test]
    fn deep_chains_do_not_overflow_the_stack() {
        let parents: Vec<Option<usize>> = (0..20_000)
            .map(|i| if i == 0 { None } else { Some(i - 1) })
            .collect();
        let l = layout(&tree(&parents), &HashSet::new());
        assert_eq!(l.visible.len(), 20_000);
    }
}
