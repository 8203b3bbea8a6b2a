//! EVENT.md's rules, one test per rule: each asserts the line, the field and the rule's words.

use auditlog_engine::event::time::{format_rfc3339_us, parse_rfc3339_us};
use auditlog_engine::event::{
    parse_batch, parse_event, write_event_json, write_stored_event_json, Actor, ActorType, Event,
    Outcome, Resource, RetentionPolicy, StoredEvent, Text, ValidationContext, ValidationError,
};
use proptest::prelude::*;
use serde_json::{json, Value};

/// 2026-11-18T11:06:40Z.
const NOW_US: i64 = 1_795_000_000_000_000;
const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

fn retention() -> RetentionPolicy {
    RetentionPolicy::new(90).with_tenant("acct_short", 7)
}

fn parse(body: &[u8]) -> Result<Vec<Event>, ValidationError> {
    let retention = retention();
    let ctx = ValidationContext::new(NOW_US, &retention);
    parse_batch(body, &ctx)
}

fn parse_one(event: &Value) -> Event {
    let mut events = parse(event.to_string().as_bytes()).expect("valid event");
    assert_eq!(events.len(), 1);
    events.remove(0)
}

fn error_of(body: &[u8]) -> ValidationError {
    match parse(body) {
        Ok(events) => panic!("expected an error, parsed {events:?}"),
        Err(error) => error,
    }
}

/// The error of a one-event NDJSON body.
fn error_of_event(event: &Value) -> ValidationError {
    error_of(event.to_string().as_bytes())
}

/// Asserts line and field, and that the message contains every one of `words`.
fn assert_error(error: &ValidationError, line: usize, field: Option<&str>, words: &[&str]) {
    assert_eq!(error.line, line, "line of {error}");
    assert_eq!(error.field.as_deref(), field, "field of {error}");
    for word in words {
        assert!(
            error.message.contains(word),
            "message {:?} lacks {word:?}",
            error.message
        );
    }
    // Messages are lowercase (acronyms aside) and end without a period.
    assert!(!error.message.ends_with('.'), "{error}");
    let first_word = error.message.split(' ').next().unwrap_or_default();
    assert!(
        !first_word.starts_with(|c: char| c.is_uppercase())
            || first_word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        "message is lowercase: {error}"
    );
}

/// A minimal valid event.
fn minimal() -> Value {
    json!({
        "tenant": "acct_0042",
        "actor": { "id": "user_913" },
        "action": "delete",
        "resource": { "type": "pod" }
    })
}

/// `minimal()` with `path` (dotted) set to `value`.
fn with(path: &str, value: Value) -> Value {
    let mut event = minimal();
    let mut target = &mut event;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            target[part] = value;
            break;
        }
        target = &mut target[part];
    }
    event
}

/// `minimal()` without the field at `path` (dotted).
fn without(path: &str) -> Value {
    let mut event = minimal();
    let mut target = &mut event;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            target.as_object_mut().unwrap().remove(part);
            break;
        }
        target = &mut target[part];
    }
    event
}

// ---------------------------------------------------------------- happy paths and batch shape

#[test]
fn validation_accepts_the_event_md_example() {
    // EVENT.md's example, with a date inside the test's retention window.
    let body = r#"{
      "id": "evt_5f2c9a",
      "timestamp": "2026-11-17T01:20:32.123456Z",
      "tenant": "acct_0042",
      "project": "proj_ml-research",
      "actor": {
        "id": "user_913",
        "email": "alice@example.com",
        "type": "user",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"
      },
      "action": "update",
      "outcome": "success",
      "resource": { "type": "pod", "id": "pod_8fj2k", "name": "llama-finetune-3" },
      "changes": [ { "field": "gpu_count", "old": 1, "new": 4 } ],
      "details": { "region": "eu-west", "reason": "scale up" }
    }"#;
    let events = parse(format!("[{body}]").as_bytes()).unwrap();
    let event = events[0].clone();
    assert_eq!(
        event,
        Event {
            id: Some("evt_5f2c9a".into()),
            timestamp_us: parse_rfc3339_us("2026-11-17T01:20:32.123456Z").unwrap(),
            tenant: "acct_0042".into(),
            project: Some("proj_ml-research".into()),
            actor: Actor {
                id: Some("user_913".into()),
                email: Some("alice@example.com".into()),
                kind: ActorType::User,
                ip: Some("203.0.113.7".into()),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0".into()),
            },
            action: "update".into(),
            outcome: Outcome::Success,
            resource: Resource {
                kind: "pod".into(),
                id: Some("pod_8fj2k".into()),
                name: Some("llama-finetune-3".into()),
            },
            changes: Some(r#"[{"field":"gpu_count","old":1,"new":4}]"#.into()),
            details: Some(r#"{"region":"eu-west","reason":"scale up"}"#.into()),
        }
    );
}

#[test]
fn validation_fills_defaults_for_a_minimal_event() {
    let event = parse_one(&minimal());
    assert_eq!(event.id, None);
    assert_eq!(event.timestamp_us, NOW_US);
    assert_eq!(event.project, None);
    assert_eq!(event.actor.kind, ActorType::User);
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(event.changes, None);
    assert_eq!(event.details, None);
}

#[test]
fn ndjson_parses_lines_and_skips_blank_ones() {
    let body = format!(
        "\n{}\n   \n\t\n{}\n\n",
        with("action", json!("login")),
        with("action", json!("logout"))
    );
    let events = parse(body.as_bytes()).unwrap();
    let actions: Vec<_> = events.iter().map(|event| event.action.as_str()).collect();
    assert_eq!(actions, ["login", "logout"]);
}

#[test]
fn ndjson_accepts_crlf_line_endings_and_no_final_newline() {
    let body = format!("{}\r\n{}", minimal(), minimal());
    assert_eq!(parse(body.as_bytes()).unwrap().len(), 2);
}

#[test]
fn ndjson_counts_blank_lines_in_line_numbers() {
    let body = format!("{}\n\n{}\n\n{}\n", minimal(), minimal(), without("tenant"));
    let error = error_of(body.as_bytes());
    assert_error(&error, 5, Some("tenant"), &["required field is missing"]);
}

#[test]
fn array_parses_events() {
    let body = format!(
        "  \n[ {} ,\n {} ]\n",
        minimal(),
        with("outcome", json!("failure"))
    );
    let events = parse(body.as_bytes()).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].outcome, Outcome::Failure);
}

