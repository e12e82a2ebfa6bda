//! The desktop app (egui/eframe). The engine knows nothing of this module.

pub mod app;
pub mod inspector;
pub mod lab_view;
pub mod meters;
pub mod state;
pub mod theme;
pub mod tree_view;

pub use app::{AppOptions, ThinkscopeApp};
