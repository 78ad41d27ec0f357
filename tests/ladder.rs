//! The escalation ladder in real browsers with fake camera, microphone and screen: one
//! conversation climbs chat -> voice -> video -> screen -> snapshot -> file -> hang up, and the
//! chat still works; both sides pressing "video" at once converges, again and again; and the
//! call code, split off the page, comes with the first call and works at once.

use escalera_e2e::{chatting, send, voice_call, wire_error, Driver, Product};
use escalera_protocol::{CallAction, CallKind, ClientMsg};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Keeps every local track of this page in `window.__local` (checked after hanging up).
const KEEP_LOCAL_TRACKS: &str = "window.__local = window.__local || [];
    const v = document.querySelector('[data-testid=local-video]');
    if (v && v.srcObject) for (const t of v.srcObject.getTracks())
        if (!window.__local.includes(t)) window.__local.push(t);
    return window.__local.length";

const DOWNLOAD_SHA256: &str = "const done = arguments[arguments.length - 1];
    const a = [...document.querySelectorAll('[data-testid=attachment] a.file')]
        .find(a => a.textContent.includes(arguments[0]));
    if (!a) return done(null);
    fetch(a.href).then(r => r.ok ? r.arrayBuffer() : Promise.reject(r.status))
        .then(b => crypto.subtle.digest('SHA-256', b))
        .then(h => done([...new Uint8Array(h)].map(x => x.toString(16).padStart(2, '0')).join('')))
        .catch(e => done('error ' + e));";

#[tokio::test(flavor = "multi_thread")]
async fn one_conversation_climbs_the_whole_ladder_and_back() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;

    // Voice: the agent calls, the visitor accepts; chat goes on during the call.
    voice_call(&visitor, &agent).await;
    visitor.say("I can hear you").await;
    agent.wait_message("visitor", "I can hear you").await;

    // Video: the visitor turns the camera on (renegotiation on the same connection); then the agent.
    visitor.click("call-video").await;
    agent.wait_remote_frames().await;
    agent
        .wait_message("system", "Visitor turned video on")
        .await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;
    visitor.wait_message("system", "Ana turned video on").await;

    // Screen: the agent shares the screen instead of the camera; stopping brings the camera back.
    let camera = agent
        .wait_js(
            "the camera in the local video",
            "const v = document.querySelector('[data-testid=local-video]');
             const t = v && v.srcObject && v.srcObject.getVideoTracks()[0];
             return t ? t.id : null",
            vec![],
        )
        .await;
    agent.click("screen-share").await;
    visitor
        .wait_message("system", "Ana shared their screen")
        .await;
    visitor.wait_remote_frames().await;
    agent.click("screen-share").await;
    visitor
        .wait_message("system", "Ana stopped sharing their screen")
        .await;
    agent
        .wait_js(
            "the camera back in the local video",
            "const v = document.querySelector('[data-testid=local-video]');
             const t = v.srcObject.getVideoTracks();
             return t.length === 1 && t[0].id === arguments[0] && t[0].readyState === 'live'",
            vec![camera],
        )
        .await;
    visitor.wait_remote_frames().await;

    // Snapshot: the agent photographs the visitor's video; both sides see a real picture.
    agent.click("snapshot").await;
    for side in [&agent, &visitor] {
        side.wait_snapshot_picture().await;
    }

    // A file from the visitor: the agent downloads exactly the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receipt.bin");
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let expected = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    visitor.attach(&path).await;
    for side in [&agent, &visitor] {
        let got = side
            .wait_js_async(
                "the file's download",
                DOWNLOAD_SHA256,
                vec![json!("receipt.bin")],
            )
            .await;
        assert_eq!(got, json!(expected));
    }

    // Hang up: the call ends for both and every camera, microphone and screen track is released.
    for side in [&visitor, &agent] {
        let kept = side.js(KEEP_LOCAL_TRACKS, vec![]).await;
        assert!(kept.as_u64().unwrap() >= 2, "mic and camera: {kept}");
    }
    agent.click("call-hangup").await;
    for side in [&visitor, &agent] {
        side.wait_message_prefix("system", "Call ended, ").await;
        side.wait_js(
            "all local tracks ended",
            "return window.__local.every(t => t.readyState === 'ended') &&
                document.querySelector('[data-testid=call-hangup]') === null",
            vec![],
        )
        .await;
    }

    // And the chat carries on.
    visitor.say("Thanks, fixed!").await;
    agent.wait_message("visitor", "Thanks, fixed!").await;
    agent.say("Glad to help").await;
    visitor.wait_message("agent", "Glad to help").await;
    visitor.close().await;
    agent.close().await;
}

