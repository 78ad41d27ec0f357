//! Routing, sans I/O: the open conversations of every site, who has each, and who gets the
//! waiting ones. The core keeps a [`Desk`], tells it what happened (stored, assigned, closed,
//! reopened) and asks it, after each event, which waiting conversation goes to whom
//! ([`route`]) and which visitors' places in line moved ([`Desk::positions`]).
//!
//! - A waiting conversation goes to the available agent of its site with the fewest open
//!   conversations, under their limit; among equals, to the one who got one longest ago.
//! - The queue is oldest first, per site: the oldest waiting conversation is offered first.

use std::collections::{BTreeSet, HashMap};

use escalera_protocol::{AgentId, ConversationId, SiteKey};

use crate::core::Scope;

/// An available agent, as routing sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The agent.
    pub agent: AgentId,
    /// Their sites.
    pub scope: Scope,
    /// How many open conversations they may have.
    pub limit: u32,
}

/// A waiting conversation as routing sees it: its site, and the agent who handed it back to
/// the queue (who does not get it again from routing).
pub type Waiting = (ConversationId, SiteKey, Option<AgentId>);

/// Who gets which waiting conversation: `waiting` oldest first; `load` the open conversations
/// each agent has; `last` when each last got one. Pure, so every rule is tested below.
pub fn route(
    waiting: &[Waiting],
    candidates: &[Candidate],
    load: &HashMap<AgentId, u32>,
    last: &HashMap<AgentId, u64>,
) -> Vec<(ConversationId, AgentId)> {
    let mut load: HashMap<&AgentId, u32> = candidates
        .iter()
        .map(|c| (&c.agent, load.get(&c.agent).copied().unwrap_or(0)))
        .collect();
    let mut last: HashMap<&AgentId, u64> = candidates
        .iter()
        .map(|c| (&c.agent, last.get(&c.agent).copied().unwrap_or(0)))
        .collect();
    let mut turn = last.values().copied().max().unwrap_or(0);
    let mut routed = Vec::new();
    for (id, site, not) in waiting {
        let best = candidates
            .iter()
            .filter(|c| c.scope.covers(site) && load[&c.agent] < c.limit)
            .filter(|c| not.as_ref() != Some(&c.agent))
            .min_by_key(|c| (load[&c.agent], last[&c.agent], &c.agent));
        let Some(best) = best else {
            continue;
        };
        *load
            .get_mut(&best.agent)
            .expect("every candidate has a load") += 1;
        turn += 1;
        last.insert(&best.agent, turn);
        routed.push((id.clone(), best.agent.clone()));
    }
    routed
}

/// When a conversation started waiting, with a counter that breaks ties: the queue's order.
type Since = (i64, u64);

/// One open conversation.
#[derive(Clone, Debug)]
struct Open {
    site: SiteKey,
    agent: Option<AgentId>,
    /// When it (last) started waiting, with a tie-breaking counter: the queue's order.
    since: Since,
    /// The place in line its visitor was last told (0: none).
    told: u32,
    /// Who handed it back to the queue.
    not: Option<AgentId>,
}

/// Every open (stored, not closed) conversation of the relay.
#[derive(Debug, Default)]
pub struct Desk {
    open: HashMap<ConversationId, Open>,
    /// Waiting conversations per site, oldest first.
    queues: HashMap<SiteKey, BTreeSet<(Since, ConversationId)>>,
    /// Open conversations per agent.
    load: HashMap<AgentId, u32>,
    /// When each agent last got a conversation from routing (a counter).
    last: HashMap<AgentId, u64>,
    counter: u64,
    /// Sites whose queue changed since [`Desk::positions`] last looked.
    moved: BTreeSet<SiteKey>,
    /// Something changed since [`Desk::take_dirty`] last looked.
    dirty: bool,
}

impl Desk {
    /// A conversation is open: just stored (waiting), restored at start, or reopened, with
    /// `agent` when someone has it.
    pub fn opened(&mut self, id: ConversationId, site: SiteKey, agent: Option<AgentId>, at: i64) {
        self.closed(&id);
        self.counter += 1;
        let since = (at, self.counter);
        if let Some(a) = &agent {
            *self.load.entry(a.clone()).or_default() += 1;
        } else {
            self.queues
                .entry(site.clone())
                .or_default()
                .insert((since, id.clone()));
            self.moved.insert(site.clone());
        }
        self.open.insert(
            id,
            Open {
                site,
                agent,
                since,
                told: 0,
                not: None,
            },
        );
        self.dirty = true;
    }

