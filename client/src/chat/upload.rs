//! Sending files (and snapshots) into a conversation: an HTTP upload per file with a progress
//! bar, refused up front when over the relay's limit. The relay posts the file as a message.

use escalera_protocol::ConversationId;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::{Blob, XmlHttpRequest};

use crate::i18n::{t, t_relay, tf};

/// One upload under way (or failed).
#[derive(Clone, Debug, PartialEq)]
pub struct Upload {
    /// Local id, for the list.
    pub id: u32,
    /// The conversation it goes to: the console shows only the open conversation's uploads.
    pub conversation: ConversationId,
    /// The file's name.
    pub name: String,
    /// Its size in bytes.
    pub size: f64,
    /// Bytes sent so far.
    pub sent: f64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A request under way and the handlers it calls, kept until it ends.
struct Request {
    xhr: XmlHttpRequest,
    _progress: Closure<dyn FnMut(web_sys::ProgressEvent)>,
    _done: Closure<dyn FnMut()>,
}

impl Request {
    /// Detaches the handlers (they are dropped next) and stops the request if it still runs.
    fn cancel(self) {
        if let Ok(upload) = self.xhr.upload() {
            upload.set_onprogress(None);
        }
        self.xhr.set_onloadend(None);
        let _ = self.xhr.abort();
    }
}

/// The uploads of one widget or console.
#[derive(Clone, Copy)]
pub struct Uploader {
    /// What is under way, for the progress bars.
    pub list: RwSignal<Vec<Upload>>,
    /// The relay's limit in bytes (from the welcome).
    pub max: RwSignal<u64>,
    /// The visitor's token, sent as a bearer token (agents use their cookie).
    pub bearer: RwSignal<Option<String>>,
    next: StoredValue<u32>,
    requests: StoredValue<Vec<(u32, Request)>, LocalStorage>,
}

/// "2.4 MB" and the like (integer arithmetic: float formatting is heavy in WebAssembly).
pub fn human_size(bytes: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * 1024;
    if bytes < KB {
        format!("{bytes} B")
    } else if bytes < MB {
        format!("{} KB", (bytes + KB / 2) / KB)
    } else {
        let tenths = (bytes * 10 + MB / 2) / MB;
        format!("{}.{} MB", tenths / 10, tenths % 10)
    }
}

impl Uploader {
    /// An empty list; the limit until the welcome says otherwise is 25 MiB. Uploads still
    /// under way when the owner goes are stopped.
    pub fn new() -> Self {
        let requests = StoredValue::new_local(Vec::<(u32, Request)>::new());
        on_cleanup(move || {
            if let Some(list) = requests.try_update_value(std::mem::take) {
                list.into_iter().for_each(|(_, r)| r.cancel());
            }
        });
        Self {
            list: RwSignal::new(Vec::new()),
            max: RwSignal::new(25 << 20),
            bearer: RwSignal::new(None),
            next: StoredValue::new(0),
            requests,
        }
    }

    fn set(&self, id: u32, f: impl FnOnce(&mut Upload)) {
        self.list.update(|l| {
            if let Some(u) = l.iter_mut().find(|u| u.id == id) {
                f(u)
            }
        });
    }

    /// Forgets a failed upload (its "dismiss" button).
    pub fn dismiss(&self, id: u32) {
        self.list.update(|l| l.retain(|u| u.id != id));
    }

    /// Uploads `blob` as `name` into `conversation`.
    pub fn send(&self, conversation: &ConversationId, blob: &Blob, name: &str) {
        let id = self.next.get_value();
        self.next.set_value(id + 1);
        let size = blob.size();
        let mut upload = Upload {
            id,
            conversation: conversation.clone(),
            name: name.to_owned(),
            size,
            sent: 0.0,
            error: None,
        };
        let max = self.max.get_untracked();
        if size > max as f64 {
            let (size, max) = (human_size(size as u64), human_size(max));
            let v = [("name", name), ("size", &size), ("max", &max)];
            let text = tf("“{name}” is {size}; files can be at most {max}.", &v);
            upload.error = Some(text);
        } else if size == 0.0 {
            upload.error = Some(tf("“{name}” is empty.", &[("name", name)]));
        }
        let failed = upload.error.is_some();
        self.list.update(|l| l.push(upload));
        if failed {
            return;
        }
        if let Err(e) = self.start(id, conversation, blob, name) {
            let error = format!("{e:?}");
            let text = tf("The upload could not start: {error}", &[("error", &error)]);
            self.set(id, |u| u.error = Some(text));
        }
    }

