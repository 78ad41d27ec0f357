//! The record, as two small async traits: the [`Directory`] (sites, agents, sessions, settings)
//! and the [`Log`] (visitors, conversations, messages, files, read marks). The relay uses only
//! these; [`crate::sqlite::SqliteStore`] is the embedded default, and a networked database
//! plugs in behind the same traits without blocking the runtime.
//!
//! The rule for the log: a message is acknowledged only after its commit is durable, so
//! killing the relay loses nothing acknowledged.

use std::future::Future;
use std::pin::Pin;

use escalera_protocol::{
    AgentId, AgentRef, Attachment, Author, CallKind, CannedReply, ClientMsgId, ConversationId,
    ConversationSummary, FileId, Message, Presence, Rating, ReadMark, SearchHit, SiteFeatures,
    SiteKey, SiteLook, VisitorInfo,
};

pub use escalera_protocol::AuditEntry;

use crate::core::{CallRecord, ConversationMeta, NewMessage, Scope};
use crate::error::StoreError;

/// Waiting conversations listed per address, unless set otherwise.
pub const LISTED_PER_ADDRESS: u32 = 20;

/// Sets `path`'s permission bits (Unix): the data dir and the database files are for the
/// relay's user only, whichever store keeps the record.
pub fn private(path: &std::path::Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| StoreError::Invalid(format!("cannot restrict {}: {e}", path.display())))
}

/// How many open conversations routing gives an agent, unless set otherwise.
pub const DEFAULT_CHAT_LIMIT: u32 = 5;

/// What a store call returns: a future that owns its arguments.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// How long a link back to a conversation, sent by email, stays good: a week.
pub const LINK_LIFE_MS: i64 = 7 * 24 * 3600 * 1000;

// Column values both backends store the same way.

/// The words of a search box, as [`Log::search`] takes them: runs of letters and digits (what
/// else was typed is no syntax, only a separator), at most 8.
pub fn search_words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_owned)
        .collect()
}

/// A value from a JSON column (none, or unreadable: the defaults, e.g. every feature on).
pub fn json_col<T: serde::de::DeserializeOwned + Default>(json: Option<String>) -> T {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

/// How an author is stored.
pub fn author_str(a: Author) -> &'static str {
    match a {
        Author::Visitor => "visitor",
        Author::Agent => "agent",
        Author::System => "system",
        Author::Note => "note",
    }
}

/// An author as stored (anything unknown: the relay).
pub fn parse_author(s: &str) -> Author {
    match s {
        "visitor" => Author::Visitor,
        "agent" => Author::Agent,
        "note" => Author::Note,
        _ => Author::System,
    }
}

/// How the agents' list names a visitor: "Visitor " and the start of their conversation's id.
pub fn visitor_label(conversation: &str) -> String {
    format!("Visitor {}", &conversation[..conversation.len().min(4)])
}

/// A rating as stored.
pub fn parse_rating(s: &str) -> Option<Rating> {
    match s {
        "up" => Some(Rating::Up),
        "down" => Some(Rating::Down),
        _ => None,
    }
}

/// How a rating is stored.
pub fn rating_str(r: Rating) -> &'static str {
    match r {
        Rating::Up => "up",
        Rating::Down => "down",
    }
}

/// The first characters of a message, on one line, for the conversation list.
pub fn preview(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut p: String = one_line.chars().take(80).collect();
    if one_line.chars().count() > 80 {
        p.push('…');
    }
    p
}

/// How a call's kind is stored.
pub fn kind_str(k: CallKind) -> &'static str {
    match k {
        CallKind::Voice => "voice",
        CallKind::Video => "video",
        CallKind::Screen => "screen",
    }
}

/// A call's kind as stored (anything unknown: voice).
pub fn parse_kind(s: &str) -> CallKind {
    match s {
        "video" => CallKind::Video,
        "screen" => CallKind::Screen,
        _ => CallKind::Voice,
    }
}

