//! The site owner's side through real sockets: only admins reach the settings routes, bad
//! values are refused with the field they are about, every change is in the audit log, a
//! site's change reaches its open widgets (and the relay enforces it), and an agent disabled
//! or given a new password is out at once.

mod common;

use common::{error, TestRelay, Ws};
use escalera_protocol::{CallAction, CallKind, ClientMsg, Corner, ErrorCode, ServerMsg};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Sends `body` to `path` as the agent of `cookie`; the status and the JSON answer (if any).
async fn call(
    relay: &TestRelay,
    cookie: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, relay.url(path))
        .header("cookie", cookie);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The main site as Settings lists it.
async fn shop(relay: &TestRelay, cookie: &str) -> Value {
    let (status, sites) = call(relay, cookie, Method::GET, "/api/admin/sites", None).await;
    assert_eq!(status, 200);
    sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == relay.site.key.0)
        .unwrap()
        .clone()
}

/// Saves the main site with `change` applied to it as listed.
async fn save_shop(
    relay: &TestRelay,
    cookie: &str,
    change: impl FnOnce(&mut Value),
) -> (StatusCode, Value) {
    let mut site = shop(relay, cookie).await;
    change(&mut site);
    let path = format!("/api/admin/sites/{}", relay.site.key);
    call(relay, cookie, Method::PUT, &path, Some(site)).await
}

#[tokio::test]
async fn only_admins_reach_settings_and_every_change_is_in_the_audit_log() {
    let relay = TestRelay::start().await;
    let ana = relay.login("ana@shop.example").await;
    let ben = relay.login("ben@shop.example").await;
    for path in ["/api/admin/sites", "/api/admin/agents", "/api/admin/audit"] {
        let (status, _) = call(&relay, &ben, Method::GET, path, None).await;
        assert_eq!(status, 403, "{path} for an agent who is not an admin");
        let (status, _) = call(&relay, "", Method::GET, path, None).await;
        assert_eq!(status, 401, "{path} logged out");
        let (status, _) = call(&relay, &ana, Method::GET, path, None).await;
        assert_eq!(status, 200, "{path} for an admin");
    }
    let site = shop(&relay, &ana).await;
    let path = format!("/api/admin/sites/{}", relay.site.key);
    let (status, _) = call(&relay, &ben, Method::PUT, &path, Some(site.clone())).await;
    assert_eq!(status, 403);
    // The snippet is the one to paste.
    assert_eq!(
        site["snippet"],
        format!(
            r#"<script src="http://{}/widget.js" data-site="{}" async></script>"#,
            relay.addr, relay.site.key
        )
    );

    let (status, saved) = save_shop(&relay, &ana, |s| {
        s["name"] = json!("Shop & Co");
        s["look"]["color"] = json!("#FDE047");
    })
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["look"]["color"], "#fde047");
    let (status, added) = call(
        &relay,
        &ana,
        Method::POST,
        "/api/admin/sites",
        Some(json!({ "name": "Blog", "origins": ["https://Blog.example/"] })),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(added["origins"], json!(["https://blog.example"]));

    let (_, audit) = call(&relay, &ana, Method::GET, "/api/admin/audit", None).await;
    let lines: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["at"].as_i64().unwrap() > 0);
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("actor"), s("action"), s("detail"))
        })
        .collect();
    let actor = "Ana <ana@shop.example>".to_owned();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, actor);
    assert_eq!(lines[0].1, "site.add");
    assert!(lines[0].2.starts_with("Blog ("), "{}", lines[0].2);
    assert_eq!(lines[1].1, "site.update");
    assert!(
        lines[1].2.contains(r#"name "Shop" -> "Shop & Co""#)
            && lines[1].2.contains("colour #2563eb -> #fde047"),
        "{}",
        lines[1].2
    );
}

/// A change to a site as listed.
type Change = Box<dyn FnOnce(&mut Value)>;

