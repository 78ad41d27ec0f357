//! The relay through real sockets: tokio-tungstenite and reqwest clients against a relay bound
//! to port 0 on loopback.

mod common;

use std::time::Duration;

use common::{ack, error, history, message, spawn_binary, TestRelay, Ws, SHOP};
use escalera_protocol::{
    Author, ClientMsg, ClientMsgId, ConversationId, ErrorCode, ServerMsg, MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
};

fn chat(conversation: &ConversationId, id: &str, text: &str) -> ClientMsg {
    ClientMsg::Chat {
        conversation: conversation.clone(),
        client_id: ClientMsgId::from(id),
        text: text.to_owned(),
    }
}

fn join(conversation: &ConversationId, after_seq: u64) -> ClientMsg {
    ClientMsg::Join {
        conversation: conversation.clone(),
        after_seq,
    }
}

#[tokio::test]
async fn chat_flows_both_ways_and_the_agent_takes_by_replying() {
    let relay = TestRelay::start().await;
    // No routing: the conversation waits until Ana replies.
    relay.set_limit("ana@shop.example", 0).await;
    let (mut agent, _) = relay.agent("ana@shop.example").await;
    let (mut visitor, _, conv) = relay.visitor(None).await;
    visitor.send(&join(&conv, 0)).await;
    assert!(history(&mut visitor).await.is_empty());

    visitor
        .send(&chat(&conv, "v1", "Hello\n<b>there</b> 👋"))
        .await;
    assert_eq!(ack(&mut visitor).await, (ClientMsgId::from("v1"), 1));
    assert_eq!(message(&mut visitor).await.text, "Hello\n<b>there</b> 👋");

    // The agent hears of the new conversation in the queue, opens it and reads the history.
    let summary = agent
        .recv_until(|m| match m {
            ServerMsg::Conversation(s) => Some(s),
            _ => None,
        })
        .await;
    assert_eq!((summary.id.clone(), summary.last_seq), (conv.clone(), 1));
    assert_eq!(
        summary.status,
        escalera_protocol::ConversationStatus::Waiting
    );
    agent.send(&join(&conv, 0)).await;
    let h = history(&mut agent).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].author, Author::Visitor);

    // Replying to a waiting conversation takes it: the visitor learns who joined.
    agent.send(&chat(&conv, "a1", "Hi, I am Ana")).await;
    let name = visitor
        .recv_until(|m| match m {
            ServerMsg::AgentJoined { agent_name, .. } => Some(agent_name),
            _ => None,
        })
        .await;
    assert_eq!(name, "Ana");
    let system = message(&mut visitor).await;
    assert_eq!(
        (system.author, system.text.as_str()),
        (Author::System, "Ana joined the conversation")
    );
    let reply = message(&mut visitor).await;
    assert_eq!(reply.author, Author::Agent);
    assert_eq!(reply.author_name.as_deref(), Some("Ana"));
    assert_eq!(reply.seq, 3);
    relay.stop().await;
}

#[tokio::test]
async fn ack_comes_after_store_and_a_resent_id_is_stored_once() {
    let relay = TestRelay::start().await;
    let (mut visitor, token, conv) = relay.visitor(None).await;
    visitor.send(&chat(&conv, "same", "once")).await;
    let first = ack(&mut visitor).await;
    // The ack means it is in SQLite: a fresh connection reads it back.
    let (mut other_tab, _, _) = relay.visitor(Some(token)).await;
    other_tab.send(&join(&conv, 0)).await;
    assert_eq!(history(&mut other_tab).await.len(), 1);

    visitor.send(&chat(&conv, "same", "once")).await;
    assert_eq!(ack(&mut visitor).await, first);
    visitor.send(&join(&conv, 0)).await;
    let h = history(&mut visitor).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].client_id, Some(ClientMsgId::from("same")));
    relay.stop().await;
}

#[tokio::test]
async fn a_reconnecting_visitor_gets_exactly_what_it_missed() {
    let relay = TestRelay::start().await;
    let (mut visitor, token, conv) = relay.visitor(None).await;
    for i in 1..=3 {
        visitor
            .send(&chat(&conv, &format!("v{i}"), &format!("message {i}")))
            .await;
        ack(&mut visitor).await;
    }
    drop(visitor);

    let (mut agent, _) = relay.agent("ana@shop.example").await;
    agent
        .send(&chat(&conv, "a1", "answer while you were away"))
        .await;
    ack(&mut agent).await;

    let (mut visitor, again, same_conv) = relay.visitor(Some(token.clone())).await;
    assert_eq!((again, same_conv), (token, conv.clone()));
    visitor.send(&join(&conv, 3)).await;
    let missed = history(&mut visitor).await;
    let seqs: Vec<u64> = missed.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(missed[0].author, Author::System);
    assert_eq!(missed[1].text, "answer while you were away");
    relay.stop().await;
}

