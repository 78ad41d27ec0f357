//! The call of one conversation, as one browser lives it: local devices, the peer connection,
//! and the relay's call state. Shared by the widget and the console through [`use_call`]; every
//! device and the connection are released when the call ends, the owner is disposed or the
//! page goes away.

use std::cell::RefCell;
use std::rc::Rc;

use escalera_protocol::{
    Author, CallAction, CallInfo, CallKind, CallPhase, ClientMsg, ConversationId, ErrorCode,
    IceServer, MediaKind, ServerMsg,
};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::{MediaStream, MediaStreamTrack, RtcRtpSender, RtcRtpTransceiver};

use super::engine::{self, Engine, PeerLink};
use super::machine::{CallMachine, Command, Device, Input, Then};
use crate::chat::Uploader;
use crate::i18n::tf;
use crate::link::Link;
use crate::rtc::media;
use crate::rtc::peer::{Diagnostics, Sent};

/// Local tracks and what sends them.
#[derive(Default)]
struct Devices {
    /// All local tracks in one stream: what `local-video` shows and what the other side gets.
    stream: Option<MediaStream>,
    mic: Option<(MediaStreamTrack, Option<RtcRtpSender>)>,
    camera: Option<MediaStreamTrack>,
    back_camera: bool,
    /// Flipping: the camera to leave (another one is opened).
    flip_from: Option<String>,
    screen: Option<MediaStreamTrack>,
    /// The one video transceiver: camera or screen, reused for the whole call.
    video: Option<RtcRtpTransceiver>,
    screen_ended: Option<Closure<dyn FnMut()>>,
}

impl Devices {
    fn stream(&mut self) -> MediaStream {
        // `Clone::clone`, not `.clone()`: web-sys binds JS `MediaStream.clone()`, which makes
        // a new stream (and new tracks), as an inherent method that wins over the trait.
        Clone::clone(
            self.stream
                .get_or_insert_with(|| MediaStream::new().expect("MediaStream")),
        )
    }

    /// Sends `track` as our video (if there is a connection yet; else `connect` will); the
    /// replacement under way, if it replaced a track.
    fn send_video(
        &mut self,
        peer: Option<&dyn PeerLink>,
        track: &MediaStreamTrack,
        stream: &MediaStream,
    ) -> Option<js_sys::Promise> {
        let peer = peer?;
        match peer.send_video(self.video.as_ref(), track, stream) {
            Sent::Added(t) => {
                self.video = Some(t);
                None
            }
            Sent::Replacing(done) => Some(done),
            Sent::Nothing => None,
        }
    }

    /// Stops sending video, keeping the transceiver for the next time.
    fn stop_video(&mut self, peer: Option<&dyn PeerLink>) {
        if let (Some(peer), Some(t)) = (peer, &self.video) {
            peer.stop_video(t);
        }
    }

    /// Stops every track: the browser's recording indicator goes off.
    fn release(&mut self) {
        let tracks = [
            self.mic.take().map(|(t, _)| t),
            self.camera.take(),
            self.screen.take(),
        ];
        for t in tracks.into_iter().flatten() {
            t.stop();
        }
        // The next call starts from a fresh stream.
        if let Some(stream) = self.stream.take() {
            for t in stream.get_tracks().iter() {
                if let Ok(t) = t.dyn_into::<MediaStreamTrack>() {
                    t.stop();
                }
            }
        }
        self.video = None;
        self.screen_ended = None;
    }
}

struct Inner {
    machine: RefCell<CallMachine>,
    peer: RefCell<Option<Rc<dyn PeerLink>>>,
    devices: RefCell<Devices>,
    ice: RefCell<Vec<IceServer>>,
    /// Signals that came before our peer connection existed.
    early: RefCell<Vec<String>>,
    /// A call action waiting to be sent again (dropped, and so cancelled, with the controller).
    retry: RefCell<Option<gloo_timers::callback::Timeout>>,
    _unload: RefCell<Option<Closure<dyn FnMut()>>>,
}

/// How long the polite end waits for the other's first offer before offering its own tracks.
const FIRST_OFFER_WAIT_MS: u32 = 2_000;

/// The pause before a call action refused as too fast goes again.
const RETRY_MS: u32 = 1_500;

