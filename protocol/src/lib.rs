//! The wire contract between browsers and the Escalera relay.
//!
//! Every frame on the WebSocket is one JSON object, tagged by `"type"`. Browsers send
//! [`ClientMsg`], the relay sends [`ServerMsg`]. The first frame a browser sends is
//! [`ClientMsg::Hello`] carrying [`PROTOCOL_VERSION`]; the relay answers with a welcome or an
//! error and closes. This crate has no I/O: it is shared by the relay and the WebAssembly client.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

pub mod i18n;

/// The version of this protocol; a client that says another one is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame the relay accepts, in bytes. Larger frames get [`ErrorCode::TooLarge`].
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The longest chat text, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 8_000;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// A conversation: 128 random bits as 32 lowercase hex digits, minted by the relay.
    ConversationId
);
id_type!(
    /// A site's public key, as in the embed snippet: 128 random bits, minted by the relay.
    SiteKey
);
id_type!(
    /// A visitor's durable secret: 256 random bits, minted by the relay, kept by the widget.
    /// Whoever holds it is that visitor, so it is stored by the relay only as a hash.
    VisitorToken
);
id_type!(
    /// The sender's own id for a chat message, chosen by the browser; the relay stores a given
    /// id at most once per conversation, so resending after a reconnect is always safe.
    ClientMsgId
);
id_type!(
    /// An agent, as the relay's store knows them: 128 random bits.
    AgentId
);
id_type!(
    /// An uploaded file (attachment or snapshot): 128 random bits. Downloaded from
    /// `/files/{id}` by the conversation's participants only.
    FileId
);

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// The visitor of the site.
    Visitor,
    /// An agent; the message carries their name.
    Agent,
    /// The relay itself: joins, hand-overs and other events of the conversation.
    System,
    /// An agent's private note: for agents only, never sent to a visitor.
    Note,
}

/// One stored chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// Its position in the conversation: 1, 2, 3, ... assigned by the relay when stored.
    pub seq: u64,
    /// The sender's id for it, when a browser sent it (system messages have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientMsgId>,
    /// Who wrote it.
    pub author: Author,
    /// The agent's display name for agent messages; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// Plain text, never HTML: clients render it escaped and keep its newlines.
    pub text: String,
    /// For system messages, what happened, for clients to say in their own language (`text`
    /// says it in English).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<SystemEvent>>,
    /// A file posted with the message (its text is then the file's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// When the relay stored it, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// What a system message records, so that each browser can say it in its viewer's language;
/// the message's `text` is the same in English (for transcripts, search and older clients).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SystemEvent {
    /// An agent joined the conversation.
    Joined {
        /// The agent's name.
        agent: String,
    },
    /// An agent closed it.
    Closed {
        /// The agent's name.
        agent: String,
    },
    /// An agent handed it to another.
    Transferred {
        /// Who handed it over.
        from: String,
        /// Who has it now.
        to: String,
    },
    /// An agent put it back in the queue.
    Requeued {
        /// The agent's name.
        agent: String,
    },
    /// The visitor wrote again after it was closed.
    Reopened,
    /// The visitor left an email for the reply.
    EmailLeft {
        /// The address.
        email: String,
    },
    /// The visitor rated it.
    Rated {
        /// Thumbs up or down.
        rating: Rating,
        /// Their comment, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A call was answered.
    CallStarted {
        /// Voice or video (a screen-only call is [`SystemEvent::Media`]).
        call: CallKind,
    },
    /// An answered call ended.
    CallEnded {
        /// How long it lasted, in seconds.
        seconds: u64,
    },
    /// The caller gave up before an answer.
    CallCancelled,
    /// The callee declined.
    CallDeclined,
    /// Nobody answered in time.
    CallMissed,
    /// Someone turned their camera or screen sharing on or off during a call.
    Media {
        /// Their name ("The visitor" for visitors).
        who: String,
        /// Which device.
        media: MediaKind,
        /// On or off.
        on: bool,
    },
}

impl SystemEvent {
    /// What it says in English, the message's `text`.
    pub fn english(&self) -> String {
        self.said(|english| english)
    }

    /// What it says in a language: `say` gives each English text of this function in it (the
    /// client's `t`, or the relay's tables for email); `{name}` placeholders are filled after.
    pub fn said(&self, say: impl Fn(&'static str) -> &'static str) -> String {
        let tf = |text: &'static str, values: &[(&str, &str)]| i18n::fill(say(text), values);
        let t = |text: &'static str| say(text).to_owned();
        match self {
            Self::Joined { agent } => tf("{agent} joined the conversation", &[("agent", agent)]),
            Self::Closed { agent } => tf("{agent} closed the conversation", &[("agent", agent)]),
            Self::Transferred { from, to } => tf(
                "{from} transferred the conversation to {to}",
                &[("from", from), ("to", to)],
            ),
            Self::Requeued { agent } => tf(
                "{agent} put the conversation back in the queue",
                &[("agent", agent)],
            ),
            Self::Reopened => t("The visitor reopened the conversation"),
            Self::EmailLeft { email } => tf(
                "The visitor left their email for the reply: {email}",
                &[("email", email)],
            ),
            Self::Rated { rating, comment } => {
                let verdict = match rating {
                    Rating::Up => "👍",
                    Rating::Down => "👎",
                };
                match comment {
                    Some(c) => tf(
                        "The visitor rated the conversation {verdict}: {comment}",
                        &[("verdict", verdict), ("comment", c)],
                    ),
                    None => tf(
                        "The visitor rated the conversation {verdict}",
                        &[("verdict", verdict)],
                    ),
                }
            }
            Self::CallStarted {
                call: CallKind::Video,
            } => t("Video call started"),
            Self::CallStarted { .. } => t("Voice call started"),
            Self::CallEnded { seconds } => tf(
                "Call ended, {duration}",
                &[("duration", &duration(*seconds))],
            ),
            Self::CallCancelled => t("Call cancelled"),
            Self::CallDeclined => t("Call declined"),
            Self::CallMissed => t("Missed call"),
            Self::Media { who, media, on } => {
                // The relay names a visitor "Visitor".
                let who = if who == "Visitor" {
                    say("Visitor")
                } else {
                    who
                };
                let who = [("who", who)];
                match (media, on) {
                    (MediaKind::Camera, true) => tf("{who} turned video on", &who),
                    (MediaKind::Camera, false) => tf("{who} turned video off", &who),
                    (MediaKind::Screen, true) => tf("{who} shared their screen", &who),
                    (MediaKind::Screen, false) => tf("{who} stopped sharing their screen", &who),
                }
            }
        }
    }
}

/// `3:12` for seconds, or `1:02:03` past an hour.
pub fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A file posted into a conversation, as stored by the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its id; the download URL is `/files/{id}`.
    pub id: FileId,
    /// The name it was uploaded with (for display and the download).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its type, decided by the relay from its bytes (never the client's word).
    pub mime: String,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

impl Attachment {
    /// Whether browsers may preview it inline as an image.
    pub fn is_image(&self) -> bool {
        matches!(
            self.mime.as_str(),
            "image/png" | "image/jpeg" | "image/gif" | "image/webp"
        )
    }
}

/// A STUN or TURN server for `RTCPeerConnection`'s `iceServers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN username (`expiry:id` for relay-minted credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the browser needs for calls and files, handed over in every welcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaConfig {
    /// ICE servers (credentials are short-lived: a reconnect brings fresh ones).
    pub ice_servers: Vec<IceServer>,
    /// The largest upload the relay accepts, in bytes.
    pub max_upload: u64,
    /// Whether the relay sends email (a visitor may then ask for the transcript).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email: bool,
}