#[test]
fn array_numbers_errors_by_position_in_the_array() {
    let body = format!(
        "[\n{},\n\n{},\n{}\n]",
        minimal(),
        minimal(),
        with("actor.ip", json!("300.1.1.1"))
    );
    let error = error_of(body.as_bytes());
    assert_error(
        &error,
        3,
        Some("actor.ip"),
        &["not an IPv4 or IPv6 address"],
    );
}

#[test]
fn batch_rejects_an_empty_body() {
    for body in ["", "   \n\r\n\n", "[]", " [ \n ] "] {
        let error = error_of(body.as_bytes());
        assert_eq!(error.line, 0, "{body:?}");
        assert_eq!(error.field, None);
        assert_eq!(error.message, "empty batch");
        assert_eq!(error.to_string(), "empty batch");
    }
}

#[test]
fn batch_fails_on_its_first_bad_event() {
    let body = format!(
        "{}\n{}\n{}",
        minimal(),
        with("outcome", json!("maybe")),
        without("tenant")
    );
    let error = error_of(body.as_bytes());
    assert_error(&error, 2, Some("outcome"), &["unknown outcome"]);
}

#[test]
fn parse_event_uses_the_given_line() {
    let retention = retention();
    let ctx = ValidationContext::new(NOW_US, &retention);
    let error = parse_event(without("action").to_string().as_bytes(), 17, &ctx).unwrap_err();
    assert_error(&error, 17, Some("action"), &["required field is missing"]);
    assert!(parse_event(minimal().to_string().as_bytes(), 1, &ctx).is_ok());
}

#[test]
fn error_display_names_line_and_field() {
    let body = format!(
        "{}\n{}\n{}",
        minimal(),
        minimal(),
        with("actor.ip", json!("300.1.1.1"))
    );
    assert_eq!(
        error_of(body.as_bytes()).to_string(),
        r#"line 3, field actor.ip: not an IPv4 or IPv6 address: "300.1.1.1""#
    );
    assert_eq!(
        error_of(b"[1]").to_string(),
        "line 1: expected an event object, found a number"
    );
}

// ---------------------------------------------------------------- JSON syntax and encoding

#[test]
fn syntax_reports_malformed_json_with_line_and_column() {
    let body = format!("{}\n{{\"tenant\": \"a\",, }}\n", minimal());
    let error = error_of(body.as_bytes());
    assert_error(
        &error,
        2,
        None,
        &["malformed JSON at column 16", "key must be a string"],
    );
}

#[test]
fn syntax_reports_malformed_json_in_an_array() {
    let body = format!("[{}, {} {}]", minimal(), minimal(), minimal());
    let error = error_of(body.as_bytes());
    assert_error(&error, 3, None, &["malformed JSON", "of the body"]);
}

#[test]
fn syntax_rejects_trailing_text_after_an_event() {
    let body = format!("{} {{}}", minimal());
    let error = error_of(body.as_bytes());
    assert_error(&error, 1, None, &["malformed JSON", "trailing characters"]);
}

#[test]
fn syntax_rejects_an_event_that_is_not_an_object() {
    let body = format!("{}\n[{}]", minimal(), minimal());
    let error = error_of(body.as_bytes());
    assert_error(
        &error,
        2,
        None,
        &["expected an event object, found an array"],
    );
    let error = error_of(b"[{}, \"event\"]");
    // The first event fails first.
    assert_error(&error, 1, Some("tenant"), &["required field is missing"]);
    let error = error_of(format!("[{}, \"event\"]", minimal()).as_bytes());
    assert_error(
        &error,
        2,
        None,
        &["expected an event object, found a string"],
    );
}

#[test]
fn syntax_rejects_invalid_utf8_with_the_line() {
    let mut body = format!("{}\n", minimal()).into_bytes();
    body.extend_from_slice(b"{\"tenant\":\"acct\xff\"}\n");
    let error = error_of(&body);
    assert_error(&error, 2, None, &["invalid UTF-8", "column 16"]);
}

