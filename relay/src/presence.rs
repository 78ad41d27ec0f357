//! The team's presence, sans I/O: what each agent chose (`available`, `away`, `offline`), what
//! the relay sees (their consoles open or gone, their calls), and so what the others are shown.
//! The core feeds it and sends what [`Team::changes`] returns.
//!
//! - An agent is shown as they chose while a console of theirs is open, `busy` instead of
//!   `available` or `away` while in a call, and `offline` once their last console has been
//!   gone for the grace period (a reload or a dropped network within it changes nothing).
//! - An agent known only from the store (no console since the relay started) is `offline`.

use std::collections::{BTreeSet, HashMap};

use escalera_protocol::{AgentId, AgentRef, Presence, SiteKey, TeamMember};

use crate::core::{PeerId, Scope};
use crate::routing::Candidate;

/// One agent.
#[derive(Debug)]
struct Member {
    agent: AgentRef,
    scope: Scope,
    chosen: Presence,
    /// How many open conversations routing may give them.
    limit: u32,
    consoles: BTreeSet<PeerId>,
    /// Since when their last console has been gone (while within the grace period).
    gone_since: Option<i64>,
    /// No console for longer than the grace period (or none since the start).
    away_for_good: bool,
    in_call: bool,
    /// The other relay nodes where a console of theirs is open (or within the grace period),
    /// with what each said last.
    elsewhere: HashMap<u64, Here>,
    /// What the others were last told.
    shown: Option<Presence>,
}

impl Member {
    fn presence(&self) -> Presence {
        let online = !self.away_for_good || !self.elsewhere.is_empty();
        if !online || self.chosen == Presence::Offline {
            return Presence::Offline;
        }
        if self.in_call || self.elsewhere.values().any(|h| h.in_call) {
            return Presence::Busy;
        }
        self.chosen
    }

    fn here(&self) -> Here {
        Here {
            online: !self.away_for_good,
            in_call: self.in_call,
            chosen: self.chosen,
        }
    }

    fn seen(&self) -> Seen {
        Seen {
            agent: self.agent.clone(),
            scope: self.scope.clone(),
            limit: self.limit,
            here: self.here(),
        }
    }
}

/// An agent as one node sees them, with what a node that does not know them yet needs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// The agent.
    pub agent: AgentRef,
    /// Their sites.
    pub scope: Scope,
    /// How many open conversations routing may give them.
    pub limit: u32,
    /// As the node sees them.
    pub here: Here,
}

/// An agent as one node sees them: what it tells the other nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Here {
    /// A console of theirs is open on the node (or was, within the grace period).
    pub online: bool,
    /// In a call on the node.
    pub in_call: bool,
    /// What they chose (last heard by the node).
    pub chosen: Presence,
}

/// Whether two agents' scopes share a site (and so they are one team).
pub fn overlap(a: &Scope, b: &Scope) -> bool {
    match (a, b) {
        (Scope::All, _) | (_, Scope::All) => true,
        (Scope::Sites(x), Scope::Sites(y)) => !x.is_disjoint(y),
    }
}

/// Every agent the relay knows of.
#[derive(Debug, Default)]
pub struct Team {
    members: HashMap<AgentId, Member>,
    grace_ms: i64,
    /// Something may have changed since [`Team::changes`] last looked (it runs after every
    /// event, chat messages included, so it looks only then).
    dirty: bool,
    /// What the other nodes were last told of each agent ([`Team::news_for_others`]).
    told_others: HashMap<AgentId, Here>,
}

impl Team {
    /// An empty team whose agents go offline `grace_ms` after their last console closed.
    pub fn new(grace_ms: i64) -> Self {
        Self {
            members: HashMap::new(),
            grace_ms,
            dirty: false,
            told_others: HashMap::new(),
        }
    }

