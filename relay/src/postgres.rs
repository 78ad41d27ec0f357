//! The store on PostgreSQL (15 or later), for several relay nodes sharing one record
//! (`--database-url`, issue 11). The same [`Directory`] and [`Log`] as
//! [`crate::sqlite::SqliteStore`], held to the same contract by one test suite
//! (`relay/tests/store.rs`).
//!
//! - Connections come from a pool (deadpool); every call is async, nothing blocks the runtime.
//! - The schema is made by numbered migrations, run at start inside one transaction under an
//!   advisory lock: nodes starting together apply each one once.
//! - A site is read afresh on every lookup: another node may have just changed it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use escalera_protocol::{
    AgentId, AgentRef, Attachment, Author, CannedReply, ClientMsgId, ConversationId,
    ConversationStatus, ConversationSummary, FileId, Message, Presence, Rating, ReadMark,
    SearchHit, SiteFeatures, SiteKey, SiteLook, VisitorInfo,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::core::{CallRecord, ConversationMeta, NewMessage, Scope};
use crate::error::StoreError;
use crate::secrets;
use crate::store::{
    author_str, json_col, kind_str, parse_author, parse_kind, parse_rating, preview, rating_str,
    visitor_label, Agent, AgentListing, Appended, AuditEntry, Directory, HistoryPage, Log,
    OpenConversation, Site, StoreFuture, VerifiedUser, VisitorDetails,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Connections kept by each node.
const POOL_SIZE: usize = 16;

/// Any number: the key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x6573_6361_6c65_7261; // "escalera"

/// The schema, one step per release that changed it; `escalera_schema` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the record as SQLite's migrations 1 to 13 left it.
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sites (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL, features TEXT,
    look TEXT, identity_secret TEXT NOT NULL, identity_required BOOLEAN NOT NULL DEFAULT FALSE);
CREATE TABLE site_origins (
    site_key TEXT NOT NULL REFERENCES sites(key), origin TEXT NOT NULL,
    PRIMARY KEY (site_key, origin));
CREATE TABLE agents (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    password_hash TEXT NOT NULL, all_sites BOOLEAN NOT NULL, created_at BIGINT NOT NULL,
    disabled_at BIGINT, presence TEXT NOT NULL DEFAULT 'available',
    chat_limit INTEGER NOT NULL DEFAULT 5, admin BOOLEAN NOT NULL DEFAULT FALSE);
CREATE TABLE agent_sites (
    agent_id TEXT NOT NULL REFERENCES agents(id), site_key TEXT NOT NULL REFERENCES sites(key),
    PRIMARY KEY (agent_id, site_key));
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY, agent_id TEXT NOT NULL REFERENCES agents(id),
    expires_at BIGINT NOT NULL);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE INDEX sessions_agent ON sessions (agent_id);
CREATE TABLE conversations (
    id TEXT PRIMARY KEY, site_key TEXT NOT NULL REFERENCES sites(key),
    agent_id TEXT REFERENCES agents(id), last_seq BIGINT NOT NULL DEFAULT 0,
    last_at BIGINT NOT NULL, preview TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL,
    address TEXT, closed_at BIGINT, rating TEXT, email TEXT, visitor_info TEXT,
    visitor_name TEXT, external_id TEXT);
CREATE INDEX conversations_activity ON conversations (site_key, last_at);
CREATE INDEX conversations_waiting_address ON conversations (address, created_at)
    WHERE agent_id IS NULL;
CREATE INDEX conversations_open ON conversations (created_at)
    WHERE closed_at IS NULL AND last_seq > 0;
CREATE UNIQUE INDEX conversations_user ON conversations (site_key, external_id)
    WHERE external_id IS NOT NULL;
CREATE TABLE visitors (
    token_hash TEXT PRIMARY KEY, site_key TEXT NOT NULL REFERENCES sites(key),
    conversation_id TEXT NOT NULL REFERENCES conversations(id), created_at BIGINT NOT NULL);
CREATE TABLE files (
    id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
    name TEXT NOT NULL, size BIGINT NOT NULL, mime TEXT NOT NULL, sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL);
CREATE TABLE messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id), seq BIGINT NOT NULL,
    client_id TEXT, author TEXT NOT NULL, author_name TEXT, text TEXT NOT NULL,
    at BIGINT NOT NULL, attachment_id TEXT REFERENCES files(id), event TEXT,
    PRIMARY KEY (conversation_id, seq));
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, client_id)
    WHERE client_id IS NOT NULL;
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE FUNCTION escalera_words(t TEXT) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_tsvector('simple', public.unaccent('public.unaccent'::regdictionary, t)) $$;
CREATE INDEX messages_words ON messages USING GIN (escalera_words(text));
CREATE TABLE reads (
    agent_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL,
    PRIMARY KEY (agent_id, conversation_id));
CREATE TABLE calls (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id), site_key TEXT NOT NULL,
    kind TEXT NOT NULL, caller TEXT NOT NULL, caller_name TEXT NOT NULL, since BIGINT NOT NULL);
CREATE TABLE canned (
    id TEXT PRIMARY KEY, site_key TEXT NOT NULL REFERENCES sites(key),
    shortcut TEXT NOT NULL, text TEXT NOT NULL, created_at BIGINT NOT NULL,
    UNIQUE (site_key, shortcut));
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE TABLE links (
    hash TEXT PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
    expires_at BIGINT NOT NULL);
"#,
    // 2: counts in windows, for the limits that hold across nodes (SQLite's migration 14).
    r#"
CREATE TABLE limit_counts (key TEXT PRIMARY KEY, ends BIGINT NOT NULL, n INTEGER NOT NULL);
CREATE INDEX limit_counts_ends ON limit_counts (ends);
"#,
];

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own words (tokio-postgres says only "db error" for them).
        StoreError::Postgres(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Postgres(format!("no connection: {e}"))
    }
}

