//! # auditlog-gen: realistic audit events of a multi-tenant GPU cloud
//!
//! What it does: produces an endless, deterministic (per seed) stream of [`Event`]s that look like
//! the audit log of a GPU cloud's customers: people clicking in the console, CLI users,
//! Terraform runs and scripts with API tokens, and the platform's own system actors. Every
//! benchmark, the load generator and the storage-size measurements draw from it, so compression
//! ratios and index sizes measured on it are meant to be honest.
//!
//! What it is not for: it is not a fuzzer (every event is valid, see [`Event`] and EVENT.md), and
//! it does not model any one real customer.
//!
//! ## What the data looks like
//!
//! - **Tenants** `acct_0001`.. (2000 by default) with Zipf-distributed activity (exponent
//!   [`GenConfig::tenant_skew`], 1.0 by default): with 2000 tenants the largest sends about 12%
//!   of all events, the top ten about a third, the median tenant about 0.01%. Ranks are shuffled,
//!   so the largest is not `acct_0001`; ask [`Generator::largest_tenant`] and
//!   [`Generator::median_tenant`].
//! - **Users**: 4 to about 150 per tenant (more for larger tenants), ids `user_913` unique across
//!   tenants, emails `alice.smith@acme-robotics.com` on a per-tenant domain, 1 to 3 IPs each
//!   (about 12% IPv6), one preferred browser. Invites add users, `member_removed` retires them.
//!   **API tokens** (`tok_...`, actor type `api_token`) run Terraform and scripts; **system
//!   actors** (`system:autoscaler`, `system:scheduler`, `system:billing`, `system:maintenance`)
//!   stop idle or preempted machines, restart for maintenance, scale replicas.
//! - **Sessions**: events come from 64 interleaved sessions (console, CLI, Terraform, script,
//!   system), so one actor's events cluster in time, keep one IP and user agent, and a console
//!   session opens with a `login` (about 3% of logins fail; a few failures are retried) and
//!   often ends with a `logout`.
//! - **Resources** with lifecycles: pods (`pod_8fj2k7q`, `llama-finetune-3`), VMs (`vm_...`,
//!   `h100-node-2`) and storage volumes (`vol_...`, `data-vol-7`) are created, started, stopped,
//!   restarted, updated and deleted; each tenant keeps a live set (a few for tiny tenants,
//!   hundreds for the largest) between a floor and a ceiling. Projects (`proj_ml-research`),
//!   SSH keys, API tokens and members have their own actions.
//! - **Action mix** (measured over 1M events): update 21%, stop 19%, start 16%, login 12.5%,
//!   create 10%, delete 8%, logout 5%, restart 3%, account actions (tokens, SSH keys) 4.4%, team
//!   actions 1.8%. About 1.2% of events are failures (3.7% of logins fail; start and create
//!   fail on capacity, quota and image errors). Actors: users 64%, API tokens 32%, system 3%.
//! - **`changes`** on updates, with old/new values that follow the resource's state (the next
//!   update's `old` is this update's `new`): `gpu_count`, `instance_type`, `image`, `disk_gb`,
//!   `replicas`, `env.WANDB_PROJECT` (strings, `null` when added or removed), `labels` (nested
//!   objects), `role` on `permissions_changed`, `budget_usd_monthly` on projects.
//! - **`details`** on every event: `region`, `request_id` (`req_` + 16 random hex digits: not
//!   compressible, like real request ids), `duration_ms` (heavy-tailed), often `reason`, and
//!   nested objects (`node`, `spec`, `billing`) or arrays (token `scopes`).
//! - **Time**: a simulated clock starting at [`GenConfig::start_us`] advances by exponential
//!   gaps whose mean spreads [`GenConfig::expected_events`] events over [`GenConfig::span_us`],
//!   modulated by time of day and day of week (busy in European and American working hours,
//!   quiet at weekends). Each timestamp lags the clock by a small random delay (mostly under a
//!   millisecond, rarely seconds), so events are in time order only roughly, as they arrive.
//! - **Size**: a compact NDJSON line ([`write_ndjson`]) is 546 bytes on average, 446 to 666
//!   from the 5th to the 95th percentile; zstd level 3 brings the NDJSON to about 75 bytes per
//!   event (`examples/stats.rs` prints these figures).
//!
//! ```
//! use auditlog_gen::{GenConfig, Generator};
//!
//! let mut generator = Generator::new(GenConfig { seed: 7, tenants: 100, ..GenConfig::default() });
//! let events = generator.fill(1000);
//! assert_eq!(events.len(), 1000);
//! assert!(events.iter().all(|event| event.tenant.starts_with("acct_")));
//! assert!(events.iter().any(|event| event.action == "update" && event.changes.is_some()));
//!
//! // The largest tenant sends far more events than the median one.
//! let largest = generator.largest_tenant().to_string();
//! let median = generator.median_tenant().to_string();
//! let count = |tenant: &str| events.iter().filter(|event| event.tenant == tenant).count();
//! assert!(count(&largest) > 10 * count(&median).max(1));
//!
//! let mut ndjson = Vec::new();
//! auditlog_gen::write_ndjson(&events[..2], &mut ndjson);
//! assert_eq!(ndjson.iter().filter(|&&byte| byte == b'\n').count(), 2);
//!
//! // Same seed, same events.
//! let again = Generator::new(GenConfig { seed: 7, tenants: 100, ..GenConfig::default() }).fill(1000);
//! assert_eq!(events, again);
//! ```
//!
//! Speed: [`Generator::next_event`] allocates about 13 strings per event; a load generator should
//! recycle a batch with [`Generator::fill_into`], which reuses the strings' buffers and allocates
//! almost nothing (`examples/gen_speed.rs`, `benches/benches/generate.rs`). Memory grows with the
//! number of tenants (a few kilobytes each) and slowly with the users invites add.

mod ndjson;
mod pools;
mod tenant;
mod text;

use auditlog_engine::event::{Actor, ActorType, Event, Outcome, Text};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use ndjson::write_ndjson;
pub use tenant::TenantUser;

use pools::*;
use tenant::{image_name, pick, IdSource, Kind, LiveResource, Tenant, TenantBuilder};
use text::{push_base32, push_hex64, push_u64};

/// 2026-11-01T00:00:00Z in microseconds.
pub const DEFAULT_START_US: i64 = 1_793_491_200_000_000;

const DAY_US: i64 = 86_400_000_000;