    /// An agent as the store has them (their choice is kept over restarts). A known agent's
    /// choice made here meanwhile wins over the store's copy.
    pub fn know(&mut self, agent: AgentRef, scope: Scope, chosen: Presence, limit: u32) {
        // Newly known from the store: offline, as every welcome has shown them so far.
        let m = self.members.entry(agent.id.clone()).or_insert(Member {
            agent: agent.clone(),
            scope: scope.clone(),
            chosen,
            limit,
            consoles: BTreeSet::new(),
            gone_since: None,
            away_for_good: true,
            in_call: false,
            elsewhere: HashMap::new(),
            shown: Some(Presence::Offline),
        });
        m.agent = agent;
        m.scope = scope;
        m.limit = limit;
        self.dirty = true;
    }

    /// The agents routing may give a conversation to now: shown as `available`.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.members
            .iter()
            .filter(|(_, m)| m.presence() == Presence::Available)
            .map(|(id, m)| Candidate {
                agent: id.clone(),
                scope: m.scope.clone(),
                limit: m.limit,
            })
            .collect()
    }

    /// Whether an agent serving `site` is available now.
    pub fn any_available(&self, site: &SiteKey) -> bool {
        self.members
            .values()
            .any(|m| m.presence() == Presence::Available && m.scope.covers(site))
    }

    /// Whether routing may give `agent`, who has `load` open conversations, one more.
    pub fn takes_more(&self, agent: &AgentId, load: u32) -> bool {
        self.members
            .get(agent)
            .is_some_and(|m| m.presence() == Presence::Available && load < m.limit)
    }

    /// The open consoles of the agents available for `site`.
    pub fn available_consoles<'a>(
        &'a self,
        site: &'a SiteKey,
    ) -> impl Iterator<Item = PeerId> + 'a {
        self.members
            .values()
            .filter(move |m| m.presence() == Presence::Available && m.scope.covers(site))
            .flat_map(|m| m.consoles.iter().copied())
    }

    /// An agent as the others know them, and their sites.
    pub fn member(&self, agent: &AgentId) -> Option<(&AgentRef, &Scope)> {
        self.members.get(agent).map(|m| (&m.agent, &m.scope))
    }

    /// A console of `agent` opened.
    pub fn connected(&mut self, agent: &AgentId, peer: PeerId) {
        if let Some(m) = self.members.get_mut(agent) {
            m.consoles.insert(peer);
            m.gone_since = None;
            m.away_for_good = false;
            self.dirty = true;
        }
    }

    /// A console of `agent` closed; the last one starts the grace period.
    pub fn disconnected(&mut self, now: i64, agent: &AgentId, peer: PeerId) {
        if let Some(m) = self.members.get_mut(agent) {
            if m.consoles.remove(&peer) && m.consoles.is_empty() {
                m.gone_since = Some(now);
            }
        }
    }

    /// The agent's own choice; `busy` is not one.
    pub fn choose(&mut self, agent: &AgentId, presence: Presence) -> Result<(), &'static str> {
        if presence == Presence::Busy {
            return Err("busy is set by the relay during calls");
        }
        if let Some(m) = self.members.get_mut(agent) {
            m.chosen = presence;
            self.dirty = true;
        }
        Ok(())
    }

    /// Whether `agent` is in a call now.
    pub fn in_call(&mut self, agent: &AgentId, in_call: bool) {
        if let Some(m) = self.members.get_mut(agent) {
            self.dirty |= m.in_call != in_call;
            m.in_call = in_call;
        }
    }

    /// Agents with a console open, with their consoles.
    pub fn online(&self) -> impl Iterator<Item = (&AgentId, &BTreeSet<PeerId>)> {
        self.members
            .iter()
            .filter(|(_, m)| !m.consoles.is_empty())
            .map(|(id, m)| (id, &m.consoles))
    }

    /// Ends the grace period of those gone long enough.
    pub fn tick(&mut self, now: i64) {
        for m in self.members.values_mut() {
            if m.gone_since.is_some_and(|t| now - t >= self.grace_ms) {
                m.gone_since = None;
                m.away_for_good = true;
                self.dirty = true;
            }
        }
    }

    /// What another node, `node`, says of an agent there.
    pub fn elsewhere(&mut self, node: u64, seen: Seen) {
        let Seen {
            agent,
            scope,
            limit,
            here: there,
        } = seen;
        let id = agent.id.clone();
        if !self.members.contains_key(&id) {
            self.know(agent, scope, there.chosen, limit);
        }
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let before = m.presence();
        let said = match there.online {
            true => m.elsewhere.insert(node, there),
            false => m.elsewhere.remove(&node),
        };
        // Their choice, made on that node (the store has it too): taken when that node's word
        // on it changed, so a renewal sent before a choice made here does not undo it.
        let chose = said.is_none_or(|s| s.chosen != there.chosen);
        if there.online && chose && m.chosen != there.chosen {
            m.chosen = there.chosen;
            self.told_others.insert(id, m.here());
        }
        self.dirty |= m.presence() != before;
    }

    /// `node` is gone: its consoles with it.
    pub fn node_gone(&mut self, node: u64) {
        for m in self.members.values_mut() {
            if m.elsewhere.remove(&node).is_some() {
                self.dirty = true;
            }
        }
    }

    /// Whether anything may have changed since [`Team::changes`] last looked.
    pub fn maybe_changed(&self) -> bool {
        self.dirty
    }

    /// The agents whose view on this node changed since the other nodes were last told.
    pub fn news_for_others(&mut self) -> Vec<Seen> {
        let mut news = Vec::new();
        for (id, m) in &self.members {
            let here = m.here();
            // One never told of and offline here is no news.
            let fresh = match self.told_others.get(id) {
                Some(told) => *told != here,
                None => here.online,
            };
            if fresh {
                news.push(m.seen());
            }
        }
        for seen in &news {
            self.told_others.insert(seen.agent.id.clone(), seen.here);
        }
        news
    }

    /// The agents with a console on this node, as it sees them (said again now and then, for
    /// nodes that started since).
    pub fn online_here(&self) -> impl Iterator<Item = Seen> + '_ {
        self.members
            .values()
            .filter(|m| !m.away_for_good)
            .map(Member::seen)
    }

    /// What `agent` chose.
    pub fn chosen(&self, agent: &AgentId) -> Option<Presence> {
        self.members.get(agent).map(|m| m.chosen)
    }

    /// What `agent` is shown as.
    pub fn presence(&self, agent: &AgentId) -> Presence {
        self.members
            .get(agent)
            .map_or(Presence::Offline, Member::presence)
    }

    /// The team of an agent serving `scope` (themselves included), by name.
    pub fn members_for(&self, scope: &Scope) -> Vec<TeamMember> {
        let mut team: Vec<TeamMember> = self
            .members
            .values()
            .filter(|m| overlap(&m.scope, scope))
            .map(|m| TeamMember {
                agent: m.agent.clone(),
                presence: m.presence(),
            })
            .collect();
        team.sort_by(|a, b| a.agent.name.cmp(&b.agent.name));
        team
    }

    /// Members whose presence changed since last asked, with their scope (who is to be told).
    pub fn changes(&mut self) -> Vec<(TeamMember, Scope)> {
        if !std::mem::take(&mut self.dirty) {
            return Vec::new();
        }
        let mut changed = Vec::new();
        for m in self.members.values_mut() {
            let now = m.presence();
            if m.shown != Some(now) {
                m.shown = Some(now);
                changed.push((
                    TeamMember {
                        agent: m.agent.clone(),
                        presence: now,
                    },
                    m.scope.clone(),
                ));
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalera_protocol::SiteKey;
    use std::collections::HashSet;

    fn agent(id: &str) -> AgentRef {
        AgentRef {
            id: AgentId::from(id),
            name: id.to_uppercase(),
        }
    }

    fn sites(keys: &[&str]) -> Scope {
        Scope::Sites(
            keys.iter()
                .map(|k| SiteKey::from(*k))
                .collect::<HashSet<_>>(),
        )
    }

    fn shown(team: &mut Team) -> Vec<(String, Presence)> {
        let mut c: Vec<_> = team
            .changes()
            .into_iter()
            .map(|(m, _)| (m.agent.id.0, m.presence))
            .collect();
        c.sort_by(|a, b| a.0.cmp(&b.0));
        c
    }

    #[test]
    fn an_agent_is_shown_as_chosen_busy_in_a_call_and_offline_after_the_grace() {
        let mut team = Team::new(30_000);
        let a = AgentId::from("a");
        team.know(agent("a"), Scope::All, Presence::Away, 5);
        // Known from the store only: offline, whatever they chose (no news: that is what
        // everyone was shown).
        assert_eq!(team.presence(&a), Presence::Offline);
        assert!(shown(&mut team).is_empty());
        team.connected(&a, PeerId(1));
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Away)]);
        assert_eq!(
            team.choose(&a, Presence::Busy),
            Err("busy is set by the relay during calls")
        );
        team.choose(&a, Presence::Available).unwrap();
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Available)]);
        // In a call: busy; after it, what they chose.
        team.in_call(&a, true);
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Busy)]);
        team.in_call(&a, false);
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Available)]);
        // A second console, then both close: nothing changes within the grace period...
        team.connected(&a, PeerId(2));
        team.disconnected(1_000, &a, PeerId(1));
        team.disconnected(2_000, &a, PeerId(2));
        team.tick(31_000);
        assert!(shown(&mut team).is_empty());
        // ...a reload within it keeps them as they were...
        team.connected(&a, PeerId(3));
        team.disconnected(40_000, &a, PeerId(3));
        team.tick(69_999);
        assert!(shown(&mut team).is_empty());
        // ...and past it, offline; back with their choice when a console opens.
        team.tick(70_000);
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Offline)]);
        team.connected(&a, PeerId(4));
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Available)]);
        // Chosen offline is offline, even in a call.
        team.choose(&a, Presence::Offline).unwrap();
        team.in_call(&a, true);
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Offline)]);
    }

    #[test]
    fn another_nodes_consoles_count_and_its_renewals_never_undo_a_choice() {
        let mut team = Team::new(30_000);
        let a = AgentId::from("a");
        let there = |online, in_call, chosen| Seen {
            agent: agent("a"),
            scope: Scope::All,
            limit: 5,
            here: Here {
                online,
                in_call,
                chosen,
            },
        };
        // Never seen here: node 7's word makes them known, and available.
        team.elsewhere(7, there(true, false, Presence::Available));
        assert_eq!(team.presence(&a), Presence::Available);
        assert_eq!(shown(&mut team), vec![("a".into(), Presence::Available)]);
        // In a call there: busy here too.
        team.elsewhere(7, there(true, true, Presence::Available));
        assert_eq!(team.presence(&a), Presence::Busy);
        team.elsewhere(7, there(true, false, Presence::Available));
        // A console here too, where they choose away: node 7's renewal, sent before it
        // heard, still says available; away stays.
        team.connected(&a, PeerId(1));
        team.choose(&a, Presence::Away).unwrap();
        team.elsewhere(7, there(true, false, Presence::Available));
        assert_eq!(team.presence(&a), Presence::Away);
        // A choice made there counts here.
        team.elsewhere(7, there(true, false, Presence::Available));
        team.elsewhere(7, there(true, false, Presence::Offline));
        assert_eq!(team.presence(&a), Presence::Offline);
        team.elsewhere(7, there(true, false, Presence::Available));
        // Their console here gone past the grace period: online through node 7 alone, until
        // node 7 is gone too.
        team.disconnected(1_000, &a, PeerId(1));
        team.tick(40_000);
        assert_eq!(team.presence(&a), Presence::Available);
        team.node_gone(7);
        assert_eq!(team.presence(&a), Presence::Offline);
    }

    #[test]
    fn the_team_is_those_sharing_a_site() {
        let mut team = Team::new(1);
        team.know(agent("a"), sites(&["s1"]), Presence::Available, 5);
        team.know(agent("b"), sites(&["s1", "s2"]), Presence::Available, 5);
        team.know(agent("c"), sites(&["s3"]), Presence::Available, 5);
        team.know(agent("d"), Scope::All, Presence::Available, 5);
        let names = |scope: &Scope| -> Vec<String> {
            team.members_for(scope)
                .into_iter()
                .map(|m| m.agent.id.0)
                .collect()
        };
        assert_eq!(names(&sites(&["s2"])), vec!["b", "d"]);
        assert_eq!(names(&sites(&["s1"])), vec!["a", "b", "d"]);
        assert_eq!(names(&Scope::All), vec!["a", "b", "c", "d"]);
    }
}