/// The store on PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Waiting conversations listed per address (the oldest; the others wait unlisted).
    listed_per_address: Arc<AtomicU32>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or with
    /// `?host=/run/postgresql` for a Unix socket) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("bad database URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Invalid(format!("database pool: {e}")))?;
        let store = Self {
            pool,
            listed_per_address: Arc::new(crate::store::LISTED_PER_ADDRESS.into()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations this database has not had yet.
    async fn migrate(&self) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS escalera_schema (version INTEGER PRIMARY KEY)",
        )
        .await?;
        let done: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM escalera_schema", &[])
            .await?
            .get(0);
        if done as usize > MIGRATIONS.len() {
            return Err(StoreError::Invalid(format!(
                "the database has schema {done}, newer than this relay's {}",
                MIGRATIONS.len()
            )));
        }
        for (version, sql) in (1i32..).zip(MIGRATIONS).skip(done as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO escalera_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many waiting conversations of one address the agents' list shows.
    pub fn set_listed_per_address(&self, n: u32) {
        self.listed_per_address.store(n.max(1), Ordering::Relaxed);
    }

    fn listed_per_address(&self) -> i64 {
        self.listed_per_address.load(Ordering::Relaxed).into()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// [`Log::append`]: one statement, prepared once per connection, in its own transaction.
    /// It takes the conversation's row (its lock orders every append to the conversation, from
    /// any node, so seqs come without gaps or repeats), records the file if there is one, and
    /// stores the message. A `client_id` stored before makes it fail whole on the unique index
    /// (the seq taken goes back), and the message stored under it is the answer. The commit
    /// flushes the WAL before the message is acknowledged.
    async fn append_one(&self, m: NewMessage) -> Result<Appended> {
        const APPEND: &str = "WITH taken AS (
                UPDATE conversations SET last_seq = last_seq + 1, last_at = $2,
                preview = COALESCE($3, preview) WHERE id = $1 RETURNING last_seq),
            file AS (
                INSERT INTO files (id, conversation_id, name, size, mime, sha256, created_at)
                SELECT $9::TEXT, $1, $10::TEXT, $11::BIGINT, $12::TEXT, $13::TEXT, $2 FROM taken
                WHERE $9::TEXT IS NOT NULL)
            INSERT INTO messages (conversation_id, seq, client_id, author, author_name, text, at,
                event, attachment_id)
            SELECT $1, last_seq, $4, $5, $6, $7, $2, $8, $9::TEXT FROM taken RETURNING seq";
        let said = matches!(m.author, Author::Visitor | Author::Agent).then(|| preview(&m.text));
        let event = m
            .event
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("an event serializes"));
        let f = m.attachment.as_ref();
        let c = self.client().await?;
        let statement = c.prepare_cached(APPEND).await?;
        let params: [&(dyn ToSql + Sync); 13] = [
            &m.conversation.0,
            &m.at,
            &said,
            &m.client_id.as_ref().map(|c| &c.0),
            &author_str(m.author),
            &m.author_name,
            &m.text,
            &event,
            &f.map(|f| &f.id.0),
            &f.map(|f| &f.name),
            &f.map(|f| f.size as i64),
            &f.map(|f| &f.mime),
            &f.map(|f| &f.sha256),
        ];
        let row = match c.query_opt(&statement, &params).await {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) && m.client_id.is_some() => {
                let cid = m.client_id.as_ref().map(|c| &c.0);
                let sql =
                    format!("{MESSAGE_SELECT} WHERE m.conversation_id = $1 AND m.client_id = $2");
                let r = c.query_one(&sql, &[&m.conversation.0, &cid]).await?;
                return Ok(Appended {
                    message: row_message(&r),
                    fresh: false,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let Some(row) = row else {
            return Err(StoreError::Invalid(format!(
                "no conversation {}",
                m.conversation
            )));
        };
        let seq: i64 = row.get(0);
        Ok(Appended {
            message: m.stored(seq as u64),
            fresh: true,
        })
    }

    /// One statement on a pooled connection (its own transaction): rows changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.client().await?.execute(sql, params).await?)
    }

    /// One query on a pooled connection.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        Ok(self.client().await?.query(sql, params).await?)
    }

    /// One query of at most one row on a pooled connection.
    async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        Ok(self.client().await?.query_opt(sql, params).await?)
    }

    /// One query of exactly one row on a pooled connection.
    async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        Ok(self.client().await?.query_one(sql, params).await?)
    }
}

/// The site keys of `scope`, for `= ANY($n)`; `None` for every site.
fn scope_keys(scope: &Scope) -> Option<Vec<String>> {
    match scope {
        Scope::All => None,
        Scope::Sites(sites) => Some(sites.iter().map(|s| s.0.clone()).collect()),
    }
}

async fn site_row(c: &impl GenericClient, key: &SiteKey) -> Result<Option<Site>> {
    let Some(row) = c
        .query_opt(
            "SELECT name, features, look, identity_secret, identity_required
             FROM sites WHERE key = $1",
            &[&key.0],
        )
        .await?
    else {
        return Ok(None);
    };
    let origins = c
        .query(
            "SELECT origin FROM site_origins WHERE site_key = $1 ORDER BY origin",
            &[&key.0],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(Site {
        key: key.clone(),
        name: row.get(0),
        origins,
        features: json_col(row.get(1)),
        look: json_col(row.get(2)),
        identity_secret: row.get(3),
        identity_required: row.get(4),
    }))
}

