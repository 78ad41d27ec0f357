//! Several nodes in real browsers: two relays on one PostgreSQL database and one NATS server
//! behind a real HAProxy, the visitor pinned to node 1 and the agent to node 2. The whole
//! ladder works across them; node 1 SIGKILLed mid-call leaves the call up (the visitor's
//! widget reconnects through the proxy to node 2); and both nodes killed and started again
//! keep the conversation, its messages and the call.

use escalera_e2e::{count, notes, wait_status, Browser, Cluster, Driver};
use serde_json::json;

/// The visitor (on node 1, through the proxy) and the agent (on node 2, through the proxy):
/// the visitor sees the agent come online across the nodes, they chat, then they are in a
/// video call, each seeing the other's camera.
async fn in_video_call(cluster: &Cluster, driver: &mut Driver) -> (Browser, Browser) {
    let visitor = driver.browser().await;
    let agent = driver.browser().await;
    visitor.goto(&cluster.demo_url).await;
    visitor.open_widget().await;
    // Nobody is available yet: the widget on node 1 says so. Ana's console opens on node 2;
    // her presence crosses to node 1, and the notice goes.
    visitor.find("away").await;
    agent.login(&cluster.url, "ana@shop.example").await;
    visitor
        .wait_js(
            "the away notice gone",
            "return document.querySelector('[data-testid=away]') === null",
            vec![],
        )
        .await;
    visitor.say("Hello from node 1").await;
    agent.click("conversation").await;
    agent.wait_message("visitor", "Hello from node 1").await;
    agent.say("Hi, Ana on node 2").await;
    visitor.wait_message("agent", "Hi, Ana on node 2").await;
    // Each is where the proxy pins them (the chat above is their barrier).
    let on = |n, kind| cluster.sockets(n, kind);
    assert_eq!((on(0, "visitor").await, on(0, "agent").await), (1, 0));
    assert_eq!((on(1, "visitor").await, on(1, "agent").await), (0, 1));
    escalera_e2e::voice_call(&visitor, &agent).await;
    visitor.click("call-video").await;
    agent.wait_remote_frames().await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;
    (visitor, agent)
}

const DOWNLOAD_TEXT: &str = "const done = arguments[arguments.length - 1];
    const a = [...document.querySelectorAll('[data-testid=attachment] a.file')]
        .find(a => a.textContent.includes(arguments[0]));
    if (!a) return done(null);
    fetch(a.href).then(r => r.ok ? r.text() : Promise.reject(r.status))
        .then(done).catch(e => done('error ' + e));";

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_on_one_node_and_an_agent_on_another_chat_call_snapshot_and_share_a_file() {
    let cluster = Cluster::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = in_video_call(&cluster, &mut driver).await;
    for side in [&visitor, &agent] {
        side.wait_message("system", "Voice call started").await;
    }
    agent
        .wait_message("system", "Visitor turned video on")
        .await;

    // A snapshot of the visitor's video, taken on node 2's side, reaches node 1's.
    agent.click("snapshot").await;
    for side in [&agent, &visitor] {
        side.wait_snapshot_picture().await;
    }
    // A file from the visitor: the agent downloads it whole.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipt.txt");
    std::fs::write(&path, "Order 1234, paid 12.50 EUR").unwrap();
    visitor.attach(&path).await;
    for side in [&agent, &visitor] {
        let got = side
            .wait_js_async(
                "the file's download",
                DOWNLOAD_TEXT,
                vec![json!("receipt.txt")],
            )
            .await;
        assert_eq!(got, json!("Order 1234, paid 12.50 EUR"));
    }
    // Chat goes on during the call, both ways; hanging up ends it for both, once.
    visitor.say("Thanks, that helps").await;
    agent.wait_message("visitor", "Thanks, that helps").await;
    visitor.click("call-hangup").await;
    for side in [&visitor, &agent] {
        side.wait_message_prefix("system", "Call ended, ").await;
        assert_eq!(notes(side, "Call ended").await, 1);
        assert_eq!(notes(side, "Voice call started").await, 1);
    }
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_visitors_node_killed_mid_call_and_then_the_whole_cluster_keep_the_call_and_chat() {
    let mut cluster = Cluster::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = in_video_call(&cluster, &mut driver).await;

    // Node 1 is SIGKILLed: only the visitor was on it. The widget reconnects through the
    // proxy, to node 2, and resumes the call; the video never stopped, peer to peer.
    cluster.nodes[0].kill().await;
    wait_status(&visitor, "Reconnecting…").await;
    visitor.say("Typed while node 1 died").await;
    for side in [&visitor, &agent] {
        side.wait_remote_frames().await;
    }
    wait_status(&visitor, "In call").await;
    wait_status(&agent, "In call").await;
    agent
        .wait_message("visitor", "Typed while node 1 died")
        .await;
    // Node 2 has them both now.
    assert_eq!(cluster.sockets(1, "visitor").await, 1);
    agent.say("Still here, on node 2").await;
    visitor.wait_message("agent", "Still here, on node 2").await;
    for side in [&visitor, &agent] {
        side.wait_remote_frames().await;
        // Every acknowledged message is there, once.
        assert_eq!(count(side, "visitor", "Hello from node 1").await, 1);
        assert_eq!(count(side, "agent", "Hi, Ana on node 2").await, 1);
        assert_eq!(count(side, "visitor", "Typed while node 1 died").await, 1);
    }

    // Both nodes killed and started again on the same database, bus and files: both sides
    // resume the same call, and the chat is whole.
    cluster.nodes[1].kill().await;
    for side in [&visitor, &agent] {
        wait_status(side, "Reconnecting…").await;
    }
    for node in cluster.nodes.iter_mut() {
        node.restart().await;
    }
    for side in [&visitor, &agent] {
        wait_status(side, "In call").await;
        side.wait_remote_frames().await;
    }
    visitor.say("After the restart").await;
    agent.wait_message("visitor", "After the restart").await;
    agent.say("Welcome back").await;
    visitor.wait_message("agent", "Welcome back").await;

    agent.click("call-hangup").await;
    for side in [&visitor, &agent] {
        side.wait_message_prefix("system", "Call ended, ").await;
        assert_eq!(notes(side, "Call ended").await, 1, "one end of the call");
        assert_eq!(notes(side, "Call cancelled").await, 0);
        assert_eq!(count(side, "visitor", "Hello from node 1").await, 1);
        assert_eq!(count(side, "visitor", "Typed while node 1 died").await, 1);
    }
    visitor.close().await;
    agent.close().await;
}