#[test]
fn syntax_rejects_invalid_utf8_in_an_array_with_the_position() {
    let mut body = format!("[{},\n{},", minimal(), minimal()).into_bytes();
    body.extend_from_slice(b"{\"tenant\":\"acct\xc3\"}]");
    let error = error_of(&body);
    assert_error(&error, 3, None, &["invalid UTF-8", "of the body"]);
}

#[test]
fn syntax_decodes_string_escapes() {
    let event = parse_one(&with("project", json!("tab\there \"quoted\" é")));
    assert_eq!(event.project.as_deref(), Some("tab\there \"quoted\" é"));
    let body = br#"{"tenant":"acct_1","actor":{"id":"\u0075\u00e9\ud83d\ude00"},"action":"delete","resource":{"type":"pod"}}"#;
    assert_eq!(parse(body).unwrap()[0].actor.id.as_deref(), Some("ué😀"));
}

// ---------------------------------------------------------------- unknown, duplicate and mistyped fields

#[test]
fn validation_rejects_unknown_top_level_field() {
    let error = error_of_event(&with("colour", json!("red")));
    assert_error(
        &error,
        1,
        Some("colour"),
        &["unknown field", "allowed: id, timestamp"],
    );
}

#[test]
fn validation_rejects_unknown_actor_field() {
    let error = error_of_event(&with("actor.role", json!("admin")));
    assert_error(
        &error,
        1,
        Some("actor.role"),
        &["unknown field", "user_agent"],
    );
}

#[test]
fn validation_rejects_unknown_resource_field() {
    let error = error_of_event(&with("resource.owner", json!("x")));
    assert_error(
        &error,
        1,
        Some("resource.owner"),
        &["unknown field", "type, id, name"],
    );
}

#[test]
fn validation_rejects_unknown_change_item_field() {
    let event = with(
        "changes",
        json!([{ "field": "a", "old": 1, "new": 2 }, { "field": "b", "before": 1 }]),
    );
    let error = error_of_event(&event);
    assert_error(
        &error,
        1,
        Some("changes[1].before"),
        &["unknown field", "field, old, new"],
    );
}

#[test]
fn validation_escapes_and_truncates_unknown_field_names() {
    let key = format!("bad\n{}", "k".repeat(200));
    let error = error_of_event(&with(&key, json!(1)));
    let field = error.field.unwrap();
    assert!(field.starts_with("bad\\nkkk") && field.ends_with("...") && field.len() < 80);
}

#[test]
fn validation_rejects_duplicate_fields() {
    let body =
        br#"{"tenant":"a","tenant":"b","actor":{"id":"u"},"action":"x","resource":{"type":"pod"}}"#;
    assert_error(&error_of(body), 1, Some("tenant"), &["duplicate field"]);
    let body =
        br#"{"tenant":"a","actor":{"id":"u","id":"v"},"action":"x","resource":{"type":"pod"}}"#;
    assert_error(&error_of(body), 1, Some("actor.id"), &["duplicate field"]);
}

#[test]
fn validation_names_wrong_json_types() {
    let cases = [
        (
            "actor.ip",
            json!(7),
            "actor.ip",
            "expected a string, found a number",
        ),
        (
            "tenant",
            json!(true),
            "tenant",
            "expected a string, found a boolean",
        ),
        (
            "id",
            json!(["a"]),
            "id",
            "expected a string, found an array",
        ),
        (
            "project",
            json!({}),
            "project",
            "expected a string, found an object",
        ),
        (
            "action",
            Value::Null,
            "action",
            "expected a string, found null",
        ),
        (
            "actor",
            json!("user_913"),
            "actor",
            "expected an object, found a string",
        ),
        (
            "resource",
            json!([]),
            "resource",
            "expected an object, found an array",
        ),
        (
            "resource.type",
            json!(1.5),
            "resource.type",
            "expected a string, found a number",
        ),
        (
            "timestamp",
            json!(1_795_000_000),
            "timestamp",
            "expected a string, found a number",
        ),
        (
            "outcome",
            json!(false),
            "outcome",
            "expected a string, found a boolean",
        ),
        (
            "actor.type",
            json!(1),
            "actor.type",
            "expected a string, found a number",
        ),
        (
            "changes",
            json!({"field": "a"}),
            "changes",
            "expected an array, found an object",
        ),
        (
            "details",
            json!([1, 2]),
            "details",
            "expected an object, found an array",
        ),
        (
            "details",
            json!("text"),
            "details",
            "expected an object, found a string",
        ),
    ];
    for (path, value, field, words) in cases {
        let error = error_of_event(&with(path, value));
        assert_error(&error, 1, Some(field), &[words]);
    }
    assert_eq!(
        error_of_event(&with("actor.ip", json!(7))).to_string(),
        "line 1, field actor.ip: expected a string, found a number"
    );
}

