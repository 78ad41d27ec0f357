//! The Settings area, for admins: sites (name, origins, snippet, the widget's look and the
//! steps it offers), agents (new ones with a one-time password, role, sites, limit, access, a
//! new password), canned replies and the audit log. Everything goes through `/api/admin/*`;
//! a refused field shows its error next to it.

use escalera_protocol::{
    check_email, check_look, AgentId, AgentSettings, AuditEntry, BusinessHours, Corner, Presence,
    SiteFeatures, SiteKey, SiteLook, SiteSettings,
};
use leptos::prelude::*;
use serde::Deserialize;

use super::canned::{Canned, CannedEditor};
use crate::browser;
use crate::i18n::{t, tf};

/// A refused change: the field it is about (if the relay named one) and why.
#[derive(Clone, Debug, Default, PartialEq)]
struct Refusal {
    field: Option<String>,
    error: String,
}

#[derive(Deserialize)]
struct FieldError {
    field: String,
    error: String,
}

/// Sends a change; `Ok(body)` on a 2xx, else what was refused (the field when the relay
/// named one).
async fn send(method: &str, path: &str, json: Option<String>) -> Result<String, Refusal> {
    match browser::fetch(method, path, json).await {
        Ok(r) if (200..300).contains(&r.status) => Ok(r.body),
        Ok(r) => Err(match serde_json::from_str::<FieldError>(&r.body) {
            Ok(f) => Refusal {
                field: Some(f.field),
                error: browser::sentence(&f.error),
            },
            Err(_) if r.body.is_empty() => {
                let status = r.status.to_string();
                Refusal {
                    field: None,
                    error: tf("The server answered {status}.", &[("status", &status)]),
                }
            }
            Err(_) => Refusal {
                field: None,
                error: browser::sentence(&r.body),
            },
        }),
        Err(e) => Err(Refusal {
            field: None,
            error: e,
        }),
    }
}

/// Sends a form's change: `busy` while it is under way; then the refusal, or none and `done`
/// with the answer's body.
fn submit(
    method: &'static str,
    path: String,
    json: Option<String>,
    busy: RwSignal<bool>,
    refusal: RwSignal<Option<Refusal>>,
    done: impl FnOnce(String) + 'static,
) {
    busy.set(true);
    leptos::task::spawn_local(async move {
        match send(method, &path, json).await {
            Ok(body) => {
                refusal.set(None);
                done(body);
            }
            Err(r) => refusal.set(Some(r)),
        }
        busy.set(false);
    });
}

/// Reads a list from the relay into `into`, or the reason it could not.
fn load<T: for<'de> Deserialize<'de> + Send + Sync + 'static>(
    path: &'static str,
    into: RwSignal<Option<Vec<T>>>,
    error: RwSignal<Option<String>>,
) {
    leptos::task::spawn_local(async move {
        match send("GET", path, None).await {
            Ok(body) => match serde_json::from_str(&body) {
                Ok(list) => {
                    into.set(Some(list));
                    error.set(None);
                }
                Err(e) => {
                    let e = e.to_string();
                    error.set(Some(tf("Unreadable answer: {error}", &[("error", &e)])))
                }
            },
            Err(r) => error.set(Some(r.error)),
        }
    });
}

/// The error of `field`, shown under it (`error-FIELD`).
#[component]
fn FieldErr(refusal: RwSignal<Option<Refusal>>, field: &'static str) -> impl IntoView {
    let text = move || {
        refusal.with(|r| {
            r.as_ref()
                .filter(|r| r.field.as_deref() == Some(field))
                .map(|r| r.error.clone())
        })
    };
    view! {
        <Show when=move || text().is_some()>
            <p class="error" role="alert" id=format!("error-{field}") data-testid=format!("error-{field}")>
                {move || text().unwrap_or_default()}
            </p>
        </Show>
    }
}

