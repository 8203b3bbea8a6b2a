//! The client commands: `ingest`, `query`, `tail`, `export`, `token`.

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};

/// How long a client command waits for a connection that makes no progress.
const IO_STALL: Duration = Duration::from_secs(300);

/// Where the server is and who we are, with one kept-alive connection: a request reuses the
/// connection of the one before once that answer was read to its end.
pub struct Endpoint {
    pub url: String,
    pub token: String,
    agent: ureq::Agent,
}

impl Endpoint {
    pub fn new(url: String, token: String) -> Self {
        // A read or write that makes no progress for this long is a lost connection (a peer
        // gone without closing it, a half-open connection): the command fails and says so
        // rather than waiting for ever. Far above anything the server takes between two reads
        // or writes of a healthy request (a busy answer comes within `busy_wait`, 2 s).
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(IO_STALL)
            .timeout_write(IO_STALL)
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

    /// Sends a request; an error answer becomes an [`ApiFailure`] (inside the `anyhow` error)
    /// carrying the server's message.
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
                let retry_after = response
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse().ok());
                let text = response.into_string().unwrap_or_default();
                let json = serde_json::from_str::<serde_json::Value>(&text).ok();
                let error = json.as_ref().map(|v| &v["error"]);
                Err(ApiFailure {
                    what: format!("{method} {path}"),
                    status,
                    message: error
                        .and_then(|e| e["message"].as_str().map(str::to_string))
                        .unwrap_or(text),
                    line: error.and_then(|e| e["line"].as_u64()).map(|l| l as usize),
                    retry_after,
                }
                .into())
            }
            Err(error) => Err(error).with_context(|| format!("{method} {path}")),
        }
    }
}

/// An error answer of the server.
#[derive(Debug)]
pub struct ApiFailure {
    /// `METHOD /path`.
    pub what: String,
    pub status: u16,
    pub message: String,
    /// The line of the request body the error is about (ingest), if any.
    pub line: Option<usize>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}: HTTP {}: {}",
            self.what, self.status, self.message
        )
    }
}

impl std::error::Error for ApiFailure {}

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

/// Most bytes of one ingest request: under the server's default limit (16 MiB), so that a
/// batch of large events is cut by size before it is refused.
pub const BATCH_BYTES_MAX: usize = 15 << 20;

/// Standard output, for the commands' results (`query`, `tail`, `export`): a write that finds
/// its reader gone (`auditlog query ... | head`) fails with [`StdoutClosed`] inside the
/// error, which `main` ends on quietly. A broken pipe anywhere else (a server's socket) stays
/// an error.
pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    pub fn lock() -> Self {
        Stdout(std::io::stdout().lock())
    }

    fn mark(error: std::io::Error) -> std::io::Error {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
        } else {
            error
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes).map_err(Self::mark)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(Self::mark)
    }
}