/// A site that embeds the widget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Its public key.
    pub key: SiteKey,
    /// Its display name.
    pub name: String,
    /// The exact origins (`scheme://host[:port]`) allowed to embed it.
    pub origins: Vec<String>,
    /// The steps of the ladder and the extras it offers.
    pub features: SiteFeatures,
    /// How its widget looks.
    pub look: SiteLook,
    /// The key of the HMAC-SHA256 its server makes of a user's id (hex), for `identify`.
    pub identity_secret: String,
    /// A visitor must be a verified user of the site.
    pub identity_required: bool,
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
    /// What they last chose to be (`available`, `away` or `offline`).
    pub presence: Presence,
    /// How many open conversations routing gives them at most.
    pub limit: u32,
    /// May change settings (sites, agents, canned replies) and read the audit log.
    pub admin: bool,
}

impl Agent {
    /// An agent as just added: available, the default chat limit, not an admin; `sites: None`
    /// means every site.
    pub fn added(
        agent: AgentRef,
        email: String,
        password_hash: String,
        sites: Option<Vec<SiteKey>>,
    ) -> Self {
        Self {
            agent,
            email,
            password_hash,
            scope: match sites {
                None => Scope::All,
                Some(s) => Scope::Sites(s.into_iter().collect()),
            },
            presence: Presence::Available,
            limit: DEFAULT_CHAT_LIMIT,
            admin: false,
        }
    }
}

/// An agent as `escalera agent list` shows them.
#[derive(Clone, Debug)]
pub struct AgentListing {
    /// The agent.
    pub agent: Agent,
    /// Disabled (cannot log in).
    pub disabled: bool,
    /// Live sessions (browsers logged in).
    pub sessions: u64,
}

/// What is known of a conversation's visitor (`GET /api/conversations/{id}/visitor`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VisitorDetails {
    /// Where they were last, and what they use.
    pub info: Option<VisitorInfo>,
    /// The name agents gave them.
    pub name: Option<String>,
    /// Their email (left by them, or given by an agent).
    pub email: Option<String>,
    /// When the conversation started, in ms.
    pub since: i64,
    /// The verified user's id in the site's own system, when the visitor is one.
    pub user: Option<String>,
}

/// A visitor the host page vouched for with a good identity hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedUser {
    /// Their id in the site's own system.
    pub id: String,
    /// Their name, if the page gave it.
    pub name: Option<String>,
    /// Their email, if the page gave it.
    pub email: Option<String>,
}

/// An open conversation, as routing needs it at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenConversation {
    /// The conversation.
    pub id: ConversationId,
    /// Its site.
    pub site: SiteKey,
    /// Who has it, if anyone.
    pub agent: Option<AgentId>,
    /// When it was created (the queue's order).
    pub since: i64,
}

/// A page of history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Every seq up to this one was looked at (the notes skipped included).
    pub upto: u64,
    /// Whether `limit` rows were looked at (there may be more).
    pub full: bool,
}

/// A stored message, as [`Log::append`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    /// The message as stored; the earlier one when its `client_id` was seen before.
    pub message: Message,
    /// False when it was a resend of a stored message (nothing was written).
    pub fresh: bool,
}

