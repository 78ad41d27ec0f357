//! The Escalera relay: serves the client, passes chat and signaling between browsers over
//! WebSocket, and keeps the record. `main` parses the command line; tests call [`app`] and
//! [`run`] directly on port 0.
#![forbid(unsafe_code)]

pub mod assets;
pub mod bus;
pub mod core;
pub mod desk_api;
pub mod error;
pub mod files;
pub mod guard;
pub mod headers;
pub mod http;
pub mod hub;
pub mod ice;
pub mod mail;
pub mod metrics;
pub mod migrate;
pub mod nats;
pub mod postgres;
pub mod presence;
pub mod routing;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod slim;
pub mod sqlite;
pub mod store;

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;

use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bus::{Bus, LocalBus};
use crate::core::BusEvent;
use crate::hub::Hub;
use crate::sqlite::SqliteStore;
use crate::store::{Directory, Log};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the relay needs to know to serve.
#[derive(Clone, Debug)]
pub struct Config {
    /// Serve the client from this folder instead of the copy built into the binary.
    pub assets_dir: Option<PathBuf>,
    /// How long an agent's login lasts, in seconds.
    pub session_ttl_secs: i64,
    /// Add `Secure` to the session cookie (set when the relay is reached over https).
    pub secure_cookies: bool,
    /// The relay's public URL (`--public-url`): its origin is the one origin its own pages
    /// have, checked on every state-changing request. Unset, `http://` + the listen address.
    pub public_url: Option<String>,
    /// STUN/TURN servers for the browsers.
    pub ice: ice::IceConfig,
    /// The largest upload accepted, in bytes.
    pub max_upload: u64,
    /// How long a call rings before it is a missed call, in ms.
    pub ring_timeout_ms: i64,
    /// How long an active call waits for a party whose connection dropped, in ms.
    pub call_grace_ms: i64,
    /// Frames a connection may send per second, sustained...
    pub frame_rate: u32,
    /// ...and at once (a renegotiation with its ICE candidates can send a few dozen).
    pub frame_burst: u32,
    /// What logins may cost.
    pub login: guard::LoginLimits,
    /// A socket that sends nothing (not even a pong to the relay's pings) for this long is
    /// closed, in seconds.
    pub idle_timeout_secs: u64,
    /// How long a new socket has to say hello, in seconds.
    pub hello_deadline_secs: u64,
    /// Open connections per client address (IPv6: per /64).
    pub per_address_connections: usize,
    /// Open connections in all; 0: what the file-descriptor limit allows (raised to its hard
    /// limit at start), less room for the rest.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, in seconds.
    pub header_timeout_secs: u64,
    /// Sockets open at once for one visitor (their tabs and devices).
    pub sockets_per_visitor: usize,
    /// New conversations per address per hour (IPv6: per /64).
    pub conversations_per_address: u32,
    /// Waiting conversations of one address shown in the agents' list (the oldest).
    pub listed_per_address: u32,
    /// Chat messages per second from one visitor over all their sockets (a burst of 15 times
    /// this first).
    pub visitor_chat_rate: u32,
    /// Chat messages per second from all visitors of one address (a burst of 10 times this).
    pub address_chat_rate: u32,
    /// Call starts and device toggles per conversation per minute.
    pub call_actions_per_minute: u32,
    /// History messages per second one visitor may read over all their sockets (burst 5x).
    pub visitor_history_rate: u32,
    /// Seconds an agent's last console may be gone before they are shown offline.
    pub presence_grace_secs: u64,
    /// Seconds of no input with the tab hidden before a console says `away` by itself (0:
    /// never).
    pub away_after_secs: u64,
    /// Bytes of files a conversation may hold, both sides together.
    pub conversation_quota: u64,
    /// Bytes of files a visitor may upload before an agent has joined.
    pub upload_allowance: u64,
    /// An upload slower than this, in bytes per second over any 10 s, is cut.
    pub upload_min_rate: u64,
    /// Share of `max_connections` kept for agents and the health check: visitors' sockets
    /// stop at `max_connections` less this many percent.
    pub agent_reserve_percent: u8,
    /// Email through an SMTP server (none: no email).
    pub mail: Option<mail::MailConfig>,
    /// With email: a conversation waiting this long with no agent available is mailed to the
    /// site's agents, in seconds.
    pub alert_after_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            assets_dir: None,
            session_ttl_secs: 7 * 24 * 3600,
            secure_cookies: false,
            public_url: None,
            ice: ice::IceConfig {
                turn_ttl_secs: 3600,
                ..Default::default()
            },
            max_upload: 25 << 20,
            ring_timeout_ms: core::RING_TIMEOUT_MS,
            call_grace_ms: core::CALL_GRACE_MS,
            frame_rate: 20,
            frame_burst: 100,
            login: guard::LoginLimits::default(),
            idle_timeout_secs: 60,
            hello_deadline_secs: 10,
            per_address_connections: 256,
            max_connections: 0,
            header_timeout_secs: 10,
            sockets_per_visitor: 16,
            conversations_per_address: 60,
            listed_per_address: store::LISTED_PER_ADDRESS,
            visitor_chat_rate: 2,
            address_chat_rate: 30,
            call_actions_per_minute: 20,
            visitor_history_rate: 1_000,
            presence_grace_secs: 30,
            away_after_secs: 300,
            conversation_quota: 200 << 20,
            upload_allowance: 10 << 20,
            upload_min_rate: 16 << 10,
            agent_reserve_percent: 10,
            mail: None,
            alert_after_secs: 300,
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The hub (and through it the store).
    pub hub: Arc<Hub>,
    /// The configuration.
    pub config: Arc<Config>,
    /// Where uploaded files live (inside the data dir, never served as a folder).
    pub files_dir: PathBuf,
    /// Login throttling and hashing slots.
    pub logins: Arc<guard::LoginGuard>,
    /// The relay's own origin (`http://host:port`), known once it listens.
    origin: Arc<std::sync::OnceLock<String>>,
}

