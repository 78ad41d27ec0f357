//! The product in a real headless Chromium against the real relay binary: the demo host page on
//! its own origin, the widget in its iframe, and the agent console.

use escalera_e2e::{send, Browser, Driver, Product};
use escalera_protocol::{ClientMsg, ClientMsgId, ConversationId};
use serde_json::json;

/// Whether the agent's console shows a conversation row.
async fn wait_rows(agent: &Browser, n: usize) {
    agent
        .wait_js(
            &format!("{n} conversation rows"),
            "return document.querySelectorAll('[data-testid=conversation]').length === arguments[0]",
            vec![json!(n)],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_on_the_demo_page_chats_with_an_agent() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    let agent = driver.browser().await;

    // The host page is another origin; the widget loads only on the first click.
    visitor.goto(&product.demo_url).await;
    visitor.find("launcher").await;
    let framed = visitor
        .js(
            "return document.querySelector('[data-testid=widget-frame]')",
            vec![],
        )
        .await;
    assert!(framed.is_null(), "no iframe before the click");
    assert_ne!(product.demo_origin(), product.relay_url);
    visitor.open_widget().await;
    // No agent is online yet: the widget says so before the visitor writes.
    visitor.find("away").await;
    visitor
        .wait_js(
            "'We're away right now'",
            "return document.querySelector('[data-testid=agent-status]').textContent === \"We're away right now\"",
            vec![],
        )
        .await;

    let hello = "Hello, my espresso machine leaks";
    visitor.say(hello).await;
    visitor.wait_message("visitor", hello).await;

    // Ana logs in, available: the conversation is routed to her, and the visitor is told.
    agent.login(&product.relay_url, "ana@shop.example").await;
    wait_rows(&agent, 1).await;
    agent
        .wait_js(
            "the row assigned to Ana",
            "return document.querySelector('[data-testid=conversation]').dataset.status === 'assigned'",
            vec![],
        )
        .await;
    visitor
        .wait_message("system", "Ana joined the conversation")
        .await;
    visitor
        .wait_js(
            "the agent's name in the widget",
            "return document.querySelector('[data-testid=widget-title]').textContent === 'Ana'
                && document.querySelector('[data-testid=agent-status]').textContent === \"You're now talking with Ana\"
                && document.querySelector('[data-testid=away]') === null",
            vec![],
        )
        .await;
    agent.click("conversation").await;
    agent.wait_message("visitor", hello).await;

    // She replies with Enter.
    let reply = "Hi! I am Ana. Is the water tank seated?";
    let input = agent.find("chat-input").await;
    input.send_keys(&format!("{reply}\u{E007}")).await.unwrap();
    agent.wait_message("agent", reply).await;
    visitor.wait_message("agent", reply).await;

    // Markup is text: shown literally, never parsed, newlines kept.
    let markup = "<b>bold?</b>\n<img src=x onerror=\"document.title='pwned'\">";
    visitor.say(markup).await;
    visitor.wait_message("visitor", markup).await;
    agent.wait_message("visitor", markup).await;
    let parsed = agent
        .js(
            "return [...document.querySelectorAll('[data-testid=message] .bubble')]
                .some(b => b.querySelector('b, img') !== null)",
            vec![],
        )
        .await;
    assert_eq!(parsed, json!(false), "markup must not become elements");
    assert_ne!(
        agent.js("return document.title", vec![]).await,
        json!("pwned")
    );

    // Closed, the widget shows new agent messages as a count on the bubble. Exactly one: the
    // widget heard it was open since the first click (widget.js tells it only once it is
    // ready; a message posted before would be lost and the count would be 2).
    visitor.client.enter_parent_frame().await.unwrap();
    visitor.click("launcher").await;
    agent.say("Are you still there?").await;
    agent.wait_message("agent", "Are you still there?").await;
    visitor
        .wait_js(
            "an unread count of 1 on the bubble",
            "const b = document.querySelector('[data-testid=launcher] .esc-b');
             return b.style.display !== 'none' && b.textContent === '1'",
            vec![],
        )
        .await;
    visitor.click("launcher").await;
    visitor
        .wait_js(
            "the count gone once open",
            "return document.querySelector('[data-testid=launcher] .esc-b').style.display === 'none'",
            vec![],
        )
        .await;
    visitor.enter_widget().await;

    // A reload of the host page resumes the same conversation with its history.
    let before = visitor.messages().await;
    assert_eq!(before.len(), 5, "{before:?}");
    visitor.client.refresh().await.unwrap();
    visitor.open_widget().await;
    visitor.wait_message("visitor", markup).await;
    assert_eq!(visitor.messages().await, before);
    // And it is still one conversation for the agent.
    wait_rows(&agent, 1).await;

    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_see_a_new_conversation_and_the_first_to_take_it_gets_it() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let ana = driver.browser().await;
    let ben = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    // Both step away, so routing gives nobody the conversation: they take it by hand.
    for agent in [&ana, &ben] {
        agent.find("list-empty").await;
        agent.choose("presence", "away").await;
    }
    // The relay has both choices (each console hears the team from it).
    for agent in [&ana, &ben] {
        agent
            .wait_js(
                "both shown away",
                "return document.querySelectorAll('[data-testid=team] [data-presence=away]').length === 2",
                vec![],
            )
            .await;
    }

    // A visitor writes (over the wire, as the widget would, from the demo page's origin).
    let (mut ws, _, conversation) = product.wire_visitor().await;
    let first = ClientMsg::Chat {
        conversation: ConversationId(conversation),
        client_id: ClientMsgId::from("first"),
        text: "Anyone there?".into(),
    };
    send(&mut ws, &first).await;

    // Both agents see it arrive, live, as waiting, with an unread count.
    for agent in [&ana, &ben] {
        wait_rows(agent, 1).await;
        agent.find("unread").await;
        agent
            .wait_js(
                "the queue count",
                "return document.querySelector('[data-testid=queue-count]').textContent === '1 waiting'",
                vec![],
            )
            .await;
    }
    // Both open it; Ana takes it first.
    ana.click("conversation").await;
    ben.click("conversation").await;
    ben.find("take").await;
    ana.click("take").await;
    ana.wait_message("system", "Ana joined the conversation")
        .await;
    // Ben sees that Ana has it: no take button, no reply box.
    let taken = ben.find("taken-by").await;
    assert_eq!(taken.text().await.unwrap(), "Ana has this chat");
    ben.wait_js(
        "the row marked assigned and the composer disabled",
        "return document.querySelector('[data-testid=conversation]').dataset.status === 'assigned'
            && document.querySelector('[data-testid=chat-input]').disabled
            && document.querySelector('[data-testid=take]') === null",
        vec![],
    )
    .await;
    ana.close().await;
    ben.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_widget_survives_a_killed_relay_and_sends_what_was_typed_offline() {
    let mut product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor.say("before the crash").await;
    visitor.wait_message("visitor", "before the crash").await;

    product.kill().await;
    visitor.find("offline").await;
    visitor.say("typed while offline").await;
    let pending = visitor
        .js(
            "return [...document.querySelectorAll('[data-testid=message]')].filter(m => m.dataset.pending === 'true').length",
            vec![],
        )
        .await;
    assert_eq!(pending, json!(1));

    product.restart().await;
    visitor.wait_message("visitor", "typed while offline").await;
    visitor
        .wait_js(
            "the offline banner to go",
            "return document.querySelector('[data-testid=offline]') === null",
            vec![],
        )
        .await;
    let agent = driver.browser().await;
    agent.login(&product.relay_url, "ana@shop.example").await;
    agent.click("conversation").await;
    agent.wait_message("visitor", "before the crash").await;
    agent.wait_message("visitor", "typed while offline").await;
    let texts: Vec<String> = agent
        .messages()
        .await
        .into_iter()
        .filter(|(author, _)| author == "visitor")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        texts,
        ["before the crash", "typed while offline"],
        "each stored once"
    );
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_page_opens_and_closes_the_widget_hears_its_events_and_logs_the_visitor_out() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    let agent = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.find("launcher").await;
    // The page listens, then opens the widget itself.
    visitor
        .js(
            "window.__ev = [];
             Escalera.on('open', () => __ev.push('open'))
                .on('close', () => __ev.push('close'))
                .on('unread', n => __ev.push('unread ' + n))
                .on('message', m => __ev.push('message ' + m.author + ' ' + m.text));
             Escalera.open()",
            vec![],
        )
        .await;
    visitor.enter_widget().await;
    visitor.say("Hello from the API").await;
    agent.login(&product.relay_url, "ana@shop.example").await;
    agent.open_conversation("Hello from the API").await;

    // Closed by the page: an agent's message counts as unread and is heard as a message.
    visitor.client.enter_parent_frame().await.unwrap();
    visitor.js("Escalera.close()", vec![]).await;
    agent.say("Are you still there?").await;
    visitor
        .wait_js(
            "the page's events",
            "return __ev.includes('unread 1') && __ev.includes('message agent Are you still there?')",
            vec![],
        )
        .await;
    let frame_shown =
        "return document.querySelector('[data-testid=widget-frame]').style.display !== 'none'";
    assert_eq!(visitor.js(frame_shown, vec![]).await, json!(false));
    visitor.js("Escalera.toggle()", vec![]).await;
    visitor
        .wait_js(
            "open again, read",
            "return __ev.filter(e => !e.startsWith('message')).join() === 'open,close,unread 1,open,unread 0'",
            vec![],
        )
        .await;
    assert_eq!(visitor.js(frame_shown, vec![]).await, json!(true));

    // Logout: this browser forgets the visitor; the widget starts a new, empty conversation.
    visitor.js("Escalera.logout()", vec![]).await;
    visitor.enter_widget().await;
    visitor
        .wait_js(
            "a new, empty conversation",
            "return document.querySelectorAll('[data-testid=message]').length === 0
                && document.querySelector('[data-testid=chat-input]') !== null",
            vec![],
        )
        .await;
    visitor.say("A different person now").await;
    agent
        .wait_js(
            "a second conversation in the console",
            "return document.querySelectorAll('[data-testid=conversation]').length === 2",
            vec![],
        )
        .await;
    visitor.close().await;
    agent.close().await;
}
