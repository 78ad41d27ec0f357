//! The embedded default store: one SQLite file in the data dir, WAL, `synchronous=FULL`.
//!
//! - Log writes go to one writer thread that commits them in groups: whatever arrived while
//!   the previous commit was on its way to disk goes into the next transaction, each in its
//!   own savepoint (one failing does not undo the others), and is answered only after that
//!   transaction's commit is durable. One fsync for many messages, and still "ack after the
//!   commit, never before".
//! - Reads (history, conversation lookups) use a small pool of read-only connections: WAL
//!   readers never wait for the writer, nor the writer for them.
//! - The directory (sites, agents, sessions, settings) has its own connection.
//!
//! Every call runs on a blocking thread; the async traits of [`crate::store`] wrap them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use escalera_protocol::{
    AgentId, AgentRef, Attachment, Author, CannedReply, ClientMsgId, ConversationId,
    ConversationStatus, ConversationSummary, FileId, Message, Presence, Rating, ReadMark,
    SearchHit, SiteFeatures, SiteKey, SiteLook, VisitorInfo,
};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::core::{CallRecord, ConversationMeta, NewMessage, Scope};
use crate::error::StoreError;
use crate::secrets;
use crate::store::{
    author_str, json_col, kind_str, parse_author, parse_kind, parse_rating, preview, private,
    rating_str, visitor_label, Agent, AgentListing, Appended, AuditEntry, Directory, HistoryPage,
    Log, OpenConversation, Site, StoreFuture, VerifiedUser, VisitorDetails,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer before callers wait for room.
const WRITE_QUEUE: usize = 4096;
/// Read connections, kept open; at most this many reads run at once (the others wait their
/// turn without holding a thread).
const READERS: usize = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sites (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS site_origins (
    site_key TEXT NOT NULL REFERENCES sites(key), origin TEXT NOT NULL,
    PRIMARY KEY (site_key, origin));
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    password_hash TEXT NOT NULL, all_sites INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agent_sites (
    agent_id TEXT NOT NULL REFERENCES agents(id), site_key TEXT NOT NULL REFERENCES sites(key),
    PRIMARY KEY (agent_id, site_key));
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, agent_id TEXT NOT NULL REFERENCES agents(id),
    expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, site_key TEXT NOT NULL REFERENCES sites(key),
    agent_id TEXT REFERENCES agents(id), last_seq INTEGER NOT NULL DEFAULT 0,
    last_at INTEGER NOT NULL, preview TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_activity ON conversations (site_key, last_at);
CREATE TABLE IF NOT EXISTS visitors (
    token_hash TEXT PRIMARY KEY, site_key TEXT NOT NULL REFERENCES sites(key),
    conversation_id TEXT NOT NULL REFERENCES conversations(id), created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id), seq INTEGER NOT NULL,
    client_id TEXT, author TEXT NOT NULL, author_name TEXT, text TEXT NOT NULL,
    at INTEGER NOT NULL, PRIMARY KEY (conversation_id, seq));
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id
    ON messages (conversation_id, client_id) WHERE client_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS reads (
    agent_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (agent_id, conversation_id));
"#;

/// Schema changes after the first release, applied in order; `PRAGMA user_version` counts them.
const MIGRATIONS: &[&str] = &[
    // 1: files (attachments and snapshots).
    r#"
CREATE TABLE files (
    id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
    name TEXT NOT NULL, size INTEGER NOT NULL, mime TEXT NOT NULL, sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL);
ALTER TABLE messages ADD COLUMN attachment_id TEXT REFERENCES files(id);
"#,
    // 2: active calls, so that they outlive a restart of the relay.
    r#"
CREATE TABLE calls (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id),
    site_key TEXT NOT NULL, kind TEXT NOT NULL, caller TEXT NOT NULL,
    caller_name TEXT NOT NULL, since INTEGER NOT NULL);
"#,
    // 3: agents can be disabled (and removed: disabled for good); expired sessions are purged.
    r#"
ALTER TABLE agents ADD COLUMN disabled_at INTEGER;
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE INDEX sessions_agent ON sessions (agent_id);
"#,
    // 4: where a visitor came from (their address, an IPv6 host as its /64), so that one
    // address cannot fill the agents' list with waiting conversations.
    r#"
ALTER TABLE conversations ADD COLUMN address TEXT;
CREATE INDEX conversations_waiting_address ON conversations (address, created_at)
    WHERE agent_id IS NULL;
"#,
    // 5: what each agent chose to be (available, away, offline), kept over restarts.
    r#"
ALTER TABLE agents ADD COLUMN presence TEXT NOT NULL DEFAULT 'available';
"#,
    // 6: the desk: each agent's chat limit for routing; conversations closed and reopened,
    // rated, and the email a visitor left.
    r#"
ALTER TABLE agents ADD COLUMN chat_limit INTEGER NOT NULL DEFAULT 5;
ALTER TABLE conversations ADD COLUMN closed_at INTEGER;
ALTER TABLE conversations ADD COLUMN rating TEXT;
ALTER TABLE conversations ADD COLUMN email TEXT;
CREATE INDEX conversations_open ON conversations (created_at)
    WHERE closed_at IS NULL AND last_seq > 0;
"#,
    // 7: canned replies per site, and full-text search over every message (FTS5, kept in
    // step by a trigger; messages are never edited).
    r#"
CREATE TABLE canned (
    id TEXT PRIMARY KEY, site_key TEXT NOT NULL REFERENCES sites(key),
    shortcut TEXT NOT NULL, text TEXT NOT NULL, created_at INTEGER NOT NULL,
    UNIQUE (site_key, shortcut));
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content='messages', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2');
INSERT INTO messages_fts (rowid, text) SELECT rowid, text FROM messages;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
"#,
    // 8: the visitor as the agents see them: where they are (JSON, from their widget) and the
    // name agents gave them.
    r#"
ALTER TABLE conversations ADD COLUMN visitor_info TEXT;
ALTER TABLE conversations ADD COLUMN visitor_name TEXT;
"#,
    // 9: what each site offers (the ladder's steps, screen, files, snapshots), as JSON; none
    // means everything.
    r#"
ALTER TABLE sites ADD COLUMN features TEXT;
"#,
    // 10: the site owner's side: agents are admins or not (the first one is), how each site's
    // widget looks (JSON; none means the defaults), and the audit log of settings changes.
    r#"
ALTER TABLE agents ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
UPDATE agents SET admin = 1 WHERE id = (
    SELECT id FROM agents WHERE disabled_at IS NULL ORDER BY created_at, id LIMIT 1);
ALTER TABLE sites ADD COLUMN look TEXT;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL);
"#,
    // 11: identity: each site's secret for the hash of its users' ids (made here for the sites
    // there are; new ones get theirs from the relay), whether it requires one, and the user a
    // conversation belongs to.
    r#"
ALTER TABLE sites ADD COLUMN identity_secret TEXT;
UPDATE sites SET identity_secret = lower(hex(randomblob(32)));
ALTER TABLE sites ADD COLUMN identity_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX conversations_user ON conversations (site_key, external_id)
    WHERE external_id IS NOT NULL;
"#,
    // 12: languages: what a system message records (JSON), for browsers to say in their own
    // language; older lines have none and show their English text.
    r#"