#[tokio::test]
async fn a_killed_relay_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let database = common::test_database().await;
    let site = {
        let store = common::record(dir.path(), database.as_deref()).await;
        common::seed(&*store).await.0
    };
    let (mut child, url) = spawn_binary(dir.path(), database.as_deref());
    let ws_url = format!(
        "{}/ws/visitor?site={}",
        url.replace("http://", "ws://"),
        site.key
    );
    let mut visitor = Ws::connect(&ws_url, SHOP, None).await.unwrap();
    visitor
        .send(&ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token: None,
            identity: None,
            resume: None,
        })
        .await;
    let (token, conv) = visitor
        .recv_until(|m| match m {
            ServerMsg::WelcomeVisitor {
                token,
                conversation,
                ..
            } => Some((token, conversation)),
            _ => None,
        })
        .await;
    for i in 0..25 {
        visitor
            .send(&chat(&conv, &format!("k{i}"), &format!("kept {i}")))
            .await;
    }
    let mut acked = Vec::new();
    while acked.len() < 25 {
        acked.push(ack(&mut visitor).await.1);
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();

    let (mut child, url) = spawn_binary(dir.path(), database.as_deref());
    let ws_url = format!(
        "{}/ws/visitor?site={}",
        url.replace("http://", "ws://"),
        site.key
    );
    let mut visitor = Ws::connect(&ws_url, SHOP, None).await.unwrap();
    visitor
        .send(&ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token: Some(token),
            identity: None,
            resume: None,
        })
        .await;
    visitor.recv().await;
    visitor.send(&join(&conv, 0)).await;
    let kept = history(&mut visitor).await;
    let seqs: Vec<u64> = kept.iter().map(|m| m.seq).collect();
    acked.sort();
    assert_eq!(seqs, acked);
    assert_eq!(kept[24].text, "kept 24");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sockets_from_foreign_origins_or_without_a_session_are_refused() {
    let relay = TestRelay::start().await;
    let site = relay.site.key.clone();
    assert_eq!(
        relay
            .visitor_socket(&site, "https://evil.example")
            .await
            .err(),
        Some(403)
    );
    // The other site's origin is not this site's.
    assert_eq!(
        relay
            .visitor_socket(&site, "https://other.example")
            .await
            .err(),
        Some(403)
    );
    assert!(relay.visitor_socket(&site, SHOP).await.is_ok());
    // The widget's iframe is on the relay's own origin.
    let own = format!("http://{}", relay.addr);
    assert!(relay.visitor_socket(&site, &own).await.is_ok());
    let unknown = escalera_protocol::SiteKey::from("nope");
    assert_eq!(relay.visitor_socket(&unknown, SHOP).await.err(), Some(404));

    let agent_url = format!("ws://{}/ws/agent", relay.addr);
    assert_eq!(Ws::connect(&agent_url, &own, None).await.err(), Some(401));
    assert_eq!(
        Ws::connect(&agent_url, &own, Some("escalera_session=forged"))
            .await
            .err(),
        Some(401)
    );
    let cookie = relay.login("ana@shop.example").await;
    assert_eq!(
        Ws::connect(&agent_url, SHOP, Some(&cookie)).await.err(),
        Some(403)
    );
    assert!(Ws::connect(&agent_url, &own, Some(&cookie)).await.is_ok());
    relay.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_frames_get_errors_and_the_socket_carries_on() {
    let relay = TestRelay::start().await;
    let (mut visitor, _, conv) = relay.visitor(None).await;

    visitor.send_text("this is not json").await;
    assert_eq!(error(&mut visitor).await, ErrorCode::BadFrame);
    visitor.send_text(r#"{"type":"launch_missiles"}"#).await;
    assert_eq!(error(&mut visitor).await, ErrorCode::BadFrame);
    visitor
        .send_text(r#"{"type":"chat","conversation":"x"}"#)
        .await;
    assert_eq!(error(&mut visitor).await, ErrorCode::BadFrame);
    let big = serde_json::to_string(&chat(&conv, "big", &"x".repeat(MAX_FRAME_BYTES))).unwrap();
    visitor.send_text(&big).await;
    assert_eq!(error(&mut visitor).await, ErrorCode::TooLarge);
    visitor.send(&chat(&conv, "empty", "  \n ")).await;
    assert_eq!(error(&mut visitor).await, ErrorCode::BadText);
    visitor
        .send(&ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token: None,
            identity: None,
            resume: None,
        })
        .await;
    assert_eq!(error(&mut visitor).await, ErrorCode::BadHello);
    assert!(
        visitor.closed_within(Duration::from_secs(2)).await,
        "a second hello closes"
    );

    // Still fine for everyone else, and for a new connection.
    let (mut visitor, _, conv) = relay.visitor(None).await;
    visitor.send(&chat(&conv, "ok", "still works")).await;
    assert_eq!(ack(&mut visitor).await.1, 1);

    // Far over the limit, the socket is closed rather than read into memory.
    visitor.send_text(&"y".repeat(4 * MAX_FRAME_BYTES)).await;
    assert!(visitor.closed_within(Duration::from_secs(2)).await);
    relay.stop().await;
}

#[tokio::test]
async fn nothing_before_hello_and_no_other_protocol() {
    let relay = TestRelay::start().await;
    let mut ws = relay.visitor_socket(&relay.site.key, SHOP).await.unwrap();
    ws.send(&ClientMsg::Ping).await;
    assert_eq!(error(&mut ws).await, ErrorCode::BadHello);
    assert!(ws.closed_within(Duration::from_secs(2)).await);

    let mut ws = relay.visitor_socket(&relay.site.key, SHOP).await.unwrap();
    ws.send(&ClientMsg::Hello {
        protocol: 99,
        token: None,
        identity: None,
        resume: None,
    })
    .await;
    assert_eq!(error(&mut ws).await, ErrorCode::BadHello);
    assert!(ws.closed_within(Duration::from_secs(2)).await);
    relay.stop().await;
}

#[tokio::test]
async fn a_visitor_cannot_reach_someone_elses_conversation() {
    let relay = TestRelay::start().await;
    let (mut alice, _, alice_conv) = relay.visitor(None).await;
    let (mut mallory, _, mallory_conv) = relay.visitor(None).await;
    assert_ne!(alice_conv, mallory_conv);
    assert_eq!(alice_conv.0.len(), 32, "128-bit ids");
    alice.send(&chat(&alice_conv, "a", "private")).await;
    ack(&mut alice).await;

    mallory.send(&join(&alice_conv, 0)).await;
    assert_eq!(error(&mut mallory).await, ErrorCode::NotFound);
    mallory.send(&chat(&alice_conv, "m", "injected")).await;
    assert_eq!(error(&mut mallory).await, ErrorCode::NotFound);
    mallory
        .send(&ClientMsg::Take {
            conversation: alice_conv.clone(),
        })
        .await;
    assert_eq!(error(&mut mallory).await, ErrorCode::NotFound);
    // Nothing leaked to Mallory, nothing added for Alice.
    assert!(mallory.try_recv(Duration::from_millis(200)).await.is_none());
    alice.send(&join(&alice_conv, 0)).await;
    assert_eq!(history(&mut alice).await.len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn the_first_agent_to_take_gets_it_and_scope_is_enforced() {
    let relay = TestRelay::start().await;
    // Routing gives nobody anything: taking by hand is what is tested.
    relay.set_limit("ana@shop.example", 0).await;
    let (mut ana, _) = relay.agent("ana@shop.example").await;
    let (mut ben, ben_welcome) = relay.agent("ben@shop.example").await;
    let (mut visitor, _, conv) = relay.visitor(None).await;
    visitor.send(&chat(&conv, "v", "help")).await;
    ack(&mut visitor).await;

    // Ben serves only the other site: he is told nothing and can do nothing here.
    assert!(
        matches!(ben_welcome, ServerMsg::WelcomeAgent { ref conversations, .. } if conversations.is_empty())
    );
    // (Only the team's presence reaches him: Ana serves his site too.)
    while let Some(m) = ben.try_recv(Duration::from_millis(200)).await {
        assert!(matches!(m, ServerMsg::Presence(_)), "Ben was told {m:?}");
    }
    ben.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    assert_eq!(error(&mut ben).await, ErrorCode::NotFound);

    // A second agent with Ana's scope: both take at once, exactly one wins.
    relay.add_agent("cy@shop.example", "Cy").await;
    relay.set_limit("cy@shop.example", 0).await;
    let (mut cy, _) = relay.agent("cy@shop.example").await;
    ana.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    cy.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    // Both hear who won: the conversation, now assigned. The loser's take is answered with
    // AlreadyTaken (before or after that news: the two race), the winner's with nothing.
    async fn outcome(ws: &mut Ws, conv: &ConversationId) -> (String, bool) {
        let mut refused = false;
        let winner = ws
            .recv_until(|m| match m {
                ServerMsg::Conversation(s) if &s.id == conv && s.agent.is_some() => {
                    s.agent.map(|a| a.name)
                }
                ServerMsg::Error {
                    code: ErrorCode::AlreadyTaken,
                    ..
                } => {
                    refused = true;
                    None
                }
                _ => None,
            })
            .await;
        (winner, refused)
    }
    let (ana_saw, cy_saw) = (
        outcome(&mut ana, &conv).await,
        outcome(&mut cy, &conv).await,
    );
    assert_eq!(ana_saw.0, cy_saw.0, "both see the same winner");
    let (loser, loser_refused, winner, winner_ws, winner_refused) = match ana_saw.0.as_str() {
        "Ana" => (&mut cy, cy_saw.1, "Ana", &mut ana, ana_saw.1),
        "Cy" => (&mut ana, ana_saw.1, "Cy", &mut cy, cy_saw.1),
        other => panic!("taken by {other}"),
    };
    if !loser_refused {
        assert_eq!(error(loser).await, ErrorCode::AlreadyTaken);
    }
    // The winner was not refused, up to a ping/pong after its news.
    winner_ws.send(&ClientMsg::Ping).await;
    let refused_late = winner_ws
        .recv_until(|m| match m {
            ServerMsg::Pong => Some(false),
            ServerMsg::Error {
                code: ErrorCode::AlreadyTaken,
                ..
            } => Some(true),
            _ => None,
        })
        .await;
    assert!(!winner_refused && !refused_late, "the winner was refused");
    // Everyone, the loser too, sees who has it.
    loser.send(&join(&conv, 0)).await;
    let h = history(loser).await;
    assert_eq!(
        h.last().unwrap().text,
        format!("{winner} joined the conversation")
    );
    // And cannot post into it.
    loser.send(&chat(&conv, "late", "me too")).await;
    assert_eq!(error(loser).await, ErrorCode::AlreadyTaken);
    relay.stop().await;
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_wrong_passwords_fail() {
    let relay = TestRelay::start().await;
    let http = reqwest::Client::new();
    let res = http
        .post(relay.url("/api/login"))
        .json(&serde_json::json!({ "email": "ana@shop.example", "password": "wrong" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .post(relay.url("/api/login"))
        .json(&serde_json::json!({ "email": "ANA@shop.example", "password": common::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    assert_eq!(session.len(), "escalera_session=".len() + 64);
    let me = http
        .get(relay.url("/api/me"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let body: serde_json::Value = me.json().await.unwrap();
    assert_eq!(body["name"], "Ana");
    let out = http
        .post(relay.url("/api/logout"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let me = http
        .get(relay.url("/api/me"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    relay.stop().await;
}

#[tokio::test]
async fn the_embed_page_may_be_framed_only_by_the_sites_origins() {
    let assets = tempfile::tempdir().unwrap();
    std::fs::create_dir(assets.path().join("widget")).unwrap();
    std::fs::write(
        assets.path().join("widget/index.html"),
        "<html><script type=\"module\">start()</script><script src=\"/app/x.js\"></script></html>",
    )
    .unwrap();
    let relay = TestRelay::start_with(escalera_relay::Config {
        assets_dir: Some(assets.path().to_owned()),
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();
    let key = relay.site.key.clone();
    let ok = http
        .get(relay.url(&format!(
            "/embed?site={key}&origin=https%3A%2F%2Fshop.example"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let policy = ok.headers()["content-security-policy"].to_str().unwrap();
    let directive = |name: &str| {
        policy
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        directive("frame-ancestors"),
        "frame-ancestors https://shop.example"
    );
    // Scripts: the relay's own files and the page's one inline loader, by its hash
    // (python3: base64(sha256(b"start()").digest())); nothing else inline, no eval.
    assert_eq!(
        directive("script-src"),
        "script-src 'self' 'wasm-unsafe-eval' 'sha256-DIm7WJS6ZKDYe5qFLPy+h4JFI9Bol5QmYC57mt3Fb00='"
    );
    assert_eq!(directive("default-src"), "default-src 'none'");
    assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
    assert_eq!(ok.headers()["referrer-policy"], "no-referrer");
    let evil = http
        .get(relay.url(&format!(
            "/embed?site={key}&origin=https%3A%2F%2Fevil.example"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let said = evil.text().await.unwrap();
    assert!(!said.contains("evil"), "the request is not echoed: {said}");
    let unknown = http
        .get(relay.url("/embed?site=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let js = http.get(relay.url("/widget.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("data-testid"));
    relay.stop().await;
}

/// Sends `GET path` exactly as written (HTTP clients normalise `..` away before sending) and
/// returns the status code.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn client_files_outside_the_assets_folder_cannot_be_read() {
    let root = tempfile::tempdir().unwrap();
    let dist = root.path().join("dist");
    std::fs::create_dir_all(dist.join("widget")).unwrap();
    std::fs::write(dist.join("widget/app.js"), "ok").unwrap();
    std::fs::write(root.path().join("secret"), "secret").unwrap();
    let relay = TestRelay::start_with(escalera_relay::Config {
        assets_dir: Some(dist),
        ..escalera_relay::Config::default()
    })
    .await;
    assert_eq!(raw_get(relay.addr, "/app/widget/app.js").await, 200);
    for path in [
        "/app/../secret",
        "/app/widget/../../secret",
        "/app/%2e%2e/secret",
        "/app/widget/%2E%2E/%2E%2E/secret",
        "/app/%2Fetc%2Fpasswd",
    ] {
        assert_eq!(raw_get(relay.addr, path).await, 404, "{path}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn widget_js_is_sent_in_the_coding_the_browser_asks_for() {
    use std::io::Read;
    let relay = TestRelay::start().await;
    // What is served: the source without its comments and indentation.
    let source = escalera_relay::slim::slim_js(include_str!("../static/widget.js"));
    assert!(!source.contains("// ") && source.contains("window.Escalera"));
    let http = reqwest::Client::new();
    let get = |coding: &'static str| {
        http.get(relay.url("/widget.js"))
            .header("accept-encoding", coding)
            .send()
    };
    let res = get("gzip, deflate, br").await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "br");
    assert_eq!(res.headers()["vary"], "accept-encoding");
    let body = res.bytes().await.unwrap();
    assert!(body.len() < source.len() / 2, "{} bytes", body.len());
    let mut text = String::new();
    brotli::Decompressor::new(&body[..], 4096)
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, source);

    let res = get("gzip").await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let body = res.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, source);

    let res = get("identity").await.unwrap();
    assert!(res.headers().get("content-encoding").is_none());
    assert_eq!(res.headers()["vary"], "accept-encoding");
    assert_eq!(res.text().await.unwrap(), source);
    relay.stop().await;
}

/// A page of history can be far larger than any frame a client may send (500 messages of up to
/// 8,000 characters): a socket joining from the start gets it whole, and stays open. (A cap of
/// 1 MiB on the relay's unwritten bytes once closed such a socket.)
#[tokio::test]
async fn a_history_page_larger_than_a_mebibyte_arrives_whole() {
    let relay = TestRelay::start_with(escalera_relay::Config {
        visitor_chat_rate: 1000,
        address_chat_rate: 1000,
        frame_rate: 1000,
        frame_burst: 1000,
        ..escalera_relay::Config::default()
    })
    .await;
    let (mut writer, token, conv) = relay.visitor(None).await;
    writer.send(&join(&conv, 0)).await;
    history(&mut writer).await;
    let long = "x".repeat(escalera_protocol::MAX_TEXT_CHARS);
    let count = 160;
    for i in 0..count {
        writer.send(&chat(&conv, &format!("m{i}"), &long)).await;
        ack(&mut writer).await;
    }
    let (mut reader, _, same) = relay.visitor(Some(token)).await;
    assert_eq!(same, conv);
    reader.send(&join(&conv, 0)).await;
    let page = history(&mut reader).await;
    let bytes: usize = page.iter().map(|m| m.text.len()).sum();
    assert_eq!(page.len(), count);
    assert!(bytes > 1 << 20, "{bytes} bytes of text");
    assert!(page.iter().all(|m| m.text == long));
    // Still open: it answers a ping.
    reader.send(&ClientMsg::Ping).await;
    reader
        .recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;
}

#[tokio::test]
async fn a_stopping_relay_closes_its_sockets_saying_to_reconnect() {
    let relay = TestRelay::start().await;
    let (mut visitor, _, _) = relay.visitor(None).await;
    let (mut agent, _) = relay.agent("ana@shop.example").await;
    let stopping = tokio::spawn(relay.stop());
    for ws in [&mut visitor, &mut agent] {
        assert_eq!(ws.close_code(Duration::from_secs(10)).await, Some(1012));
    }
    stopping.await.unwrap();
}
