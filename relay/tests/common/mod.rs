//! Shared by the relay's socket tests: a relay on port 0 with a temp data dir, and a typed
//! WebSocket client.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use escalera_testkit::{free_port, nats, postgres};

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use escalera_protocol::{
    CallAction, CallInfo, ClientMsg, ClientMsgId, ConversationId, ErrorCode, Message, ServerMsg,
    SiteKey, VisitorToken, PROTOCOL_VERSION,
};
use escalera_relay::store::{Directory, Record, Site};
use escalera_relay::{now_ms, secrets, Config, Relay};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The site's allowed origin in every test.
pub const SHOP: &str = "https://shop.example";
/// Every agent's password.
pub const PASSWORD: &str = "correct horse battery";

/// A relay serving on loopback for one test.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub site: Site,
    pub other_site: Site,
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database it keeps its record in, when not SQLite in `dir`.
    pub database: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Creates the fixtures in a store: two sites, and agents ana (all sites, an admin) and ben
/// (other site).
pub async fn seed(store: &dyn Directory) -> (Site, Site) {
    let site = store
        .add_site("Shop".into(), vec![SHOP.to_owned()], now_ms())
        .await
        .unwrap();
    let other = store
        .add_site(
            "Other".into(),
            vec!["https://other.example".to_owned()],
            now_ms(),
        )
        .await
        .unwrap();
    let hash = secrets::hash_password(PASSWORD);
    store
        .add_agent(
            "ana@shop.example".into(),
            "Ana".into(),
            hash.clone(),
            None,
            now_ms(),
        )
        .await
        .unwrap();
    // Ana is an admin (as the first agent of `make run` is); Ben is not.
    store
        .set_admin("ana@shop.example".into(), true)
        .await
        .unwrap();
    store
        .add_agent(
            "ben@shop.example".into(),
            "Ben".into(),
            hash,
            Some(vec![other.key.clone()]),
            now_ms(),
        )
        .await
        .unwrap();
    (site, other)
}

/// The record the relay's tests run on: SQLite in their data dir (`None`), or, with
/// `ESCALERA_TEST_STORE=postgres` (scripts/test.sh runs the relay's tests both ways), a fresh
/// database on the test process's PostgreSQL server.
pub async fn test_database() -> Option<String> {
    match std::env::var("ESCALERA_TEST_STORE").as_deref() {
        Ok("postgres") => Some(postgres::database().await),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("ESCALERA_TEST_STORE={other}: sqlite or postgres"),
    }
}

/// A second store on a record (SQLite in `dir`, or PostgreSQL at `database`), as another
/// process (the command line, another node) has it.
pub async fn record(dir: &Path, database: Option<&str>) -> Box<dyn Record> {
    match database {
        Some(url) => Box::new(
            escalera_relay::postgres::PgStore::connect(url)
                .await
                .unwrap(),
        ),
        None => Box::new(escalera_relay::sqlite::SqliteStore::open(dir).unwrap()),
    }
}

