//! The product under its own rules, in a real browser: the console and the widget run under a
//! strict Content-Security-Policy without a single violation, during a call too; and a page of
//! another origin cannot make a logged-in agent's browser log out or post into a conversation.

use escalera_e2e::{chatting, send, voice_call, wire_chat, Browser, Driver, Product};
use escalera_protocol::ClientMsg;
use serde_json::json;

/// Injects an inline script, which the policy must block: its report is the barrier after
/// which every report the page made before has reached the relay.
const CANARY: &str = "const s = document.createElement('script');
    s.textContent = 'window.__canary = 1';
    document.body.appendChild(s);
    return window.__canary === undefined";

async fn canary(side: &Browser) {
    assert_eq!(
        side.js(CANARY, vec![]).await,
        json!(true),
        "an inline script ran"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_and_the_widget_run_under_a_strict_csp_without_a_violation() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;
    voice_call(&visitor, &agent).await;
    visitor.click("call-video").await;
    agent.wait_remote_frames().await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;
    agent.click("snapshot").await;
    visitor
        .wait_js(
            "the snapshot shown",
            "return [...document.querySelectorAll('[data-testid=attachment] img')]
                .some(i => i.complete && i.naturalWidth > 0)",
            vec![],
        )
        .await;
    agent.click("call-hangup").await;
    visitor.wait_message_prefix("system", "Call ended, ").await;

    // Both pages (the widget inside its frame) block an injected inline script and report it.
    canary(&visitor).await;
    canary(&agent).await;
    let wait = tokio::time::Instant::now() + escalera_e2e::PATIENCE;
    while product.log_lines("csp violation").len() < 2 {
        assert!(
            tokio::time::Instant::now() < wait,
            "the canaries were never reported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let violations = product.log_lines("csp violation");
    assert_eq!(
        violations.len(),
        2,
        "only the two canaries may be reported: {violations:#?}"
    );
    for v in &violations {
        assert!(v.contains("blocked=\"inline\""), "{v}");
    }
    visitor.close().await;
    agent.close().await;
}

/// Serves one HTML page on a loopback port of its own: another origin than the relay's.
async fn cross_site_page(html: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_pages_forms_cannot_log_an_agent_out_or_post_as_them() {
    let product = Product::start().await;
    // Routing gives Ana nothing: the conversation stays waiting, so a forged take shows.
    product
        .cli(&["agent", "limit", "--email", "ana@shop.example", "0"])
        .await;
    let mut driver = Driver::start().await;
    // A visitor waits in a conversation, which the agent sees in the console.
    let (mut ws, _, conversation) = product.wire_visitor().await;
    wire_chat(&mut ws, &conversation, &["Is anyone there?"]).await;
    let agent = driver.browser().await;
    agent.login(&product.relay_url, "ana@shop.example").await;
    agent.open_conversation("Is anyone there?").await;
    agent.find("take").await;

    // A page elsewhere (same site, another port: the session cookie goes along) submits two
    // forms by itself as soon as it loads: a logout, then a text/plain "file" upload.
    let relay = &product.relay_url;
    for form in [
        format!(r#"<form method="post" action="{relay}/api/logout"></form>"#),
        format!(
            r#"<form method="post" enctype="text/plain" action="{relay}/api/conversations/{conversation}/files?name=evil.txt"><input name="a" value="b"></form>"#
        ),
    ] {
        let page = cross_site_page(format!(
            "<!doctype html><body>{form}<script>document.forms[0].submit()</script></body>"
        ))
        .await;
        agent.goto(&page).await;
        agent
            .wait_js(
                "the relay's refusal",
                "return location.href.startsWith(arguments[0]) &&
                    document.body.textContent.includes('another site')",
                vec![json!(relay)],
            )
            .await;
    }

    // The agent is still logged in; the conversation is untouched: still waiting, no file.
    agent.goto(&format!("{relay}/agent")).await;
    agent.open_conversation("Is anyone there?").await;
    agent.find("take").await;
    // A barrier: a message after the attempts arrives, and nothing came before it.
    send(
        &mut ws,
        &ClientMsg::Chat {
            conversation: conversation.as_str().into(),
            client_id: "after".into(),
            text: "Hello?".into(),
        },
    )
    .await;
    agent.wait_message("visitor", "Hello?").await;
    assert_eq!(
        agent.messages().await,
        [
            ("visitor".to_owned(), "Is anyone there?".to_owned()),
            ("visitor".to_owned(), "Hello?".to_owned())
        ]
    );
    agent.close().await;
}
