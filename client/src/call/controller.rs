//! The call of one conversation, as one browser lives it: local devices, the peer connection,
//! and the relay's call state. Shared by the widget and the console through [`use_call`]; every
//! device and the connection are released when the call ends, the owner is disposed or the
//! page goes away.

use std::cell::RefCell;
use std::rc::Rc;

use escalera_protocol::{
    Author, CallAction, CallInfo, CallKind, CallPhase, ClientMsg, ConversationId, IceServer,
    MediaKind,
};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::{MediaStream, MediaStreamTrack, RtcRtpSender, RtcRtpTransceiver};

use crate::chat::Uploader;
use crate::relay::RelaySocket;
use crate::rtc::media;
use crate::rtc::peer::Peer;

/// Local tracks and what sends them.
#[derive(Default)]
struct Devices {
    /// All local tracks in one stream: what `local-video` shows and what the other side gets.
    stream: Option<MediaStream>,
    mic: Option<(MediaStreamTrack, Option<RtcRtpSender>)>,
    camera: Option<MediaStreamTrack>,
    back_camera: bool,
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

    /// Sends `track` as our video (if there is a connection yet; else `connect` will).
    fn send_video(&mut self, peer: Option<&Peer>, track: &MediaStreamTrack, stream: &MediaStream) {
        if let Some(peer) = peer {
            if let Some(added) = peer.send_video(self.video.as_ref(), track, stream) {
                self.video = Some(added);
            }
        }
    }

    /// Stops sending video, keeping the transceiver for the next time.
    fn stop_video(&mut self, peer: Option<&Peer>) {
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
    peer: RefCell<Option<Rc<Peer>>>,
    devices: RefCell<Devices>,
    ice: RefCell<Vec<IceServer>>,
    /// Signals that came before our peer connection existed.
    early: RefCell<Vec<String>>,
    _unload: RefCell<Option<Closure<dyn FnMut()>>>,
}

/// The call controls and state, `Copy` for the views.
#[derive(Clone, Copy)]
pub struct CallCtl {
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
    /// The connection's ICE state.
    pub ice_state: RwSignal<String>,
    /// The connection's signaling state (for diagnostics).
    pub signaling: RwSignal<String>,
    /// Something to tell the person (a device error, no answer...).
    pub notice: RwSignal<Option<String>>,
    /// A device is being opened.
    pub busy: RwSignal<bool>,
    me: Author,
    socket: RelaySocket,
    uploader: Uploader,
    inner: StoredValue<Rc<Inner>, LocalStorage>,
}

/// The call machinery for one widget or console. `me` is the side this browser is.
pub fn use_call(socket: RelaySocket, me: Author, uploader: Uploader) -> CallCtl {
    let inner = Rc::new(Inner {
        peer: RefCell::new(None),
        devices: RefCell::new(Devices::default()),
        ice: RefCell::new(Vec::new()),
        early: RefCell::new(Vec::new()),
        _unload: RefCell::new(None),
    });
    let ctl = CallCtl {
        conversation: RwSignal::new(None),
        info: RwSignal::new(None),
        mic_on: RwSignal::new(false),
        muted: RwSignal::new(false),
        camera_on: RwSignal::new(false),
        screen_on: RwSignal::new(false),
        can_flip: RwSignal::new(false),
        local_changed: RwSignal::new(0),
        remote_changed: RwSignal::new(0),
        ice_state: RwSignal::new("new".into()),
        signaling: RwSignal::new("stable".into()),
        notice: RwSignal::new(None),
        busy: RwSignal::new(false),
        me,
        socket,
        uploader,
        inner: StoredValue::new_local(inner.clone()),
    };
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
        ctl.teardown();
    });
    ctl
}

impl CallCtl {
    /// ICE servers from the welcome.
    pub fn set_ice_servers(&self, servers: Vec<IceServer>) {
        self.inner.with_value(|i| *i.ice.borrow_mut() = servers);
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
        self.socket.status.get() == crate::relay::Status::Online
    }

    /// After a reconnect, before joining: if we are an end of the active call (we still hold
    /// its peer connection), tell the relay this socket is that end now.
    pub fn resume(&self) {
        let ours = self
            .info
            .get_untracked()
            .is_some_and(|c| c.phase == CallPhase::Active && c.party);
        let holding = self.inner.with_value(|i| i.peer.borrow().is_some());
        if ours && holding {
            self.send_action(CallAction::Resume);
        }
    }

    fn send_action(&self, action: CallAction) -> bool {
        let Some(conversation) = self.conversation.get_untracked() else {
            return false;
        };
        self.socket.send(&ClientMsg::Call {
            conversation,
            action,
        })
    }

