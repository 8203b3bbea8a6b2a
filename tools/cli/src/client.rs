//! The client commands: `ingest`, `query`, `tail`, `export`, `token`.

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};

/// Where the server is and who we are, with one kept-alive connection: a request reuses the
/// connection of the one before once that answer was read to its end.
pub struct Endpoint {
    pub url: String,
    pub token: String,
    agent: ureq::Agent,
}

impl Endpoint {
    pub fn new(url: String, token: String) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .build();
        Endpoint { url, token, agent }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(
                method,
                &format!("{}{}", self.url.trim_end_matches('/'), path),
            )
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    /// Sends a request; an error answer becomes an error carrying the server's message.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<ureq::Response> {
        let request = self.request(method, path);
        let result = match body {
            Some(body) => request.send_bytes(body),
            None => request.call(),
        };
        match result {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                bail!("{method} {path}: HTTP {status}: {message}")
            }
            Err(error) => Err(error).with_context(|| format!("{method} {path}")),
        }
    }
}

/// Reads a JSON answer.
fn read_json(response: ureq::Response) -> anyhow::Result<serde_json::Value> {
    serde_json::from_reader(response.into_reader()).context("reading a JSON answer")
}

/// Builds a query string from filter pairs.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    fn encode(text: &str) -> String {
        let mut out = String::new();
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `auditlog ingest FILE|-`: sends NDJSON in batches, with a progress bar.
pub fn ingest(endpoint: &Endpoint, input: &str, batch_events: usize) -> anyhow::Result<()> {
    let reader: Box<dyn Read> = if input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(input).with_context(|| format!("cannot open {input}"))?)
    };
    let total_bytes = if input == "-" {
        None
    } else {
        std::fs::metadata(input).ok().map(|m| m.len())
    };
    let progress = match total_bytes {
        Some(bytes) => indicatif::ProgressBar::new(bytes),
        None => indicatif::ProgressBar::new_spinner(),
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} {msg} [{elapsed_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut lines = std::io::BufReader::new(reader).lines();
    let (mut accepted, mut duplicates, mut line_number) = (0u64, 0u64, 0usize);
    loop {
        let mut body = Vec::new();
        let first_line = line_number + 1;
        let mut count = 0;
        for line in lines.by_ref() {
            let line = line.context("reading input")?;
            line_number += 1;
            progress.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
            count += 1;
            if count == batch_events {
                break;
            }
        }
        if count == 0 {
            break;
        }
        let response = endpoint
            .send("POST", "/v1/events", Some(&body))
            .with_context(|| format!("batch starting at input line {first_line}"))?;
        let answer: serde_json::Value = read_json(response)?;
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        duplicates += answer["duplicates"]
            .as_array()
            .map_or(0, |d| d.len() as u64);
        progress.set_message(format!("{accepted} accepted, {duplicates} duplicates"));
    }
    progress.finish();
    println!("{accepted} events accepted, {duplicates} duplicates");
    Ok(())
}

/// `auditlog query`: pages through matching events, printing NDJSON.
pub fn query(endpoint: &Endpoint, filters: &[(&str, String)], pages: usize) -> anyhow::Result<()> {
    let mut cursor = String::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for _ in 0..pages.max(1) {
        let mut pairs = filters.to_vec();
        pairs.push(("cursor", cursor.clone()));
        let response =
            endpoint.send("GET", &format!("/v1/events?{}", query_string(&pairs)), None)?;
        let page: serde_json::Value = read_json(response)?;
        for event in page["events"].as_array().into_iter().flatten() {
            writeln!(out, "{event}")?;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    Ok(())
}

/// `auditlog export`: streams the export to stdout or a file.
pub fn export(
    endpoint: &Endpoint,
    filters: &[(&str, String)],
    format: &str,
    output: Option<&str>,
) -> anyhow::Result<()> {
    let mut pairs = filters.to_vec();
    pairs.push(("format", format.to_string()));
    let response = endpoint.send(
        "GET",
        &format!("/v1/events/export?{}", query_string(&pairs)),
        None,
    )?;
    let mut reader = response.into_reader();
    let copied = match output {
        Some(path) => {
            let mut file = std::fs::File::create(path).with_context(|| format!("create {path}"))?;
            std::io::copy(&mut reader, &mut file)?
        }
        None => std::io::copy(&mut reader, &mut std::io::stdout().lock())?,
    };
    eprintln!("{copied} bytes exported");
    Ok(())
}

/// `auditlog tail`: the live stream, one event per line, until interrupted.
pub fn tail(
    endpoint: &Endpoint,
    filters: &[(&str, String)],
    from_seq: Option<u64>,
) -> anyhow::Result<()> {
    let mut pairs = filters.to_vec();
    pairs.push(("token", endpoint.token.clone()));
    if let Some(seq) = from_seq {
        pairs.push(("from_seq", seq.to_string()));
    }
    let base = endpoint
        .url
        .trim_end_matches('/')
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let url = format!("{base}/v1/stream?{}", query_string(&pairs));
    let (mut socket, _) = tungstenite::connect(url.as_str()).context("connecting to the stream")?;
    loop {
        let message = socket.read().context("reading the stream")?;
        let tungstenite::Message::Text(text) = message else {
            if matches!(message, tungstenite::Message::Close(_)) {
                return Ok(());
            }
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text)?;
        match value["type"].as_str() {
            Some("event") => println!("{}", value["event"]),
            Some("resync") => {
                bail!(
                    "the server dropped this slow client: resume with --from-seq {}",
                    value["from_seq"]
                )
            }
            _ => {}
        }
    }
}

/// `auditlog token create|list|revoke`.
pub fn token(endpoint: &Endpoint, action: crate::TokenAction) -> anyhow::Result<()> {
    match action {
        crate::TokenAction::Create {
            name,
            role,
            tenants,
        } => {
            let body = serde_json::json!({ "name": name, "role": role, "tenants": tenants });
            let response =
                endpoint.send("POST", "/v1/tokens", Some(body.to_string().as_bytes()))?;
            let answer: serde_json::Value = read_json(response)?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            eprintln!("the token is shown once: store it now");
        }
        crate::TokenAction::List => {
            let response = endpoint.send("GET", "/v1/tokens", None)?;
            let answer: serde_json::Value = read_json(response)?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        crate::TokenAction::Revoke { id } => {
            endpoint.send("DELETE", &format!("/v1/tokens/{id}"), None)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
