//! The agents' desk through real sockets: presence, typing and read marks, notes, routing and
//! the queue, close / rate / reopen, transfer, nobody online, and calls from the queue.

mod common;

use common::{joined, queue_of, TestRelay, Ws};
use escalera_protocol::{
    Author, CallAction, CallKind, CallPhase, ClientMsg, ConversationId, ConversationStatus,
    ErrorCode, Presence, Rating, ServerMsg, TeamMember,
};
use escalera_relay::Config;

/// Says `text` as message `id`; waits for its ack and for what `pick` picks (in either
/// order: news of the conversation may come before or after the ack).
async fn say_then<T>(
    ws: &mut Ws,
    conv: &ConversationId,
    id: &str,
    text: &str,
    mut pick: impl FnMut(&ServerMsg) -> Option<T>,
) -> T {
    ws.send(&ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: id.into(),
        text: text.into(),
    })
    .await;
    let (mut acked, mut picked) = (false, None);
    while !acked || picked.is_none() {
        let m = ws.recv().await;
        acked |= matches!(&m, ServerMsg::Ack { client_id, .. } if client_id.0 == id);
        if picked.is_none() {
            picked = pick(&m);
        }
    }
    picked.expect("picked")
}

/// A place in line, for [`say_then`].
fn queued(m: &ServerMsg) -> Option<(u32, bool)> {
    match m {
        ServerMsg::Queue {
            position, online, ..
        } => Some((*position, *online)),
        _ => None,
    }
}

/// An agent's name, for [`say_then`].
fn agent_joined(m: &ServerMsg) -> Option<String> {
    match m {
        ServerMsg::AgentJoined { agent_name, .. } => Some(agent_name.clone()),
        _ => None,
    }
}

/// The next list row of `conv` with `status` an agent gets.
async fn row_of(
    ws: &mut Ws,
    conv: &ConversationId,
    status: ConversationStatus,
) -> escalera_protocol::ConversationSummary {
    ws.recv_until(|m| match m {
        ServerMsg::Conversation(s) if &s.id == conv && s.status == status => Some(s),
        _ => None,
    })
    .await
}

/// The next error code about `conv`.
async fn refused(ws: &mut Ws, conv: &ConversationId) -> ErrorCode {
    ws.recv_until(|m| match m {
        ServerMsg::Error {
            code,
            conversation: Some(c),
            ..
        } if &c == conv => Some(code),
        _ => None,
    })
    .await
}

/// A visitor's whole history as seen on a fresh join: (author, text).
async fn history_of(ws: &mut Ws, conv: &ConversationId) -> Vec<(Author, String)> {
    ws.send(&ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    })
    .await;
    common::history(ws)
        .await
        .into_iter()
        .map(|m| (m.author, m.text))
        .collect()
}

/// The team in an agent's welcome, as (name, presence), and their own choice.
fn team_of(welcome: &ServerMsg) -> (Vec<(String, Presence)>, Presence) {
    let ServerMsg::WelcomeAgent { team, presence, .. } = welcome else {
        panic!("{welcome:?}")
    };
    let names = team
        .iter()
        .map(|m| (m.agent.name.clone(), m.presence))
        .collect();
    (names, *presence)
}

