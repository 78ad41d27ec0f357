//! Calls belong to the conversation's parties, not to sockets: the media is peer to peer, so a
//! relay killed in the middle of a video call and started again on the same data dir, or a
//! visitor's network gone for five seconds, does not end the call. And what either side types
//! while offline is delivered once when they are back.

use std::time::Duration;

use escalera_e2e::{
    chatting, count, notes, voice_call, wait_status, Browser, Cut, Driver, Product,
};
use serde_json::json;

/// Both sides turn their camera on, and each sees the other's video.
async fn video_both_ways(visitor: &Browser, agent: &Browser) {
    visitor.click("call-video").await;
    agent.wait_remote_frames().await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_call_survives_the_relay_killed_and_restarted() {
    let mut product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;
    voice_call(&visitor, &agent).await;
    video_both_ways(&visitor, &agent).await;

    // SIGKILL: no goodbye to anyone. Both sides say they are reconnecting, and the video
    // keeps coming, peer to peer.
    product.kill().await;
    for side in [&visitor, &agent] {
        wait_status(side, "Reconnecting…").await;
        side.wait_remote_frames().await;
    }

    // Back on the same data dir: both ends resume the call on their new sockets.
    product.restart().await;
    for side in [&visitor, &agent] {
        wait_status(side, "In call").await;
        side.wait_remote_frames().await;
    }
    visitor.say("Still with you").await;
    agent.wait_message("visitor", "Still with you").await;
    agent.say("Me too").await;
    visitor.wait_message("agent", "Me too").await;

    agent.click("call-hangup").await;
    for side in [&visitor, &agent] {
        side.wait_message_prefix("system", "Call ended, ").await;
    }
    for side in [&visitor, &agent] {
        assert_eq!(notes(side, "Call ended").await, 1, "one end of the call");
        assert_eq!(notes(side, "Call cancelled").await, 0);
        assert_eq!(notes(side, "Missed call").await, 0);
    }
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitors_network_gone_for_five_seconds_does_not_end_the_call() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    // The visitor reaches the relay only through a proxy that the test can cut: for the
    // relay, the widget opened there is a page of another origin, allowed by its site.
    let cut = Cut::to(&product.relay_url).await;
    let site = product.add_site(&cut.url).await;
    let visitor = driver.browser().await;
    visitor
        .goto(&format!("{}/embed?site={site}", cut.url))
        .await;
    visitor.say("Hello, can we talk?").await;
    let agent = driver.browser().await;
    agent.login(&product.relay_url, "ana@shop.example").await;
    agent.click("conversation").await;
    agent.say("Sure, calling you").await;
    visitor.wait_message("agent", "Sure, calling you").await;
    voice_call(&visitor, &agent).await;
    video_both_ways(&visitor, &agent).await;

    // The network goes: the visitor's socket is closed and reconnecting fails. The agent is
    // told the visitor is away; the video, peer to peer, keeps coming both ways.
    let gone = tokio::time::Instant::now();
    cut.sever();
    for side in [&visitor, &agent] {
        wait_status(side, "Reconnecting…").await;
        side.wait_remote_frames().await;
    }
    // Meanwhile each side writes: nothing is lost, nothing doubled.
    agent.say("Are you still there?").await;
    visitor.say("Typed with no network").await;
    // The scenario: five seconds without network, not a wait for anything.
    tokio::time::sleep_until(gone + Duration::from_secs(5)).await;
    cut.restore();

    for side in [&visitor, &agent] {
        wait_status(side, "In call").await;
        side.wait_remote_frames().await;
    }
    visitor.wait_message("agent", "Are you still there?").await;
    agent.wait_message("visitor", "Typed with no network").await;
    visitor
        .wait_message("visitor", "Typed with no network")
        .await;
    for side in [&visitor, &agent] {
        assert_eq!(count(side, "visitor", "Typed with no network").await, 1);
        assert_eq!(count(side, "agent", "Are you still there?").await, 1);
    }

    visitor.click("call-hangup").await;
    for side in [&visitor, &agent] {
        side.wait_message_prefix("system", "Call ended, ").await;
        assert_eq!(notes(side, "Call ended").await, 1, "one end of the call");
    }
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agents_reply_typed_while_the_relay_is_down_is_delivered_once() {
    let mut product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;

    product.kill().await;
    agent
        .wait_js(
            "the console saying it is reconnecting",
            "return document.querySelector('[data-testid=connection]').textContent === 'Reconnecting…'",
            vec![],
        )
        .await;
    agent.say("Typed while you were away").await;
    agent
        .wait_js(
            "the reply shown as sending",
            "return [...document.querySelectorAll('[data-testid=message]')].some(m =>
                m.dataset.pending === 'true' &&
                m.querySelector('.bubble').textContent === arguments[0])",
            vec![json!("Typed while you were away")],
        )
        .await;

    product.restart().await;
    visitor
        .wait_message("agent", "Typed while you were away")
        .await;
    agent
        .wait_message("agent", "Typed while you were away")
        .await;
    // A barrier: a message after it, both ways, before counting.
    visitor.say("Got it").await;
    agent.wait_message("visitor", "Got it").await;
    for side in [&visitor, &agent] {
        assert_eq!(count(side, "agent", "Typed while you were away").await, 1);
    }
    // And the record holds it once: a reloaded console reads it from the store.
    agent.goto(&format!("{}/agent", product.relay_url)).await;
    agent.click("conversation").await;
    agent.wait_message("visitor", "Got it").await;
    assert_eq!(count(&agent, "agent", "Typed while you were away").await, 1);
    visitor.close().await;
    agent.close().await;
}
