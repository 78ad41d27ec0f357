//! The agents' desk in real browsers: presence, typing and read receipts, notes, routing and
//! the queue, calls from the queue, nobody online, transfer, close / rate / reopen.

use escalera_e2e::{chatting, voice_call, wire_chat, Browser, Driver, Product};
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

/// Waits until `agent`'s console shows `n` rows under the "Mine" filter (clicked first).
async fn mine(agent: &Browser, n: usize) -> Vec<String> {
    agent
        .js(
            "document.querySelector('[data-testid=filter][data-filter=mine]').click()",
            vec![],
        )
        .await;
    let previews = agent
        .wait_js(
            &format!("{n} conversations under Mine"),
            "const rows = [...document.querySelectorAll('[data-testid=conversation]')];
             return rows.length === arguments[0] && rows.map(r => r.querySelector('.preview').textContent)",
            vec![json!(n)],
        )
        .await;
    serde_json::from_value(previews).unwrap()
}

/// Waits until both consoles show the whole team `available` (the relay knows it).
async fn all_available(agents: &[&Browser]) {
    for a in agents {
        a.wait_js(
            "the team available",
            "const rows = document.querySelectorAll('[data-testid=team] li');
             return rows.length === 2 && [...rows].every(r => r.dataset.presence === 'available')",
            vec![],
        )
        .await;
    }
}

