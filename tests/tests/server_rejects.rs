//! What the server refuses, on the real `auditlog` binary and a real loopback port:
//!
//! - isolation: every endpoint x (no token, an unknown token, a token of the wrong role, a read
//!   token of another tenant) answers 401 or 403 with an error body and no data; a read token
//!   sees only its tenants even without a tenant filter; a revoked token is refused;
//! - bad input: a corpus of broken ingest bodies, each answered with a precise 4xx naming the
//!   line, field or limit, and nothing of that batch stored.
//!
//! Needs `cargo build -p auditlog` first (tests/run-all.sh does it).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use auditlog_engine::event::time::format_rfc3339_us;
use auditlog_engine::store::now_us;
use auditlog_tests::server::{call, create_token, revoke_token, Reply, ServerProcess, ADMIN_TOKEN};
use serde_json::{json, Value};

/// The HTTP status of a WebSocket handshake on `/v1/stream?<query>` (101 when it upgraded).
fn stream_handshake_status(server: &ServerProcess, query: &str, token: Option<&str>) -> u16 {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let url = server.ws_url(&format!("/v1/stream?{query}"));
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tungstenite::client(request, stream) {
        Ok((_socket, response)) => response.status().as_u16(),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response.body().clone().unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains("secret-"),
                "refused handshake leaked data: {text}"
            );
            response.status().as_u16()
        }
        Err(error) => panic!("stream handshake: {error}"),
    }
}

/// An event of `tenant` whose text carries a marker that must never leak to other tenants.
fn marked_event(tenant: &str, i: usize) -> Value {
    json!({
        "id": format!("{tenant}-{i}"),
        "tenant": tenant,
        "actor": { "id": format!("secret-{tenant}-actor") },
        "action": "update",
        "resource": { "type": "pod", "name": format!("secret-{tenant}-{i}") },
        "details": { "marker": format!("secret-{tenant}") },
    })
}

