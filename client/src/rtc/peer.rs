//! One `RTCPeerConnection` per call, driven by the [`Negotiator`]: browser events and signals
//! from the relay become inputs, handled strictly one at a time; the machine's actions are
//! performed here. Remote tracks are gathered in one `MediaStream` for the `<video>`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use escalera_protocol::IceServer;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStream, MediaStreamTrack, RtcConfiguration, RtcIceCandidateInit, RtcIceServer,
    RtcIceTransportPolicy, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcRtpSender,
    RtcRtpTransceiver, RtcRtpTransceiverDirection, RtcSdpType, RtcSessionDescriptionInit,
    RtcSignalingState, RtcTrackEvent,
};

use super::negotiation::{Action, Candidate, Input, Negotiator, SdpKind, Signal};

/// The connection's state as the page shows it (on the call's status line, as `data-*`
/// attributes): for people diagnosing a call, and for tests that prove what happened.
#[derive(Clone, Copy)]
pub struct Diagnostics {
    /// `iceConnectionState`.
    pub ice: RwSignal<String>,
    /// `signalingState`.
    pub signaling: RwSignal<String>,
    /// `iceGatheringState`.
    pub gathering: RwSignal<String>,
    /// How many times our offer collided with the other side's and was rolled back.
    pub rollbacks: RwSignal<u32>,
    /// How many ICE restarts this side asked for after the connection failed.
    pub ice_restarts: RwSignal<u32>,
    /// Media sections (`m=` lines) in our latest local description.
    pub m_lines: RwSignal<u32>,
    /// Candidates: ours sent, the other side's added, the other side's the browser refused.
    pub candidates: RwSignal<(u32, u32, u32)>,
    /// Remote descriptions the browser refused.
    pub remote_refused: RwSignal<u32>,
}

impl Diagnostics {
    /// A fresh connection's.
    pub fn new() -> Self {
        Self {
            ice: RwSignal::new("new".into()),
            signaling: RwSignal::new("stable".into()),
            gathering: RwSignal::new("new".into()),
            rollbacks: RwSignal::new(0),
            ice_restarts: RwSignal::new(0),
            m_lines: RwSignal::new(0),
            candidates: RwSignal::new((0, 0, 0)),
            remote_refused: RwSignal::new(0),
        }
    }
}

