//! The agent console (`/agent`): login, the conversation list, and one open conversation.

mod console;
mod conversation_list;
mod conversation_view;
mod login;
mod state;

pub use console::Console;