/// Standard output's reader went away (see [`Stdout`]).
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `error` comes from a write to [`Stdout`] whose reader went away.
pub fn stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// `auditlog ingest FILE|-`: sends NDJSON or a JSON array in batches (at most `batch_events`
/// events and [`BATCH_BYTES_MAX`] bytes each), with a progress bar. A busy server (429) is asked again after
/// its `Retry-After`; an event the server refuses is reported with its line in the input.
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
    let mut reader = std::io::BufReader::new(reader);
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    let mut count = |answer: serde_json::Value| {
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        duplicates += answer["duplicates"]
            .as_array()
            .map_or(0, |d| d.len() as u64);
        progress.set_message(format!("{accepted} accepted, {duplicates} duplicates"));
    };
    // A UTF-8 byte order mark (some Windows tools write one) is not part of the JSON: the
    // server ignores one before a body, and here it must not hide an array's `[`.
    {
        let buffer = reader.fill_buf().context("reading input")?;
        if buffer.starts_with(b"\xEF\xBB\xBF") {
            progress.inc(3);
            reader.consume(3);
        }
    }
    // Read past leading whitespace (one read may hold nothing else), counting its lines.
    let mut skipped_lines = 0;
    let starts_array = loop {
        let buffer = reader.fill_buf().context("reading input")?;
        if buffer.is_empty() {
            break false;
        }
        if let Some(at) = buffer.iter().position(|byte| !byte.is_ascii_whitespace()) {
            let starts_array = buffer[at] == b'[';
            skipped_lines += buffer[..at].iter().filter(|&&b| b == b'\n').count();
            progress.inc(at as u64);
            reader.consume(at);
            break starts_array;
        }
        let len = buffer.len();
        skipped_lines += buffer.iter().filter(|&&b| b == b'\n').count();
        progress.inc(len as u64);
        reader.consume(len);
    };
    let sent = if starts_array {
        // Counted beneath a buffer: the JSON reader takes a byte at a time.
        ingest_array(
            endpoint,
            std::io::BufReader::new(progress.wrap_read(reader)),
            batch_events,
            &progress,
            &mut count,
        )
    } else {
        ingest_ndjson(
            endpoint,
            reader,
            skipped_lines,
            batch_events,
            &progress,
            &mut count,
        )
    };
    if sent.is_ok() {
        progress.finish();
    } else {
        // Where it stopped, not the whole input as if it were all sent.
        progress.abandon();
    }
    // The batches before a failing one are stored: say how many events, so that the user
    // resends from the failing batch on (the error names its first line or element) rather
    // than the whole input (events without an `id` would be stored twice).
    sent.with_context(|| {
        format!(
            "{accepted} events accepted before the failure ({duplicates} duplicates), in the \
             batches before the failing one"
        )
    })?;
    println!("{accepted} events accepted, {duplicates} duplicates");
    Ok(())
}

/// Reads one line (without its `\n`) into `line`; `Ok(false)` at the end of the input. A
/// line longer than `max` bytes is an error, read no further: no request could carry it, and
/// reading it whole (a file with no newline) could take all the memory there is.
fn read_line_capped(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    line.clear();
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buffer.is_empty() {
            return Ok(!line.is_empty());
        }
        let (take, ends) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(at) => (at, true),
            None => (buffer.len(), false),
        };
        if line.len() + take > max {
            return Err(std::io::Error::other(format!(
                "the line is longer than {max} bytes, more than a request may carry"
            )));
        }
        line.extend_from_slice(&buffer[..take]);
        reader.consume(take + usize::from(ends));
        if ends {
            return Ok(true);
        }
    }
}

/// Sends NDJSON input in batches (see [`ingest`]).
fn ingest_ndjson(
    endpoint: &Endpoint,
    reader: impl BufRead,
    skipped_lines: usize,
    batch_events: usize,
    progress: &indicatif::ProgressBar,
    count: &mut dyn FnMut(serde_json::Value),
) -> anyhow::Result<()> {
    // Lines as bytes: a line that is not UTF-8 goes to the server, which refuses its batch
    // naming the line (the resend point), rather than ending the run here with the lines of
    // the batch read so far neither sent nor named.
    let mut reader = reader;
    // Lines of leading whitespace already read past.
    let mut line_number = skipped_lines;
    // A line read but left for the next batch (it would have made this one too large).
    let mut carried: Option<(usize, Vec<u8>)> = None;
    loop {
        let mut body = Vec::new();
        // The input line of each event of the batch (the body has no blank line).
        let mut input_lines: Vec<usize> = Vec::new();
        let mut next_line = || -> anyhow::Result<Option<(usize, Vec<u8>)>> {
            if let Some(line) = carried.take() {
                return Ok(Some(line));
            }
            loop {
                line_number += 1;
                let mut line = Vec::new();
                let read = read_line_capped(&mut reader, &mut line, BATCH_BYTES_MAX)
                    .with_context(|| format!("reading input line {line_number}"))?;
                if !read {
                    return Ok(None);
                }
                progress.inc(line.len() as u64 + 1);
                if !line.trim_ascii().is_empty() {
                    return Ok(Some((line_number, line)));
                }
            }
        };
        while input_lines.len() < batch_events.max(1) {
            let next = next_line().with_context(|| match input_lines.first() {
                Some(first) => format!("nothing from line {first} on was sent: resend from there"),
                None => "nothing of this batch was sent".to_string(),
            });
            let Some((number, line)) = next? else {
                break;
            };
            if !body.is_empty() && body.len() + line.len() + 1 > BATCH_BYTES_MAX {
                carried = Some((number, line));
                break;
            }
            body.extend_from_slice(&line);
            body.push(b'\n');
            input_lines.push(number);
        }
        if input_lines.is_empty() {
            break;
        }
        count(send_batch(endpoint, &body, &input_lines, "line", progress)?);
    }
    Ok(())
}

