//! Where the visitor's conversation stands, when no agent is in it: their place in line, "we're
//! away" with an email to leave, or "this conversation has ended" with a rating.

use escalera_protocol::{
    check_email, ClientMsg, ConversationId, Rating, MAX_COMMENT_CHARS, MAX_VISITOR_NAME_CHARS,
};
use leptos::prelude::*;

use crate::i18n::{t, tf};
use crate::link::Link;

/// What the relay said of the conversation's standing.
#[derive(Clone, Copy)]
pub struct Standing {
    /// Place in line (1 is next; 0 when not in the queue yet) and whether an agent of the
    /// site is available; `None` once an agent has it.
    pub queue: RwSignal<Option<(u32, bool)>>,
    /// An agent closed it (writing again reopens it).
    pub closed: RwSignal<bool>,
    /// The visitor rated it since.
    pub rated: RwSignal<bool>,
}

impl Standing {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self {
            queue: RwSignal::new(None),
            closed: RwSignal::new(false),
            rated: RwSignal::new(false),
        }
    }

    /// Whether the visitor is waiting with nobody available to answer.
    pub fn nobody(&self) -> bool {
        self.queue.with(|q| matches!(q, Some((_, false)))) && !self.closed.get()
    }

    /// Whether a call would ring someone: in the queue, with an agent of the site available.
    pub fn can_ring(&self) -> bool {
        self.queue.with(|q| matches!(q, Some((n, true)) if *n > 0)) && !self.closed.get()
    }
}

/// "You are number 2 in line", while agents are there but busy.
#[component]
pub fn QueueLine(standing: Standing) -> impl IntoView {
    let position = move || match standing.queue.get() {
        Some((n, true)) if n > 0 && !standing.closed.get() => Some(n),
        _ => None,
    };
    view! {
        {move || position().map(|n| view! {
            <div class="banner queue" role="status" data-testid="queue-position">
                {if n == 1 {
                    t("You are number 1 in line: an agent will be with you next.").to_owned()
                } else {
                    let number = n.to_string();
                    tf("You are number {number} in line. Thanks for waiting.", &[("number", &number)])
                }}
            </div>
        })}
    }
}

/// "We're away right now", with an optional email for the answer.
#[component]
pub fn AwayNotice(
    standing: Standing,
    link: Link,
    conversation: RwSignal<Option<ConversationId>>,
    /// The site's own words for it (empty: ours).
    #[prop(into)]
    message: Signal<String>,
    /// Outside the site's business hours (said even with agents online).
    #[prop(into)]
    closed_hours: Signal<bool>,
) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let sent = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = email.get_untracked();
        if let Err(e) = check_email(&text) {
            error.set(Some(crate::browser::sentence(e)));
            return;
        }
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        error.set(None);
        if link.socket.send(&ClientMsg::Contact {
            conversation: id,
            email: text.trim().to_owned(),
        }) {
            sent.set(true);
        } else {
            error.set(Some(
                t("You are offline: try again in a moment.").to_owned(),
            ));
        }
    };
    view! {
        <Show when=move || standing.nobody() || (closed_hours.get() && !standing.closed.get())>
            <div class="banner away" role="status" data-testid="away">
                <Show
                    when=move || message.with(String::is_empty)
                    fallback=move || view! { <span data-testid="away-message">{move || message.get()}</span> }
                >
                    <strong>
                        {move || if closed_hours.get() { t("We're closed right now.") } else { t("We're away right now.") }}
                    </strong>
                    " "
                    {t("Leave a message: we'll reply here as soon as we're back.")}
                </Show>
                <Show
                    when=move || !sent.get()
                    fallback=|| view! {
                        <p class="hint" data-testid="away-email-saved">
                            {t("Thanks! We'll answer here; keep this page or come back to it later.")}
                        </p>
                    }
                >
                    <EmailForm id="away-email" label=t("Your email (optional)") button=t("Save") email=email error=error on_submit=submit />
                </Show>
            </div>
        </Show>
    }
}

