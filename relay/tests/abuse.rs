//! Strangers cannot hurt the relay: each attack of the outside review, through real sockets,
//! is refused or bounded at the limit it states, and a bystander visitor and agent keep
//! chatting meanwhile. (How much an attack costs, in memory and in a bystander's latency, is
//! measured by `make abuse`, not asserted here.)

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{ack, TestRelay, Ws, PASSWORD};
use escalera_protocol::{ClientMsg, ClientMsgId, ConversationId, ErrorCode, ServerMsg};
use escalera_relay::guard::LoginLimits;
use escalera_relay::Config;

/// A client whose requests come from `127.0.0.N`: another address, as far as the relay sees.
fn from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

async fn try_login(
    client: &reqwest::Client,
    relay: &TestRelay,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(relay.url("/api/login"))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

/// The bystanders: a visitor and Ana in one conversation, set up before the attack.
struct Bystanders {
    visitor: Ws,
    agent: Ws,
    conversation: ConversationId,
    said: u32,
}

impl Bystanders {
    async fn start(relay: &TestRelay) -> Self {
        let (visitor, agent, conversation, _) = relay.pair().await;
        Self {
            visitor,
            agent,
            conversation,
            said: 0,
        }
    }

    /// One message each way, acknowledged and delivered.
    async fn still_chat(&mut self) {
        self.said += 1;
        let n = self.said;
        for (from, to) in [(0, 1), (1, 0)] {
            let id = ClientMsgId(format!("bystander-{n}-{from}"));
            let ends = [&mut self.visitor, &mut self.agent];
            ends[from]
                .send(&ClientMsg::Chat {
                    conversation: self.conversation.clone(),
                    client_id: id.clone(),
                    text: format!("still here {n}"),
                })
                .await;
            assert_eq!(ack(ends[from]).await.0, id);
            ends[to]
                .recv_until(|m| match m {
                    ServerMsg::Message(m) if m.client_id.as_ref() == Some(&id) => Some(()),
                    _ => None,
                })
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_one_agents_password_is_throttled_per_address_and_per_account() {
    // Limits: 10 attempts per address per 20 s, 20 per account per 5 minutes (the defaults).
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;

    // From one address: ten wrong guesses are answered 401, then 429 with Retry-After, even
    // for the right password. (The limit refills one attempt per 2 s, so a slow check lets a
    // few more through: counted from the time taken.)
    let attacker = from(2);
    let started = std::time::Instant::now();
    let mut guesses = 0;
    let refused = loop {
        let res = try_login(&attacker, &relay, "ana@shop.example", "guess").await;
        match res.status().as_u16() {
            401 => guesses += 1,
            429 => break res,
            other => panic!("answered {other}"),
        }
        assert!(guesses <= 100, "never throttled");
    };
    let refilled = started.elapsed().as_secs() / 2 + 1;
    assert!(
        (10..=10 + refilled).contains(&guesses),
        "{guesses} guesses before the address was throttled"
    );
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "retry after {wait} s");
    let res = try_login(&attacker, &relay, "ana@shop.example", PASSWORD).await;
    assert_eq!(res.status(), 429, "even the right password is not checked");
    bystanders.still_chat().await;

    // From many addresses, five each: the account takes twenty attempts in all, then nobody
    // may try it, the right password included, while other accounts are untouched.
    let mut attempts = guesses + 1; // and the bystander agent logged in once
    for n in 3.. {
        let mut throttled = false;
        for _ in 0..5 {
            let res = try_login(&from(n), &relay, "ana@shop.example", "guess").await;
            match res.status().as_u16() {
                401 => attempts += 1,
                429 => {
                    throttled = true;
                    break;
                }
                other => panic!("answered {other}"),
            }
        }
        if throttled {
            break;
        }
        assert!(attempts <= 200, "the account was never throttled");
    }
    let refilled = started.elapsed().as_secs() / 15 + 1;
    assert!(
        (20..=20 + refilled).contains(&attempts),
        "{attempts} attempts before the account was throttled"
    );
    let res = try_login(&from(99), &relay, "ana@shop.example", PASSWORD).await;
    assert_eq!(res.status(), 429);
    let res = try_login(&from(99), &relay, "ben@shop.example", PASSWORD).await;
    assert_eq!(res.status(), 200, "another account logs in");
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crowd_of_logins_is_hashed_a_few_at_a_time_and_the_rest_told_to_wait() {
    // Limit: one password check at once (set low so the crowd surely queues); a login that
    // gets no slot within 2 s is answered 503 with Retry-After.
    let config = Config {
        login: LoginLimits {
            concurrency: 1,
            ..LoginLimits::default()
        },
        ..Config::default()
    };
    let relay = TestRelay::start_with(config).await;
    let mut bystanders = Bystanders::start(&relay).await;
    let crowd: Vec<_> = (0..240u8)
        .map(|i| {
            let (client, url) = (from(10 + i), relay.url("/api/login"));
            tokio::spawn(async move {
                let res = client
                    .post(url)
                    .json(&serde_json::json!({ "email": format!("nobody{i}@x.example"), "password": "x" }))
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.headers().contains_key("retry-after"))
            })
        })
        .collect();
    bystanders.still_chat().await;
    let (mut unknown, mut busy) = (0, 0);
    for answer in crowd {
        match answer.await.unwrap() {
            (401, _) => unknown += 1,
            (503, true) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(busy > 0, "one slot cannot hash 240 passwords in 2 s");
    assert!(unknown > 0, "the slot was used");
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sibling_hosts_forms_cannot_log_an_agent_out_or_post_as_them() {
    // Rule: a state-changing request must come from the relay's own origin (`Origin`, else
    // `Sec-Fetch-Site`). The session cookie is SameSite=Strict, but a sibling host
    // (attacker.shop.test next to chat.shop.test) is the same site, so it is sent anyway.
    let relay = TestRelay::start().await;
    // Ana has room for the bystanders' conversation only: the new one waits, untaken.
    relay.set_limit("ana@shop.example", 1).await;
    let mut bystanders = Bystanders::start(&relay).await;
    let session = relay.login("ana@shop.example").await;
    let (mut visitor, _token, conversation) = relay.visitor(None).await;
    visitor
        .send(&ClientMsg::Chat {
            conversation: conversation.clone(),
            client_id: "first".into(),
            text: "Is anyone there?".into(),
        })
        .await;
    common::ack(&mut visitor).await;
    let http = reqwest::Client::new();
    let me = |http: reqwest::Client| {
        let (url, session) = (relay.url("/api/me"), session.clone());
        async move {
            http.get(url)
                .header("cookie", session)
                .send()
                .await
                .unwrap()
        }
    };

    // A form auto-submitted to /api/logout from the sibling: refused, the session lives on.
    let res = http
        .post(relay.url("/api/logout"))
        .header("cookie", &session)
        .header("origin", "http://attacker.shop.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        !res.headers().contains_key("set-cookie"),
        "the cookie is not cleared"
    );
    assert_eq!(me(http.clone()).await.status(), 200);

    // A text/plain form to the upload route: refused, by Origin or, without one, by
    // Sec-Fetch-Site; nothing is stored and the waiting conversation is not taken.
    let upload = relay.url(&format!(
        "/api/conversations/{conversation}/files?name=a.txt"
    ));
    for (name, value) in [
        ("origin", "http://attacker.shop.test"),
        ("sec-fetch-site", "same-site"),
    ] {
        let res = http
            .post(&upload)
            .header("cookie", &session)
            .header(name, value)
            .header("content-type", "text/plain")
            .body("a=b")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{name}: {value}");
    }
    // Nothing was posted, and nobody took it (taking writes "Ana joined the conversation").
    let (mut agent, _) = relay.agent("ana@shop.example").await;
    agent
        .send(&ClientMsg::Join {
            conversation: conversation.clone(),
            after_seq: 0,
        })
        .await;
    let texts: Vec<String> = common::history(&mut agent)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, vec!["Is anyone there?"]);

    // The relay's own page may (its Origin is the relay's).
    let res = http
        .post(relay.url("/api/logout"))
        .header("cookie", &session)
        .header("origin", relay.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(me(http.clone()).await.status(), 401);
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_session_cookie_set_by_a_sibling_is_refused_not_guessed_at() {
    let relay = TestRelay::start().await;
    let session = relay.login("ana@shop.example").await;
    let http = reqwest::Client::new();
    // The sibling's cookie for the whole domain comes first.
    let res = http
        .get(relay.url("/api/me"))
        .header("cookie", format!("escalera_session=planted; {session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let res = http
        .get(relay.url("/api/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invisible_messages_long_client_ids_and_bidi_file_names_are_refused_or_cleaned() {
    // Rules: a message needs a visible character; a client_id has at most 64 characters;
    // bidirectional controls are stripped from file names.
    let relay = TestRelay::start().await;
    let (mut visitor, mut agent, conversation, token) = relay.pair().await;
    let chat = |id: &str, text: &str| ClientMsg::Chat {
        conversation: conversation.clone(),
        client_id: ClientMsgId(id.to_owned()),
        text: text.to_owned(),
    };
    visitor
        .send(&chat("blank", "\u{200B}\u{2060} \u{FEFF}"))
        .await;
    assert_eq!(common::error(&mut visitor).await, ErrorCode::BadText);
    visitor.send(&chat(&"x".repeat(65), "hello")).await;
    assert_eq!(common::error(&mut visitor).await, ErrorCode::BadFrame);
    visitor.send(&chat(&"x".repeat(64), "hello")).await;
    assert_eq!(ack(&mut visitor).await.0, ClientMsgId("x".repeat(64)));

    let res = reqwest::Client::new()
        .post(relay.url(&format!(
            "/api/conversations/{conversation}/files?name=invoice%E2%80%AEgpj.exe"
        )))
        .bearer_auth(&token.0)
        .body("MZ not really")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let stored = agent
        .recv_until(|m| match m {
            ServerMsg::Message(m) => m.attachment,
            _ => None,
        })
        .await;
    assert_eq!(stored.name, "invoicegpj.exe");
    relay.stop().await;
}

/// An agent's socket on the session `cookie`, welcomed.
async fn console(relay: &TestRelay, cookie: &str) -> Ws {
    let (ws, first) = relay.console(cookie).await;
    assert!(matches!(first, ServerMsg::WelcomeAgent { .. }), "{first:?}");
    ws
}

/// The socket is told its session ended, then closed.
async fn told_and_closed(ws: &mut Ws) {
    let code = ws
        .recv_until(|m| match m {
            ServerMsg::Error { code, .. } => Some(code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::SessionEnded);
    assert!(ws.closed_within(std::time::Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_disabling_and_removal_close_an_agents_open_consoles() {
    // Rule: a console socket lives as long as its session. Logout closes it at once; a
    // session ended elsewhere (expiry, `agent disable`/`remove`/`passwd` from the command
    // line, another process) within the 2 s session check.
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;
    let http = reqwest::Client::new();

    // Two browsers of Ana; one logs out: only its console closes.
    let (laptop, phone) = (
        relay.login("ana@shop.example").await,
        relay.login("ana@shop.example").await,
    );
    let (mut on_laptop, mut on_phone) = (
        console(&relay, &laptop).await,
        console(&relay, &phone).await,
    );
    let res = http
        .post(relay.url("/api/logout"))
        .header("cookie", &laptop)
        .header("origin", relay.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    told_and_closed(&mut on_laptop).await;
    on_phone.send(&ClientMsg::Ping).await;
    on_phone
        .recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;

    // Disabled from the command line (another process, the same database): the phone's
    // console closes, and Ana can no longer log in.
    let store = relay.record().await;
    assert!(store
        .set_disabled("ana@shop.example".into(), true, escalera_relay::now_ms())
        .await
        .unwrap());
    told_and_closed(&mut on_phone).await;
    let res = try_login(&from(2), &relay, "ana@shop.example", PASSWORD).await;
    assert_eq!(res.status(), 401);

    // Ben, removed: the same; his email is free again.
    let ben = relay.login("ben@shop.example").await;
    let mut bens = console(&relay, &ben).await;
    assert!(store
        .remove_agent("ben@shop.example".into(), escalera_relay::now_ms())
        .await
        .unwrap());
    told_and_closed(&mut bens).await;
    assert!(store
        .agent_by_email("ben@shop.example".into())
        .await
        .unwrap()
        .is_none());
    let listed = store.agents(escalera_relay::now_ms()).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|a| (a.agent.email.as_str(), a.disabled))
            .collect::<Vec<_>>(),
        [("ana@shop.example", true)]
    );
    // The visitor side never noticed.
    bystanders.visitor.send(&ClientMsg::Ping).await;
    bystanders
        .visitor
        .recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_closes_its_console_and_is_purged() {
    let relay = TestRelay::start_with(Config {
        session_ttl_secs: 1,
        ..Config::default()
    })
    .await;
    let cookie = relay.login("ana@shop.example").await;
    let mut ws = console(&relay, &cookie).await;
    told_and_closed(&mut ws).await;
    let store = relay.record().await;
    assert_eq!(
        store
            .purge_sessions(escalera_relay::now_ms())
            .await
            .unwrap(),
        1
    );
    relay.stop().await;
}

/// Connects from `127.0.0.N` to the relay and says nothing.
async fn silent_from(n: u8, relay: &TestRelay) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)),
            0,
        ))
        .unwrap();
    let addr = relay.url("").trim_start_matches("http://").parse().unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the relay closes `tcp` (reads reach the end) within a few seconds.
async fn cut_within(tcp: &mut tokio::net::TcpStream, secs: u64) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(secs),
            tcp.read_to_end(&mut sink)
        )
        .await,
        Ok(Ok(_) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_clients_are_cut_and_one_address_cannot_take_every_connection() {
    // Limits (set low for the test; the defaults are 256 per address, 10 s for headers and
    // 10 s for the hello): 20 connections per address, 1 s to send a request's headers, 1 s
    // to say hello on a WebSocket.
    let relay = TestRelay::start_with(Config {
        per_address_connections: 20,
        header_timeout_secs: 1,
        hello_deadline_secs: 1,
        ..Config::default()
    })
    .await;
    let mut bystanders = Bystanders::start(&relay).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(silent_from(2, &relay).await);
    }
    // The 21st from that address is closed at once; others are served meanwhile.
    let mut one_more = silent_from(2, &relay).await;
    assert!(cut_within(&mut one_more, 5).await, "the 21st stayed open");
    let health = from(3).get(relay.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    bystanders.still_chat().await;
    // And every silent one is cut once its time for headers is up.
    for tcp in &mut silent {
        assert!(cut_within(tcp, 5).await, "a silent connection stayed open");
    }
    // A trickling client (a byte now and then) is cut the same way.
    let mut slow = silent_from(4, &relay).await;
    {
        use tokio::io::AsyncWriteExt;
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
    }
    assert!(
        cut_within(&mut slow, 5).await,
        "a trickling client stayed open"
    );

    // A WebSocket that never says hello is told so and closed.
    let mut mute = relay
        .visitor_socket(&relay.site.key, common::SHOP)
        .await
        .unwrap();
    assert_eq!(common::error(&mut mute).await, ErrorCode::BadHello);
    assert!(mute.closed_within(std::time::Duration::from_secs(5)).await);
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_that_answers_nothing_is_closed_after_the_idle_timeout() {
    // Limit: 3 s of silence (the default is 60 s); the relay pings every third of it, and a
    // browser answers by itself.
    let relay = TestRelay::start_with(Config {
        idle_timeout_secs: 3,
        ..Config::default()
    })
    .await;
    let (mut gone, _, _) = relay.visitor(None).await;
    // The scenario: this client reads nothing (so answers no ping) for longer than that.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(gone.closed_within(std::time::Duration::from_secs(5)).await);
    // One that answers the pings (it reads) stays.
    let (mut alive, _, _) = relay.visitor(None).await;
    assert!(!alive.closed_within(std::time::Duration::from_secs(5)).await);
    alive.send(&ClientMsg::Ping).await;
    alive
        .recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transcripts_and_uploads_are_readable_by_the_relays_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let relay = TestRelay::start().await;
    let (_visitor, _agent, conversation, token) = relay.pair().await;
    let res = reqwest::Client::new()
        .post(relay.url(&format!(
            "/api/conversations/{conversation}/files?name=a.txt"
        )))
        .bearer_auth(&token.0)
        .body("private")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let dir = relay.dir.path();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&dir.join("files")), 0o700);
    // On PostgreSQL the record is the database server's to keep; on SQLite, it is here.
    if relay.database.is_none() {
        for name in ["escalera.db", "escalera.db-wal"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
    }
    for file in std::fs::read_dir(dir.join("files")).unwrap() {
        assert_eq!(mode(&file.unwrap().path()), 0o600);
    }
    relay.stop().await;
}

/// What the relay answers a chat message: its seq, or the error's code.
async fn answer(ws: &mut Ws, id: &ClientMsgId) -> Result<u64, ErrorCode> {
    ws.recv_until(|m| match m {
        ServerMsg::Ack { client_id, seq, .. } if client_id == *id => Some(Ok(seq)),
        ServerMsg::Error {
            code,
            client_id: Some(c),
            ..
        } if c == *id => Some(Err(code)),
        _ => None,
    })
    .await
}

async fn say(ws: &mut Ws, conversation: &ConversationId, id: &str, text: &str) {
    ws.send(&ClientMsg::Chat {
        conversation: conversation.clone(),
        client_id: id.into(),
        text: text.into(),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hellos_store_nothing_until_a_visitor_says_something() {
    // Rule (attack 5): a hello stores no row; a visitor's conversation is stored with their
    // first message. 300 hellos from one address leave the database as it was.
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;
    let before = (
        relay.count_rows("conversations").await,
        relay.count_rows("visitors").await,
    );
    for _ in 0..300 {
        let (ws, _, _) = relay.visitor_from(2, None).await.unwrap();
        drop(ws);
    }
    bystanders.still_chat().await;
    assert_eq!(
        (
            relay.count_rows("conversations").await,
            relay.count_rows("visitors").await
        ),
        before
    );
    // The first message stores the conversation, and the visitor can come back to it.
    let (mut ws, token, conversation) = relay.visitor_from(2, None).await.unwrap();
    say(&mut ws, &conversation, "m1", "Hello?").await;
    assert_eq!(answer(&mut ws, &"m1".into()).await, Ok(1));
    assert_eq!(relay.count_rows("conversations").await, before.0 + 1);
    drop(ws);
    let (_ws, _, again) = relay.visitor_from(2, Some(token)).await.unwrap();
    assert_eq!(again, conversation);
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_fill_the_agents_list() {
    // Limits (attack 6), set low for the test: 10 new conversations per address per hour
    // (default 60) and 4 waiting conversations per address listed (default 20).
    let relay = TestRelay::start_with(Config {
        conversations_per_address: 10,
        listed_per_address: 4,
        ..Config::default()
    })
    .await;
    // Routing gives Ana nothing more than the bystanders' conversation: the list is what
    // waits.
    relay.set_limit("ana@shop.example", 1).await;
    let mut bystanders = Bystanders::start(&relay).await;
    let mut spam = Vec::new();
    let mut refused = 0;
    for i in 0..15 {
        let (mut ws, _, conv) = relay.visitor_from(2, None).await.unwrap();
        let id = ClientMsgId(format!("spam-{i}"));
        say(&mut ws, &conv, &id.0, "buy now").await;
        match answer(&mut ws, &id).await {
            Ok(_) => spam.push((ws, conv)),
            Err(code) => {
                assert_eq!(code, ErrorCode::LimitReached);
                refused += 1;
            }
        }
    }
    assert_eq!((spam.len(), refused), (10, 5));
    // A real visitor on another address is stored and listed.
    let (mut real, _, real_conv) = relay.visitor_from(3, None).await.unwrap();
    say(&mut real, &real_conv, "q", "Where is my order?").await;
    assert!(answer(&mut real, &"q".into()).await.is_ok());
    let (_agent, welcome) = relay.agent("ana@shop.example").await;
    let ServerMsg::WelcomeAgent { conversations, .. } = welcome else {
        unreachable!()
    };
    let listed: Vec<&ConversationId> = conversations.iter().map(|c| &c.id).collect();
    let spam_listed = spam.iter().filter(|(_, c)| listed.contains(&c)).count();
    assert_eq!(spam_listed, 4, "the oldest 4 of the address");
    assert!(listed.contains(&&spam[0].1));
    assert!(listed.contains(&&real_conv), "the real visitor is listed");
    assert!(listed.contains(&&bystanders.conversation));
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_visitor_cannot_open_unlimited_sockets() {
    // Limit: 16 sockets per visitor token (the default).
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;
    let (first, token, conv) = relay.visitor_from(2, None).await.unwrap();
    let mut tabs = vec![first];
    for _ in 1..16 {
        let (ws, _, same) = relay.visitor_from(2, Some(token.clone())).await.unwrap();
        assert_eq!(same, conv);
        tabs.push(ws);
    }
    let Err(ServerMsg::Error { code, .. }) = relay.visitor_from(2, Some(token.clone())).await
    else {
        panic!("a 17th socket was welcomed")
    };
    assert_eq!(code, ErrorCode::LimitReached);
    // One tab closes: a new one is welcomed.
    drop(tabs.pop());
    let mut again = None;
    for _ in 0..50 {
        if let Ok(ws) = relay.visitor_from(2, Some(token.clone())).await {
            again = Some(ws);
            break;
        }
    }
    assert_eq!(again.expect("room again once one closed").2, conv);
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_flood_the_record() {
    // Limits (attack 9): chat messages per visitor over all their sockets, 2/s after a
    // burst of 30; per address, 30/s after a burst of 300. Each socket alone may send 20/s
    // after 100.
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;
    // One visitor, four sockets, 40 messages each at once.
    let (first, token, conv) = relay.visitor_from(2, None).await.unwrap();
    let mut tabs = vec![first];
    for _ in 1..4 {
        tabs.push(relay.visitor_from(2, Some(token.clone())).await.unwrap().0);
    }
    let start = std::time::Instant::now();
    for (t, ws) in tabs.iter_mut().enumerate() {
        for i in 0..40 {
            say(ws, &conv, &format!("t{t}-{i}"), "spam").await;
        }
    }
    let mut stored = 0;
    for (t, ws) in tabs.iter_mut().enumerate() {
        for i in 0..40 {
            match answer(ws, &ClientMsgId(format!("t{t}-{i}"))).await {
                Ok(_) => stored += 1,
                Err(code) => assert_eq!(code, ErrorCode::RateLimited),
            }
        }
    }
    let allowed = 30 + 2 * start.elapsed().as_secs_f64().ceil() as usize;
    assert!(
        (30..=allowed).contains(&stored),
        "{stored} of 160 stored, at most {allowed} allowed"
    );

    // Forty visitors of one address (each a new conversation), 20 messages each at once.
    let mut crowd = Vec::new();
    for _ in 0..40 {
        crowd.push(relay.visitor_from(3, None).await.unwrap());
    }
    let start = std::time::Instant::now();
    for (v, (ws, _, conv)) in crowd.iter_mut().enumerate() {
        for i in 0..20 {
            say(ws, conv, &format!("v{v}-{i}"), "spam").await;
        }
    }
    let mut stored = 0;
    for (v, (ws, _, _)) in crowd.iter_mut().enumerate() {
        for i in 0..20 {
            match answer(ws, &ClientMsgId(format!("v{v}-{i}"))).await {
                Ok(_) => stored += 1,
                Err(code) => assert_eq!(code, ErrorCode::RateLimited),
            }
        }
    }
    let allowed = 300 + 30 * start.elapsed().as_secs_f64().ceil() as usize;
    assert!(
        (300..=allowed).contains(&stored),
        "{stored} of 800 stored, at most {allowed} allowed"
    );
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rings_are_limited_per_conversation() {
    // Limit (attack 17): 20 call starts and device toggles per conversation per minute;
    // ending a call is never limited.
    use escalera_protocol::{CallAction, CallKind, CallPhase};
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;
    let (mut visitor, mut agent, conv, _) = relay.pair().await;
    let call = |action| ClientMsg::Call {
        conversation: conv.clone(),
        action,
    };
    let start = std::time::Instant::now();
    for _ in 0..30 {
        agent
            .send(&call(CallAction::Start {
                kind: CallKind::Voice,
            }))
            .await;
        agent.send(&call(CallAction::HangUp)).await;
    }
    // Errors go straight back: by the pong, every refusal has arrived.
    agent.send(&ClientMsg::Ping).await;
    let mut limited = 0;
    loop {
        match agent.recv().await {
            ServerMsg::Pong => break,
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            _ => {}
        }
    }
    let rang = 30 - limited;
    let allowed = 20 + start.elapsed().as_secs() as usize / 3 + 1;
    assert!((20..=allowed).contains(&rang), "{rang} rang");
    // The visitor was rung exactly that often, each cancelled.
    let (mut rings, mut cancels) = (0, 0);
    while cancels < rang {
        match visitor.recv().await {
            ServerMsg::Call { call: Some(c), .. } if c.phase == CallPhase::Ringing => rings += 1,
            ServerMsg::Message(m) if m.text == "Call cancelled" => cancels += 1,
            _ => {}
        }
    }
    // (A ring cancelled before it reached the visitor is not even sent.)
    assert!(rings <= rang, "{rings} rings");
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flipping_a_camera_leaves_the_record_readable() {
    // Rule (attack 17): a device's state goes into the record once it has stayed put for
    // 3 s; flips in between leave no line (and past 20 a minute they are refused).
    use escalera_protocol::{Author, CallAction, CallKind, MediaKind};
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;
    let (mut visitor, mut agent, conv, _) = relay.pair().await;
    let call = |action| ClientMsg::Call {
        conversation: conv.clone(),
        action,
    };
    agent
        .send(&call(CallAction::Start {
            kind: CallKind::Video,
        }))
        .await;
    visitor
        .recv_until(|m| matches!(m, ServerMsg::Call { call: Some(_), .. }).then_some(()))
        .await;
    visitor.send(&call(CallAction::Accept)).await;
    agent
        .recv_until(|m| match m {
            ServerMsg::Call { call: Some(c), .. } => {
                (c.phase == escalera_protocol::CallPhase::Active).then_some(())
            }
            _ => None,
        })
        .await;
    for i in 0..60 {
        visitor
            .send(&call(CallAction::Media {
                media: MediaKind::Camera,
                on: i % 2 == 1,
            }))
            .await;
    }
    visitor.send(&ClientMsg::Ping).await;
    visitor
        .recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;
    // Ending the call writes what is still settling, then the end.
    agent.send(&call(CallAction::HangUp)).await;
    let mut notes = Vec::new();
    while !notes
        .last()
        .is_some_and(|n: &String| n.starts_with("Call ended"))
    {
        if let ServerMsg::Message(m) = agent.recv().await {
            if m.author == Author::System {
                notes.push(m.text);
            }
        }
    }
    let toggles = notes.iter().filter(|n| n.contains("turned video")).count();
    assert!(toggles <= 1, "{notes:?}");
    assert!(
        notes.contains(&"Video call started".to_owned()),
        "{notes:?}"
    );
    bystanders.still_chat().await;
    relay.stop().await;
}

/// Uploads `size` bytes as `who` (a header) into `conv`; the status and the body.
async fn upload(
    relay: &TestRelay,
    conv: &ConversationId,
    who: (&str, &str),
    client_id: &str,
    size: usize,
) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(relay.url(&format!("/api/conversations/{conv}/files")))
        .query(&[("name", "f.bin"), ("client_id", client_id)])
        .header(who.0, who.1)
        .header("origin", relay.url(""))
        .body(vec![client_id.len() as u8; size])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(body.into()))
}

/// Files in the relay's folder (finished ones, partial ones).
fn files_on_disk(relay: &TestRelay) -> (usize, usize) {
    let dir = relay.dir.path().join("files");
    let names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let partial = names.iter().filter(|n| n.starts_with(".part-")).count();
    (names.len() - partial, partial)
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_bounded_per_conversation_and_before_an_agent_joins() {
    // Limits (attack 8), scaled down for the test: files of 1 MiB at most (default 25 MiB),
    // 2 MiB in all before an agent joins (default 10 MiB), 4 MiB per conversation (default
    // 200 MiB). One `client_id` stores one file.
    const MIB: usize = 1 << 20;
    let relay = TestRelay::start_with(Config {
        max_upload: MIB as u64,
        upload_allowance: 2 * MIB as u64,
        conversation_quota: 4 * MIB as u64,
        ..Config::default()
    })
    .await;
    // Ana's one conversation is the bystanders': this visitor's waits for an agent.
    relay.set_limit("ana@shop.example", 1).await;
    let mut bystanders = Bystanders::start(&relay).await;
    let (mut visitor, token, conv) = relay.visitor_from(2, None).await.unwrap();
    let bearer = format!("Bearer {token}");
    let me = ("authorization", bearer.as_str());
    assert_eq!(upload(&relay, &conv, me, "a", MIB).await.0, 201);
    assert_eq!(upload(&relay, &conv, me, "b", MIB).await.0, 201);
    let (status, body) = upload(&relay, &conv, me, "c", 1000).await;
    assert_eq!(status, 413);
    assert!(
        body.as_str()
            .unwrap_or_default()
            .contains("before an agent joins"),
        "{body}"
    );
    assert_eq!(files_on_disk(&relay), (2, 0));
    // The same client_id with other bytes: the stored message, nothing new on disk.
    let (status, body) = upload(&relay, &conv, me, "a", 10).await;
    assert_eq!(status, 200);
    assert_eq!(body["attachment"]["size"], MIB);
    assert_eq!(files_on_disk(&relay), (2, 0));

    // An agent joins: the conversation's quota is what is left.
    let (mut agent, _) = relay.agent("ana@shop.example").await;
    agent
        .send(&ClientMsg::Take {
            conversation: conv.clone(),
        })
        .await;
    visitor
        .recv_until(|m| matches!(m, ServerMsg::AgentJoined { .. }).then_some(()))
        .await;
    assert_eq!(upload(&relay, &conv, me, "d", MIB).await.0, 201);
    assert_eq!(upload(&relay, &conv, me, "e", MIB).await.0, 201);
    let (status, body) = upload(&relay, &conv, me, "f", 1).await;
    assert_eq!(status, 413);
    assert!(
        body.as_str().unwrap_or_default().contains("no room"),
        "{body}"
    );
    assert_eq!(files_on_disk(&relay), (4, 0));
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_upload_is_cut_and_leaves_nothing() {
    // Limit (attack 4): an upload must bring 16 KiB/s over every 10 s (the default); one
    // byte now and then is cut with 408 and its partial file removed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = TestRelay::start().await;
    let mut bystanders = Bystanders::start(&relay).await;
    let (_visitor, token, conv) = relay.visitor_from(2, None).await.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let head = format!(
        "POST /api/conversations/{conv}/files?name=slow.txt HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        loop {
            if tcp.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let mut peek = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(1), tcp.peek(&mut peek)).await
            {
                if n > 0 {
                    break;
                }
            }
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut answer),
        )
        .await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), trickle)
        .await
        .expect("cut within 30 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(files_on_disk(&relay), (0, 0));
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_and_the_health_check_keep_room_when_visitors_fill_the_relay() {
    // Limits, set low for the test: 24 connections in all, half of them kept for agents and
    // /healthz (the default keeps 10% of what the file-descriptor limit allows).
    let relay = TestRelay::start_with(Config {
        max_connections: 24,
        agent_reserve_percent: 50,
        ..Config::default()
    })
    .await;
    let mut bystanders = Bystanders::start(&relay).await;
    let url = format!("ws://{}/ws/visitor?site={}", relay.addr, relay.site.key);
    let mut crowd = Vec::new();
    let refused = loop {
        match Ws::connect_from(2, &url, common::SHOP).await {
            Ok(ws) => crowd.push(ws),
            Err(status) => break status,
        }
        assert!(crowd.len() <= 12, "visitors took more than their share");
    };
    assert_eq!(refused, 503);
    assert!(crowd.len() >= 8, "only {} visitors got in", crowd.len());
    let health = from(3).get(relay.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let (_agent, _) = relay.agent("ben@shop.example").await;
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_crowds_on_many_addresses_cannot_keep_the_health_check_out() {
    // Limit (attack 3), set low for the test: 30 connections in all (the default is the
    // file-descriptor limit less 128). When full, the oldest connection that has not sent a
    // byte is cut to make room, so whoever speaks at once is served.
    let relay = TestRelay::start_with(Config {
        max_connections: 30,
        ..Config::default()
    })
    .await;
    let mut bystanders = Bystanders::start(&relay).await;
    let mut silent = Vec::new();
    for i in 0..40u8 {
        silent.push(silent_from(2 + i % 4, &relay).await);
    }
    for probe in 0..5 {
        let health = from(9).get(relay.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200, "probe {probe}");
        // The crowd comes back at once.
        silent.push(silent_from(2 + probe, &relay).await);
    }
    // The oldest silent ones were cut: the first of them reads its end.
    assert!(cut_within(&mut silent[0], 5).await, "the oldest stayed");
    bystanders.still_chat().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn re_joining_a_long_conversation_from_many_sockets_is_bounded() {
    // Limits (attack 7), the history budget set low for the test: a visitor reads 1,000
    // history messages at once, then 200 a second, over all their sockets (default 5,000 and
    // 1,000); 16 sockets per visitor.
    let relay = TestRelay::start_with(Config {
        visitor_history_rate: 200,
        ..Config::default()
    })
    .await;
    let mut bystanders = Bystanders::start(&relay).await;
    let (mut visitor, token, conv) = relay.visitor_from(2, None).await.unwrap();
    say(&mut visitor, &conv, "first", "My order?").await;
    answer(&mut visitor, &"first".into()).await.unwrap();
    // Ana writes 1,000 lines from 10 consoles (each within its socket's burst of 100).
    let cookie = relay.login("ana@shop.example").await;
    let url = format!("ws://{}/ws/agent", relay.addr);
    for w in 0..10 {
        let mut ws = Ws::connect(&url, &relay.url(""), Some(&cookie))
            .await
            .unwrap();
        ws.send(&ClientMsg::Hello {
            protocol: escalera_protocol::PROTOCOL_VERSION,
            token: None,
            identity: None,
            resume: None,
        })
        .await;
        for i in 0..100 {
            say(&mut ws, &conv, &format!("h{w}-{i}"), "a line of history").await;
        }
        for i in 0..100 {
            answer(&mut ws, &ClientMsgId(format!("h{w}-{i}")))
                .await
                .unwrap();
        }
    }
    // 15 more sockets of that visitor (16 in all) each re-join from the start, over and over,
    // for 3 s.
    let start = std::time::Instant::now();
    let mut tabs = Vec::new();
    for _ in 0..15 {
        tabs.push(relay.visitor_from(2, Some(token.clone())).await.unwrap().0);
    }
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rejoiners: Vec<_> = tabs
        .into_iter()
        .map(|mut ws| {
            let (conv, read) = (conv.clone(), read.clone());
            tokio::spawn(async move {
                while start.elapsed() < std::time::Duration::from_secs(3) {
                    ws.send(&ClientMsg::Join {
                        conversation: conv.clone(),
                        after_seq: 0,
                    })
                    .await;
                    loop {
                        let Some(m) = ws.try_recv(std::time::Duration::from_secs(3)).await else {
                            return;
                        };
                        match m {
                            ServerMsg::History { messages, .. } => {
                                read.fetch_add(
                                    messages.len(),
                                    std::sync::atomic::Ordering::Relaxed,
                                );
                            }
                            ServerMsg::Call { .. } => break,
                            _ => {}
                        }
                    }
                }
            })
        })
        .collect();
    bystanders.still_chat().await;
    for r in rejoiners {
        r.await.unwrap();
    }
    // A page starts while anything is left of the budget: each socket may have one page
    // (500) in flight past it. Unbounded, these sockets read millions in 3 s.
    let secs = start.elapsed().as_secs_f64().ceil() as usize;
    let allowed = 1_000 + 200 * secs + 500 * 15;
    let read = read.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        read <= allowed,
        "{read} history messages read, at most {allowed} allowed"
    );
    assert!(read >= 1_000, "only {read} read");
    bystanders.still_chat().await;
    relay.stop().await;
}
