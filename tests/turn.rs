//! Calls through a real TURN server: coturn on loopback with `use-auth-secret`, both browsers
//! forced to relay candidates only (`?ice=relay` sets `iceTransportPolicy: "relay"`), with the
//! short-lived credentials the relay mints. With the wrong secret no media flows.

use escalera_e2e::{Browser, Driver, Product, Turn};

/// A visitor on the widget page itself and an agent in the console, both relay-only, in a
/// conversation the agent has taken; the agent calls with video and the visitor accepts.
async fn relayed_call(product: &Product, driver: &mut Driver) -> (Browser, Browser) {
    let visitor = driver.browser().await;
    let agent = driver.browser().await;
    visitor
        .goto(&format!(
            "{}/embed?site={}&ice=relay",
            product.relay_url, product.site_key
        ))
        .await;
    visitor.say("Can we do video?").await;
    agent
        .goto(&format!("{}/agent?ice=relay", product.relay_url))
        .await;
    agent.login_here("ana@shop.example").await;
    agent.click("conversation").await;
    agent.say("Sure").await;
    visitor.wait_message("agent", "Sure").await;
    agent.click("call-video").await;
    visitor.click("call-accept").await;
    (visitor, agent)
}

#[tokio::test(flavor = "multi_thread")]
async fn media_flows_through_turn_with_minted_credentials() {
    let turn = Turn::start("north-secret").await;
    let flags = [
        "--turn-url".to_owned(),
        turn.url.clone(),
        "--turn-secret".into(),
        "north-secret".into(),
    ];
    let product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = relayed_call(&product, &mut driver).await;
    for side in [&visitor, &agent] {
        side.wait_ice_connected().await;
        side.wait_remote_audio().await;
    }
    visitor.wait_remote_frames().await;
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_wrong_turn_secret_no_media_flows() {
    let turn = Turn::start("north-secret").await;
    let flags = [
        "--turn-url".to_owned(),
        turn.url.clone(),
        "--turn-secret".into(),
        "wrong".into(),
    ];
    let product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = relayed_call(&product, &mut driver).await;
    // The call is up as far as the relay knows, but no path for media exists: with TURN
    // forced and refused, each side finishes gathering with no candidate at all, so no pair
    // can ever be checked. Waiting for that is the barrier; then nothing has flowed.
    visitor.wait_message("system", "Video call started").await;
    for side in [&visitor, &agent] {
        side.wait_js(
            "ICE gathering complete",
            "const l = document.querySelector('.stage-label');
             return l && l.dataset.gathering === 'complete'",
            vec![],
        )
        .await;
    }
    for side in [&visitor, &agent] {
        let state = side
            .js(
                "const l = document.querySelector('.stage-label');
                 const v = document.querySelector('[data-testid=remote-video]');
                 return [l.dataset.ice, v.getVideoPlaybackQuality().totalVideoFrames]",
                vec![],
            )
            .await;
        assert!(
            !["connected", "completed"].contains(&state[0].as_str().unwrap()),
            "{state}"
        );
        assert_eq!(state[1], 0, "{state}");
    }
    visitor.close().await;
    agent.close().await;
}
