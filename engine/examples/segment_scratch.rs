//! Scratch measurements of column compression choices (temporary).
use auditlog_gen::{GenConfig, Generator};
use std::collections::HashMap;

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut generator = Generator::new(GenConfig { seed: 42, span_us: 86_400_000_000, expected_events: count as u64, ..GenConfig::default() });
    let events = generator.fill(count);
    for e in events.iter().step_by(count / 25) { println!("{} {}", e.action, e.details.as_deref().unwrap_or("-")); }
    // per key value bytes (raw)
    let mut per_key: HashMap<String, (usize, usize)> = HashMap::new();
    for e in &events {
        let v: serde_json::Value = serde_json::from_str(e.details.as_deref().unwrap_or("{}")).unwrap();
        fn walk(prefix: &str, v: &serde_json::Value, m: &mut HashMap<String, (usize, usize)>) {
            match v {
                serde_json::Value::Object(o) => for (k, x) in o { walk(&format!("{prefix}.{k}"), x, m) },
                other => { let e = m.entry(prefix.to_string()).or_default(); e.0 += 1; e.1 += other.to_string().len(); }
            }
        }
        walk("", &v, &mut per_key);
    }
    let mut rows: Vec<_> = per_key.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1));
    for (k, (n, bytes)) in rows.iter().take(30) {
        // distinct
        println!("{k:40} count {n:8} raw bytes/event {:.2}", *bytes as f64 / count as f64);
    }
}
