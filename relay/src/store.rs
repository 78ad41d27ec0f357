//! The record: sites, agents, sessions, visitors, conversations and their messages.
//!
//! [`Store`] is the small trait the rest of the relay uses; [`SqliteStore`] is the embedded
//! default (one file, WAL, `synchronous=FULL`: a message is acknowledged only after its commit
//! is on disk, so killing the relay loses nothing acknowledged). Calls block; async callers run
//! them on the blocking pool (see `hub::blocking`).

use std::path::Path;
use std::sync::Mutex;

use escalera_protocol::{
    AgentId, AgentRef, Attachment, Author, ClientMsgId, ConversationId, ConversationStatus,
    ConversationSummary, FileId, Message, ReadMark, SiteKey,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::core::{ConversationMeta, Scope};
use crate::error::StoreError;
use crate::secrets;

type Result<T> = std::result::Result<T, StoreError>;

/// A site that embeds the widget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Its public key.
    pub key: SiteKey,
    /// Its display name.
    pub name: String,
    /// The exact origins (`scheme://host[:port]`) allowed to embed it.
    pub origins: Vec<String>,
}

/// An agent as stored.
#[derive(Clone, Debug)]
pub struct Agent {
    /// Id and name.
    pub agent: AgentRef,
    /// Login email (unique, lowercase).
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The sites they serve.
    pub scope: Scope,
}

/// A message about to be stored.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// The conversation.
    pub conversation: ConversationId,
    /// The sender's id, for deduplication; `None` for system messages.
    pub client_id: Option<ClientMsgId>,
    /// Who wrote it.
    pub author: Author,
    /// The agent's name for agent messages.
    pub author_name: Option<String>,
    /// The text.
    pub text: String,
    /// A file already recorded with [`Store::add_file`].
    pub attachment: Option<Attachment>,
    /// Now, in ms since the epoch.
    pub at: i64,
}

/// The relay's storage. Every method is one transaction.
pub trait Store: Send + Sync + 'static {
    /// Creates a site with a fresh random key.
    fn add_site(&self, name: &str, origins: &[String], now: i64) -> Result<Site>;
    /// Adds `origin` to a site's allowed list if it is not there.
    fn allow_origin(&self, site: &SiteKey, origin: &str) -> Result<()>;
    /// A site by key.
    fn site(&self, key: &SiteKey) -> Result<Option<Site>>;
    /// Every site.
    fn sites(&self) -> Result<Vec<Site>>;
    /// Creates an agent; `sites: None` means every site. Fails on a duplicate email.
    fn add_agent(
        &self,
        email: &str,
        name: &str,
        password_hash: &str,
        sites: Option<&[SiteKey]>,
        now: i64,
    ) -> Result<Agent>;
    /// How many agents exist.
    fn agent_count(&self) -> Result<u64>;
    /// An agent by login email (case-insensitive).
    fn agent_by_email(&self, email: &str) -> Result<Option<Agent>>;
    /// Records a session for `agent` under the hash of its cookie token.
    fn add_session(&self, token_hash: &str, agent: &AgentId, expires_at: i64) -> Result<()>;
    /// The agent of a live session.
    fn session_agent(&self, token_hash: &str, now: i64) -> Result<Option<Agent>>;
    /// Ends a session.
    fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// The conversation of a visitor of `site` known by their token's hash.
    fn visitor_conversation(
        &self,
        site: &SiteKey,
        token_hash: &str,
    ) -> Result<Option<ConversationId>>;
    /// A visitor's site and conversation, by their token's hash (any site).
    fn visitor(&self, token_hash: &str) -> Result<Option<(SiteKey, ConversationId)>>;
    /// Creates a visitor and their (still empty) conversation.
    fn add_visitor(&self, site: &SiteKey, token_hash: &str, now: i64) -> Result<ConversationId>;
    /// A conversation's site and assignee.
    fn conversation(&self, id: &ConversationId) -> Result<Option<ConversationMeta>>;
    /// Stores a message with the next seq, unless one with the same `client_id` is already in
    /// that conversation: then returns that one and `false`.
    fn append(&self, msg: NewMessage) -> Result<(Message, bool)>;
    /// Up to `limit` messages after `after_seq`, oldest first.
    fn messages_after(
        &self,
        id: &ConversationId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Message>>;
    /// Assigns a waiting conversation to `agent`; `false` if someone else has it.
    fn assign(&self, id: &ConversationId, agent: &AgentId) -> Result<bool>;
    /// The list row of a conversation.
    fn summary(&self, id: &ConversationId) -> Result<Option<ConversationSummary>>;
    /// Conversations with at least one message on the sites of `scope`: waiting first, then by
    /// newest activity; at most `limit`.
    fn summaries(&self, scope: &Scope, limit: u32) -> Result<Vec<ConversationSummary>>;
    /// Records that `agent` read `id` up to `seq` (never moves backwards).
    fn mark_read(&self, agent: &AgentId, id: &ConversationId, seq: u64) -> Result<()>;
    /// The agent's read marks.
    fn read_marks(&self, agent: &AgentId) -> Result<Vec<ReadMark>>;
    /// Records an uploaded file of a conversation (its bytes are already on disk).
    fn add_file(&self, conversation: &ConversationId, file: &Attachment, now: i64) -> Result<()>;
    /// A file and the conversation it belongs to.
    fn file(&self, id: &FileId) -> Result<Option<(ConversationId, Attachment)>>;
    /// A small key/value record for the relay's own bookkeeping (e.g. the demo site's key).
    fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets a setting.
    fn set_setting(&self, key: &str, value: &str) -> Result<()>;
}

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
];

