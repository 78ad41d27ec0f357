//! The store's contract, one suite run against both backends: the embedded SQLite store and
//! PostgreSQL (a real server started by the tests, tests/common/postgres.rs). Each test is
//! written once, against the traits, and run once per backend.

mod common;

use std::collections::HashSet;

use escalera_protocol::{Presence, SiteFeatures, SiteKey};

use escalera_protocol::{
    Attachment, Author, CallKind, ClientMsgId, ConversationId, FileId, Rating, ReadMark,
    SystemEvent,
};
use escalera_relay::core::Scope;
use escalera_relay::core::{CallRecord, ConversationMeta, NewMessage};
use escalera_relay::postgres::PgStore;
use escalera_relay::secrets;
use escalera_relay::sqlite::SqliteStore;
use escalera_relay::store::{search_words, AuditEntry, Directory, Log, Site, VerifiedUser};

/// Runs each named test against both backends: `sqlite::NAME` and `postgres::NAME`. A test
/// gets `open`, which opens the store (again: another process on the same record, e.g. a
/// second relay node, or one restarted).
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(async || super::SqliteStore::open(dir.path()).unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let url = crate::common::postgres::database().await;
                    super::$name(async || super::PgStore::connect(&url).await.unwrap()).await;
                }
            )*
        }
    };
}

contract!(
    sites_are_added_changed_and_listed_by_scope,
    agents_log_in_by_email_and_their_sessions_end_with_their_access,
    agents_are_listed_changed_and_removed_with_their_email_freed,
    canned_replies_settings_and_the_audit_log_keep_what_was_saved,
    append_assigns_seq_and_dedupes_client_ids,
    appends_from_two_stores_at_once_get_every_seq_once_and_each_message_once,
    a_link_back_works_once_before_it_expires_on_its_own_site,
    a_visitors_history_skips_notes_but_covers_their_seqs,
    assign_is_first_come,
    summaries_put_waiting_first_and_respect_scope,
    attachments_are_recorded_with_their_messages,
    active_calls_are_kept_until_they_end,
    search_finds_every_word_the_last_half_typed_whatever_the_case_and_accents,
    visitors_their_tokens_and_verified_users_find_their_conversation,
    counts_from_two_stores_add_up_in_one_window_and_start_again_after_it,
);

fn scope(sites: &[&SiteKey]) -> Scope {
    Scope::Sites(sites.iter().map(|s| (*s).clone()).collect::<HashSet<_>>())
}

async fn sites_are_added_changed_and_listed_by_scope<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let shop = s
        .add_site("Shop".into(), vec!["https://shop.example".into()], 1)
        .await
        .unwrap();
    let blog = s.add_site("Blog".into(), vec![], 2).await.unwrap();
    assert_ne!(shop.key, blog.key);
    assert_eq!(shop.identity_secret.len(), 64, "a fresh secret per site");
    assert_ne!(shop.identity_secret, blog.identity_secret);
    assert_eq!(s.site(shop.key.clone()).await.unwrap(), Some(shop.clone()));
    assert_eq!(s.site(SiteKey("nope".into())).await.unwrap(), None);

    // An origin is added once, however often it is allowed.
    for _ in 0..2 {
        s.allow_origin(shop.key.clone(), "https://www.shop.example".into())
            .await
            .unwrap();
    }
    let read = s.site(shop.key.clone()).await.unwrap().unwrap();
    assert_eq!(
        read.origins,
        vec!["https://shop.example", "https://www.shop.example"]
    );

    // Saved whole: name, origins (replaced), features, look, identity.
    let mut changed = read.clone();
    changed.name = "Shop & Co".into();
    changed.origins = vec!["https://co.example".into()];
    changed.features = SiteFeatures {
        video: false,
        max_upload: Some(1000),
        ..SiteFeatures::default()
    };
    changed.look.greeting = "Hola".into();
    changed.look.color = "#123456".into();
    changed.identity_required = true;
    assert!(s.save_site(changed.clone()).await.unwrap());
    assert_eq!(
        s.site(shop.key.clone()).await.unwrap(),
        Some(changed.clone())
    );
    let ghost = Site {
        key: SiteKey("ghost".into()),
        ..changed.clone()
    };
    assert!(!s.save_site(ghost).await.unwrap());

    let voice_only = SiteFeatures {
        video: false,
        screen: false,
        ..SiteFeatures::default()
    };
    assert!(s.set_features(blog.key.clone(), voice_only).await.unwrap());
    assert!(!s
        .set_features(SiteKey("ghost".into()), voice_only)
        .await
        .unwrap());
    assert_eq!(
        s.site(blog.key.clone()).await.unwrap().unwrap().features,
        voice_only
    );

    // By name; only the scope's.
    let names = |sites: Vec<Site>| sites.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.sites_of(Scope::All).await.unwrap()),
        vec!["Blog", "Shop & Co"]
    );
    assert_eq!(
        names(s.sites_of(scope(&[&shop.key])).await.unwrap()),
        vec!["Shop & Co"]
    );
    assert!(s.sites_of(scope(&[])).await.unwrap().is_empty());
}

