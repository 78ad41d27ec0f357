//! The Settings area in real browsers: an admin restyles a site and cuts its ladder to chat
//! while a visitor's widget is open (it follows without a reload), adds a site, makes an agent
//! who logs in with the one-time password and is shut out at once when disabled, keeps canned
//! replies, and reads it all back in the audit log. Forms show errors next to their field;
//! agents who are not admins have no Settings.

use escalera_e2e::{Browser, Driver, Product};
use serde_json::json;

/// Types `text` into the field with this test id, replacing what it held (an input event, as
/// typing sends).
async fn fill(browser: &Browser, id: &str, text: &str) {
    browser.find(id).await;
    browser
        .js(
            "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`);
             e.focus();
             e.value = arguments[1];
             e.dispatchEvent(new Event('input', {bubbles: true}))",
            vec![json!(id), json!(text)],
        )
        .await;
}

/// Waits until the element with this test id shows text containing `text`.
async fn shows(browser: &Browser, id: &str, text: &str) {
    browser
        .wait_js(
            &format!("{id} saying {text:?}"),
            "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`);
             return e !== null && e.textContent.includes(arguments[1])",
            vec![json!(id), json!(text)],
        )
        .await;
}

/// Clicks the first element with this test id whose text contains `text`.
async fn click_row(browser: &Browser, id: &str, text: &str) {
    browser
        .wait_js(
            &format!("a {id} with {text:?}, clicked"),
            "const row = [...document.querySelectorAll(`[data-testid=\"${arguments[0]}\"]`)]
                 .find(e => e.textContent.includes(arguments[1]));
             if (!row) return false;
             row.click();
             return true",
            vec![json!(id), json!(text)],
        )
        .await;
}

