//! Local media: the microphone, the camera (front or back) and the screen, opened on demand
//! with errors a person can read.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaStream, MediaStreamTrack};

use crate::browser::window;
use crate::i18n::t;

/// A device to open.
#[derive(Clone, Copy)]
enum What {
    Mic,
    Camera,
    Screen,
}

/// What can go wrong opening a device.
#[derive(Clone, Copy)]
enum Problem {
    Denied,
    NotFound,
    InUse,
    Cancelled,
    Other,
}

/// The problem with the device, in words (one whole sentence each, for translation).
fn say(what: What, problem: Problem) -> String {
    use Problem::*;
    use What::*;
    match (problem, what) {
        (Denied, Mic) => t("Permission to use the microphone was denied."),
        (Denied, Camera) => t("Permission to use the camera was denied."),
        (Denied, Screen) => t("Permission to use the screen was denied."),
        (NotFound, Mic) => t("No microphone was found."),
        (NotFound, Camera) => t("No camera was found."),
        (NotFound, Screen) => t("No screen was found."),
        (InUse, Mic) => t("The microphone is in use by another application."),
        (InUse, Camera) => t("The camera is in use by another application."),
        (InUse, Screen) => t("The screen is in use by another application."),
        (Cancelled, Mic) => t("Opening the microphone was cancelled."),
        (Cancelled, Camera) => t("Opening the camera was cancelled."),
        (Cancelled, Screen) => t("Opening the screen was cancelled."),
        (Other, Mic) => t("The microphone could not be opened."),
        (Other, Camera) => t("The camera could not be opened."),
        (Other, Screen) => t("The screen could not be opened."),
    }
    .to_owned()
}

fn devices() -> Result<web_sys::MediaDevices, String> {
    window().navigator().media_devices().map_err(|_| {
        t("This browser cannot use a camera or microphone here (is the page on https?).").to_owned()
    })
}

/// What went wrong opening `what`, in words.
fn explain(what: What, e: JsValue) -> String {
    let name = js_sys::Reflect::get(&e, &"name".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    let problem = match name.as_str() {
        "NotAllowedError" => Problem::Denied,
        "NotFoundError" | "OverconstrainedError" => Problem::NotFound,
        "NotReadableError" => Problem::InUse,
        "AbortError" => Problem::Cancelled,
        _ => Problem::Other,
    };
    say(what, problem)
}

/// Waits for a capture request and takes its one track.
async fn capture(
    what: What,
    request: Result<js_sys::Promise, JsValue>,
    video: bool,
) -> Result<MediaStreamTrack, String> {
    let promise = request.map_err(|e| explain(what, e))?;
    let stream: MediaStream = JsFuture::from(promise)
        .await
        .map_err(|e| explain(what, e))?
        .unchecked_into();
    let tracks = if video {
        stream.get_video_tracks()
    } else {
        stream.get_audio_tracks()
    };
    tracks
        .get(0)
        .dyn_into()
        .map_err(|_| say(what, Problem::NotFound))
}

/// Opens the microphone.
pub async fn open_mic() -> Result<MediaStreamTrack, String> {
    let constraints = web_sys::MediaStreamConstraints::new();
    constraints.set_audio(&JsValue::TRUE);
    capture(
        What::Mic,
        devices()?.get_user_media_with_constraints(&constraints),
        false,
    )
    .await
}

/// Opens the camera; `back` asks for the rear one (phones). Flipping, `other_than` is the
/// camera in use: another one is opened by its id (a facing mode alone may give the same one
/// again where cameras do not say which way they face).
pub async fn open_camera(
    back: bool,
    other_than: Option<String>,
) -> Result<MediaStreamTrack, String> {
    let video = web_sys::MediaTrackConstraints::new();
    let other = match other_than {
        Some(current) => cameras()
            .await
            .into_iter()
            .find(|id| *id != current && !id.is_empty()),
        None => None,
    };
    match other {
        Some(id) => {
            let exact = web_sys::ConstrainDomStringParameters::new();
            exact.set_exact(&JsValue::from_str(&id));
            video.set_device_id(&exact);
        }
        None => video.set_facing_mode(&JsValue::from_str(if back {
            "environment"
        } else {
            "user"
        })),
    }
    video.set_width(&JsValue::from_f64(1280.0));
    video.set_height(&JsValue::from_f64(720.0));
    let constraints = web_sys::MediaStreamConstraints::new();
    constraints.set_video(&video);
    capture(
        What::Camera,
        devices()?.get_user_media_with_constraints(&constraints),
        true,
    )
    .await
}

/// Asks for a screen, window or tab to share (needs a click: browsers insist).
pub async fn open_screen() -> Result<MediaStreamTrack, String> {
    let constraints = web_sys::DisplayMediaStreamConstraints::new();
    constraints.set_video(&JsValue::TRUE);
    capture(
        What::Screen,
        devices()?.get_display_media_with_constraints(&constraints),
        true,
    )
    .await
}

/// The ids of the cameras the browser knows of (empty ids before any permission).
async fn cameras() -> Vec<String> {
    let Ok(devices) = devices() else {
        return Vec::new();
    };
    let Ok(promise) = devices.enumerate_devices() else {
        return Vec::new();
    };
    let Ok(list) = JsFuture::from(promise).await else {
        return Vec::new();
    };
    js_sys::Array::from(&list)
        .iter()
        .filter_map(|d| d.dyn_into::<web_sys::MediaDeviceInfo>().ok())
        .filter(|d| d.kind() == web_sys::MediaDeviceKind::Videoinput)
        .map(|d| d.device_id())
        .collect()
}

/// How many cameras the browser knows of (labels need permission; the count does not).
pub async fn camera_count() -> usize {
    cameras().await.len()
}

/// The id of the camera a track comes from.
pub fn device_of(track: &MediaStreamTrack) -> Option<String> {
    track.get_settings().get_device_id()
}
