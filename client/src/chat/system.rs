//! The relay's own lines of a conversation (joins, hand-overs, calls), said in the viewer's
//! language from what they record.

use crate::i18n::t;
use escalera_protocol::SystemEvent;

/// What a system line says.
pub fn said(event: &SystemEvent) -> String {
    event.said(t)
}
