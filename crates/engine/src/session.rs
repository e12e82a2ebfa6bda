//! The session format: what a session file holds, shared by the app (which adds its view
//! settings) and the CLI (`thinkscope-cli run --save-session`), and the checks every session
//! read goes through. Plain data: nothing here knows how it is drawn.
//!
//! A file is `{"version": 1, "settings": {"prompt": .., "panes": [PaneSettings..], ..},
//! "panes": [PaneSnapshot..]}`; the app's settings carry more fields, all optional, so a file the
//! CLI writes opens in the app.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::cost::CostSnapshot;
use crate::error::{EngineError, Result};
use crate::progress::{ProgressConfig, MAX_PROBES, MAX_PROBE_TOKENS};
use crate::strategy::{registry, KnobValue, Knobs, Params, RunConfig, Strategy};
use crate::tree::Tree;

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
    /// Thinking on or off for a thinking model whose template has the switch; `None` keeps
    /// the template's default.
    pub thinking: Option<bool>,
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
            thinking: None,
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
    pub fn strategy(&self) -> Result<Strategy> {
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
    pub fn set_knob(&mut self, key: &str, value: KnobValue) -> Result<()> {
        let mut s = self.strategy()?;
        s.set(key, value)?;
        s.validate()?;
        self.knobs.insert(s.name().to_owned(), s.params().clone());
        Ok(())
    }

    /// Set the knobs that play the common roles (presets): for every strategy, so switching
    /// strategies keeps the preset.
    pub fn apply_roles(&mut self, knobs: &Knobs) -> Result<()> {
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
    pub fn run_config(&self, prompt: &str) -> Result<RunConfig> {
        self.run_config_with(prompt, None)
    }

    /// The run configuration for `prompt` with its known answer, if the user gave one (probes
    /// are then scored against it instead of the run's consensus).
    pub fn run_config_with(&self, prompt: &str, expected: Option<&str>) -> Result<RunConfig> {
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
            thinking: self.thinking,
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

/// Current session format.
pub const SESSION_VERSION: u32 = 1;

/// Largest session file read (a session of four 64-sample runs is a few MB).
pub const MAX_SESSION_BYTES: u64 = 256 << 20;
/// Largest settings file read.
pub const MAX_SETTINGS_BYTES: u64 = 16 << 20;

/// Read a UTF-8 file of at most `max` bytes, refusing larger ones before reading them.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
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

impl PaneSettings {
    /// The pane settings that reproduce `config`'s run (the CLI's `--save-session`).
    pub fn from_config(config: &RunConfig) -> Self {
        let name = config.strategy.name().to_owned();
        let mut knobs = BTreeMap::new();
        knobs.insert(name.clone(), config.strategy.params().clone());
        Self {
            strategy: name,
            knobs,
            temperature: config.temperature,
            top_p: config.top_p,
            max_tokens: config.max_tokens,
            use_budget: config.budget_tokens.is_some(),
            budget: config
                .budget_tokens
                .unwrap_or(PaneSettings::default().budget),
            seed: config.seed,
            thinking: config.thinking,
            progress: config.progress.is_some(),
            progress_probes: config
                .progress
                .as_ref()
                .map_or(ProgressConfig::default().probes, |p| p.probes),
            probe_tokens: config
                .progress
                .as_ref()
                .map_or(ProgressConfig::default().probe_tokens, |p| p.probe_tokens),
        }
    }

    /// Clamp values a hand-edited file may have broken.
    pub fn sanitize(&mut self) {
        if registry().get(&self.strategy).is_none() {
            self.strategy = PaneSettings::default().strategy;
        }
        self.max_tokens = self.max_tokens.clamp(1, 4096);
        self.progress_probes = self.progress_probes.clamp(1, MAX_PROBES);
        self.probe_tokens = self.probe_tokens.clamp(1, MAX_PROBE_TOKENS);
        self.budget = self.budget.clamp(1, 1_000_000);
        if !(0.0..=5.0).contains(&self.temperature) {
            self.temperature = 0.7;
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            self.top_p = 0.95;
        }
    }
}

/// The settings every session file holds: the prompt and each pane's run settings. The app's
/// settings are these plus how it shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionSettings {
    /// The prompt.
    pub prompt: String,
    /// One to four panes.
    pub panes: Vec<PaneSettings>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            panes: vec![PaneSettings::default()],
        }
    }
}

