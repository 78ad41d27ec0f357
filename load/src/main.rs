//! `make bench` (relay part): starts the release relay on loopback with a fresh data dir and
//! drives it over real WebSockets, then prints figures. It asserts nothing.
//!
//! - `chat`: C visitors, one conversation each, each sending a chat message and waiting for its
//!   ack before the next (closed loop), for a few seconds: acks per second and ack latency, for
//!   C = 1, 100 and 1,000.
//! - `rejoin`: one visitor's conversation holds 5,000 messages; 50 sockets with that visitor's
//!   token say hello and re-join it from seq 0 over and over, while a bystander in another
//!   conversation chats: the bystander's ack latency before and during.
//!
//! - `abuse` (`make abuse`): the attacks of issue 7 against the relay with its default
//!   limits; see `abuse.rs`.
//!
//! - `compare` (`make load`): one node at its limit beside PeerServer; see `compare.rs`.
//!
//! Usage: `escalera-load [chat|rejoin|all|abuse|compare] [--seconds N]
//! [--conversations 1,100,1000] [--idle N] [--pairs N] [--signal-rate N] [--chatters N]
//! [--chat-rate N] [--parts idle,signal,logins,chat,cluster]`.
//! The relay binary is `$ESCALERA_BIN`, else `target/release/escalera`.

