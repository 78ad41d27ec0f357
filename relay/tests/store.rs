//! The store's contract, one suite run against both backends: the embedded SQLite store and
//! PostgreSQL (a real server started by the tests, tests/common/postgres.rs). Each test is
//! written once, against the traits, and run once per backend.

mod common;

use std::collections::HashSet;

use escalera_protocol::{Presence, SiteFeatures, SiteKey};
use escalera_relay::core::Scope;
use escalera_relay::postgres::PgStore;
use escalera_relay::sqlite::SqliteStore;
use escalera_relay::store::{AuditEntry, Directory, Site};

/// Runs each named test against both backends: `sqlite::NAME` and `postgres::NAME`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open(dir.path()).unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let url = crate::common::postgres::database().await;
                    let store = super::PgStore::connect(&url).await.unwrap();
                    super::$name(&store).await;
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
);

fn scope(sites: &[&SiteKey]) -> Scope {
    Scope::Sites(sites.iter().map(|s| (*s).clone()).collect::<HashSet<_>>())
}

async fn sites_are_added_changed_and_listed_by_scope(s: &impl Directory) {
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

async fn agents_log_in_by_email_and_their_sessions_end_with_their_access(s: &impl Directory) {
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

async fn agents_are_listed_changed_and_removed_with_their_email_freed(s: &impl Directory) {
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

async fn canned_replies_settings_and_the_audit_log_keep_what_was_saved(s: &impl Directory) {
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