/// The computed background and text colours of the first element matching `css`.
const COLOURS: &str = "const s = getComputedStyle(document.querySelector(arguments[0]));
    return s.backgroundColor + ' / ' + s.color";

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_restyles_a_site_and_cuts_it_to_chat_while_its_widget_is_open() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor.find("call-voice").await;
    assert_eq!(
        visitor.js(COLOURS, vec![json!(".widget-head")]).await,
        json!("rgb(37, 99, 235) / rgb(255, 255, 255)")
    );
    // Gone if the widget reloads.
    visitor.js("window.__same_page = true", vec![]).await;

    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ana.click("settings-open").await;
    ana.find("settings").await;
    ana.find("site-editor").await;
    // A refused origin is said next to the field, and nothing is saved.
    fill(&ana, "site-origins", "shop.example").await;
    ana.click("site-save").await;
    shows(&ana, "error-origins", "is not an origin").await;
    fill(&ana, "site-origins", &product.demo_origin()).await;
    // A light colour (black text on it), on the left, a greeting, and chat only.
    fill(&ana, "site-color", "#FDE047").await;
    ana.choose("site-position", "left").await;
    fill(&ana, "site-greeting", "Hola! Write to us here.").await;
    ana.choose("site-steps", "chat").await;
    ana.click("site-save").await;
    ana.find("site-saved").await;
    assert_eq!(
        ana.js(
            "return document.querySelector('[data-testid=error-origins]')",
            vec![]
        )
        .await,
        json!(null),
        "the error went once the origin was right"
    );

    // The open widget follows: its colours, its greeting, no call buttons; same page.
    visitor
        .wait_js(
            "the widget in the new colour, black on yellow",
            &format!("const c = (() => {{ {COLOURS} }})(); return c === 'rgb(253, 224, 71) / rgb(0, 0, 0)' || c + ' ' + document.querySelector('.widget').getAttribute('style')"),
            vec![json!(".widget-head")],
        )
        .await;
    shows(&visitor, "messages", "Hola! Write to us here.").await;
    visitor
        .wait_js(
            "no call buttons",
            "return document.querySelector('[data-testid=call-voice]') === null
                && document.querySelector('[data-testid=call-video]') === null",
            vec![],
        )
        .await;
    assert_eq!(
        visitor.js("return window.__same_page", vec![]).await,
        json!(true)
    );
    // So does the launcher on the host page: its colour and its corner.
    visitor.client.enter_parent_frame().await.unwrap();
    visitor
        .wait_js(
            "the launcher yellow with black, on the left",
            "const l = document.querySelector('[data-testid=launcher]');
             const s = getComputedStyle(l);
             return s.backgroundColor === 'rgb(253, 224, 71)' && s.color === 'rgb(0, 0, 0)'
                 && l.getBoundingClientRect().left === 20",
            vec![],
        )
        .await;
    // A new page load gets the look before the widget is opened.
    visitor.goto(&product.demo_url).await;
    visitor
        .wait_js(
            "the launcher yellow at once",
            &format!("{COLOURS} === 'rgb(253, 224, 71) / rgb(0, 0, 0)'"),
            vec![json!("[data-testid=launcher]")],
        )
        .await;

    // A second site.
    fill(&ana, "site-new-name", "Blog").await;
    fill(&ana, "site-new-origins", "https://Blog.example/").await;
    ana.click("site-add").await;
    click_row(&ana, "site-row", "Blog").await;
    ana.wait_js(
        "the new site's editor with its origin",
        "return document.querySelector('[data-testid=site-origins]').value === 'https://blog.example'",
        vec![],
    )
    .await;
    shows(&ana, "site-snippet", "").await;
    let snippet = ana
        .js(
            "return document.querySelector('[data-testid=site-snippet]').value",
            vec![],
        )
        .await;
    let snippet = snippet.as_str().unwrap();
    assert!(
        snippet.starts_with(&format!("<script src=\"{}/widget.js\"", product.relay_url)),
        "{snippet}"
    );
    visitor.close().await;
    ana.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_are_made_and_shut_out_in_settings_and_the_audit_log_says_so() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    // Ben is not an admin: no Settings for him.
    let ben = driver.browser().await;
    ben.login(&product.relay_url, "ben@shop.example").await;
    ben.find("logout").await;
    assert_eq!(
        ben.js(
            "return document.querySelector('[data-testid=settings-open]')",
            vec![]
        )
        .await,
        json!(null)
    );
    ben.close().await;

    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ana.click("settings-open").await;
    ana.click("settings-agents").await;
    // Refused before it is sent, next to the field.
    fill(&ana, "agent-new-email", "cy at shop").await;
    fill(&ana, "agent-new-name", "Cy").await;
    ana.click("agent-add").await;
    shows(&ana, "error-email", "@").await;
    // Refused by the relay: the email is taken.
    fill(&ana, "agent-new-email", "ben@shop.example").await;
    ana.click("agent-add").await;
    shows(&ana, "error-email", "exists").await;
    fill(&ana, "agent-new-email", "cy@shop.example").await;
    fill(&ana, "agent-new-limit", "2").await;
    ana.click("agent-add").await;
    let password = ana.find("agent-password").await.text().await.unwrap();
    assert_eq!(password.len(), 16, "{password:?}");

    // Cy logs in with it.
    let cy = driver.browser().await;
    cy.goto(&format!("{}/agent", product.relay_url)).await;
    cy.find("login-email")
        .await
        .send_keys("cy@shop.example")
        .await
        .unwrap();
    cy.find("login-password")
        .await
        .send_keys(&password)
        .await
        .unwrap();
    cy.click("login-submit").await;
    cy.find("logout").await;

    // Disabled: Cy's console is back at the login at once.
    click_row(&ana, "agent-row", "cy@shop.example").await;
    ana.find("agent-editor").await;
    ana.click("agent-disabled").await;
    ana.click("agent-save").await;
    ana.find("agent-saved").await;
    cy.find("login-email").await;
    // Ana cannot take away her own role (the relay says so next to the box).
    click_row(&ana, "agent-row", "ana@shop.example").await;
    ana.wait_js(
        "Ana's own editor",
        "return document.querySelector('[data-testid=agent-editor] h3').textContent === 'Ana'",
        vec![],
    )
    .await;
    ana.click("agent-admin").await;
    ana.click("agent-save").await;
    shows(&ana, "error-admin", "your own admin role").await;

    // Canned replies are kept here too.
    ana.click("settings-canned").await;
    fill(&ana, "canned-shortcut", "hours").await;
    fill(&ana, "canned-text", "We answer from 9 to 5.").await;
    ana.click("canned-save").await;
    shows(&ana, "canned-reply", "/hours").await;

    // The audit log: who did what, newest first.
    ana.click("settings-audit").await;
    ana.wait_js(
        "the audit log: the reply, the disabling, the new agent, then the command line's",
        "const rows = [...document.querySelectorAll('[data-testid=audit-row]')].map(r => r.textContent);
         const ok = rows.length === 5
             && rows[0].includes('canned.save') && rows[0].includes('/hours')
             && rows[1].includes('agent.access') && rows[1].includes('cy@shop.example: disabled')
             && rows[2].includes('agent.add') && rows[2].includes('Ana <ana@shop.example>')
             && rows[3].includes('command line') && rows[3].includes('ben@shop.example')
             && rows[4].includes('command line') && rows[4].includes('ana@shop.example: admin');
         return ok || rows.join(' | ')",
        vec![],
    )
    .await;
    let found = ana.axe_serious().await;
    assert!(
        found.is_empty(),
        "axe-core, Settings:\n{}",
        found.join("\n")
    );
    ana.close().await;
    cy.close().await;
}

