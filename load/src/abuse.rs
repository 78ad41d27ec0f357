//! `make abuse`: the attacks of issue 7 (1, 3, 5, 7 and 9) against the release relay with its
//! default limits, each on a fresh relay, while a bystander visitor and agent chat. For each:
//! what the attack got, the relay's resident memory before and at its peak, and the
//! bystander's ack latency before and during. Attackers come from 127.0.0.2 and up, the
//! bystander from 127.0.0.1. It asserts nothing; the goals are in README.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use escalera_protocol::{ClientMsg, ConversationId, ServerMsg, VisitorToken};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::MaybeTlsStream;

use crate::{Latencies, Ws, ORIGIN};

const EMAIL: &str = "ana@load.test";
const PASSWORD: &str = "a long load-test password";

/// A release relay with its default limits (and, for attack 3, a low file limit).
struct Target {
    child: Child,
    addr: SocketAddr,
    site: String,
    _dir: tempfile::TempDir,
}

impl Target {
    async fn start(nofile: Option<u64>) -> Result<Self> {
        let bin = crate::relay_binary();
        let dir = tempfile::tempdir()?;
        let cli = |args: &[&str]| {
            let mut c = Command::new(&bin);
            c.arg("--data-dir").arg(dir.path()).args(args);
            c.env("ESCALERA_AGENT_PASSWORD", PASSWORD);
            c
        };
        let site = crate::add_site(&mut cli(&[]), "Abuse").await?;
        let added = cli(&["agent", "add", "--email", EMAIL, "--name", "Ana"])
            .output()
            .await?;
        if !added.status.success() {
            bail!("agent add: {}", String::from_utf8_lossy(&added.stderr));
        }
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let listen = addr.to_string();
        let serve = ["serve", "--demo-listen", "off", "--listen", listen.as_str()];
        let mut cmd = match nofile {
            // The relay raises its soft limit to the hard one: both are set.
            Some(n) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&bin)
                    .arg("--data-dir")
                    .arg(dir.path())
                    .args(serve);
                c
            }
            None => cli(&serve),
        };
        let child = cmd
            .env("ESCALERA_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        crate::listening(addr).await?;
        Ok(Self {
            child,
            addr,
            site,
            _dir: dir,
        })
    }

    /// Resident memory now and at its peak, in MiB.
    fn memory(&self) -> (f64, f64) {
        let pid = self.child.id().unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn own_origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A WebSocket from `127.0.0.n`; `Err(status)` when refused, `Err(0)` when cut.
    async fn socket(
        &self,
        n: u8,
        path: &str,
        origin: &str,
        cookie: Option<&str>,
    ) -> Result<Ws, u16> {
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .map_err(|_| 0u16)?;
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(origin).map_err(|_| 0u16)?);
        if let Some(c) = cookie {
            req.headers_mut()
                .insert("Cookie", HeaderValue::from_str(c).map_err(|_| 0u16)?);
        }
        let tcp = connect_from(n, self.addr).await.map_err(|_| 0u16)?;
        match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await {
            Ok((ws, _)) => Ok(Ws(ws)),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(_) => Err(0),
        }
    }

    /// A visitor from `127.0.0.n`, welcomed; `Err` with what happened instead.
    async fn visitor(
        &self,
        n: u8,
        token: Option<VisitorToken>,
    ) -> Result<(Ws, VisitorToken, ConversationId), String> {
        let path = format!("/ws/visitor?site={}", self.site);
        let mut ws = self
            .socket(n, &path, ORIGIN, None)
            .await
            .map_err(|s| format!("http {s}"))?;
        let hello = crate::hello(token);
        ws.send(&hello).await.map_err(|e| e.to_string())?;
        match ws.recv().await.map_err(|e| e.to_string())? {
            ServerMsg::WelcomeVisitor {
                token,
                conversation,
                ..
            } => Ok((ws, token, conversation)),
            ServerMsg::Error { code, .. } => Err(format!("{code:?}")),
            other => Err(format!("{other:?}")),
        }
    }

    /// Ana's session cookie.
    pub(crate) async fn login(&self) -> Result<String> {
        let (status, cookie) = login(self.addr, 1, EMAIL, PASSWORD).await?;
        cookie.with_context(|| format!("login: {status}"))
    }

    /// A console socket of the session `cookie`, welcomed.
    async fn agent(&self, cookie: &str) -> Result<Ws> {
        let mut ws = self
            .socket(1, "/ws/agent", &self.own_origin(), Some(cookie))
            .await
            .map_err(|s| anyhow::anyhow!("agent socket: {s}"))?;
        ws.send(&crate::hello(None)).await?;
        match ws.recv().await? {
            ServerMsg::WelcomeAgent { .. } => Ok(ws),
            other => bail!("expected the agent's welcome, got {other:?}"),
        }
    }
}