/// How the generated platform looks.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Same seed and config, same events.
    pub seed: u64,
    /// Number of tenants (`acct_0001`..).
    pub tenants: usize,
    /// Zipf exponent of tenant activity: 0 makes all tenants equal, 1 is a typical SaaS skew.
    pub tenant_skew: f64,
    /// Where the simulated clock starts, UTC microseconds.
    pub start_us: i64,
    /// The time span `expected_events` events are spread over.
    pub span_us: i64,
    /// How many events the caller expects to draw; sets the mean rate `expected_events /
    /// span_us`. Drawing more just continues past `start_us + span_us` at the same rate.
    pub expected_events: u64,
    /// Share of events carrying an idempotency `id` (`evt_` + 13 base32 digits, unique).
    pub id_fraction: f64,
    /// Sessions that interleave at any time: more means less locality per actor.
    pub concurrent_sessions: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 42,
            tenants: 2000,
            tenant_skew: 1.0,
            start_us: DEFAULT_START_US,
            span_us: 30 * DAY_US,
            expected_events: 10_000_000,
            id_fraction: 1.0,
            concurrent_sessions: 64,
        }
    }
}

impl GenConfig {
    /// Sets `expected_events` so that events arrive at `events_per_second` on average in
    /// simulated time (for a load generator that wants timestamps near real time).
    pub fn with_rate(mut self, events_per_second: f64) -> Self {
        self.expected_events = ((self.span_us as f64 / 1e6) * events_per_second).max(1.0) as u64;
        self
    }

    /// Mean events per second of simulated time.
    pub fn events_per_second(&self) -> f64 {
        self.expected_events as f64 / (self.span_us.max(1) as f64 / 1e6)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Console,
    Cli,
    Terraform,
    Script,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Login,
    Act,
    Logout,
    Done,
}

/// One actor's burst of activity.
#[derive(Debug, Clone, Copy)]
struct Session {
    tenant: u32,
    style: Style,
    /// Index of the user, token or system actor, by style.
    actor: u32,
    ip: u8,
    agent: u8,
    stage: Stage,
    remaining: u16,
    failed_logins: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Create,
    Update,
    Delete,
    Start,
    Stop,
    Restart,
    ProjectCreate,
    ProjectUpdate,
    TokenCreated,
    TokenRevoked,
    SshKeyAdded,
    SshKeyDeleted,
    InviteSent,
    InviteAccepted,
    MemberRemoved,
    PermissionsChanged,
}

const CONSOLE_ACTS: &[(Act, u32)] = &[
    (Act::Start, 200),
    (Act::Stop, 180),
    (Act::Update, 200),
    (Act::Restart, 50),
    (Act::Create, 90),
    (Act::Delete, 65),
    (Act::ProjectCreate, 3),
    (Act::ProjectUpdate, 10),
    (Act::TokenCreated, 20),
    (Act::TokenRevoked, 10),
    (Act::SshKeyAdded, 25),
    (Act::SshKeyDeleted, 12),
    (Act::InviteSent, 15),
    (Act::InviteAccepted, 12),
    (Act::MemberRemoved, 5),
    (Act::PermissionsChanged, 10),
];
const CLI_ACTS: &[(Act, u32)] = &[
    (Act::Start, 300),
    (Act::Stop, 300),
    (Act::Restart, 80),
    (Act::Update, 150),
    (Act::Create, 80),
    (Act::Delete, 60),
    (Act::SshKeyAdded, 30),
];
const TERRAFORM_ACTS: &[(Act, u32)] = &[
    (Act::Create, 300),
    (Act::Update, 400),
    (Act::Delete, 200),
    (Act::ProjectUpdate, 20),
    (Act::SshKeyAdded, 40),
    (Act::SshKeyDeleted, 30),
];
const SCRIPT_ACTS: &[(Act, u32)] = &[
    (Act::Start, 350),
    (Act::Stop, 350),
    (Act::Restart, 100),
    (Act::Update, 150),
    (Act::Create, 30),
    (Act::Delete, 20),
];
const SYSTEM_ACTS: &[(Act, u32)] = &[
    (Act::Stop, 400),
    (Act::Restart, 200),
    (Act::Update, 350),
    (Act::Delete, 50),
];

/// Relative activity by UTC hour on a weekday: European and American working hours.
const HOURLY_ACTIVITY: [f64; 24] = [
    0.55, 0.45, 0.40, 0.38, 0.40, 0.50, 0.70, 0.95, 1.20, 1.40, 1.50, 1.55, //
    1.55, 1.60, 1.70, 1.75, 1.70, 1.55, 1.35, 1.15, 1.00, 0.90, 0.78, 0.65,
];
const WEEKEND_ACTIVITY: f64 = 0.55;

/// Produces events; see the crate documentation for what they look like.
pub struct Generator {
    config: GenConfig,
    rng: SmallRng,
    tenants: Vec<Tenant>,
    /// Cumulative activity shares, indexed like `tenants`, for sampling a tenant.
    tenant_cumulative: Vec<f64>,
    /// Tenant indexes from most to least active.
    tenants_by_share: Vec<u32>,
    sessions: Vec<Session>,
    clock_us: f64,
    mean_gap_us: f64,
    /// `1 / mean activity over a week`, so the mean rate is the configured one.
    activity_norm: f64,
    event_ids: IdSource,
    object_ids: IdSource,
    next_user_number: u64,
    spare: Spare,
}

impl Generator {
    /// Builds the simulated platform (tenants, users, resources). Deterministic for a config.
    pub fn new(config: GenConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let tenant_count = config.tenants.max(1);
        let mut object_ids = IdSource::new(rng.gen());
        let event_ids = IdSource::new(rng.gen());
        let mut next_user_number = 100;

        // Zipf weights by rank, then ranks shuffled over tenant numbers.
        let weights: Vec<f64> = (1..=tenant_count)
            .map(|rank| (rank as f64).powf(-config.tenant_skew))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut rank_of_tenant: Vec<usize> = (0..tenant_count).collect();
        for index in (1..tenant_count).rev() {
            let other = rng.gen_range(0..=index);
            rank_of_tenant.swap(index, other);
        }
        let top_share = weights[0] / total;
        let width = tenant_count.to_string().len().max(4);
        let mut tenants = Vec::with_capacity(tenant_count);
        let mut builder = TenantBuilder {
            rng: &mut rng,
            ids: &mut object_ids,
            next_user_number: &mut next_user_number,
        };
        for (index, &rank) in rank_of_tenant.iter().enumerate() {
            let name = format!("acct_{:0width$}", index + 1);
            tenants.push(builder.build(name, weights[rank] / total, top_share));
        }
        let mut cumulative = 0.0;
        let tenant_cumulative = tenants
            .iter()
            .map(|tenant| {
                cumulative += tenant.share;
                cumulative
            })
            .collect();
        let mut tenants_by_share: Vec<u32> = (0..tenant_count as u32).collect();
        tenants_by_share.sort_by_key(|&index| rank_of_tenant[index as usize]);

        let week_activity: f64 =
            HOURLY_ACTIVITY.iter().sum::<f64>() * (5.0 + 2.0 * WEEKEND_ACTIVITY) / (7.0 * 24.0);
        let mean_gap_us = config.span_us.max(1) as f64 / config.expected_events.max(1) as f64;
        let mut generator = Generator {
            clock_us: config.start_us as f64,
            config,
            rng,
            tenants,
            tenant_cumulative,
            tenants_by_share,
            sessions: Vec::new(),
            mean_gap_us,
            activity_norm: 1.0 / week_activity,
            event_ids,
            object_ids,
            next_user_number,
            spare: Spare::default(),
        };
        for _ in 0..generator.config.concurrent_sessions.max(1) {
            let session = generator.new_session();
            generator.sessions.push(session);
        }
        generator
    }