/// The identity hash a site's server makes of `id` (hex HMAC-SHA256 under its secret).
fn identity_hash(secret: &str, id: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens the demo page as the shop's logged-in user `id` (`Escalera.identify` before the
/// widget exists, as a shop's page does on load), then the widget.
async fn as_user(browser: &Browser, product: &Product, id: &str, hash: &str) {
    browser.goto(&product.demo_url).await;
    browser
        .wait_js(
            "the page's identify, called",
            "if (!window.Escalera) return false;
             Escalera.identify({ id: arguments[0], name: 'Inés Díaz', email: 'ines@example.com' }, arguments[1]);
             return true",
            vec![json!(id), json!(hash)],
        )
        .await;
    browser.click("launcher").await;
    browser.enter_widget().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_user_is_marked_for_agents_and_finds_their_chat_in_another_browser() {
    let product = Product::start().await;
    let show = product
        .cli(&["site", "show", "--site", &product.site_key])
        .await;
    let secret = show
        .lines()
        .find_map(|l| l.strip_prefix("Identity secret: "))
        .expect("site show prints the identity secret")
        .to_owned();
    let hash = identity_hash(&secret, "user-42");
    let mut driver = Driver::start().await;

    let laptop = driver.browser().await;
    as_user(&laptop, &product, "user-42", &hash).await;
    laptop.say("From my laptop").await;
    laptop.wait_message("visitor", "From my laptop").await;

    // The agent sees her name, marked verified.
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    shows(&ana, "conversation", "Inés Díaz").await;
    ana.find("verified").await;
    click_row(&ana, "conversation", "Inés Díaz").await;
    ana.find("verified-badge").await;

    // Another browser (another device), the same user: the same conversation.
    let phone = driver.browser().await;
    as_user(&phone, &product, "user-42", &hash.to_uppercase()).await;
    phone.wait_message("visitor", "From my laptop").await;
    phone.close().await;

    // The site requires a verified identity: a wrong hash is refused, with the reason.
    product
        .cli(&[
            "site",
            "set",
            "--site",
            &product.site_key,
            "--identity-required",
            "on",
        ])
        .await;
    let forger = driver.browser().await;
    as_user(
        &forger,
        &product,
        "user-42",
        &identity_hash(&secret, "user-43"),
    )
    .await;
    shows(&forger, "notice", "proof of who you are is wrong").await;
    assert!(
        forger
            .js(
                "return document.querySelectorAll('[data-testid=message]').length",
                vec![]
            )
            .await
            == json!(0),
        "nothing of Inés's conversation"
    );
    forger.close().await;
    laptop.close().await;
    ana.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_business_hours_the_widget_says_it_is_closed_even_with_agents_online() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor.say("Anyone there?").await;
    visitor.wait_message("visitor", "Anyone there?").await;
    const AWAY: &str = "const a = document.querySelector('[data-testid=away]');
        return a === null ? 'none' : a.textContent";
    // Ana is available: no away notice.
    visitor
        .wait_js(
            "no away notice",
            &format!("return (() => {{ {AWAY} }})() === 'none'"),
            vec![],
        )
        .await;

    // Business hours in UTC, every day closed: the open widget says so at once.
    ana.click("settings-open").await;
    ana.find("site-editor").await;
    ana.click("site-hours-on").await;
    fill(&ana, "site-hours-zone", "Nowhere/Atlantis").await;
    ana.click("site-save").await;
    shows(&ana, "error-hours", "time zone").await;
    fill(&ana, "site-hours-zone", "UTC").await;
    ana.js(
        "document.querySelectorAll('[data-testid=site-hours-open]').forEach(b => { if (b.checked) b.click(); })",
        vec![],
    )
    .await;
    ana.click("site-save").await;
    ana.find("site-saved").await;
    let found = ana.axe_serious().await;
    assert!(
        found.is_empty(),
        "axe-core, Settings > Sites:\n{}",
        found.join("\n")
    );
    visitor
        .wait_js(
            "the widget closed for the day",
            &format!("return (() => {{ {AWAY} }})().includes(\"We're closed right now.\")"),
            vec![],
        )
        .await;

    // Open all day, every day: the notice goes.
    ana.js(
        "document.querySelectorAll('[data-testid=site-hours-open]').forEach(b => { if (!b.checked) b.click(); })",
        vec![],
    )
    .await;
    for (id, time) in [("site-hours-from", "00:00"), ("site-hours-to", "23:59")] {
        ana.js(
            "document.querySelectorAll(`[data-testid=\"${arguments[0]}\"]`).forEach(e => {
                 e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true}));
             })",
            vec![json!(id), json!(time)],
        )
        .await;
    }
    ana.click("site-save").await;
    visitor
        .wait_js(
            "open again",
            &format!("return (() => {{ {AWAY} }})() === 'none'"),
            vec![],
        )
        .await;
    visitor.close().await;
    ana.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_with_a_pre_chat_form_asks_a_new_visitor_first_and_tells_the_agent() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ana.click("settings-open").await;
    ana.find("site-editor").await;
    ana.click("site-pre-chat").await;
    ana.click("site-save").await;
    ana.find("site-saved").await;
    ana.click("settings-open").await;

    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.click("launcher").await;
    visitor.enter_widget().await;
    visitor.find("pre-chat").await;
    assert_eq!(
        visitor
            .js(
                "return document.querySelector('[data-testid=chat-input]') === null",
                vec![]
            )
            .await,
        json!(true),
        "the form comes before the message box"
    );
    let found = visitor.axe_serious().await;
    assert!(found.is_empty(), "axe on the pre-chat form: {found:#?}");
    // A bad email is said, and nothing is sent.
    fill(&visitor, "pre-chat-email", "lucia.example.com").await;
    visitor.click("pre-chat-start").await;
    visitor
        .wait_js(
            "the form's error",
            "const e = document.querySelector('[data-testid=pre-chat] .error');
             return e !== null && e.textContent.includes('@')",
            vec![],
        )
        .await;
    fill(&visitor, "pre-chat-name", "Lucía Pérez").await;
    fill(&visitor, "pre-chat-email", "lucia@example.com").await;
    visitor.click("pre-chat-start").await;
    visitor.say("Hola, ¿tienen la talla M?").await;
    visitor
        .wait_message("visitor", "Hola, ¿tienen la talla M?")
        .await;

    // Ana's list names the visitor, and the visitor's details have the email.
    click_row(&ana, "conversation", "Lucía Pérez").await;
    ana.wait_js(
        "the visitor's email in their details",
        "const e = document.querySelector('[data-testid=visitor-email]');
         return e !== null && e.value === 'lucia@example.com'",
        vec![],
    )
    .await;

    // Answered once: the widget opened again goes straight to the conversation.
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor
        .wait_message("visitor", "Hola, ¿tienen la talla M?")
        .await;
    assert_eq!(
        visitor
            .js(
                "return document.querySelector('[data-testid=pre-chat]') === null",
                vec![]
            )
            .await,
        json!(true)
    );
}
