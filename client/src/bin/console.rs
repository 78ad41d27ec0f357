//! The agent console's entry point (`/agent`).
fn main() {
    leptos::mount::mount_to_body(escalera_client::console::Console);
}