/// A device opened for the machine, waiting for its verdict (keep or discard).
enum Opened {
    Mic(MediaStreamTrack),
    Camera(MediaStreamTrack),
    Screen(MediaStreamTrack),
}

impl Opened {
    fn track(&self) -> &MediaStreamTrack {
        match self {
            Opened::Mic(t) | Opened::Camera(t) | Opened::Screen(t) => t,
        }
    }
}

/// The call controls and state, `Copy` for the views.
#[derive(Clone, Copy)]
pub struct CallCtl {
    /// What the call's site offers (the buttons for the rest are not shown).
    pub features: RwSignal<escalera_protocol::SiteFeatures>,
    /// The conversation the call belongs to (the widget's, or the console's current one).
    pub conversation: RwSignal<Option<ConversationId>>,
    /// The relay's view of the call.
    pub info: RwSignal<Option<CallInfo>>,
    /// We have a microphone track.
    pub mic_on: RwSignal<bool>,
    /// It is muted.
    pub muted: RwSignal<bool>,
    /// Our camera is on.
    pub camera_on: RwSignal<bool>,
    /// We share our screen.
    pub screen_on: RwSignal<bool>,
    /// More than one camera: offer to flip.
    pub can_flip: RwSignal<bool>,
    /// Bumped when local tracks change (for `local-video`).
    pub local_changed: RwSignal<u32>,
    /// Bumped when remote tracks change (for `remote-video`).
    pub remote_changed: RwSignal<u32>,
    /// The connection's state, for diagnostics and tests.
    pub diag: Diagnostics,
    /// Something to tell the person (a device error, no answer...).
    pub notice: RwSignal<Option<String>>,
    /// A start or an answer is under way.
    pub busy: RwSignal<bool>,
    /// The call code (split off the page) is loaded.
    pub engine_ready: RwSignal<bool>,
    me: Author,
    link: Link,
    uploader: Uploader,
    inner: StoredValue<Rc<Inner>, LocalStorage>,
}

/// The call machinery for one widget or console. `me` is the side this browser is; it
/// subscribes to the link's call, signal and error frames.
pub fn use_call(link: Link, me: Author, uploader: Uploader) -> CallCtl {
    let inner = Rc::new(Inner {
        machine: RefCell::new(CallMachine::new(me)),
        peer: RefCell::new(None),
        devices: RefCell::new(Devices::default()),
        ice: RefCell::new(Vec::new()),
        early: RefCell::new(Vec::new()),
        retry: RefCell::new(None),
        _unload: RefCell::new(None),
    });
    let ctl = CallCtl {
        features: RwSignal::new(escalera_protocol::SiteFeatures::default()),
        conversation: RwSignal::new(None),
        info: RwSignal::new(None),
        mic_on: RwSignal::new(false),
        muted: RwSignal::new(false),
        camera_on: RwSignal::new(false),
        screen_on: RwSignal::new(false),
        can_flip: RwSignal::new(false),
        local_changed: RwSignal::new(0),
        remote_changed: RwSignal::new(0),
        diag: Diagnostics::new(),
        notice: RwSignal::new(None),
        busy: RwSignal::new(false),
        engine_ready: RwSignal::new(engine::loaded().is_some()),
        me,
        link,
        uploader,
        inner: StoredValue::new_local(inner.clone()),
    };
    link.subscribe(move |msg| match msg {
        ServerMsg::Call { conversation, call } => ctl.feed(Input::Relay {
            conversation: conversation.clone(),
            call: call.clone(),
        }),
        ServerMsg::Signal {
            conversation,
            payload,
        } => ctl.on_signal(conversation, payload.clone()),
        // An error about a chat message (it names its client id), or about another
        // conversation, is not about the call.
        ServerMsg::Error {
            code,
            client_id: None,
            conversation,
            ..
        } if conversation.is_none() || *conversation == ctl.conversation.get_untracked() => {
            // Too fast is not no: a call step goes again after a pause. (A frame refused
            // before it could be read names no conversation: nothing to do.)
            match (code, conversation) {
                (ErrorCode::RateLimited, Some(_)) => ctl.feed(Input::TooFast),
                (ErrorCode::RateLimited, None) => {}
                _ => ctl.feed(Input::Refused),
            }
        }
        _ => {}
    });
    // Leaving the page hangs up, so the other side is not left waiting.
    let unload = Closure::<dyn FnMut()>::new(move || ctl.hang_up());
    let _ = crate::browser::window()
        .add_event_listener_with_callback("pagehide", unload.as_ref().unchecked_ref());
    *inner._unload.borrow_mut() = Some(unload);
    on_cleanup(move || {
        ctl.inner.with_value(|inner| {
            if let Some(unload) = inner._unload.borrow_mut().take() {
                let _ = crate::browser::window().remove_event_listener_with_callback(
                    "pagehide",
                    unload.as_ref().unchecked_ref(),
                );
            }
        });
        ctl.release();
    });
    ctl
}