/// An agent, disabled or not, by `column = value`; a disabled one only if `disabled_too`.
async fn load_agent(
    c: &impl GenericClient,
    column: &str,
    value: &str,
    disabled_too: bool,
) -> Result<Option<Agent>> {
    let disabled = if disabled_too {
        ""
    } else {
        " AND disabled_at IS NULL"
    };
    let sql = format!(
        "SELECT id, name, email, password_hash, all_sites, presence, chat_limit, admin
         FROM agents WHERE {column} = $1{disabled}"
    );
    let Some(r) = c.query_opt(&sql, &[&value]).await? else {
        return Ok(None);
    };
    let id: String = r.get(0);
    let scope = if r.get(4) {
        Scope::All
    } else {
        let rows = c
            .query(
                "SELECT site_key FROM agent_sites WHERE agent_id = $1",
                &[&id],
            )
            .await?;
        Scope::Sites(rows.iter().map(|r| SiteKey(r.get(0))).collect())
    };
    let presence = match r.get::<_, &str>(5) {
        "away" => Presence::Away,
        "offline" => Presence::Offline,
        _ => Presence::Available,
    };
    Ok(Some(Agent {
        agent: AgentRef {
            id: AgentId(id),
            name: r.get(1),
        },
        email: r.get(2),
        password_hash: r.get(3),
        scope,
        presence,
        limit: r.get::<_, i32>(6).max(0) as u32,
        admin: r.get(7),
    }))
}

/// Lets agent `id` serve these sites; fails on an unknown one.
async fn add_agent_sites(c: &impl GenericClient, id: &str, sites: &[SiteKey]) -> Result<()> {
    for site in sites {
        let known = c
            .query_opt("SELECT 1 FROM sites WHERE key = $1", &[&site.0])
            .await?
            .is_some();
        if !known {
            return Err(StoreError::Invalid(format!("no site with key {site}")));
        }
        c.execute(
            "INSERT INTO agent_sites (agent_id, site_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, &site.0],
        )
        .await?;
    }
    Ok(())
}

/// Ends every session of the agent with this (lowercase) email.
async fn end_sessions_of(c: &impl GenericClient, email: &str) -> Result<()> {
    c.execute(
        "DELETE FROM sessions WHERE agent_id IN (SELECT id FROM agents WHERE email = $1)",
        &[&email],
    )
    .await?;
    Ok(())
}

async fn set_origins(c: &impl GenericClient, site: &SiteKey, origins: &[String]) -> Result<()> {
    c.execute(
        "INSERT INTO site_origins (site_key, origin) SELECT $1, unnest($2::TEXT[])
         ON CONFLICT DO NOTHING",
        &[&site.0, &origins],
    )
    .await?;
    Ok(())
}

impl Directory for PgStore {
    fn add_site(&self, name: String, origins: Vec<String>, now: i64) -> StoreFuture<'_, Site> {
        Box::pin(async move {
            let key = SiteKey(secrets::random_id());
            let identity_secret = secrets::random_hex(32);
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO sites (key, name, created_at, identity_secret) VALUES ($1, $2, $3, $4)",
                &[&key.0, &name, &now, &identity_secret],
            )
            .await?;
            set_origins(&tx, &key, &origins).await?;
            tx.commit().await?;
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
        Box::pin(async move { set_origins(&self.client().await?, &site, &[origin]).await })
    }

