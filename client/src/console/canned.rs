//! Canned replies: short answers per site, found by typing `/` and part of a shortcut in the
//! composer, and managed in a panel (`/api/canned`).

use escalera_protocol::{
    check_shortcut, check_text, CannedReply, SiteKey, SiteRef, MAX_CANNED_CHARS,
};
use leptos::prelude::*;
use serde::Deserialize;

use crate::browser;
use crate::i18n::{t, t_relay};

/// What `GET /api/canned` answers.
#[derive(Deserialize)]
struct Listing {
    sites: Vec<SiteRef>,
    replies: Vec<CannedReply>,
}

/// The agent's sites and their canned replies.
#[derive(Clone, Copy)]
pub struct Canned {
    /// The sites the agent serves.
    pub sites: RwSignal<Vec<SiteRef>>,
    /// Their replies, by shortcut.
    pub replies: RwSignal<Vec<CannedReply>>,
}

impl Canned {
    /// Empty; [`Canned::load`] fills it.
    pub fn new() -> Self {
        Self {
            sites: RwSignal::new(Vec::new()),
            replies: RwSignal::new(Vec::new()),
        }
    }

    /// Reads the replies from the relay.
    pub fn load(&self) {
        let this = *self;
        leptos::task::spawn_local(async move {
            if let Ok(r) = browser::fetch("GET", "/api/canned", None).await {
                if let Ok(listing) = serde_json::from_str::<Listing>(&r.body) {
                    this.sites.set(listing.sites);
                    this.replies.set(listing.replies);
                }
            }
        });
    }

    /// The replies of `site` whose shortcut contains what follows the `/` in `typed` (only
    /// while the text is one `/word`).
    pub fn matches(&self, site: &SiteKey, typed: &str) -> Vec<CannedReply> {
        let Some(part) = typed.strip_prefix('/') else {
            return Vec::new();
        };
        if part.contains(char::is_whitespace) {
            return Vec::new();
        }
        let part = part.to_lowercase();
        self.replies.with(|all| {
            let mut found: Vec<CannedReply> = all
                .iter()
                .filter(|r| &r.site == site && r.shortcut.contains(&part))
                .cloned()
                .collect();
            // Those starting with it first.
            found.sort_by_key(|r| (!r.shortcut.starts_with(&part), r.shortcut.clone()));
            found.truncate(8);
            found
        })
    }
}

/// A reply's text with its placeholders filled in.
pub fn fill(text: &str, visitor: &str, agent: &str) -> String {
    text.replace("{visitor}", visitor).replace("{agent}", agent)
}

/// The panel where agents keep their sites' replies.
#[component]
pub fn CannedManager(canned: Canned, open: RwSignal<bool>) -> impl IntoView {
    view! {
        <Show when=move || open.get()>
            <section class="canned-manager" role="dialog" aria-label=t("Canned replies") data-testid="canned-manager">
                <header>
                    <h2>{t("Canned replies")}</h2>
                    <button class="link" on:click=move |_| open.set(false)>{t("Close")}</button>
                </header>
                <CannedEditor canned=canned />
            </section>
        </Show>
    }
}