async fn agents_log_in_by_email_and_their_sessions_end_with_their_access<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let shop = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    assert_eq!(s.agent_count().await.unwrap(), 0);
    let ana = s
        .add_agent(
            " Ana@Shop.Example ".into(),
            "Ana".into(),
            "hash-1".into(),
            Some(vec![shop.key.clone()]),
            1,
        )
        .await
        .unwrap();
    assert_eq!(ana.email, "ana@shop.example");
    assert_eq!(ana.scope, scope(&[&shop.key]));
    assert_eq!(
        (ana.presence, ana.limit, ana.admin),
        (Presence::Available, 5, false)
    );
    // One agent per email, whatever its case; no agent for a site that is not there.
    let again = s.add_agent(
        "ANA@shop.example".into(),
        "Other".into(),
        "h".into(),
        None,
        2,
    );
    assert!(again.await.is_err());
    let nowhere = s.add_agent(
        "bo@shop.example".into(),
        "Bo".into(),
        "h".into(),
        Some(vec![SiteKey("ghost".into())]),
        2,
    );
    assert!(nowhere.await.is_err());
    assert_eq!(s.agent_count().await.unwrap(), 1);
    let found = s.agent_by_email("ANA@shop.example".into()).await.unwrap();
    assert_eq!(found.map(|a| a.agent), Some(ana.agent.clone()));

    // Sessions: live until they expire.
    for (hash, expires) in [("live", 100), ("old", 10)] {
        s.add_session(hash.into(), ana.agent.id.clone(), expires)
            .await
            .unwrap();
    }
    let who = s.session_agent("live".into(), 50).await.unwrap();
    assert_eq!(who.map(|a| a.agent), Some(ana.agent.clone()));
    assert!(s.session_agent("old".into(), 50).await.unwrap().is_none());
    assert!(s.session_agent("never".into(), 50).await.unwrap().is_none());
    let asked = vec!["never".into(), "live".into(), "old".into()];
    assert_eq!(s.live_sessions(asked, 50).await.unwrap(), vec!["live"]);
    assert_eq!(s.purge_sessions(50).await.unwrap(), 1);
    s.delete_session("live".into()).await.unwrap();
    assert!(s.session_agent("live".into(), 50).await.unwrap().is_none());

    // A new password ends every session.
    s.add_session("a".into(), ana.agent.id.clone(), 100)
        .await
        .unwrap();
    assert!(s
        .set_password("ana@shop.example".into(), "hash-2".into())
        .await
        .unwrap());
    assert!(!s
        .set_password("nobody@shop.example".into(), "x".into())
        .await
        .unwrap());
    assert!(s.session_agent("a".into(), 50).await.unwrap().is_none());
    let ana2 = s.agent_by_email("ana@shop.example".into()).await.unwrap();
    assert_eq!(ana2.unwrap().password_hash, "hash-2");

    // Disabled: nobody, sessions gone; enabled again: back.
    s.add_session("b".into(), ana.agent.id.clone(), 100)
        .await
        .unwrap();
    assert!(s
        .set_disabled("ana@shop.example".into(), true, 60)
        .await
        .unwrap());
    assert!(s
        .agent_by_email("ana@shop.example".into())
        .await
        .unwrap()
        .is_none());
    assert!(s.session_agent("b".into(), 50).await.unwrap().is_none());
    assert!(s
        .set_disabled("ana@shop.example".into(), false, 61)
        .await
        .unwrap());
    assert!(s
        .agent_by_email("ana@shop.example".into())
        .await
        .unwrap()
        .is_some());
}

