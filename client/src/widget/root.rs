//! The visitor's chat: resumes the visitor's conversation (token in this origin's storage),
//! shows who is answering, sends with optimistic "sending…" lines that turn into stored ones
//! on the relay's ack, and resends what was not acknowledged after a reconnect or a reload.

use escalera_protocol::{
    ink_on, parse_color, Author, ClientMsg, ConversationId, ErrorCode, Identity, ServerMsg,
    SiteLook, VisitorToken, PROTOCOL_VERSION,
};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::host::{use_host, Host};
use super::standing::{AwayNotice, ClosedPanel, PreChat, QueueLine, Standing};
use crate::browser;
use crate::call::{use_call, CallButtons, CallPanel, IncomingCall};
use crate::chat::{
    Composer, MessageList, Pending, Thread, Typing, TypingLine, UploadList, Uploader,
};
use crate::i18n::{t, t_relay, tf};
use crate::link::use_link;
use crate::relay::Status;

/// Lets the widget's `<img>` and download links fetch this conversation's files: the relay
/// sets an HttpOnly cookie for `/files` from the token.
fn allow_downloads(token: String) {
    leptos::task::spawn_local(async move {
        let _ = browser::fetch_with_bearer("POST", "/api/visitor/session", &token).await;
    });
}

/// Storage keys, per site so one relay can serve several sites on one host.
struct Keys {
    token: String,
    outbox: String,
    /// The conversation whose visitor answered the pre-chat form.
    intro: String,
}

impl Keys {
    fn for_site(site: &str) -> Self {
        Self {
            token: format!("escalera:{site}:token"),
            outbox: format!("escalera:{site}:outbox"),
            intro: format!("escalera:{site}:intro"),
        }
    }
}

/// Where messages typed before the first welcome wait: no conversation yet.
fn unknown() -> ConversationId {
    ConversationId::from("")
}

/// The widget page (`/embed?site=KEY&origin=HOST`).
#[component]
pub fn Widget() -> impl IntoView {
    let Some(site) = browser::query_param("site") else {
        return view! { <p class="fatal">{t("This chat is not set up: the page has no site key.")}</p> }
            .into_any();
    };
    let keys = StoredValue::new(Keys::for_site(&site));
    // The host page's `Escalera.logout()`: this browser forgets the visitor (a shared
    // computer), before the first hello (`?logout=1`) or now (and starts afresh).
    let forget = move || {
        keys.with_value(|k| {
            browser::remove(&k.token);
            browser::remove(&k.outbox);
        })
    };
    if browser::query_param("logout").is_some() {
        forget();
    }
    let host = use_host();
    Effect::new(move || {
        if host.logout.get() {
            forget();
            let _ = browser::window().location().reload();
        }
    });
    // Framed, the host page first says who its logged-in user is, if anyone (widget.js
    // answers our ready at once); a new `Escalera.identify` starts the chat again as them.
    let site = StoredValue::new(site);
    let chat = move || match host.identity.get() {
        None => view! { <p class="loading" role="status">{t("Loading…")}</p> }.into_any(),
        Some(identity) => {
            view! { <Chat site=site.get_value() keys=keys host=host identity=identity /> }
                .into_any()
        }
    };
    chat.into_any()
}

