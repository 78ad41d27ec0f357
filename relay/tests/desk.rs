//! The agents' desk through real sockets: presence.

mod common;

use common::{TestRelay, Ws};
use escalera_protocol::{ClientMsg, Presence, ServerMsg, TeamMember};
use escalera_relay::Config;

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
    let stored = || {
        let db = rusqlite::Connection::open(relay.dir.path().join("escalera.db")).unwrap();
        db.query_row(
            "SELECT presence FROM agents WHERE email = 'ben@shop.example'",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap()
    };
    ben.send(&ClientMsg::Ping).await;
    ben.recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;
    assert_eq!(stored(), "away");

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
