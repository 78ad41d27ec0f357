//! Email through a real SMTP server (aiosmtpd on loopback), in real browsers: a visitor who
//! left an email and went away gets the agent's reply by email, in their language, with a link
//! that opens the widget on the conversation, once; agents hear of a conversation nobody is
//! there to answer; a visitor has the transcript mailed when the conversation is closed.

use escalera_e2e::{Browser, Driver, Product, Smtp};
use serde_json::json;

/// The link back in an email's text.
fn link_in(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.contains("#escalera-resume="))
        .unwrap_or_else(|| panic!("a link back in {body:?}"))
        .to_owned()
}

/// The seq of the visitor's confirmed message with exactly `text`.
async fn seq_of(browser: &Browser, text: &str) -> u64 {
    browser.wait_message("visitor", text).await;
    browser
        .js(
            "return Number([...document.querySelectorAll('[data-testid=message]')]
                 .find(m => m.dataset.author === 'visitor' &&
                     m.querySelector('.bubble').textContent === arguments[0]).dataset.seq)",
            vec![json!(text)],
        )
        .await
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_who_left_gets_the_reply_by_email_and_its_link_brings_the_chat_back_once() {
    let smtp = Smtp::start().await;
    let flags: Vec<String> = [
        "--smtp-url",
        &smtp.url,
        "--smtp-from",
        "Shop support <support@shop.example>",
        "--mail-batch",
        "0",
        "--alert-after",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;

    // Nobody is online: the visitor (whose browser speaks Spanish) leaves an email.
    let visitor = driver.speaking("es").await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor.say("¿Hacen envíos a Canarias?").await;
    visitor
        .wait_message("visitor", "¿Hacen envíos a Canarias?")
        .await;
    let input = visitor.find("away-email").await;
    input.send_keys("v@example.com").await.unwrap();
    visitor.click("away-email-submit").await;
    visitor.find("away-email-saved").await;
    // The site's agents are mailed once it has waited (1 s here) with none of them there.
    let alert = smtp
        .wait_mail("ana@shop.example", "A visitor is waiting")
        .await;
    assert!(
        alert.body.contains("¿Hacen envíos a Canarias?"),
        "{alert:?}"
    );
    assert!(
        alert.body.contains(&format!("{}/agent", product.relay_url)),
        "{alert:?}"
    );
    assert!(alert.from.contains("support@shop.example"), "{alert:?}");
    visitor.close().await;

    // Ana answers the visitor, who has gone.
    let ana = driver.browser().await;
    ana.login(&product.relay_url, "ana@shop.example").await;
    ana.open_conversation("¿Hacen envíos a Canarias?").await;
    ana.say("Sí, enviamos a Canarias en 3 días.").await;
    ana.wait_message("agent", "Sí, enviamos a Canarias en 3 días.")
        .await;
    let reply = smtp.wait_mail("v@example.com", "Nueva respuesta de").await;
    assert!(reply.body.contains("Ana:"), "{reply:?}");
    assert!(
        reply.body.contains("Sí, enviamos a Canarias en 3 días."),
        "{reply:?}"
    );
    let link = link_in(&reply.body);
    // Back to the page the visitor was on, on the site.
    assert!(
        link.starts_with(&product.demo_url),
        "{link} on {}",
        product.demo_url
    );

    // The link, on another device: the widget opens by itself on the conversation.
    let phone = driver.speaking("es").await;
    phone.goto(&link).await;
    phone
        .wait_js(
            "the link's token gone from the address bar",
            "return !location.hash.includes('escalera-resume')",
            vec![],
        )
        .await;
    phone.enter_widget().await;
    phone
        .wait_message("agent", "Sí, enviamos a Canarias en 3 días.")
        .await;
    phone
        .wait_message("visitor", "¿Hacen envíos a Canarias?")
        .await;
    phone.say("¡Genial, gracias!").await;
    ana.wait_message("visitor", "¡Genial, gracias!").await;

    // A second use of the link starts afresh: the visitor's first message there is the
    // first of a new conversation.
    let stranger = driver.browser().await;
    stranger.goto(&link).await;
    stranger.enter_widget().await;
    stranger.say("¿Hola?").await;
    assert_eq!(seq_of(&stranger, "¿Hola?").await, 1);
    let stranger_log = stranger.messages().await;
    assert!(
        !stranger_log
            .iter()
            .any(|(_, text)| text.contains("Canarias")),
        "{stranger_log:?}"
    );
    stranger.close().await;

    // Ana closes the conversation; the visitor has the transcript mailed.
    ana.click("conversation-close").await;
    phone.find("closed").await;
    let found = phone.axe_serious().await;
    assert!(found.is_empty(), "axe on the transcript form: {found:#?}");
    let input = phone.find("transcript-email").await;
    input.send_keys("v@example.com").await.unwrap();
    phone.click("transcript-email-submit").await;
    phone.find("transcript-sent").await;
    let transcript = smtp.wait_mail("v@example.com", "Tu conversación con").await;
    for line in [
        "Tú: ¿Hacen envíos a Canarias?",
        "Ana: Sí, enviamos a Canarias en 3 días.",
        "Tú: ¡Genial, gracias!",
        // The record's own lines, in the visitor's language too.
        "Ana cerró la conversación",
    ] {
        assert!(transcript.body.contains(line), "{line:?} in {transcript:?}");
    }
}