    /// The configuration this generator was built with.
    pub fn config(&self) -> &GenConfig {
        &self.config
    }

    /// Draws `count` events.
    pub fn fill(&mut self, count: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next_event());
        }
        events
    }

    /// The most active tenant (about 12% of events with the default config).
    pub fn largest_tenant(&self) -> &str {
        &self.tenants[self.tenants_by_share[0] as usize].name
    }

    /// The tenant in the middle of the activity ranking (a typical small customer).
    pub fn median_tenant(&self) -> &str {
        let middle = self.tenants_by_share.len() / 2;
        &self.tenants[self.tenants_by_share[middle] as usize].name
    }

    /// The tenant at `rank` in the activity ranking (0 is the largest), if there is one.
    pub fn tenant_by_rank(&self, rank: usize) -> Option<&str> {
        self.tenants_by_share
            .get(rank)
            .map(|&index| self.tenants[index as usize].name.as_str())
    }

    /// All tenant names, `acct_0001` first.
    pub fn tenant_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tenants.iter().map(|tenant| tenant.name.as_str())
    }

    /// The expected share of events from `tenant` (0..1), for expected selectivities.
    pub fn tenant_share(&self, tenant: &str) -> Option<f64> {
        self.tenant(tenant).map(|tenant| tenant.share)
    }

    /// The users of `tenant`, including those invites added and those removed since.
    pub fn users(&self, tenant: &str) -> Option<&[TenantUser]> {
        self.tenant(tenant).map(|tenant| tenant.users.as_slice())
    }

    /// The projects of `tenant` (`proj_default` first).
    pub fn projects(&self, tenant: &str) -> Option<&[String]> {
        self.tenant(tenant).map(|tenant| tenant.projects.as_slice())
    }

    /// The email domain of `tenant` (`acme-robotics.com`).
    pub fn domain(&self, tenant: &str) -> Option<&str> {
        self.tenant(tenant).map(|tenant| tenant.domain.as_str())
    }

    fn tenant(&self, name: &str) -> Option<&Tenant> {
        // Names are `acct_` + the 1-based index, zero-padded.
        let number: usize = name.strip_prefix("acct_")?.parse().ok()?;
        self.tenants
            .get(number.checked_sub(1)?)
            .filter(|tenant| tenant.name == name)
    }

    /// Draws the next event.
    pub fn next_event(&mut self) -> Event {
        let mut event = Event::default();
        self.next_event_into(&mut event);
        event
    }

    /// Draws the next event into `event`, reusing its strings' buffers: with recycled events,
    /// generation allocates almost nothing. The result equals what [`Generator::next_event`]
    /// would have returned.
    pub fn next_event_into(&mut self, event: &mut Event) {
        self.reset(event);
        event.timestamp_us = self.advance_clock();
        let slot = self.rng.gen_range(0..self.sessions.len());
        let mut session = self.sessions[slot];
        self.session_event(&mut session, event);
        self.sessions[slot] = if session.stage == Stage::Done {
            self.new_session()
        } else {
            session
        };
        if self.config.id_fraction >= 1.0 || self.rng.gen_bool(self.config.id_fraction.max(0.0)) {
            let mut id = self.spare.string();
            self.event_ids.long_into(&mut id, "evt_");
            event.id = Some(id.into());
        }
    }

    /// Overwrites `events` with `count` new events, reusing the buffers of those already there.
    pub fn fill_into(&mut self, events: &mut Vec<Event>, count: usize) {
        events.truncate(count);
        for event in events.iter_mut() {
            self.next_event_into(event);
        }
        while events.len() < count {
            events.push(self.next_event());
        }
    }

    /// Empties every field, keeping the buffers of optional strings for reuse.
    fn reset(&mut self, event: &mut Event) {
        let spare = &mut self.spare;
        spare.recycle(&mut event.id);
        spare.recycle(&mut event.project);
        spare.recycle(&mut event.actor.id);
        spare.recycle(&mut event.actor.email);
        spare.recycle(&mut event.actor.ip);
        spare.recycle(&mut event.actor.user_agent);
        spare.recycle(&mut event.resource.id);
        spare.recycle(&mut event.resource.name);
        spare.recycle(&mut event.changes);
        spare.recycle(&mut event.details);
        event.tenant.clear();
        event.action.clear();
        event.resource.kind.clear();
        event.outcome = Outcome::Success;
        event.actor.kind = ActorType::User;
    }

    /// Moves the clock by one exponential gap and returns the event's (slightly late) timestamp.
    fn advance_clock(&mut self) -> i64 {
        let now_us = self.clock_us as i64;
        let hour = now_us.div_euclid(3_600_000_000);
        let day_of_week = (hour.div_euclid(24) + 3).rem_euclid(7); // 1970-01-01 was a Thursday; 0 is Monday.
        let mut activity = HOURLY_ACTIVITY[hour.rem_euclid(24) as usize] * self.activity_norm;
        if day_of_week >= 5 {
            activity *= WEEKEND_ACTIVITY;
        }
        let uniform: f64 = self.rng.gen();
        let gap_us = -(1.0 - uniform).ln() * self.mean_gap_us / activity;
        self.clock_us += gap_us;
        // Arrival delay: mostly sub-millisecond, a long tail up to a few seconds.
        let delay: f64 = self.rng.gen();
        let delay_us = (delay * delay * delay * delay * delay * delay * 4e6) as i64;
        (self.clock_us as i64 - delay_us).max(self.config.start_us)
    }

    fn pick_tenant(&mut self) -> u32 {
        let target = self.rng.gen::<f64>() * self.tenant_cumulative.last().copied().unwrap_or(1.0);
        let index = self
            .tenant_cumulative
            .partition_point(|&cumulative| cumulative < target);
        index.min(self.tenants.len() - 1) as u32
    }

    fn new_session(&mut self) -> Session {
        let tenant_index = self.pick_tenant();
        let rng = &mut self.rng;
        let tenant = &self.tenants[tenant_index as usize];
        let style = match rng.gen_range(0..100) {
            0..=51 => Style::Console,
            52..=63 => Style::Cli,
            64..=74 => Style::Terraform,
            75..=89 => Style::Script,
            _ => Style::System,
        };
        let geometric = |rng: &mut SmallRng, mean: f64| -> u16 {
            (-(1.0 - rng.gen::<f64>()).ln() * mean) as u16
        };
        let (actor, ip, agent, stage, remaining) = match style {
            Style::Console | Style::Cli => {
                let mut user = rng.gen_range(0..tenant.users.len());
                for _ in 0..8 {
                    if !tenant.users[user].removed {
                        break;
                    }
                    user = rng.gen_range(0..tenant.users.len());
                }
                let ip = rng.gen_range(0..tenant.users[user].ips.len()) as u8;
                let (agent, login, length) = if style == Style::Console {
                    (tenant.users[user].browser, true, 1 + geometric(rng, 3.0))
                } else {
                    (
                        rng.gen_range(0..CLI_AGENTS.len()) as u8,
                        rng.gen_bool(0.4),
                        1 + geometric(rng, 2.5),
                    )
                };
                (
                    user as u32,
                    ip,
                    agent,
                    if login { Stage::Login } else { Stage::Act },
                    length,
                )
            }
            Style::Terraform | Style::Script => {
                let mut token = rng.gen_range(0..tenant.tokens.len());
                for _ in 0..8 {
                    if !tenant.tokens[token].revoked {
                        break;
                    }
                    token = rng.gen_range(0..tenant.tokens.len());
                }
                let (agent, length) = if style == Style::Terraform {
                    (
                        rng.gen_range(0..TERRAFORM_AGENTS.len()) as u8,
                        2 + geometric(rng, 6.0),
                    )
                } else {
                    (
                        rng.gen_range(0..SCRIPT_AGENTS.len()) as u8,
                        1 + geometric(rng, 4.0),
                    )
                };
                (token as u32, 0, agent, Stage::Act, length)
            }
            Style::System => (
                rng.gen_range(0..SYSTEM_ACTORS.len()) as u32,
                0,
                0,
                Stage::Act,
                1 + geometric(rng, 1.0),
            ),
        };
        Session {
            tenant: tenant_index,
            style,
            actor,
            ip,
            agent,
            stage,
            remaining,
            failed_logins: 0,
        }
    }

    fn session_actor(&mut self, session: &Session, actor: &mut Actor) {
        let spare = &mut self.spare;
        let tenant = &self.tenants[session.tenant as usize];
        match session.style {
            Style::Console | Style::Cli => {
                let user = &tenant.users[session.actor as usize];
                let agent = if session.style == Style::Console {
                    BROWSER_AGENTS[usize::from(session.agent)]
                } else {
                    CLI_AGENTS[usize::from(session.agent)]
                };
                user_actor(spare, actor, user, usize::from(session.ip), agent);
            }
            Style::Terraform | Style::Script => {
                let token = &tenant.tokens[session.actor as usize];
                let agent = if session.style == Style::Terraform {
                    TERRAFORM_AGENTS[usize::from(session.agent)]
                } else {
                    SCRIPT_AGENTS[usize::from(session.agent)]
                };
                actor.kind = ActorType::ApiToken;
                spare.set(&mut actor.id, &token.id);
                spare.set(&mut actor.ip, &token.ip);
                spare.set(&mut actor.user_agent, agent);
            }
            Style::System => {
                let (id, agent) = SYSTEM_ACTORS[session.actor as usize];
                actor.kind = ActorType::System;
                spare.set(&mut actor.id, id);
                spare.set(&mut actor.user_agent, agent);
            }
        }
    }

    fn session_event(&mut self, session: &mut Session, event: &mut Event) {
        self.session_actor(session, &mut event.actor);
        event
            .tenant
            .push_str(&self.tenants[session.tenant as usize].name);
        match session.stage {
            Stage::Login => {
                self.login(session, event);
            }
            Stage::Logout => {
                self.logout(session, event);
                session.stage = Stage::Done;
            }
            Stage::Act | Stage::Done => {
                let acts = match session.style {
                    Style::Console => CONSOLE_ACTS,
                    Style::Cli => CLI_ACTS,
                    Style::Terraform => TERRAFORM_ACTS,
                    Style::Script => SCRIPT_ACTS,
                    Style::System => SYSTEM_ACTS,
                };
                let act = weighted(&mut self.rng, acts);
                self.act(session, act, event);
                session.remaining = session.remaining.saturating_sub(1);
                if session.remaining == 0 {
                    session.stage = if session.style == Style::Console && self.rng.gen_bool(0.45) {
                        Stage::Logout
                    } else {
                        Stage::Done
                    };
                }
            }
        }
    }

    fn login(&mut self, session: &mut Session, event: &mut Event) {
        let rng = &mut self.rng;
        event.action.push_str("login");
        account_resource(
            &mut self.spare,
            &self.tenants[session.tenant as usize],
            event,
        );
        let mut details = JsonObject::new(self.spare.string());
        let fails = rng.gen_bool(if session.failed_logins > 0 { 0.3 } else { 0.03 });
        if session.style == Style::Cli {
            details.string("method", "device_code");
        } else {
            details.string("method", pick(rng, LOGIN_METHODS));
        }
        if fails {
            event.outcome = Outcome::Failure;
            details.string("reason", pick(rng, LOGIN_FAILURE_REASONS));
            session.failed_logins += 1;
            details.number("attempt", u64::from(session.failed_logins));
            // Most people retry; some give up.
            if rng.gen_bool(0.25) || session.failed_logins >= 5 {
                session.stage = Stage::Done;
            }
        } else {
            details.boolean("mfa", rng.gen_bool(0.7));
            session.stage = Stage::Act;
        }
        details.request_id(rng);
        details.number("duration_ms", duration_ms(rng, 180));
        event.details = Some(details.finish().into());
    }

    fn logout(&mut self, session: &Session, event: &mut Event) {
        let rng = &mut self.rng;
        event.action.push_str("logout");
        let tenant = &self.tenants[session.tenant as usize];
        account_resource(&mut self.spare, tenant, event);
        let mut details = JsonObject::new(self.spare.string());
        details.number("session_minutes", duration_ms(rng, 35));
        details.request_id(rng);
        event.details = Some(details.finish().into());
    }

    fn act(&mut self, session: &Session, act: Act, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        match act {
            Act::Create => self.create(session, event),
            Act::Delete => {
                if self.tenants[tenant_index].resources.len()
                    <= self.tenants[tenant_index].resources_min
                {
                    self.create(session, event)
                } else {
                    self.delete(session, event)
                }
            }
            Act::Update => self.update(session, event),
            Act::Start | Act::Stop | Act::Restart => self.power(session, act, event),
            Act::ProjectCreate | Act::ProjectUpdate => self.project(session, act, event),
            Act::TokenCreated | Act::TokenRevoked => self.token(session, act, event),
            Act::SshKeyAdded | Act::SshKeyDeleted => self.ssh_key(session, act, event),
            Act::InviteSent
            | Act::InviteAccepted
            | Act::MemberRemoved
            | Act::PermissionsChanged => self.team(session, act, event),
        }
    }

    /// A random live resource, preferring compute ones when `compute` is set.
    fn pick_resource(&mut self, tenant_index: usize, compute: bool) -> Option<usize> {
        // The dense kind list keeps this to one cache miss (the chosen resource) per event.
        let kinds = &self.tenants[tenant_index].resource_kinds;
        if kinds.is_empty() {
            return None;
        }
        let mut index = self.rng.gen_range(0..kinds.len());
        for _ in 0..6 {
            if !compute || kinds[index].is_compute() {
                return Some(index);
            }
            index = self.rng.gen_range(0..kinds.len());
        }
        None
    }

    fn create(&mut self, session: &Session, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        if self.tenants[tenant_index].resources.len() >= self.tenants[tenant_index].resources_max {
            return self.delete(session, event);
        }
        event.action.push_str("create");
        let mut builder = TenantBuilder {
            rng: &mut self.rng,
            ids: &mut self.object_ids,
            next_user_number: &mut self.next_user_number,
        };
        let kind = builder.random_kind();
        let resource = builder.new_resource(&self.tenants[tenant_index], kind);
        let rng = &mut self.rng;
        let tenant = &self.tenants[tenant_index];
        resource_fields(&mut self.spare, tenant, &resource, event);
        let mut details = JsonObject::new(self.spare.string());
        details.string("region", REGIONS[usize::from(resource.region)]);
        let failed = rng.gen_bool(0.03);
        details.begin_object("spec");
        let spec = &mut details;
        match kind {
            Kind::Pod => {
                spec.string("gpu_type", GPU_TYPES[usize::from(resource.gpu_type)]);
                spec.number("gpu_count", u64::from(resource.gpu_count));
                spec.string("image", tenant.image(resource.image));
                spec.number("replicas", u64::from(resource.replicas));
            }
            Kind::Vm => {
                spec.string(
                    "instance_type",
                    INSTANCE_TYPES[usize::from(resource.instance_type)],
                );
                spec.string(
                    "os_image",
                    pick(
                        rng,
                        &[
                            "ubuntu-22.04-cuda-12.4",
                            "ubuntu-24.04-cuda-12.6",
                            "rocky-9-cuda-12.4",
                        ],
                    ),
                );
                spec.number("disk_gb", u64::from(resource.disk_gb));
            }
            Kind::Storage => {
                spec.number("size_gb", u64::from(resource.disk_gb) * 4);
                spec.string("class", pick(rng, &["nvme", "nvme", "ssd", "hdd-archive"]));
            }
        }
        details.end_object();
        if failed {
            event.outcome = Outcome::Failure;
            event.resource.id = None;
            details.string("reason", pick(rng, FAILURE_REASONS));
        } else if kind.is_compute() {
            details.begin_object("billing");
            details.string(
                "plan",
                pick(rng, &["on-demand", "on-demand", "reserved", "spot"]),
            );
            details.number(
                "hourly_usd_cents",
                u64::from(resource.gpu_count) * pick(rng, &[89, 129, 199, 249, 299]),
            );
            details.end_object();
        }
        details.request_id(rng);
        details.number("duration_ms", duration_ms(rng, 2500));
        event.details = Some(details.finish().into());
        if !failed {
            self.tenants[tenant_index].push_resource(resource);
        }
    }

    fn delete(&mut self, session: &Session, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        let Some(index) = self.pick_resource(tenant_index, false) else {
            return self.create(session, event);
        };
        event.action.push_str("delete");
        let resource = self.tenants[tenant_index].remove_resource(index);
        let rng = &mut self.rng;
        resource_fields(
            &mut self.spare,
            &self.tenants[tenant_index],
            &resource,
            event,
        );
        let mut details = JsonObject::new(self.spare.string());
        details.string("region", REGIONS[usize::from(resource.region)]);
        if session.style == Style::System {
            details.string(
                "reason",
                pick(
                    rng,
                    &["expired", "insufficient credits", "account suspended"],
                ),
            );
        } else if rng.gen_bool(0.3) {
            details.string(
                "reason",
                pick(
                    rng,
                    &[
                        "no longer needed",
                        "experiment finished",
                        "cleanup",
                        "replaced",
                    ],
                ),
            );
        }
        details.request_id(rng);
        details.number("duration_ms", duration_ms(rng, 900));
        event.details = Some(details.finish().into());
    }

    fn power(&mut self, session: &Session, act: Act, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        let Some(index) = self.pick_resource(tenant_index, true) else {
            return self.create(session, event);
        };
        let rng = &mut self.rng;
        let tenant = &mut self.tenants[tenant_index];
        let resource = &mut tenant.resources[index];
        // The action follows the machine's state: a running one is stopped or restarted.
        let action = match (act, resource.running) {
            (Act::Restart, true) => "restart",
            (_, true) => "stop",
            (_, false) => "start",
        };
        event.action.push_str(action);
        let mut details = JsonObject::new(self.spare.string());
        details.string("region", REGIONS[usize::from(resource.region)]);
        let failed = action == "start" && rng.gen_bool(0.025);
        match action {
            "start" if failed => {
                details.string("reason", FAILURE_REASONS[rng.gen_range(0..3)]);
            }
            "start" => {
                details.begin_object("node");
                details.string_with("host", |text| {
                    text.push_str("gpu-node-");
                    push_u64(text, rng.gen_range(1..2400));
                });
                details.string_with("zone", |text| {
                    text.push_str(REGIONS[usize::from(resource.region)]);
                    text.push('-');
                    text.push(pick(rng, &['a', 'b', 'c']));
                });
                details.end_object();
                details.string("gpu_type", GPU_TYPES[usize::from(resource.gpu_type)]);
                details.number("gpu_count", u64::from(resource.gpu_count));
                resource.running = true;
            }
            "stop" => {
                let reasons = if session.style == Style::System {
                    SYSTEM_STOP_REASONS
                } else {
                    STOP_REASONS
                };
                details.string("reason", pick(rng, reasons));
                details.number("uptime_s", duration_ms(rng, 14_400));
                resource.running = false;
            }
            _ => {
                let reason = if session.style == Style::System {
                    pick(
                        rng,
                        &["host maintenance", "driver update", "health check failed"],
                    )
                } else {
                    pick(rng, RESTART_REASONS)
                };
                details.string("reason", reason);
            }
        }
        if failed {
            event.outcome = Outcome::Failure;
        }
        details.request_id(rng);
        details.number(
            "duration_ms",
            duration_ms(rng, if action == "stop" { 1200 } else { 6000 }),
        );
        event.details = Some(details.finish().into());
        let resource = &self.tenants[tenant_index].resources[index];
        resource_fields(
            &mut self.spare,
            &self.tenants[tenant_index],
            resource,
            event,
        );
    }

    fn update(&mut self, session: &Session, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        let Some(index) = self.pick_resource(tenant_index, session.style == Style::System) else {
            return self.create(session, event);
        };
        event.action.push_str("update");
        let rng = &mut self.rng;
        let Tenant {
            images: custom_images,
            resources,
            ..
        } = &mut self.tenants[tenant_index];
        let images = custom_images.len() as u8;
        let resource = &mut resources[index];
        let mut changes = JsonArray::new(self.spare.string());
        let change_count = if rng.gen_bool(0.15) { 2 } else { 1 };
        let mut last_field = u8::MAX;
        for _ in 0..change_count {
            // Field codes: 0 gpu_count, 1 image, 2 replicas, 3 env, 4 labels, 5 instance_type, 6 disk_gb.
            let field = match (session.style, resource.kind) {
                (Style::System, _) => pick(rng, &[2, 2, 2, 6]),
                (_, Kind::Pod) => pick(rng, &[0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]),
                (_, Kind::Vm) => pick(rng, &[5, 5, 5, 0, 0, 6, 6, 4]),
                (_, Kind::Storage) => pick(rng, &[6, 6, 6, 4]),
            };
            if field == last_field {
                continue;
            }
            last_field = field;
            match field {
                0 => {
                    let new = different(rng, GPU_COUNTS, resource.gpu_count);
                    changes.change_numbers(
                        "gpu_count",
                        u64::from(resource.gpu_count),
                        u64::from(new),
                    );
                    resource.gpu_count = new;
                }
                1 => {
                    let total = IMAGES.len() as u8 + images;
                    let mut new = rng.gen_range(0..total);
                    if new == resource.image {
                        new = (new + 1) % total;
                    }
                    let old = resource.image;
                    resource.image = new;
                    changes.change_strings(
                        "image",
                        Some(image_name(custom_images, old)),
                        Some(image_name(custom_images, new)),
                    );
                }
                2 => {
                    let new = different(rng, REPLICAS, resource.replicas);
                    changes.change_numbers(
                        "replicas",
                        u64::from(resource.replicas),
                        u64::from(new),
                    );
                    resource.replicas = new;
                }
                3 => {
                    let variable = rng.gen_range(0..ENV_VARS.len());
                    let (name, values) = ENV_VARS[variable];
                    let old = resource.env[variable];
                    let new = if old != u8::MAX && rng.gen_bool(0.15) {
                        u8::MAX
                    } else {
                        let mut new = rng.gen_range(0..values.len()) as u8;
                        if new == old {
                            new = (new + 1) % values.len() as u8;
                        }
                        new
                    };
                    let value = |index: u8| values.get(usize::from(index)).copied();
                    let mut field = String::with_capacity(24);
                    field.push_str("env.");
                    field.push_str(name);
                    changes.change_strings(&field, value(old), value(new));
                    resource.env[variable] = new;
                }
                4 => {
                    let mut new = rng.gen_range(0..LABEL_SETS.len()) as u8;
                    if new == resource.labels {
                        new = (new + 1) % LABEL_SETS.len() as u8;
                    }
                    changes.change_raw(
                        "labels",
                        LABEL_SETS[usize::from(resource.labels)],
                        LABEL_SETS[usize::from(new)],
                    );
                    resource.labels = new;
                }
                5 => {
                    let mut new = rng.gen_range(0..INSTANCE_TYPES.len()) as u8;
                    if new == resource.instance_type {
                        new = (new + 1) % INSTANCE_TYPES.len() as u8;
                    }
                    changes.change_strings(
                        "instance_type",
                        Some(INSTANCE_TYPES[usize::from(resource.instance_type)]),
                        Some(INSTANCE_TYPES[usize::from(new)]),
                    );
                    resource.instance_type = new;
                }
                _ => {
                    // Disks only grow.
                    let new = resource.disk_gb * pick(rng, &[2, 2, 3, 4]) / 2 + 50;
                    let field = if resource.kind == Kind::Storage {
                        "size_gb"
                    } else {
                        "disk_gb"
                    };
                    changes.change_numbers(field, u64::from(resource.disk_gb), u64::from(new));
                    resource.disk_gb = new;
                }
            }
        }
        let resource = &self.tenants[tenant_index].resources[index];
        let mut details = JsonObject::new(self.spare.string());
        details.string("region", REGIONS[usize::from(resource.region)]);
        if session.style == Style::System {
            details.string(
                "reason",
                pick(
                    rng,
                    &[
                        "autoscale: queue depth",
                        "autoscale: low utilization",
                        "disk usage above 90%",
                    ],
                ),
            );
        } else if rng.gen_bool(0.5) {
            details.string("reason", pick(rng, UPDATE_REASONS));
        }
        details.request_id(rng);
        details.number("duration_ms", duration_ms(rng, 700));
        event.changes = Some(changes.finish().into());
        event.details = Some(details.finish().into());
        resource_fields(
            &mut self.spare,
            &self.tenants[tenant_index],
            resource,
            event,
        );
    }

    fn project(&mut self, session: &Session, act: Act, event: &mut Event) {
        let rng = &mut self.rng;
        let tenant = &mut self.tenants[session.tenant as usize];
        let mut details = JsonObject::new(self.spare.string());
        let candidate = format!("proj_{}", pick(rng, PROJECTS));
        let project = if act == Act::ProjectCreate && !tenant.projects.contains(&candidate) {
            event.action.push_str("create");
            tenant.projects.push(candidate.clone());
            details.string(
                "default_region",
                REGIONS[usize::from(pick(rng, &tenant.regions))],
            );
            candidate
        } else {
            event.action.push_str("update");
            let mut changes = JsonArray::new(self.spare.string());
            if rng.gen_bool(0.5) {
                let old = pick(rng, &[500u64, 1000, 2000, 5000, 10_000, 25_000]);
                changes.change_numbers("budget_usd_monthly", old, old * pick(rng, &[1, 3, 4]) / 2);
            } else {
                let old = rng.gen_range(0..LABEL_SETS.len());
                let new = (old + rng.gen_range(1..LABEL_SETS.len())) % LABEL_SETS.len();
                changes.change_raw("labels", LABEL_SETS[old], LABEL_SETS[new]);
            }
            event.changes = Some(changes.finish().into());
            tenant.projects[rng.gen_range(0..tenant.projects.len())].clone()
        };
        details.request_id(rng);
        details.number("duration_ms", duration_ms(rng, 300));
        event.details = Some(details.finish().into());
        event.resource.kind.push_str("project");
        self.spare
            .set(&mut event.resource.name, &project["proj_".len()..]);
        self.spare.set(&mut event.resource.id, &project);
        self.spare.set(&mut event.project, &project);
    }

    fn token(&mut self, session: &Session, act: Act, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        let active = self.tenants[tenant_index]
            .tokens
            .iter()
            .filter(|token| !token.revoked)
            .count();
        let mut details = JsonObject::new(self.spare.string());
        let (id, name) = if act == Act::TokenCreated || active <= 1 {
            event.action.push_str("token_created");
            let mut builder = TenantBuilder {
                rng: &mut self.rng,
                ids: &mut self.object_ids,
                next_user_number: &mut self.next_user_number,
            };
            let token = builder.new_token();
            let tokens = &mut self.tenants[tenant_index].tokens;
            let fields = (token.id.clone(), token.name.clone());
            tokens.push(token);
            details.raw("scopes", pick(&mut self.rng, TOKEN_SCOPES));
            details.number("expires_in_days", pick(&mut self.rng, &[30, 90, 90, 365]));
            fields
        } else {
            event.action.push_str("token_revoked");
            let tokens = &mut self.tenants[tenant_index].tokens;
            let mut index = self.rng.gen_range(0..tokens.len());
            while tokens[index].revoked {
                index = (index + 1) % tokens.len();
            }
            tokens[index].revoked = true;
            details.string(
                "reason",
                pick(
                    &mut self.rng,
                    &[
                        "rotation",
                        "rotation",
                        "unused",
                        "leaked",
                        "employee offboarding",
                    ],
                ),
            );
            (tokens[index].id.clone(), tokens[index].name.clone())
        };
        details.request_id(&mut self.rng);
        event.details = Some(details.finish().into());
        event.resource.kind.push_str("api_token");
        event.resource.id = Some(id.into());
        event.resource.name = Some(name.into());
    }

    fn ssh_key(&mut self, session: &Session, act: Act, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        let mut details = JsonObject::new(self.spare.string());
        let key = if act == Act::SshKeyAdded || self.tenants[tenant_index].ssh_keys.len() <= 1 {
            event.action.push_str("ssh_key_added");
            let mut builder = TenantBuilder {
                rng: &mut self.rng,
                ids: &mut self.object_ids,
                next_user_number: &mut self.next_user_number,
            };
            let key = builder.new_ssh_key(&self.tenants[tenant_index]);
            self.tenants[tenant_index].ssh_keys.push(key.clone());
            details.string(
                "key_type",
                pick(
                    &mut self.rng,
                    &["ed25519", "ed25519", "ed25519", "rsa-4096", "ecdsa-p256"],
                ),
            );
            let rng = &mut self.rng;
            details.string_with("fingerprint", |text| {
                text.push_str("SHA256:");
                for _ in 0..4 {
                    push_base32(text, rng.gen(), 11);
                }
            });
            key
        } else {
            event.action.push_str("ssh_key_deleted");
            let keys = &mut self.tenants[tenant_index].ssh_keys;
            let index = self.rng.gen_range(0..keys.len());
            keys.swap_remove(index)
        };
        details.request_id(&mut self.rng);
        event.details = Some(details.finish().into());
        event.resource.kind.push_str("ssh_key");
        event.resource.id = Some(key.id.into());
        event.resource.name = Some(key.name.into());
    }

    fn team(&mut self, session: &Session, act: Act, event: &mut Event) {
        let tenant_index = session.tenant as usize;
        let tenant = &self.tenants[tenant_index];
        let active_users = tenant.users.iter().filter(|user| !user.removed).count();
        let can_invite = tenant.users.len() + tenant.pending_invites.len() < tenant.users_max;
        let act = match act {
            Act::InviteAccepted if tenant.pending_invites.is_empty() => Act::InviteSent,
            Act::MemberRemoved if active_users <= 3 => Act::PermissionsChanged,
            Act::InviteSent if !can_invite => Act::PermissionsChanged,
            other => other,
        };
        let mut details = JsonObject::new(self.spare.string());
        match act {
            Act::InviteSent => {
                event.action.push_str("invite_sent");
                let mut builder = TenantBuilder {
                    rng: &mut self.rng,
                    ids: &mut self.object_ids,
                    next_user_number: &mut self.next_user_number,
                };
                let email = builder.fresh_email(&self.tenants[tenant_index]);
                let invite_id = self.object_ids.short("inv_");
                self.tenants[tenant_index]
                    .pending_invites
                    .push(email.clone());
                details.string("role", pick(&mut self.rng, &ROLES[..5]));
                details.number("expires_in_days", 7);
                event.resource.kind.push_str("member");
                event.resource.id = Some(invite_id.into());
                event.resource.name = Some(email.into());
            }
            Act::InviteAccepted => {
                event.action.push_str("invite_accepted");
                let email = self.tenants[tenant_index].pending_invites.swap_remove(0);
                let mut builder = TenantBuilder {
                    rng: &mut self.rng,
                    ids: &mut self.object_ids,
                    next_user_number: &mut self.next_user_number,
                };
                let user = builder.new_user(email);
                // The invitee accepts, from their own browser and address.
                user_actor(
                    &mut self.spare,
                    &mut event.actor,
                    &user,
                    0,
                    BROWSER_AGENTS[usize::from(user.browser)],
                );
                member_resource(&mut self.spare, &user, event);
                self.tenants[tenant_index].users.push(user);
            }
            Act::MemberRemoved => {
                event.action.push_str("member_removed");
                let users = &mut self.tenants[tenant_index].users;
                let mut index = self.rng.gen_range(0..users.len());
                while users[index].removed
                    || (matches!(session.style, Style::Console | Style::Cli)
                        && index == session.actor as usize)
                {
                    index = (index + 1) % users.len();
                }
                users[index].removed = true;
                details.string(
                    "reason",
                    pick(
                        &mut self.rng,
                        &[
                            "offboarding",
                            "offboarding",
                            "contract ended",
                            "duplicate account",
                        ],
                    ),
                );
                member_resource(&mut self.spare, &users[index], event);
            }
            _ => {
                event.action.push_str("permissions_changed");
                let users = &mut self.tenants[tenant_index].users;
                let index = self.rng.gen_range(0..users.len());
                let old = users[index].role;
                let mut new = self.rng.gen_range(0..ROLES.len()) as u8;
                while ROLES[usize::from(new)] == ROLES[usize::from(old)] {
                    new = (new + 1) % ROLES.len() as u8;
                }
                users[index].role = new;
                let mut changes = JsonArray::new(self.spare.string());
                changes.change_strings(
                    "role",
                    Some(ROLES[usize::from(old)]),
                    Some(ROLES[usize::from(new)]),
                );
                event.changes = Some(changes.finish().into());
                member_resource(&mut self.spare, &users[index], event);
            }
        }
        details.request_id(&mut self.rng);
        event.details = Some(details.finish().into());
    }
}