fn ndjson(events: &[Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for event in events {
        serde_json::to_writer(&mut body, event).unwrap();
        body.push(b'\n');
    }
    body
}

/// Events of `tenant` stored, as an admin's query sees them.
fn stored_count(server: &ServerProcess, tenant: &str) -> usize {
    let reply = call(
        "GET",
        &server.url(&format!("/v1/events?tenant={tenant}&limit=1000")),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["events"].as_array().unwrap().len()
}

fn assert_error_body(reply: &Reply, what: &str) -> Value {
    let body = reply.json();
    let error = &body["error"];
    assert!(error["code"].is_string(), "{what}: no error code: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no error message: {body}"
    );
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["error"],
        "{what}: an error answer carries nothing else"
    );
    error.clone()
}

#[test]
fn server_isolation_refuses_every_endpoint_without_the_right_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let (_, ingest_a) = create_token(&server, "ingest a", "ingest", &["acct_a"]);
    let (_, read_a) = create_token(&server, "read a", "read", &["acct_a"]);
    let (read_b_id, read_b) = create_token(&server, "read b", "read", &["acct_b"]);

    let events: Vec<Value> = (0..10)
        .flat_map(|i| [marked_event("acct_a", i), marked_event("acct_b", i)])
        .collect();
    let reply = call(
        "POST",
        &server.url("/v1/events"),
        Some(ADMIN_TOKEN),
        &[],
        Some(&ndjson(&events)),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let first_seq = reply.json()["first_seq"].as_u64().unwrap();
    // Events alternate a, b, a, b...
    let seq_b = first_seq + 1;
    let seq_a = first_seq;

    let event_a = ndjson(&[marked_event("acct_a", 100)]);
    let event_b = ndjson(&[marked_event("acct_b", 100)]);
    let token_body = br#"{"name":"x","role":"admin"}"#.to_vec();

    // (method, path, body, wrong-role tokens, the other-tenant request: path, body and token)
    struct Endpoint<'a> {
        method: &'a str,
        path: String,
        body: Option<Vec<u8>>,
        wrong_role: Vec<&'a str>,
        other_tenant: Vec<(String, Option<Vec<u8>>, &'a str)>,
    }
    let read_endpoint = |path: &str, other: &str| Endpoint {
        method: "GET",
        path: path.to_string(),
        body: None,
        wrong_role: vec![ingest_a.as_str()],
        other_tenant: vec![(other.to_string(), None, read_a.as_str())],
    };
    let admin_endpoint = |method: &'static str, path: &str, body: Option<Vec<u8>>| Endpoint {
        method,
        path: path.to_string(),
        body: body.clone(),
        wrong_role: vec![ingest_a.as_str(), read_a.as_str()],
        other_tenant: vec![(path.to_string(), body, read_a.as_str())],
    };
    let endpoints = vec![
        Endpoint {
            method: "POST",
            path: "/v1/events".into(),
            body: Some(event_a.clone()),
            wrong_role: vec![read_a.as_str()],
            other_tenant: vec![
                (
                    "/v1/events".into(),
                    Some(event_b.clone()),
                    ingest_a.as_str(),
                ),
                ("/v1/events".into(), Some(event_b.clone()), read_a.as_str()),
            ],
        },
        read_endpoint("/v1/events?tenant=acct_a", "/v1/events?tenant=acct_b"),
        // `tenant:` in the query language is refused like the parameter, not answered empty.
        read_endpoint("/v1/events?q=tenant:acct_a", "/v1/events?q=tenant:acct_b"),
        read_endpoint(
            "/v1/events/export?q=tenant:acct_a",
            "/v1/events/export?q=tenant:acct_b",
        ),
        read_endpoint(
            &format!("/v1/events/{seq_a}"),
            &format!("/v1/events/{seq_b}"),
        ),
        read_endpoint(
            "/v1/events/export?tenant=acct_a",
            "/v1/events/export?tenant=acct_b",
        ),
        read_endpoint(
            "/v1/events/export?tenant=acct_a&format=ndjson",
            "/v1/events/export?tenant=acct_a&tenant=acct_b&format=ndjson",
        ),
        read_endpoint(
            "/v1/facets?tenant=acct_a&field=tenant",
            "/v1/facets?tenant=acct_b&field=resource.name",
        ),
        read_endpoint("/v1/histogram?tenant=acct_a", "/v1/histogram?tenant=acct_b"),
        admin_endpoint("POST", "/v1/tokens", Some(token_body.clone())),
        admin_endpoint("GET", "/v1/tokens", None),
        admin_endpoint("DELETE", &format!("/v1/tokens/{read_b_id}"), None),
        admin_endpoint("POST", "/v1/admin/flush", Some(Vec::new())),
        admin_endpoint("GET", "/v1/admin/stats", None),
        admin_endpoint("GET", "/v1/admin/integrity", None),
    ];

    let mut checked = 0;
    let mut check = |what: String, reply: Reply, allowed: &[u16]| {
        assert!(
            allowed.contains(&reply.status),
            "{what}: expected {allowed:?}, got {} {}",
            reply.status,
            reply.text()
        );
        assert!(
            !reply.text().contains("secret-"),
            "{what}: refused answer leaked data: {}",
            reply.text()
        );
        let error = assert_error_body(&reply, &what);
        let code = if reply.status == 401 {
            "unauthorized"
        } else {
            "forbidden"
        };
        assert_eq!(error["code"], code, "{what}");
        checked += 1;
    };
    for endpoint in &endpoints {
        let url = server.url(&endpoint.path);
        let body = endpoint.body.as_deref();
        let label = format!("{} {}", endpoint.method, endpoint.path);
        check(
            format!("{label} without a token"),
            call(endpoint.method, &url, None, &[], body),
            &[401],
        );
        check(
            format!("{label} with an unknown token"),
            call(endpoint.method, &url, Some("alt_not_a_token"), &[], body),
            &[401],
        );
        check(
            format!("{label} with a malformed Authorization header"),
            call(
                endpoint.method,
                &url,
                None,
                &[("Authorization", ADMIN_TOKEN)],
                body,
            ),
            &[401],
        );
        for token in &endpoint.wrong_role {
            check(
                format!("{label} with a wrong-role token"),
                call(endpoint.method, &url, Some(token), &[], body),
                &[403],
            );
        }
        for (path, body, token) in &endpoint.other_tenant {
            check(
                format!("{} {path} with another tenant's token", endpoint.method),
                call(
                    endpoint.method,
                    &server.url(path),
                    Some(token),
                    &[],
                    body.as_deref(),
                ),
                &[403],
            );
        }
    }
    assert!(checked >= 60, "only {checked} refusals checked");

    // A tenant-limited token cannot tell another tenant's seq from one that does not exist:
    // the same answer for both (an admin token gets 404 for the missing one).
    let missing = seq_b + 1_000_000;
    let answer = |seq: u64, token: &str| {
        let reply = call(
            "GET",
            &server.url(&format!("/v1/events/{seq}")),
            Some(token),
            &[],
            None,
        );
        (reply.status, reply.text().replace(&seq.to_string(), "N"))
    };
    assert_eq!(answer(seq_b, &read_a), answer(missing, &read_a));
    assert_eq!(answer(seq_b, &read_a).0, 403);
    assert_eq!(answer(missing, ADMIN_TOKEN).0, 404);
    assert_eq!(answer(seq_a, &read_a).0, 200);

    // The stream: refused in the handshake, before any event is sent.
    assert_eq!(stream_handshake_status(&server, "tenant=acct_a", None), 401);
    assert_eq!(
        stream_handshake_status(&server, "tenant=acct_a&token=alt_not_a_token", None),
        401
    );
    assert_eq!(
        stream_handshake_status(&server, "tenant=acct_a", Some("alt_not_a_token")),
        401
    );
    assert_eq!(
        stream_handshake_status(&server, "tenant=acct_a", Some(&ingest_a)),
        403
    );
    assert_eq!(
        stream_handshake_status(&server, &format!("tenant=acct_a&token={ingest_a}"), None),
        403
    );
    assert_eq!(
        stream_handshake_status(&server, "tenant=acct_b&from_seq=1", Some(&read_a)),
        403
    );
    assert_eq!(
        stream_handshake_status(&server, &format!("tenant=acct_b&token={read_a}"), None),
        403
    );
    assert_eq!(
        stream_handshake_status(&server, "tenant=acct_a", Some(&read_a)),
        101
    );

    // Nothing was written by the refused ingests, and the tokens are as they were.
    assert_eq!(stored_count(&server, "acct_a"), 10);
    assert_eq!(stored_count(&server, "acct_b"), 10);
    let tokens = call(
        "GET",
        &server.url("/v1/tokens"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(tokens.json()["tokens"].as_array().unwrap().len(), 4);

    // Without a tenant filter, a read token sees its own tenants only, on every read path.
    let get_text = |path: &str, token: &str| {
        let reply = call("GET", &server.url(path), Some(token), &[], None);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        reply.text()
    };
    for path in [
        "/v1/events?limit=1000",
        "/v1/events/export",
        "/v1/events/export?format=ndjson",
        "/v1/facets?field=resource.name&top=100",
        "/v1/facets?field=tenant",
        "/v1/facets?field=actor",
    ] {
        let text = get_text(path, &read_a);
        assert!(text.contains("acct_a"), "{path}: {text}");
        assert!(!text.contains("acct_b"), "{path} leaked tenant b: {text}");
    }
    let page: Value = serde_json::from_str(&get_text("/v1/events?limit=1000", &read_a)).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 10);
    let histogram: Value = serde_json::from_str(&get_text("/v1/histogram", &read_a)).unwrap();
    let total: u64 = histogram["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 10, "histogram counts only tenant a");
    // The query language narrows the scope, never widens it (`tenant:acct_b` is a 403, in
    // the table above).
    for q in ["secret-acct_b", "resource.name:secret-acct_b-1"] {
        let page: Value = serde_json::from_str(&get_text(
            &format!("/v1/events?q={}", q.replace(':', "%3A")),
            &read_a,
        ))
        .unwrap();
        assert_eq!(page["events"], json!([]), "q={q}");
    }

    // A revoked token is refused at once.
    assert_eq!(
        call(
            "GET",
            &server.url("/v1/events?tenant=acct_b"),
            Some(&read_b),
            &[],
            None
        )
        .status,
        200
    );
    // A live stream opened with the token before it is revoked.
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let url = server.ws_url(&format!("/v1/stream?tenant=acct_b&token={read_b}"));
    let (mut live, _) = tungstenite::client(url.as_str(), stream).expect("stream handshake");
    revoke_token(&server, &read_b_id);
    let reply = call(
        "GET",
        &server.url("/v1/events?tenant=acct_b"),
        Some(&read_b),
        &[],
        None,
    );
    assert_eq!(reply.status, 401);
    assert!(!reply.text().contains("secret-"));
    // The open stream is closed (1008, policy) at its next message instead of going on: the
    // event ingested after the revocation never reaches it.
    let ingest = call(
        "POST",
        &server.url("/v1/events"),
        Some(ADMIN_TOKEN),
        &[("Content-Type", "application/x-ndjson")],
        Some(&ndjson(&[marked_event("acct_b", 900)])),
    );
    assert_eq!(ingest.status, 200, "{}", ingest.text());
    loop {
        match live.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                let frame = frame.expect("a close frame with a code");
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                assert_eq!(&*frame.reason, "token revoked");
                break;
            }
            Ok(tungstenite::Message::Text(text)) => {
                assert!(!text.contains("secret-"), "a revoked stream got: {text}");
            }
            Ok(_) => {}
            Err(error) => panic!("the revoked stream ended without its close frame: {error}"),
        }
    }

    // The last admin token cannot be revoked: no one could manage tokens after it.
    let admins: Vec<String> = call(
        "GET",
        &server.url("/v1/tokens"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    )
    .json()["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter(|t| t["role"] == "admin")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(admins.len(), 1, "{admins:?}");
    let refused = call(
        "DELETE",
        &server.url(&format!("/v1/tokens/{}", admins[0])),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(refused.status, 409, "{}", refused.text());
    let body = refused.json();
    assert_eq!(body["error"]["code"], "last_admin", "{body}");
}

/// The system tenant holds the server's record of token changes and access: no token writes
/// it (not even an admin's), and the record never holds a token's secret, though the stream
/// takes it in the query string (a token that may read the system tenant would find other
/// tokens' secrets there). Only the stream takes a token in the query string.
#[test]
fn server_system_tenant_is_written_only_by_the_server_and_never_holds_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let (_, ingest) = create_token(&server, "platform", "ingest", &[]);
    let (_, reader) = create_token(&server, "siem", "read", &["auditlog.system"]);
    let before = stored_count(&server, "auditlog.system");
    for token in [ADMIN_TOKEN, ingest.as_str()] {
        let forged = json!({
            "tenant": "auditlog.system",
            "action": "token_revoked",
            "actor": { "id": "someone", "type": "user" },
            "resource": { "type": "api_token", "id": "tok_1" },
        });
        let reply = call(
            "POST",
            &server.url("/v1/events"),
            Some(token),
            &[("Content-Type", "application/x-ndjson")],
            Some(&ndjson(&[marked_event("acct_1", 0), forged])),
        );
        assert_eq!(reply.status, 403, "{}", reply.text());
        let error = assert_error_body(&reply, "system tenant ingest");
        assert_eq!(error["line"], 2);
        assert_eq!(error["field"], "tenant");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("auditlog.system"),
            "{error}"
        );
    }
    assert_eq!(
        stored_count(&server, "acct_1"),
        0,
        "nothing of the batches stored"
    );
    assert_eq!(stored_count(&server, "auditlog.system"), before);

    // A stream subscription authenticated in the query string, as the page does, and an
    // export that carries one too (only the stream takes it: the export is refused without
    // its header, and recorded without the secret with it).
    assert_eq!(
        stream_handshake_status(&server, &format!("tenant=acct_1&token={ADMIN_TOKEN}"), None),
        101
    );
    let export_url = server.url(&format!(
        "/v1/events/export?format=csv&tenant=acct_1&%74oken={ADMIN_TOKEN}"
    ));
    let refused = call("GET", &export_url, None, &[], None);
    assert_eq!(refused.status, 401, "{}", refused.text());
    let export = call("GET", &export_url, Some(ADMIN_TOKEN), &[], None);
    assert_eq!(export.status, 200, "{}", export.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let records = loop {
        let reply = call(
            "GET",
            &server.url("/v1/events?tenant=auditlog.system&limit=100"),
            Some(&reader),
            &[],
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let events = reply.json()["events"].as_array().unwrap().clone();
        let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
        if actions.contains(&"stream_subscribed") && actions.contains(&"export") {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "{actions:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for record in &records {
        let text = record.to_string();
        for secret in [ADMIN_TOKEN, ingest.as_str(), reader.as_str()] {
            assert!(!text.contains(secret), "a secret in the record: {text}");
        }
        if record["action"] == "stream_subscribed" || record["action"] == "export" {
            let details: Value = match record["details"].as_str() {
                Some(text) => serde_json::from_str(text).unwrap(),
                None => record["details"].clone(),
            };
            assert!(
                details["query"].as_str().unwrap().contains("tenant=acct_1"),
                "{details}"
            );
        }
    }
}

/// One broken ingest body and what the answer must say.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    content_encoding: Option<&'static str>,
    status: u16,
    code: &'static str,
    /// Words the message must contain (what is wrong, which limit).
    message: &'static [&'static str],
    line: Option<u64>,
    field: Option<&'static str>,
}

const BAD_TENANT: &str = "acct_bad";

/// A valid event of the bad-input tenant: every body starts with some, so a batch that is
/// refused must also drop its valid events.
fn good(i: usize) -> String {
    json!({
        "id": format!("good-{i}"),
        "tenant": BAD_TENANT,
        "actor": { "id": "u1" },
        "action": "login",
        "resource": { "type": "account" },
    })
    .to_string()
}

/// A body of one valid line and then `bad` on line 2.
fn second_line(bad: &str) -> Vec<u8> {
    format!("{}\n{bad}\n{}\n", good(1), good(3)).into_bytes()
}

/// The valid event with one field replaced (a dotted path) by `value`.
fn with(path: &str, value: Value) -> String {
    let mut event: Value = serde_json::from_str(&good(2)).unwrap();
    let mut target = &mut event;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        target = target
            .as_object_mut()
            .unwrap()
            .entry(part.to_string())
            .or_insert_with(|| json!({}));
    }
    target[parts[parts.len() - 1]] = value;
    event.to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn corpus() -> Vec<Case> {
    let now = now_us();
    let day_us = 86_400_000_000i64;
    let nested = |depth: usize| {
        let mut details = "1".to_string();
        for _ in 0..depth {
            details = format!("{{\"a\":{details}}}");
        }
        let event = good(2);
        format!("{},\"details\":{details}}}", &event[..event.len() - 1])
    };
    let mut invalid_utf8 = with("resource.name", json!("caf_")).into_bytes();
    let position = invalid_utf8.windows(4).position(|w| w == b"caf_").unwrap();
    invalid_utf8[position + 3] = 0xff;
    let mut invalid_utf8_body = format!("{}\n", good(1)).into_bytes();
    invalid_utf8_body.extend_from_slice(&invalid_utf8);
    // More than 16 MiB once decoded: valid events, so only the size is wrong.
    let line = good(7);
    let mut huge = Vec::with_capacity((16 << 20) + 4096);
    while huge.len() <= (16 << 20) + 1024 {
        huge.extend_from_slice(line.as_bytes());
        huge.push(b'\n');
    }
    let many: Vec<u8> = (0..10_001)
        .flat_map(|i| format!("{}\n", good(100_000 + i)).into_bytes())
        .collect();
    // Over the limit with the event past it bad: the length is what is wrong.
    let mut many_then_bad: Vec<u8> = (0..10_000)
        .flat_map(|i| format!("{}\n", good(100_000 + i)).into_bytes())
        .collect();
    many_then_bad.extend_from_slice(b"{\"tenant\":\"acct bad\"}\n");
    // The same as a JSON array whose element past the limit holds invalid UTF-8.
    let mut array_then_bad_utf8 = b"[".to_vec();
    for i in 0..10_000 {
        array_then_bad_utf8.extend_from_slice(good(100_000 + i).as_bytes());
        array_then_bad_utf8.push(b',');
    }
    array_then_bad_utf8.extend_from_slice(b"{\"tenant\":\"\xff\"}]");
    let mut gzip_then_garbage = gzip(good(1).as_bytes());
    gzip_then_garbage.extend_from_slice(b"not gzip");
    // 16 MiB of newlines (16 KB gzipped): once reserved room for 16.7M events.
    let blank_lines = gzip(&vec![b'\n'; (16 << 20) - 1]);

    vec![
        Case {
            name: "malformed JSON",
            body: second_line(r#"{"tenant":"acct_bad","actor":{"id":"u1"},"action":"login""#),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["malformed"],
            line: Some(2),
            field: None,
        },
        Case {
            name: "not an object",
            body: second_line("[1,2,3]"),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["object"],
            line: Some(2),
            field: None,
        },
        Case {
            name: "malformed JSON array",
            body: format!("[{},{}", good(1), good(2)).into_bytes(),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["malformed", "EOF"],
            // The position in the array where the body broke off.
            line: Some(3),
            field: None,
        },
        Case {
            name: "wrong type: action is a number",
            body: second_line(&with("action", json!(5))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["string"],
            line: Some(2),
            field: Some("action"),
        },
        Case {
            name: "wrong type: actor is a string",
            body: second_line(&with("actor", json!("u1"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["object"],
            line: Some(2),
            field: Some("actor"),
        },
        Case {
            name: "wrong type: changes is an object",
            body: second_line(&with("changes", json!({"field": "x"}))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["array"],
            line: Some(2),
            field: Some("changes"),
        },
        Case {
            name: "wrong type: details is an array (in a JSON array body, item 3)",
            body: format!(
                "[{},{},{}]",
                good(1),
                good(2),
                with("details", json!([1, 2]))
            )
            .into_bytes(),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["object"],
            line: Some(3),
            field: Some("details"),
        },
        Case {
            name: "unknown top-level field",
            body: second_line(&with("colour", json!("red"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["unknown", "colour"],
            line: Some(2),
            field: Some("colour"),
        },
        Case {
            name: "unknown nested field",
            body: second_line(&with("actor.name", json!("alice"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["unknown", "name"],
            line: Some(2),
            field: Some("actor.name"),
        },
        Case {
            name: "missing tenant",
            body: second_line(
                r#"{"actor":{"id":"u1"},"action":"login","resource":{"type":"account"}}"#,
            ),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["missing"],
            line: Some(2),
            field: Some("tenant"),
        },
        Case {
            name: "bad tenant characters",
            body: second_line(&with("tenant", json!("acct bad"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["tenant"],
            line: Some(2),
            field: Some("tenant"),
        },
        Case {
            name: "oversized event",
            body: second_line(&with("details.blob", json!("x".repeat(70 * 1024)))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["65536"],
            line: Some(2),
            field: None,
        },
        Case {
            name: "body over 16 MiB",
            body: huge.clone(),
            content_encoding: None,
            status: 413,
            code: "too_large",
            message: &["16777216"],
            line: None,
            field: None,
        },
        Case {
            name: "gzip body over 16 MiB once decoded",
            body: gzip(&huge),
            content_encoding: Some("gzip"),
            status: 413,
            code: "too_large",
            message: &["16777216", "decompression"],
            line: None,
            field: None,
        },
        Case {
            name: "zstd body over 16 MiB once decoded",
            body: zstd::encode_all(&huge[..], 1).unwrap(),
            content_encoding: Some("zstd"),
            status: 413,
            code: "too_large",
            message: &["16777216", "decompression"],
            line: None,
            field: None,
        },
        Case {
            name: "a gzip member, then bytes that are not gzip",
            body: gzip_then_garbage,
            content_encoding: Some("gzip"),
            status: 400,
            code: "bad_request",
            message: &["cannot decode the gzip body"],
            line: None,
            field: None,
        },
        Case {
            name: "an encoding the server does not decode",
            body: good(1).into_bytes(),
            content_encoding: Some("br"),
            status: 415,
            code: "unsupported_encoding",
            message: &["\"br\"", "gzip or zstd"],
            line: None,
            field: None,
        },
        Case {
            name: "more than 10,000 events",
            body: many,
            content_encoding: None,
            status: 413,
            code: "too_large",
            message: &["more than 10000 events"],
            line: None,
            field: None,
        },
        Case {
            name: "more than 10,000 events, then a bad one",
            body: many_then_bad,
            content_encoding: None,
            status: 413,
            code: "too_large",
            message: &["more than 10000 events"],
            line: None,
            field: None,
        },
        Case {
            name: "a JSON array over 10,000 events, invalid UTF-8 past the limit",
            body: array_then_bad_utf8,
            content_encoding: None,
            status: 413,
            code: "too_large",
            message: &["more than 10000 events"],
            line: None,
            field: None,
        },
        Case {
            name: "16 MiB of blank lines, gzip",
            body: blank_lines,
            content_encoding: Some("gzip"),
            status: 400,
            code: "invalid_event",
            message: &["empty batch"],
            line: None,
            field: None,
        },
        Case {
            name: "bad timestamp",
            body: second_line(&with("timestamp", json!("2026-13-45T00:00:00Z"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["2026-13-45"],
            line: Some(2),
            field: Some("timestamp"),
        },
        Case {
            name: "timestamp without offset",
            body: second_line(&with("timestamp", json!("2026-01-02T03:04:05"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["offset"],
            line: Some(2),
            field: Some("timestamp"),
        },
        Case {
            name: "timestamp more than 24 h ahead",
            body: second_line(&with(
                "timestamp",
                json!(format_rfc3339_us(now + 2 * day_us)),
            )),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["future"],
            line: Some(2),
            field: Some("timestamp"),
        },
        Case {
            name: "timestamp older than retention",
            body: second_line(&with(
                "timestamp",
                json!(format_rfc3339_us(now - 400 * day_us)),
            )),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["retention"],
            line: Some(2),
            field: Some("timestamp"),
        },
        Case {
            name: "bad IPv4",
            body: second_line(&with("actor.ip", json!("300.1.1.1"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["300.1.1.1"],
            line: Some(2),
            field: Some("actor.ip"),
        },
        Case {
            name: "bad IPv6",
            body: second_line(&with("actor.ip", json!("2001:db8:::1"))),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["2001:db8:::1"],
            line: Some(2),
            field: Some("actor.ip"),
        },
        Case {
            name: "invalid UTF-8",
            body: invalid_utf8_body,
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["UTF-8"],
            line: Some(2),
            field: None,
        },
        Case {
            name: "details nested 40 deep",
            body: second_line(&nested(40)),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["32"],
            line: Some(2),
            field: Some("details"),
        },
        Case {
            // Deeper than serde_json's own recursion limit: still the depth error.
            name: "details nested 5000 deep",
            body: second_line(&nested(5000)),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["32"],
            line: Some(2),
            field: Some("details"),
        },
        Case {
            name: "empty body",
            body: b"\n\n".to_vec(),
            content_encoding: None,
            status: 400,
            code: "invalid_event",
            message: &["empty"],
            line: None,
            field: None,
        },
        Case {
            name: "Content-Encoding gzip on a body that is not gzip",
            body: second_line(&good(2)),
            content_encoding: Some("gzip"),
            status: 400,
            code: "bad_request",
            message: &["body"],
            line: None,
            field: None,
        },
    ]
}

#[test]
fn server_bad_input_gets_a_precise_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let mut failures = Vec::new();
    for case in corpus() {
        let mut headers = vec![("Content-Type", "application/x-ndjson")];
        if let Some(encoding) = case.content_encoding {
            headers.push(("Content-Encoding", encoding));
        }
        let reply = call(
            "POST",
            &server.url("/v1/events"),
            Some(ADMIN_TOKEN),
            &headers,
            Some(&case.body),
        );
        let what = case.name;
        if reply.status != case.status {
            failures.push(format!(
                "{what}: status {} (expected {}): {}",
                reply.status,
                case.status,
                reply.text()
            ));
            continue;
        }
        let error = assert_error_body(&reply, what);
        eprintln!("{what}: {} {error}", reply.status);
        let message = error["message"].as_str().unwrap();
        let mut problems = Vec::new();
        if error["code"] != case.code {
            problems.push(format!("code {} (expected {})", error["code"], case.code));
        }
        for word in case.message {
            if !message.contains(word) {
                problems.push(format!("message lacks {word:?}"));
            }
        }
        if error["line"].as_u64() != case.line {
            problems.push(format!("line {} (expected {:?})", error["line"], case.line));
        }
        if let Some(field) = case.field {
            if error["field"] != field {
                problems.push(format!("field {} (expected {field})", error["field"]));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{what}: {}: {}", problems.join(", "), error));
        }
        // Nothing of a refused batch is stored, not even its valid events.
        let stored = stored_count(&server, BAD_TENANT);
        if stored != 0 {
            failures.push(format!("{what}: {stored} events stored"));
        }
    }
    assert!(
        failures.is_empty(),
        "bad input answers:\n{}",
        failures.join("\n")
    );

    // The same kind of body, valid, is stored (the corpus fails for its defect alone).
    let valid = format!("{}\n{}\n", good(1), good(2));
    for (body, encoding) in [
        (valid.clone().into_bytes(), None),
        (gzip(valid.as_bytes()), Some("gzip")),
    ] {
        let mut headers = vec![];
        if let Some(encoding) = encoding {
            headers.push(("Content-Encoding", encoding));
        }
        let reply = call(
            "POST",
            &server.url("/v1/events"),
            Some(ADMIN_TOKEN),
            &headers,
            Some(&body),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(
        stored_count(&server, BAD_TENANT),
        2,
        "the retry was deduplicated"
    );
    // The server is still healthy after the corpus.
    let health = call("GET", &server.url("/healthz"), None, &[], None);
    assert_eq!(health.status, 200);
}

/// Requests the router or the parameters refuse: each gets its status and the API's JSON error
/// body (never axum's plain text, never a 500), naming the parameter where one is to blame.
#[test]
fn server_bad_requests_get_a_json_error_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    // (method, path, status, code, field)
    let cases: [(&str, &str, u16, &str, Option<&str>); 20] = [
        // A unit that is not ASCII once panicked the duration parser (a 500).
        (
            "GET",
            "/v1/events?since=1%C3%A9",
            400,
            "bad_request",
            Some("since"),
        ),
        (
            "GET",
            "/v1/events?since=%C3%A9",
            400,
            "bad_request",
            Some("since"),
        ),
        (
            "GET",
            "/v1/events?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            400,
            "bad_request",
            Some("from"),
        ),
        // Parameters that may appear once, given twice.
        (
            "GET",
            "/v1/facets?top=5&top=9",
            400,
            "bad_request",
            Some("top"),
        ),
        (
            "GET",
            "/v1/histogram?bucket=1h&bucket=1d",
            400,
            "bad_request",
            Some("bucket"),
        ),
        (
            "GET",
            "/v1/events/export?format=csv&format=ndjson",
            400,
            "bad_request",
            Some("format"),
        ),
        (
            "GET",
            "/v1/events?cursor=not-a-cursor",
            400,
            "invalid_query",
            Some("cursor"),
        ),
        (
            "GET",
            "/v1/events?limit=0",
            400,
            "invalid_query",
            Some("limit"),
        ),
        // Another outcome used to answer an empty page.
        (
            "GET",
            "/v1/events?outcome=bogus",
            400,
            "bad_request",
            Some("outcome"),
        ),
        // Facets and the histogram count every matching event: paging is refused, not
        // taken (a cursor once moved their lower bound).
        (
            "GET",
            "/v1/facets?field=action&cursor=abc",
            400,
            "bad_request",
            Some("cursor"),
        ),
        (
            "GET",
            "/v1/histogram?bucket=1h&order=oldest",
            400,
            "bad_request",
            Some("order"),
        ),
        (
            "GET",
            "/v1/facets?field=action&limit=5",
            400,
            "bad_request",
            Some("limit"),
        ),
        // A date that does not exist is refused for the day it names.
        (
            "GET",
            "/v1/events?from=2026-02-30",
            400,
            "bad_request",
            Some("from"),
        ),
        // Out of range, on an empty store too.
        (
            "GET",
            "/v1/facets?field=action&top=0",
            400,
            "bad_request",
            Some("top"),
        ),
        (
            "GET",
            "/v1/histogram?bucket=0s",
            400,
            "bad_request",
            Some("bucket"),
        ),
        // Path parameters that are not UTF-8: axum's own rejection, in the API's shape.
        ("GET", "/v1/events/%FF", 400, "bad_request", None),
        ("DELETE", "/v1/tokens/%FF", 400, "bad_request", None),
        ("DELETE", "/v1/events", 405, "method_not_allowed", None),
        ("PUT", "/v1/tokens", 405, "method_not_allowed", None),
        // The stream without a WebSocket upgrade.
        ("GET", "/v1/stream", 400, "websocket_required", None),
    ];
    for (method, path, status, code, field) in cases {
        let reply = call(method, &server.url(path), Some(ADMIN_TOKEN), &[], None);
        let what = format!("{method} {path}");
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        let error = assert_error_body(&reply, &what);
        assert_eq!(error["code"], code, "{what}: {error}");
        match field {
            Some(field) => assert_eq!(error["field"], field, "{what}: {error}"),
            None => assert!(error.get("field").is_none(), "{what}: {error}"),
        }
        if path.contains("2026-02-30") {
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("out-of-range day"), "{what}: {message}");
        }
    }

    // A token request over its body limit (64 KiB): a 413 in the API's shape. The server
    // answers once it has read past the limit and closes, so the client sends a little more
    // than the limit and then reads (sending all 3 MiB could end in a broken pipe).
    let mut socket = TcpStream::connect(server.addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /v1/tokens HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    );
    socket.write_all(head.as_bytes()).unwrap();
    socket.write_all(&vec![b' '; (64 << 10) + 1024]).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut socket, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("content-type: application/json")
            && answer.contains(r#"{"error":{"code":"too_large","#),
        "{answer}"
    );

    // A stream is not paged: paging parameters are refused in its handshake, not ignored.
    for paging in ["limit=10", "cursor=abc", "order=oldest"] {
        let query = format!("{paging}&from_seq=1");
        assert_eq!(
            stream_handshake_status(&server, &query, Some(ADMIN_TOKEN)),
            400,
            "{query}"
        );
    }

    let admin_get = |path: &str| call("GET", &server.url(path), Some(ADMIN_TOKEN), &[], None);
    // The parameters take the query language's times and durations (one parser for both);
    // an empty paging parameter is no parameter, for facets as for the list.
    for path in [
        "/v1/facets?field=action&limit=&cursor=",
        "/v1/events?from=2026-01-01&to=2026-02-01",
        "/v1/events?since=90s",
        "/v1/events?q=since:90s",
    ] {
        let reply = admin_get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let reply = admin_get("/v1/events?from=yesterday");
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = assert_error_body(&reply, "from=yesterday");
    assert_eq!(error["field"], "from", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("YYYY-MM-DD"),
        "{error}"
    );

    // A valid cursor of the newest-first order, sent with order=oldest: the cursor is blamed.
    let events: Vec<_> = (1..=3).map(|n| marked_event("acct_cursor", n)).collect();
    let ingest = call(
        "POST",
        &server.url("/v1/events"),
        Some(ADMIN_TOKEN),
        &[("Content-Type", "application/x-ndjson")],
        Some(&ndjson(&events)),
    );
    assert_eq!(ingest.status, 200, "{}", ingest.text());
    let page = admin_get("/v1/events?tenant=acct_cursor&limit=1");
    assert_eq!(page.status, 200, "{}", page.text());
    let cursor = page.json()["next_cursor"].as_str().unwrap().to_string();
    let path = format!("/v1/events?tenant=acct_cursor&limit=1&order=oldest&cursor={cursor}");
    let reply = admin_get(&path);
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = assert_error_body(&reply, &path);
    assert_eq!(error["field"], "cursor", "{error}");
}

/// HEAD of an export answers what a GET would (status, type, file name) without exporting, and
/// so without recording an export in the server's own audit trail.
#[test]
fn server_head_of_an_export_exports_nothing_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let ingest = call(
        "POST",
        &server.url("/v1/events"),
        Some(ADMIN_TOKEN),
        &[("Content-Type", "application/x-ndjson")],
        Some(&ndjson(&[marked_event("acct_head", 1)])),
    );
    assert_eq!(ingest.status, 200, "{}", ingest.text());
    let exports = || {
        let reply = call(
            "GET",
            &server.url("/v1/events?tenant=auditlog.system&action=export"),
            Some(ADMIN_TOKEN),
            &[],
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["events"].as_array().unwrap().len()
    };
    let head = call(
        "HEAD",
        &server.url("/v1/events/export?tenant=acct_head&format=csv"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(head.status, 200);
    assert!(
        head.content_type.starts_with("text/csv"),
        "{}",
        head.content_type
    );
    assert!(head.body.is_empty());
    assert_eq!(exports(), 0, "a HEAD is not an export");
    let get = call(
        "GET",
        &server.url("/v1/events/export?tenant=acct_head&format=csv"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(get.status, 200);
    assert_eq!(exports(), 1);
}

/// The page may not be framed and runs only its own script; no answer is sniffed into another
/// type, sends a Referer, or is cached unless it says so.
#[test]
fn server_answers_carry_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let page = call("GET", &server.url("/"), None, &[], None);
    assert_eq!(page.status, 200);
    let policy = page.header("content-security-policy").expect("a CSP");
    for directive in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let api = call(
        "GET",
        &server.url("/v1/events"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    let refused = call("GET", &server.url("/v1/events"), None, &[], None);
    for reply in [&page, &api, &refused] {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    }
    assert_eq!(api.header("cache-control"), Some("no-store"));
}

/// Every `line` an ingest answer gives is the body's line, blank lines counted, as validation
/// errors give it: a refused tenant's and each duplicate's.
#[test]
fn server_ingest_answers_name_body_lines_with_blank_lines_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let body = |events: &[Value]| -> Vec<u8> {
        // An event, two blank lines, the next event, ...
        let mut body = Vec::new();
        for event in events {
            body.extend_from_slice(event.to_string().as_bytes());
            body.extend_from_slice(b"\n\n\n");
        }
        body
    };
    let events = [marked_event("acct_a", 1), marked_event("acct_b", 2)];
    let post = |token: &str| {
        call(
            "POST",
            &server.url("/v1/events"),
            Some(token),
            &[("Content-Type", "application/x-ndjson")],
            Some(&body(&events)),
        )
    };
    let (_, ingest_a) = create_token(&server, "ingest a", "ingest", &["acct_a"]);
    let refused = post(&ingest_a);
    assert_eq!(refused.status, 403, "{}", refused.text());
    let error = assert_error_body(&refused, "another tenant");
    assert_eq!(error["line"], 4, "{error}");
    assert_eq!(post(ADMIN_TOKEN).status, 200);
    let retried = post(ADMIN_TOKEN);
    assert_eq!(retried.status, 200, "{}", retried.text());
    let lines: Vec<u64> = retried.json()["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 4]);
}

/// Sends `pieces` as a POST /v1/events body declared `length` bytes long, pausing 100 ms after
/// each, and returns the raw answer (status line, headers and body).
fn post_raw(server: &ServerProcess, length: usize, pieces: &[&[u8]]) -> String {
    use std::io::Read;
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        socket,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for piece in pieces {
        socket.write_all(piece).unwrap();
        socket.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    answer
}

/// Sends `pieces` as one POST /v1/events body (Content-Length), pausing between pieces so that
/// the server sees them arrive apart, and returns the status and the JSON answer.
fn post_in_pieces(server: &ServerProcess, pieces: &[&[u8]]) -> (u16, Value) {
    let length: usize = pieces.iter().map(|p| p.len()).sum();
    let answer = post_raw(server, length, pieces);
    let status = answer[9..12].parse().unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    // A chunked answer: the JSON is the line that starts with `{`.
    let json = body
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {answer:?}"));
    (status, serde_json::from_str(json).unwrap())
}

/// An NDJSON body sent in pieces that cut lines (and a UTF-8 character) in two, with pauses
/// between them, is stored whole, and an invalid event in a late piece fails the batch naming
/// its line, with nothing stored.
#[test]
fn server_ingest_body_arriving_in_pieces_is_parsed_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut events: Vec<Value> = (0..6).map(|i| marked_event("acct_pieces", i)).collect();
    events[2]["details"] = json!({ "note": "café" });
    let body = ndjson(&events);
    let cafe = body.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    let cuts = [body.len() / 5, cafe + 1, body.len() * 3 / 4];
    let pieces = [
        &body[..cuts[0]],
        &body[cuts[0]..cuts[1]],
        &body[cuts[1]..cuts[2]],
        &body[cuts[2]..],
    ];
    let (status, answer) = post_in_pieces(&server, &pieces);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 6, "{answer}");
    assert_eq!(stored_count(&server, "acct_pieces"), 6);
    let stored = call(
        "GET",
        &server.url("/v1/events?tenant=acct_pieces&q=café"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(stored.json()["events"].as_array().unwrap().len(), 1);

    // The fifth line is bad; the body's pieces cut it and the lines around it.
    let mut bad = events.clone();
    for event in &mut bad {
        event["tenant"] = json!("acct_pieces_bad");
    }
    bad[4]["outcome"] = json!("maybe");
    let body = ndjson(&bad);
    let (first, rest) = body.split_at(body.len() / 2);
    let (status, answer) = post_in_pieces(&server, &[first, rest]);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["line"], 5, "{answer}");
    assert_eq!(answer["error"]["field"], "outcome", "{answer}");
    assert_eq!(stored_count(&server, "acct_pieces_bad"), 0);
}

/// A body that stops arriving (a client trickling its bytes, or gone without closing) is
/// answered 408 after `ingest_body_seconds`, and nothing of it is stored.
#[test]
fn server_ingest_body_that_stops_arriving_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_config(dir.path(), "ingest_body_seconds = 1\n");
    let body = ndjson(&[marked_event("acct_slow", 0)]);
    // 100 bytes more declared than ever sent.
    let started = std::time::Instant::now();
    let answer = post_raw(&server, body.len() + 100, &[&body]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("ingest_body_seconds"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(stored_count(&server, "acct_slow"), 0);
}

/// A connection whose request head stops arriving (slowloris), or that never sends one, is
/// closed after `header_read_seconds`: otherwise each would hold a socket and a task for ever.
/// A connection that sends its requests in time is served, and kept alive, as before.
#[test]
fn server_closes_connections_whose_request_head_does_not_arrive() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_config(dir.path(), "header_read_seconds = 1\n");
    let read_until_closed = |socket: &mut TcpStream| {
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let result = socket.read_to_end(&mut answer);
        (
            result,
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    };
    // Half a head, then nothing.
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // No byte at all.
    let mut silent = TcpStream::connect(server.addr).expect("connect");
    for socket in [&mut slow, &mut silent] {
        let (result, waited, answer) = read_until_closed(socket);
        assert!(
            result.is_ok(),
            "closed by the server, not timed out here: {result:?}"
        );
        assert!(waited < Duration::from_secs(15), "{waited:?}");
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    // Requests in time on one connection are answered and it is kept alive; once idle for
    // longer than the deadline, it is closed too.
    let mut kept = TcpStream::connect(server.addr).expect("connect");
    kept.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut kept);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
    let (result, waited, rest) = read_until_closed(&mut kept);
    assert!(result.is_ok(), "closed by the server: {result:?}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    assert!(rest.is_empty(), "{rest}");
}

/// One HTTP/1.1 answer with a `Content-Length` (head and body), read whole however it arrives.
fn read_answer(socket: &mut TcpStream) -> String {
    use std::io::Read;
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if data.len() >= head_end + 4 + length {
                return String::from_utf8_lossy(&data).into_owned();
            }
        }
        let read = socket.read(&mut buffer).unwrap();
        assert!(
            read > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buffer[..read]);
    }
}

/// Sends the head of a POST with `token` and a body of `length` bytes, of which `first` now;
/// returns the socket, for the caller to send the rest and read the answer.
fn start_post(
    server: &ServerProcess,
    path: &str,
    token: &str,
    length: usize,
    first: &[u8],
) -> TcpStream {
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        socket,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    socket.write_all(first).unwrap();
    socket.flush().unwrap();
    socket
}

/// A request authenticated before its token was revoked changes nothing once the revocation
/// is answered: an ingest whose body was still arriving stores nothing, a token creation
/// creates no token (a leaked admin token cannot outlive its revocation that way).
#[test]
fn server_requests_in_flight_when_their_token_is_revoked_change_nothing() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (ingest_id, ingest) = create_token(&server, "writer", "ingest", &[]);
    let (admin_id, admin) = create_token(&server, "second admin", "admin", &[]);
    let body = ndjson(&[marked_event("acct_revoked", 0)]);
    let (head, rest) = body.split_at(body.len() / 2);
    let mut ingesting = start_post(&server, "/v1/events", &ingest, body.len(), head);
    let creation = br#"{"name":"made after","role":"admin","tenants":[]}"#;
    let mut creating = start_post(
        &server,
        "/v1/tokens",
        &admin,
        creation.len(),
        &creation[..5],
    );
    std::thread::sleep(Duration::from_millis(300));
    for id in [&ingest_id, &admin_id] {
        revoke_token(&server, id);
    }
    ingesting.write_all(rest).unwrap();
    creating.write_all(&creation[5..]).unwrap();
    for socket in [&mut ingesting, &mut creating] {
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("revoked"), "{answer}");
    }
    assert_eq!(stored_count(&server, "acct_revoked"), 0);
    let tokens = call(
        "GET",
        &server.url("/v1/tokens"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    assert!(!tokens.text().contains("made after"), "{}", tokens.text());
}

/// A token request's body that stops arriving is answered 408 after `ingest_body_seconds`,
/// as an ingest body is, and creates nothing.
#[test]
fn server_token_request_body_that_stops_arriving_is_answered_408() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_config(dir.path(), "ingest_body_seconds = 1\n");
    let creation = br#"{"name":"never","role":"admin","tenants":[]}"#;
    let mut socket = start_post(
        &server,
        "/v1/tokens",
        ADMIN_TOKEN,
        creation.len(),
        &creation[..5],
    );
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("ingest_body_seconds"), "{answer}");
    let tokens = call(
        "GET",
        &server.url("/v1/tokens"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert!(!tokens.text().contains("never"), "{}", tokens.text());
}

/// Live streams past `streams_max` are refused with 429 and Retry-After; one ending frees
/// its place.
#[test]
fn server_live_streams_past_streams_max_are_answered_429() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_config(dir.path(), "streams_max = 1\n");
    #[allow(clippy::result_large_err)]
    let open = || {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let url = server.ws_url(&format!("/v1/stream?token={ADMIN_TOKEN}"));
        tungstenite::client(url.as_str(), stream)
    };
    let (mut first, _) = open().expect("the first stream");
    match open() {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status().as_u16(), 429);
            assert!(response.headers().get("retry-after").is_some());
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("streams_max"), "{body}");
        }
        Ok(_) => panic!("a second stream was opened past streams_max = 1"),
        Err(error) => panic!("second handshake: {error}"),
    }
    first.close(None).unwrap();
    // Its place comes back once the server has seen it end.
    let mut reopened = false;
    for _ in 0..100 {
        let _ = first.read();
        if let Ok((mut again, _)) = open() {
            let _ = again.close(None);
            reopened = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reopened, "the first stream's place was not freed");
}
