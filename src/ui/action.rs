//! What the app's panels ask for. Drawing code returns these; [`super::app::ThinkscopeApp::apply`]
//! carries them out after the frame's panels are drawn, so `app.rs` is a dispatcher and no
//! drawing function mutates the app behind another's back.

use std::path::PathBuf;

use crate::ui::connect::ServerRequest;
use crate::ui::files::FileJob;
use crate::ui::inspector::BranchRequest;

/// One thing the user asked for this frame.
#[must_use]
#[derive(Clone, Debug)]
pub enum Action {
    /// Run every pane on the prompt.
    RunAll,
    /// Hold every running pane.
    PauseAll,
    /// Let paused panes go on.
    ResumeAll,
    /// One forward pass for paused panes.
    StepAll,
    /// Cancel every run.
    StopAll,
    /// Show `n` panes.
    SetPanes(usize),
    /// The teaching preset.
    System1VsSystem2,
    /// Open another model file.
    OpenModel(PathBuf),
    /// Run the local model on another device (reloads it; the old one stays if that fails).
    SetDevice(thinkscope_engine::device::DevicePref),
    /// Show the "Connect to server" dialog.
    OpenConnect,
    /// Connect to an OpenAI-compatible server and run there.
    Connect(ServerRequest),
    /// Ask for a file in a dialog, then do `FileJob` with it.
    PickFile(FileJob),
    /// Continue a finished pane's tree with a token chosen by hand.
    Branch(usize, BranchRequest),
    /// Start a lab sweep.
    StartSweep,
    /// Focus a pane.
    Focus(usize),
    /// Dismiss a notice.
    Dismiss(usize),
    /// Close the window.
    Quit,
}
