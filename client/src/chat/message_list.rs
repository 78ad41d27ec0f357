//! The messages of a conversation, newest at the bottom. Text is always rendered as text
//! (Leptos escapes it); CSS keeps its newlines.

use escalera_protocol::Author;
use leptos::html;
use leptos::prelude::*;

use super::{Line, Thread};
use crate::browser::clock;

fn author_attr(a: Author) -> &'static str {
    match a {
        Author::Visitor => "visitor",
        Author::Agent => "agent",
        Author::System => "system",
    }
}

/// The message list. `me` is the side this browser writes as; `empty` is shown when there
/// is nothing yet.
#[component]
pub fn MessageList(
    thread: Signal<Thread>,
    me: Author,
    #[prop(into)] empty: String,
) -> impl IntoView {
    let list = NodeRef::<html::Div>::new();
    // Keep the newest message in view as messages arrive.
    Effect::new(move || {
        thread.track();
        if let Some(el) = list.get() {
            el.set_scroll_top(el.scroll_height());
        }
    });
    let lines = move || {
        thread.with(|t| {
            t.lines()
                .into_iter()
                .map(|l| match &l {
                    Line::Stored(m) => (format!("s{}", m.seq), l),
                    Line::Pending(p) => (format!("p{}", p.client_id), l),
                })
                .collect::<Vec<_>>()
        })
    };
    view! {
        <div class="messages" node_ref=list role="log" aria-live="polite">
            <Show when=move || thread.with(Thread::is_empty)>
                <p class="empty">{empty.clone()}</p>
            </Show>
            <For each=lines key=|(k, _)| k.clone() let:item>
                {line_view(item.1, me)}
            </For>
        </div>
    }
}

fn line_view(line: Line, me: Author) -> impl IntoView {
    let (author, name, text, at, pending, attachment) = match line {
        Line::Stored(m) => (
            m.author,
            m.author_name,
            m.text,
            Some(m.at),
            false,
            m.attachment,
        ),
        Line::Pending(p) => (me, None, p.text, None, true, None),
    };
    let side = if author == Author::System {
        "system"
    } else if author == me {
        "mine"
    } else {
        "theirs"
    };
    let meta = match (author, name, at) {
        (Author::System, _, _) => None,
        (_, _, None) => Some("Sending…".to_owned()),
        (Author::Agent, Some(n), Some(at)) if author != me => Some(format!("{n} · {}", clock(at))),
        (_, _, Some(at)) => Some(clock(at)),
    };
    view! {
        <div
            class=format!("msg {side}")
            class:pending=pending
            data-testid="message"
            data-author=author_attr(author)
            data-pending=pending.to_string()
        >
            {match attachment {
                Some(file) => view! { <div class="bubble has-file">
                    <span class="file-text" hidden>{text}</span>
                    <super::AttachmentView file=file />
                </div> }.into_any(),
                None => view! { <div class="bubble">{text}</div> }.into_any(),
            }}
            {meta.map(|m| view! { <div class="meta">{m}</div> })}
        </div>
    }
}
