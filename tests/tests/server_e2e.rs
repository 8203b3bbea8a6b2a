//! End to end on the real `auditlog` binary and a real loopback port: ingest (NDJSON, JSON
//! array, gzip, a retried batch), query with filters and cursors, one event by seq, CSV and
//! NDJSON export checked against the query answer for the same filters, facets, histogram, the
//! live WebSocket stream and its `from_seq` resume (under concurrent ingest and across a
//! SIGKILL restart), and the OpenAPI document against the router's list of routes.
//!
//! Needs `cargo build -p auditlog` first (tests/run-all.sh does it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use auditlog_engine::event::time::{format_rfc3339_us, parse_rfc3339_us};
use auditlog_engine::store::now_us;
use auditlog_tests::server::{
    auditlog_binary, call, create_token, revoke_token, Reply, ServerProcess, ADMIN_TOKEN,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// HTTP and WebSocket helpers

fn get(server: &ServerProcess, path: &str, token: &str) -> Reply {
    call("GET", &server.url(path), Some(token), &[], None)
}

fn get_ok(server: &ServerProcess, path: &str, token: &str) -> Value {
    let reply = get(server, path, token);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    reply.json()
}

fn ndjson(events: &[Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for event in events {
        serde_json::to_writer(&mut body, event).unwrap();
        body.push(b'\n');
    }
    body
}

/// Ingests `events` as NDJSON with `token`; the answer (`accepted`, `first_seq`, ...).
fn ingest(server: &ServerProcess, token: &str, events: &[Value]) -> Value {
    let reply = call(
        "POST",
        &server.url("/v1/events"),
        Some(token),
        &[("Content-Type", "application/x-ndjson")],
        Some(&ndjson(events)),
    );
    assert_eq!(reply.status, 200, "ingest: {}", reply.text());
    reply.json()
}

/// Every seq an ingest answer acknowledged as new (a batch gets consecutive seqs).
fn acked_seqs(answer: &Value) -> Vec<u64> {
    match (answer["first_seq"].as_u64(), answer["last_seq"].as_u64()) {
        (Some(first), Some(last)) => {
            let seqs: Vec<u64> = (first..=last).collect();
            assert_eq!(seqs.len() as u64, answer["accepted"].as_u64().unwrap());
            seqs
        }
        _ => Vec::new(),
    }
}

/// Every page of `GET /v1/events?<filters>`, followed through the cursors.
/// `POST /v1/admin/flush` (seals the tail); the answer (`sealed_through`).
fn flush(server: &ServerProcess, token: &str) -> Value {
    let reply = call(
        "POST",
        &server.url("/v1/admin/flush"),
        Some(token),
        &[],
        Some(b""),
    );
    assert_eq!(reply.status, 200, "flush: {}", reply.text());
    reply.json()
}

fn query_all(server: &ServerProcess, token: &str, filters: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/events?{filters}&limit=70");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", encode(cursor)));
        }
        let page = get_ok(server, &path, token);
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return events,
        }
        assert!(events.len() < 100_000, "cursor loop");
    }
}

/// Percent-encodes a query-string value.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A live-stream connection (`GET /v1/stream` upgraded to a WebSocket).
struct Stream {
    socket: tungstenite::WebSocket<TcpStream>,
    /// Events of an `events` message (`batch=true`) not returned yet.
    queued: std::collections::VecDeque<Value>,
}

impl Stream {
    fn open(server: &ServerProcess, query: &str, token: &str) -> Stream {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let url = server.ws_url(&format!("/v1/stream?{query}&token={token}"));
        match tungstenite::client(url.as_str(), stream) {
            Ok((socket, _)) => Stream {
                socket,
                queued: Default::default(),
            },
            Err(error) => panic!("stream handshake for {query}: {error}"),
        }
    }

    /// The next event, of an `event` message or of an `events` one (heartbeats are skipped;
    /// a resync fails the test).
    fn next_event(&mut self) -> Value {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return event;
            }
            let message = self.socket.read().expect("a stream message within 20 s");
            let tungstenite::Message::Text(text) = message else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).expect("stream message is JSON");
            match message["type"].as_str() {
                Some("event") => return message["event"].clone(),
                Some("events") => {
                    let events = message["events"].as_array().expect("events array");
                    assert!(!events.is_empty(), "an events message holds events");
                    self.queued.extend(events.iter().cloned());
                }
                Some("heartbeat") => continue,
                other => panic!("unexpected stream message {other:?}: {message}"),
            }
        }
    }

    /// Reads up to and including the next heartbeat (the first one says the stream is live).
    fn skip_to_heartbeat(&mut self) {
        loop {
            let tungstenite::Message::Text(text) = self.socket.read().expect("a stream message")
            else {
                continue;
            };
            if serde_json::from_str::<Value>(&text).unwrap()["type"] == "heartbeat" {
                return;
            }
        }
    }

    /// The seqs of the next `count` events.
    fn next_seqs(&mut self, count: usize, tenant: &str) -> Vec<u64> {
        (0..count)
            .map(|_| {
                let event = self.next_event();
                assert_eq!(event["tenant"], tenant, "stream leaked another tenant");
                event["seq"].as_u64().unwrap()
            })
            .collect()
    }
}

/// A minimal RFC 4180 reader (quoted fields, doubled quotes, CRLF records).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quoted CSV field");
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Generated events

const HOUR_US: i64 = 3_600_000_000;

/// Event `i` of `tenant`: every optional field sometimes present, text with commas, quotes,
/// newlines and non-ASCII (the CSV must quote them), timestamps spread over the last hours.
fn event(tenant: &str, i: usize, timestamp_us: i64) -> Value {
    let actions = ["create", "update", "delete", "login"];
    let kinds = ["pod", "vm", "storage"];
    let mut event = json!({
        "id": format!("{tenant}-{i}"),
        "timestamp": format_rfc3339_us(timestamp_us),
        "tenant": tenant,
        "actor": {
            "id": format!("user_{}", i % 7),
            "type": if i.is_multiple_of(9) { "api_token" } else { "user" },
        },
        "action": actions[i % actions.len()],
        "outcome": if i.is_multiple_of(5) { "failure" } else { "success" },
        "resource": {
            "type": kinds[i % kinds.len()],
            "id": format!("res_{i}"),
        },
    });
    if !i.is_multiple_of(3) {
        event["project"] = json!(format!("proj_{}", i % 4));
    }
    if i.is_multiple_of(2) {
        event["actor"]["email"] = json!(format!("u{}@example.com", i % 7));
    }
    if !i.is_multiple_of(4) {
        event["actor"]["ip"] = json!(format!("10.0.{}.{}", i % 256, (i * 7) % 256));
    }
    if i.is_multiple_of(6) {
        event["actor"]["user_agent"] = json!("Mozilla/5.0 (X11, \"Linux\") Ünïcödé");
    }
    if i % 2 == 1 {
        event["resource"]["name"] = json!(format!("llama, \"v{i}\"\nfinetune"));
    }
    if i % 4 == 1 {
        event["changes"] =
            json!([{ "field": "gpu_count", "old": i % 8, "new": { "n": 4, "s": "a,b" } }]);
    }
    if i % 3 == 1 {
        event["details"] = json!({ "region": "eu-west", "reason": format!("scale up, \"{i}\"\r\nnow"), "n": [1, 2.5, null] });
    }
    event
}

/// A stored event without what the server assigned: compares to what was sent.
fn as_sent(stored: &Value) -> Value {
    let mut event = stored.clone();
    let object = event.as_object_mut().unwrap();
    for key in ["seq", "tenant_seq", "received"] {
        assert!(object.remove(key).is_some(), "stored event lacks {key}");
    }
    event
}

/// The CSV record of a stored event, in `CSV_COLUMNS` order (changes and details as JSON).
fn csv_record(stored: &Value) -> Vec<Value> {
    let text = |v: &Value| json!(v.as_str().unwrap_or(""));
    let number = |v: &Value| json!(v.as_u64().unwrap().to_string());
    let embedded = |v: &Value| if v.is_null() { json!("") } else { v.clone() };
    vec![
        number(&stored["seq"]),
        text(&stored["timestamp"]),
        text(&stored["received"]),
        text(&stored["tenant"]),
        number(&stored["tenant_seq"]),
        text(&stored["id"]),
        text(&stored["project"]),
        text(&stored["actor"]["id"]),
        text(&stored["actor"]["email"]),
        text(&stored["actor"]["type"]),
        text(&stored["actor"]["ip"]),
        text(&stored["actor"]["user_agent"]),
        text(&stored["action"]),
        text(&stored["outcome"]),
        text(&stored["resource"]["type"]),
        text(&stored["resource"]["id"]),
        text(&stored["resource"]["name"]),
        embedded(&stored["changes"]),
        embedded(&stored["details"]),
    ]
}

/// A parsed CSV row in the shape of [`csv_record`]: the two JSON columns parsed.
fn csv_row_values(row: &[String]) -> Vec<Value> {
    row.iter()
        .enumerate()
        .map(|(column, cell)| {
            if column >= 17 && !cell.is_empty() {
                serde_json::from_str(cell).expect("changes/details cell is JSON")
            } else {
                json!(cell)
            }
        })
        .collect()
}