ALTER TABLE messages ADD COLUMN event TEXT;
"#,
    // 13: email: one-time links back to a conversation, sent with an agent's reply.
    r#"
CREATE TABLE links (
    hash TEXT PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
    expires_at INTEGER NOT NULL);
"#,
    // 14: counts in windows, for the limits that hold across nodes (the same table as
    // PostgreSQL's, so the store contract is one).
    r#"
CREATE TABLE limit_counts (
    key TEXT PRIMARY KEY, ends INTEGER NOT NULL, n INTEGER NOT NULL);
CREATE INDEX limit_counts_ends ON limit_counts (ends);
"#,
];

/// `AND <column> IN (?n, ...)` for the sites of `scope` (nothing for every site), with the
/// values to bind after the first `first - 1` parameters.
fn scope_clause(scope: &Scope, column: &str, first: usize) -> (String, Vec<String>) {
    match scope {
        Scope::All => (String::new(), Vec::new()),
        Scope::Sites(sites) => {
            let marks: Vec<String> = (0..sites.len())
                .map(|i| format!("?{}", i + first))
                .collect();
            let keys = sites.iter().map(|s| s.0.clone()).collect();
            // No site at all matches nothing.
            let list = if marks.is_empty() {
                "NULL".to_owned()
            } else {
                marks.join(",")
            };
            (format!(" AND {column} IN ({list})"), keys)
        }
    }
}

/// Words ([`crate::store::search_words`]) as an FTS5 query: each one quoted (so nothing in
/// them is syntax), all required, the last one as a prefix (it may be half typed).
pub fn fts_query(words: &[String]) -> Option<String> {
    let (last, rest) = words.split_last()?;
    let mut query: Vec<String> = rest.iter().map(|w| format!("\"{w}\"")).collect();
    query.push(format!("\"{last}\"*"));
    Some(query.join(" "))
}

/// A write for the writer thread: runs in its own savepoint and says whether it succeeded;
/// `Finish` is called after the transaction's commit (with its outcome).
type Job = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// The embedded SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    commits: Arc<AtomicU64>,
    directory: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection.
    read_turns: Arc<tokio::sync::Semaphore>,
    writer: mpsc::Sender<Job>,
    /// Waiting conversations listed per address (the oldest; the others wait unlisted).
    listed_per_address: std::sync::atomic::AtomicU32,
    /// Sites as last read, each for [`SITE_FRESH`]: every visitor socket looks its site up.
    /// Emptied by any store's change to a site, this process's or another's (the command line
    /// on the same data dir): each change touches [`SITES_CHANGED`], looked at on every use.
    sites: Mutex<SiteCache>,
}

/// The file, beside the database, that says when a site last changed (a new time written
/// into it at each change; read, not its modification time, which may not move between two
/// changes close together).
const SITES_CHANGED: &str = "sites.changed";

/// How long a site read is used again.
const SITE_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
struct SiteCache {
    sites: std::collections::HashMap<SiteKey, (Site, std::time::Instant)>,
    /// Bumped by every change: a read that began before one is not kept.
    generation: u64,
    /// [`SITES_CHANGED`] when the sites above were read.
    changed: Option<Vec<u8>>,
}

impl Inner {
    fn sites(&self) -> std::sync::MutexGuard<'_, SiteCache> {
        self.sites.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sites_changed(&self) -> std::path::PathBuf {
        self.path.with_file_name(SITES_CHANGED)
    }

    /// A site is being written by this store: read afresh from now on.
    fn forget_sites(&self) {
        let mut cache = self.sites();
        cache.sites.clear();
        cache.generation += 1;
    }

    /// A site was written by this store: [`Self::forget_sites`], here and (by
    /// [`SITES_CHANGED`]) in any other process on the same data dir.
    fn sites_written(&self) {
        self.forget_sites();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = format!("{} {}", now.as_nanos(), std::process::id());
        if let Err(e) = std::fs::write(self.sites_changed(), stamp) {
            tracing::warn!("cannot write {SITES_CHANGED}: {e}");
        }
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    // WAL lets readers, the writer and the CLI work at once; FULL makes each commit durable.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_plans(&conn)?;
    Ok(conn)
}

/// Keeps each cached statement's query plan. Without this, SQLite marks a statement whose
/// plan could depend on a bound value (a partial index, a LIKE) for a fresh prepare at every
/// reuse: a third of the relay's time under chat load went to re-parsing the same queries.
fn stable_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// A read-only connection: the database is in WAL mode already, so it sets nothing that
/// would need a lock.
fn connect_reader(path: &Path) -> Result<Connection> {
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    stable_plans(&conn)?;
    Ok(conn)
}

/// Gives a visitor's token (its hash) conversation `id` of `site`.
fn add_token(c: &Connection, token_hash: &str, site: &str, id: &str, now: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO visitors (token_hash, site_key, conversation_id, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![token_hash, site, id, now])?;
    Ok(())
}

/// Ends every session of the agent with this (lowercase) email.
fn end_sessions_of(conn: &Connection, email: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM sessions WHERE agent_id IN (SELECT id FROM agents WHERE email = ?1)",
        [email],
    )?;
    Ok(())
}

