//! # auditlog-tests: whole-process tests of the audit-log datastore
//!
//! What it does: holds the crash test (a child process appends while the parent kills it with
//! SIGKILL at random moments, then reopens the data directory and checks every contract) and the
//! in-process power-loss test (a [`auditlog_engine::io::FaultyVfs`] cuts every file back to its
//! last fsync). This library is what both share: a deterministic event generator, so that the
//! checker can rebuild any event byte for byte from its `id`, and the invariant checker.
//!
//! [`server`] runs the real `auditlog` binary on a loopback port for the server's end-to-end
//! tests (`tests/server_*.rs`).
//!
//! What it is not for: it is not a load generator (`tools/gen` is) and publishes nothing.
//!
//! Limits: batches are identified by `(round, producer, counter)`, each below 2^32; events are
//! never reused across batches, so a `(tenant, id)` key belongs to exactly one batch.

pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use auditlog_engine::event::{
    format_compact, Actor, ActorType, Event, Outcome, Resource, StoredEvent,
};
use auditlog_engine::store::AppendResult;

/// Tenants the generated events are spread over; every producer writes to every tenant, so
/// `tenant_seq` is assigned under concurrency.
pub const TENANTS: usize = 6;

/// Most events in one generated batch.
pub const BATCH_EVENTS_MAX: usize = 200;

/// Identity of a generated batch: its content is a pure function of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId {
    pub round: u32,
    pub producer: u32,
    pub counter: u32,
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}-p{}-c{}", self.round, self.producer, self.counter)
    }
}

/// SplitMix64: a cheap, well-mixed hash of the generator's inputs.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash_of(batch: BatchId, index: u64, salt: u64) -> u64 {
    let mut h = mix(u64::from(batch.round) << 40
        ^ u64::from(batch.producer) << 32
        ^ u64::from(batch.counter));
    h = mix(h ^ index);
    mix(h ^ salt)
}

impl BatchId {
    /// Number of events of this batch, 1..=[`BATCH_EVENTS_MAX`].
    pub fn len(&self) -> usize {
        // Mostly small batches, some up to the maximum: keeps the volume (and the debug-mode
        // run time) down while still covering large group commits.
        let h = hash_of(*self, u64::MAX, 1);
        let max = if h % 10 < 7 {
            20
        } else {
            BATCH_EVENTS_MAX as u64
        };
        1 + ((h >> 8) % max) as usize
    }

    /// Never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The events of this batch; `base_us` is the timestamp around which they happened.
    pub fn events(&self, base_us: i64) -> Vec<Event> {
        (0..self.len())
            .map(|index| self.event(index, base_us))
            .collect()
    }

    /// Event `index` of this batch.
    pub fn event(&self, index: usize, base_us: i64) -> Event {
        let h = |salt| hash_of(*self, index as u64, salt);
        let tenant = format!("acct_{:04}", h(2) % TENANTS as u64);
        let actions = ["create", "update", "delete", "login", "scale", "attach"];
        let kinds = ["pod", "volume", "api_key", "instance", "project"];
        let actor_kind =
            [ActorType::User, ActorType::ApiToken, ActorType::System][(h(3) % 3) as usize];
        let user = h(4) % 50;
        Event {
            id: Some(format!("{self}-i{index}").into()),
            // Within the hour before base_us, so retention never touches them.
            timestamp_us: base_us - (h(5) % 3_600_000_000) as i64,
            tenant: tenant.into(),
            project: (h(6) % 3 != 0).then(|| format_compact!("proj_{}", h(6) % 7)),
            actor: Actor {
                id: Some(format!("user_{user}").into()),
                email: (h(7) % 2 == 0).then(|| format_compact!("u{user}@example.com")),
                kind: actor_kind,
                ip: (h(8) % 4 != 0)
                    .then(|| format_compact!("10.{}.{}.{}", h(8) % 256, h(9) % 256, h(10) % 256)),
                user_agent: (h(11) % 5 == 0).then(|| "curl/8.5.0 (Ünïcödé agent)".into()),
            },
            action: actions[(h(12) % actions.len() as u64) as usize].into(),
            outcome: if h(13) % 10 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            resource: Resource {
                kind: kinds[(h(14) % kinds.len() as u64) as usize].into(),
                id: Some(format!("res_{:x}", h(15) % 100_000).into()),
                name: (h(16) % 2 == 0).then(|| format_compact!("llama-{}", h(16) % 1000)),
            },
            changes: (h(17) % 3 == 0).then(|| {
                format_compact!(
                    r#"[{{"field":"gpu_count","old":{},"new":{}}}]"#,
                    h(17) % 8,
                    h(18) % 8
                )
            }),
            details: (h(19) % 2 == 0).then(|| {
                format_compact!(
                    r#"{{"batch":"{self}","index":{index},"pad":"{}"}}"#,
                    "x".repeat((h(20) % 300) as usize)
                )
            }),
        }
    }
}

