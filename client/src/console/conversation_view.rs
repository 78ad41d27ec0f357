//! The open conversation: its history, who has it, take / reply / transfer / close.

use escalera_protocol::{Author, ClientMsg, ConversationStatus};
use leptos::prelude::*;

use super::root::Desk;
use super::transfer::Transfer;
use super::visitor::VisitorPanel;
use crate::call::CallButtons;
use crate::chat::{Composer, Suggestion, Thread, UploadList};
use crate::i18n::{t, tf};

/// Whose the open conversation is, from this agent's point of view.
#[derive(Clone, Debug, PartialEq)]
enum Holder {
    Waiting,
    Me,
    Other(String),
    Closed,
}

/// The right pane.
#[component]
pub fn ConversationView(desk: Desk) -> impl IntoView {
    let summary = move || {
        let id = desk.selected.get()?;
        desk.inbox.with(|i| i.summary(&id).cloned())
    };
    let holder = Memo::new(move |_| {
        let s = summary()?;
        let me = desk.agent.with(|a| a.as_ref().map(|a| a.id.clone()));
        Some(match (s.status, s.agent) {
            (ConversationStatus::Closed, _) => Holder::Closed,
            (ConversationStatus::Waiting, _) | (_, None) => Holder::Waiting,
            (_, Some(a)) if Some(&a.id) == me.as_ref() => Holder::Me,
            (_, Some(a)) => Holder::Other(a.name),
        })
    });
    let thread = Signal::derive(move || {
        let Some(id) = desk.selected.get() else {
            return Thread::default();
        };
        desk.link
            .threads
            .with(|t| t.get(&id).cloned().unwrap_or_default())
    });
    let take = move |_| {
        if let Some(id) = desk.selected.get_untracked() {
            desk.link.socket.send(&ClientMsg::Take { conversation: id });
        }
    };
    let close = move |_| {
        if let Some(id) = desk.selected.get_untracked() {
            desk.link
                .socket
                .send(&ClientMsg::Close { conversation: id });
        }
    };
    // The next message is a private note (for agents only) while this is on.
    let note_mode = RwSignal::new(false);
    let on_send = Callback::new(move |text: String| {
        let Some(id) = desk.selected.get_untracked() else {
            return;
        };
        // Offline it waits in the outbox and goes with the next join.
        if note_mode.get_untracked() {
            desk.link.note(&id, text);
            note_mode.set(false);
        } else {
            desk.link.chat(&id, text);
            desk.typing.sent();
        }
    });
    // Export: the transcript as text or JSON, notes only when asked.
    let exporting = RwSignal::new(false);
    let with_notes = RwSignal::new(false);
    let export_url = move |format: &str| {
        let id = desk.selected.get().map(|c| c.0).unwrap_or_default();
        let notes = if with_notes.get() { "&notes=true" } else { "" };
        format!("/api/conversations/{id}/export?format={format}{notes}")
    };
    // "/ref" offers the site's canned replies, filled in for this visitor and this agent.
    let suggest = Callback::new(move |typed: String| {
        let Some(s) = summary() else {
            return Vec::new();
        };
        let agent = desk
            .agent
            .with_untracked(|a| a.as_ref().map(|a| a.name.clone()))
            .unwrap_or_default();
        desk.canned
            .matches(&s.site, &typed)
            .into_iter()
            .map(|r| Suggestion {
                label: format!("/{}", r.shortcut),
                text: super::canned::fill(&r.text, &s.visitor_label, &agent),
            })
            .collect()
    });
    // The desk's own notices (e.g. "already taken") and the call's ("No answer.").
    let notice = move || desk.notice.get().or_else(|| desk.call.notice.get());
    let files_allowed = Signal::derive(move || summary().is_none_or(|s| s.features.files));
    let on_files = Callback::new(move |files: Vec<web_sys::File>| {
        let Some(id) = desk.selected.get_untracked() else {
            return;
        };
        if !files_allowed.get_untracked() {
            return desk
                .notice
                .set(Some(t("This site does not take files.").into()));
        }
        for f in files {
            desk.uploader.send(&id, &f, &f.name());
        }
    });
    view! {
        <section class="thread" aria-label=t("Conversation")
            on:dragover=move |ev| ev.prevent_default()
            on:drop=move |ev| {
                ev.prevent_default();
                let files = ev.data_transfer().and_then(|d| d.files());
                on_files.run(crate::chat::files_of(files));
            }
        >
            <Show
                when=move || summary().is_some()
                fallback=|| view! { <p class="empty center">{t("Pick a conversation on the left.")}</p> }
            >
                <header class="thread-head">
                    <button class="link back" on:click=move |_| desk.selected.set(None)>{t("← All")}</button>
                    <div>
                        <div class="title">
                            {move || summary().map(|s| s.visitor_label)}
                            <Show when=move || summary().is_some_and(|s| s.verified)>
                                <span class="verified-badge" data-testid="verified-badge">{t("Verified user")}</span>
                            </Show>
                        </div>
                        <div class="subtitle">{move || summary().map(|s| s.site_name)}</div>
                    </div>
                    <span class="grow"></span>
                    <CallButtons
                        ctl=desk.call
                        ready=Signal::derive(move || matches!(holder.get(), Some(Holder::Me | Holder::Waiting)))
                        why_not=t("Another agent has this conversation, or it is closed")
                    />
                    {move || match holder.get() {
                        Some(Holder::Waiting) => view! {
                            <button class="primary" data-testid="take" on:click=take>{t("Take conversation")}</button>
                        }.into_any(),
                        Some(Holder::Me) => view! {
                            <span class="badge assigned">{t("You have this chat")}</span>
                            <Transfer desk=desk conversation=desk.selected.into() />
                        }.into_any(),
                        Some(Holder::Other(name)) => view! {
                            <span class="badge other" data-testid="taken-by">{tf("{name} has this chat", &[("name", &name)])}</span>
                        }.into_any(),
                        Some(Holder::Closed) => view! {
                            <span class="badge closed" data-testid="closed-badge">{t("Closed")}</span>
                        }.into_any(),
                        None => ().into_any(),
                    }}
                    <Show when=move || matches!(holder.get(), Some(Holder::Me | Holder::Waiting))>
                        <button class="secondary" data-testid="conversation-close" on:click=close>
                            {t("Close")}
                        </button>
                    </Show>
                    <button
                        class="link"
                        data-testid="export"
                        aria-expanded=move || exporting.get().to_string()
                        on:click=move |_| exporting.update(|e| *e = !*e)
                    >
                        {t("Export")}
                    </button>
                    <Show when=move || exporting.get()>
                        <div class="export" role="group" aria-label=t("Export the transcript")>
                            <a data-testid="export-text" href=move || export_url("text") download>{t("Text (.txt)")}</a>
                            <a data-testid="export-json" href=move || export_url("json") download>"JSON"</a>
                            <label>
                                <input
                                    type="checkbox"
                                    data-testid="export-notes"
                                    prop:checked=move || with_notes.get()
                                    on:change=move |ev| with_notes.set(event_target_checked(&ev))
                                />
                                " "{t("Include private notes")}
                            </label>
                        </div>
                    </Show>
                </header>
                <VisitorPanel desk=desk />
                <Show when=move || notice().is_some()>
                    <div class="banner notice" role="alert" data-testid="notice">
                        {move || notice().unwrap_or_default()}
                    </div>
                </Show>
                <crate::chat::MessageList
                    thread=thread
                    me=Author::Agent
                    empty=t("No messages yet.")
                    found=Signal::derive(move || {
                        let id = desk.selected.get()?;
                        desk.found.get().filter(|(c, _)| *c == id).map(|(_, seq)| seq)
                    })
                />
                <crate::chat::TypingLine typing=desk.typing conversation=desk.selected />
                <UploadList uploader=desk.uploader conversation=desk.selected />
                <div class="note-bar" class:on=move || note_mode.get()>
                    <button
                        type="button"
                        class="link"
                        data-testid="note-toggle"
                        aria-pressed=move || note_mode.get().to_string()
                        on:click=move |_| note_mode.update(|n| *n = !*n)
                    >
                        {move || if note_mode.get() { t("Private note: on") } else { t("Private note") }}
                    </button>
                    <Show when=move || note_mode.get()>
                        <span class="hint">{t("Only agents see the next message.")}</span>
                    </Show>
                </div>
                <Composer
                    on_files=on_files
                    on_send=on_send
                    on_typing=Callback::new(move |()| {
                        // A note being written is nobody's business but the agents'.
                        if let Some(id) = desk.selected.get_untracked().filter(|_| !note_mode.get_untracked()) {
                            desk.typing.keystroke(&id);
                        }
                    })
                    draft=desk.draft()
                    suggest=suggest
                    files_allowed=files_allowed
                    disabled=Signal::derive(move || matches!(holder.get(), Some(Holder::Other(_) | Holder::Closed)))
                    placeholder=t("Reply… (Enter to send, Shift+Enter for a new line)")
                />
            </Show>
        </section>
    }
}