/// How a call starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// Microphone: the other side is asked, and answers with theirs.
    Voice,
    /// Camera and microphone: the other side is asked, and answers with their microphone.
    Video,
    /// A one-way screen share from chat: the other side only watches, so it is not asked.
    Screen,
}

/// A device a party turns on or off during a call, for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// The camera.
    Camera,
    /// Screen sharing.
    Screen,
}

/// What a browser does to the conversation's call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CallAction {
    /// Calls the other side.
    Start {
        /// Voice, video or a screen share.
        kind: CallKind,
    },
    /// Answers a ringing call (only the side that was called).
    Accept,
    /// Refuses a ringing call.
    Decline,
    /// Ends the call (or cancels it while it rings), for both sides.
    HangUp,
    /// A party turned a device on or off (recorded in the conversation).
    Media {
        /// Which one.
        media: MediaKind,
        /// On or off.
        on: bool,
    },
    /// After a reconnect: this socket is again its side's end of the active call (the
    /// browser kept its peer connection). Send it before `join`.
    Resume,
}

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    /// Waiting for the other side to accept (up to 30 s).
    Ringing,
    /// Both ends are connected through the relay's signaling.
    Active,
}

/// The conversation's call, as one socket sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    /// Ringing or active.
    pub phase: CallPhase,
    /// How it started.
    pub kind: CallKind,
    /// Which side called.
    pub caller: Author,
    /// The caller's display name.
    pub caller_name: String,
    /// When it started ringing, or when it was answered, in ms since the epoch.
    pub since: i64,
    /// Whether this socket is one of the call's two ends (another tab of the same person, or
    /// another agent looking on, sees the call but is not in it).
    pub party: bool,
    /// An end of the active call lost its socket and has not come back yet (for a party: the
    /// other end). The call goes on for the grace period.
    #[serde(default)]
    pub away: bool,
}

/// The steps of the ladder a site offers its visitors, and the extras (set by its owner; the
/// relay refuses what is off, the browsers hide it). Video needs voice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SiteFeatures {
    /// Voice calls.
    #[serde(default = "yes")]
    pub voice: bool,
    /// Video calls, and the camera in a voice call.
    #[serde(default = "yes")]
    pub video: bool,
    /// Screen sharing, from chat or in a call.
    #[serde(default = "yes")]
    pub screen: bool,
    /// Files, by either side.
    #[serde(default = "yes")]
    pub files: bool,
    /// Snapshots of the other side's video.
    #[serde(default = "yes")]
    pub snapshots: bool,
    /// The largest file, in bytes, when the site sets one below the relay's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Default for SiteFeatures {
    /// Everything on: the whole ladder.
    fn default() -> Self {
        Self {
            voice: true,
            video: true,
            screen: true,
            files: true,
            snapshots: true,
            max_upload: None,
        }
    }
}

impl SiteFeatures {
    /// Whether a call of `kind` may start.
    pub fn allows(&self, kind: CallKind) -> bool {
        match kind {
            CallKind::Voice => self.voice,
            CallKind::Video => self.voice && self.video,
            CallKind::Screen => self.screen,
        }
    }

    /// Whether `media` may be turned on during a call.
    pub fn allows_media(&self, media: MediaKind) -> bool {
        match media {
            MediaKind::Camera => self.voice && self.video,
            MediaKind::Screen => self.screen,
        }
    }
}

/// Which bottom corner of the host page the widget sits in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corner {
    /// Bottom right (the default).
    #[default]
    Right,
    /// Bottom left.
    Left,
}

/// The widget's colour unless a site sets its own.
pub const DEFAULT_COLOR: &str = "#2563eb";

/// The longest greeting a site can set.
pub const MAX_GREETING_CHARS: usize = 300;

/// How a site's widget looks, as its owner set it (a page's `data-color` and
/// `data-position` override it there).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SiteLook {
    /// The launcher's and the header's colour, `#rrggbb`; the text on it is black or white,
    /// whichever reads better ([`ink_on`]).
    #[serde(default = "default_color")]
    pub color: String,
    /// Where the launcher sits.
    #[serde(default)]
    pub position: Corner,
    /// The first line a visitor reads before anyone writes (empty: the widget's own).
    #[serde(default)]
    pub greeting: String,
    /// What the widget says when no agent is available (empty: the widget's own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub away_message: String,
    /// When the site answers; outside them the widget says it is closed (none: always open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<BusinessHours>,
    /// The widget's language for visitors whose browser asks for none Escalera speaks (a tag of
    /// [`i18n::languages`]; none: English). A page's `data-locale` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Whether the widget asks for a name and an email (both optional) before the first
    /// message.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_chat: bool,
}

/// When a site answers: its time zone, and each weekday's opening.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BusinessHours {
    /// An IANA time zone, e.g. `Europe/Madrid`.
    pub time_zone: String,
    /// Monday to Sunday: the first and the last minute it is open (minutes after midnight,
    /// both included); `None`: closed all day.
    pub days: [Option<(u16, u16)>; 7],
}

impl BusinessHours {
    /// Checks the shape: a time zone name of IANA's letters, and each day's first minute
    /// before its last, both within the day. (Whether the zone exists, browsers know.)
    pub fn check(&self) -> Result<(), &'static str> {
        let tz = &self.time_zone;
        if tz.is_empty()
            || tz.len() > 64
            || !tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
        {
            return Err("a time zone is named like Europe/Madrid or UTC");
        }
        if self
            .days
            .iter()
            .flatten()
            .any(|(from, to)| from > to || *to >= 24 * 60)
        {
            return Err("a day opens before it closes, within the day");
        }
        Ok(())
    }

    /// Whether it is open on `weekday` (0 is Monday) at `minute` after midnight.
    pub fn open_at(&self, weekday: usize, minute: u16) -> bool {
        self.days
            .get(weekday)
            .copied()
            .flatten()
            .is_some_and(|(from, to)| from <= minute && minute <= to)
    }
}

