//! Accessibility and small screens, in a real browser: axe-core finds no serious or critical
//! violation in the widget (open) and the console (login, list, a conversation); on a phone,
//! the host page stays where it was behind the full-screen widget and comes back exactly.

use std::time::Duration;

use escalera_e2e::{chatting, Browser, Driver, Product};
use fantoccini::actions::{WheelAction, WheelActions};
use serde_json::json;

async fn assert_axe_clean(browser: &Browser, what: &str) {
    let found = browser.axe_serious().await;
    assert!(
        found.is_empty(),
        "axe-core, {what}: {} serious or critical violations:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_widget_and_the_console_have_no_serious_accessibility_violations() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;

    let login = driver.browser().await;
    login.goto(&format!("{}/agent", product.relay_url)).await;
    login.find("login-email").await;
    assert_axe_clean(&login, "console login").await;
    login.close().await;

    // The visitor has written, the agent has answered: messages of both sides and of the system.
    let (visitor, agent) = chatting(&product, &mut driver).await;
    visitor
        .wait_message("system", "Ana joined the conversation")
        .await;
    assert_axe_clean(&visitor, "widget, open, in a conversation").await;

    // The console: the list with nothing open, then a conversation.
    agent.client.refresh().await.unwrap();
    agent.find("conversation").await;
    assert_axe_clean(&agent, "console, the list").await;
    agent.click("conversation").await;
    agent.wait_message("agent", "Hi! Let's call.").await;
    assert_axe_clean(&agent, "console, a conversation open").await;
    visitor.close().await;
    agent.close().await;
}

/// Where the demo page's header is on screen: it moves if and only if the host page scrolls.
const HEADER_TOP: &str = "return document.querySelector('header').getBoundingClientRect().top";

/// Turns the mouse wheel over the middle of the screen, down then up.
async fn wheel_over_the_middle(browser: &Browser) {
    let mut wheel = WheelActions::new("wheel".into());
    for delta_y in [600, 600, -300] {
        wheel.push(WheelAction::Scroll {
            duration: Some(Duration::from_millis(50)),
            x: 195,
            y: 420,
            delta_x: 0,
            delta_y,
        });
    }
    browser.client.perform_actions(wheel).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_phone_the_host_page_does_not_scroll_behind_the_open_widget() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    visitor.client.set_window_size(390, 844).await.unwrap();
    visitor.goto(&product.demo_url).await;
    let width = visitor.js("return window.innerWidth", vec![]).await;
    assert_eq!(width, json!(390), "a phone-sized viewport");

    // A long host page, read down to 600 px.
    visitor
        .js(
            "const more = document.createElement('div');
             more.style.height = '4000px';
             document.querySelector('main').appendChild(more);
             window.scrollTo(0, 600)",
            vec![],
        )
        .await;
    assert_eq!(visitor.js(HEADER_TOP, vec![]).await, json!(-600));

    // Open, the widget covers the screen; scrolling over it does not move the page behind.
    visitor.open_widget().await;
    visitor.client.enter_parent_frame().await.unwrap();
    visitor
        .wait_js(
            "the widget full screen",
            "const r = document.querySelector('[data-testid=widget-frame]').getBoundingClientRect();
             const page = document.documentElement;
             return r.left === 0 && r.top === 0 && r.width === page.clientWidth && r.height === page.clientHeight",
            vec![],
        )
        .await;
    // The barrier: the widget adds up the wheel it got (Chrome may merge events); once it is
    // all in and the host page has drawn two frames since (smooth scrolling is off in the test
    // browsers), any scroll it caused has happened.
    visitor.enter_widget().await;
    visitor
        .js(
            "window.__wheeled = 0;
             addEventListener('wheel', e => window.__wheeled += e.deltaY, { passive: true })",
            vec![],
        )
        .await;
    visitor.client.enter_parent_frame().await.unwrap();
    wheel_over_the_middle(&visitor).await;
    visitor.enter_widget().await;
    visitor
        .wait_js(
            "the whole wheel turn (600 + 600 - 300 px) in the widget",
            "return window.__wheeled === 900",
            vec![],
        )
        .await;
    visitor.client.enter_parent_frame().await.unwrap();
    visitor
        .client
        .execute_async(
            "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(visitor.js(HEADER_TOP, vec![]).await, json!(-600));
    // Meanwhile the host page styles its body: that stays after the widget closes.
    visitor
        .js(
            "document.body.style.color = 'rgb(1, 2, 3)'; document.body.style.setProperty('--vh', '7px')",
            vec![],
        )
        .await;

    // Closed, the page is back exactly where it was, with its own styles, and scrolls again.
    visitor.enter_widget().await;
    visitor.click("widget-close").await;
    visitor.client.enter_parent_frame().await.unwrap();
    visitor
        .wait_js(
            "the page back at 600 px",
            "return document.querySelector('[data-testid=widget-frame]').style.display === 'none'
                && window.scrollY === 600
                && document.querySelector('header').getBoundingClientRect().top === -600
                && document.body.style.color === 'rgb(1, 2, 3)'
                && document.body.style.getPropertyValue('--vh') === '7px'
                && document.body.style.position === '' && document.body.style.overflow === ''",
            vec![],
        )
        .await;
    wheel_over_the_middle(&visitor).await;
    visitor
        .wait_js(
            "the page scrolled by the wheel",
            "return window.scrollY > 600",
            vec![],
        )
        .await;
    visitor.close().await;
}

/// Presses `keys` (one chord: e.g. Shift then Tab) on whatever has the focus, as a keyboard
/// does: no element is targeted.
async fn press(browser: &Browser, keys: &[char]) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let mut chord = KeyActions::new("keyboard".into());
    for k in keys {
        chord = chord.then(KeyAction::Down { value: *k });
    }
    for k in keys.iter().rev() {
        chord = chord.then(KeyAction::Up { value: *k });
    }
    browser.client.perform_actions(chord).await.unwrap();
}

/// Types `text` on whatever has the focus.
async fn type_text(browser: &Browser, text: &str) {
    for c in text.chars() {
        press(browser, &[c]).await;
    }
}

/// The test id of what has the focus in the current document (its frame, if focus is inside
/// one).
const FOCUSED: &str =
    "const a = document.activeElement; return a ? (a.dataset.testid || a.tagName) : null";

/// Presses `keys` until the element with test id `id` has the focus (at most 40 times).
async fn tab_to(browser: &Browser, keys: &[char], id: &str) {
    for _ in 0..40 {
        if browser.js(FOCUSED, vec![]).await == json!(id) {
            return;
        }
        press(browser, keys).await;
    }
    panic!("{id} never got the focus with {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keyboard_only_the_visitor_climbs_to_a_voice_call_and_back() {
    use fantoccini::key::Key;
    let (tab, back_tab, enter, esc) = (
        char::from(Key::Tab),
        [char::from(Key::Shift), char::from(Key::Tab)],
        char::from(Key::Enter),
        char::from(Key::Escape),
    );
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.find("launcher").await;
    assert_axe_clean(&visitor, "host page, widget closed").await;

    // Tab to the launcher, Enter: the widget opens with the focus in its message box.
    tab_to(&visitor, &[tab], "launcher").await;
    press(&visitor, &[enter]).await;
    visitor.enter_widget().await;
    visitor
        .wait_js(
            "the message box focused",
            &format!("{FOCUSED} === 'chat-input'"),
            vec![],
        )
        .await;
    type_text(&visitor, "Hello from the keyboard").await;
    press(&visitor, &[enter]).await;
    visitor
        .wait_message("visitor", "Hello from the keyboard")
        .await;

    let agent = driver.browser().await;
    agent.login(&product.relay_url, "ana@shop.example").await;
    agent.click("conversation").await;
    agent.say("Hi! Call me.").await;
    visitor.wait_message("agent", "Hi! Call me.").await;

    // Back to the voice call button, Enter; the agent answers.
    tab_to(&visitor, &back_tab, "call-voice").await;
    press(&visitor, &[enter]).await;
    agent.click("call-accept").await;
    visitor.wait_message("system", "Voice call started").await;
    assert_axe_clean(&visitor, "widget, in a call").await;

    // To the hang-up button, Enter: the call ends.
    tab_to(&visitor, &[tab], "call-hangup").await;
    press(&visitor, &[enter]).await;
    visitor.wait_message_prefix("system", "Call ended").await;

    // Esc closes the widget; the focus is back on the launcher.
    press(&visitor, &[esc]).await;
    visitor.client.enter_parent_frame().await.unwrap();
    visitor
        .wait_js(
            "the widget closed and the launcher focused",
            &format!(
                "return document.querySelector('[data-testid=widget-frame]').style.display === 'none'
                    && (() => {{ {FOCUSED} }})() === 'launcher'"
            ),
            vec![],
        )
        .await;
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_phone_a_video_call_is_portrait_and_the_camera_flips() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.phone().await;
    visitor.goto(&product.demo_url).await;
    assert_eq!(
        visitor
            .js(
                "return [innerWidth, innerHeight, navigator.maxTouchPoints > 0]",
                vec![]
            )
            .await,
        json!([390, 844, true]),
        "a phone: 390x844 with touch"
    );
    visitor.tap("launcher").await;
    visitor.enter_widget().await;
    visitor.say("Can you see my machine?").await;
    let agent = driver.browser().await;
    agent.login(&product.relay_url, "ana@shop.example").await;
    agent.click("conversation").await;
    agent.say("Show me.").await;
    visitor.wait_message("agent", "Show me.").await;
    // The message box sits at the bottom of the screen, whole.
    visitor
        .wait_js(
            "the message box on screen, at the bottom",
            "const r = document.querySelector('[data-testid=chat-input]').getBoundingClientRect();
             return r.top > innerHeight / 2 && r.bottom <= innerHeight",
            vec![],
        )
        .await;

    // A call, answered with a tap; then both cameras on (ours with a tap).
    agent.click("call-voice").await;
    visitor.tap("call-accept").await;
    visitor.wait_message("system", "Voice call started").await;
    visitor.tap("call-video").await;
    agent.wait_remote_frames().await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;
    // Upright: the agent's video large across the screen, ours small in its corner.
    visitor
        .wait_js(
            "the remote video large, the local preview small in the bottom-right corner",
            "const stage = document.querySelector('.stage').getBoundingClientRect();
             const remote = document.querySelector('[data-testid=remote-video]').getBoundingClientRect();
             const local = document.querySelector('.stage video.local').getBoundingClientRect();
             return remote.width >= 370 && local.width > 0 && local.width <= 120
                 && 4 * local.width * local.height < remote.width * remote.height
                 && local.left > stage.left + stage.width / 2
                 && local.right <= stage.right && local.bottom <= stage.bottom",
            vec![],
        )
        .await;

    // Two cameras: a tap on Flip opens the other one, which the preview then plays. (Whether
    // the agent then gets its frames is not asserted: with Chromium's fake cameras the
    // encoder gets no frame from the second one after replaceTrack; see the closing note.)
    const CAMERA: &str = "const v = document.querySelector('.stage video.local');
        const t = v && v.srcObject && v.srcObject.getVideoTracks()[0];
        return t && t.readyState === 'live' ? t.getSettings().deviceId : null";
    let before = visitor.wait_js("our camera", CAMERA, vec![]).await;
    visitor.tap("camera-flip").await;
    visitor
        .wait_js(
            "the other camera, playing in the preview",
            &format!(
                "const now = (() => {{ {CAMERA} }})();
                 const v = document.querySelector('.stage video.local');
                 const n = v.getVideoPlaybackQuality().totalVideoFrames;
                 const moved = window.__flipped !== undefined && n > window.__flipped;
                 if (now !== null && now !== arguments[0] && window.__flipped === undefined) window.__flipped = n;
                 return now !== null && now !== arguments[0] && moved"
            ),
            vec![before],
        )
        .await;
    visitor.tap("call-hangup").await;
    agent.wait_message_prefix("system", "Call ended").await;
    visitor.close().await;
    agent.close().await;
}
