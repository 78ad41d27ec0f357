//! The agent console (`/agent`): login, the conversation list, and one open conversation.

mod conversation_list;
mod conversation_view;
mod login;
mod root;
mod state;
mod team;
mod transfer;

pub use root::Console;