fn default_color() -> String {
    DEFAULT_COLOR.to_owned()
}

impl Default for SiteLook {
    fn default() -> Self {
        Self {
            color: default_color(),
            position: Corner::Right,
            greeting: String::new(),
            away_message: String::new(),
            hours: None,
            language: None,
            pre_chat: false,
        }
    }
}

/// The red, green and blue of a `#rrggbb` colour.
pub fn parse_color(color: &str) -> Option<[u8; 3]> {
    let hex = color.strip_prefix('#')?;
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let at = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([at(0)?, at(2)?, at(4)?])
}

/// Checks a site's look: a `#rrggbb` colour, and a greeting and an away message of at most
/// [`MAX_GREETING_CHARS`] each, on one line. A refusal names its field (`color`, `greeting`
/// or `away_message`) and says why.
pub fn check_look(look: &SiteLook) -> Result<(), (&'static str, &'static str)> {
    if parse_color(&look.color).is_none() {
        return Err(("color", "a colour is written #rrggbb, e.g. #2563eb"));
    }
    let texts = [
        (
            "greeting",
            &look.greeting,
            "a greeting has at most 300 characters",
            "a greeting is one line of text",
        ),
        (
            "away_message",
            &look.away_message,
            "an away message has at most 300 characters",
            "an away message is one line of text",
        ),
    ];
    for (field, text, too_long, one_line) in texts {
        if text.chars().count() > MAX_GREETING_CHARS {
            return Err((field, too_long));
        }
        if text.chars().any(char::is_control) {
            return Err((field, one_line));
        }
    }
    if let Some(hours) = &look.hours {
        hours.check().map_err(|e| ("hours", e))?;
    }
    if let Some(tag) = &look.language {
        if !i18n::languages().any(|l| l == tag) {
            return Err(("language", "the widget does not speak that language"));
        }
    }
    Ok(())
}

/// WCAG's relative luminance of an sRGB colour.
fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let channel = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
}

/// WCAG's contrast ratio between two colours (1 to 21).
pub fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// The text colour for a background: white or black, whichever contrasts more. One of the two
/// always reaches 4.58:1, so text on any site colour meets WCAG AA.
pub fn ink_on(color: &str) -> &'static str {
    let bg = parse_color(color).unwrap_or([0x25, 0x63, 0xeb]);
    if contrast(bg, [255; 3]) >= contrast(bg, [0; 3]) {
        "#ffffff"
    } else {
        "#000000"
    }
}

/// A site as the Settings area lists it (`GET /api/admin/sites`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSettings {
    /// Its key.
    pub key: SiteKey,
    /// Its name.
    pub name: String,
    /// The origins allowed to embed it.
    pub origins: Vec<String>,
    /// What it offers.
    pub features: SiteFeatures,
    /// How its widget looks.
    pub look: SiteLook,
    /// The `<script>` tag to paste into its pages.
    pub snippet: String,
    /// The key of the hash its server makes of a user's id (`Escalera.identify`).
    pub identity_secret: String,
    /// A visitor must be a verified user.
    pub identity_required: bool,
}

/// An agent as the Settings area lists them (`GET /api/admin/agents`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSettings {
    /// Their id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// Login email.
    pub email: String,
    /// May change settings.
    pub admin: bool,
    /// The sites they serve; `None`: every site.
    pub sites: Option<Vec<SiteKey>>,
    /// How many open conversations routing gives them at most.
    pub limit: u32,
    /// Cannot log in.
    pub disabled: bool,
    /// Browsers logged in.
    pub sessions: u64,
    /// What they chose to be.
    pub presence: Presence,
}

/// One settings change, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, in ms since the epoch.
    pub at: i64,
    /// Who: an agent's name and email, or `command line`.
    pub actor: String,
    /// What, in a few words (`site.update`, `agent.access`, ...).
    pub action: String,
    /// On what, and how, on one line.
    pub detail: String,
}

/// The longest user id a host page can give.
pub const MAX_USER_ID_CHARS: usize = 200;

/// A host page's logged-in user (`Escalera.identify`), as the widget passes it in its hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user's id in the site's own system (1 to [`MAX_USER_ID_CHARS`] characters).
    pub id: String,
    /// Their name, shown to agents (at most [`MAX_VISITOR_NAME_CHARS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their email (checked as [`check_email`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Hex HMAC-SHA256 of `id` under the site's identity secret, made by the site's server.
    #[serde(default)]
    pub hash: String,
}

impl Identity {
    /// Checks the id's, name's and email's shape (not the hash).
    pub fn check(&self) -> Result<(), &'static str> {
        let id = self.id.chars().count();
        if id == 0 || id > MAX_USER_ID_CHARS || self.id.chars().any(char::is_control) {
            return Err("a user id is 1 to 200 characters on one line");
        }
        if let Some(name) = &self.name {
            if name.chars().count() > MAX_VISITOR_NAME_CHARS || name.chars().any(char::is_control) {
                return Err("a user's name is at most 80 characters on one line");
            }
        }
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        Ok(())
    }
}

/// Where a conversation stands, as agents see it in their list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Nobody has taken it yet: it is in the queue.
    Waiting,
    /// An agent has it.
    Assigned,
    /// An agent closed it (a visitor who writes again reopens it).
    Closed,
}

/// A visitor's verdict on a closed conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// Thumbs up.
    Up,
    /// Thumbs down.
    Down,
}

/// The longest rating comment or transfer note, in characters.
pub const MAX_COMMENT_CHARS: usize = 1_000;

/// The longest email address a visitor may leave, in characters.
pub const MAX_EMAIL_CHARS: usize = 254;

/// Checks a visitor's email address: one `@` with something on both sides, a dot in the
/// domain, no spaces, at most [`MAX_EMAIL_CHARS`]. Shared so the widget says the same as the
/// relay.
pub fn check_email(email: &str) -> Result<(), &'static str> {
    let email = email.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return Err("an email address has an @");
    };
    if email.chars().count() > MAX_EMAIL_CHARS {
        Err("that email address is too long")
    } else if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Err("that does not look like an email address")
    } else {
        Ok(())
    }
}

