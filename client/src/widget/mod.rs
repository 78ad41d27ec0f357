//! The visitor's widget, shown in the iframe that `widget.js` opens on the host page.

mod host;
mod root;
mod standing;

pub use root::Widget;