    fn site(&self, key: SiteKey) -> StoreFuture<'_, Option<Site>> {
        Box::pin(async move { site_row(&self.client().await?, &key).await })
    }

    fn add_agent(
        &self,
        email: String,
        name: String,
        password_hash: String,
        sites: Option<Vec<SiteKey>>,
        now: i64,
    ) -> StoreFuture<'_, Agent> {
        Box::pin(async move {
            let email = email.trim().to_lowercase();
            let id = AgentId(secrets::random_id());
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let added = tx
                .execute(
                    "INSERT INTO agents (id, email, name, password_hash, all_sites, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
                    &[&id.0, &email, &name, &password_hash, &sites.is_none(), &now],
                )
                .await?;
            if added == 0 {
                return Err(StoreError::Invalid(format!(
                    "an agent with email {email} exists"
                )));
            }
            add_agent_sites(&tx, &id.0, sites.as_deref().unwrap_or_default()).await?;
            tx.commit().await?;
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
        Box::pin(async move {
            let c = self.client().await?;
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM agents", &[])
                .await?
                .get(0);
            Ok(n as u64)
        })
    }

    fn count(&self, key: String, window_ms: i64, now: i64) -> StoreFuture<'_, (u32, i64)> {
        Box::pin(async move {
            // Windows that ended go first, so a key counts afresh once its window is over.
            self.execute("DELETE FROM limit_counts WHERE ends <= $1", &[&now])
                .await?;
            let row = self
                .query_one(
                    "INSERT INTO limit_counts (key, ends, n) VALUES ($1, $2::BIGINT + $3::BIGINT, 1)
                     ON CONFLICT (key) DO UPDATE SET n = limit_counts.n + 1
                     RETURNING n, ends",
                    &[&key, &now, &window_ms],
                )
                .await?;
            let n: i32 = row.get(0);
            Ok((u32::try_from(n).unwrap_or(0), row.get(1)))
        })
    }

    fn agent_by_email(&self, email: String) -> StoreFuture<'_, Option<Agent>> {
        Box::pin(async move {
            let email = email.trim().to_lowercase();
            load_agent(&self.client().await?, "email", &email, false).await
        })
    }

    fn add_session(
        &self,
        token_hash: String,
        agent: AgentId,
        expires_at: i64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute(
                "INSERT INTO sessions (token_hash, agent_id, expires_at) VALUES ($1, $2, $3)",
                &[&token_hash, &agent.0, &expires_at],
            )
            .await?;
            Ok(())
        })
    }

    fn session_agent(&self, token_hash: String, now: i64) -> StoreFuture<'_, Option<Agent>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT agent_id FROM sessions WHERE token_hash = $1 AND expires_at > $2",
                    &[&token_hash, &now],
                )
                .await?;
            match row {
                Some(r) => load_agent(&c, "id", r.get(0), false).await,
                None => Ok(None),
            }
        })
    }

    fn delete_session(&self, token_hash: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
                .await?;
            Ok(())
        })
    }

    fn live_sessions(&self, token_hashes: Vec<String>, now: i64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT s.token_hash FROM sessions s JOIN agents a ON a.id = s.agent_id
                     WHERE s.token_hash = ANY($1) AND s.expires_at > $2 AND a.disabled_at IS NULL",
                    &[&token_hashes, &now],
                )
                .await?;
            let live: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
            // In the order asked.
            Ok(token_hashes
                .into_iter()
                .filter(|h| live.contains(h))
                .collect())
        })
    }

    fn purge_sessions(&self, now: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            Ok(
                c.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
                    .await?,
            )
        })
    }

    fn agents(&self, now: i64) -> StoreFuture<'_, Vec<AgentListing>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT a.id, a.disabled_at IS NOT NULL,
                        (SELECT COUNT(*) FROM sessions s WHERE s.agent_id = a.id AND s.expires_at > $1)
                     FROM agents a WHERE a.email NOT LIKE 'removed:%' ORDER BY a.email",
                    &[&now],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                if let Some(agent) = load_agent(&c, "id", r.get(0), true).await? {
                    out.push(AgentListing {
                        agent,
                        disabled: r.get(1),
                        sessions: r.get::<_, i64>(2) as u64,
                    });
                }
            }
            Ok(out)
        })
    }

    fn set_password(&self, email: String, password_hash: String) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let email = email.trim().to_lowercase();
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let changed = tx
                .execute(
                    "UPDATE agents SET password_hash = $2 WHERE email = $1",
                    &[&email, &password_hash],
                )
                .await?;
            end_sessions_of(&tx, &email).await?;
            tx.commit().await?;
            Ok(changed > 0)
        })
    }

    fn set_disabled(&self, email: String, disabled: bool, now: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let email = email.trim().to_lowercase();
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let changed = tx
                .execute(
                    "UPDATE agents SET disabled_at = $2 WHERE email = $1",
                    &[&email, &disabled.then_some(now)],
                )
                .await?;
            if disabled {
                end_sessions_of(&tx, &email).await?;
            }
            tx.commit().await?;
            Ok(changed > 0)
        })
    }

    fn remove_agent(&self, email: String, now: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let email = email.trim().to_lowercase();
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT id FROM agents WHERE email = $1 FOR UPDATE",
                    &[&email],
                )
                .await?
            else {
                return Ok(false);
            };
            let id: String = row.get(0);
            tx.execute("DELETE FROM sessions WHERE agent_id = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM agent_sites WHERE agent_id = $1", &[&id])
                .await?;
            tx.execute(
                "UPDATE agents SET disabled_at = $2, all_sites = FALSE,
                    email = 'removed:' || id || ':' || email WHERE id = $1",
                &[&id, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn setting(&self, key: String) -> StoreFuture<'_, Option<String>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = c
                .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn set_limit(&self, email: String, limit: u32) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let limit = i32::try_from(limit).unwrap_or(i32::MAX);
            let n = self
                .execute(
                    "UPDATE agents SET chat_limit = $2 WHERE email = $1 AND disabled_at IS NULL",
                    &[&email.trim().to_lowercase(), &limit],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn set_presence(&self, agent: AgentId, presence: Presence) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute(
                "UPDATE agents SET presence = $2 WHERE id = $1",
                &[&agent.0, &presence.as_str()],
            )
            .await?;
            Ok(())
        })
    }

    fn set_features(&self, site: SiteKey, features: SiteFeatures) -> StoreFuture<'_, bool> {
        let json = serde_json::to_string(&features).unwrap_or_default();
        Box::pin(async move {
            let n = self
                .execute(
                    "UPDATE sites SET features = $2 WHERE key = $1",
                    &[&site.0, &json],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn sites_of(&self, scope: Scope) -> StoreFuture<'_, Vec<Site>> {
        Box::pin(async move {
            let c = self.client().await?;
            let keys = scope_keys(&scope);
            let rows = c
                .query(
                    "SELECT key FROM sites WHERE $1::TEXT[] IS NULL OR key = ANY($1)
                     ORDER BY name, key",
                    &[&keys],
                )
                .await?;
            let mut sites = Vec::with_capacity(rows.len());
            for r in rows {
                sites.extend(site_row(&c, &SiteKey(r.get(0))).await?);
            }
            Ok(sites)
        })
    }

    fn canned(&self, scope: Scope) -> StoreFuture<'_, Vec<CannedReply>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT id, site_key, shortcut, text FROM canned
                     WHERE $1::TEXT[] IS NULL OR site_key = ANY($1) ORDER BY shortcut, site_key",
                    &[&scope_keys(&scope)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| CannedReply {
                    id: r.get(0),
                    site: SiteKey(r.get(1)),
                    shortcut: r.get(2),
                    text: r.get(3),
                })
                .collect())
        })
    }

    fn save_canned(
        &self,
        site: SiteKey,
        shortcut: String,
        text: String,
        now: i64,
    ) -> StoreFuture<'_, CannedReply> {
        Box::pin(async move {
            let row = self
                .query_one(
                    "INSERT INTO canned (id, site_key, shortcut, text, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (site_key, shortcut) DO UPDATE SET text = excluded.text
                     RETURNING id",
                    &[&secrets::random_id(), &site.0, &shortcut, &text, &now],
                )
                .await?;
            Ok(CannedReply {
                id: row.get(0),
                site,
                shortcut,
                text,
            })
        })
    }

    fn delete_canned(&self, id: String, scope: Scope) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .execute(
                    "DELETE FROM canned WHERE id = $1
                     AND ($2::TEXT[] IS NULL OR site_key = ANY($2))",
                    &[&id, &scope_keys(&scope)],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn save_site(&self, site: Site) -> StoreFuture<'_, bool> {
        let features = serde_json::to_string(&site.features).unwrap_or_default();
        let look = serde_json::to_string(&site.look).unwrap_or_default();
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "UPDATE sites SET name = $2, features = $3, look = $4, identity_required = $5
                     WHERE key = $1",
                    &[
                        &site.key.0,
                        &site.name,
                        &features,
                        &look,
                        &site.identity_required,
                    ],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM site_origins WHERE site_key = $1",
                &[&site.key.0],
            )
            .await?;
            set_origins(&tx, &site.key, &site.origins).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn set_admin(&self, email: String, admin: bool) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .execute(
                    "UPDATE agents SET admin = $2 WHERE email = $1",
                    &[&email.trim().to_lowercase(), &admin],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn set_sites(&self, email: String, sites: Option<Vec<SiteKey>>) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let email = email.trim().to_lowercase();
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT id FROM agents WHERE email = $1 FOR UPDATE",
                    &[&email],
                )
                .await?
            else {
                return Ok(false);
            };
            let id: String = row.get(0);
            tx.execute(
                "UPDATE agents SET all_sites = $2 WHERE id = $1",
                &[&id, &sites.is_none()],
            )
            .await?;
            tx.execute("DELETE FROM agent_sites WHERE agent_id = $1", &[&id])
                .await?;
            add_agent_sites(&tx, &id, sites.as_deref().unwrap_or_default()).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn record(&self, entry: AuditEntry) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute(
                "INSERT INTO audit (at, actor, action, detail) VALUES ($1, $2, $3, $4)",
                &[&entry.at, &entry.actor, &entry.action, &entry.detail],
            )
            .await?;
            Ok(())
        })
    }

    fn audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT $1",
                    &[&i64::from(limit)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| AuditEntry {
                    at: r.get(0),
                    actor: r.get(1),
                    action: r.get(2),
                    detail: r.get(3),
                })
                .collect())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn set_setting(&self, key: String, value: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
            Ok(())
        })
    }
}

