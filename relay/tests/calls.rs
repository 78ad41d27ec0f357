//! Calls through real sockets: ringing, answering, signaling that reaches only the other end,
//! the record of each step, and ICE servers with minted TURN credentials.

mod common;

use std::time::Duration;

use common::{call, call_state, error, signal, TestRelay, Ws};
use escalera_protocol::{
    CallAction, CallKind, CallPhase, ClientMsg, ErrorCode, MediaKind, ServerMsg,
};

async fn note(ws: &mut Ws) -> String {
    ws.recv_until(|m| match m {
        ServerMsg::Message(m) if m.author == escalera_protocol::Author::System => Some(m.text),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_call_climbs_from_voice_to_video_and_screen_and_is_recorded() {
    let relay = TestRelay::start().await;
    let (mut visitor, mut agent, conv, token) = relay.pair().await;
    // A second tab of the visitor and another agent of the site look on.
    let (mut tab, _, _) = relay.visitor(Some(token)).await;
    tab.send(&ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    })
    .await;
    assert_eq!(call_state(&mut tab).await, None);

    agent
        .send(&call(
            &conv,
            CallAction::Start {
                kind: CallKind::Voice,
            },
        ))
        .await;
    let ringing = call_state(&mut visitor).await.unwrap();
    assert_eq!(
        (ringing.phase, ringing.caller_name.as_str()),
        (CallPhase::Ringing, "Ana")
    );
    assert!(call_state(&mut agent).await.unwrap().party);
    assert_eq!(
        call_state(&mut tab).await.unwrap().phase,
        CallPhase::Ringing
    );

    // Signaling before the answer is refused.
    agent.send(&signal(&conv, "early")).await;
    assert_eq!(error(&mut agent).await, ErrorCode::Forbidden);

    visitor.send(&call(&conv, CallAction::Accept)).await;
    let active = call_state(&mut visitor).await.unwrap();
    assert_eq!((active.phase, active.party), (CallPhase::Active, true));
    assert_eq!(note(&mut visitor).await, "Voice call started");
    let tab_view = call_state(&mut tab).await.unwrap();
    assert_eq!((tab_view.phase, tab_view.party), (CallPhase::Active, false));

    // Signaling goes to the other end only: not back, not to the other tab.
    agent
        .send(&signal(
            &conv,
            r#"{"description":{"type":"offer","sdp":"v=0"}}"#,
        ))
        .await;
    let got = visitor
        .recv_until(|m| match m {
            ServerMsg::Signal { payload, .. } => Some(payload),
            _ => None,
        })
        .await;
    assert_eq!(got, r#"{"description":{"type":"offer","sdp":"v=0"}}"#);
    visitor.send(&signal(&conv, "answer")).await;
    let got = agent
        .recv_until(|m| match m {
            ServerMsg::Signal { payload, .. } => Some(payload),
            _ => None,
        })
        .await;
    assert_eq!(got, "answer");
    let mut tab_saw_signal = false;
    while let Some(m) = tab.try_recv(Duration::from_millis(300)).await {
        tab_saw_signal |= matches!(m, ServerMsg::Signal { .. });
    }
    assert!(!tab_saw_signal, "signaling leaked to another tab");
    tab.send(&signal(&conv, "intruder")).await;
    assert_eq!(error(&mut tab).await, ErrorCode::Forbidden);

    visitor
        .send(&call(
            &conv,
            CallAction::Media {
                media: MediaKind::Camera,
                on: true,
            },
        ))
        .await;
    assert_eq!(note(&mut agent).await, "Visitor turned video on");
    assert_eq!(note(&mut visitor).await, "Visitor turned video on");
    agent
        .send(&call(
            &conv,
            CallAction::Media {
                media: MediaKind::Screen,
                on: true,
            },
        ))
        .await;
    assert_eq!(note(&mut visitor).await, "Ana shared their screen");
    agent.send(&call(&conv, CallAction::HangUp)).await;
    assert_eq!(call_state(&mut visitor).await, None);
    assert!(note(&mut visitor).await.starts_with("Call ended, 0:0"));
    relay.stop().await;
}

#[tokio::test]
async fn declined_calls_and_parties_gone_past_the_grace_period_end_for_both() {
    let relay = TestRelay::start_with(escalera_relay::Config {
        call_grace_ms: 1_500,
        ..Default::default()
    })
    .await;
    let (mut visitor, mut agent, conv, _) = relay.pair().await;
    visitor
        .send(&call(
            &conv,
            CallAction::Start {
                kind: CallKind::Video,
            },
        ))
        .await;
    assert_eq!(
        call_state(&mut visitor).await.unwrap().phase,
        CallPhase::Ringing
    );
    assert_eq!(
        call_state(&mut agent).await.unwrap().caller,
        escalera_protocol::Author::Visitor
    );
    agent.send(&call(&conv, CallAction::Decline)).await;
    assert_eq!(call_state(&mut visitor).await, None);
    assert_eq!(note(&mut visitor).await, "Call declined");
    assert_eq!(note(&mut agent).await, "Call declined");

    // A party whose socket goes away and does not come back within the grace period ends
    // the call; meanwhile the other end sees it away.
    visitor
        .send(&call(
            &conv,
            CallAction::Start {
                kind: CallKind::Screen,
            },
        ))
        .await;
    call_state(&mut agent).await;
    agent.send(&call(&conv, CallAction::Accept)).await;
    assert_eq!(note(&mut agent).await, "Visitor shared their screen");
    drop(visitor);
    let away = call_state(&mut agent).await.unwrap();
    assert!(away.party && away.away && away.phase == CallPhase::Active);
    assert_eq!(call_state(&mut agent).await, None);
    assert!(note(&mut agent).await.starts_with("Call ended, 0:0"));
    relay.stop().await;
}

#[tokio::test]
async fn a_party_that_reconnects_resumes_the_call_and_gets_what_was_signalled_meanwhile() {
    let relay = TestRelay::start().await;
    let (mut visitor, mut agent, conv, token) = relay.pair().await;
    let voice = CallAction::Start {
        kind: CallKind::Voice,
    };
    agent.send(&call(&conv, voice)).await;
    call_state(&mut visitor).await;
    visitor.send(&call(&conv, CallAction::Accept)).await;
    assert_eq!(note(&mut agent).await, "Voice call started");

    drop(visitor);
    assert!(call_state(&mut agent).await.unwrap().away);
    agent.send(&signal(&conv, "while you were away")).await;
    // A ping/pong barrier: the signal has been handled (held, not refused).
    agent.send(&ClientMsg::Ping).await;
    agent
        .recv_until(|m| match m {
            ServerMsg::Pong => Some(()),
            ServerMsg::Error { message, .. } => panic!("refused: {message}"),
            _ => None,
        })
        .await;

    let (mut back, _, _) = relay.visitor(Some(token)).await;
    back.send(&call(&conv, CallAction::Resume)).await;
    let held = back
        .recv_until(|m| match m {
            ServerMsg::Signal { payload, .. } => Some(payload),
            _ => None,
        })
        .await;
    assert_eq!(held, "while you were away");
    let resumed = call_state(&mut agent).await.unwrap();
    assert!(resumed.party && !resumed.away);
    back.send(&ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    })
    .await;
    let state = call_state(&mut back).await.unwrap();
    assert!(state.party && state.phase == CallPhase::Active);
    // Signaling flows both ways again, and hang-up ends it once, for both.
    back.send(&signal(&conv, "hello again")).await;
    let got = agent
        .recv_until(|m| match m {
            ServerMsg::Signal { payload, .. } => Some(payload),
            _ => None,
        })
        .await;
    assert_eq!(got, "hello again");
    back.send(&call(&conv, CallAction::HangUp)).await;
    assert!(note(&mut agent).await.starts_with("Call ended, 0:0"));
    relay.stop().await;
}

#[tokio::test]
async fn a_visitor_cannot_call_before_an_agent_joins() {
    let relay = TestRelay::start().await;
    let (mut visitor, _, conv) = relay.visitor(None).await;
    visitor
        .send(&call(
            &conv,
            CallAction::Start {
                kind: CallKind::Voice,
            },
        ))
        .await;
    let code = error(&mut visitor).await;
    assert_eq!(code, ErrorCode::Forbidden);
    relay.stop().await;
}

#[tokio::test]
async fn turn_credentials_are_minted_only_once_an_agent_has_joined() {
    // Rule: TURN relays media at the operator's cost, so an anonymous visitor's welcome
    // carries STUN only; the TURN credentials come when an agent joins (agents always get
    // them).
    let relay = TestRelay::start_with(escalera_relay::Config {
        ice: escalera_relay::ice::IceConfig {
            stun: vec!["stun:127.0.0.1:3478".into()],
            turn: vec!["turn:127.0.0.1:3478".into()],
            turn_secret: Some("north".into()),
            turn_ttl_secs: 600,
        },
        ..Default::default()
    })
    .await;
    let (mut visitor, _token, conv) = relay.visitor(None).await;
    // The welcome (read by `visitor`) had STUN only: a second tab shows what it carries.
    let (_, media) = {
        let mut ws = relay
            .visitor_socket(&relay.site.key, common::SHOP)
            .await
            .unwrap();
        ws.send(&ClientMsg::Hello {
            protocol: escalera_protocol::PROTOCOL_VERSION,
            token: None,
            identity: None,
            resume: None,
        })
        .await;
        let ServerMsg::WelcomeVisitor { media, .. } = ws.recv().await else {
            panic!("welcome")
        };
        (ws, media)
    };
    assert_eq!(media.max_upload, 25 << 20);
    assert_eq!(media.ice_servers.len(), 1);
    assert_eq!(media.ice_servers[0].urls, ["stun:127.0.0.1:3478"]);
    assert_eq!(media.ice_servers[0].credential, None);

    let check = |media: &escalera_protocol::MediaConfig| {
        assert_eq!(media.ice_servers[0].urls, ["stun:127.0.0.1:3478"]);
        let turn = &media.ice_servers[1];
        let user = turn.username.clone().unwrap();
        let expiry: i64 = user.split(':').next().unwrap().parse().unwrap();
        let now = escalera_relay::now_ms() / 1000;
        assert!((now + 590..=now + 610).contains(&expiry), "{user}");
        let (_, expected) = escalera_relay::ice::turn_credential(
            "north",
            expiry as u64,
            user.split_once(':').unwrap().1,
        );
        assert_eq!(turn.credential.as_deref(), Some(expected.as_str()));
    };
    visitor
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: "q".into(),
            text: "Can we talk?".into(),
        })
        .await;
    common::ack(&mut visitor).await;
    let (mut agent, welcome) = relay.agent("ana@shop.example").await;
    let ServerMsg::WelcomeAgent { media, .. } = welcome else {
        panic!("welcome")
    };
    check(&media);
    agent.send(&ClientMsg::Take { conversation: conv }).await;
    let media = visitor
        .recv_until(|m| match m {
            ServerMsg::Media { media, .. } => Some(media),
            _ => None,
        })
        .await;
    check(&media);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_offers_only_the_steps_and_extras_its_owner_chose() {
    // The shop offers chat and voice, screen sharing and snapshots, but no video and no files.
    let relay = TestRelay::start().await;
    relay
        .set_features(escalera_protocol::SiteFeatures {
            video: false,
            files: false,
            ..escalera_protocol::SiteFeatures::default()
        })
        .await;
    let (mut visitor, mut agent, conv, token) = relay.pair().await;
    let call = |action| ClientMsg::Call {
        conversation: conv.clone(),
        action,
    };
    let refusal = |m: ServerMsg| match m {
        ServerMsg::Error { code, message, .. } => Some((code, message)),
        _ => None,
    };
    visitor
        .send(&call(CallAction::Start {
            kind: CallKind::Video,
        }))
        .await;
    assert_eq!(
        visitor.recv_until(refusal).await,
        (
            ErrorCode::Forbidden,
            "forbidden: this site does not offer video calls".to_owned()
        )
    );
    // Voice works; the camera cannot be turned on in it.
    visitor
        .send(&call(CallAction::Start {
            kind: CallKind::Voice,
        }))
        .await;
    agent
        .recv_until(|m| matches!(m, ServerMsg::Call { call: Some(_), .. }).then_some(()))
        .await;
    agent.send(&call(CallAction::Accept)).await;
    visitor
        .recv_until(|m| match m {
            ServerMsg::Call { call: Some(c), .. } if c.phase == CallPhase::Active => Some(()),
            _ => None,
        })
        .await;
    agent
        .send(&call(CallAction::Media {
            media: MediaKind::Camera,
            on: true,
        }))
        .await;
    assert_eq!(
        agent.recv_until(refusal).await,
        (
            ErrorCode::Forbidden,
            "forbidden: this site does not offer video".to_owned()
        )
    );
    // Files are refused; a snapshot (a PNG named as the browsers name them) is taken.
    let post = |name: &'static str, body: Vec<u8>| {
        let (url, bearer) = (
            relay.url(&format!("/api/conversations/{conv}/files")),
            format!("Bearer {token}"),
        );
        async move {
            reqwest::Client::new()
                .post(url)
                .query(&[("name", name)])
                .header("authorization", bearer)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("notes.txt", b"hello".to_vec()).await, 403);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    assert_eq!(post("snapshot-2026.png", png).await, 201);
    // A new socket's welcome says what the site offers.
    let (_tab, welcome) = relay.visitor_welcome(Some(token)).await;
    let ServerMsg::WelcomeVisitor { features, .. } = welcome else {
        panic!("{welcome:?}")
    };
    assert!(features.voice && !features.video && !features.files && features.snapshots);
    relay.stop().await;
}