fn assert_newest_first(events: &[Value]) {
    let keys: Vec<(i64, u64)> = events
        .iter()
        .map(|e| {
            (
                parse_rfc3339_us(e["timestamp"].as_str().unwrap()).unwrap(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    for pair in keys.windows(2) {
        assert!(pair[0] > pair[1], "not newest first: {pair:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn server_ingest_query_get_export_facets_histogram_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let admin = ADMIN_TOKEN;
    let tenant = "acct_e2e";
    let other = "acct_other";
    let base_us = now_us() - 6 * HOUR_US;
    // Ten minutes apart: the events span five hours of histogram buckets.
    let timestamp = |i: usize| base_us + i as i64 * 600_000_000 / 10 + (i as i64 % 13) * 1_000;

    // 1. NDJSON batch of two tenants, then the same batch again (a client retry).
    let mut first_batch: Vec<Value> = (0..200).map(|i| event(tenant, i, timestamp(i))).collect();
    first_batch.extend((0..50).map(|i| event(other, i, timestamp(i))));
    let answer = ingest(&server, admin, &first_batch);
    assert_eq!(answer["accepted"], 250, "{answer}");
    assert_eq!(answer["duplicates"], json!([]));
    let first_seqs = acked_seqs(&answer);
    let retry = ingest(&server, admin, &first_batch);
    assert_eq!(
        retry["accepted"], 0,
        "a retried batch stores nothing: {retry}"
    );
    let duplicates = retry["duplicates"].as_array().unwrap();
    assert_eq!(duplicates.len(), 250);
    for (index, duplicate) in duplicates.iter().enumerate() {
        assert_eq!(duplicate["line"], index + 1);
        assert_eq!(duplicate["seq"], first_seqs[index]);
    }

    // 2. Seal what is there, so reads cover sealed segments and the in-memory tail.
    let flushed = flush(&server, admin);
    assert!(flushed["sealed_through"].as_u64().unwrap() >= *first_seqs.last().unwrap());
    // The sealed segments have their filter and text indexes, reported apart.
    let stats = call(
        "GET",
        &server.url("/v1/admin/stats"),
        Some(admin),
        &[],
        None,
    );
    assert_eq!(stats.status, 200, "{}", stats.text());
    let bytes = &stats.json()["bytes"];
    for kind in ["segments", "bitmaps", "text_index"] {
        assert!(bytes[kind].as_u64().unwrap() > 0, "{kind}: {bytes}");
    }

    // 3. A JSON array, gzip-encoded.
    let second_batch: Vec<Value> = (200..300).map(|i| event(tenant, i, timestamp(i))).collect();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&serde_json::to_vec(&second_batch).unwrap())
        .unwrap();
    let reply = call(
        "POST",
        &server.url("/v1/events"),
        Some(admin),
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        Some(&gzip.finish().unwrap()),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["accepted"], 100);

    let sent: BTreeMap<String, Value> = first_batch
        .iter()
        .chain(&second_batch)
        .filter(|e| e["tenant"] == tenant)
        .map(|e| (e["id"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(sent.len(), 300);

    // 4. Query: every event of the tenant, newest first, exactly as sent, none of the other.
    let all = query_all(&server, admin, &format!("tenant={tenant}"));
    assert_eq!(all.len(), 300);
    assert_newest_first(&all);
    let mut seen = BTreeSet::new();
    for stored in &all {
        let id = stored["id"].as_str().unwrap();
        assert!(seen.insert(id.to_string()), "duplicate {id}");
        assert_eq!(
            as_sent(stored),
            sent[id],
            "event {id} differs from what was sent"
        );
    }

    // Filters, each checked against the same filter applied to what was sent.
    let local = |keep: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        sent.values()
            .filter(|e| keep(e))
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let ids = |events: &[Value]| -> BTreeSet<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let from = format_rfc3339_us(timestamp(100));
    let to = format_rfc3339_us(timestamp(150));
    let cases: Vec<(String, BTreeSet<String>)> = vec![
        (
            format!("tenant={tenant}&action=login&outcome=failure"),
            local(&|e| e["action"] == "login" && e["outcome"] == "failure"),
        ),
        (
            format!("tenant={tenant}&action=create&action=delete&resource_type=pod"),
            local(&|e| {
                (e["action"] == "create" || e["action"] == "delete")
                    && e["resource"]["type"] == "pod"
            }),
        ),
        (
            format!(
                "tenant={tenant}&q={}",
                encode("resource.type:vm -outcome:failure")
            ),
            local(&|e| e["resource"]["type"] == "vm" && e["outcome"] != "failure"),
        ),
        (
            format!("tenant={tenant}&from={}&to={}", encode(&from), encode(&to)),
            local(&|e| {
                let t = parse_rfc3339_us(e["timestamp"].as_str().unwrap()).unwrap();
                t >= timestamp(100) && t < timestamp(150)
            }),
        ),
        (
            format!("tenant={tenant}&actor=u3%40example.com"),
            local(&|e| e["actor"]["email"] == "u3@example.com"),
        ),
    ];
    for (filters, expected) in &cases {
        assert!(!expected.is_empty(), "case {filters} selects nothing");
        let found = query_all(&server, admin, filters);
        assert_newest_first(&found);
        assert_eq!(&ids(&found), expected, "filters {filters}");
    }
    let oldest = query_all(&server, admin, &format!("tenant={tenant}&order=oldest"));
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(oldest, reversed, "order=oldest is newest-first reversed");

    // 5. One event by seq, identical to the query's copy; an unknown seq is 404.
    for stored in all.iter().step_by(37) {
        let seq = stored["seq"].as_u64().unwrap();
        assert_eq!(
            &get_ok(&server, &format!("/v1/events/{seq}"), admin),
            stored
        );
    }
    let missing = get(&server, "/v1/events/999999999", admin);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");

    // 6. Export: CSV parsed back, and NDJSON, equal the query answer for the same filters.
    for filters in [
        format!("tenant={tenant}"),
        format!("tenant={tenant}&action=update&order=oldest"),
        format!("tenant={tenant}&q={}", encode("-outcome:failure type:pod")),
    ] {
        let expected = query_all(&server, admin, &filters);
        let csv = get(&server, &format!("/v1/events/export?{filters}"), admin);
        assert_eq!(csv.status, 200, "{}", csv.text());
        assert!(
            csv.content_type.starts_with("text/csv"),
            "{}",
            csv.content_type
        );
        let rows = parse_csv(&csv.text());
        assert_eq!(
            rows[0],
            auditlog_engine::event::CSV_COLUMNS.to_vec(),
            "CSV header"
        );
        assert_eq!(rows.len() - 1, expected.len(), "CSV rows for {filters}");
        for (row, stored) in rows[1..].iter().zip(&expected) {
            assert_eq!(row.len(), 19, "CSV columns");
            assert_eq!(
                csv_row_values(row),
                csv_record(stored),
                "CSV row of {stored}"
            );
        }
        let ndjson = get(
            &server,
            &format!("/v1/events/export?{filters}&format=ndjson"),
            admin,
        );
        assert_eq!(ndjson.status, 200);
        let lines: Vec<Value> = ndjson
            .text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines, expected, "NDJSON export of {filters}");
    }
    // An export has no row cap: a limit is refused, naming the parameter, not silently ignored.
    let capped = get(
        &server,
        &format!("/v1/events/export?tenant={tenant}&limit=10"),
        admin,
    );
    assert_eq!(capped.status, 400, "{}", capped.text());
    assert_eq!(capped.json()["error"]["field"], "limit");

    // 7. Facets: counts of the values, and the total, for the filters.
    let facets = get_ok(
        &server,
        &format!("/v1/facets?tenant={tenant}&field=action"),
        admin,
    );
    assert_eq!(facets["total"], 300);
    let mut expected_counts: BTreeMap<String, u64> = BTreeMap::new();
    for e in sent.values() {
        *expected_counts
            .entry(e["action"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let counts: BTreeMap<String, u64> = facets["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_string(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, expected_counts);
    let facets = get_ok(
        &server,
        &format!("/v1/facets?tenant={tenant}&field=resource.type&outcome=failure&top=2"),
        admin,
    );
    let failures = local(&|e| e["outcome"] == "failure");
    assert_eq!(facets["total"], failures.len());
    let values = facets["values"].as_array().unwrap();
    assert!(values.len() <= 2, "top=2: {facets}");
    for value in values {
        let kind = value["value"].as_str().unwrap();
        let expected = sent
            .values()
            .filter(|e| e["outcome"] == "failure" && e["resource"]["type"] == kind)
            .count();
        assert_eq!(value["count"], expected, "facet {kind}");
    }

    // 8. Histogram: counts per UTC-aligned hour.
    let histogram = get_ok(
        &server,
        &format!("/v1/histogram?tenant={tenant}&bucket=1h"),
        admin,
    );
    let mut expected_buckets: BTreeMap<String, u64> = BTreeMap::new();
    for e in sent.values() {
        let t = parse_rfc3339_us(e["timestamp"].as_str().unwrap()).unwrap();
        *expected_buckets
            .entry(format_rfc3339_us(t.div_euclid(HOUR_US) * HOUR_US))
            .or_default() += 1;
    }
    let buckets: BTreeMap<String, u64> = histogram["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["count"].as_u64().unwrap() > 0)
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_string(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(buckets, expected_buckets, "histogram {histogram}");

    // 9. Metrics: every acknowledged request is in the ack histogram and in each of its parts'.
    let metrics = get(&server, "/metrics", admin).text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    let acks = value("auditlog_ack_latency_seconds_count");
    assert!(acks >= 3.0, "{metrics}");
    for part in ["body", "queue", "parse", "store"] {
        assert_eq!(
            value(&format!("auditlog_ingest_{part}_seconds_count")),
            acks,
            "{part}"
        );
        let inf = format!("auditlog_ingest_{part}_seconds_bucket{{le=\"+Inf\"}}");
        assert_eq!(value(&inf), acks, "{part}");
    }
    assert!(value("auditlog_fsync_latency_seconds_count") >= 1.0);
    assert!(value("auditlog_ingest_duplicates_total") >= 250.0);

    // 10. An event sent without a timestamp is stamped on receipt, so its retry carries
    // another one: once the first is sealed, the retry is still caught.
    let mut untimed = event("acct_untimed", 1, 0);
    untimed.as_object_mut().unwrap().remove("timestamp");
    let first = ingest(&server, admin, std::slice::from_ref(&untimed));
    assert_eq!(first["accepted"], 1, "{first}");
    flush(&server, admin);
    std::thread::sleep(Duration::from_millis(5));
    let retry = ingest(&server, admin, &[untimed]);
    assert_eq!(retry["accepted"], 0, "{retry}");
    assert_eq!(
        retry["duplicates"],
        json!([{ "line": 1, "seq": first["first_seq"] }])
    );
}

/// A subscription to two tenants gets exactly their events, in seq order, out of batches that
/// mix three tenants (the live path looks them up in each chunk's tenant index).
#[test]
fn server_stream_of_two_tenants_picks_their_events_out_of_mixed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let now = now_us();
    let tenants = ["acct_x", "acct_y", "acct_z"];
    let mut live = Stream::open(&server, "tenant=acct_y&tenant=acct_x", ADMIN_TOKEN);
    let mut expected = Vec::new();
    for round in 0..3 {
        let events: Vec<Value> = (0..60)
            .map(|i| {
                event(
                    tenants[(i * 7 + round) % 3],
                    round * 100 + i,
                    now + i as i64,
                )
            })
            .collect();
        let seqs = acked_seqs(&ingest(&server, ADMIN_TOKEN, &events));
        assert_eq!(seqs.len(), events.len());
        for (event, seq) in events.iter().zip(seqs) {
            if event["tenant"] != "acct_z" {
                expected.push((event["tenant"].as_str().unwrap().to_string(), seq));
            }
        }
    }
    let got: Vec<(String, u64)> = (0..expected.len())
        .map(|_| {
            let event = live.next_event();
            let tenant = event["tenant"].as_str().unwrap().to_string();
            (tenant, event["seq"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn server_stream_delivers_live_events_and_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("data"));
    let admin = ADMIN_TOKEN;
    let tenant = "acct_stream";
    let now = now_us();
    let mut counter = 0;
    let mut batch = |size: usize| -> Vec<Value> {
        let events = (counter..counter + size)
            .map(|i| event(tenant, i, now - 1_000_000 + i as i64))
            .collect();
        counter += size;
        events
    };
    // Noise of another tenant between the stream's events: filtered out, never delivered.
    let noise = |server: &ServerProcess, n: usize| {
        let events: Vec<Value> = (0..3)
            .map(|i| event("acct_noise", n * 10 + i, now))
            .collect();
        ingest(server, admin, &events);
    };

    // A read token of the tenant (it must survive the restart: the token file is durable).
    let created = call(
        "POST",
        &server.url("/v1/tokens"),
        Some(admin),
        &[("Content-Type", "application/json")],
        Some(br#"{"name":"stream reader","role":"read","tenants":["acct_stream"]}"#),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let reader = created.json()["token"].as_str().unwrap().to_string();

    // A: stored before any subscription.
    let a = acked_seqs(&ingest(&server, admin, &batch(20)));
    noise(&server, 0);

    // Live only: events acknowledged after the handshake arrive, in order.
    let mut live = Stream::open(&server, &format!("tenant={tenant}"), admin);
    let b = acked_seqs(&ingest(&server, admin, &batch(10)));
    noise(&server, 1);
    assert_eq!(live.next_seqs(b.len(), tenant), b, "live events");

    // Resume from A's first seq while another client ingests: stored, then live, no gap, no
    // duplicate, in seq order (this one in batches: one message per commit).
    let writer_addr = server.url("/v1/events");
    let concurrent: Vec<Vec<Value>> = (0..30).map(|_| batch(5)).collect();
    let writer = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        for (n, events) in concurrent.iter().enumerate() {
            let reply = call(
                "POST",
                &writer_addr,
                Some(ADMIN_TOKEN),
                &[],
                Some(&ndjson(events)),
            );
            assert_eq!(reply.status, 200, "{}", reply.text());
            seqs.extend(acked_seqs(&reply.json()));
            if n % 10 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        seqs
    });
    let mut resumed = Stream::open(
        &server,
        &format!("tenant={tenant}&from_seq={}&batch=true", a[0]),
        &reader,
    );
    let c = writer.join().unwrap();
    let expected: Vec<u64> = a.iter().chain(&b).chain(&c).copied().collect();
    let got = resumed.next_seqs(expected.len(), tenant);
    assert_eq!(got, expected, "resume under concurrent ingest");
    // The live-only stream saw the concurrent batches too, in order.
    assert_eq!(live.next_seqs(c.len(), tenant), c);
    // And nothing more: the next event each delivers is the next one stored.
    let c_next = acked_seqs(&ingest(&server, admin, &batch(1)));
    assert_eq!(resumed.next_seqs(1, tenant), c_next, "after the resume");
    assert_eq!(live.next_seqs(1, tenant), c_next, "after the live events");

    // Seal part of it, add more (left in the WAL and the tail), then SIGKILL and restart.
    flush(&server, admin);
    let d = acked_seqs(&ingest(&server, admin, &batch(10)));
    noise(&server, 2);
    drop(live);
    drop(resumed);
    server.restart();

    // Resume from the middle of B across the restart (sealed segments, then the replayed WAL),
    // then live events after the handshake.
    let from = b[4];
    let mut after_restart = Stream::open(
        &server,
        &format!("tenant={tenant}&from_seq={from}"),
        &reader,
    );
    let e = acked_seqs(&ingest(&server, admin, &batch(10)));
    let expected: Vec<u64> = b[4..]
        .iter()
        .chain(&c)
        .chain(&c_next)
        .chain(&d)
        .chain(&e)
        .copied()
        .collect();
    let got = after_restart.next_seqs(expected.len(), tenant);
    assert_eq!(got, expected, "resume across a restart");
    // Nothing more than those: the next event delivered is the next one stored (a duplicate
    // or stray event after the expected ones would come first).
    let e_next = acked_seqs(&ingest(&server, admin, &batch(1)));
    assert_eq!(
        after_restart.next_seqs(1, tenant),
        e_next,
        "after the resume"
    );
    // The reader's query sees exactly the same events, in the same order.
    let stored: Vec<u64> = query_all(&server, &reader, "order=oldest")
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let all: Vec<u64> = a
        .iter()
        .chain(&b)
        .chain(&c)
        .chain(&c_next)
        .chain(&d)
        .chain(&e)
        .chain(&e_next)
        .copied()
        .collect();
    assert_eq!(stored, all, "query after restart");
}

/// An export whose client stops reading is abandoned after `export_stall_seconds`, so it does
/// not hold its store snapshot (that moment's tail and segments) for ever; its body ends
/// broken, never like a complete file.
/// About 24 MB of CSV in `tenant`: more than the socket buffers and an export's own channel
/// hold, so an export of it waits for a client that does not read.
fn ingest_a_large_tenant(server: &ServerProcess, tenant: &str) {
    let base = now_us() - 3_600_000_000;
    let note = "n".repeat(1_000);
    for round in 0..20 {
        let events: Vec<Value> = (0..1000)
            .map(|i| {
                let n = round * 1000 + i;
                let mut event = event(tenant, n, base + n as i64);
                event["details"] = json!({ "note": note });
                event
            })
            .collect();
        ingest(server, ADMIN_TOKEN, &events);
    }
}

/// Starts a CSV export of `tenant` on a raw connection that reads nothing.
fn unread_export(server: &ServerProcess, tenant: &str) -> TcpStream {
    let mut socket = TcpStream::connect(server.addr).unwrap();
    write!(
        socket,
        "GET /v1/events/export?tenant={tenant}&format=csv HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    )
    .unwrap();
    socket
}

#[test]
fn server_export_to_a_client_that_stops_reading_is_abandoned() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with_config(&dir.path().join("data"), "export_stall_seconds = 1\n");
    ingest_a_large_tenant(&server, "acct_stall");
    let mut socket = unread_export(&server, "acct_stall");
    // Not read for a while: the export is abandoned.
    let abandoned = || {
        get(&server, "/metrics", ADMIN_TOKEN)
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("auditlog_exports_abandoned_total "))
            .map(|v| v.trim().to_string())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while abandoned().as_deref() != Some("1") {
        assert!(std::time::Instant::now() < deadline, "never abandoned");
        std::thread::sleep(Duration::from_millis(200));
    }
    // What the client reads then ends without the final empty chunk of a complete body.
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut received = Vec::new();
    let _ = socket.read_to_end(&mut received);
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &received[..40.min(received.len())]
    );
    assert!(
        !received.ends_with(b"0\r\n\r\n"),
        "the body ended like a complete file"
    );
    assert!(received.len() < 24_000_000, "{} bytes", received.len());
}

/// At most `exports_max` exports run at once (each holds a snapshot and its buffers): one
/// more is a 429 with Retry-After until one ends.
#[test]
fn server_exports_past_exports_max_are_refused_until_one_ends() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_config(&dir.path().join("data"), "exports_max = 1\n");
    ingest_a_large_tenant(&server, "acct_busy");
    let mut first = unread_export(&server, "acct_busy");
    // Its answer has begun: the export runs (and waits for this client).
    let mut head = [0u8; 12];
    first.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let second = get(&server, "/v1/events/export?tenant=acct_busy", ADMIN_TOKEN);
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(second.header("retry-after"), Some("5"));
    // The first client goes away: its export ends, and the next one runs.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = get(
            &server,
            "/v1/events/export?tenant=acct_busy&q=res_1",
            ADMIN_TOKEN,
        );
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 429, "{}", reply.text());
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Three events of `tenant`: numbers 1 and 2 just inside the last hour (out of a `since=1h`
/// window [`EDGE_WAIT`] later), number 3 well inside it. The first page must be read within
/// 4 s of this call (a loaded machine's ingest and first request, with room to spare).
fn ingest_at_the_edge_of_the_hour(server: &ServerProcess, tenant: &str) {
    let now = now_us();
    let hour = 3_600_000_000i64;
    let events = [
        event(tenant, 1, now - hour + 4_000_000),
        event(tenant, 2, now - hour + 4_200_000),
        event(tenant, 3, now - hour / 6),
    ];
    ingest(server, ADMIN_TOKEN, &events);
}

/// How long after [`ingest_at_the_edge_of_the_hour`]'s first page a `since=1h` window no longer
/// holds its two early events.
const EDGE_WAIT: Duration = Duration::from_millis(5_000);

/// The page of `GET /v1/events?<query>`, after `cursor` when given.
fn page_after(server: &ServerProcess, query: &str, cursor: Option<&str>) -> Value {
    let mut path = format!("/v1/events?{query}");
    if let Some(cursor) = cursor {
        path.push_str(&format!("&cursor={cursor}"));
    }
    get_ok(server, &path, ADMIN_TOKEN)
}

/// Paging oldest first with `since`: the bound moves with the clock between two pages, and
/// must not pass the cursor and skip the rows in between.
#[test]
fn server_oldest_first_pages_with_since_skip_nothing_as_the_clock_moves() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    ingest_at_the_edge_of_the_hour(&server, "acct_since");
    let query = "tenant=acct_since&since=1h&order=oldest&limit=1";
    let page = |cursor: Option<&str>| page_after(&server, query, cursor);
    let first = page(None);
    assert_eq!(first["events"][0]["id"], "acct_since-1", "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    // Now the one-hour bound lies past both early events.
    std::thread::sleep(EDGE_WAIT);
    let second = page(Some(&cursor));
    assert_eq!(second["events"][0]["id"], "acct_since-2", "{second}");
}

/// Paging newest first with `since`: every page is cut from the first page's window (its
/// cursor carries that clock), so rows that slip out of the window while the client pages
/// are still listed.
#[test]
fn server_newest_first_pages_with_since_keep_the_first_pages_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    ingest_at_the_edge_of_the_hour(&server, "acct_window");
    let page =
        |cursor: Option<&str>| page_after(&server, "tenant=acct_window&since=1h&limit=1", cursor);
    let first = page(None);
    assert_eq!(first["events"][0]["id"], "acct_window-3", "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    // Now the one-hour bound of a fresh query lies past both early events.
    std::thread::sleep(EDGE_WAIT);
    let second = page(Some(&cursor));
    assert_eq!(second["events"][0]["id"], "acct_window-2", "{second}");
    let cursor = second["next_cursor"].as_str().unwrap().to_string();
    let third = page(Some(&cursor));
    assert_eq!(third["events"][0]["id"], "acct_window-1", "{third}");
    assert!(third["next_cursor"].is_null(), "{third}");
    // A fresh query, with the clock of now, no longer sees them.
    let fresh = get_ok(
        &server,
        "/v1/events?tenant=acct_window&since=1h",
        ADMIN_TOKEN,
    );
    assert_eq!(fresh["events"].as_array().unwrap().len(), 1, "{fresh}");
}

/// A list answer says how far it was read (`last_seq`): a stream from the next seq gives what
/// was stored after it, first, none missing and none twice (how the page turns Live on).
#[test]
fn server_list_answer_says_where_a_stream_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let now = now_us();
    let first = ingest(
        &server,
        ADMIN_TOKEN,
        &[event("acct_follow", 1, now), event("acct_follow", 2, now)],
    );
    let page = get_ok(
        &server,
        "/v1/events?tenant=acct_follow&limit=1",
        ADMIN_TOKEN,
    );
    assert_eq!(page["last_seq"], first["last_seq"], "{page}");
    let later = ingest(
        &server,
        ADMIN_TOKEN,
        &[event("acct_follow", 3, now), event("acct_follow", 4, now)],
    );
    // An empty answer (a tenant without events) still says how far the store was read.
    let empty = get_ok(&server, "/v1/events?tenant=acct_none", ADMIN_TOKEN);
    assert_eq!(empty["last_seq"], later["last_seq"], "{empty}");
    // The counts say how far they were read too (the page adds live events after it only).
    let facets = get_ok(
        &server,
        "/v1/facets?tenant=acct_follow&field=action",
        ADMIN_TOKEN,
    );
    assert_eq!(facets["last_seq"], later["last_seq"], "{facets}");
    assert_eq!(facets["total"], 4, "{facets}");
    let histogram = get_ok(&server, "/v1/histogram?tenant=acct_follow", ADMIN_TOKEN);
    assert_eq!(histogram["last_seq"], later["last_seq"], "{histogram}");
    let from = page["last_seq"].as_u64().unwrap() + 1;
    let mut stream = Stream::open(
        &server,
        &format!("tenant=acct_follow&from_seq={from}"),
        ADMIN_TOKEN,
    );
    let seqs: Vec<u64> = (0..2)
        .map(|_| stream.next_event()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, acked_seqs(&later));
}

/// A listing paged with a version 1 cursor (from before cursors carried the first page's
/// clock) keeps going without one to its end: a clock taken in its middle would cut the rows
/// between the old cursor and the new bound off the later pages.
#[test]
fn server_a_clockless_cursor_keeps_its_listing_clockless() {
    use auditlog_index::{Cursor, Order};
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let now = now_us();
    let hour = 3_600_000_000i64;
    let events = [
        event("acct_v1", 1, now - hour + 60_000_000),
        event("acct_v1", 2, now - hour + 120_000_000),
        event("acct_v1", 3, now - hour / 6),
    ];
    let seqs = acked_seqs(&ingest(&server, ADMIN_TOKEN, &events));
    // A version 1 cursor after the first event, as an older server gave it.
    let old = Cursor {
        order: Order::OldestFirst,
        timestamp_us: now - hour + 60_000_000,
        seq: seqs[0],
        now_us: None,
    }
    .encode();
    assert_eq!(old.len(), 30);
    let page = get_ok(
        &server,
        &format!("/v1/events?tenant=acct_v1&since=1h&order=oldest&limit=1&cursor={old}"),
        ADMIN_TOKEN,
    );
    assert_eq!(page["events"][0]["id"], "acct_v1-2", "{page}");
    let next = page["next_cursor"].as_str().unwrap();
    assert_eq!(next.len(), 30, "still a version 1 cursor: {next}");
    let last = get_ok(
        &server,
        &format!("/v1/events?tenant=acct_v1&since=1h&order=oldest&limit=1&cursor={next}"),
        ADMIN_TOKEN,
    );
    assert_eq!(last["events"][0]["id"], "acct_v1-3", "{last}");
}

/// A cursor is not tied to the query it came from: one from a query without a lower bound,
/// sent with an absolute `from`, must not widen the range below it (only a relative `since`
/// yields to the cursor, see the test above).
#[test]
fn server_a_cursor_never_widens_an_absolute_from() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let now = now_us();
    let hour = 3_600_000_000i64;
    let events = [
        event("acct_from", 1, now - 4 * hour),
        event("acct_from", 2, now - 3 * hour),
        event("acct_from", 3, now - hour),
    ];
    ingest(&server, ADMIN_TOKEN, &events);
    let first = get_ok(
        &server,
        "/v1/events?tenant=acct_from&order=oldest&limit=1",
        ADMIN_TOKEN,
    );
    assert_eq!(first["events"][0]["id"], "acct_from-1", "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let from = format_rfc3339_us(now - 2 * hour);
    for bound in [format!("from={from}"), format!("q=from:{from}")] {
        let path = format!("/v1/events?tenant=acct_from&{bound}&order=oldest&cursor={cursor}");
        let page = get_ok(&server, &path, ADMIN_TOKEN);
        let ids: Vec<&str> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["acct_from-3"], "{path}: {page}");
    }
    // With both an absolute and a relative bound, the cursor may pass the relative one only.
    let path =
        format!("/v1/events?tenant=acct_from&from={from}&since=30m&order=oldest&cursor={cursor}");
    let page = get_ok(&server, &path, ADMIN_TOKEN);
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        1,
        "{path}: {page}"
    );
    assert_eq!(page["events"][0]["id"], "acct_from-3", "{page}");
}

#[test]
fn server_openapi_document_is_valid_and_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));

    // Public: no token needed.
    let reply = call("GET", &server.url("/v1/openapi.json"), None, &[], None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.content_type.starts_with("application/json"));
    let document = reply.json();
    let version = document["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "openapi {version}");
    assert!(document["info"]["title"].is_string());
    assert!(document["info"]["version"].is_string());
    let paths = document["paths"].as_object().expect("paths object");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "path {path}");
        let mut operations = 0;
        for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            operations += 1;
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} has no responses object"));
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            for (status, response) in responses {
                assert!(
                    status == "default" || status.parse::<u16>().is_ok(),
                    "{method} {path}: status {status}"
                );
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}: no description"
                );
            }
            // Every path parameter is declared.
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    let declared = operation["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| p["name"] == name && p["in"] == "path")
                    });
                    assert!(declared, "{method} {path}: parameter {name} not declared");
                }
            }
            documented.insert((method.to_uppercase(), path.clone()));
        }
        assert!(operations > 0, "path {path} has no operation");
    }
    // Every $ref points at a schema that exists.
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        assert!(schemas.contains_key(name), "dangling $ref {target}");
    }

    // The router's list of routes and the document agree, both ways.
    let routes: BTreeSet<(String, String)> = auditlog_server::ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, routes, "OpenAPI paths vs ROUTES");

    // And the running server serves every listed route (not the 404 fallback, not 405).
    for (method, path) in auditlog_server::ROUTES {
        let concrete = path
            .replace("{seq}", "999999999")
            .replace("{id}", "tok_missing");
        let body: Option<&[u8]> = (*method == "POST" || *method == "DELETE").then_some(b"");
        let reply = call(method, &server.url(&concrete), Some(ADMIN_TOKEN), &[], body);
        assert_ne!(reply.status, 405, "{method} {path}");
        let fallback = reply.status == 404 && reply.text().contains("no such route");
        assert!(!fallback, "{method} {path} is not routed");
    }
    let unknown = call(
        "GET",
        &server.url("/v1/nothing"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(unknown.status, 404);
    assert!(unknown.text().contains("no such route"));
}

#[test]
fn server_ingest_decodes_every_gzip_member_and_zstd_frame() {
    // `cat a.gz b.gz` is one gzip body (RFC 1952: a series of members), and zstd frames
    // concatenate the same way: every event of every member is stored, none dropped.
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let base = now_us() - 3_600_000_000;
    let events: Vec<Value> = (0..40)
        .map(|i| event("acct_enc", i, base + i as i64))
        .collect();
    let gzip = |events: &[Value]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&ndjson(events)).unwrap();
        encoder.finish().unwrap()
    };
    let mut two_members = gzip(&events[0..10]);
    two_members.extend(gzip(&events[10..20]));
    let mut two_frames = zstd::encode_all(&ndjson(&events[20..30])[..], 3).unwrap();
    two_frames.extend(zstd::encode_all(&ndjson(&events[30..40])[..], 3).unwrap());
    // Content-Encoding is case-insensitive.
    for (body, encoding) in [(two_members, "GZIP"), (two_frames, "zstd")] {
        let reply = call(
            "POST",
            &server.url("/v1/events"),
            Some(ADMIN_TOKEN),
            &[
                ("Content-Type", "application/x-ndjson"),
                ("Content-Encoding", encoding),
            ],
            Some(&body),
        );
        assert_eq!(reply.status, 200, "{encoding}: {}", reply.text());
        assert_eq!(reply.json()["accepted"], 20, "{encoding}: {}", reply.text());
    }
    let stored = query_all(&server, ADMIN_TOKEN, "tenant=acct_enc");
    assert_eq!(stored.len(), 40);
}

