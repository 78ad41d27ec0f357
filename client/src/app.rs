//! The root: the widget on `/embed`, the console everywhere else.

use leptos::prelude::*;

use crate::console::Console;
use crate::widget::Widget;

/// Picks the app for the page's path. (No router: two pages do not need one, and the widget
/// stays small.)
#[component]
pub fn App() -> impl IntoView {
    let path = crate::browser::window()
        .location()
        .pathname()
        .unwrap_or_default();
    if path.starts_with("/embed") {
        view! { <Widget /> }.into_any()
    } else {
        view! { <Console /> }.into_any()
    }
}
