//! Nothing lost: the open session is autosaved to the config folder every few seconds while it
//! changes and whenever a run finishes; a crash marker tells the next start whether the app
//! exited cleanly, and if it did not, the autosave is offered back ("Restore previous
//! session?") instead of being silently replaced or dropped.
//!
//! Files in the config folder:
//! - `autosave.json`: the latest autosave (a session file, written atomically by a thread of its
//!   own so the UI never waits on a disk).
//! - `running`: present while an instance runs; removed by a clean exit. Found at start next to
//!   an autosave, it means the last run crashed or was killed.
//! - `autosave-discarded.json`: an autosave the user chose not to restore (kept, not deleted).
//! - `autosave-unreadable.json`: an autosave that could not be read, set aside with a message.
//! - `before-open.json`: the work a confirmed "open session" replaced.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use eframe::egui::{self, RichText};

use crate::ui::action::Action;
use crate::ui::state::{SessionFile, Settings};
use thinkscope_engine::atomic;

/// The autosave's file name in the config folder.
pub const AUTOSAVE: &str = "autosave.json";
/// The crash marker's file name.
pub const MARKER: &str = "running";
/// Where a discarded autosave goes.
pub const DISCARDED: &str = "autosave-discarded.json";
/// Where an unreadable autosave goes.
pub const UNREADABLE: &str = "autosave-unreadable.json";
/// Where the work replaced by opening a session goes.
pub const BEFORE_OPEN: &str = "before-open.json";
/// Least time between two autosaves while the session keeps changing.
pub const INTERVAL: Duration = Duration::from_secs(3);

/// What the last run left behind, found as the app starts.
#[derive(Debug)]
pub enum Leftover {
    /// Nothing to offer (a clean exit, a first start, or an autosave without trees).
    None,
    /// The last run did not exit cleanly; its autosave holds work.
    Crashed(Box<SessionFile>),
    /// The autosave could not be read; it was set aside (the message says where).
    Unreadable(String),
}

/// Look for a crashed run's autosave in `dir`, then mark this run as running.
pub fn recover(dir: &Path) -> (Leftover, Option<String>) {
    let marker = dir.join(MARKER);
    let autosave = dir.join(AUTOSAVE);
    let leftover = if marker.exists() && autosave.exists() {
        match SessionFile::read(&autosave) {
            Ok(s) if s.panes.iter().any(|p| !p.tree.nodes.is_empty()) => {
                Leftover::Crashed(Box::new(s))
            }
            Ok(_) => Leftover::None,
            Err(e) => {
                let aside = dir.join(UNREADABLE);
                let moved = std::fs::rename(&autosave, &aside);
                Leftover::Unreadable(match moved {
                    Ok(()) => format!(
                        "the previous session's autosave could not be restored and was kept as {} ({e:#})",
                        aside.display()
                    ),
                    Err(m) => format!(
                        "the previous session's autosave could not be restored ({e:#}); moving it aside failed: {m}"
                    ),
                })
            }
        }
    } else {
        Leftover::None
    };
    let warning = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            atomic::write(&marker, format!("pid {}\n", std::process::id()).as_bytes())
                .map_err(|e| e.to_string())
        })
        .err()
        .map(|e| {
            format!(
                "could not write the crash marker ({e}): {}",
                marker.display()
            )
        });
    (leftover, warning)
}

/// The autosaver: a writer thread fed the latest session, and what it last saved.
pub struct Autosave {
    dir: PathBuf,
    tx: Option<Sender<SessionFile>>,
    results: Receiver<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
    last: Option<Instant>,
    saved_edits: u64,
    saved_settings: Option<Settings>,
    error: Option<String>,
    /// Autosaving waits while a crashed session is offered back, so the offer's file stays.
    pub suspended: bool,
}

impl Autosave {
    /// An autosaver writing to `dir/autosave.json`.
    pub fn new(dir: PathBuf) -> Self {
        let (tx, rx) = bounded::<SessionFile>(1);
        let (res_tx, results) = bounded(4);
        let path = dir.join(AUTOSAVE);
        let thread = std::thread::Builder::new()
            .name("thinkscope-autosave".into())
            .spawn(move || {
                for session in rx {
                    let result = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
                        .map_err(|e| format!("{e}"))
                        .and_then(|()| session.write(&path).map_err(|e| format!("{e:#}")));
                    let _ = res_tx.try_send(result);
                }
            })
            .ok();
        Self {
            dir,
            tx: thread.is_some().then_some(tx),
            results,
            thread,
            last: None,
            saved_edits: 0,
            saved_settings: None,
            error: None,
            suspended: false,
        }
    }

    /// Whether `edits` and `settings` differ from what was last autosaved.
    pub fn dirty(&self, edits: u64, settings: &Settings) -> bool {
        edits != self.saved_edits || self.saved_settings.as_ref() != Some(settings)
    }

