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