/// A TCP connection from `127.0.0.n`.
pub(crate) async fn connect_from(n: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, n], 0)))?;
    let tcp = socket.connect(to).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A one-shot HTTP/1.1 request from `127.0.0.n`: the status and the whole answer.
async fn http(to: SocketAddr, n: u8, request: String) -> Result<(u16, String)> {
    let mut tcp = connect_from(n, to).await?;
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {text:?}"))?;
    Ok((status, text))
}

/// `POST /api/login` from `127.0.0.n`: the status and the session cookie, if one was set.
pub(crate) async fn login(
    to: SocketAddr,
    n: u8,
    email: &str,
    password: &str,
) -> Result<(u16, Option<String>)> {
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {to}\r\nOrigin: http://{to}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = http(to, n, request).await?;
    let cookie = text.lines().find_map(|l| {
        let v = l
            .strip_prefix("set-cookie: ")
            .or_else(|| l.strip_prefix("Set-Cookie: "))?;
        v.split(';').next().map(str::to_owned)
    });
    Ok((status, cookie))
}

/// A visitor and Ana in one conversation, chatting at a person's pace.
struct Bystander {
    visitor: Ws,
    agent: Ws,
    conversation: ConversationId,
    said: u64,
}

impl Bystander {
    async fn start(t: &Target) -> Result<Self> {
        let (mut visitor, _, conversation) =
            t.visitor(1, None).await.map_err(anyhow::Error::msg)?;
        visitor.chat(&conversation, "hello".into()).await?;
        let mut agent = t.agent(&t.login().await?).await?;
        agent
            .send(&ClientMsg::Take {
                conversation: conversation.clone(),
            })
            .await?;
        Ok(Self {
            visitor,
            agent,
            conversation,
            said: 0,
        })
    }