/// The embedded SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/escalera.db`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        let mut conn = Connection::open(dir.join("escalera.db"))?;
        // WAL lets the CLI add agents while `serve` runs; FULL makes each commit durable.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in (0i64..).zip(MIGRATIONS).skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

fn author_str(a: Author) -> &'static str {
    match a {
        Author::Visitor => "visitor",
        Author::Agent => "agent",
        Author::System => "system",
    }
}

fn parse_author(s: &str) -> Author {
    match s {
        "visitor" => Author::Visitor,
        "agent" => Author::Agent,
        _ => Author::System,
    }
}

const MESSAGE_SELECT: &str = "SELECT m.conversation_id, m.seq, m.client_id, m.author,
    m.author_name, m.text, m.at, f.id, f.name, f.size, f.mime, f.sha256
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
        at: r.get(6)?,
        attachment,
    })
}

const SUMMARY_SELECT: &str = "SELECT c.id, s.name, c.agent_id, a.name, c.last_seq, c.preview, c.last_at
    FROM conversations c JOIN sites s ON s.key = c.site_key LEFT JOIN agents a ON a.id = c.agent_id";

fn row_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationSummary> {
    let id: String = r.get(0)?;
    let agent = match (
        r.get::<_, Option<String>>(2)?,
        r.get::<_, Option<String>>(3)?,
    ) {
        (Some(id), Some(name)) => Some(AgentRef {
            id: AgentId(id),
            name,
        }),
        _ => None,
    };
    Ok(ConversationSummary {
        visitor_label: format!("Visitor {}", &id[..id.len().min(4)]),
        id: ConversationId(id),
        site_name: r.get(1)?,
        status: if agent.is_some() {
            ConversationStatus::Assigned
        } else {
            ConversationStatus::Waiting
        },
        agent,
        last_seq: r.get::<_, i64>(4)? as u64,
        preview: r.get(5)?,
        last_at: r.get(6)?,
    })
}

