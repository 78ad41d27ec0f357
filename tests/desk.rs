//! The agents' desk in real browsers: presence.

use escalera_e2e::{chatting, voice_call, Driver, Product};
use serde_json::json;

/// The presence a console shows for `name` in its team list.
const PRESENCE_OF: &str = "const row = [...document.querySelectorAll('[data-testid=team] li')]
    .find(li => li.querySelector('.name').textContent === arguments[0]);
    return row ? row.dataset.presence : null";

#[tokio::test(flavor = "multi_thread")]
async fn the_team_sees_each_agents_presence_live_and_a_restart_remembers_it() {
    // A console gone 2 s is offline for the team (default 30 s).
    let flags = ["--presence-grace", "2"].map(String::from);
    let mut product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    let ben = driver.browser().await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    let sees = |who: &'static str, presence: &'static str| {
        let ben = &ben;
        async move {
            ben.wait_js(
                &format!("{who} shown {presence} in Ben's team list"),
                &format!("{PRESENCE_OF} === arguments[1]"),
                vec![json!(who), json!(presence)],
            )
            .await;
        }
    };
    sees("Ana", "available").await;
    sees("Ben", "available").await;

    // Ana chooses away in her header.
    ana.js(
        "const s = document.querySelector('[data-testid=presence]');
         s.value = 'away'; s.dispatchEvent(new Event('change', {bubbles: true}))",
        vec![],
    )
    .await;
    sees("Ana", "away").await;
    // In a call she is busy, by herself, and back to away once it ends.
    voice_call(&visitor, &ana).await;
    sees("Ana", "busy").await;
    ana.find("presence-busy").await;
    ana.click("call-hangup").await;
    sees("Ana", "away").await;
    ana.wait_js(
        "Ana's own choice still away",
        "return document.querySelector('[data-testid=presence]').value === 'away'",
        vec![],
    )
    .await;

    // Ana's console closes: past the grace period she is offline.
    ana.close().await;
    sees("Ana", "offline").await;

    // A restart remembers what she chose.
    product.kill().await;
    product.restart().await;
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ana.wait_js(
        "Ana's choice kept over the restart",
        "return document.querySelector('[data-testid=presence]').value === 'away'",
        vec![],
    )
    .await;
    sees("Ana", "away").await;
    for b in [visitor, ana, ben] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_hidden_and_idle_says_away_by_itself_and_comes_back() {
    // Idle 2 s with the tab hidden (default 300 s).
    let flags = ["--away-after", "2"].map(String::from);
    let product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    let ben = driver.browser().await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    let shown = |presence: &'static str| {
        let ben = &ben;
        async move {
            ben.wait_js(
                &format!("Ana shown {presence}"),
                &format!("{PRESENCE_OF} === arguments[1]"),
                vec![json!("Ana"), json!(presence)],
            )
            .await;
        }
    };
    shown("available").await;
    // Her tab goes to the background (headless Chromium has no other tab to switch to).
    ana.js(
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
         document.dispatchEvent(new Event('visibilitychange'))",
        vec![],
    )
    .await;
    shown("away").await;
    // Back, and a key pressed: available again, as she had chosen.
    ana.js(
        "Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
         document.dispatchEvent(new Event('visibilitychange'));
         window.dispatchEvent(new KeyboardEvent('keydown', {key: 'Shift'}))",
        vec![],
    )
    .await;
    shown("available").await;
    for b in [ana, ben] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_sides_see_the_other_typing_and_the_visitor_sees_what_was_read() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    // The visitor types (without sending): Ana sees it under the conversation.
    visitor
        .find("chat-input")
        .await
        .send_keys("I think the seal")
        .await
        .unwrap();
    ana.wait_js(
        "the visitor typing, at Ana's",
        "const t = document.querySelector('[data-testid=typing]');
         return t && t.textContent.includes('visitor is typing')",
        vec![],
    )
    .await;
    // Ana types: the visitor sees her name.
    ana.find("chat-input")
        .await
        .send_keys("Let me check")
        .await
        .unwrap();
    visitor
        .wait_js(
            "Ana typing, at the visitor's",
            "const t = document.querySelector('[data-testid=typing]');
             return t && t.textContent === 'Ana is typing…'",
            vec![],
        )
        .await;
    // It goes a few seconds after the last key.
    visitor
        .wait_js(
            "the typing line gone",
            "return document.querySelector('[data-testid=typing]') === null",
            vec![],
        )
        .await;

    // Ana has the conversation open: the visitor's messages show as read, a new one too.
    let all_read =
        "const mine = [...document.querySelectorAll('[data-testid=message][data-author=visitor]')];
        return mine.length === arguments[0] && mine.every(m => m.dataset.read === 'true')";
    visitor
        .wait_js("the first message read", all_read, vec![json!(1)])
        .await;
    visitor.find("chat-input").await.clear().await.unwrap();
    visitor.say("It drips from the bottom").await;
    ana.wait_message("visitor", "It drips from the bottom")
        .await;
    visitor
        .wait_js("both messages read", all_read, vec![json!(2)])
        .await;
    for b in [visitor, ana] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_is_never_visible_to_the_visitor_also_after_a_reload() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    ana.click("note-toggle").await;
    ana.say("Regular customer, offer the free seal").await;
    ana.wait_js(
        "the note shown to Ana as a note",
        "return [...document.querySelectorAll('[data-testid=message][data-author=note]')]
            .some(m => m.textContent.includes('offer the free seal') && m.dataset.pending === 'false')",
        vec![],
    )
    .await;
    // The toggle was for one message: the next is a reply the visitor gets.
    ana.say("A new seal is on its way").await;
    visitor
        .wait_message("agent", "A new seal is on its way")
        .await;
    let no_note = "return !document.body.textContent.includes('free seal')
        && document.querySelectorAll('[data-author=note]').length === 0";
    assert_eq!(visitor.js(no_note, vec![]).await, json!(true));
    // After a reload (history from the relay): still not there, the reply is.
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor
        .wait_message("agent", "A new seal is on its way")
        .await;
    assert_eq!(visitor.js(no_note, vec![]).await, json!(true));
    for b in [visitor, ana] {
        b.close().await;
    }
}
