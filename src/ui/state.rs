//! What survives a restart (settings) and what a session file holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use thinkscope_engine::atomic;
use thinkscope_engine::cost::CostSnapshot;
use thinkscope_engine::device::DevicePref;
use thinkscope_engine::progress::{ProgressConfig, MAX_PROBES, MAX_PROBE_TOKENS};
use thinkscope_engine::strategy::{registry, KnobValue, Knobs, Params, RunConfig, Strategy};
use thinkscope_engine::tree::Tree;

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

/// Settings of one side-by-side pane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PaneSettings {
    /// Strategy registry name.
    pub strategy: String,
    /// Knob values by strategy name: each strategy keeps its own settings while another one is
    /// chosen. Knobs left out take the registry's defaults.
    pub knobs: BTreeMap<String, Params>,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus threshold.
    pub top_p: f32,
    /// Most tokens per branch.
    pub max_tokens: usize,
    /// Whether the run has a total token budget.
    pub use_budget: bool,
    /// The total token budget.
    pub budget: usize,
    /// Random seed.
    pub seed: u64,
    /// Probe every step node for MRT-style progress.
    pub progress: bool,
    /// K: forced-answer probes per node.
    pub progress_probes: usize,
    /// Most tokens in one probe's answer.
    pub probe_tokens: usize,
}

impl Default for PaneSettings {
    fn default() -> Self {
        let mut s = Self {
            strategy: "self-consistency".into(),
            knobs: BTreeMap::new(),
            temperature: 0.7,
            top_p: 0.95,
            max_tokens: 192,
            use_budget: false,
            budget: 2048,
            seed: 0,
            progress: false,
            progress_probes: ProgressConfig::default().probes,
            probe_tokens: ProgressConfig::default().probe_tokens,
        };
        // The app's usual starting point: four samples, three steps deep.
        let _ = s.apply_roles(&Knobs {
            samples: Some(4),
            depth: Some(3),
            thinking: None,
        });
        s
    }
}

impl PaneSettings {
    /// Settings for a strategy with its usual defaults.
    pub fn for_strategy(name: &str) -> Self {
        Self {
            strategy: name.into(),
            ..Self::default()
        }
    }

    /// The chosen strategy with this pane's knob values. A value the registry no longer accepts
    /// (a hand-edited file, an older version) falls back to its default.
    pub fn strategy(&self) -> thinkscope_engine::Result<Strategy> {
        let mut s = Strategy::named(&self.strategy)?;
        if let Some(params) = self.knobs.get(s.name()) {
            for (key, value) in &params.0 {
                let _ = s.set(key, value.clone());
            }
        }
        if s.validate().is_err() {
            s = Strategy::named(&self.strategy)?;
        }
        Ok(s)
    }

    /// The current value of one of the chosen strategy's knobs.
    pub fn knob(&self, key: &str) -> Option<KnobValue> {
        self.strategy().ok()?.params().0.get(key).cloned()
    }

    /// Set one of the chosen strategy's knobs (checked against its range).
    pub fn set_knob(&mut self, key: &str, value: KnobValue) -> thinkscope_engine::Result<()> {
        let mut s = self.strategy()?;
        s.set(key, value)?;
        s.validate()?;
        self.knobs.insert(s.name().to_owned(), s.params().clone());
        Ok(())
    }

    /// Set the knobs that play the common roles (presets): for every strategy, so switching
    /// strategies keeps the preset.
    pub fn apply_roles(&mut self, knobs: &Knobs) -> thinkscope_engine::Result<()> {
        let chosen = self.strategy.clone();
        for name in registry().names() {
            self.strategy = name.to_owned();
            let mut s = self.strategy()?;
            if s.apply_roles(knobs).is_ok() && s.validate().is_ok() {
                self.knobs.insert(name.to_owned(), s.params().clone());
            }
        }
        self.strategy = chosen;
        Ok(())
    }

    /// The run configuration these settings describe.
    pub fn run_config(&self, prompt: &str) -> thinkscope_engine::Result<RunConfig> {
        self.run_config_with(prompt, None)
    }

    /// The run configuration for `prompt` with its known answer, if the user gave one (probes
    /// are then scored against it instead of the run's consensus).
    pub fn run_config_with(
        &self,
        prompt: &str,
        expected: Option<&str>,
    ) -> thinkscope_engine::Result<RunConfig> {
        let config = RunConfig {
            prompt: prompt.to_owned(),
            format: Default::default(),
            strategy: self.strategy()?,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            max_tokens: self.max_tokens,
            budget_tokens: self.use_budget.then_some(self.budget),
            expected_answer: expected
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
            progress: self.progress.then(|| ProgressConfig {
                probes: self.progress_probes,
                probe_tokens: self.probe_tokens,
                ..ProgressConfig::default()
            }),
        };
        config.validate()?;
        Ok(config)
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
        for p in &mut self.panes {
            if registry().get(&p.strategy).is_none() {
                p.strategy = PaneSettings::default().strategy;
            }
            p.max_tokens = p.max_tokens.clamp(1, 4096);
            p.progress_probes = p.progress_probes.clamp(1, MAX_PROBES);
            p.probe_tokens = p.probe_tokens.clamp(1, MAX_PROBE_TOKENS);
            p.budget = p.budget.clamp(1, 1_000_000);
            if !(0.0..=5.0).contains(&p.temperature) {
                p.temperature = 0.7;
            }
            if !(p.top_p > 0.0 && p.top_p <= 1.0) {
                p.top_p = 0.95;
            }
        }
    }
}

/// One pane's part of a session file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PaneSnapshot {
    /// The run's configuration, if it ran.
    pub config: Option<RunConfig>,
    /// The tree.
    pub tree: Tree,
    /// Its cost.
    pub cost: CostSnapshot,
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

/// Current session format.
pub const SESSION_VERSION: u32 = 1;

/// Largest session file read (a session of four 64-sample runs is a few MB).
pub const MAX_SESSION_BYTES: u64 = 256 << 20;
/// Largest settings file read.
const MAX_SETTINGS_BYTES: u64 = 16 << 20;

/// Read a UTF-8 file of at most `max` bytes, refusing larger ones before reading them.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(std::io::Error::other(format!(
            "the file is {len} bytes, more than {max}"
        )));
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "the file grew past {max} bytes"
        )));
    }
    Ok(text)
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

    /// Parse and check the text of a session file (see [`Self::read`]).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut s: SessionFile =
            serde_json::from_str(text).context("it is not a thinkscope session file")?;
        if s.version > SESSION_VERSION {
            anyhow::bail!(
                "it was saved by a newer thinkscope (format {}, this one reads {SESSION_VERSION})",
                s.version
            );
        }
        if s.panes.len() > 4 {
            anyhow::bail!("it has {} panes; a session has at most 4", s.panes.len());
        }
        for (i, pane) in s.panes.iter().enumerate() {
            let letter = ["A", "B", "C", "D"][i];
            pane.tree
                .validate()
                .with_context(|| format!("pane {letter}'s tree cannot be shown"))?;
            if let Some(config) = &pane.config {
                config
                    .validate()
                    .with_context(|| format!("pane {letter}'s run settings are invalid"))?;
            }
        }
        s.settings.sanitize();
        Ok(s)
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
