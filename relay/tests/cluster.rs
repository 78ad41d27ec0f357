//! Several nodes on one record (PostgreSQL, NATS, HAProxy, started by the tests): a
//! single-node install moved there (`escalera migrate`), nodes sharing conversations, and what
//! their operators look at (`/readyz`, metrics, JSON logs).

mod common;

use common::{ack, call, call_state, history, joined, queue_of, signal, texts_of, TestRelay};
use escalera_protocol::{
    Author, CallAction, CallKind, CallPhase, ClientMsg, ClientMsgId, ConversationId, Message,
    Presence, ServerMsg, TeamMember,
};
use escalera_relay::core::Scope;
use escalera_relay::store::{AuditEntry, Record};
use escalera_relay::Config;

/// Everything a store holds that a migration must carry, read through the traits.
async fn everything(s: &dyn Record, conversation: &escalera_protocol::ConversationId) -> String {
    let now = escalera_relay::now_ms();
    let agents: Vec<_> = s
        .agents(now)
        .await
        .unwrap()
        .into_iter()
        .map(|a| {
            let mut scope: Vec<_> = match a.agent.scope {
                Scope::All => vec!["*".to_owned()],
                Scope::Sites(s) => s.into_iter().map(|k| k.0).collect(),
            };
            scope.sort();
            (
                a.agent.agent,
                a.agent.email,
                a.agent.password_hash,
                scope,
                a.agent.presence,
                a.agent.limit,
                a.agent.admin,
                a.disabled,
                a.sessions,
            )
        })
        .collect();
    let messages = s
        .messages_after(conversation.clone(), 0, 1000, true)
        .await
        .unwrap()
        .messages;
    let files: Vec<_> = messages
        .iter()
        .filter_map(|m| m.attachment.clone())
        .collect();
    let mut found = Vec::new();
    for f in &files {
        found.push(s.file(f.id.clone()).await.unwrap());
    }
    format!(
        "{:#?}",
        (
            s.sites_of(Scope::All).await.unwrap(),
            agents,
            s.canned(Scope::All).await.unwrap(),
            s.audit(100).await.unwrap(),
            s.setting("demo_site".into()).await.unwrap(),
            s.summaries(Scope::All, 100).await.unwrap(),
            messages,
            found,
            s.visitor_details(conversation.clone()).await.unwrap(),
            s.read_upto(conversation.clone()).await.unwrap(),
        )
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_install_moves_to_postgresql_whole_and_carries_on_there() {
    // A relay on SQLite, used: chat both ways, a file, a canned reply, a setting, an
    // audit entry, a read mark, an email left.
    let relay = TestRelay::start_on_sqlite().await;
    let (visitor, mut agent, conv, token) = relay.pair().await;
    agent
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("reply"),
            text: "Hi, how can I help?".into(),
        })
        .await;
    ack(&mut agent).await;
    let res = reqwest::Client::new()
        .post(relay.url(&format!("/api/conversations/{conv}/files")))
        .query(&[("name", "order.txt")])
        .bearer_auth(&token.0)
        .body("order 1234")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let file: Message = res.json().await.unwrap();
    let file = file.attachment.unwrap();
    agent
        .send(&ClientMsg::Read {
            conversation: conv.clone(),
            seq: 2,
        })
        .await;
    let record = relay.record().await;
    record
        .save_canned(relay.site.key.clone(), "hi".into(), "Hello!".into(), 1)
        .await
        .unwrap();
    record
        .set_setting("demo_site".into(), relay.site.key.0.clone())
        .await
        .unwrap();
    let entry = AuditEntry {
        at: 7,
        actor: "command line".into(),
        action: "site.update".into(),
        detail: "Shop: offers everything".into(),
    };
    record.record(entry).await.unwrap();
    // The read mark is in once the relay answers a later frame.
    agent.send(&ClientMsg::Ping).await;
    agent
        .recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
        .await;
    drop((visitor, agent));
    let (site, other) = (relay.site.clone(), relay.other_site.clone());
    let dir = relay.stop().await;
    let sqlite = common::record(dir.path(), None).await;
    let before = everything(&*sqlite, &conv).await;
    let page = sqlite
        .messages_after(conv.clone(), 0, 1000, false)
        .await
        .unwrap();
    drop(sqlite);
    let seen: Vec<String> = page.messages.iter().map(|m| m.text.clone()).collect();
    assert!(seen.contains(&"order.txt".to_owned()), "{seen:?}");

    // Moved by the command line.
    let url = common::postgres::database().await;
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_escalera"))
            .args(["migrate", "--from"])
            .arg(format!("sqlite:{}", dir.path().display()))
            .args(["--to", &url])
            .output()
            .unwrap()
    };
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = format!("messages {} rows", page.upto);
    assert!(
        said.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == rows),
        "{said}"
    );
    let after = everything(&*common::record(dir.path(), Some(&url)).await, &conv).await;
    assert_eq!(before, after);
    // Never into a database that has a record already.
    let again = migrate();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has"));

    // The relay on PostgreSQL: the visitor's token finds the conversation and its history,
    // the agent's password still works, the file downloads, and the next seq follows on.
    let relay = TestRelay::start_on(dir, Some(url), site, other).await;
    let (mut visitor, _, again) = relay.visitor(Some(token.clone())).await;
    assert_eq!(again, conv);
    let texts = texts_of(&mut visitor, &conv).await;
    assert_eq!(texts, seen);
    let cookie = relay.login("ana@shop.example").await;
    let res = reqwest::Client::new()
        .get(relay.url(&format!("/files/{}", file.id)))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"order 1234");
    visitor
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("after"),
            text: "Still there?".into(),
        })
        .await;
    assert_eq!(ack(&mut visitor).await.1, page.upto + 1);
    relay.stop().await;
}

