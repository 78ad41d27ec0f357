//! `make bench`: figures for the README, measured on loopback with the release binary.
//! - click "video" -> first remote frame at the other side: p50 / p95 over 20 runs;
//! - 25 MiB upload and download through the relay: MB/s (median of 5).
//!
//! Prints figures only; it asserts nothing.

use std::time::Instant;

use escalera_e2e::{chatting, voice_call, Browser, Driver, Product};
use serde_json::json;

const RUNS: usize = 20;

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
    let product = Product::start().await;
    let mut driver = Driver::start().await;
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