/// Sends a JSON array of events in batches (each itself a JSON array), read element by
/// element, so that an input larger than memory goes through; errors name the element.
fn ingest_array(
    endpoint: &Endpoint,
    reader: impl Read,
    batch_events: usize,
    progress: &indicatif::ProgressBar,
    count: &mut dyn FnMut(serde_json::Value),
) -> anyhow::Result<()> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    /// Sends a batch of elements, the first of which is the input's element number `usize`.
    type Send<'a> = dyn FnMut(&[Box<RawValue>], usize) -> anyhow::Result<()> + 'a;

    struct Batches<'a> {
        send: &'a mut Send<'a>,
        batch_events: usize,
        failure: &'a mut Option<anyhow::Error>,
        /// Elements read whole (all sent, unless `failure`).
        read: &'a mut usize,
    }

    impl<'de> Visitor<'de> for Batches<'_> {
        type Value = ();

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a JSON array of events")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut batch: Vec<Box<RawValue>> = Vec::new();
            let (mut bytes, mut first, mut position) = (0usize, 1usize, 0usize);
            let mut flush = |batch: &mut Vec<Box<RawValue>>, first: usize| {
                let sent = (self.send)(batch, first);
                batch.clear();
                sent
            };
            loop {
                let raw = match seq.next_element::<Box<RawValue>>() {
                    Ok(Some(raw)) => raw,
                    Ok(None) => break,
                    // The input is broken from here: what was read before it goes in first.
                    Err(error) => {
                        if !batch.is_empty() {
                            if let Err(failure) = flush(&mut batch, first) {
                                *self.failure = Some(failure);
                            }
                        }
                        *self.read = position;
                        return Err(error);
                    }
                };
                position += 1;
                let len = raw.get().len() + 1;
                if !batch.is_empty()
                    && (batch.len() >= self.batch_events.max(1) || bytes + len > BATCH_BYTES_MAX)
                {
                    if let Err(error) = flush(&mut batch, first) {
                        *self.failure = Some(error);
                        return Err(serde::de::Error::custom("stopped"));
                    }
                    (bytes, first) = (0, position);
                }
                bytes += len;
                batch.push(raw);
            }
            if !batch.is_empty() {
                if let Err(error) = flush(&mut batch, first) {
                    *self.failure = Some(error);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
            *self.read = position;
            Ok(())
        }
    }

    let mut send = |batch: &[Box<RawValue>], first: usize| -> anyhow::Result<()> {
        let mut body = Vec::with_capacity(batch.iter().map(|raw| raw.get().len() + 1).sum());
        body.push(b'[');
        for (i, raw) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            // Without the indentation of a pretty-printed file: the server's 64 KiB per event
            // counts the event's text as sent.
            compact_json(raw.get(), &mut body);
        }
        body.push(b']');
        let positions: Vec<usize> = (first..first + batch.len()).collect();
        count(send_batch(
            endpoint, &body, &positions, "element", progress,
        )?);
        Ok(())
    };
    let mut failure = None;
    let mut read = 0;
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let result = deserializer
        .deserialize_seq(Batches {
            send: &mut send,
            batch_events,
            failure: &mut failure,
            read: &mut read,
        })
        .and_then(|()| deserializer.end());
    match (failure, result) {
        (Some(error), _) => Err(error),
        (None, Ok(())) => Ok(()),
        (None, Err(error)) => bail!(
            "the input is not a JSON array of events past element {read}: {error} (elements 1 to \
             {read} were sent)"
        ),
    }
}