/// Two nodes on one PostgreSQL database and one NATS server, their files in one folder.
async fn two_nodes(config: impl Fn() -> Config) -> (TestRelay, TestRelay, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let database = common::postgres::database().await;
    let bus = &common::nats::server().url;
    let sites = {
        let record = common::record(data.path(), Some(&database)).await;
        common::seed(&*record).await
    };
    let a = TestRelay::start_node(data.path(), &database, bus, config(), sites.clone()).await;
    let b = TestRelay::start_node(data.path(), &database, bus, config(), sites).await;
    (a, b, data)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_on_one_node_and_an_agent_on_another_chat_type_and_see_it_read() {
    let (a, b, _data) = two_nodes(Config::default).await;
    let (mut visitor, _token, conv) = a.visitor(None).await;
    visitor
        .send(&ClientMsg::Join {
            conversation: conv.clone(),
            after_seq: 0,
        })
        .await;
    history(&mut visitor).await;
    visitor
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("hello"),
            text: "Hello from node A".into(),
        })
        .await;
    ack(&mut visitor).await;
    // Ana's console is on node B: she takes the conversation; the visitor on A is told.
    let (mut ana, _) = b.agent("ana@shop.example").await;
    ana.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    assert_eq!(joined(&mut visitor).await, "Ana");
    let seen = texts_of(&mut ana, &conv).await;
    assert!(seen.contains(&"Hello from node A".to_owned()), "{seen:?}");
    // Each side's messages reach the other, across the bus.
    let says = |text: &str, id: &str| ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: ClientMsgId::from(id),
        text: text.into(),
    };
    let heard = async |ws: &mut common::Ws, text: &str| {
        ws.recv_until(|m| match m {
            ServerMsg::Message(m) if m.text == text => Some(m.seq),
            _ => None,
        })
        .await
    };
    ana.send(&says("Hi, Ana here, on node B", "b1")).await;
    let seq = heard(&mut visitor, "Hi, Ana here, on node B").await;
    visitor.send(&says("Great, thanks", "a2")).await;
    assert_eq!(heard(&mut ana, "Great, thanks").await, seq + 1);
    // Typing crosses too, each way, with the agent's name.
    let typing = ClientMsg::Typing {
        conversation: conv.clone(),
    };
    let typist = async |ws: &mut common::Ws| {
        ws.recv_until(|m| match m {
            ServerMsg::Typing { author, name, .. } => Some((author, name)),
            _ => None,
        })
        .await
    };
    visitor.send(&typing).await;
    assert_eq!(typist(&mut ana).await, (Author::Visitor, None));
    ana.send(&typing).await;
    assert_eq!(
        typist(&mut visitor).await,
        (Author::Agent, Some("Ana".to_owned()))
    );
    // Ana reads it on B: the visitor on A sees it read.
    ana.send(&ClientMsg::Read {
        conversation: conv.clone(),
        seq: seq + 1,
    })
    .await;
    let read = visitor
        .recv_until(|m| match m {
            ServerMsg::Read { seq, .. } => Some(seq),
            _ => None,
        })
        .await;
    assert_eq!(read, seq + 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_messages_from_both_nodes_at_once_reach_every_socket_on_both_in_order_once() {
    // The limits on one connection's frames and one visitor's messages lifted: this is about
    // the nodes, not the guards.
    let lifted = || Config {
        frame_rate: 1_000_000,
        frame_burst: 1_000_000,
        visitor_chat_rate: 1_000_000,
        address_chat_rate: 1_000_000,
        visitor_history_rate: 1_000_000,
        sockets_per_visitor: 16,
        ..Config::default()
    };
    let (a, b, _data) = two_nodes(lifted).await;
    for (email, name) in [("cy@shop.example", "Cy"), ("dan@shop.example", "Dan")] {
        a.add_agent(email, name).await;
    }
    // The visitor's first tab, on A, starts the conversation; Ana, on B, takes it.
    let (mut first, token, conv) = a.visitor(None).await;
    let join = ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    };
    first.send(&join).await;
    history(&mut first).await;
    first
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("start"),
            text: "start".into(),
        })
        .await;
    ack(&mut first).await;
    let (mut ana, _) = b.agent("ana@shop.example").await;
    ana.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    first
        .recv_until(|m| matches!(m, ServerMsg::AgentJoined { .. }).then_some(()))
        .await;
    // Writers: a visitor tab on each node and Ana on B. Readers: a visitor tab on each node,
    // Cy looking on from A and Dan from B. Everyone joined, and what is stored so far read.
    let tab = async |node: &TestRelay| {
        let (ws, _, same) = node.visitor(Some(token.clone())).await;
        assert_eq!(same, conv);
        ws
    };
    let mut writers = vec![("a", tab(&a).await), ("b", tab(&b).await), ("ana", ana)];
    let mut readers = vec![
        ("visitor on A", tab(&a).await),
        ("visitor on B", tab(&b).await),
        ("Cy on A", a.agent("cy@shop.example").await.0),
        ("Dan on B", b.agent("dan@shop.example").await.0),
    ];
    let mut upto = Vec::new();
    for (_, ws) in writers.iter_mut().chain(readers.iter_mut()) {
        ws.send(&join).await;
        let last = history(ws).await.last().map_or(0, |m| m.seq);
        upto.push(last);
    }
    let base = upto[0];
    assert!(upto.iter().all(|u| *u == base), "{upto:?}");

    // 1,000 messages at once: 334 + 333 + 333, each writer as fast as it can send.
    const N: u64 = 1_000;
    let counts = [334, 333, 333];
    let read_all = |name: &'static str, mut ws: common::Ws| {
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut ids = Vec::new();
            while ids.len() < N as usize {
                if let ServerMsg::Message(m) = ws.recv().await {
                    seqs.push(m.seq);
                    ids.extend(m.client_id);
                }
            }
            (name, seqs, ids)
        })
    };
    let reading: Vec<_> = readers
        .into_iter()
        .map(|(name, ws)| read_all(name, ws))
        .collect();
    let writing: Vec<_> = writers
        .into_iter()
        .zip(counts)
        .map(|((who, mut ws), n)| {
            let conv = conv.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    ws.send(&ClientMsg::Chat {
                        conversation: conv.clone(),
                        client_id: ClientMsgId(format!("{who}-{i}")),
                        text: format!("{who} {i}"),
                    })
                    .await;
                }
                let mut acked = Vec::new();
                while acked.len() < n {
                    if let ServerMsg::Ack { seq, .. } = ws.recv().await {
                        acked.push(seq);
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked: Vec<u64> = Vec::new();
    for w in writing {
        acked.extend(w.await.unwrap());
    }
    // Every message stored once, the seqs without a gap.
    acked.sort();
    assert_eq!(acked, (base + 1..=base + N).collect::<Vec<_>>());
    // Every reader, on either node, got each of them once, in the order of their seqs.
    for r in reading {
        let (name, seqs, ids) = r.await.unwrap();
        assert_eq!(seqs, (base + 1..=base + N).collect::<Vec<_>>(), "{name}");
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), N as usize, "{name}");
    }
    // The bus's latency was measured on the way (this process's metrics).
    assert!(
        escalera_relay::metrics::get()
            .bus_seconds
            .get_sample_count()
            > 0
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_is_ready_with_its_database_and_bus_and_not_ready_but_alive_without_its_bus() {
    let data = tempfile::tempdir().unwrap();
    let database = common::postgres::database().await;
    let bus = common::nats::own();
    let sites = {
        let record = common::record(data.path(), Some(&database)).await;
        common::seed(&*record).await
    };
    let node =
        TestRelay::start_node(data.path(), &database, &bus.url, Config::default(), sites).await;
    let ready = async || {
        let res = reqwest::get(node.url("/readyz")).await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(ready().await, (200, "ready".to_owned()));
    // The bus goes: not ready (alive all the same).
    bus.stop();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let said = loop {
        let (status, text) = ready().await;
        if status != 200 {
            break (status, text);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still ready without a bus"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(said, (503, "bus: not connected".to_owned()));
    let alive = reqwest::get(node.url("/healthz")).await.unwrap();
    assert_eq!(alive.status(), 200);
    node.stop().await;
}

#[test]
fn logs_are_one_json_object_a_line_when_asked() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_escalera"))
        .args(["serve", "--listen", "127.0.0.1:0", "--demo-listen", "off"])
        .env("ESCALERA_DATA_DIR", dir.path())
        .env("ESCALERA_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once it has said something, it is stopped; every line it wrote is then read.
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().expect("a log line").unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let all: Vec<String> = std::iter::once(first)
        .chain(lines.map(Result::unwrap))
        .collect();
    for text in &all {
        let line: serde_json::Value = serde_json::from_str(text).expect("JSON");
        let levels = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
        assert!(
            levels.contains(&line["level"].as_str().unwrap_or("")),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_haproxy_configuration_carries_the_chat_and_skips_a_node_that_is_gone() {
    // deploy/haproxy.cfg, as README gives it, in front of two nodes.
    let port = common::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let config = || Config {
        public_url: Some(public.clone()),
        ..Config::default()
    };
    let (a, b, _data) = two_nodes(config).await;
    let shipped = include_str!("../../deploy/haproxy.cfg")
        .replace("{node1}", &a.addr.to_string())
        .replace("{node2}", &b.addr.to_string());
    let proxy = escalera_testkit::haproxy::Proxy::start(port, &shipped);
    let through = TestRelay::through(&proxy.url, &a);

    // A visitor and Ana, both through the proxy (whichever nodes it chose): they chat.
    let (mut visitor, token, conv) = through.visitor(None).await;
    let join = ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    };
    visitor.send(&join).await;
    history(&mut visitor).await;
    let says = |text: &str, id: &str| ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: ClientMsgId::from(id),
        text: text.into(),
    };
    visitor.send(&says("Hello through the proxy", "v1")).await;
    ack(&mut visitor).await;
    let (mut ana, _) = through.agent("ana@shop.example").await;
    ana.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    ana.send(&join).await;
    history(&mut ana).await;
    ana.send(&says("Hi, Ana here", "a1")).await;
    visitor
        .recv_until(|m| {
            matches!(m, ServerMsg::Message(m) if m.text == "Hi, Ana here").then_some(())
        })
        .await;

    // Node 1 goes. Both come back through the proxy, on node 2: the record is whole, and the
    // chat goes on.
    a.stop().await;
    let (mut visitor, _, again) = through.visitor(Some(token)).await;
    assert_eq!(again, conv);
    let texts = texts_of(&mut visitor, &conv).await;
    assert!(
        texts.contains(&"Hello through the proxy".to_owned())
            && texts.contains(&"Hi, Ana here".to_owned()),
        "{texts:?}"
    );
    let (mut ana, _) = through.agent("ana@shop.example").await;
    ana.send(&join).await;
    history(&mut ana).await;
    visitor.send(&says("Still there?", "v2")).await;
    ana.recv_until(|m| {
        matches!(m, ServerMsg::Message(m) if m.text == "Still there?").then_some(())
    })
    .await;
    drop(proxy);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_sockets_messages_store_time_and_refusals_on_their_own_address() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let site = {
        let record = common::record(dir.path(), None).await;
        common::seed(&*record).await.0
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_escalera"))
        .args(["serve", "--listen", "127.0.0.1:0", "--demo-listen", "off"])
        .args(["--metrics-listen", "127.0.0.1:0", "--frame-burst", "3"])
        .env("ESCALERA_DATA_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut relay, mut metrics) = (None, None);
    while relay.is_none() || metrics.is_none() {
        let line = lines.next().expect("escalera printed its URLs").unwrap();
        let line = line.trim();
        if let Some(url) = line.strip_prefix("Agent console: ") {
            relay = Some(url.trim_end_matches("/agent").to_owned());
        }
        if let Some(url) = line.strip_prefix("Metrics: ") {
            metrics = Some(url.to_owned());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (relay, metrics) = (relay.unwrap(), metrics.unwrap());
    let scrape = async || reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let before = scrape().await;
    assert_eq!(value(&before, "escalera_sockets{kind=\"visitor\"}"), 0.0);
    assert_eq!(value(&before, "escalera_messages_total"), 0.0);

    // A visitor writes once, then sends frames past the burst of 3.
    let ws_url = format!(
        "{}/ws/visitor?site={}",
        relay.replace("http://", "ws://"),
        site.key
    );
    let ws = common::Ws::connect(&ws_url, common::SHOP, None)
        .await
        .unwrap();
    let (mut visitor, _, conv) = common::welcome(ws, None).await.unwrap();
    visitor
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("m1"),
            text: "Hello".into(),
        })
        .await;
    ack(&mut visitor).await;
    for _ in 0..4 {
        visitor.send(&ClientMsg::Ping).await;
    }
    let code = common::error(&mut visitor).await;
    assert_eq!(code, escalera_protocol::ErrorCode::RateLimited);
    let after = scrape().await;
    assert_eq!(value(&after, "escalera_sockets{kind=\"visitor\"}"), 1.0);
    assert_eq!(value(&after, "escalera_messages_total"), 1.0);
    assert_eq!(
        value(&after, "escalera_store_seconds_count{op=\"append\"}"),
        1.0
    );
    assert!(value(&after, "escalera_limited_total{limit=\"rate\"}") >= 1.0);
    // Not on the public address.
    let public = reqwest::get(format!("{relay}/metrics")).await.unwrap();
    assert_ne!(public.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_on_two_nodes_taking_one_conversation_at_once_get_it_once() {
    let (a, b, _data) = two_nodes(Config::default).await;
    // Cy on A and Ana on B serve every site; Ana is away, so that routing gives it to nobody
    // and both must take it by hand.
    a.add_agent("cy@shop.example", "Cy").await;
    let (mut ana, _) = b.agent("ana@shop.example").await;
    ana.send(&ClientMsg::Presence {
        presence: escalera_protocol::Presence::Away,
    })
    .await;
    let (mut cy, _) = a.agent("cy@shop.example").await;
    cy.send(&ClientMsg::Presence {
        presence: escalera_protocol::Presence::Away,
    })
    .await;
    for ws in [&mut ana, &mut cy] {
        ws.send(&ClientMsg::Ping).await;
        ws.recv_until(|m| matches!(m, ServerMsg::Pong).then_some(()))
            .await;
    }
    for round in 0..5 {
        let node = if round % 2 == 0 { &a } else { &b };
        let (mut visitor, _, conv) = node.visitor(None).await;
        visitor
            .send(&ClientMsg::Chat {
                conversation: conv.clone(),
                client_id: ClientMsgId::from("hello"),
                text: "Anyone?".into(),
            })
            .await;
        ack(&mut visitor).await;
        let take = ClientMsg::Take {
            conversation: conv.clone(),
        };
        ana.send(&take).await;
        cy.send(&take).await;
        // Each hears whether it won: joined, or that the other has it.
        let outcome = async |ws: &mut common::Ws| {
            ws.recv_until(|m| match m {
                ServerMsg::Error {
                    code,
                    conversation: Some(c),
                    ..
                } if c == conv => Some(Err(code)),
                ServerMsg::Conversation(row) if row.id == conv && row.agent.is_some() => {
                    Some(Ok(row.agent.unwrap().name))
                }
                _ => None,
            })
            .await
        };
        let (x, y) = (outcome(&mut ana).await, outcome(&mut cy).await);
        let winners: Vec<_> = [&x, &y].into_iter().filter(|o| o.is_ok()).collect();
        assert!(!winners.is_empty(), "round {round}: {x:?} {y:?}");
        // One holder, whoever both are told it is.
        let holder = a.record().await.conversation(conv.clone()).await.unwrap();
        let holder = holder.unwrap().agent.unwrap().name;
        for o in [&x, &y] {
            match o {
                Ok(name) => assert_eq!(*name, holder, "round {round}"),
                Err(code) => assert_eq!(
                    *code,
                    escalera_protocol::ErrorCode::AlreadyTaken,
                    "round {round}"
                ),
            }
        }
        let told = visitor
            .recv_until(|m| match m {
                ServerMsg::AgentJoined { agent_name, .. } => Some(agent_name),
                _ => None,
            })
            .await;
        assert_eq!(told, holder, "round {round}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_cluster_restart_keeps_everything() {
    let (a, b, data) = two_nodes(Config::default).await;
    let (mut visitor, token, conv) = a.visitor(None).await;
    visitor
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("before"),
            text: "Before the restart".into(),
        })
        .await;
    ack(&mut visitor).await;
    let (mut ana, _) = b.agent("ana@shop.example").await;
    ana.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    ana.send(&ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    })
    .await;
    history(&mut ana).await;
    ana.send(&ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: ClientMsgId::from("reply"),
        text: "Ana's answer".into(),
    })
    .await;
    ack(&mut ana).await;
    drop((visitor, ana));
    let (database, sites) = (
        a.database.clone().unwrap(),
        (a.site.clone(), a.other_site.clone()),
    );
    a.stop().await;
    b.stop().await;

    // Both nodes again, on the same database, bus and files.
    let bus = &common::nats::server().url;
    let a = TestRelay::start_node(
        data.path(),
        &database,
        bus,
        Config::default(),
        sites.clone(),
    )
    .await;
    let b = TestRelay::start_node(data.path(), &database, bus, Config::default(), sites).await;
    let (mut visitor, _, again) = b.visitor(Some(token)).await;
    assert_eq!(again, conv);
    let join = ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    };
    let texts = texts_of(&mut visitor, &conv).await;
    assert!(
        texts.contains(&"Before the restart".to_owned())
            && texts.contains(&"Ana's answer".to_owned()),
        "{texts:?}"
    );
    // Still Ana's, and she carries on from the other node.
    let (mut ana, _) = a.agent("ana@shop.example").await;
    ana.send(&join).await;
    history(&mut ana).await;
    ana.send(&ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: ClientMsgId::from("after"),
        text: "Back again".into(),
    })
    .await;
    let heard = visitor
        .recv_until(|m| match m {
            ServerMsg::Message(m) if m.text == "Back again" => Some(m.author_name),
            _ => None,
        })
        .await;
    assert_eq!(heard.as_deref(), Some("Ana"));
    a.stop().await;
    b.stop().await;
}

async fn signalled(ws: &mut common::Ws) -> String {
    ws.recv_until(|m| match m {
        ServerMsg::Signal { payload, .. } => Some(payload),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_between_two_nodes_signals_across_and_outlives_the_sigkill_of_one() {
    let data = tempfile::tempdir().unwrap();
    let database = common::postgres::database().await;
    let bus = &common::nats::server().url;
    let sites = {
        let record = common::record(data.path(), Some(&database)).await;
        common::seed(&*record).await
    };
    // Node A is the real binary, to be killed; node B runs here.
    let (mut node_a, url_a) = common::spawn_node(data.path(), Some(&database), Some(bus));
    let b = TestRelay::start_node(data.path(), &database, bus, Config::default(), sites).await;
    let a = TestRelay::through(&url_a, &b);

    let (mut visitor, token, conv) = a.visitor(None).await;
    let join = ClientMsg::Join {
        conversation: conv.clone(),
        after_seq: 0,
    };
    visitor
        .send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("hi"),
            text: "Can we talk?".into(),
        })
        .await;
    ack(&mut visitor).await;
    visitor.send(&join).await;
    history(&mut visitor).await;
    let (mut ana, _) = b.agent("ana@shop.example").await;
    ana.send(&ClientMsg::Take {
        conversation: conv.clone(),
    })
    .await;
    ana.send(&join).await;
    history(&mut ana).await;

    // The visitor calls from A; Ana's console on B rings, and she answers.
    let video = CallAction::Start {
        kind: CallKind::Video,
    };
    visitor.send(&call(&conv, video)).await;
    let ringing = ana
        .recv_until(|m| match m {
            ServerMsg::Call { call: Some(c), .. } if c.phase == CallPhase::Ringing => Some(c),
            _ => None,
        })
        .await;
    assert_eq!((ringing.caller, ringing.party), (Author::Visitor, false));
    ana.send(&call(&conv, CallAction::Accept)).await;
    let active = visitor
        .recv_until(|m| match m {
            ServerMsg::Call { call: Some(c), .. } if c.phase == CallPhase::Active => Some(c),
            _ => None,
        })
        .await;
    assert!(active.party && !active.away);
    // Signaling crosses the bus both ways.
    visitor.send(&signal(&conv, "offer from A")).await;
    assert_eq!(signalled(&mut ana).await, "offer from A");
    ana.send(&signal(&conv, "answer from B")).await;
    assert_eq!(signalled(&mut visitor).await, "answer from B");

    // Node A is killed: B stops hearing it, and Ana sees the visitor away.
    node_a.kill().unwrap();
    node_a.wait().unwrap();
    let away = ana
        .recv_until(|m| match m {
            ServerMsg::Call { call: Some(c), .. } if c.away => Some(c),
            _ => None,
        })
        .await;
    assert!(away.party && away.phase == CallPhase::Active);
    ana.send(&signal(&conv, "while you were away")).await;
    // The visitor's widget reconnects, to B, and resumes: it gets what Ana said meanwhile.
    let (mut back, _, again) = b.visitor(Some(token)).await;
    assert_eq!(again, conv);
    back.send(&join).await;
    history(&mut back).await;
    back.send(&call(&conv, CallAction::Resume)).await;
    assert_eq!(signalled(&mut back).await, "while you were away");
    let resumed = ana
        .recv_until(|m| match m {
            ServerMsg::Call { call: Some(c), .. } if !c.away => Some(c),
            _ => None,
        })
        .await;
    assert!(resumed.party && resumed.phase == CallPhase::Active);
    back.send(&signal(&conv, "restart ICE")).await;
    assert_eq!(signalled(&mut ana).await, "restart ICE");
    // Hang-up works, and the record has the call's start and end once each.
    back.send(&call(&conv, CallAction::HangUp)).await;
    assert_eq!(call_state(&mut ana).await, None);
    let record = b.record().await;
    let notes: Vec<String> = record
        .messages_after(conv.clone(), 0, 1000, true)
        .await
        .unwrap()
        .messages
        .into_iter()
        .filter(|m| m.author == Author::System)
        .map(|m| m.text)
        .collect();
    let count = |start: &str| notes.iter().filter(|n| n.starts_with(start)).count();
    assert_eq!(
        (count("Video call started"), count("Call ended")),
        (1, 1),
        "{notes:?}"
    );
    b.stop().await;
}

/// What a visitor hears first after writing `text`: an agent's name, or a place in line.
async fn after_writing(
    ws: &mut common::Ws,
    conv: &ConversationId,
    text: &str,
) -> Result<String, u32> {
    ws.send(&ClientMsg::Chat {
        conversation: conv.clone(),
        client_id: ClientMsgId::from(text),
        text: text.into(),
    })
    .await;
    ws.recv_until(|m| match m {
        ServerMsg::AgentJoined { agent_name, .. } => Some(Ok(agent_name)),
        ServerMsg::Queue { position, .. } if position > 0 => Some(Err(position)),
        _ => None,
    })
    .await
}

/// `name` as `ws` (an agent's console) sees them: in its welcome's team, else in the news.
async fn presence_of(ws: &mut common::Ws, welcome: &ServerMsg, name: &str) -> Presence {
    let ServerMsg::WelcomeAgent { team, .. } = welcome else {
        panic!("{welcome:?}")
    };
    let known = team.iter().find(|m| m.agent.name == name);
    match known.map(|m| m.presence) {
        Some(Presence::Available) => Presence::Available,
        _ => {
            ws.recv_until(|m| match m {
                ServerMsg::Presence(TeamMember { agent, presence }) if agent.name == name => {
                    Some(presence)
                }
                _ => None,
            })
            .await
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_on_two_nodes_share_one_team_one_queue_and_their_limits() {
    let (a, b, _data) = two_nodes(Config::default).await;
    // Ana (console on A) and Cy (console on B) serve the shop, one conversation each at most.
    a.add_agent("cy@shop.example", "Cy").await;
    a.set_limit("ana@shop.example", 1).await;
    a.set_limit("cy@shop.example", 1).await;
    let (mut ana, ana_welcome) = a.agent("ana@shop.example").await;
    let (mut cy, cy_welcome) = b.agent("cy@shop.example").await;
    // Each sees the other available, across the nodes.
    assert_eq!(
        presence_of(&mut cy, &cy_welcome, "Ana").await,
        Presence::Available
    );
    assert_eq!(
        presence_of(&mut ana, &ana_welcome, "Cy").await,
        Presence::Available
    );

    // Visitors on either node are told someone is there, and are routed to either agent:
    // one conversation each.
    let (mut v1, _, c1) = b.visitor(None).await;
    assert_eq!(queue_of(&mut v1).await, (0, true));
    let first = after_writing(&mut v1, &c1, "First").await.unwrap();
    let (mut v2, _, c2) = a.visitor(None).await;
    assert_eq!(queue_of(&mut v2).await, (0, true));
    let second = after_writing(&mut v2, &c2, "Second").await.unwrap();
    let mut both = vec![first.clone(), second];
    both.sort();
    assert_eq!(both, ["Ana", "Cy"], "one each, whichever node routed");

    // Both are full: the next two wait in one line, oldest first, whatever their node.
    let (mut v3, _, c3) = b.visitor(None).await;
    assert_eq!(after_writing(&mut v3, &c3, "Third").await, Err(1));
    let (mut v4, _, c4) = a.visitor(None).await;
    assert_eq!(after_writing(&mut v4, &c4, "Fourth").await, Err(2));

    // Whoever has the first closes it: the third is theirs, and the fourth moves up.
    let closer = match first.as_str() {
        "Ana" => &mut ana,
        _ => &mut cy,
    };
    closer
        .send(&ClientMsg::Close {
            conversation: c1.clone(),
        })
        .await;
    let third = joined(&mut v3).await;
    assert_eq!(third, first);
    assert_eq!(queue_of(&mut v4).await, (1, true));
    // Cy (on B) closes theirs: the fourth, whose visitor is on A, is routed to Cy.
    let cys = if first == "Cy" { c3 } else { c2 };
    cy.send(&ClientMsg::Close { conversation: cys }).await;
    let fourth = joined(&mut v4).await;
    assert_eq!(fourth, "Cy");
    drop(c4);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_that_guard_the_record_and_the_accounts_count_every_node() {
    let config = || Config {
        conversations_per_address: 3,
        login: escalera_relay::guard::LoginLimits {
            per_account: 4,
            ..Default::default()
        },
        ..Config::default()
    };
    let (a, b, _data) = two_nodes(config).await;
    // One address stores conversations on both nodes in turn: three in all, not three each.
    for i in 0..4 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (mut ws, _, conv) = node.visitor(None).await;
        ws.send(&ClientMsg::Chat {
            conversation: conv.clone(),
            client_id: ClientMsgId::from("first"),
            text: "Hello".into(),
        })
        .await;
        let answer = ws
            .recv_until(|m| match m {
                ServerMsg::Ack { .. } => Some(None),
                ServerMsg::Error { code, .. } => Some(Some(code)),
                _ => None,
            })
            .await;
        let expected = (i == 3).then_some(escalera_protocol::ErrorCode::LimitReached);
        assert_eq!(answer, expected, "conversation {}", i + 1);
    }
    // Wrong passwords for one account, spread over both nodes: four are checked, then every
    // node says to wait, the right password too.
    let attempt = async |node: &TestRelay, password: &str| {
        let res = reqwest::Client::new()
            .post(node.url("/api/login"))
            .json(&serde_json::json!({ "email": "ana@shop.example", "password": password }))
            .send()
            .await
            .unwrap();
        res.status().as_u16()
    };
    for i in 0..4 {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_eq!(attempt(node, "guess").await, 401, "guess {}", i + 1);
    }
    assert_eq!(attempt(&a, common::PASSWORD).await, 429);
    assert_eq!(attempt(&b, common::PASSWORD).await, 429);
    a.stop().await;
    b.stop().await;
}