#[test]
fn validation_treats_null_and_empty_optional_fields_as_absent() {
    let event = json!({
        "id": "", "timestamp": null, "tenant": "acct_1", "project": "",
        "actor": { "id": "u", "email": null, "type": "", "ip": "", "user_agent": "" },
        "action": "delete", "outcome": null,
        "resource": { "type": "pod", "id": "", "name": null },
        "changes": null, "details": null
    });
    let event = parse_one(&event);
    assert_eq!(event.id, None);
    assert_eq!(event.timestamp_us, NOW_US);
    assert_eq!(event.project, None);
    assert_eq!(
        event.actor,
        Actor {
            id: Some("u".into()),
            ..Actor::default()
        }
    );
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(
        event.resource,
        Resource {
            kind: "pod".into(),
            ..Resource::default()
        }
    );
    assert_eq!((event.changes, event.details), (None, None));
}

// ---------------------------------------------------------------- id, tenant, project

#[test]
fn validation_rejects_an_id_longer_than_128_bytes() {
    assert!(parse_one(&with("id", json!("i".repeat(128)))).id.is_some());
    let error = error_of_event(&with("id", json!("i".repeat(129))));
    assert_error(
        &error,
        1,
        Some("id"),
        &["too long", "129 bytes", "limit 128 bytes"],
    );
}

#[test]
fn validation_rejects_a_missing_tenant() {
    let error = error_of_event(&without("tenant"));
    assert_error(&error, 1, Some("tenant"), &["required field is missing"]);
}

#[test]
fn validation_rejects_an_empty_tenant() {
    let error = error_of_event(&with("tenant", json!("")));
    assert_error(&error, 1, Some("tenant"), &["must not be empty"]);
}

#[test]
fn validation_rejects_a_tenant_longer_than_128_bytes() {
    assert!(parse(
        with("tenant", json!("t".repeat(128)))
            .to_string()
            .as_bytes()
    )
    .is_ok());
    let error = error_of_event(&with("tenant", json!("t".repeat(129))));
    assert_error(&error, 1, Some("tenant"), &["too long", "limit 128 bytes"]);
}

#[test]
fn validation_rejects_a_tenant_outside_its_charset() {
    assert_eq!(
        parse_one(&with("tenant", json!("Org-1.eu:prod_2"))).tenant,
        "Org-1.eu:prod_2"
    );
    for (tenant, character) in [("acct 1", "' '"), ("acct/1", "'/'"), ("accté", "'é'")] {
        let error = error_of_event(&with("tenant", json!(tenant)));
        assert_error(
            &error,
            1,
            Some("tenant"),
            &[
                "invalid character",
                character,
                "at byte 5",
                "[A-Za-z0-9_.:-]",
            ],
        );
    }
}

#[test]
fn validation_rejects_a_project_longer_than_128_bytes() {
    let error = error_of_event(&with("project", json!("p".repeat(129))));
    assert_error(&error, 1, Some("project"), &["too long", "limit 128 bytes"]);
}

// ---------------------------------------------------------------- actor

#[test]
fn validation_rejects_a_missing_actor() {
    let error = error_of_event(&without("actor"));
    assert_error(&error, 1, Some("actor"), &["required field is missing"]);
}

#[test]
fn validation_rejects_an_actor_without_id_or_email() {
    for actor in [
        json!({}),
        json!({ "id": "", "email": null, "type": "system" }),
    ] {
        let error = error_of_event(&with("actor", actor));
        assert_error(&error, 1, Some("actor"), &["needs actor.id or actor.email"]);
    }
    let event = parse_one(&with("actor", json!({ "email": "a@example.com" })));
    assert_eq!(event.actor.email.as_deref(), Some("a@example.com"));
}

#[test]
fn validation_rejects_an_email_longer_than_254_bytes() {
    let email = format!("{}@example.com", "a".repeat(242));
    assert_eq!(email.len(), 254);
    assert!(parse(with("actor.email", json!(email)).to_string().as_bytes()).is_ok());
    let error = error_of_event(&with("actor.email", json!(format!("a{email}"))));
    assert_error(
        &error,
        1,
        Some("actor.email"),
        &["too long", "255 bytes", "limit 254 bytes"],
    );
}

#[test]
fn validation_rejects_an_unknown_actor_type() {
    for (text, kind) in [
        ("user", ActorType::User),
        ("api_token", ActorType::ApiToken),
        ("system", ActorType::System),
    ] {
        assert_eq!(parse_one(&with("actor.type", json!(text))).actor.kind, kind);
    }
    let error = error_of_event(&with("actor.type", json!("admin")));
    assert_error(
        &error,
        1,
        Some("actor.type"),
        &["unknown actor type \"admin\"", "user, api_token or system"],
    );
}

#[test]
fn validation_rejects_an_invalid_ip() {
    for ip in [
        "300.1.1.1",
        "1.2.3",
        "localhost",
        "fe80::1%eth0",
        "01.2.3.4",
        " 1.2.3.4",
    ] {
        let error = error_of_event(&with("actor.ip", json!(ip)));
        assert_error(
            &error,
            1,
            Some("actor.ip"),
            &["not an IPv4 or IPv6 address"],
        );
    }
}

#[test]
fn validation_normalizes_ip_addresses() {
    for (sent, stored) in [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::1", "::1"),
    ] {
        let event = parse_one(&with("actor.ip", json!(sent)));
        assert_eq!(event.actor.ip.as_deref(), Some(stored), "{sent}");
    }
}

