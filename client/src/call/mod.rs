//! Calls in a conversation: the controller (devices, peer connection, relay state) and its
//! views, shared by the widget and the console.

mod call_buttons;
mod call_panel;
mod controller;
mod engine;
mod incoming;
mod machine;

pub use call_buttons::CallButtons;
pub use call_panel::CallPanel;
pub use controller::{use_call, CallCtl};
pub use incoming::IncomingCall;
