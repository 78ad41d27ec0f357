//! The call under way: the other side's video (and audio), ours in a corner, the controls.

use escalera_protocol::{CallKind, CallPhase, MediaKind};
use leptos::html;
use leptos::prelude::*;

use super::CallCtl;
use crate::i18n::t;

/// "3:07" since `since` (ms).
fn elapsed(since: i64, now: f64) -> String {
    let s = ((now - since as f64) / 1000.0).max(0.0) as i64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Puts `stream` into a `<video>` when it changes (setting the same one again would restart it).
fn show_stream(
    video: NodeRef<html::Video>,
    stream: impl Fn() -> Option<web_sys::MediaStream> + 'static,
) {
    Effect::new(move || {
        let stream = stream();
        let Some(el) = video.get() else { return };
        let current = el.src_object();
        let same = match (&current, &stream) {
            (Some(a), Some(b)) => a.id() == b.id(),
            (None, None) => true,
            _ => false,
        };
        if !same {
            el.set_src_object(stream.as_ref());
        }
        if stream.is_some() {
            let _ = el.play();
        }
    });
}

/// Shown while calling out or in a call, once the call code is here (it comes as the call
/// rings or is placed; the panel is part of it).
#[component]
pub fn CallPanel(ctl: CallCtl) -> impl IntoView {
    let shown = Memo::new(move |_| (ctl.outgoing() || ctl.in_call()) && ctl.engine_ready.get());
    move || {
        shown
            .get()
            .then(|| super::engine::loaded().map(|e| e.panel(ctl)))
    }
}

/// The panel itself (in the call code).
pub(super) fn panel(ctl: CallCtl) -> AnyView {
    let remote = NodeRef::<html::Video>::new();
    let local = NodeRef::<html::Video>::new();
    show_stream(remote, move || ctl.remote_stream());
    show_stream(local, move || ctl.local_stream());
    let now = RwSignal::new(js_sys::Date::now());
    let tick = gloo_timers::callback::Interval::new(1_000, move || now.set(js_sys::Date::now()));
    let tick = StoredValue::new_local(Some(tick));
    on_cleanup(move || {
        if let Some(t) = tick.try_update_value(Option::take).flatten() {
            t.cancel();
        }
    });
    let status = move || match ctl.info.get() {
        Some(c) if c.phase == CallPhase::Ringing => t("Calling… waiting for an answer").to_owned(),
        // Our socket or the other side's is down: the media may well go on meanwhile.
        Some(c) if c.away || !ctl.online() => t("Reconnecting…").to_owned(),
        Some(c) => {
            let what = if c.kind == CallKind::Screen {
                t("Screen share")
            } else {
                t("In call")
            };
            format!("{what} · {}", elapsed(c.since, now.get()))
        }
        None => String::new(),
    };
    let local_video = move || ctl.camera_on.get() || ctl.screen_on.get();
    let snapshot = move |_| {
        if let Some(v) = remote.get_untracked() {
            ctl.snapshot(&v);
        }
    };
    view! {
        <section class="call" aria-label=t("Call")>
            <div class="stage" class:has-video=move || ctl.remote_video()>
                <video node_ref=remote data-testid="remote-video" autoplay playsinline></video>
                <div class="stage-label" data-testid="call-status"
                    data-ice=move || ctl.diag.ice.get() data-signaling=move || ctl.diag.signaling.get()
                    data-gathering=move || ctl.diag.gathering.get()
                    data-rollbacks=move || ctl.diag.rollbacks.get()
                    data-ice-restarts=move || ctl.diag.ice_restarts.get()
                    data-m-lines=move || ctl.diag.m_lines.get()
                    data-candidates=move || {
                        let (sent, added, refused) = ctl.diag.candidates.get();
                        format!("sent {sent}, added {added}, refused {refused}")
                    }
                    data-remote-refused=move || ctl.diag.remote_refused.get()>{status}</div>
                <video node_ref=local data-testid="local-video" class="local" class:hidden=move || !local_video()
                    autoplay playsinline muted prop:muted=true></video>
            </div>
            <div class="controls">
                <Show when=move || ctl.mic_on.get() fallback=move || view! {
                    <button data-testid="call-voice" on:click=move |_| ctl.toggle_mic() prop:disabled=move || !ctl.in_call()>
                        {t("Microphone")}
                    </button>
                }>
                    <button data-testid="mic-toggle" aria-pressed=move || ctl.muted.get().to_string()
                        on:click=move |_| ctl.toggle_mic()>
                        {move || if ctl.muted.get() { t("Unmute") } else { t("Mute") }}
                    </button>
                </Show>
                <Show when=move || ctl.features.get().allows_media(MediaKind::Camera)>
                <Show when=move || ctl.camera_on.get() fallback=move || view! {
                    <button data-testid="call-video" on:click=move |_| ctl.toggle_camera() prop:disabled=move || !ctl.in_call()>
                        {t("Camera")}
                    </button>
                }>
                    <button data-testid="camera-toggle" aria-pressed="true" on:click=move |_| ctl.toggle_camera()>
                        {t("Camera off")}
                    </button>
                </Show>
                </Show>
                <Show when=move || ctl.camera_on.get() && ctl.can_flip.get()>
                    <button data-testid="camera-flip" on:click=move |_| ctl.flip_camera()>{t("Flip")}</button>
                </Show>
                <Show when=move || ctl.features.get().screen>
                <button data-testid="screen-share" aria-pressed=move || ctl.screen_on.get().to_string()
                    prop:disabled=move || !ctl.in_call() on:click=move |_| ctl.toggle_screen()>
                    {move || if ctl.screen_on.get() { t("Stop sharing") } else { t("Share screen") }}
                </button>
                </Show>
                <Show when=move || ctl.remote_video() && ctl.features.get().snapshots>
                    <button data-testid="snapshot" on:click=snapshot>{t("Snapshot")}</button>
                </Show>
                <button class="hangup" data-testid="call-hangup" on:click=move |_| ctl.hang_up()>
                    {move || if ctl.outgoing() { t("Cancel") } else { t("Hang up") }}
                </button>
            </div>
        </section>
    }
    .into_any()
}