/// "This conversation has ended", with thumbs up or down and an optional comment.
#[component]
pub fn ClosedPanel(
    standing: Standing,
    link: Link,
    conversation: RwSignal<Option<ConversationId>>,
    /// Whether the relay sends email: the transcript is offered.
    #[prop(into)]
    mails: Signal<bool>,
) -> impl IntoView {
    let comment = RwSignal::new(String::new());
    // The transcript by email: the address, the refusal, where it was sent.
    let email = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let sent_to = RwSignal::new(None::<String>);
    let send_transcript = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = email.get_untracked().trim().to_owned();
        if let Err(e) = check_email(&text) {
            return error.set(Some(crate::browser::sentence(e)));
        }
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        let msg = ClientMsg::Transcript {
            conversation: id,
            email: text.clone(),
        };
        if link.socket.send(&msg) {
            error.set(None);
            sent_to.set(Some(text));
        } else {
            error.set(Some(
                t("You are offline: try again in a moment.").to_owned(),
            ));
        }
    };
    let rate = move |rating: Rating| {
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        let text = comment.get_untracked();
        if link.socket.send(&ClientMsg::Rate {
            conversation: id,
            rating,
            comment: Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
        }) {
            standing.rated.set(true);
        }
    };
    view! {
        <Show when=move || standing.closed.get()>
            <div class="banner ended" role="status" data-testid="closed">
                <strong>{t("This conversation has ended.")}</strong>
                " "
                {t("Write again any time to reopen it.")}
                <Show
                    when=move || !standing.rated.get()
                    fallback=|| view! { <p class="hint" data-testid="rated">{t("Thanks for your feedback!")}</p> }
                >
                    <div class="rating">
                        <span id="rate-label">{t("How did we do?")}</span>
                        <input
                            type="text"
                            data-testid="rating-comment"
                            aria-label=t("A comment (optional)")
                            placeholder=t("A comment (optional)")
                            maxlength=MAX_COMMENT_CHARS.to_string()
                            prop:value=move || comment.get()
                            on:input=move |ev| comment.set(event_target_value(&ev))
                        />
                        <div class="thumbs" role="group" aria-labelledby="rate-label">
                            <button class="icon" data-testid="rating-up" aria-label=t("Good") on:click=move |_| rate(Rating::Up)>"👍"</button>
                            <button class="icon" data-testid="rating-down" aria-label=t("Bad") on:click=move |_| rate(Rating::Down)>"👎"</button>
                        </div>
                    </div>
                </Show>
                <Show when=move || mails.get()>
                    <Show
                        when=move || sent_to.with(Option::is_none)
                        fallback=move || view! {
                            <p class="hint" data-testid="transcript-sent">
                                {move || tf("The transcript is on its way to {email}.", &[("email", &sent_to.get().unwrap_or_default())])}
                            </p>
                        }
                    >
                        <EmailForm
                            id="transcript-email"
                            label=t("Email me the transcript")
                            button=t("Send")
                            email=email
                            error=error
                            on_submit=send_transcript
                        />
                    </Show>
                </Show>
            </div>
        </Show>
    }
}

/// The site's pre-chat form: a name and an email, both optional, before the first message.
/// What is given is told to the agents (as the visitor's details); then the chat starts.
#[component]
pub fn PreChat(
    link: Link,
    conversation: RwSignal<Option<ConversationId>>,
    on_done: Callback<()>,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = Some(name.get_untracked().trim().to_owned()).filter(|n| !n.is_empty());
        let email = Some(email.get_untracked().trim().to_owned()).filter(|e| !e.is_empty());
        if let Some(Err(e)) = email.as_deref().map(check_email) {
            return error.set(Some(crate::browser::sentence(e)));
        }
        if name
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_VISITOR_NAME_CHARS)
        {
            return error.set(Some(crate::browser::sentence("that name is too long")));
        }
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        if name.is_some() || email.is_some() {
            let msg = ClientMsg::SetVisitor {
                conversation: id,
                name,
                email,
            };
            if !link.socket.send(&msg) {
                return error.set(Some(
                    t("You are offline: try again in a moment.").to_owned(),
                ));
            }
        }
        on_done.run(());
    };
    view! {
        <form class="pre-chat" data-testid="pre-chat" novalidate=true on:submit=submit>
            <p>{t("Before we start: how can we reach you? Both are optional.")}</p>
            <label>
                {t("Your name")}
                <input
                    type="text"
                    autocomplete="name"
                    data-testid="pre-chat-name"
                    maxlength=MAX_VISITOR_NAME_CHARS.to_string()
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                />
            </label>
            <label>
                {t("Your email")}
                <input
                    type="email"
                    autocomplete="email"
                    data-testid="pre-chat-email"
                    placeholder=t("you@example.com")
                    prop:value=move || email.get()
                    on:input=move |ev| email.set(event_target_value(&ev))
                />
            </label>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get()}</p>
            </Show>
            <button type="submit" class="primary" data-testid="pre-chat-start">{t("Start the chat")}</button>
        </form>
    }
}

/// One email address and a button, with the refusal under them. The input's id and test id is
/// `id`; the button's test id is `id` + `-submit`.
#[component]
fn EmailForm(
    id: &'static str,
    label: &'static str,
    button: &'static str,
    email: RwSignal<String>,
    error: RwSignal<Option<String>>,
    on_submit: impl Fn(leptos::ev::SubmitEvent) + 'static,
) -> impl IntoView {
    view! {
        <form class="email" novalidate=true on:submit=on_submit>
            <label for=id>{label}</label>
            <div class="row">
                <input
                    id=id
                    type="email"
                    autocomplete="email"
                    data-testid=id
                    placeholder=t("you@example.com")
                    prop:value=move || email.get()
                    on:input=move |ev| email.set(event_target_value(&ev))
                />
                <button type="submit" class="secondary" data-testid=format!("{id}-submit")>{button}</button>
            </div>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get()}</p>
            </Show>
        </form>
    }
}