async fn agents_are_listed_changed_and_removed_with_their_email_freed<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let shop = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let blog = s.add_site("Blog".into(), vec![], 0).await.unwrap();
    let bo = s
        .add_agent("bo@x.example".into(), "Bo".into(), "h".into(), None, 1)
        .await
        .unwrap();
    s.add_agent("al@x.example".into(), "Al".into(), "h".into(), None, 2)
        .await
        .unwrap();
    assert_eq!(bo.scope, Scope::All);
    s.add_session("s1".into(), bo.agent.id.clone(), 100)
        .await
        .unwrap();
    s.add_session("s2".into(), bo.agent.id.clone(), 10)
        .await
        .unwrap();

    // Limit, admin, sites, presence: kept.
    assert!(s.set_limit("BO@x.example".into(), 9).await.unwrap());
    assert!(!s.set_limit("ghost@x.example".into(), 9).await.unwrap());
    assert!(s.set_admin("bo@x.example".into(), true).await.unwrap());
    assert!(!s.set_admin("ghost@x.example".into(), true).await.unwrap());
    assert!(s
        .set_sites(
            "bo@x.example".into(),
            Some(vec![shop.key.clone(), blog.key.clone()])
        )
        .await
        .unwrap());
    let unknown = s.set_sites("bo@x.example".into(), Some(vec![SiteKey("ghost".into())]));
    assert!(unknown.await.is_err());
    s.set_presence(bo.agent.id.clone(), Presence::Away)
        .await
        .unwrap();
    let read = s
        .agent_by_email("bo@x.example".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (read.limit, read.admin, read.presence, read.scope),
        (9, true, Presence::Away, scope(&[&shop.key, &blog.key]))
    );
    assert!(s.set_sites("bo@x.example".into(), None).await.unwrap());
    assert!(!s.set_sites("ghost@x.example".into(), None).await.unwrap());
    let read = s
        .agent_by_email("bo@x.example".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.scope, Scope::All);

    // Listed by email, with live sessions counted and the disabled shown as such.
    assert!(s
        .set_disabled("al@x.example".into(), true, 5)
        .await
        .unwrap());
    let listed: Vec<_> = s
        .agents(50)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.agent.email, l.disabled, l.sessions))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("al@x.example".to_owned(), true, 0),
            ("bo@x.example".to_owned(), false, 1)
        ]
    );

    // Removed: gone from the list, sessions ended, the email free for someone new.
    assert!(s.remove_agent("bo@x.example".into(), 60).await.unwrap());
    assert!(!s.remove_agent("bo@x.example".into(), 61).await.unwrap());
    assert!(s.session_agent("s1".into(), 50).await.unwrap().is_none());
    let left: Vec<_> = s.agents(50).await.unwrap();
    assert_eq!(left.len(), 1);
    let new_bo = s
        .add_agent("bo@x.example".into(), "Bo 2".into(), "h".into(), None, 70)
        .await
        .unwrap();
    assert_ne!(new_bo.agent.id, bo.agent.id);
}

async fn canned_replies_settings_and_the_audit_log_keep_what_was_saved<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let shop = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let blog = s.add_site("Blog".into(), vec![], 0).await.unwrap();
    let hi = s
        .save_canned(shop.key.clone(), "hi".into(), "Hello!".into(), 1)
        .await
        .unwrap();
    // The same shortcut on the same site replaces the text, and keeps the id.
    let hi2 = s
        .save_canned(shop.key.clone(), "hi".into(), "Hello there!".into(), 2)
        .await
        .unwrap();
    assert_eq!(hi2.id, hi.id);
    let bye = s
        .save_canned(blog.key.clone(), "bye".into(), "Bye!".into(), 3)
        .await
        .unwrap();
    let all = s.canned(Scope::All).await.unwrap();
    let texts: Vec<_> = all
        .iter()
        .map(|c| (c.shortcut.as_str(), c.text.as_str()))
        .collect();
    assert_eq!(texts, vec![("bye", "Bye!"), ("hi", "Hello there!")]);
    assert_eq!(s.canned(scope(&[&shop.key])).await.unwrap(), vec![hi2]);
    // Only within the scope's sites.
    assert!(!s
        .delete_canned(bye.id.clone(), scope(&[&shop.key]))
        .await
        .unwrap());
    assert!(s
        .delete_canned(bye.id.clone(), scope(&[&blog.key]))
        .await
        .unwrap());
    assert!(!s.delete_canned(bye.id, Scope::All).await.unwrap());

    assert_eq!(s.setting("demo".into()).await.unwrap(), None);
    for value in ["one", "two"] {
        s.set_setting("demo".into(), value.into()).await.unwrap();
    }
    assert_eq!(
        s.setting("demo".into()).await.unwrap().as_deref(),
        Some("two")
    );

    for i in 0..5 {
        let entry = AuditEntry {
            at: i,
            actor: "Ana".into(),
            action: "site.update".into(),
            detail: format!("change {i}"),
        };
        s.record(entry).await.unwrap();
    }
    let newest: Vec<_> = s
        .audit(3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(newest, vec![4, 3, 2]);
}

