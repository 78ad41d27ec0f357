//! The bus between relay nodes on NATS (`--bus nats://…`, core pub/sub), for several nodes on
//! one PostgreSQL database.
//!
//! - An event is handed to this node at once, in the order published (as [`LocalBus`] does),
//!   and published once to NATS for the other nodes; the connection is `no_echo`, so it never
//!   comes back here.
//! - Subjects: a stored message on `escalera.m.SITE.CONVERSATION`, the conversation's other
//!   events on `escalera.c.CONVERSATION`. A node subscribes to what its connections need:
//!   a conversation's two subjects, a site's messages (`escalera.m.SITE.*`), or every site's
//!   (`escalera.m.*.*`).
//! - A call's state goes with the messages (`escalera.m.…`), so the site's agents hear a
//!   call ringing in the queue; signaling for a call's end goes on `escalera.c.…`.
//! - A node subscribed both to a conversation and to its site receives its messages twice:
//!   each event carries its origin node and number, and the second copy is dropped.
//! - Every node says it is alive on `escalera.alive` each second. One silent for 5 s (no
//!   beat, no event) is gone: this node is told, and the call ends on it are away.
//!
//! [`LocalBus`]: crate::bus::LocalBus

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::bus::Bus;
use crate::core::{BusEvent, Topic};

/// Event ids remembered for deduplication (the copies of one event arrive close together).
const SEEN: usize = 16_384;

/// An event as it travels on NATS.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The node that published it (random per process).
    from: u64,
    /// Its number at that node.
    n: u64,
    /// When it was published, in ms since the epoch (for the bus's latency metric).
    at: i64,
    event: BusEvent,
}

/// A subject token for an id: as it is when NATS allows it (the relay's ids are hex), else
/// hex-encoded, so no id can reach another's subject.
fn token(id: &str) -> String {
    let plain = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        id.to_owned()
    } else {
        format!("x{}", crate::secrets::hex(id.as_bytes()))
    }
}

/// The subject an event is published on.
fn subject(event: &BusEvent) -> String {
    match event {
        BusEvent::Message { site, message } => format!(
            "escalera.m.{}.{}",
            token(&site.0),
            token(&message.conversation.0)
        ),
        // On the site's subject too: a call in the queue rings its agents.
        BusEvent::Call {
            conversation, call, ..
        } => format!(
            "escalera.m.{}.{}",
            token(&call.site().0),
            token(&conversation.0)
        ),
        BusEvent::NodeGone { .. } => unreachable!("a node's own news is never published"),
        BusEvent::Presence { .. } | BusEvent::Desk { .. } => CLUSTER.to_owned(),
        BusEvent::AgentJoined { conversation, .. }
        | BusEvent::Signal { conversation, .. }
        | BusEvent::Closed { conversation }
        | BusEvent::Typing { conversation, .. }
        | BusEvent::Read { conversation, .. } => format!("escalera.c.{}", token(&conversation.0)),
    }
}

/// The subjects a topic's events come on.
fn subjects(topic: &Topic) -> Vec<String> {
    match topic {
        Topic::Conversation(c) => vec![
            format!("escalera.m.*.{}", token(&c.0)),
            format!("escalera.c.{}", token(&c.0)),
        ],
        Topic::Site(s) => vec![format!("escalera.m.{}.*", token(&s.0))],
        Topic::AllSites => vec!["escalera.m.*.*".to_owned()],
        Topic::Cluster => vec![CLUSTER.to_owned()],
    }
}

/// Events already handed over, by origin and number.
#[derive(Default)]
struct Seen {
    set: HashSet<(u64, u64)>,
    order: VecDeque<(u64, u64)>,
}

