//! Escalera's browser app (Leptos, client-side rendered): mounts [`app::App`].
#![forbid(unsafe_code)]

mod app;
mod browser;
mod chat;
mod console;
mod relay;
mod widget;

fn main() {
    leptos::mount::mount_to_body(app::App);
}
