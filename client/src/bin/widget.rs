//! The visitor widget's entry point (`/embed`).
fn main() {
    leptos::mount::mount_to_body(escalera_client::widget::Widget);
}