fn user_actor(spare: &mut Spare, actor: &mut Actor, user: &TenantUser, ip: usize, agent: &str) {
    actor.kind = ActorType::User;
    spare.set(&mut actor.id, &user.id);
    spare.set(&mut actor.email, &user.email);
    spare.set(&mut actor.ip, &user.ips[ip.min(user.ips.len() - 1)]);
    spare.set(&mut actor.user_agent, agent);
}

fn member_resource(spare: &mut Spare, user: &TenantUser, event: &mut Event) {
    event.resource.kind.clear();
    event.resource.kind.push_str("member");
    spare.set(&mut event.resource.id, &user.id);
    spare.set(&mut event.resource.name, &user.email);
}

/// Sets the event's project and resource from a live resource.
fn resource_fields(spare: &mut Spare, tenant: &Tenant, resource: &LiveResource, event: &mut Event) {
    spare.set(
        &mut event.project,
        &tenant.projects[usize::from(resource.project)],
    );
    event.resource.kind.clear();
    event.resource.kind.push_str(resource.kind.as_str());
    spare.set(&mut event.resource.id, &resource.id);
    spare.set(&mut event.resource.name, &resource.name);
}

fn account_resource(spare: &mut Spare, tenant: &Tenant, event: &mut Event) {
    event.resource.kind.push_str("account");
    spare.set(&mut event.resource.id, &tenant.name);
}