    /// Chats for `secs`: the agent a line every 100 ms, the visitor every 500 ms (both well
    /// inside their limits); every ack's latency, in seconds.
    async fn chat_for(&mut self, secs: Duration) -> Result<Vec<f64>> {
        let until = Instant::now() + secs;
        let mut lat = Vec::new();
        while Instant::now() < until {
            self.said += 1;
            let n = self.said;
            let id = format!("bystander-{n}");
            lat.push(self.agent.chat(&self.conversation, id).await?.as_secs_f64());
            if n.is_multiple_of(5) {
                let id = format!("bystander-visitor-{n}");
                lat.push(
                    self.visitor
                        .chat(&self.conversation, id)
                        .await?
                        .as_secs_f64(),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(lat)
    }
}

/// One attack's row.
struct Row {
    attack: &'static str,
    got: String,
    rss_before: f64,
    rss_peak: f64,
    before: Latencies,
    during: Latencies,
}

fn print(rows: &[Row]) {
    println!(
        "  {:<44}  {:>8}  {:>8}  {:>17}  {:>17}  what the attack got",
        "attack", "RSS", "peak", "ack p50/p99 before", "ack p50/p99 during"
    );
    for r in rows {
        let ms = |l: &Latencies| format!("{:.1}/{:.1} ms", l.pct(0.5) * 1e3, l.pct(0.99) * 1e3);
        println!(
            "  {:<44}  {:>5.0} MiB  {:>5.0} MiB  {:>17}  {:>17}  {}",
            r.attack,
            r.rss_before,
            r.rss_peak,
            ms(&r.before),
            ms(&r.during),
            r.got
        );
    }
}

/// Runs `attack` on a fresh relay while the bystander chats for `secs`; the attack stops when
/// the flag turns true and returns what it got.
async fn measure<F, Fut>(
    name: &'static str,
    nofile: Option<u64>,
    secs: Duration,
    setup: impl AsyncFnOnce(&Arc<Target>) -> Result<()>,
    attack: F,
) -> Result<Row>
where
    F: FnOnce(Arc<Target>, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Result<String>> + Send + 'static,
{
    let target = Arc::new(Target::start(nofile).await?);
    let mut bystander = Bystander::start(&target).await?;
    setup(&target).await?;
    let before = bystander.chat_for(Duration::from_secs(3)).await?;
    let rss_before = target.memory().0;
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(attack(target.clone(), stop.clone()));
    // Give the attack a moment to build up before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = bystander.chat_for(secs).await?;
    let rss_peak = target.memory().1;
    stop.store(true, Ordering::Relaxed);
    let got = running.await??;
    Ok(Row {
        attack: name,
        got,
        rss_before,
        rss_peak,
        before: Latencies::new(before),
        during: Latencies::new(during),
    })
}

pub async fn run(secs: Duration) -> Result<()> {
    println!(
        "Attacks against the release relay with its default limits, {} s each, attackers on \
         127.0.0.2 and up, a bystander visitor and agent chatting from 127.0.0.1:",
        secs.as_secs()
    );
    // `ESCALERA_ABUSE_ONLY=1,9` runs only those.
    let only = std::env::var("ESCALERA_ABUSE_ONLY").unwrap_or_default();
    let wanted = |n: &str| only.is_empty() || only.split(',').any(|o| o.trim() == n);
    let none = async |_: &Arc<Target>| Ok(());
    let mut rows = Vec::new();
    if wanted("1") {
        let name = "1: 128 concurrent logins, unknown emails";
        rows.push(measure(name, None, secs, none, logins).await?);
    }
    if wanted("3") {
        let name = "3: 1,030 silent connections, ulimit -n 1024";
        rows.push(measure(name, Some(1024), secs, none, silent).await?);
    }
    if wanted("5") {
        let name = "5: 5,000 upgrades + hello from one address";
        rows.push(measure(name, None, secs, none, upgrades).await?);
    }
    if wanted("7") {
        let history: Arc<std::sync::Mutex<Option<(VisitorToken, ConversationId)>>> = Arc::default();
        let slot = history.clone();
        let fill = async move |t: &Arc<Target>| {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(fill_history(t).await?);
            Ok(())
        };
        let name = "7: one token, 150 sockets re-joining 5,000";
        let attack = move |t, stop| rejoins(t, stop, history);
        rows.push(measure(name, None, secs, fill, attack).await?);
    }
    if wanted("9") {
        let name = "9: 200 sockets x 19 chats/s from one client";
        rows.push(measure(name, None, secs, none, flood).await?);
    }
    print(&rows);
    Ok(())
}

/// Attack 1: 128 clients on 128 addresses, each posting logins with unknown emails back to back.
async fn logins(t: Arc<Target>, stop: Arc<AtomicBool>) -> Result<String> {
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default()); // 401, 429, 503, other
    let tasks: Vec<_> = (0..128u8)
        .map(|i| {
            let (t, stop, counts) = (t.clone(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let email = format!("nobody-{i}-{n}@load.test");
                    let slot = match login(t.addr, 2 + i, &email, "guess").await {
                        Ok((401, _)) => 0,
                        Ok((429, _)) => 1,
                        Ok((503, _)) => 2,
                        _ => 3,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let c = |i: usize| counts[i].load(Ordering::Relaxed);
    Ok(format!(
        "{} checked (401), {} throttled (429), {} told to wait (503), {} other",
        c(0),
        c(1),
        c(2),
        c(3)
    ))
}

/// Attack 3: 1,030 connections that send nothing, from 5 addresses, reopened as soon as the
/// relay cuts them; meanwhile `/healthz` is asked every 100 ms from another address.
async fn silent(t: Arc<Target>, stop: Arc<AtomicBool>) -> Result<String> {
    let opened = Arc::new(AtomicU64::new(0));
    let holders: Vec<_> = (0..1030u32)
        .map(|i| {
            let (t, stop, opened) = (t.clone(), stop.clone(), opened.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut tcp) = connect_from(2 + (i % 5) as u8, t.addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    let mut byte = [0u8; 1];
                    tokio::select! {
                        _ = tcp.read(&mut byte) => {}
                        () = async { while !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        } } => {}
                    }
                    // Cut (or refused at once): come back a moment later.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    let (mut ok, mut failed) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned();
        match tokio::time::timeout(Duration::from_secs(2), http(t.addr, 200, request)).await {
            Ok(Ok((200, _))) => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in holders {
        h.await?;
    }
    Ok(format!(
        "{} connections opened; /healthz answered {ok} of {}",
        opened.load(Ordering::Relaxed),
        ok + failed
    ))
}

/// Attack 5: 5,000 visitor sockets from one address, each saying hello, kept open.
async fn upgrades(t: Arc<Target>, stop: Arc<AtomicBool>) -> Result<String> {
    let (mut welcomed, mut refused) = (0u64, 0u64);
    let mut held = Vec::new();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut next = 0;
    use futures_util::StreamExt;
    while next < 5000 || !pending.is_empty() {
        while next < 5000 && pending.len() < 64 && !stop.load(Ordering::Relaxed) {
            let t = t.clone();
            pending.push(async move { t.visitor(2, None).await });
            next += 1;
        }
        if stop.load(Ordering::Relaxed) && pending.is_empty() {
            break;
        }
        match pending.next().await {
            Some(Ok((ws, _, _))) => {
                welcomed += 1;
                held.push(ws);
            }
            Some(Err(_)) => refused += 1,
            None => {}
        }
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(format!(
        "{welcomed} welcomed (none stored: nobody spoke), {refused} refused"
    ))
}

/// Setup for attack 7: a visitor's conversation with 5,000 messages (Ana writes them from 50
/// sockets, 100 each, inside each socket's burst).
async fn fill_history(t: &Arc<Target>) -> Result<(VisitorToken, ConversationId)> {
    let (mut ws, token, conv) = t.visitor(3, None).await.map_err(anyhow::Error::msg)?;
    ws.chat(&conv, "first".into()).await?;
    let cookie = t.login().await?;
    let mut first = t.agent(&cookie).await?;
    first
        .send(&ClientMsg::Take {
            conversation: conv.clone(),
        })
        .await?;
    let writers: Vec<_> = (0..50)
        .map(|w| {
            let (t, conv, cookie) = (t.clone(), conv.clone(), cookie.clone());
            tokio::spawn(async move {
                let mut agent = t.agent(&cookie).await?;
                for i in 0..100 {
                    agent.chat(&conv, format!("h-{w}-{i}")).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    Ok((token, conv))
}

/// Attack 7: 150 sockets with one visitor's token re-joining their 5,000-message conversation
/// from seq 0, over and over.
async fn rejoins(
    t: Arc<Target>,
    stop: Arc<AtomicBool>,
    history: Arc<std::sync::Mutex<Option<(VisitorToken, ConversationId)>>>,
) -> Result<String> {
    let (token, conv) = history.lock().unwrap().clone().context("no history")?;
    let (done, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..150)
        .map(|_| {
            let (t, stop, token, conv) = (t.clone(), stop.clone(), token.clone(), conv.clone());
            let (done, refused) = (done.clone(), refused.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match t.visitor(4, Some(token.clone())).await {
                        Ok((mut ws, _, _)) => {
                            while !stop.load(Ordering::Relaxed) {
                                if ws.join(&conv, 0).await.is_err() {
                                    break;
                                }
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(format!(
        "{} complete re-joins, {} sockets refused",
        done.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    ))
}

/// Attack 9: 200 visitor sockets from one address, each sending 19 chat messages a second.
async fn flood(t: Arc<Target>, stop: Arc<AtomicBool>) -> Result<String> {
    let (stored, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..200)
        .map(|s| {
            let (t, stop) = (t.clone(), stop.clone());
            let (stored, refused) = (stored.clone(), refused.clone());
            tokio::spawn(async move {
                let Ok((ws, _, conv)) = t.visitor(5, None).await else {
                    return;
                };
                let (mut tx, mut rx) = futures_util::StreamExt::split(ws.0);
                let reader = tokio::spawn(async move {
                    use futures_util::StreamExt;
                    while let Some(Ok(frame)) = rx.next().await {
                        let Ok(text) = frame.into_text() else {
                            continue;
                        };
                        match serde_json::from_str::<ServerMsg>(text.as_str()) {
                            Ok(ServerMsg::Ack { .. }) => stored.fetch_add(1, Ordering::Relaxed),
                            Ok(ServerMsg::Error { .. }) => refused.fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                    }
                });
                let mut n = 0u64;
                let mut every = tokio::time::interval(Duration::from_millis(1000 / 19));
                while !stop.load(Ordering::Relaxed) {
                    every.tick().await;
                    n += 1;
                    let msg = ClientMsg::Chat {
                        conversation: conv.clone(),
                        client_id: format!("flood-{s}-{n}").as_str().into(),
                        text: "spam spam spam".into(),
                    };
                    let text = serde_json::to_string(&msg).unwrap_or_default();
                    use futures_util::SinkExt;
                    let frame = tokio_tungstenite::tungstenite::Message::Text(text.into());
                    if tx.send(frame).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                reader.abort();
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(format!(
        "{} messages stored, {} refused",
        stored.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    ))
}
