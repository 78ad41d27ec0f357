//! MDN's "perfect negotiation" as a pure state machine: it takes what happened (inputs) and
//! says what to do (actions); `rtc::peer` performs the actions on a real `RTCPeerConnection`
//! and feeds the results back, one input at a time. Both sides can add tracks whenever they
//! like: when their offers collide, the polite side rolls back and answers, the impolite side
//! ignores the other's offer, and they converge.

use serde::{Deserialize, Serialize};

/// Offer or answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
}

/// An ICE candidate as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The `candidate:` line.
    pub candidate: String,
    /// The media section id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The media section index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
}

/// What goes through the relay (JSON in `ClientMsg::Signal`'s payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// A session description.
    Description {
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate(Candidate),
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The connection wants (re)negotiation: a track was added or removed.
    NegotiationNeeded,
    /// Our offer or answer is set as the local description.
    LocalDescription {
        /// Which.
        kind: SdpKind,
        /// Its SDP.
        sdp: String,
    },
    /// Creating or setting our offer failed.
    OfferFailed,
    /// The browser found a local candidate.
    LocalCandidate(Candidate),
    /// Signaling from the other side; `stable` is whether our signaling state is "stable" now.
    Remote {
        /// The message.
        signal: Signal,
        /// `pc.signalingState == "stable"` when it is handled.
        stable: bool,
    },
    /// The remote description of this kind is set.
    RemoteApplied(SdpKind),
    /// Setting the remote description failed.
    RemoteFailed,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create an offer and set it as the local description.
    MakeOffer,
    /// Roll our pending offer back (polite side, on collision).
    Rollback,
    /// Set the remote description.
    SetRemote {
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP.
        sdp: String,
    },
    /// Create an answer and set it as the local description.
    MakeAnswer,
    /// Add a remote candidate.
    AddCandidate(Candidate),
    /// Send this to the other side.
    Send(Signal),
}

/// The perfect-negotiation flags and the queue of early candidates.
#[derive(Clone, Debug)]
pub struct Negotiator {
    polite: bool,
    making_offer: bool,
    ignore_offer: bool,
    /// A remote description is being applied: candidates wait for it.
    applying_remote: bool,
    /// A remote description has been set at least once.
    has_remote: bool,
    /// Candidates that came before the description they belong to.
    early: Vec<Candidate>,
}

impl Negotiator {
    /// A negotiator for one connection; exactly one side of a call is polite.
    pub fn new(polite: bool) -> Self {
        Self {
            polite,
            making_offer: false,
            ignore_offer: false,
            applying_remote: false,
            has_remote: false,
            early: Vec::new(),
        }
    }

