//! Handing a conversation over: to a colleague (with their presence) or back to the queue,
//! with a private note for whoever gets it.

use escalera_protocol::{AgentId, ClientMsg, ConversationId, MAX_COMMENT_CHARS};
use leptos::prelude::*;

use super::root::Desk;
use super::team::label;
use crate::i18n::t;

/// The "Transfer" button and its form.
#[component]
pub fn Transfer(desk: Desk, conversation: Signal<Option<ConversationId>>) -> impl IntoView {
    let open = RwSignal::new(false);
    // "" is the queue.
    let target = RwSignal::new(String::new());
    let note = RwSignal::new(String::new());
    let colleagues = move || {
        let me = desk.team.me.get();
        desk.team.members.with(|list| {
            list.iter()
                .filter(|m| Some(&m.agent.id) != me.as_ref())
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        let to = Some(target.get_untracked())
            .filter(|t| !t.is_empty())
            .map(AgentId);
        let text = note.get_untracked();
        desk.link.socket.send(&ClientMsg::Transfer {
            conversation: id,
            to,
            note: Some(text).filter(|t| !t.trim().is_empty()),
        });
        open.set(false);
        note.set(String::new());
    };
    view! {
        <button
            class="secondary"
            data-testid="transfer"
            aria-expanded=move || open.get().to_string()
            on:click=move |_| open.update(|o| *o = !*o)
        >
            {t("Transfer")}
        </button>
        <Show when=move || open.get()>
            <form class="transfer" on:submit=submit aria-label=t("Transfer the conversation")>
                <label>
                    {t("To")}
                    <select
                        data-testid="transfer-target"
                        prop:value=move || target.get()
                        on:change=move |ev| target.set(event_target_value(&ev))
                    >
                        <option value="">{t("The queue (next available agent)")}</option>
                        <For each=colleagues key=|m| (m.agent.id.clone(), m.presence) let:m>
                            <option value=m.agent.id.0.clone() data-presence=m.presence.as_str()>
                                {format!("{} ({})", m.agent.name, label(m.presence))}
                            </option>
                        </For>
                    </select>
                </label>
                <label>
                    {t("Note for them (the visitor never sees it)")}
                    <textarea
                        data-testid="transfer-note"
                        maxlength=MAX_COMMENT_CHARS.to_string()
                        rows="2"
                        prop:value=move || note.get()
                        on:input=move |ev| note.set(event_target_value(&ev))
                    ></textarea>
                </label>
                <div class="actions">
                    <button type="button" class="link" on:click=move |_| open.set(false)>{t("Cancel")}</button>
                    <button type="submit" class="primary" data-testid="transfer-submit">
                        {move || if desk.call.in_call() { t("End the call and transfer") } else { t("Transfer") }}
                    </button>
                </div>
            </form>
        </Show>
    }
}
