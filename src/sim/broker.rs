//! The simulated national broker: persistent sessions that queue QoS 1
//! messages for clients that are away (up to a bound, then dropped, as
//! mosquitto's `max_queued_messages` does), retained messages, shared
//! subscriptions, the shipped ACL (`firmware-config/mosquitto/national.acl`)
//! and a message size limit. Latency, loss, duplication and reordering are
//! the world's ([`super::world`]): the broker says who gets what.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// A client of the broker.
pub type ClientId = usize;

/// Who a client logs in as, which decides what the ACL lets it do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// A checkpoint (its id): its own records, backfill requests, witness.
    Post(String),
    /// `permitgate-hub`: acknowledgements, the feed, hub alerts and status.
    Hub,
    /// A misconfigured bridge: may read and publish anything.
    Bridge,
}

/// A message as the broker carries it.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Numbered in publication order (replays get a new number).
    pub id: u64,
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Rc<[u8]>,
    /// The client that published it.
    pub from: ClientId,
}

/// Why a publication was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than the broker's `message_size_limit` (PUBACK 0x95).
    TooLarge,
    /// The ACL does not let this client publish there (PUBACK 0x87).
    NotAuthorized,
}

struct Session {
    login: Login,
    connected: bool,
    subscriptions: Vec<String>,
    queued: VecDeque<Msg>,
}

/// The broker's state.
pub struct Broker {
    prefix: String,
    sessions: Vec<Session>,
    retained: BTreeMap<String, Msg>,
    /// Largest payload taken, bytes.
    pub size_limit: usize,
    /// Most messages queued for a client that is away.
    pub queue_limit: usize,
    next_id: u64,
    /// Turn of each shared group, so members take messages in rotation.
    turns: BTreeMap<String, usize>,
    /// Messages dropped because a session's queue was full.
    pub dropped: u64,
}