#[tokio::test]
async fn bad_settings_are_refused_with_their_field_and_change_nothing() {
    let relay = TestRelay::start().await;
    let ana = relay.login("ana@shop.example").await;
    let before = shop(&relay, &ana).await;
    let cases: [(&str, Change); 6] = [
        (
            "origins",
            Box::new(|s| s["origins"] = json!(["https://shop.example", "shop.example"])),
        ),
        ("color", Box::new(|s| s["look"]["color"] = json!("blue"))),
        (
            "greeting",
            Box::new(|s| s["look"]["greeting"] = json!("x".repeat(301))),
        ),
        ("name", Box::new(|s| s["name"] = json!("  "))),
        (
            "away_message",
            Box::new(|s| s["look"]["away_message"] = json!("a\nb")),
        ),
        (
            "max_upload",
            Box::new(|s| s["features"]["max_upload"] = json!(10)),
        ),
    ];
    for (field, change) in cases {
        let (status, body) = save_shop(&relay, &ana, change).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["field"], field, "{body}");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(shop(&relay, &ana).await, before, "nothing was saved");

    let agents = |body: Value| call(&relay, &ana, Method::POST, "/api/admin/agents", Some(body));
    let (status, body) = agents(json!({ "email": "not-an-email", "name": "Cy" })).await;
    assert_eq!((status.as_u16(), &body["field"]), (400, &json!("email")));
    let (status, body) = agents(json!({ "email": "ben@shop.example", "name": "Ben 2" })).await;
    assert_eq!(
        (status.as_u16(), &body["field"]),
        (400, &json!("email")),
        "taken"
    );
    let (status, body) =
        agents(json!({ "email": "cy@shop.example", "name": "Cy", "sites": ["nope"] })).await;
    assert_eq!((status.as_u16(), &body["field"]), (400, &json!("sites")));

    // An admin cannot lock themselves out.
    let (_, list) = call(&relay, &ana, Method::GET, "/api/admin/agents", None).await;
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == "ana@shop.example")
        .unwrap();
    assert_eq!(me["admin"], true);
    let path = format!("/api/admin/agents/{}", me["id"].as_str().unwrap());
    let body = json!({ "admin": false, "sites": null, "limit": 5, "disabled": false });
    let (status, body) = call(&relay, &ana, Method::PUT, &path, Some(body)).await;
    assert_eq!((status.as_u16(), &body["field"]), (400, &json!("admin")));
    let (_, audit) = call(&relay, &ana, Method::GET, "/api/admin/audit", None).await;
    assert_eq!(audit, json!([]), "refused changes are not in the log");
}

