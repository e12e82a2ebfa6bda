//! What survives a restart (settings) and what a session file holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use thinkscope_engine::cost::CostSnapshot;
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
}

impl ColorBy {
    /// All choices, for menus.
    pub const ALL: [ColorBy; 4] = [Self::Logprob, Self::Entropy, Self::Score, Self::VoteGroup];

    /// Menu label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Logprob => "Log-probability",
            Self::Entropy => "Entropy",
            Self::Score => "Score",
            Self::VoteGroup => "Vote group",
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
        let config = RunConfig {
            prompt: prompt.to_owned(),
            format: Default::default(),
            strategy: self.strategy()?,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            max_tokens: self.max_tokens,
            budget_tokens: self.use_budget.then_some(self.budget),
            expected_answer: None,
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
            panes: vec![PaneSettings::default()],
            color_by: ColorBy::default(),
            model_path: None,
            follow: true,
            teaching_note: false,
            lab: Default::default(),
            view: View::Explore,
            server_url: String::new(),
            server_model: String::new(),
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
        match std::fs::read_to_string(&path) {
            Err(_) => (Self::default(), None),
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

    /// Write settings to `dir` (atomically: a temporary file, then a rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("settings.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, dir.join("settings.json"))
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

impl SessionFile {
    /// Read and check a session file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut s: SessionFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a thinkscope session file", path.display()))?;
        if s.version > SESSION_VERSION {
            anyhow::bail!(
                "{} was saved by a newer thinkscope (format {}, this one reads {SESSION_VERSION})",
                path.display(),
                s.version
            );
        }
        s.settings.sanitize();
        s.panes.truncate(4);
        Ok(s)
    }

    /// Write the session.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let text = serde_json::to_string(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}