/// A relay on SQLite in `dir`, or on PostgreSQL at `database`.
async fn open(dir: &Path, database: Option<&str>, config: Config) -> Relay {
    match database {
        Some(url) => Relay::open_postgres(url, None, dir, config).await.unwrap(),
        None => Relay::open(dir, config).unwrap(),
    }
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    /// A relay on a fresh record ([`test_database`]).
    pub async fn start_with(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = test_database().await;
        let relay = open(dir.path(), database.as_deref(), config).await;
        let (site, other_site) = seed(&**relay.state.hub.directory()).await;
        Self::serve(relay, dir, database, site, other_site).await
    }

    /// One node of several: a relay on the PostgreSQL database `database` and the NATS bus
    /// `bus`, its files in `data` (shared with the other nodes); the record's fixtures are
    /// the two sites [`seed`] made.
    pub async fn start_node(
        data: &Path,
        database: &str,
        bus: &str,
        config: Config,
        (site, other_site): (Site, Site),
    ) -> Self {
        let relay = Relay::open_postgres(database, Some(bus), data, config)
            .await
            .unwrap();
        let own = tempfile::tempdir().unwrap();
        Self::serve(relay, own, Some(database.to_owned()), site, other_site).await
    }

    /// The relay `node` (its fixtures) as reached at `url`, a proxy in front of it: for
    /// clients only (it stops nothing).
    pub fn through(url: &str, node: &TestRelay) -> TestRelay {
        TestRelay {
            addr: url.trim_start_matches("http://").parse().unwrap(),
            site: node.site.clone(),
            other_site: node.other_site.clone(),
            dir: tempfile::tempdir().unwrap(),
            database: node.database.clone(),
            stop: None,
            task: None,
        }
    }

    /// A relay on a fresh SQLite record, whatever `ESCALERA_TEST_STORE` says.
    pub async fn start_on_sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let relay = open(dir.path(), None, Config::default()).await;
        let (site, other_site) = seed(&**relay.state.hub.directory()).await;
        Self::serve(relay, dir, None, site, other_site).await
    }

    /// A relay on an existing record (SQLite in `dir`, or PostgreSQL at `database`), whose
    /// fixtures are `site` and `other_site`.
    pub async fn start_on(
        dir: tempfile::TempDir,
        database: Option<String>,
        site: Site,
        other_site: Site,
    ) -> Self {
        let relay = open(dir.path(), database.as_deref(), Config::default()).await;
        Self::serve(relay, dir, database, site, other_site).await
    }

    /// A second store on this relay's record, as another process (the command line) has it.
    pub async fn record(&self) -> Box<dyn Record> {
        record(self.dir.path(), self.database.as_deref()).await
    }

    /// Serves `relay` on a new loopback port.
    async fn serve(
        relay: Relay,
        dir: tempfile::TempDir,
        database: Option<String>,
        site: Site,
        other_site: Site,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(relay.run(listener, None, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            site,
            other_site,
            dir,
            database,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the relay and starts another on the same data dir (and a new port).
    pub async fn restart(self) -> Self {
        let (site, other_site) = (self.site.clone(), self.other_site.clone());
        let database = self.database.clone();
        let dir = self.stop().await;
        Self::start_on(dir, database, site, other_site).await
    }

    /// A visitor of the main site with `token`, and the welcome they got.
    pub async fn visitor_welcome(&self, token: Option<VisitorToken>) -> (Ws, ServerMsg) {
        let mut ws = self.visitor_socket(&self.site.key, SHOP).await.unwrap();
        ws.send(&ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token,
            identity: None,
            resume: None,
        })
        .await;
        let welcome = ws.recv().await;
        (ws, welcome)
    }

    /// Adds an agent serving every site, with the common password.
    pub async fn add_agent(&self, email: &str, name: &str) {
        let store = self.record().await;
        let hash = secrets::hash_password(PASSWORD);
        let add = store.add_agent(email.into(), name.into(), hash, None, now_ms());
        add.await.unwrap();
    }

    /// Sets what the main site offers (the relay reads it from the store).
    pub async fn set_features(&self, features: escalera_protocol::SiteFeatures) {
        let store = self.record().await;
        let set = store.set_features(self.site.key.clone(), features);
        assert!(set.await.unwrap());
    }

    /// Sets how many open conversations routing gives an agent (read when a console of the
    /// team next says hello).
    pub async fn set_limit(&self, email: &str, limit: u32) {
        let store = self.record().await;
        assert!(store.set_limit(email.into(), limit).await.unwrap());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Opens a visitor socket from `origin` without saying hello.
    pub async fn visitor_socket(&self, site: &SiteKey, origin: &str) -> Result<Ws, u16> {
        Ws::connect(
            &format!("ws://{}/ws/visitor?site={site}", self.addr),
            origin,
            None,
        )
        .await
    }

    /// A visitor of the main site, welcomed; returns the socket, token and conversation.
    pub async fn visitor(
        &self,
        token: Option<VisitorToken>,
    ) -> (Ws, VisitorToken, escalera_protocol::ConversationId) {
        let ws = self.visitor_socket(&self.site.key, SHOP).await.unwrap();
        welcome(ws, token)
            .await
            .unwrap_or_else(|other| panic!("expected a welcome, got {other:?}"))
    }

    /// A visitor of the main site from `127.0.0.n` with `token`: welcomed (socket, token,
    /// conversation), or what the relay said instead.
    pub async fn visitor_from(
        &self,
        n: u8,
        token: Option<VisitorToken>,
    ) -> Result<(Ws, VisitorToken, escalera_protocol::ConversationId), ServerMsg> {
        let url = format!("ws://{}/ws/visitor?site={}", self.addr, self.site.key);
        welcome(Ws::connect_from(n, &url, SHOP).await.unwrap(), token).await
    }

    /// Rows of a table in the relay's database (read beside the relay, as the CLI does).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.database {
            Some(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client.query_one(&sql, &[]).await.unwrap().get(0)
            }
            None => {
                let db = rusqlite::Connection::open(self.dir.path().join("escalera.db")).unwrap();
                db.query_row(&sql, [], |r| r.get(0)).unwrap()
            }
        }
    }

    /// Logs in over HTTP and returns the session cookie (`name=value`).
    pub async fn login(&self, email: &str) -> String {
        let res = reqwest::Client::new()
            .post(self.url("/api/login"))
            .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login of {email}");
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        cookie.split(';').next().unwrap().to_owned()
    }

    /// An agent's socket, welcomed; returns the welcome too.
    pub async fn agent(&self, email: &str) -> (Ws, ServerMsg) {
        let cookie = self.login(email).await;
        let (ws, welcome) = self.console(&cookie).await;
        assert!(
            matches!(welcome, ServerMsg::WelcomeAgent { .. }),
            "{welcome:?}"
        );
        (ws, welcome)
    }

    /// A console socket of the session `cookie` that said hello, and the first frame it got.
    pub async fn console(&self, cookie: &str) -> (Ws, ServerMsg) {
        let origin = format!("http://{}", self.addr);
        let mut ws = Ws::connect(
            &format!("ws://{}/ws/agent", self.addr),
            &origin,
            Some(cookie),
        )
        .await
        .unwrap();
        ws.send(&ClientMsg::Hello {
            protocol: PROTOCOL_VERSION,
            token: None,
            identity: None,
            resume: None,
        })
        .await;
        let first = ws.recv().await;
        (ws, first)
    }

    /// A visitor and Ana in one conversation Ana has taken, both joined and past the
    /// join's history, call state and the take's messages.
    pub async fn pair(&self) -> (Ws, Ws, escalera_protocol::ConversationId, VisitorToken) {
        let (mut visitor, token, conv) = self.visitor(None).await;
        // A conversation is stored with its visitor's first message: until then no agent
        // can see it.
        visitor
            .send(&ClientMsg::Chat {
                conversation: conv.clone(),
                client_id: ClientMsgId::from("hello"),
                text: "Hello".into(),
            })
            .await;
        ack(&mut visitor).await;
        let (mut agent, _) = self.agent("ana@shop.example").await;
        for ws in [&mut visitor, &mut agent] {
            ws.send(&ClientMsg::Join {
                conversation: conv.clone(),
                after_seq: 0,
            })
            .await;
            ws.recv_until(|m| matches!(m, ServerMsg::Call { .. }).then_some(()))
                .await;
        }
        agent
            .send(&ClientMsg::Chat {
                conversation: conv.clone(),
                client_id: ClientMsgId::from("hi"),
                text: "Hi".into(),
            })
            .await;
        for ws in [&mut visitor, &mut agent] {
            ws.recv_until(|m| match m {
                ServerMsg::Message(m) if m.text == "Hi" => Some(()),
                _ => None,
            })
            .await;
        }
        (visitor, agent, conv, token)
    }

    /// Stops the relay gracefully and waits for it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

/// Says hello as a visitor with `token`: the welcome (socket, token, conversation), or what
/// the relay said instead.
pub async fn welcome(
    mut ws: Ws,
    token: Option<VisitorToken>,
) -> Result<(Ws, VisitorToken, escalera_protocol::ConversationId), ServerMsg> {
    ws.send(&ClientMsg::Hello {
        protocol: PROTOCOL_VERSION,
        token,
        identity: None,
        resume: None,
    })
    .await;
    match ws.recv().await {
        ServerMsg::WelcomeVisitor {
            token,
            conversation,
            ..
        } => Ok((ws, token, conversation)),
        other => Err(other),
    }
}

/// A typed WebSocket client.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Connects with an `Origin` (and a cookie); `Err(status)` if the upgrade was refused.
    pub async fn connect(url: &str, origin: &str, cookie: Option<&str>) -> Result<Ws, u16> {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
        if let Some(c) = cookie {
            req.headers_mut()
                .insert("cookie", HeaderValue::from_str(c).unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, _)) => Ok(Ws { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    /// Connects from `127.0.0.n` (another address, as far as the relay sees), with an
    /// `Origin`.
    pub async fn connect_from(n: u8, url: &str, origin: &str) -> Result<Ws, u16> {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, n], 0))).unwrap();
        let host = req.uri().authority().unwrap().as_str().to_owned();
        let tcp = socket.connect(host.parse().unwrap()).await.unwrap();
        match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await {
            Ok((stream, _)) => Ok(Ws { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        self.send_text(&serde_json::to_string(msg).unwrap()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(WsMessage::Text(text.into()))
            .await
            .unwrap();
    }

    /// The next message (pings skipped); panics after 15 s (a busy 2-core machine running
    /// other tests at once can stall a socket for seconds) or on close.
    pub async fn recv(&mut self) -> ServerMsg {
        self.try_recv(Duration::from_secs(15))
            .await
            .expect("a message within 15 s")
    }

    /// The next message within `wait`, or `None` on timeout or close.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<ServerMsg> {
        loop {
            match tokio::time::timeout(wait, self.stream.next()).await {
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("a ServerMsg"))
                }
                Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
                _ => return None,
            }
        }
    }

    /// Receives until `pick` returns something; other messages are skipped.
    pub async fn recv_until<T>(&mut self, mut pick: impl FnMut(ServerMsg) -> Option<T>) -> T {
        loop {
            if let Some(t) = pick(self.recv().await) {
                return t;
            }
        }
    }

    /// Whether the server closed the socket within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(WsMessage::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

impl Ws {
    /// The close code the server sent within `wait` (frames before it skipped); `None` if it
    /// closed without one, or did not close.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(WsMessage::Close(frame)))) => return frame.map(|f| f.code.into()),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }
}

/// Runs the real binary: `escalera serve` on a free port, on SQLite in `data_dir` or on
/// PostgreSQL at `database`; returns the child and its base URL.
pub fn spawn_binary(data_dir: &Path, database: Option<&str>) -> (std::process::Child, String) {
    spawn_node(data_dir, database, None)
}

/// [`spawn_binary`], as one node of several when `bus` names a NATS server.
pub fn spawn_node(
    data_dir: &Path,
    database: Option<&str>,
    bus: Option<&str>,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_escalera"));
    if let Some(url) = database {
        command.env("ESCALERA_DATABASE_URL", url);
    }
    if let Some(url) = bus {
        command.env("ESCALERA_BUS_URL", url);
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--demo-listen", "off"])
        .env("ESCALERA_DATA_DIR", data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("escalera printed its URLs").unwrap();
        if let Some(rest) = line.trim().strip_prefix("Agent console: ") {
            break rest.trim_end_matches("/agent").to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// Joins `conversation` from its start: the texts of its history.
pub async fn texts_of(ws: &mut Ws, conversation: &ConversationId) -> Vec<String> {
    ws.send(&ClientMsg::Join {
        conversation: conversation.clone(),
        after_seq: 0,
    })
    .await;
    history(ws).await.into_iter().map(|m| m.text).collect()
}

/// The next frame of this kind (others are skipped).
pub async fn history(ws: &mut Ws) -> Vec<Message> {
    ws.recv_until(|m| match m {
        ServerMsg::History { messages, .. } => Some(messages),
        _ => None,
    })
    .await
}

/// The next frame of this kind (others are skipped).
pub async fn ack(ws: &mut Ws) -> (ClientMsgId, u64) {
    ws.recv_until(|m| match m {
        ServerMsg::Ack { client_id, seq, .. } => Some((client_id, seq)),
        _ => None,
    })
    .await
}

/// The next frame of this kind (others are skipped).
pub async fn message(ws: &mut Ws) -> Message {
    ws.recv_until(|m| match m {
        ServerMsg::Message(m) => Some(m),
        _ => None,
    })
    .await
}

/// The next frame of this kind (others are skipped).
pub async fn error(ws: &mut Ws) -> ErrorCode {
    ws.recv_until(|m| match m {
        ServerMsg::Error { code, .. } => Some(code),
        _ => None,
    })
    .await
}

/// A call action frame.
pub fn call(conversation: &ConversationId, action: CallAction) -> ClientMsg {
    ClientMsg::Call {
        conversation: conversation.clone(),
        action,
    }
}

/// A signaling frame.
pub fn signal(conversation: &ConversationId, payload: &str) -> ClientMsg {
    ClientMsg::Signal {
        conversation: conversation.clone(),
        payload: payload.into(),
    }
}

/// The next call state a socket is told.
pub async fn call_state(ws: &mut Ws) -> Option<CallInfo> {
    ws.recv_until(|m| match m {
        ServerMsg::Call { call, .. } => Some(call),
        _ => None,
    })
    .await
}

/// The next place in line a visitor is told, with whether anyone is available.
pub async fn queue_of(ws: &mut Ws) -> (u32, bool) {
    ws.recv_until(|m| match m {
        ServerMsg::Queue {
            position, online, ..
        } => Some((position, online)),
        _ => None,
    })
    .await
}

/// The name of the next agent a visitor is told is with them.
pub async fn joined(ws: &mut Ws) -> String {
    ws.recv_until(|m| match m {
        ServerMsg::AgentJoined { agent_name, .. } => Some(agent_name),
        _ => None,
    })
    .await
}
