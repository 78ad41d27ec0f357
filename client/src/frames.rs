//! Reading the relay's frames. The console takes every [`ServerMsg`]; the widget takes only
//! the frames a visitor is sent, with a decoder of its own: serde's derive for the internally
//! tagged `ServerMsg` buffers each frame into a generic tree before it reads the variant, and
//! brings every type of the protocol with it, the console's too. Here the tag is read first,
//! then the frame straight into the one variant's fields. The widget's module is the smaller
//! for it (README, "Where the widget's bytes go").

use escalera_protocol::{
    Author, CallInfo, ClientMsgId, ConversationId, ErrorCode, MediaConfig, Message, ServerMsg,
    SiteFeatures, SiteLook, VisitorToken,
};
use serde::Deserialize;

/// Reads one frame.
pub type Decode = fn(&str) -> Result<ServerMsg, serde_json::Error>;

/// Any frame (the console).
pub fn any(text: &str) -> Result<ServerMsg, serde_json::Error> {
    serde_json::from_str(text)
}

/// A frame sent to visitors; any other is an error.
pub fn for_visitor(text: &str) -> Result<ServerMsg, serde_json::Error> {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let tag: Tag = serde_json::from_str(text)?;
    match tag.kind.as_ref() {
        "message" => serde_json::from_str(text).map(ServerMsg::Message),
        "pong" => Ok(ServerMsg::Pong),
        kind => fields::read(kind, text).unwrap_or_else(|| {
            Err(serde::de::Error::custom(format_args!(
                "not a frame for a visitor: {kind}"
            )))
        }),
    }
}

