//! Email, when the relay is given an SMTP server (`--smtp-url`, `--smtp-from`): an agent's
//! replies go to a visitor who left and gave an email, with a one-time link back to the
//! conversation; agents hear of a conversation that has waited too long with none of them
//! available; a visitor may have the transcript sent to them. Sending never holds up the chat:
//! each email is its own task, and a failure is logged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use escalera_protocol::{i18n, Author, ConversationId, Message, SiteKey};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::store::{Directory, Log, Site, LINK_LIFE_MS};
use crate::{desk_api, now_ms, secrets};

/// Where and as whom the relay sends email.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// `smtp://[user:pass@]host[:port][?tls=required]`, or `smtps://…` for TLS from the start.
    pub url: String,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// How long an agent's replies gather before they go out as one email, in ms.
    pub batch_ms: u64,
}

/// An SMTP connection pool and the sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Checks the URL and the sender; connects only when sending.
    pub fn new(config: &MailConfig) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|e| format!("--smtp-url: {e}"))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        let from = config
            .from
            .parse()
            .map_err(|e| format!("--smtp-from {:?}: {e}", config.from))?;
        Ok(Self { transport, from })
    }

    /// Sends one plain-text email.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("{to:?}: {e}"))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// `english` in language `lang`, from the `[relay]` section of the locale files.
pub fn say(lang: &str, english: &'static str) -> &'static str {
    let tables: Vec<i18n::Table> = i18n::table(i18n::RELAY, lang).into_iter().collect();
    i18n::lookup(&tables, english)
}

/// What the relay mails, and what it remembers about it.
pub struct Mail {
    mailer: Mailer,
    directory: Arc<dyn Directory>,
    log: Arc<dyn Log>,
    batch: Duration,
    /// The relay's address, for links to the console.
    public_url: String,
    /// Conversations whose replies are gathering.
    gathering: Mutex<HashSet<ConversationId>>,
    /// The last seq mailed to each conversation's visitor.
    mailed: Mutex<HashMap<ConversationId, u64>>,
}

impl Mail {
    /// Email through `mailer`, reading what it says from the stores.
    pub fn new(
        mailer: Mailer,
        config: &MailConfig,
        directory: Arc<dyn Directory>,
        log: Arc<dyn Log>,
        public_url: String,
    ) -> Self {
        Self {
            mailer,
            directory,
            log,
            batch: Duration::from_millis(config.batch_ms),
            public_url,
            gathering: Mutex::default(),
            mailed: Mutex::default(),
        }
    }

    /// An agent wrote `seq` while no visitor socket of the conversation was open: unless an
    /// email is already gathering, one goes out after the batch time with every agent message
    /// not mailed yet (if the visitor left an email).
    pub fn reply(self: &Arc<Self>, conversation: ConversationId, site: SiteKey, seq: u64) {
        if !self.gathering.lock().unwrap().insert(conversation.clone()) {
            return;
        }
        let mail = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(mail.batch).await;
            mail.gathering.lock().unwrap().remove(&conversation);
            if let Err(e) = mail.send_reply(&conversation, site, seq).await {
                tracing::warn!("email: the reply in {conversation}: {e}");
            }
        });
    }

    async fn send_reply(
        &self,
        conversation: &ConversationId,
        site: SiteKey,
        seq: u64,
    ) -> Result<(), String> {
        let details = self
            .log
            .visitor_details(conversation.clone())
            .await
            .map_err(|e| e.to_string())?;
        let Some(email) = details.email else {
            return Ok(());
        };
        let after = self
            .mailed
            .lock()
            .unwrap()
            .get(conversation)
            .copied()
            .unwrap_or(seq.saturating_sub(1));
        let page = self
            .log
            .messages_after(conversation.clone(), after, 500, false)
            .await
            .map_err(|e| e.to_string())?;
        let replies: Vec<&Message> = page
            .messages
            .iter()
            .filter(|m| m.author == Author::Agent)
            .collect();
        let Some(last) = replies.last().map(|m| m.seq) else {
            return Ok(());
        };
        let site = self.site(site).await?;
        let info = details.info.unwrap_or_default();
        let lang = language(&info.language, &site);
        // The page they were on (the widget is there), else the site's first origin; a site
        // with neither gets the reply without a link.
        let page_url = if info.page.starts_with("https://") || info.page.starts_with("http://") {
            Some(info.page.clone())
        } else {
            site.origins.first().map(|o| format!("{o}/"))
        };
        let url = match page_url {
            Some(page) => {
                let link = secrets::random_token();
                self.log
                    .add_link(
                        conversation.clone(),
                        secrets::token_hash(&link),
                        now_ms() + LINK_LIFE_MS,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let page = page.split('#').next().unwrap_or_default();
                Some(format!("{page}#escalera-resume={link}"))
            }
            None => None,
        };
        let subject = i18n::fill(say(lang, "New reply from {site}"), &[("site", &site.name)]);
        let mut body = String::new();
        for m in &replies {
            let name = m.author_name.as_deref().unwrap_or_default();
            body.push_str(&format!("{name}:\n{}\n\n", said(m, lang)));
        }
        if let Some(url) = url {
            body.push_str(say(
                lang,
                "Reply in the chat (this link works once, for a week):",
            ));
            body.push_str(&format!("\n{url}\n"));
        }
        self.mailer.send(&email, &subject, body).await?;
        self.mailed
            .lock()
            .unwrap()
            .insert(conversation.clone(), last);
        Ok(())
    }

    /// A conversation of `site` has waited since `since` (ms) with no agent available: every
    /// enabled agent who serves the site hears of it.
    pub fn alert(self: &Arc<Self>, conversation: ConversationId, site: SiteKey, since: i64) {
        let mail = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mail.send_alert(&conversation, site, since).await {
                tracing::warn!("email: the alert for {conversation}: {e}");
            }
        });
    }

    async fn send_alert(
        &self,
        conversation: &ConversationId,
        site: SiteKey,
        since: i64,
    ) -> Result<(), String> {
        let site = self.site(site).await?;
        let agents = self
            .directory
            .agents(now_ms())
            .await
            .map_err(|e| e.to_string())?;
        let page = self
            .log
            .messages_after(conversation.clone(), 0, 20, false)
            .await
            .map_err(|e| e.to_string())?;
        let first = page
            .messages
            .iter()
            .find(|m| m.author == Author::Visitor)
            .map(|m| said(m, "en"))
            .unwrap_or_default();
        let minutes = ((now_ms() - since).max(0) / 60_000).to_string();
        let subject = format!("A visitor is waiting on {}", site.name);
        let body = format!(
            "A visitor has waited {minutes} min on {} and no agent is available.\n\n\
             Visitor: {first}\n\nAnswer in the console: {}/agent\n",
            site.name, self.public_url
        );
        for a in agents
            .iter()
            .filter(|a| !a.disabled && a.agent.scope.covers(&site.key))
        {
            if let Err(e) = self
                .mailer
                .send(&a.agent.email, &subject, body.clone())
                .await
            {
                tracing::warn!("email: the alert to {}: {e}", a.agent.email);
            }
        }
        Ok(())
    }

    /// The visitor asked for the conversation's transcript at `email`.
    pub fn transcript(
        self: &Arc<Self>,
        conversation: ConversationId,
        site: SiteKey,
        email: String,
    ) {
        let mail = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mail.send_transcript(&conversation, site, &email).await {
                tracing::warn!("email: the transcript of {conversation}: {e}");
            }
        });
    }

    async fn send_transcript(
        &self,
        conversation: &ConversationId,
        site: SiteKey,
        email: &str,
    ) -> Result<(), String> {
        let site = self.site(site).await?;
        let details = self
            .log
            .visitor_details(conversation.clone())
            .await
            .map_err(|e| e.to_string())?;
        let lang = language(&details.info.unwrap_or_default().language, &site);
        let mut body = String::new();
        let mut after = 0;
        loop {
            let page = self
                .log
                .messages_after(conversation.clone(), after, 500, false)
                .await
                .map_err(|e| e.to_string())?;
            for m in &page.messages {
                let who = match m.author {
                    Author::Visitor => say(lang, "You").to_owned(),
                    Author::Agent => m.author_name.clone().unwrap_or_default(),
                    _ => "—".to_owned(),
                };
                let text = said(m, lang).replace('\n', "\n    ");
                body.push_str(&format!("{}  {who}: {text}\n", desk_api::utc(m.at)));
            }
            after = page.upto;
            if !page.full {
                break;
            }
        }
        let subject = i18n::fill(
            say(lang, "Your conversation with {site}"),
            &[("site", &site.name)],
        );
        self.mailer.send(email, &subject, body).await
    }

    async fn site(&self, key: SiteKey) -> Result<Site, String> {
        self.directory
            .site(key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no such site".to_owned())
    }
}

