//! `make load`: one node at its limit, beside PeerJS's PeerServer (npm `peer@1.0.2`), the
//! signalling server a site would otherwise pick. Both run on this machine, one after the
//! other, under the same load from this same process; every socket is on loopback.
//!
//! - `idle`: N sockets opened (hello and welcome, or PeerServer's OPEN), from 127.0.0.2 and
//!   up (5,000 per address, past the ephemeral-port range of one): the server's resident
//!   memory per socket, and sockets opened per second.
//! - `signal`: M pairs in active calls exchange signalling frames at an aggregate rate,
//!   taking turns in direction: latency p50/p99/max, the rate delivered, and the server's CPU
//!   seconds per 100,000 frames.
//! - `logins` (Escalera only): resident memory before the first agent login, after it, and
//!   after 200 (argon2 needs 19 MiB per check; the relay keeps one buffer per hashing slot).
//! - `chat` (Escalera only): visitors send chat messages at a set rate to conversations the
//!   agent's consoles have joined (100 each): send to ack and send to the agent's copy,
//!   p50/p99, the rate acknowledged, and SQLite group commits (one fsync each) per message.
//! - `cluster` (Escalera only): `signal` and `chat` again on two nodes sharing one PostgreSQL
//!   database and one NATS server (started here, as the tests start them), each pair's
//!   visitor on one node and its agent on the other, so every frame and copy crosses NATS.
//!
//! It prints figures and asserts nothing; the goals are in README.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use escalera_protocol::{CallAction, CallKind, ClientMsg, ClientMsgId, ConversationId, ServerMsg};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::abuse::{connect_from, login};
use crate::{Latencies, ORIGIN};

const EMAIL: &str = "ana@load.test";
const PASSWORD: &str = "a long load-test password";
/// Sockets per source address.
const PER_ADDRESS: usize = 5_000;
/// Handshakes in flight at once.
const OPENING: usize = 256;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What `make load` runs, from the command line.
pub struct Plan {
    /// Idle sockets.
    pub idle: usize,
    /// Pairs in calls.
    pub pairs: usize,
    /// Signalling frames per second, all pairs together.
    pub signal_rate: u64,
    /// Visitors chatting.
    pub chatters: usize,
    /// Chat messages per second, all visitors together.
    pub chat_rate: u64,
    /// Seconds each measured run lasts.
    pub seconds: u64,
    /// The parts to run: `idle`, `signal`, `logins`, `chat` (all when empty).
    pub parts: Vec<String>,
}

impl Plan {
    fn runs(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.iter().any(|p| p == part)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Escalera,
    PeerServer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Escalera => "Escalera",
            Kind::PeerServer => "PeerServer",
        }
    }
}

