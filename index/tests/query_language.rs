//! The query language: what each clause means, and every error message with its position.

use auditlog_index::parse::{parse, ParsedQuery};
use auditlog_index::{Field, Filters, Order, Query, Scope, TextKind, TextTerm};

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn filters(build: impl FnOnce(&mut Filters)) -> Filters {
    let mut filters = Filters::default();
    build(&mut filters);
    filters
}

#[test]
fn parse_issue_example() {
    let parsed = parse(
        r#"action:delete resource.type:pod actor:alice@example.com -outcome:failure "llama finetune" ip:203.0.113.7"#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        ParsedQuery {
            filters: filters(|f| {
                f.include(Field::Action, "delete")
                    .include(Field::ResourceType, "pod")
                    .include(Field::Actor, "alice@example.com")
                    .exclude(Field::Outcome, "failure")
                    .include(Field::ActorIp, "203.0.113.7");
            }),
            text: vec![TextTerm::phrase("llama finetune")],
            ..ParsedQuery::default()
        }
    );
}

#[test]
fn parse_repeated_fields_are_any_of_and_aliases_are_one_field() {
    let parsed = parse("action:create ACTION:delete type:pod resource.type:vm user:u1 -ip:10.0.0.1 -actor.ip:10.0.0.2 name:\"my pod\" email:a@b.c resource:pod_1").unwrap();
    assert_eq!(
        parsed.filters,
        filters(|f| {
            f.include(Field::Action, "create")
                .include(Field::Action, "delete")
                .include(Field::ResourceType, "pod")
                .include(Field::ResourceType, "vm")
                .include(Field::Actor, "u1")
                .exclude(Field::ActorIp, "10.0.0.1")
                .exclude(Field::ActorIp, "10.0.0.2")
                .include(Field::ResourceName, "my pod")
                .include(Field::ActorEmail, "a@b.c")
                .include(Field::ResourceId, "pod_1");
        })
    );
    assert!(parsed.text.is_empty());
}

