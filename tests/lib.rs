//! Helpers for the end-to-end tests: the real `escalera` binary on loopback ports with its own
//! data dir, and headless Chromium sessions (fake camera and microphone) through chromedriver.
//! Everything listens on and talks to 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use escalera_protocol::{ClientMsg, ServerMsg, PROTOCOL_VERSION};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A WebSocket to the relay from the test itself.
pub type WireSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one frame on a [`WireSocket`].
pub async fn send(ws: &mut WireSocket, msg: &ClientMsg) {
    ws.send(WsMessage::Text(serde_json::to_string(msg).unwrap().into()))
        .await
        .unwrap();
}

/// Every test agent's password.
pub const PASSWORD: &str = "e2e-password-1";

/// How long to wait for anything the UI should show.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The relay binary under test (`make build` puts it in target/release).
pub fn binary() -> PathBuf {
    std::env::var_os("ESCALERA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/escalera"))
}

/// A free loopback port (released before use; the race is acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 10 s) until something listens on a loopback TCP port.
async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running relay with a demo page and two agents (ana, an admin, and ben), both serving every
/// site.
pub struct Product {
    child: Child,
    /// The data dir (kept for restarts).
    pub dir: tempfile::TempDir,
    /// e.g. `http://127.0.0.1:41234`.
    pub relay_url: String,
    /// The demo host page, on another port (so another origin).
    pub demo_url: String,
    /// The demo site's key.
    pub site_key: String,
    ports: (u16, u16),
    flags: Vec<String>,
    log: Log,
}

