//! What benchmarks rely on: determinism, validity under the engine's own parser, realistic skew
//! and content.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use auditlog_engine::event::{parse_batch, Event, Outcome, RetentionPolicy, ValidationContext};
use auditlog_gen::{write_ndjson, GenConfig, Generator};
use serde_json::Value;

fn config(seed: u64) -> GenConfig {
    GenConfig {
        seed,
        ..GenConfig::default()
    }
}

#[test]
fn gen_is_deterministic_for_a_seed() {
    let first = Generator::new(config(11)).fill(20_000);
    let second = Generator::new(config(11)).fill(20_000);
    assert_eq!(first, second);
    let other = Generator::new(config(12)).fill(1_000);
    assert_ne!(first[..1_000], other[..]);
}

#[test]
fn gen_fill_into_recycled_events_matches_fresh_events() {
    let fresh = Generator::new(config(5)).fill(30_000);
    let mut generator = Generator::new(config(5));
    // Recycle buffers of unrelated events (another seed) to catch any leftover content.
    let mut recycled = Generator::new(config(99)).fill(10_000);
    let mut produced = Vec::new();
    for _ in 0..3 {
        generator.fill_into(&mut recycled, 10_000);
        produced.extend_from_slice(&recycled);
    }
    assert_eq!(produced, fresh);

    let mut one = Event::default();
    let mut generator = Generator::new(config(5));
    for expected in &fresh[..2_000] {
        generator.next_event_into(&mut one);
        assert_eq!(&one, expected);
    }
}

#[test]
fn gen_events_pass_engine_validation_unchanged() {
    let config = config(3);
    let start_us = config.start_us;
    let events = Generator::new(config).fill(50_000);
    let mut body = Vec::new();
    write_ndjson(&events, &mut body);
    let last_us = events.iter().map(|event| event.timestamp_us).max().unwrap();
    let retention = RetentionPolicy::new(3650);
    let ctx = ValidationContext::new(last_us + 3_600_000_000, &retention);
    let parsed = match parse_batch(&body, &ctx) {
        Ok(parsed) => parsed,
        Err(error) => {
            let line = body
                .split(|&byte| byte == b'\n')
                .nth(error.line.saturating_sub(1))
                .unwrap_or_default();
            panic!(
                "{error} ({:?}): {}",
                error.field,
                String::from_utf8_lossy(line)
            );
        }
    };
    // Parsing gives back exactly what was generated: ips canonical, JSON compact, no Some("").
    assert_eq!(parsed.len(), events.len());
    for (parsed, generated) in parsed.iter().zip(&events) {
        assert_eq!(parsed, generated);
    }
    assert!(events.iter().all(|event| event.timestamp_us >= start_us));
}

#[test]
fn gen_events_keep_their_invariants() {
    let events = Generator::new(config(4)).fill(100_000);
    let mut ids = HashSet::new();
    let mut ndjson = Vec::new();
    for event in &events {
        let optional = [
            &event.id,
            &event.project,
            &event.actor.id,
            &event.actor.email,
            &event.actor.ip,
            &event.actor.user_agent,
            &event.resource.id,
            &event.resource.name,
            &event.changes,
            &event.details,
        ];
        assert!(
            optional.iter().all(|value| value.as_deref() != Some("")),
            "{event:?}"
        );
        assert!(event.actor.id.is_some() || event.actor.email.is_some());
        let id = event
            .id
            .as_deref()
            .expect("id_fraction 1.0 gives every event an id");
        assert!(id.starts_with("evt_") && id.len() == 17, "{id}");
        assert!(ids.insert(id.to_string()), "duplicate id {id}");
        assert!(event.tenant.starts_with("acct_"));
        assert!(event
            .action
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'_'));
        if let Some(ip) = &event.actor.ip {
            let parsed: IpAddr = ip.parse().expect("valid ip");
            assert_eq!(&parsed.to_string(), ip, "ips are in canonical form");
        }
        if let Some(email) = &event.actor.email {
            assert!(
                email.contains('@') && email == email.to_lowercase(),
                "{email}"
            );
        }
        let details: Value =
            serde_json::from_str(event.details.as_deref().expect("every event has details"))
                .unwrap();
        assert!(details
            .as_object()
            .is_some_and(|object| object.contains_key("request_id")));
        if let Some(changes) = &event.changes {
            let changes: Value = serde_json::from_str(changes).unwrap();
            for change in changes.as_array().expect("changes is an array") {
                let change = change.as_object().expect("a change is an object");
                let mut keys: Vec<_> = change.keys().map(String::as_str).collect();
                keys.sort_unstable();
                assert_eq!(keys, ["field", "new", "old"]);
                assert_ne!(change["old"], change["new"], "{change:?}");
            }
        }
        ndjson.clear();
        write_ndjson(std::slice::from_ref(event), &mut ndjson);
        assert!(ndjson.len() < 2048, "{}", String::from_utf8_lossy(&ndjson));
    }
}

