//! The other side is calling: who, what kind, accept or decline, with a ring.

use escalera_protocol::CallKind;
use leptos::prelude::*;

use super::CallCtl;
use crate::i18n::{t, tf};

/// Rings (two tones, on and off) while `ringing` is true. Browsers may refuse sound before the
/// person interacted with the page; the ring is then silent and the panel still shows.
fn use_ringer(ringing: Signal<bool>) {
    let ctx =
        StoredValue::new_local(None::<(web_sys::AudioContext, gloo_timers::callback::Interval)>);
    let stop = move || {
        if let Some((ctx, interval)) = ctx.try_update_value(Option::take).flatten() {
            interval.cancel();
            let _ = ctx.close();
        }
    };
    Effect::new(move || {
        if !ringing.get() {
            stop();
            return;
        }
        let Ok(audio) = web_sys::AudioContext::new() else {
            return;
        };
        let beep = {
            let audio = audio.clone();
            move || crate::browser::tones(&audio, &[(440.0, 0.0, 1.2), (480.0, 0.0, 1.2)], 0.05)
        };
        beep();
        let interval = gloo_timers::callback::Interval::new(3_000, beep);
        ctx.set_value(Some((audio, interval)));
    });
    on_cleanup(stop);
}

/// The incoming-call panel.
#[component]
pub fn IncomingCall(ctl: CallCtl) -> impl IntoView {
    let call = Memo::new(move |_| ctl.incoming());
    use_ringer(Signal::derive(move || call.with(Option::is_some)));
    // Said at once by screen readers: the region is always there, its text changes.
    let announce = move || {
        call.with(|c| {
            c.as_ref()
                .map(|c| tf("{name} is calling you", &[("name", &c.caller_name)]))
                .unwrap_or_default()
        })
    };
    view! {
        <div class="sr-only" aria-live="assertive" data-testid="call-announce">{announce}</div>
        {move || call.get().map(|c| {
            let what = match c.kind {
                CallKind::Video => t("video call"),
                _ => t("voice call"),
            };
            // One sentence, the caller's name in bold wherever the language puts it.
            let line = tf("{name} is calling you ({call})", &[("call", what)]);
            let (before, after) = match line.split_once("{name}") {
                Some((before, after)) => (before.to_owned(), after.to_owned()),
                None => (String::new(), format!(" {line}")),
            };
            view! {
                <div class="incoming" role="alertdialog" aria-label=t("Incoming call") data-testid="incoming-call">
                    <div class="incoming-text">
                        {before}
                        <strong>{c.caller_name.clone()}</strong>
                        {after}
                        <div class="hint">{t("Your microphone opens only if you accept.")}</div>
                    </div>
                    <button class="accept" data-testid="call-accept" prop:disabled=move || ctl.busy.get()
                        on:click=move |_| ctl.accept()>{t("Accept")}</button>
                    <button class="decline" data-testid="call-decline" on:click=move |_| ctl.decline()>{t("Decline")}</button>
                </div>
            }
        })}
    }
}