impl AppState {
    /// The relay's own origin, from `--public-url` (never from a request's `Host`).
    pub fn origin(&self) -> &str {
        self.origin.get().map_or("", String::as_str)
    }
}

/// The origin of a URL: `https://chat.example.com/x/` → `https://chat.example.com`.
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

/// Everything the relay runs on: the store, the hub and the shutdown switch.
pub struct Relay {
    /// Handlers' shared state.
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    bus_events: tokio::sync::mpsc::UnboundedReceiver<BusEvent>,
    /// The embedded store, when it is one: its figures are logged on the way out.
    sqlite: Option<SqliteStore>,
}

impl Relay {
    /// Opens the SQLite store in `data_dir` and builds the hub.
    pub fn open(data_dir: &std::path::Path, config: Config) -> anyhow::Result<Self> {
        let store = SqliteStore::open(data_dir)?;
        store.set_listed_per_address(config.listed_per_address);
        let relay = Self::with_store(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            config,
            data_dir.join("files"),
        );
        Ok(Self {
            sqlite: Some(store),
            ..relay
        })
    }

    /// Opens the PostgreSQL database at `url` (bringing its schema up to date) and builds the
    /// hub, on the NATS bus at `bus` (several nodes) or the in-process one (this node alone);
    /// uploads stay in `data_dir/files`, which every node on the database must share.
    pub async fn open_postgres(
        url: &str,
        bus: Option<&str>,
        data_dir: &std::path::Path,
        config: Config,
    ) -> anyhow::Result<Self> {
        let store = postgres::PgStore::connect(url).await?;
        store.set_listed_per_address(config.listed_per_address);
        // Uploads are for this user only, as with SQLite.
        std::fs::create_dir_all(data_dir)?;
        store::private(data_dir, 0o700)?;
        let files = data_dir.join("files");
        let (bus, events): (Arc<dyn Bus>, _) = match bus {
            Some(bus) => {
                let (bus, events) = nats::NatsBus::connect(bus)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot reach the bus at {bus}: {e}"))?;
                (Arc::new(bus), events)
            }
            None => {
                let (bus, events) = LocalBus::new();
                (Arc::new(bus), events)
            }
        };
        let store = Arc::new(store);
        Ok(Self::with_parts(
            store.clone(),
            store,
            (bus, events),
            config,
            files,
        ))
    }