/// A server under test, on a free loopback port; killed when dropped.
struct Server {
    kind: Kind,
    child: Child,
    addr: SocketAddr,
    site: String,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(kind: Kind) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let (child, site) = match kind {
            Kind::Escalera => escalera(&dir, addr).await?,
            Kind::PeerServer => (peerserver(addr)?, String::new()),
        };
        crate::listening(addr).await?;
        Ok(Self {
            kind,
            child,
            addr,
            site,
            dir,
        })
    }

    /// Escalera as one of two nodes on the PostgreSQL database `database` and the NATS
    /// server `bus`, files in `data`; the first (no `site` yet) adds the site and Ana.
    async fn start_node(
        data: &Path,
        database: &str,
        bus: &str,
        site: Option<&str>,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let shared = Shared {
            data,
            database,
            bus,
        };
        let (child, site) = escalera_on(&dir, addr, Some(shared), site).await?;
        crate::listening(addr).await?;
        Ok(Self {
            kind: Kind::Escalera,
            child,
            addr,
            site,
            dir,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Resident memory, KiB.
    fn rss_kib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// CPU time used so far (user and system), seconds.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
        ticks / 100.0
    }

    /// Opens socket `i` from its source address: a visitor welcomed by Escalera (with their
    /// conversation), or peer `id` told OPEN by PeerServer.
    async fn open(&self, i: usize, id: &str) -> Result<(Socket, Option<ConversationId>)> {
        let n = u8::try_from(2 + i / PER_ADDRESS).context("too many sockets")?;
        let url = match self.kind {
            Kind::Escalera => format!("ws://{}/ws/visitor?site={}", self.addr, self.site),
            Kind::PeerServer => format!("ws://{}/peerjs?key=peerjs&id={id}&token=t", self.addr),
        };
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("Origin", HeaderValue::from_static(ORIGIN));
        let tcp = connect_from(n, self.addr).await?;
        let (mut ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await?;
        match self.kind {
            Kind::Escalera => {
                send(&mut ws, &crate::hello(None)).await?;
                match recv(&mut ws).await? {
                    ServerMsg::WelcomeVisitor { conversation, .. } => Ok((ws, Some(conversation))),
                    other => bail!("expected a welcome, got {other:?}"),
                }
            }
            Kind::PeerServer => {
                let open = recv_text(&mut ws).await?;
                if !open.contains("\"OPEN\"") {
                    bail!("expected OPEN, got {open}");
                }
                Ok((ws, None))
            }
        }
    }

    /// Escalera: a console socket of Ana's session `cookie`, welcomed.
    async fn agent(&self, cookie: &str) -> Result<Socket> {
        let mut req = format!("ws://{}/ws/agent", self.addr).into_client_request()?;
        let own = format!("http://{}", self.addr);
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(&own)?);
        req.headers_mut()
            .insert("Cookie", HeaderValue::from_str(cookie)?);
        let tcp = connect_from(1, self.addr).await?;
        let (mut ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await?;
        send(&mut ws, &crate::hello(None)).await?;
        match recv(&mut ws).await? {
            ServerMsg::WelcomeAgent { .. } => Ok(ws),
            other => bail!("expected the agent's welcome, got {other:?}"),
        }
    }

    /// Escalera: stops the relay (SIGTERM) and returns its group commits since start, from
    /// the line it logs on the way out.
    async fn stop(mut self) -> Result<u64> {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().await?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        let log = std::fs::read_to_string(self.dir.path().join("relay.log"))?;
        log.lines()
            .find_map(|l| {
                let (_, rest) = l.split_once("group commits: ")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .with_context(|| format!("no group-commit count in the relay's log:\n{log}"))
    }
}

/// Starts the release relay with the limits that protect it from one client lifted (here
/// one client is the load), an agent and a site; its log goes to `relay.log`.
async fn escalera(dir: &tempfile::TempDir, addr: SocketAddr) -> Result<(Child, String)> {
    escalera_on(dir, addr, None, None).await
}

/// What the nodes of several share.
#[derive(Clone, Copy)]
struct Shared<'a> {
    data: &'a Path,
    database: &'a str,
    bus: &'a str,
}

/// [`escalera`], alone on SQLite in `dir` or one of several nodes (`shared`); the site and
/// the agent are added unless `site` names the one another node added.
async fn escalera_on(
    dir: &tempfile::TempDir,
    addr: SocketAddr,
    shared: Option<Shared<'_>>,
    site: Option<&str>,
) -> Result<(Child, String)> {
    let bin = crate::relay_binary();
    let cli = |args: &[&str]| {
        let mut c = Command::new(&bin);
        match shared {
            None => c.arg("--data-dir").arg(dir.path()),
            Some(s) => {
                c.arg("--data-dir")
                    .arg(s.data)
                    .args(["--database-url", s.database, "--bus", s.bus])
            }
        };
        c.args(args);
        c.env("ESCALERA_AGENT_PASSWORD", PASSWORD);
        c
    };
    let site = match site {
        Some(site) => site.to_owned(),
        None => {
            let site = crate::add_site(&mut cli(&[]), "Load").await?;
            let added = cli(&["agent", "add", "--email", EMAIL, "--name", "Ana"])
                .output()
                .await?;
            if !added.status.success() {
                bail!("agent add: {}", String::from_utf8_lossy(&added.stderr));
            }
            site
        }
    };
    let log = std::fs::File::create(dir.path().join("relay.log"))?;
    let listen = addr.to_string();
    let child = cli(&["serve", "--demo-listen", "off", "--listen", &listen])
        .args(crate::LIFTED)
        .args(["--agent-reserve", "0", "--idle-timeout", "3600"])
        .args(["--call-actions-per-minute", "1000000"])
        .args([
            "--login-per-address",
            "1000000",
            "--login-per-account",
            "1000000",
        ])
        .env("ESCALERA_LOG", "warn,escalera_relay=info")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    Ok((child, site))
}

/// The folder `scripts/tools.sh --load` installed `peer@1.0.2` in.
fn peerserver_dir() -> PathBuf {
    std::env::var_os("ESCALERA_PEERSERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/peerserver"))
}

/// Starts PeerServer with its concurrent-user limit and liveness timeout raised.
fn peerserver(addr: SocketAddr) -> Result<Child> {
    let bin = peerserver_dir().join("node_modules/peer/dist/bin/peerjs.js");
    if !bin.exists() {
        bail!(
            "no PeerServer at {}: run `scripts/tools.sh --load` (make load does)",
            bin.display()
        );
    }
    let port = addr.port().to_string();
    Ok(Command::new("node")
        .arg(bin)
        .args(["--host", "127.0.0.1", "--port", &port])
        .args([
            "--concurrent_limit",
            "1000000",
            "--alive_timeout",
            "3600000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

async fn send(ws: &mut Socket, msg: &ClientMsg) -> Result<()> {
    ws.send(WsMessage::Text(serde_json::to_string(msg)?.into()))
        .await?;
    Ok(())
}

async fn recv_text(ws: &mut Socket) -> Result<String> {
    loop {
        match ws.next().await.context("socket closed")?? {
            WsMessage::Text(t) => return Ok(t.as_str().to_owned()),
            WsMessage::Close(c) => bail!("closed by the server: {c:?}"),
            _ => {}
        }
    }
}

async fn recv(ws: &mut Socket) -> Result<ServerMsg> {
    Ok(serde_json::from_str(&recv_text(ws).await?)?)
}

/// Reads until `pick` returns something.
async fn recv_until<T>(ws: &mut Socket, mut pick: impl FnMut(ServerMsg) -> Option<T>) -> Result<T> {
    loop {
        match recv(ws).await? {
            ServerMsg::Error { code, message, .. } => bail!("{code:?}: {message}"),
            m => {
                if std::env::var_os("LOAD_DEBUG").is_some() {
                    eprintln!("{m:?}");
                }
                if let Some(t) = pick(m) {
                    return Ok(t);
                }
            }
        }
    }
}

/// Microseconds since `base`: the clock every frame carries.
fn micros(base: Instant) -> u64 {
    base.elapsed().as_micros() as u64
}

/// One row of the table: a figure for each server (NaN where one cannot do it).
struct Row {
    figure: String,
    escalera: f64,
    peerserver: f64,
    unit: &'static str,
    goal: &'static str,
}

fn print(rows: &[Row]) {
    println!(
        "  {:<46} {:>12} {:>12} {:>8}   goal",
        "figure", "Escalera", "PeerServer", "ratio"
    );
    for r in rows {
        let num = |v: f64| match v {
            v if v.is_nan() => "n/a".to_owned(),
            v if v >= 100.0 => format!("{v:.0}"),
            v => format!("{v:.2}"),
        };
        let ratio = match r.escalera / r.peerserver {
            x if x.is_finite() => format!("{x:.2}"),
            _ => "".to_owned(),
        };
        println!(
            "  {:<46} {:>12} {:>12} {:>8}   {}",
            format!("{} ({})", r.figure, r.unit),
            num(r.escalera),
            num(r.peerserver),
            ratio,
            r.goal
        );
    }
}

/// Runs every part for both servers and prints the table.
pub async fn run(plan: Plan) -> Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    println!(
        "One node at its limit beside PeerServer 1.0.2: {} idle sockets; {} pairs signalling at {}/s; \
         {} visitors chatting at {}/s; {} s per run. This process may hold {limit} files.",
        plan.idle, plan.pairs, plan.signal_rate, plan.chatters, plan.chat_rate, plan.seconds
    );
    let mut rows = Vec::new();
    let mut idle = HashMap::new();
    let mut signal = HashMap::new();
    for kind in [Kind::Escalera, Kind::PeerServer] {
        if plan.runs("idle") {
            idle.insert(kind, idle_run(kind, plan.idle).await?);
        }
        if plan.runs("signal") {
            signal.insert(kind, signal_run(kind, &plan).await?);
        }
    }
    let both = |f: &dyn Fn(Kind) -> f64| (f(Kind::Escalera), f(Kind::PeerServer));
    let mut row = |figure: String, (e, p): (f64, f64), unit, goal| {
        rows.push(Row {
            figure,
            escalera: e,
            peerserver: p,
            unit,
            goal,
        })
    };
    if plan.runs("idle") {
        row(
            format!("memory per idle socket, {} open", plan.idle),
            both(&|k| idle[&k].kib_per_socket),
            "KiB",
            "<= 8, and <= PeerServer's",
        );
        row(
            "sockets opened per second".into(),
            both(&|k| idle[&k].open_rate),
            "/s",
            ">= 5,000",
        );
    }
    if plan.runs("signal") {
        let s = |k: Kind| &signal[&k];
        row(
            format!("signal p50, {} pairs at {}/s", plan.pairs, plan.signal_rate),
            both(&|k| s(k).latency.pct(0.5) * 1e3),
            "ms",
            "",
        );
        row(
            "signal p99".into(),
            both(&|k| s(k).latency.pct(0.99) * 1e3),
            "ms",
            "< 2",
        );
        row(
            "signal max".into(),
            both(&|k| s(k).latency.pct(1.0) * 1e3),
            "ms",
            "",
        );
        row(
            "signal frames delivered per second".into(),
            both(&|k| s(k).delivered_rate),
            "/s",
            "",
        );
        row(
            "server CPU per 100k signal frames".into(),
            both(&|k| s(k).cpu_per_100k),
            "s",
            "",
        );
    }
    let nan = f64::NAN;
    if plan.runs("logins") {
        let logins = logins_run().await?;
        row("RSS before any login".into(), (logins[0], nan), "MiB", "");
        row("RSS after 1 login".into(), (logins[1], nan), "MiB", "");
        row(
            "RSS after 200 more logins".into(),
            (logins[2], nan),
            "MiB",
            "as after 1",
        );
    }
    if plan.runs("chat") {
        let chat = chat_run(&plan).await?;
        row(
            format!("chat acks per second, offered {}/s", plan.chat_rate),
            (chat.acked_rate, nan),
            "/s",
            ">= 10,000",
        );
        row(
            "chat send to ack p50".into(),
            (chat.ack.pct(0.5) * 1e3, nan),
            "ms",
            "",
        );
        row(
            "chat send to ack p99".into(),
            (chat.ack.pct(0.99) * 1e3, nan),
            "ms",
            "< 10",
        );
        row(
            "chat send to the agent's copy p50".into(),
            (chat.delivered.pct(0.5) * 1e3, nan),
            "ms",
            "",
        );
        row(
            "chat send to the agent's copy p99".into(),
            (chat.delivered.pct(0.99) * 1e3, nan),
            "ms",
            "",
        );
        row(
            "fsyncs (group commits) per chat message".into(),
            (chat.commits_per_message, nan),
            "",
            "",
        );
    }
    if plan.runs("cluster") {
        let signal = cluster_signal_run(&plan).await?;
        let chat = cluster_chat_run(&plan).await?;
        let two = |figure: &str, v: f64, unit| Row {
            figure: format!("2 nodes: {figure}"),
            escalera: v,
            peerserver: nan,
            unit,
            goal: "",
        };
        rows.extend([
            two("signal p50", signal.latency.pct(0.5) * 1e3, "ms"),
            two("signal p99", signal.latency.pct(0.99) * 1e3, "ms"),
            two("signal frames delivered/s", signal.delivered_rate, "/s"),
            two("chat acks per second", chat.acked_rate, "/s"),
            two("chat send to ack p50", chat.ack.pct(0.5) * 1e3, "ms"),
            two("chat send to ack p99", chat.ack.pct(0.99) * 1e3, "ms"),
            two(
                "chat send to the agent's copy p50",
                chat.delivered.pct(0.5) * 1e3,
                "ms",
            ),
            two(
                "chat send to the agent's copy p99",
                chat.delivered.pct(0.99) * 1e3,
                "ms",
            ),
        ]);
    }
    println!();
    print(&rows);
    Ok(())
}

struct Idle {
    kib_per_socket: f64,
    open_rate: f64,
}

/// Opens `n` sockets, `OPENING` handshakes at a time; memory and rate.
async fn idle_run(kind: Kind, n: usize) -> Result<Idle> {
    let server = Arc::new(Server::start(kind).await?);
    // A first socket warms the server up (its runtime, the site's page): not counted.
    let warm = server.open(0, "warm").await?.0;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = server.rss_kib();
    let started = Instant::now();
    let sockets = open_many(&server, n, "idle").await?;
    let open_rate = n as f64 / started.elapsed().as_secs_f64();
    // Settled: what the server holds for sockets that do nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    let kib_per_socket = (after - before) / n as f64;
    println!(
        "  {:<10} idle: {n} sockets in {:.1} s ({open_rate:.0}/s); RSS {:.1} -> {:.1} MiB: {kib_per_socket:.2} KiB per socket",
        kind.name(),
        started.elapsed().as_secs_f64(),
        before / 1024.0,
        after / 1024.0
    );
    drop((sockets, warm));
    // Stopped cleanly, so that a profiler wrapped around it (ESCALERA_BIN) can write out.
    if kind == Kind::Escalera {
        let server = Arc::into_inner(server).context("the server is still shared")?;
        server.stop().await?;
    }
    Ok(Idle {
        kib_per_socket,
        open_rate,
    })
}

async fn open_many(server: &Arc<Server>, n: usize, tag: &str) -> Result<Vec<Socket>> {
    let gate = Arc::new(Semaphore::new(OPENING));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (server, gate) = (server.clone(), gate.clone());
            let id = format!("{tag}{i}");
            tokio::spawn(async move {
                let _turn = gate.acquire().await?;
                anyhow::Ok(server.open(i, &id).await?.0)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

struct Signal {
    latency: Latencies,
    delivered_rate: f64,
    cpu_per_100k: f64,
}

/// Both ends of a pair in a call, and what each sends to reach the other.
struct Pair {
    a: Socket,
    b: Socket,
    /// The frame `a` sends (with `{T}` where the clock goes), then `b`'s.
    a_frame: String,
    b_frame: String,
}

async fn signal_run(kind: Kind, plan: &Plan) -> Result<Signal> {
    let server = Arc::new(Server::start(kind).await?);
    let pairs = match kind {
        Kind::Escalera => escalera_calls(&server, &server, plan.pairs).await?,
        Kind::PeerServer => {
            let sockets = open_many(&server, plan.pairs * 2, "p").await?;
            let mut it = sockets.into_iter();
            (0..plan.pairs)
                .map(|i| {
                    let frame = |to: String| {
                        format!(r#"{{"type":"CANDIDATE","dst":"{to}","payload":{{"t":"#) + "{T}}}"
                    };
                    Pair {
                        a: it.next().expect("a"),
                        b: it.next().expect("b"),
                        a_frame: frame(format!("p{}", 2 * i + 1)),
                        b_frame: frame(format!("p{}", 2 * i)),
                    }
                })
                .collect()
        }
    };
    signal_measure(pairs, plan, &[&server], kind.name()).await
}

/// Two Escalera nodes on one PostgreSQL database and one NATS server (started here, as the
/// tests start them): the visitors' node and the agent's.
async fn two_nodes(data: &Path) -> Result<(Arc<Server>, Arc<Server>)> {
    let database = escalera_testkit::postgres::database().await;
    let bus = escalera_testkit::nats::server().url.clone();
    let visitors = Server::start_node(data, &database, &bus, None).await?;
    let site = visitors.site.clone();
    let agents = Server::start_node(data, &database, &bus, Some(&site)).await?;
    Ok((Arc::new(visitors), Arc::new(agents)))
}

/// [`signal_run`] on two nodes: each pair's visitor on one node, its agent on the other, so
/// every frame crosses NATS.
async fn cluster_signal_run(plan: &Plan) -> Result<Signal> {
    let data = tempfile::tempdir()?;
    let (visitors, agents) = two_nodes(data.path()).await?;
    let pairs = escalera_calls(&visitors, &agents, plan.pairs).await?;
    signal_measure(pairs, plan, &[&visitors, &agents], "2 nodes").await
}

/// Lets `pairs` signal at the plan's rate for its seconds: the latencies, the rate
/// delivered, and the CPU of `servers` per 100,000 frames.
async fn signal_measure(
    pairs: Vec<Pair>,
    plan: &Plan,
    servers: &[&Arc<Server>],
    name: &str,
) -> Result<Signal> {
    let cpu = || servers.iter().map(|s| s.cpu_secs()).sum::<f64>();
    let frames: Vec<_> = pairs
        .iter()
        .map(|p| (p.a_frame.clone(), p.b_frame.clone()))
        .collect();
    let sockets = pairs.into_iter().flat_map(|p| [p.a, p.b]).collect();
    let mut settled = settle(sockets).await?.into_iter();
    let pairs: Vec<Pair> = frames
        .into_iter()
        .map(|(a_frame, b_frame)| Pair {
            a: settled.next().expect("a"),
            b: settled.next().expect("b"),
            a_frame,
            b_frame,
        })
        .collect();
    let base = Instant::now();
    let secs = Duration::from_secs(plan.seconds);
    // Each pair sends every `period`, in turn from each end; pairs are spread over a period.
    let period = Duration::from_secs_f64(plan.pairs as f64 / plan.signal_rate as f64);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let cpu_before = cpu();
    let started = Instant::now();
    let until = started + secs;
    let mut tasks = Vec::new();
    for (i, pair) in pairs.into_iter().enumerate() {
        let offset = period.mul_f64(i as f64 / plan.pairs as f64);
        let (a_tx, a_rx) = pair.a.split();
        let (b_tx, b_rx) = pair.b.split();
        let senders = vec![(a_tx, pair.a_frame), (b_tx, pair.b_frame)];
        tasks.push(tokio::spawn(send_turns(
            senders,
            base,
            started + offset,
            period,
            until,
        )));
        for rx in [a_rx, b_rx] {
            let out = latencies.clone();
            tasks.push(tokio::spawn(collect(rx, base, until, out, signal_clock)));
        }
    }
    for t in tasks {
        t.await??;
    }
    // Frames sent in the window, delivered by its end or in the grace after it.
    let elapsed = secs.as_secs_f64();
    let cpu = cpu() - cpu_before;
    let latency = Latencies::new(std::mem::take(&mut *latencies.lock().expect("latencies")));
    let got = latency.0.len() as f64;
    println!(
        "  {name:<10} signal: {got:.0} frames delivered in {elapsed:.1} s; server CPU {cpu:.1} s"
    );
    Ok(Signal {
        delivered_rate: got / elapsed,
        cpu_per_100k: cpu / got * 100_000.0,
        latency,
    })
}

/// Reads every socket until none has had a frame for a moment (at most 60 s): what setting
/// up left in flight (welcomes, every console's presence to every other) is not measured.
async fn settle(sockets: Vec<Socket>) -> Result<Vec<Socket>> {
    let quiet = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(60);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match tokio::time::timeout(quiet, ws.next()).await {
                        Ok(Some(frame)) => drop(frame?),
                        Ok(None) => bail!("a socket closed while settling"),
                        Err(_) => break,
                    }
                }
                anyhow::Ok(ws)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Sends a frame every `period` from `first`, taking turns among `senders`, until `until`.
async fn send_turns(
    mut senders: Vec<(SplitSink<Socket, WsMessage>, String)>,
    base: Instant,
    first: Instant,
    period: Duration,
    until: Instant,
) -> Result<()> {
    let mut tick = tokio::time::interval_at(first.into(), period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut turn = 0;
    loop {
        tick.tick().await;
        if Instant::now() >= until {
            break;
        }
        let n = senders.len();
        let (tx, frame) = &mut senders[turn % n];
        let text = frame.replace("{T}", &micros(base).to_string());
        tx.send(WsMessage::Text(text.into())).await?;
        turn += 1;
    }
    Ok(())
}

/// Reads frames until a moment after `until`, recording the latency of every one that
/// `sent_at` finds a send time (micros since `base`) in; an error from it ends the reading.
async fn collect(
    mut rx: SplitStream<Socket>,
    base: Instant,
    until: Instant,
    out: Arc<Mutex<Vec<f64>>>,
    sent_at: impl Fn(&str) -> Result<Option<u64>>,
) -> Result<()> {
    let grace = until + Duration::from_secs(2);
    let mut mine = Vec::new();
    loop {
        let frame = tokio::select! {
            f = rx.next() => f,
            () = tokio::time::sleep_until(grace.into()) => break,
        };
        let Some(frame) = frame else { break };
        let WsMessage::Text(text) = frame? else {
            continue;
        };
        if let Some(sent) = sent_at(text.as_str())? {
            mine.push((micros(base).saturating_sub(sent)) as f64 / 1e6);
        }
    }
    out.lock().expect("latencies").extend(mine);
    Ok(())
}

/// The clock a signalling frame carries: `\"t\":N` inside Escalera's opaque payload
/// string, or `"t":N` in a PeerServer payload.
fn signal_clock(text: &str) -> Result<Option<u64>> {
    let escaped = r#"\"t\":"#;
    let plain = r#""t":"#;
    let at = match (text.find(escaped), text.find(plain)) {
        (Some(i), _) => i + escaped.len(),
        (None, Some(i)) => i + plain.len(),
        (None, None) => return Ok(None),
    };
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(digits.parse().ok())
}

/// Escalera: `n` visitors (on `visitors`), each in a conversation whose voice call Ana's
/// console (on `agents`, one socket per call) started and the visitor accepted.
async fn escalera_calls(
    visitors: &Arc<Server>,
    agents: &Arc<Server>,
    n: usize,
) -> Result<Vec<Pair>> {
    let (_, cookie) = login(agents.addr, 1, EMAIL, PASSWORD).await?;
    let cookie = cookie.context("no session cookie")?;
    let visitors = stored_visitors(visitors, n).await?;
    let gate = Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = visitors
        .into_iter()
        .map(|(mut visitor, conversation)| {
            let (server, gate, cookie) = (agents.clone(), gate.clone(), cookie.clone());
            tokio::spawn(async move {
                let _turn = gate.acquire().await?;
                let mut agent = server.agent(&cookie).await?;
                let join = ClientMsg::Join {
                    conversation: conversation.clone(),
                    after_seq: 1,
                };
                send(&mut agent, &join).await?;
                recv_until(&mut agent, |m| {
                    matches!(m, ServerMsg::Call { .. }).then_some(())
                })
                .await?;
                let start = ClientMsg::Call {
                    conversation: conversation.clone(),
                    action: CallAction::Start {
                        kind: CallKind::Voice,
                    },
                };
                send(&mut agent, &start).await?;
                let ringing = |m| matches!(m, ServerMsg::Call { call: Some(_), .. }).then_some(());
                recv_until(&mut visitor, ringing).await?;
                let accept = ClientMsg::Call {
                    conversation: conversation.clone(),
                    action: CallAction::Accept,
                };
                send(&mut visitor, &accept).await?;
                let active = |m| match m {
                    ServerMsg::Call { call: Some(c), .. }
                        if c.phase == escalera_protocol::CallPhase::Active =>
                    {
                        Some(())
                    }
                    _ => None,
                };
                recv_until(&mut agent, active).await?;
                let frame = serde_json::to_string(&ClientMsg::Signal {
                    conversation,
                    payload: r#"{"t":TIME}"#.into(),
                })?
                .replace("TIME", "{T}");
                anyhow::Ok(Pair {
                    a: agent,
                    b: visitor,
                    a_frame: frame.clone(),
                    b_frame: frame,
                })
            })
        })
        .collect();
    let mut pairs = Vec::with_capacity(n);
    for t in tasks {
        pairs.push(t.await??);
    }
    Ok(pairs)
}

/// `n` welcomed visitors whose conversations are stored (each said hello), joined.
async fn stored_visitors(server: &Arc<Server>, n: usize) -> Result<Vec<(Socket, ConversationId)>> {
    let gate = Arc::new(Semaphore::new(OPENING));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (server, gate) = (server.clone(), gate.clone());
            tokio::spawn(async move {
                let _turn = gate.acquire().await?;
                let (mut ws, conversation) = server.open(i, "").await?;
                let conversation = conversation.context("a visitor has a conversation")?;
                store_and_join(&mut ws, &conversation).await?;
                anyhow::Ok((ws, conversation))
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Stores the visitor's conversation with a first message, and joins it.
async fn store_and_join(ws: &mut Socket, conversation: &ConversationId) -> Result<()> {
    let hi = ClientMsg::Chat {
        conversation: conversation.clone(),
        client_id: ClientMsgId("hello".into()),
        text: "hello".into(),
    };
    send(ws, &hi).await?;
    recv_until(ws, |m| matches!(m, ServerMsg::Ack { .. }).then_some(())).await?;
    let join = ClientMsg::Join {
        conversation: conversation.clone(),
        after_seq: 0,
    };
    send(ws, &join).await?;
    recv_until(ws, |m| matches!(m, ServerMsg::Call { .. }).then_some(())).await
}

/// Escalera: resident memory (MiB) before any login, after one and after 200, four at a
/// time.
async fn logins_run() -> Result<[f64; 3]> {
    let server = Arc::new(Server::start(Kind::Escalera).await?);
    let mib = |s: &Server| s.rss_kib() / 1024.0;
    let before = mib(&server);
    let one = || async {
        let (status, cookie) = login(server.addr, 1, EMAIL, PASSWORD).await?;
        cookie.with_context(|| format!("login: {status}"))
    };
    one().await?;
    let after_one = mib(&server);
    for _ in 0..50 {
        let four = futures_util::future::join_all((0..4).map(|_| one())).await;
        for cookie in four {
            cookie?;
        }
    }
    let after = mib(&server);
    println!(
        "  Escalera   logins: RSS {before:.1} MiB, {after_one:.1} after one, {after:.1} after 201"
    );
    Ok([before, after_one, after])
}

struct Chat {
    /// Messages acknowledged in the window.
    acked: f64,
    acked_rate: f64,
    ack: Latencies,
    delivered: Latencies,
    commits_per_message: f64,
}

/// Conversations each of Ana's consoles joins in the chat part.
const PER_CONSOLE: usize = 100;

/// Escalera: `chatters` visitors send at `chat_rate` in all, open loop, to conversations
/// Ana's consoles have joined.
async fn chat_run(plan: &Plan) -> Result<Chat> {
    let server = Arc::new(Server::start(Kind::Escalera).await?);
    let mut chat = chat_measure(&server, &server, plan).await?;
    let server = Arc::into_inner(server).context("the server is still shared")?;
    let commits = server.stop().await? as f64;
    // Every visitor's hello message was committed too.
    chat.commits_per_message = commits / (chat.acked + plan.chatters as f64);
    println!(
        "  Escalera   chat: {:.0} acks and {} agent copies in {} s; {commits:.0} group commits",
        chat.acked,
        chat.delivered.0.len(),
        plan.seconds
    );
    Ok(chat)
}

/// [`chat_run`] on two nodes: the visitors on one, Ana's consoles on the other, so every
/// agent's copy crosses NATS (group commits are SQLite's: not counted).
async fn cluster_chat_run(plan: &Plan) -> Result<Chat> {
    let data = tempfile::tempdir()?;
    let (visitors, agents) = two_nodes(data.path()).await?;
    let chat = chat_measure(&visitors, &agents, plan).await?;
    println!(
        "  2 nodes    chat: {:.0} acks and {} agent copies in {} s",
        chat.acked,
        chat.delivered.0.len(),
        plan.seconds
    );
    Ok(chat)
}

/// Visitors on `visitors` chat at the plan's rate to conversations Ana's consoles on
/// `agents` joined: the messages acknowledged, send to ack, and send to the agent's copy (the
/// group commits are the caller's to count).
async fn chat_measure(visitors: &Arc<Server>, agents: &Arc<Server>, plan: &Plan) -> Result<Chat> {
    let (_, cookie) = login(agents.addr, 1, EMAIL, PASSWORD).await?;
    let cookie = cookie.context("no session cookie")?;
    let server = agents;
    let visitors = stored_visitors(visitors, plan.chatters).await?;
    // Consoles of Ana's, each joined to [`PER_CONSOLE`] of the conversations (one console
    // cannot take 10,000 messages a second: its outbox fills and the relay cuts it).
    let mut consoles = Vec::new();
    for slice in visitors.chunks(PER_CONSOLE) {
        let mut agent = server.agent(&cookie).await?;
        for (_, conversation) in slice {
            let join = ClientMsg::Join {
                conversation: conversation.clone(),
                after_seq: 1,
            };
            send(&mut agent, &join).await?;
        }
        for _ in slice {
            let joined = |m| matches!(m, ServerMsg::Call { .. }).then_some(());
            recv_until(&mut agent, joined).await?;
        }
        consoles.push(agent);
    }
    let (sockets, conversations): (Vec<_>, Vec<_>) = visitors.into_iter().unzip();
    let visitors: Vec<_> = settle(sockets)
        .await?
        .into_iter()
        .zip(conversations)
        .collect();
    let consoles = settle(consoles).await?;
    let base = Instant::now();
    let secs = Duration::from_secs(plan.seconds);
    let period = Duration::from_secs_f64(plan.chatters as f64 / plan.chat_rate as f64);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let copies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let until = started + secs;
    let mut tasks = Vec::new();
    for (i, (ws, conversation)) in visitors.into_iter().enumerate() {
        let first = started + period.mul_f64(i as f64 / plan.chatters as f64);
        let (tx, rx) = ws.split();
        let frame = serde_json::to_string(&ClientMsg::Chat {
            conversation,
            client_id: ClientMsgId("CID".into()),
            text: "a chat message of a usual length, some words".into(),
        })?;
        let frame = frame.replace("CID", "c{T}");
        tasks.push(tokio::spawn(send_turns(
            vec![(tx, frame)],
            base,
            first,
            period,
            until,
        )));
        let clock = |t: &str| chat_clock(t, true);
        tasks.push(tokio::spawn(collect(rx, base, until, acks.clone(), clock)));
    }
    for agent in consoles {
        let (_, agent_rx) = agent.split();
        let clock = |t: &str| chat_clock(t, false);
        tasks.push(tokio::spawn(collect(
            agent_rx,
            base,
            until,
            copies.clone(),
            clock,
        )));
    }
    for t in tasks {
        t.await??;
    }
    let ack = Latencies::new(std::mem::take(&mut *acks.lock().expect("acks")));
    let delivered = Latencies::new(std::mem::take(&mut *copies.lock().expect("copies")));
    let acked = ack.0.len() as f64;
    Ok(Chat {
        acked,
        acked_rate: acked / plan.seconds as f64,
        ack,
        delivered,
        commits_per_message: f64::NAN,
    })
}

/// The send time in a chat frame's client id (`c<micros>`): of an ack (`acks`), else of a
/// message.
fn chat_clock(text: &str, acks: bool) -> Result<Option<u64>> {
    let id = match serde_json::from_str::<ServerMsg>(text) {
        Ok(ServerMsg::Ack { client_id, .. }) if acks => client_id,
        Ok(ServerMsg::Message(m)) if !acks => match m.client_id {
            Some(id) => id,
            None => return Ok(None),
        },
        Ok(ServerMsg::Error { code, message, .. }) => bail!("chat: {code:?} {message}"),
        _ => return Ok(None),
    };
    Ok(id.0.strip_prefix('c').and_then(|t| t.parse().ok()))
}