#[test]
fn validation_rejects_a_user_agent_longer_than_1024_bytes() {
    assert!(parse(
        with("actor.user_agent", json!("u".repeat(1024)))
            .to_string()
            .as_bytes()
    )
    .is_ok());
    let error = error_of_event(&with("actor.user_agent", json!("u".repeat(1025))));
    assert_error(
        &error,
        1,
        Some("actor.user_agent"),
        &["too long", "limit 1024 bytes"],
    );
}

// ---------------------------------------------------------------- action and outcome

#[test]
fn validation_rejects_a_missing_action() {
    let error = error_of_event(&without("action"));
    assert_error(&error, 1, Some("action"), &["required field is missing"]);
    let error = error_of_event(&with("action", json!("")));
    assert_error(&error, 1, Some("action"), &["must not be empty"]);
}

#[test]
fn validation_rejects_an_action_longer_than_64_bytes() {
    assert!(parse(with("action", json!("a".repeat(64))).to_string().as_bytes()).is_ok());
    let error = error_of_event(&with("action", json!("a".repeat(65))));
    assert_error(&error, 1, Some("action"), &["too long", "limit 64 bytes"]);
}

#[test]
fn validation_rejects_an_action_outside_its_charset() {
    for (action, character) in [
        ("Login", "'L'"),
        ("token-created", "'-'"),
        ("log in", "' '"),
    ] {
        let error = error_of_event(&with("action", json!(action)));
        assert_error(
            &error,
            1,
            Some("action"),
            &["invalid character", character, "[a-z0-9_.]"],
        );
    }
}

#[test]
fn validation_accepts_actions_outside_the_well_known_set() {
    assert_eq!(
        parse_one(&with("action", json!("billing.invoice_paid2"))).action,
        "billing.invoice_paid2"
    );
}

#[test]
fn validation_rejects_an_unknown_outcome() {
    assert_eq!(
        parse_one(&with("outcome", json!("failure"))).outcome,
        Outcome::Failure
    );
    let error = error_of_event(&with("outcome", json!("ok")));
    assert_error(
        &error,
        1,
        Some("outcome"),
        &["unknown outcome \"ok\"", "success or failure"],
    );
}

// ---------------------------------------------------------------- resource

#[test]
fn validation_rejects_a_missing_resource() {
    let error = error_of_event(&without("resource"));
    assert_error(&error, 1, Some("resource"), &["required field is missing"]);
}

#[test]
fn validation_rejects_a_missing_resource_type() {
    let error = error_of_event(&without("resource.type"));
    assert_error(
        &error,
        1,
        Some("resource.type"),
        &["required field is missing"],
    );
}

#[test]
fn validation_rejects_a_resource_type_longer_than_64_bytes() {
    let error = error_of_event(&with("resource.type", json!("r".repeat(65))));
    assert_error(
        &error,
        1,
        Some("resource.type"),
        &["too long", "limit 64 bytes"],
    );
}

#[test]
fn validation_rejects_a_resource_type_outside_its_charset() {
    let error = error_of_event(&with("resource.type", json!("SSH key")));
    assert_error(
        &error,
        1,
        Some("resource.type"),
        &["invalid character 'S'", "[a-z0-9_.]"],
    );
}

#[test]
fn validation_rejects_resource_id_and_name_longer_than_256_bytes() {
    for field in ["id", "name"] {
        let path = format!("resource.{field}");
        assert!(parse(with(&path, json!("x".repeat(256))).to_string().as_bytes()).is_ok());
        let error = error_of_event(&with(&path, json!("x".repeat(257))));
        assert_error(&error, 1, Some(&path), &["too long", "limit 256 bytes"]);
    }
}

// ---------------------------------------------------------------- timestamp

#[test]
fn timestamp_defaults_to_the_receive_time() {
    assert_eq!(parse_one(&minimal()).timestamp_us, NOW_US);
}

#[test]
fn timestamp_converts_offsets_to_utc_microseconds() {
    let utc = parse_one(&with("timestamp", json!("2026-11-18T06:00:00.5Z"))).timestamp_us;
    let offset = parse_one(&with(
        "timestamp",
        json!("2026-11-18T08:30:00.500000+02:30"),
    ))
    .timestamp_us;
    assert_eq!(utc, offset);
    assert_eq!(utc, NOW_US - (5 * 3600 + 6 * 60 + 40) * 1_000_000 + 500_000);
}

#[test]
fn timestamp_rejects_text_without_offset() {
    let error = error_of_event(&with("timestamp", json!("2026-11-18T06:00:00")));
    assert_error(
        &error,
        1,
        Some("timestamp"),
        &["without a UTC offset", "\"2026-11-18T06:00:00\""],
    );
}

#[test]
fn timestamp_rejects_text_that_is_not_rfc3339() {
    for text in [
        "yesterday",
        "2026-11-18 06:00:00Z",
        "2026-02-30T06:00:00Z",
        "1795000000",
    ] {
        let error = error_of_event(&with("timestamp", json!(text)));
        assert_error(&error, 1, Some("timestamp"), &["RFC 3339"]);
    }
}