/// Lets agent `id` serve these sites; fails on an unknown one.
fn add_agent_sites<'a>(
    conn: &Connection,
    id: &str,
    sites: impl Iterator<Item = &'a SiteKey>,
) -> Result<()> {
    for site in sites {
        let known: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sites WHERE key = ?1)",
            [&site.0],
            |r| r.get(0),
        )?;
        if !known {
            return Err(StoreError::Invalid(format!("no site with key {site}")));
        }
        conn.execute(
            "INSERT OR IGNORE INTO agent_sites (agent_id, site_key) VALUES (?1, ?2)",
            params![id, site.0],
        )?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/escalera.db` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        // Transcripts and password hashes are for this user only: the folder is closed to
        // others, and the database files too.
        private(dir, 0o700)?;
        let path = dir.join("escalera.db");
        let mut conn = connect(&path)?;
        for file in ["escalera.db", "escalera.db-wal", "escalera.db-shm"] {
            if dir.join(file).exists() {
                private(&dir.join(file), 0o600)?;
            }
        }
        conn.execute_batch(SCHEMA)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in (0i64..).zip(MIGRATIONS).skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        let writer_conn = connect(&path)?;
        let (writer, jobs) = mpsc::channel(WRITE_QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name("escalera-sqlite-writer".into())
            .spawn(move || write_loop(writer_conn, jobs, &counter))
            .map_err(|e| StoreError::Invalid(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                commits,
                directory: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                read_turns: Arc::new(tokio::sync::Semaphore::new(READERS)),
                writer,
                listed_per_address: crate::store::LISTED_PER_ADDRESS.into(),
                sites: Mutex::default(),
            }),
        })
    }

    /// How many waiting conversations of one address the agents' list shows.
    pub fn set_listed_per_address(&self, n: u32) {
        self.inner
            .listed_per_address
            .store(n.max(1), Ordering::Relaxed);
    }

    fn listed_per_address(&self) -> u32 {
        self.inner.listed_per_address.load(Ordering::Relaxed)
    }

    /// How many group commits the writer has made (each one fsync of the log).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the directory's connection, on the blocking pool.
    fn dir<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = inner.directory.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut conn)
            })
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
        })
    }

    /// [`Self::dir`] for a change to a site: the cached sites are forgotten once it is made
    /// (and before, so a read under way meanwhile is not kept).
    fn site_change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let inner = self.inner.clone();
        inner.forget_sites();
        let change = self.dir(f);
        Box::pin(async move {
            let done = change.await;
            inner.sites_written();
            done
        })
    }

    /// Runs `f` on a read-only connection from the pool, on the blocking pool, once one of
    /// the [`READERS`] is free. A connection is opened only while the pool is short of
    /// [`READERS`] (opening one parses the schema: far dearer than most reads).
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let turn = inner.read_turns.clone().acquire_owned().await;
            let turn = turn.map_err(|e| StoreError::Join(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let pooled = inner
                    .readers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop();
                let conn = match pooled {
                    Some(c) => c,
                    None => connect_reader(&inner.path)?,
                };
                let result = f(&conn);
                inner
                    .readers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
                drop(turn);
                result
            })
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
        })
    }

    /// Queues `f` for the writer; resolves with its result once its group is committed.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let (done, answer) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let _ = done.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Invalid(format!("commit failed: {e}"))),
                });
            });
            (ok, finish)
        });
        let writer = self.inner.writer.clone();
        Box::pin(async move {
            let stopped = || StoreError::Join("the SQLite writer stopped".into());
            writer.send(job).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]), runs each in a savepoint
/// of one transaction, commits once, then answers them all.
fn write_loop(mut conn: Connection, mut jobs: mpsc::Receiver<Job>, commits: &AtomicU64) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut finishes = Vec::with_capacity(batch.len());
        let outcome = (|| -> rusqlite::Result<()> {
            // IMMEDIATE: the write lock is taken (waiting out the busy timeout) before the
            // first read. A deferred transaction that read first fails at its first write,
            // without waiting, if the directory's connection committed meanwhile.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Cached statements, not rusqlite's `Savepoint`, which parses its SQL each time.
            for job in batch.drain(..) {
                tx.prepare_cached("SAVEPOINT job")?.execute([])?;
                let (ok, finish) = job(&tx);
                finishes.push(finish);
                if !ok {
                    // Back to before this job; the others stand.
                    tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
                }
                tx.prepare_cached("RELEASE job")?.execute([])?;
            }
            tx.commit()
        })();
        if outcome.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = outcome.map_err(|e| {
            tracing::error!("sqlite group commit failed: {e}");
            e.to_string()
        });
        for finish in finishes {
            finish(outcome.clone());
        }
        // Jobs never run (the transaction failed first) are dropped: their callers get an
        // error, and nothing of theirs was written.
        drop(batch);
    }
}

const MESSAGE_SELECT: &str = "SELECT m.conversation_id, m.seq, m.client_id, m.author,
    m.author_name, m.text, m.at, f.id, f.name, f.size, f.mime, f.sha256, m.event
    FROM messages m LEFT JOIN files f ON f.id = m.attachment_id";

fn row_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let attachment = match r.get::<_, Option<String>>(7)? {
        Some(id) => Some(Attachment {
            id: FileId(id),
            name: r.get(8)?,
            size: r.get::<_, i64>(9)? as u64,
            mime: r.get(10)?,
            sha256: r.get(11)?,
        }),
        None => None,
    };
    Ok(Message {
        conversation: ConversationId(r.get(0)?),
        seq: r.get::<_, i64>(1)? as u64,
        client_id: r.get::<_, Option<String>>(2)?.map(ClientMsgId),
        author: parse_author(&r.get::<_, String>(3)?),
        author_name: r.get(4)?,
        text: r.get(5)?,
        // A line this relay cannot read (written by a newer one) still shows its English.
        event: r
            .get::<_, Option<String>>(12)?
            .and_then(|e| serde_json::from_str(&e).ok()),
        at: r.get(6)?,
        attachment,
    })
}

const SUMMARY_SELECT: &str = "SELECT c.id, s.name, c.agent_id, a.name, c.last_seq, c.preview, c.last_at,
    c.closed_at, c.rating, c.site_key, c.visitor_name, s.features, c.external_id IS NOT NULL
    FROM conversations c JOIN sites s ON s.key = c.site_key LEFT JOIN agents a ON a.id = c.agent_id";

/// The agent in columns `id` and `name` of a LEFT JOIN (none when the id is NULL).
fn agent_cols(r: &rusqlite::Row<'_>, id: usize, name: usize) -> rusqlite::Result<Option<AgentRef>> {
    Ok(
        match (
            r.get::<_, Option<String>>(id)?,
            r.get::<_, Option<String>>(name)?,
        ) {
            (Some(id), Some(name)) => Some(AgentRef {
                id: AgentId(id),
                name,
            }),
            _ => None,
        },
    )
}

fn row_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationSummary> {
    let id: String = r.get(0)?;
    let agent = agent_cols(r, 2, 3)?;
    Ok(ConversationSummary {
        visitor_label: r
            .get::<_, Option<String>>(10)?
            .unwrap_or_else(|| visitor_label(&id)),
        id: ConversationId(id),
        site: SiteKey(r.get(9)?),
        site_name: r.get(1)?,
        status: if r.get::<_, Option<i64>>(7)?.is_some() {
            ConversationStatus::Closed
        } else if agent.is_some() {
            ConversationStatus::Assigned
        } else {
            ConversationStatus::Waiting
        },
        agent,
        last_seq: r.get::<_, i64>(4)? as u64,
        preview: r.get(5)?,
        last_at: r.get(6)?,
        rating: r
            .get::<_, Option<String>>(8)?
            .as_deref()
            .and_then(parse_rating),
        features: json_col::<SiteFeatures>(r.get(11)?),
        verified: r.get(12)?,
    })
}

fn load_agent(conn: &Connection, where_clause: &str, arg: &str) -> Result<Option<Agent>> {
    // A disabled agent is nobody: no login, no session.
    load_agent_where(
        conn,
        &format!("{where_clause} AND a.disabled_at IS NULL"),
        arg,
    )
}

/// An agent, disabled or not.
fn load_agent_where(conn: &Connection, where_clause: &str, arg: &str) -> Result<Option<Agent>> {
    let sql = format!(
        "SELECT a.id, a.name, a.email, a.password_hash, a.all_sites, a.presence, a.chat_limit,
            a.admin
         FROM agents a {where_clause}"
    );
    let row = conn
        .query_row(&sql, [arg], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, u32>(6)?,
                r.get::<_, bool>(7)?,
            ))
        })
        .optional()?;
    let Some((id, name, email, password_hash, all_sites, presence, limit, admin)) = row else {
        return Ok(None);
    };
    let presence = match presence.as_str() {
        "away" => Presence::Away,
        "offline" => Presence::Offline,
        _ => Presence::Available,
    };
    let scope = if all_sites {
        Scope::All
    } else {
        let mut stmt = conn.prepare("SELECT site_key FROM agent_sites WHERE agent_id = ?1")?;
        let sites = stmt
            .query_map([&id], |r| r.get::<_, String>(0).map(SiteKey))?
            .collect::<rusqlite::Result<_>>()?;
        Scope::Sites(sites)
    };
    Ok(Some(Agent {
        agent: AgentRef {
            id: AgentId(id),
            name,
        },
        email,
        password_hash,
        scope,
        presence,
        limit,
        admin,
    }))
}

fn meta_row(id: &ConversationId, r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationMeta> {
    Ok(ConversationMeta {
        closed: r.get::<_, Option<i64>>(3)?.is_some(),
        rated: r.get::<_, Option<String>>(4)?.is_some(),
        features: json_col::<SiteFeatures>(r.get(5)?),
        ..ConversationMeta::new(id.clone(), SiteKey(r.get(0)?), agent_cols(r, 1, 2)?)
    })
}

fn conversation_meta(c: &Connection, id: &ConversationId) -> Result<Option<ConversationMeta>> {
    let mut stmt = c.prepare_cached(
        "SELECT c.site_key, c.agent_id, a.name, c.closed_at, c.rating, s.features
         FROM conversations c JOIN sites s ON s.key = c.site_key
         LEFT JOIN agents a ON a.id = c.agent_id WHERE c.id = ?1",
    )?;
    Ok(stmt.query_row([&id.0], |r| meta_row(id, r)).optional()?)
}

fn site_row(c: &Connection, key: &SiteKey) -> Result<Option<Site>> {
    let Some((name, features, look, identity_secret, identity_required)) = c
        .prepare_cached(
            "SELECT name, features, look, identity_secret, identity_required
             FROM sites WHERE key = ?1",
        )?
        .query_row([&key.0], |r| {
            Ok((
                r.get(0)?,
                json_col::<SiteFeatures>(r.get(1)?),
                json_col::<SiteLook>(r.get(2)?),
                r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                r.get(4)?,
            ))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt =
        c.prepare_cached("SELECT origin FROM site_origins WHERE site_key = ?1 ORDER BY origin")?;
    let origins = stmt
        .query_map([&key.0], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(Site {
        key: key.clone(),
        name,
        origins,
        features,
        look,
        identity_secret,
        identity_required,
    }))
}

fn append(c: &Connection, m: NewMessage) -> Result<Appended> {
    if let Some(cid) = &m.client_id {
        let mut stmt = c.prepare_cached(&format!(
            "{MESSAGE_SELECT} WHERE m.conversation_id = ?1 AND m.client_id = ?2"
        ))?;
        let existing = stmt
            .query_row(params![m.conversation.0, cid.0], row_message)
            .optional()?;
        if let Some(message) = existing {
            return Ok(Appended {
                message,
                fresh: false,
            });
        }
    }
    if let Some(f) = &m.attachment {
        c.prepare_cached(
            "INSERT INTO files (id, conversation_id, name, size, mime, sha256, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            f.id.0,
            m.conversation.0,
            f.name,
            f.size as i64,
            f.mime,
            f.sha256,
            m.at
        ])?;
    }
    // The list's preview is what the visitor and the agent said: the relay's own lines and
    // the agents' notes leave it as it was.
    let said = matches!(m.author, Author::Visitor | Author::Agent).then(|| preview(&m.text));
    let seq: i64 = c
        .prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, last_at = ?2,
             preview = COALESCE(?3, preview) WHERE id = ?1 RETURNING last_seq",
        )?
        .query_row(params![m.conversation.0, m.at, said], |r| r.get(0))?;
    c.prepare_cached(
        "INSERT INTO messages
         (conversation_id, seq, client_id, author, author_name, text, at, attachment_id, event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        m.conversation.0,
        seq,
        m.client_id.as_ref().map(|c| &c.0),
        author_str(m.author),
        m.author_name,
        m.text,
        m.at,
        m.attachment.as_ref().map(|a| &a.id.0),
        m.event
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("an event serializes")),
    ])?;
    Ok(Appended {
        message: m.stored(seq as u64),
        fresh: true,
    })
}

/// Whether conversation `c` is listed: assigned, or waiting with fewer than `?2` older
/// waiting conversations from its address (one address cannot fill the list).
const LISTED: &str = "(c.agent_id IS NOT NULL OR c.address IS NULL OR ?2 > (
    SELECT COUNT(*) FROM conversations o WHERE o.agent_id IS NULL AND o.address = c.address
    AND o.created_at < c.created_at AND o.last_seq > 0))";

fn summaries(
    c: &Connection,
    scope: &Scope,
    limit: u32,
    listed_per_address: u32,
) -> Result<Vec<ConversationSummary>> {
    let (clause, keys) = scope_clause(scope, "c.site_key", 3);
    let mut stmt = c.prepare(&format!(
        "{SUMMARY_SELECT} WHERE c.last_seq > 0 AND {LISTED}{clause}
         ORDER BY (c.closed_at IS NOT NULL), (c.agent_id IS NOT NULL), c.last_at DESC LIMIT ?1"
    ))?;
    let mut args: Vec<Box<dyn rusqlite::ToSql>> =
        vec![Box::new(limit), Box::new(listed_per_address)];
    args.extend(
        keys.into_iter()
            .map(|k| Box::new(k) as Box<dyn rusqlite::ToSql>),
    );
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), row_summary)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

impl Directory for SqliteStore {
    fn add_site(&self, name: String, origins: Vec<String>, now: i64) -> StoreFuture<'_, Site> {
        self.dir(move |c| {
            let key = SiteKey(secrets::random_id());
            let identity_secret = secrets::random_hex(32);
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO sites (key, name, created_at, identity_secret) VALUES (?1, ?2, ?3, ?4)",
                params![key.0, name, now, identity_secret],
            )?;
            for o in &origins {
                tx.execute(
                    "INSERT OR IGNORE INTO site_origins (site_key, origin) VALUES (?1, ?2)",
                    params![key.0, o],
                )?;
            }
            tx.commit()?;
            Ok(Site {
                key,
                name,
                origins,
                features: SiteFeatures::default(),
                look: SiteLook::default(),
                identity_secret,
                identity_required: false,
            })
        })
    }

    fn allow_origin(&self, site: SiteKey, origin: String) -> StoreFuture<'_, ()> {
        self.site_change(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO site_origins (site_key, origin) VALUES (?1, ?2)",
                params![site.0, origin],
            )?;
            Ok(())
        })
    }

    fn site(&self, key: SiteKey) -> StoreFuture<'_, Option<Site>> {
        // Did any process change a site since these were read? (A small file read, on this
        // thread: no hand-off to the read pool.)
        let changed = std::fs::read(self.inner.sites_changed()).ok();
        let generation = {
            let mut cache = self.inner.sites();
            if cache.changed != changed {
                cache.sites.clear();
                cache.generation += 1;
                cache.changed = changed;
            }
            if let Some((site, at)) = cache.sites.get(&key) {
                if at.elapsed() < SITE_FRESH {
                    let site = site.clone();
                    return Box::pin(async move { Ok(Some(site)) });
                }
            }
            cache.generation
        };
        // Every visitor socket asks: from the pool of readers, not the one directory
        // connection.
        let inner = self.inner.clone();
        let read = self.read(move |c| site_row(c, &key));
        Box::pin(async move {
            let site = read.await?;
            if let Some(site) = &site {
                let mut cache = inner.sites();
                if cache.generation == generation {
                    let now = std::time::Instant::now();
                    cache.sites.insert(site.key.clone(), (site.clone(), now));
                }
            }
            Ok(site)
        })
    }

    fn add_agent(
        &self,
        email: String,
        name: String,
        password_hash: String,
        sites: Option<Vec<SiteKey>>,
        now: i64,
    ) -> StoreFuture<'_, Agent> {
        self.dir(move |c| {
            let email = email.trim().to_lowercase();
            let id = AgentId(secrets::random_id());
            let tx = c.transaction()?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM agents WHERE email = ?1)",
                [&email],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Invalid(format!(
                    "an agent with email {email} exists"
                )));
            }
            tx.execute(
                "INSERT INTO agents (id, email, name, password_hash, all_sites, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id.0, email, name, password_hash, sites.is_none(), now],
            )?;
            add_agent_sites(&tx, &id.0, sites.iter().flatten())?;
            tx.commit()?;
            Ok(Agent {
                agent: AgentRef { id, name },
                email,
                password_hash,
                scope: match sites {
                    None => Scope::All,
                    Some(s) => Scope::Sites(s.into_iter().collect()),
                },
                presence: Presence::Available,
                limit: crate::store::DEFAULT_CHAT_LIMIT,
                admin: false,
            })
        })
    }

    fn agent_count(&self) -> StoreFuture<'_, u64> {
        self.dir(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM agents", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    fn agent_by_email(&self, email: String) -> StoreFuture<'_, Option<Agent>> {
        self.dir(move |c| load_agent(c, "WHERE a.email = ?1", &email.trim().to_lowercase()))
    }

    fn count(&self, key: String, window_ms: i64, now: i64) -> StoreFuture<'_, (u32, i64)> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM limit_counts WHERE ends <= ?1")?
                .execute(params![now])?;
            let (n, ends) = c
                .prepare_cached(
                    "INSERT INTO limit_counts (key, ends, n) VALUES (?1, ?2 + ?3, 1)
                     ON CONFLICT (key) DO UPDATE SET n = n + 1
                     RETURNING n, ends",
                )?
                .query_row(params![key, now, window_ms], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?;
            Ok((u32::try_from(n).unwrap_or(u32::MAX), ends))
        })
    }

    fn add_session(
        &self,
        token_hash: String,
        agent: AgentId,
        expires_at: i64,
    ) -> StoreFuture<'_, ()> {
        self.dir(move |c| {
            c.execute(
                "INSERT INTO sessions (token_hash, agent_id, expires_at) VALUES (?1, ?2, ?3)",
                params![token_hash, agent.0, expires_at],
            )?;
            Ok(())
        })
    }

    fn session_agent(&self, token_hash: String, now: i64) -> StoreFuture<'_, Option<Agent>> {
        self.dir(move |c| {
            let agent: Option<String> = c
                .query_row(
                    "SELECT agent_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
                    params![token_hash, now],
                    |r| r.get(0),
                )
                .optional()?;
            match agent {
                Some(id) => load_agent(c, "WHERE a.id = ?1", &id),
                None => Ok(None),
            }
        })
    }

    fn delete_session(&self, token_hash: String) -> StoreFuture<'_, ()> {
        self.dir(move |c| {
            c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
            Ok(())
        })
    }

    fn live_sessions(&self, token_hashes: Vec<String>, now: i64) -> StoreFuture<'_, Vec<String>> {
        self.dir(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT 1 FROM sessions s JOIN agents a ON a.id = s.agent_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND a.disabled_at IS NULL",
            )?;
            let mut live = Vec::new();
            for hash in token_hashes {
                if stmt.exists(params![hash, now])? {
                    live.push(hash);
                }
            }
            Ok(live)
        })
    }

    fn purge_sessions(&self, now: i64) -> StoreFuture<'_, u64> {
        self.dir(move |c| {
            Ok(c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])? as u64)
        })
    }

    fn agents(&self, now: i64) -> StoreFuture<'_, Vec<AgentListing>> {
        self.dir(move |c| {
            let rows: Vec<(String, bool, i64)> = c
                .prepare(
                    "SELECT a.id, a.disabled_at IS NOT NULL,
                        (SELECT COUNT(*) FROM sessions s WHERE s.agent_id = a.id AND s.expires_at > ?1)
                     FROM agents a WHERE a.email NOT LIKE 'removed:%' ORDER BY a.email",
                )?
                .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for (id, disabled, sessions) in rows {
                if let Some(agent) = load_agent_where(c, "WHERE a.id = ?1", &id)? {
                    out.push(AgentListing {
                        agent,
                        disabled,
                        sessions: sessions as u64,
                    });
                }
            }
            Ok(out)
        })
    }

    fn set_password(&self, email: String, password_hash: String) -> StoreFuture<'_, bool> {
        self.dir(move |c| {
            let tx = c.transaction()?;
            let email = email.trim().to_lowercase();
            let changed = tx.execute(
                "UPDATE agents SET password_hash = ?2 WHERE email = ?1",
                params![email, password_hash],
            )?;
            end_sessions_of(&tx, &email)?;
            tx.commit()?;
            Ok(changed > 0)
        })
    }

    fn set_disabled(&self, email: String, disabled: bool, now: i64) -> StoreFuture<'_, bool> {
        self.dir(move |c| {
            let tx = c.transaction()?;
            let email = email.trim().to_lowercase();
            let changed = tx.execute(
                "UPDATE agents SET disabled_at = ?2 WHERE email = ?1",
                params![email, disabled.then_some(now)],
            )?;
            if disabled {
                end_sessions_of(&tx, &email)?;
            }
            tx.commit()?;
            Ok(changed > 0)
        })
    }

    fn remove_agent(&self, email: String, now: i64) -> StoreFuture<'_, bool> {
        self.dir(move |c| {
            let tx = c.transaction()?;
            let email = email.trim().to_lowercase();
            let id: Option<String> = tx
                .query_row("SELECT id FROM agents WHERE email = ?1", [&email], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(id) = id else {
                return Ok(false);
            };
            tx.execute("DELETE FROM sessions WHERE agent_id = ?1", [&id])?;
            tx.execute("DELETE FROM agent_sites WHERE agent_id = ?1", [&id])?;
            tx.execute(
                "UPDATE agents SET disabled_at = ?2, all_sites = 0,
                    email = 'removed:' || id || ':' || email WHERE id = ?1",
                params![id, now],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn set_features(&self, site: SiteKey, features: SiteFeatures) -> StoreFuture<'_, bool> {
        let json = serde_json::to_string(&features).unwrap_or_default();
        self.site_change(move |c| {
            let n = c.execute(
                "UPDATE sites SET features = ?2 WHERE key = ?1",
                params![site.0, json],
            )?;
            Ok(n == 1)
        })
    }

    fn save_site(&self, site: Site) -> StoreFuture<'_, bool> {
        let features = serde_json::to_string(&site.features).unwrap_or_default();
        let look = serde_json::to_string(&site.look).unwrap_or_default();
        self.site_change(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE sites SET name = ?2, features = ?3, look = ?4, identity_required = ?5
                 WHERE key = ?1",
                params![
                    site.key.0,
                    site.name,
                    features,
                    look,
                    site.identity_required
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM site_origins WHERE site_key = ?1",
                [&site.key.0],
            )?;
            for o in &site.origins {
                tx.execute(
                    "INSERT OR IGNORE INTO site_origins (site_key, origin) VALUES (?1, ?2)",
                    params![site.key.0, o],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    fn set_admin(&self, email: String, admin: bool) -> StoreFuture<'_, bool> {
        self.dir(move |c| {
            let n = c.execute(
                "UPDATE agents SET admin = ?2 WHERE email = ?1",
                params![email.trim().to_lowercase(), admin],
            )?;
            Ok(n == 1)
        })
    }

    fn set_sites(&self, email: String, sites: Option<Vec<SiteKey>>) -> StoreFuture<'_, bool> {
        self.dir(move |c| {
            let tx = c.transaction()?;
            let email = email.trim().to_lowercase();
            let id: Option<String> = tx
                .query_row("SELECT id FROM agents WHERE email = ?1", [&email], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(id) = id else { return Ok(false) };
            tx.execute(
                "UPDATE agents SET all_sites = ?2 WHERE id = ?1",
                params![id, sites.is_none()],
            )?;
            tx.execute("DELETE FROM agent_sites WHERE agent_id = ?1", [&id])?;
            add_agent_sites(&tx, &id, sites.iter().flatten())?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn record(&self, entry: AuditEntry) -> StoreFuture<'_, ()> {
        self.dir(move |c| {
            c.execute(
                "INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
                params![entry.at, entry.actor, entry.action, entry.detail],
            )?;
            Ok(())
        })
    }

    fn audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.dir(move |c| {
            let mut stmt =
                c.prepare("SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?1")?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok(AuditEntry {
                        at: r.get(0)?,
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        detail: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn sites_of(&self, scope: Scope) -> StoreFuture<'_, Vec<Site>> {
        self.dir(move |c| {
            let (clause, keys) = scope_clause(&scope, "key", 1);
            let mut stmt = c.prepare(&format!(
                "SELECT key FROM sites WHERE 1 = 1{clause} ORDER BY name, key"
            ))?;
            let found: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(keys), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut sites = Vec::new();
            for key in found {
                sites.extend(site_row(c, &SiteKey(key))?);
            }
            Ok(sites)
        })
    }

    fn canned(&self, scope: Scope) -> StoreFuture<'_, Vec<CannedReply>> {
        self.dir(move |c| {
            let (clause, keys) = scope_clause(&scope, "site_key", 1);
            let mut stmt = c.prepare(&format!(
                "SELECT id, site_key, shortcut, text FROM canned WHERE 1 = 1{clause}
                 ORDER BY shortcut, site_key"
            ))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(keys), |r| {
                    Ok(CannedReply {
                        id: r.get(0)?,
                        site: SiteKey(r.get(1)?),
                        shortcut: r.get(2)?,
                        text: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn save_canned(
        &self,
        site: SiteKey,
        shortcut: String,
        text: String,
        now: i64,
    ) -> StoreFuture<'_, CannedReply> {
        self.dir(move |c| {
            let id: String = c.query_row(
                "INSERT INTO canned (id, site_key, shortcut, text, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (site_key, shortcut) DO UPDATE SET text = excluded.text
                 RETURNING id",
                params![secrets::random_id(), site.0, shortcut, text, now],
                |r| r.get(0),
            )?;
            Ok(CannedReply {
                id,
                site,
                shortcut,
                text,
            })
        })
    }

    fn delete_canned(&self, id: String, scope: Scope) -> StoreFuture<'_, bool> {
        self.dir(move |c| {
            let (clause, keys) = scope_clause(&scope, "site_key", 2);
            let mut args = vec![id];
            args.extend(keys);
            let n = c.execute(
                &format!("DELETE FROM canned WHERE id = ?1{clause}"),
                rusqlite::params_from_iter(args),
            )?;
            Ok(n == 1)
        })
    }

    fn set_limit(&self, email: String, limit: u32) -> StoreFuture<'_, bool> {
        self.dir(move |c| {
            let n = c.execute(
                "UPDATE agents SET chat_limit = ?2 WHERE email = ?1 AND disabled_at IS NULL",
                params![email.trim().to_lowercase(), limit],
            )?;
            Ok(n == 1)
        })
    }

    fn set_presence(&self, agent: AgentId, presence: Presence) -> StoreFuture<'_, ()> {
        self.dir(move |c| {
            c.execute(
                "UPDATE agents SET presence = ?2 WHERE id = ?1",
                params![agent.0, presence.as_str()],
            )?;
            Ok(())
        })
    }

    fn setting(&self, key: String) -> StoreFuture<'_, Option<String>> {
        self.dir(move |c| {
            Ok(
                c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
    }

    fn set_setting(&self, key: String, value: String) -> StoreFuture<'_, ()> {
        self.dir(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }
}

impl Log for SqliteStore {
    fn save_call(&self, id: ConversationId, call: Option<CallRecord>) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            match call {
                Some(r) => c
                    .prepare_cached(
                        "INSERT OR REPLACE INTO calls
                         (conversation_id, site_key, kind, caller, caller_name, since)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        id.0,
                        r.site.0,
                        kind_str(r.kind),
                        author_str(r.caller),
                        r.caller_name,
                        r.since
                    ])?,
                None => c
                    .prepare_cached("DELETE FROM calls WHERE conversation_id = ?1")?
                    .execute([&id.0])?,
            };
            Ok(())
        })
    }

    fn calls(&self) -> StoreFuture<'_, Vec<(ConversationId, CallRecord)>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT conversation_id, site_key, kind, caller, caller_name, since FROM calls",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        ConversationId(r.get(0)?),
                        CallRecord {
                            site: SiteKey(r.get(1)?),
                            kind: parse_kind(&r.get::<_, String>(2)?),
                            caller: parse_author(&r.get::<_, String>(3)?),
                            caller_name: r.get(4)?,
                            since: r.get(5)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn visitor_conversation(
        &self,
        site: SiteKey,
        token_hash: String,
    ) -> StoreFuture<'_, Option<ConversationMeta>> {
        self.read(move |c| {
            let id = c
                .prepare_cached(
                    "SELECT conversation_id FROM visitors WHERE token_hash = ?1 AND site_key = ?2",
                )?
                .query_row(params![token_hash, site.0], |r| {
                    r.get(0).map(ConversationId)
                })
                .optional()?;
            match id {
                Some(id) => conversation_meta(c, &id),
                None => Ok(None),
            }
        })
    }

    fn visitor(&self, token_hash: String) -> StoreFuture<'_, Option<(SiteKey, ConversationId)>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT site_key, conversation_id FROM visitors WHERE token_hash = ?1",
            )?
            .query_row([token_hash], |r| {
                Ok((SiteKey(r.get(0)?), ConversationId(r.get(1)?)))
            })
            .optional()?)
        })
    }

    fn add_visitor(
        &self,
        conversation: ConversationMeta,
        token_hash: String,
        address: String,
        now: i64,
    ) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            let (id, site) = (&conversation.id.0, &conversation.site.0);
            c.prepare_cached(
                "INSERT INTO conversations (id, site_key, last_at, created_at, address)
                 VALUES (?1, ?2, ?3, ?3, ?4)",
            )?
            .execute(params![id, site, now, address])?;
            add_token(c, &token_hash, site, id, now)
        })
    }

    fn conversation(&self, id: ConversationId) -> StoreFuture<'_, Option<ConversationMeta>> {
        self.read(move |c| conversation_meta(c, &id))
    }

    fn user_conversation(
        &self,
        site: SiteKey,
        user: String,
    ) -> StoreFuture<'_, Option<ConversationMeta>> {
        self.read(move |c| {
            let id = c
                .prepare_cached(
                    "SELECT id FROM conversations WHERE site_key = ?1 AND external_id = ?2",
                )?
                .query_row(params![site.0, user], |r| r.get(0).map(ConversationId))
                .optional()?;
            match id {
                Some(id) => conversation_meta(c, &id),
                None => Ok(None),
            }
        })
    }

    fn add_token(
        &self,
        id: ConversationId,
        site: SiteKey,
        token_hash: String,
        now: i64,
    ) -> StoreFuture<'_, ()> {
        self.write(move |c| add_token(c, &token_hash, &site.0, &id.0, now))
    }

    fn add_link(
        &self,
        id: ConversationId,
        link_hash: String,
        expires_at: i64,
    ) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            // Expired links go as new ones come.
            c.prepare_cached("DELETE FROM links WHERE expires_at < ?1")?
                .execute([expires_at - crate::store::LINK_LIFE_MS])?;
            c.prepare_cached(
                "INSERT INTO links (hash, conversation_id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![link_hash, id.0, expires_at])?;
            Ok(())
        })
    }

    fn redeem_link(
        &self,
        site: SiteKey,
        link_hash: String,
        token_hash: String,
        now: i64,
    ) -> StoreFuture<'_, Option<ConversationMeta>> {
        self.write(move |c| {
            let link = c
                .prepare_cached(
                    "DELETE FROM links WHERE hash = ?1 RETURNING conversation_id, expires_at",
                )?
                .query_row([link_hash], |r| {
                    Ok((ConversationId(r.get(0)?), r.get::<_, i64>(1)?))
                })
                .optional()?;
            let Some((id, _)) = link.filter(|(_, expires_at)| *expires_at > now) else {
                return Ok(None);
            };
            let Some(meta) = conversation_meta(c, &id)?.filter(|m| m.site == site) else {
                return Ok(None);
            };
            add_token(c, &token_hash, &site.0, &id.0, now)?;
            Ok(Some(meta))
        })
    }

    fn claim(&self, id: ConversationId, user: VerifiedUser) -> StoreFuture<'_, bool> {
        self.write(move |c| {
            // OR IGNORE: the user may have another conversation (the unique index says no).
            let n = c
                .prepare_cached(
                    "UPDATE OR IGNORE conversations SET external_id = ?2,
                        visitor_name = COALESCE(?3, visitor_name), email = COALESCE(?4, email)
                     WHERE id = ?1 AND (external_id IS NULL OR external_id = ?2)",
                )?
                .execute(params![id.0, user.id, user.name, user.email])?;
            Ok(n == 1)
        })
    }

    fn append(&self, msg: NewMessage) -> StoreFuture<'_, Appended> {
        self.write(move |c| append(c, msg))
    }

    fn summaries_of(&self, ids: Vec<ConversationId>) -> StoreFuture<'_, Vec<ConversationSummary>> {
        let listed = self.listed_per_address();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached(&format!("{SUMMARY_SELECT} WHERE c.id = ?1 AND {LISTED}"))?;
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(row) = stmt
                    .query_row(params![id.0, listed], row_summary)
                    .optional()?
                {
                    rows.push(row);
                }
            }
            Ok(rows)
        })
    }

    fn messages_after(
        &self,
        id: ConversationId,
        after_seq: u64,
        limit: u32,
        notes: bool,
    ) -> StoreFuture<'_, HistoryPage> {
        self.read(move |c| {
            // Notes are read and then left out, so `upto` covers them: a visitor's next join
            // starts after them.
            let mut stmt = c.prepare_cached(&format!(
                "{MESSAGE_SELECT} WHERE m.conversation_id = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3"
            ))?;
            let rows: Vec<Message> = stmt
                .query_map(params![id.0, after_seq as i64, limit], row_message)?
                .collect::<rusqlite::Result<_>>()?;
            let full = rows.len() >= limit as usize;
            let upto = rows.last().map_or(after_seq, |m| m.seq);
            let messages = rows
                .into_iter()
                .filter(|m| notes || m.author != Author::Note)
                .collect();
            Ok(HistoryPage {
                messages,
                upto,
                full,
            })
        })
    }

    fn reassign(
        &self,
        id: ConversationId,
        from: Option<AgentId>,
        to: Option<AgentId>,
    ) -> StoreFuture<'_, bool> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE conversations SET agent_id = ?3
                     WHERE id = ?1 AND closed_at IS NULL AND (agent_id IS ?2 OR agent_id IS ?3)",
                )?
                .execute(params![id.0, from.map(|a| a.0), to.map(|a| a.0)])?;
            Ok(n == 1)
        })
    }

    fn close(&self, id: ConversationId, agent: AgentId, at: i64) -> StoreFuture<'_, bool> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE conversations SET closed_at = ?3, rating = NULL
                     WHERE id = ?1 AND closed_at IS NULL AND (agent_id IS NULL OR agent_id = ?2)",
                )?
                .execute(params![id.0, agent.0, at])?;
            Ok(n == 1)
        })
    }

    fn reopen(&self, id: ConversationId, agent: Option<AgentId>) -> StoreFuture<'_, bool> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE conversations SET closed_at = NULL, agent_id = ?2, rating = NULL
                     WHERE id = ?1 AND closed_at IS NOT NULL",
                )?
                .execute(params![id.0, agent.map(|a| a.0)])?;
            Ok(n == 1)
        })
    }

    fn rate(&self, id: ConversationId, rating: Rating) -> StoreFuture<'_, bool> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE conversations SET rating = ?2
                     WHERE id = ?1 AND closed_at IS NOT NULL AND rating IS NULL",
                )?
                .execute(params![id.0, rating_str(rating)])?;
            Ok(n == 1)
        })
    }

    fn set_email(&self, id: ConversationId, email: String) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            c.prepare_cached("UPDATE conversations SET email = ?2 WHERE id = ?1")?
                .execute(params![id.0, email])?;
            Ok(())
        })
    }

    fn search(
        &self,
        scope: Scope,
        words: Vec<String>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<SearchHit>> {
        let Some(query) = fts_query(&words) else {
            return Box::pin(async { Ok(Vec::new()) });
        };
        self.read(move |c| {
            let (clause, keys) = scope_clause(&scope, "c.site_key", 3);
            let mut stmt = c.prepare(&format!(
                "SELECT m.conversation_id, m.seq, m.author, m.author_name,
                    snippet(messages_fts, 0, '', '', '…', 16), m.at, s.name
                 FROM messages_fts
                 JOIN messages m ON m.rowid = messages_fts.rowid
                 JOIN conversations c ON c.id = m.conversation_id
                 JOIN sites s ON s.key = c.site_key
                 WHERE messages_fts MATCH ?1{clause}
                 ORDER BY m.at DESC LIMIT ?2"
            ))?;
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(query), Box::new(limit)];
            args.extend(
                keys.into_iter()
                    .map(|k| Box::new(k) as Box<dyn rusqlite::ToSql>),
            );
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    let id: String = r.get(0)?;
                    Ok(SearchHit {
                        visitor_label: visitor_label(&id),
                        conversation: ConversationId(id),
                        seq: r.get::<_, i64>(1)? as u64,
                        author: parse_author(&r.get::<_, String>(2)?),
                        author_name: r.get(3)?,
                        snippet: r.get(4)?,
                        at: r.get(5)?,
                        site_name: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn set_visitor_info(&self, id: ConversationId, info: VisitorInfo) -> StoreFuture<'_, ()> {
        let json = serde_json::to_string(&info).unwrap_or_default();
        self.write(move |c| {
            c.prepare_cached("UPDATE conversations SET visitor_info = ?2 WHERE id = ?1")?
                .execute(params![id.0, json])?;
            Ok(())
        })
    }

    fn set_visitor(
        &self,
        id: ConversationId,
        name: Option<String>,
        email: Option<String>,
    ) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE conversations SET visitor_name = ?2, email = ?3 WHERE id = ?1",
            )?
            .execute(params![id.0, name, email])?;
            Ok(())
        })
    }

    fn visitor_details(&self, id: ConversationId) -> StoreFuture<'_, VisitorDetails> {
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT visitor_info, visitor_name, email, created_at, external_id
                     FROM conversations WHERE id = ?1",
                )?
                .query_row([&id.0], |r| {
                    Ok(VisitorDetails {
                        info: r
                            .get::<_, Option<String>>(0)?
                            .and_then(|j| serde_json::from_str(&j).ok()),
                        name: r.get(1)?,
                        email: r.get(2)?,
                        since: r.get(3)?,
                        user: r.get(4)?,
                    })
                })
                .optional()?;
            Ok(row.unwrap_or_default())
        })
    }

    fn open_conversations(&self) -> StoreFuture<'_, Vec<OpenConversation>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, site_key, agent_id, created_at FROM conversations
                 WHERE closed_at IS NULL AND last_seq > 0 ORDER BY created_at",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(OpenConversation {
                        id: ConversationId(r.get(0)?),
                        site: SiteKey(r.get(1)?),
                        agent: r.get::<_, Option<String>>(2)?.map(AgentId),
                        since: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn summaries(&self, scope: Scope, limit: u32) -> StoreFuture<'_, Vec<ConversationSummary>> {
        let listed = self.listed_per_address();
        self.read(move |c| summaries(c, &scope, limit, listed))
    }

    fn mark_read(&self, agent: AgentId, id: ConversationId, seq: u64) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO reads (agent_id, conversation_id, seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent_id, conversation_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            )?
            .execute(params![agent.0, id.0, seq as i64])?;
            Ok(())
        })
    }

    fn read_marks(&self, agent: AgentId) -> StoreFuture<'_, Vec<ReadMark>> {
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT conversation_id, seq FROM reads WHERE agent_id = ?1")?;
            let rows = stmt
                .query_map([&agent.0], |r| {
                    Ok(ReadMark {
                        conversation: ConversationId(r.get(0)?),
                        seq: r.get::<_, i64>(1)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn known_files(&self, ids: Vec<FileId>) -> StoreFuture<'_, Vec<FileId>> {
        self.read(move |c| {
            let mut known = Vec::new();
            for chunk in ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut stmt = c.prepare(&format!("SELECT id FROM files WHERE id IN ({marks})"))?;
                let args = rusqlite::params_from_iter(chunk.iter().map(|f| &f.0));
                let rows = stmt.query_map(args, |r| r.get(0).map(FileId))?;
                known.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
            }
            Ok(known)
        })
    }

    fn read_upto(&self, id: ConversationId) -> StoreFuture<'_, u64> {
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(MAX(seq), 0) FROM reads WHERE conversation_id = ?1",
                )?
                .query_row([&id.0], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
    }

    fn files_size(&self, id: ConversationId) -> StoreFuture<'_, u64> {
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(SUM(size), 0) FROM files WHERE conversation_id = ?1",
                )?
                .query_row([&id.0], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
    }

    fn message_by_client_id(
        &self,
        id: ConversationId,
        client_id: ClientMsgId,
    ) -> StoreFuture<'_, Option<Message>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "{MESSAGE_SELECT} WHERE m.conversation_id = ?1 AND m.client_id = ?2"
            ))?
            .query_row(params![id.0, client_id.0], row_message)
            .optional()?)
        })
    }

    fn file(&self, id: FileId) -> StoreFuture<'_, Option<(ConversationId, Attachment)>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT conversation_id, name, size, mime, sha256 FROM files WHERE id = ?1",
            )?
            .query_row([&id.0], |r| {
                Ok((
                    ConversationId(r.get(0)?),
                    Attachment {
                        id: id.clone(),
                        name: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        mime: r.get(3)?,
                        sha256: r.get(4)?,
                    },
                ))
            })
            .optional()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        (dir, s)
    }

    fn chat(conv: &ConversationId, cid: &str, text: &str) -> NewMessage {
        NewMessage {
            conversation: conv.clone(),
            client_id: Some(ClientMsgId::from(cid)),
            author: Author::Visitor,
            author_name: None,
            text: text.into(),
            event: None,
            attachment: None,
            at: 1,
        }
    }

    async fn conversation(s: &SqliteStore, site: &SiteKey, visitor: &str) -> ConversationId {
        let meta = ConversationMeta::new(ConversationId(secrets::random_id()), site.clone(), None);
        s.add_visitor(meta.clone(), visitor.into(), "192.0.2.1".into(), 0)
            .await
            .unwrap();
        meta.id
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_a_failure_spoils_only_itself() {
        let (_d, s) = store();
        let site = s.add_site("Shop".into(), vec![], 0).await.unwrap();
        let mut convs = Vec::new();
        for i in 0..50 {
            convs.push(conversation(&s, &site.key, &format!("v{i}")).await);
        }
        let before = s.commits();
        let mut writes = Vec::new();
        for (i, conv) in convs.iter().enumerate() {
            for j in 0..4 {
                writes.push(s.append(chat(conv, &format!("m{j}"), &format!("{i}/{j}"))));
            }
        }
        // Into a conversation that does not exist: fails, in the middle of the others.
        writes.insert(100, s.append(chat(&"nope".into(), "z", "lost")));
        let results = futures_util::future::join_all(writes).await;
        assert!(results[100].is_err());
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 200);
        let commits = s.commits() - before;
        assert!(
            commits < 200,
            "{commits} commits for 200 messages written at once: not grouped"
        );
        for conv in &convs {
            let seqs: Vec<u64> = s
                .messages_after(conv.clone(), 0, 10, true)
                .await
                .unwrap()
                .messages
                .iter()
                .map(|m| m.seq)
                .collect();
            assert_eq!(seqs, vec![1, 2, 3, 4]);
        }
    }
}