impl Broker {
    /// A broker for topics under `prefix`.
    pub fn new(prefix: &str, size_limit: usize, queue_limit: usize) -> Broker {
        Broker {
            prefix: prefix.to_owned(),
            sessions: Vec::new(),
            retained: BTreeMap::new(),
            size_limit,
            queue_limit,
            next_id: 1,
            turns: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// A new client (its session starts away).
    pub fn client(&mut self, login: Login) -> ClientId {
        self.sessions.push(Session {
            login,
            connected: false,
            subscriptions: Vec::new(),
            queued: VecDeque::new(),
        });
        self.sessions.len() - 1
    }

    /// Whether `c` is connected.
    pub fn connected(&self, c: ClientId) -> bool {
        self.sessions[c].connected
    }

    /// `c` connects; what its session queued while it was away comes back, in order.
    pub fn connect(&mut self, c: ClientId) -> Vec<Msg> {
        let s = &mut self.sessions[c];
        s.connected = true;
        s.queued.drain(..).collect()
    }

    /// `c` goes away; its session (subscriptions, queue) stays.
    pub fn disconnect(&mut self, c: ClientId) {
        self.sessions[c].connected = false;
    }

    /// A message that reached `c` after it went away: kept for its return.
    pub fn requeue(&mut self, c: ClientId, m: Msg) {
        self.queue(c, m);
    }

    fn queue(&mut self, c: ClientId, m: Msg) {
        let s = &mut self.sessions[c];
        if s.queued.len() >= self.queue_limit {
            self.dropped += 1;
        } else {
            s.queued.push_back(m);
        }
    }

    /// `c` subscribes to `filter`; the retained messages it matches come back.
    pub fn subscribe(&mut self, c: ClientId, filter: &str) -> Vec<Msg> {
        let s = &mut self.sessions[c];
        if !s.subscriptions.iter().any(|f| f == filter) {
            s.subscriptions.push(filter.to_owned());
        }
        if filter.starts_with("$share/") || !self.may_read(c, filter) {
            return Vec::new();
        }
        self.retained
            .values()
            .filter(|m| matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// `from` publishes; the message and who gets it now (connected
    /// clients) come back, the rest is queued in the sessions of those away.
    pub fn publish(
        &mut self,
        from: ClientId,
        topic: &str,
        payload: Rc<[u8]>,
        retain: bool,
    ) -> Result<(Msg, Vec<ClientId>), Refusal> {
        if payload.len() > self.size_limit {
            return Err(Refusal::TooLarge);
        }
        if !self.may_write(from, topic) {
            return Err(Refusal::NotAuthorized);
        }
        let m = Msg {
            id: self.next_id,
            topic: topic.to_owned(),
            payload,
            from,
        };
        self.next_id += 1;
        if retain {
            if m.payload.is_empty() {
                self.retained.remove(topic);
            } else {
                self.retained.insert(topic.to_owned(), m.clone());
            }
        }
        let mut targets: Vec<ClientId> = Vec::new();
        let mut groups: BTreeMap<String, Vec<ClientId>> = BTreeMap::new();
        for (c, s) in self.sessions.iter().enumerate() {
            for f in &s.subscriptions {
                if let Some(rest) = f.strip_prefix("$share/")
                    && let Some((group, filter)) = rest.split_once('/')
                {
                    if matches(filter, topic) && self.may_read(c, filter) {
                        groups
                            .entry(format!("{group}/{filter}"))
                            .or_default()
                            .push(c);
                    }
                } else if matches(f, topic) && self.may_read(c, f) && !targets.contains(&c) {
                    targets.push(c);
                }
            }
        }
        for (g, members) in groups {
            // Design: a member that is connected is preferred, as brokers
            // do; the turn rotates so each hub process takes a share.
            let turn = self.turns.entry(g).or_default();
            *turn += 1;
            let online: Vec<ClientId> = members
                .iter()
                .copied()
                .filter(|c| self.sessions[*c].connected)
                .collect();
            let pick = if online.is_empty() {
                members[*turn % members.len()]
            } else {
                online[*turn % online.len()]
            };
            if !targets.contains(&pick) {
                targets.push(pick);
            }
        }
        let mut now = Vec::new();
        for c in targets {
            if self.sessions[c].connected {
                now.push(c);
            } else {
                self.queue(c, m.clone());
            }
        }
        Ok((m, now))
    }

    fn may_write(&self, c: ClientId, topic: &str) -> bool {
        let p = &self.prefix;
        match &self.sessions[c].login {
            Login::Bridge => true,
            Login::Hub => [
                format!("{p}/+/sync/ack"),
                format!("{p}/+/sync/feed"),
                format!("{p}/hub/feed"),
                format!("{p}/hub/alerts"),
                format!("{p}/hub/status"),
            ]
            .iter()
            .any(|f| matches(f, topic)),
            Login::Post(cp) => [
                format!("{p}/hub/records/{cp}"),
                format!("{p}/hub/backfill"),
                format!("{p}/{cp}/sync/witness"),
            ]
            .iter()
            .any(|f| f == topic),
        }
    }

    fn may_read(&self, c: ClientId, filter: &str) -> bool {
        let p = &self.prefix;
        let allowed: Vec<String> = match &self.sessions[c].login {
            Login::Bridge => return true,
            Login::Hub => vec![
                format!("{p}/hub/records/+"),
                format!("{p}/hub/backfill"),
                format!("{p}/policy"),
                format!("{p}/hub/status"),
            ],
            Login::Post(cp) => vec![
                format!("{p}/{cp}/sync/ack"),
                format!("{p}/{cp}/sync/feed"),
                format!("{p}/hub/feed"),
                format!("{p}/hub/alerts"),
                format!("{p}/hub/status"),
                format!("{p}/policy"),
                format!("{p}/+/sync/witness"),
            ],
        };
        allowed.iter().any(|a| a == filter)
    }
}

/// Whether MQTT topic filter `filter` (with `+` and `#`) matches `topic`.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(b: &[u8]) -> Rc<[u8]> {
        Rc::from(b)
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b", "a/c"));
    }

    #[test]
    fn the_acl_the_size_limit_and_sessions_of_clients_away() {
        let mut b = Broker::new("permitgate", 100, 2);
        let hub = b.client(Login::Hub);
        let post = b.client(Login::Post("post-a".into()));
        b.connect(hub);
        b.subscribe(hub, "$share/hubs/permitgate/hub/records/+");
        b.subscribe(post, "permitgate/post-a/sync/ack");
        // A post publishes only its own records.
        assert_eq!(
            b.publish(post, "permitgate/hub/records/post-b", payload(b"x"), false)
                .unwrap_err(),
            Refusal::NotAuthorized
        );
        let to = b
            .publish(post, "permitgate/hub/records/post-a", payload(b"x"), false)
            .unwrap();
        assert_eq!(to.1, vec![hub]);
        assert_eq!(
            b.publish(
                post,
                "permitgate/hub/records/post-a",
                payload(&[0; 101]),
                false
            )
            .unwrap_err(),
            Refusal::TooLarge
        );
        // Acks to a post that is away wait in its session, up to the bound.
        for _ in 0..3 {
            assert!(
                b.publish(hub, "permitgate/post-a/sync/ack", payload(b"a"), true)
                    .unwrap()
                    .1
                    .is_empty()
            );
        }
        assert_eq!(b.connect(post).len(), 2);
        assert_eq!(b.dropped, 1);
        // The retained ack comes on subscribing again.
        assert_eq!(b.subscribe(post, "permitgate/post-a/sync/ack").len(), 1);
    }
}
