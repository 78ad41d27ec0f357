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

/// Ana and Ben, each with room for `limit` conversations, logged in and available.
async fn two_agents(product: &Product, driver: &mut Driver, limit: &str) -> (Browser, Browser) {
    for email in ["ana@shop.example", "ben@shop.example"] {
        product
            .cli(&["agent", "limit", "--email", email, limit])
            .await;
    }
    let ana = driver.browser().await;
    let ben = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    all_available(&[&ana, &ben]).await;
    (ana, ben)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_with_room_for_one_each_share_three_visitors_and_the_third_waits_in_line() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (ana, ben) = two_agents(&product, &mut driver, "1").await;

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
    let mut driver = Driver::start().await;
    let (ana, ben) = two_agents(&product, &mut driver, "0").await;
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
    // Ben hands it back to the queue: routing gives it to someone else than him, Ana.
    ben.click("transfer").await;
    ben.choose("transfer-target", "").await;
    ben.click("transfer-submit").await;
    widget_says(&visitor, "You're now talking with Ana").await;
    visitor
        .wait_message("system", "Ben put the conversation back in the queue")
        .await;
    ana.wait_js(
        "Ana's composer enabled again",
        "return !document.querySelector('[data-testid=chat-input]').disabled",
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

/// The label the console's open row shows for its visitor.
async fn open_row_label(agent: &Browser) -> String {
    let v = agent
        .wait_js(
            "the open conversation's row",
            "const r = document.querySelector('[data-testid=conversation].active');
             return r && r.querySelector('.name').textContent",
            vec![],
        )
        .await;
    v.as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canned_reply_is_kept_found_by_its_shortcut_and_filled_in() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    let label = open_row_label(&ana).await;

    ana.click("canned-manage").await;
    ana.find("canned-manager").await;
    // A wrong shortcut is said so, inline.
    ana.find("canned-shortcut")
        .await
        .send_keys("two words")
        .await
        .unwrap();
    ana.find("canned-text").await.send_keys("x").await.unwrap();
    ana.click("canned-save").await;
    ana.wait_js(
        "the shortcut refused",
        "const e = document.querySelector('[data-testid=canned-manager] .error');
         return e && e.textContent.includes('a-z')",
        vec![],
    )
    .await;
    ana.find("canned-shortcut").await.clear().await.unwrap();
    ana.find("canned-shortcut")
        .await
        .send_keys("refund")
        .await
        .unwrap();
    ana.find("canned-text").await.clear().await.unwrap();
    ana.find("canned-text")
        .await
        .send_keys("Hi {visitor}, {agent} here: your refund is on its way.")
        .await
        .unwrap();
    ana.click("canned-save").await;
    ana.find("canned-reply").await;
    ana.click("canned-manage").await;

    // "/ref" lists it; Enter puts it in the box, filled in, to edit or send.
    let input = ana.find("chat-input").await;
    input.send_keys("/ref").await.unwrap();
    let option = ana.find("canned-option").await;
    assert!(option.text().await.unwrap().contains("/refund"));
    input.send_keys("\u{E007}").await.unwrap();
    let filled = format!("Hi {label}, Ana here: your refund is on its way.");
    ana.wait_js(
        "the reply filled in",
        "return document.querySelector('[data-testid=chat-input]').value === arguments[0]
            && document.querySelector('[data-testid=canned-option]') === null",
        vec![json!(filled)],
    )
    .await;
    input.send_keys("\u{E007}").await.unwrap();
    visitor.wait_message("agent", &filled).await;
    for b in [ana, visitor] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_a_word_and_opens_the_conversation_there_and_export_leaves_notes_out() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    visitor.say("My bison jerky arrived crushed").await;
    ana.wait_message("visitor", "My bison jerky arrived crushed")
        .await;
    ana.click("note-toggle").await;
    ana.say("Refund approved").await;
    ana.wait_message("note", "Refund approved").await;
    // Leave the conversation, then find it by a word.
    ana.js(
        "window.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))",
        vec![],
    )
    .await;
    ana.find("search-input")
        .await
        .send_keys("jerk")
        .await
        .unwrap();
    let result = ana.find("search-result").await;
    assert!(result
        .text()
        .await
        .unwrap()
        .contains("My bison jerky arrived crushed"));
    ana.click("search-result").await;
    ana.wait_js(
        "the message found, marked",
        "const m = document.querySelector('[data-testid=message][data-found=true]');
         return m && m.querySelector('.bubble').textContent === 'My bison jerky arrived crushed'",
        vec![],
    )
    .await;

    // Export: the transcript, without notes unless asked.
    ana.click("export").await;
    let fetch_link = |id: &'static str| {
        let ana = &ana;
        async move {
            ana.wait_js_async(
                "the export",
                "const done = arguments[arguments.length - 1];
                 const a = document.querySelector('[data-testid=' + arguments[0] + ']');
                 fetch(a.href).then(r => r.text()).then(done, e => done('error ' + e))",
                vec![json!(id)],
            )
            .await
            .as_str()
            .unwrap()
            .to_owned()
        }
    };
    let text = fetch_link("export-text").await;
    assert!(
        text.contains("Visitor: My bison jerky arrived crushed"),
        "{text}"
    );
    assert!(!text.contains("Refund approved"), "{text}");
    ana.click("export-notes").await;
    let text = fetch_link("export-text").await;
    assert!(text.contains("Note by Ana: Refund approved"), "{text}");
    let json = fetch_link("export-json").await;
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(parsed["messages"].as_array().unwrap().len() >= 4);
    for b in [ana, visitor] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_sees_the_visitors_page_live_and_names_them() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    ana.find("visitor-info").await;
    let page_is = |suffix: &'static str| {
        let ana = &ana;
        async move {
            ana.wait_js(
                &format!("the visitor's page ending in {suffix}"),
                "const a = document.querySelector('[data-testid=visitor-page] a');
                 return a && a.href.endsWith(arguments[0])",
                vec![json!(suffix)],
            )
            .await;
        }
    };
    page_is("/").await;
    let browser_shown = ana.find("visitor-browser").await.text().await.unwrap();
    assert!(browser_shown.starts_with("Chrome on"), "{browser_shown}");
    assert!(!ana
        .find("visitor-language")
        .await
        .text()
        .await
        .unwrap()
        .is_empty());
    assert!(ana
        .find("visitor-time")
        .await
        .text()
        .await
        .unwrap()
        .contains(':'));
    // The host page navigates by itself (a single-page shop): the agent sees it.
    visitor.client.enter_parent_frame().await.unwrap();
    visitor
        .js("history.pushState({}, '', '/pricing?plan=pro')", vec![])
        .await;
    page_is("/pricing?plan=pro").await;

    // Ana names the visitor: the list says so, and a note keeps it.
    ana.find("visitor-name")
        .await
        .send_keys("Inês Duarte")
        .await
        .unwrap();
    ana.find("visitor-email")
        .await
        .send_keys("ines@example.com")
        .await
        .unwrap();
    ana.click("visitor-save").await;
    ana.wait_message(
        "note",
        "The visitor's details: Inês Duarte · ines@example.com",
    )
    .await;
    // The list's row follows within a flush of the agents' list (0.2 s).
    ana.wait_js(
        "the open conversation's row named Inês Duarte",
        "const r = document.querySelector('[data-testid=conversation].active .name');
         return r && r.textContent === arguments[0]",
        vec![json!("Inês Duarte")],
    )
    .await;
    for b in [ana, visitor] {
        b.close().await;
    }
}

