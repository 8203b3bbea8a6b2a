//! Rough single-core speed of ingest parsing and validation (`parse_batch`).
//!
//! `cargo run --release -p auditlog-engine --example parse_speed [events]`
//!
//! Builds an NDJSON body of realistic events (EVENT.md's example with varying values, about
//! 500 bytes each), parses it a few times, and prints events per second for NDJSON and for the
//! same events as a JSON array, plus the speed of writing them back out.

use std::time::Instant;

use auditlog_engine::event::{parse_batch, write_event_json, RetentionPolicy, ValidationContext};

const NOW_US: i64 = 1_795_000_000_000_000;

fn body(events: usize) -> Vec<u8> {
    let actions = [
        "create",
        "update",
        "delete",
        "login",
        "token_created",
        "permissions_changed",
    ];
    let mut body = Vec::new();
    for index in 0..events {
        let line = format!(
            concat!(
                r#"{{"id":"evt_{index:08x}","timestamp":"2026-11-18T0{hour}:20:32.{micros:06}Z","tenant":"acct_{tenant:04}","#,
                r#""project":"proj_ml-research","actor":{{"id":"user_{user}","email":"user{user}@example.com","#,
                r#""type":"user","ip":"203.0.{ip_c}.{ip_d}","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"}},"#,
                r#""action":"{action}","outcome":"success","resource":{{"type":"pod","id":"pod_{index:x}","name":"llama-finetune-{user}"}},"#,
                r#""changes":[{{"field":"gpu_count","old":1,"new":{new}}}],"details":{{"region":"eu-west","reason":"scale up"}}}}"#,
                "\n"
            ),
            index = index,
            hour = index % 10,
            micros = index % 1_000_000,
            tenant = index % 500,
            user = index % 9973,
            ip_c = index % 250,
            ip_d = index % 251,
            action = actions[index % actions.len()],
            new = index % 8,
        );
        body.extend_from_slice(line.as_bytes());
    }
    body
}

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(200_000);
    let retention = RetentionPolicy::new(365);
    let ctx = ValidationContext::new(NOW_US, &retention);
    let ndjson = body(events);
    let mut array = b"[".to_vec();
    for (index, line) in ndjson
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
    {
        if index > 0 {
            array.push(b',');
        }
        array.extend_from_slice(line);
    }
    array.push(b']');
    println!(
        "{events} events, {} bytes of NDJSON ({} bytes per event)",
        ndjson.len(),
        ndjson.len() / events
    );

    for (name, body) in [("ndjson", &ndjson), ("array", &array)] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let parsed = parse_batch(body, &ctx).expect("valid body");
            best = best.min(start.elapsed().as_secs_f64());
            assert_eq!(parsed.len(), events);
        }
        println!(
            "parse {name}: {:.0} events/s, {:.0} MB/s (best of 5)",
            events as f64 / best,
            body.len() as f64 / best / 1e6
        );
    }

    let parsed = parse_batch(&ndjson, &ctx).expect("valid body");
    let mut best = f64::MAX;
    let mut out = Vec::with_capacity(ndjson.len());
    for _ in 0..5 {
        out.clear();
        let start = Instant::now();
        for event in &parsed {
            write_event_json(event, &mut out);
            out.push(b'\n');
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!("write: {:.0} events/s (best of 5)", events as f64 / best);
}
