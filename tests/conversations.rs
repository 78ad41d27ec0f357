//! Several conversations in one browser: the console switching between visitors whose
//! messages share `seq`s, their drafts and uploads, and a widget that resumes another
//! conversation than the one it showed. Each shows only its own conversation.

use escalera_e2e::{wire_chat, Browser, Driver, Product, WireSocket};
use serde_json::json;

const BISON: [&str; 3] = [
    "Hello, I have a question about an order",
    "Do you ship bison jerky?",
    "To Lisbon, I mean",
];
const KETTLE: [&str; 3] = [
    "My kettle arrived broken",
    "The lid does not close",
    "Can I get a refund?",
];

fn from_visitor(texts: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    texts.iter().map(|t| ("visitor", *t)).collect()
}

/// The visitor's messages, then the line routing wrote when Ana's console opened and the
/// conversation became hers.
fn routed_to_ana(texts: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    let mut all = from_visitor(texts);
    all.push(("system", "Ana joined the conversation"));
    all
}

/// Two visitors over the wire, three messages each (so both conversations have seqs 1 to 3),
/// and Ana logged in to the console with both rows shown. The visitors' sockets are returned
/// to keep them online.
async fn two_visitors_and_ana(
    product: &Product,
    driver: &mut Driver,
) -> (Browser, Vec<WireSocket>) {
    let mut visitors = Vec::new();
    for texts in [&BISON, &KETTLE] {
        let (mut ws, _, conversation) = product.wire_visitor().await;
        wire_chat(&mut ws, &conversation, texts).await;
        visitors.push(ws);
    }
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ana.wait_js(
        "two conversation rows",
        "return document.querySelectorAll('[data-testid=conversation]').length === 2",
        vec![],
    )
    .await;
    (ana, visitors)
}

/// What the console's composer holds.
async fn composer_text(agent: &Browser) -> String {
    let v = agent
        .js(
            "return document.querySelector('[data-testid=chat-input]').value",
            vec![],
        )
        .await;
    v.as_str().unwrap().to_owned()
}

/// Types into the composer (WebDriver keys; "\u{E007}" is Enter).
async fn type_into(agent: &Browser, keys: &str) {
    agent
        .find("chat-input")
        .await
        .send_keys(keys)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_conversations_shows_each_ones_own_messages_and_uploads() {
    let flags = ["--max-upload", "1K"].map(String::from);
    let product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;
    let (ana, _visitors) = two_visitors_and_ana(&product, &mut driver).await;

    // A file too big for the relay, dropped on the first conversation, fails there only.
    ana.open_conversation(BISON[2]).await;
    ana.wait_messages(&routed_to_ana(&BISON)).await;
    ana.drop_file("too-big.txt", &"x".repeat(4096)).await;
    ana.find("upload-error").await;
    let upload_errors = "return document.querySelectorAll('[data-testid=upload-error]').length";

    for _ in 0..4 {
        ana.open_conversation(KETTLE[2]).await;
        ana.wait_messages(&routed_to_ana(&KETTLE)).await;
        assert_eq!(ana.js(upload_errors, vec![]).await, json!(0));
        ana.open_conversation(BISON[2]).await;
        ana.wait_messages(&routed_to_ana(&BISON)).await;
        assert_eq!(ana.js(upload_errors, vec![]).await, json!(1));
    }
    ana.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_conversation_keeps_its_own_draft_until_logout() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (ana, _visitors) = two_visitors_and_ana(&product, &mut driver).await;

    // A reply typed for one visitor and not sent stays with that visitor.
    ana.open_conversation(BISON[2]).await;
    ana.wait_messages(&routed_to_ana(&BISON)).await;
    type_into(&ana, "Yes, we ship to Lisbon").await;
    ana.open_conversation(KETTLE[2]).await;
    ana.wait_messages(&routed_to_ana(&KETTLE)).await;
    assert_eq!(composer_text(&ana).await, "");
    type_into(&ana, "Sorry about the kettle").await;

    ana.open_conversation(BISON[2]).await;
    ana.wait_messages(&routed_to_ana(&BISON)).await;
    assert_eq!(composer_text(&ana).await, "Yes, we ship to Lisbon");
    // Enter sends it here, to the visitor it was written for.
    type_into(&ana, "\u{E007}").await;
    ana.wait_message("agent", "Yes, we ship to Lisbon").await;
    assert_eq!(composer_text(&ana).await, "");

    // The other draft is still there, also after a reload.
    ana.open_conversation(KETTLE[2]).await;
    ana.wait_messages(&routed_to_ana(&KETTLE)).await;
    assert_eq!(composer_text(&ana).await, "Sorry about the kettle");
    ana.client.refresh().await.unwrap();
    ana.open_conversation(KETTLE[2]).await;
    ana.wait_messages(&routed_to_ana(&KETTLE)).await;
    assert_eq!(composer_text(&ana).await, "Sorry about the kettle");
    // Nothing of it reached the kettle visitor's conversation.
    assert!(!ana
        .messages()
        .await
        .iter()
        .any(|(_, t)| t.contains("Lisbon") || t.contains("Sorry")));

    // Logging out forgets the drafts, and raises no JavaScript error: errors are collected,
    // and the console's socket, once closed, says so (its own close handler runs first).
    ana.js(
        "window.__errors = [];
         addEventListener('error', e => window.__errors.push(e.message));
         const close = WebSocket.prototype.close;
         WebSocket.prototype.close = function (...args) {
             this.addEventListener('close', () => { window.__closed = true; });
             return close.apply(this, args);
         };",
        vec![],
    )
    .await;
    ana.click("logout").await;
    ana.find("login-email").await;
    ana.wait_js(
        "the console's socket closed",
        "return window.__closed === true",
        vec![],
    )
    .await;
    assert_eq!(ana.js("return window.__errors", vec![]).await, json!([]));
    ana.login_here("ana@shop.example").await;
    ana.open_conversation(KETTLE[2]).await;
    ana.wait_messages(&routed_to_ana(&KETTLE)).await;
    assert_eq!(composer_text(&ana).await, "");
    ana.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_widget_that_resumes_another_conversation_shows_only_that_ones_messages() {
    let mut product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    for text in BISON {
        visitor.say(text).await;
        visitor.wait_message("visitor", text).await;
    }
    visitor.wait_messages(&from_visitor(&BISON)).await;

    // Another conversation of this site starts in this browser (another tab, as the widget
    // would): its token is what this browser now keeps for the site.
    let (mut ws, token, conversation) = product.wire_visitor().await;
    wire_chat(&mut ws, &conversation, &KETTLE).await;
    drop(ws);
    visitor
        .js(
            "localStorage.setItem('escalera:' + arguments[0] + ':token', arguments[1])",
            vec![json!(product.site_key), json!(token)],
        )
        .await;

    // The relay restarts; the open widget reconnects with the stored token and resumes that
    // conversation: only its messages, although both have seqs 1 to 3.
    product.kill().await;
    visitor.find("offline").await;
    product.restart().await;
    visitor.wait_messages(&from_visitor(&KETTLE)).await;

    // So does a reload.
    visitor.client.refresh().await.unwrap();
    visitor.open_widget().await;
    visitor.wait_messages(&from_visitor(&KETTLE)).await;
    visitor.close().await;
}