/// The widget's subtitle becomes `text`.
async fn widget_says(visitor: &Browser, text: &str) {
    visitor
        .wait_js(
            &format!("the widget saying {text:?}"),
            "return document.querySelector('[data-testid=agent-status]').textContent === arguments[0]",
            vec![json!(text)],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_with_room_for_one_each_share_three_visitors_and_the_third_waits_in_line() {
    let product = Product::start().await;
    for email in ["ana@shop.example", "ben@shop.example"] {
        product
            .cli(&["agent", "limit", "--email", email, "1"])
            .await;
    }
    let mut driver = Driver::start().await;
    let ana = driver.browser().await;
    let ben = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    all_available(&[&ana, &ben]).await;

    // Visitors 1 and 2 (over the wire, as the widget would): one to each agent.
    let (mut one, _, c1) = product.wire_visitor().await;
    wire_chat(&mut one, &c1, &["Visitor one here"]).await;
    let (mut two, _, c2) = product.wire_visitor().await;
    wire_chat(&mut two, &c2, &["Visitor two here"]).await;
    let (ana_has, ben_has) = (mine(&ana, 1).await, mine(&ben, 1).await);
    let mut both = [ana_has[0].clone(), ben_has[0].clone()];
    both.sort();
    assert_eq!(both, ["Visitor one here", "Visitor two here"]);

    // Visitor 3, in the widget: both agents are full, so they wait, first in line.
    let third = driver.browser().await;
    third.goto(&product.demo_url).await;
    third.open_widget().await;
    third.say("Visitor three, waiting").await;
    third
        .wait_js(
            "number 1 in line",
            "const q = document.querySelector('[data-testid=queue-position]');
             return q && q.textContent.includes('number 1 in line')",
            vec![],
        )
        .await;

    // The agent who has visitor 1 closes that conversation: visitor 3 is theirs at once.
    let (a, name) = if ana_has[0] == "Visitor one here" {
        (&ana, "Ana")
    } else {
        (&ben, "Ben")
    };
    a.open_conversation("Visitor one here").await;
    a.click("conversation-close").await;
    a.find("closed-badge").await;
    widget_says(&third, &format!("You're now talking with {name}")).await;
    third
        .wait_js(
            "the place in line gone",
            "return document.querySelector('[data-testid=queue-position]') === null",
            vec![],
        )
        .await;
    assert_eq!(mine(a, 1).await, ["Visitor three, waiting"]);
    for b in [ana, ben, third] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_from_the_queue_rings_both_agents_and_the_first_to_answer_gets_it() {
    // Both agents available but with no room: the visitor's conversation waits in line.
    let product = Product::start().await;
    for email in ["ana@shop.example", "ben@shop.example"] {
        product
            .cli(&["agent", "limit", "--email", email, "0"])
            .await;
    }
    let mut driver = Driver::start().await;
    let ana = driver.browser().await;
    let ben = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    all_available(&[&ana, &ben]).await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor.say("Can someone call me?").await;
    visitor.find("queue-position").await;

    // The visitor calls: both agents ring.
    visitor.click("call-voice").await;
    ana.find("incoming-call").await;
    ben.find("incoming-call").await;
    // Ana answers first: she gets the call and the conversation; Ben stops ringing.
    ana.click("call-accept").await;
    for side in [&visitor, &ana] {
        side.wait_ice_connected().await;
        side.wait_remote_audio().await;
    }
    ben.wait_js(
        "Ben's ringing stopped",
        "return document.querySelector('[data-testid=incoming-call]') === null",
        vec![],
    )
    .await;
    widget_says(&visitor, "You're now talking with Ana").await;
    assert_eq!(mine(&ana, 1).await, ["Can someone call me?"]);
    ana.click("call-hangup").await;
    visitor.wait_message_prefix("system", "Call ended").await;
    for b in [ana, ben, visitor] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nobody_online_the_widget_says_so_keeps_an_email_and_the_agent_finds_it_later() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    let away = visitor.find("away").await;
    assert!(away.text().await.unwrap().contains("We're away right now"));
    // A wrong email is said so; a good one is kept.
    let input = visitor.find("away-email").await;
    input.send_keys("not-an-email").await.unwrap();
    visitor.click("away-email-submit").await;
    visitor
        .wait_js(
            "the email refused",
            "const e = document.querySelector('[data-testid=away] .error');
             return e && e.textContent.length > 0",
            vec![],
        )
        .await;
    input.clear().await.unwrap();
    input.send_keys("ines@example.com").await.unwrap();
    visitor.click("away-email-submit").await;
    visitor.find("away-email-saved").await;
    visitor.say("My order never came").await;
    visitor.wait_message("visitor", "My order never came").await;

    // Ana comes in later: the conversation was kept for her, with the email.
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ana.open_conversation("My order never came").await;
    ana.wait_message(
        "system",
        "The visitor left their email for the reply: ines@example.com",
    )
    .await;
    widget_says(&visitor, "You're now talking with Ana").await;
    for b in [ana, visitor] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_mid_chat_gives_ben_the_history_and_the_note_and_the_visitor_his_name() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    let ben = driver.browser().await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    ana.wait_js(
        "Ben in the team, available",
        "return [...document.querySelectorAll('[data-testid=team] li')]
            .some(li => li.querySelector('.name').textContent === 'Ben' && li.dataset.presence === 'available')",
        vec![],
    )
    .await;

    let note = "Leaking since Monday; offer a replacement";
    ana.click("transfer").await;
    let ben_id = ana
        .wait_js(
            "Ben among the transfer targets",
            "const o = [...document.querySelectorAll('[data-testid=transfer-target] option')]
                .find(o => o.textContent.startsWith('Ben'));
             return o && o.dataset.presence === 'available' && o.value",
            vec![],
        )
        .await;
    ana.choose("transfer-target", ben_id.as_str().unwrap())
        .await;
    ana.find("transfer-note")
        .await
        .send_keys(note)
        .await
        .unwrap();
    ana.click("transfer-submit").await;

    widget_says(&visitor, "You're now talking with Ben").await;
    visitor
        .wait_message("system", "Ana transferred the conversation to Ben")
        .await;
    // Ben has it, with the whole history and the note.
    assert_eq!(mine(&ben, 1).await, ["Hi! Let's call."]);
    ben.click("conversation").await;
    ben.wait_message("visitor", "Hello, my coffee machine leaks")
        .await;
    ben.wait_message("note", note).await;
    ben.say("Hi, Ben here: a replacement is on its way").await;
    visitor
        .wait_message("agent", "Hi, Ben here: a replacement is on its way")
        .await;
    // The visitor never sees the note.
    let seen = visitor.messages().await;
    assert!(
        seen.iter().all(|(a, t)| a != "note" && t != note),
        "{seen:?}"
    );
    // Ana can no longer write in it.
    ana.wait_js(
        "Ana's composer disabled",
        "return document.querySelector('[data-testid=chat-input]').disabled",
        vec![],
    )
    .await;
    for b in [ana, ben, visitor] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_conversation_is_rated_by_the_visitor_and_reopens_when_they_write_again() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    ana.click("conversation-close").await;
    ana.find("closed-badge").await;
    ana.wait_message("system", "Ana closed the conversation")
        .await;
    // It leaves the open list; "All" still has it.
    ana.wait_js(
        "the open list empty",
        "return document.querySelectorAll('[data-testid=conversation]').length === 0",
        vec![],
    )
    .await;
    ana.js(
        "document.querySelector('[data-testid=filter][data-filter=all]').click()",
        vec![],
    )
    .await;
    ana.wait_js(
        "the closed row under All",
        "const r = document.querySelector('[data-testid=conversation]');
         return r && r.dataset.status === 'closed'",
        vec![],
    )
    .await;

    // The visitor sees it ended and rates it.
    visitor.find("closed").await;
    widget_says(&visitor, "Conversation ended").await;
    visitor
        .find("rating-comment")
        .await
        .send_keys("Quick and kind")
        .await
        .unwrap();
    visitor.click("rating-up").await;
    visitor.find("rated").await;
    ana.wait_message(
        "system",
        "The visitor rated the conversation 👍: Quick and kind",
    )
    .await;
    ana.find("rating").await;

    // Writing again reopens it, back to Ana (available, with room).
    visitor.say("Sorry, one more thing").await;
    ana.wait_message("visitor", "Sorry, one more thing").await;
    widget_says(&visitor, "You're now talking with Ana").await;
    visitor
        .wait_js(
            "the ended banner gone",
            "return document.querySelector('[data-testid=closed]') === null",
            vec![],
        )
        .await;
    ana.wait_js(
        "the row open and Ana's again",
        "const r = document.querySelector('[data-testid=conversation]');
         return r && r.dataset.status === 'assigned'
            && !document.querySelector('[data-testid=chat-input]').disabled",
        vec![],
    )
    .await;
    for b in [ana, visitor] {
        b.close().await;
    }
}