#[test]
fn parse_text_words_phrases_prefixes_and_negations() {
    let parsed =
        parse(r#"  llama-finetune  "scale up" llam* "llama fine"* -gpu -"eu west" 12:30 2001:db8::1 "urn:x" "say \"hi\" \\ o/" "#)
            .unwrap();
    assert_eq!(
        parsed.text,
        vec![
            TextTerm::word("llama-finetune"),
            TextTerm::phrase("scale up"),
            TextTerm::prefix("llam"),
            TextTerm::prefix("llama fine"),
            TextTerm::word("gpu").negate(),
            TextTerm::phrase("eu west").negate(),
            TextTerm::word("12:30"),
            TextTerm::word("2001:db8::1"),
            TextTerm::phrase("urn:x"),
            TextTerm::phrase(r#"say "hi" \ o/"#),
        ]
    );
    assert_eq!(parsed.text[2].kind, TextKind::Prefix);
    assert!(parsed.filters.is_empty());
    assert_eq!(parse("").unwrap(), ParsedQuery::default());
    assert_eq!(parse("   ").unwrap(), ParsedQuery::default());
}

#[test]
fn parse_filter_values_keep_colons_and_case() {
    let parsed = parse("ip:2001:db8::1 actor:Alice@Example.com").unwrap();
    assert_eq!(
        parsed.filters,
        filters(|f| {
            f.include(Field::ActorIp, "2001:db8::1")
                .include(Field::Actor, "Alice@Example.com");
        })
    );
}

#[test]
fn parse_time_clauses_make_the_time_range() {
    let now = 1_800_000_000_000_000;
    let query = parse("since:24h to:2027-01-01T00:00:00Z delete")
        .unwrap()
        .into_query(Scope::one("acct_1"), now);
    assert_eq!(query.from_us, Some(now - 24 * 3_600_000_000));
    assert_eq!(query.to_us, Some(1_798_761_600_000_000));
    assert_eq!(query.order, Order::NewestFirst);
    assert_eq!(query.limit, 50);
    let parsed = parse("from:2026-11-27 since:").unwrap_err();
    assert_eq!(parsed.position, 16);
    let parsed = parse("from:2026-11-27").unwrap();
    assert_eq!(parsed.from_us, Some(1_795_737_600_000_000));
    for (text, us) in [
        ("90s", 90),
        ("30m", 1800),
        ("7d", 604_800),
        ("4w", 2_419_200),
    ] {
        assert_eq!(
            parse(&format!("since:{text}")).unwrap().since_us,
            Some(us * 1_000_000)
        );
    }
    // Applying to an existing query narrows its range, never widens it.
    let mut query = Query::new(Scope::one("acct_1"));
    query.from_us = Some(now);
    parse("since:7d").unwrap().apply(&mut query, now);
    assert_eq!(query.from_us, Some(now));
}

#[test]
fn parse_error_display_names_position_expected_and_found() {
    assert_eq!(
        error("outcome:success action:"),
        r#"at position 23: expected a value after "action:", found end of input"#
    );
    let parsed = parse("action: delete").unwrap_err();
    assert_eq!((parsed.position, parsed.found.as_str()), (7, "a space"));
}

#[test]
fn parse_error_lone_dash() {
    assert_eq!(
        error("-"),
        r#"at position 1: expected a field:value, word or phrase after "-", found end of input"#
    );
    assert_eq!(
        error("a - b"),
        r#"at position 3: expected a field:value, word or phrase after "-", found a space"#
    );
}

#[test]
fn parse_error_unknown_field_lists_the_known_ones() {
    assert_eq!(
        error("action:delete acton:delete"),
        "at position 14: expected a known field (tenant, project, action, outcome, \
         resource.type or type, resource.id or resource, resource.name or name, actor or user, \
         actor.id, actor.email or email, actor.ip or ip, actor.type, since, from, to; to search \
         text with a colon, put it in quotes), found \"acton\""
    );
    assert_eq!(parse("-http://x").unwrap_err().position, 1);
}

#[test]
fn parse_error_missing_value() {
    assert_eq!(
        error("action:"),
        r#"at position 7: expected a value after "action:", found end of input"#
    );
    assert_eq!(
        error("Type: pod"),
        r#"at position 5: expected a value after "Type:", found a space"#
    );
    assert_eq!(
        error(r#"action:"""#),
        r#"at position 7: expected a value after "action:", found empty quotes"#
    );
}

#[test]
fn parse_error_unterminated_quote() {
    assert_eq!(
        error(r#""llama fine"#),
        "at position 11: expected a closing quote for the quote at position 0, found end of input"
    );
    assert_eq!(
        error(r#"x "ends in a backslash \"#),
        "at position 24: expected a closing quote for the quote at position 2, found end of input"
    );
}

#[test]
fn parse_error_unknown_escape() {
    assert_eq!(
        error(r#""a\nb""#),
        r#"at position 2: expected \" or \\ after a backslash in quotes, found "\\n""#
    );
}

#[test]
fn parse_error_text_glued_to_quotes() {
    assert_eq!(
        error(r#""foo"bar"#),
        r#"at position 5: expected a space after the closing quote, found "bar""#
    );
    assert_eq!(
        error(r#"ab"c""#),
        "at position 2: expected a space before a quote, found a quote"
    );
}

#[test]
fn parse_error_term_without_letters_or_digits() {
    assert_eq!(
        error("&&"),
        r#"at position 0: expected a word with a letter or digit, found "&&""#
    );
    assert_eq!(
        error("*"),
        r#"at position 0: expected a word with a letter or digit, found "*""#
    );
    assert_eq!(
        error(r#"x """#),
        "at position 2: expected a word with a letter or digit, found empty quotes"
    );
    assert_eq!(
        error(r#""--""#),
        r#"at position 0: expected a word with a letter or digit, found "--" in quotes"#
    );
}

#[test]
fn parse_error_prefix_on_a_filter() {
    assert_eq!(
        error("resource.id:pod_*"),
        r#"at position 12: expected an exact value (prefix search with * is for text; quote a value to match a literal *), found "pod_*""#
    );
    // Quoted, the * is part of the value.
    assert_eq!(
        parse(r#"resource.id:"pod_*""#).unwrap().filters,
        filters(|f| {
            f.include(Field::ResourceId, "pod_*");
        })
    );
}

#[test]
fn parse_error_enum_values() {
    assert_eq!(
        error("outcome:fail"),
        r#"at position 8: expected success or failure after "outcome:", found "fail""#
    );
    assert_eq!(
        error("-actor.type:admin"),
        r#"at position 12: expected user, api_token or system after "actor.type:", found "admin""#
    );
}

#[test]
fn parse_error_durations_and_times() {
    assert_eq!(
        error("since:1y"),
        r#"at position 6: expected a duration like 30m, 24h, 7d or 4w, found "1y""#
    );
    assert_eq!(
        error("since:99999999999w"),
        r#"at position 6: expected a duration like 30m, 24h, 7d or 4w, found "99999999999w""#
    );
    assert_eq!(
        error("from:yesterday"),
        r#"at position 5: expected an RFC 3339 time like 2026-11-27T01:20:32Z or a date like 2026-11-27, found "yesterday""#
    );
    assert_eq!(
        error("to:2026-02-30"),
        r#"at position 3: expected an RFC 3339 time like 2026-11-27T01:20:32Z or a date like 2026-11-27, found "2026-02-30""#
    );
}

#[test]
fn parse_error_repeated_time_bounds() {
    assert_eq!(
        error("since:1h from:2026-01-01"),
        r#"at position 9: expected at most one since: or from:, found "from:2026-01-01""#
    );
    assert_eq!(
        error("to:2026-01-01 to:2026-01-02"),
        r#"at position 14: expected at most one to:, found "to:2026-01-02""#
    );
}

#[test]
fn parse_error_negated_time() {
    assert_eq!(
        error("-since:1h"),
        r#"at position 0: expected a filter on a field to negate (since, from and to cannot be negated), found "-since:1h""#
    );
}

#[test]
fn parse_error_boolean_operators() {
    assert_eq!(
        error("llama OR mistral"),
        r#"at position 6: expected a field:value, word or phrase (OR, AND and NOT are not operators here: repeat a field for any of its values, put - before a clause to exclude it), found "OR""#
    );
    assert_eq!(parse("NOT x").unwrap_err().position, 0);
    // Quoted or lowercase, they are words.
    assert_eq!(parse(r#""OR" or"#).unwrap().text.len(), 2);
}

#[test]
fn parse_error_limits() {
    assert_eq!(
        error(&"x".repeat(5000)),
        "at position 4096: expected a query of at most 4096 bytes, found 5000 bytes"
    );
    assert_eq!(
        error(&format!("action:{}", "a".repeat(1100))),
        "at position 7: expected a value of at most 1024 bytes, found 1100 bytes"
    );
    let terms: String = (0..33).map(|i| format!("w{i} ")).collect();
    assert_eq!(
        error(&terms),
        r#"at position 118: expected at most 32 text terms, found "w32""#
    );
    let values: String = (0..257).map(|i| format!("action:a{i} ")).collect();
    let parsed = parse(&values).unwrap_err();
    assert_eq!(parsed.expected, "at most 256 values for action");
    assert_eq!(parsed.found, r#""a256""#);
}

#[test]
fn parse_errors_convert_into_the_crate_error() {
    let error: auditlog_index::Error = parse("action:").unwrap_err().into();
    assert_eq!(
        error.to_string(),
        r#"at position 7: expected a value after "action:", found end of input"#
    );
}

mod never_panics {
    use auditlog_index::parse::parse;
    use proptest::prelude::*;

    fn query_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just("action:".to_string()),
            Just("-".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("*".to_string()),
            Just(" ".to_string()),
            Just(":".to_string()),
            Just("since:".to_string()),
            Just("outcome:failure".to_string()),
            Just("OR".to_string()),
            Just("é".to_string()),
            "[a-z0-9.@_]{1,6}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(pieces, 0..16).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn parse_any_text_gives_a_query_or_an_error_inside_it(text in query_text()) {
            match parse(&text) {
                Ok(parsed) => {
                    for term in &parsed.text {
                        prop_assert!(term.text.chars().any(char::is_alphanumeric));
                    }
                }
                Err(error) => {
                    prop_assert!(error.position <= text.len());
                    prop_assert!(text.is_char_boundary(error.position));
                    prop_assert!(!error.expected.is_empty() && !error.found.is_empty());
                }
            }
        }
    }
}
