//! The heavy half of calls, loaded on the first call: the peer connection (`rtc::peer` and its
//! negotiation), opening the camera, microphone and screen, and snapshots. The page starts
//! without it (chat opens first); `scripts/build.sh` splits it into a chunk of its own
//! (split/), fetched when a call rings, starts or is answered. Everything here is reached
//! through [`Engine`] and [`PeerLink`], whose code the linker can then leave out of the page.
//!
//! Outside the browser (native tests) the split function is called directly.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use escalera_protocol::{ConversationId, IceServer};
use leptos::prelude::*;
use leptos::wasm_split::SplitLoaderError;
use wasm_bindgen::prelude::*;
use web_sys::{MediaStream, MediaStreamTrack, RtcRtpSender, RtcRtpTransceiver};

use super::machine::Device;
use super::CallCtl;
use crate::chat::Uploader;
use crate::i18n::t;
use crate::rtc::media;
use crate::rtc::peer::{Diagnostics, Peer, Sent};

/// A track being opened.
pub type Opening = Pin<Box<dyn Future<Output = Result<MediaStreamTrack, String>>>>;

/// What the call code does that the page does not need before the first call.
pub trait Engine {
    /// A new peer connection (see [`Peer::new`]).
    fn connect(
        &self,
        servers: &[IceServer],
        polite: bool,
        send: Box<dyn Fn(String)>,
        remote_changed: RwSignal<u32>,
        diag: Diagnostics,
    ) -> Result<Rc<dyn PeerLink>, JsValue>;

    /// Opens a device: `back` and `flip_from` choose the camera (see [`media::open_camera`]).
    fn open(&self, device: Device, back: bool, flip_from: Option<String>) -> Opening;

    /// Posts a still of `video` into `conversation`'s chat as a PNG; what to tell the person
    /// if it cannot.
    fn snapshot(
        &self,
        video: &web_sys::HtmlVideoElement,
        uploader: Uploader,
        conversation: ConversationId,
    ) -> Result<(), String>;

    /// The call's panel: videos, status and controls.
    fn panel(&self, ctl: CallCtl) -> AnyView;
}

/// A peer connection, as the call controller uses it (see [`Peer`]).
pub trait PeerLink {
    /// The other side's stream.
    fn remote(&self) -> Option<MediaStream>;
    /// Runs `then` once the first remote offer is applied, or after `wait_ms`.
    fn after_first_offer(&self, then: Box<dyn FnOnce()>, wait_ms: u32);
    /// A signal from the other side.
    fn on_signal(&self, payload: &str);
    /// Sends a track.
    fn add_track(&self, track: &MediaStreamTrack, stream: &MediaStream) -> RtcRtpSender;
    /// Sends `track` as our video, on `current` if there is one.
    fn send_video(
        &self,
        current: Option<&RtcRtpTransceiver>,
        track: &MediaStreamTrack,
        stream: &MediaStream,
    ) -> Sent;
    /// Stops sending video on `transceiver`.
    fn stop_video(&self, transceiver: &RtcRtpTransceiver);
    /// Closes the connection.
    fn close(&self);
}

thread_local! {
    static LOADED: OnceCell<Rc<dyn Engine>> = const { OnceCell::new() };
}

/// The engine if it is loaded already.
pub fn loaded() -> Option<Rc<dyn Engine>> {
    LOADED.with(|l| l.get().cloned())
}

/// The engine, fetched first if need be; the message to show if it cannot be (offline).
pub async fn engine() -> Result<Rc<dyn Engine>, String> {
    if let Some(engine) = loaded() {
        return Ok(engine);
    }
    match load().await {
        Ok(engine) => Ok(LOADED.with(|l| l.get_or_init(|| engine.into()).clone())),
        Err(e) => {
            leptos::logging::warn!("the call code could not be loaded: {e:?}");
            Err(t("The call could not start: this page could not load its call code. Check your connection.").into())
        }
    }
}

// The split point: this function and everything only it reaches go to the chunk `call`.
#[allow(unsafe_code)]
#[leptos::wasm_split::wasm_split(call, wasm_split_path = ::leptos::wasm_split, fallible)]
fn load() -> Result<Box<dyn Engine>, SplitLoaderError> {
    Ok(Box::new(Loaded))
}

struct Loaded;

impl Engine for Loaded {
    fn connect(
        &self,
        servers: &[IceServer],
        polite: bool,
        send: Box<dyn Fn(String)>,
        remote_changed: RwSignal<u32>,
        diag: Diagnostics,
    ) -> Result<Rc<dyn PeerLink>, JsValue> {
        let peer = Peer::new(servers, polite, send, remote_changed, diag)?;
        Ok(Rc::new(Link(peer)))
    }

    fn open(&self, device: Device, back: bool, flip_from: Option<String>) -> Opening {
        Box::pin(async move {
            match device {
                Device::Mic => media::open_mic().await,
                Device::Camera => media::open_camera(back, flip_from).await,
                Device::Screen => media::open_screen().await,
            }
        })
    }

    fn snapshot(
        &self,
        video: &web_sys::HtmlVideoElement,
        uploader: Uploader,
        conversation: ConversationId,
    ) -> Result<(), String> {
        let (w, h) = (video.video_width(), video.video_height());
        if w == 0 || h == 0 {
            return Err(t("There is no video to photograph yet.").into());
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
            return Ok(());
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
            return Err(t("The snapshot could not be taken.").into());
        }
        let name = format!("snapshot-{}.png", snapshot_stamp());
        let done = Closure::once_into_js(move |blob: JsValue| {
            if let Ok(blob) = blob.dyn_into::<web_sys::Blob>() {
                uploader.send(&conversation, &blob, &name);
            }
        });
        let _ = canvas.to_blob_with_type(done.unchecked_ref(), "image/png");
        Ok(())
    }

    fn panel(&self, ctl: CallCtl) -> AnyView {
        super::call_panel::panel(ctl)
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

/// [`Peer`] behind [`PeerLink`] (its methods that need the `Rc` take it from here).
struct Link(Rc<Peer>);

impl PeerLink for Link {
    fn remote(&self) -> Option<MediaStream> {
        self.0.remote()
    }

    fn after_first_offer(&self, then: Box<dyn FnOnce()>, wait_ms: u32) {
        self.0.after_first_offer(then, wait_ms);
    }

    fn on_signal(&self, payload: &str) {
        self.0.on_signal(payload);
    }

    fn add_track(&self, track: &MediaStreamTrack, stream: &MediaStream) -> RtcRtpSender {
        self.0.add_track(track, stream)
    }

    fn send_video(
        &self,
        current: Option<&RtcRtpTransceiver>,
        track: &MediaStreamTrack,
        stream: &MediaStream,
    ) -> Sent {
        self.0.send_video(current, track, stream)
    }

    fn stop_video(&self, transceiver: &RtcRtpTransceiver) {
        self.0.stop_video(transceiver);
    }

    fn close(&self) {
        self.0.close();
    }
}