/// The relay's log lines (stderr), across restarts; echoed to the test's output too.
type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl Product {
    /// Adds the agents and starts `escalera serve`.
    pub async fn start() -> Product {
        Self::start_with(&[]).await
    }

    /// Same, with more flags for `serve`.
    pub async fn start_with(flags: &[String]) -> Product {
        Self::launch(&[], flags, true).await
    }

    /// `escalera serve` with `flags`, and `globals` for it and the command line (a data dir,
    /// database or bus shared with other nodes); adds the agents first when `agents`.
    async fn launch(globals: &[String], flags: &[String], agents: bool) -> Product {
        let dir = tempfile::tempdir().unwrap();
        // Ana is an admin, as the first agent `make run` creates is; Ben is not.
        let add = [
            ("ana@shop.example", "Ana", "--admin"),
            ("ben@shop.example", "Ben", "--limit=5"),
        ];
        for (email, name, role) in add.into_iter().filter(|_| agents) {
            let status = Command::new(binary())
                .args(["agent", "add", "--email", email, "--name", name, role])
                .args(globals)
                .env("ESCALERA_DATA_DIR", dir.path())
                .env("ESCALERA_AGENT_PASSWORD", PASSWORD)
                .stdout(Stdio::null())
                .status()
                .await
                .expect("run escalera agent add (did `make build` run?)");
            assert!(status.success());
        }
        let flags = [flags, globals].concat();
        let log = Log::default();
        // A free port can be taken by someone else before the relay binds it (free_port
        // releases it first): then the relay exits, and it starts again on other ports.
        let mut tries = 0;
        let (ports, (child, relay_url, demo_url, site_key)) = loop {
            let ports = (free_port(), free_port());
            match serve(dir.path(), ports, &flags, &log).await {
                Some(started) => break (ports, started),
                None if tries < 5 => tries += 1,
                None => panic!("the relay did not start: {:?}", log.lock().unwrap()),
            }
        };
        Product {
            child,
            dir,
            relay_url,
            demo_url,
            site_key,
            ports,
            flags,
            log,
        }
    }

    /// SIGKILLs the relay.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.ports.0
    }

    /// Starts the relay again on the same ports and data dir.
    pub async fn restart(&mut self) {
        let (child, ..) = serve(self.dir.path(), self.ports, &self.flags, &self.log)
            .await
            .expect("the relay starts again on its ports");
        self.child = child;
    }

    /// The relay's log lines so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Adds a site whose widget may be embedded by (or opened on) `origin`; returns its key.
    /// The running relay sees it at once (same data dir).
    pub async fn add_site(&self, origin: &str) -> String {
        let out = Command::new(binary())
            .args(["site", "add", "--name", "Another shop", "--origin", origin])
            .args(["--public-url", &self.relay_url])
            .env("ESCALERA_DATA_DIR", self.dir.path())
            .output()
            .await
            .expect("run escalera site add");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("data-site=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a site key in the snippet")
            .to_owned()
    }

    /// Runs `escalera ARGS` on this product's data dir (the running relay sees what it
    /// writes; an agent's chat limit, from their team's next console hello).
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(binary())
            .args(args)
            .env("ESCALERA_DATA_DIR", self.dir.path())
            .env("ESCALERA_AGENT_PASSWORD", PASSWORD)
            .output()
            .await
            .expect("run escalera");
        assert!(out.status.success(), "escalera {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The demo page's origin.
    pub fn demo_origin(&self) -> String {
        self.demo_url.trim_end_matches('/').to_owned()
    }

    /// A visitor over the wire, as the widget would be, from the demo page's origin: the socket
    /// (after the welcome), the visitor's token and conversation.
    pub async fn wire_visitor(&self) -> (WireSocket, String, String) {
        self.wire_visitor_as(None).await
    }

    /// Same, resuming the visitor whose token this is (another tab of theirs).
    pub async fn wire_visitor_as(&self, token: Option<String>) -> (WireSocket, String, String) {
        let url = format!(
            "{}/ws/visitor?site={}",
            self.relay_url.replace("http://", "ws://"),
            self.site_key
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("origin", self.demo_origin().parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let hello = ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token: token.map(escalera_protocol::VisitorToken),
            identity: None,
            resume: None,
        };
        send(&mut ws, &hello).await;
        while let Some(Ok(WsMessage::Text(t))) = ws.next().await {
            if let Ok(ServerMsg::WelcomeVisitor {
                token,
                conversation,
                ..
            }) = serde_json::from_str(t.as_str())
            {
                return (ws, token.0, conversation.0);
            }
        }
        panic!("no welcome from the relay");
    }
}

/// The next error the relay sends on `ws` (other frames are skipped): its message.
pub async fn wire_error(ws: &mut WireSocket) -> String {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("an error in time")
            .expect("the socket open")
            .unwrap();
        if let WsMessage::Text(t) = frame {
            if let Ok(ServerMsg::Error { message, .. }) = serde_json::from_str(t.as_str()) {
                return message;
            }
        }
    }
}

/// Sends each text as a chat message into `conversation` and waits for each one's ack.
pub async fn wire_chat(ws: &mut WireSocket, conversation: &str, texts: &[&str]) {
    for (i, text) in texts.iter().enumerate() {
        let client_id = format!("{conversation}-{i}");
        let chat = ClientMsg::Chat {
            conversation: conversation.into(),
            client_id: client_id.as_str().into(),
            text: (*text).to_owned(),
        };
        send(ws, &chat).await;
        loop {
            let frame = tokio::time::timeout(PATIENCE, ws.next())
                .await
                .expect("an ack in time")
                .expect("the socket open")
                .unwrap();
            if let WsMessage::Text(t) = frame {
                match serde_json::from_str(t.as_str()) {
                    Ok(ServerMsg::Ack { client_id: id, .. }) if id.as_str() == client_id => break,
                    Ok(ServerMsg::Error { message, .. }) => panic!("{text:?} refused: {message}"),
                    _ => {}
                }
            }
        }
    }
}