/// Replaces the page's `Notification` with a recorder that is already allowed, and counts
/// the tones played (the app keeps its own reference to `AudioContext`, so its prototype is
/// where to look).
const RECORD_ALERTS: &str = "window.__notes = []; window.__asked = 0; window.__chimes = 0;
    window.Notification = class {
        constructor(title, opts) { window.__notes.push(title + ': ' + (opts && opts.body)); }
        static get permission() { return 'granted'; }
        static requestPermission() { window.__asked++; return Promise.resolve('granted'); }
    };
    const tone = BaseAudioContext.prototype.createOscillator;
    BaseAudioContext.prototype.createOscillator = function () {
        window.__chimes++;
        return tone.apply(this, arguments);
    };";

const HIDE: &str =
    "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
    document.dispatchEvent(new Event('visibilitychange'))";

#[tokio::test(flavor = "multi_thread")]
async fn a_hidden_console_counts_in_its_title_chimes_and_notifies_and_rings_for_a_call() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    // Notifications are asked for only on the agent's click.
    let allowed = ana.js("return Notification.permission", vec![]).await;
    assert_ne!(allowed, json!("granted"), "nothing was allowed on load");
    ana.find("notifications-enable").await;
    ana.js(RECORD_ALERTS, vec![]).await;
    ana.click("notifications-enable").await;
    ana.wait_js(
        "the question asked once",
        "return window.__asked === 1",
        vec![],
    )
    .await;

    // Another visitor writes: routed to Ana, in another conversation than the open one.
    let (mut ws, _, conversation) = product.wire_visitor().await;
    escalera_e2e::wire_chat(&mut ws, &conversation, &["Is the shop open on Sunday?"]).await;
    ana.wait_js(
        "(1) in the title and a chime",
        "return document.title === '(1) Escalera' && window.__chimes >= 1",
        vec![],
    )
    .await;
    // The tab goes to the background: the next message from the open one notifies.
    ana.js(HIDE, vec![]).await;
    visitor.say("Still there?").await;
    ana.wait_js(
        "a desktop notification",
        "return window.__notes.some(n => n.startsWith('New message from') && n.endsWith('Still there?'))",
        vec![],
    )
    .await;
    // A call rings even in the background (its tones play), and says so on the desktop.
    let tones = ana.js("return window.__chimes", vec![]).await;
    visitor.click("call-voice").await;
    ana.find("incoming-call").await;
    ana.wait_js(
        "the ring's tones",
        "return window.__chimes > arguments[0]",
        vec![tones],
    )
    .await;
    ana.wait_js(
        "the call notified",
        "return window.__notes.some(n => n.startsWith('Incoming call'))",
        vec![],
    )
    .await;
    visitor.click("call-hangup").await;
    for b in [ana, visitor] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_keyboard_moves_between_conversations_leaves_them_and_sends() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, ana) = chatting(&product, &mut driver).await;
    let (mut ws, _, conversation) = product.wire_visitor().await;
    escalera_e2e::wire_chat(&mut ws, &conversation, &["A second visitor"]).await;
    ana.wait_js(
        "two rows",
        "return document.querySelectorAll('[data-testid=conversation]').length === 2",
        vec![],
    )
    .await;
    let key = |k: &str, alt: bool| {
        format!("window.dispatchEvent(new KeyboardEvent('keydown', {{key: '{k}', altKey: {alt}}}))")
    };
    // The newer conversation is above the open one.
    let first = open_row_label(&ana).await;
    ana.js(&key("ArrowUp", true), vec![]).await;
    ana.wait_js(
        "the other conversation open",
        "const r = document.querySelector('[data-testid=conversation].active');
         return r && r.querySelector('.name').textContent !== arguments[0]",
        vec![json!(first)],
    )
    .await;
    ana.js(&key("ArrowDown", true), vec![]).await;
    ana.wait_js(
        "back to the first",
        "const r = document.querySelector('[data-testid=conversation].active');
         return r && r.querySelector('.name').textContent === arguments[0]",
        vec![json!(first)],
    )
    .await;
    // Ctrl+Enter sends.
    let input = ana.find("chat-input").await;
    input.send_keys("Sent with Ctrl+Enter").await.unwrap();
    input.send_keys("\u{E009}\u{E007}\u{E000}").await.unwrap();
    visitor.wait_message("agent", "Sent with Ctrl+Enter").await;
    // Esc leaves it.
    ana.js(&key("Escape", false), vec![]).await;
    ana.wait_js(
        "no conversation open",
        "return document.querySelector('[data-testid=conversation].active') === null
            && document.querySelector('[data-testid=chat-input]') === null",
        vec![],
    )
    .await;
    // The list's filters: both are Ana's, none waits.
    for (filter, rows) in [("mine", 2), ("queue", 0), ("all", 2), ("open", 2)] {
        ana.js(
            &format!(
                "document.querySelector('[data-testid=filter][data-filter={filter}]').click()"
            ),
            vec![],
        )
        .await;
        ana.wait_js(
            &format!("{rows} rows under {filter}"),
            "return document.querySelectorAll('[data-testid=conversation]').length === arguments[0]",
            vec![json!(rows)],
        )
        .await;
    }
    for b in [ana, visitor] {
        b.close().await;
    }
}