/// Sites, agents, sessions and settings: small, read often, written rarely.
pub trait Directory: Send + Sync + 'static {
    /// Creates a site with a fresh random key.
    fn add_site(&self, name: String, origins: Vec<String>, now: i64) -> StoreFuture<'_, Site>;
    /// Adds `origin` to a site's allowed list if it is not there.
    fn allow_origin(&self, site: SiteKey, origin: String) -> StoreFuture<'_, ()>;
    /// A site by key.
    fn site(&self, key: SiteKey) -> StoreFuture<'_, Option<Site>>;
    /// Creates an agent; `sites: None` means every site. Fails on a duplicate email or an
    /// unknown site.
    fn add_agent(
        &self,
        email: String,
        name: String,
        password_hash: String,
        sites: Option<Vec<SiteKey>>,
        now: i64,
    ) -> StoreFuture<'_, Agent>;
    /// How many agents exist.
    fn agent_count(&self) -> StoreFuture<'_, u64>;
    /// Counts one more event under `key` (e.g. a login for an account) in its window of
    /// `window_ms`, which starts at the first event counted and is followed by a new one once
    /// it ends: how many so far in the window, and when it ends. Every node on one database
    /// counts together: the limits that must hold across nodes are checked against this.
    fn count(&self, key: String, window_ms: i64, now: i64) -> StoreFuture<'_, (u32, i64)>;
    /// An agent by login email (case-insensitive).
    fn agent_by_email(&self, email: String) -> StoreFuture<'_, Option<Agent>>;
    /// Records a session for `agent` under the hash of its cookie token.
    fn add_session(
        &self,
        token_hash: String,
        agent: AgentId,
        expires_at: i64,
    ) -> StoreFuture<'_, ()>;
    /// The agent of a live session.
    fn session_agent(&self, token_hash: String, now: i64) -> StoreFuture<'_, Option<Agent>>;
    /// Ends a session.
    fn delete_session(&self, token_hash: String) -> StoreFuture<'_, ()>;
    /// Which of `token_hashes` are live sessions (not expired, their agent enabled).
    fn live_sessions(&self, token_hashes: Vec<String>, now: i64) -> StoreFuture<'_, Vec<String>>;
    /// Deletes expired sessions; returns how many.
    fn purge_sessions(&self, now: i64) -> StoreFuture<'_, u64>;
    /// Every agent (disabled ones too), with their live session count, by email.
    fn agents(&self, now: i64) -> StoreFuture<'_, Vec<AgentListing>>;
    /// Sets an agent's password and ends their sessions; false if there is no such agent.
    fn set_password(&self, email: String, password_hash: String) -> StoreFuture<'_, bool>;
    /// Disables (or enables again) an agent: a disabled one cannot log in and their sessions
    /// end. False if there is no such agent.
    fn set_disabled(&self, email: String, disabled: bool, now: i64) -> StoreFuture<'_, bool>;
    /// Removes an agent: disabled for good, their sessions and sites gone, their email free
    /// again; what they wrote stays in the record under their name. False if none.
    fn remove_agent(&self, email: String, now: i64) -> StoreFuture<'_, bool>;
    /// A small key/value record for the relay's own bookkeeping (e.g. the demo site's key).
    fn setting(&self, key: String) -> StoreFuture<'_, Option<String>>;
    /// Sets how many open conversations routing gives an agent; false if there is no such
    /// agent.
    fn set_limit(&self, email: String, limit: u32) -> StoreFuture<'_, bool>;
    /// Keeps what an agent chose to be, over restarts.
    fn set_presence(&self, agent: AgentId, presence: Presence) -> StoreFuture<'_, ()>;
    /// Sets what a site offers; false if there is no such site.
    fn set_features(&self, site: SiteKey, features: SiteFeatures) -> StoreFuture<'_, bool>;
    /// The sites of `scope`, by name.
    fn sites_of(&self, scope: Scope) -> StoreFuture<'_, Vec<Site>>;
    /// The canned replies of the sites of `scope`, by shortcut.
    fn canned(&self, scope: Scope) -> StoreFuture<'_, Vec<CannedReply>>;
    /// Stores a canned reply: a new one, or the site's one with the same shortcut replaced.
    fn save_canned(
        &self,
        site: SiteKey,
        shortcut: String,
        text: String,
        now: i64,
    ) -> StoreFuture<'_, CannedReply>;
    /// Deletes a canned reply of the sites of `scope`; false if there is none.
    fn delete_canned(&self, id: String, scope: Scope) -> StoreFuture<'_, bool>;
    /// Saves a site's name, origins, features and look; false if there is no such site.
    fn save_site(&self, site: Site) -> StoreFuture<'_, bool>;
    /// Makes an agent an admin or not; false if there is no such agent.
    fn set_admin(&self, email: String, admin: bool) -> StoreFuture<'_, bool>;
    /// Sets the sites an agent serves (`None`: every site); false if there is no such agent.
    /// Fails on an unknown site.
    fn set_sites(&self, email: String, sites: Option<Vec<SiteKey>>) -> StoreFuture<'_, bool>;
    /// Appends to the audit log.
    fn record(&self, entry: AuditEntry) -> StoreFuture<'_, ()>;
    /// The newest `limit` entries of the audit log, newest first.
    fn audit(&self, limit: u32) -> StoreFuture<'_, Vec<AuditEntry>>;
    /// Sets a setting.
    fn set_setting(&self, key: String, value: String) -> StoreFuture<'_, ()>;
    /// Resolves once the store answers a query (`/readyz`).
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// A whole store, directory and log (e.g. `Box<dyn Record>`, either backend).
pub trait Record: Directory + Log {}

