//! `make bench`: figures for the README, measured on loopback with the release binary.
//! - click on the bubble -> the widget's message box ready, each time in a new Chromium (an
//!   empty profile: nothing cached): p50 / p95 over 10 runs;
//! - click "video" -> first remote frame at the other side: p50 / p95 over 20 runs;
//! - 25 MiB upload and download through the relay: MB/s (median of 5).
//!
//! Prints figures only; it asserts nothing.

use std::time::Instant;

use escalera_e2e::{chatting, voice_call, Browser, Driver, Product};
use serde_json::json;

const RUNS: usize = 20;
const COLD_RUNS: usize = 10;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Arms the agent page: the wall-clock time (ms) of the next remote video frame lands in
/// `window.__first`.
const ARM: &str = "window.__first = null;
    const v = document.querySelector('[data-testid=remote-video]');
    v.requestVideoFrameCallback(now => { window.__first = performance.timeOrigin + now; });";

/// Clicks a button and returns the wall-clock time of the click (ms).
const CLICK: &str = "const t = performance.timeOrigin + performance.now();
    document.querySelector('[data-testid=' + arguments[0] + ']').click();
    return t";

async fn video_latency(product: &Product, driver: &mut Driver) -> Vec<f64> {
    let (visitor, agent) = chatting(product, driver).await;
    voice_call(&visitor, &agent).await;

    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        agent.js(ARM, vec![]).await;
        let clicked = visitor
            .js(CLICK, vec![json!("call-video")])
            .await
            .as_f64()
            .unwrap();
        let first = agent
            .wait_js("the first remote frame", "return window.__first", vec![])
            .await
            .as_f64()
            .unwrap();
        samples.push(first - clicked);
        visitor.click("camera-toggle").await;
        agent
            .wait_js(
                "the remote video gone",
                "const v = document.querySelector('[data-testid=remote-video]');
                 return v.srcObject.getVideoTracks().length === 0",
                vec![],
            )
            .await;
    }
    close(visitor, agent).await;
    samples
}

/// The widget's mark when its message box is on the page (wall-clock ms), once there is one.
const INPUT_READY: &str = "const m = performance.getEntriesByName('escalera:input-ready')[0];
    return m ? performance.timeOrigin + m.startTime : null";

/// Click on the bubble -> input ready, in a cold Chromium each time (ms).
async fn open_latency(product: &Product, driver: &mut Driver) -> Vec<f64> {
    let mut samples = Vec::with_capacity(COLD_RUNS);
    for _ in 0..COLD_RUNS {
        let visitor = driver.browser().await;
        visitor.goto(&product.demo_url).await;
        visitor.find("launcher").await;
        let clicked = visitor
            .js(CLICK, vec![json!("launcher")])
            .await
            .as_f64()
            .unwrap();
        visitor.enter_widget().await;
        let ready = visitor
            .wait_js("the widget's message box", INPUT_READY, vec![])
            .await
            .as_f64()
            .unwrap();
        samples.push(ready - clicked);
        visitor.close().await;
    }
    samples
}

async fn close(a: Browser, b: Browser) {
    a.close().await;
    b.close().await;
}

async fn throughput(product: &Product) -> (f64, f64) {
    let (_ws, token, conversation) = product.wire_visitor().await;
    let body: Vec<u8> = (0..25u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let http = reqwest::Client::new();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let start = Instant::now();
        let res = http
            .post(format!(
                "{}/api/conversations/{conversation}/files?name=bench-{i}.bin",
                product.relay_url
            ))
            .bearer_auth(&token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let up_secs = start.elapsed().as_secs_f64();
        let message: serde_json::Value =
            serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        let id = message["attachment"]["id"].as_str().unwrap().to_owned();
        let start = Instant::now();
        let got = http
            .get(format!("{}/files/{id}", product.relay_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let down_secs = start.elapsed().as_secs_f64();
        assert_eq!(got.len(), body.len());
        let mb = body.len() as f64 / 1e6;
        up.push(mb / up_secs);
        down.push(mb / down_secs);
    }
    up.sort_by(f64::total_cmp);
    down.sort_by(f64::total_cmp);
    (up[2], down[2])
}

#[tokio::main]
async fn main() {
    // Five 25 MiB files from a visitor no agent has joined: more than the default allowance.
    let product = Product::start_with(&["--upload-allowance=200M".to_owned()]).await;
    let mut driver = Driver::start().await;
    let mut open = open_latency(&product, &mut driver).await;
    open.sort_by(f64::total_cmp);
    println!(
        "click on the bubble -> message box ready, cold Chromium ({COLD_RUNS} runs): p50 {:.0} ms, p95 {:.0} ms (min {:.0}, max {:.0})",
        percentile(&open, 0.5),
        percentile(&open, 0.95),
        open[0],
        open[open.len() - 1]
    );
    let mut latency = video_latency(&product, &mut driver).await;
    latency.sort_by(f64::total_cmp);
    println!(
        "click video -> first remote frame ({RUNS} runs): p50 {:.0} ms, p95 {:.0} ms (min {:.0}, max {:.0})",
        percentile(&latency, 0.5),
        percentile(&latency, 0.95),
        latency[0],
        latency[latency.len() - 1]
    );
    let (up, down) = throughput(&product).await;
    println!(
        "25 MiB file through the relay (median of 5): upload {up:.0} MB/s, download {down:.0} MB/s"
    );
}