impl CallCtl {
    /// ICE servers from the welcome.
    pub fn set_ice_servers(&self, servers: Vec<IceServer>) {
        self.inner.with_value(|i| *i.ice.borrow_mut() = servers);
    }

    /// The conversation the buttons act on, unless a call is under way elsewhere.
    pub fn focus(&self, conversation: Option<ConversationId>) {
        self.feed(Input::Focus(conversation));
    }

    /// The local stream, for `local-video`.
    pub fn local_stream(&self) -> Option<MediaStream> {
        self.local_changed.track();
        self.inner.with_value(|i| i.devices.borrow().stream.clone())
    }

    /// The remote stream, for `remote-video`.
    pub fn remote_stream(&self) -> Option<MediaStream> {
        self.remote_changed.track();
        self.inner
            .with_value(|i| i.peer.borrow().as_ref().and_then(|p| p.remote()))
    }

    /// Whether the other side sends video now.
    pub fn remote_video(&self) -> bool {
        self.remote_stream()
            .is_some_and(|s| s.get_video_tracks().length() > 0)
    }

    /// Whether we are one end of an active call.
    pub fn in_call(&self) -> bool {
        self.info.with(|i| {
            i.as_ref()
                .is_some_and(|c| c.party && c.phase == CallPhase::Active)
        })
    }

    /// Whether the other side is calling us and waits for an answer.
    pub fn incoming(&self) -> Option<CallInfo> {
        self.info.get().filter(|c| {
            c.phase == CallPhase::Ringing && c.caller != self.me && c.kind != CallKind::Screen
        })
    }

    /// Whether we are calling and waiting for the other side.
    pub fn outgoing(&self) -> bool {
        self.info.with(|i| {
            i.as_ref()
                .is_some_and(|c| c.phase == CallPhase::Ringing && c.party)
        })
    }

    /// Whether our socket to the relay is up.
    pub fn online(&self) -> bool {
        self.link.status() == crate::relay::Status::Online
    }

    /// After a reconnect, before joining: if we are an end of the active call (we still hold
    /// its peer connection), tell the relay this socket is that end now.
    pub fn resume(&self) {
        let holding = self.inner.with_value(|i| i.peer.borrow().is_some());
        self.feed(Input::Reconnected { holding });
    }

    /// Feeds the machine and performs what it says.
    fn feed(&self, input: Input) {
        self.run(input, Vec::new());
    }

    /// Same, with the devices an opening brought (kept or stopped as the machine says).
    fn run(&self, input: Input, mut opened: Vec<Opened>) {
        let (commands, conversation, info, busy) = self.inner.with_value(|i| {
            let mut m = i.machine.borrow_mut();
            let commands = m.handle(input);
            (
                commands,
                m.conversation().cloned(),
                m.info().cloned(),
                m.busy(),
            )
        });
        if self.conversation.get_untracked() != conversation {
            self.conversation.set(conversation);
        }
        if self.info.get_untracked() != info {
            // A call rings or is placed: its code is fetched meanwhile.
            if info.is_some() && !self.engine_ready.get_untracked() {
                let ctl = *self;
                leptos::task::spawn_local(async move {
                    let _ = ctl.engine().await;
                });
            }
            self.info.set(info);
        }
        if self.busy.get_untracked() != busy {
            self.busy.set(busy);
        }
        for command in commands {
            match command {
                Command::Open {
                    generation,
                    devices,
                    then,
                } => self.open(generation, devices, then),
                Command::Keep => {
                    for device in opened.drain(..) {
                        self.attach(device);
                    }
                    self.sync_flags();
                }
                Command::Discard => {
                    for device in opened.drain(..) {
                        device.track().stop();
                    }
                }
                Command::Send(action) => {
                    self.send_action(action);
                }
                Command::Connect => self.connect(),
                Command::Teardown => self.release(),
                Command::Notice(text) => self.notice.set(Some(text)),
                Command::SendLater { action, generation } => {
                    let ctl = *self;
                    let timer = gloo_timers::callback::Timeout::new(RETRY_MS, move || {
                        ctl.feed(Input::Due { action, generation });
                    });
                    self.inner
                        .with_value(|i| *i.retry.borrow_mut() = Some(timer));
                }
            }
        }
    }