/// Buffers of optional strings taken out of recycled events, handed out again for new values.
#[derive(Debug, Default)]
struct Spare(Vec<Text>);

impl Spare {
    /// Bounds the pool when callers recycle events with more fields than new ones need.
    const BUFFERS_MAX: usize = 64;

    /// An empty string, with a recycled buffer when there is one.
    fn string(&mut self) -> String {
        self.0.pop().map(Text::into_string).unwrap_or_default()
    }

    fn recycle(&mut self, slot: &mut Option<Text>) {
        if let Some(mut text) = slot.take() {
            if self.0.len() < Self::BUFFERS_MAX {
                text.clear();
                self.0.push(text);
            }
        }
    }

    fn set(&mut self, slot: &mut Option<Text>, value: &str) {
        let text = slot.get_or_insert_with(|| self.0.pop().unwrap_or_default());
        text.clear();
        text.push_str(value);
    }
}

fn weighted<T: Copy>(rng: &mut SmallRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, weight)| weight).sum();
    let mut target = rng.gen_range(0..total);
    for &(item, weight) in table {
        if target < weight {
            return item;
        }
        target -= weight;
    }
    table[table.len() - 1].0
}

/// A value from `values` other than `current` (when there is one).
fn different(rng: &mut SmallRng, values: &[u32], current: u32) -> u32 {
    for _ in 0..8 {
        let value = pick(rng, values);
        if value != current {
            return value;
        }
    }
    current + 1
}