/// Appends JSON text without the whitespace between its tokens (strings kept as they are).
///
/// ```text
/// {\n  "a": [1, 2],\n  "b": "x y"\n}   ->   {"a":[1,2],"b":"x y"}
/// ```
fn compact_json(text: &str, out: &mut Vec<u8>) {
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text.as_bytes() {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
            out.push(byte);
        } else if !byte.is_ascii_whitespace() {
            out.push(byte);
        }
    }
}

/// Sends one ingest batch, waiting out busy answers; an error names the input's `unit`
/// (`line` of NDJSON, `element` of an array) from `input_lines`, that of each event.
fn send_batch(
    endpoint: &Endpoint,
    body: &[u8],
    input_lines: &[usize],
    unit: &str,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<serde_json::Value> {
    let first = input_lines[0];
    for attempt in 0u32.. {
        match endpoint.send("POST", "/v1/events", Some(body)) {
            Ok(response) => {
                return read_json(response).with_context(|| {
                    format!(
                        "the batch starting at input {unit} {first} was stored (HTTP 200), but \
                         its answer could not be read; go on from the {unit} after its last"
                    )
                })
            }
            Err(error) => {
                let Some(failure) = error.downcast_ref::<ApiFailure>() else {
                    // No answer: the batch may or may not be stored (the connection may have
                    // failed after the server made it durable).
                    return Err(error.context(format!(
                        "the batch starting at input {unit} {first} may or may not have been \
                         stored (no answer from the server); resending it from {unit} {first} \
                         is safe for events with an `id` (reported as duplicates), events \
                         without one could be stored twice"
                    )));
                };
                if failure.status == 429 && attempt < 60 {
                    let wait = failure.retry_after.unwrap_or(1).clamp(1, 30);
                    progress.set_message(format!("server busy, retrying in {wait} s"));
                    std::thread::sleep(Duration::from_secs(wait));
                    continue;
                }
                // `line` counts the body's lines, one per event here; the server's message
                // starts with it ("line 3, field actor.ip: ..."), which is replaced by the
                // input's line.
                let input_line = failure
                    .line
                    .and_then(|line| Some((line, *input_lines.get(line.checked_sub(1)?)?)));
                let (at, message) = match input_line {
                    Some((line, input_line)) => {
                        let message = failure.message.as_str();
                        let message = message
                            .strip_prefix(&format!("line {line}, "))
                            .or_else(|| message.strip_prefix(&format!("line {line}: ")))
                            .unwrap_or(message);
                        (format!("input {unit} {input_line}"), message)
                    }
                    None => (
                        format!("batch starting at input {unit} {first}"),
                        failure.message.as_str(),
                    ),
                };
                // A batch refused for what it holds (4xx) is stored not at all: the whole batch
                // is to be sent again (once fixed), not only from the event named. A server
                // failing (5xx: a failed WAL write or fsync) may have stored it all the same.
                if failure.status < 500 {
                    bail!(
                        "{at}: HTTP {}: {message} (nothing of the batch starting at input \
                         {unit} {first} was stored: resend from {unit} {first})",
                        failure.status
                    );
                }
                bail!(
                    "{at}: HTTP {}: {message} (the batch starting at input {unit} {first} may \
                     or may not have been stored: resending from {unit} {first} is safe for \
                     events with an `id`, events without one could be stored twice)",
                    failure.status
                );
            }
        }
    }
    unreachable!("the loop returns")
}

/// A page of `GET /v1/events`: the events are printed as the server wrote them (their
/// `details` numbers and key order kept, whatever their size).
#[derive(serde::Deserialize)]
struct Page {
    events: Vec<Box<serde_json::value::RawValue>>,
    next_cursor: Option<String>,
}

/// `auditlog query`: pages through matching events, printing NDJSON; from `cursor` (a
/// `next_cursor` an earlier run printed) when given. When `pages` stop it before the last
/// page, it says how to go on.
pub fn query(
    endpoint: &Endpoint,
    filters: &[(&str, String)],
    pages: usize,
    cursor: Option<String>,
) -> anyhow::Result<()> {
    let mut cursor = cursor.unwrap_or_default();
    let mut out = Stdout::lock();
    for _ in 0..pages.max(1) {
        let mut pairs = filters.to_vec();
        pairs.push(("cursor", cursor.clone()));
        let response =
            endpoint.send("GET", &format!("/v1/events?{}", query_string(&pairs)), None)?;
        let page: Page =
            serde_json::from_reader(response.into_reader()).context("reading a page of events")?;
        for event in &page.events {
            writeln!(out, "{}", event.get())?;
        }
        match page.next_cursor {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
    out.flush()?;
    // The cursor holds the position, not the question: the same filters and order go with it
    // (without them it pages through other events).
    eprintln!("more events match: go on with the same filters and order, and --cursor {cursor}");
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
    match output {
        Some(path) => {
            // Written beside the file and renamed over it only once whole: an export cut off
            // half way never replaces a good file with a part of one.
            // Named for this process, so that two exports to the same file do not write into
            // one partial file; removed when the export fails (a process killed meanwhile
            // leaves it: `*.partial` files are never whole exports). Readable by its owner
            // only, as the server keeps its data: it may hold every tenant's events.
            let partial = format!("{path}.{}.partial", std::process::id());
            let written = (|| -> anyhow::Result<u64> {
                use std::os::unix::fs::OpenOptionsExt;
                let created = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&partial)
                    .with_context(|| format!("create {partial}"))?;
                // A file left by an earlier run of the same pid keeps its mode when opened.
                use std::os::unix::fs::PermissionsExt;
                created
                    .set_permissions(std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("make {partial} readable by its owner only"))?;
                let mut file = EndsWith::new(created);
                let copied = std::io::copy(&mut reader, &mut file)
                    .with_context(|| format!("exporting into {partial}"))?;
                file.check_whole(copied)?;
                file.inner
                    .sync_all()
                    .with_context(|| format!("sync {partial}"))?;
                std::fs::rename(&partial, path)
                    .with_context(|| format!("rename {partial} to {path}"))?;
                Ok(copied)
            })();
            match written {
                Ok(copied) => {
                    // The rename durable too: a crash after "exported" must not bring the old
                    // file back. The file is whole and in place either way.
                    let parent = std::path::Path::new(path)
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new("."));
                    std::fs::File::open(parent)
                        .and_then(|dir| dir.sync_all())
                        .with_context(|| {
                            format!(
                                "{path} holds the whole export, but its directory could not be \
                                 synced: a crash now could bring the old file back"
                            )
                        })?;
                    eprintln!("{copied} bytes exported to {path}");
                }
                Err(error) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(error.context(format!("{path} was left as it was")));
                }
            }
        }
        None => {
            let mut out = EndsWith::new(Stdout::lock());
            let copied = std::io::copy(&mut reader, &mut out)?;
            out.check_whole(copied)?;
            eprintln!("{copied} bytes exported");
        }
    }
    Ok(())
}