fn load_agent(conn: &Connection, where_clause: &str, arg: &str) -> Result<Option<Agent>> {
    let sql = format!(
        "SELECT a.id, a.name, a.email, a.password_hash, a.all_sites FROM agents a {where_clause}"
    );
    let row = conn
        .query_row(&sql, [arg], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })
        .optional()?;
    let Some((id, name, email, password_hash, all_sites)) = row else {
        return Ok(None);
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
    }))
}

/// The first characters of a message, on one line, for the conversation list.
fn preview(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut p: String = one_line.chars().take(80).collect();
    if one_line.chars().count() > 80 {
        p.push('…');
    }
    p
}

impl Store for SqliteStore {
    fn add_site(&self, name: &str, origins: &[String], now: i64) -> Result<Site> {
        let key = SiteKey(secrets::random_id());
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO sites (key, name, created_at) VALUES (?1, ?2, ?3)",
                params![key.0, name, now],
            )?;
            for o in origins {
                tx.execute(
                    "INSERT OR IGNORE INTO site_origins (site_key, origin) VALUES (?1, ?2)",
                    params![key.0, o],
                )?;
            }
            tx.commit()?;
            Ok(())
        })?;
        Ok(Site {
            key,
            name: name.to_owned(),
            origins: origins.to_vec(),
        })
    }

    fn allow_origin(&self, site: &SiteKey, origin: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO site_origins (site_key, origin) VALUES (?1, ?2)",
                params![site.0, origin],
            )?;
            Ok(())
        })
    }

    fn site(&self, key: &SiteKey) -> Result<Option<Site>> {
        self.with(|c| {
            let Some(name) = c
                .query_row("SELECT name FROM sites WHERE key = ?1", [&key.0], |r| {
                    r.get(0)
                })
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt =
                c.prepare("SELECT origin FROM site_origins WHERE site_key = ?1 ORDER BY origin")?;
            let origins = stmt
                .query_map([&key.0], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(Site {
                key: key.clone(),
                name,
                origins,
            }))
        })
    }

    fn sites(&self) -> Result<Vec<Site>> {
        let keys: Vec<SiteKey> = self.with(|c| {
            let mut stmt = c.prepare("SELECT key FROM sites ORDER BY created_at")?;
            let keys = stmt
                .query_map([], |r| r.get(0).map(SiteKey))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(keys)
        })?;
        keys.iter()
            .filter_map(|k| self.site(k).transpose())
            .collect()
    }

    fn add_agent(
        &self,
        email: &str,
        name: &str,
        password_hash: &str,
        sites: Option<&[SiteKey]>,
        now: i64,
    ) -> Result<Agent> {
        let email = email.trim().to_lowercase();
        let id = AgentId(secrets::random_id());
        self.with(|c| {
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
            for site in sites.unwrap_or_default() {
                let known: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM sites WHERE key = ?1)",
                    [&site.0],
                    |r| r.get(0),
                )?;
                if !known {
                    return Err(StoreError::Invalid(format!("no site with key {site}")));
                }
                tx.execute(
                    "INSERT OR IGNORE INTO agent_sites (agent_id, site_key) VALUES (?1, ?2)",
                    params![id.0, site.0],
                )?;
            }
            tx.commit()?;
            Ok(())
        })?;
        Ok(Agent {
            agent: AgentRef {
                id,
                name: name.to_owned(),
            },
            email,
            password_hash: password_hash.to_owned(),
            scope: match sites {
                None => Scope::All,
                Some(s) => Scope::Sites(s.iter().cloned().collect()),
            },
        })
    }

    fn agent_count(&self) -> Result<u64> {
        self.with(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM agents", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    fn agent_by_email(&self, email: &str) -> Result<Option<Agent>> {
        self.with(|c| load_agent(c, "WHERE a.email = ?1", &email.trim().to_lowercase()))
    }

    fn add_session(&self, token_hash: &str, agent: &AgentId, expires_at: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sessions (token_hash, agent_id, expires_at) VALUES (?1, ?2, ?3)",
                params![token_hash, agent.0, expires_at],
            )?;
            Ok(())
        })
    }

    fn session_agent(&self, token_hash: &str, now: i64) -> Result<Option<Agent>> {
        self.with(|c| {
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

    fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
            Ok(())
        })
    }

    fn visitor_conversation(
        &self,
        site: &SiteKey,
        token_hash: &str,
    ) -> Result<Option<ConversationId>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT conversation_id FROM visitors WHERE token_hash = ?1 AND site_key = ?2",
                params![token_hash, site.0],
                |r| r.get(0).map(ConversationId),
            )
            .optional()?)
        })
    }

    fn visitor(&self, token_hash: &str) -> Result<Option<(SiteKey, ConversationId)>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT site_key, conversation_id FROM visitors WHERE token_hash = ?1",
                [token_hash],
                |r| Ok((SiteKey(r.get(0)?), ConversationId(r.get(1)?))),
            )
            .optional()?)
        })
    }

    fn add_visitor(&self, site: &SiteKey, token_hash: &str, now: i64) -> Result<ConversationId> {
        let id = ConversationId(secrets::random_id());
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO conversations (id, site_key, last_at, created_at) VALUES (?1, ?2, ?3, ?3)",
                params![id.0, site.0, now],
            )?;
            tx.execute(
                "INSERT INTO visitors (token_hash, site_key, conversation_id, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, site.0, id.0, now],
            )?;
            tx.commit()?;
            Ok(())
        })?;
        Ok(id)
    }

    fn conversation(&self, id: &ConversationId) -> Result<Option<ConversationMeta>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT c.site_key, c.agent_id, a.name FROM conversations c
                 LEFT JOIN agents a ON a.id = c.agent_id WHERE c.id = ?1",
                [&id.0],
                |r| {
                    let agent = match (
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ) {
                        (Some(id), Some(name)) => Some(AgentRef {
                            id: AgentId(id),
                            name,
                        }),
                        _ => None,
                    };
                    Ok(ConversationMeta {
                        id: id.clone(),
                        site: SiteKey(r.get(0)?),
                        agent,
                    })
                },
            )
            .optional()?)
        })
    }

    fn append(&self, m: NewMessage) -> Result<(Message, bool)> {
        self.with(|c| {
            let tx = c.transaction()?;
            if let Some(cid) = &m.client_id {
                let existing = tx
                    .query_row(
                        &format!(
                            "{MESSAGE_SELECT} WHERE m.conversation_id = ?1 AND m.client_id = ?2"
                        ),
                        params![m.conversation.0, cid.0],
                        row_message,
                    )
                    .optional()?;
                if let Some(existing) = existing {
                    return Ok((existing, false));
                }
            }
            let seq: i64 = tx.query_row(
                "UPDATE conversations SET last_seq = last_seq + 1, last_at = ?2, preview = ?3
                 WHERE id = ?1 RETURNING last_seq",
                params![m.conversation.0, m.at, preview(&m.text)],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO messages
                 (conversation_id, seq, client_id, author, author_name, text, at, attachment_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    m.conversation.0,
                    seq,
                    m.client_id.as_ref().map(|c| &c.0),
                    author_str(m.author),
                    m.author_name,
                    m.text,
                    m.at,
                    m.attachment.as_ref().map(|a| &a.id.0),
                ],
            )?;
            tx.commit()?;
            Ok((
                Message {
                    conversation: m.conversation,
                    seq: seq as u64,
                    client_id: m.client_id,
                    author: m.author,
                    author_name: m.author_name,
                    text: m.text,
                    attachment: m.attachment,
                    at: m.at,
                },
                true,
            ))
        })
    }

    fn messages_after(
        &self,
        id: &ConversationId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "{MESSAGE_SELECT} WHERE m.conversation_id = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![id.0, after_seq as i64, limit], row_message)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn assign(&self, id: &ConversationId, agent: &AgentId) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE conversations SET agent_id = ?2
                 WHERE id = ?1 AND (agent_id IS NULL OR agent_id = ?2)",
                params![id.0, agent.0],
            )?;
            Ok(n == 1)
        })
    }

    fn summary(&self, id: &ConversationId) -> Result<Option<ConversationSummary>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("{SUMMARY_SELECT} WHERE c.id = ?1"),
                [&id.0],
                row_summary,
            )
            .optional()?)
        })
    }

    fn summaries(&self, scope: &Scope, limit: u32) -> Result<Vec<ConversationSummary>> {
        self.with(|c| {
            let order = "ORDER BY (c.agent_id IS NOT NULL), c.last_at DESC LIMIT ?1";
            let rows =
                match scope {
                    Scope::All => {
                        let mut stmt =
                            c.prepare(&format!("{SUMMARY_SELECT} WHERE c.last_seq > 0 {order}"))?;
                        let rows = stmt
                            .query_map([limit], row_summary)?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        rows
                    }
                    Scope::Sites(sites) => {
                        // Site keys are our own hex ids; bind them all the same.
                        let marks = (0..sites.len())
                            .map(|i| format!("?{}", i + 2))
                            .collect::<Vec<_>>();
                        let sql =
                            format!(
                        "{SUMMARY_SELECT} WHERE c.last_seq > 0 AND c.site_key IN ({}) {order}",
                        if marks.is_empty() { "NULL".to_owned() } else { marks.join(",") }
                    );
                        let mut stmt = c.prepare(&sql)?;
                        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&limit];
                        args.extend(sites.iter().map(|s| &s.0 as &dyn rusqlite::ToSql));
                        let rows = stmt
                            .query_map(args.as_slice(), row_summary)?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        rows
                    }
                };
            Ok(rows)
        })
    }

    fn mark_read(&self, agent: &AgentId, id: &ConversationId, seq: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO reads (agent_id, conversation_id, seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent_id, conversation_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                params![agent.0, id.0, seq as i64],
            )?;
            Ok(())
        })
    }

    fn read_marks(&self, agent: &AgentId) -> Result<Vec<ReadMark>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT conversation_id, seq FROM reads WHERE agent_id = ?1")?;
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

    fn add_file(&self, conversation: &ConversationId, f: &Attachment, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO files (id, conversation_id, name, size, mime, sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    f.id.0,
                    conversation.0,
                    f.name,
                    f.size as i64,
                    f.mime,
                    f.sha256,
                    now
                ],
            )?;
            Ok(())
        })
    }

    fn file(&self, id: &FileId) -> Result<Option<(ConversationId, Attachment)>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT conversation_id, name, size, mime, sha256 FROM files WHERE id = ?1",
                [&id.0],
                |r| {
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
                },
            )
            .optional()?)
        })
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
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
            attachment: None,
            at: 1,
        }
    }

    #[test]
    fn append_assigns_seq_and_dedupes_client_ids() {
        let (_d, s) = store();
        let site = s
            .add_site("Shop", &["https://a.example".into()], 0)
            .unwrap();
        let conv = s.add_visitor(&site.key, "h", 0).unwrap();
        let (m1, fresh1) = s.append(chat(&conv, "x", "one")).unwrap();
        let (m2, fresh2) = s.append(chat(&conv, "y", "two")).unwrap();
        let (again, fresh3) = s.append(chat(&conv, "x", "one (resent)")).unwrap();
        assert_eq!((m1.seq, m2.seq), (1, 2));
        assert!(fresh1 && fresh2 && !fresh3);
        assert_eq!(again, m1);
        assert_eq!(s.messages_after(&conv, 0, 100).unwrap().len(), 2);
        assert_eq!(s.messages_after(&conv, 1, 100).unwrap(), vec![m2]);
    }

    #[test]
    fn assign_is_first_come() {
        let (_d, s) = store();
        let site = s.add_site("Shop", &[], 0).unwrap();
        let a = s.add_agent("A@x.example", "A", "h", None, 0).unwrap();
        let b = s
            .add_agent(
                "b@x.example",
                "B",
                "h",
                Some(std::slice::from_ref(&site.key)),
                0,
            )
            .unwrap();
        assert!(s.add_agent("a@x.example", "dup", "h", None, 0).is_err());
        let conv = s.add_visitor(&site.key, "h", 0).unwrap();
        assert!(s.assign(&conv, &a.agent.id).unwrap());
        assert!(!s.assign(&conv, &b.agent.id).unwrap());
        assert!(s.assign(&conv, &a.agent.id).unwrap());
        assert_eq!(
            s.conversation(&conv).unwrap().unwrap().agent,
            Some(a.agent.clone())
        );
        assert_eq!(
            s.agent_by_email("a@X.example").unwrap().unwrap().scope,
            Scope::All
        );
    }

    #[test]
    fn summaries_put_waiting_first_and_respect_scope() {
        let (_d, s) = store();
        let s1 = s.add_site("One", &[], 0).unwrap();
        let s2 = s.add_site("Two", &[], 0).unwrap();
        let a = s.add_agent("a@x.example", "A", "h", None, 0).unwrap();
        let c1 = s.add_visitor(&s1.key, "1", 0).unwrap();
        let c2 = s.add_visitor(&s1.key, "2", 0).unwrap();
        let c3 = s.add_visitor(&s2.key, "3", 0).unwrap();
        let _empty = s.add_visitor(&s1.key, "4", 0).unwrap();
        for (i, c) in [&c1, &c2, &c3].into_iter().enumerate() {
            let mut m = chat(c, "m", &format!("hello\n{i}"));
            m.at = 10 + i as i64;
            s.append(m).unwrap();
        }
        s.assign(&c3, &a.agent.id).unwrap();
        let all: Vec<_> = s
            .summaries(&Scope::All, 50)
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(all, vec![c2.clone(), c1.clone(), c3]);
        let only_one = s
            .summaries(&Scope::Sites([s1.key.clone()].into()), 50)
            .unwrap();
        assert_eq!(only_one.len(), 2);
        assert_eq!(only_one[0].preview, "hello 1");
        assert!(s
            .summaries(&Scope::Sites(Default::default()), 50)
            .unwrap()
            .is_empty());
        s.mark_read(&a.agent.id, &c1, 3).unwrap();
        s.mark_read(&a.agent.id, &c1, 2).unwrap();
        assert_eq!(
            s.read_marks(&a.agent.id).unwrap(),
            vec![ReadMark {
                conversation: c1,
                seq: 3
            }]
        );
    }

    #[test]
    fn attachments_come_back_with_their_messages() {
        let (_d, s) = store();
        let site = s.add_site("Shop", &[], 0).unwrap();
        let conv = s.add_visitor(&site.key, "h", 0).unwrap();
        let file = Attachment {
            id: FileId::from("f"),
            name: "a.png".into(),
            size: 3,
            mime: "image/png".into(),
            sha256: "ab".into(),
        };
        s.add_file(&conv, &file, 0).unwrap();
        let mut m = chat(&conv, "x", "a.png");
        m.attachment = Some(file.clone());
        let (stored, _) = s.append(m).unwrap();
        assert_eq!(stored.attachment.as_ref(), Some(&file));
        assert_eq!(
            s.messages_after(&conv, 0, 10).unwrap()[0].attachment,
            Some(file.clone())
        );
        assert_eq!(s.file(&file.id).unwrap(), Some((conv, file)));
        assert_eq!(s.file(&FileId::from("nope")).unwrap(), None);
    }

    #[test]
    fn preview_is_one_short_line() {
        assert_eq!(preview("a\n\n b"), "a b");
        assert_eq!(preview(&"x".repeat(100)).chars().count(), 81);
    }
}
