//! The list of conversations: filtered (open, mine, queue, all), waiting first, unread counts,
//! live updates.

use escalera_protocol::{ConversationStatus, ConversationSummary};
use leptos::prelude::*;

use super::root::Desk;
use super::search::Search;
use super::state::Filter;
use crate::browser::clock;
use crate::i18n::{t, tf};

/// The left pane.
#[component]
pub fn ConversationList(desk: Desk) -> impl IntoView {
    let filter = desk.filter;
    let rows = move || {
        let me = desk.agent.with(|a| a.as_ref().map(|a| a.id.clone()));
        desk.inbox.with(|i| i.shown(filter.get(), me.as_ref()))
    };
    let empty = move || match filter.get() {
        Filter::Open | Filter::All => {
            t("No conversations yet. New chats from your sites appear here.")
        }
        Filter::Mine => t("Nothing assigned to you right now."),
        Filter::Queue => t("Nobody is waiting."),
    };
    view! {
        <nav class="list" aria-label=t("Conversations")>
            <Search desk=desk query=desk.search />
            <Show when=move || desk.search.with(String::is_empty)>
            <div class="tabs" role="tablist" aria-label=t("Show")>
                {Filter::TABS
                    .into_iter()
                    .map(|(f, name)| view! {
                        <button
                            role="tab"
                            data-testid="filter"
                            data-filter=name
                            aria-selected=move || (filter.get() == f).to_string()
                            class:on=move || filter.get() == f
                            on:click=move |_| filter.set(f)
                        >
                            {f.label()}
                        </button>
                    })
                    .collect_view()}
            </div>
            <Show when=move || rows().is_empty()>
                <p class="empty" data-testid="list-empty">{empty}</p>
            </Show>
            <For each=rows key=|c| (c.id.clone(), c.last_seq, c.status, c.agent.as_ref().map(|a| a.id.clone())) let:c>
                <Row desk=desk summary=c />
            </For>
            </Show>
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
        (ConversationStatus::Waiting, _) => t("Waiting").to_owned(),
        (ConversationStatus::Closed, _) => t("Closed").to_owned(),
        _ if mine => t("Yours").to_owned(),
        (_, Some(a)) => tf("With {name}", &[("name", &a.name)]),
        (_, None) => String::new(),
    };
    let status_class = match summary.status {
        ConversationStatus::Waiting => "badge waiting",
        ConversationStatus::Assigned => "badge assigned",
        ConversationStatus::Closed => "badge closed",
    };
    let rating = summary.rating.map(|r| match r {
        escalera_protocol::Rating::Up => ("👍", t("Rated good")),
        escalera_protocol::Rating::Down => ("👎", t("Rated bad")),
    });
    view! {
        <button
            class="row"
            class:active=active
            data-testid="conversation"
            data-status=match summary.status {
                ConversationStatus::Waiting => "waiting",
                ConversationStatus::Assigned => "assigned",
                ConversationStatus::Closed => "closed",
            }
            on:click=move |_| desk.open(id.clone())
        >
            <div class="row-top">
                <span class="name">
                    {summary.visitor_label.clone()}
                    {summary.verified.then(|| view! {
                        <span class="verified" data-testid="verified" title=t("Verified by the site")>" ✓"<span class="sr-only">" "{t("verified")}</span></span>
                    })}
                </span>
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
                {rating.map(|(icon, label)| view! {
                    <span class="rating" data-testid="rating" title=label aria-label=label>{icon}</span>
                })}
                <span class="site">{summary.site_name.clone()}</span>
            </div>
        </button>
    }
}
