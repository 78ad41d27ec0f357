//! Languages in real browsers: a Chromium whose language is Spanish gets the launcher, the
//! widget and the console in Spanish, the record's own lines too (each browser says them in its
//! viewer's language), and times as Spanish writes them; an agent who picks English gets the
//! console in English, and the choice stays.

use escalera_e2e::{Driver, Product};
use serde_json::json;

/// The attribute `name` of the element with this test id (in the current frame).
const ATTRIBUTE: &str = "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`);
    return e === null ? null : e.getAttribute(arguments[1])";

/// Whether the element with this test id shows exactly `text`.
const SHOWS: &str = "const e = document.querySelector(`[data-testid=\"${arguments[0]}\"]`);
    return e !== null && e.textContent.trim() === arguments[1]";

#[tokio::test(flavor = "multi_thread")]
async fn a_spanish_browser_gets_the_widget_and_the_console_in_spanish() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.speaking("es").await;
    visitor.goto(&product.demo_url).await;
    // The loader's label comes from the relay, in the browser's language.
    visitor
        .wait_js(
            "the launcher labelled in Spanish",
            "const b = document.querySelector('[data-testid=launcher]');
             return b !== null && b.getAttribute('aria-label') === 'Abrir el chat'",
            vec![],
        )
        .await;
    visitor.open_widget().await;
    assert_eq!(
        visitor
            .js("return document.documentElement.lang", vec![])
            .await,
        json!("es")
    );
    assert_eq!(
        visitor
            .js(ATTRIBUTE, vec![json!("chat-input"), json!("placeholder")])
            .await,
        json!("Escribe tu mensaje…")
    );
    assert_eq!(
        visitor
            .js(ATTRIBUTE, vec![json!("call-voice"), json!("aria-label")])
            .await,
        json!("Llamada de voz")
    );
    visitor.say("Hola, mi cafetera gotea").await;
    visitor
        .wait_message("visitor", "Hola, mi cafetera gotea")
        .await;
    // Its time as Spanish writes it: 24-hour, no "a. m." / "p. m.".
    let meta = visitor
        .js(
            "return [...document.querySelectorAll('[data-testid=message]')]
                 .find(m => m.dataset.author === 'visitor').querySelector('.meta').textContent",
            vec![],
        )
        .await;
    let meta = meta.as_str().unwrap();
    assert!(
        meta.len() <= 5
            && meta.contains(':')
            && meta.chars().all(|c| c.is_ascii_digit() || c == ':'),
        "a Spanish time of day: {meta:?}"
    );

    let ana = driver.speaking("es").await;
    ana.goto(&format!("{}/agent", product.relay_url)).await;
    ana.wait_js(
        "the login page in Spanish",
        SHOWS,
        vec![json!("login-submit"), json!("Iniciar sesión")],
    )
    .await;
    ana.login_here("ana@shop.example").await;
    ana.wait_js(
        "Settings in Spanish",
        SHOWS,
        vec![json!("settings-open"), json!("Configuración")],
    )
    .await;
    ana.click("conversation").await;
    ana.say("¡Hola! Te ayudo.").await;
    // The relay's own line, said by each browser in its viewer's language.
    visitor
        .wait_message("system", "Ana se unió a la conversación")
        .await;
    visitor.wait_message("agent", "¡Hola! Te ayudo.").await;
    ana.wait_message("system", "Ana se unió a la conversación")
        .await;

    // Ana prefers English: the console reloads in it, the same line now in English.
    ana.choose("language", "en").await;
    ana.wait_js(
        "Settings in English",
        SHOWS,
        vec![json!("settings-open"), json!("Settings")],
    )
    .await;
    ana.click("conversation").await;
    ana.wait_message("system", "Ana joined the conversation")
        .await;
    // The choice stays in this browser.
    ana.goto(&format!("{}/agent", product.relay_url)).await;
    ana.wait_js(
        "Settings in English after a reload",
        SHOWS,
        vec![json!("settings-open"), json!("Settings")],
    )
    .await;
    // The visitor's widget is still in Spanish.
    visitor
        .wait_message("system", "Ana se unió a la conversación")
        .await;
    assert_eq!(
        visitor
            .js(ATTRIBUTE, vec![json!("chat-input"), json!("placeholder")])
            .await,
        json!("Escribe tu mensaje…")
    );
}