    /// Autosave if the session changed and the interval has passed (or `now`). Returns an error
    /// message to show when a save failed (once per distinct error).
    pub fn tick(
        &mut self,
        edits: u64,
        settings: &Settings,
        now: bool,
        session: impl FnOnce() -> SessionFile,
    ) -> Option<String> {
        let mut report = None;
        while let Ok(result) = self.results.try_recv() {
            report = self.note(result).or(report);
        }
        if self.suspended || !self.dirty(edits, settings) {
            return report;
        }
        if !now && self.last.is_some_and(|t| t.elapsed() < INTERVAL) {
            return report;
        }
        let Some(tx) = &self.tx else {
            return report;
        };
        if tx.is_full() {
            return report; // the writer is busy; try again next frame
        }
        match tx.try_send(session()) {
            Ok(()) => {
                self.last = Some(Instant::now());
                self.saved_edits = edits;
                self.saved_settings = Some(settings.clone());
            }
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
        report
    }

    /// Record the writer's answer; a message for an error not reported before.
    fn note(&mut self, result: Result<(), String>) -> Option<String> {
        match result {
            Ok(()) => {
                self.error = None;
                None
            }
            Err(e) => {
                let report = (self.error.as_ref() != Some(&e))
                    .then(|| format!("autosave failed (your work is still open): {e}"));
                self.error = Some(e);
                // Not saved: the next interval tries again.
                self.saved_settings = None;
                report
            }
        }
    }

    /// A clean exit: wait for the writer, save what changed since, remove the crash marker.
    /// While a crashed session is still offered, its autosave and the marker stay.
    pub fn shutdown(
        &mut self,
        edits: u64,
        settings: &Settings,
        session: impl FnOnce() -> SessionFile,
    ) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.suspended {
            return;
        }
        let mut ok = true;
        if self.dirty(edits, settings) {
            let path = self.dir.join(AUTOSAVE);
            if let Err(e) = session().write(&path) {
                tracing::warn!("the last autosave failed: {e:#}");
                ok = false;
            }
        }
        if ok {
            let _ = std::fs::remove_file(self.dir.join(MARKER));
        }
    }

    /// Set the offered autosave aside (the user chose "Discard"): it is kept, renamed.
    pub fn discard(&mut self) -> std::io::Result<PathBuf> {
        self.suspended = false;
        let to = self.dir.join(DISCARDED);
        std::fs::rename(self.dir.join(AUTOSAVE), &to)?;
        Ok(to)
    }