fn chat(conv: &ConversationId, cid: &str, text: &str) -> NewMessage {
    NewMessage {
        conversation: conv.clone(),
        client_id: Some(ClientMsgId::from(cid)),
        author: Author::Visitor,
        author_name: None,
        text: text.into(),
        event: None,
        attachment: None,
        at: 1,
    }
}

async fn conversation(s: &impl Log, site: &SiteKey, visitor: &str) -> ConversationId {
    let meta = ConversationMeta::new(ConversationId(secrets::random_id()), site.clone(), None);
    s.add_visitor(meta.clone(), visitor.into(), "192.0.2.1".into(), 0)
        .await
        .unwrap();
    meta.id
}

async fn append_assigns_seq_and_dedupes_client_ids<S: Directory + Log>(open: impl AsyncFn() -> S) {
    let s = open().await;
    let site = s
        .add_site("Shop".into(), vec!["https://a.example".into()], 0)
        .await
        .unwrap();
    let conv = conversation(&s, &site.key, "h").await;
    let one = s.append(chat(&conv, "x", "one")).await.unwrap();
    let two = s.append(chat(&conv, "y", "two")).await.unwrap();
    let again = s.append(chat(&conv, "x", "one (resent)")).await.unwrap();
    assert_eq!((one.message.seq, two.message.seq), (1, 2));
    assert!(one.fresh && two.fresh && !again.fresh);
    assert_eq!(again.message, one.message);
    let preview = async || {
        let rows = s.summaries_of(vec![conv.clone(), "unknown".into()]);
        let rows = rows.await.unwrap();
        assert_eq!(rows.len(), 1);
        rows[0].preview.clone()
    };
    assert_eq!(preview().await, "two");
    let all = s.messages_after(conv.clone(), 0, 100, true).await.unwrap();
    assert_eq!((all.messages.len(), all.upto, all.full), (2, 2, false));
    let after = s.messages_after(conv.clone(), 1, 100, true).await.unwrap();
    assert_eq!(after.messages, vec![two.message]);
    // The relay's own lines and notes do not become the list's preview.
    for author in [Author::System, Author::Note] {
        let line = NewMessage {
            author,
            client_id: None,
            ..chat(&conv, "", "Ana joined the conversation")
        };
        s.append(line).await.unwrap();
        assert_eq!(preview().await, "two");
    }
    // A system line keeps what it records, for each browser's language.
    let joined = SystemEvent::Joined {
        agent: "Ana".into(),
    };
    let line = NewMessage {
        author: Author::System,
        client_id: None,
        event: Some(joined.clone()),
        ..chat(&conv, "", &joined.english())
    };
    let stored = s.append(line).await.unwrap().message;
    assert_eq!(stored.event, Some(Box::new(joined)));
    let read = s
        .messages_after(conv.clone(), stored.seq - 1, 1, true)
        .await
        .unwrap();
    assert_eq!(read.messages, vec![stored]);
}

async fn a_link_back_works_once_before_it_expires_on_its_own_site<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let site = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let other = s.add_site("Other".into(), vec![], 0).await.unwrap();
    let conv = conversation(&s, &site.key, "h").await;
    let life = escalera_relay::store::LINK_LIFE_MS;
    for link in ["good", "late", "elsewhere"] {
        s.add_link(conv.clone(), link.into(), 1_000 + life)
            .await
            .unwrap();
    }
    let redeem = |site: &SiteKey, link: &str, token: &str, now: i64| {
        s.redeem_link(site.clone(), link.into(), token.into(), now)
    };
    // Another site's widget cannot use it (and it is gone).
    assert_eq!(
        redeem(&other.key, "elsewhere", "t0", 2_000).await.unwrap(),
        None
    );
    assert_eq!(
        redeem(&site.key, "elsewhere", "t0", 2_000).await.unwrap(),
        None
    );
    // Expired.
    assert_eq!(
        redeem(&site.key, "late", "t1", 1_000 + life).await.unwrap(),
        None
    );
    // Good once: the new token has the conversation; a second use gets nothing.
    let meta = redeem(&site.key, "good", "t2", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.id, conv);
    assert_eq!(
        s.visitor_conversation(site.key.clone(), "t2".into())
            .await
            .unwrap()
            .map(|m| m.id),
        Some(conv.clone())
    );
    assert_eq!(redeem(&site.key, "good", "t3", 2_000).await.unwrap(), None);
    assert_eq!(
        s.visitor_conversation(site.key.clone(), "t3".into())
            .await
            .unwrap(),
        None
    );
}