/// A session file as the engine sees it (the app reads the same file with its own settings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionFile {
    /// Format version.
    pub version: u32,
    /// The prompt and the panes' run settings.
    pub settings: SessionSettings,
    /// Each pane's tree and cost.
    pub panes: Vec<PaneSnapshot>,
}

/// Check what every session read must: a known version, at most four panes, trees that can be
/// shown (ids, parents, cycles, sizes) and valid run settings. The message names the pane.
pub fn check(version: u32, panes: &[PaneSnapshot]) -> std::result::Result<(), String> {
    if version > SESSION_VERSION {
        return Err(format!(
            "it was saved by a newer thinkscope (format {version}, this one reads {SESSION_VERSION})"
        ));
    }
    if panes.len() > 4 {
        return Err(format!(
            "it has {} panes; a session has at most 4",
            panes.len()
        ));
    }
    for (i, pane) in panes.iter().enumerate() {
        let letter = ["A", "B", "C", "D"][i];
        if let Err(e) = pane.tree.validate() {
            return Err(format!("pane {letter}'s tree cannot be shown: {e}"));
        }
        if let Some(config) = &pane.config {
            if let Err(e) = config.validate() {
                return Err(format!("pane {letter}'s run settings are invalid: {e}"));
            }
        }
    }
    Ok(())
}

impl SessionFile {
    /// A one-pane session holding a finished run.
    pub fn from_run(config: &RunConfig, tree: Tree, cost: CostSnapshot) -> Self {
        Self {
            version: SESSION_VERSION,
            settings: SessionSettings {
                prompt: config.prompt.clone(),
                panes: vec![PaneSettings::from_config(config)],
            },
            panes: vec![PaneSnapshot {
                config: Some(config.clone()),
                tree,
                cost,
            }],
        }
    }

    /// Parse and check the text of a session file (see [`check`]).
    pub fn parse(text: &str) -> Result<Self> {
        let mut s: SessionFile = serde_json::from_str(text).map_err(|e| {
            EngineError::InvalidParameter(format!("it is not a thinkscope session file: {e}"))
        })?;
        check(s.version, &s.panes).map_err(EngineError::InvalidParameter)?;
        s.settings.panes.truncate(4);
        s.settings.panes.iter_mut().for_each(PaneSettings::sanitize);
        Ok(s)
    }

    /// Read and check a session file, bounded in size.
    pub fn read(path: &Path) -> Result<Self> {
        let text = read_bounded(path, MAX_SESSION_BYTES).map_err(|e| EngineError::io(path, e))?;
        Self::parse(&text)
    }

    /// Write the session atomically: a crash or a full disk leaves the previous file intact.
    pub fn write(&self, path: &Path) -> Result<()> {
        atomic::write_with(path, |f| {
            serde_json::to_writer(&mut *f, self).map_err(std::io::Error::other)?;
            f.flush()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Knobs;

    #[test]
    fn a_run_saved_as_a_session_keeps_its_settings() {
        let mut strategy = Strategy::from_name("self-consistency", &Knobs::default()).expect("sc");
        strategy.set("n", KnobValue::Int(3)).expect("n");
        let config = RunConfig {
            prompt: "2 + 2?".into(),
            format: Default::default(),
            strategy,
            temperature: 0.4,
            top_p: 0.9,
            seed: 7,
            max_tokens: 33,
            budget_tokens: Some(500),
            expected_answer: None,
            thinking: Some(false),
            progress: None,
        };
        let s = SessionFile::from_run(&config, Tree::default(), CostSnapshot::default());
        let pane = &s.settings.panes[0];
        assert_eq!(pane.knob("n"), Some(KnobValue::Int(3)));
        assert_eq!((pane.temperature, pane.max_tokens, pane.seed), (0.4, 33, 7));
        assert!(pane.use_budget && pane.budget == 500);
        let back = pane.run_config("2 + 2?").expect("a valid run");
        assert_eq!(back.strategy.params(), config.strategy.params());
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("s.json");
        s.write(&p).expect("write");
        assert_eq!(SessionFile::read(&p).expect("read"), s);
        let err = SessionFile::parse(r#"{"version": 9, "settings": {}, "panes": []}"#)
            .expect_err("newer");
        assert!(err.to_string().contains("newer thinkscope"), "{err}");
    }
}