#[test]
fn server_admin_stream_on_an_empty_store_keeps_its_filters() {
    // An admin with no `tenant` on a store that holds no tenant yet: the stream takes every
    // tenant that appears, but still only the events its filters match.
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut stream = Stream::open(&server, "action=delete", ADMIN_TOKEN);
    let base = now_us() - 60_000_000;
    let mut events: Vec<Value> = (0..8)
        .map(|i| event("acct_new", i, base + i as i64))
        .collect();
    for (i, event) in events.iter_mut().enumerate() {
        event["action"] = json!(if i == 5 { "delete" } else { "create" });
    }
    let answer = ingest(&server, ADMIN_TOKEN, &events);
    let received = stream.next_event();
    assert_eq!(received["action"], "delete", "{received}");
    assert_eq!(
        received["seq"].as_u64(),
        answer["first_seq"].as_u64().map(|first| first + 5)
    );
    // Nothing else matched: the next message is the next matching event, not a create.
    let more: Vec<Value> = (8..10)
        .map(|i| {
            let mut e = event("acct_new", i, base + i as i64);
            e["action"] = json!("delete");
            e
        })
        .collect();
    ingest(&server, ADMIN_TOKEN, &more);
    assert_eq!(stream.next_event()["id"], more[0]["id"]);
}