const MESSAGE_SELECT: &str = "SELECT m.conversation_id, m.seq, m.client_id, m.author,
    m.author_name, m.text, m.at, f.id, f.name, f.size, f.mime, f.sha256, m.event
    FROM messages m LEFT JOIN files f ON f.id = m.attachment_id";

fn row_message(r: &Row) -> Message {
    let attachment = r.get::<_, Option<String>>(7).map(|id| Attachment {
        id: FileId(id),
        name: r.get(8),
        size: r.get::<_, i64>(9) as u64,
        mime: r.get(10),
        sha256: r.get(11),
    });
    Message {
        conversation: ConversationId(r.get(0)),
        seq: r.get::<_, i64>(1) as u64,
        client_id: r.get::<_, Option<String>>(2).map(ClientMsgId),
        author: parse_author(r.get(3)),
        author_name: r.get(4),
        text: r.get(5),
        // A line this relay cannot read (written by a newer one) still shows its English.
        event: r
            .get::<_, Option<&str>>(12)
            .and_then(|e| serde_json::from_str(e).ok()),
        at: r.get(6),
        attachment,
    }
}

const SUMMARY_SELECT: &str = "SELECT c.id, s.name, c.agent_id, a.name, c.last_seq, c.preview,
    c.last_at, c.closed_at, c.rating, c.site_key, c.visitor_name, s.features,
    c.external_id IS NOT NULL
    FROM conversations c JOIN sites s ON s.key = c.site_key LEFT JOIN agents a ON a.id = c.agent_id";

/// Whether conversation `c` is listed: assigned, or waiting with fewer than `$2` older
/// waiting conversations from its address (one address cannot fill the list).
const LISTED: &str = "(c.agent_id IS NOT NULL OR c.address IS NULL OR $2 > (
    SELECT COUNT(*) FROM conversations o WHERE o.agent_id IS NULL AND o.address = c.address
    AND o.created_at < c.created_at AND o.last_seq > 0))";

/// The agent in columns `id` and `name` of a LEFT JOIN (none when the id is NULL).
fn agent_cols(r: &Row, id: usize, name: usize) -> Option<AgentRef> {
    match (
        r.get::<_, Option<String>>(id),
        r.get::<_, Option<String>>(name),
    ) {
        (Some(id), Some(name)) => Some(AgentRef {
            id: AgentId(id),
            name,
        }),
        _ => None,
    }
}

fn row_summary(r: &Row) -> ConversationSummary {
    let id: String = r.get(0);
    let agent = agent_cols(r, 2, 3);
    ConversationSummary {
        visitor_label: r
            .get::<_, Option<String>>(10)
            .unwrap_or_else(|| visitor_label(&id)),
        id: ConversationId(id),
        site: SiteKey(r.get(9)),
        site_name: r.get(1),
        status: if r.get::<_, Option<i64>>(7).is_some() {
            ConversationStatus::Closed
        } else if agent.is_some() {
            ConversationStatus::Assigned
        } else {
            ConversationStatus::Waiting
        },
        agent,
        last_seq: r.get::<_, i64>(4) as u64,
        preview: r.get(5),
        last_at: r.get(6),
        rating: r.get::<_, Option<&str>>(8).and_then(parse_rating),
        features: json_col(r.get(11)),
        verified: r.get(12),
    }
}