impl Seen {
    /// True the first time `id` is seen (of the last [`SEEN`]).
    fn first(&mut self, id: (u64, u64)) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

enum Command {
    Publish(Vec<u8>, String),
    Subscribe(Topic),
    Unsubscribe(Topic),
}

/// The NATS bus. Its methods never wait: they queue for one task that talks to NATS.
pub struct NatsBus {
    client: async_nats::Client,
    node: u64,
    next: AtomicU64,
    here: mpsc::UnboundedSender<BusEvent>,
    commands: mpsc::UnboundedSender<Command>,
}

impl NatsBus {
    /// Connects to the NATS server at `url` (reconnecting on its own when it drops); returns
    /// the bus and the receiving end this node reads, as [`crate::bus::LocalBus::new`] does.
    pub async fn connect(
        url: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<BusEvent>), async_nats::ConnectError> {
        let node = {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("the system's random source");
            // Never 0, which is a relay alone.
            u64::from_le_bytes(b) | 1
        };
        let client = async_nats::ConnectOptions::new()
            .no_echo()
            .name(format!("escalera-{node:016x}"))
            .connect(url)
            .await?;
        let (here, events) = mpsc::unbounded_channel();
        let (commands, queue) = mpsc::unbounded_channel();
        let _ = commands.send(Command::Subscribe(Topic::Cluster));
        let heard = Heard::default();
        tokio::spawn(run(client.clone(), queue, here.clone(), heard.clone()));
        tokio::spawn(heartbeat(client.clone(), node, here.clone(), heard));
        Ok((
            Self {
                client,
                node,
                next: AtomicU64::new(0),
                here,
                commands,
            },
            events,
        ))
    }
}

impl Bus for NatsBus {
    fn publish(&self, event: BusEvent) {
        let envelope = Envelope {
            from: self.node,
            n: self.next.fetch_add(1, Ordering::Relaxed),
            at: crate::now_ms(),
            event,
        };
        let payload = serde_json::to_vec(&envelope).expect("an event serializes");
        let subject = subject(&envelope.event);
        let _ = self.here.send(envelope.event);
        let _ = self.commands.send(Command::Publish(payload, subject));
    }

    fn subscribe(&self, topic: Topic) {
        let _ = self.commands.send(Command::Subscribe(topic));
    }

    fn unsubscribe(&self, topic: Topic) {
        let _ = self.commands.send(Command::Unsubscribe(topic));
    }

    fn ready(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn node(&self) -> u64 {
        self.node
    }
}

/// The subject of the team's presence and the open conversations, which every node hears.
const CLUSTER: &str = "escalera.team";

/// The subject where nodes say they are alive.
const ALIVE: &str = "escalera.alive";
/// How often a node says so.
const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a node may be silent before it is gone (a few missed beats: a node killed, or
/// cut off from NATS, whose connections therefore no longer hear anything).
const GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// When each other node was last heard (a beat, or any event it published).
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<HashMap<u64, tokio::time::Instant>>>);

impl Heard {
    fn from(&self, node: u64) {
        let mut heard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        heard.insert(node, tokio::time::Instant::now());
    }

