//! The text box and send button. Enter sends, Shift+Enter starts a new line.

use escalera_protocol::check_text;
use leptos::html;
use leptos::prelude::*;

/// The composer. `on_send` gets the text once it passes the protocol's rules.
#[component]
pub fn Composer(
    on_send: Callback<String>,
    #[prop(into)] disabled: Signal<bool>,
    #[prop(into)] placeholder: String,
) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let input = NodeRef::<html::Textarea>::new();
    let send = move || {
        let value = text.get_untracked();
        match check_text(&value) {
            Ok(()) => {
                on_send.run(value);
                text.set(String::new());
                error.set(None);
            }
            Err(_) if value.trim().is_empty() => {}
            Err(e) => error.set(Some(e)),
        }
        if let Some(el) = input.get_untracked() {
            let _ = el.focus();
        }
    };
    view! {
        <form
            class="composer"
            on:submit=move |ev| {
                ev.prevent_default();
                send();
            }
        >
            <textarea
                node_ref=input
                data-testid="chat-input"
                rows="1"
                aria-label="Message"
                placeholder=placeholder
                prop:value=move || text.get()
                prop:disabled=move || disabled.get()
                on:input=move |ev| text.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }
            ></textarea>
            <button
                type="submit"
                data-testid="chat-send"
                aria-label="Send"
                prop:disabled=move || disabled.get()
            >
                <svg viewBox="0 0 24 24" width="20" height="20" fill="currentColor" aria-hidden="true">
                    <path d="M3 20l18-8L3 4v6l12 2-12 2z"></path>
                </svg>
            </button>
        </form>
        <Show when=move || error.get().is_some()>
            <p class="composer-error" role="alert">{move || error.get().unwrap_or_default()}</p>
        </Show>
    }
}
