//! The chat shared by the widget and the console: a conversation's messages and the composer.

mod attachment;
mod composer;
mod message_list;
mod system;
mod thread;
mod typing;
mod upload;

pub use attachment::AttachmentView;
pub use composer::{files_of, Composer, Draft, Suggestion};
pub use message_list::MessageList;
pub use system::said;
pub use thread::{Line, Pending, Thread, Threads};
pub use typing::{Typing, TypingLine};
pub use upload::{human_size, Upload, UploadList, Uploader};