    /// The config folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The "Restore previous session?" dialog.
pub fn restore_ui(ctx: &egui::Context, offer: &SessionFile) -> Option<Action> {
    let mut out = None;
    egui::Modal::new(egui::Id::unique("thinkscope-restore")).show(ctx, |ui| {
        ui.set_max_width(420.0);
        ui.heading("Restore previous session?");
        let trees = offer
            .panes
            .iter()
            .filter(|p| !p.tree.nodes.is_empty())
            .count();
        let nodes: usize = offer.panes.iter().map(|p| p.tree.nodes.len()).sum();
        ui.label(format!(
            "thinkscope did not exit cleanly last time. Its autosave holds {trees} tree(s), \
             {nodes} node(s), for the prompt:"
        ));
        ui.label(RichText::new(short(&offer.settings.prompt)).italics());
        ui.label(
            RichText::new("Discard keeps the autosave as autosave-discarded.json.")
                .small()
                .weak(),
        );
        ui.horizontal(|ui| {
            if ui.button("Restore").clicked() {
                out = Some(Action::RestoreSession);
            }
            if ui.button("Discard").clicked() {
                out = Some(Action::DiscardRestore);
            }
        });
    });
    out
}

/// The "replace unsaved work?" dialog shown before a session file replaces the open one.
pub fn confirm_open_ui(ctx: &egui::Context, path: &Path, keep: Option<&Path>) -> Option<Action> {
    let mut out = None;
    egui::Modal::new(egui::Id::unique("thinkscope-confirm-open")).show(ctx, |ui| {
        ui.set_max_width(420.0);
        ui.heading("Replace the open session?");
        ui.label(format!(
            "The trees shown have not been saved. Opening {} replaces them.",
            path.display()
        ));
        if let Some(k) = keep {
            ui.label(
                RichText::new(format!("A copy of them is kept in {}.", k.display()))
                    .small()
                    .weak(),
            );
        }
        ui.horizontal(|ui| {
            if ui.button("Replace").clicked() {
                out = Some(Action::ConfirmOpen);
            }
            if ui.button("Cancel").clicked() {
                out = Some(Action::CancelOpen);
            }
        });
    });
    out
}

fn short(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    match one_line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::state::{PaneSnapshot, SESSION_VERSION};
    use thinkscope_engine::tree::{Node, NodeId, NodeKind, NodeStatus, Scores, Tree};

    fn with_tree() -> SessionFile {
        let tree = Tree {
            nodes: vec![Node {
                id: NodeId(0),
                parent: None,
                children: Vec::new(),
                kind: NodeKind::Prompt,
                label: "prompt".into(),
                fork_at: None,
                text: "2 + 2?".into(),
                tokens: Vec::new(),
                status: NodeStatus::Finished,
                scores: Scores::default(),
                answer: None,
                segments: Vec::new(),
                progress: None,
            }],
            ..Tree::default()
        };
        SessionFile {
            version: SESSION_VERSION,
            settings: Settings::default(),
            panes: vec![PaneSnapshot {
                tree,
                ..PaneSnapshot::default()
            }],
        }
    }

    fn wait_written(a: &mut Autosave, edits: u64, s: &Settings) {
        // The writer thread answers on its channel; a clean shutdown joins it.
        a.shutdown(edits, s, with_tree);
    }

    #[test]
    fn a_clean_exit_leaves_nothing_to_offer() {
        let d = tempfile::tempdir().expect("tempdir");
        let (left, warn) = recover(d.path());
        assert!(matches!(left, Leftover::None));
        assert!(warn.is_none());
        assert!(d.path().join(MARKER).exists(), "running marks the run");
        let mut a = Autosave::new(d.path().to_owned());
        let s = Settings::default();
        assert!(a.tick(1, &s, true, with_tree).is_none());
        wait_written(&mut a, 1, &s);
        assert!(!d.path().join(MARKER).exists(), "a clean exit clears it");
        assert_eq!(
            SessionFile::read(&d.path().join(AUTOSAVE)).expect("autosave"),
            with_tree()
        );
        let (left, _) = recover(d.path());
        assert!(matches!(left, Leftover::None), "{left:?}");
    }

    #[test]
    fn a_crash_offers_the_autosave_and_discard_keeps_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let _ = recover(d.path());
        with_tree().write(&d.path().join(AUTOSAVE)).expect("write");
        // No clean exit: the marker stays, as after a kill -9.
        let (left, _) = recover(d.path());
        let Leftover::Crashed(s) = left else {
            panic!("expected an offer, got {left:?}");
        };
        assert_eq!(*s, with_tree());
        let mut a = Autosave::new(d.path().to_owned());
        a.suspended = true;
        // While the offer is open nothing overwrites the autosave, and a clean exit keeps both
        // the autosave and the marker, so the offer comes back next time.
        let other = Settings {
            prompt: "changed".into(),
            ..Settings::default()
        };
        assert!(a
            .tick(5, &other, true, || panic!("not while suspended"))
            .is_none());
        a.shutdown(5, &other, || panic!("not while suspended"));
        assert!(d.path().join(MARKER).exists());
        assert!(matches!(recover(d.path()).0, Leftover::Crashed(_)));
        let mut a = Autosave::new(d.path().to_owned());
        let kept = a.discard().expect("discard");
        assert_eq!(SessionFile::read(&kept).expect("kept"), with_tree());
        assert!(!d.path().join(AUTOSAVE).exists());
    }

    #[test]
    fn an_unreadable_autosave_is_set_aside_with_a_message() {
        let d = tempfile::tempdir().expect("tempdir");
        let _ = recover(d.path());
        std::fs::write(d.path().join(AUTOSAVE), "{ half a sess").expect("write");
        let (left, _) = recover(d.path());
        let Leftover::Unreadable(msg) = left else {
            panic!("expected a message, got {left:?}");
        };
        assert!(msg.contains("not a thinkscope session"), "{msg}");
        assert!(msg.contains(UNREADABLE), "{msg}");
        assert_eq!(
            std::fs::read_to_string(d.path().join(UNREADABLE)).expect("kept"),
            "{ half a sess"
        );
    }

    #[test]
    fn a_failing_disk_is_reported_once_and_retried() {
        let d = tempfile::tempdir().expect("tempdir");
        // The config "folder" is a file: every write fails.
        let blocked = d.path().join("cfg");
        std::fs::write(&blocked, "a file, not a folder").expect("write");
        let mut a = Autosave::new(blocked);
        let s = Settings::default();
        let mut reports = Vec::new();
        for edits in 1..=3 {
            let _ = a.tick(edits, &s, true, with_tree);
            // Wait for the writer's answer to this save.
            let result = a
                .results
                .recv_timeout(Duration::from_secs(30))
                .expect("answer");
            assert!(result.is_err());
            reports.extend(a.note(result));
        }
        assert_eq!(
            reports.len(),
            1,
            "one message for a repeated error: {reports:?}"
        );
        assert!(reports[0].contains("autosave failed"), "{reports:?}");
    }
}