async fn a_visitors_history_skips_notes_but_covers_their_seqs<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let site = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let conv = conversation(&s, &site.key, "h").await;
    s.append(chat(&conv, "a", "hello")).await.unwrap();
    let mut note = chat(&conv, "n", "VIP customer, refund quietly");
    note.author = Author::Note;
    s.append(note).await.unwrap();
    s.append(chat(&conv, "b", "still there?")).await.unwrap();
    // An agent's page has the note; a visitor's does not, and still covers seq 1 to 3.
    let agent = s.messages_after(conv.clone(), 0, 100, true).await.unwrap();
    assert_eq!(agent.messages.len(), 3);
    let visitor = s.messages_after(conv.clone(), 0, 100, false).await.unwrap();
    let seqs: Vec<u64> = visitor.messages.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, visitor.upto), (vec![1, 3], 3));
    assert!(visitor.messages.iter().all(|m| !m.text.contains("VIP")));
    // A full page of two rows ends on the note: the next starts after it.
    let first = s.messages_after(conv, 0, 2, false).await.unwrap();
    assert_eq!((first.messages.len(), first.upto, first.full), (1, 2, true));
}

async fn assign_is_first_come<S: Directory + Log>(open: impl AsyncFn() -> S) {
    let s = open().await;
    let site = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let a = s
        .add_agent("A@x.example".into(), "A".into(), "h".into(), None, 0)
        .await
        .unwrap();
    let b = s
        .add_agent(
            "b@x.example".into(),
            "B".into(),
            "h".into(),
            Some(vec![site.key.clone()]),
            0,
        )
        .await
        .unwrap();
    assert!(s
        .add_agent("a@x.example".into(), "dup".into(), "h".into(), None, 0)
        .await
        .is_err());
    let conv = conversation(&s, &site.key, "h").await;
    let (ida, idb) = (Some(a.agent.id.clone()), Some(b.agent.id.clone()));
    assert!(s.reassign(conv.clone(), None, ida.clone()).await.unwrap());
    assert!(!s.reassign(conv.clone(), None, idb.clone()).await.unwrap());
    assert!(s.reassign(conv.clone(), None, ida.clone()).await.unwrap());
    assert_eq!(
        s.conversation(conv.clone()).await.unwrap().unwrap().agent,
        Some(a.agent.clone())
    );
    // A transfer moves it only from who has it.
    assert!(!s.reassign(conv.clone(), idb.clone(), None).await.unwrap());
    assert!(s
        .reassign(conv.clone(), ida.clone(), idb.clone())
        .await
        .unwrap());
    // Closed by its agent only; rated once; reopened with whoever the relay says.
    assert!(!s.rate(conv.clone(), Rating::Up).await.unwrap());
    assert!(!s.close(conv.clone(), a.agent.id.clone(), 5).await.unwrap());
    assert!(s.close(conv.clone(), b.agent.id.clone(), 5).await.unwrap());
    assert!(!s.close(conv.clone(), b.agent.id.clone(), 6).await.unwrap());
    assert!(!s.reassign(conv.clone(), None, ida.clone()).await.unwrap());
    let meta = s.conversation(conv.clone()).await.unwrap().unwrap();
    assert!(meta.closed && !meta.rated);
    assert!(s.rate(conv.clone(), Rating::Down).await.unwrap());
    assert!(!s.rate(conv.clone(), Rating::Up).await.unwrap());
    assert!(s.conversation(conv.clone()).await.unwrap().unwrap().rated);
    assert!(s.open_conversations().await.unwrap().is_empty());
    assert!(s.reopen(conv.clone(), None).await.unwrap());
    assert!(!s.reopen(conv.clone(), None).await.unwrap());
    let meta = s.conversation(conv.clone()).await.unwrap().unwrap();
    assert!(!meta.closed && meta.agent.is_none());
    let found = s.agent_by_email("a@X.example".into()).await.unwrap();
    assert_eq!(found.unwrap().scope, Scope::All);
}

