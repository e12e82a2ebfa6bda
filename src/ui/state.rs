//! What survives a restart (settings) and what a session file holds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use thinkscope_engine::atomic;
use thinkscope_engine::device::DevicePref;
use thinkscope_engine::session::{check, read_bounded, MAX_SETTINGS_BYTES};
/// The session format's plain data lives in the engine, shared with the CLI.
pub use thinkscope_engine::session::{
    PaneSettings, PaneSnapshot, MAX_SESSION_BYTES, SESSION_VERSION,
};

/// How nodes are coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColorBy {
    /// Mean token log-probability of the node.
    #[default]
    Logprob,
    /// Mean next-token entropy of the node.
    Entropy,
    /// Strategy score (verifier value, MCTS value, beam score).
    Score,
    /// Which answer the node's path reached.
    VoteGroup,
    /// Δp̂: how much the node's progress probes gained or lost against its parent's.
    Progress,
}

impl ColorBy {
    /// All choices, for menus.
    pub const ALL: [ColorBy; 5] = [
        Self::Logprob,
        Self::Entropy,
        Self::Score,
        Self::VoteGroup,
        Self::Progress,
    ];

    /// Menu label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Logprob => "Log-probability",
            Self::Entropy => "Entropy",
            Self::Score => "Score",
            Self::VoteGroup => "Vote group",
            Self::Progress => "Progress (Δp̂)",
        }
    }
}

/// Settings that persist across restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The prompt being explored.
    pub prompt: String,
    /// Its known answer, if the user gave one (empty: none).
    pub expected_answer: String,
    /// One to four panes.
    pub panes: Vec<PaneSettings>,
    /// Node colouring.
    pub color_by: ColorBy,
    /// Last model opened.
    pub model_path: Option<PathBuf>,
    /// Keep the whole tree in view while it grows.
    pub follow: bool,
    /// Show the teaching note of the System 1 vs System 2 preset.
    pub teaching_note: bool,
    /// The scaling lab's settings.
    pub lab: crate::ui::lab_view::LabSettings,
    /// Which view is open.
    pub view: View,
    /// Last server URL in "Connect to server" (never the API key).
    pub server_url: String,
    /// Last server model in "Connect to server".
    pub server_model: String,
    /// Where the local model runs (Device menu, `--device`).
    pub device: DevicePref,
}

/// The app's two views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum View {
    /// Live trees, side by side.
    #[default]
    Explore,
    /// Accuracy against compute.
    Lab,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            prompt: "A farmer has 17 sheep. All but 9 run away. How many sheep are left?".into(),
            expected_answer: String::new(),
            panes: vec![PaneSettings::default()],
            color_by: ColorBy::default(),
            model_path: None,
            follow: true,
            teaching_note: false,
            lab: Default::default(),
            view: View::Explore,
            server_url: String::new(),
            server_model: String::new(),
            device: DevicePref::Auto,
        }
    }
}

impl Settings {
    /// Where settings live: `$THINKSCOPE_CONFIG_DIR`, `$XDG_CONFIG_HOME/thinkscope` or
    /// `~/.config/thinkscope`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("THINKSCOPE_CONFIG_DIR") {
            return Some(PathBuf::from(d));
        }
        if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
            return Some(PathBuf::from(d).join("thinkscope"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("thinkscope"))
    }

    /// Load settings from `dir`; a missing or broken file gives the defaults (and a message).
    pub fn load(dir: &Path) -> (Self, Option<String>) {
        let path = dir.join("settings.json");
        match read_bounded(&path, MAX_SETTINGS_BYTES) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Self::default(), None),
            Err(e) => (
                Self::default(),
                Some(format!(
                    "settings were unreadable and were reset ({e}): {}",
                    path.display()
                )),
            ),
            Ok(text) => match serde_json::from_str::<Settings>(&text) {
                Ok(mut s) => {
                    s.sanitize();
                    (s, None)
                }
                Err(e) => (
                    Self::default(),
                    Some(format!(
                        "settings were unreadable and were reset ({e}): {}",
                        path.display()
                    )),
                ),
            },
        }
    }

    /// Write settings to `dir` atomically (the previous file survives a crash or a full disk).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        atomic::write(&dir.join("settings.json"), text.as_bytes()).map_err(std::io::Error::other)
    }

    /// Clamp values a hand-edited file may have broken.
    pub fn sanitize(&mut self) {
        if self.panes.is_empty() {
            self.panes.push(PaneSettings::default());
        }
        self.panes.truncate(4);
        self.panes.iter_mut().for_each(PaneSettings::sanitize);
    }
}