/// For each visitor frame with fields: a struct of its fields (their serde attributes as on
/// [`ServerMsg`]), and the match that reads one into the variant. The tests hold every field
/// to the variant's: a variant's new field fails them until it is here.
macro_rules! visitor_frames {
    ($( $tag:literal => $variant:ident { $( $(#[$attr:meta])* $field:ident : $ty:ty ),* $(,)? } )*) => {
        mod fields {
            use super::*;

            $(
                #[derive(Deserialize)]
                pub(super) struct $variant { $( $(#[$attr])* pub(super) $field: $ty ),* }
            )*

            /// The frame `text` of type `kind`; `None` if visitors are never sent that type.
            pub(super) fn read(kind: &str, text: &str) -> Option<Result<ServerMsg, serde_json::Error>> {
                Some(match kind {
                    $( $tag => serde_json::from_str::<$variant>(text)
                        .map(|f| ServerMsg::$variant { $( $field: f.$field ),* }), )*
                    _ => return None,
                })
            }
        }
    };
}

visitor_frames! {
    "welcome_visitor" => WelcomeVisitor {
        token: VisitorToken,
        conversation: ConversationId,
        site_name: String,
        #[serde(default)]
        agent_name: Option<String>,
        media: MediaConfig,
        #[serde(default)]
        closed: bool,
        #[serde(default)]
        rated: bool,
        #[serde(default)]
        features: SiteFeatures,
        #[serde(default)]
        look: SiteLook,
    }
    "history" => History {
        conversation: ConversationId,
        messages: Vec<Message>,
        #[serde(default)]
        upto: u64,
    }
    "ack" => Ack { conversation: ConversationId, client_id: ClientMsgId, seq: u64 }
    "agent_joined" => AgentJoined { conversation: ConversationId, agent_name: String }
    "media" => Media { conversation: ConversationId, media: MediaConfig }
    "queue" => Queue { conversation: ConversationId, position: u32, online: bool }
    "site" => Site { site_name: String, features: SiteFeatures, look: SiteLook }
    "closed" => Closed { conversation: ConversationId }
    "typing" => Typing {
        conversation: ConversationId,
        author: Author,
        #[serde(default)]
        name: Option<String>,
    }
    "read" => Read { conversation: ConversationId, seq: u64 }
    "call" => Call {
        conversation: ConversationId,
        #[serde(default)]
        call: Option<CallInfo>,
    }
    "signal" => Signal { conversation: ConversationId, payload: String }
    "error" => Error {
        code: ErrorCode,
        message: String,
        #[serde(default)]
        conversation: Option<ConversationId>,
        #[serde(default)]
        client_id: Option<ClientMsgId>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalera_protocol::{CallKind, CallPhase, IceServer};

    fn conv() -> ConversationId {
        ConversationId::from("c1")
    }

    fn message() -> Message {
        serde_json::from_value(serde_json::json!({
            "conversation": "c1", "seq": 3, "author": "agent", "author_name": "Ana",
            "text": "Hello", "at": 1_700_000_000_000_i64, "client_id": "m1"
        }))
        .unwrap()
    }

    /// Every frame a visitor is sent, each field set (so that every field is read, and a
    /// variant's new field must be listed here to compile).
    fn visitor_frames() -> Vec<ServerMsg> {
        let media = MediaConfig {
            ice_servers: vec![IceServer {
                urls: vec!["turn:127.0.0.1:3478".into()],
                username: Some("u".into()),
                credential: Some("p".into()),
            }],
            ..serde_json::from_value(serde_json::json!({"ice_servers": [], "max_upload": 5}))
                .unwrap()
        };
        let features: SiteFeatures =
            serde_json::from_value(serde_json::json!({"voice": false, "max_upload": 7})).unwrap();
        let look: SiteLook = serde_json::from_value(
            serde_json::json!({"color": "#123456", "greeting": "Hi", "pre_chat": true}),
        )
        .unwrap();
        let call: CallInfo = serde_json::from_value(serde_json::json!({
            "kind": "video", "phase": "active", "caller": "agent", "caller_name": "Ana",
            "party": true, "since": 5, "away": true
        }))
        .unwrap();
        assert_eq!(
            (call.kind, call.phase),
            (CallKind::Video, CallPhase::Active)
        );
        vec![
            ServerMsg::WelcomeVisitor {
                token: VisitorToken("t".into()),
                conversation: conv(),
                site_name: "Shop".into(),
                agent_name: Some("Ana".into()),
                media: media.clone(),
                closed: true,
                rated: true,
                features,
                look: look.clone(),
            },
            ServerMsg::History {
                conversation: conv(),
                messages: vec![message(), message()],
                upto: 9,
            },
            ServerMsg::Message(message()),
            ServerMsg::Ack {
                conversation: conv(),
                client_id: ClientMsgId::from("m1"),
                seq: 4,
            },
            ServerMsg::AgentJoined {
                conversation: conv(),
                agent_name: "Ana".into(),
            },
            ServerMsg::Media {
                conversation: conv(),
                media,
            },
            ServerMsg::Queue {
                conversation: conv(),
                position: 2,
                online: true,
            },
            ServerMsg::Site {
                site_name: "Shop".into(),
                features,
                look,
            },
            ServerMsg::Closed {
                conversation: conv(),
            },
            ServerMsg::Typing {
                conversation: conv(),
                author: Author::Agent,
                name: Some("Ana".into()),
            },
            ServerMsg::Read {
                conversation: conv(),
                seq: 8,
            },
            ServerMsg::Call {
                conversation: conv(),
                call: Some(call),
            },
            ServerMsg::Signal {
                conversation: conv(),
                payload: "{\"sdp\":\"v=0\"}".into(),
            },
            ServerMsg::Pong,
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                conversation: Some(conv()),
                client_id: Some(ClientMsgId::from("m2")),
            },
        ]
    }

    #[test]
    fn every_visitor_frame_reads_as_the_general_decoder_reads_it() {
        for frame in visitor_frames() {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(for_visitor(&text).unwrap(), frame, "{text}");
            assert_eq!(any(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn fields_the_relay_leaves_out_take_their_defaults() {
        for (text, frame) in [
            (
                r#"{"type":"call","conversation":"c1"}"#,
                ServerMsg::Call {
                    conversation: conv(),
                    call: None,
                },
            ),
            (
                r#"{"conversation":"c1","type":"history","messages":[]}"#,
                ServerMsg::History {
                    conversation: conv(),
                    messages: vec![],
                    upto: 0,
                },
            ),
        ] {
            assert_eq!(for_visitor(text).unwrap(), frame);
            assert_eq!(any(text).unwrap(), frame);
        }
    }

    #[test]
    fn frames_for_agents_and_broken_ones_are_errors() {
        for kind in ["welcome_agent", "conversation", "presence", "visit"] {
            let text = format!(r#"{{"type":"{kind}"}}"#);
            let err = for_visitor(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("not a frame for a visitor: {kind}")),
                "{err}"
            );
        }
        for bad in [
            "",
            "[]",
            r#"{"kind":"ack"}"#,
            r#"{"type":"ack","conversation":"c1"}"#,
        ] {
            assert!(for_visitor(bad).is_err(), "{bad}");
        }
    }
}
