//! The call as one browser decides it, as a pure state machine: what was pressed, what the
//! relay said and what the devices did come in; what to open, send, connect or tear down
//! comes out. `controller` performs the commands on real devices and a real connection.
//!
//! Opening a device takes as long as the person takes to allow it. Every opening carries the
//! generation it started in; a teardown starts a new one, so a track that arrives after the
//! call ended (or was refused) is recognised as late and stopped, never attached.

use escalera_protocol::{
    Author, CallAction, CallInfo, CallKind, CallPhase, ConversationId, MediaKind,
};

use crate::i18n::t;

/// A local device to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The microphone.
    Mic,
    /// The camera.
    Camera,
    /// A screen, window or tab.
    Screen,
}

/// What an opening is for: what follows once the devices are open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Ask the relay to start a call of this kind.
    Start(CallKind),
    /// Answer the ringing call.
    Accept,
    /// Tell the other side this medium is on (in a call).
    Media(MediaKind),
    /// Nothing more (the microphone added to a screen share).
    Nothing,
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The conversation the call buttons act on (the console's open one, the widget's only
    /// one). Ignored while a call is under way in another conversation.
    Focus(Option<ConversationId>),
    /// "Call" pressed: voice, video, or a one-way screen share.
    Start(CallKind),
    /// "Accept" pressed.
    Accept,
    /// "Decline" pressed.
    Decline,
    /// "Hang up" pressed, or the page goes away.
    HangUp,
    /// In a call, a device is to be added (the camera turned on, the screen shared).
    Add(Device, Then),
    /// The devices of an opening are open.
    Opened {
        /// The generation the opening started in.
        generation: u32,
        /// What it was for.
        then: Then,
    },
    /// An opening failed (denied, no device).
    OpenFailed {
        /// The generation the opening started in.
        generation: u32,
        /// What it was for.
        then: Then,
        /// What to tell the person.
        error: String,
    },
    /// The relay says what the call of a conversation is now.
    Relay {
        /// The conversation.
        conversation: ConversationId,
        /// The call, or none.
        call: Option<CallInfo>,
    },
    /// The relay refused a frame that was not a chat message.
    Refused,
    /// The relay refused our last call action only for coming too fast (`rate_limited`).
    TooFast,
    /// The pause after `TooFast` is over: send `action` again if nothing changed meanwhile.
    Due {
        /// The action to send again.
        action: CallAction,
        /// The generation it belongs to.
        generation: u32,
    },
    /// A new connection is welcomed; `holding` is whether a peer connection is still held.
    Reconnected {
        /// A peer connection of the call is still open here.
        holding: bool,
    },
}

/// What to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Open these devices, then report `Opened` or `OpenFailed` with this generation.
    Open {
        /// The generation to report back.
        generation: u32,
        /// Which devices, in this order.
        devices: Vec<Device>,
        /// What they are for.
        then: Then,
    },
    /// The devices just opened are wanted: attach them to the call.
    Keep,
    /// The devices just opened came too late: stop them at once.
    Discard,
    /// Send this call action for the current conversation.
    Send(CallAction),
    /// Create the peer connection (if there is none) and send the local tracks.
    Connect,
    /// Close the peer connection and stop every local track.
    Teardown,
    /// Tell the person something.
    Notice(String),
    /// Feed `Due` with this action and generation after a pause.
    SendLater {
        /// The action.
        action: CallAction,
        /// The generation it belongs to.
        generation: u32,
    },
}

/// One browser's side of the calls of a widget or a console.
#[derive(Clone, Debug)]
pub struct CallMachine {
    me: Author,
    conversation: Option<ConversationId>,
    info: Option<CallInfo>,
    generation: u32,
    /// A start or accept under way, from pressing until the call is up or gone.
    busy: bool,
    /// The last call action sent (to send again if it was refused as too fast).
    last_sent: Option<CallAction>,
}