mod abuse;
mod compare;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use escalera_protocol::{
    ClientMsg, ClientMsgId, ConversationId, ServerMsg, VisitorToken, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The per-socket, per-visitor and per-address limits protect the relay from one client;
/// here one client is the load, so they are lifted.
const LIFTED: &[&str] = &[
    "--frame-rate",
    "1000000",
    "--frame-burst",
    "1000000",
    "--connections-per-address",
    "1000000",
    "--sockets-per-visitor",
    "1000000",
    "--conversations-per-address",
    "1000000",
    "--visitor-chat-rate",
    "1000000",
    "--address-chat-rate",
    "1000000",
    "--visitor-history-rate",
    "1000000",
];

/// The origin the load site allows.
const ORIGIN: &str = "http://load.test";

struct Args {
    scenario: String,
    seconds: u64,
    conversations: Vec<usize>,
    plan: compare::Plan,
}

fn args() -> Result<Args> {
    let mut a = Args {
        scenario: "all".into(),
        seconds: 5,
        conversations: vec![1, 100, 1000],
        plan: compare::Plan {
            idle: 19_000,
            pairs: 1_000,
            signal_rate: 20_000,
            chatters: 1_000,
            chat_rate: 10_000,
            seconds: 10,
            parts: Vec::new(),
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => a.seconds = it.next().context("--seconds N")?.parse()?,
            "--conversations" => {
                a.conversations = it
                    .next()
                    .context("--conversations 1,100")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--idle" => a.plan.idle = it.next().context("--idle N")?.parse()?,
            "--pairs" => a.plan.pairs = it.next().context("--pairs N")?.parse()?,
            "--signal-rate" => {
                a.plan.signal_rate = it.next().context("--signal-rate N")?.parse()?
            }
            "--chatters" => a.plan.chatters = it.next().context("--chatters N")?.parse()?,
            "--parts" => {
                a.plan.parts = it
                    .next()
                    .context("--parts idle,signal,logins,chat,cluster")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
            }
            "--chat-rate" => a.plan.chat_rate = it.next().context("--chat-rate N")?.parse()?,
            "chat" | "rejoin" | "all" | "abuse" | "compare" => a.scenario = arg,
            other => bail!("unknown argument {other}: see the header of load/src/main.rs"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = args()?;
    if args.scenario == "compare" {
        args.plan.seconds = args.seconds;
        return compare::run(args.plan).await;
    }
    if args.scenario == "abuse" {
        return abuse::run(Duration::from_secs(args.seconds.max(5))).await;
    }
    if matches!(args.scenario.as_str(), "chat" | "all") {
        println!("Chat acknowledged by the relay (SQLite), closed loop, one socket per conversation, {} s each:", args.seconds);
        println!(
            "  {:>13}  {:>10}  {:>9}  {:>9}",
            "conversations", "acks/s", "ack p50", "ack p99"
        );
        for &c in &args.conversations {
            let relay = Arc::new(Relay::start().await?);
            let f = chat(&relay, c, Duration::from_secs(args.seconds)).await?;
            println!(
                "  {:>13}  {:>10.0}  {:>6.2} ms  {:>6.2} ms",
                c,
                f.rate,
                f.p50 * 1e3,
                f.p99 * 1e3
            );
        }
    }
    if matches!(args.scenario.as_str(), "rejoin" | "all") {
        let relay = Arc::new(Relay::start().await?);
        rejoin(&relay, Duration::from_secs(args.seconds)).await?;
    }
    Ok(())
}

/// A release relay on a free loopback port with a fresh data dir and one site; killed when
/// dropped.
struct Relay {
    _child: Child,
    addr: SocketAddr,
    site: String,
    _dir: tempfile::TempDir,
}

impl Relay {
    async fn start() -> Result<Self> {
        let bin = relay_binary();
        let dir = tempfile::tempdir()?;
        let site = add_site(Command::new(&bin).arg("--data-dir").arg(dir.path()), "Load").await?;
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&bin)
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "serve",
                "--demo-listen",
                "off",
                "--listen",
                &addr.to_string(),
            ])
            .args(LIFTED)
            .env("ESCALERA_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        listening(addr).await?;
        Ok(Self {
            _child: child,
            addr,
            site,
            _dir: dir,
        })
    }

    /// A welcomed visitor socket (resuming `token`'s conversation if given).
    async fn visitor(
        &self,
        token: Option<VisitorToken>,
    ) -> Result<(Ws, VisitorToken, ConversationId)> {
        let mut req =
            format!("ws://{}/ws/visitor?site={}", self.addr, self.site).into_client_request()?;
        req.headers_mut()
            .insert("Origin", HeaderValue::from_static(ORIGIN));
        let (socket, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
        let mut ws = Ws(socket);
        ws.send(&hello(token)).await?;
        match ws.recv().await? {
            ServerMsg::WelcomeVisitor {
                token,
                conversation,
                ..
            } => Ok((ws, token, conversation)),
            other => bail!("expected a welcome, got {other:?}"),
        }
    }
}

/// A hello: a visitor's (resuming `token`'s conversation if given), or an agent's.
fn hello(token: Option<VisitorToken>) -> ClientMsg {
    ClientMsg::Hello {
        protocol: PROTOCOL_VERSION,
        token,
        identity: None,
        resume: None,
    }
}

/// The release relay: `$ESCALERA_BIN`, else `target/release/escalera`.
fn relay_binary() -> PathBuf {
    std::env::var_os("ESCALERA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/escalera"))
}

/// Runs `escalera … site add` for a site named `name` allowing [`ORIGIN`]; its key.
async fn add_site(cli: &mut Command, name: &str) -> Result<String> {
    let out = cli
        .args(["site", "add", "--name", name, "--origin", ORIGIN])
        .output()
        .await
        .context("cannot run the relay's binary")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("Site key: "))
        .with_context(|| format!("no site key in: {text}"))?
        .to_owned())
}

/// Waits (up to 30 s) until the relay just started listens on `addr`.
async fn listening(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("the relay did not start on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

struct Ws(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Ws {
    async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        let text = serde_json::to_string(msg)?;
        self.0.send(WsMessage::Text(text.into())).await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<ServerMsg> {
        loop {
            match self.0.next().await.context("socket closed")?? {
                WsMessage::Text(t) => return Ok(serde_json::from_str(t.as_str())?),
                WsMessage::Close(c) => bail!("closed by the relay: {c:?}"),
                _ => {}
            }
        }
    }

    /// Joins `conversation` from `after` and reads until the history is complete (the call
    /// state follows the last page). Returns how many messages came.
    async fn join(&mut self, conversation: &ConversationId, after: u64) -> Result<usize> {
        self.send(&ClientMsg::Join {
            conversation: conversation.clone(),
            after_seq: after,
        })
        .await?;
        let mut n = 0;
        loop {
            match self.recv().await? {
                ServerMsg::History { messages, .. } => n += messages.len(),
                ServerMsg::Call { .. } => return Ok(n),
                ServerMsg::Error { code, message, .. } => bail!("join: {code:?} {message}"),
                _ => {}
            }
        }
    }

    /// Sends one chat message and waits for its ack; returns the time it took.
    async fn chat(&mut self, conversation: &ConversationId, id: String) -> Result<Duration> {
        let started = Instant::now();
        let client_id = ClientMsgId(id);
        self.send(&ClientMsg::Chat {
            conversation: conversation.clone(),
            client_id: client_id.clone(),
            text: format!("load message {} with some words in it", client_id.0),
        })
        .await?;
        loop {
            match self.recv().await? {
                ServerMsg::Ack { client_id: c, .. } if c == client_id => {
                    return Ok(started.elapsed())
                }
                ServerMsg::Error { code, message, .. } => bail!("chat: {code:?} {message}"),
                _ => {}
            }
        }
    }
}

/// Seconds, sorted.
struct Latencies(Vec<f64>);

impl Latencies {
    fn new(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self(v)
    }

    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() - 1) as f64 * p).round() as usize]
    }
}