/// The next presence news about `name`.
async fn news_of(ws: &mut Ws, name: &str) -> Presence {
    ws.recv_until(|m| match m {
        ServerMsg::Presence(TeamMember { agent, presence }) if agent.name == name => Some(presence),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_team_sees_each_agents_presence_live_and_it_is_stored() {
    // Limits: an agent's last console may be gone 1 s (default 30 s) before the team sees
    // them offline.
    let relay = TestRelay::start_with(Config {
        presence_grace_secs: 1,
        ..Config::default()
    })
    .await;
    // Ana serves every site, Ben one: they share it, so each is in the other's team.
    let (mut ana, welcome) = relay.agent("ana@shop.example").await;
    assert_eq!(
        team_of(&welcome),
        (
            vec![
                ("Ana".into(), Presence::Available),
                ("Ben".into(), Presence::Offline)
            ],
            Presence::Available
        )
    );
    let (mut ben, _) = relay.agent("ben@shop.example").await;
    assert_eq!(news_of(&mut ana, "Ben").await, Presence::Available);

    ben.send(&ClientMsg::Presence {
        presence: Presence::Away,
    })
    .await;
    assert_eq!(news_of(&mut ana, "Ben").await, Presence::Away);
    // Ben hears of himself too: his console opening, then his choice.
    assert_eq!(news_of(&mut ben, "Ben").await, Presence::Available);
    assert_eq!(news_of(&mut ben, "Ben").await, Presence::Away);
    // Busy is the relay's to say.
    ben.send(&ClientMsg::Presence {
        presence: Presence::Busy,
    })
    .await;
    assert_eq!(
        common::error(&mut ben).await,
        escalera_protocol::ErrorCode::Forbidden
    );
    // Stored: the database says so (the relay reads it at the next start).
    let record = relay.record().await;
    ben.send(&ClientMsg::Ping).await;
    ben.recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;
    let stored = record.agent_by_email("ben@shop.example".into()).await;
    assert_eq!(stored.unwrap().unwrap().presence, Presence::Away);

    // Ben's console goes: past the grace period the team sees him offline; back, as he chose.
    drop(ben);
    assert_eq!(news_of(&mut ana, "Ben").await, Presence::Offline);
    let (_ben, welcome) = relay.agent("ben@shop.example").await;
    assert_eq!(team_of(&welcome).1, Presence::Away);
    assert_eq!(news_of(&mut ana, "Ben").await, Presence::Away);
    // (A reload within the grace period changes nothing: the presence unit tests show it
    // without a race against the clock.)
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_goes_to_the_other_side_and_the_visitor_sees_what_was_read() {
    let relay = TestRelay::start().await;
    let (mut visitor, mut agent, conv, token) = relay.pair().await;
    let typing = ClientMsg::Typing {
        conversation: conv.clone(),
    };
    visitor.send(&typing).await;
    let (author, name) = agent
        .recv_until(|m| match m {
            ServerMsg::Typing { author, name, .. } => Some((author, name)),
            _ => None,
        })
        .await;
    assert_eq!((author, name), (escalera_protocol::Author::Visitor, None));
    agent.send(&typing).await;
    let name = visitor
        .recv_until(|m| match m {
            ServerMsg::Typing { name, .. } => Some(name),
            _ => None,
        })
        .await;
    assert_eq!(name.as_deref(), Some("Ana"));

    // Ana reads up to the visitor's first message (seq 1): the visitor hears it live...
    agent
        .send(&ClientMsg::Read {
            conversation: conv.clone(),
            seq: 1,
        })
        .await;
    let read = |m: ServerMsg| match m {
        ServerMsg::Read { seq, .. } => Some(seq),
        _ => None,
    };
    assert_eq!(visitor.recv_until(read).await, 1);
    // ...and a tab opened later hears it after the history.
    let (mut later, _, _) = relay.visitor(Some(token)).await;
    later
        .send(&ClientMsg::Join {
            conversation: conv.clone(),
            after_seq: 0,
        })
        .await;
    let history = common::history(&mut later).await;
    assert!(!history.is_empty());
    assert_eq!(later.recv_until(read).await, 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_never_reaches_a_visitor() {
    // Rule: a note is stored and sent to agents; a visitor's socket never gets it, live or in
    // history, and their history still covers its seq (so they do not ask for it again).
    let relay = TestRelay::start().await;
    let (mut visitor, mut agent, conv, token) = relay.pair().await;
    let secret = "VIP customer: refund without asking";
    agent
        .send(&ClientMsg::Note {
            conversation: conv.clone(),
            client_id: "n1".into(),
            text: secret.into(),
        })
        .await;
    let seq = common::ack(&mut agent).await.1;
    let stored = agent
        .recv_until(|m| match m {
            ServerMsg::Message(m) if m.seq == seq => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(stored.author, escalera_protocol::Author::Note);
    // Then a chat message: the visitor gets it, and nothing before it since the join.
    agent
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: "c1".into(),
            text: "Let me check that for you".into(),
        })
        .await;
    let next = visitor
        .recv_until(|m| match m {
            ServerMsg::Message(m) => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(next.text, "Let me check that for you");
    // A visitor's re-join: no note, and `upto` past it.
    let (mut again, _, _) = relay.visitor(Some(token)).await;
    again
        .send(&ClientMsg::Join {
            conversation: conv.clone(),
            after_seq: 0,
        })
        .await;
    let (messages, upto) = again
        .recv_until(|m| match m {
            ServerMsg::History { messages, upto, .. } => Some((messages, upto)),
            _ => None,
        })
        .await;
    assert!(messages
        .iter()
        .all(|m| m.author != escalera_protocol::Author::Note));
    assert!(!format!("{messages:?}").contains("VIP"));
    assert!(upto > seq, "upto {upto} covers the note at {seq}");
    // An agent's history has it.
    let (mut other, _) = relay.agent("ana@shop.example").await;
    other
        .send(&ClientMsg::Join {
            conversation: conv.clone(),
            after_seq: 0,
        })
        .await;
    let history = common::history(&mut other).await;
    assert!(history.iter().any(|m| m.text == secret));
    // A visitor cannot write one.
    visitor
        .send(&ClientMsg::Note {
            conversation: conv.clone(),
            client_id: "v".into(),
            text: "sneaky".into(),
        })
        .await;
    assert_eq!(
        common::error(&mut visitor).await,
        escalera_protocol::ErrorCode::Forbidden
    );
    relay.stop().await;
}

/// Ana and Cy (both serving every site, with room for `limit` conversations each), online.
async fn ana_and_cy(relay: &TestRelay, limit: u32) -> (Ws, Ws) {
    relay.add_agent("cy@shop.example", "Cy").await;
    relay.set_limit("ana@shop.example", limit).await;
    relay.set_limit("cy@shop.example", limit).await;
    let (ana, _) = relay.agent("ana@shop.example").await;
    let (cy, _) = relay.agent("cy@shop.example").await;
    (ana, cy)
}

#[tokio::test(flavor = "multi_thread")]
async fn new_conversations_go_to_the_least_busy_agent_and_the_rest_wait_in_line() {
    // Ana and Cy serve the shop, one conversation each at most.
    let relay = TestRelay::start().await;
    let (mut ana, mut cy) = ana_and_cy(&relay, 1).await;

    // Before writing, a visitor is told someone is there, and is not in line yet.
    let (mut v1, _, c1) = relay.visitor(None).await;
    assert_eq!(queue_of(&mut v1).await, (0, true));
    let first = say_then(&mut v1, &c1, "1", "First", agent_joined).await;
    let (mut v2, _, c2) = relay.visitor(None).await;
    let second = say_then(&mut v2, &c2, "1", "Second", agent_joined).await;
    let mut both = vec![first.clone(), second];
    both.sort();
    assert_eq!(both, ["Ana", "Cy"], "one each");

    // Both are full: the third and fourth wait, oldest first.
    let (mut v3, _, c3) = relay.visitor(None).await;
    assert_eq!(queue_of(&mut v3).await, (0, true));
    let place = say_then(&mut v3, &c3, "1", "Third", queued).await;
    assert_eq!(place, (1, true));
    let (mut v4, _, c4) = relay.visitor(None).await;
    assert_eq!(queue_of(&mut v4).await, (0, true));
    let place = say_then(&mut v4, &c4, "1", "Fourth", queued).await;
    assert_eq!(place, (2, true));

    // Whoever has the first closes it: the third is theirs, and the fourth moves up.
    let (closer, other) = match first.as_str() {
        "Ana" => (&mut ana, &mut cy),
        _ => (&mut cy, &mut ana),
    };
    closer
        .send(&ClientMsg::Close {
            conversation: c1.clone(),
        })
        .await;
    assert_eq!(joined(&mut v3).await, first);
    assert_eq!(queue_of(&mut v4).await, (1, true));
    let row = row_of(closer, &c3, ConversationStatus::Assigned).await;
    assert_eq!(row.agent.map(|a| a.name), Some(first.clone()));
    // A waiting conversation can still be taken by hand (limits are routing's, not theirs).
    other
        .send(&ClientMsg::Take {
            conversation: c4.clone(),
        })
        .await;
    assert_ne!(joined(&mut v4).await, first);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_outlives_a_restart_and_is_routed_when_an_agent_comes_back() {
    let relay = TestRelay::start().await;
    let (mut v, token, conv) = relay.visitor(None).await;
    // Nobody is there: the visitor is told so before writing.
    assert_eq!(queue_of(&mut v).await, (0, false));
    let place = say_then(&mut v, &conv, "1", "Anyone?", queued).await;
    assert_eq!(place, (1, false));
    // An email for the answer: checked, stored, shown to the agents.
    v.send(&ClientMsg::Contact {
        conversation: conv.clone(),
        email: "not an email".into(),
    })
    .await;
    assert_eq!(refused(&mut v, &conv).await, ErrorCode::BadText);
    history_of(&mut v, &conv).await;
    v.send(&ClientMsg::Contact {
        conversation: conv.clone(),
        email: "ines@example.com".into(),
    })
    .await;
    let line = common::message(&mut v).await;
    assert!(line.text.contains("ines@example.com"), "{line:?}");
    drop(v);
    let relay = relay.restart().await;
    let (mut v, _, again) = relay.visitor(Some(token)).await;
    assert_eq!(again, conv);
    assert_eq!(queue_of(&mut v).await, (1, false));
    // Ana's console opens: she is available, so it is hers.
    let (_ana, _) = relay.agent("ana@shop.example").await;
    assert_eq!(joined(&mut v).await, "Ana");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_conversation_is_rated_once_and_writing_again_reopens_it() {
    let relay = TestRelay::start().await;
    let (mut visitor, mut ana, conv, token) = relay.pair().await;
    // Only agents close, and only their own or waiting ones.
    visitor
        .send(&ClientMsg::Close {
            conversation: conv.clone(),
        })
        .await;
    assert_eq!(refused(&mut visitor, &conv).await, ErrorCode::Forbidden);
    // Rating an open conversation is refused.
    let rate = |rating, comment: Option<&str>| ClientMsg::Rate {
        conversation: conv.clone(),
        rating,
        comment: comment.map(str::to_owned),
    };
    visitor.send(&rate(Rating::Up, None)).await;
    assert_eq!(refused(&mut visitor, &conv).await, ErrorCode::Forbidden);

    ana.send(&ClientMsg::Close {
        conversation: conv.clone(),
    })
    .await;
    visitor
        .recv_until(|m| matches!(m, ServerMsg::Closed { .. }).then_some(()))
        .await;
    row_of(&mut ana, &conv, ConversationStatus::Closed).await;
    // Ana cannot write in it any more; the visitor rates it, once.
    ana.send(&ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: "late".into(),
        text: "One more thing".into(),
    })
    .await;
    assert_eq!(refused(&mut ana, &conv).await, ErrorCode::Forbidden);
    visitor
        .send(&rate(Rating::Down, Some("  Too slow  ")))
        .await;
    let row = ana
        .recv_until(|m| match m {
            ServerMsg::Conversation(s) if s.id == conv && s.rating.is_some() => Some(s),
            _ => None,
        })
        .await;
    assert_eq!(row.rating, Some(Rating::Down));
    let line = visitor
        .recv_until(|m| match m {
            ServerMsg::Message(m) if m.text.starts_with("The visitor rated") => Some(m.text),
            _ => None,
        })
        .await;
    assert_eq!(line, "The visitor rated the conversation 👎: Too slow");
    visitor.send(&rate(Rating::Up, None)).await;
    assert_eq!(refused(&mut visitor, &conv).await, ErrorCode::Forbidden);
    // A tab opened now is told it is closed and rated.
    let (tab, welcome) = relay.visitor_welcome(Some(token.clone())).await;
    assert!(
        matches!(
            welcome,
            ServerMsg::WelcomeVisitor {
                closed: true,
                rated: true,
                ..
            }
        ),
        "{welcome:?}"
    );
    drop(tab);

    // The visitor writes again: back to Ana, who is available.
    let who = say_then(
        &mut visitor,
        &conv,
        "again",
        "One more question",
        agent_joined,
    )
    .await;
    assert_eq!(who, "Ana");
    let row = row_of(&mut ana, &conv, ConversationStatus::Assigned).await;
    assert_eq!(row.rating, None);

    // Closed again while Ana is away: writing again puts it in the queue.
    ana.send(&ClientMsg::Close {
        conversation: conv.clone(),
    })
    .await;
    visitor
        .recv_until(|m| matches!(m, ServerMsg::Closed { .. }).then_some(()))
        .await;
    ana.send(&ClientMsg::Presence {
        presence: Presence::Away,
    })
    .await;
    news_of(&mut ana, "Ana").await;
    let place = say_then(&mut visitor, &conv, "third", "Hello?", queued).await;
    assert_eq!(place, (1, false));
    row_of(&mut ana, &conv, ConversationStatus::Waiting).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_hands_the_conversation_and_a_private_note_to_a_colleague() {
    let relay = TestRelay::start().await;
    relay.add_agent("cy@shop.example", "Cy").await;
    let (mut visitor, mut ana, conv, token) = relay.pair().await;
    let (mut cy, _) = relay.agent("cy@shop.example").await;
    let cy_id = cy_id(&mut ana).await;
    // Only the one who has it transfers it, and only to an agent of its site.
    cy.send(&ClientMsg::Transfer {
        conversation: conv.clone(),
        to: None,
        note: None,
    })
    .await;
    assert_eq!(refused(&mut cy, &conv).await, ErrorCode::AlreadyTaken);
    ana.send(&ClientMsg::Transfer {
        conversation: conv.clone(),
        to: Some("nobody".into()),
        note: None,
    })
    .await;
    assert_eq!(refused(&mut ana, &conv).await, ErrorCode::NotFound);

    // A call under way ends first, and the record says why.
    let call = |action| ClientMsg::Call {
        conversation: conv.clone(),
        action,
    };
    visitor
        .send(&call(CallAction::Start {
            kind: CallKind::Voice,
        }))
        .await;
    ana.recv_until(|m| matches!(m, ServerMsg::Call { call: Some(_), .. }).then_some(()))
        .await;
    ana.send(&call(CallAction::Accept)).await;
    visitor
        .recv_until(|m| match m {
            ServerMsg::Call { call: Some(c), .. } if c.phase == CallPhase::Active => Some(()),
            _ => None,
        })
        .await;
    let secret = "Wants a refund for order 1234";
    ana.send(&ClientMsg::Transfer {
        conversation: conv.clone(),
        to: Some(cy_id),
        note: Some(secret.into()),
    })
    .await;
    let ended = visitor
        .recv_until(|m| match m {
            ServerMsg::Message(m) if m.text.starts_with("Call ended") => Some(m.text),
            _ => None,
        })
        .await;
    // The transfer's own line follows it.
    assert!(ended.starts_with("Call ended, 0:"), "{ended}");
    assert_eq!(joined(&mut visitor).await, "Cy");
    // Cy's list has it as his.
    cy.recv_until(|m| match m {
        ServerMsg::Conversation(s)
            if s.id == conv && s.agent.as_ref().is_some_and(|a| a.name == "Cy") =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    // Cy sees the whole history and the note; the visitor never does.
    let theirs = history_of(&mut cy, &conv).await;
    assert!(
        theirs.contains(&(Author::Note, secret.to_owned())),
        "{theirs:?}"
    );
    assert!(theirs.contains(&(Author::Visitor, "Hello".to_owned())));
    // The transfer's line is stored after the new assignee is listed: Cy, joined now, has it
    // in the history or gets it live; then it is in the record for the visitor too.
    let line = "Ana transferred the conversation to Cy";
    if !theirs.contains(&(Author::System, line.to_owned())) {
        cy.recv_until(|m| match m {
            ServerMsg::Message(m) if m.text == line => Some(()),
            _ => None,
        })
        .await;
    }
    let (mut tab, _, _) = relay.visitor(Some(token)).await;
    let visible = history_of(&mut tab, &conv).await;
    assert!(visible
        .iter()
        .all(|(a, t)| *a != Author::Note && t != secret));
    assert!(visible.contains(&(
        Author::System,
        "Ana transferred the conversation to Cy".to_owned()
    )));
    // Ana no longer has it; Cy answers.
    ana.send(&ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: "late".into(),
        text: "Still me".into(),
    })
    .await;
    assert_eq!(refused(&mut ana, &conv).await, ErrorCode::AlreadyTaken);
    let back = |m: &ServerMsg| matches!(m, ServerMsg::Message(m) if m.text == "Hi, Cy here");
    say_then(&mut cy, &conv, "cy1", "Hi, Cy here", |m| {
        back(m).then_some(())
    })
    .await;

    // Back to the queue: with Ana available and room, routing gives it to her.
    cy.send(&ClientMsg::Transfer {
        conversation: conv.clone(),
        to: None,
        note: None,
    })
    .await;
    assert_eq!(joined(&mut visitor).await, "Ana");
    relay.stop().await;
}

/// Cy's id, from the team news Ana hears.
async fn cy_id(ana: &mut Ws) -> escalera_protocol::AgentId {
    ana.recv_until(|m| match m {
        ServerMsg::Presence(TeamMember { agent, .. }) if agent.name == "Cy" => Some(agent.id),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_from_the_queue_rings_every_available_agent_and_the_first_to_answer_gets_it() {
    // Both are available but have no room (limit 0): the conversation waits in the queue.
    let relay = TestRelay::start().await;
    let (mut ana, mut cy) = ana_and_cy(&relay, 0).await;
    let (mut visitor, _, conv) = relay.visitor(None).await;
    assert_eq!(queue_of(&mut visitor).await, (0, true));
    let call = |action| ClientMsg::Call {
        conversation: conv.clone(),
        action,
    };
    // Before writing it is in no queue: nobody to ring.
    visitor
        .send(&call(CallAction::Start {
            kind: CallKind::Voice,
        }))
        .await;
    assert_eq!(refused(&mut visitor, &conv).await, ErrorCode::Forbidden);
    let place = say_then(&mut visitor, &conv, "1", "Can I call?", queued).await;
    assert_eq!(place, (1, true));
    // Sharing a screen with nobody in particular is not a call from the queue.
    visitor
        .send(&call(CallAction::Start {
            kind: CallKind::Screen,
        }))
        .await;
    assert_eq!(refused(&mut visitor, &conv).await, ErrorCode::Forbidden);
    visitor
        .send(&call(CallAction::Start {
            kind: CallKind::Voice,
        }))
        .await;
    let ringing = |m: ServerMsg| match m {
        ServerMsg::Call {
            call: Some(info), ..
        } => Some(info.phase),
        _ => None,
    };
    assert_eq!(ana.recv_until(ringing).await, CallPhase::Ringing);
    assert_eq!(cy.recv_until(ringing).await, CallPhase::Ringing);

    ana.send(&call(CallAction::Accept)).await;
    let ana_view = ana
        .recv_until(|m| match m {
            ServerMsg::Call {
                call: Some(info), ..
            } if info.phase == CallPhase::Active => Some(info),
            _ => None,
        })
        .await;
    assert!(ana_view.party, "Ana is in the call");
    assert_eq!(joined(&mut visitor).await, "Ana");
    // Cy stops ringing: for him the call is gone.
    let cy_view = cy
        .recv_until(|m| match m {
            ServerMsg::Call { call, .. }
                if call.as_ref().is_none_or(|c| c.phase != CallPhase::Ringing) =>
            {
                Some(call)
            }
            _ => None,
        })
        .await;
    assert_eq!(cy_view, None);
    cy.send(&call(CallAction::Accept)).await;
    assert_eq!(refused(&mut cy, &conv).await, ErrorCode::AlreadyTaken);
    // Signals flow between the visitor and Ana only.
    visitor
        .send(&ClientMsg::Signal {
            conversation: conv.clone(),
            payload: "offer".into(),
        })
        .await;
    let got = ana
        .recv_until(|m| match m {
            ServerMsg::Signal { payload, .. } => Some(payload),
            _ => None,
        })
        .await;
    assert_eq!(got, "offer");
    // A barrier on Cy's socket: everything sent to him before his pong has arrived, and no
    // signal is among it.
    cy.send(&ClientMsg::Ping).await;
    cy.recv_until(|m| match m {
        ServerMsg::Signal { .. } => panic!("Cy got the call's signaling"),
        ServerMsg::Pong => Some(()),
        _ => None,
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn canned_replies_search_and_exports_answer_an_agent_for_their_sites_only() {
    let relay = TestRelay::start().await;
    let (mut visitor, mut ana, conv, _) = relay.pair().await;
    say_then(
        &mut visitor,
        &conv,
        "v2",
        "My bison jerky arrived crushed",
        |m| {
            matches!(m, ServerMsg::Message(m) if m.client_id.as_ref().is_some_and(|c| c.0 == "v2"))
                .then_some(())
        },
    )
    .await;
    ana.send(&ClientMsg::Note {
        conversation: conv.clone(),
        client_id: "n1".into(),
        text: "Refund approved for the jerky".into(),
    })
    .await;
    common::ack(&mut ana).await;

    let http = reqwest::Client::new();
    let own = format!("http://{}", relay.addr);
    let ana_cookie = relay.login("ana@shop.example").await;
    let ben_cookie = relay.login("ben@shop.example").await;
    let get = |path: &str, cookie: &str| http.get(relay.url(path)).header("cookie", cookie).send();

    // Canned replies: saved per site (a shortcut again replaces its text), listed, deleted.
    let save = |cookie: &str, origin: &str, body: serde_json::Value| {
        http.post(relay.url("/api/canned"))
            .header("cookie", cookie)
            .header("origin", origin)
            .json(&body)
            .send()
    };
    let shop = relay.site.key.0.clone();
    let body = |shortcut: &str, text: &str| serde_json::json!({ "site": shop, "shortcut": shortcut, "text": text });
    let res = save(
        &ana_cookie,
        &own,
        body("/Refund", "Hi {visitor}, {agent} here: refunded."),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let saved: escalera_protocol::CannedReply = res.json().await.unwrap();
    assert_eq!(saved.shortcut, "refund");
    let again: escalera_protocol::CannedReply =
        save(&ana_cookie, &own, body("refund", "Refunded."))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        (again.id.as_str(), again.text.as_str()),
        (saved.id.as_str(), "Refunded.")
    );
    for (bad, why) in [
        (body("no spaces", "x"), 400),
        (body("ok", "   "), 400),
        (body("ok", &"x".repeat(2001)), 400),
    ] {
        let res = save(&ana_cookie, &own, bad).await.unwrap();
        assert_eq!(res.status(), why);
    }
    // Another origin may not; Ben does not serve the shop.
    let res = save(&ana_cookie, "http://evil.example", body("evil", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = save(&ben_cookie, &own, body("mine", "x")).await.unwrap();
    assert_eq!(res.status(), 404);
    let listed: serde_json::Value = get("/api/canned", &ana_cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["replies"].as_array().unwrap().len(), 1);
    assert!(
        listed["sites"].as_array().unwrap().len() >= 2,
        "Ana serves every site"
    );
    let bens: serde_json::Value = get("/api/canned", &ben_cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(bens["replies"].as_array().unwrap().is_empty());
    let gone = http
        .delete(relay.url(&format!("/api/canned/{}", saved.id)))
        .header("cookie", &ben_cookie)
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "not Ben's to delete");
    let gone = http
        .delete(relay.url(&format!("/api/canned/{}", saved.id)))
        .header("cookie", &ana_cookie)
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);

    // Search: every word, the last one half typed; notes too, for agents; nothing for Ben.
    let search = |q: &str, cookie: &str| {
        let (url, cookie) = (relay.url(&format!("/api/search?q={q}")), cookie.to_owned());
        let http = http.clone();
        async move {
            let res = http.get(url).header("cookie", cookie).send().await.unwrap();
            res.json::<Vec<escalera_protocol::SearchHit>>()
                .await
                .unwrap()
        }
    };
    let both = search("JERK", &ana_cookie).await;
    assert_eq!(both.len(), 2);
    let one = search("bison%20jerk", &ana_cookie).await;
    assert_eq!(one.len(), 1, "every word");
    let hits: Vec<escalera_protocol::SearchHit> = get("/api/search?q=jerk", &ana_cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let found: Vec<(Author, &str)> = hits
        .iter()
        .map(|h| (h.author, h.snippet.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (Author::Note, "Refund approved for the jerky"),
            (Author::Visitor, "My bison jerky arrived crushed"),
        ]
    );
    assert!(hits.iter().all(|h| h.conversation == conv));
    let none: Vec<escalera_protocol::SearchHit> = get("/api/search?q=jerky", &ben_cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());
    let syntax: Vec<escalera_protocol::SearchHit> = get("/api/search?q=%22OR%20NEAR(", &ana_cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(syntax.is_empty(), "operators are words, never syntax");
    assert_eq!(get("/api/search?q=jerky", "").await.unwrap().status(), 401);

    // A file in the conversation, for the export to list.
    let uploaded: escalera_protocol::Message = http
        .post(relay.url(&format!("/api/conversations/{conv}/files")))
        .query(&[("name", "receipt.txt")])
        .header("cookie", &ana_cookie)
        .header("origin", &own)
        .body("paid")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_id = uploaded.attachment.unwrap().id;
    // Export: the transcript without notes unless asked, as text or JSON.
    let export = |query: &str, cookie: &str| {
        http.get(relay.url(&format!("/api/conversations/{conv}/export{query}")))
            .header("cookie", cookie)
            .send()
    };
    let res = export("", &ana_cookie).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let text = res.text().await.unwrap();
    assert!(
        text.contains("Visitor: My bison jerky arrived crushed"),
        "{text}"
    );
    assert!(text.contains("Ana: Hi"), "{text}");
    assert!(
        text.contains(&format!("Ana: [file] receipt.txt /files/{file_id}")),
        "attachments by name and link: {text}"
    );
    assert!(!text.contains("Refund approved"), "{text}");
    let with_notes = export("?notes=true", &ana_cookie)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(with_notes.contains("Note by Ana: Refund approved for the jerky"));
    let json: serde_json::Value = export("?format=json", &ana_cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let texts: Vec<&str> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"My bison jerky arrived crushed"));
    assert!(!texts.contains(&"Refund approved for the jerky"));
    assert_eq!(export("", &ben_cookie).await.unwrap().status(), 404);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_sees_where_the_visitor_is_live_and_can_name_them() {
    let relay = TestRelay::start().await;
    let (mut visitor, mut ana, conv, _) = relay.pair().await;
    let info = escalera_protocol::VisitorInfo {
        page: format!("https://shop.example/cart?{}", "x".repeat(3000)),
        title: "Cart".into(),
        referrer: "https://search.example/".into(),
        language: "pt-PT".into(),
        time_zone: "Europe/Lisbon".into(),
        utc_offset_minutes: 60,
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0".into(),
    };
    visitor
        .send(&ClientMsg::Visit {
            conversation: conv.clone(),
            info: info.clone(),
        })
        .await;
    let seen = ana
        .recv_until(|m| match m {
            ServerMsg::Visit { info, .. } => Some(info),
            _ => None,
        })
        .await;
    assert_eq!(seen.page.chars().count(), 2048, "cut to its limit");
    assert_eq!(
        (seen.time_zone.as_str(), seen.utc_offset_minutes),
        ("Europe/Lisbon", 60)
    );
    // Only for one's own conversation, and only visitors.
    let (mut other, _, _) = relay.visitor(None).await;
    other
        .send(&ClientMsg::Visit {
            conversation: conv.clone(),
            info: info.clone(),
        })
        .await;
    assert_eq!(refused(&mut other, &conv).await, ErrorCode::Forbidden);
    let name_them = |name: &str, email: &str| ClientMsg::SetVisitor {
        conversation: conv.clone(),
        name: Some(name.into()),
        email: Some(email.into()),
    };
    // A visitor introduces themselves (the pre-chat form), in their own conversation only,
    // and leaves no line in the record: the agents' list has the name.
    other.send(&name_them("Not me", "")).await;
    assert_eq!(refused(&mut other, &conv).await, ErrorCode::NotFound);
    // (The list row comes with their next message, as after the pre-chat form.)
    visitor.send(&name_them("Me", "")).await;
    visitor
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: "after-the-form".into(),
            text: "It's me".into(),
        })
        .await;
    ana.recv_until(|m| match m {
        ServerMsg::Conversation(s) if s.id == conv && s.visitor_label == "Me" => Some(()),
        ServerMsg::Message(m) if m.author != Author::Visitor => {
            panic!("no line for a visitor's own name: {m:?}")
        }
        _ => None,
    })
    .await;

    // Ana names the visitor: the list shows it, the record has a note.
    ana.send(&name_them("Inês Duarte", "not an email")).await;
    assert_eq!(refused(&mut ana, &conv).await, ErrorCode::BadText);
    ana.send(&name_them(" Inês Duarte ", "ines@example.com"))
        .await;
    let note = common::message(&mut ana).await;
    assert_eq!(
        (note.author, note.text.as_str()),
        (
            Author::Note,
            "The visitor's details: Inês Duarte · ines@example.com"
        )
    );
    let row = ana
        .recv_until(|m| match m {
            ServerMsg::Conversation(s) if s.visitor_label == "Inês Duarte" => Some(s),
            _ => None,
        })
        .await;
    assert_eq!(row.id, conv);
    // What the console reads when it opens the conversation.
    let cookie = relay.login("ana@shop.example").await;
    let details: serde_json::Value = reqwest::Client::new()
        .get(relay.url(&format!("/api/conversations/{conv}/visitor")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(details["name"], "Inês Duarte");
    assert_eq!(details["email"], "ines@example.com");
    assert_eq!(details["info"]["language"], "pt-PT");
    let ben = relay.login("ben@shop.example").await;
    let res = reqwest::Client::new()
        .get(relay.url(&format!("/api/conversations/{conv}/visitor")))
        .header("cookie", ben)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    relay.stop().await;
}

/// protocol/README.md: `welcome_agent` answers the hello, before anything else. Consoles
/// connect one after another while visitors keep the list changing (every message a new row
/// for the site's agents) and the team's presence moves: each console's first frame is its
/// welcome all the same, and every visitor message is stored while presence and routing
/// write beside them (the writer's deferred transaction used to fail there).
#[tokio::test]
async fn a_consoles_first_frame_is_its_welcome_while_the_list_changes() {
    let relay = TestRelay::start_with(Config {
        visitor_chat_rate: 1000,
        address_chat_rate: 1000,
        frame_rate: 1000,
        frame_burst: 1000,
        ..Config::default()
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut chatters = Vec::new();
    for v in 0..4 {
        let (mut visitor, _, conv) = relay.visitor(None).await;
        let stop = stop.clone();
        chatters.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = format!("v{v}-{n}");
                visitor
                    .send(&ClientMsg::Chat {
                        conversation: conv.clone(),
                        client_id: id.as_str().into(),
                        text: "still here".into(),
                    })
                    .await;
                // Every message is stored: never "could not store this" while the agents'
                // presence and the routing write beside it.
                visitor
                    .recv_until(|m| match m {
                        ServerMsg::Ack { client_id, .. } if client_id.0 == id => Some(()),
                        ServerMsg::Error { message, .. } => panic!("{id}: {message}"),
                        _ => None,
                    })
                    .await;
            }
            n
        }));
    }
    let cookie = relay.login("ana@shop.example").await;
    for _ in 0..40 {
        let (_console, first) = relay.console(&cookie).await;
        assert!(matches!(first, ServerMsg::WelcomeAgent { .. }), "{first:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in chatters {
        // The list did change meanwhile.
        assert!(c.await.unwrap() > 1);
    }
}