/// An export running when the server is told to stop ends at once, broken (the client must
/// not take it for a whole file), instead of holding the shutdown until its grace period
/// (30 s) runs out, past which process managers kill the process.
#[test]
fn server_sigterm_ends_an_export_in_flight_broken_and_exits_promptly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let base = now_us() - 3_600_000_000;
    for round in 0..10 {
        let events: Vec<Value> = (0..5_000)
            .map(|i| {
                let n = round * 5_000 + i;
                let mut e = event("acct_big", n, base + n as i64);
                e["details"] = json!({ "padding": "x".repeat(300) });
                e
            })
            .collect();
        ingest(&server, ADMIN_TOKEN, &events);
    }
    // A slow client: it reads the headers and a little of the body, then waits.
    let addr = server.url("").trim_start_matches("http://").to_string();
    let mut socket = TcpStream::connect(&addr).unwrap();
    write!(
        socket,
        "GET /v1/events/export?tenant=acct_big&format=ndjson HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut first = vec![0u8; 64 << 10];
    let read = socket.read(&mut first).unwrap();
    assert!(
        String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..read.min(300)])
    );
    std::thread::sleep(Duration::from_millis(500));
    let reader = std::thread::spawn(move || {
        // Then it reads on, slowly, until the server ends the body.
        let mut body = first[..read].to_vec();
        let mut piece = vec![0u8; 16 << 10];
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        loop {
            match socket.read(&mut piece) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&piece[..n]),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        body
    });
    let started = std::time::Instant::now();
    let status = server
        .terminate(Duration::from_secs(20))
        .expect("the server exits within 20 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the shutdown waited for the export: {:?}",
        started.elapsed()
    );
    let body = reader.join().unwrap();

    // A chunked body that ended whole ends with the zero-length chunk; this one must not.
    assert!(
        !body.ends_with(b"\r\n0\r\n\r\n"),
        "the export ended as if whole ({} bytes)",
        body.len()
    );
}

