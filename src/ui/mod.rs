//! The desktop app (egui/eframe). The engine knows nothing of this module.

pub mod action;
pub mod app;
pub mod connect;
pub mod controls;
pub mod files;
pub mod inspector;
pub mod lab_view;
pub mod loader;
pub mod meters;
pub mod panels;
pub mod panes;
pub mod runs;
pub mod state;
pub mod theme;
pub mod tree_view;

pub use app::{AppOptions, ThinkscopeApp};