/// A writer that remembers the last byte written: every row of an export (CSV or NDJSON) ends
/// with a newline, so an export whose last byte is another was cut off (a connection broken
/// mid-chunk can look like a clean end to the HTTP client).
struct EndsWith<W> {
    inner: W,
    last: Option<u8>,
}

impl<W: Write> EndsWith<W> {
    fn new(inner: W) -> Self {
        EndsWith { inner, last: None }
    }

    fn check_whole(&self, copied: u64) -> anyhow::Result<()> {
        match self.last {
            // Nothing at all is an NDJSON export of no event (a CSV one has its header).
            Some(b'\n') | None => Ok(()),
            _ => anyhow::bail!(
                "the export ended after {copied} bytes, in the middle of a row (the connection \
                 was cut or the server gave up on it); run it again"
            ),
        }
    }
}

impl<W: Write> Write for EndsWith<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        if written > 0 {
            self.last = Some(buf[written - 1]);
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `auditlog tail`: the live stream, one event per line, until interrupted.
///
/// It follows the stream across interruptions without a gap or a duplicate: it keeps the seq
/// to resume from (after the last event, or the last heartbeat's `last_seq`), and on a `resync`
/// message, a server shutting down (close code 1001), any other close (a proxy's) or a lost
/// connection it connects again from there, waiting 1 s, then up to 30 s, between failed attempts. A connection that brings
/// nothing for [`STREAM_SILENCE`] (three heartbeats) is taken as lost: a peer that vanished
/// without closing (a NAT's dropped mapping, a host gone) would otherwise hang it for ever. A
/// revoked token (close code 1008), a server that cannot read its stored events (1011) or a
/// refused connection before any stream was opened ends it with an error.
/// How long `tail` waits for any message (the server sends a heartbeat every 15 s) before it
/// takes the connection as lost and connects again.
pub const STREAM_SILENCE: Duration = Duration::from_secs(45);

pub fn tail(
    endpoint: &Endpoint,
    filters: &[(&str, String)],
    from_seq: Option<u64>,
) -> anyhow::Result<()> {
    let base = endpoint
        .url
        .trim_end_matches('/')
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let mut resume = from_seq;
    let mut connected_once = false;
    let mut wait = Duration::from_secs(1);
    loop {
        let mut pairs = filters.to_vec();
        if let Some(seq) = resume {
            pairs.push(("from_seq", seq.to_string()));
        }
        let url = format!("{base}/v1/stream?{}", query_string(&pairs));
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
            .context("stream URL")?;
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", endpoint.token)
                .parse()
                .context("token in a header")?,
        );
        let mut socket = match connect_stream(request) {
            Ok(socket) => socket,
            // Refused (a revoked token, a bad filter): asking again will not help.
            Err(tungstenite::Error::Http(response))
                if response.status().is_client_error()
                    && !matches!(response.status().as_u16(), 408 | 429) =>
            {
                let body = response.body().clone().unwrap_or_default();
                bail!(
                    "the server refused the stream: HTTP {}: {}",
                    response.status(),
                    String::from_utf8_lossy(&body)
                );
            }
            Err(error) if connected_once => {
                eprintln!("stream: {error}; connecting again in {} s", wait.as_secs());
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(error) => return Err(error).context("connecting to the stream"),
        };
        connected_once = true;
        wait = Duration::from_secs(1);
        let ended = loop {
            let message = match socket.read() {
                Ok(message) => message,
                Err(tungstenite::Error::Io(error))
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break format!(
                        "nothing received for {} s (heartbeats come every 15 s): connection lost",
                        STREAM_SILENCE.as_secs()
                    );
                }
                Err(error) => break format!("{error}"),
            };
            let text = match message {
                tungstenite::Message::Text(text) => text,
                tungstenite::Message::Close(frame) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let reason = frame.as_ref().map_or("", |f| &*f.reason);
                    match code {
                        Some(1008) => bail!("the server ended the stream: token revoked"),
                        Some(1011) => bail!("the server ended the stream: {reason}"),
                        Some(1001) => break "the server is shutting down".to_string(),
                        // Anything else (a proxy's normal close, a restart, no code at all):
                        // the stream is followed until interrupted, so it goes on.
                        Some(code) => break format!("closed with code {code} {reason}"),
                        None => break "closed without a code".to_string(),
                    }
                }
                _ => continue,
            };
            // Printed as the server wrote it (numbers of any size, keys in their order).
            let message: StreamMessage = serde_json::from_str(&text)
                .with_context(|| format!("a stream message that is not one: {text:.200}"))?;
            match message.kind.as_str() {
                "event" | "events" => {
                    let mut out = Stdout::lock();
                    for event in message.event.iter().chain(message.events.iter().flatten()) {
                        let seq: Seq = serde_json::from_str(event.get()).with_context(|| {
                            format!("an event without a seq: {:.200}", event.get())
                        })?;
                        writeln!(out, "{}", event.get())?;
                        resume = Some(seq.seq + 1);
                    }
                }
                "heartbeat" => {
                    if let Some(last) = message.last_seq {
                        resume = Some(resume.map_or(last + 1, |r| r.max(last + 1)));
                    }
                }
                "resync" => {
                    // Too slow for the live feed: read on from the stored events.
                    resume = message.from_seq.or(resume);
                    break "resync".to_string();
                }
                _ => {}
            }
        };
        if ended != "resync" {
            eprintln!(
                "stream: {ended}; connecting again from seq {}",
                resume.map_or("(live)".to_string(), |s| s.to_string())
            );
            std::thread::sleep(wait);
        }
    }
}