async fn conversation_meta(
    c: &impl GenericClient,
    id: &ConversationId,
) -> Result<Option<ConversationMeta>> {
    let row = c
        .query_opt(
            "SELECT c.site_key, c.agent_id, a.name, c.closed_at, c.rating, s.features
             FROM conversations c JOIN sites s ON s.key = c.site_key
             LEFT JOIN agents a ON a.id = c.agent_id WHERE c.id = $1",
            &[&id.0],
        )
        .await?;
    Ok(row.map(|r| ConversationMeta {
        closed: r.get::<_, Option<i64>>(3).is_some(),
        rated: r.get::<_, Option<String>>(4).is_some(),
        features: json_col(r.get(5)),
        ..ConversationMeta::new(id.clone(), SiteKey(r.get(0)), agent_cols(&r, 1, 2))
    }))
}

/// Gives a visitor's token (its hash) conversation `id` of `site`.
async fn add_token(
    c: &impl GenericClient,
    token_hash: &str,
    site: &str,
    id: &str,
    now: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO visitors (token_hash, site_key, conversation_id, created_at)
         VALUES ($1, $2, $3, $4)",
        &[&token_hash, &site, &id, &now],
    )
    .await?;
    Ok(())
}

/// Whether `e` is PostgreSQL refusing a second row for a unique key.
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// A search hit's snippet: PostgreSQL's headline of `text`, with `…` where it cut the text
/// (as SQLite's snippets have).
fn snippet(headline: String, text: &str) -> String {
    let headline = headline.trim();
    let mut out = String::new();
    if !text.trim_start().starts_with(headline) {
        out.push('…');
    }
    out.push_str(headline);
    if !text.trim_end().ends_with(headline) {
        out.push('…');
    }
    out
}

/// Words ([`crate::store::search_words`]: letters and digits only, so none is syntax) as a
/// text-search query: all required, the last one as a prefix.
fn ts_query(words: &[String]) -> Option<String> {
    let (last, rest) = words.split_last()?;
    let mut query: Vec<String> = rest.to_vec();
    query.push(format!("{last}:*"));
    Some(query.join(" & "))
}