#[test]
fn server_sigterm_ends_streams_finishes_and_exits_0_keeping_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let base = now_us() - 60_000_000;
    let events: Vec<Value> = (0..50)
        .map(|i| event("acct_term", i, base + i as i64))
        .collect();
    let answer = ingest(&server, ADMIN_TOKEN, &events);
    let mut stream = Stream::open(&server, "tenant=acct_term&from_seq=1", ADMIN_TOKEN);
    assert_eq!(stream.next_seqs(50, "acct_term").len(), 50);

    let status = server
        .terminate(Duration::from_secs(20))
        .expect("the server exits within 20 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    // The live stream was told the server is going away (close code 1001), not cut.
    let closed = loop {
        match stream.socket.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(error) => panic!("the stream ended without a close frame: {error}"),
        }
    };
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(1001));

    // Everything acknowledged is there after a restart.
    let server = ServerProcess::start(dir.path());
    let stored = query_all(&server, ADMIN_TOKEN, "tenant=acct_term&order=oldest");
    let seqs: Vec<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, acked_seqs(&answer));
}

/// Runs `auditlog ingest --batch BATCH INPUT` against `server` with the admin token.
fn cli_ingest(
    server: &ServerProcess,
    input: &std::path::Path,
    batch: usize,
) -> std::process::Output {
    std::process::Command::new(auditlog_binary())
        .args(["ingest", "--batch", &batch.to_string()])
        .arg(input)
        .env("AUDITLOG_URL", server.url(""))
        .env("AUDITLOG_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap()
}

#[test]
fn cli_ingest_sends_batches_and_names_the_input_line_of_a_refused_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 60_000_000;
    let good = |i: usize| serde_json::to_string(&event("acct_cli", i, base + i as i64)).unwrap();
    // Lines 1-5 good, 6 blank, 7-8 good, 9 refused (a tenant with a space), 10-11 good.
    let mut lines: Vec<String> = (1..=5).map(good).collect();
    lines.push(String::new());
    lines.extend([good(7), good(8)]);
    lines.push(r#"{"tenant":"acct cli","actor":{"id":"u"},"action":"login","resource":{"type":"account"}}"#.into());
    lines.extend([good(10), good(11)]);
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let output = cli_ingest(&server, &input, 3);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // Batches [1 2 3], [4 5 7] went in; [8 9 10] was refused for the event of input line 9
    // (the body's line 2, which the server names).
    assert!(
        stderr.contains("input line 9: HTTP 400: field tenant"),
        "{stderr}"
    );
    // And how much of the input is stored, so that only the rest is sent again.
    assert!(
        stderr.contains("6 events accepted before the failure"),
        "{stderr}"
    );
    // Nothing of the refused batch is stored (line 8 neither): it says where to resend from.
    assert!(stderr.contains("resend from line 8"), "{stderr}");
    let stored = query_all(&server, ADMIN_TOKEN, "tenant=acct_cli");
    assert_eq!(stored.len(), 6);

    // A load generator whose every batch fails says so with its exit code, not with
    // percentiles of nothing.
    let output = std::process::Command::new(auditlog_binary())
        .args([
            "loadgen",
            "--rate",
            "1000",
            "--duration",
            "1",
            "--connections",
            "1",
        ])
        .env("AUDITLOG_URL", server.url(""))
        .env("AUDITLOG_TOKEN", "alt_not_a_token")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no batch was acknowledged"), "{stderr}");
}

/// A line that is not UTF-8 is sent with its batch, which the server refuses naming the line,
/// so the batches before it are stored and the error says where to resend from (it used to
/// end the run with the lines read so far neither sent nor named). A JSON array after a
/// UTF-8 byte order mark is read as an array.
#[test]
fn cli_ingest_names_a_line_that_is_not_utf8_and_takes_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 60_000_000;
    let good = |i: usize| serde_json::to_vec(&event("acct_latin", i, base + i as i64)).unwrap();
    let mut input = Vec::new();
    for i in 1..=4 {
        input.extend(good(i));
        input.push(b'\n');
    }
    // Line 5: "café" in Latin-1.
    input.extend_from_slice(b"{\"tenant\":\"acct_latin\",\"actor\":{\"id\":\"caf\xe9\"},\"action\":\"login\",\"resource\":{\"type\":\"account\"}}\n");
    input.extend(good(6));
    input.push(b'\n');
    let path = dir.path().join("latin.ndjson");
    std::fs::write(&path, &input).unwrap();
    let output = cli_ingest(&server, &path, 3);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("input line 5"), "{stderr}");
    assert!(stderr.contains("UTF-8"), "{stderr}");
    assert!(stderr.contains("resend from line 4"), "{stderr}");
    assert!(
        stderr.contains("3 events accepted before the failure"),
        "{stderr}"
    );
    assert_eq!(
        query_all(&server, ADMIN_TOKEN, "tenant=acct_latin").len(),
        3
    );

    let array: Vec<Value> = (0..5)
        .map(|i| event("acct_bom", i, base + i as i64))
        .collect();
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend(serde_json::to_vec_pretty(&array).unwrap());
    let path = dir.path().join("bom.json");
    std::fs::write(&path, &body).unwrap();
    let output = cli_ingest(&server, &path, 2);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(query_all(&server, ADMIN_TOKEN, "tenant=acct_bom").len(), 5);
}

