//! The messages of a conversation, newest at the bottom. Text is always rendered as text
//! (Leptos escapes it); CSS keeps its newlines.

use escalera_protocol::Author;
use leptos::html;
use leptos::prelude::*;

use super::{Line, Thread};
use crate::browser::clock;
use crate::i18n::{t, tf};

fn author_attr(a: Author) -> &'static str {
    match a {
        Author::Visitor => "visitor",
        Author::Agent => "agent",
        Author::System => "system",
        Author::Note => "note",
    }
}

/// The message list. `me` is the side this browser writes as; `empty` is shown when there
/// is nothing yet.
#[component]
pub fn MessageList(
    thread: Signal<Thread>,
    me: Author,
    #[prop(into)] empty: Signal<String>,
    /// How far the other side has read: this side's messages up to it say `data-read`.
    #[prop(optional)]
    read_upto: Option<Signal<u64>>,
    /// A message to bring into view and mark (a search result), by seq.
    #[prop(optional)]
    found: Option<Signal<Option<u64>>>,
) -> impl IntoView {
    let list = NodeRef::<html::Div>::new();
    // Keep the newest message in view as messages arrive, unless one was looked for: that one.
    Effect::new(move || {
        thread.track();
        let Some(el) = list.get() else {
            return;
        };
        match found.and_then(|f| f.get()) {
            Some(seq) => {
                let target = el
                    .query_selector(&format!("[data-seq=\"{seq}\"]"))
                    .ok()
                    .flatten();
                if let Some(target) = target {
                    let opts = web_sys::ScrollIntoViewOptions::new();
                    opts.set_block(web_sys::ScrollLogicalPosition::Center);
                    target.scroll_into_view_with_scroll_into_view_options(&opts);
                }
            }
            None => el.set_scroll_top(el.scroll_height()),
        }
    });
    let lines = move || {
        thread.with(|t| {
            t.lines()
                .into_iter()
                .map(|l| (line_key(&l), l))
                .collect::<Vec<_>>()
        })
    };
    // Focusable, so that a keyboard can scroll it (a scrollable region must be).
    view! {
        <div class="messages" data-testid="messages" node_ref=list role="log" aria-live="polite" aria-label=t("Messages") tabindex="0">
            <Show when=move || thread.with(Thread::is_empty)>
                <p class="empty">{move || empty.get()}</p>
            </Show>
            <For each=lines key=|(k, _)| k.clone() let:item>
                {line_view(item.1, me, read_upto, found)}
            </For>
        </div>
    }
}

/// A row's key, unique across conversations: `seq` starts at 1 in each of them, and a row kept
/// under a key keeps its text, so a key of `seq` alone showed one conversation's words in
/// another's after a switch. Pending lines carry a random client id.
fn line_key(line: &Line) -> String {
    match line {
        Line::Stored(m) => format!("{}/{}", m.conversation, m.seq),
        Line::Pending(p) => format!("pending/{}", p.client_id),
    }
}

fn line_view(
    line: Line,
    me: Author,
    read_upto: Option<Signal<u64>>,
    found: Option<Signal<Option<u64>>>,
) -> impl IntoView {
    let (author, name, text, at, pending, attachment, seq) = match line {
        Line::Stored(m) => (
            m.author,
            m.author_name,
            m.event.as_deref().map_or(m.text, super::said),
            Some(m.at),
            false,
            m.attachment,
            m.seq,
        ),
        Line::Pending(p) => {
            let author = if p.note { Author::Note } else { me };
            (author, None, p.text, None, true, None, 0)
        }
    };
    // Only this side's stored messages can be read by the other.
    let read = move || {
        let upto = read_upto.filter(|_| author == me && seq > 0)?;
        Some(if seq <= upto.get() { "true" } else { "false" })
    };
    let side = if author == Author::System {
        "system"
    } else if author == Author::Note {
        "note"
    } else if author == me {
        "mine"
    } else {
        "theirs"
    };
    let meta = match (author, name, at) {
        (Author::System, _, _) => None,
        (_, _, None) => Some(t("Sending…").to_owned()),
        (Author::Note, Some(n), Some(at)) => {
            let values = [("name", n.as_str()), ("time", &clock(at))];
            Some(tf("Note by {name} · {time}", &values))
        }
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
            data-read=read
            data-seq=(seq > 0).then_some(seq)
            data-found=move || (seq > 0 && found.and_then(|f| f.get()) == Some(seq)).then_some("true")
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

#[cfg(test)]
mod tests {
    use escalera_protocol::Message;

    use super::*;
    use crate::chat::Pending;

    fn stored(conversation: &str, seq: u64) -> Line {
        Line::Stored(Message {
            conversation: conversation.into(),
            seq,
            client_id: None,
            author: Author::Visitor,
            author_name: None,
            text: String::new(),
            event: None,
            attachment: None,
            at: 0,
        })
    }

    #[test]
    fn keys_differ_across_conversations_at_the_same_seq() {
        assert_ne!(line_key(&stored("a", 1)), line_key(&stored("b", 1)));
        assert_ne!(line_key(&stored("a", 1)), line_key(&stored("a", 2)));
        let pending = Line::Pending(Pending {
            client_id: "1".into(),
            text: String::new(),
            note: false,
        });
        assert_ne!(line_key(&pending), line_key(&stored("1", 1)));
    }
}
