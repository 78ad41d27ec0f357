//! The login form.

use leptos::prelude::*;

use super::root::Me;
use crate::browser;
use crate::i18n::{t, tf};

/// Email and password; on success hands the agent to `on_login`.
#[component]
pub fn Login(on_login: Callback<Me>) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        let body = serde_json::json!({ "email": email.get_untracked(), "password": password.get_untracked() });
        leptos::task::spawn_local(async move {
            let result = browser::fetch("POST", "/api/login", Some(body.to_string())).await;
            busy.set(false);
            match result {
                Ok(r) if r.status == 200 => match serde_json::from_str::<Me>(&r.body) {
                    Ok(me) => on_login.run(me),
                    Err(_) => error.set(Some(t("Unexpected answer from the server.").into())),
                },
                Ok(r) if r.status == 401 => error.set(Some(t("Wrong email or password.").into())),
                Ok(r) => {
                    let status = r.status.to_string();
                    let v = [("status", status.as_str())];
                    error.set(Some(tf("Login failed ({status}). Try again.", &v)))
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <main class="login">
            <form class="card" on:submit=submit>
                <h1>"Escalera"</h1>
                <p class="hint">{t("Log in to answer your visitors.")}</p>
                <label>
                    {t("Email")}
                    <input
                        type="email"
                        data-testid="login-email"
                        autocomplete="username"
                        required
                        prop:value=move || email.get()
                        on:input=move |ev| email.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    {t("Password")}
                    <input
                        type="password"
                        data-testid="login-password"
                        autocomplete="current-password"
                        required
                        prop:value=move || password.get()
                        on:input=move |ev| password.set(event_target_value(&ev))
                    />
                </label>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert" data-testid="login-error">{move || error.get()}</p>
                </Show>
                <button type="submit" data-testid="login-submit" prop:disabled=move || busy.get()>
                    {move || if busy.get() { t("Logging in…") } else { t("Log in") }}
                </button>
                <super::language::LanguageSelect />
            </form>
        </main>
    }
}
