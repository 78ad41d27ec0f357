//! The agent console (`/agent`): login, the conversation list, and one open conversation.

mod alerts;
mod canned;
mod conversation_list;
mod conversation_view;
mod language;
mod login;
mod root;
mod search;
mod settings;
mod state;
mod team;
mod transfer;
mod visitor;

pub use root::Console;
