//! "Ana is typing…": sent while keys are pressed (at most every 2 s), shown for a few seconds
//! after the other side's last word of it.

use escalera_protocol::{Author, ClientMsg, ConversationId, ServerMsg};
use leptos::prelude::*;

use crate::i18n::{t, tf};
use crate::link::Link;

/// How often this side says it is typing, at most.
const SAY_EVERY_MS: f64 = 2_000.0;
/// How long "is typing" stays after the last word of it.
const SHOWN_FOR_MS: f64 = 4_000.0;

/// Who is typing where, as the relay told us.
#[derive(Clone, Copy)]
pub struct Typing {
    /// The conversation and what to show.
    shown: RwSignal<Option<(ConversationId, String)>>,
    said_at: StoredValue<f64>,
    /// Clears `shown` when it runs out; replaced (so cancelled) by each new word of typing.
    expiry: StoredValue<Option<gloo_timers::callback::Timeout>, LocalStorage>,
    link: Link,
}

impl Typing {
    /// Follows the other side's typing on `link`; a message from them ends it at once.
    pub fn new(link: Link) -> Self {
        let typing = Self {
            shown: RwSignal::new(None),
            said_at: StoredValue::new(0.0),
            expiry: StoredValue::new_local(None),
            link,
        };
        link.subscribe(move |msg| match msg {
            ServerMsg::Typing {
                conversation,
                author,
                name,
            } => {
                let who = match (author, name) {
                    (Author::Agent, Some(n)) => tf("{name} is typing…", &[("name", n)]),
                    (Author::Agent, None) => t("The agent is typing…").to_owned(),
                    _ => t("The visitor is typing…").to_owned(),
                };
                typing.shown.set(Some((conversation.clone(), who)));
                let shown = typing.shown;
                let clear = gloo_timers::callback::Timeout::new(SHOWN_FOR_MS as u32, move || {
                    shown.set(None)
                });
                typing.expiry.set_value(Some(clear));
            }
            ServerMsg::Message(m)
                if m.author != Author::System
                    && typing
                        .shown
                        .get_untracked()
                        .is_some_and(|(c, _)| c == m.conversation) =>
            {
                typing.shown.set(None);
            }
            _ => {}
        });
        typing
    }

    /// This side pressed a key in `conversation`'s composer.
    pub fn keystroke(&self, conversation: &ConversationId) {
        let now = js_sys::Date::now();
        if now - self.said_at.get_value() >= SAY_EVERY_MS {
            self.said_at.set_value(now);
            self.link.socket.send(&ClientMsg::Typing {
                conversation: conversation.clone(),
            });
        }
    }

    /// This side sent its message: the next key says "typing" again at once.
    pub fn sent(&self) {
        self.said_at.set_value(0.0);
    }

    /// What to show under `conversation`'s messages, if anything.
    pub fn line(&self, conversation: Option<ConversationId>) -> Option<String> {
        let (c, who) = self.shown.get()?;
        (Some(c) == conversation).then_some(who)
    }
}

/// The "is typing" line (announced to screen readers politely).
#[component]
pub fn TypingLine(
    typing: Typing,
    #[prop(into)] conversation: Signal<Option<ConversationId>>,
) -> impl IntoView {
    view! {
        <p class="typing" aria-live="polite">
            {move || typing.line(conversation.get()).map(|who| view! {
                <span data-testid="typing">{who}</span>
            })}
        </p>
    }
}