async fn serve(
    dir: &Path,
    (relay, demo): (u16, u16),
    flags: &[String],
    log: &Log,
) -> Option<(Child, String, String, String)> {
    let mut child = Command::new(binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{relay}")])
        .args(["--demo-listen", &format!("127.0.0.1:{demo}")])
        .args(flags)
        .env("ESCALERA_DATA_DIR", dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            eprintln!("relay: {line}");
            log.lock().unwrap().push(line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut console, mut page, mut key) = (None, None, None);
    while let Some(line) = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        let line = line.trim();
        if let Some(url) = line.strip_prefix("Agent console: ") {
            console = Some(url.trim_end_matches("/agent").to_owned());
        } else if let Some(url) = line.strip_prefix("Demo host page: ") {
            page = Some(url.to_owned());
        } else if let Some(snippet) = line.strip_prefix("Embed snippet: ") {
            key = snippet
                .split("data-site=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(str::to_owned);
        }
        if console.is_some() && page.is_some() && key.is_some() {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The relay said everything, or exited (a port taken meanwhile) before it could.
    Some((child, console?, page?, key?))
}

/// HAProxy in front of the two nodes of [`Cluster`]: the visitors' sockets (and everything
/// else) go to node 1, the agents' sockets to node 2, each node the other's backup once its
/// health check fails (deploy/haproxy.cfg spreads them instead).
const PINNED_HAPROXY: &str = "global
    maxconn 1000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 90s
    option redispatch
    retries 3
frontend escalera
    bind 127.0.0.1:{port}
    acl agent_socket path_beg /ws/agent
    use_backend agents if agent_socket
    default_backend visitors
backend visitors
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
    server node1 {node1} check
    server node2 {node2} check backup
backend agents
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
    server node2 {node2} check
    server node1 {node1} check backup
";

/// Two relay nodes on one PostgreSQL database and one NATS server (the real ones, started
/// for the test), their files in one folder, behind a real HAProxy: visitors are pinned to
/// node 1 and agents to node 2 ([`PINNED_HAPROXY`]). Every URL a browser uses is the proxy's.
pub struct Cluster {
    /// Node 1 (visitors) and node 2 (agents).
    pub nodes: [Product; 2],
    /// e.g. `http://127.0.0.1:41234`: the proxy, which both nodes name as their public URL.
    pub url: String,
    /// The demo host page (served by node 1), which embeds the widget from the proxy.
    pub demo_url: String,
    /// Each node's Prometheus metrics.
    metrics: [String; 2],
    _proxy: escalera_testkit::haproxy::Proxy,
    _files: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let files = tempfile::tempdir().unwrap();
        let database = escalera_testkit::postgres::database().await;
        let bus = escalera_testkit::nats::server().url.clone();
        let port = escalera_testkit::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let globals = [
            "--data-dir".to_owned(),
            files.path().display().to_string(),
            "--database-url".to_owned(),
            database,
            "--bus".to_owned(),
            bus,
        ];
        let metrics = [escalera_testkit::free_port(), escalera_testkit::free_port()];
        let flags = |n: usize| {
            let metrics = format!("127.0.0.1:{}", metrics[n]);
            ["--public-url", &url, "--metrics-listen", &metrics].map(str::to_owned)
        };
        let first = Product::launch(&globals, &flags(0), true).await;
        let second = Product::launch(&globals, &flags(1), false).await;
        let config = PINNED_HAPROXY
            .replace("{node1}", &format!("127.0.0.1:{}", first.port()))
            .replace("{node2}", &format!("127.0.0.1:{}", second.port()));
        let proxy = escalera_testkit::haproxy::Proxy::start(port, &config);
        Cluster {
            demo_url: first.demo_url.clone(),
            nodes: [first, second],
            url,
            metrics: metrics.map(|port| format!("http://127.0.0.1:{port}/metrics")),
            _proxy: proxy,
            _files: files,
        }
    }

    /// The WebSockets of `kind` (`visitor` or `agent`) open on node `n` (0 or 1), as its
    /// Prometheus metrics count them.
    pub async fn sockets(&self, n: usize, kind: &str) -> u64 {
        let text = reqwest::get(&self.metrics[n])
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("escalera_sockets{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    }
}

/// A TCP proxy on loopback in front of the relay, for one browser: its network can be cut
/// (every connection through it closed, new ones refused) and restored. What the browser
/// loads through it is on the proxy's origin, which the relay sees as its own (the `Host`
/// header and `Origin` both name the proxy).
pub struct Cut {
    /// e.g. `http://127.0.0.1:41235`.
    pub url: String,
    down: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Cut {
    /// Proxies to the relay at `relay_url` (`http://127.0.0.1:PORT`).
    pub async fn to(relay_url: &str) -> Cut {
        let upstream = relay_url.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (down, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue; // dropped: refused
                }
                let mut cut = watch.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Cut { url, down, task }
    }

    /// Cuts the network: open connections are closed, new ones refused.
    pub fn sever(&self) {
        self.down.send_replace(true);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.down.send_replace(false);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real TURN server (Debian's coturn) on loopback with TURN REST API credentials
/// (`use-auth-secret`), for the duration of a test.
pub struct Turn {
    child: Child,
    /// The `turn:` URL to give the relay.
    pub url: String,
}

impl Turn {
    /// Starts `turnserver` with `secret`; waits until it listens.
    pub async fn start(secret: &str) -> Turn {
        let port = free_port();
        let relay_ports = free_port();
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={relay_ports}"))
            .arg(format!("--max-port={}", relay_ports.saturating_add(200)))
            .args([
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
            ])
            .args([
                "--realm=escalera.test",
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
            ])
            .args([
                "--no-cli",
                "--fingerprint",
                "--log-file=stdout",
                "--simple-log",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("turnserver on PATH (make test installs coturn)");
        wait_for_port(port).await;
        Turn {
            child,
            url: format!("turn:127.0.0.1:{port}?transport=udp"),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A real SMTP server on loopback (aiosmtpd, Debian's package) keeping what it is sent in a
/// Maildir, for the duration of a test.
pub struct Smtp {
    child: Child,
    dir: tempfile::TempDir,
    /// The `--smtp-url` to give the relay.
    pub url: String,
}

/// One email as delivered: its headers decoded, its body as text.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    /// `To:`.
    pub to: String,
    /// `From:`.
    pub from: String,
    /// `Subject:`.
    pub subject: String,
    /// The text.
    pub body: String,
}

/// Reads a Maildir's messages as JSON, decoding headers and bodies as any mail reader would.
const READ_MAILDIR: &str = r#"
import email.header, json, mailbox, sys
out = []
for m in mailbox.Maildir(sys.argv[1], create=False):
    text = lambda h: str(email.header.make_header(email.header.decode_header(m[h] or '')))
    body = m.get_payload(decode=True).decode(m.get_content_charset() or 'utf-8')
    out.append({'to': text('to'), 'from': text('from'), 'subject': text('subject'), 'body': body})
print(json.dumps(out))
"#;

impl Smtp {
    /// Starts `python3 -m aiosmtpd` and waits until it listens.
    pub async fn start() -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("Debian's python3 with aiosmtpd (make test installs python3-aiosmtpd)");
        wait_for_port(port).await;
        Smtp {
            child,
            dir,
            url: format!("smtp://127.0.0.1:{port}"),
        }
    }

    /// Everything delivered so far.
    pub async fn mails(&self) -> Vec<Mail> {
        let maildir = self.dir.path().join("mail");
        if !maildir.exists() {
            return Vec::new();
        }
        let out = Command::new("/usr/bin/python3")
            .args(["-c", READ_MAILDIR])
            .arg(&maildir)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits until an email to `to` whose subject contains `subject` has been delivered.
    pub async fn wait_mail(&self, to: &str, subject: &str) -> Mail {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self
                .mails()
                .await
                .into_iter()
                .find(|m| m.to.contains(to) && m.subject.contains(subject));
            if let Some(m) = found {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no email to {to} about {subject:?}: {:?}",
                self.mails().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// chromedriver on a free port; each [`Browser`] from it is a separate Chromium with its own
/// profile (so separate storage and cookies).
pub struct Driver {
    child: Child,
    url: String,
    profiles: Vec<tempfile::TempDir>,
}

impl Driver {
    /// Starts chromedriver and waits until it answers.
    pub async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver on PATH (make test installs it)");
        let url = format!("http://127.0.0.1:{port}");
        wait_for_port(port).await;
        Driver {
            child,
            url,
            profiles: Vec::new(),
        }
    }

    /// A new headless Chromium with fake media devices.
    pub async fn browser(&mut self) -> Browser {
        self.browser_with(json!({}), &[]).await
    }

    /// A phone: a 390x844 screen (CSS pixels, 3 device pixels each) with touch, and two
    /// fake cameras (front and back).
    pub async fn phone(&mut self) -> Browser {
        let emulation = json!({
            "mobileEmulation": {
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true }
            }
        });
        self.browser_with(
            emulation,
            &["--use-fake-device-for-media-stream=device-count=2"],
        )
        .await
    }

    /// A Chromium whose language is `lang` (its `navigator.language` and `Accept-Language`).
    pub async fn speaking(&mut self, lang: &str) -> Browser {
        let prefs = json!({ "prefs": { "intl.accept_languages": lang } });
        let flags = [format!("--lang={lang}"), format!("--accept-lang={lang}")];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.browser_with(prefs, &flags).await
    }

    /// A Chromium with these `goog:chromeOptions` added, and these arguments instead of the
    /// same ones of the usual set.
    async fn browser_with(&mut self, options: Value, extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            // Wheel scrolls land at once, so a test can tell when one has happened.
            "--disable-smooth-scrolling",
            "--window-size=1280,900",
        ]
        .iter()
        .filter(|a| {
            !extra
                .iter()
                .any(|e| e.split('=').next() == a.split('=').next())
        })
        .chain(extra)
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut chrome = json!({ "args": args });
        for (k, v) in options.as_object().into_iter().flatten() {
            chrome[k] = v.clone();
        }
        if Path::new("/usr/bin/chromium").exists() {
            chrome["binary"] = json!("/usr/bin/chromium");
        }
        let caps = json!({ "browserName": "chrome", "goog:chromeOptions": chrome });
        let caps = caps.as_object().unwrap().clone();
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session");
        self.profiles.push(profile);
        Browser { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One browser, driven by `data-testid`s.
pub struct Browser {
    /// The WebDriver client, for anything the helpers do not cover.
    pub client: Client,
}

fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

impl Browser {
    /// Opens a URL.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` (a function body that returns something) until it returns a truthy value;
    /// panics with `what` after [`PATIENCE`].
    pub async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        self.poll(what, || self.client.execute(script, args.clone()))
            .await
    }

    /// Calls `run` until it gives a truthy value; panics with `what` after [`PATIENCE`].
    async fn poll<F, Fut>(&self, what: &str, run: F) -> Value
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, fantoccini::error::CmdError>>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let last = match run().await {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => v,
                Err(e) => json!(e.to_string()),
            };
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last result: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs a script once.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Waits for the element with this test id and returns it.
    pub async fn find(&self, id: &str) -> Element {
        self.wait_js(
            &format!("element {id}"),
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(testid(id))],
        )
        .await;
        self.client.find(Locator::Css(&testid(id))).await.unwrap()
    }

    /// Clicks the element with this test id (found again if it was re-rendered between
    /// finding and clicking, as a list row is when its conversation changes).
    pub async fn click(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match self.find(id).await.click().await {
                Ok(()) => return,
                Err(e)
                    if e.is_stale_element_reference() && tokio::time::Instant::now() < deadline => {
                }
                Err(e) => panic!("click {id}: {e}"),
            }
        }
    }

    /// Taps the element with this test id with a finger (a touch pointer), at its middle.
    pub async fn tap(&self, id: &str) {
        use fantoccini::actions::{InputSource, PointerAction, TouchActions};
        let element = self.find(id).await;
        let finger = TouchActions::new("finger".into())
            .then(PointerAction::MoveToElement {
                element,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down { button: 0 })
            .then(PointerAction::Up { button: 0 });
        self.client.perform_actions(finger).await.unwrap();
    }

    /// Picks `value` in the `<select>` with this test id, as a person would (a change event).
    pub async fn choose(&self, id: &str, value: &str) {
        self.find(id).await;
        self.wait_js(
            &format!("{value:?} chosen in {id}"),
            "const s = document.querySelector(arguments[0]);
             if (![...s.options].some(o => o.value === arguments[1])) return false;
             s.value = arguments[1];
             s.dispatchEvent(new Event('change', {bubbles: true}));
             return true",
            vec![json!(testid(id)), json!(value)],
        )
        .await;
    }

    /// Types into the chat input (newlines as Shift+Enter, as a person would) and presses the
    /// send button.
    pub async fn say(&self, text: &str) {
        let input = self.find("chat-input").await;
        self.wait_js(
            "an enabled chat input",
            "return !document.querySelector(arguments[0]).disabled",
            vec![json!(testid("chat-input"))],
        )
        .await;
        // WebDriver keys: Shift (sticky), Enter, then release the modifiers.
        let keys = text.replace('\n', "\u{E008}\u{E007}\u{E000}");
        input.send_keys(&keys).await.unwrap();
        self.click("chat-send").await;
    }

    /// Waits until a confirmed message by `author` with exactly `text` is shown.
    pub async fn wait_message(&self, author: &str, text: &str) {
        self.wait_js(
            &format!("a confirmed {author} message {text:?}"),
            "return [...document.querySelectorAll('[data-testid=message]')].some(m =>
                m.dataset.author === arguments[0] && m.dataset.pending === 'false' &&
                m.querySelector('.bubble').textContent === arguments[1])",
            vec![json!(author), json!(text)],
        )
        .await;
    }

    /// Waits until a confirmed message by `author` starting with `prefix` is shown.
    pub async fn wait_message_prefix(&self, author: &str, prefix: &str) {
        self.wait_js(
            &format!("a {author} message starting {prefix:?}"),
            "return [...document.querySelectorAll('[data-testid=message]')].some(m =>
                m.dataset.author === arguments[0] && m.dataset.pending === 'false' &&
                m.querySelector('.bubble').textContent.startsWith(arguments[1]))",
            vec![json!(author), json!(prefix)],
        )
        .await;
    }

    /// Runs an async script (it calls its last argument with the result) until the result is
    /// truthy; panics with `what` after [`PATIENCE`].
    pub async fn wait_js_async(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        self.poll(what, || self.client.execute_async(script, args.clone()))
            .await
    }

    /// Waits until the call's ICE connection is up; on a timeout, says where the connection
    /// stood (ICE, signaling and gathering states, rollbacks, ICE restarts).
    pub async fn wait_ice_connected(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let state = self
                .js(
                    "const l = document.querySelector('.stage-label');
                     return l ? Object.assign({}, l.dataset) : null",
                    vec![],
                )
                .await;
            let ice = state["ice"].as_str().unwrap_or_default();
            if ["connected", "completed"].contains(&ice) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for ICE connected: {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the remote `<video>` holds a live audio track.
    pub async fn wait_remote_audio(&self) {
        self.wait_js(
            "a live remote audio track",
            "const v = document.querySelector('[data-testid=remote-video]');
             return !!(v && v.srcObject && v.srcObject.getAudioTracks().some(t => t.readyState === 'live'))",
            vec![],
        )
        .await;
    }

    /// Waits until the remote `<video>` shows video whose decoded frame count goes up.
    pub async fn wait_remote_frames(&self) {
        self.js("window.__frames = 0", vec![]).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let state = self
                .js(
                    "const v = document.querySelector('[data-testid=remote-video]');
                     const l = document.querySelector('.stage-label');
                     const tracks = v && v.srcObject ? v.srcObject.getVideoTracks() : [];
                     const n = v ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
                     const before = window.__frames; window.__frames = n;
                     return { ok: tracks.length > 0 && before > 0 && n > before,
                              tracks: tracks.map(t => [t.readyState, t.muted]), frames: n,
                              ice: l && l.dataset.ice, signaling: l && l.dataset.signaling }",
                    vec![],
                )
                .await;
            if state["ok"] == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for remote video frames advancing: {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The texts of all messages shown, with their authors.
    pub async fn messages(&self) -> Vec<(String, String)> {
        let v = self
            .js(
                "return [...document.querySelectorAll('[data-testid=message]')]
                    .map(m => [m.dataset.author, m.querySelector('.bubble').textContent])",
                vec![],
            )
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// Waits until the messages shown are exactly these (author, text) pairs, in this order.
    pub async fn wait_messages(&self, expected: &[(&str, &str)]) {
        self.wait_js(
            &format!("exactly the messages {expected:?}"),
            "const shown = [...document.querySelectorAll('[data-testid=message]')]
                .map(m => [m.dataset.author, m.querySelector('.bubble').textContent]);
             return JSON.stringify(shown) === arguments[0]",
            vec![json!(serde_json::to_string(expected).unwrap())],
        )
        .await;
    }

    /// Drops a text file named `name` on the open conversation (the console's thread), as a
    /// person dragging it from their desktop would.
    pub async fn drop_file(&self, name: &str, content: &str) {
        self.js(
            "const dt = new DataTransfer();
             dt.items.add(new File([arguments[1]], arguments[0], { type: 'text/plain' }));
             const target = document.querySelector('.thread');
             for (const type of ['dragover', 'drop'])
                 target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));",
            vec![json!(name), json!(content)],
        )
        .await;
    }

    /// Waits for the newest attachment image and checks it is a real snapshot: at least
    /// 320 pixels wide and not black.
    pub async fn wait_snapshot_picture(&self) {
        let stats = self
            .wait_js_async("the snapshot image", IMAGE_STATS, vec![])
            .await;
        assert!(stats["w"].as_u64().unwrap() >= 320, "{stats}");
        assert!(stats["mean"].as_f64().unwrap() > 10.0, "not black: {stats}");
    }

    /// Picks the file at `path` in the file input (as a person choosing it would).
    pub async fn attach(&self, path: &Path) {
        self.find("file-input")
            .await
            .send_keys(path.to_str().expect("a UTF-8 path"))
            .await
            .unwrap();
    }

    /// Opens the console's conversation whose row shows this preview (its newest message).
    pub async fn open_conversation(&self, preview: &str) {
        self.wait_js(
            &format!("a conversation row with the preview {preview:?}, clicked"),
            "const row = [...document.querySelectorAll('[data-testid=conversation]')]
                .find(r => r.querySelector('.preview').textContent === arguments[0]);
             if (row) row.click();
             return !!row",
            vec![json!(preview)],
        )
        .await;
    }

    /// Runs axe-core (from `$ESCALERA_AXE`, which `make test` sets) on the current document
    /// (the frame entered, if any; other frames are left out) and returns its serious and
    /// critical violations, one line each: rule, help, and where.
    pub async fn axe_serious(&self) -> Vec<String> {
        let defined = self
            .js(
                &format!(
                    "{}\n;if (typeof axe !== 'undefined') window.axe = axe; return typeof window.axe",
                    axe_source()
                ),
                vec![],
            )
            .await;
        assert_eq!(defined, json!("object"), "axe-core did not load");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { iframes: false, resultTypes: ['violations'] })
                    .then(r => done(r.violations
                        .filter(v => v.impact === 'serious' || v.impact === 'critical')
                        .flatMap(v => v.nodes.map(n =>
                            `${v.id} (${v.impact}): ${v.help} at ${n.target.join(' ')}: ${n.failureSummary}`))))
                    .catch(e => done(['axe failed: ' + e]))",
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value(found).unwrap()
    }

    /// Opens the widget on a host page: clicks the launcher and enters the iframe.
    pub async fn open_widget(&self) {
        self.click("launcher").await;
        self.enter_widget().await;
        self.find("chat-input").await;
    }

    /// From the host page, enters the widget's iframe (WebDriver commands then act in it).
    pub async fn enter_widget(&self) {
        let frame = self.find("widget-frame").await;
        frame.enter_frame().await.unwrap();
    }

    /// Logs an agent in on the console page.
    pub async fn login(&self, relay_url: &str, email: &str) {
        self.goto(&format!("{relay_url}/agent")).await;
        self.login_here(email).await;
    }

    /// Logs an agent in on the console page already open.
    pub async fn login_here(&self, email: &str) {
        self.find("login-email")
            .await
            .send_keys(email)
            .await
            .unwrap();
        self.find("login-password")
            .await
            .send_keys(PASSWORD)
            .await
            .unwrap();
        self.click("login-submit").await;
        self.wait_js(
            "the console after login",
            "return document.querySelector('.console') !== null",
            vec![],
        )
        .await;
    }

    /// Ends the session (and the Chromium).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// axe-core's browser bundle, read once.
fn axe_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = std::env::var("ESCALERA_AXE").expect(
            "ESCALERA_AXE: the path of axe.min.js (make test installs axe-core and sets it)",
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The visitor (in the widget on the demo page) and the agent (in the console, having
/// replied, so the conversation is theirs).
pub async fn chatting(product: &Product, driver: &mut Driver) -> (Browser, Browser) {
    let visitor = driver.browser().await;
    let agent = driver.browser().await;
    visitor.goto(&product.demo_url).await;
    visitor.open_widget().await;
    visitor.say("Hello, my coffee machine leaks").await;
    agent.login(&product.relay_url, "ana@shop.example").await;
    agent.click("conversation").await;
    agent.say("Hi! Let's call.").await;
    visitor.wait_message("agent", "Hi! Let's call.").await;
    (visitor, agent)
}

/// Both sides' connection diagnostics (the call status line's data attributes).
pub async fn call_diagnostics(visitor: &Browser, agent: &Browser) -> String {
    let read = "const l = document.querySelector('.stage-label');
        return l ? Object.assign({}, l.dataset) : null";
    format!(
        "visitor {}, agent {}",
        visitor.js(read, vec![]).await,
        agent.js(read, vec![]).await
    )
}

/// Agent calls, visitor accepts: a voice call on both sides.
pub async fn voice_call(visitor: &Browser, agent: &Browser) {
    agent.click("call-voice").await;
    visitor.click("call-accept").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for side in [visitor, agent] {
        loop {
            let ice = side
                .js(
                    "const l = document.querySelector('.stage-label'); return l && l.dataset.ice",
                    vec![],
                )
                .await;
            if ice == json!("connected") || ice == json!("completed") {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the voice call never connected: {}",
                    call_diagnostics(visitor, agent).await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        side.wait_remote_audio().await;
        side.wait_message("system", "Voice call started").await;
    }
}

/// Waits until the call panel's status starts with `prefix`.
pub async fn wait_status(side: &Browser, prefix: &str) {
    side.wait_js(
        &format!("the call's status to start with {prefix:?}"),
        "const s = document.querySelector('[data-testid=call-status]');
         return s !== null && s.textContent.startsWith(arguments[0])",
        vec![json!(prefix)],
    )
    .await;
}

/// How many messages by `author` read exactly `text`.
pub async fn count(side: &Browser, author: &str, text: &str) -> usize {
    side.messages()
        .await
        .iter()
        .filter(|(a, t)| a == author && t == text)
        .count()
}

/// How many system messages start with `prefix`.
pub async fn notes(side: &Browser, prefix: &str) -> usize {
    side.messages()
        .await
        .iter()
        .filter(|(author, text)| author == "system" && text.starts_with(prefix))
        .count()
}

/// The newest attachment image's size and mean brightness (async script): a real picture,
/// not a black frame.
const IMAGE_STATS: &str = "const done = arguments[arguments.length - 1];
    const imgs = [...document.querySelectorAll('[data-testid=attachment] img')];
    const img = imgs[imgs.length - 1];
    if (!img) return done(null);
    const measure = () => {
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const x = c.getContext('2d'); x.drawImage(img, 0, 0);
        const d = x.getImageData(0, 0, c.width, c.height).data;
        let sum = 0; for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
        done({ w: c.width, h: c.height, mean: sum / (d.length / 4 * 3) });
    };
    if (img.complete && img.naturalWidth) measure();
    else { img.onload = measure; img.onerror = () => done(null); }";