    /// Opens `devices` one after the other and reports to the machine; on a failure, what was
    /// opened so far is stopped.
    fn open(&self, generation: u32, devices: Vec<Device>, then: Then) {
        let ctl = *self;
        let (back, flip_from) = self.inner.with_value(|i| {
            let mut d = i.devices.borrow_mut();
            (d.back_camera, d.flip_from.take())
        });
        leptos::task::spawn_local(async move {
            let engine = match ctl.engine().await {
                Ok(engine) => engine,
                Err(error) => {
                    return ctl.feed(Input::OpenFailed {
                        generation,
                        then,
                        error,
                    })
                }
            };
            let mut opened = Vec::new();
            for device in devices {
                let track = engine
                    .open(device, back, flip_from.clone())
                    .await
                    .map(match device {
                        Device::Mic => Opened::Mic,
                        Device::Camera => Opened::Camera,
                        Device::Screen => Opened::Screen,
                    });
                match track {
                    Ok(t) => opened.push(t),
                    Err(error) => {
                        for o in &opened {
                            o.track().stop();
                        }
                        ctl.feed(Input::OpenFailed {
                            generation,
                            then,
                            error,
                        });
                        return;
                    }
                }
            }
            ctl.run(Input::Opened { generation, then }, opened);
        });
    }

    /// The call code, fetched first if need be.
    async fn engine(&self) -> Result<Rc<dyn Engine>, String> {
        let engine = engine::engine().await?;
        // (The owner may be gone by the time it came.)
        if self.engine_ready.try_get_untracked() == Some(false) {
            self.engine_ready.try_set(true);
        }
        Ok(engine)
    }

    fn send_action(&self, action: CallAction) -> bool {
        let Some(conversation) = self.conversation.get_untracked() else {
            return false;
        };
        self.link.socket.send(&ClientMsg::Call {
            conversation,
            action,
        })
    }

    fn sync_flags(&self) {
        self.inner.with_value(|i| {
            let d = i.devices.borrow();
            self.mic_on.set(d.mic.is_some());
            self.camera_on.set(d.camera.is_some());
            self.screen_on.set(d.screen.is_some());
        });
        self.local_changed.update(|n| *n += 1);
    }

    /// Signaling from the other end.
    fn on_signal(&self, conversation: &ConversationId, payload: String) {
        if self.conversation.get_untracked().as_ref() != Some(conversation) {
            return;
        }
        self.inner.with_value(|i| match i.peer.borrow().as_ref() {
            Some(peer) => peer.on_signal(&payload),
            None => i.early.borrow_mut().push(payload),
        });
    }

    /// Creates the peer connection for the active call and sends our tracks (once the call
    /// code is here: a side that opened no device may not have it yet).
    fn connect(&self) {
        let Some(engine) = engine::loaded() else {
            let ctl = *self;
            leptos::task::spawn_local(async move {
                match ctl.engine().await {
                    Ok(_) if ctl.in_call() => ctl.connect(),
                    Ok(_) => {}
                    Err(text) => ctl.notice.set(Some(text)),
                }
            });
            return;
        };
        let Some(conversation) = self.conversation.get_untracked() else {
            return;
        };
        self.inner.with_value(|i| {
            if i.peer.borrow().is_some() {
                return;
            }
            let socket = self.link.socket;
            let send = move |payload: String| {
                socket.send(&ClientMsg::Signal {
                    conversation: conversation.clone(),
                    payload,
                });
            };
            // The visitor is always the polite side.
            let polite = self.me == Author::Visitor;
            let peer = match engine.connect(
                &i.ice.borrow(),
                polite,
                Box::new(send),
                self.remote_changed,
                self.diag,
            ) {
                Ok(p) => p,
                Err(e) => {
                    let error = format!("{e:?}");
                    let text = tf("The call could not start: {error}", &[("error", &error)]);
                    self.notice.set(Some(text));
                    return;
                }
            };
            for payload in i.early.borrow_mut().drain(..) {
                peer.on_signal(&payload);
            }
            // Both ends start at once; if both offered their tracks at once too, the polite one
            // would roll its very first offer back, and Chrome sometimes never gathers again
            // after that. So the polite end sends its tracks once the other's first offer is
            // in (or after a moment, if the other has nothing to send).
            let ctl = *self;
            let send_tracks = move || ctl.send_tracks();
            if polite {
                peer.after_first_offer(Box::new(send_tracks), FIRST_OFFER_WAIT_MS);
            }
            *i.peer.borrow_mut() = Some(peer);
            if !polite {
                send_tracks();
            }
        });
        self.remote_changed.update(|n| *n += 1);
    }

