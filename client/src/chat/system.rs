//! The relay's own lines of a conversation (joins, hand-overs, calls), said in the viewer's
//! language from what they record.

use crate::i18n::{t, tf};
use escalera_protocol::{duration, MediaKind, Rating, SystemEvent};

/// What a system line says.
pub fn said(event: &SystemEvent) -> String {
    match event {
        SystemEvent::Joined { agent } => tf("{agent} joined the conversation", &[("agent", agent)]),
        SystemEvent::Closed { agent } => tf("{agent} closed the conversation", &[("agent", agent)]),
        SystemEvent::Transferred { from, to } => {
            let names = [("from", from.as_str()), ("to", to.as_str())];
            tf("{from} transferred the conversation to {to}", &names)
        }
        SystemEvent::Requeued { agent } => tf(
            "{agent} put the conversation back in the queue",
            &[("agent", agent)],
        ),
        SystemEvent::Reopened => t("The visitor reopened the conversation").to_owned(),
        SystemEvent::EmailLeft { email } => tf(
            "The visitor left their email for the reply: {email}",
            &[("email", email)],
        ),
        SystemEvent::Rated { rating, comment } => {
            let verdict = match rating {
                Rating::Up => "👍",
                Rating::Down => "👎",
            };
            match comment {
                Some(c) => {
                    let values = [("verdict", verdict), ("comment", c.as_str())];
                    tf(
                        "The visitor rated the conversation {verdict}: {comment}",
                        &values,
                    )
                }
                None => tf(
                    "The visitor rated the conversation {verdict}",
                    &[("verdict", verdict)],
                ),
            }
        }
        SystemEvent::CallStarted { call } => match call {
            escalera_protocol::CallKind::Video => t("Video call started").to_owned(),
            _ => t("Voice call started").to_owned(),
        },
        SystemEvent::CallEnded { seconds } => tf(
            "Call ended, {duration}",
            &[("duration", &duration(*seconds))],
        ),
        SystemEvent::CallCancelled => t("Call cancelled").to_owned(),
        SystemEvent::CallDeclined => t("Call declined").to_owned(),
        SystemEvent::CallMissed => t("Missed call").to_owned(),
        SystemEvent::Media { who, media, on } => {
            // The relay names a visitor "Visitor".
            let who = if who == "Visitor" { t("Visitor") } else { who };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Until a language is chosen the client speaks English, which must be the relay's own
    /// text for every event.
    #[test]
    fn in_english_each_event_says_what_the_relay_wrote() {
        let events = [
            SystemEvent::Joined {
                agent: "Ana".into(),
            },
            SystemEvent::Closed {
                agent: "Ana".into(),
            },
            SystemEvent::Transferred {
                from: "Ana".into(),
                to: "Cy".into(),
            },
            SystemEvent::Requeued {
                agent: "Ana".into(),
            },
            SystemEvent::Reopened,
            SystemEvent::EmailLeft {
                email: "v@x.example".into(),
            },
            SystemEvent::Rated {
                rating: Rating::Up,
                comment: Some("great".into()),
            },
            SystemEvent::Rated {
                rating: Rating::Down,
                comment: None,
            },
            SystemEvent::CallStarted {
                call: escalera_protocol::CallKind::Video,
            },
            SystemEvent::CallStarted {
                call: escalera_protocol::CallKind::Voice,
            },
            SystemEvent::CallEnded { seconds: 3_725 },
            SystemEvent::CallCancelled,
            SystemEvent::CallDeclined,
            SystemEvent::CallMissed,
            SystemEvent::Media {
                who: "Ana".into(),
                media: MediaKind::Camera,
                on: true,
            },
            SystemEvent::Media {
                who: "Visitor".into(),
                media: MediaKind::Camera,
                on: false,
            },
            SystemEvent::Media {
                who: "Ana".into(),
                media: MediaKind::Screen,
                on: true,
            },
            SystemEvent::Media {
                who: "Ana".into(),
                media: MediaKind::Screen,
                on: false,
            },
        ];
        for event in events {
            assert_eq!(said(&event), event.english());
        }
    }
}