/// The replies of the agent's sites: a form to add or replace one, and the list.
#[component]
pub fn CannedEditor(canned: Canned) -> impl IntoView {
    let site = RwSignal::new(String::new());
    let shortcut = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    // The first site, once they are known.
    Effect::new(move || {
        if site.with_untracked(String::is_empty) {
            if let Some(first) = canned.sites.with(|s| s.first().map(|s| s.key.0.clone())) {
                site.set(first);
            }
        }
    });
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let short = shortcut
            .get_untracked()
            .trim()
            .trim_start_matches('/')
            .to_lowercase();
        let body = text.get_untracked();
        if let Err(e) = check_shortcut(&short) {
            return error.set(Some(browser::sentence(e)));
        }
        if let Err(e) = check_text(body.trim()) {
            return error.set(Some(browser::sentence(e)));
        }
        let json =
            serde_json::json!({ "site": site.get_untracked(), "shortcut": short, "text": body })
                .to_string();
        saving.set(true);
        leptos::task::spawn_local(async move {
            match browser::fetch("POST", "/api/canned", Some(json)).await {
                Ok(r) if r.status == 200 => {
                    error.set(None);
                    shortcut.set(String::new());
                    text.set(String::new());
                    canned.load();
                }
                Ok(r) => error.set(Some(t_relay(&r.body))),
                Err(e) => error.set(Some(e)),
            }
            saving.set(false);
        });
    };
    let remove = move |id: String| {
        leptos::task::spawn_local(async move {
            match browser::fetch("DELETE", &format!("/api/canned/{id}"), None).await {
                Ok(r) if r.status == 204 => canned.load(),
                Ok(r) => error.set(Some(t_relay(&r.body))),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let site_name = move |key: &SiteKey| {
        canned.sites.with(|s| {
            s.iter()
                .find(|s| &s.key == key)
                .map_or_else(String::new, |s| s.name.clone())
        })
    };
    view! {
                <p class="hint">
                    {t("Type / and part of a shortcut in the reply box to insert one.")}
                    " "
                    {t("{visitor} and {agent} are filled in.")}
                </p>
                <form on:submit=save>
                    <label>
                        {t("Site")}
                        <select
                            data-testid="canned-site"
                            prop:value=move || site.get()
                            on:change=move |ev| site.set(event_target_value(&ev))
                        >
                            <For each=move || canned.sites.get() key=|s| s.key.clone() let:s>
                                <option value=s.key.0.clone()>{s.name.clone()}</option>
                            </For>
                        </select>
                    </label>
                    <label>
                        {t("Shortcut")}
                        <input
                            data-testid="canned-shortcut"
                            placeholder=t("refund")
                            maxlength="33"
                            prop:value=move || shortcut.get()
                            on:input=move |ev| shortcut.set(event_target_value(&ev))
                        />
                    </label>
                    <label>
                        {t("Text")}
                        <textarea
                            data-testid="canned-text"
                            rows="3"
                            maxlength=MAX_CANNED_CHARS.to_string()
                            placeholder=t("Hi {visitor}, I have refunded your order. {agent}")
                            prop:value=move || text.get()
                            on:input=move |ev| text.set(event_target_value(&ev))
                        ></textarea>
                    </label>
                    <Show when=move || error.get().is_some()>
                        <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                    </Show>
                    <button type="submit" class="primary" data-testid="canned-save" prop:disabled=move || saving.get()>
                        {move || if saving.get() { t("Saving…") } else { t("Save") }}
                    </button>
                </form>
                <Show
                    when=move || canned.replies.with(|r| !r.is_empty())
                    fallback=|| view! { <p class="empty">{t("No canned replies yet.")}</p> }
                >
                    <ul class="canned-list">
                        <For each=move || canned.replies.get() key=|r| (r.id.clone(), r.text.clone()) let:r>
                            <li data-testid="canned-reply">
                                <strong>{format!("/{}", r.shortcut)}</strong>
                                <span class="site">{site_name(&r.site)}</span>
                                <span class="text">{r.text.clone()}</span>
                                <button class="link" data-testid="canned-delete" on:click={
                                    let id = r.id.clone();
                                    move |_| remove(id.clone())
                                }>{t("Delete")}</button>
                            </li>
                        </For>
                    </ul>
                </Show>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(site: &str, shortcut: &str) -> CannedReply {
        CannedReply {
            id: shortcut.into(),
            site: site.into(),
            shortcut: shortcut.into(),
            text: format!("text of {shortcut}"),
        }
    }

    #[test]
    fn a_slash_and_part_of_a_shortcut_finds_the_sites_replies() {
        let owner = Owner::new();
        owner.set();
        let canned = Canned::new();
        canned.replies.set(vec![
            reply("shop", "refund"),
            reply("shop", "no-refund"),
            reply("shop", "hello"),
            reply("blog", "refund-blog"),
        ]);
        let shop = SiteKey::from("shop");
        let found = |typed| {
            canned
                .matches(&shop, typed)
                .into_iter()
                .map(|r| r.shortcut)
                .collect::<Vec<_>>()
        };
        assert_eq!(found("/ref"), ["refund", "no-refund"]);
        assert_eq!(found("/"), ["hello", "no-refund", "refund"]);
        assert!(found("/refund please").is_empty());
        assert!(found("refund").is_empty());
        assert_eq!(
            fill("Hi {visitor}, {agent} here", "Visitor 3f2a", "Ana"),
            "Hi Visitor 3f2a, Ana here"
        );
    }
}