#[tokio::test]
async fn a_site_change_reaches_its_open_widgets_and_the_relay_enforces_it() {
    let relay = TestRelay::start().await;
    let ana = relay.login("ana@shop.example").await;
    let (mut visitor, _, conv) = relay.visitor(None).await;
    // A widget of the other site hears nothing of it.
    let mut other = relay
        .visitor_socket(&relay.other_site.key, "https://other.example")
        .await
        .unwrap();
    other
        .send(&ClientMsg::Hello {
            protocol: escalera_protocol::PROTOCOL_VERSION,
            token: None,
            identity: None,
            resume: None,
        })
        .await;
    assert!(matches!(
        other.recv().await,
        ServerMsg::WelcomeVisitor { .. }
    ));

    let (status, _) = save_shop(&relay, &ana, |s| {
        s["features"]["voice"] = json!(false);
        s["look"] = json!({
            "color": "#0f766e", "position": "left", "greeting": "Hola!",
            "away_message": "Back at 9, leave your email"
        });
    })
    .await;
    assert_eq!(status, 200);
    let (features, look) = visitor
        .recv_until(|m| match m {
            ServerMsg::Site { features, look, .. } => Some((features, look)),
            _ => None,
        })
        .await;
    assert!(!features.voice && !features.video, "video needs voice");
    assert_eq!(
        (look.color.as_str(), look.position, look.greeting.as_str()),
        ("#0f766e", Corner::Left, "Hola!")
    );
    assert_eq!(look.away_message, "Back at 9, leave your email");
    // The relay refuses what is off now.
    visitor
        .send(&ClientMsg::Call {
            conversation: conv.clone(),
            action: CallAction::Start {
                kind: CallKind::Voice,
            },
        })
        .await;
    assert_eq!(error(&mut visitor).await, ErrorCode::Forbidden);
    // A ping barrier: the other site's widget got nothing before its pong.
    other.send(&ClientMsg::Ping).await;
    let heard = other
        .recv_until(|m| match m {
            ServerMsg::Site { .. } | ServerMsg::Pong => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(heard, ServerMsg::Pong);

    // A new widget is welcomed with the new look, and the loader reads it too.
    let (_, welcome) = relay.visitor_welcome(None).await;
    let ServerMsg::WelcomeVisitor { look, .. } = welcome else {
        panic!("{welcome:?}")
    };
    assert_eq!(look.color, "#0f766e");
    let res = reqwest::get(relay.url(&format!("/api/look?site={}", relay.site.key)))
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    // Not cached: a page loaded after a change shows it.
    assert_eq!(res.headers()["cache-control"], "no-store");
    let loader: Value = res.json().await.unwrap();
    assert_eq!(
        loader,
        json!({
            "color": "#0f766e", "position": "left", "lang": "en",
            "open": "Open chat", "close": "Close chat", "title": "Chat"
        })
    );
}

#[tokio::test]
async fn the_widget_speaks_the_pages_then_the_browsers_then_the_sites_language() {
    let assets = tempfile::tempdir().unwrap();
    for page in ["widget", "console"] {
        std::fs::create_dir(assets.path().join(page)).unwrap();
        std::fs::write(
            assets.path().join(page).join("index.html"),
            "<!doctype html>\n<html lang=\"en\"><script type=\"module\">start()</script></html>",
        )
        .unwrap();
    }
    let relay = TestRelay::start_with(escalera_relay::Config {
        assets_dir: Some(assets.path().to_owned()),
        ..Default::default()
    })
    .await;
    let ana = relay.login("ana@shop.example").await;
    let key = relay.site.key.clone();
    // The language of the page at `path` for a browser asking for `accept`.
    let lang_of = |path: String, accept: &'static str| {
        let url = relay.url(&path);
        async move {
            let mut req = reqwest::Client::new().get(url);
            if !accept.is_empty() {
                req = req.header("accept-language", accept);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert!(res.headers()["vary"]
                .to_str()
                .unwrap()
                .contains("accept-language"));
            let html = res.text().await.unwrap();
            let at = html.find("<html lang=\"").expect("an html tag with a lang") + 12;
            html[at..at + 2].to_owned()
        }
    };
    let embed = format!("/embed?site={key}");
    // No preference anywhere: English.
    assert_eq!(lang_of(embed.clone(), "").await, "en");
    // The browser's first language Escalera speaks, by weight.
    assert_eq!(
        lang_of(embed.clone(), "fr-FR, es-MX;q=0.8, en;q=0.5").await,
        "es"
    );
    assert_eq!(lang_of(embed.clone(), "en-GB, es;q=0.8").await, "en");
    // The page's data-locale wins over the browser.
    assert_eq!(lang_of(format!("{embed}&lang=en"), "es").await, "en");
    assert_eq!(lang_of(format!("{embed}&lang=es-AR"), "en").await, "es");
    // A language the widget does not speak is refused in Settings, with its field.
    let (status, refused) = save_shop(&relay, &ana, |s| s["look"]["language"] = json!("fr")).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["field"], "language");
    // The site's default serves browsers that ask for nothing Escalera speaks.
    let (status, _) = save_shop(&relay, &ana, |s| s["look"]["language"] = json!("es")).await;
    assert_eq!(status, 200);
    assert_eq!(lang_of(embed.clone(), "").await, "es");
    assert_eq!(lang_of(embed.clone(), "fr, de;q=0.5").await, "es");
    assert_eq!(lang_of(embed.clone(), "en-US").await, "en");
    // The loader's labels come in the same language.
    let loader: Value = reqwest::Client::new()
        .get(relay.url(&format!("/api/look?site={key}")))
        .header("accept-language", "fr")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(loader["lang"], "es");
    assert_eq!(loader["open"], "Abrir el chat");
    assert_eq!(loader["close"], "Cerrar el chat");
    // The console follows the browser (the agent's own choice is kept by the console).
    assert_eq!(lang_of("/agent".into(), "es-ES").await, "es");
    assert_eq!(lang_of("/agent".into(), "fr").await, "en");
}

#[tokio::test]
async fn agents_made_in_settings_log_in_and_a_disabled_one_is_out_at_once() {
    let relay = TestRelay::start().await;
    let ana = relay.login("ana@shop.example").await;
    let (status, made) = call(
        &relay,
        &ana,
        Method::POST,
        "/api/admin/agents",
        Some(json!({
            "email": "Cy@Shop.example", "name": "Cy", "admin": false,
            "sites": [relay.other_site.key.0], "limit": 2
        })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let password = made["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 16);
    assert_eq!(made["agent"]["email"], "cy@shop.example");
    assert_eq!(made["agent"]["limit"], 2);
    assert_eq!(made["agent"]["sites"], json!([relay.other_site.key.0]));
    let url = relay.url("/api/login");
    let login = |password: String| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({ "email": "cy@shop.example", "password": password }))
                .send()
                .await
                .unwrap()
        }
    };
    let res = login(password.clone()).await;
    assert_eq!(res.status(), 200, "the one-time password works");
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let (mut cy, first) = relay.console(&cookie).await;
    assert!(matches!(first, ServerMsg::WelcomeAgent { .. }));

    // Disabled: the console is told and closed by the time the change is answered (not at
    // the next periodic session check).
    let id = made["agent"]["id"].as_str().unwrap();
    let path = format!("/api/admin/agents/{id}");
    let body =
        json!({ "admin": false, "sites": [relay.other_site.key.0], "limit": 2, "disabled": true });
    let (status, after) = call(&relay, &ana, Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(after["disabled"], true);
    assert_eq!(after["sessions"], 0);
    // A ping barrier: ended at once, the console gets the end before any pong (a periodic
    // check would come after it).
    cy.send(&ClientMsg::Ping).await;
    let next = cy
        .recv_until(|m| match m {
            ServerMsg::Error { .. } | ServerMsg::Pong => Some(m),
            _ => None,
        })
        .await;
    assert!(
        matches!(
            next,
            ServerMsg::Error {
                code: ErrorCode::SessionEnded,
                ..
            }
        ),
        "{next:?}"
    );
    assert!(cy.closed_within(std::time::Duration::from_secs(10)).await);
    assert_eq!(login(password.clone()).await.status(), 401);

    // Enabled again with a new password: the old one no longer works.
    let body = json!({ "admin": false, "sites": null, "limit": 2, "disabled": false });
    call(&relay, &ana, Method::PUT, &path, Some(body)).await;
    let (status, reset) = call(
        &relay,
        &ana,
        Method::POST,
        &format!("{path}/password"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let fresh = reset["password"].as_str().unwrap().to_owned();
    assert_ne!(fresh, password);
    assert_eq!(login(password).await.status(), 401);
    assert_eq!(login(fresh).await.status(), 200);

    let (_, audit) = call(&relay, &ana, Method::GET, "/api/admin/audit", None).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "agent.password",
            "agent.access",
            "agent.access",
            "agent.add"
        ]
    );
}

/// A visitor socket of the main site saying hello with `identity`; the socket and what the
/// relay answered.
async fn hello_as(
    relay: &TestRelay,
    identity: Option<escalera_protocol::Identity>,
) -> (Ws, ServerMsg) {
    hello_with(relay, None, identity).await
}

/// The same, with a token from an earlier welcome.
async fn hello_with(
    relay: &TestRelay,
    token: Option<escalera_protocol::VisitorToken>,
    identity: Option<escalera_protocol::Identity>,
) -> (Ws, ServerMsg) {
    let mut ws = relay
        .visitor_socket(&relay.site.key, common::SHOP)
        .await
        .unwrap();
    ws.send(&ClientMsg::Hello {
        protocol: escalera_protocol::PROTOCOL_VERSION,
        token,
        identity,
        resume: None,
    })
    .await;
    let answer = ws.recv().await;
    (ws, answer)
}

#[tokio::test]
async fn a_verified_user_finds_their_conversation_on_any_device_and_a_wrong_hash_is_refused() {
    let relay = TestRelay::start().await;
    let secret = relay.site.identity_secret.clone();
    assert_eq!(secret.len(), 64);
    let ines = |hash: String| escalera_protocol::Identity {
        id: "user-42".into(),
        name: Some("Inés Díaz".into()),
        email: Some("ines@example.com".into()),
        hash,
    };
    let good = escalera_relay::secrets::identity_hash(&secret, "user-42");

    // The laptop: verified, writes; agents see her name, marked verified.
    let (mut laptop, welcome) = hello_as(&relay, Some(ines(good.clone()))).await;
    let ServerMsg::WelcomeVisitor { conversation, .. } = welcome else {
        panic!("{welcome:?}")
    };
    laptop
        .send(&ClientMsg::Chat {
            conversation: conversation.clone(),
            client_id: "c1".into(),
            text: "From my laptop".into(),
        })
        .await;
    common::ack(&mut laptop).await;
    let (_, agent_welcome) = relay.agent("ana@shop.example").await;
    let ServerMsg::WelcomeAgent { conversations, .. } = agent_welcome else {
        panic!()
    };
    let row = conversations.iter().find(|c| c.id == conversation).unwrap();
    assert!(row.verified);
    assert_eq!(row.visitor_label, "Inés Díaz");

    // The phone, with no token: the same conversation and its history.
    let (mut phone, welcome) = hello_as(&relay, Some(ines(good.to_uppercase()))).await;
    let ServerMsg::WelcomeVisitor {
        conversation: same, ..
    } = welcome
    else {
        panic!("{welcome:?}")
    };
    assert_eq!(same, conversation);
    phone
        .send(&ClientMsg::Join {
            conversation: same,
            after_seq: 0,
        })
        .await;
    let history = common::history(&mut phone).await;
    assert!(history.iter().any(|m| m.text == "From my laptop"));

    // A wrong hash (another id's) is refused with the reason, and the socket closes.
    let wrong = escalera_relay::secrets::identity_hash(&secret, "user-43");
    let (mut forged, answer) = hello_as(&relay, Some(ines(wrong))).await;
    let ServerMsg::Error { code, message, .. } = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("identity secret"), "{message}");
    assert!(
        forged
            .closed_within(std::time::Duration::from_secs(5))
            .await
    );

    // Anonymous visitors are welcome until the site requires a verified identity.
    let (_, answer) = hello_as(&relay, None).await;
    assert!(matches!(answer, ServerMsg::WelcomeVisitor { .. }));
    let ana = relay.login("ana@shop.example").await;
    let (status, site) = save_shop(&relay, &ana, |s| s["identity_required"] = json!(true)).await;
    assert_eq!(status, 200);
    assert_eq!(site["identity_required"], true);
    assert_eq!(site["identity_secret"], secret.as_str());
    let (_, answer) = hello_as(&relay, None).await;
    let ServerMsg::Error { code, message, .. } = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("log in on the site"), "{message}");
    let (_, answer) = hello_as(&relay, Some(ines(good))).await;
    assert!(matches!(answer, ServerMsg::WelcomeVisitor { .. }));
}