    fn fail(&self, message: String) {
        self.busy.set(false);
        self.notice.set(Some(message));
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

    /// The relay says what the call is now.
    pub fn on_call(&self, conversation: &ConversationId, call: Option<CallInfo>) {
        if self.conversation.get_untracked().as_ref() != Some(conversation) {
            return;
        }
        let was = self.info.get_untracked();
        self.info.set(call.clone());
        match call {
            None => {
                if was
                    .as_ref()
                    .is_some_and(|c| c.phase == CallPhase::Ringing && c.party)
                {
                    self.notice.set(Some("No answer.".into()));
                }
                self.teardown();
            }
            Some(c) if c.phase == CallPhase::Ringing && !c.party && c.caller != self.me => {
                // A screen share from chat needs nothing of ours: watch it at once.
                if c.kind == CallKind::Screen {
                    self.send_action(CallAction::Accept);
                }
            }
            Some(c) if c.phase == CallPhase::Active && c.party => self.connect(),
            Some(c) if !c.party => self.teardown(),
            Some(_) => {}
        }
    }

    /// Signaling from the other end.
    pub fn on_signal(&self, conversation: &ConversationId, payload: String) {
        if self.conversation.get_untracked().as_ref() != Some(conversation) {
            return;
        }
        self.inner.with_value(|i| match i.peer.borrow().as_ref() {
            Some(peer) => peer.on_signal(&payload),
            None => i.early.borrow_mut().push(payload),
        });
    }

    /// The relay refused something: whatever we opened for a call that did not start goes.
    pub fn on_refused(&self) {
        if self.info.get_untracked().is_none() {
            self.teardown();
        }
        self.busy.set(false);
    }

    /// Creates the peer connection for the active call and sends our tracks.
    fn connect(&self) {
        let Some(conversation) = self.conversation.get_untracked() else {
            return;
        };
        self.busy.set(false);
        self.inner.with_value(|i| {
            if i.peer.borrow().is_some() {
                return;
            }
            let socket = self.socket;
            let send = move |payload: String| {
                socket.send(&ClientMsg::Signal {
                    conversation: conversation.clone(),
                    payload,
                });
            };
            // The visitor is always the polite side.
            let polite = self.me == Author::Visitor;
            let peer = match Peer::new(
                &i.ice.borrow(),
                polite,
                send,
                self.remote_changed,
                self.ice_state,
                self.signaling,
            ) {
                Ok(p) => p,
                Err(e) => {
                    self.notice
                        .set(Some(format!("The call could not start: {e:?}")));
                    return;
                }
            };
            let mut d = i.devices.borrow_mut();
            let stream = d.stream();
            if let Some((track, sender)) = d.mic.as_mut() {
                *sender = Some(peer.add_track(track, &stream));
            }
            if let Some(track) = d.screen.clone().or_else(|| d.camera.clone()) {
                d.video = peer.send_video(None, &track, &stream);
            }
            for payload in i.early.borrow_mut().drain(..) {
                peer.on_signal(&payload);
            }
            *i.peer.borrow_mut() = Some(peer);
        });
        self.remote_changed.update(|n| *n += 1);
    }

    /// Ends everything local: tracks stopped, connection closed.
    fn teardown(&self) {
        self.inner.with_value(|i| {
            if let Some(peer) = i.peer.borrow_mut().take() {
                peer.close();
            }
            i.devices.borrow_mut().release();
            i.early.borrow_mut().clear();
        });
        self.muted.set(false);
        self.busy.set(false);
        self.sync_flags();
        self.remote_changed.update(|n| *n += 1);
    }

    /// Calls the other side (voice, video) or shares the screen from chat.
    pub fn start(&self, kind: CallKind) {
        let ctl = *self;
        ctl.notice.set(None);
        ctl.busy.set(true);
        leptos::task::spawn_local(async move {
            let opened = match kind {
                CallKind::Voice => ctl.open_mic().await,
                CallKind::Video => match ctl.open_mic().await {
                    Ok(()) => ctl.open_camera().await,
                    Err(e) => Err(e),
                },
                CallKind::Screen => ctl.open_screen().await,
            };
            match opened {
                Ok(()) => {
                    ctl.send_action(CallAction::Start { kind });
                }
                Err(e) => {
                    ctl.teardown();
                    ctl.fail(e);
                }
            }
        });
    }

    /// Answers with the microphone.
    pub fn accept(&self) {
        let ctl = *self;
        ctl.busy.set(true);
        leptos::task::spawn_local(async move {
            match ctl.open_mic().await {
                Ok(()) => {
                    ctl.send_action(CallAction::Accept);
                }
                Err(e) => ctl.fail(e),
            }
        });
    }

    /// Refuses the call.
    pub fn decline(&self) {
        self.send_action(CallAction::Decline);
    }

    /// Ends the call for both sides.
    pub fn hang_up(&self) {
        if self.info.get_untracked().is_some_and(|c| c.party) {
            self.send_action(CallAction::HangUp);
        }
        self.teardown();
    }

    async fn open_mic(&self) -> Result<(), String> {
        let track = media::open_mic().await?;
        self.inner.with_value(|i| {
            let mut d = i.devices.borrow_mut();
            let stream = d.stream();
            stream.add_track(&track);
            let sender = i
                .peer
                .borrow()
                .as_ref()
                .map(|p| p.add_track(&track, &stream));
            d.mic = Some((track, sender));
        });
        self.sync_flags();
        Ok(())
    }

    async fn open_camera(&self) -> Result<(), String> {
        let back = self.inner.with_value(|i| i.devices.borrow().back_camera);
        let track = media::open_camera(back).await?;
        self.inner.with_value(|i| {
            let mut d = i.devices.borrow_mut();
            d.camera = Some(Clone::clone(&track));
            if d.screen.is_some() {
                // The screen is being sent; the camera comes back when sharing stops.
                return;
            }
            let stream = d.stream();
            stream.add_track(&track);
            d.send_video(i.peer.borrow().as_deref(), &track, &stream);
        });
        let cameras = media::camera_count().await;
        self.can_flip.set(cameras > 1);
        self.sync_flags();
        Ok(())
    }

    async fn open_screen(&self) -> Result<(), String> {
        let track = media::open_screen().await?;
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
            d.screen = Some(Clone::clone(&track));
            d.screen_ended = Some(ended);
            d.send_video(i.peer.borrow().as_deref(), &track, &stream);
        });
        self.sync_flags();
        Ok(())
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
            let ctl = *self;
            leptos::task::spawn_local(async move {
                if let Err(e) = ctl.open_mic().await {
                    ctl.fail(e);
                }
            });
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
        let ctl = *self;
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
            leptos::task::spawn_local(async move {
                match ctl.open_camera().await {
                    Ok(()) => {
                        ctl.send_action(CallAction::Media {
                            media: MediaKind::Camera,
                            on: true,
                        });
                    }
                    Err(e) => ctl.fail(e),
                }
            });
        }
    }

    /// Shares the screen or stops sharing (from chat, starts a one-way share).
    pub fn toggle_screen(&self) {
        if self.screen_on.get_untracked() {
            self.stop_screen();
            return;
        }
        if !self.in_call() && !self.outgoing() {
            self.start(CallKind::Screen);
            return;
        }
        let ctl = *self;
        leptos::task::spawn_local(async move {
            match ctl.open_screen().await {
                Ok(()) => {
                    ctl.send_action(CallAction::Media {
                        media: MediaKind::Screen,
                        on: true,
                    });
                }
                Err(e) => ctl.fail(e),
            }
        });
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
                    d.send_video(peer.as_deref(), &cam, &stream);
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

    /// Switches between the front and back camera.
    pub fn flip_camera(&self) {
        let ctl = *self;
        leptos::task::spawn_local(async move {
            let back = ctl.inner.with_value(|i| {
                let mut d = i.devices.borrow_mut();
                d.back_camera = !d.back_camera;
                d.back_camera
            });
            let track = match media::open_camera(back).await {
                Ok(t) => t,
                Err(e) => return ctl.fail(e),
            };
            ctl.inner.with_value(|i| {
                let mut d = i.devices.borrow_mut();
                let stream = d.stream();
                if let Some(old) = d.camera.replace(Clone::clone(&track)) {
                    old.stop();
                    stream.remove_track(&old);
                }
                if d.screen.is_none() {
                    stream.add_track(&track);
                    d.send_video(i.peer.borrow().as_deref(), &track, &stream);
                }
            });
            ctl.sync_flags();
        });
    }

    /// Posts a still of the other side's video into the chat, as a PNG.
    pub fn snapshot(&self, video: &web_sys::HtmlVideoElement) {
        let Some(conversation) = self.conversation.get_untracked() else {
            return;
        };
        let (w, h) = (video.video_width(), video.video_height());
        if w == 0 || h == 0 {
            self.notice
                .set(Some("There is no video to photograph yet.".into()));
            return;
        }
        let canvas: web_sys::HtmlCanvasElement = crate::browser::window()
            .document()
            .and_then(|d| d.create_element("canvas").ok())
            .expect("a canvas")
            .unchecked_into();
        canvas.set_width(w);
        canvas.set_height(h);
        let Some(ctx) = canvas
            .get_context("2d")
            .ok()
            .flatten()
            .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
        else {
            return;
        };
        if ctx
            .draw_image_with_html_video_element_and_dw_and_dh(
                video,
                0.0,
                0.0,
                f64::from(w),
                f64::from(h),
            )
            .is_err()
        {
            self.notice
                .set(Some("The snapshot could not be taken.".into()));
            return;
        }
        let uploader = self.uploader;
        let name = format!("snapshot-{}.png", snapshot_stamp());
        let done = Closure::once_into_js(move |blob: JsValue| {
            if let Ok(blob) = blob.dyn_into::<web_sys::Blob>() {
                uploader.send(&conversation, &blob, &name);
            }
        });
        let _ = canvas.to_blob_with_type(done.unchecked_ref(), "image/png");
    }
}

/// `20261121-140512`, local time.
fn snapshot_stamp() -> String {
    let d = js_sys::Date::new_0();
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}