/// The chat itself, as `identity` (if any).
#[component]
fn Chat(
    site: String,
    keys: StoredValue<Keys>,
    host: Host,
    identity: Option<Identity>,
) -> impl IntoView {
    let conversation = RwSignal::new(None::<ConversationId>);
    // True between the relay's welcome and the socket's loss: only then may we send.
    let welcomed = RwSignal::new(false);
    let site_name = RwSignal::new(String::new());
    let agent = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let seen_seq = RwSignal::new(0u64);
    let uploader = Uploader::new();
    // The largest file: the relay's limit, or the site's when it is lower.
    let relay_max = RwSignal::new(u64::MAX);
    // Whether the relay sends email (the transcript is then offered at the end).
    let mails = RwSignal::new(false);
    let standing = Standing::new();
    // How the site's widget looks; the page's `data-color` (passed on by widget.js) wins.
    let look = RwSignal::new(SiteLook::default());
    let page_color = browser::query_param("color").filter(|c| parse_color(c).is_some());
    let color = move || {
        page_color
            .clone()
            .unwrap_or_else(|| look.with(|l| l.color.clone()))
    };

    // A link from an email back to a conversation (widget.js passes it on): said in the first
    // hello only, as it works once.
    let resume = std::cell::RefCell::new(browser::query_param("resume"));
    let visitor = format!("/ws/visitor?site={site}");
    let link = use_link(&visitor, crate::frames::for_visitor, move || {
        let token = keys
            .with_value(|k| browser::load(&k.token))
            .map(VisitorToken);
        ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token,
            identity: identity.clone(),
            resume: resume.borrow_mut().take(),
        }
    });
    // What was typed but never acknowledged before a reload waits, under no conversation,
    // for the welcome to say which conversation it belongs to.
    if let Some(saved) = keys
        .with_value(|k| browser::load(&k.outbox))
        .and_then(|saved| serde_json::from_str::<Vec<Pending>>(&saved).ok())
    {
        link.threads.update(|t| {
            for p in saved {
                t.queue(&unknown(), p);
            }
        });
    }
    let call = use_call(link, Author::Visitor, uploader);
    let typing = Typing::new(link);
    // How far the agent has read (our messages up to it show as read).
    let read_upto = RwSignal::new(0u64);
    link.subscribe(move |msg| match msg {
        ServerMsg::WelcomeVisitor {
            token,
            conversation: id,
            site_name: name,
            agent_name,
            media,
            closed,
            rated,
            features,
            look: site_look,
        } => {
            call.features.set(*features);
            look.set(site_look.clone());
            host.look(site_look);
            keys.with_value(|k| browser::save(&k.token, token.as_str()));
            relay_max.set(media.max_upload);
            mails.set(media.email);
            uploader.bearer.set(Some(token.0.clone()));
            allow_downloads(token.0.clone());
            call.set_ice_servers(media.ice_servers.clone());
            call.focus(Some(id.clone()));
            // One conversation at a time: a new one (first visit, or the relay forgot us)
            // takes over whatever was still to be sent.
            link.threads.update(|t| t.only(id));
            if conversation.get_untracked().as_ref() != Some(id) {
                read_upto.set(0);
            }
            conversation.set(Some(id.clone()));
            welcomed.set(true);
            site_name.set(name.clone());
            agent.set(agent_name.clone());
            standing.closed.set(*closed);
            standing.rated.set(*rated);
            if agent_name.is_some() {
                standing.queue.set(None);
            }
        }
        // The host page hears what the other side says (`Escalera.on('message')`).
        ServerMsg::Message(m) if m.author != Author::Visitor => host.message(
            if m.author == Author::Agent {
                "agent"
            } else {
                "system"
            },
            m.author_name.as_deref(),
            &m.text,
        ),
        ServerMsg::AgentJoined { agent_name, .. } => {
            agent.set(Some(agent_name.clone()));
            standing.queue.set(None);
        }
        // No agent (any more, after a transfer to the queue or a reopening): our place in line.
        ServerMsg::Queue {
            position, online, ..
        } => {
            agent.set(None);
            standing.queue.set(Some((*position, *online)));
        }
        // The site's owner changed it: follow at once.
        ServerMsg::Site {
            site_name: name,
            features,
            look: site_look,
        } => {
            site_name.set(name.clone());
            call.features.set(*features);
            look.set(site_look.clone());
            host.look(site_look);
        }
        ServerMsg::Closed { .. } => {
            standing.closed.set(true);
            standing.rated.set(false);
        }
        ServerMsg::Read { seq, .. } => read_upto.update(|r| *r = (*r).max(*seq)),
        // TURN credentials come once an agent has joined.
        ServerMsg::Media { media, .. } => {
            relay_max.set(media.max_upload);
            call.set_ice_servers(media.ice_servers.clone());
        }
        ServerMsg::Error { code, message, .. } => {
            let text = match code {
                ErrorCode::RateLimited => {
                    t("You are sending messages too fast. Wait a moment.").to_owned()
                }
                _ => relay_said(message),
            };
            notice.set(Some(text));
        }
        _ => {}
    });
    Effect::new(move || {
        let site = call.features.with(|f| f.max_upload).unwrap_or(u64::MAX);
        uploader.max.set(relay_max.get().min(site));
    });
    let thread = Signal::derive(move || {
        let id = conversation.get().unwrap_or_else(unknown);
        link.threads
            .with(|t| t.get(&id).cloned().unwrap_or_default())
    });
    // The site's pre-chat form comes first in a new conversation, until it is answered.
    let introduced = RwSignal::new(false);
    Effect::new(move || {
        let id = conversation.get();
        let answered = keys.with_value(|k| browser::load(&k.intro));
        introduced.set(id.is_some_and(|id| answered.as_deref() == Some(id.0.as_str())));
    });
    let asking = Memo::new(move |_| {
        welcomed.get()
            && look.with(|l| l.pre_chat)
            && !introduced.get()
            && thread.with(Thread::is_empty)
    });
    let on_introduced = Callback::new(move |()| {
        if let Some(id) = conversation.get_untracked() {
            keys.with_value(|k| browser::save(&k.intro, &id.0));
        }
        introduced.set(true);
    });
    // The outbox survives a reload.
    Effect::new(move || {
        let json = link
            .threads
            .with(|t| serde_json::to_string(&t.outbox()).unwrap_or_default());
        keys.with_value(|k| browser::save(&k.outbox, &json));
    });

    // After every welcome: the call first (this socket takes our end back), then the
    // conversation, with what is unacknowledged.
    Effect::new(move || {
        if !welcomed.get() {
            return;
        }
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        call.resume();
        link.join(&id);
    });
    // Where the visitor is, for the agent: after every welcome and whenever the page changes.
    Effect::new(move || {
        let page = host.page.get();
        if !welcomed.get() {
            return;
        }
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        link.socket.send(&ClientMsg::Visit {
            conversation: id,
            info: super::host::visitor_info(page.unwrap_or_default()),
        });
    });
    // A new socket needs a new welcome before anything else is sent.
    Effect::new(move || {
        if link.socket.status.get() != Status::Online {
            welcomed.set(false);
        }
    });

    // Unread agent messages while the host keeps the widget closed.
    Effect::new(move || {
        let newest = thread.with(Thread::newest_seq);
        if host.open.get() {
            seen_seq.set(newest);
            host.unread(0);
        } else {
            let unread = thread.with(|t| t.count_after(seen_seq.get_untracked(), Author::Agent));
            host.unread(unread);
        }
    });

    let on_send = Callback::new(move |text: String| {
        notice.set(None);
        // Before the first welcome it waits under no conversation, with the restored ones.
        let id = conversation.get_untracked().unwrap_or_else(unknown);
        link.chat(&id, text);
        typing.sent();
        // Writing again reopens it.
        standing.closed.set(false);
    });
    let socket = link.socket;

    let title = move || agent.get().unwrap_or_else(|| site_name.get());
    let subtitle = move || match (socket.status.get(), agent.get()) {
        (Status::Offline, _) => t("Reconnecting…").to_owned(),
        (Status::Connecting, _) => t("Connecting…").to_owned(),
        (Status::Online, Some(_)) if standing.closed.get() => t("Conversation ended").to_owned(),
        (Status::Online, Some(name)) => tf("You're now talking with {name}", &[("name", &name)]),
        (Status::Online, None) if standing.nobody() => t("We're away right now").to_owned(),
        (Status::Online, None) => t("Waiting for an agent").to_owned(),
    };
    let framed = browser::query_param("origin").is_some();
    let on_files = Callback::new(move |files: Vec<web_sys::File>| {
        let Some(id) = conversation.get_untracked() else {
            return;
        };
        if !call.features.get_untracked().files {
            return notice.set(Some(t("This chat does not take files.").into()));
        }
        for f in files {
            uploader.send(&id, &f, &f.name());
        }
    });
    let dragging = RwSignal::new(false);
    // Business hours are checked again every minute.
    let minute = RwSignal::new(());
    let tick = gloo_timers::callback::Interval::new(60_000, move || minute.set(()));
    let tick = StoredValue::new_local(Some(tick));
    on_cleanup(move || {
        tick.try_update_value(Option::take);
    });
    // A dialog: shown, the focus goes to the message box; Esc closes it (back to the launcher,
    // which widget.js focuses), unless something inside used the key.
    Effect::new(move |was_open: Option<bool>| {
        let open = host.open.get();
        if open && was_open != Some(true) {
            if let Some(input) = browser::window()
                .document()
                .and_then(|d| d.query_selector("[data-testid=chat-input]").ok().flatten())
            {
                let _ = input.unchecked_into::<web_sys::HtmlElement>().focus();
            }
        }
        open
    });
    // Effects run once the view is on the page: the message box is there to type in. A mark
    // for profiling, and for `make bench` (click on the bubble -> input ready).
    Effect::new(move || {
        if let Some(p) = browser::window().performance() {
            let _ = p.mark("escalera:input-ready");
        }
    });
    let esc = window_event_listener(leptos::ev::keydown, move |ev| {
        if framed && ev.key() == "Escape" && !ev.default_prevented() {
            host.close();
        }
    });
    on_cleanup(move || esc.remove());

    // Through the CSSOM: the page's CSP (`style-src 'self'`) refuses style attributes.
    let root = NodeRef::<leptos::html::Div>::new();
    Effect::new(move || {
        let color = color();
        if let Some(el) = root.get() {
            let style = web_sys::HtmlElement::style(&el);
            let _ = style.set_property("--brand", &color);
            let _ = style.set_property("--on-brand", ink_on(&color));
        }
    });
    let greeting = Signal::derive(move || {
        look.with(|l| {
            if l.greeting.is_empty() {
                t("Hi! Ask us anything: an agent will answer here.").to_owned()
            } else {
                l.greeting.clone()
            }
        })
    });

    view! {
        <div
            class="widget"
            role="dialog"
            aria-labelledby="widget-title"
            node_ref=root
            class:dragging=move || dragging.get()
            on:dragover=move |ev| {
                ev.prevent_default();
                dragging.set(true);
            }
            on:dragleave=move |_| dragging.set(false)
            on:drop=move |ev| {
                ev.prevent_default();
                dragging.set(false);
                let files = ev.data_transfer().and_then(|d| d.files());
                on_files.run(crate::chat::files_of(files));
            }
        >
            <header class="widget-head">
                <div class="avatar" aria-hidden="true">
                    {move || title().chars().next().unwrap_or('?').to_ascii_uppercase().to_string()}
                </div>
                <div class="who">
                    <div class="title" id="widget-title" data-testid="widget-title">{title}</div>
                    <div class="subtitle" data-testid="agent-status">{subtitle}</div>
                </div>
                <CallButtons
                    ctl=call
                    ready=Signal::derive(move || {
                        welcomed.get()
                            && !standing.closed.get()
                            && (agent.with(Option::is_some) || standing.can_ring())
                    })
                    why_not=t("Calls are possible once you have written and an agent is available")
                />
                <Show when=move || framed>
                    <button class="icon" aria-label=t("Close chat") data-testid="widget-close" on:click=move |_| host.close()>
                        "×"
                    </button>
                </Show>
            </header>
            <Show when=move || socket.status.get() == Status::Offline>
                <div class="banner offline" role="status" data-testid="offline">
                    {t("Connection lost. Reconnecting… Your messages will be sent when we are back.")}
                </div>
            </Show>
            <IncomingCall ctl=call />
            <CallPanel ctl=call />
            <AwayNotice
                standing=standing
                link=link
                conversation=conversation
                message=Signal::derive(move || look.with(|l| l.away_message.clone()))
                closed_hours=Signal::derive(move || {
                    minute.track();
                    look.with(|l| l.hours.as_ref().is_some_and(|h| !browser::open_now(h)))
                })
            />
            <QueueLine standing=standing />
            <MessageList
                thread=thread
                me=Author::Visitor
                empty=greeting
                read_upto=Signal::derive(move || read_upto.get())
            />
            <TypingLine typing=typing conversation=conversation />
            <ClosedPanel standing=standing link=link conversation=conversation mails=mails />
            <Show when=move || notice.get().or(call.notice.get()).is_some()>
                <div class="banner notice" role="alert" data-testid="notice">
                    <span>{move || notice.get().or(call.notice.get()).unwrap_or_default()}</span>
                    <button class="link" on:click=move |_| { notice.set(None); call.notice.set(None); }>{t("Dismiss")}</button>
                </div>
            </Show>
            <UploadList uploader=uploader conversation=conversation />
            <Show when=move || asking.get()>
                <PreChat link=link conversation=conversation on_done=on_introduced />
            </Show>
            <Show when=move || !asking.get()>
            <Composer
                on_send=on_send
                disabled=false
                placeholder=t("Type your message…")
                on_files=on_files
                files_allowed=Signal::derive(move || call.features.get().files)
                on_typing=Callback::new(move |()| {
                    if let Some(id) = conversation.get_untracked() {
                        typing.keystroke(&id);
                    }
                })
            />
            </Show>
        </div>
    }
    .into_any()
}

/// A relay error's message in the viewer's language. A refusal reads "forbidden: REASON"; the
/// reason is translated on its own (the relay's texts are its reasons).
fn relay_said(message: &str) -> String {
    match message.strip_prefix("forbidden: ") {
        Some(reason) => tf("forbidden: {reason}", &[("reason", &t_relay(reason))]),
        None => t_relay(message),
    }
}