#[tokio::test]
async fn a_visitor_who_logs_in_before_writing_gets_a_conversation_of_their_own() {
    let relay = TestRelay::start().await;
    let secret = relay.site.identity_secret.clone();
    // Anonymous at first: a conversation not stored yet.
    let (_anonymous, welcome) = hello_as(&relay, None).await;
    let ServerMsg::WelcomeVisitor {
        token,
        conversation,
        ..
    } = welcome
    else {
        panic!("{welcome:?}")
    };
    // Logged in on the site (the page calls identify; the widget says hello again).
    let ines = escalera_protocol::Identity {
        id: "user-7".into(),
        name: Some("Inés".into()),
        email: None,
        hash: escalera_relay::secrets::identity_hash(&secret, "user-7"),
    };
    let (mut ws, welcome) = hello_with(&relay, Some(token), Some(ines.clone())).await;
    let ServerMsg::WelcomeVisitor {
        conversation: same, ..
    } = welcome
    else {
        panic!("{welcome:?}")
    };
    assert_eq!(same, conversation);
    ws.send(&ClientMsg::Chat {
        conversation: same.clone(),
        client_id: "c1".into(),
        text: "Now logged in".into(),
    })
    .await;
    common::ack(&mut ws).await;
    // Stored as hers: another device finds it.
    let (_, welcome) = hello_as(&relay, Some(ines)).await;
    let ServerMsg::WelcomeVisitor {
        conversation: found,
        ..
    } = welcome
    else {
        panic!("{welcome:?}")
    };
    assert_eq!(found, same);
}