async fn summaries_put_waiting_first_and_respect_scope<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let s1 = s.add_site("One".into(), vec![], 0).await.unwrap();
    let s2 = s.add_site("Two".into(), vec![], 0).await.unwrap();
    let a = s
        .add_agent("a@x.example".into(), "A".into(), "h".into(), None, 0)
        .await
        .unwrap();
    let c1 = conversation(&s, &s1.key, "1").await;
    let c2 = conversation(&s, &s1.key, "2").await;
    let c3 = conversation(&s, &s2.key, "3").await;
    let _empty = conversation(&s, &s1.key, "4").await;
    for (i, c) in [&c1, &c2, &c3].into_iter().enumerate() {
        let mut m = chat(c, "m", &format!("hello\n{i}"));
        m.at = 10 + i as i64;
        s.append(m).await.unwrap();
    }
    s.reassign(c3.clone(), None, Some(a.agent.id.clone()))
        .await
        .unwrap();
    let all: Vec<_> = s
        .summaries(Scope::All, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(all, vec![c2.clone(), c1.clone(), c3]);
    let only_one = s
        .summaries(Scope::Sites([s1.key.clone()].into()), 50)
        .await
        .unwrap();
    assert_eq!(only_one.len(), 2);
    assert_eq!(only_one[0].preview, "hello 1");
    let none = s.summaries(Scope::Sites(Default::default()), 50).await;
    assert!(none.unwrap().is_empty());
    s.mark_read(a.agent.id.clone(), c1.clone(), 3)
        .await
        .unwrap();
    s.mark_read(a.agent.id.clone(), c1.clone(), 2)
        .await
        .unwrap();
    assert_eq!(
        s.read_marks(a.agent.id.clone()).await.unwrap(),
        vec![ReadMark {
            conversation: c1,
            seq: 3
        }]
    );
}

async fn attachments_are_recorded_with_their_messages<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let site = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let conv = conversation(&s, &site.key, "h").await;
    let file = Attachment {
        id: FileId::from("f"),
        name: "a.png".into(),
        size: 3,
        mime: "image/png".into(),
        sha256: "ab".into(),
    };
    let mut m = chat(&conv, "x", "a.png");
    m.attachment = Some(file.clone());
    let stored = s.append(m).await.unwrap();
    assert_eq!(stored.message.attachment.as_ref(), Some(&file));
    let history = s.messages_after(conv.clone(), 0, 10, true).await.unwrap();
    assert_eq!(history.messages[0].attachment, Some(file.clone()));
    assert_eq!(s.file(file.id.clone()).await.unwrap(), Some((conv, file)));
    assert_eq!(s.file(FileId::from("nope")).await.unwrap(), None);
}

async fn active_calls_are_kept_until_they_end<S: Directory + Log>(open: impl AsyncFn() -> S) {
    let s = open().await;
    let site = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let conv = conversation(&s, &site.key, "h").await;
    let record = CallRecord {
        site: site.key.clone(),
        kind: CallKind::Screen,
        caller: Author::Agent,
        caller_name: "Ana".into(),
        since: 42,
    };
    s.save_call(conv.clone(), Some(record.clone()))
        .await
        .unwrap();
    // Another process on the same record (a restarted relay, another node) finds it.
    let reopened = open().await;
    assert_eq!(
        reopened.calls().await.unwrap(),
        vec![(conv.clone(), record)]
    );
    s.save_call(conv, None).await.unwrap();
    assert!(reopened.calls().await.unwrap().is_empty());
}

async fn appends_from_two_stores_at_once_get_every_seq_once_and_each_message_once<
    S: Directory + Log,
>(
    open: impl AsyncFn() -> S,
) {
    // Two stores on one record: two relay nodes writing to one conversation at once.
    let (a, b) = (open().await, open().await);
    let site = a.add_site("Shop".into(), vec![], 0).await.unwrap();
    let conv = conversation(&a, &site.key, "h").await;
    const N: usize = 1_000;
    let mut writes = Vec::new();
    for i in 0..N {
        let store: &S = if i % 2 == 0 { &a } else { &b };
        writes.push(store.append(chat(&conv, &format!("m{i}"), &format!("{i}"))));
        // Every tenth message is sent again at once through the other store (a resend
        // after a reconnection to another node).
        if i % 10 == 0 {
            let other: &S = if i % 2 == 0 { &b } else { &a };
            writes.push(other.append(chat(&conv, &format!("m{i}"), &format!("{i}"))));
        }
    }
    let results: Vec<_> = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results.iter().filter(|r| r.fresh).count(), N);
    // Both copies of a resend got the one stored message.
    for pair in results.chunk_by(|x, y| x.message.client_id == y.message.client_id) {
        assert!(pair.iter().all(|r| r.message == pair[0].message));
    }
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = b
            .messages_after(conv.clone(), after, 300, true)
            .await
            .unwrap();
        stored.extend(page.messages);
        if !page.full {
            break;
        }
        after = page.upto;
    }
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let ids: HashSet<_> = stored.iter().map(|m| m.client_id.clone()).collect();
    assert_eq!(ids.len(), N, "each message once");
}

async fn search_finds_every_word_the_last_half_typed_whatever_the_case_and_accents<
    S: Directory + Log,
