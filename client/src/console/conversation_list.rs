//! The list of conversations: waiting first, unread counts, live updates.

use escalera_protocol::{ConversationStatus, ConversationSummary};
use leptos::prelude::*;

use super::root::Desk;
use crate::browser::clock;

/// The left pane.
#[component]
pub fn ConversationList(desk: Desk) -> impl IntoView {
    let rows = move || desk.inbox.with(|i| i.list.clone());
    view! {
        <nav class="list" aria-label="Conversations">
            <Show when=move || desk.inbox.with(|i| i.list.is_empty())>
                <p class="empty" data-testid="list-empty">
                    "No conversations yet. New chats from your sites appear here."
                </p>
            </Show>
            <For each=rows key=|c| (c.id.clone(), c.last_seq, c.agent.as_ref().map(|a| a.id.clone())) let:c>
                <Row desk=desk summary=c />
            </For>
        </nav>
    }
}

#[component]
fn Row(desk: Desk, summary: ConversationSummary) -> impl IntoView {
    let id = summary.id.clone();
    let unread = {
        let id = id.clone();
        move || {
            desk.link
                .threads
                .with(|t| desk.inbox.with(|i| i.unread(&id, t)))
        }
    };
    let active = {
        let id = id.clone();
        move || desk.selected.with(|s| s.as_ref() == Some(&id))
    };
    let mine = desk
        .agent
        .with_untracked(|me| me.as_ref().map(|m| m.id.clone()))
        .is_some_and(|me| summary.agent.as_ref().is_some_and(|a| a.id == me));
    let status = match (&summary.status, &summary.agent) {
        (ConversationStatus::Waiting, _) => "Waiting".to_owned(),
        _ if mine => "Yours".to_owned(),
        (_, Some(a)) => format!("With {}", a.name),
        (_, None) => String::new(),
    };
    let status_class = match summary.status {
        ConversationStatus::Waiting => "badge waiting",
        ConversationStatus::Assigned => "badge assigned",
    };
    view! {
        <button
            class="row"
            class:active=active
            data-testid="conversation"
            data-status=if summary.status == ConversationStatus::Waiting { "waiting" } else { "assigned" }
            on:click=move |_| desk.open(id.clone())
        >
            <div class="row-top">
                <span class="name">{summary.visitor_label.clone()}</span>
                <span class="time">{clock(summary.last_at)}</span>
            </div>
            <div class="row-bottom">
                <span class="preview">{summary.preview.clone()}</span>
                <Show when={
                    let unread = unread.clone();
                    move || unread() > 0
                }>
                    <span class="unread" data-testid="unread">{unread.clone()}</span>
                </Show>
            </div>
            <div class="row-tags">
                <span class=status_class>{status}</span>
                <span class="site">{summary.site_name.clone()}</span>
            </div>
        </button>
    }
}
