//! The store on PostgreSQL (15 or later), for several relay nodes sharing one record
//! (`--database-url`, issue 11). The same [`Directory`] and [`Log`] as
//! [`crate::sqlite::SqliteStore`], held to the same contract by one test suite
//! (`relay/tests/store.rs`).
//!
//! - Connections come from a pool (deadpool); every call is async, nothing blocks the runtime.
//! - The schema is made by numbered migrations, run at start inside one transaction under an
//!   advisory lock: nodes starting together apply each one once.
//! - A site is read afresh on every lookup: another node may have just changed it.

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use escalera_protocol::{
    AgentId, AgentRef, CannedReply, Presence, SiteFeatures, SiteKey, SiteLook,
};
use tokio_postgres::NoTls;

use crate::core::Scope;
use crate::error::StoreError;
use crate::secrets;
use crate::store::{Agent, AgentListing, AuditEntry, Directory, Site, StoreFuture};

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
CREATE INDEX messages_words ON messages USING GIN (to_tsvector('simple', text));
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
];

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(e.to_string())
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
        let store = Self { pool };
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

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

/// The site keys of `scope`, for `= ANY($n)`; `None` for every site.
fn scope_keys(scope: &Scope) -> Option<Vec<String>> {
    match scope {
        Scope::All => None,
        Scope::Sites(sites) => Some(sites.iter().map(|s| s.0.clone()).collect()),
    }
}

/// A site's features or look from its JSON column (none, or unreadable: the defaults).
fn json_col<T: serde::de::DeserializeOwned + Default>(json: Option<String>) -> T {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
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
            self.client()
                .await?
                .execute(
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
            self.client()
                .await?
                .execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
                .await?;
            Ok(())
        })
    }

    fn live_sessions(&self, token_hashes: Vec<String>, now: i64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
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
                .client()
                .await?
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
            self.client()
                .await?
                .execute(
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
                .client()
                .await?
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
                .client()
                .await?
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
                .client()
                .await?
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
                .client()
                .await?
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
                .client()
                .await?
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
            self.client()
                .await?
                .execute(
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
                .client()
                .await?
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

    fn set_setting(&self, key: String, value: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, &value],
                )
                .await?;
            Ok(())
        })
    }
}
