//! The text box and send button. Enter sends, Shift+Enter starts a new line.

use escalera_protocol::check_text;
use leptos::html;
use leptos::prelude::*;

/// The files of a file input or a drop.
pub fn files_of(list: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    let Some(list) = list else { return vec![] };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// Where the composer's unsent text lives. By default the composer keeps its own; the console
/// gives it one per conversation, so a reply typed for one visitor never shows up (and is never
/// sent) in another's conversation.
#[derive(Clone, Copy)]
pub struct Draft {
    /// The text to show.
    pub text: Signal<String>,
    /// Called with the new text on every edit, and with "" once it is sent.
    pub set: Callback<String>,
}

impl Draft {
    /// A draft held in one signal.
    pub fn new() -> Self {
        let text = RwSignal::new(String::new());
        Self {
            text: text.into(),
            set: Callback::new(move |t| text.set(t)),
        }
    }
}

impl Default for Draft {
    fn default() -> Self {
        Self::new()
    }
}

/// The composer. `on_send` gets the text once it passes the protocol's rules; with `on_files`
/// there is an attach button too.
#[component]
pub fn Composer(
    on_send: Callback<String>,
    #[prop(into)] disabled: Signal<bool>,
    #[prop(into)] placeholder: String,
    #[prop(optional)] on_files: Option<Callback<Vec<web_sys::File>>>,
    #[prop(optional)] draft: Option<Draft>,
    /// Called on every edit (the caller throttles what it sends).
    #[prop(optional)]
    on_typing: Option<Callback<()>>,
) -> impl IntoView {
    let Draft {
        text,
        set: set_text,
    } = draft.unwrap_or_default();
    let error = RwSignal::new(None::<&'static str>);
    let input = NodeRef::<html::Textarea>::new();
    let send = move || {
        let value = text.get_untracked();
        match check_text(&value) {
            Ok(()) => {
                on_send.run(value);
                set_text.run(String::new());
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
            {on_files.map(|on_files| view! {
                <label class="attach" title="Attach a file" aria-label="Attach a file">
                    <input
                        type="file"
                        multiple
                        data-testid="file-input"
                        prop:disabled=move || disabled.get()
                        on:change=move |ev| {
                            let el: web_sys::HtmlInputElement = event_target(&ev);
                            on_files.run(files_of(el.files()));
                            el.set_value("");
                        }
                    />
                    <svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2" aria-hidden="true">
                        <path d="M21 12l-8.5 8.5a5 5 0 0 1-7-7L14 5a3.5 3.5 0 0 1 5 5l-8.5 8.5a2 2 0 0 1-3-3L15 8"></path>
                    </svg>
                </label>
            })}
            <textarea
                node_ref=input
                data-testid="chat-input"
                rows="1"
                aria-label="Message"
                placeholder=placeholder
                prop:value=move || text.get()
                prop:disabled=move || disabled.get()
                on:input=move |ev| {
                    set_text.run(event_target_value(&ev));
                    if let Some(typing) = on_typing {
                        typing.run(());
                    }
                }
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
