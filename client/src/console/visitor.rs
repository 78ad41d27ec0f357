//! The visitor, as the agent sees them: the page they are on (live), where they came from,
//! their browser, language and local time, and the name and email agents gave them.

use escalera_protocol::{check_email, ClientMsg, ConversationId, VisitorInfo};
use leptos::prelude::*;
use serde::Deserialize;

use super::root::Desk;
use crate::browser;
use crate::i18n::{t, t_relay, tf};

/// What `GET /api/conversations/{id}/visitor` answers.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
struct Details {
    info: Option<VisitorInfo>,
    name: Option<String>,
    email: Option<String>,
    since: i64,
}

/// "Chrome on Linux" from a user agent (the common browsers and systems; else "Unknown").
pub fn browser_and_os(ua: &str) -> String {
    // The first mark found names it: more specific marks come first (Edge says Chrome too).
    let first = |marks: &[(&str, &'static str)], none: &'static str| {
        marks
            .iter()
            .find(|(mark, _)| ua.contains(mark))
            .map_or(none, |(_, name)| *name)
    };
    let browser = first(
        &[
            ("Edg/", "Edge"),
            ("OPR/", "Opera"),
            ("Firefox/", "Firefox"),
            ("Chrome/", "Chrome"),
            ("Safari/", "Safari"),
        ],
        t("Unknown browser"),
    );
    let os = first(
        &[
            ("Android", "Android"),
            ("iPhone", "iOS"),
            ("iPad", "iPadOS"),
            ("Windows", "Windows"),
            ("Mac OS X", "macOS"),
            ("CrOS", "ChromeOS"),
            ("Linux", "Linux"),
        ],
        t("an unknown system"),
    );
    tf("{browser} on {os}", &[("browser", browser), ("os", os)])
}

/// The visitor's local time now, from their offset: "14:05".
fn their_time(offset_minutes: i32) -> String {
    let now_ms = js_sys::Date::now() as i64 + i64::from(offset_minutes) * 60_000;
    let mins = now_ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02}", mins / 60, mins % 60)
}

/// The side panel for the open conversation.
#[component]
pub fn VisitorPanel(desk: Desk) -> impl IntoView {
    let details = RwSignal::new(None::<Details>);
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    // What the store knows, each time another conversation opens.
    Effect::new(move || {
        let Some(id) = desk.selected.get() else {
            return;
        };
        details.set(None);
        saved.set(false);
        error.set(None);
        leptos::task::spawn_local(async move {
            let url = format!("/api/conversations/{id}/visitor");
            if let Ok(r) = browser::fetch("GET", &url, None).await {
                if let Ok(d) = serde_json::from_str::<Details>(&r.body) {
                    if desk.selected.get_untracked().as_ref() == Some(&id) {
                        name.set(d.name.clone().unwrap_or_default());
                        email.set(d.email.clone().unwrap_or_default());
                        details.set(Some(d));
                    }
                }
            }
        });
    });
    // The live page beats the stored one.
    let info = move || {
        let id: ConversationId = desk.selected.get()?;
        desk.visits
            .with(|v| v.get(&id).cloned())
            .or_else(|| details.with(|d| d.as_ref().and_then(|d| d.info.clone())))
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(id) = desk.selected.get_untracked() else {
            return;
        };
        let (n, e) = (name.get_untracked(), email.get_untracked());
        if !e.trim().is_empty() {
            if let Err(why) = check_email(&e) {
                // The reason's translation is a whole sentence: the Spanish drops the period.
                return error.set(Some(tf("Email: {why}.", &[("why", &t_relay(why))])));
            }
        }
        error.set(None);
        let sent = desk.link.socket.send(&ClientMsg::SetVisitor {
            conversation: id,
            name: Some(n.trim().to_owned()).filter(|n| !n.is_empty()),
            email: Some(e.trim().to_owned()).filter(|e| !e.is_empty()),
        });
        saved.set(sent);
        if !sent {
            error.set(Some(t("You are offline: try again in a moment.").into()));
        }
    };
    view! {
        <details class="visitor-panel" data-testid="visitor-info" open>
            <summary>{t("About the visitor")}</summary>
            {move || match info() {
                None => view! {
                    <p class="hint" data-testid="visitor-page">{t("Their page is not known yet.")}</p>
                }.into_any(),
                Some(i) => {
                    let shown = if i.title.is_empty() { i.page.clone() } else { i.title.clone() };
                    let zone = if i.time_zone.is_empty() { t("their time").to_owned() } else { i.time_zone.clone() };
                    view! {
                        <dl>
                            <dt>{t("On the page")}</dt>
                            <dd data-testid="visitor-page">
                                <a href=i.page.clone() target="_blank" rel="noopener noreferrer" title=i.page.clone()>{shown}</a>
                            </dd>
                            <dt>{t("Came from")}</dt>
                            <dd data-testid="visitor-referrer">
                                {if i.referrer.is_empty() { t("Direct visit").to_owned() } else { i.referrer.clone() }}
                            </dd>
                            <dt>{t("Browser")}</dt>
                            <dd data-testid="visitor-browser">{browser_and_os(&i.user_agent)}</dd>
                            <dt>{t("Language")}</dt>
                            <dd data-testid="visitor-language">{i.language.clone()}</dd>
                            <dt>{t("Local time")}</dt>
                            <dd data-testid="visitor-time">{format!("{} ({zone})", their_time(i.utc_offset_minutes))}</dd>
                        </dl>
                    }.into_any()
                }
            }}
            <p class="hint" data-testid="visitor-history">
                {move || details.get().map(|d| {
                    let date = browser::date(d.since);
                    tf("This visitor's only conversation here, since {date}.", &[("date", &date)])
                })}
            </p>
            <form class="visitor-form" on:submit=save>
                <label>
                    {t("Name")}
                    <input
                        data-testid="visitor-name"
                        maxlength="80"
                        autocomplete="off"
                        prop:value=move || name.get()
                        on:input=move |ev| { name.set(event_target_value(&ev)); saved.set(false); }
                    />
                </label>
                <label>
                    {t("Email")}
                    <input
                        type="email"
                        data-testid="visitor-email"
                        autocomplete="off"
                        prop:value=move || email.get()
                        on:input=move |ev| { email.set(event_target_value(&ev)); saved.set(false); }
                    />
                </label>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
                <button type="submit" class="secondary" data-testid="visitor-save">
                    {move || if saved.get() { t("Saved") } else { t("Save") }}
                </button>
            </form>
        </details>
    }
}

#[cfg(test)]
mod tests {
    use super::browser_and_os;

    #[test]
    fn browsers_and_systems_are_named() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(browser_and_os(chrome), "Chrome on Linux");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36 Edg/120.0";
        assert_eq!(browser_and_os(edge), "Edge on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile Safari/604.1";
        assert_eq!(browser_and_os(iphone), "Safari on iOS");
        let android = "Mozilla/5.0 (Linux; Android 14) Firefox/121.0";
        assert_eq!(browser_and_os(android), "Firefox on Android");
        assert_eq!(browser_and_os(""), "Unknown browser on an unknown system");
    }
}