/// The visitor's language: their browser's, else the site's, else English.
fn language(browser: &str, site: &Site) -> &'static str {
    i18n::supported(browser)
        .or_else(|| site.look.language.as_deref().and_then(i18n::supported))
        .unwrap_or("en")
}

/// A message as an email in `lang` says it: a file by its name, the record's own lines in
/// that language.
fn said(m: &Message, lang: &str) -> String {
    match (&m.attachment, &m.event) {
        (Some(a), _) => format!("[{}]", a.name),
        (None, Some(event)) => {
            let tables: Vec<i18n::Table> = i18n::table(i18n::WIDGET, lang).into_iter().collect();
            event.said(|english| i18n::lookup(&tables, english))
        }
        (None, None) => m.text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The English texts passed to `say(lang, ...)` in this file (rustfmt may break the call
    /// over lines).
    fn said_here() -> Vec<&'static str> {
        let source = include_str!("mail.rs");
        source
            .match_indices("say(")
            .filter_map(|(at, call)| {
                let rest = source[at + call.len()..]
                    .trim_start()
                    .strip_prefix("lang")?;
                let rest = rest.trim_start().strip_prefix(',')?.trim_start();
                let rest = rest.strip_prefix('"')?;
                Some(&rest[..rest.find('"')?])
            })
            .collect()
    }

    #[test]
    fn every_language_says_every_email_text_and_keeps_no_stale_one() {
        let texts = said_here();
        assert!(texts.contains(&"You"), "the scan finds the texts");
        for tag in i18n::TRANSLATED {
            let table = i18n::table(i18n::RELAY, tag).unwrap_or_default();
            for text in &texts {
                assert!(
                    table.iter().any(|(k, _)| k == text),
                    "{tag}.txt [relay] lacks {text:?}"
                );
            }
            // The launcher's labels are said by the look route.
            let settings = include_str!("settings.rs");
            for (k, _) in table {
                assert!(
                    texts.contains(k) || settings.contains(&format!("say({k:?})")),
                    "{tag}.txt [relay] has unused {k:?}"
                );
            }
        }
        assert_eq!(say("es", "You"), "Tú");
        assert_eq!(say("en", "You"), "You");
    }
}