/// A heavy-tailed duration around `median` (log-normal-like: most close, a few 10x).
fn duration_ms(rng: &mut SmallRng, median: u64) -> u64 {
    let uniform: f64 = rng.gen();
    let factor = (uniform * 2.0 - 1.0) * 1.2 + if rng.gen_bool(0.05) { 2.3 } else { 0.0 };
    ((median as f64) * factor.exp()).max(1.0) as u64
}

/// Builds a compact JSON object from trusted parts (keys and string values need no escaping).
struct JsonObject {
    text: String,
    /// False right after an opening brace.
    needs_comma: bool,
}

impl JsonObject {
    fn new(mut text: String) -> Self {
        text.clear();
        text.push('{');
        JsonObject {
            text,
            needs_comma: false,
        }
    }

    fn key(&mut self, key: &str) {
        if self.needs_comma {
            self.text.push(',');
        }
        self.needs_comma = true;
        self.text.push('"');
        self.text.push_str(key);
        self.text.push_str("\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        debug_assert!(!value.contains(['"', '\\']));
        self.key(key);
        self.text.push('"');
        self.text.push_str(value);
        self.text.push('"');
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        push_u64(&mut self.text, value);
    }

    fn boolean(&mut self, key: &str, value: bool) {
        self.key(key);
        self.text.push_str(if value { "true" } else { "false" });
    }

    fn string_with(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        self.key(key);
        self.text.push('"');
        write(&mut self.text);
        self.text.push('"');
    }

    fn begin_object(&mut self, key: &str) {
        self.key(key);
        self.text.push('{');
        self.needs_comma = false;
    }

    fn end_object(&mut self) {
        self.text.push('}');
        self.needs_comma = true;
    }

    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.text.push_str(json);
    }

