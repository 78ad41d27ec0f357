//! Search over every message of the agent's sites (`/api/search`): results open their
//! conversation at the message found.

use escalera_protocol::{Author, SearchHit};
use leptos::prelude::*;

use super::root::Desk;
use crate::browser::{self, clock};
use crate::i18n::{t, tf};

/// Where a search stands.
#[derive(Clone, Debug, PartialEq)]
enum Found {
    Idle,
    Searching,
    Hits(Vec<SearchHit>),
    Failed(String),
}

/// The search box and, while it holds something, its results in place of the list.
#[component]
pub fn Search(desk: Desk, query: RwSignal<String>) -> impl IntoView {
    let found = RwSignal::new(Found::Idle);
    // Each keystroke starts a search after a pause; an answer to an older one is dropped.
    let asked = StoredValue::new(0u32);
    Effect::new(move || {
        let q = query.get();
        let n = asked.get_value() + 1;
        asked.set_value(n);
        if q.trim().chars().count() < 2 {
            return found.set(Found::Idle);
        }
        found.set(Found::Searching);
        leptos::task::spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(250).await;
            if asked.get_value() != n {
                return;
            }
            let url = format!(
                "/api/search?q={}",
                String::from(js_sys::encode_uri_component(&q))
            );
            let result = match browser::fetch("GET", &url, None).await {
                Ok(r) if r.status == 200 => serde_json::from_str(&r.body)
                    .map(Found::Hits)
                    .unwrap_or_else(|e| Found::Failed(e.to_string())),
                Ok(r) => {
                    let status = r.status.to_string();
                    let v = [("status", status.as_str())];
                    Found::Failed(tf("The search failed ({status}).", &v))
                }
                Err(e) => Found::Failed(e),
            };
            if asked.get_value() == n {
                found.set(result);
            }
        });
    });
    let open = move |hit: SearchHit| {
        desk.found.set(Some((hit.conversation.clone(), hit.seq)));
        desk.open(hit.conversation);
        query.set(String::new());
    };
    view! {
        <div class="search">
            <input
                type="search"
                data-testid="search-input"
                aria-label=t("Search messages")
                placeholder=t("Search messages…")
                prop:value=move || query.get()
                on:input=move |ev| query.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Escape" && !query.with(String::is_empty) {
                        ev.prevent_default();
                        query.set(String::new());
                    }
                }
            />
        </div>
        {move || match found.get() {
            Found::Idle => ().into_any(),
            Found::Searching => view! { <p class="empty" role="status">{t("Searching…")}</p> }.into_any(),
            Found::Failed(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
            Found::Hits(hits) if hits.is_empty() => view! {
                <p class="empty" data-testid="search-empty" role="status">{t("Nothing found.")}</p>
            }.into_any(),
            Found::Hits(hits) => view! {
                <ul class="search-results" aria-label=t("Search results")>
                    {hits.into_iter().map(|hit| {
                        let who = match hit.author {
                            Author::Visitor => hit.visitor_label.clone(),
                            Author::Note => tf("Note by {name}", &[("name", &hit.author_name.clone().unwrap_or_default())]),
                            _ => hit.author_name.clone().unwrap_or_else(|| "Escalera".into()),
                        };
                        let title = format!("{} · {}", hit.visitor_label, hit.site_name);
                        let (snippet, at) = (hit.snippet.clone(), hit.at);
                        view! {
                            <li>
                                <button class="row" data-testid="search-result" on:click=move |_| open(hit.clone())>
                                    <div class="row-top">
                                        <span class="name">{title}</span>
                                        <span class="time">{clock(at)}</span>
                                    </div>
                                    <div class="row-bottom">
                                        <span class="preview">{format!("{who}: {snippet}")}</span>
                                    </div>
                                </button>
                            </li>
                        }
                    }).collect_view()}
                </ul>
            }.into_any(),
        }}
    }
}
