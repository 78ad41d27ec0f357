//! Prometheus metrics, served on their own address (`--metrics-listen`, never on the public
//! one): `GET /metrics` in Prometheus's text format.
//!
//! | name | what |
//! |---|---|
//! | `escalera_sockets{kind}` | open WebSockets, `visitor` or `agent` (at scrape time) |
//! | `escalera_calls_active` | calls answered and not over, on this node's record of them |
//! | `escalera_messages_total` | messages stored (resends of a stored one not counted) |
//! | `escalera_store_seconds{op}` | the store's time for `append` (to the durable commit) and `history` |
//! | `escalera_bus_seconds` | from an event's publication on one node to its arrival on another (NATS) |
//! | `escalera_limited_total{limit}` | refusals by a limit: `rate` (frames, chat messages, call actions: `error rate_limited`), `cap` (`error limit_reached`), `connections` (per address or in all, closed at accept), `visitor_sockets` (the agents' reserve), `logins` (throttled, 429), `login_slots` (every password check busy, 503) |

use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of this process.
pub struct Metrics {
    registry: Registry,
    /// Open sockets by kind (set at scrape time).
    pub sockets: IntGaugeVec,
    /// Active calls (set at scrape time).
    pub calls_active: IntGauge,
    /// Messages stored.
    pub messages: IntCounter,
    /// The store's latency by operation.
    pub store_seconds: HistogramVec,
    /// The bus's latency between nodes.
    pub bus_seconds: Histogram,
    /// Refusals by limit.
    pub limited: IntCounterVec,
}

/// Latency buckets, 0.5 ms to 5 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let sockets = IntGaugeVec::new(
            Opts::new("escalera_sockets", "Open WebSockets by kind"),
            &["kind"],
        )
        .expect("a valid metric");
        let calls_active =
            IntGauge::new("escalera_calls_active", "Calls answered and not over").expect("valid");
        let messages =
            IntCounter::new("escalera_messages_total", "Messages stored").expect("a valid metric");
        let store_seconds = HistogramVec::new(
            HistogramOpts::new("escalera_store_seconds", "The store's time by operation")
                .buckets(BUCKETS.to_vec()),
            &["op"],
        )
        .expect("a valid metric");
        let bus_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "escalera_bus_seconds",
                "From an event's publication on one node to its arrival on another",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("a valid metric");
        let limited = IntCounterVec::new(
            Opts::new("escalera_limited_total", "Refusals by a limit"),
            &["limit"],
        )
        .expect("a valid metric");
        for m in [
            Box::new(sockets.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(calls_active.clone()),
            Box::new(messages.clone()),
            Box::new(store_seconds.clone()),
            Box::new(bus_seconds.clone()),
            Box::new(limited.clone()),
        ] {
            registry.register(m).expect("each metric once");
        }
        // Shown at 0 before the first of each.
        for kind in ["visitor", "agent"] {
            sockets.with_label_values(&[kind]);
        }
        for op in ["append", "history"] {
            store_seconds.with_label_values(&[op]);
        }
        Self {
            registry,
            sockets,
            calls_active,
            messages,
            store_seconds,
            bus_seconds,
            limited,
        }
    }

    /// The text Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("metrics encode");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}

/// This process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts a refusal by `limit` (e.g. `frame_rate`, `connections_per_address`).
pub fn limited(limit: &str) {
    get().limited.with_label_values(&[limit]).inc();
}

/// The metrics server's routes: `GET /metrics`, with the counts that are read off the hub
/// (sockets, calls) taken at each scrape.
pub fn routes(hub: Arc<crate::hub::Hub>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let hub = hub.clone();
            async move {
                let m = get();
                let census = hub.census();
                m.sockets
                    .with_label_values(&["visitor"])
                    .set(census.visitors as i64);
                m.sockets
                    .with_label_values(&["agent"])
                    .set(census.agents as i64);
                m.calls_active.set(census.calls_active as i64);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    )
}
