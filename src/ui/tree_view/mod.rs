//! The tree canvas: pan, zoom, fit, collapse, colour by a measure, hover and click.

pub mod draw;
pub mod layout;

pub use draw::{CanvasOutput, TreeView};
