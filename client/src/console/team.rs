//! Presence: the agent's own choice in the header (`available`, `away`, `offline`), the team
//! as the relay shows it, and `away` by itself after a while with the tab hidden and no input.

use escalera_protocol::{AgentId, ClientMsg, Presence, ServerMsg, TeamMember};
use leptos::prelude::*;

use crate::browser;
use crate::i18n::t;
use crate::link::Link;

/// What the console knows of presence.
#[derive(Clone, Copy)]
pub struct Team {
    /// This agent's own choice.
    pub mine: RwSignal<Presence>,
    /// Who this agent is (to find themselves in the team).
    pub me: RwSignal<Option<AgentId>>,
    /// The team, as the relay shows it (this agent included), by name.
    pub members: RwSignal<Vec<TeamMember>>,
    /// The choice to go back to when the console said `away` by itself.
    auto_away: StoredValue<Option<Presence>>,
    away_after_ms: StoredValue<f64>,
    last_input: StoredValue<f64>,
    link: Link,
}

impl Team {
    /// Presence over `link`: follows the welcome and the relay's news.
    pub fn new(link: Link) -> Self {
        let team = Self {
            mine: RwSignal::new(Presence::Available),
            me: RwSignal::new(None),
            members: RwSignal::new(Vec::new()),
            auto_away: StoredValue::new(None),
            away_after_ms: StoredValue::new(0.0),
            last_input: StoredValue::new(js_sys::Date::now()),
            link,
        };
        link.subscribe(move |msg| match msg {
            ServerMsg::WelcomeAgent {
                agent,
                presence,
                team: members,
                away_after_secs,
                ..
            } => {
                team.me.set(Some(agent.id.clone()));
                team.mine.set(*presence);
                team.members.set(members.clone());
                team.away_after_ms
                    .set_value(*away_after_secs as f64 * 1000.0);
                team.auto_away.set_value(None);
            }
            ServerMsg::Presence(member) => team.members.update(|list| {
                match list.iter_mut().find(|m| m.agent.id == member.agent.id) {
                    Some(m) => *m = member.clone(),
                    None => {
                        list.push(member.clone());
                        list.sort_by(|a, b| a.agent.name.cmp(&b.agent.name));
                    }
                }
            }),
            _ => {}
        });
        team.watch_idle();
        team
    }

    /// Chooses, and tells the relay.
    pub fn choose(&self, presence: Presence) {
        self.mine.set(presence);
        self.link.socket.send(&ClientMsg::Presence { presence });
    }

    /// This agent as the team sees them (busy during a call).
    pub fn shown(&self) -> Option<Presence> {
        let me = self.me.get()?;
        self.members
            .with(|list| list.iter().find(|m| m.agent.id == me).map(|m| m.presence))
    }

    /// `away` by itself once the tab has been hidden with no input for the relay's time, and
    /// back to the earlier choice on the first sign of life.
    fn watch_idle(self) {
        let alive = move |_: web_sys::Event| {
            self.last_input.set_value(js_sys::Date::now());
            if !browser::tab_hidden() {
                if let Some(before) = self.auto_away.get_value() {
                    self.auto_away.set_value(None);
                    if self.mine.get_untracked() == Presence::Away {
                        self.choose(before);
                    }
                }
            }
        };
        let handles = ["keydown", "pointerdown", "visibilitychange", "focus"]
            .map(|name| window_event_listener_untyped(name, alive));
        let check = gloo_timers::callback::Interval::new(2_000, move || {
            let after = self.away_after_ms.get_value();
            let idle = js_sys::Date::now() - self.last_input.get_value();
            if after > 0.0
                && browser::tab_hidden()
                && idle >= after
                && self.mine.get_untracked() == Presence::Available
            {
                self.auto_away.set_value(Some(Presence::Available));
                self.choose(Presence::Away);
            }
        });
        let check = StoredValue::new_local(Some(check));
        on_cleanup(move || {
            for h in handles {
                h.remove();
            }
            check.update_value(|c| drop(c.take()));
        });
    }
}

/// How a presence reads.
pub fn label(p: Presence) -> &'static str {
    match p {
        Presence::Available => t("Available"),
        Presence::Away => t("Away"),
        Presence::Busy => t("In a call"),
        Presence::Offline => t("Offline"),
    }
}

/// The header's choice, with "In a call" beside it while the relay says busy.
#[component]
pub fn PresenceSelect(team: Team) -> impl IntoView {
    let change = move |ev: leptos::ev::Event| {
        let value = event_target_value(&ev);
        let presence = match value.as_str() {
            "away" => Presence::Away,
            "offline" => Presence::Offline,
            _ => Presence::Available,
        };
        team.auto_away.set_value(None);
        team.choose(presence);
    };
    view! {
        <label class="presence">
            <span class=move || format!("dot {}", team.shown().unwrap_or(team.mine.get()).as_str())></span>
            <select
                data-testid="presence"
                aria-label=t("Your presence")
                prop:value=move || team.mine.get().as_str()
                on:change=change
            >
                <option value="available">{t("Available")}</option>
                <option value="away">{t("Away")}</option>
                <option value="offline">{t("Offline")}</option>
            </select>
            <Show when=move || team.shown() == Some(Presence::Busy)>
                <span class="busy" data-testid="presence-busy">{t("In a call")}</span>
            </Show>
        </label>
    }
}

/// The team: one row per agent sharing a site with this one, with their presence.
#[component]
pub fn TeamList(team: Team) -> impl IntoView {
    view! {
        <section class="team" aria-label=t("Team")>
            <h2>{t("Team")}</h2>
            <ul data-testid="team">
                <For
                    each=move || team.members.get()
                    key=|m| (m.agent.id.clone(), m.presence)
                    let:member
                >
                    <li
                        data-agent=member.agent.id.0.clone()
                        data-presence=member.presence.as_str()
                        class=format!("member {}", member.presence.as_str())
                    >
                        <span class=format!("dot {}", member.presence.as_str())></span>
                        <span class="name">{member.agent.name.clone()}</span>
                        <span class="state">{label(member.presence)}</span>
                    </li>
                </For>
            </ul>
        </section>
    }
}