impl<T: Directory + Log> Record for T {}

/// Visitors, conversations, messages, files and read marks: the part that grows and is
/// written on every chat message.
pub trait Log: Send + Sync + 'static {
    /// The conversation of a visitor of `site` known by their token's hash.
    fn visitor_conversation(
        &self,
        site: SiteKey,
        token_hash: String,
    ) -> StoreFuture<'_, Option<ConversationMeta>>;
    /// A visitor's site and conversation, by their token's hash (any site).
    fn visitor(&self, token_hash: String) -> StoreFuture<'_, Option<(SiteKey, ConversationId)>>;
    /// Stores a visitor and their conversation (about to get its first message), with the
    /// address they came from.
    fn add_visitor(
        &self,
        conversation: ConversationMeta,
        token_hash: String,
        address: String,
        now: i64,
    ) -> StoreFuture<'_, ()>;
    /// The conversation of a verified user of `site` (their id in the site's own system).
    fn user_conversation(
        &self,
        site: SiteKey,
        user: String,
    ) -> StoreFuture<'_, Option<ConversationMeta>>;
    /// Gives a visitor's new token the stored conversation `id` (a verified user on another
    /// device).
    fn add_token(
        &self,
        id: ConversationId,
        site: SiteKey,
        token_hash: String,
        now: i64,
    ) -> StoreFuture<'_, ()>;
    /// Keeps a one-time link back to conversation `id` (its token's hash), good until
    /// `expires_at` (ms).
    fn add_link(
        &self,
        id: ConversationId,
        link_hash: String,
        expires_at: i64,
    ) -> StoreFuture<'_, ()>;
    /// Uses up the link of `link_hash`: when it was good (unused, unexpired, of `site`), the
    /// visitor's new token `token_hash` gets its conversation, which is returned. Used or not,
    /// the link is gone.
    fn redeem_link(
        &self,
        site: SiteKey,
        link_hash: String,
        token_hash: String,
        now: i64,
    ) -> StoreFuture<'_, Option<ConversationMeta>>;
    /// Makes a stored conversation the verified `user`'s, with their name and email (those
    /// given); `false` if it is another user's, or the user has another one.
    fn claim(&self, id: ConversationId, user: VerifiedUser) -> StoreFuture<'_, bool>;
    /// A conversation's site and assignee.
    fn conversation(&self, id: ConversationId) -> StoreFuture<'_, Option<ConversationMeta>>;
    /// Stores a message (and its attachment's record) with the conversation's next seq,
    /// unless one with the same `client_id` is already in that conversation. Resolves after
    /// the commit is durable.
    fn append(&self, msg: NewMessage) -> StoreFuture<'_, Appended>;
    /// The agents' list rows of these conversations, for those that are listed (see
    /// `welcome_agent` in protocol/README.md). Never waits for writers.
    fn summaries_of(&self, ids: Vec<ConversationId>) -> StoreFuture<'_, Vec<ConversationSummary>>;
    /// Up to `limit` messages after `after_seq`, oldest first (without the agents' notes
    /// unless `notes`). Never waits for writers.
    fn messages_after(
        &self,
        id: ConversationId,
        after_seq: u64,
        limit: u32,
        notes: bool,
    ) -> StoreFuture<'_, HistoryPage>;
    /// Moves an open conversation from `from` to `to` (`None`: the queue), or keeps it with
    /// `to` if it has them already; `false` if it is closed or someone else has it.
    fn reassign(
        &self,
        id: ConversationId,
        from: Option<AgentId>,
        to: Option<AgentId>,
    ) -> StoreFuture<'_, bool>;
    /// Closes an open conversation that is waiting or `agent`'s (its agent stays recorded, for
    /// a reopening); `false` if it was closed already or is someone else's.
    fn close(&self, id: ConversationId, agent: AgentId, at: i64) -> StoreFuture<'_, bool>;
    /// Reopens a closed conversation with `agent` (`None`: the queue); its old rating goes.
    /// `false` if it was not closed.
    fn reopen(&self, id: ConversationId, agent: Option<AgentId>) -> StoreFuture<'_, bool>;
    /// Records the visitor's rating of a closed conversation, once per closing; `false` if
    /// it is open or rated already.
    fn rate(&self, id: ConversationId, rating: Rating) -> StoreFuture<'_, bool>;
    /// Keeps the email a visitor left.
    fn set_email(&self, id: ConversationId, email: String) -> StoreFuture<'_, ()>;
    /// The newest messages (notes included) of the sites of `scope` with every one of `words`
    /// ([`search_words`]; the last may be the start of a word, half typed), letter case and
    /// accents aside; at most `limit`.
    fn search(
        &self,
        scope: Scope,
        words: Vec<String>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<SearchHit>>;
    /// Keeps where the conversation's visitor is and what they use.
    fn set_visitor_info(&self, id: ConversationId, info: VisitorInfo) -> StoreFuture<'_, ()>;
    /// Sets the name and email agents gave the visitor (`None` clears each).
    fn set_visitor(
        &self,
        id: ConversationId,
        name: Option<String>,
        email: Option<String>,
    ) -> StoreFuture<'_, ()>;
    /// What is known of a conversation's visitor.
    fn visitor_details(&self, id: ConversationId) -> StoreFuture<'_, VisitorDetails>;
    /// Every open conversation with a message (read when the relay starts, for routing).
    fn open_conversations(&self) -> StoreFuture<'_, Vec<OpenConversation>>;
    /// Conversations with at least one message on the sites of `scope`: waiting first, then
    /// by newest activity; at most `limit`.
    fn summaries(&self, scope: Scope, limit: u32) -> StoreFuture<'_, Vec<ConversationSummary>>;
    /// Records that `agent` read `id` up to `seq` (never moves backwards).
    fn mark_read(&self, agent: AgentId, id: ConversationId, seq: u64) -> StoreFuture<'_, ()>;
    /// The agent's read marks.
    fn read_marks(&self, agent: AgentId) -> StoreFuture<'_, Vec<ReadMark>>;
    /// A file and the conversation it belongs to.
    fn file(&self, id: FileId) -> StoreFuture<'_, Option<(ConversationId, Attachment)>>;
    /// Which of these files have a record (the others are orphans on disk).
    fn known_files(&self, ids: Vec<FileId>) -> StoreFuture<'_, Vec<FileId>>;
    /// How far any agent has read a conversation.
    fn read_upto(&self, id: ConversationId) -> StoreFuture<'_, u64>;
    /// Bytes of files a conversation holds.
    fn files_size(&self, id: ConversationId) -> StoreFuture<'_, u64>;
    /// The message a participant sent with this `client_id`, if one is stored.
    fn message_by_client_id(
        &self,
        id: ConversationId,
        client_id: ClientMsgId,
    ) -> StoreFuture<'_, Option<Message>>;
    /// Records the conversation's active call, or (`None`) that it is over.
    fn save_call(&self, id: ConversationId, call: Option<CallRecord>) -> StoreFuture<'_, ()>;
    /// Every active call, as recorded (read when the relay starts).
    fn calls(&self) -> StoreFuture<'_, Vec<(ConversationId, CallRecord)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_is_one_short_line() {
        assert_eq!(preview("a\n\n b"), "a b");
        assert_eq!(preview(&"x".repeat(100)).chars().count(), 81);
    }

    #[test]
    fn search_words_are_letters_and_digits_only() {
        assert_eq!(
            search_words(" Bison-jerky & (x1)* "),
            ["Bison", "jerky", "x1"]
        );
        assert_eq!(search_words("a b c d e f g h i j").len(), 8);
        assert!(search_words(" !? ").is_empty());
    }
}