>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let shop = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let blog = s.add_site("Blog".into(), vec![], 0).await.unwrap();
    let c1 = conversation(&s, &shop.key, "1").await;
    let c2 = conversation(&s, &blog.key, "2").await;
    let lines = [
        (
            &c1,
            "a",
            "Where is my Bison jerky order?",
            Author::Visitor,
            10,
        ),
        (
            &c1,
            "b",
            "The bison jerky ships on Monday",
            Author::Agent,
            20,
        ),
        (&c1, "c", "Refund the jerky quietly", Author::Note, 30),
        (&c2, "d", "José ordered bison steaks", Author::Visitor, 40),
        (&c2, "e", "nothing to see here", Author::Visitor, 50),
    ];
    for (conv, cid, text, author, at) in lines {
        let m = NewMessage {
            author,
            at,
            ..chat(conv, cid, text)
        };
        s.append(m).await.unwrap();
    }
    let find = async |q: &str, scope: Scope| {
        s.search(scope, search_words(q), 50)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.conversation, h.seq, h.snippet))
            .collect::<Vec<_>>()
    };
    let seqs = |hits: Vec<(ConversationId, u64, String)>| {
        hits.into_iter().map(|(c, s, _)| (c, s)).collect::<Vec<_>>()
    };
    // Every word, in any case; the last one half typed; newest first; notes included.
    assert_eq!(
        seqs(find("BISON jer", Scope::All).await),
        vec![(c1.clone(), 2), (c1.clone(), 1)]
    );
    assert_eq!(
        seqs(find("jerk", Scope::All).await),
        vec![(c1.clone(), 3), (c1.clone(), 2), (c1.clone(), 1)]
    );
    // Accents aside, both ways.
    assert_eq!(seqs(find("jose", Scope::All).await), vec![(c2.clone(), 1)]);
    assert_eq!(seqs(find("jerký", Scope::All).await).len(), 3);
    // Only the scope's sites; a word in no message finds nothing.
    assert_eq!(
        seqs(find("bison", scope(&[&blog.key])).await),
        vec![(c2.clone(), 1)]
    );
    assert!(find("bison", scope(&[])).await.is_empty());
    assert!(find("bison zebra", Scope::All).await.is_empty());
    assert!(find("", Scope::All).await.is_empty());
    // Operators typed are words like any other, never syntax.
    assert!(find("bison OR nothing", Scope::All).await.is_empty());
    assert_eq!(seqs(find("bison & (jerky)", Scope::All).await).len(), 2);
    // The snippet is the message's text around what was found, marked where it was cut.
    let hits = find("monday", Scope::All).await;
    assert_eq!(hits[0].2, "The bison jerky ships on Monday");
    let long: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
    let mut text = long.join(" ");
    text.push_str(" needle ");
    text.push_str(&long.join(" "));
    s.append(chat(&c2, "long", &text)).await.unwrap();
    let hits = find("needle", Scope::All).await;
    let cut = &hits[0].2;
    assert!(cut.starts_with('…') && cut.ends_with('…'), "{cut}");
    assert!(
        cut.contains("needle") && cut.len() < text.len() / 2,
        "{cut}"
    );
}