    /// Forgets and returns the nodes silent for [`GONE_AFTER`].
    fn gone(&self) -> Vec<u64> {
        let now = tokio::time::Instant::now();
        let mut heard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<u64> = heard
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= GONE_AFTER)
            .map(|(n, _)| *n)
            .collect();
        for n in &gone {
            heard.remove(n);
        }
        gone
    }
}

/// Says every [`ALIVE_EVERY`] that this node is alive, listens to the others, and tells this
/// node when one it heard falls silent for [`GONE_AFTER`]: its calls' ends are away.
async fn heartbeat(
    client: async_nats::Client,
    node: u64,
    here: mpsc::UnboundedSender<BusEvent>,
    heard: Heard,
) {
    let mut beats = match client.subscribe(ALIVE).await {
        Ok(s) => s,
        Err(e) => return tracing::error!("bus: cannot hear the other nodes: {e}"),
    };
    let mut every = tokio::time::interval(ALIVE_EVERY);
    let payload = format!("{node:x}").into_bytes();
    loop {
        tokio::select! {
            _ = every.tick() => {
                if let Err(e) = client.publish(ALIVE, payload.clone().into()).await {
                    tracing::warn!("bus: cannot say this node is alive: {e}");
                }
                for n in heard.gone() {
                    tracing::warn!("bus: node {n:x} is gone");
                    if here.send(BusEvent::NodeGone { node: n }).is_err() {
                        return;
                    }
                }
            }
            beat = beats.next() => {
                let Some(beat) = beat else { return };
                let from = std::str::from_utf8(&beat.payload)
                    .ok()
                    .and_then(|t| u64::from_str_radix(t, 16).ok());
                if let Some(from) = from.filter(|f| *f != node) {
                    heard.from(from);
                }
            }
        }
    }
}

/// The task that talks to NATS: publishes in the order asked, and keeps one reader task per
/// subscribed subject, each handing what it receives (once) to this node.
async fn run(
    client: async_nats::Client,
    mut queue: mpsc::UnboundedReceiver<Command>,
    here: mpsc::UnboundedSender<BusEvent>,
    heard: Heard,
) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut readers: HashMap<Topic, Vec<tokio::task::JoinHandle<()>>> = HashMap::new();
    while let Some(command) = queue.recv().await {
        match command {
            Command::Publish(payload, subject) => {
                if let Err(e) = client.publish(subject, payload.into()).await {
                    tracing::error!("bus: cannot publish: {e}");
                }
            }
            Command::Subscribe(topic) => {
                if readers.contains_key(&topic) {
                    continue;
                }
                let mut tasks = Vec::new();
                for subject in subjects(&topic) {
                    let mut sub = match client.subscribe(subject.clone()).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!("bus: cannot subscribe to {subject}: {e}");
                            continue;
                        }
                    };
                    let (seen, here, heard) = (seen.clone(), here.clone(), heard.clone());
                    tasks.push(tokio::spawn(async move {
                        while let Some(m) = sub.next().await {
                            let envelope: Envelope = match serde_json::from_slice(&m.payload) {
                                Ok(e) => e,
                                Err(e) => {
                                    tracing::warn!("bus: unreadable event on {subject}: {e}");
                                    continue;
                                }
                            };
                            heard.from(envelope.from);
                            let first = seen
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .first((envelope.from, envelope.n));
                            if first {
                                let ms = (crate::now_ms() - envelope.at).max(0);
                                crate::metrics::get()
                                    .bus_seconds
                                    .observe(ms as f64 / 1000.0);
                            }
                            if first && here.send(envelope.event).is_err() {
                                break;
                            }
                        }
                    }));
                }
                // No flush: the server reads this connection's SUBs and PUBs in order, and
                // waiting for a round trip here would hold up every publish queued behind.
                readers.insert(topic, tasks);
            }
            Command::Unsubscribe(topic) => {
                // Dropping a subscriber unsubscribes it.
                for task in readers.remove(&topic).into_iter().flatten() {
                    task.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalera_protocol::{ConversationId, SiteKey};

    #[test]
    fn subjects_cover_their_topics_and_no_id_escapes_its_token() {
        assert_eq!(token("3fa9"), "3fa9");
        assert_eq!(token("a.b"), "x612e62");
        assert_eq!(token("*"), "x2a");
        assert_eq!(token(""), "x");
        let conv = ConversationId::from("c1");
        let site = SiteKey("s1".into());
        assert_eq!(
            subjects(&Topic::Conversation(conv.clone())),
            ["escalera.m.*.c1", "escalera.c.c1"]
        );
        assert_eq!(subjects(&Topic::Site(site)), ["escalera.m.s1.*"]);
        assert_eq!(
            subject(&BusEvent::Closed { conversation: conv }),
            "escalera.c.c1"
        );
    }

    #[test]
    fn an_event_is_handed_over_once() {
        let mut seen = Seen::default();
        assert!(seen.first((1, 1)));
        assert!(!seen.first((1, 1)));
        assert!(seen.first((2, 1)));
        for n in 0..SEEN as u64 {
            seen.first((3, n));
        }
        assert_eq!(seen.order.len(), SEEN);
        assert!(seen.first((1, 1)), "forgotten after SEEN others");
    }
}