/// A saved session: prompt, settings, trees and costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionFile {
    /// Format version.
    pub version: u32,
    /// Settings at save time.
    pub settings: Settings,
    /// Each pane's tree and cost.
    pub panes: Vec<PaneSnapshot>,
}

impl SessionFile {
    /// Read and check a session file: bounded in size, of a known version, with possible trees
    /// and valid run settings. Nothing of the file is used unless all of it is.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = read_bounded(path, MAX_SESSION_BYTES)
            .map_err(|e| anyhow::anyhow!("could not read the session ({e}): {}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| anyhow::anyhow!("the session was not opened: {e:#}: {}", path.display()))
    }

    /// Parse and check the text of a session file (see [`Self::read`]). A tree exported with
    /// *Export tree as JSON* opens too, as a one-pane session on its prompt.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut s: SessionFile = match serde_json::from_str(text) {
            Ok(s) => s,
            Err(e) => match serde_json::from_str::<thinkscope_engine::tree::Tree>(text) {
                Ok(tree) if !tree.nodes.is_empty() => Self::of_tree(tree),
                _ => {
                    return Err(
                        anyhow::Error::from(e).context("it is not a thinkscope session file")
                    )
                }
            },
        };
        check(s.version, &s.panes).map_err(anyhow::Error::msg)?;
        s.settings.sanitize();
        Ok(s)
    }

    /// A one-pane session holding an exported tree, its prompt taken from the tree's root.
    fn of_tree(tree: thinkscope_engine::tree::Tree) -> Self {
        let mut settings = Settings::default();
        if let Some(root) = tree.nodes.first() {
            settings.prompt = root.text.clone();
        }
        Self {
            version: SESSION_VERSION,
            settings,
            panes: vec![PaneSnapshot {
                tree,
                ..PaneSnapshot::default()
            }],
        }
    }

