//! The agent's choice of the console's language, kept in this browser; the page reloads in it.

use crate::browser;
use crate::i18n::{self, t};
use escalera_protocol::i18n::{languages, own_name};
use leptos::prelude::*;

/// A select of the languages Escalera speaks, each in its own name.
#[component]
pub fn LanguageSelect() -> impl IntoView {
    let change = move |ev: leptos::ev::Event| {
        let tag = event_target_value(&ev);
        if tag != i18n::lang() {
            browser::save(i18n::CHOICE_KEY, &tag);
            let _ = browser::window().location().reload();
        }
    };
    view! {
        <select class="language" data-testid="language" aria-label=t("Language") on:change=change>
            {languages()
                .map(|tag| view! {
                    <option value=tag selected=tag == i18n::lang() lang=tag>{own_name(tag)}</option>
                })
                .collect_view()}
        </select>
    }
}