#[test]
fn timestamp_rejects_more_than_24_hours_in_the_future() {
    let within = NOW_US + 24 * HOUR_US;
    let within_text = format_rfc3339_us(within);
    assert_eq!(
        parse_one(&with("timestamp", json!(within_text))).timestamp_us,
        within
    );
    let beyond = format_rfc3339_us(within + 1);
    let error = error_of_event(&with("timestamp", json!(beyond)));
    assert_error(
        &error,
        1,
        Some("timestamp"),
        &["more than 24 hours in the future", "server time"],
    );
}

#[test]
fn timestamp_rejects_events_older_than_the_tenant_retention() {
    let format = format_rfc3339_us;
    let oldest = format(NOW_US - 90 * DAY_US);
    assert!(parse(with("timestamp", json!(oldest)).to_string().as_bytes()).is_ok());
    let too_old = format(NOW_US - 90 * DAY_US - 1);
    let error = error_of_event(&with("timestamp", json!(too_old)));
    assert_error(
        &error,
        1,
        Some("timestamp"),
        &["older than the tenant's retention of 90 days"],
    );

    // A tenant with its own, shorter retention.
    let mut event = with("timestamp", json!(format(NOW_US - 8 * DAY_US)));
    event["tenant"] = json!("acct_short");
    let error = error_of_event(&event);
    assert_error(
        &error,
        1,
        Some("timestamp"),
        &["older than the tenant's retention of 7 days"],
    );
}

// ---------------------------------------------------------------- changes

#[test]
fn changes_are_stored_compact_in_field_old_new_order() {
    let body = br#"{"tenant":"a","actor":{"id":"u"},"action":"update","resource":{"type":"pod"},
        "changes":[ { "new" : { "b" : [ 1 , 2 ] } , "field" : "spec", "old" : "x y" }, {"field":"created"} ]}"#;
    let body = String::from_utf8_lossy(body).replace('\n', " ");
    let event = &parse(body.as_bytes()).unwrap()[0];
    assert_eq!(
        event.changes.as_deref(),
        Some(r#"[{"field":"spec","old":"x y","new":{"b":[1,2]}},{"field":"created"}]"#)
    );
    assert_eq!(
        parse_one(&with("changes", json!([]))).changes.as_deref(),
        Some("[]")
    );
}

#[test]
fn changes_reject_an_item_that_is_not_an_object() {
    let error = error_of_event(&with("changes", json!([{ "field": "a" }, "b"])));
    assert_error(
        &error,
        1,
        Some("changes[1]"),
        &["expected an object, found a string"],
    );
}

#[test]
fn changes_reject_an_item_without_field() {
    let error = error_of_event(&with("changes", json!([{ "old": 1, "new": 2 }])));
    assert_error(
        &error,
        1,
        Some("changes[0].field"),
        &["required field is missing"],
    );
}

#[test]
fn changes_reject_a_field_that_is_not_a_string() {
    let error = error_of_event(&with("changes", json!([{ "field": 3, "new": 2 }])));
    assert_error(
        &error,
        1,
        Some("changes[0].field"),
        &["expected a string, found a number"],
    );
}

#[test]
fn changes_reject_values_nested_too_deep() {
    // The array is level 1, the item level 2, so `new` may add 30 levels.
    let mut value = json!(1);
    for _ in 0..30 {
        value = json!([value]);
    }
    assert!(parse(
        with("changes", json!([{ "field": "a", "new": value.clone() }]))
            .to_string()
            .as_bytes()
    )
    .is_ok());
    let error = error_of_event(&with("changes", json!([{ "field": "a", "new": [value] }])));
    assert_error(
        &error,
        1,
        Some("changes[0].new"),
        &["nested deeper than 32 levels"],
    );
}

// ---------------------------------------------------------------- details

#[test]
fn details_are_stored_compact_byte_for_byte() {
    let body = "{\"tenant\":\"a\",\"actor\":{\"id\":\"u\"},\"action\":\"x\",\"resource\":{\"type\":\"pod\"},\
        \"details\":{ \"z\" : 1.50 ,\t \"a\":\"s p\\u00e9\" , \"n\" : [ null , true ] } }";
    let event = &parse(body.as_bytes()).unwrap()[0];
    assert_eq!(
        event.details.as_deref(),
        Some(r#"{"z":1.50,"a":"s p\u00e9","n":[null,true]}"#)
    );
}

#[test]
fn details_reject_nesting_deeper_than_32_levels() {
    let mut value = json!({});
    for _ in 0..31 {
        value = json!({ "k": value });
    }
    assert!(parse(with("details", value.clone()).to_string().as_bytes()).is_ok());
    let error = error_of_event(&with("details", json!({ "k": value })));
    assert_error(
        &error,
        1,
        Some("details"),
        &["nested deeper than 32 levels"],
    );
}

#[test]
fn details_reject_very_deep_nesting_without_overflowing() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(
        r#"{{"tenant":"a","actor":{{"id":"u"}},"action":"x","resource":{{"type":"pod"}},"details":{{"k":{deep}}}}}"#
    );
    let retention = retention();
    let mut ctx = ValidationContext::new(NOW_US, &retention);
    ctx.event_bytes_max = usize::MAX;
    let error = parse_batch(body.as_bytes(), &ctx).unwrap_err();
    assert_error(
        &error,
        1,
        Some("details"),
        &["nested deeper than 32 levels"],
    );
}

// ---------------------------------------------------------------- size