impl CallMachine {
    /// A machine for the side `me` is.
    pub fn new(me: Author) -> Self {
        Self {
            me,
            conversation: None,
            info: None,
            generation: 0,
            busy: false,
            last_sent: None,
        }
    }

    /// The conversation the call belongs to.
    pub fn conversation(&self) -> Option<&ConversationId> {
        self.conversation.as_ref()
    }

    /// The relay's view of the call.
    pub fn info(&self) -> Option<&CallInfo> {
        self.info.as_ref()
    }

    /// A start or accept is under way.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input) -> Vec<Command> {
        if matches!(input, Input::Relay { .. }) {
            // The relay said what the call is now: whatever we asked has its answer.
            self.last_sent = None;
        }
        let out = self.decide(input);
        // The steps that set a call up or end it are sent again when refused as too fast (a
        // device toggle is not: the next one says where it stands).
        if let Some(action) = out.iter().rev().find_map(|c| match c {
            Command::Send(
                a @ (CallAction::Start { .. }
                | CallAction::Accept
                | CallAction::Resume
                | CallAction::Decline
                | CallAction::HangUp),
            ) => Some(*a),
            _ => None,
        }) {
            self.last_sent = Some(action);
        }
        out
    }

    fn decide(&mut self, input: Input) -> Vec<Command> {
        match input {
            Input::Focus(id) => {
                if self.info.is_none() {
                    self.conversation = id;
                }
                vec![]
            }
            Input::Start(kind) => {
                self.busy = true;
                let devices = match kind {
                    CallKind::Voice => vec![Device::Mic],
                    CallKind::Video => vec![Device::Mic, Device::Camera],
                    CallKind::Screen => vec![Device::Screen],
                };
                vec![self.open(devices, Then::Start(kind))]
            }
            Input::Accept => {
                self.busy = true;
                vec![self.open(vec![Device::Mic], Then::Accept)]
            }
            Input::Add(device, then) => vec![self.open(vec![device], then)],
            Input::Decline => vec![Command::Send(CallAction::Decline)],
            Input::HangUp => {
                let mut out = Vec::new();
                if self.info.as_ref().is_some_and(|c| c.party) {
                    out.push(Command::Send(CallAction::HangUp));
                }
                out.extend(self.teardown());
                out
            }
            Input::Opened { generation, then } => {
                if generation != self.generation {
                    return vec![Command::Discard];
                }
                let mut out = vec![Command::Keep];
                match then {
                    Then::Start(kind) => out.push(Command::Send(CallAction::Start { kind })),
                    Then::Accept => out.push(Command::Send(CallAction::Accept)),
                    Then::Media(media) => {
                        out.push(Command::Send(CallAction::Media { media, on: true }))
                    }
                    Then::Nothing => {}
                }
                out
            }
            Input::OpenFailed {
                generation,
                then,
                error,
            } => {
                if generation != self.generation {
                    return vec![];
                }
                let mut out = Vec::new();
                if matches!(then, Then::Start(_)) && self.info.is_none() {
                    // Whatever the start opened before the failure goes too.
                    out.extend(self.teardown());
                }
                self.busy = false;
                out.push(Command::Notice(error));
                out
            }
            Input::Relay { conversation, call } => self.relay(conversation, call),
            Input::TooFast => match self.last_sent.take() {
                Some(action) => vec![Command::SendLater {
                    action,
                    generation: self.generation,
                }],
                None => vec![],
            },
            Input::Due { action, generation } => {
                // Hanging up has torn the call down here already (a new generation); the
                // relay still has to hear it.
                if generation == self.generation || action == CallAction::HangUp {
                    vec![Command::Send(action)]
                } else {
                    vec![]
                }
            }
            Input::Refused => {
                let mut out = Vec::new();
                if self.info.is_none() {
                    out.extend(self.teardown());
                }
                self.busy = false;
                out
            }
            Input::Reconnected { holding } => {
                let ours = self
                    .info
                    .as_ref()
                    .is_some_and(|c| c.phase == CallPhase::Active && c.party);
                if ours && holding {
                    vec![Command::Send(CallAction::Resume)]
                } else {
                    vec![]
                }
            }
        }
    }

    fn open(&self, devices: Vec<Device>, then: Then) -> Command {
        Command::Open {
            generation: self.generation,
            devices,
            then,
        }
    }

    fn teardown(&mut self) -> Vec<Command> {
        self.generation = self.generation.wrapping_add(1);
        self.busy = false;
        vec![Command::Teardown]
    }

    fn relay(&mut self, conversation: ConversationId, call: Option<CallInfo>) -> Vec<Command> {
        let ours = self.conversation.as_ref() == Some(&conversation);
        if !ours {
            // A call elsewhere becomes ours only while we have none.
            if self.info.is_some() || call.is_none() {
                return vec![];
            }
            self.conversation = Some(conversation);
        }
        let was = std::mem::replace(&mut self.info, call.clone());
        match call {
            None => {
                let mut out = Vec::new();
                if was
                    .as_ref()
                    .is_some_and(|c| c.phase == CallPhase::Ringing && c.party)
                {
                    out.push(Command::Notice(t("No answer.").into()));
                }
                out.extend(self.teardown());
                out
            }
            // A screen share from chat needs nothing of ours: watch it at once.
            Some(c)
                if c.phase == CallPhase::Ringing
                    && !c.party
                    && c.caller != self.me
                    && c.kind == CallKind::Screen =>
            {
                vec![Command::Send(CallAction::Accept)]
            }
            Some(c) if c.phase == CallPhase::Active && c.party => {
                self.busy = false;
                vec![Command::Connect]
            }
            // Another socket's call (another tab of ours, or one we only watch): nothing of
            // ours belongs in it.
            Some(c) if !c.party && (c.phase == CallPhase::Active || c.caller == self.me) => {
                self.teardown()
            }
            Some(_) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(phase: CallPhase, caller: Author, party: bool, kind: CallKind) -> CallInfo {
        CallInfo {
            kind,
            phase,
            caller,
            caller_name: "Someone".into(),
            since: 0,
            party,
            away: false,
        }
    }

    fn relay(c: Option<CallInfo>) -> Input {
        Input::Relay {
            conversation: "c".into(),
            call: c,
        }
    }

    fn visitor() -> CallMachine {
        let mut m = CallMachine::new(Author::Visitor);
        m.handle(Input::Focus(Some("c".into())));
        m
    }

    fn opened(m: &CallMachine, then: Then) -> Input {
        Input::Opened {
            generation: m.generation,
            then,
        }
    }

    #[test]
    fn a_video_call_opens_mic_and_camera_then_starts_then_connects() {
        let mut m = visitor();
        let open = m.handle(Input::Start(CallKind::Video));
        assert_eq!(
            open,
            [Command::Open {
                generation: 0,
                devices: vec![Device::Mic, Device::Camera],
                then: Then::Start(CallKind::Video),
            }]
        );
        assert!(m.busy());
        let started = m.handle(opened(&m, Then::Start(CallKind::Video)));
        assert_eq!(
            started,
            [
                Command::Keep,
                Command::Send(CallAction::Start {
                    kind: CallKind::Video
                })
            ]
        );
        let ringing = call(CallPhase::Ringing, Author::Visitor, true, CallKind::Video);
        assert_eq!(m.handle(relay(Some(ringing))), []);
        let active = call(CallPhase::Active, Author::Visitor, true, CallKind::Video);
        assert_eq!(m.handle(relay(Some(active))), [Command::Connect]);
        assert!(!m.busy());
    }

    #[test]
    fn a_track_that_arrives_after_the_end_is_stopped() {
        let mut m = visitor();
        m.handle(Input::Start(CallKind::Voice));
        let late = opened(&m, Then::Start(CallKind::Voice));
        // Hung up while the browser still asks for the microphone.
        assert_eq!(m.handle(Input::HangUp), [Command::Teardown]);
        assert_eq!(m.handle(late), [Command::Discard]);

        // Same when the relay ends the call while an answer's microphone is being opened.
        let ringing = call(CallPhase::Ringing, Author::Agent, false, CallKind::Voice);
        m.handle(relay(Some(ringing)));
        m.handle(Input::Accept);
        let late = opened(&m, Then::Accept);
        assert_eq!(m.handle(relay(None)), [Command::Teardown]);
        assert_eq!(m.handle(late), [Command::Discard]);

        // And a failure that comes late is not told: the call it was for is gone.
        m.handle(Input::Start(CallKind::Video));
        let failed = Input::OpenFailed {
            generation: m.generation,
            then: Then::Start(CallKind::Video),
            error: "denied".into(),
        };
        m.handle(Input::Refused);
        assert_eq!(m.handle(failed), []);
    }

    #[test]
    fn a_failed_start_releases_what_it_opened_and_says_why() {
        let mut m = visitor();
        m.handle(Input::Start(CallKind::Video));
        let failed = Input::OpenFailed {
            generation: m.generation,
            then: Then::Start(CallKind::Video),
            error: "No camera".into(),
        };
        assert_eq!(
            m.handle(failed),
            [Command::Teardown, Command::Notice("No camera".into())]
        );
        assert!(!m.busy());
    }

    #[test]
    fn an_unanswered_call_tells_the_caller_and_ends() {
        let mut m = visitor();
        let ringing = call(CallPhase::Ringing, Author::Visitor, true, CallKind::Voice);
        m.handle(relay(Some(ringing)));
        assert_eq!(
            m.handle(relay(None)),
            [Command::Notice("No answer.".into()), Command::Teardown]
        );
        // The callee whose ringing stops is told nothing.
        let ringing = call(CallPhase::Ringing, Author::Agent, false, CallKind::Voice);
        m.handle(relay(Some(ringing)));
        assert_eq!(m.handle(relay(None)), [Command::Teardown]);
    }

    #[test]
    fn a_screen_share_from_chat_is_watched_without_asking() {
        let mut m = visitor();
        let share = call(CallPhase::Ringing, Author::Agent, false, CallKind::Screen);
        assert_eq!(
            m.handle(relay(Some(share))),
            [Command::Send(CallAction::Accept)]
        );
        let voice = call(CallPhase::Ringing, Author::Agent, false, CallKind::Voice);
        assert_eq!(m.handle(relay(Some(voice))), []);
    }

    #[test]
    fn hang_up_is_sent_only_by_a_party() {
        let mut m = visitor();
        let active = call(CallPhase::Active, Author::Visitor, true, CallKind::Voice);
        m.handle(relay(Some(active)));
        assert_eq!(
            m.handle(Input::HangUp),
            [Command::Send(CallAction::HangUp), Command::Teardown]
        );
        // Another tab of the same agent sees the call but is no end of it.
        let mut other = CallMachine::new(Author::Agent);
        let watched = call(CallPhase::Active, Author::Agent, false, CallKind::Voice);
        assert_eq!(other.handle(relay(Some(watched))), [Command::Teardown]);
        assert_eq!(other.handle(Input::HangUp), [Command::Teardown]);
    }

    #[test]
    fn a_refusal_cancels_only_a_call_that_did_not_start() {
        let mut m = visitor();
        m.handle(Input::Start(CallKind::Voice));
        assert_eq!(m.handle(Input::Refused), [Command::Teardown]);
        let active = call(CallPhase::Active, Author::Visitor, true, CallKind::Voice);
        m.handle(relay(Some(active)));
        assert_eq!(m.handle(Input::Refused), []);
    }

    #[test]
    fn a_call_action_refused_as_too_fast_is_sent_again_unless_the_call_ended() {
        let mut m = visitor();
        m.handle(Input::Start(CallKind::Voice));
        m.handle(opened(&m, Then::Start(CallKind::Voice)));
        let start = CallAction::Start {
            kind: CallKind::Voice,
        };
        let later = m.handle(Input::TooFast);
        assert_eq!(
            later,
            [Command::SendLater {
                action: start,
                generation: m.generation
            }]
        );
        let due = Input::Due {
            action: start,
            generation: m.generation,
        };
        assert_eq!(m.handle(due.clone()), [Command::Send(start)]);
        assert!(m.busy(), "the call is still being set up");
        // Answered: a later "too fast" (a read mark, a signal) sends nothing again.
        let ringing = call(CallPhase::Ringing, Author::Visitor, true, CallKind::Voice);
        m.handle(relay(Some(ringing)));
        assert_eq!(m.handle(Input::TooFast), []);
        // Refused again and hung up meanwhile: nothing goes out.
        m.handle(Input::Start(CallKind::Voice));
        m.handle(opened(&m, Then::Start(CallKind::Voice)));
        m.handle(Input::TooFast);
        m.handle(Input::HangUp);
        assert_eq!(m.handle(due), []);
    }

    #[test]
    fn declining_and_hanging_up_refused_as_too_fast_are_sent_again() {
        // The agent is rung, declines, and the relay says "too fast": it goes again.
        let mut m = visitor();
        let ringing = call(CallPhase::Ringing, Author::Agent, false, CallKind::Voice);
        m.handle(relay(Some(ringing)));
        assert_eq!(
            m.handle(Input::Decline),
            [Command::Send(CallAction::Decline)]
        );
        let later = m.handle(Input::TooFast);
        assert_eq!(
            later,
            [Command::SendLater {
                action: CallAction::Decline,
                generation: m.generation
            }]
        );
        let due = Input::Due {
            action: CallAction::Decline,
            generation: m.generation,
        };
        assert_eq!(m.handle(due), [Command::Send(CallAction::Decline)]);
        // In a call, hanging up tears it down here at once; refused, the relay still hears it.
        let active = call(CallPhase::Active, Author::Agent, true, CallKind::Voice);
        m.handle(relay(Some(active)));
        let before = m.generation;
        let out = m.handle(Input::HangUp);
        assert!(out.contains(&Command::Send(CallAction::HangUp)));
        assert_ne!(m.generation, before, "torn down");
        let later = m.handle(Input::TooFast);
        let [Command::SendLater { action, generation }] = later[..] else {
            panic!("{later:?}")
        };
        assert_eq!(action, CallAction::HangUp);
        assert_eq!(
            m.handle(Input::Due { action, generation }),
            [Command::Send(CallAction::HangUp)]
        );
    }

    #[test]
    fn a_new_connection_resumes_only_an_active_call_still_held() {
        let mut m = visitor();
        assert_eq!(m.handle(Input::Reconnected { holding: true }), []);
        let active = call(CallPhase::Active, Author::Visitor, true, CallKind::Voice);
        m.handle(relay(Some(active)));
        assert_eq!(m.handle(Input::Reconnected { holding: false }), []);
        assert_eq!(
            m.handle(Input::Reconnected { holding: true }),
            [Command::Send(CallAction::Resume)]
        );
    }

    #[test]
    fn a_call_elsewhere_is_taken_up_only_with_none_under_way() {
        let mut m = CallMachine::new(Author::Agent);
        m.handle(Input::Focus(Some("open".into())));
        let ringing = call(CallPhase::Ringing, Author::Visitor, false, CallKind::Voice);
        m.handle(relay(Some(ringing.clone())));
        assert_eq!(m.conversation(), Some(&"c".into()));
        // While it rings, another visitor's call and the agent's clicks elsewhere change nothing.
        m.handle(Input::Focus(Some("open".into())));
        let other = Input::Relay {
            conversation: "d".into(),
            call: Some(ringing),
        };
        assert_eq!(m.handle(other), []);
        assert_eq!(m.conversation(), Some(&"c".into()));
        // Once it is over, the buttons follow the open conversation again.
        m.handle(relay(None));
        m.handle(Input::Focus(Some("open".into())));
        assert_eq!(m.conversation(), Some(&"open".into()));
    }
}