    /// Builds the hub over any store (with the in-process bus), keeping uploads in
    /// `files_dir`.
    pub fn with_store(
        directory: Arc<dyn Directory>,
        log: Arc<dyn Log>,
        config: Config,
        files_dir: PathBuf,
    ) -> Self {
        let (bus, events) = LocalBus::new();
        Self::with_parts(directory, log, (Arc::new(bus), events), config, files_dir)
    }

    /// Builds the hub over any store and bus (with the receiving end of the bus this node
    /// reads), keeping uploads in `files_dir`.
    pub fn with_parts(
        directory: Arc<dyn Directory>,
        log: Arc<dyn Log>,
        (bus, bus_events): (Arc<dyn Bus>, tokio::sync::mpsc::UnboundedReceiver<BusEvent>),
        config: Config,
        files_dir: PathBuf,
    ) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let config = Arc::new(config);
        Self {
            state: AppState {
                hub: Arc::new(Hub::new(directory, log, bus, config.clone(), rx)),
                logins: Arc::new(guard::LoginGuard::new(&config.login)),
                origin: Arc::new(std::sync::OnceLock::new()),
                config,
                files_dir,
            },
            shutdown,
            bus_events,
            sqlite: None,
        }
    }

    /// The main router: client pages, `widget.js`, the API and the WebSockets.
    pub fn app(&self) -> Router {
        http::app(self.state.clone())
    }

    /// Serves `listener` (and the demo host page on `demo`, if given) until `signal` resolves,
    /// then closes every WebSocket and waits for requests in flight.
    pub async fn run(
        self,
        listener: TcpListener,
        demo: Option<(TcpListener, http::DemoPage)>,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Relay {
            state,
            shutdown,
            bus_events,
            sqlite,
        } = self;
        let own = match &state.config.public_url {
            Some(url) => origin_of(url),
            None => format!("http://{}", listener.local_addr()?),
        };
        let _ = state.origin.set(own);
        let down = shutdown.subscribe();
        tokio::spawn(async move {
            signal.await;
            let _ = shutdown.send(true);
        });
        match state.hub.restore_calls().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "{n} call(s) under way when the relay stopped: waiting for their parties"
            ),
            Err(e) => tracing::error!("cannot read the calls under way: {e}"),
        }
        tokio::spawn(state.hub.clone().run_clock(down.clone()));
        tokio::spawn(state.hub.clone().run_bus(bus_events));
        // Once a minute: forget login counters that refilled, and purge expired sessions;
        // every ten, remove orphaned files.
        let (logins, directory) = (state.logins.clone(), state.hub.directory().clone());
        let (log, files_dir) = (state.hub.log().clone(), state.files_dir.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            for minute in 0u64.. {
                every.tick().await;
                logins.tidy();
                match directory.purge_sessions(now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("purged {n} expired session(s)"),
                    Err(e) => tracing::warn!("cannot purge expired sessions: {e}"),
                }
                if minute % 10 == 0 {
                    match files::sweep(&*log, &files_dir).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!("removed {n} orphaned file(s)"),
                        Err(e) => tracing::warn!("cannot sweep the files folder: {e}"),
                    }
                }
            }
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|down| *down).await;
        };
        let demo_task = demo.map(|(l, page)| {
            let serve = axum::serve(l.tap_io(no_delay), http::demo_app(page))
                .with_graceful_shutdown(stopped(down.clone()));
            tokio::spawn(serve.into_future())
        });
        let limits = serve::ConnLimits {
            per_address: state.config.per_address_connections.max(1),
            total: match state.config.max_connections {
                0 => serve::connection_budget(),
                n => n,
            },
            header_timeout: std::time::Duration::from_secs(state.config.header_timeout_secs.max(1)),
        };
        tracing::info!(
            "accepting up to {} connections, {} per address",
            limits.total,
            limits.per_address
        );
        serve::serve(listener, http::app(state), limits, down).await?;
        if let Some(task) = demo_task {
            task.await.map_err(std::io::Error::other)??;
        }
        if let Some(store) = sqlite {
            // `make load` reads this line: fsyncs per message.
            let commits = store.commits();
            tracing::info!("stopped; SQLite group commits: {commits} since start (one fsync each)");
        }
        Ok(())
    }
}

/// Chat and signaling are small frames that must leave at once: without this, a frame written
/// while the previous one is unacknowledged waits for the peer's delayed ACK (40 ms on Linux).
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
}