    fn start(
        &self,
        id: u32,
        conversation: &ConversationId,
        blob: &Blob,
        name: &str,
    ) -> Result<(), JsValue> {
        let xhr = XmlHttpRequest::new()?;
        let query = web_sys::UrlSearchParams::new()?;
        query.append("name", name);
        let url = format!(
            "/api/conversations/{conversation}/files?{}",
            String::from(query.to_string())
        );
        xhr.open("POST", &url)?;
        if let Some(token) = self.bearer.get_untracked() {
            xhr.set_request_header("authorization", &format!("Bearer {token}"))?;
        }
        let this = *self;
        let progress =
            Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
                this.set(id, |u| u.sent = e.loaded());
            });
        xhr.upload()?
            .set_onprogress(Some(progress.as_ref().unchecked_ref()));
        let done = {
            let xhr = xhr.clone();
            Closure::<dyn FnMut()>::new(move || {
                match xhr.status() {
                    // 200: this file was stored before (a retry); either way it is in.
                    Ok(200 | 201) => this.dismiss(id),
                    Ok(0) => this.set(id, |u| {
                        u.error = Some(t("The upload failed: the connection was lost.").into())
                    }),
                    Ok(_) => {
                        let why = xhr.response_text().ok().flatten().unwrap_or_default();
                        let why = t_relay(&why);
                        this.set(id, |u| {
                            let values = [("name", u.name.as_str()), ("why", &why)];
                            u.error = Some(tf("“{name}” was not sent: {why}", &values))
                        });
                    }
                    Err(_) => this.set(id, |u| u.error = Some(t("The upload failed.").into())),
                }
                // The request is over: free its handlers (this one once it returns).
                this.requests
                    .update_value(|list| list.retain(|(other, _)| *other != id));
            })
        };
        xhr.set_onloadend(Some(done.as_ref().unchecked_ref()));
        xhr.send_with_opt_blob(Some(blob))?;
        self.requests.update_value(|list| {
            list.push((
                id,
                Request {
                    xhr,
                    _progress: progress,
                    _done: done,
                },
            ))
        });
        Ok(())
    }
}

impl Default for Uploader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(100 * 1024), "100 KB");
        assert_eq!(human_size(25 << 20), "25.0 MB");
        assert_eq!(human_size(2_516_582), "2.4 MB");
    }
}

/// The progress bars and errors of the uploads into `conversation`.
#[component]
pub fn UploadList(
    uploader: Uploader,
    #[prop(into)] conversation: Signal<Option<ConversationId>>,
) -> impl IntoView {
    let shown = move || {
        let open = conversation.get();
        uploader.list.with(|l| {
            l.iter()
                .filter(|u| Some(&u.conversation) == open.as_ref())
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    view! {
        <div class="uploads" aria-live="polite">
            <For each=shown key=|u| (u.id, u.error.is_some()) let:u>
                {
                    let id = u.id;
                    let percent = move || {
                        uploader
                            .list
                            .with(|l| l.iter().find(|x| x.id == id).map_or(0.0, |x| x.sent / x.size.max(1.0) * 100.0))
                    };
                    match u.error.clone() {
                        Some(error) => view! {
                            <div class="upload failed" role="alert" data-testid="upload-error">
                                <span>{error}</span>
                                <button class="link" on:click=move |_| uploader.dismiss(id)>{t("Dismiss")}</button>
                            </div>
                        }
                        .into_any(),
                        None => view! {
                            <div class="upload" data-testid="upload-progress">
                                <span class="name">{u.name.clone()}</span>
                                <progress max="100" prop:value=percent></progress>
                            </div>
                        }
                        .into_any(),
                    }
                }
            </For>
        </div>
    }
}