/// `auditlog query ... | head`: a reader that stops early ends the command quietly, with
/// success, without an error message or a panic (as it ends any Unix filter).
#[test]
fn cli_query_into_a_pipe_closed_early_ends_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 60_000_000;
    let events: Vec<Value> = (0..3000)
        .map(|i| event("acct_pipe", i, base + i as i64))
        .collect();
    ingest(&server, ADMIN_TOKEN, &events);
    let mut child = std::process::Command::new(auditlog_binary())
        .args([
            "query",
            "--tenant",
            "acct_pipe",
            "--limit",
            "100",
            "--pages",
            "30",
        ])
        .env("AUDITLOG_URL", server.url(""))
        .env("AUDITLOG_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("acct_pipe"), "{first}");
    // The reader is gone (dropped above); the command notices at its next write.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `auditlog tail` run against `server` with `args`, its output read line by line. It is killed
/// when dropped, and after 60 s in any case, so that a test waiting for a line it never prints
/// fails (end of output) instead of hanging.
struct Tail {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Tail {
    fn start(server: &ServerProcess, args: &[&str]) -> Tail {
        use std::io::BufRead;
        let mut child = std::process::Command::new(auditlog_binary())
            .arg("tail")
            .args(args)
            .env("AUDITLOG_URL", server.url(""))
            .env("AUDITLOG_TOKEN", ADMIN_TOKEN)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        });
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Tail { child, lines }
    }

    /// The seqs of the next `count` events it prints.
    fn next_seqs(&mut self, count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| {
                let line = self.lines.next().expect("tail printed a line").unwrap();
                serde_json::from_str::<Value>(&line).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `auditlog query` and `auditlog export` pass every filter of the API (project and outcome
/// included) and the order: their output is the API's answer to the same question.
#[test]
fn cli_query_and_export_take_every_filter_and_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 3_600_000_000;
    let events: Vec<Value> = (0..60)
        .map(|i| event("acct_cli", i, base + i as i64 * 1_000))
        .collect();
    ingest(&server, ADMIN_TOKEN, &events);
    let cli = |args: &[&str]| -> String {
        let output = std::process::Command::new(auditlog_binary())
            .args(args)
            .env("AUDITLOG_URL", server.url(""))
            .env("AUDITLOG_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let seqs = |text: &str| -> Vec<u64> {
        text.lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let filters = "tenant=acct_cli&project=proj_1&outcome=failure";
    let newest: Vec<u64> = query_all(&server, ADMIN_TOKEN, filters)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(!newest.is_empty());
    let mut oldest = newest.clone();
    oldest.reverse();
    let args = [
        "--tenant",
        "acct_cli",
        "--project",
        "proj_1",
        "--outcome",
        "failure",
    ];
    let query = |extra: &[&str]| {
        let mut all = vec!["query", "--limit", "1000"];
        all.extend(args);
        all.extend(extra);
        seqs(&cli(&all))
    };
    assert_eq!(query(&[]), newest);
    assert_eq!(query(&["--order", "oldest"]), oldest);
    let mut export = vec!["export", "--format", "ndjson", "--order", "oldest"];
    export.extend(args);
    let printed = cli(&export);
    assert_eq!(seqs(&printed), oldest);
    // Into a file: written beside it and renamed once whole, over what was there.
    let file = dir.path().join("audit.ndjson");
    std::fs::write(&file, "an older export\n").unwrap();
    let path = file.to_str().unwrap();
    export.extend(["--output", path]);
    assert_eq!(cli(&export), "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    // Every tenant's events, readable by their owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let partials = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".partial")
        })
        .count();
    assert_eq!(partials, 0, "no partial file left");

    // A query whose first token is a negation is taken as the query, not as flags.
    assert_eq!(query(&["-q", "-outcome:success"]), newest);
    // Paged by hand: a run that stops before the last page says how to go on, and a run with
    // that cursor goes on from there.
    assert!(newest.len() >= 2, "{newest:?}");
    let mut first = vec!["query", "--limit", "1", "--pages", "1"];
    first.extend(args);
    let output = std::process::Command::new(auditlog_binary())
        .args(&first)
        .env("AUDITLOG_URL", server.url(""))
        .env("AUDITLOG_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        seqs(&String::from_utf8(output.stdout).unwrap()),
        newest[..1]
    );
    let said = String::from_utf8(output.stderr).unwrap();
    let cursor = said
        .split("--cursor ")
        .nth(1)
        .unwrap_or_else(|| panic!("no cursor said: {said}"))
        .trim();
    assert_eq!(query(&["--cursor", cursor]), newest[1..]);

    // Events are printed as the server wrote them: a number too large for a double and the
    // order of keys in `details` are kept.
    let mut raw = event("acct_cli_raw", 0, base);
    raw["details"] = json!("DETAILS");
    let body = serde_json::to_string(&raw)
        .unwrap()
        .replace(r#""DETAILS""#, r#"{"zeta":1e400,"alpha":2}"#);
    let reply = call(
        "POST",
        &server.url("/v1/events"),
        Some(ADMIN_TOKEN),
        &[],
        Some(body.as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let printed = cli(&["query", "--tenant", "acct_cli_raw"]);
    assert!(printed.contains(r#"{"zeta":1e400,"alpha":2}"#), "{printed}");
}

/// Ten events of `tenant` from number `from`.
fn ten_events(tenant: &str, from: usize, base_us: i64) -> Vec<Value> {
    (from..from + 10)
        .map(|i| event(tenant, i, base_us + i as i64))
        .collect()
}

#[test]
fn cli_tail_follows_the_stream_across_a_restart_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 60_000_000;
    let mut acked = acked_seqs(&ingest(
        &server,
        ADMIN_TOKEN,
        &ten_events("acct_tail", 0, base),
    ));
    let mut tail = Tail::start(&server, &["--tenant", "acct_tail", "--from-seq", "1"]);
    let mut seen = tail.next_seqs(10);
    // SIGKILL and a start on the same port: tail connects again from the seq after its last.
    server.restart_on_same_port();
    acked.extend(acked_seqs(&ingest(
        &server,
        ADMIN_TOKEN,
        &ten_events("acct_tail", 10, base),
    )));
    seen.extend(tail.next_seqs(10));
    assert_eq!(seen, acked);
    // And nothing more: the next line it prints is the next event stored.
    let next = acked_seqs(&ingest(
        &server,
        ADMIN_TOKEN,
        &ten_events("acct_tail", 20, base)[..1],
    ));
    assert_eq!(tail.next_seqs(1), next);
}

#[test]
fn cli_tail_of_live_events_only_misses_none_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 60_000_000;
    // Before the tail: not part of a live-only feed.
    ingest(&server, ADMIN_TOKEN, &ten_events("acct_live", 0, base));
    let mut tail = Tail::start(&server, &["--tenant", "acct_live"]);
    // Connected (the server counts the stream), and so sent the first heartbeat, which says
    // where its feed starts: the tail reads it from its socket even after the server is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !get(&server, "/metrics", ADMIN_TOKEN)
        .text()
        .lines()
        .any(|line| line == "auditlog_stream_clients 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    server.restart_on_same_port();
    // Acknowledged while tail is still away: it must print them once back.
    let acked = acked_seqs(&ingest(
        &server,
        ADMIN_TOKEN,
        &ten_events("acct_live", 10, base),
    ));
    assert_eq!(tail.next_seqs(10), acked);
    let next = acked_seqs(&ingest(
        &server,
        ADMIN_TOKEN,
        &ten_events("acct_live", 20, base)[..1],
    ));
    assert_eq!(tail.next_seqs(1), next, "nothing more before it");
}

#[test]
fn server_stream_that_falls_behind_while_catching_up_reads_the_missed_commits_from_the_store() {
    // A stream buffer of 4 commits: the 20 commits made while the stream is still sending the
    // stored backlog (blocked on a client that does not read yet) overflow it. The stream must
    // fetch them from the store, not tell this client (which reads fast once it reads) to
    // resync.
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with_config(&dir.path().join("data"), "stream_buffer_chunks = 4\n");
    let base = now_us() - 3_600_000_000;
    let mut acked = Vec::new();
    let mut next = 0usize;
    let mut batch = |size: usize| -> Vec<Value> {
        let events = (next..next + size)
            .map(|i| event("acct_lag", i, base + i as i64))
            .collect();
        next += size;
        events
    };
    for _ in 0..60 {
        acked.extend(acked_seqs(&ingest(&server, ADMIN_TOKEN, &batch(1000))));
    }
    let mut stream = Stream::open(&server, "tenant=acct_lag&from_seq=1", ADMIN_TOKEN);
    for _ in 0..20 {
        acked.extend(acked_seqs(&ingest(&server, ADMIN_TOKEN, &batch(10))));
    }
    let seqs = stream.next_seqs(acked.len(), "acct_lag");
    assert_eq!(seqs, acked);
    // And it is live: a commit made now arrives.
    let last = acked_seqs(&ingest(&server, ADMIN_TOKEN, &batch(1)));
    assert_eq!(stream.next_seqs(1, "acct_lag"), last);
}

#[test]
fn server_stream_client_too_slow_for_the_live_feed_is_told_where_to_resume_and_closed() {
    // A buffer of 4 commits, and a live client that stops reading while 100 commits of 1,000
    // events are made: the server does not queue for it without bound; it tells it the seq to
    // resume from and closes. Resuming there gives the rest: no gap, no duplicate.
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with_config(&dir.path().join("data"), "stream_buffer_chunks = 4\n");
    let base = now_us() - 3_600_000_000;
    let mut stream = Stream::open(&server, "tenant=acct_slow", ADMIN_TOKEN);
    // Live: the first heartbeat comes once the (empty) backlog is sent.
    stream.skip_to_heartbeat();
    let acked = ingest_numbered(&server, "acct_slow", 100, base);
    let mut seen = Vec::new();
    let resume = loop {
        let message = stream.socket.read().expect("a message before the close");
        let tungstenite::Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        match message["type"].as_str() {
            Some("event") => seen.push(message["event"]["seq"].as_u64().unwrap()),
            Some("resync") => break message["from_seq"].as_u64().unwrap(),
            _ => {}
        }
    };
    assert!(seen.len() < acked.len(), "it fell behind: {}", seen.len());
    assert_eq!(resume, seen.last().map_or(acked[0], |s| s + 1));
    // Then the server closes.
    loop {
        match stream.socket.read() {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let mut resumed = Stream::open(
        &server,
        &format!("tenant=acct_slow&from_seq={resume}"),
        ADMIN_TOKEN,
    );
    seen.extend(resumed.next_seqs(acked.len() - seen.len(), "acct_slow"));
    assert_eq!(seen, acked);
}

/// Ingests `batches` batches of 1,000 events of `tenant`, numbered from 0, one microsecond apart
/// from `base_us`; the seqs acknowledged.
fn ingest_numbered(server: &ServerProcess, tenant: &str, batches: usize, base_us: i64) -> Vec<u64> {
    let mut acked = Vec::new();
    for round in 0..batches {
        let events: Vec<Value> = (0..1000)
            .map(|i| {
                let n = round * 1000 + i;
                event(tenant, n, base_us + n as i64)
            })
            .collect();
        acked.extend(acked_seqs(&ingest(server, ADMIN_TOKEN, &events)));
    }
    acked
}

/// A token revoked while its stream sends a page of stored events ends the stream within a few
/// dozen messages (plus what the sockets already hold), not at the end of the page: an admin's
/// stream reads 10,000 events a page, and a slow client could go on receiving them for minutes.
#[test]
fn server_stream_revoked_mid_page_is_closed_before_the_page_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    // Events of ~4 KiB, so that what the sockets' buffers hold (a few MB on loopback) is a
    // small part of a page.
    let base = now_us() - 3_600_000_000;
    for round in 0..12 {
        let events: Vec<Value> = (0..1000)
            .map(|i| {
                let n = round * 1000 + i;
                let mut event = event("acct_revoke", n, base + n as i64);
                event["details"] = json!({ "blob": "x".repeat(4000) });
                event
            })
            .collect();
        ingest(&server, ADMIN_TOKEN, &events);
    }
    // A second admin token: the last one cannot be revoked.
    let (id, secret) = create_token(&server, "streamer", "admin", &[]);
    let mut stream = Stream::open(&server, "from_seq=1", &secret);
    // A few events, then the client pauses: the server fills the sockets' buffers and waits.
    let mut before = 0;
    while before < 10 {
        if let tungstenite::Message::Text(_) = stream.socket.read().unwrap() {
            before += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    revoke_token(&server, &id);
    let mut after = 0;
    loop {
        match stream.socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(message["type"], "event", "{text}");
                after += 1;
            }
            Ok(tungstenite::Message::Close(frame)) => {
                let frame = frame.expect("a close frame with a code");
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                break;
            }
            Ok(_) => {}
            Err(error) => {
                panic!("the stream ended without its close after {after} events: {error}")
            }
        }
    }
    // The page being sent held 10,000 events; what arrived after the revocation is what the
    // sockets held then and at most 64 more.
    assert!(
        before + after < 5_000,
        "{after} events after the revocation"
    );
}

/// With `batch=true`, stored events come in `events` messages of at most 1,000 events (an
/// admin's stream reads them 10,000 at a time), in seq order, none missing.
#[test]
fn server_stream_batches_stored_events_in_messages_of_at_most_1000() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let acked = ingest_numbered(&server, "acct_batch", 3, now_us() - 3_600_000_000);
    let mut stream = Stream::open(&server, "from_seq=1&batch=true", ADMIN_TOKEN);
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    while seen.len() < acked.len() {
        let tungstenite::Message::Text(text) = stream.socket.read().unwrap() else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] != "events" {
            continue;
        }
        let events = message["events"].as_array().unwrap();
        sizes.push(events.len());
        seen.extend(
            events
                .iter()
                .filter(|e| e["tenant"] == "acct_batch")
                .map(|e| e["seq"].as_u64().unwrap()),
        );
    }
    assert_eq!(seen, acked);
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    assert!(sizes.len() >= 3, "{sizes:?}");
}

/// The stream reads the client's frames while it sends stored events, not only once live: a
/// ping sent at the start of a 20,000-event catch-up is answered before the catch-up ends (its
/// closing heartbeat), and a close sent there ends the stream then instead of after the last
/// stored event (a client with a ping timeout would otherwise be cut off by a long catch-up).
#[test]
fn server_stream_answers_pings_and_honours_a_close_while_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    ingest_numbered(&server, "acct_ping", 20, now_us() - 3_600_000_000);
    let query = "tenant=acct_ping&from_seq=1";

    let mut stream = Stream::open(&server, query, ADMIN_TOKEN);
    stream
        .socket
        .send(tungstenite::Message::Ping(b"still there?".to_vec()))
        .unwrap();
    let mut events_before_pong = 0;
    loop {
        match stream.socket.read().expect("a message within 20 s") {
            tungstenite::Message::Pong(payload) => {
                assert_eq!(payload, b"still there?");
                break;
            }
            tungstenite::Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                match message["type"].as_str() {
                    Some("event") => events_before_pong += 1,
                    Some("heartbeat") => panic!(
                        "the catch-up ended ({events_before_pong} events) before the ping was \
                         answered"
                    ),
                    other => panic!("unexpected stream message {other:?}"),
                }
            }
            _ => {}
        }
    }
    assert!(events_before_pong < 20_000, "{events_before_pong}");

    let mut stream = Stream::open(&server, query, ADMIN_TOKEN);
    stream.socket.close(None).unwrap();
    let mut events_after_close = 0;
    let end = loop {
        match stream.socket.read() {
            Ok(tungstenite::Message::Text(_)) => events_after_close += 1,
            Ok(_) => {}
            Err(error) => break error,
        }
    };
    assert!(
        matches!(end, tungstenite::Error::ConnectionClosed),
        "the server answers the close: {end}"
    );
    assert!(
        events_after_close < 10_000,
        "the stream went on after the client's close: {events_after_close} events"
    );
}

/// A live client that stops reading altogether (its socket stays connected, its receive window
/// shut) is closed after `stream_stall_seconds`: it must not hold its task, its connection and
/// the broadcast's commits for ever, which waiting on its send without a deadline did (the
/// overflow that tells a slow client to resync is only seen by a stream that gets back to its
/// receive). A reading client alongside it keeps getting every event.
#[test]
fn server_stream_client_that_reads_nothing_is_closed_after_stream_stall_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with_config(&dir.path().join("data"), "stream_stall_seconds = 1\n");
    let metric = |name: &str| -> Option<String> {
        get(&server, "/metrics", ADMIN_TOKEN)
            .text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name} "))
                    .map(|v| v.trim().to_string())
            })
    };
    let _stalled = Stream::open(&server, "tenant=acct_stall", ADMIN_TOKEN);
    let mut reading = Stream::open(&server, "tenant=acct_stall", ADMIN_TOKEN);
    // Both are live once the reading one has had its first heartbeat (the stalled one got
    // its own, unread).
    reading.skip_to_heartbeat();
    assert_eq!(metric("auditlog_stream_clients").as_deref(), Some("2"));
    // About 40 MB of events: far more than the stalled client's socket buffers take.
    let base = now_us() - 3_600_000_000;
    let note = "n".repeat(2_000);
    let mut acked = Vec::new();
    for round in 0..20 {
        let events: Vec<Value> = (0..1000)
            .map(|i| {
                let n = round * 1000 + i;
                let mut event = event("acct_stall", n, base + n as i64);
                event["details"] = json!({ "note": note });
                event
            })
            .collect();
        acked.extend(acked_seqs(&ingest(&server, ADMIN_TOKEN, &events)));
        // The reading client keeps up.
        let seqs = reading.next_seqs(1000, "acct_stall");
        assert_eq!(seqs, acked[acked.len() - 1000..]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric("auditlog_stream_clients").as_deref() != Some("1") {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled client was never closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric("auditlog_stream_clients_stalled_total").as_deref(),
        Some("1")
    );
    // The reading client is still live.
    let last = acked_seqs(&ingest(
        &server,
        ADMIN_TOKEN,
        &[event("acct_stall", 99_999, base + 99_999)],
    ));
    assert_eq!(reading.next_seqs(1, "acct_stall"), last);
}

#[test]
fn cli_ingest_sends_a_pretty_printed_json_array_in_batches_and_names_a_refused_element() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 60_000_000;
    let mut events: Vec<Value> = (1..=25)
        .map(|i| event("acct_array", i, base + i as i64))
        .collect();
    // Element 17 is refused (a tenant with a space).
    events[16]["tenant"] = json!("acct array");
    let input = dir.path().join("events.json");
    std::fs::write(&input, serde_json::to_string_pretty(&events).unwrap()).unwrap();
    let output = cli_ingest(&server, &input, 10);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("input element 17: HTTP 400: field tenant"),
        "{stderr}"
    );
    // Elements 1-10 went in; 11-20 were refused together.
    assert_eq!(
        query_all(&server, ADMIN_TOKEN, "tenant=acct_array").len(),
        10
    );

    // Without the bad element, every one goes in, in three batches.
    events[16]["tenant"] = json!("acct_array");
    std::fs::write(&input, serde_json::to_string_pretty(&events).unwrap()).unwrap();
    let output = cli_ingest(&server, &input, 10);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("15 events accepted, 10 duplicates"),
        "{stdout}"
    );
    assert_eq!(
        query_all(&server, ADMIN_TOKEN, "tenant=acct_array").len(),
        25
    );

    // Broken JSON at element 13: the 12 elements before it go in (the second batch is sent
    // short), and the error says where the input breaks.
    let whole: Vec<Value> = (1..=12)
        .map(|i| event("acct_broken", i, base + i as i64))
        .collect();
    let text = serde_json::to_string_pretty(&whole).unwrap();
    let broken = format!(
        "{},\n  {{\"tenant\": oops}}\n]",
        text.trim_end().trim_end_matches(']').trim_end()
    );
    std::fs::write(&input, broken).unwrap();
    let output = cli_ingest(&server, &input, 10);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("past element 12"), "{stderr}");
    assert_eq!(
        query_all(&server, ADMIN_TOKEN, "tenant=acct_broken").len(),
        12
    );
}