#[test]
fn gen_tenant_sizes_are_skewed() {
    let mut generator = Generator::new(config(6));
    let events = generator.fill(200_000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        *counts.entry(&event.tenant).or_default() += 1;
    }
    let largest = generator.largest_tenant();
    let median = generator.median_tenant();
    let largest_count = counts.get(largest).copied().unwrap_or(0);
    let median_count = counts.get(median).copied().unwrap_or(0);
    // Zipf 1.0 over 2000 tenants: about 12% vs about 0.01%.
    assert!(
        largest_count > 15_000,
        "largest tenant {largest}: {largest_count}"
    );
    assert!(
        largest_count > 100 * median_count.max(1),
        "{largest_count} vs {median_count}"
    );
    assert!(
        counts.values().all(|&count| count <= largest_count),
        "the largest tenant is the most active"
    );
    assert!(
        counts.len() > 1000,
        "the long tail is present: {} tenants",
        counts.len()
    );
    let share = generator.tenant_share(largest).unwrap();
    assert!((0.08..0.2).contains(&share), "{share}");

    let users = generator.users(largest).unwrap();
    assert!(
        users.len() >= 40,
        "a large tenant has many users: {}",
        users.len()
    );
    let domain = generator.domain(largest).unwrap();
    assert!(users
        .iter()
        .all(|user| user.email.ends_with(domain) && user.id.starts_with("user_")));
    assert!(generator.users(median).unwrap().len() >= 4);
    assert!(generator.projects(largest).unwrap().len() > 1);
    assert_eq!(generator.tenant_by_rank(0), Some(largest));
    assert!(generator.users("acct_99999").is_none());
}

#[test]
fn gen_updates_carry_changes_and_action_mix_is_cloud_like() {
    let events = Generator::new(config(8)).fill(100_000);
    let mut actions: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        *actions.entry(&event.action).or_default() += 1;
        if event.action == "update" || event.action == "permissions_changed" {
            assert!(event.changes.is_some(), "{event:?}");
        }
    }
    let share =
        |action: &str| actions.get(action).copied().unwrap_or(0) as f64 / events.len() as f64;
    for common in ["update", "start", "stop", "login"] {
        assert!(share(common) > 0.08, "{common}: {}", share(common));
    }
    for rare in [
        "invite_sent",
        "member_removed",
        "permissions_changed",
        "token_revoked",
    ] {
        assert!(
            share(rare) > 0.0 && share(rare) < 0.02,
            "{rare}: {}",
            share(rare)
        );
    }
    assert!(share("create") > share("invite_sent") && share("delete") < share("start"));
    let logins: Vec<_> = events
        .iter()
        .filter(|event| event.action == "login")
        .collect();
    let failed = logins
        .iter()
        .filter(|event| event.outcome == Outcome::Failure)
        .count() as f64
        / logins.len() as f64;
    assert!((0.015..0.07).contains(&failed), "failed logins: {failed}");

    let fields: HashSet<String> = events
        .iter()
        .filter_map(|event| event.changes.as_deref())
        .flat_map(|changes| {
            let changes: Value = serde_json::from_str(changes).unwrap();
            changes
                .as_array()
                .unwrap()
                .iter()
                .map(|change| change["field"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for field in [
        "gpu_count",
        "instance_type",
        "image",
        "disk_gb",
        "replicas",
        "labels",
        "role",
    ] {
        assert!(fields.contains(field), "{field} missing from {fields:?}");
    }
    assert!(fields.iter().any(|field| field.starts_with("env.")));
}

#[test]
fn gen_timestamps_follow_a_roughly_monotonic_clock() {
    let config = GenConfig {
        seed: 9,
        expected_events: 100_000,
        ..GenConfig::default()
    };
    let (start_us, span_us) = (config.start_us, config.span_us);
    let events = Generator::new(config).fill(100_000);
    let mut latest = events[0].timestamp_us;
    for event in &events {
        assert!(
            latest - event.timestamp_us < 5_000_000,
            "at most a few seconds late"
        );
        latest = latest.max(event.timestamp_us);
    }
    let end_us = events.last().unwrap().timestamp_us;
    // expected_events events span about span_us.
    let covered = (end_us - start_us) as f64 / span_us as f64;
    assert!(
        (0.85..1.15).contains(&covered),
        "covered {covered} of the span"
    );
}

#[test]
fn gen_id_fraction_is_respected() {
    let events = Generator::new(GenConfig {
        seed: 10,
        id_fraction: 0.25,
        ..GenConfig::default()
    })
    .fill(20_000);
    let with_id =
        events.iter().filter(|event| event.id.is_some()).count() as f64 / events.len() as f64;
    assert!((0.22..0.28).contains(&with_id), "{with_id}");
    let none = Generator::new(GenConfig {
        seed: 10,
        id_fraction: 0.0,
        ..GenConfig::default()
    })
    .fill(1_000);
    assert!(none.iter().all(|event| event.id.is_none()));
}

#[test]
fn gen_ndjson_lines_are_in_the_typical_size_range() {
    let events = Generator::new(config(2)).fill(20_000);
    let mut ndjson = Vec::new();
    write_ndjson(&events, &mut ndjson);
    let mean = ndjson.len() as f64 / events.len() as f64;
    assert!((400.0..700.0).contains(&mean), "mean line {mean} bytes");
}