/// Parses `r{round}-p{producer}-c{counter}-i{index}` back into its batch and index.
pub fn parse_event_id(id: &str) -> Option<(BatchId, usize)> {
    let mut parts = id.split('-');
    let round = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let producer = parts.next()?.strip_prefix('p')?.parse().ok()?;
    let counter = parts.next()?.strip_prefix('c')?.parse().ok()?;
    let index = parts.next()?.strip_prefix('i')?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        BatchId {
            round,
            producer,
            counter,
        },
        index,
    ))
}

/// An acknowledged append of a generated batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub batch: BatchId,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub accepted: usize,
    /// (index in the batch, seq of the event already stored with that key).
    pub duplicates: Vec<(usize, u64)>,
}

impl Ack {
    pub fn new(batch: BatchId, result: &AppendResult) -> Self {
        Self {
            batch,
            first_seq: result.first_seq,
            last_seq: result.last_seq,
            accepted: result.accepted,
            duplicates: result.duplicates.iter().map(|d| (d.index, d.seq)).collect(),
        }
    }

    /// `ack <round> <producer> <counter> <first_seq|-> <last_seq|-> <accepted> <dups|->`,
    /// dups as `index:seq,index:seq`.
    pub fn to_line(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let dups = if self.duplicates.is_empty() {
            "-".to_string()
        } else {
            self.duplicates
                .iter()
                .map(|(i, s)| format!("{i}:{s}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "ack {} {} {} {} {} {} {}",
            self.batch.round,
            self.batch.producer,
            self.batch.counter,
            opt(self.first_seq),
            opt(self.last_seq),
            self.accepted,
            dups
        )
    }

    /// Inverse of [`Ack::to_line`] (without the newline).
    pub fn parse_line(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 8 || fields[0] != "ack" {
            return None;
        }
        let opt = |s: &str| -> Option<Option<u64>> {
            if s == "-" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let duplicates = if fields[7] == "-" {
            Vec::new()
        } else {
            fields[7]
                .split(',')
                .map(|pair| {
                    let (i, s) = pair.split_once(':')?;
                    Some((i.parse().ok()?, s.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()?
        };
        Some(Self {
            batch: BatchId {
                round: fields[1].parse().ok()?,
                producer: fields[2].parse().ok()?,
                counter: fields[3].parse().ok()?,
            },
            first_seq: opt(fields[4])?,
            last_seq: opt(fields[5])?,
            accepted: fields[6].parse().ok()?,
            duplicates,
        })
    }

    /// The seq each event of the batch must have in the store: duplicates at the seq the store
    /// named, the others consecutively from `first_seq` in batch order.
    pub fn expected_seqs(&self) -> Result<Vec<u64>, String> {
        let len = self.batch.len();
        let dups: HashMap<usize, u64> = self.duplicates.iter().copied().collect();
        if dups.len() + self.accepted != len {
            return Err(format!(
                "ack of {}: {} accepted + {} duplicates != {} events sent",
                self.batch,
                self.accepted,
                dups.len(),
                len
            ));
        }
        let range_len = match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) if last >= first => (last - first + 1) as usize,
            (None, None) => 0,
            other => return Err(format!("ack of {}: bad seq range {other:?}", self.batch)),
        };
        if range_len != self.accepted {
            return Err(format!(
                "ack of {}: seq range {:?}..={:?} holds {range_len}, accepted {}",
                self.batch, self.first_seq, self.last_seq, self.accepted
            ));
        }
        let mut next = self.first_seq.unwrap_or(0);
        let mut out = Vec::with_capacity(len);
        for index in 0..len {
            match dups.get(&index) {
                Some(&seq) => out.push(seq),
                None => {
                    out.push(next);
                    next += 1;
                }
            }
        }
        Ok(out)
    }
}

/// What [`check_store`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub stored_events: usize,
    pub acked_batches: usize,
    /// Batches found whole in the store that no ack (known to the checker) covered.
    pub unacked_batches_stored: usize,
    /// Acked events not found; only allowed with `lost_suffix_ok`.
    pub acked_events_lost: usize,
}

/// Checks the store's contents (`stored`, as `read_all` returns them) against what was
/// acknowledged:
///
/// - seqs strictly increase (so they are unique);
/// - no `(tenant, id)` key is stored twice;
/// - each tenant's `tenant_seq`s are exactly 1..=n in seq order;
/// - every stored event is a whole event of a generated batch, byte for byte, and every batch
///   found is found whole, at consecutive seqs in batch order (never half-stored);
/// - every acknowledged event is stored at the seq its ack named, byte for byte. With
///   `lost_suffix_ok` (interval durability after a power loss) acknowledged events may be missing,
///   but only after the last stored seq: no hole in what survived.
pub fn check_store(
    stored: &[StoredEvent],
    acks: &[Ack],
    base_us: i64,
    lost_suffix_ok: bool,
) -> Result<CheckSummary, String> {
    let mut summary = CheckSummary {
        stored_events: stored.len(),
        acked_batches: acks.len(),
        ..CheckSummary::default()
    };
    let mut by_seq: HashMap<u64, &StoredEvent> = HashMap::with_capacity(stored.len());
    let mut keys: HashMap<(&str, &str), u64> = HashMap::with_capacity(stored.len());
    let mut tenant_seqs: HashMap<&str, u64> = HashMap::new();
    let mut batches: BTreeMap<BatchId, Vec<(usize, u64)>> = BTreeMap::new();
    let mut previous_seq = 0;
    for event in stored {
        if event.seq <= previous_seq {
            return Err(format!(
                "seq {} follows seq {previous_seq}: not strictly increasing",
                event.seq
            ));
        }
        previous_seq = event.seq;
        by_seq.insert(event.seq, event);
        let tenant = event.event.tenant.as_str();
        let counter = tenant_seqs.entry(tenant).or_insert(0);
        *counter += 1;
        if event.tenant_seq != *counter {
            return Err(format!(
                "seq {}: tenant {tenant} has tenant_seq {}, expected {} (gap or repeat)",
                event.seq, event.tenant_seq, *counter
            ));
        }
        let Some(id) = event.event.id.as_deref() else {
            return Err(format!(
                "seq {}: stored event has no id: {:?}",
                event.seq, event.event
            ));
        };
        if let Some(other) = keys.insert((tenant, id), event.seq) {
            return Err(format!(
                "key ({tenant}, {id}) stored twice: seqs {other} and {}",
                event.seq
            ));
        }
        let Some((batch, index)) = parse_event_id(id) else {
            return Err(format!(
                "seq {}: id {id:?} is not a generated id",
                event.seq
            ));
        };
        if index >= batch.len() {
            return Err(format!(
                "seq {}: id {id} beyond its batch of {}",
                event.seq,
                batch.len()
            ));
        }
        let expected = batch.event(index, base_us);
        if event.event != expected {
            return Err(format!(
                "seq {}: stored event differs from what was sent\n stored: {:?}\n   sent: {expected:?}",
                event.seq, event.event
            ));
        }
        batches.entry(batch).or_default().push((index, event.seq));
    }
    for (batch, found) in &batches {
        // Found in seq order; a whole batch is every index, in order, at consecutive seqs.
        let whole = found.len() == batch.len()
            && found
                .iter()
                .enumerate()
                .all(|(i, &(index, seq))| index == i && seq == found[0].1 + i as u64);
        if !whole {
            return Err(format!(
                "batch {batch} of {} events is half-stored or out of order: (index, seq) = {found:?}",
                batch.len()
            ));
        }
    }
    let max_seq = stored.last().map_or(0, |e| e.seq);
    let mut acked: std::collections::HashSet<BatchId> = std::collections::HashSet::new();
    for ack in acks {
        acked.insert(ack.batch);
        let seqs = ack.expected_seqs()?;
        for (index, &seq) in seqs.iter().enumerate() {
            let sent = ack.batch.event(index, base_us);
            match by_seq.get(&seq) {
                Some(stored) if stored.event == sent => {}
                Some(stored) => {
                    return Err(format!(
                        "acked event {}-i{index} should be at seq {seq}, which holds {:?}",
                        ack.batch, stored.event.id
                    ))
                }
                None if lost_suffix_ok && seq > max_seq => summary.acked_events_lost += 1,
                None => {
                    return Err(format!(
                    "acked event {}-i{index} (seq {seq}) is lost; the store ends at seq {max_seq}",
                    ack.batch
                ))
                }
            }
        }
    }
    summary.unacked_batches_stored = batches.keys().filter(|b| !acked.contains(b)).count();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_event_id_round_trips_and_content_is_deterministic() {
        let batch = BatchId {
            round: 3,
            producer: 2,
            counter: 41,
        };
        let events = batch.events(1_800_000_000_000_000);
        assert_eq!(events.len(), batch.len());
        assert_eq!(events, batch.events(1_800_000_000_000_000));
        for (i, event) in events.iter().enumerate() {
            assert_eq!(
                parse_event_id(event.id.as_deref().unwrap()),
                Some((batch, i))
            );
            assert_ne!(event.project.as_deref(), Some(""));
        }
    }

    #[test]
    fn ack_line_round_trips() {
        let ack = Ack {
            batch: BatchId {
                round: 1,
                producer: 0,
                counter: 7,
            },
            first_seq: Some(10),
            last_seq: Some(12),
            accepted: 3,
            duplicates: vec![(0, 4), (4, 5)],
        };
        assert_eq!(Ack::parse_line(&ack.to_line()), Some(ack));
    }
}
