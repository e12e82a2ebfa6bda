//! Branch by hand (loom-style): take another token at any position and let the model go on.

use super::{Ctx, StopRule};
use crate::error::{EngineError, Result};
use crate::tree::{NodeId, NodeKind, Tree};

/// A branch the user asked for.
#[derive(Clone, Debug)]
pub struct ManualBranch {
    /// The finished tree being branched.
    pub source: Tree,
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// Node holding the token to replace.
    pub node: NodeId,
    /// Token index inside the node.
    pub index: usize,
    /// The replacement token.
    pub token: u32,
}

impl ManualBranch {
    /// Generate the new branch into the run's tree.
    pub fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidParameter(m));
        let Some(node) = self.source.node(self.node) else {
            return bad(format!("node {} does not exist", self.node));
        };
        if node.kind == NodeKind::Prompt {
            return bad("branch from a generated token, not the prompt".into());
        }
        if self.index >= node.tokens.len() {
            return bad(format!(
                "node {} has {} tokens, no token {}",
                self.node,
                node.tokens.len(),
                self.index
            ));
        }
        let vocab = ctx.info().vocab;
        if self.token as usize >= vocab {
            return bad(format!(
                "token {} is outside the vocabulary of {vocab}",
                self.token
            ));
        }
        let mut ids = self.prompt_ids.clone();
        let spans = self.source.path_spans(self.node);
        for &(i, keep) in &spans[..spans.len() - 1] {
            let n = &self.source.nodes[i];
            if n.kind != NodeKind::Prompt {
                ids.extend(n.tokens[..keep].iter().map(|t| t.id));
            }
        }
        ids.extend(node.tokens[..self.index].iter().map(|t| t.id));
        let greedy = ctx.config().temperature == 0.0;
        let mut b = [ctx.start_from_tokens(ids, self.node, self.index, self.token, greedy)?];
        let max = ctx.config().max_tokens;
        ctx.generate(&mut b, &StopRule::to_end(max))?;
        ctx.finish(&b[0]);
        Ok(())
    }
}