struct Figures {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// Opens `n` welcomed, joined visitors, at most 64 handshakes at a time.
async fn visitors(relay: &Arc<Relay>, n: usize) -> Result<Vec<(Ws, ConversationId)>> {
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (relay, gate) = (relay.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let (mut ws, _, conv) = relay.visitor(None).await?;
            ws.join(&conv, 0).await?;
            anyhow::Ok((ws, conv))
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Every visitor chats in a closed loop until `until`; returns each ack's latency.
async fn chat_until(
    sockets: Vec<(Ws, ConversationId)>,
    until: Instant,
    tag: &str,
) -> Result<Vec<f64>> {
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (mut ws, conv))| {
            let tag = format!("{tag}-{i}");
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    lat.push(ws.chat(&conv, format!("{tag}-{n}")).await?.as_secs_f64());
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

async fn chat(relay: &Arc<Relay>, conversations: usize, secs: Duration) -> Result<Figures> {
    let sockets = visitors(relay, conversations).await?;
    let started = Instant::now();
    let lat = chat_until(sockets, started + secs, "c").await?;
    let elapsed = started.elapsed().as_secs_f64();
    let lat = Latencies::new(lat);
    Ok(Figures {
        rate: lat.0.len() as f64 / elapsed,
        p50: lat.pct(0.5),
        p99: lat.pct(0.99),
    })
}

/// Messages in the conversation that is re-joined.
const HISTORY: u64 = 5_000;
/// Sockets re-joining it at once.
const REJOINERS: usize = 50;

async fn rejoin(relay: &Arc<Relay>, secs: Duration) -> Result<()> {
    let (mut ws, token, conv) = relay.visitor(None).await?;
    for i in 0..HISTORY {
        ws.chat(&conv, format!("h-{i}")).await?;
    }
    drop(ws);

    let before = chat_until(visitors(relay, 1).await?, Instant::now() + secs, "b").await?;

    let bystander = visitors(relay, 1).await?;
    let until = Instant::now() + secs;
    let rejoiners: Vec<_> = (0..REJOINERS)
        .map(|_| {
            let (relay, token, conv) = (relay.clone(), token.clone(), conv.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let (mut ws, _, _) = relay.visitor(Some(token.clone())).await?;
                    let got = ws.join(&conv, 0).await?;
                    if got as u64 != HISTORY {
                        bail!("a re-join got {got} messages, not {HISTORY}");
                    }
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let during = chat_until(bystander, until, "d").await?;
    let mut rejoins = 0;
    for t in rejoiners {
        rejoins += t.await??;
    }
    let (before, during) = (Latencies::new(before), Latencies::new(during));
    println!(
        "Bystander's chat ack while {REJOINERS} sockets re-join a {HISTORY}-message conversation from seq 0, {} s each:",
        secs.as_secs()
    );
    println!(
        "  before:  p50 {:>8.2} ms  p99 {:>8.2} ms  ({} acks)",
        before.pct(0.5) * 1e3,
        before.pct(0.99) * 1e3,
        before.0.len()
    );
    println!(
        "  during:  p50 {:>8.2} ms  p99 {:>8.2} ms  ({} acks; {rejoins} complete re-joins)",
        during.pct(0.5) * 1e3,
        during.pct(0.99) * 1e3,
        during.0.len()
    );
    Ok(())
}
