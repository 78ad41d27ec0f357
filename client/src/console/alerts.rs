//! Telling the agent someone needs them while they look elsewhere: the tab title's count, a
//! short sound, and a desktop notification once they allowed it (asked only on their click).

use std::collections::HashMap;

use escalera_protocol::{Author, ConversationId, ConversationStatus};
use leptos::prelude::*;

use super::root::Desk;
use crate::browser;
use crate::i18n::{t, tf};

/// The title without anything waiting.
fn title() -> &'static str {
    t("Escalera — agent console")
}

/// What needs the agent, per conversation: waiting ones count 1, theirs their unread messages.
fn attention(desk: &Desk) -> HashMap<ConversationId, u64> {
    let me = desk.agent.with(|a| a.as_ref().map(|a| a.id.clone()));
    desk.link.threads.with(|threads| {
        desk.inbox.with(|inbox| {
            inbox
                .list
                .iter()
                .filter_map(|c| {
                    let n = match c.status {
                        ConversationStatus::Waiting => 1,
                        ConversationStatus::Assigned
                            if c.agent.as_ref().map(|a| &a.id) == me.as_ref() =>
                        {
                            inbox.unread(&c.id, threads)
                        }
                        _ => 0,
                    };
                    (n > 0).then(|| (c.id.clone(), n))
                })
                .collect()
        })
    })
}

/// Keeps the title's count, and chimes (and notifies) when something new needs the agent
/// while the tab is hidden or another conversation is open.
pub fn use_alerts(desk: Desk) {
    let before = StoredValue::new(HashMap::<ConversationId, u64>::new());
    Effect::new(move || {
        let now = attention(&desk);
        let total: u64 = now.len() as u64;
        if let Some(doc) = browser::window().document() {
            doc.set_title(&match total {
                0 => title().to_owned(),
                n => format!("({n}) Escalera"),
            });
        }
        let selected = desk.selected.get_untracked();
        let looking = !browser::tab_hidden();
        let news: Vec<ConversationId> = before.with_value(|was| {
            now.iter()
                .filter(|(id, n)| was.get(*id).is_none_or(|w| *n > w))
                .filter(|(id, _)| !(looking && selected.as_ref() == Some(*id)))
                .map(|(id, _)| id.clone())
                .collect()
        });
        before.set_value(now);
        if let Some(id) = news.first() {
            chime();
            // What they said last, from the thread when it is here (its list row may come
            // after the message).
            let said = desk.link.threads.with_untracked(|t| {
                t.get(id)?.lines().into_iter().rev().find_map(|l| match l {
                    crate::chat::Line::Stored(m) if m.author == Author::Visitor => Some(m.text),
                    _ => None,
                })
            });
            let label = desk.inbox.with_untracked(|i| {
                i.summary(id).map(|s| {
                    let text = said.unwrap_or_else(|| s.preview.clone());
                    (s.visitor_label.clone(), text, s.status)
                })
            });
            if let Some((who, preview, status)) = label.filter(|_| browser::tab_hidden()) {
                let title = match status {
                    ConversationStatus::Waiting => tf("{who} is waiting", &[("who", &who)]),
                    _ => tf("New message from {who}", &[("who", &who)]),
                };
                notify(&title, &preview);
            }
        }
    });
}

/// A short two-note chime (WebAudio). Silent where the browser refuses sound before a click.
fn chime() {
    let Ok(audio) = web_sys::AudioContext::new() else {
        return;
    };
    browser::tones(&audio, &[(880.0, 0.0, 0.12), (660.0, 0.12, 0.12)], 0.06);
    // The context goes once the chime is over.
    gloo_timers::callback::Timeout::new(600, move || {
        let _ = audio.close();
    })
    .forget();
}

/// Whether the agent allowed desktop notifications.
fn permission() -> web_sys::NotificationPermission {
    web_sys::Notification::permission()
}

/// A desktop notification, when allowed.
pub fn notify(title: &str, body: &str) {
    if permission() != web_sys::NotificationPermission::Granted {
        return;
    }
    let opts = web_sys::NotificationOptions::new();
    opts.set_body(body);
    opts.set_tag("escalera");
    let _ = web_sys::Notification::new_with_options(title, &opts);
}

/// "Turn on notifications", in the header, until the agent has answered the browser's
/// question (asked only when they click it, never on load).
#[component]
pub fn NotifyButton() -> impl IntoView {
    let supported =
        js_sys::Reflect::has(&browser::window(), &"Notification".into()).unwrap_or(false);
    let state = RwSignal::new(if supported { Some(permission()) } else { None });
    let ask = move |_| {
        let Ok(promise) = web_sys::Notification::request_permission() else {
            return;
        };
        leptos::task::spawn_local(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
            state.set(Some(permission()));
        });
    };
    view! {
        {move || match state.get() {
            Some(web_sys::NotificationPermission::Default) => view! {
                <button class="link" data-testid="notifications-enable" on:click=ask>
                    {t("Turn on notifications")}
                </button>
            }.into_any(),
            Some(web_sys::NotificationPermission::Denied) => view! {
                <span class="hint" data-testid="notifications-blocked" title=t("Allow them in the browser's site settings")>
                    {t("Notifications blocked")}
                </span>
            }.into_any(),
            _ => ().into_any(),
        }}
    }
}