#[test]
fn validation_rejects_an_event_larger_than_64_kib() {
    let padding = |total: usize| {
        let base = with("details", json!({ "pad": "" })).to_string().len();
        with("details", json!({ "pad": "p".repeat(total - base) }))
    };
    let at_limit = padding(64 * 1024);
    assert_eq!(at_limit.to_string().len(), 65_536);
    assert!(parse(at_limit.to_string().as_bytes()).is_ok());
    let body = format!("{}\n{}", minimal(), padding(64 * 1024 + 1));
    let error = error_of(body.as_bytes());
    assert_error(
        &error,
        2,
        None,
        &["event is 65537 bytes of JSON", "limit 65536 bytes"],
    );
    let body = format!("[{}, {}]", minimal(), padding(70_000));
    assert_error(
        &error_of(body.as_bytes()),
        2,
        None,
        &["event is 70000 bytes"],
    );
}

// ---------------------------------------------------------------- output and round trips

#[test]
fn output_writes_the_stored_shape() {
    let event = parse_one(&json!({
        "id": "evt_1", "timestamp": "2026-11-17T01:20:32.123456Z", "tenant": "acct_0042",
        "actor": { "email": "a@example.com", "type": "api_token", "ip": "::1" },
        "action": "update", "outcome": "failure",
        "resource": { "type": "pod", "name": "p" },
        "changes": [ { "field": "gpu_count", "old": 1, "new": 4 } ],
        "details": { "region": "eu-west" }
    }));
    let stored = StoredEvent {
        seq: 18_446_744_073_709_551_615,
        tenant_seq: 1,
        received_us: NOW_US,
        event,
    };
    let mut out = Vec::new();
    write_stored_event_json(&stored, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"seq":18446744073709551615,"tenant_seq":1,"received":"2026-11-18T11:06:40.000000Z","#,
            r#""id":"evt_1","timestamp":"2026-11-17T01:20:32.123456Z","tenant":"acct_0042","#,
            r#""actor":{"email":"a@example.com","type":"api_token","ip":"::1"},"#,
            r#""action":"update","outcome":"failure","resource":{"type":"pod","name":"p"},"#,
            r#""changes":[{"field":"gpu_count","old":1,"new":4}],"details":{"region":"eu-west"}}"#
        )
    );
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["changes"][0]["new"], json!(4));
}

#[test]
fn round_trip_of_the_event_md_example() {
    let event = parse_one(&with(
        "details",
        json!({ "nested": { "list": [1, "two", null] } }),
    ));
    let mut out = Vec::new();
    write_event_json(&event, &mut out);
    assert_eq!(parse(&out).unwrap(), vec![event]);
}

fn any_text(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..=max_chars).prop_map(String::from_iter)
}

fn optional_text(max_chars: usize) -> impl Strategy<Value = Option<Text>> {
    prop::option::of(any_text(max_chars).prop_map(Text::from))
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |value| value.is_finite())
            .prop_map(Value::from),
        any_text(8).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(any_text(6), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn any_changes() -> impl Strategy<Value = Option<Text>> {
    let item = (
        any_text(10),
        prop::option::of(any_json()),
        prop::option::of(any_json()),
    );
    prop::option::of(prop::collection::vec(item, 0..4)).prop_map(|items| {
        items.map(|items| {
            let items: Vec<String> = items
                .into_iter()
                .map(|(field, old, new)| {
                    let mut item =
                        format!("{{\"field\":{}", serde_json::to_string(&field).unwrap());
                    for (name, value) in [("old", old), ("new", new)] {
                        if let Some(value) = value {
                            item.push_str(&format!(",\"{name}\":{value}"));
                        }
                    }
                    item + "}"
                })
                .collect();
            Text::from(format!("[{}]", items.join(",")))
        })
    })
}

fn any_details() -> impl Strategy<Value = Option<Text>> {
    prop::option::of(prop::collection::btree_map(any_text(6), any_json(), 0..4))
        .prop_map(|map| map.map(|map| Value::Object(map.into_iter().collect()).to_string().into()))
}

prop_compose! {
    fn any_actor()(
        id in optional_text(20),
        email in optional_text(20),
        kind in prop_oneof![Just(ActorType::User), Just(ActorType::ApiToken), Just(ActorType::System)],
        ip in prop::option::of(any::<std::net::IpAddr>()),
        user_agent in optional_text(50),
    ) -> Actor {
        let id = if id.is_none() && email.is_none() { Some("fallback".into()) } else { id };
        Actor { id, email, kind, ip: ip.map(|ip| ip.to_canonical().to_string().into()), user_agent }
    }
}

prop_compose! {
    fn any_event()(
        id in optional_text(32),
        timestamp_us in (NOW_US - 90 * DAY_US)..=(NOW_US + 24 * HOUR_US),
        tenant in "[A-Za-z0-9_.:-]{1,128}",
        project in optional_text(32),
        actor in any_actor(),
        action in "[a-z0-9_.]{1,64}",
        failed in any::<bool>(),
        kind in "[a-z0-9_.]{1,64}",
        resource_id in optional_text(64),
        resource_name in optional_text(64),
        changes in any_changes(),
        details in any_details(),
    ) -> Event {
        Event {
            id, timestamp_us, tenant: tenant.into(), project, actor, action: action.into(),
            outcome: if failed { Outcome::Failure } else { Outcome::Success },
            resource: Resource { kind: kind.into(), id: resource_id, name: resource_name },
            changes, details,
        }
    }
}

proptest! {
    #[test]
    fn round_trip_parse_of_written_events_gives_them_back(
        events in prop::collection::vec(any_event(), 1..4),
        as_array in any::<bool>(),
    ) {
        let mut body = Vec::new();
        if as_array {
            body.push(b'[');
        }
        for (index, event) in events.iter().enumerate() {
            if index > 0 {
                body.extend_from_slice(if as_array { b",\n" } else { b"\n" });
            }
            write_event_json(event, &mut body);
        }
        if as_array {
            body.push(b']');
        }
        prop_assert_eq!(parse(&body).unwrap(), events);
    }

    #[test]
    fn round_trip_stored_output_is_valid_json(event in any_event(), seq in any::<u64>()) {
        let stored = StoredEvent { seq, tenant_seq: seq / 2, received_us: NOW_US, event };
        let mut out = Vec::new();
        write_stored_event_json(&stored, &mut out);
        let value: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(value["seq"].as_u64(), Some(seq));
        prop_assert_eq!(value["tenant"].as_str(), Some(stored.event.tenant.as_str()));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&body);
    }
}

