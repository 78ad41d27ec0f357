//! Calls belong to the conversation's parties, not to sockets: the media is peer to peer, so a
//! relay killed in the middle of a video call and started again on the same data dir does not
//! end the call.

use escalera_e2e::{chatting, voice_call, Browser, Driver, Product};
use serde_json::json;

/// Waits until the call panel's status starts with `prefix`.
async fn wait_status(side: &Browser, prefix: &str) {
    side.wait_js(
        &format!("the call's status to start with {prefix:?}"),
        "const s = document.querySelector('[data-testid=call-status]');
         return s !== null && s.textContent.startsWith(arguments[0])",
        vec![json!(prefix)],
    )
    .await;
}

/// How many system messages start with `prefix`.
async fn notes(side: &Browser, prefix: &str) -> usize {
    side.messages()
        .await
        .iter()
        .filter(|(author, text)| author == "system" && text.starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_call_survives_the_relay_killed_and_restarted() {
    let mut product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;
    voice_call(&visitor, &agent).await;
    visitor.click("call-video").await;
    agent.wait_remote_frames().await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;

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
