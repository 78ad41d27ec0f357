//! The climb from chat: voice, video, screen. Shown while there is no call.

use escalera_protocol::CallKind;
use leptos::prelude::*;

use super::CallCtl;
use crate::i18n::t;

/// Voice, video and screen-share buttons. `ready` is false until the other side is there
/// (a visitor cannot call before an agent joined); `why_not` says why, as a tooltip.
#[component]
pub fn CallButtons(
    ctl: CallCtl,
    #[prop(into)] ready: Signal<bool>,
    #[prop(into)] why_not: String,
) -> impl IntoView {
    let idle = move || ctl.info.with(Option::is_none);
    let disabled = move || !ready.get() || ctl.busy.get();
    let why_not = StoredValue::new(why_not);
    let title = move |what: &'static str| {
        move || {
            if ready.get() {
                what.to_owned()
            } else {
                why_not.get_value()
            }
        }
    };
    view! {
        <Show when=idle>
            <div class="call-buttons">
                <Show when=move || ctl.features.get().allows(CallKind::Voice)>
                <button class="icon" data-testid="call-voice" aria-label=t("Voice call") title=title(t("Voice call"))
                    prop:disabled=disabled on:click=move |_| ctl.start(CallKind::Voice)>
                    <svg viewBox="0 0 24 24" width="20" height="20" fill="currentColor" aria-hidden="true">
                        <path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 6-6.9z"></path>
                    </svg>
                </button>
                </Show>
                <Show when=move || ctl.features.get().allows(CallKind::Video)>
                <button class="icon" data-testid="call-video" aria-label=t("Video call") title=title(t("Video call"))
                    prop:disabled=disabled on:click=move |_| ctl.start(CallKind::Video)>
                    <svg viewBox="0 0 24 24" width="20" height="20" fill="currentColor" aria-hidden="true">
                        <path d="M15 8a2 2 0 0 0-2-2H4a2 2 0 0 0-2 2v8a2 2 0 0 0 2 2h9a2 2 0 0 0 2-2v-2.5l5 3.5V7l-5 3.5z"></path>
                    </svg>
                </button>
                </Show>
                <Show when=move || ctl.features.get().allows(CallKind::Screen)>
                <button class="icon" data-testid="screen-share" aria-label=t("Share your screen") title=title(t("Share your screen"))
                    prop:disabled=disabled on:click=move |_| ctl.start(CallKind::Screen)>
                    <svg viewBox="0 0 24 24" width="20" height="20" fill="currentColor" aria-hidden="true">
                        <path d="M3 4h18a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1h-7v2h3v2H7v-2h3v-2H3a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1z"></path>
                    </svg>
                </button>
                </Show>
            </div>
        </Show>
    }
}
