//! The chat shared by the widget and the console: a conversation's messages and the composer.

mod composer;
mod message_list;
mod thread;

pub use composer::Composer;
pub use message_list::MessageList;
pub use thread::{Line, Pending, Thread};