/// One row of the agent's conversation list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// The conversation.
    pub id: ConversationId,
    /// The site it came from.
    pub site: SiteKey,
    /// The name of the site it came from.
    pub site_name: String,
    /// A short label for the visitor, e.g. "Visitor 3f2a".
    pub visitor_label: String,
    /// Waiting in the queue, or assigned.
    pub status: ConversationStatus,
    /// The agent it is assigned to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    /// The newest message's seq; with the agent's [`ReadMark`] it gives the unread count.
    pub last_seq: u64,
    /// The start of the newest message, for the list.
    pub preview: String,
    /// When the newest message was stored, in ms since the Unix epoch.
    pub last_at: i64,
    /// The visitor's rating, once they gave one after it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
    /// What its site offers (the console hides the rest).
    #[serde(default)]
    pub features: SiteFeatures,
    /// Its visitor is a logged-in user of the site, verified by the identity hash (the label
    /// is their name).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
}

/// Where a visitor is and what they use, as their widget reports it (nothing here is
/// checked: it is what the browser says). Each text is cut to its limit by the relay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorInfo {
    /// The host page's address (at most 2048 characters).
    pub page: String,
    /// The host page's title (at most 200).
    #[serde(default)]
    pub title: String,
    /// Where the visitor came to the site from (at most 2048).
    #[serde(default)]
    pub referrer: String,
    /// The browser's language, e.g. `pt-PT` (at most 35).
    #[serde(default)]
    pub language: String,
    /// The IANA time zone, e.g. `Europe/Lisbon` (at most 64).
    #[serde(default)]
    pub time_zone: String,
    /// Minutes ahead of UTC (e.g. 60 in Lisbon in summer).
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// The browser's user agent (at most 512).
    #[serde(default)]
    pub user_agent: String,
}

impl VisitorInfo {
    /// Every text cut to its limit (by characters).
    pub fn bounded(mut self) -> Self {
        fn cut(s: &mut String, n: usize) {
            if let Some((i, _)) = s.char_indices().nth(n) {
                s.truncate(i);
            }
        }
        cut(&mut self.page, 2048);
        cut(&mut self.title, 200);
        cut(&mut self.referrer, 2048);
        cut(&mut self.language, 35);
        cut(&mut self.time_zone, 64);
        cut(&mut self.user_agent, 512);
        self.utc_offset_minutes = self.utc_offset_minutes.clamp(-16 * 60, 16 * 60);
        self
    }
}

/// The longest name an agent gives a visitor, in characters.
pub const MAX_VISITOR_NAME_CHARS: usize = 80;

/// A site, as an agent's console lists it (`GET /api/canned`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRef {
    /// Its key.
    pub key: SiteKey,
    /// Its name.
    pub name: String,
}

/// A canned reply: a short answer an agent inserts by its shortcut (`/refund`). Placeholders
/// `{visitor}` and `{agent}` are filled in by the console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedReply {
    /// Its id.
    pub id: String,
    /// The site it belongs to.
    pub site: SiteKey,
    /// What follows `/` to find it: 1 to [`MAX_SHORTCUT_CHARS`] of `a-z`, `0-9`, `-`, `_`.
    pub shortcut: String,
    /// The text, as a chat message's (at most [`MAX_CANNED_CHARS`]).
    pub text: String,
}

/// The longest canned reply shortcut, in characters.
pub const MAX_SHORTCUT_CHARS: usize = 32;

/// The longest canned reply, in characters.
pub const MAX_CANNED_CHARS: usize = 2_000;

/// Checks a canned reply's shortcut (lowercase letters, digits, `-` and `_`).
pub fn check_shortcut(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.chars().count() > MAX_SHORTCUT_CHARS {
        return Err("a shortcut has 1 to 32 characters");
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err("a shortcut has only a-z, 0-9, - and _");
    }
    Ok(())
}

/// One message found by the console's search (`GET /api/search?q=`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Its conversation.
    pub conversation: ConversationId,
    /// The message's seq there.
    pub seq: u64,
    /// Who wrote it.
    pub author: Author,
    /// The agent's name, for agent messages and notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// The words around the match.
    pub snippet: String,
    /// When it was stored, in ms.
    pub at: i64,
    /// The conversation's site.
    pub site_name: String,
    /// The conversation's visitor, as the list labels them.
    pub visitor_label: String,
}

/// How far one agent has read one conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    /// The conversation.
    pub conversation: ConversationId,
    /// The newest seq the agent has read.
    pub seq: u64,
}

/// An agent as others see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    /// Their id.
    pub id: AgentId,
    /// Their display name.
    pub name: String,
}

/// Whether an agent can take a conversation now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Takes new conversations.
    Available,
    /// At the desk but not taking new conversations (chosen, or idle with the tab hidden).
    Away,
    /// In a call (set by the relay while it lasts).
    Busy,
    /// Not there: chosen, or no console open for a while.
    Offline,
}

impl Presence {
    /// The value on the wire (and in the console's `<select>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Available => "available",
            Presence::Away => "away",
            Presence::Busy => "busy",
            Presence::Offline => "offline",
        }
    }
}

/// An agent of the team, as the other agents see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMember {
    /// The agent.
    pub agent: AgentRef,
    /// What they are now.
    pub presence: Presence,
}