    /// Puts the local tracks held so far on the connection.
    fn send_tracks(&self) {
        self.inner.with_value(|i| {
            let peer = i.peer.borrow();
            let Some(peer) = peer.as_ref() else {
                return;
            };
            let mut d = i.devices.borrow_mut();
            let stream = d.stream();
            if let Some((track, sender)) = d.mic.as_mut() {
                if sender.is_none() {
                    *sender = Some(peer.add_track(track, &stream));
                }
            }
            if d.video.is_none() {
                if let Some(track) = d.screen.clone().or_else(|| d.camera.clone()) {
                    if let Sent::Added(t) = peer.send_video(None, &track, &stream) {
                        d.video = Some(t);
                    }
                }
            }
        });
    }

    /// Ends everything local: tracks stopped, connection closed.
    fn release(&self) {
        self.inner.with_value(|i| {
            if let Some(peer) = i.peer.borrow_mut().take() {
                peer.close();
            }
            i.devices.borrow_mut().release();
            i.early.borrow_mut().clear();
        });
        self.muted.set(false);
        self.sync_flags();
        self.remote_changed.update(|n| *n += 1);
    }

    /// Calls the other side (voice, video) or shares the screen from chat.
    pub fn start(&self, kind: CallKind) {
        self.notice.set(None);
        self.feed(Input::Start(kind));
    }

    /// Answers with the microphone.
    pub fn accept(&self) {
        self.feed(Input::Accept);
    }

    /// Refuses the call.
    pub fn decline(&self) {
        self.feed(Input::Decline);
    }

    /// Ends the call for both sides.
    pub fn hang_up(&self) {
        self.feed(Input::HangUp);
    }

    /// Puts a device the machine kept into the call.
    fn attach(&self, device: Opened) {
        match device {
            Opened::Mic(track) => self.inner.with_value(|i| {
                let mut d = i.devices.borrow_mut();
                let stream = d.stream();
                stream.add_track(&track);
                let sender = i
                    .peer
                    .borrow()
                    .as_ref()
                    .map(|p| p.add_track(&track, &stream));
                if let Some((old, _)) = d.mic.replace((track, sender)) {
                    old.stop();
                }
            }),
            Opened::Camera(track) => {
                self.inner.with_value(|i| {
                    let mut d = i.devices.borrow_mut();
                    let stream = d.stream();
                    // A second camera (flipped) replaces the first, which stops once the
                    // new one is sent (stopped sooner, the sender can stall for good).
                    let old = d.camera.replace(Clone::clone(&track));
                    if let Some(old) = &old {
                        stream.remove_track(old);
                    }
                    if d.screen.is_some() {
                        // The screen is being sent; the camera comes back when sharing stops.
                        if let Some(old) = old {
                            old.stop();
                        }
                        return;
                    }
                    stream.add_track(&track);
                    let sent = d.send_video(i.peer.borrow().as_deref(), &track, &stream);
                    if let Some(old) = old {
                        leptos::task::spawn_local(async move {
                            if let Some(sent) = sent {
                                let _ = wasm_bindgen_futures::JsFuture::from(sent).await;
                            }
                            old.stop();
                        });
                    }
                });
                let ctl = *self;
                leptos::task::spawn_local(async move {
                    ctl.can_flip.set(media::camera_count().await > 1);
                });
            }
            Opened::Screen(track) => {
                // The browser's own "stop sharing" ends the track: same as our button.
                let ctl = *self;
                let ended = Closure::<dyn FnMut()>::new(move || ctl.stop_screen());
                track.set_onended(Some(ended.as_ref().unchecked_ref()));
                self.inner.with_value(|i| {
                    let mut d = i.devices.borrow_mut();
                    let stream = d.stream();
                    if let Some(cam) = &d.camera {
                        stream.remove_track(cam);
                    }
                    stream.add_track(&track);
                    if let Some(old) = d.screen.replace(Clone::clone(&track)) {
                        old.set_onended(None);
                        old.stop();
                        stream.remove_track(&old);
                    }
                    d.screen_ended = Some(ended);
                    let _ = d.send_video(i.peer.borrow().as_deref(), &track, &stream);
                });
            }
        }
    }