// ---------------------------------------------------------------- unicode, BOM, leap seconds

/// A lone UTF-16 surrogate escape in `details` or `changes` is not a Unicode character: the
/// event is refused naming the field, where it used to be stored as sent and then refused by
/// every strict reader of the export or the API. A pair (one character) is stored.
#[test]
fn validation_rejects_a_lone_surrogate_escape_in_details_and_changes() {
    let minimal_text = minimal().to_string();
    let body = |field: &str, json: &str| {
        format!(
            "{},\"{field}\":{json}}}",
            &minimal_text[..minimal_text.len() - 1]
        )
    };
    for (field, json) in [
        ("details", r#"{"note":"\ud83d x"}"#),
        ("details", r#"{"note":"\ude00"}"#),
        ("details", r#"{"\udbff":1}"#),
        ("changes", r#"[{"field":"name","old":"\ud800","new":"b"}]"#),
    ] {
        let error = error_of(body(field, json).as_bytes());
        assert_error(&error, 1, Some(field), &["surrogate"]);
    }
    // In a plain string field the JSON reader refuses it, and the error names the field.
    for (field, json) in [
        ("tenant", r#""acct_\ud800""#),
        ("actor.id", r#"{"id":"\udc00"}"#),
        ("resource.name", r#"{"type":"pod","name":"\ud83d x"}"#),
    ] {
        let top = field.split('.').next().unwrap();
        let mut event = minimal();
        event.as_object_mut().unwrap().remove(top);
        let text = event.to_string();
        let error = error_of(format!("{},\"{top}\":{json}}}", &text[..text.len() - 1]).as_bytes());
        assert_error(
            &error,
            1,
            Some(field),
            &["malformed JSON at column", "escape"],
        );
    }
    // A line cut inside a value is truncated JSON, not a bad field; a number too large for a
    // float is still a number where a string belongs.
    let text = minimal().to_string();
    let cut = format!("{},\"project\":\"proj", &text[..text.len() - 1]);
    let error = error_of(cut.as_bytes());
    assert_error(&error, 1, None, &["malformed JSON", "EOF"]);
    let huge = format!("{},\"project\":1e400}}", &text[..text.len() - 1]);
    let error = error_of(huge.as_bytes());
    assert_error(
        &error,
        1,
        Some("project"),
        &["expected a string, found a number"],
    );
    let pair = parse(body("details", r#"{"note":"\ud83d\ude00 \\ud800"}"#).as_bytes()).unwrap();
    assert_eq!(
        pair[0].details.as_deref(),
        Some(r#"{"note":"\ud83d\ude00 \\ud800"}"#)
    );
}

/// A UTF-8 byte order mark before the body (some Windows tools write one) is not part of the
/// JSON: NDJSON and array bodies parse as without it.
#[test]
fn batch_ignores_a_leading_byte_order_mark() {
    let event = minimal().to_string();
    for body in [format!("\u{feff}{event}\n"), format!("\u{feff}[{event}]")] {
        let events = parse(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 1, "{body:?}");
    }
}

/// Second 60 is a leap second only at 23:59 UTC (RFC 3339 5.7), whatever the offset it is
/// written with; at another minute it is out of range, named in the error.
#[test]
fn validation_accepts_a_leap_second_only_at_the_end_of_a_utc_day() {
    let at = |text: &str| with("timestamp", json!(text));
    let day = format_rfc3339_us(NOW_US - DAY_US)[..10].to_string();
    let leap = parse_one(&at(&format!("{day}T23:59:60Z")));
    assert_eq!(
        format_rfc3339_us(leap.timestamp_us),
        format!("{day}T23:59:59.999999Z")
    );
    // The same instant written with an offset.
    parse_one(&at(&format!("{day}T18:59:60-05:00")));
    let error = error_of_event(&at(&format!("{day}T06:00:60Z")));
    assert_error(&error, 1, Some("timestamp"), &["second"]);
}