/// Browser -> relay: every frame a widget or a console sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// The first frame on every socket. A visitor passes the token it was given before, if any,
    /// to resume its conversation; an agent is known by its session cookie and passes `None`.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The visitor's durable token from an earlier welcome.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<VisitorToken>,
        /// Who the host page says its logged-in user is (`Escalera.identify`), with the proof.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<Identity>,
        /// A one-time link back to a conversation (sent by email with an agent's reply): when
        /// still good, the visitor gets that conversation, with a new `token`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
    },
    /// Subscribe to a conversation and get every message after `after_seq` (0 for all).
    /// Answered by [`ServerMsg::History`]; live messages follow.
    Join {
        /// The conversation.
        conversation: ConversationId,
        /// The last seq this client already has.
        after_seq: u64,
    },
    /// Post a chat message. Answered by [`ServerMsg::Ack`] once stored; everyone joined to the
    /// conversation (the sender too) gets [`ServerMsg::Message`].
    Chat {
        /// The conversation.
        conversation: ConversationId,
        /// The sender's id for this message; resending it never stores it twice.
        client_id: ClientMsgId,
        /// The text, at most [`MAX_TEXT_CHARS`] characters, not blank.
        text: String,
    },
    /// Agents only: a private note in the conversation, stored and shown to agents, never to
    /// the visitor (their history skips it). Acknowledged like a chat message; it does not take
    /// a waiting conversation.
    Note {
        /// The conversation.
        conversation: ConversationId,
        /// The sender's id for this note; resending it never stores it twice.
        client_id: ClientMsgId,
        /// The text, as for a chat message.
        text: String,
    },
    /// Agent only: take a waiting conversation. The first agent to ask gets it.
    Take {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Agent only: everything up to `seq` has been read.
    Read {
        /// The conversation.
        conversation: ConversationId,
        /// The newest seq read.
        seq: u64,
    },
    /// Acts on the conversation's call. Everyone joined gets the new [`ServerMsg::Call`].
    Call {
        /// The conversation.
        conversation: ConversationId,
        /// What to do.
        action: CallAction,
    },
    /// WebRTC signaling (SDP or ICE, JSON-encoded by the browser) for the other end of the
    /// active call; the relay never reads it.
    Signal {
        /// The conversation.
        conversation: ConversationId,
        /// Opaque to the relay.
        payload: String,
    },
    /// Keep-alive; answered by [`ServerMsg::Pong`].
    Ping,
    /// "I am typing in this conversation": sent at most every 2 s while keys are pressed. The
    /// other side's sockets get [`ServerMsg::Typing`]; nothing is stored.
    Typing {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Agents only: what they choose to be (`available`, `away` or `offline`; `busy` is the
    /// relay's to set). Answered by [`ServerMsg::Presence`] to the team, this agent included.
    Presence {
        /// The choice.
        presence: Presence,
    },
    /// Agents only: close a conversation (theirs, or a waiting one). It leaves the open
    /// lists, its visitor gets [`ServerMsg::Closed`], and a visitor who writes again reopens
    /// it.
    Close {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Agents only: hand one's own conversation to another agent of its site (`to`), or
    /// back to the site's queue (`to` absent). A call under way ends first. The note, if
    /// any, is stored as a private note for the agents.
    Transfer {
        /// The conversation.
        conversation: ConversationId,
        /// The agent who gets it; absent for the queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<AgentId>,
        /// For the receiving agent, at most [`MAX_COMMENT_CHARS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Visitors only, once their conversation is closed: thumbs up or down, with an optional
    /// comment of at most [`MAX_COMMENT_CHARS`]. Once per closing.
    Rate {
        /// The conversation.
        conversation: ConversationId,
        /// The verdict.
        rating: Rating,
        /// Why, if they say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// Visitors only: where they are and what they use (after each welcome, and whenever the
    /// host page changes). The agents who joined get it as [`ServerMsg::Visit`].
    Visit {
        /// The conversation (the visitor's own).
        conversation: ConversationId,
        /// What the browser says.
        info: VisitorInfo,
    },
    /// Agents only: a name and an email for the visitor (either may be absent to clear it).
    /// The list shows the name; the record gets a note.
    SetVisitor {
        /// The conversation.
        conversation: ConversationId,
        /// At most [`MAX_VISITOR_NAME_CHARS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// As [`check_email`] says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
    /// Visitors only: an email address where the team can answer (asked for when nobody is
    /// available). Stored like a first message would be, and shown to the agents.
    Contact {
        /// The conversation.
        conversation: ConversationId,
        /// The address ([`check_email`]).
        email: String,
    },
    /// Visitors only, where the relay sends email ([`MediaConfig::email`]): mail the
    /// conversation's transcript to `email` (once a minute at most).
    Transcript {
        /// The conversation.
        conversation: ConversationId,
        /// The address ([`check_email`]).
        email: String,
    },
}

fn available() -> Presence {
    Presence::Available
}

/// Relay -> browser: every frame the relay sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Answer to a visitor's hello: who they are and their conversation.
    WelcomeVisitor {
        /// The durable token to keep and pass in the next hello (may be new).
        token: VisitorToken,
        /// The visitor's conversation on this site.
        conversation: ConversationId,
        /// The site's name, for the widget's header.
        site_name: String,
        /// The agent who has joined, if one has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_name: Option<String>,
        /// ICE servers and upload limit.
        media: MediaConfig,
        /// An agent closed the conversation (writing again reopens it).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        closed: bool,
        /// The visitor rated it since it was closed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rated: bool,
        /// What the site offers (the widget hides the rest).
        #[serde(default)]
        features: SiteFeatures,
        /// How the site's widget looks.
        #[serde(default)]
        look: SiteLook,
    },
    /// Answer to an agent's hello: who they are and the conversations of their sites.
    WelcomeAgent {
        /// The agent.
        agent: AgentRef,
        /// Their conversations: waiting first, then by newest activity.
        conversations: Vec<ConversationSummary>,
        /// How far this agent has read each conversation they opened.
        read: Vec<ReadMark>,
        /// ICE servers and upload limit.
        media: MediaConfig,
        /// What this agent chose to be (kept over reconnects and restarts).
        #[serde(default = "available")]
        presence: Presence,
        /// The agents sharing a site with this one (this one included), as they are now.
        #[serde(default)]
        team: Vec<TeamMember>,
        /// Seconds of no input with the tab hidden after which the console says `away` by
        /// itself (and back when the agent returns).
        #[serde(default)]
        away_after_secs: u64,
    },
    /// Answer to [`ClientMsg::Join`]: the messages after the asked seq, oldest first.
    History {
        /// The conversation.
        conversation: ConversationId,
        /// The messages.
        messages: Vec<Message>,
        /// Nothing this socket may see is missing up to this seq (a visitor's history skips
        /// agents' notes, so its seqs have gaps): join after it next time.
        #[serde(default)]
        upto: u64,
    },
    /// A message stored in a conversation this socket has joined.
    Message(Message),
    /// The sender's message is stored (sent after the commit).
    Ack {
        /// The conversation.
        conversation: ConversationId,
        /// The sender's id for it.
        client_id: ClientMsgId,
        /// The seq it was stored with.
        seq: u64,
    },
    /// To the visitor: an agent has joined their conversation (routed to them, taken, handed
    /// over by a transfer, or back to them when it reopened): "You're now talking with …".
    AgentJoined {
        /// The conversation.
        conversation: ConversationId,
        /// The agent's display name.
        agent_name: String,
    },
    /// To a visitor, once an agent has joined: ICE servers with TURN credentials (a welcome
    /// before that carries STUN only). Replaces the welcome's `media`.
    Media {
        /// The conversation.
        conversation: ConversationId,
        /// ICE servers and upload limit.
        media: MediaConfig,
    },
    /// To a visitor whose conversation has no agent (after the welcome, and whenever it
    /// changes): their place in the site's queue and whether any agent is available.
    Queue {
        /// The conversation.
        conversation: ConversationId,
        /// 1 for next in line; 0 while not in the queue (nothing said yet).
        position: u32,
        /// Whether an agent of the site is available now. When none is, the widget says so
        /// and offers to leave an email.
        online: bool,
    },
    /// To the agents who joined a conversation: where its visitor is now (after the join,
    /// and whenever it changes).
    Visit {
        /// The conversation.
        conversation: ConversationId,
        /// What the visitor's browser says.
        info: VisitorInfo,
    },
    /// To a visitor: the site's owner changed what it offers or how it looks (the widget
    /// follows at once).
    Site {
        /// The site's name.
        site_name: String,
        /// What it offers now.
        features: SiteFeatures,
        /// How it looks now.
        look: SiteLook,
    },
    /// To a visitor: an agent closed their conversation (ask for a rating). Writing again
    /// reopens it.
    Closed {
        /// The conversation.
        conversation: ConversationId,
    },
    /// To agents: a conversation of theirs is new or has changed.
    Conversation(ConversationSummary),
    /// To agents: a member of their team (or they themselves) is now this.
    Presence(TeamMember),
    /// Someone on the other side is typing (show it for a few seconds).
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Which side.
        author: Author,
        /// The agent's name, when an agent types.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// To a visitor: an agent has read the conversation up to `seq` (after a join's history,
    /// and whenever it moves).
    Read {
        /// The conversation.
        conversation: ConversationId,
        /// The newest seq read.
        seq: u64,
    },
    /// The conversation's call changed (or, after a join, what it is now).
    Call {
        /// The conversation.
        conversation: ConversationId,
        /// The call, or `None` when there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallInfo>,
    },
    /// Signaling from the other end of the call, as it sent it.
    Signal {
        /// The conversation.
        conversation: ConversationId,
        /// Opaque to the relay.
        payload: String,
    },
    /// Answer to [`ClientMsg::Ping`].
    Pong,
    /// A frame could not be handled. Unless said otherwise the socket stays open.
    Error {
        /// What went wrong, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
        /// The conversation of the frame it answers, when that frame named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<ConversationId>,
        /// The chat message it answers: the `client_id` of that `chat` frame.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientMsgId>,
    },
}

/// Machine-readable reasons in [`ServerMsg::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a message this protocol knows.
    BadFrame,
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    TooLarge,
    /// The hello was missing or said another protocol version; the socket closes.
    BadHello,
    /// The text is empty or too long.
    BadText,
    /// This socket may not do that (for example another visitor's conversation).
    Forbidden,
    /// No such conversation (or not one this socket may know of).
    NotFound,
    /// Another agent took the conversation first.
    AlreadyTaken,
    /// Too many frames too fast; this one was dropped. Send it again a little later.
    RateLimited,
    /// A limit that does not clear in seconds was reached (new conversations from one
    /// network, tabs open for one visitor, files in a conversation); the message says which.
    /// Sending again at once will not help.
    LimitReached,
    /// The relay failed; the frame may be resent.
    Internal,
    /// The agent's session ended (logout, expiry, disabled or removed); the socket closes.
    /// Log in again.
    SessionEnded,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadHello => "bad_hello",
            ErrorCode::BadText => "bad_text",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyTaken => "already_taken",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::Internal => "internal",
            ErrorCode::SessionEnded => "session_ended",
        }
    }
}

/// The longest `client_id` the relay accepts, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// Characters that show nothing: zero-width spaces and joiners, word joiners and invisible
/// operators, the byte-order mark, the soft hyphen, bidirectional controls, variation
/// selectors, tag characters and the blank "fillers" of Hangul and Braille.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Bidirectional controls (embeddings, overrides, isolates, marks): in a file name they can
/// make `gpj.exe` read as `exe.jpg`.
pub fn bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks chat text: at least one visible character, at most [`MAX_TEXT_CHARS`]. Shared so the
/// widget can say so before sending and the relay enforces the same rule.
pub fn check_text(text: &str) -> Result<(), &'static str> {
    if !text
        .chars()
        .any(|c| !c.is_whitespace() && !c.is_control() && !invisible(c))
    {
        Err("The message is empty.")
    } else if text.chars().count() > MAX_TEXT_CHARS {
        Err("The message is too long (at most 8000 characters).")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> ConversationId {
        ConversationId::from("0123456789abcdef0123456789abcdef")
    }

    fn message(author: Author) -> Message {
        Message {
            conversation: conv(),
            seq: 7,
            client_id: Some(ClientMsgId::from("c-1")),
            author,
            author_name: (author == Author::Agent).then(|| "Ana".to_owned()),
            text: "<b>hi</b>\nsecond line, ünïcödé 👋".to_owned(),
            event: None,
            attachment: (author == Author::Visitor).then(|| Attachment {
                id: FileId::from("f1"),
                name: "photo.png".into(),
                size: 10,
                mime: "image/png".into(),
                sha256: "00".into(),
            }),
            at: 1_700_000_000_000,
        }
    }

    fn media() -> MediaConfig {
        MediaConfig {
            ice_servers: vec![IceServer {
                urls: vec!["turn:127.0.0.1:3478".into()],
                username: Some("1:x".into()),
                credential: Some("c".into()),
            }],
            max_upload: 25 << 20,
            email: true,
        }
    }

    fn summary() -> ConversationSummary {
        ConversationSummary {
            id: conv(),
            site: SiteKey::from("s"),
            site_name: "Shop".into(),
            visitor_label: "Visitor 0123".into(),
            status: ConversationStatus::Assigned,
            agent: Some(AgentRef {
                id: AgentId::from("a1"),
                name: "Ana".into(),
            }),
            last_seq: 3,
            preview: "hello".into(),
            last_at: 5,
            rating: Some(Rating::Down),
            features: SiteFeatures {
                video: false,
                ..SiteFeatures::default()
            },
            verified: true,
        }
    }

    fn round_trip<T>(value: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_string(value).unwrap();
        let back: T = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, value, "{json}");
    }

    #[test]
    fn every_client_msg_round_trips() {
        let all = [
            ClientMsg::Hello {
                protocol: PROTOCOL_VERSION,
                token: None,
                identity: None,
                resume: None,
            },
            ClientMsg::Hello {
                protocol: PROTOCOL_VERSION,
                token: Some(VisitorToken::from("t")),
                identity: Some(Identity {
                    id: "u-42".into(),
                    name: Some("Ines".into()),
                    email: None,
                    hash: "ab".repeat(32),
                }),
                resume: None,
            },
            ClientMsg::Join {
                conversation: conv(),
                after_seq: 4,
            },
            ClientMsg::Chat {
                conversation: conv(),
                client_id: ClientMsgId::from("c"),
                text: "a\nb".into(),
            },
            ClientMsg::Take {
                conversation: conv(),
            },
            ClientMsg::Read {
                conversation: conv(),
                seq: 9,
            },
            ClientMsg::Call {
                conversation: conv(),
                action: CallAction::Start {
                    kind: CallKind::Video,
                },
            },
            ClientMsg::Call {
                conversation: conv(),
                action: CallAction::Accept,
            },
            ClientMsg::Call {
                conversation: conv(),
                action: CallAction::Decline,
            },
            ClientMsg::Call {
                conversation: conv(),
                action: CallAction::HangUp,
            },
            ClientMsg::Call {
                conversation: conv(),
                action: CallAction::Media {
                    media: MediaKind::Screen,
                    on: true,
                },
            },
            ClientMsg::Signal {
                conversation: conv(),
                payload: r#"{"sdp":"v=0"}"#.into(),
            },
            ClientMsg::Ping,
            ClientMsg::Presence {
                presence: Presence::Away,
            },
            ClientMsg::Typing {
                conversation: conv(),
            },
            ClientMsg::Note {
                conversation: conv(),
                client_id: ClientMsgId::from("n1"),
                text: "VIP".into(),
            },
            ClientMsg::Close {
                conversation: conv(),
            },
            ClientMsg::Transfer {
                conversation: conv(),
                to: Some(AgentId::from("b")),
                note: Some("wants a refund".into()),
            },
            ClientMsg::Transfer {
                conversation: conv(),
                to: None,
                note: None,
            },
            ClientMsg::Rate {
                conversation: conv(),
                rating: Rating::Up,
                comment: Some("quick".into()),
            },
            ClientMsg::Contact {
                conversation: conv(),
                email: "ines@example.com".into(),
            },
            ClientMsg::Visit {
                conversation: conv(),
                info: VisitorInfo {
                    page: "https://shop.example/cart".into(),
                    time_zone: "Europe/Lisbon".into(),
                    utc_offset_minutes: 60,
                    ..VisitorInfo::default()
                },
            },
            ClientMsg::SetVisitor {
                conversation: conv(),
                name: Some("Inês".into()),
                email: None,
            },
        ];
        for msg in &all {
            round_trip(msg);
        }
    }

    #[test]
    fn a_site_offers_video_only_with_voice() {
        let chat_only = SiteFeatures {
            voice: false,
            ..SiteFeatures::default()
        };
        assert!(!chat_only.allows(CallKind::Voice));
        assert!(!chat_only.allows(CallKind::Video), "video needs voice");
        assert!(!chat_only.allows_media(MediaKind::Camera));
        assert!(chat_only.allows(CallKind::Screen));
        // Frames from before the features existed mean everything on.
        let old: SiteFeatures = serde_json::from_str("{}").unwrap();
        assert_eq!(old, SiteFeatures::default());
    }

    #[test]
    fn email_addresses_are_checked_loosely() {
        for good in ["ines@example.com", " a.b+c@mail.example.org "] {
            assert_eq!(check_email(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "ines",
            "@example.com",
            "ines@",
            "ines@example",
            "i nes@example.com",
            "a@b@example.com",
            "ines@.com",
            "ines@example.",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn text_on_any_site_colour_reads_at_aa_contrast() {
        assert_eq!(ink_on(DEFAULT_COLOR), "#ffffff");
        assert_eq!(ink_on("#fde047"), "#000000");
        assert_eq!(ink_on("#000000"), "#ffffff");
        assert_eq!(ink_on("#ffffff"), "#000000");
        // Every grey and a sweep of hues: the chosen ink reaches 4.5:1.
        for v in (0..=255u8).step_by(5) {
            for bg in [[v, v, v], [v, 255 - v, 128], [255, v, 0], [0, v, 255]] {
                let color = format!("#{:02x}{:02x}{:02x}", bg[0], bg[1], bg[2]);
                let ink = parse_color(ink_on(&color)).unwrap();
                assert!(contrast(bg, ink) >= 4.5, "{color}");
            }
        }
    }

    #[test]
    fn the_records_lines_are_said_in_spanish_with_their_names_filled() {
        let es = [i18n::table(i18n::WIDGET, "es").unwrap()];
        let say = |english| i18n::lookup(&es, english);
        let joined = SystemEvent::Joined {
            agent: "Ana".into(),
        };
        assert_eq!(joined.english(), "Ana joined the conversation");
        assert_eq!(joined.said(say), "Ana se unió a la conversación");
        let screen = SystemEvent::Media {
            who: "Visitor".into(),
            media: MediaKind::Screen,
            on: true,
        };
        assert_eq!(screen.said(say), "El visitante compartió su pantalla");
        for event in [
            SystemEvent::Transferred {
                from: "Ana".into(),
                to: "Cy".into(),
            },
            SystemEvent::Requeued {
                agent: "Ana".into(),
            },
            SystemEvent::Closed {
                agent: "Ana".into(),
            },
            SystemEvent::Reopened,
            SystemEvent::EmailLeft {
                email: "v@x.example".into(),
            },
            SystemEvent::Rated {
                rating: Rating::Up,
                comment: Some("bien".into()),
            },
            SystemEvent::Rated {
                rating: Rating::Down,
                comment: None,
            },
            SystemEvent::CallStarted {
                call: CallKind::Voice,
            },
            SystemEvent::CallStarted {
                call: CallKind::Video,
            },
            SystemEvent::CallEnded { seconds: 192 },
            SystemEvent::CallCancelled,
            SystemEvent::CallDeclined,
            SystemEvent::CallMissed,
            SystemEvent::Media {
                who: "Ana".into(),
                media: MediaKind::Camera,
                on: false,
            },
        ] {
            let (en, es) = (event.english(), event.said(say));
            assert_ne!(en, es, "{event:?} is translated");
            assert!(!es.contains('{'), "{es}: every name is filled");
        }
        assert_eq!(
            SystemEvent::CallEnded { seconds: 192 }.english(),
            "Call ended, 3:12"
        );
    }

    #[test]
    fn a_look_needs_a_hex_colour_and_a_short_greeting() {
        assert!(check_look(&SiteLook::default()).is_ok());
        for bad in ["2563eb", "#2563e", "#2563ebb", "#zz63eb", "blue", ""] {
            let look = SiteLook {
                color: bad.into(),
                ..SiteLook::default()
            };
            assert_eq!(check_look(&look).map_err(|e| e.0), Err("color"), "{bad}");
        }
        let long = SiteLook {
            greeting: "a".repeat(301),
            ..SiteLook::default()
        };
        assert_eq!(check_look(&long).map_err(|e| e.0), Err("greeting"));
        let two_lines = SiteLook {
            greeting: "Hi\nthere".into(),
            ..SiteLook::default()
        };
        assert_eq!(check_look(&two_lines).map_err(|e| e.0), Err("greeting"));
        let away = SiteLook {
            away_message: "b".repeat(301),
            ..SiteLook::default()
        };
        assert_eq!(check_look(&away).map_err(|e| e.0), Err("away_message"));
        for (tag, ok) in [("es", true), ("en", true), ("fr", false), ("ES", false)] {
            let look = SiteLook {
                language: Some(tag.into()),
                ..SiteLook::default()
            };
            assert_eq!(check_look(&look).is_ok(), ok, "{tag}");
        }
    }

    #[test]
    fn business_hours_say_when_a_site_is_open() {
        let hours = BusinessHours {
            time_zone: "Europe/Madrid".into(),
            days: [
                Some((9 * 60, 17 * 60 + 59)),
                None,
                None,
                None,
                None,
                None,
                Some((0, 1439)),
            ],
        };
        assert!(hours.check().is_ok());
        assert!(!hours.open_at(0, 9 * 60 - 1));
        assert!(hours.open_at(0, 9 * 60));
        assert!(hours.open_at(0, 17 * 60 + 59));
        assert!(!hours.open_at(0, 18 * 60));
        assert!(!hours.open_at(1, 12 * 60));
        assert!(hours.open_at(6, 0) && hours.open_at(6, 1439));
        assert!(!hours.open_at(7, 0));
        for tz in ["", "Europe/Madrid; x", &"A".repeat(65)] {
            let bad = BusinessHours {
                time_zone: tz.to_owned(),
                ..hours.clone()
            };
            assert!(bad.check().is_err(), "{tz:?}");
        }
        for day in [(600, 599), (0, 1440)] {
            let bad = BusinessHours {
                days: [Some(day), None, None, None, None, None, None],
                ..hours.clone()
            };
            assert!(bad.check().is_err(), "{day:?}");
        }
    }

    #[test]
    fn every_server_msg_round_trips() {
        let all = [
            ServerMsg::WelcomeVisitor {
                token: VisitorToken::from("t"),
                conversation: conv(),
                site_name: "Shop".into(),
                agent_name: Some("Ana".into()),
                media: media(),
                closed: false,
                rated: false,
                features: SiteFeatures::default(),
                look: SiteLook::default(),
            },
            ServerMsg::WelcomeVisitor {
                token: VisitorToken::from("t"),
                conversation: conv(),
                site_name: "Shop".into(),
                agent_name: None,
                media: media(),
                closed: true,
                rated: true,
                features: SiteFeatures {
                    voice: false,
                    video: false,
                    screen: false,
                    files: false,
                    snapshots: false,
                    max_upload: Some(1 << 20),
                },
                look: SiteLook {
                    color: "#fde047".into(),
                    position: Corner::Left,
                    greeting: "Hola".into(),
                    away_message: "Back at 9".into(),
                    hours: Some(BusinessHours {
                        time_zone: "Europe/Madrid".into(),
                        days: [Some((540, 1079)), None, None, None, None, None, None],
                    }),
                    language: Some("es".into()),
                    pre_chat: true,
                },
            },
            ServerMsg::Site {
                site_name: "Shop".into(),
                features: SiteFeatures::default(),
                look: SiteLook::default(),
            },
            ServerMsg::Queue {
                conversation: conv(),
                position: 3,
                online: true,
            },
            ServerMsg::Closed {
                conversation: conv(),
            },
            ServerMsg::Visit {
                conversation: conv(),
                info: VisitorInfo {
                    page: "https://shop.example/".into(),
                    ..VisitorInfo::default()
                },
            },
            ServerMsg::WelcomeAgent {
                agent: AgentRef {
                    id: AgentId::from("a"),
                    name: "Ana".into(),
                },
                conversations: vec![summary()],
                read: vec![ReadMark {
                    conversation: conv(),
                    seq: 2,
                }],
                media: MediaConfig::default(),
                presence: Presence::Away,
                team: vec![TeamMember {
                    agent: AgentRef {
                        id: AgentId::from("b"),
                        name: "Bea".into(),
                    },
                    presence: Presence::Busy,
                }],
                away_after_secs: 300,
            },
            ServerMsg::History {
                conversation: conv(),
                messages: vec![message(Author::Visitor), message(Author::System)],
                upto: 7,
            },
            ServerMsg::Message(message(Author::Note)),
            ServerMsg::Message(message(Author::Agent)),
            ServerMsg::Ack {
                conversation: conv(),
                client_id: ClientMsgId::from("c"),
                seq: 2,
            },
            ServerMsg::AgentJoined {
                conversation: conv(),
                agent_name: "Ana".into(),
            },
            ServerMsg::Media {
                conversation: conv(),
                media: media(),
            },
            ServerMsg::Conversation(summary()),
            ServerMsg::Typing {
                conversation: conv(),
                author: Author::Agent,
                name: Some("Ana".into()),
            },
            ServerMsg::Read {
                conversation: conv(),
                seq: 4,
            },
            ServerMsg::Presence(TeamMember {
                agent: AgentRef {
                    id: AgentId::from("b"),
                    name: "Bea".into(),
                },
                presence: Presence::Offline,
            }),
            ServerMsg::Call {
                conversation: conv(),
                call: Some(CallInfo {
                    phase: CallPhase::Ringing,
                    kind: CallKind::Voice,
                    caller: Author::Agent,
                    caller_name: "Ana".into(),
                    since: 3,
                    party: true,
                    away: false,
                }),
            },
            ServerMsg::Call {
                conversation: conv(),
                call: None,
            },
            ServerMsg::Signal {
                conversation: conv(),
                payload: "{}".into(),
            },
            ServerMsg::Pong,
            ServerMsg::Error {
                code: ErrorCode::AlreadyTaken,
                message: "taken".into(),
                conversation: Some("c".into()),
                client_id: Some("m".into()),
            },
        ];
        for msg in &all {
            round_trip(msg);
        }
    }

    #[test]
    fn wire_shape_is_tagged_snake_case() {
        let json = serde_json::to_value(ClientMsg::Take {
            conversation: conv(),
        })
        .unwrap();
        assert_eq!(json["type"], "take");
        assert_eq!(json["conversation"], conv().0);
        let json = serde_json::to_value(ServerMsg::Message(message(Author::Agent))).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["author"], "agent");
        let json = serde_json::to_value(ServerMsg::Error {
            code: ErrorCode::TooLarge,
            message: String::new(),
            conversation: None,
            client_id: None,
        })
        .unwrap();
        assert_eq!(json["code"], ErrorCode::TooLarge.as_str());
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"launch_missiles"}"#).is_err());
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"chat"}"#).is_err());
    }

    #[test]
    fn text_rules() {
        assert!(check_text("  \n ").is_err());
        assert!(check_text("ok").is_ok());
        assert!(check_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        // Nothing visible: spaces, zero-width characters, a byte-order mark, a Hangul filler.
        for blank in [
            "  \n\t",
            "\u{200B}\u{200D}",
            "\u{FEFF} \u{2060}",
            "\u{3164}",
            "\u{202E}\u{E0041}",
        ] {
            assert_eq!(check_text(blank), Err("The message is empty."), "{blank:?}");
        }
        assert!(check_text("\u{200B}ok").is_ok());
        assert!(check_text("👍").is_ok());
        assert!(check_text(&"é".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }
}