    /// Mutes or unmutes; with no microphone yet (a screen share), opens it.
    pub fn toggle_mic(&self) {
        if self.mic_on.get_untracked() {
            let muted = !self.muted.get_untracked();
            self.inner.with_value(|i| {
                if let Some((t, _)) = &i.devices.borrow().mic {
                    t.set_enabled(!muted);
                }
            });
            self.muted.set(muted);
        } else if self.in_call() {
            self.feed(Input::Add(Device::Mic, Then::Nothing));
        } else {
            self.start(CallKind::Voice);
        }
    }

    /// Turns our camera on or off (from chat, starts a video call).
    pub fn toggle_camera(&self) {
        if !self.in_call() && !self.outgoing() {
            self.start(CallKind::Video);
            return;
        }
        if self.camera_on.get_untracked() {
            self.inner.with_value(|i| {
                let mut d = i.devices.borrow_mut();
                let Some(cam) = d.camera.take() else { return };
                cam.stop();
                if let Some(stream) = &d.stream {
                    stream.remove_track(&cam);
                }
                if d.screen.is_none() {
                    d.stop_video(i.peer.borrow().as_deref());
                }
            });
            self.sync_flags();
            self.send_action(CallAction::Media {
                media: MediaKind::Camera,
                on: false,
            });
        } else {
            self.feed(Input::Add(Device::Camera, Then::Media(MediaKind::Camera)));
        }
    }

    /// Shares the screen or stops sharing (from chat, starts a one-way share).
    pub fn toggle_screen(&self) {
        if self.screen_on.get_untracked() {
            self.stop_screen();
        } else if !self.in_call() && !self.outgoing() {
            self.start(CallKind::Screen);
        } else {
            self.feed(Input::Add(Device::Screen, Then::Media(MediaKind::Screen)));
        }
    }

    /// Stops sharing and restores what was there before: the camera, or nothing.
    fn stop_screen(&self) {
        self.inner.with_value(|i| {
            let mut d = i.devices.borrow_mut();
            let Some(screen) = d.screen.take() else {
                return;
            };
            screen.set_onended(None);
            screen.stop();
            d.screen_ended = None;
            let stream = d.stream();
            stream.remove_track(&screen);
            let peer = i.peer.borrow();
            match d.camera.clone() {
                Some(cam) => {
                    stream.add_track(&cam);
                    let _ = d.send_video(peer.as_deref(), &cam, &stream);
                }
                None => d.stop_video(peer.as_deref()),
            }
        });
        self.sync_flags();
        if self.in_call() {
            self.send_action(CallAction::Media {
                media: MediaKind::Screen,
                on: false,
            });
        } else {
            // A one-way share from chat ends with the share.
            self.hang_up();
        }
    }

    /// Switches between the front and back camera: the other one is opened (like any device,
    /// dropped if the call ends first) and replaces the current one.
    pub fn flip_camera(&self) {
        self.inner.with_value(|i| {
            let mut d = i.devices.borrow_mut();
            d.back_camera = !d.back_camera;
            d.flip_from = d.camera.as_ref().and_then(media::device_of);
        });
        self.feed(Input::Add(Device::Camera, Then::Nothing));
    }

    /// Posts a still of the other side's video into the chat, as a PNG.
    pub fn snapshot(&self, video: &web_sys::HtmlVideoElement) {
        let Some(conversation) = self.conversation.get_untracked() else {
            return;
        };
        // The button shows in a call, whose code is here by then.
        let Some(engine) = engine::loaded() else {
            return;
        };
        if let Err(text) = engine.snapshot(video, self.uploader, conversation) {
            self.notice.set(Some(text));
        }
    }
}