/// A refusal about no field of this form: shown at the form's foot.
#[component]
fn FormErr(refusal: RwSignal<Option<Refusal>>, fields: &'static [&'static str]) -> impl IntoView {
    let text = move || {
        refusal.with(|r| {
            r.as_ref()
                .filter(|r| r.field.as_deref().is_none_or(|f| !fields.contains(&f)))
                .map(|r| r.error.clone())
        })
    };
    view! {
        <Show when=move || text().is_some()>
            <p class="error" role="alert" data-testid="settings-error">{move || text().unwrap_or_default()}</p>
        </Show>
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Tab {
    Sites,
    Agents,
    Canned,
    Audit,
}

/// The Settings area (`data-testid="settings"`), over the desk while `open`.
#[component]
pub fn Settings(open: RwSignal<bool>, canned: Canned) -> impl IntoView {
    let tab = RwSignal::new(Tab::Sites);
    let sites = RwSignal::new(None::<Vec<SiteSettings>>);
    let error = RwSignal::new(None::<String>);
    Effect::new(move || {
        if open.get() {
            load("/api/admin/sites", sites, error);
            canned.load();
        }
    });
    let tab_button = move |t: Tab, label: &'static str, id: &'static str| {
        view! {
            <button
                role="tab"
                data-testid=id
                aria-selected=move || (tab.get() == t).to_string()
                on:click=move |_| tab.set(t)
            >
                {label}
            </button>
        }
    };
    view! {
        <Show when=move || open.get()>
            <section class="settings" role="dialog" aria-modal="true" aria-labelledby="settings-title" data-testid="settings">
                <header>
                    <h2 id="settings-title">{t("Settings")}</h2>
                    <div class="tabs" role="tablist" aria-label=t("Settings sections")>
                        {tab_button(Tab::Sites, t("Sites"), "settings-sites")}
                        {tab_button(Tab::Agents, t("Agents"), "settings-agents")}
                        {tab_button(Tab::Canned, t("Canned replies"), "settings-canned")}
                        {tab_button(Tab::Audit, t("Audit log"), "settings-audit")}
                    </div>
                    <button class="link" data-testid="settings-close" on:click=move |_| open.set(false)>{t("Close")}</button>
                </header>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
                <div class="settings-body" role="tabpanel">
                    {move || match tab.get() {
                        Tab::Sites => view! { <Sites sites=sites error=error /> }.into_any(),
                        Tab::Agents => view! { <Agents sites=sites /> }.into_any(),
                        Tab::Canned => view! { <CannedEditor canned=canned /> }.into_any(),
                        Tab::Audit => view! { <Audit /> }.into_any(),
                    }}
                </div>
            </section>
        </Show>
    }
}

/// Origins typed one per line (or separated by spaces or commas).
fn origin_list(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The days of the week, as business hours list them.
fn day_names() -> [&'static str; 7] {
    [
        t("Monday"),
        t("Tuesday"),
        t("Wednesday"),
        t("Thursday"),
        t("Friday"),
        t("Saturday"),
        t("Sunday"),
    ]
}

/// Minutes after midnight as `HH:MM`.
fn clock_text(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `HH:MM` as minutes after midnight.
fn minutes_of(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// The form's business hours, or why they cannot be.
fn read_hours(
    zone: &str,
    days: &[RwSignal<(bool, String, String)>; 7],
) -> Result<BusinessHours, &'static str> {
    let zone = zone.trim();
    if !browser::time_zone_known(zone) {
        let why = t("This browser does not know that time zone: write it like Europe/Madrid.");
        return Err(why);
    }
    let unordered = t("Each open day needs its opening time before its closing time.");
    let mut out = [None; 7];
    for (slot, day) in out.iter_mut().zip(days) {
        let (open, from, to) = day.get_untracked();
        if open {
            match (minutes_of(&from), minutes_of(&to)) {
                (Some(f), Some(t)) if f <= t => *slot = Some((f, t)),
                _ => return Err(unordered),
            }
        }
    }
    let hours = BusinessHours {
        time_zone: zone.to_owned(),
        days: out,
    };
    hours
        .check()
        .map_err(|_| t("Write the time zone like Europe/Madrid or UTC."))?;
    Ok(hours)
}

/// The steps a site offers, as the form's select says them.
fn steps_of(f: &SiteFeatures) -> &'static str {
    match (f.voice, f.video) {
        (false, _) => "chat",
        (true, false) => "voice",
        (true, true) => "video",
    }
}

#[component]
fn Sites(
    sites: RwSignal<Option<Vec<SiteSettings>>>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let chosen = RwSignal::new(None::<SiteKey>);
    // The first site, once they are known.
    Effect::new(move || {
        if chosen.with_untracked(Option::is_none) {
            if let Some(first) =
                sites.with(|s| s.as_ref().and_then(|s| s.first().map(|s| s.key.clone())))
            {
                chosen.set(Some(first));
            }
        }
    });
    let new_name = RwSignal::new(String::new());
    let new_origins = RwSignal::new(String::new());
    let refusal = RwSignal::new(None::<Refusal>);
    let adding = RwSignal::new(false);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if new_name.with_untracked(|n| n.trim().is_empty()) {
            return refusal.set(Some(Refusal {
                field: Some("name".into()),
                error: browser::sentence("a name is needed"),
            }));
        }
        let json = serde_json::json!({
            "name": new_name.get_untracked(),
            "origins": origin_list(&new_origins.get_untracked()),
        })
        .to_string();
        let path = "/api/admin/sites".to_owned();
        submit("POST", path, Some(json), adding, refusal, move |body| {
            new_name.set(String::new());
            new_origins.set(String::new());
            if let Ok(site) = serde_json::from_str::<SiteSettings>(&body) {
                let key = site.key.clone();
                sites.update(|s| s.get_or_insert_with(Vec::new).push(site));
                chosen.set(Some(key));
            }
        });
    };
    // The editor is made again only when another site is chosen (not when a save updates
    // the list, which would reset its "Saved").
    let current = move || {
        let key = chosen.get()?;
        sites.with_untracked(|s| s.as_ref()?.iter().find(|s| s.key == key).cloned())
    };
    view! {
        <div class="settings-split">
            <nav class="settings-list" aria-label=t("Sites")>
                <Show
                    when=move || sites.with(Option::is_some)
                    fallback=move || view! {
                        <p class="loading">{move || if error.with(Option::is_some) { "" } else { t("Loading sites…") }}</p>
                    }
                >
                    <Show when=move || sites.with(|s| s.as_ref().is_some_and(Vec::is_empty))>
                        <p class="empty">{t("No sites yet: add the first one below.")}</p>
                    </Show>
                    <ul>
                        <For each=move || sites.get().unwrap_or_default() key=|s| (s.key.clone(), s.name.clone()) let:s>
                            <li>
                                <button
                                    class="row-button"
                                    data-testid="site-row"
                                    aria-current={
                                        let key = s.key.clone();
                                        move || (chosen.get().as_ref() == Some(&key)).then_some("true")
                                    }
                                    on:click={
                                        let key = s.key.clone();
                                        move |_| chosen.set(Some(key.clone()))
                                    }
                                >
                                    {s.name.clone()}
                                </button>
                            </li>
                        </For>
                    </ul>
                </Show>
                <form class="settings-form" on:submit=add novalidate=true aria-label=t("New site")>
                    <h3>{t("New site")}</h3>
                    <label>
                        {t("Name")}
                        <input
                            data-testid="site-new-name"
                            maxlength="100"
                            aria-describedby="error-name"
                            prop:value=move || new_name.get()
                            on:input=move |ev| new_name.set(event_target_value(&ev))
                        />
                    </label>
                    <FieldErr refusal=refusal field="name" />
                    <label>
                        {t("Allowed origins, one per line")}
                        <textarea
                            data-testid="site-new-origins"
                            rows="2"
                            placeholder="https://shop.example"
                            prop:value=move || new_origins.get()
                            on:input=move |ev| new_origins.set(event_target_value(&ev))
                        ></textarea>
                    </label>
                    <FieldErr refusal=refusal field="origins" />
                    <FormErr refusal=refusal fields=&["name", "origins"] />
                    <button type="submit" class="primary" data-testid="site-add" prop:disabled=move || adding.get()>
                        {move || if adding.get() { t("Adding…") } else { t("Add site") }}
                    </button>
                </form>
            </nav>
            {move || current().map(|site| view! { <SiteEditor site=site sites=sites /> })}
        </div>
    }
}

/// One site's settings.
#[component]
fn SiteEditor(site: SiteSettings, sites: RwSignal<Option<Vec<SiteSettings>>>) -> impl IntoView {
    let key = site.key.clone();
    let name = RwSignal::new(site.name.clone());
    let origins = RwSignal::new(site.origins.join("\n"));
    let color = RwSignal::new(site.look.color.clone());
    let position = RwSignal::new(site.look.position);
    let greeting = RwSignal::new(site.look.greeting.clone());
    let away = RwSignal::new(site.look.away_message.clone());
    // "": English unless the visitor's browser asks for another language the widget speaks.
    let language = RwSignal::new(site.look.language.clone().unwrap_or_default());
    let pre_chat = RwSignal::new(site.look.pre_chat);
    let hours_on = RwSignal::new(site.look.hours.is_some());
    let zone = RwSignal::new(
        site.look
            .hours
            .as_ref()
            .map_or_else(browser::time_zone, |h| h.time_zone.clone()),
    );
    // Each day: open, and from / to as `HH:MM`; Monday to Friday 9 to 5 by default.
    let days: [RwSignal<(bool, String, String)>; 7] = std::array::from_fn(|i| {
        let day = match &site.look.hours {
            Some(h) => h.days[i],
            None => (i < 5).then_some((9 * 60, 17 * 60 - 1)),
        };
        let (from, to) = day.unwrap_or((9 * 60, 17 * 60 - 1));
        RwSignal::new((day.is_some(), clock_text(from), clock_text(to)))
    });
    let steps = RwSignal::new(steps_of(&site.features).to_owned());
    let screen = RwSignal::new(site.features.screen);
    let files = RwSignal::new(site.features.files);
    let snapshots = RwSignal::new(site.features.snapshots);
    let identity_required = RwSignal::new(site.identity_required);
    // In MB, empty: the relay's own limit.
    let max_upload = RwSignal::new(
        site.features
            .max_upload
            .map(|b| (b >> 20).to_string())
            .unwrap_or_default(),
    );
    let refusal = RwSignal::new(None::<Refusal>);
    let saving = RwSignal::new(false);
    let saved = RwSignal::new(false);
    let copied = RwSignal::new(false);
    let snippet = site.snippet.clone();
    let save = {
        let key = key.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            saved.set(false);
            let mut look = SiteLook {
                color: color.get_untracked().trim().to_ascii_lowercase(),
                position: position.get_untracked(),
                greeting: greeting.get_untracked().trim().to_owned(),
                away_message: away.get_untracked().trim().to_owned(),
                hours: None,
                language: Some(language.get_untracked()).filter(|l| !l.is_empty()),
                pre_chat: pre_chat.get_untracked(),
            };
            if hours_on.get_untracked() {
                match read_hours(&zone.get_untracked(), &days) {
                    Ok(hours) => look.hours = Some(hours),
                    Err(e) => {
                        return refusal.set(Some(Refusal {
                            field: Some("hours".into()),
                            error: e.into(),
                        }))
                    }
                }
            }
            // What the relay would refuse, said before asking it.
            if let Err((field, e)) = check_look(&look) {
                return refusal.set(Some(Refusal {
                    field: Some(field.into()),
                    error: browser::sentence(e),
                }));
            }
            let max_upload = match max_upload.get_untracked().trim() {
                "" => None,
                mb => match mb.parse::<u64>() {
                    Ok(mb) if mb > 0 => Some(mb << 20),
                    _ => {
                        return refusal.set(Some(Refusal {
                            field: Some("max_upload".into()),
                            error: t("A maximum upload size is a whole number of MB, at least 1 (or empty: the relay's own).").into(),
                        }))
                    }
                },
            };
            let steps = steps.get_untracked();
            let features = SiteFeatures {
                max_upload,
                voice: steps != "chat",
                video: steps == "video",
                screen: screen.get_untracked(),
                files: files.get_untracked(),
                snapshots: snapshots.get_untracked(),
            };
            let json = serde_json::json!({
                "name": name.get_untracked(),
                "origins": origin_list(&origins.get_untracked()),
                "features": features,
                "look": look,
                "identity_required": identity_required.get_untracked(),
            })
            .to_string();
            let path = format!("/api/admin/sites/{key}");
            submit("PUT", path, Some(json), saving, refusal, move |body| {
                saved.set(true);
                if let Ok(site) = serde_json::from_str::<SiteSettings>(&body) {
                    origins.set(site.origins.join("\n"));
                    sites.update(|all| {
                        if let Some(s) = all.iter_mut().flatten().find(|s| s.key == site.key) {
                            *s = site;
                        }
                    });
                }
            });
        }
    };
    let copy = {
        let snippet = snippet.clone();
        move |_| {
            let clipboard = browser::window().navigator().clipboard();
            let _ = clipboard.write_text(&snippet);
            copied.set(true);
        }
    };
    let check = |signal: RwSignal<bool>, label: &'static str, id: &'static str| {
        view! {
            <label class="check">
                <input
                    type="checkbox"
                    data-testid=id
                    prop:checked=move || signal.get()
                    on:change=move |ev| signal.set(event_target_checked(&ev))
                />
                {label}
            </label>
        }
    };
    view! {
        <form class="settings-form editor" on:submit=save novalidate=true aria-label=t("Site settings") data-testid="site-editor">
            <h3>{move || name.get()}</h3>
            <label>
                {t("Name")}
                <input
                    data-testid="site-name"
                    maxlength="100"
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                />
            </label>
            <FieldErr refusal=refusal field="name" />
            <label>
                {t("Allowed origins, one per line")}
                <textarea
                    data-testid="site-origins"
                    rows="3"
                    prop:value=move || origins.get()
                    on:input=move |ev| origins.set(event_target_value(&ev))
                ></textarea>
            </label>
            <FieldErr refusal=refusal field="origins" />
            <div class="snippet">
                <label>
                    {t("Embed snippet")}
                    <input readonly=true data-testid="site-snippet" prop:value=snippet.clone() />
                </label>
                <button type="button" class="link" data-testid="site-copy" on:click=copy>
                    {move || if copied.get() { t("Copied") } else { t("Copy") }}
                </button>
            </div>
            <fieldset>
                <legend>{t("Look")}</legend>
                <div class="color-row">
                    <label>
                        {t("Colour")}
                        <input
                            data-testid="site-color"
                            maxlength="7"
                            placeholder="#2563eb"
                            prop:value=move || color.get()
                            on:input=move |ev| color.set(event_target_value(&ev))
                        />
                    </label>
                    <input
                        type="color"
                        aria-label=t("Pick a colour")
                        prop:value=move || {
                            let c = color.get();
                            if escalera_protocol::parse_color(&c).is_some() { c } else { "#2563eb".into() }
                        }
                        on:input=move |ev| color.set(event_target_value(&ev))
                    />
                </div>
                <FieldErr refusal=refusal field="color" />
                <label>
                    {t("Position")}
                    <select
                        data-testid="site-position"
                        prop:value=move || if position.get() == Corner::Left { "left" } else { "right" }
                        on:change=move |ev| {
                            position.set(if event_target_value(&ev) == "left" { Corner::Left } else { Corner::Right })
                        }
                    >
                        <option value="right">{t("Bottom right")}</option>
                        <option value="left">{t("Bottom left")}</option>
                    </select>
                </label>
                <label>
                    {t("Greeting")}
                    <input
                        data-testid="site-greeting"
                        maxlength="300"
                        placeholder=t("Hi! Ask us anything: an agent will answer here.")
                        prop:value=move || greeting.get()
                        on:input=move |ev| greeting.set(event_target_value(&ev))
                    />
                </label>
                <FieldErr refusal=refusal field="greeting" />
                <label>
                    {t("Away message (when no agent is available)")}
                    <input
                        data-testid="site-away-message"
                        maxlength="300"
                        placeholder=t("We're away right now. Leave a message: we'll reply here as soon as we're back.")
                        prop:value=move || away.get()
                        on:input=move |ev| away.set(event_target_value(&ev))
                    />
                </label>
                <FieldErr refusal=refusal field="away_message" />
                <label>
                    {t("Language (for visitors whose browser asks for none the widget speaks)")}
                    <select
                        data-testid="site-language"
                        prop:value=move || language.get()
                        on:change=move |ev| language.set(event_target_value(&ev))
                    >
                        <option value="">{t("Automatic (English)")}</option>
                        {escalera_protocol::i18n::languages()
                            .map(|tag| view! {
                                <option value=tag lang=tag>{escalera_protocol::i18n::own_name(tag)}</option>
                            })
                            .collect_view()}
                    </select>
                </label>
                <FieldErr refusal=refusal field="language" />
                {check(pre_chat, t("Ask for a name and an email (both optional) before the chat"), "site-pre-chat")}
            </fieldset>
            <fieldset>
                <legend>{t("Business hours")}</legend>
                {check(hours_on, t("Only at these hours (outside them the widget says it is closed)"), "site-hours-on")}
                <Show when=move || hours_on.get()>
                    <label>
                        {t("Time zone")}
                        <input
                            data-testid="site-hours-zone"
                            placeholder="Europe/Madrid"
                            prop:value=move || zone.get()
                            on:input=move |ev| zone.set(event_target_value(&ev))
                        />
                    </label>
                    <table class="hours">
                        <tbody>
                            {day_names().into_iter().zip(days).map(|(name, day)| view! {
                                <tr data-testid="site-hours-day">
                                    <th scope="row">
                                        <label class="check">
                                            <input
                                                type="checkbox"
                                                data-testid="site-hours-open"
                                                prop:checked=move || day.get().0
                                                on:change=move |ev| day.update(|d| d.0 = event_target_checked(&ev))
                                            />
                                            {name}
                                        </label>
                                    </th>
                                    <td>
                                        <input
                                            type="time"
                                            aria-label=tf("{day} opens", &[("day", name)])
                                            data-testid="site-hours-from"
                                            prop:disabled=move || !day.get().0
                                            prop:value=move || day.get().1
                                            on:input=move |ev| day.update(|d| d.1 = event_target_value(&ev))
                                        />
                                        {format!(" {} ", t("to"))}
                                        <input
                                            type="time"
                                            aria-label=tf("{day} closes", &[("day", name)])
                                            data-testid="site-hours-to"
                                            prop:disabled=move || !day.get().0
                                            prop:value=move || day.get().2
                                            on:input=move |ev| day.update(|d| d.2 = event_target_value(&ev))
                                        />
                                    </td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </Show>
                <FieldErr refusal=refusal field="hours" />
            </fieldset>
            <fieldset>
                <legend>{t("What visitors can do")}</legend>
                <label>
                    {t("Steps offered")}
                    <select
                        data-testid="site-steps"
                        prop:value=move || steps.get()
                        on:change=move |ev| steps.set(event_target_value(&ev))
                    >
                        <option value="chat">{t("Chat only")}</option>
                        <option value="voice">{t("Chat and voice")}</option>
                        <option value="video">{t("Chat, voice and video")}</option>
                    </select>
                </label>
                {check(screen, t("Screen sharing"), "site-screen")}
                {check(files, t("Files"), "site-files")}
                {check(snapshots, t("Snapshots"), "site-snapshots")}
                <label>
                    {t("Largest file, in MB (empty: the relay's own limit)")}
                    <input
                        type="number"
                        min="1"
                        data-testid="site-max-upload"
                        prop:value=move || max_upload.get()
                        on:input=move |ev| max_upload.set(event_target_value(&ev))
                    />
                </label>
                <FieldErr refusal=refusal field="max_upload" />
            </fieldset>
            <fieldset>
                <legend>{t("Identity")}</legend>
                <label>
                    {t("Identity secret (the key your server signs user ids with; keep it secret)")}
                    <input readonly=true data-testid="site-identity-secret" prop:value=site.identity_secret.clone() />
                </label>
                {check(identity_required, t("Only verified users may chat"), "site-identity-required")}
            </fieldset>
            <FormErr refusal=refusal fields=&["name", "origins", "color", "greeting", "away_message", "language", "max_upload", "hours"] />
            <div class="actions">
                <button type="submit" class="primary" data-testid="site-save" prop:disabled=move || saving.get()>
                    {move || if saving.get() { t("Saving…") } else { t("Save") }}
                </button>
                <Show when=move || saved.get()>
                    <span class="saved" role="status" data-testid="site-saved">{t("Saved: open widgets follow now.")}</span>
                </Show>
            </div>
        </form>
    }
}

/// The sites an agent serves, as a form holds them: every site, or these.
#[derive(Clone, Copy)]
struct SitesChoice {
    all: RwSignal<bool>,
    some: RwSignal<Vec<SiteKey>>,
}

impl SitesChoice {
    fn new(sites: &Option<Vec<SiteKey>>) -> Self {
        Self {
            all: RwSignal::new(sites.is_none()),
            some: RwSignal::new(sites.clone().unwrap_or_default()),
        }
    }

    fn value(&self) -> Option<Vec<SiteKey>> {
        (!self.all.get_untracked()).then(|| self.some.get_untracked())
    }
}

/// Checkboxes: every site, or some.
#[component]
fn SitesPicker(choice: SitesChoice, sites: RwSignal<Option<Vec<SiteSettings>>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>{t("Sites served")}</legend>
            <label class="check">
                <input
                    type="checkbox"
                    data-testid="agent-all-sites"
                    prop:checked=move || choice.all.get()
                    on:change=move |ev| choice.all.set(event_target_checked(&ev))
                />
                {t("Every site")}
            </label>
            <Show when=move || !choice.all.get()>
                <For each=move || sites.get().unwrap_or_default() key=|s| s.key.clone() let:s>
                    <label class="check">
                        <input
                            type="checkbox"
                            data-testid="agent-site"
                            value=s.key.0.clone()
                            prop:checked={
                                let key = s.key.clone();
                                move || choice.some.with(|c| c.contains(&key))
                            }
                            on:change={
                                let key = s.key.clone();
                                move |ev| {
                                    let on = event_target_checked(&ev);
                                    choice.some.update(|c| {
                                        c.retain(|k| *k != key);
                                        if on {
                                            c.push(key.clone());
                                        }
                                    });
                                }
                            }
                        />
                        {s.name.clone()}
                    </label>
                </For>
            </Show>
        </fieldset>
    }
}

/// `text` cut at its `{name}` placeholders, in order: `(false, plain text)` or `(true, name)`.
fn holes(text: &'static str) -> Vec<(bool, &'static str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('{') {
        let Some((name, tail)) = after.split_once('}') else {
            break;
        };
        out.push((false, before));
        out.push((true, name));
        rest = tail;
    }
    out.push((false, rest));
    out
}

/// A one-time password, shown once.
#[component]
fn OneTime(password: RwSignal<Option<(String, String)>>) -> impl IntoView {
    // One sentence, its email and password marked up wherever the language puts them.
    let sentence = move || {
        let email = move || password.get().map(|p| p.0).unwrap_or_default();
        let secret = move || password.get().map(|p| p.1).unwrap_or_default();
        holes(t("One-time password for {email}: {password}"))
            .into_iter()
            .map(|piece| match piece {
                (true, "email") => view! { <strong>{email}</strong> }.into_any(),
                (true, "password") => {
                    view! { <code data-testid="agent-password">{secret}</code> }.into_any()
                }
                (_, text) => text.into_any(),
            })
            .collect_view()
    };
    view! {
        <Show when=move || password.with(Option::is_some)>
            <div class="banner one-time" role="status">
                <p>{sentence}</p>
                <p class="hint">{t("Shown once: give it to them now. They can log in with it at once.")}</p>
                <button type="button" class="link" on:click=move |_| password.set(None)>{t("Done")}</button>
            </div>
        </Show>
    }
}

#[component]
fn Agents(sites: RwSignal<Option<Vec<SiteSettings>>>) -> impl IntoView {
    let agents = RwSignal::new(None::<Vec<AgentSettings>>);
    let error = RwSignal::new(None::<String>);
    load("/api/admin/agents", agents, error);
    let chosen = RwSignal::new(None::<AgentId>);
    let password = RwSignal::new(None::<(String, String)>);
    // The new agent's form.
    let email = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let admin = RwSignal::new(false);
    let limit = RwSignal::new("5".to_owned());
    let choice = SitesChoice::new(&None);
    let refusal = RwSignal::new(None::<Refusal>);
    let adding = RwSignal::new(false);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let field = |f: &str, e: &str| {
            refusal.set(Some(Refusal {
                field: Some(f.into()),
                error: browser::sentence(e),
            }))
        };
        if let Err(e) = check_email(&email.get_untracked()) {
            return field("email", e);
        }
        if name.with_untracked(|n| n.trim().is_empty()) {
            return field("name", "a name is needed");
        }
        let Ok(limit) = limit.get_untracked().trim().parse::<u32>() else {
            return field("limit", "a chat limit is 0 to 100");
        };
        let json = serde_json::json!({
            "email": email.get_untracked(),
            "name": name.get_untracked(),
            "admin": admin.get_untracked(),
            "sites": choice.value(),
            "limit": limit,
        })
        .to_string();
        let path = "/api/admin/agents".to_owned();
        submit("POST", path, Some(json), adding, refusal, move |body| {
            #[derive(Deserialize)]
            struct Made {
                agent: AgentSettings,
                password: String,
            }
            if let Ok(made) = serde_json::from_str::<Made>(&body) {
                password.set(Some((made.agent.email.clone(), made.password)));
                agents.update(|a| a.get_or_insert_with(Vec::new).push(made.agent));
            }
            email.set(String::new());
            name.set(String::new());
            admin.set(false);
        });
    };
    let current = move || {
        let id = chosen.get()?;
        agents.with_untracked(|a| a.as_ref()?.iter().find(|a| a.id == id).cloned())
    };
    view! {
        <div class="settings-split">
            <nav class="settings-list" aria-label=t("Agents")>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
                <Show when=move || agents.with(Option::is_some) fallback=|| view! { <p class="loading">{t("Loading agents…")}</p> }>
                    <ul>
                        <For
                            each=move || agents.get().unwrap_or_default()
                            key=|a| (a.id.clone(), a.admin, a.disabled, a.limit, a.sites.clone())
                            let:a
                        >
                            <li>
                                <button
                                    class="row-button"
                                    data-testid="agent-row"
                                    aria-current={
                                        let id = a.id.clone();
                                        move || (chosen.get().as_ref() == Some(&id)).then_some("true")
                                    }
                                    on:click={
                                        let id = a.id.clone();
                                        move |_| chosen.set(Some(id.clone()))
                                    }
                                >
                                    <span>{a.name.clone()}</span>
                                    <span class="hint">
                                        {format!(
                                            "{} · {}{}",
                                            a.email,
                                            if a.admin { t("admin") } else { t("agent") },
                                            if a.disabled { format!(" · {}", t("disabled")) } else { String::new() }
                                        )}
                                    </span>
                                </button>
                            </li>
                        </For>
                    </ul>
                </Show>
                <OneTime password=password />
                <form class="settings-form" on:submit=add novalidate=true aria-label=t("New agent")>
                    <h3>{t("New agent")}</h3>
                    <label>
                        {t("Email")}
                        <input
                            type="email"
                            data-testid="agent-new-email"
                            autocomplete="off"
                            prop:value=move || email.get()
                            on:input=move |ev| email.set(event_target_value(&ev))
                        />
                    </label>
                    <FieldErr refusal=refusal field="email" />
                    <label>
                        {t("Name")}
                        <input
                            data-testid="agent-new-name"
                            maxlength="100"
                            prop:value=move || name.get()
                            on:input=move |ev| name.set(event_target_value(&ev))
                        />
                    </label>
                    <FieldErr refusal=refusal field="name" />
                    <label class="check">
                        <input
                            type="checkbox"
                            data-testid="agent-new-admin"
                            prop:checked=move || admin.get()
                            on:change=move |ev| admin.set(event_target_checked(&ev))
                        />
                        {t("Admin (can change settings)")}
                    </label>
                    <label>
                        {t("Chat limit")}
                        <input
                            type="number"
                            min="0"
                            max="100"
                            data-testid="agent-new-limit"
                            prop:value=move || limit.get()
                            on:input=move |ev| limit.set(event_target_value(&ev))
                        />
                    </label>
                    <FieldErr refusal=refusal field="limit" />
                    <SitesPicker choice=choice sites=sites />
                    <FieldErr refusal=refusal field="sites" />
                    <FormErr refusal=refusal fields=&["email", "name", "limit", "sites"] />
                    <button type="submit" class="primary" data-testid="agent-add" prop:disabled=move || adding.get()>
                        {move || if adding.get() { t("Adding…") } else { t("Add agent") }}
                    </button>
                </form>
            </nav>
            {move || current().map(|agent| view! { <AgentEditor agent=agent agents=agents sites=sites password=password /> })}
        </div>
    }
}

/// One agent's settings.
#[component]
fn AgentEditor(
    agent: AgentSettings,
    agents: RwSignal<Option<Vec<AgentSettings>>>,
    sites: RwSignal<Option<Vec<SiteSettings>>>,
    password: RwSignal<Option<(String, String)>>,
) -> impl IntoView {
    let admin = RwSignal::new(agent.admin);
    let disabled = RwSignal::new(agent.disabled);
    let limit = RwSignal::new(agent.limit.to_string());
    let choice = SitesChoice::new(&agent.sites);
    let refusal = RwSignal::new(None::<Refusal>);
    let saving = RwSignal::new(false);
    let saved = RwSignal::new(false);
    let path = format!("/api/admin/agents/{}", agent.id);
    let keep = move |body: &str| {
        if let Ok(a) = serde_json::from_str::<AgentSettings>(body) {
            agents.update(|all| {
                if let Some(x) = all.iter_mut().flatten().find(|x| x.id == a.id) {
                    *x = a;
                }
            });
        }
    };
    let save = {
        let path = path.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            saved.set(false);
            let Ok(limit) = limit.get_untracked().trim().parse::<u32>() else {
                return refusal.set(Some(Refusal {
                    field: Some("limit".into()),
                    error: browser::sentence("a chat limit is 0 to 100"),
                }));
            };
            let json = serde_json::json!({
                "admin": admin.get_untracked(),
                "sites": choice.value(),
                "limit": limit,
                "disabled": disabled.get_untracked(),
            })
            .to_string();
            submit(
                "PUT",
                path.clone(),
                Some(json),
                saving,
                refusal,
                move |body| {
                    saved.set(true);
                    keep(&body);
                },
            );
        }
    };
    let email = agent.email.clone();
    let resetting = RwSignal::new(false);
    let reset = move |_| {
        let email = email.clone();
        let path = format!("{path}/password");
        submit("POST", path, None, resetting, refusal, move |body| {
            #[derive(Deserialize)]
            struct Fresh {
                password: String,
            }
            if let Ok(f) = serde_json::from_str::<Fresh>(&body) {
                password.set(Some((email, f.password)));
            }
        });
    };
    let status = match (agent.disabled, agent.sessions) {
        (true, _) => t("Disabled").to_owned(),
        (false, 0) => t("Not logged in").to_owned(),
        (false, 1) => t("Logged in on 1 browser").to_owned(),
        (false, n) => {
            let count = n.to_string();
            tf("Logged in on {count} browsers", &[("count", &count)])
        }
    };
    let presence = match agent.presence {
        Presence::Available => t("available"),
        Presence::Away => t("away"),
        Presence::Busy => t("busy"),
        Presence::Offline => t("offline"),
    };
    let chose = tf("chose to be {presence}", &[("presence", presence)]);
    view! {
        <form class="settings-form editor" on:submit=save novalidate=true aria-label=t("Agent settings") data-testid="agent-editor">
            <h3>{agent.name.clone()}</h3>
            <p class="hint">{format!("{} · {status} · {chose}", agent.email)}</p>
            <label class="check">
                <input
                    type="checkbox"
                    data-testid="agent-admin"
                    aria-describedby="error-admin"
                    prop:checked=move || admin.get()
                    on:change=move |ev| admin.set(event_target_checked(&ev))
                />
                {t("Admin (can change settings)")}
            </label>
            <FieldErr refusal=refusal field="admin" />
            <SitesPicker choice=choice sites=sites />
            <FieldErr refusal=refusal field="sites" />
            <label>
                {t("Chat limit (open conversations routing gives them; 0: none)")}
                <input
                    type="number"
                    min="0"
                    max="100"
                    data-testid="agent-limit"
                    prop:value=move || limit.get()
                    on:input=move |ev| limit.set(event_target_value(&ev))
                />
            </label>
            <FieldErr refusal=refusal field="limit" />
            <label class="check">
                <input
                    type="checkbox"
                    data-testid="agent-disabled"
                    prop:checked=move || disabled.get()
                    on:change=move |ev| disabled.set(event_target_checked(&ev))
                />
                {t("Disabled (cannot log in; open consoles close at once)")}
            </label>
            <FieldErr refusal=refusal field="disabled" />
            <FormErr refusal=refusal fields=&["admin", "sites", "limit", "disabled"] />
            <div class="actions">
                <button type="submit" class="primary" data-testid="agent-save" prop:disabled=move || saving.get()>
                    {move || if saving.get() { t("Saving…") } else { t("Save") }}
                </button>
                <button type="button" class="link" data-testid="agent-reset" on:click=reset prop:disabled=move || resetting.get()>
                    {move || if resetting.get() { t("Making a password…") } else { t("New password") }}
                </button>
                <Show when=move || saved.get()>
                    <span class="saved" role="status" data-testid="agent-saved">{t("Saved.")}</span>
                </Show>
            </div>
        </form>
    }
}

#[component]
fn Audit() -> impl IntoView {
    let entries = RwSignal::new(None::<Vec<AuditEntry>>);
    let error = RwSignal::new(None::<String>);
    load("/api/admin/audit", entries, error);
    view! {
        <Show when=move || error.get().is_some()>
            <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
        </Show>
        <Show when=move || entries.with(Option::is_some) fallback=|| view! { <p class="loading">{t("Loading the audit log…")}</p> }>
            <Show
                when=move || entries.with(|e| e.as_ref().is_some_and(|e| !e.is_empty()))
                fallback=|| view! { <p class="empty">{t("No settings changed yet.")}</p> }
            >
                <table class="audit">
                    <caption>{t("Settings changes, newest first")}</caption>
                    <thead>
                        <tr><th scope="col">{t("When")}</th><th scope="col">{t("Who")}</th><th scope="col">{t("What")}</th><th scope="col">{t("Details")}</th></tr>
                    </thead>
                    <tbody>
                        <For each=move || entries.get().unwrap_or_default().into_iter().enumerate() key=|(i, e)| (*i, e.at) let:e>
                            <tr data-testid="audit-row">
                                <td>{format!("{} {}", browser::date(e.1.at), browser::clock(e.1.at))}</td>
                                <td>{e.1.actor.clone()}</td>
                                <td>{e.1.action.clone()}</td>
                                <td>{e.1.detail.clone()}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </Show>
        </Show>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_one_per_line_or_separated() {
        assert_eq!(
            origin_list("https://a.example\n https://b.example, https://c.example  \n\n"),
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        assert!(origin_list(" \n ").is_empty());
    }

    #[test]
    fn clock_times_are_read_and_written_as_hh_mm() {
        assert_eq!(clock_text(9 * 60 + 5), "09:05");
        assert_eq!(minutes_of("17:59"), Some(17 * 60 + 59));
        assert_eq!(minutes_of(&clock_text(1439)), Some(1439));
        for bad in ["24:00", "9", "09:60", "a:b", ""] {
            assert_eq!(minutes_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_sentence_is_cut_at_its_placeholders() {
        assert_eq!(
            holes("For {email}: {password}"),
            [
                (false, "For "),
                (true, "email"),
                (false, ": "),
                (true, "password"),
                (false, "")
            ]
        );
        assert_eq!(holes("no {hole"), [(false, "no {hole")]);
    }

    #[test]
    fn the_steps_select_says_what_the_features_offer() {
        let mut f = SiteFeatures::default();
        assert_eq!(steps_of(&f), "video");
        f.video = false;
        assert_eq!(steps_of(&f), "voice");
        f.voice = false;
        assert_eq!(steps_of(&f), "chat");
    }
}
