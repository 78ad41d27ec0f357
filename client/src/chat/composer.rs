//! The text box and send button. Enter sends, Shift+Enter starts a new line.

use crate::i18n::t;
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

/// Something the composer offers to insert for what is typed (a canned reply for `/ref`).
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    /// What the list shows (the shortcut).
    pub label: String,
    /// What goes into the box.
    pub text: String,
}

/// The composer. `on_send` gets the text once it passes the protocol's rules; with `on_files`
/// there is an attach button too; with `suggest`, what it returns for the text is listed above
/// the box (Up/Down pick, Enter or a click inserts, Esc dismisses).
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
    /// What to offer for the text typed.
    #[prop(optional)]
    suggest: Option<Callback<String, Vec<Suggestion>>>,
    /// Whether files may be attached (the site may not take them); yes when absent.
    #[prop(optional)]
    files_allowed: Option<Signal<bool>>,
) -> impl IntoView {
    let files_allowed = move || files_allowed.is_none_or(|f| f.get());
    let Draft {
        text,
        set: set_text,
    } = draft.unwrap_or_default();
    let error = RwSignal::new(None::<&'static str>);
    let input = NodeRef::<html::Textarea>::new();
    // Suggestions for the text, the one picked, and whether Esc put them away.
    let dismissed = RwSignal::new(false);
    let picked = RwSignal::new(0usize);
    let options = Memo::new(move |_| match (suggest, dismissed.get()) {
        (Some(suggest), false) => suggest.run(text.get()),
        _ => Vec::new(),
    });
    let insert = move |s: Suggestion| {
        set_text.run(s.text);
        dismissed.set(true);
        if let Some(el) = input.get_untracked() {
            let _ = el.focus();
        }
    };
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
                <Show when=files_allowed>
                <label class="attach" title=t("Attach a file") aria-label=t("Attach a file")>
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
                </Show>
            })}
            <Show when=move || options.with(|o| !o.is_empty())>
                <ul class="suggestions" role="listbox" aria-label=t("Canned replies")>
                    {move || {
                        options
                            .get()
                            .into_iter()
                            .enumerate()
                            .map(|(i, s)| {
                                let label = s.label.clone();
                                let preview = s.text.clone();
                                view! {
                                    <li role="option" aria-selected=move || (picked.get() == i).to_string()>
                                        <button
                                            type="button"
                                            data-testid="canned-option"
                                            class:on=move || picked.get() == i
                                            on:mousedown=|ev| ev.prevent_default()
                                            on:click=move |_| insert(s.clone())
                                        >
                                            <strong>{label}</strong>
                                            <span>{preview}</span>
                                        </button>
                                    </li>
                                }
                            })
                            .collect_view()
                    }}
                </ul>
            </Show>
            <textarea
                node_ref=input
                data-testid="chat-input"
                rows="1"
                aria-label=t("Message")
                placeholder=placeholder
                prop:value=move || text.get()
                prop:disabled=move || disabled.get()
                on:input=move |ev| {
                    set_text.run(event_target_value(&ev));
                    dismissed.set(false);
                    picked.set(0);
                    if let Some(typing) = on_typing {
                        typing.run(());
                    }
                }
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    let n = options.with_untracked(Vec::len);
                    if n > 0 {
                        match ev.key().as_str() {
                            "ArrowDown" => {
                                ev.prevent_default();
                                return picked.update(|p| *p = (*p + 1) % n);
                            }
                            "ArrowUp" => {
                                ev.prevent_default();
                                return picked.update(|p| *p = (*p + n - 1) % n);
                            }
                            "Escape" => {
                                ev.prevent_default();
                                ev.stop_propagation();
                                return dismissed.set(true);
                            }
                            "Enter" | "Tab" if !ev.shift_key() => {
                                ev.prevent_default();
                                let i = picked.get_untracked().min(n - 1);
                                if let Some(s) = options.with_untracked(|o| o.get(i).cloned()) {
                                    insert(s);
                                }
                                return;
                            }
                            _ => {}
                        }
                    }
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }
            ></textarea>
            <button
                type="submit"
                data-testid="chat-send"
                aria-label=t("Send")
                prop:disabled=move || disabled.get()
            >
                <svg viewBox="0 0 24 24" width="20" height="20" fill="currentColor" aria-hidden="true">
                    <path d="M3 20l18-8L3 4v6l12 2-12 2z"></path>
                </svg>
            </button>
        </form>
        <Show when=move || error.get().is_some()>
            <p class="composer-error" role="alert">{move || error.get().map(t)}</p>
        </Show>
    }
}
