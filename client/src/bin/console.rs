//! The agent console's entry point (`/agent`): in the agent's own choice of language, else the
//! one the relay chose from the browser's (the page's `<html lang>`).
fn main() {
    let lang = escalera_client::browser::load(escalera_client::i18n::CHOICE_KEY)
        .or_else(|| {
            leptos::prelude::document()
                .document_element()
                .and_then(|e| e.get_attribute("lang"))
        })
        .unwrap_or_default();
    use escalera_protocol::i18n::{CONSOLE, WIDGET};
    escalera_client::i18n::start(&lang, &[WIDGET, CONSOLE]);
    leptos::mount::mount_to_body(escalera_client::console::Console);
}
