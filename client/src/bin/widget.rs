//! The visitor widget's entry point (`/embed`). The relay wrote the language it chose into the
//! page's `<html lang>`.
fn main() {
    let lang = leptos::prelude::document()
        .document_element()
        .map(|e| e.get_attribute("lang").unwrap_or_default())
        .unwrap_or_default();
    escalera_client::i18n::start(&lang, &[escalera_protocol::i18n::WIDGET]);
    leptos::prelude::document().set_title(escalera_client::i18n::t("Chat"));
    leptos::mount::mount_to_body(escalera_client::widget::Widget);
}