/// How many times this page fetched the call code (the chunk scripts/build.sh splits off).
const CALL_CODE_FETCHES: &str = "return performance.getEntriesByType('resource')
    .filter(e => /\\/split_call-[0-9a-f]{16}\\.wasm$/.test(new URL(e.name).pathname)).length";

#[tokio::test(flavor = "multi_thread")]
async fn the_call_code_comes_with_the_first_call_and_works_at_once() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;
    // Chat is up on both sides without it.
    for side in [&visitor, &agent] {
        assert_eq!(side.js(CALL_CODE_FETCHES, vec![]).await, json!(0));
    }
    // The first call fetches it (once) and connects with it: audio both ways.
    voice_call(&visitor, &agent).await;
    for side in [&visitor, &agent] {
        assert_eq!(side.js(CALL_CODE_FETCHES, vec![]).await, json!(1));
    }
    // The camera, a snapshot and the hang-up run in it too.
    visitor.click("call-video").await;
    agent.wait_remote_frames().await;
    agent.click("snapshot").await;
    visitor.wait_snapshot_picture().await;
    agent.click("call-hangup").await;
    visitor.wait_message_prefix("system", "Call ended, ").await;
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_that_cannot_fetch_its_call_code_says_so_and_the_chat_goes_on() {
    // The client as built, but the widget's call code gone (a dropped network, a bad deploy).
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/dist");
    let assets = tempfile::tempdir().unwrap();
    let mut removed = 0;
    for page in ["widget", "console"] {
        std::fs::create_dir(assets.path().join(page)).unwrap();
        for entry in std::fs::read_dir(built.join(page)).unwrap() {
            let from = entry.unwrap().path();
            let name = from.file_name().unwrap().to_str().unwrap().to_owned();
            if page == "widget" && name.starts_with("split_call-") {
                removed += 1;
                continue;
            }
            std::fs::copy(&from, assets.path().join(page).join(name)).unwrap();
        }
    }
    assert_eq!(removed, 1, "the widget's call code in {}", built.display());
    let flag = format!("--assets={}", assets.path().display());
    let product = Product::start_with(&[flag]).await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;

    agent.click("call-voice").await;
    visitor.click("call-accept").await;
    visitor
        .wait_js(
            "the notice",
            "const n = document.querySelector('[data-testid=notice]');
             return n && n.textContent.includes('could not load its call code')",
            vec![],
        )
        .await;
    // The page lives on: the chat works both ways.
    visitor.say("Never mind, let's write").await;
    agent
        .wait_message("visitor", "Never mind, let's write")
        .await;
    agent.say("Sure").await;
    visitor.wait_message("agent", "Sure").await;
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn both_sides_pressing_video_at_once_converge_twenty_times() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;
    voice_call(&visitor, &agent).await;
    let click = "document.querySelector('[data-testid=' + arguments[0] + ']').click()";
    for trial in 1..=20 {
        // Both camera buttons pressed in the same instant: both sides offer at once.
        let (a, b) = tokio::join!(
            visitor.js(click, vec![json!("call-video")]),
            agent.js(click, vec![json!("call-video")])
        );
        assert!(a.is_null() && b.is_null(), "trial {trial}");
        visitor.wait_remote_frames().await;
        agent.wait_remote_frames().await;
        // Both off again (also at once) before the next trial.
        for side in [&visitor, &agent] {
            side.find("camera-toggle").await;
        }
        let _ = tokio::join!(
            visitor.js(click, vec![json!("camera-toggle")]),
            agent.js(click, vec![json!("camera-toggle")])
        );
        for side in [&visitor, &agent] {
            side.wait_js(
                "the remote video gone",
                "const v = document.querySelector('[data-testid=remote-video]');
                 return v.srcObject && v.srcObject.getVideoTracks().length === 0 &&
                     document.querySelector('[data-testid=call-video]') !== null",
                vec![],
            )
            .await;
        }
    }
    // Still one healthy call, on one connection whose description did not grow: one audio
    // and one video section, however often video went on and off. The offers really
    // collided: the polite side (the visitor) rolled its own back.
    visitor.wait_ice_connected().await;
    agent.wait_remote_audio().await;
    let diag = "const l = document.querySelector('.stage-label').dataset;
        return { signaling: l.signaling, m: Number(l.mLines), rollbacks: Number(l.rollbacks) }";
    let (v, a) = (visitor.js(diag, vec![]).await, agent.js(diag, vec![]).await);
    for d in [&v, &a] {
        assert_eq!(d["signaling"], json!("stable"), "{d}");
        assert_eq!(d["m"], json!(2), "audio and video sections only: {d}");
    }
    assert!(
        v["rollbacks"].as_u64().unwrap() >= 1,
        "no offer collided: {v}"
    );
    assert_eq!(
        a["rollbacks"],
        json!(0),
        "the impolite side never rolls back: {a}"
    );
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn declines_mute_and_oversized_files_are_told_clearly() {
    let flags = ["--max-upload", "100K", "--ring-timeout", "3"].map(String::from);
    let product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;

    // The visitor calls; the agent hears who is calling and declines; the visitor is told and
    // its microphone is released.
    visitor.click("call-voice").await;
    visitor
        .wait_js(
            "the visitor's microphone open while it rings",
            "window.__local = [];
             const v = document.querySelector('[data-testid=local-video]');
             if (v && v.srcObject) window.__local.push(...v.srcObject.getTracks());
             return window.__local.length === 1 && window.__local[0].kind === 'audio'",
            vec![],
        )
        .await;
    let incoming = agent.find("incoming-call").await;
    assert!(incoming
        .text()
        .await
        .unwrap()
        .contains("Visitor is calling you (voice call)"));
    agent.click("call-decline").await;
    for side in [&visitor, &agent] {
        side.wait_message("system", "Call declined").await;
        side.wait_js(
            "the call gone",
            "return document.querySelector('[data-testid=call-hangup]') === null &&
                document.querySelector('[data-testid=call-voice]') !== null",
            vec![],
        )
        .await;
    }
    visitor
        .wait_js(
            "the visitor's microphone track ended",
            "return window.__local.every(t => t.readyState === 'ended')",
            vec![],
        )
        .await;

    // Nobody answers: after the ring timeout the caller is told and the call is recorded as missed.
    agent.click("call-voice").await;
    visitor.find("incoming-call").await;
    agent.wait_message("system", "Missed call").await;
    let told = agent.find("notice").await.text().await.unwrap();
    assert!(told.contains("No answer."), "{told}");
    visitor
        .wait_js(
            "the ringing gone",
            "return document.querySelector('[data-testid=incoming-call]') === null",
            vec![],
        )
        .await;

    // In a call, mute really stops sending sound, and unmute brings it back.
    voice_call(&visitor, &agent).await;
    visitor.click("mic-toggle").await;
    let muted = "const v = document.querySelector('[data-testid=local-video]');
        const b = document.querySelector('[data-testid=mic-toggle]');
        return b.getAttribute('aria-pressed') === 'true' &&
            v.srcObject.getAudioTracks().every(t => !t.enabled)";
    visitor.wait_js("muted", muted, vec![]).await;
    visitor.click("mic-toggle").await;
    visitor
        .wait_js(
            "unmuted",
            "return document.querySelector('[data-testid=mic-toggle]').getAttribute('aria-pressed') === 'false'",
            vec![],
        )
        .await;

    // Files dropped on the conversation are sent like attached ones.
    agent
        .drop_file("dropped.txt", "dropped on the console")
        .await;
    visitor
        .wait_js(
            "the dropped file in the chat",
            "return [...document.querySelectorAll('[data-author=agent] [data-testid=attachment] .file-name')]
                .some(n => n.textContent === 'dropped.txt')",
            vec![],
        )
        .await;

    // A file over the relay's limit is refused before it is sent, with the limit in words.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pdf");
    std::fs::write(&big, vec![0u8; 300 * 1024]).unwrap();
    visitor.attach(&big).await;
    let error = visitor.find("upload-error").await.text().await.unwrap();
    assert!(
        error.contains("big.pdf") && error.contains("at most 100 KB"),
        "{error}"
    );
    // Hanging up from the other side ends it for both.
    agent.click("call-hangup").await;
    visitor.wait_message_prefix("system", "Call ended, ").await;
    visitor.close().await;
    agent.close().await;
}

/// Holds the page's `getUserMedia` until `window.__allow()`: a person slow to allow the
/// microphone, so the test can act while a call is being set up.
const HOLD_DEVICES: &str = "const md = navigator.mediaDevices;
    const open = md.getUserMedia.bind(md);
    const allowed = new Promise(r => { window.__allow = r; });
    md.getUserMedia = c => allowed.then(() => open(c));";

/// Sends `n` chat messages through the composer in one go (one JavaScript task).
const SEND_MANY: &str = "const input = document.querySelector('[data-testid=chat-input]');
    for (let i = 1; i <= arguments[0]; i++) {
        input.value = 'quick ' + i;
        input.dispatchEvent(new Event('input', { bubbles: true }));
        document.querySelector('[data-testid=chat-send]').click();
    }";

#[tokio::test(flavor = "multi_thread")]
async fn an_error_about_a_chat_message_does_not_end_a_call_being_set_up() {
    // Five frames at once, then one a second: a burst of twelve messages is mostly refused,
    // each refusal naming its message, however slowly a busy machine runs the test.
    let flags = ["--frame-burst", "5", "--frame-rate", "1"].map(String::from);
    let product = Product::start_with(&flags).await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;

    // The visitor calls; the browser still asks for the microphone.
    visitor.js(HOLD_DEVICES, vec![]).await;
    visitor.click("call-voice").await;
    // Meanwhile twelve messages go at once: some are refused as too fast.
    visitor.js(SEND_MANY, vec![json!(12)]).await;
    let told = visitor.find("notice").await.text().await.unwrap();
    assert!(told.contains("too fast"), "{told}");
    // Those refusals were about messages, not about the call: it is still being set up, and
    // the refused messages are sent again by themselves, each stored once.
    let busy = visitor
        .js(
            "return document.querySelector('[data-testid=call-voice]').disabled",
            vec![],
        )
        .await;
    assert_eq!(busy, json!(true), "the call setup was cancelled");
    for i in 1..=12 {
        agent.wait_message("visitor", &format!("quick {i}")).await;
        visitor.wait_message("visitor", &format!("quick {i}")).await;
    }
    let shown = visitor.messages().await;
    for i in 1..=12 {
        let text = format!("quick {i}");
        assert_eq!(
            shown.iter().filter(|(_, t)| *t == text).count(),
            1,
            "{text}"
        );
    }

    // The microphone is allowed: the call rings at the agent's (its start, if refused as too
    // fast too, goes again by itself).
    visitor.js("window.__allow()", vec![]).await;
    agent.find("incoming-call").await;
    agent.click("call-decline").await;
    for side in [&visitor, &agent] {
        side.wait_message("system", "Call declined").await;
    }
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tracks_that_come_without_a_stream_are_shown() {
    let product = Product::start().await;
    let mut driver = Driver::start().await;
    let visitor = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor.say("Hello").await;
    // The agent's console sends its tracks with no stream (`a=msid:-`), as some peers do.
    let agent = driver.browser().await;
    agent
        .goto(&format!("{}/agent?streams=none", product.relay_url))
        .await;
    agent.login_here("ana@shop.example").await;
    agent.click("conversation").await;
    agent.say("Hi").await;
    visitor.wait_message("agent", "Hi").await;

    voice_call(&visitor, &agent).await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;
    // Its camera off: the track leaves what the visitor shows; on again: back.
    agent.click("camera-toggle").await;
    visitor
        .wait_js(
            "the agent's video gone",
            "const v = document.querySelector('[data-testid=remote-video]');
             return v.srcObject && v.srcObject.getVideoTracks().length === 0 &&
                 v.srcObject.getAudioTracks().length === 1",
            vec![],
        )
        .await;
    agent.click("call-video").await;
    visitor.wait_remote_frames().await;
    visitor.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_offers_only_the_steps_its_owner_chose_in_the_browser_and_at_the_relay() {
    let product = Product::start().await;
    product
        .cli(&[
            "site",
            "set",
            "--site",
            &product.site_key,
            "--steps",
            "chat",
            "--files",
            "off",
        ])
        .await;
    let mut driver = Driver::start().await;
    let (visitor, agent) = chatting(&product, &mut driver).await;
    // Chat only: no call buttons and no attach button, on either side.
    for side in [&visitor, &agent] {
        side.wait_js(
            "no call or file buttons",
            "return document.querySelector('[data-testid=chat-input]') !== null
                && ['call-voice', 'call-video', 'file-input']
                    .every(id => document.querySelector('[data-testid=' + id + ']') === null)",
            vec![],
        )
        .await;
    }
    // And the relay refuses a call from this very visitor (their token, over the wire).
    let token = visitor
        .js(
            "const k = Object.keys(localStorage).find(k => k.endsWith(':token'));
             return localStorage.getItem(k)",
            vec![],
        )
        .await;
    let (mut ws, _, conversation) = product
        .wire_visitor_as(token.as_str().map(str::to_owned))
        .await;
    let start = |kind| ClientMsg::Call {
        conversation: conversation.as_str().into(),
        action: CallAction::Start { kind },
    };
    send(&mut ws, &start(CallKind::Voice)).await;
    assert_eq!(
        wire_error(&mut ws).await,
        "forbidden: this site does not offer voice calls"
    );

    // Chat and voice: the microphone, no camera; the relay refuses video.
    product
        .cli(&[
            "site",
            "set",
            "--site",
            &product.site_key,
            "--steps",
            "voice",
        ])
        .await;
    visitor.client.refresh().await.unwrap();
    visitor.open_widget().await;
    visitor.find("call-voice").await;
    assert_eq!(
        visitor
            .js(
                "return document.querySelector('[data-testid=call-video]') === null",
                vec![]
            )
            .await,
        json!(true)
    );
    send(&mut ws, &start(CallKind::Video)).await;
    assert_eq!(
        wire_error(&mut ws).await,
        "forbidden: this site does not offer video calls"
    );
    visitor.close().await;
    agent.close().await;
}