    /// Takes one input and returns the actions to perform, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::NegotiationNeeded if self.making_offer => vec![],
            Input::NegotiationNeeded => {
                self.making_offer = true;
                vec![Action::MakeOffer]
            }
            Input::LocalDescription { kind, sdp } => {
                if kind == SdpKind::Offer {
                    self.making_offer = false;
                }
                vec![Action::Send(Signal::Description { kind, sdp })]
            }
            Input::OfferFailed => {
                self.making_offer = false;
                vec![]
            }
            Input::LocalCandidate(c) => vec![Action::Send(Signal::Candidate(c))],
            Input::Remote {
                signal: Signal::Description { kind, sdp },
                stable,
            } => {
                let collision = kind == SdpKind::Offer && (self.making_offer || !stable);
                self.ignore_offer = !self.polite && collision;
                if self.ignore_offer {
                    return vec![];
                }
                self.applying_remote = true;
                let mut actions = Vec::with_capacity(2);
                if collision {
                    self.making_offer = false;
                    actions.push(Action::Rollback);
                }
                actions.push(Action::SetRemote { kind, sdp });
                actions
            }
            Input::Remote {
                signal: Signal::Candidate(c),
                ..
            } => {
                if self.ignore_offer {
                    // It belongs to the offer we ignored.
                    vec![]
                } else if self.applying_remote || !self.has_remote {
                    self.early.push(c);
                    vec![]
                } else {
                    vec![Action::AddCandidate(c)]
                }
            }
            Input::RemoteApplied(kind) => {
                self.applying_remote = false;
                self.has_remote = true;
                let mut actions: Vec<Action> =
                    self.early.drain(..).map(Action::AddCandidate).collect();
                if kind == SdpKind::Offer {
                    actions.push(Action::MakeAnswer);
                }
                actions
            }
            Input::RemoteFailed => {
                self.applying_remote = false;
                self.early.clear();
                vec![]
            }
        }
    }

    /// Candidates waiting for their description (for tests and diagnostics).
    pub fn waiting_candidates(&self) -> usize {
        self.early.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for RTCPeerConnection's signaling state machine: enough to run two
    /// negotiators against each other, with a wire between them that we can hold.
    #[derive(Debug, Default)]
    struct FakePc {
        /// "stable", "have-local-offer" or "have-remote-offer".
        state: &'static str,
        local_offers: u32,
        remote_set: Vec<SdpKind>,
        candidates: Vec<String>,
        rolled_back: u32,
    }

    struct Side {
        neg: Negotiator,
        pc: FakePc,
        /// What this side sent and the other has not handled yet.
        outbox: Vec<Signal>,
        name: &'static str,
    }

    impl Side {
        fn new(polite: bool, name: &'static str) -> Self {
            Side {
                neg: Negotiator::new(polite),
                pc: FakePc {
                    state: "stable",
                    ..Default::default()
                },
                outbox: vec![],
                name,
            }
        }

        /// Handles an input and performs the actions, as `rtc::peer` does.
        fn input(&mut self, input: Input) {
            let mut work = vec![input];
            while let Some(input) = work.pop() {
                for action in self.neg.handle(input) {
                    if let Some(next) = self.perform(action) {
                        work.push(next);
                    }
                }
            }
        }

        fn perform(&mut self, action: Action) -> Option<Input> {
            match action {
                Action::MakeOffer => {
                    assert_eq!(
                        self.pc.state, "stable",
                        "{} offered outside stable",
                        self.name
                    );
                    self.pc.state = "have-local-offer";
                    self.pc.local_offers += 1;
                    Some(Input::LocalDescription {
                        kind: SdpKind::Offer,
                        sdp: format!("offer {} #{}", self.name, self.pc.local_offers),
                    })
                }
                Action::Rollback => {
                    assert_eq!(self.pc.state, "have-local-offer");
                    self.pc.state = "stable";
                    self.pc.rolled_back += 1;
                    None
                }
                Action::SetRemote { kind, .. } => {
                    match (kind, self.pc.state) {
                        (SdpKind::Offer, "stable") => self.pc.state = "have-remote-offer",
                        (SdpKind::Answer, "have-local-offer") => self.pc.state = "stable",
                        (k, s) => panic!("{}: remote {k:?} in state {s}", self.name),
                    }
                    self.pc.remote_set.push(kind);
                    Some(Input::RemoteApplied(kind))
                }
                Action::MakeAnswer => {
                    assert_eq!(self.pc.state, "have-remote-offer");
                    self.pc.state = "stable";
                    Some(Input::LocalDescription {
                        kind: SdpKind::Answer,
                        sdp: format!("answer {}", self.name),
                    })
                }
                Action::AddCandidate(c) => {
                    assert!(
                        !self.pc.remote_set.is_empty(),
                        "candidate before any description"
                    );
                    self.pc.candidates.push(c.candidate);
                    None
                }
                Action::Send(s) => {
                    self.outbox.push(s);
                    None
                }
            }
        }

        /// Handles everything `from` sent.
        fn receive_all(&mut self, from: &mut Side) {
            for signal in std::mem::take(&mut from.outbox) {
                let stable = self.pc.state == "stable";
                self.input(Input::Remote { signal, stable });
            }
        }
    }

    /// Delivers back and forth until nothing is in flight.
    fn settle(a: &mut Side, b: &mut Side) {
        for _ in 0..10 {
            if a.outbox.is_empty() && b.outbox.is_empty() {
                return;
            }
            b.receive_all(a);
            a.receive_all(b);
        }
        panic!("did not settle");
    }

    fn candidate(s: &str) -> Candidate {
        Candidate {
            candidate: s.into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        }
    }

    #[test]
    fn one_side_offers_the_other_answers() {
        let (mut visitor, mut agent) = (Side::new(true, "visitor"), Side::new(false, "agent"));
        agent.input(Input::NegotiationNeeded);
        assert!(matches!(
            agent.outbox[0],
            Signal::Description {
                kind: SdpKind::Offer,
                ..
            }
        ));
        settle(&mut agent, &mut visitor);
        assert_eq!((agent.pc.state, visitor.pc.state), ("stable", "stable"));
        assert_eq!(agent.pc.remote_set, [SdpKind::Answer]);
    }

    #[test]
    fn glare_converges_with_the_polite_side_rolling_back() {
        let (mut polite, mut impolite) = (Side::new(true, "polite"), Side::new(false, "impolite"));
        // Both press "video" at once: both offer before seeing the other's offer.
        polite.input(Input::NegotiationNeeded);
        impolite.input(Input::NegotiationNeeded);
        assert_eq!(
            (polite.pc.state, impolite.pc.state),
            ("have-local-offer", "have-local-offer")
        );
        impolite.receive_all(&mut polite); // ignored: impolite keeps its offer
        assert_eq!(impolite.pc.state, "have-local-offer");
        assert!(impolite.pc.remote_set.is_empty());
        polite.receive_all(&mut impolite); // polite rolls back and answers
        assert_eq!(polite.pc.rolled_back, 1);
        settle(&mut polite, &mut impolite);
        assert_eq!((polite.pc.state, impolite.pc.state), ("stable", "stable"));
        // The polite side's track still needs its own negotiation, which now goes through.
        polite.input(Input::NegotiationNeeded);
        settle(&mut polite, &mut impolite);
        assert_eq!((polite.pc.state, impolite.pc.state), ("stable", "stable"));
        assert_eq!(impolite.pc.remote_set, [SdpKind::Answer, SdpKind::Offer]);
    }

    #[test]
    fn candidates_before_the_description_wait_for_it() {
        let mut side = Side::new(true, "visitor");
        for c in ["c1", "c2"] {
            side.input(Input::Remote {
                signal: Signal::Candidate(candidate(c)),
                stable: true,
            });
        }
        assert_eq!(side.neg.waiting_candidates(), 2);
        assert!(side.pc.candidates.is_empty());
        side.input(Input::Remote {
            signal: Signal::Description {
                kind: SdpKind::Offer,
                sdp: "offer".into(),
            },
            stable: true,
        });
        assert_eq!(side.pc.candidates, ["c1", "c2"]);
        assert_eq!(side.neg.waiting_candidates(), 0);
        // Later candidates go straight in; the answer went out.
        side.input(Input::Remote {
            signal: Signal::Candidate(candidate("c3")),
            stable: true,
        });
        assert_eq!(side.pc.candidates, ["c1", "c2", "c3"]);
        assert!(matches!(
            side.outbox[0],
            Signal::Description {
                kind: SdpKind::Answer,
                ..
            }
        ));
    }

    #[test]
    fn candidates_of_an_ignored_offer_are_dropped() {
        let mut impolite = Side::new(false, "agent");
        impolite.input(Input::NegotiationNeeded);
        impolite.input(Input::Remote {
            signal: Signal::Description {
                kind: SdpKind::Offer,
                sdp: "theirs".into(),
            },
            stable: false,
        });
        impolite.input(Input::Remote {
            signal: Signal::Candidate(candidate("theirs")),
            stable: false,
        });
        assert_eq!(impolite.neg.waiting_candidates(), 0);
        assert!(impolite.pc.candidates.is_empty());
    }

    #[test]
    fn every_added_track_renegotiates_on_the_same_connection() {
        let (mut visitor, mut agent) = (Side::new(true, "visitor"), Side::new(false, "agent"));
        // voice (agent), video (visitor), screen (agent), camera off (visitor)...
        for (i, who) in ["agent", "visitor", "agent", "visitor", "visitor"]
            .iter()
            .enumerate()
        {
            if *who == "agent" {
                agent.input(Input::NegotiationNeeded);
            } else {
                visitor.input(Input::NegotiationNeeded);
            }
            settle(&mut agent, &mut visitor);
            assert_eq!(
                (agent.pc.state, visitor.pc.state),
                ("stable", "stable"),
                "round {i}"
            );
        }
        assert_eq!(agent.pc.local_offers + visitor.pc.local_offers, 5);
    }

    #[test]
    fn a_second_negotiation_while_offering_is_folded_in() {
        let mut side = Side::new(false, "agent");
        assert_eq!(
            side.neg.handle(Input::NegotiationNeeded),
            vec![Action::MakeOffer]
        );
        assert_eq!(side.neg.handle(Input::NegotiationNeeded), vec![]);
        side.neg.handle(Input::OfferFailed);
        assert_eq!(
            side.neg.handle(Input::NegotiationNeeded),
            vec![Action::MakeOffer]
        );
    }

    #[test]
    fn signals_are_tagged_json() {
        let s = Signal::Candidate(candidate("x"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""signal":"candidate""#), "{json}");
        assert_eq!(serde_json::from_str::<Signal>(&json).unwrap(), s);
        let d = Signal::Description {
            kind: SdpKind::Offer,
            sdp: "v=0".into(),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"signal":"description","kind":"offer","sdp":"v=0"}"#
        );
    }
}
