//! Errors at the relay's boundaries. A [`RelayError`] is about one frame: the sender is told
//! (as [`ServerMsg::Error`]) and the connection carries on. Store failures are [`StoreError`].

use escalera_protocol::{ClientMsgId, ConversationId, ErrorCode, ServerMsg};

/// Why one frame was not handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// Not JSON or not a known message.
    #[error("malformed frame: {0}")]
    BadFrame(String),
    /// Over the frame size limit.
    #[error("frame of {0} bytes is over the limit of {limit} bytes", limit = escalera_protocol::MAX_FRAME_BYTES)]
    TooLarge(usize),
    /// Anything before the hello, or a second hello.
    #[error("say hello first, once, with protocol {v}", v = escalera_protocol::PROTOCOL_VERSION)]
    NoHello,
    /// The hello named a protocol this relay does not speak.
    #[error("protocol {0} is not supported; this relay speaks {v}", v = escalera_protocol::PROTOCOL_VERSION)]
    BadVersion(u32),
    /// The chat text breaks the rules.
    #[error("{0}")]
    BadText(&'static str),
    /// Not allowed for this connection.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// No such conversation for this connection.
    #[error("no such conversation")]
    NotFound,
    /// Another agent has it.
    #[error("{0} has already taken this conversation")]
    AlreadyTaken(String),
    /// Too many frames.
    #[error("too many messages, slow down")]
    RateLimited,
    /// A limit of this relay was reached (conversations, sockets, files): the text says which.
    #[error("{0}")]
    Limit(&'static str),
    /// The store failed.
    #[error("the relay could not store this, try again")]
    Internal,
    /// The agent's session is over.
    #[error("your session has ended: log in again")]
    SessionEnded,
}

impl RelayError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            RelayError::BadFrame(_) => ErrorCode::BadFrame,
            RelayError::TooLarge(_) => ErrorCode::TooLarge,
            RelayError::NoHello | RelayError::BadVersion(_) => ErrorCode::BadHello,
            RelayError::BadText(_) => ErrorCode::BadText,
            RelayError::Forbidden(_) => ErrorCode::Forbidden,
            RelayError::NotFound => ErrorCode::NotFound,
            RelayError::AlreadyTaken(_) => ErrorCode::AlreadyTaken,
            RelayError::RateLimited => ErrorCode::RateLimited,
            RelayError::Limit(_) => ErrorCode::LimitReached,
            RelayError::Internal => ErrorCode::Internal,
            RelayError::SessionEnded => ErrorCode::SessionEnded,
        }
    }
}

impl RelayError {
    /// The error frame, naming the conversation and chat message it answers.
    pub fn answering(
        &self,
        conversation: Option<ConversationId>,
        client_id: Option<ClientMsgId>,
    ) -> ServerMsg {
        ServerMsg::Error {
            code: self.code(),
            message: self.to_string(),
            conversation,
            client_id,
        }
    }
}

impl From<RelayError> for ServerMsg {
    fn from(e: RelayError) -> Self {
        e.answering(None, None)
    }
}

impl From<StoreError> for RelayError {
    fn from(e: StoreError) -> Self {
        tracing::error!("store: {e}");
        RelayError::Internal
    }
}

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no, or could not be reached.
    #[error("postgres: {0}")]
    Postgres(String),
    /// A value in the store or a request does not fit (e.g. duplicate email).
    #[error("{0}")]
    Invalid(String),
    /// The blocking task running the query died, or the writer stopped.
    #[error("store task failed: {0}")]
    Join(String),
}
