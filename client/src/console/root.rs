//! The console's root: who is logged in, the socket, and the inbox shared by the list and the
//! open conversation.

use std::collections::HashMap;

use escalera_protocol::{
    AgentRef, Author, ClientMsg, ConversationId, ErrorCode, ServerMsg, PROTOCOL_VERSION,
};
use leptos::prelude::*;
use serde::Deserialize;

use super::alerts::{notify, use_alerts, NotifyButton};
use super::canned::{Canned, CannedManager};
use super::conversation_list::ConversationList;
use super::conversation_view::ConversationView;
use super::login::Login;
use super::settings::Settings;
use super::state::{Filter, Inbox};
use super::team::{PresenceSelect, Team, TeamList};
use crate::browser;
use crate::call::{use_call, CallCtl, CallPanel, IncomingCall};
use crate::chat::{Draft, Typing, Uploader};
use crate::i18n::{t, t_relay, tf};
use crate::link::{use_link, Link};
use crate::relay::Status;

/// The logged-in agent, from `/api/me` or the login answer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Me {
    /// Display name.
    pub name: String,
    /// Login email.
    pub email: String,
    /// May change settings.
    #[serde(default)]
    pub admin: bool,
}

/// Whether we know who is logged in yet.
#[derive(Clone, Debug, PartialEq)]
enum Session {
    Checking,
    LoggedOut,
    LoggedIn(Me),
    Unreachable(String),
}

/// `/agent`.
#[component]
pub fn Console() -> impl IntoView {
    let session = RwSignal::new(Session::Checking);
    let check = move || {
        leptos::task::spawn_local(async move {
            let next = match browser::fetch("GET", "/api/me", None).await {
                Ok(r) if r.status == 200 => serde_json::from_str(&r.body)
                    .map(Session::LoggedIn)
                    .unwrap_or(Session::LoggedOut),
                Ok(r) if r.status == 401 => Session::LoggedOut,
                Ok(r) => {
                    let status = r.status.to_string();
                    let v = [("status", status.as_str())];
                    Session::Unreachable(tf("The server answered {status}.", &v))
                }
                Err(e) => Session::Unreachable(e),
            };
            session.set(next);
        })
    };
    check();
    let on_login = Callback::new(move |me: Me| session.set(Session::LoggedIn(me)));
    let on_logout = Callback::new(move |()| session.set(Session::LoggedOut));
    move || match session.get() {
        Session::Checking => view! { <p class="loading">{t("Loading…")}</p> }.into_any(),
        Session::LoggedOut => view! { <Login on_login=on_login /> }.into_any(),
        Session::Unreachable(e) => view! {
            <main class="login">
                <div class="card">
                    <p class="error" role="alert">{e}</p>
                    <button on:click=move |_| check()>{t("Try again")}</button>
                </div>
            </main>
        }
        .into_any(),
        Session::LoggedIn(me) => view! { <Workspace me=me on_logout=on_logout /> }.into_any(),
    }
}

/// What the list and the open conversation share.
#[derive(Clone, Copy)]
pub struct Desk {
    /// The socket, the threads and their outbox.
    pub link: Link,
    /// Conversations and read marks.
    pub inbox: RwSignal<Inbox>,
    /// The open conversation.
    pub selected: RwSignal<Option<ConversationId>>,
    /// Who we are, once welcomed.
    pub agent: RwSignal<Option<AgentRef>>,
    /// A message for the agent (e.g. "already taken").
    pub notice: RwSignal<Option<String>>,
    /// The call (one at a time).
    pub call: CallCtl,
    /// File uploads.
    pub uploader: Uploader,
    /// Who is typing.
    pub typing: Typing,
    /// The team and their presence (for transfers).
    pub team: Team,
    /// What the list shows.
    pub filter: RwSignal<Filter>,
    /// Canned replies.
    pub canned: Canned,
    /// What the search box holds.
    pub search: RwSignal<String>,
    /// A message to show in its conversation (a search result opened).
    pub found: RwSignal<Option<(ConversationId, u64)>>,
    /// Where the visitors of joined conversations are, live.
    pub visits: RwSignal<HashMap<ConversationId, escalera_protocol::VisitorInfo>>,
    /// Unsent replies, one per conversation (kept in this browser's storage, per agent, until
    /// logout).
    pub drafts: RwSignal<HashMap<ConversationId, String>>,
    /// Where the drafts are kept: one key per agent, so the next agent on this browser does
    /// not get them.
    drafts_key: StoredValue<String>,
}