async fn visitors_their_tokens_and_verified_users_find_their_conversation<S: Directory + Log>(
    open: impl AsyncFn() -> S,
) {
    let s = open().await;
    let shop = s.add_site("Shop".into(), vec![], 0).await.unwrap();
    let blog = s.add_site("Blog".into(), vec![], 0).await.unwrap();
    let conv = conversation(&s, &shop.key, "token-1").await;
    let found = s.visitor_conversation(shop.key.clone(), "token-1".into());
    assert_eq!(found.await.unwrap().map(|m| m.id), Some(conv.clone()));
    // A token is good on its own site only.
    let elsewhere = s.visitor_conversation(blog.key.clone(), "token-1".into());
    assert_eq!(elsewhere.await.unwrap(), None);
    assert_eq!(
        s.visitor("token-1".into()).await.unwrap(),
        Some((shop.key.clone(), conv.clone()))
    );
    assert_eq!(s.visitor("nobody".into()).await.unwrap(), None);
    // A second device of the same visitor.
    s.add_token(conv.clone(), shop.key.clone(), "token-2".into(), 5)
        .await
        .unwrap();
    let second = s.visitor_conversation(shop.key.clone(), "token-2".into());
    assert_eq!(second.await.unwrap().map(|m| m.id), Some(conv.clone()));

    // A verified user claims it once; the same user cannot claim a second one.
    let user = VerifiedUser {
        id: "u-1".into(),
        name: Some("Jo".into()),
        email: Some("jo@example.com".into()),
    };
    assert!(s.claim(conv.clone(), user.clone()).await.unwrap());
    assert!(
        s.claim(conv.clone(), user.clone()).await.unwrap(),
        "again: still theirs"
    );
    let other = conversation(&s, &shop.key, "token-3").await;
    assert!(!s.claim(other.clone(), user.clone()).await.unwrap());
    let stranger = VerifiedUser {
        id: "u-2".into(),
        name: None,
        email: None,
    };
    assert!(!s.claim(conv.clone(), stranger).await.unwrap());
    let mine = s.user_conversation(shop.key.clone(), "u-1".into());
    assert_eq!(mine.await.unwrap().map(|m| m.id), Some(conv.clone()));
    assert_eq!(
        s.user_conversation(blog.key.clone(), "u-1".into())
            .await
            .unwrap(),
        None
    );

    // What is known of them: kept, and changed by agents.
    let details = s.visitor_details(conv.clone()).await.unwrap();
    assert_eq!(
        (
            details.name.as_deref(),
            details.email.as_deref(),
            details.user.as_deref()
        ),
        (Some("Jo"), Some("jo@example.com"), Some("u-1"))
    );
    s.set_visitor(conv.clone(), Some("Joanna".into()), None)
        .await
        .unwrap();
    s.set_email(other.clone(), "left@example.com".into())
        .await
        .unwrap();
    let details = s.visitor_details(conv.clone()).await.unwrap();
    assert_eq!(
        (details.name.as_deref(), details.email),
        (Some("Joanna"), None)
    );
    let left = s.visitor_details(other.clone()).await.unwrap();
    assert_eq!(left.email.as_deref(), Some("left@example.com"));
    assert_eq!(
        s.visitor_details(ConversationId::from("nope"))
            .await
            .unwrap(),
        Default::default()
    );

    // Files, their sizes, and which are known; read marks.
    let file = |id: &str, size: u64| Attachment {
        id: FileId::from(id),
        name: format!("{id}.txt"),
        size,
        mime: "text/plain".into(),
        sha256: "00".into(),
    };
    for (cid, f) in [("f1", file("f1", 100)), ("f2", file("f2", 23))] {
        let m = NewMessage {
            attachment: Some(f),
            ..chat(&conv, cid, "a file")
        };
        s.append(m).await.unwrap();
    }
    assert_eq!(s.files_size(conv.clone()).await.unwrap(), 123);
    assert_eq!(s.files_size(other.clone()).await.unwrap(), 0);
    let mut known = s
        .known_files(vec!["f2".into(), "ghost".into(), "f1".into()])
        .await
        .unwrap();
    known.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(known, vec![FileId::from("f1"), FileId::from("f2")]);
    let by_id = s.message_by_client_id(conv.clone(), ClientMsgId::from("f2"));
    assert_eq!(by_id.await.unwrap().map(|m| m.seq), Some(2));
    assert_eq!(s.read_upto(conv.clone()).await.unwrap(), 0);
    let ana = s
        .add_agent("ana@x.example".into(), "Ana".into(), "h".into(), None, 0)
        .await
        .unwrap();
    s.mark_read(ana.agent.id.clone(), conv.clone(), 2)
        .await
        .unwrap();
    assert_eq!(s.read_upto(conv.clone()).await.unwrap(), 2);
}

async fn counts_from_two_stores_add_up_in_one_window_and_start_again_after_it<
    S: Directory + Log,
>(
    open: impl AsyncFn() -> S,
) {
    // Two nodes counting one key at once (logins for one account, say): one count.
    let (a, b) = (open().await, open().await);
    let key = || "login account ana@shop.example".to_owned();
    let counts = futures_util::future::join_all((0..40).map(|i| {
        let store: &S = if i % 2 == 0 { &a } else { &b };
        store.count(key(), 60_000, 1_000 + i)
    }))
    .await;
    let mut seen: Vec<u32> = counts.iter().map(|c| c.as_ref().unwrap().0).collect();
    seen.sort();
    assert_eq!(seen, (1..=40).collect::<Vec<_>>(), "each counted once");
    // The window is the first count's (whichever the store took first): it ends 60 s after
    // it, for everyone.
    let ends = counts[0].as_ref().unwrap().1;
    assert!((61_000..61_040).contains(&ends), "{ends}");
    assert!(counts.iter().all(|c| c.as_ref().unwrap().1 == ends));
    // Another key counts on its own.
    assert_eq!(
        b.count("other".into(), 60_000, 2_000).await.unwrap(),
        (1, 62_000)
    );
    // Once the window is over, the count starts again, with a window of its own.
    assert_eq!(a.count(key(), 60_000, 70_000).await.unwrap(), (1, 130_000));
    assert_eq!(b.count(key(), 60_000, 70_500).await.unwrap(), (2, 130_000));
}