    /// Write the session atomically: a crash or a full disk leaves the previous file intact.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        atomic::write_with(path, |f| self.write_to(f))
            .map_err(|e| anyhow::anyhow!("could not save the session: {e}"))
    }

    /// Serialize the session into `w`.
    pub fn write_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *w, self).map_err(std::io::Error::other)?;
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use thinkscope_engine::cost::CostSnapshot;
    use thinkscope_engine::tree::{Node, NodeId, NodeKind, NodeStatus, Scores, Tree};

    use super::*;

    fn session(tree: Tree) -> SessionFile {
        SessionFile {
            version: SESSION_VERSION,
            settings: Settings::default(),
            panes: vec![PaneSnapshot {
                config: None,
                tree,
                cost: CostSnapshot::default(),
            }],
        }
    }

    fn node(id: usize, parent: Option<usize>, children: Vec<usize>) -> Node {
        Node {
            id: NodeId(id),
            parent: parent.map(NodeId),
            children: children.into_iter().map(NodeId).collect(),
            kind: NodeKind::Generated,
            label: String::new(),
            fork_at: None,
            text: "x".into(),
            tokens: Vec::new(),
            status: NodeStatus::Finished,
            scores: Scores::default(),
            answer: None,
            segments: Vec::new(),
            progress: None,
        }
    }

    fn two_nodes() -> Tree {
        Tree {
            nodes: vec![node(0, None, vec![1]), node(1, Some(0), vec![])],
            ..Tree::default()
        }
    }

    #[test]
    fn an_exported_tree_opens_as_a_one_pane_session_and_is_checked() {
        let mut tree = two_nodes();
        tree.nodes[0].text = "What is 2 + 2?".into();
        let s = SessionFile::parse(&serde_json::to_string(&tree).expect("json")).expect("opens");
        assert_eq!(s.panes.len(), 1);
        assert_eq!(s.panes[0].tree, tree);
        assert_eq!(s.settings.prompt, "What is 2 + 2?");
        // An impossible exported tree is refused like a session's.
        tree.nodes[0].parent = Some(NodeId(1));
        let err = format!(
            "{:#}",
            SessionFile::parse(&serde_json::to_string(&tree).expect("json")).expect_err("cycle")
        );
        assert!(err.contains("pane A's tree cannot be shown"), "{err}");
        // Neither a session nor a tree.
        for text in ["{}", "[1, 2]", "{\"nodes\": 3}"] {
            let err = format!("{:#}", SessionFile::parse(text).expect_err(text));
            assert!(
                err.contains("not a thinkscope session file"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_session_round_trips() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("s.json");
        let s = session(two_nodes());
        s.write(&p).expect("write");
        assert_eq!(SessionFile::read(&p).expect("read"), s);
    }

    #[test]
    fn an_impossible_tree_is_refused_with_a_message() {
        let d = tempfile::tempdir().expect("tempdir");
        // A parent cycle (0 <- 1 <- 0) and a child id out of range, written by hand.
        let mut cyclic = two_nodes();
        cyclic.nodes[0].parent = Some(NodeId(1));
        let mut out_of_range = two_nodes();
        out_of_range.nodes[0].children.push(NodeId(7));
        for (name, tree, needle) in [
            ("cycle.json", cyclic, "not an earlier node"),
            ("range.json", out_of_range, "out of range"),
        ] {
            let p = d.path().join(name);
            let text = serde_json::to_string(&session(tree)).expect("json");
            std::fs::write(&p, text).expect("write");
            let err = format!("{:#}", SessionFile::read(&p).expect_err("refused"));
            assert!(err.contains("pane A's tree cannot be shown"), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(err.ends_with(&p.display().to_string()), "path last: {err}");
        }
        let p = d.path().join("garbage.json");
        std::fs::write(&p, "{\"version\": 1, \"panes\": 3}").expect("write");
        let err = format!("{:#}", SessionFile::read(&p).expect_err("refused"));
        assert!(err.contains("not a thinkscope session file"), "{err}");
    }

    /// A writer that fails after `left` bytes, as a disk does when it fills up.
    struct FillsUp<'a> {
        inner: &'a mut dyn Write,
        left: usize,
    }

    impl Write for FillsUp<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "No space left on device",
                ));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            self.inner.write(&buf[..n])
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }

    #[test]
    fn a_disk_that_fills_up_mid_save_leaves_the_old_session() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("work.json");
        let old = session(two_nodes());
        old.write(&p).expect("first save");
        let before = std::fs::read(&p).expect("read");
        let mut bigger = two_nodes();
        bigger.nodes[1].text = "y".repeat(100_000);
        let new = session(bigger);
        let err = atomic::write_with(&p, |f| {
            new.write_to(&mut FillsUp {
                inner: f,
                left: 4096,
            })
        })
        .expect_err("the disk is full");
        assert!(err.to_string().contains("No space left"), "{err}");
        assert_eq!(std::fs::read(&p).expect("read"), before, "old file intact");
        assert_eq!(SessionFile::read(&p).expect("still opens"), old);
        let stray: Vec<_> = std::fs::read_dir(d.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name() != "work.json")
            .collect();
        assert!(stray.is_empty(), "no temporary file left: {stray:?}");
    }

    #[test]
    fn settings_save_atomically_and_refuse_huge_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Settings {
            prompt: "p".into(),
            ..Settings::default()
        };
        s.save(d.path()).expect("save");
        assert_eq!(Settings::load(d.path()), (s, None));
        let f = std::fs::File::create(d.path().join("settings.json")).expect("create");
        f.set_len(MAX_SETTINGS_BYTES + 1).expect("grow");
        let (loaded, msg) = Settings::load(d.path());
        assert_eq!(loaded, Settings::default());
        assert!(msg.is_some_and(|m| m.contains("more than")));
    }

    #[test]
    fn mutated_sessions_are_refused_or_drawable() {
        // The session reader under the engine's seeded mutator: whatever parses and validates
        // must lay out and walk without panicking or looping (the layout follows children
        // lists, the inspector follows parents).
        let mut tree = two_nodes();
        tree.nodes[1].tokens = vec![thinkscope_engine::TokenInfo {
            id: 3,
            text: "x".into(),
            logprob: -0.5,
            entropy: 0.2,
            top: Vec::new(),
        }];
        tree.nodes.push(node(2, Some(0), vec![]));
        tree.nodes[0].children.push(NodeId(2));
        tree.nodes[2].fork_at = Some(0);
        tree.chosen = Some(NodeId(1));
        let seed = serde_json::to_vec(&session(tree)).expect("json");
        let mut m = thinkscope_engine::fuzz_targets::Mutator::new(11);
        let mut opened = 0;
        for _ in 0..6000 {
            let input = m.mutate(&seed, &seed, seed.len() + 256);
            let Ok(text) = std::str::from_utf8(&input) else {
                continue;
            };
            if let Ok(s) = SessionFile::parse(text) {
                opened += 1;
                for pane in &s.panes {
                    let laid = crate::ui::tree_view::layout::layout(
                        &pane.tree,
                        &std::collections::HashSet::new(),
                    );
                    assert_eq!(laid.node_count, pane.tree.nodes.len());
                    thinkscope_engine::fuzz_targets::walk_tree(&pane.tree);
                }
            }
        }
        // About 2% of byte mutants of a JSON file still parse and validate.
        assert!(
            opened > 60,
            "{opened} mutants opened: the loop reaches the drawing code"
        );
    }
}