    /// Every waiting conversation: its site and since when it waits (ms).
    pub fn waiting(&self) -> impl Iterator<Item = (ConversationId, SiteKey, i64)> + '_ {
        self.queues.iter().flat_map(|(site, queue)| {
            queue
                .iter()
                .map(move |((at, _), id)| (id.clone(), site.clone(), *at))
        })
    }

    /// `id` now belongs to `agent` (or, `None`, waits in the queue again, at the back).
    pub fn assigned(&mut self, id: &ConversationId, agent: Option<AgentId>, at: i64) {
        let Some(o) = self.open.get(id) else {
            return;
        };
        if o.agent == agent {
            return;
        }
        let site = o.site.clone();
        self.closed(id);
        self.opened(id.clone(), site, agent, at);
    }

    /// `by` handed `id` back to the queue: it waits at the back, for someone else.
    pub fn requeued(&mut self, id: &ConversationId, by: AgentId, at: i64) {
        self.assigned(id, None, at);
        if let Some(o) = self.open.get_mut(id) {
            o.not = Some(by);
        }
    }

    /// `id` is closed (or gone): it leaves the queue and its agent's load.
    pub fn closed(&mut self, id: &ConversationId) {
        let Some(o) = self.open.remove(id) else {
            return;
        };
        match &o.agent {
            Some(a) => {
                if let Some(n) = self.load.get_mut(a) {
                    *n = n.saturating_sub(1);
                }
            }
            None => {
                if let Some(q) = self.queues.get_mut(&o.site) {
                    q.remove(&(o.since, id.clone()));
                    if q.is_empty() {
                        self.queues.remove(&o.site);
                    }
                }
                self.moved.insert(o.site);
            }
        }
        self.dirty = true;
    }

    /// Routing runs when this says something changed (or when the team did).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Whether `id` is open, and who has it.
    pub fn agent_of(&self, id: &ConversationId) -> Option<Option<&AgentId>> {
        self.open.get(id).map(|o| o.agent.as_ref())
    }

    /// The site of an open conversation.
    pub fn site_of(&self, id: &ConversationId) -> Option<&SiteKey> {
        self.open.get(id).map(|o| &o.site)
    }

    /// How many open conversations `agent` has.
    pub fn load(&self, agent: &AgentId) -> u32 {
        self.load.get(agent).copied().unwrap_or(0)
    }

    /// Who should get which waiting conversation now, among `candidates`. Each routed one is
    /// counted for its agent at once, so the next event does not offer it again while the
    /// store assigns it ([`Desk::assigned`] puts it back if someone else won it).
    pub fn route(&mut self, now: i64, candidates: &[Candidate]) -> Vec<(ConversationId, AgentId)> {
        // Nobody with room (the usual state of a busy desk): nothing to look at.
        if !candidates.iter().any(|c| self.load(&c.agent) < c.limit) || self.queues.is_empty() {
            return Vec::new();
        }
        let open = &self.open;
        let mut waiting: Vec<(Since, Waiting)> = self
            .queues
            .iter()
            .flat_map(|(site, q)| {
                q.iter().map(move |(s, id)| {
                    let not = open.get(id).and_then(|o| o.not.clone());
                    (*s, (id.clone(), site.clone(), not))
                })
            })
            .collect();
        waiting.sort_by_key(|w| w.0);
        let waiting: Vec<Waiting> = waiting.into_iter().map(|(_, w)| w).collect();
        let routed = route(&waiting, candidates, &self.load, &self.last);
        for (id, agent) in &routed {
            self.counter += 1;
            self.last.insert(agent.clone(), self.counter);
            self.assigned(id, Some(agent.clone()), now);
        }
        routed
    }

    /// The waiting conversations whose place in line changed since last asked, with their
    /// new place (1 is next).
    pub fn positions(&mut self) -> Vec<(ConversationId, u32)> {
        let mut changed = Vec::new();
        for site in std::mem::take(&mut self.moved) {
            let Some(q) = self.queues.get(&site) else {
                continue;
            };
            for (n, (_, id)) in (1u32..).zip(q.iter()) {
                if let Some(o) = self.open.get_mut(id) {
                    if o.told != n {
                        o.told = n;
                        changed.push((id.clone(), n));
                    }
                }
            }
        }
        changed
    }

    /// Where `id` stands in its site's queue now (0: not waiting).
    pub fn position(&self, id: &ConversationId) -> u32 {
        let Some(o) = self.open.get(id).filter(|o| o.agent.is_none()) else {
            return 0;
        };
        self.queues.get(&o.site).map_or(0, |q| {
            (1u32..)
                .zip(q.iter())
                .find(|(_, (_, c))| c == id)
                .map_or(0, |(n, _)| n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ConversationId {
        ConversationId::from(s)
    }

    fn agent(s: &str) -> AgentId {
        AgentId::from(s)
    }

    fn site(s: &str) -> SiteKey {
        SiteKey::from(s)
    }

    fn cand(a: &str, sites: &[&str], limit: u32) -> Candidate {
        Candidate {
            agent: agent(a),
            scope: if sites.is_empty() {
                Scope::All
            } else {
                Scope::Sites(sites.iter().map(|s| site(s)).collect())
            },
            limit,
        }
    }

    #[test]
    fn the_fewest_open_conversations_under_the_limit_wins() {
        let waiting = vec![(id("c1"), site("s"), None), (id("c2"), site("s"), None)];
        let load = HashMap::from([(agent("ana"), 2), (agent("bea"), 0)]);
        let routed = route(
            &waiting,
            &[cand("ana", &[], 5), cand("bea", &[], 5)],
            &load,
            &HashMap::new(),
        );
        assert_eq!(
            routed,
            vec![(id("c1"), agent("bea")), (id("c2"), agent("bea"))]
        );
        // At the limit: nothing more for her.
        let load = HashMap::from([(agent("ana"), 1)]);
        assert!(route(&waiting, &[cand("ana", &[], 1)], &load, &HashMap::new()).is_empty());
    }

    #[test]
    fn equals_take_turns_and_sites_are_respected() {
        let waiting: Vec<_> = ["c1", "c2", "c3", "c4"]
            .iter()
            .map(|c| (id(c), site("s"), None))
            .collect();
        let routed = route(
            &waiting,
            &[cand("ana", &[], 5), cand("bea", &[], 5)],
            &HashMap::new(),
            &HashMap::from([(agent("ana"), 7), (agent("bea"), 3)]),
        );
        let who: Vec<_> = routed.iter().map(|(_, a)| a.as_str()).collect();
        assert_eq!(who, ["bea", "ana", "bea", "ana"]);
        // Another site's agent never gets one.
        let waiting = vec![(id("c1"), site("shop"), None)];
        let routed = route(
            &waiting,
            &[cand("ana", &["blog"], 5)],
            &HashMap::new(),
            &HashMap::new(),
        );
        assert!(routed.is_empty());
    }

    #[test]
    fn the_queue_is_oldest_first_and_skips_what_nobody_can_take() {
        let mut desk = Desk::default();
        desk.opened(id("old"), site("shop"), None, 10);
        desk.opened(id("blog"), site("blog"), None, 15);
        desk.opened(id("new"), site("shop"), None, 20);
        desk.opened(id("had"), site("shop"), Some(agent("bea")), 5);
        assert_eq!(desk.position(&id("old")), 1);
        assert_eq!(desk.position(&id("new")), 2);
        assert_eq!(desk.position(&id("had")), 0);
        let mut told = desk.positions();
        told.sort();
        assert_eq!(told, vec![(id("blog"), 1), (id("new"), 2), (id("old"), 1)]);
        assert!(desk.positions().is_empty(), "told once");
        // Ana serves the shop only, one at a time: the oldest of the shop is hers.
        let routed = desk.route(30, &[cand("ana", &["shop"], 1)]);
        assert_eq!(routed, vec![(id("old"), agent("ana"))]);
        assert_eq!(desk.load(&agent("ana")), 1);
        assert_eq!(desk.positions(), vec![(id("new"), 1)]);
        // Nothing more while she is full.
        assert!(desk.route(31, &[cand("ana", &["shop"], 1)]).is_empty());
        // She closes it: the next one is hers.
        desk.closed(&id("old"));
        assert_eq!(
            desk.route(32, &[cand("ana", &["shop"], 1)]),
            vec![(id("new"), agent("ana"))]
        );
    }

    #[test]
    fn a_conversation_back_in_the_queue_goes_to_the_back() {
        let mut desk = Desk::default();
        desk.opened(id("a"), site("s"), Some(agent("ana")), 1);
        desk.opened(id("b"), site("s"), None, 2);
        desk.assigned(&id("a"), None, 3);
        assert_eq!(desk.position(&id("b")), 1);
        assert_eq!(desk.position(&id("a")), 2);
        assert_eq!(desk.load(&agent("ana")), 0);
        // Lost to someone else while routing assigned it: their load, not ours.
        desk.route(4, &[cand("ana", &[], 5)]);
        desk.assigned(&id("b"), Some(agent("bea")), 5);
        assert_eq!(desk.load(&agent("bea")), 1);
        assert_eq!(desk.load(&agent("ana")), 1);
        assert_eq!(desk.agent_of(&id("b")), Some(Some(&agent("bea"))));
        desk.closed(&id("b"));
        assert_eq!(desk.agent_of(&id("b")), None);
    }

    #[test]
    fn who_hands_a_conversation_back_does_not_get_it_again() {
        let mut desk = Desk::default();
        desk.opened(id("a"), site("s"), Some(agent("cy")), 1);
        desk.requeued(&id("a"), agent("cy"), 2);
        let both = [cand("ana", &[], 5), cand("cy", &[], 5)];
        assert_eq!(desk.route(3, &both), vec![(id("a"), agent("ana"))]);
        // With only him there, it waits.
        desk.requeued(&id("a"), agent("cy"), 4);
        assert!(desk.route(5, &both[1..]).is_empty());
        assert_eq!(desk.position(&id("a")), 1);
    }
}
