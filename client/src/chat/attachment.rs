//! A file in a message: an inline preview for images, and a download link for everything.

use escalera_protocol::Attachment;
use leptos::prelude::*;

use super::upload::human_size;
use crate::i18n::t;

/// The attachment of a message.
#[component]
pub fn AttachmentView(file: Attachment) -> impl IntoView {
    let url = format!("/files/{}", file.id);
    let image = file.is_image();
    view! {
        <div class="attachment" data-testid="attachment" data-sha256=file.sha256.clone()>
            {image.then(|| view! {
                <a href=url.clone() download=file.name.clone() class="preview">
                    <img src=url.clone() alt=file.name.clone() loading="lazy" />
                </a>
            })}
            <a href=url.clone() download=file.name.clone() class="file">
                <span class="file-name">{file.name.clone()}</span>
                <span class="file-meta">{format!("{} · {}", human_size(file.size), short_type(&file.mime))}</span>
            </a>
        </div>
    }
}

/// "PNG image", "PDF", "file"...
fn short_type(mime: &str) -> &'static str {
    match mime {
        "image/png" => t("PNG image"),
        "image/jpeg" => t("JPEG image"),
        "image/gif" => t("GIF image"),
        "image/webp" => t("WebP image"),
        "application/pdf" => "PDF",
        "application/zip" => t("ZIP archive"),
        m if m.starts_with("text/plain") => t("text"),
        m if m.starts_with("video/") => t("video"),
        m if m.starts_with("audio/") => t("audio"),
        _ => t("file"),
    }
}