impl Default for Diagnostics {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Peer::send_video`] did.
pub enum Sent {
    /// Video goes through this new transceiver.
    Added(RtcRtpTransceiver),
    /// The track replaces the one sent so far, once this settles.
    Replacing(js_sys::Promise),
    /// Nothing (the connection is closed).
    Nothing,
}

/// The connection and everything it needs to stay alive.
pub struct Peer {
    pc: RtcPeerConnection,
    neg: RefCell<Negotiator>,
    queue: RefCell<VecDeque<Input>>,
    busy: Cell<bool>,
    closed: Cell<bool>,
    send: Box<dyn Fn(String)>,
    /// The other side's stream: every remote track, kept up to date by the browser (each side
    /// sends all its tracks in one stream).
    remote: RefCell<Option<MediaStream>>,
    remote_changed: RwSignal<u32>,
    diag: Diagnostics,
    handlers: RefCell<Vec<Handler>>,
    /// Looks in a row at a settled but unconnected ICE (see [`Peer::watch`]).
    stuck: Cell<u32>,
    /// What runs once the first remote offer is applied (or its wait is over).
    first_offer: RefCell<Option<Waiting>>,
    watchdog: RefCell<Option<gloo_timers::callback::Interval>>,
}

/// Something waiting for the first remote offer, and the timer that stops the wait.
type Waiting = (Box<dyn FnOnce()>, gloo_timers::callback::Timeout);

/// How often the watchdog looks at the connection, in ms.
const WATCH_MS: u32 = 3_000;

/// Looks in a row at a stuck connection before ICE is restarted.
const STUCK_LOOKS: u32 = 3;

/// A browser event handler kept alive as long as the connection.
type Handler = Closure<dyn FnMut(JsValue)>;

/// What a handler does with the connection and the event.
type OnEvent = Box<dyn Fn(&Rc<Peer>, JsValue)>;

fn ice_servers(servers: &[IceServer]) -> js_sys::Array {
    servers
        .iter()
        .map(|s| {
            let server = RtcIceServer::new();
            let urls: js_sys::Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
            server.set_urls(&urls);
            if let Some(u) = &s.username {
                server.set_username(u);
            }
            if let Some(c) = &s.credential {
                server.set_credential(c);
            }
            JsValue::from(server)
        })
        .collect()
}

/// A state property of the connection as the browser spells it ("connected", "have-local-offer").
fn js_state(pc: &RtcPeerConnection, property: &str) -> String {
    js_sys::Reflect::get(pc, &JsValue::from_str(property))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

/// Test hook: `?ice=relay` on the page forces TURN (`iceTransportPolicy: "relay"`).
fn relay_only() -> bool {
    crate::browser::query_param("ice").as_deref() == Some("relay")
}

/// Test hook: `?streams=none` sends every track without a stream (`a=msid:-`), as some
/// foreign peers do, so the other side's handling of such tracks is tested.
fn streamless() -> bool {
    crate::browser::query_param("streams").as_deref() == Some("none")
}

impl Peer {
    /// A new connection; `send` carries signals (JSON) to the other side through the relay.
    /// `remote_changed` is bumped when remote tracks come or go;
    /// the connection's states and counts go to `diag`.
    pub fn new(
        servers: &[IceServer],
        polite: bool,
        send: impl Fn(String) + 'static,
        remote_changed: RwSignal<u32>,
        diag: Diagnostics,
    ) -> Result<Rc<Peer>, JsValue> {
        let config = RtcConfiguration::new();
        config.set_ice_servers(&ice_servers(servers));
        if relay_only() {
            config.set_ice_transport_policy(RtcIceTransportPolicy::Relay);
        }
        let pc = RtcPeerConnection::new_with_configuration(&config)?;
        // The counts are this connection's.
        diag.rollbacks.set(0);
        diag.ice_restarts.set(0);
        diag.m_lines.set(0);
        diag.candidates.set((0, 0, 0));
        diag.remote_refused.set(0);
        let peer = Rc::new_cyclic(|weak: &std::rc::Weak<Peer>| {
            let on = |f: OnEvent| {
                let weak = weak.clone();
                Handler::new(move |e: JsValue| {
                    if let Some(peer) = weak.upgrade() {
                        f(&peer, e);
                    }
                })
            };
            let handlers = vec![
                on(Box::new(|p, _| p.push(Input::NegotiationNeeded))),
                on(Box::new(|p, e| {
                    let e: RtcPeerConnectionIceEvent = e.unchecked_into();
                    if let Some(c) = e.candidate() {
                        p.push(Input::LocalCandidate(Candidate {
                            candidate: c.candidate(),
                            sdp_mid: c.sdp_mid(),
                            sdp_m_line_index: c.sdp_m_line_index(),
                        }));
                    }
                })),
                on(Box::new(|p, e| {
                    let e: RtcTrackEvent = e.unchecked_into();
                    match e.streams().get(0).dyn_into::<MediaStream>() {
                        Ok(stream) => p.adopt_remote(stream),
                        Err(_) => p.adopt_track(e.track()),
                    }
                    p.remote_changed.update(|n| *n += 1);
                })),
                on(Box::new(|p, _| p.ice_changed())),
                on(Box::new(|p, _| {
                    p.diag.signaling.set(js_state(&p.pc, "signalingState"))
                })),
                on(Box::new(|p, _| {
                    p.diag.gathering.set(js_state(&p.pc, "iceGatheringState"))
                })),
            ];
            pc.set_onnegotiationneeded(Some(handlers[0].as_ref().unchecked_ref()));
            pc.set_onicecandidate(Some(handlers[1].as_ref().unchecked_ref()));
            pc.set_ontrack(Some(handlers[2].as_ref().unchecked_ref()));
            pc.set_oniceconnectionstatechange(Some(handlers[3].as_ref().unchecked_ref()));
            pc.set_onsignalingstatechange(Some(handlers[4].as_ref().unchecked_ref()));
            pc.set_onicegatheringstatechange(Some(handlers[5].as_ref().unchecked_ref()));
            Peer {
                pc: pc.clone(),
                neg: RefCell::new(Negotiator::new(polite)),
                queue: RefCell::new(VecDeque::new()),
                busy: Cell::new(false),
                closed: Cell::new(false),
                send: Box::new(send),
                remote: RefCell::new(None),
                remote_changed,
                diag,
                handlers: RefCell::new(handlers),
                stuck: Cell::new(0),
                first_offer: RefCell::new(None),
                watchdog: RefCell::new(None),
            }
        });
        let weak = Rc::downgrade(&peer);
        let watchdog = gloo_timers::callback::Interval::new(WATCH_MS, move || {
            if let Some(peer) = weak.upgrade() {
                peer.watch();
            }
        });
        *peer.watchdog.borrow_mut() = Some(watchdog);
        Ok(peer)
    }

    /// The other side's stream, once a track arrived.
    pub fn remote(&self) -> Option<MediaStream> {
        self.remote.borrow().clone()
    }

    fn adopt_remote(&self, stream: MediaStream) {
        if self
            .remote
            .borrow()
            .as_ref()
            .is_some_and(|s| s.id() == stream.id())
        {
            return;
        }
        let changed = self.remote_changed;
        let bump = Closure::<dyn FnMut(JsValue)>::new(move |_| changed.update(|n| *n += 1));
        for event in ["addtrack", "removetrack"] {
            let _ = stream.add_event_listener_with_callback(event, bump.as_ref().unchecked_ref());
        }
        self.handlers.borrow_mut().push(bump);
        *self.remote.borrow_mut() = Some(stream);
    }

    /// A track that came with no stream (`a=msid:-`): it joins the stream we show, made here
    /// if the other side never sent one. With no stream to say it went, its `mute` (the
    /// other side stopped sending it) takes it out and `unmute` puts it back.
    fn adopt_track(&self, track: MediaStreamTrack) {
        let stream = Clone::clone(
            self.remote
                .borrow_mut()
                .get_or_insert_with(|| MediaStream::new().expect("MediaStream")),
        );
        stream.add_track(&track);
        let changed = self.remote_changed;
        let follow = {
            let (stream, track) = (Clone::clone(&stream), Clone::clone(&track));
            Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
                let kind = js_sys::Reflect::get(&e, &"type".into())
                    .ok()
                    .and_then(|t| t.as_string());
                if kind.as_deref() == Some("unmute") {
                    stream.add_track(&track);
                } else {
                    stream.remove_track(&track);
                }
                changed.update(|n| *n += 1);
            })
        };
        for event in ["mute", "unmute", "ended"] {
            let _ = track.add_event_listener_with_callback(event, follow.as_ref().unchecked_ref());
        }
        self.handlers.borrow_mut().push(follow);
    }

    /// The ICE connection changed. When it failed (the network under it changed), this side
    /// asks for an ICE restart: new credentials and candidates in a new offer, on the same
    /// connection, so both ends keep their tracks.
    fn ice_changed(&self) {
        let state = js_state(&self.pc, "iceConnectionState");
        if state == "failed" {
            self.restart_ice();
        }
        self.diag.ice.set(state);
    }

    /// New ICE credentials and candidates in a new offer, on the same connection.
    fn restart_ice(&self) {
        if self.closed.get() {
            return;
        }
        let restart = js_sys::Reflect::get(&self.pc, &"restartIce".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(restart) = restart {
            if restart.call0(&self.pc).is_ok() {
                self.diag.ice_restarts.update(|n| *n += 1);
            }
        }
    }

    /// Looked at every [`WATCH_MS`]: a connection whose negotiation is over (signaling
    /// stable, nothing queued) but whose ICE is still not connected after
    /// [`STUCK_LOOKS`] looks in a row restarts ICE. A lost signal (a candidate dropped while a
    /// socket was down, an offer refused in a race on a slow machine) then costs seconds, not
    /// the call.
    fn watch(&self) {
        let ice = js_state(&self.pc, "iceConnectionState");
        let settled = self.pc.signaling_state() == RtcSignalingState::Stable
            && !self.busy.get()
            && self.queue.borrow().is_empty();
        let stuck = settled && matches!(ice.as_str(), "new" | "checking" | "disconnected");
        let looks = if stuck { self.stuck.get() + 1 } else { 0 };
        if looks >= STUCK_LOOKS {
            leptos::logging::warn!("ICE still {ice} with negotiation over: restarting ICE");
            self.restart_ice();
            self.stuck.set(0);
        } else {
            self.stuck.set(looks);
        }
    }

    /// Runs `then` once the other side's first offer is applied here, or after `wait_ms` if
    /// none comes (the other side may have nothing to send).
    pub fn after_first_offer(self: &Rc<Self>, then: Box<dyn FnOnce()>, wait_ms: u32) {
        let weak = Rc::downgrade(self);
        let timer = gloo_timers::callback::Timeout::new(wait_ms, move || {
            if let Some(peer) = weak.upgrade() {
                peer.first_offer_in();
            }
        });
        *self.first_offer.borrow_mut() = Some((then, timer));
    }

    /// The first remote offer is in (or its wait is over): what waited for it runs.
    fn first_offer_in(&self) {
        let waiting = self.first_offer.borrow_mut().take();
        if let Some((then, timer)) = waiting {
            timer.cancel();
            if !self.closed.get() {
                then();
            }
        }
    }

    /// A signal from the other side (the payload of `ServerMsg::Signal`).
    pub fn on_signal(self: &Rc<Self>, payload: &str) {
        match serde_json::from_str::<Signal>(payload) {
            // `stable` is read when the input is handled, not now.
            Ok(signal) => self.push(Input::Remote {
                signal,
                stable: true,
            }),
            Err(e) => leptos::logging::warn!("unreadable signal: {e}"),
        }
    }

    /// Sends a local track (renegotiates).
    pub fn add_track(&self, track: &MediaStreamTrack, stream: &MediaStream) -> RtcRtpSender {
        if streamless() {
            let init = web_sys::RtcRtpTransceiverInit::new();
            init.set_direction(RtcRtpTransceiverDirection::Sendrecv);
            return self
                .pc
                .add_transceiver_with_media_stream_track_and_init(track, &init)
                .sender();
        }
        self.pc.add_track_0(track, stream)
    }

    /// Sends video (camera or screen) through `current`, the transceiver used for video so far,
    /// or a new one, which is returned. Reusing it means turning video on and off any number of
    /// times never grows the session description.
    pub fn send_video(
        &self,
        current: Option<&RtcRtpTransceiver>,
        track: &MediaStreamTrack,
        stream: &MediaStream,
    ) -> Sent {
        if self.closed.get() {
            return Sent::Nothing;
        }
        match current {
            Some(t) => {
                // replaceTrack needs no renegotiation; a direction change does.
                let done = t.sender().replace_track(Some(track));
                if t.direction() != RtcRtpTransceiverDirection::Sendrecv {
                    t.set_direction(RtcRtpTransceiverDirection::Sendrecv);
                }
                Sent::Replacing(done)
            }
            None => {
                let sender = self.add_track(track, stream);
                self.pc
                    .get_transceivers()
                    .iter()
                    .filter_map(|t| t.dyn_into::<RtcRtpTransceiver>().ok())
                    .find(|t| t.sender() == sender)
                    .map_or(Sent::Nothing, Sent::Added)
            }
        }
    }

    /// Stops sending video; the other side's track goes away with the renegotiation.
    pub fn stop_video(&self, transceiver: &RtcRtpTransceiver) {
        if self.closed.get() {
            return;
        }
        let _ = transceiver.sender().replace_track(None);
        transceiver.set_direction(RtcRtpTransceiverDirection::Recvonly);
    }

    /// Closes the connection; nothing more is sent.
    pub fn close(&self) {
        self.closed.set(true);
        self.watchdog.borrow_mut().take();
        self.first_offer.borrow_mut().take();
        self.queue.borrow_mut().clear();
        self.pc.set_onnegotiationneeded(None);
        self.pc.set_onicecandidate(None);
        self.pc.set_ontrack(None);
        self.pc.set_oniceconnectionstatechange(None);
        self.pc.set_onsignalingstatechange(None);
        self.pc.set_onicegatheringstatechange(None);
        self.pc.close();
        self.diag.ice.set("closed".to_owned());
    }

    fn push(self: &Rc<Self>, input: Input) {
        if self.closed.get() {
            return;
        }
        self.queue.borrow_mut().push_back(input);
        if !self.busy.replace(true) {
            let peer = self.clone();
            wasm_bindgen_futures::spawn_local(async move {
                peer.drain().await;
                peer.busy.set(false);
            });
        }
    }

    /// Handles queued inputs one by one; each action's result is handled before the next input.
    async fn drain(&self) {
        loop {
            let Some(input) = self.queue.borrow_mut().pop_front() else {
                return;
            };
            let mut work = vec![self.with_state(input)];
            while let Some(input) = work.pop() {
                let actions = self.neg.borrow_mut().handle(input);
                for action in actions {
                    if self.closed.get() {
                        return;
                    }
                    if let Some(next) = self.perform(action).await {
                        work.push(next);
                    }
                }
            }
        }
    }

    /// Fills in the signaling state at the moment an input is handled.
    fn with_state(&self, input: Input) -> Input {
        match input {
            Input::Remote { signal, .. } => Input::Remote {
                signal,
                stable: self.pc.signaling_state() == RtcSignalingState::Stable,
            },
            other => other,
        }
    }

    async fn perform(&self, action: Action) -> Option<Input> {
        match action {
            Action::MakeOffer => {
                match self.describe(self.pc.create_offer(), SdpKind::Offer).await {
                    Ok(input) => Some(input),
                    Err(e) => {
                        leptos::logging::warn!("offer failed: {e:?}");
                        Some(Input::OfferFailed)
                    }
                }
            }
            Action::MakeAnswer => match self
                .describe(self.pc.create_answer(), SdpKind::Answer)
                .await
            {
                Ok(input) => Some(input),
                Err(e) => {
                    leptos::logging::warn!("answer failed: {e:?}");
                    None
                }
            },
            Action::Rollback => {
                let rollback = RtcSessionDescriptionInit::new(RtcSdpType::Rollback);
                if JsFuture::from(self.pc.set_local_description(&rollback))
                    .await
                    .is_ok()
                {
                    self.diag.rollbacks.update(|n| *n += 1);
                }
                None
            }
            Action::SetRemote { kind, sdp } => {
                let desc = RtcSessionDescriptionInit::new(match kind {
                    SdpKind::Offer => RtcSdpType::Offer,
                    SdpKind::Answer => RtcSdpType::Answer,
                });
                desc.set_sdp(&sdp);
                match JsFuture::from(self.pc.set_remote_description(&desc)).await {
                    Ok(_) => {
                        if kind == SdpKind::Offer {
                            self.first_offer_in();
                        }
                        Some(Input::RemoteApplied(kind))
                    }
                    Err(e) => {
                        leptos::logging::warn!("remote description refused: {e:?}");
                        self.diag.remote_refused.update(|n| *n += 1);
                        Some(Input::RemoteFailed)
                    }
                }
            }
            Action::AddCandidate(c) => {
                let init = RtcIceCandidateInit::new(&c.candidate);
                init.set_sdp_mid(c.sdp_mid.as_deref());
                init.set_sdp_m_line_index(c.sdp_m_line_index);
                let added = self
                    .pc
                    .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
                let ok = JsFuture::from(added).await.is_ok();
                self.diag.candidates.update(
                    |(_, added, refused)| {
                        if ok {
                            *added += 1
                        } else {
                            *refused += 1
                        }
                    },
                );
                None
            }
            Action::Send(signal) => {
                if matches!(signal, super::negotiation::Signal::Candidate(_)) {
                    self.diag.candidates.update(|(sent, ..)| *sent += 1);
                }
                (self.send)(serde_json::to_string(&signal).expect("signals serialise"));
                None
            }
        }
    }

    /// Creates an offer or answer (`made`), sets it locally, and reports it.
    async fn describe(&self, made: js_sys::Promise, kind: SdpKind) -> Result<Input, JsValue> {
        let desc: RtcSessionDescriptionInit = JsFuture::from(made).await?.unchecked_into();
        JsFuture::from(self.pc.set_local_description(&desc)).await?;
        let sdp = self
            .pc
            .local_description()
            .map(|d| d.sdp())
            .ok_or_else(|| JsValue::from_str("no local description"))?;
        let sections = sdp.lines().filter(|l| l.starts_with("m=")).count();
        self.diag.m_lines.set(sections as u32);
        Ok(Input::LocalDescription { kind, sdp })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.pc.close();
    }
}
