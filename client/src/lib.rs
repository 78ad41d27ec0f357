//! Escalera's browser side (Leptos, client-side rendered). Two entry points share this crate:
//! `escalera-widget` (the visitor's chat, in the iframe) and `escalera-console` (the agents'
//! app), built separately so the widget carries none of the console's code.
// Denied, not forbidden: the one split point (call/engine.rs) is an `extern` import the
// wasm_split macro writes, allowed there alone.
#![deny(unsafe_code)]

pub mod browser;
pub mod call;
pub mod chat;
pub mod console;
pub mod frames;
pub mod i18n;
pub mod link;
pub mod relay;
pub mod rtc;
pub mod widget;