impl Log for PgStore {
    fn save_call(&self, id: ConversationId, call: Option<CallRecord>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            match call {
                Some(r) => {
                    c.execute(
                        "INSERT INTO calls
                         (conversation_id, site_key, kind, caller, caller_name, since)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (conversation_id) DO UPDATE SET site_key = excluded.site_key,
                            kind = excluded.kind, caller = excluded.caller,
                            caller_name = excluded.caller_name, since = excluded.since",
                        &[
                            &id.0,
                            &r.site.0,
                            &kind_str(r.kind),
                            &author_str(r.caller),
                            &r.caller_name,
                            &r.since,
                        ],
                    )
                    .await?
                }
                None => {
                    c.execute("DELETE FROM calls WHERE conversation_id = $1", &[&id.0])
                        .await?
                }
            };
            Ok(())
        })
    }

    fn calls(&self) -> StoreFuture<'_, Vec<(ConversationId, CallRecord)>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT conversation_id, site_key, kind, caller, caller_name, since FROM calls",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        ConversationId(r.get(0)),
                        CallRecord {
                            site: SiteKey(r.get(1)),
                            kind: parse_kind(r.get(2)),
                            caller: parse_author(r.get(3)),
                            caller_name: r.get(4),
                            since: r.get(5),
                        },
                    )
                })
                .collect())
        })
    }

    fn visitor_conversation(
        &self,
        site: SiteKey,
        token_hash: String,
    ) -> StoreFuture<'_, Option<ConversationMeta>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT conversation_id FROM visitors WHERE token_hash = $1 AND site_key = $2",
                    &[&token_hash, &site.0],
                )
                .await?;
            match row {
                Some(r) => conversation_meta(&c, &ConversationId(r.get(0))).await,
                None => Ok(None),
            }
        })
    }

    fn visitor(&self, token_hash: String) -> StoreFuture<'_, Option<(SiteKey, ConversationId)>> {
        Box::pin(async move {
            let row = self
                .query_opt(
                    "SELECT site_key, conversation_id FROM visitors WHERE token_hash = $1",
                    &[&token_hash],
                )
                .await?;
            Ok(row.map(|r| (SiteKey(r.get(0)), ConversationId(r.get(1)))))
        })
    }

    fn add_visitor(
        &self,
        conversation: ConversationMeta,
        token_hash: String,
        address: String,
        now: i64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (id, site) = (&conversation.id.0, &conversation.site.0);
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO conversations (id, site_key, last_at, created_at, address)
                 VALUES ($1, $2, $3, $3, $4)",
                &[id, site, &now, &address],
            )
            .await?;
            add_token(&tx, &token_hash, site, id, now).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn conversation(&self, id: ConversationId) -> StoreFuture<'_, Option<ConversationMeta>> {
        Box::pin(async move { conversation_meta(&self.client().await?, &id).await })
    }

    fn user_conversation(
        &self,
        site: SiteKey,
        user: String,
    ) -> StoreFuture<'_, Option<ConversationMeta>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT id FROM conversations WHERE site_key = $1 AND external_id = $2",
                    &[&site.0, &user],
                )
                .await?;
            match row {
                Some(r) => conversation_meta(&c, &ConversationId(r.get(0))).await,
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
        Box::pin(async move {
            let c = self.client().await?;
            add_token(&c, &token_hash, &site.0, &id.0, now).await
        })
    }

    fn add_link(
        &self,
        id: ConversationId,
        link_hash: String,
        expires_at: i64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            // Expired links go as new ones come.
            c.execute(
                "DELETE FROM links WHERE expires_at < $1",
                &[&(expires_at - crate::store::LINK_LIFE_MS)],
            )
            .await?;
            c.execute(
                "INSERT INTO links (hash, conversation_id, expires_at) VALUES ($1, $2, $3)",
                &[&link_hash, &id.0, &expires_at],
            )
            .await?;
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
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let link = tx
                .query_opt(
                    "DELETE FROM links WHERE hash = $1 RETURNING conversation_id, expires_at",
                    &[&link_hash],
                )
                .await?
                .map(|r| (ConversationId(r.get(0)), r.get::<_, i64>(1)));
            let meta = match link.filter(|(_, expires_at)| *expires_at > now) {
                Some((id, _)) => conversation_meta(&tx, &id)
                    .await?
                    .filter(|m| m.site == site),
                None => None,
            };
            if let Some(meta) = &meta {
                add_token(&tx, &token_hash, &site.0, &meta.id.0, now).await?;
            }
            // Used or not, the link is gone.
            tx.commit().await?;
            Ok(meta)
        })
    }

    fn claim(&self, id: ConversationId, user: VerifiedUser) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let changed = self
                .client()
                .await?
                .execute(
                    "UPDATE conversations SET external_id = $2,
                        visitor_name = COALESCE($3, visitor_name), email = COALESCE($4, email)
                     WHERE id = $1 AND (external_id IS NULL OR external_id = $2)",
                    &[&id.0, &user.id, &user.name, &user.email],
                )
                .await;
            match changed {
                Ok(n) => Ok(n == 1),
                // The user has another conversation of this site.
                Err(e) if is_unique_violation(&e) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn append(&self, m: NewMessage) -> StoreFuture<'_, Appended> {
        Box::pin(self.append_one(m))
    }

    fn summaries_of(&self, ids: Vec<ConversationId>) -> StoreFuture<'_, Vec<ConversationSummary>> {
        Box::pin(async move {
            let keys: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
            let rows = self
                .query(
                    &format!("{SUMMARY_SELECT} WHERE c.id = ANY($1) AND {LISTED}"),
                    &[&keys, &self.listed_per_address()],
                )
                .await?;
            let mut found: std::collections::HashMap<String, ConversationSummary> = rows
                .iter()
                .map(row_summary)
                .map(|s| (s.id.0.clone(), s))
                .collect();
            // In the order asked.
            Ok(ids.iter().filter_map(|id| found.remove(&id.0)).collect())
        })
    }

    fn messages_after(
        &self,
        id: ConversationId,
        after_seq: u64,
        limit: u32,
        notes: bool,
    ) -> StoreFuture<'_, HistoryPage> {
        Box::pin(async move {
            // Notes are read and then left out, so `upto` covers them: a visitor's next join
            // starts after them.
            let rows = self
                .query(
                    &format!(
                        "{MESSAGE_SELECT} WHERE m.conversation_id = $1 AND m.seq > $2
                         ORDER BY m.seq LIMIT $3"
                    ),
                    &[&id.0, &(after_seq as i64), &i64::from(limit)],
                )
                .await?;
            let full = rows.len() >= limit as usize;
            let messages: Vec<Message> = rows.iter().map(row_message).collect();
            let upto = messages.last().map_or(after_seq, |m| m.seq);
            Ok(HistoryPage {
                messages: messages
                    .into_iter()
                    .filter(|m| notes || m.author != Author::Note)
                    .collect(),
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
        Box::pin(async move {
            let n = self
                .execute(
                    "UPDATE conversations SET agent_id = $3
                     WHERE id = $1 AND closed_at IS NULL
                     AND (agent_id IS NOT DISTINCT FROM $2 OR agent_id IS NOT DISTINCT FROM $3)",
                    &[&id.0, &from.map(|a| a.0), &to.map(|a| a.0)],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn close(&self, id: ConversationId, agent: AgentId, at: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .execute(
                    "UPDATE conversations SET closed_at = $3, rating = NULL
                     WHERE id = $1 AND closed_at IS NULL AND (agent_id IS NULL OR agent_id = $2)",
                    &[&id.0, &agent.0, &at],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn reopen(&self, id: ConversationId, agent: Option<AgentId>) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .execute(
                    "UPDATE conversations SET closed_at = NULL, agent_id = $2, rating = NULL
                     WHERE id = $1 AND closed_at IS NOT NULL",
                    &[&id.0, &agent.map(|a| a.0)],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn rate(&self, id: ConversationId, rating: Rating) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let n = self
                .execute(
                    "UPDATE conversations SET rating = $2
                     WHERE id = $1 AND closed_at IS NOT NULL AND rating IS NULL",
                    &[&id.0, &rating_str(rating)],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn set_email(&self, id: ConversationId, email: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute(
                "UPDATE conversations SET email = $2 WHERE id = $1",
                &[&id.0, &email],
            )
            .await?;
            Ok(())
        })
    }

    fn search(
        &self,
        scope: Scope,
        words: Vec<String>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<SearchHit>> {
        Box::pin(async move {
            let Some(query) = ts_query(&words) else {
                return Ok(Vec::new());
            };
            let rows = self
                .query(
                    "WITH q AS (SELECT to_tsquery('simple',
                            public.unaccent('public.unaccent'::regdictionary, $1)) AS q)
                     SELECT m.conversation_id, m.seq, m.author, m.author_name,
                        ts_headline('simple', m.text, q.q,
                            'StartSel=\"\", StopSel=\"\", MaxWords=16, MinWords=8, ShortWord=0'),
                        m.text,
                        m.at, s.name
                     FROM q, messages m
                     JOIN conversations c ON c.id = m.conversation_id
                     JOIN sites s ON s.key = c.site_key
                     WHERE escalera_words(m.text) @@ q.q
                     AND ($3::TEXT[] IS NULL OR c.site_key = ANY($3))
                     ORDER BY m.at DESC LIMIT $2",
                    &[&query, &i64::from(limit), &scope_keys(&scope)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let id: String = r.get(0);
                    SearchHit {
                        visitor_label: visitor_label(&id),
                        conversation: ConversationId(id),
                        seq: r.get::<_, i64>(1) as u64,
                        author: parse_author(r.get(2)),
                        author_name: r.get(3),
                        snippet: snippet(r.get(4), r.get(5)),
                        at: r.get(6),
                        site_name: r.get(7),
                    }
                })
                .collect())
        })
    }

    fn set_visitor_info(&self, id: ConversationId, info: VisitorInfo) -> StoreFuture<'_, ()> {
        let json = serde_json::to_string(&info).unwrap_or_default();
        Box::pin(async move {
            self.execute(
                "UPDATE conversations SET visitor_info = $2 WHERE id = $1",
                &[&id.0, &json],
            )
            .await?;
            Ok(())
        })
    }

    fn set_visitor(
        &self,
        id: ConversationId,
        name: Option<String>,
        email: Option<String>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute(
                "UPDATE conversations SET visitor_name = $2, email = $3 WHERE id = $1",
                &[&id.0, &name, &email],
            )
            .await?;
            Ok(())
        })
    }

    fn visitor_details(&self, id: ConversationId) -> StoreFuture<'_, VisitorDetails> {
        Box::pin(async move {
            let row = self
                .query_opt(
                    "SELECT visitor_info, visitor_name, email, created_at, external_id
                     FROM conversations WHERE id = $1",
                    &[&id.0],
                )
                .await?;
            Ok(row
                .map(|r| VisitorDetails {
                    info: r
                        .get::<_, Option<&str>>(0)
                        .and_then(|j| serde_json::from_str(j).ok()),
                    name: r.get(1),
                    email: r.get(2),
                    since: r.get(3),
                    user: r.get(4),
                })
                .unwrap_or_default())
        })
    }

    fn open_conversations(&self) -> StoreFuture<'_, Vec<OpenConversation>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT id, site_key, agent_id, created_at FROM conversations
                     WHERE closed_at IS NULL AND last_seq > 0 ORDER BY created_at",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| OpenConversation {
                    id: ConversationId(r.get(0)),
                    site: SiteKey(r.get(1)),
                    agent: r.get::<_, Option<String>>(2).map(AgentId),
                    since: r.get(3),
                })
                .collect())
        })
    }

    fn summaries(&self, scope: Scope, limit: u32) -> StoreFuture<'_, Vec<ConversationSummary>> {
        Box::pin(async move {
            let rows = self
                .query(
                    &format!(
                        "{SUMMARY_SELECT} WHERE c.last_seq > 0 AND {LISTED}
                         AND ($3::TEXT[] IS NULL OR c.site_key = ANY($3))
                         ORDER BY (c.closed_at IS NOT NULL), (c.agent_id IS NOT NULL),
                            c.last_at DESC LIMIT $1"
                    ),
                    &[
                        &i64::from(limit),
                        &self.listed_per_address(),
                        &scope_keys(&scope),
                    ],
                )
                .await?;
            Ok(rows.iter().map(row_summary).collect())
        })
    }

    fn mark_read(&self, agent: AgentId, id: ConversationId, seq: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.execute(
                "INSERT INTO reads (agent_id, conversation_id, seq) VALUES ($1, $2, $3)
                     ON CONFLICT (agent_id, conversation_id)
                     DO UPDATE SET seq = GREATEST(reads.seq, excluded.seq)",
                &[&agent.0, &id.0, &(seq as i64)],
            )
            .await?;
            Ok(())
        })
    }

    fn read_marks(&self, agent: AgentId) -> StoreFuture<'_, Vec<ReadMark>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT conversation_id, seq FROM reads WHERE agent_id = $1",
                    &[&agent.0],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ReadMark {
                    conversation: ConversationId(r.get(0)),
                    seq: r.get::<_, i64>(1) as u64,
                })
                .collect())
        })
    }

    fn file(&self, id: FileId) -> StoreFuture<'_, Option<(ConversationId, Attachment)>> {
        Box::pin(async move {
            let row = self
                .query_opt(
                    "SELECT conversation_id, name, size, mime, sha256 FROM files WHERE id = $1",
                    &[&id.0],
                )
                .await?;
            Ok(row.map(|r| {
                (
                    ConversationId(r.get(0)),
                    Attachment {
                        id: id.clone(),
                        name: r.get(1),
                        size: r.get::<_, i64>(2) as u64,
                        mime: r.get(3),
                        sha256: r.get(4),
                    },
                )
            }))
        })
    }

    fn known_files(&self, ids: Vec<FileId>) -> StoreFuture<'_, Vec<FileId>> {
        Box::pin(async move {
            let keys: Vec<&str> = ids.iter().map(|f| f.0.as_str()).collect();
            let rows = self
                .query("SELECT id FROM files WHERE id = ANY($1)", &[&keys])
                .await?;
            Ok(rows.iter().map(|r| FileId(r.get(0))).collect())
        })
    }

    fn read_upto(&self, id: ConversationId) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let n: i64 = self
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) FROM reads WHERE conversation_id = $1",
                    &[&id.0],
                )
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }

    fn files_size(&self, id: ConversationId) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let n: i64 = self
                .query_one(
                    "SELECT COALESCE(SUM(size), 0)::BIGINT FROM files WHERE conversation_id = $1",
                    &[&id.0],
                )
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }

    fn message_by_client_id(
        &self,
        id: ConversationId,
        client_id: ClientMsgId,
    ) -> StoreFuture<'_, Option<Message>> {
        Box::pin(async move {
            let row = self
                .query_opt(
                    &format!("{MESSAGE_SELECT} WHERE m.conversation_id = $1 AND m.client_id = $2"),
                    &[&id.0, &client_id.0],
                )
                .await?;
            Ok(row.as_ref().map(row_message))
        })
    }
}
