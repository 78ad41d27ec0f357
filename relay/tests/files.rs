//! Files over real HTTP: upload limits, type sniffing, authorisation, random ids, downloads.

mod common;

use common::TestRelay;
use escalera_protocol::{Author, Message, ServerMsg};
use sha2::{Digest, Sha256};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRrest-of-a-png";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn upload(
    relay: &TestRelay,
    conv: &str,
    name: &str,
    auth: (&str, &str),
    body: Vec<u8>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(relay.url(&format!("/api/conversations/{conv}/files")))
        .query(&[("name", name)])
        .header(auth.0, auth.1)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn uploads_are_sniffed_posted_and_downloadable_only_by_participants() {
    let relay = TestRelay::start().await;
    let (mut visitor, mut agent, conv, token) = relay.pair().await;
    let bearer = format!("Bearer {token}");

    // A PNG that claims to be text is a PNG; HTML is served as text, never as HTML.
    let res = upload(
        &relay,
        &conv.0,
        "notes.txt",
        ("authorization", &bearer),
        PNG.to_vec(),
    )
    .await;
    assert_eq!(res.status(), 201);
    let posted: Message = res.json().await.unwrap();
    let file = posted.attachment.clone().unwrap();
    assert_eq!(
        (file.mime.as_str(), file.size, file.name.as_str()),
        ("image/png", PNG.len() as u64, "notes.txt")
    );
    assert_eq!(file.sha256, hex(&Sha256::digest(PNG)));
    assert_eq!(file.id.0.len(), 32);
    assert_eq!(posted.author, Author::Visitor);
    assert!(relay.dir.path().join("files").join(&file.id.0).is_file());
    // Both sides get it as a chat message.
    for ws in [&mut visitor, &mut agent] {
        let m = ws
            .recv_until(|m| match m {
                ServerMsg::Message(m) if m.attachment.is_some() => Some(m),
                _ => None,
            })
            .await;
        assert_eq!(m, posted);
    }
    let html = b"<html><script>alert(1)</script>".to_vec();
    let cookie = relay.login("ana@shop.example").await;
    let res = upload(&relay, &conv.0, "page.html", ("cookie", &cookie), html).await;
    assert_eq!(res.status(), 201);
    let other: Message = res.json().await.unwrap();
    assert_eq!(other.author, Author::Agent);
    assert_eq!(
        other.attachment.as_ref().unwrap().mime,
        "text/plain; charset=utf-8"
    );
    assert_ne!(other.attachment.as_ref().unwrap().id, file.id);

    // The agent downloads it: same bytes, as an attachment, never sniffed by the browser.
    let http = reqwest::Client::new();
    let url = relay.url(&format!("/files/{}", file.id));
    let res = http
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"notes.txt\""));
    assert_eq!(res.bytes().await.unwrap().as_ref(), PNG);

    // The visitor, by token or by the cookie the widget sets.
    let res = http
        .get(&url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = http
        .post(relay.url("/api/visitor/session"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 204);
    let set = session.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("Path=/files"),
        "{set}"
    );
    let visitor_cookie = set.split(';').next().unwrap().to_owned();
    let res = http
        .get(&url)
        .header("cookie", &visitor_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A stranger: 403. Another conversation's visitor: 404. No such file: 404.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403);
    let (_other, other_token, _) = relay.visitor(None).await;
    let res = http
        .get(&url)
        .header("authorization", format!("Bearer {other_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = upload(
        &relay,
        &conv.0,
        "x.png",
        ("authorization", &format!("Bearer {other_token}")),
        PNG.to_vec(),
    )
    .await;
    assert_eq!(res.status(), 404);
    let res = upload(&relay, &conv.0, "x.png", ("x-nothing", "1"), PNG.to_vec()).await;
    assert_eq!(res.status(), 403);
    let res = http
        .get(relay.url("/files/00000000000000000000000000000000"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Ben serves another site only.
    let ben = relay.login("ben@shop.example").await;
    assert_eq!(
        http.get(&url)
            .header("cookie", &ben)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    relay.stop().await;
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_whether_announced_or_streamed() {
    let relay = TestRelay::start_with(escalera_relay::Config {
        max_upload: 1 << 20,
        ..Default::default()
    })
    .await;
    let (_visitor, _agent, conv, token) = relay.pair().await;
    let bearer = format!("Bearer {token}");
    let res = upload(
        &relay,
        &conv.0,
        "big.bin",
        ("authorization", &bearer),
        vec![7; (1 << 20) + 1],
    )
    .await;
    assert_eq!(res.status(), 413);
    assert!(res.text().await.unwrap().contains("1 MiB"));

    // Without a Content-Length the relay counts as it reads, and stops.
    let chunks = (0..3).map(|_| Ok::<_, std::io::Error>(vec![1u8; 512 * 1024]));
    let res = reqwest::Client::new()
        .post(relay.url(&format!("/api/conversations/{conv}/files?name=s.bin")))
        .header("authorization", &bearer)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Nothing is left behind, and exactly the limit is fine.
    let files = relay.dir.path().join("files");
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 0);
    let res = upload(
        &relay,
        &conv.0,
        "ok.bin",
        ("authorization", &bearer),
        vec![7; 1 << 20],
    )
    .await;
    assert_eq!(res.status(), 201);
    let empty = upload(&relay, &conv.0, "empty", ("authorization", &bearer), vec![]).await;
    assert_eq!(empty.status(), 400);
    relay.stop().await;
}

#[tokio::test]
async fn a_site_can_set_a_lower_upload_limit_than_the_relays() {
    let relay = TestRelay::start().await;
    relay
        .set_features(escalera_protocol::SiteFeatures {
            max_upload: Some(64 << 10),
            ..Default::default()
        })
        .await;
    let (_visitor, _agent, conv, token) = relay.pair().await;
    let bearer = format!("Bearer {token}");
    let res = upload(
        &relay,
        &conv.0,
        "big.bin",
        ("authorization", &bearer),
        vec![7; (64 << 10) + 1],
    )
    .await;
    assert_eq!(res.status(), 413);
    assert!(res.text().await.unwrap().contains("this site's"));
    let res = upload(
        &relay,
        &conv.0,
        "ok.bin",
        ("authorization", &bearer),
        vec![7; 64 << 10],
    )
    .await;
    assert_eq!(res.status(), 201);
    // The widget is told, to refuse bigger files before sending them.
    let (_, welcome) = relay.visitor_welcome(Some(token)).await;
    let escalera_protocol::ServerMsg::WelcomeVisitor { features, .. } = welcome else {
        panic!("{welcome:?}")
    };
    assert_eq!(features.max_upload, Some(64 << 10));
    relay.stop().await;
}

#[tokio::test]
async fn orphaned_and_partial_files_are_swept_once_old() {
    // Rule: files no message points at (a crash between the disk and the database) and
    // partial uploads are removed once an hour old; files of messages stay.
    let relay = TestRelay::start().await;
    let (_visitor, _agent, conv, token) = relay.pair().await;
    let res = upload(
        &relay,
        &conv.0,
        "kept.png",
        ("authorization", &format!("Bearer {token}")),
        PNG.to_vec(),
    )
    .await;
    assert_eq!(res.status(), 201);
    let dir = relay.dir.path().join("files");
    std::fs::write(dir.join("0123456789abcdef0123456789abcdef"), b"orphan").unwrap();
    std::fs::write(dir.join(".part-fedcba9876543210"), b"partial").unwrap();
    std::fs::write(dir.join("fresh0123456789abcdef0123456789"), b"young orphan").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.ends_with("fresh0123456789abcdef0123456789") {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(two_hours_ago).unwrap();
        }
    }
    let store = relay.record().await;
    let removed = escalera_relay::files::sweep(&*store, &dir).await.unwrap();
    assert_eq!(removed, 2);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"fresh0123456789abcdef0123456789".to_owned()));
    relay.stop().await;
}