#[test]
fn cli_verify_checks_a_stopped_servers_data_and_refuses_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data);
    let base = now_us() - 60_000_000;
    ingest(&server, ADMIN_TOKEN, &ten_events("acct_verify", 0, base));
    flush(&server, ADMIN_TOKEN);
    // The ledger's head, as an operator would keep it outside the data directory.
    let integrity = call(
        "GET",
        &server.url("/v1/admin/integrity"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(integrity.status, 200, "{}", integrity.text());
    let integrity = integrity.json();
    let entries = integrity["entries"].as_u64().unwrap();
    let head = integrity["head"].as_str().unwrap().to_string();
    assert!(entries >= 1 && head.len() == 64, "{integrity}");
    let recorded = format!("{entries}:{head}");
    assert!(
        integrity["verify"].as_str().unwrap().contains(&recorded),
        "{integrity}"
    );
    ingest(&server, ADMIN_TOKEN, &ten_events("acct_verify", 10, base));
    flush(&server, ADMIN_TOKEN);
    let verify_with = |extra: &[&str]| {
        std::process::Command::new(auditlog_binary())
            .args(["verify", "--data-dir"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    let verify = || verify_with(&[]);
    let running = verify();
    assert!(!running.status.success());
    assert!(
        String::from_utf8_lossy(&running.stderr).contains("lock"),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    let status = server.terminate(Duration::from_secs(20)).expect("exits");
    assert!(status.success());
    let stopped = verify();
    let stdout = String::from_utf8_lossy(&stopped.stdout);
    assert!(
        stopped.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(stdout.contains("no damage found"), "{stdout}");

    // The history still passes through the head recorded before the second flush...
    let checked = verify_with(&["--expect-head", &recorded]);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{stdout}");
    assert!(stdout.contains("1 earlier head(s) checked"), "{stdout}");
    // ... and not through a head it never had.
    let forged = format!("{entries}:{}", "0".repeat(64));
    let refused = verify_with(&["--expect-head", &forged]);
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{stdout}");
    assert!(stdout.contains("rewritten"), "{stdout}");
    // A malformed head is a usage error naming the problem.
    let malformed = verify_with(&["--expect-head", "12:xyz"]);
    assert!(!malformed.status.success());
    assert!(
        String::from_utf8_lossy(&malformed.stderr).contains("64 hex digits"),
        "{}",
        String::from_utf8_lossy(&malformed.stderr)
    );
}

/// The server SIGKILLed while four clients ingest over HTTP, again and again on one data
/// directory: after every restart each batch answered 200 is stored whole, at the seqs its
/// answer gave, once, as sent; no event is stored twice; and each tenant's `tenant_seq`s run
/// 1, 2, 3, ... without a gap (the engine's crash test does this for the store; this one for
/// the whole HTTP path).
#[test]
fn server_sigkill_during_http_ingest_loses_no_acknowledged_batch() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("data"));
    let base = now_us() - 600_000_000;
    // Per tenant: each acknowledged batch's first seq and events as sent.
    type Acked = HashMap<String, Vec<(u64, Vec<Value>)>>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let next_batch = Arc::new(AtomicUsize::new(0));
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..5 {
        let url = server.url("/v1/events");
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let (url, acked, next_batch) =
                    (url.clone(), Arc::clone(&acked), Arc::clone(&next_batch));
                std::thread::spawn(move || {
                    let tenant = format!("acct_crash_{client}");
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    loop {
                        let batch = next_batch.fetch_add(1, Ordering::Relaxed);
                        let events: Vec<Value> = (0..20)
                            .map(|i| {
                                let n = batch * 20 + i;
                                event(&tenant, n, base + n as i64)
                            })
                            .collect();
                        let answer = agent
                            .post(&url)
                            .set("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
                            .send_bytes(&ndjson(&events));
                        // The server was killed: whatever this batch became, it was not
                        // acknowledged.
                        let Ok(answer) = answer else { return };
                        // An answer cut off by the kill is no acknowledgement either.
                        let Ok(text) = answer.into_string() else {
                            return;
                        };
                        let answer: Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(answer["accepted"], 20, "{answer}");
                        let first = answer["first_seq"].as_u64().unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .entry(tenant.clone())
                            .or_default()
                            .push((first, events));
                    }
                })
            })
            .collect();
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        std::thread::sleep(Duration::from_millis(300 + rng_state % 900));
        server.kill();
        for client in clients {
            client.join().unwrap();
        }
        server.restart();
        let acked = acked.lock().unwrap();
        assert!(
            acked.values().map(Vec::len).sum::<usize>() > round,
            "round {round}: hardly anything was acknowledged"
        );
        for client in 0..4 {
            let tenant = format!("acct_crash_{client}");
            let stored = query_all(
                &server,
                ADMIN_TOKEN,
                &format!("tenant={tenant}&order=oldest"),
            );
            let by_id: HashMap<&str, &Value> = stored
                .iter()
                .map(|e| (e["id"].as_str().unwrap(), e))
                .collect();
            assert_eq!(
                by_id.len(),
                stored.len(),
                "round {round}: an id stored twice"
            );
            let tenant_seqs: Vec<u64> = stored
                .iter()
                .map(|e| e["tenant_seq"].as_u64().unwrap())
                .collect();
            assert_eq!(
                tenant_seqs,
                (1..=stored.len() as u64).collect::<Vec<_>>(),
                "round {round}: {tenant}'s tenant_seqs"
            );
            for (first, events) in acked.get(&tenant).into_iter().flatten() {
                for (offset, sent) in events.iter().enumerate() {
                    let id = sent["id"].as_str().unwrap();
                    let found = by_id
                        .get(id)
                        .unwrap_or_else(|| panic!("round {round}: acknowledged {id} is lost"));
                    assert_eq!(found["seq"].as_u64(), Some(first + offset as u64), "{id}");
                    for field in [
                        "tenant",
                        "action",
                        "outcome",
                        "timestamp",
                        "resource",
                        "actor",
                    ] {
                        assert_eq!(found[field], sent[field], "round {round}: {id}'s {field}");
                    }
                }
            }
        }
    }
}