/// A message of the live stream (README: `GET /v1/stream`).
#[derive(serde::Deserialize)]
struct StreamMessage {
    #[serde(rename = "type")]
    kind: String,
    event: Option<Box<serde_json::value::RawValue>>,
    events: Option<Vec<Box<serde_json::value::RawValue>>>,
    last_seq: Option<u64>,
    from_seq: Option<u64>,
}

/// The one field `tail` reads of an event.
#[derive(serde::Deserialize)]
struct Seq {
    seq: u64,
}

/// Opens a stream (`ws://` or `wss://`): at most 5 s to connect, and [`STREAM_SILENCE`] for
/// any read or write from the handshake on, so that a host that accepts and then says nothing
/// does not hang `tail`.
// The error is tungstenite's own (its `connect` returns the same), matched on by the caller.
#[allow(clippy::result_large_err)]
fn connect_stream(
    request: tungstenite::handshake::client::Request,
) -> Result<
    tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    tungstenite::Error,
> {
    use std::net::ToSocketAddrs;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or(tungstenite::Error::Url(
            tungstenite::error::UrlError::NoHostName,
        ))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let mut last = None;
    let mut stream = None;
    for addr in (host.as_str(), port).to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last = Some(error),
        }
    }
    let stream = match stream {
        Some(stream) => stream,
        None => {
            return Err(tungstenite::Error::Io(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host")
            })))
        }
    };
    stream.set_read_timeout(Some(STREAM_SILENCE))?;
    stream.set_write_timeout(Some(STREAM_SILENCE))?;
    let _ = stream.set_nodelay(true);
    match tungstenite::client_tls(request, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(error)) => Err(error),
        Err(tungstenite::HandshakeError::Interrupted(_)) => Err(tungstenite::Error::Io(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the handshake stalled"),
        )),
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

#[cfg(test)]
mod tests {
    use super::read_line_capped;

    #[test]
    fn lines_are_read_whole_up_to_the_cap_and_refused_past_it() {
        // A small buffer, so that lines span several reads.
        let input: &[u8] = b"first\n\nthird line\nno newline at the end";
        let mut reader = std::io::BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while read_line_capped(&mut reader, &mut line, 64).unwrap() {
            lines.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(lines, ["first", "", "third line", "no newline at the end"]);

        let long = [b'x'; 100];
        let mut reader = std::io::BufReader::with_capacity(8, &long[..]);
        let error = read_line_capped(&mut reader, &mut line, 64).unwrap_err();
        assert!(
            error.to_string().contains("longer than 64 bytes"),
            "{error}"
        );
        // The cap itself fits.
        let mut reader = std::io::BufReader::new(&long[..64]);
        assert!(read_line_capped(&mut reader, &mut line, 64).unwrap());
        assert_eq!(line.len(), 64);
    }
}
