//! A file in a message: an inline preview for images, and a download link for everything.

use escalera_protocol::Attachment;
use leptos::prelude::*;

use super::upload::human_size;

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
fn short_type(mime: &str) -> String {
    match mime {
        "image/png" => "PNG image".into(),
        "image/jpeg" => "JPEG image".into(),
        "image/gif" => "GIF image".into(),
        "image/webp" => "WebP image".into(),
        "application/pdf" => "PDF".into(),
        "application/zip" => "ZIP archive".into(),
        m if m.starts_with("text/plain") => "text".into(),
        m if m.starts_with("video/") => "video".into(),
        m if m.starts_with("audio/") => "audio".into(),
        _ => "file".into(),
    }
}