/// Where the console keeps an agent's drafts across reloads; cleared at logout.
fn drafts_key(me: &Me) -> String {
    format!("escalera:console:drafts:{}", me.email)
}

/// A relay error's message in the agent's language. The relay writes "forbidden: <reason>"
/// and "<name> has already taken this conversation"; what the tables do not know stays as
/// the relay wrote it.
fn relay_message(message: &str) -> String {
    if let Some(name) = message.strip_suffix(" has already taken this conversation") {
        let v = [("name", name)];
        return tf("{name} has already taken this conversation", &v);
    }
    if let Some(reason) = message.strip_prefix("forbidden: ") {
        let translated = t_relay(reason);
        if translated != reason {
            return translated;
        }
    }
    t_relay(message)
}

fn load_drafts(key: &str) -> HashMap<ConversationId, String> {
    browser::load(key)
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

impl Desk {
    /// Opens a conversation: joins it (history after what we hold) and marks it read.
    pub fn open(&self, id: ConversationId) {
        if self
            .found
            .with_untracked(|f| f.as_ref().is_some_and(|(c, _)| *c != id))
        {
            self.found.set(None);
        }
        self.link.join(&id);
        self.selected.set(Some(id));
        self.notice.set(None);
        self.call.notice.set(None);
    }

    /// Joins every conversation assigned to us, so their messages and calls reach us live, and
    /// every one we still have replies to deliver to.
    fn join_mine(&self) {
        let Some(me) = self
            .agent
            .with_untracked(|a| a.as_ref().map(|a| a.id.clone()))
        else {
            return;
        };
        let mut mine: Vec<ConversationId> = self.inbox.with_untracked(|i| {
            i.list
                .iter()
                .filter(|c| c.agent.as_ref().is_some_and(|a| a.id == me))
                .map(|c| c.id.clone())
                .collect()
        });
        self.link
            .threads
            .with_untracked(|t| mine.extend(t.with_outbox().cloned()));
        for id in mine {
            self.link.join(&id);
        }
    }

    /// The composer's text for the open conversation: each conversation has its own draft,
    /// restored when the agent comes back to it.
    pub fn draft(&self) -> Draft {
        let (selected, drafts, key) = (self.selected, self.drafts, self.drafts_key);
        Draft {
            text: Signal::derive(move || {
                let id = selected.get();
                drafts.with(|d| id.and_then(|id| d.get(&id).cloned()).unwrap_or_default())
            }),
            set: Callback::new(move |text: String| {
                let Some(id) = selected.get_untracked() else {
                    return;
                };
                let change = |d: &mut HashMap<ConversationId, String>| {
                    if text.is_empty() {
                        d.remove(&id);
                    } else {
                        d.insert(id.clone(), text.clone());
                    }
                };
                drafts.update(change);
                // Only this conversation's entry changes in storage: another tab's drafts stay.
                key.with_value(|key| {
                    let mut stored = load_drafts(key);
                    change(&mut stored);
                    browser::save(key, &serde_json::to_string(&stored).unwrap_or_default());
                });
            }),
        }
    }

    /// Marks the open conversation read up to what we hold.
    pub fn mark_read(&self) {
        let Some(id) = self.selected.get_untracked() else {
            return;
        };
        // Update (and so notify) only when the mark moves: effects call this on every change.
        let threads = self.link.threads;
        if threads
            .with_untracked(|t| self.inbox.with_untracked(|i| i.unread_seq(&id, t)))
            .is_none()
        {
            return;
        }
        let moved = threads.with_untracked(|t| self.inbox.try_update(|i| i.mark_read(&id, t)));
        if let Some(seq) = moved.flatten() {
            self.link.socket.send(&ClientMsg::Read {
                conversation: id,
                seq,
            });
        }
    }
}

#[component]
fn Workspace(me: Me, on_logout: Callback<()>) -> impl IntoView {
    let inbox = RwSignal::new(Inbox::default());
    let selected = RwSignal::new(None::<ConversationId>);
    let agent = RwSignal::new(None::<AgentRef>);
    let notice = RwSignal::new(None::<String>);
    let welcomed = RwSignal::new(false);
    let uploader = Uploader::new();
    let link = use_link("/ws/agent", crate::frames::any, || ClientMsg::Hello {
        protocol: PROTOCOL_VERSION,
        token: None,
        identity: None,
        resume: None,
    });
    let call = use_call(link, Author::Agent, uploader);
    let team = Team::new(link);
    let typing = Typing::new(link);
    let desk = Desk {
        link,
        inbox,
        selected,
        agent,
        notice,
        call,
        uploader,
        typing,
        team,
        filter: RwSignal::new(Filter::Open),
        canned: Canned::new(),
        search: RwSignal::new(String::new()),
        found: RwSignal::new(None),
        visits: RwSignal::new(HashMap::new()),
        drafts: RwSignal::new(load_drafts(&drafts_key(&me))),
        drafts_key: StoredValue::new(drafts_key(&me)),
    };
    // After the call controller: it has taken up a call before this looks at it.
    link.subscribe(move |msg| match msg {
        ServerMsg::WelcomeAgent {
            agent: who,
            conversations,
            read,
            media,
            ..
        } => {
            inbox.update(|i| i.welcome(conversations.clone(), read.clone()));
            agent.set(Some(who.clone()));
            uploader.max.set(media.max_upload);
            call.set_ice_servers(media.ice_servers.clone());
            // Before any join: this socket takes our end of a call under way back.
            call.resume();
            desk.join_mine();
            desk.canned.load();
            welcomed.set(true);
        }
        ServerMsg::Conversation(summary) => {
            inbox.update(|i| i.upsert(summary.clone()));
            desk.join_mine();
        }
        ServerMsg::Visit { conversation, info } => desk.visits.update(|v| {
            v.insert(conversation.clone(), info.clone());
        }),
        ServerMsg::Call {
            conversation,
            call: Some(info),
        } => {
            // A visitor calling: bring their conversation up, once it is ours (a call from the
            // queue rings several agents; it is the one who answers who gets it).
            let ours = call.conversation.get_untracked().as_ref() == Some(conversation);
            let me = agent.with_untracked(|a| a.as_ref().map(|a| a.id.clone()));
            let assigned_to_me = inbox.with_untracked(|i| {
                i.summary(conversation)
                    .and_then(|s| s.agent.as_ref())
                    .is_some_and(|a| Some(&a.id) == me.as_ref())
            });
            if ours
                && info.caller == Author::Visitor
                && (info.party || assigned_to_me)
                && selected.get_untracked().as_ref() != Some(conversation)
            {
                desk.open(conversation.clone());
            }
            // Ringing in a background tab: the ring plays, and the desktop says so.
            if ours
                && browser::tab_hidden()
                && info.phase == escalera_protocol::CallPhase::Ringing
                && !info.party
            {
                notify(
                    t("Incoming call"),
                    &tf("{name} is calling", &[("name", &info.caller_name)]),
                );
            }
        }
        // Logged out elsewhere, expired, disabled: back to the login form.
        ServerMsg::Error {
            code: ErrorCode::SessionEnded,
            ..
        } => on_logout.run(()),
        ServerMsg::Error { message, .. } => notice.set(Some(relay_message(message))),
        _ => {}
    });
    use_alerts(desk);
    // Keyboard: Alt+Up / Alt+Down move through the list as shown, Esc leaves the conversation
    // (unless something inside used the key, e.g. closing the canned replies list).
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.default_prevented() {
            return;
        }
        match (ev.key().as_str(), ev.alt_key()) {
            (step @ ("ArrowUp" | "ArrowDown"), true) => {
                ev.prevent_default();
                let me = agent.with_untracked(|a| a.as_ref().map(|a| a.id.clone()));
                let rows =
                    inbox.with_untracked(|i| i.shown(desk.filter.get_untracked(), me.as_ref()));
                let at = selected.with_untracked(|s| {
                    s.as_ref()
                        .and_then(|s| rows.iter().position(|c| &c.id == s))
                });
                let next = match (at, step) {
                    (None, "ArrowDown") => Some(0),
                    (None, _) => rows.len().checked_sub(1),
                    (Some(i), "ArrowDown") => Some((i + 1).min(rows.len().saturating_sub(1))),
                    (Some(i), _) => Some(i.saturating_sub(1)),
                };
                if let Some(row) = next.and_then(|n| rows.get(n)) {
                    desk.open(row.id.clone());
                }
            }
            ("Escape", _) if selected.with_untracked(Option::is_some) => {
                desk.selected.set(None);
            }
            _ => {}
        }
    });
    on_cleanup(move || keys.remove());
    // What the call's conversation's site offers (the buttons follow it).
    Effect::new(move || {
        let features = call
            .conversation
            .get()
            .and_then(|id| inbox.with(|i| i.summary(&id).map(|s| s.features)));
        call.features.set(features.unwrap_or_default());
    });
    // Call buttons act on the open conversation, unless a call is under way elsewhere.
    Effect::new(move || call.focus(selected.get()));
    // Rejoin the open conversation after every reconnect (the relay forgets subscriptions).
    Effect::new(move || {
        if link.socket.status.get() != Status::Online {
            welcomed.set(false);
        }
    });
    Effect::new(move || {
        if welcomed.get() {
            if let Some(id) = selected.get_untracked() {
                desk.open(id);
            }
        }
    });
    // Whatever arrives in the open conversation, while the tab is visible, is read.
    Effect::new(move || {
        inbox.track();
        link.threads.track();
        selected.track();
        if !browser::tab_hidden() {
            desk.mark_read();
        }
    });
    let logout = move |_| {
        let key = desk.drafts_key.get_value();
        leptos::task::spawn_local(async move {
            let _ = browser::fetch("POST", "/api/logout", None).await;
            browser::remove(&key);
            on_logout.run(());
        });
    };
    let managing = RwSignal::new(false);
    let settings_open = RwSignal::new(false);
    let admin = me.admin;
    let waiting = move || {
        inbox.with(|i| {
            i.list
                .iter()
                .filter(|c| c.status == escalera_protocol::ConversationStatus::Waiting)
                .count()
        })
    };
    view! {
        <div class="console" class:has-selection=move || selected.with(Option::is_some)>
            <header class="console-head">
                <strong>"Escalera"</strong>
                <span class="queue" data-testid="queue-count">
                    {move || match waiting() {
                        0 => t("No one waiting").to_owned(),
                        1 => t("1 waiting").to_owned(),
                        n => tf("{count} waiting", &[("count", &n.to_string())]),
                    }}
                </span>
                <span class="grow"></span>
                <span data-testid="connection" class=move || match link.socket.status.get() {
                    Status::Online => "conn online",
                    Status::Connecting => "conn connecting",
                    Status::Offline => "conn offline",
                }>
                    {move || match link.socket.status.get() {
                        Status::Online => t("Online"),
                        Status::Connecting => t("Connecting…"),
                        Status::Offline => t("Reconnecting…"),
                    }}
                </span>
                <button class="link" data-testid="canned-manage" on:click=move |_| managing.update(|m| *m = !*m)>
                    {t("Canned replies")}
                </button>
                <Show when=move || admin>
                    <button
                        class="link"
                        data-testid="settings-open"
                        aria-expanded=move || settings_open.get().to_string()
                        on:click=move |_| settings_open.update(|o| *o = !*o)
                    >
                        {t("Settings")}
                    </button>
                </Show>
                <NotifyButton />
                <PresenceSelect team=team />
                <super::language::LanguageSelect />
                <span class="me">{me.name.clone()}</span>
                <button class="link" data-testid="logout" on:click=logout>{t("Log out")}</button>
            </header>
            <CannedManager canned=desk.canned open=managing />
            <Settings open=settings_open canned=desk.canned />
            <IncomingCall ctl=call />
            <CallPanel ctl=call />
            <div class="panes">
                <div class="side">
                    <ConversationList desk=desk />
                    <TeamList team=team />
                </div>
                <ConversationView desk=desk />
            </div>
        </div>
    }
}