    fn request_id(&mut self, rng: &mut SmallRng) {
        self.key("request_id");
        self.text.push_str("\"req_");
        push_hex64(&mut self.text, rng.gen());
        self.text.push('"');
    }

    fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// Builds the compact JSON text of a `changes` array.
struct JsonArray(String);

impl JsonArray {
    fn new(mut text: String) -> Self {
        text.clear();
        text.push('[');
        JsonArray(text)
    }

    fn field(&mut self, field: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str("{\"field\":\"");
        self.0.push_str(field);
        self.0.push_str("\",\"old\":");
    }

    fn change_numbers(&mut self, field: &str, old: u64, new: u64) {
        self.field(field);
        push_u64(&mut self.0, old);
        self.0.push_str(",\"new\":");
        push_u64(&mut self.0, new);
        self.0.push('}');
    }

    fn change_strings(&mut self, field: &str, old: Option<&str>, new: Option<&str>) {
        self.field(field);
        push_json_string_or_null(&mut self.0, old);
        self.0.push_str(",\"new\":");
        push_json_string_or_null(&mut self.0, new);
        self.0.push('}');
    }

    fn change_raw(&mut self, field: &str, old: &str, new: &str) {
        self.field(field);
        self.0.push_str(old);
        self.0.push_str(",\"new\":");
        self.0.push_str(new);
        self.0.push('}');
    }

    fn finish(mut self) -> String {
        self.0.push(']');
        self.0
    }
}

fn push_json_string_or_null(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => {
            out.push('"');
            out.push_str(value);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}
