//! `GET /v1/stream` (WebSocket): the live feed, with the same filters as `GET /v1/events`.
//!
//! `from_seq=N` resumes: stored events with `seq >= N` first, then live ones, with no gap and no
//! duplicate, always in seq order. Messages are JSON text:
//!
//! ```text
//! {"type":"event","event":{...stored event...}}
//! {"type":"heartbeat","last_seq":1234}   once caught up, then every 15 s (and while catching up)
//! {"type":"resync","from_seq":1235,"reason":"client too slow"}   then the server closes
//! ```
//!
//! With `batch=true`, the events of one commit (or of one page of stored events) come in one
//! message (several past 1,000 events), in seq order, instead of one message each; a busy feed then costs the client a
//! message per group commit rather than per event (what the page asks for):
//!
//! ```text
//! {"type":"events","events":[{...stored event...},{...}]}
//! ```
//!
//! Each client has a bounded buffer (the broadcast's `stream_buffer_chunks` commits): one that
//! falls behind the live feed is told where to resume and closed, never given an unbounded
//! queue. Commits made while a stream still sends stored events can overflow it too (a large
//! `from_seq` backlog under heavy ingest); those the stream reads from the store instead, up to
//! `CATCH_UPS_MAX` times in a row, rather than sending the client away. A client that takes
//! longer than `stream_stall_seconds` to accept one message (it stopped reading, or its
//! connection is half open) is closed without a message: one could not reach it.
//!
//! The client's frames are read all along, also while stored events are sent: its pings are
//! answered and its close ends the stream at once. A client sends nothing else (a message over
//! 4 KiB ends the stream). A stream is not paged: `limit`, `cursor` and `order` are refused.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, oneshot};

use auditlog_engine::event::{write_stored_event_json, StoredEvent};
use auditlog_engine::tail::{Chunk, TenantIndex};
use auditlog_index::text::TextMatcher;
use auditlog_index::Query;

use crate::auth::{Principal, Role};
use crate::error::{blocking, ApiError};
use crate::routes::params::{build_query_or_placeholder, invalid_param, pairs, single_param};
use crate::state::AppState;

/// Committed chunks the broadcast keeps for slow subscribers before they must resync (the
/// default of `ServerConfig::stream_buffer_chunks`).
pub const BROADCAST_CHUNKS: usize = 1024;
/// Times in a row a stream may go back to the store for commits it missed while it sent
/// stored events (before it sent any live commit) before it is told to resync: a client
/// slower than ingest would otherwise page through the store for ever.
const CATCH_UPS_MAX: u32 = 16;
/// A subscription scoped to at most this many tenants looks up their events in each chunk's
/// tenant index; a wider one (or an admin's, of every tenant) checks every event.
const INDEXED_TENANTS_MAX: usize = 16;
/// Most events in one `events` message (`batch=true`): a page of stored events or a large
/// commit goes out in several, so that no one message (about 600 bytes an event) takes a slow
/// client anywhere near `stream_stall_seconds` to accept.
const BATCH_MESSAGE_EVENTS: usize = 1000;
/// A subscription scoped to at most this many tenants reads its stored events through their
/// rows of each segment; a wider one reads every tenant's and filters.
const STORED_TENANTS_MAX: usize = 64;
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The WebSocket's read buffer. Clients send only control frames, and tungstenite zeroes the
/// free part of its read buffer on every read attempt, which the feed makes once per chunk:
/// with the default 128 KiB that memset was 17 % of the tokio workers' time with 100
/// subscribers at 50,000 events/s.
const READ_BUFFER_BYTES: usize = 4 << 10;
/// Largest message a client may send. Clients send only control frames (ping, close, at most
/// 125 bytes of payload each); anything larger ends the stream instead of being buffered.
const CLIENT_MESSAGE_BYTES_MAX: usize = 4 << 10;
/// Stored events read at a time by a stream scoped to few tenants (through their rows).
const RESUME_PAGE: usize = 1000;
/// ... and by one of every tenant (or many): a page of seqs decodes every block of a segment
/// whose rows it touches (rows are sorted by tenant, not by seq), so larger pages decode each
/// block fewer times. 10,000 events (about 7 MB while sent) read 74,000 events/s against 11,000
/// for pages of 1,000 (`benches/examples/stream_resume.rs`, 600,000 events).
const RESUME_PAGE_ALL: usize = 10_000;

/// A committed chunk as the broadcast carries it: the events (in seq order) and the tail's
/// index of them by tenant. With 100 subscribers each scoped to one tenant, checking every
/// event of every chunk was 100 string comparisons per ingested event (12 % of the server's
/// CPU samples at 50,000 events/s); through the index each subscriber visits only its
/// tenant's events.
#[derive(Clone)]
pub struct LiveChunk {
    pub events: Chunk,
    pub tenants: Arc<TenantIndex>,
}

/// What a subscription matches, checked per event.
struct Matcher {
    query: Query,
    /// An admin without a tenant filter sees every tenant, including ones created later.
    all_tenants: bool,
    text: TextMatcher,
    /// `batch=true`: one `events` message per commit.
    batch: bool,
}

impl Matcher {
    fn matches(&self, event: &StoredEvent) -> bool {
        (self.all_tenants || self.query.tenants.contains(&event.event.tenant))
            && self.query.in_time_range(event.event.timestamp_us)
            && self.query.filters.accepts(event)
            && self.text.matches_event(event)
    }
}

/// The sending half of a stream: every send, feed and flush gives up once the client has
/// accepted nothing for `stall` (its receive window stayed shut), and the stream then ends
/// (counted in `auditlog_stream_clients_stalled_total`). Without it, a client that stops
/// reading holds its task, its connection and, through its broadcast receiver, the last
/// `stream_buffer_chunks` commits for ever: the broadcast's overflow (resync) is only noticed
/// on the next receive, which a blocked send never reaches.
struct Sender {
    socket: SplitSink<WebSocket, Message>,
    stall: Duration,
    state: Arc<AppState>,
}

impl Sender {
    /// False when the client is gone or stalled.
    async fn deliver(&mut self, op: Op) -> bool {
        let stall = self.stall;
        let done = match op {
            Op::Send(message) => tokio::time::timeout(stall, self.socket.send(message)).await,
            Op::Feed(message) => tokio::time::timeout(stall, self.socket.feed(message)).await,
            Op::Flush => tokio::time::timeout(stall, self.socket.flush()).await,
        };
        match done {
            Ok(result) => result.is_ok(),
            Err(_) => {
                self.state
                    .metrics
                    .stream_stalled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    stall_seconds = stall.as_secs(),
                    "live-stream client accepted nothing for stream_stall_seconds: closed"
                );
                false
            }
        }
    }

    async fn send(&mut self, message: Message) -> bool {
        self.deliver(Op::Send(message)).await
    }
}

/// One operation on the socket's sending half.
enum Op {
    Send(Message),
    Feed(Message),
    Flush,
}

fn event_message(event: &StoredEvent) -> Message {
    let mut out = Vec::with_capacity(800);
    out.extend_from_slice(b"{\"type\":\"event\",\"event\":");
    write_stored_event_json(event, &mut out);
    out.push(b'}');
    Message::Text(String::from_utf8(out).unwrap_or_default().into())
}

/// One `events` message of `events` (at least one).
fn events_message<'e>(events: impl Iterator<Item = &'e StoredEvent>) -> Message {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"type\":\"events\",\"events\":[");
    for (index, event) in events.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_stored_event_json(event, &mut out);
    }
    out.extend_from_slice(b"]}");
    Message::Text(String::from_utf8(out).unwrap_or_default().into())
}

/// Sends a heartbeat: `last_seq` is the last seq examined (sent or filtered out). False when
/// the client is gone.
async fn send_heartbeat(socket: &mut Sender, next_seq: u64) -> bool {
    let message =
        serde_json::json!({ "type": "heartbeat", "last_seq": next_seq.saturating_sub(1) });
    socket.send(Message::Text(message.to_string().into())).await
}

/// How sending a run of events ended.
enum Sent {
    /// Every message went out.
    All,
    /// The client is gone.
    Gone,
    /// The token was revoked: the stream closes with 1008.
    Revoked,
    /// The server is shutting down: the stream closes with 1001.
    Stopping,
}

/// Messages sent between two checks of the token and of the shutdown while a run of events
/// goes out: a revocation or a shutdown stops a page of thousands of events within this many.
const HALT_CHECK_MESSAGES: usize = 64;

/// Whether the stream must stop before its next message (one atomic load for the token until
/// some token is revoked, one for the shutdown).
fn halt(
    token: &mut TokenWatch,
    state: &AppState,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Option<Sent> {
    if token.revoked(state) {
        Some(Sent::Revoked)
    } else if *shutdown.borrow() {
        Some(Sent::Stopping)
    } else {
        None
    }
}

/// Closes the stream as `sent` says; true when it goes on.
async fn carry_on(socket: &mut Sender, sent: Sent) -> bool {
    match sent {
        Sent::All => true,
        Sent::Gone => false,
        Sent::Revoked => {
            close_revoked(socket).await;
            false
        }
        Sent::Stopping => {
            close_going_away(socket).await;
            false
        }
    }
}

/// Sends the matching events of `events` (in seq order) at or past `next_seq`, as one message
/// each or one `events` message, flushed once; stops early when `halt` says so.
async fn send_events<'e>(
    socket: &mut Sender,
    events: impl Iterator<Item = &'e StoredEvent>,
    matcher: &Matcher,
    next_seq: &mut u64,
    halt: impl FnMut() -> Option<Sent>,
) -> Sent {
    let mut matching = Vec::new();
    for event in events {
        if event.seq < *next_seq {
            continue;
        }
        *next_seq = event.seq + 1;
        if matcher.matches(event) {
            matching.push(event);
        }
    }
    send_matching(socket, matching, matcher, halt).await
}

/// [`send_events`] for a live chunk: a subscription scoped to a few tenants visits only their
/// events, found through the chunk's tenant index.
async fn send_live(
    socket: &mut Sender,
    live: &LiveChunk,
    matcher: &Matcher,
    next_seq: &mut u64,
    halt: impl FnMut() -> Option<Sent>,
) -> Sent {
    let tenants = &matcher.query.tenants;
    if matcher.all_tenants || tenants.len() > INDEXED_TENANTS_MAX {
        return send_events(socket, live.events.iter(), matcher, next_seq, halt).await;
    }
    let Some(last) = live.events.last() else {
        return Sent::All;
    };
    let mut offsets: Vec<usize> = tenants
        .iter()
        .flat_map(|tenant| live.tenants.offsets(&live.events, tenant))
        .collect();
    if tenants.len() > 1 {
        offsets.sort_unstable();
    }
    let from = *next_seq;
    *next_seq = from.max(last.seq + 1);
    let matching = offsets
        .into_iter()
        .map(|offset| &live.events[offset])
        .filter(|event| event.seq >= from && matcher.matches(event))
        .collect();
    send_matching(socket, matching, matcher, halt).await
}

/// Sends `matching` as one message each or one `events` message, flushed once. `halt` is asked
/// before the first message and every [`HALT_CHECK_MESSAGES`] after it: a revoked token or a
/// shutdown stops the run there (a slow client could otherwise go on receiving a page for
/// minutes after its token was revoked).
async fn send_matching(
    socket: &mut Sender,
    matching: Vec<&StoredEvent>,
    matcher: &Matcher,
    mut halt: impl FnMut() -> Option<Sent>,
) -> Sent {
    if matching.is_empty() {
        return Sent::All;
    }
    if matcher.batch {
        for events in matching.chunks(BATCH_MESSAGE_EVENTS) {
            if let Some(stop) = halt() {
                return stop;
            }
            if !socket.send(events_message(events.iter().copied())).await {
                return Sent::Gone;
            }
        }
        return Sent::All;
    }
    for (index, event) in matching.into_iter().enumerate() {
        if index % HALT_CHECK_MESSAGES == 0 {
            if let Some(stop) = halt() {
                // What was fed so far goes out before the close.
                return if socket.deliver(Op::Flush).await {
                    stop
                } else {
                    Sent::Gone
                };
            }
        }
        if !socket.deliver(Op::Feed(event_message(event))).await {
            return Sent::Gone;
        }
    }
    if socket.deliver(Op::Flush).await {
        Sent::All
    } else {
        Sent::Gone
    }
}

#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "events",
    params(
        crate::openapi::FilterParams,
        ("from_seq" = Option<u64>, Query, description = "Resume: stored events from this seq, then live ones"),
        ("token" = Option<String>, Query, description = "The token, for clients that cannot set headers"),
        ("batch" = Option<bool>, Query, description = "`true`: the events of a commit in one `events` message"),
    ),
    responses(
        (status = 101, description = "WebSocket: JSON text messages of type event (or events, with batch=true), heartbeat or resync"),
        (status = 400, description = "Bad request: the message names the parameter", body = crate::openapi::ErrorResponse),
        (status = 401, description = "Missing, malformed or unknown token", body = crate::openapi::ErrorResponse),
        (status = 403, description = "The token's role or tenants do not allow this", body = crate::openapi::ErrorResponse),
        (status = 429, description = "streams_max live streams are open already; retry after Retry-After", body = crate::openapi::ErrorResponse)
    )
)]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // A plain request (no upgrade) gets the API's JSON error, not axum's text.
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "websocket_required",
            format!(
                "{}: /v1/stream is a WebSocket; connect with an upgrade request",
                rejection.body_text()
            ),
        )
    })?;
    let pairs = pairs(raw.as_deref());
    // A stream is not paged: it sends every matching event, in seq order, from `from_seq`.
    // Paging parameters would otherwise be taken and silently ignored.
    if let Some((key, _)) = pairs
        .iter()
        .find(|(k, _)| matches!(k.as_str(), "limit" | "cursor" | "order"))
    {
        let mut error = ApiError::bad_request(format!(
            "{key} does not apply to /v1/stream: a stream sends every matching event in seq \
             order; resume it with from_seq"
        ));
        error.field = Some(key.clone());
        return Err(error);
    }
    let from_seq: Option<u64> = match single_param(&pairs, "from_seq")? {
        Some(v) => Some(v.parse().map_err(|_| {
            invalid_param(
                "from_seq",
                format!("from_seq must be a number, found {v:?}"),
            )
        })?),
        None => None,
    };
    let batch = match single_param(&pairs, "batch")? {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => {
            return Err(invalid_param(
                "batch",
                format!("batch must be true or false, found {v:?}"),
            ))
        }
    };
    // An empty `tenant=` names no tenant (as in queries): the admin's stream takes every one,
    // including tenants that appear after it subscribed.
    let all_tenants =
        principal.role == Role::Admin && !pairs.iter().any(|(k, v)| k == "tenant" && !v.is_empty());
    let query_state = Arc::clone(&state);
    let query_principal = principal.clone();
    // An admin on an empty store may read no tenant yet: the query keeps its filters over a
    // placeholder scope, and the matcher takes every tenant (`all_tenants`).
    let (query, _) = blocking(move || {
        build_query_or_placeholder(
            &query_state,
            &query_principal,
            &pairs,
            &["from_seq", "batch"],
        )
    })
    .await?;
    let text = TextMatcher::new(&query.text).map_err(ApiError::from)?;
    let matcher = Matcher {
        query,
        all_tenants,
        text,
        batch,
    };
    // A slot for the stream's life: each holds a page of stored events while it sends them
    // (up to RESUME_PAGE_ALL events) and a place in the broadcast.
    let Ok(slot) = Arc::clone(&state.stream_slots).try_acquire_owned() else {
        return Err(ApiError::busy(
            format!(
                "{} live streams are open, the most at once (streams_max); retry later",
                state.config.streams_max
            ),
            5,
        ));
    };
    crate::audit::record_async(
        &state,
        &principal,
        "stream_subscribed",
        "audit_log",
        serde_json::json!({
            "query": crate::audit::recorded_query(raw.as_deref()),
            "from_seq": from_seq
        }),
    )
    .await?;
    // Fix where a live-only feed starts, then subscribe, both before answering the upgrade: an
    // event acknowledged after the client sees the handshake's answer is then always delivered
    // (the upgraded task may start later). A live-only feed starts after the last
    // *acknowledged* seq (`Store::acknowledged_seq`): an event after it is broadcast after
    // this subscription (delivered live), or was broadcast before it and is in the tail, read
    // back with the stored events that `run` sends from `next_seq` before the live ones.
    // (Starting after the last *published* seq could skip an event already in the tail but
    // answered only after the handshake.)
    let next_seq = match from_seq {
        Some(seq) => seq,
        None => state.store.acknowledged_seq() + 1,
    };
    let live = state.live.subscribe();
    let token = TokenWatch::new(&principal);
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(CLIENT_MESSAGE_BYTES_MAX)
        .max_frame_size(CLIENT_MESSAGE_BYTES_MAX)
        .on_upgrade(move |socket| async move {
            run(socket, state, matcher, live, next_seq, token).await;
            drop(slot);
        }))
}

/// Ends a stream because the server is shutting down: close code 1001 (going away); the
/// client resumes from the last seq it got once the server is back.
async fn close_going_away(socket: &mut Sender) {
    let frame = axum::extract::ws::CloseFrame {
        code: 1001,
        reason: "server shutting down".into(),
    };
    socket.send(Message::Close(Some(frame))).await;
}

/// Ends a stream whose stored events cannot be read (an I/O error, a damaged segment): close
/// code 1011 (internal error) with the cause, logged in full; the reason is cut to the 123
/// bytes a close frame holds.
async fn close_failed(socket: &mut Sender, cause: &str) {
    tracing::warn!(cause, "live stream ends: cannot read stored events");
    let mut reason = format!("cannot read stored events: {cause}");
    if reason.len() > 123 {
        let mut end = 120;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    let frame = axum::extract::ws::CloseFrame {
        code: 1011,
        reason: reason.into(),
    };
    socket.send(Message::Close(Some(frame))).await;
}

/// Notices that the stream's token was revoked: checked before every page of stored events,
/// at every wake-up of the live feed and every [`HALT_CHECK_MESSAGES`] messages sent, at the
/// cost of one atomic load until some token is revoked.
struct TokenWatch {
    id: String,
    revocations_seen: u64,
}

impl TokenWatch {
    fn new(principal: &Principal) -> Self {
        TokenWatch {
            id: principal.token_id.clone(),
            revocations_seen: principal.revocations_at_auth,
        }
    }

    fn revoked(&mut self, state: &AppState) -> bool {
        let now = state.tokens.revocations();
        if now == self.revocations_seen {
            return false;
        }
        self.revocations_seen = now;
        !state.tokens.is_active(&self.id)
    }
}

/// Closes a stream whose token was revoked, with WebSocket close code 1008 (policy violation).
async fn close_revoked(socket: &mut Sender) {
    let frame = axum::extract::ws::CloseFrame {
        code: 1008,
        reason: "token revoked".into(),
    };
    socket.send(Message::Close(Some(frame))).await;
}

async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    matcher: Matcher,
    mut live: broadcast::Receiver<LiveChunk>,
    mut next_seq: u64,
    mut token: TokenWatch,
) {
    /// Keeps the connected-clients gauge right however the connection ends.
    struct Connected(Arc<AppState>);
    impl Drop for Connected {
        fn drop(&mut self) {
            self.0
                .metrics
                .stream_clients
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    state
        .metrics
        .stream_clients
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _connected = Connected(Arc::clone(&state));
    let (socket, mut gone) = read_client(socket);
    let mut socket = Sender {
        socket,
        stall: Duration::from_secs(state.config.stream_stall_seconds),
        state: Arc::clone(&state),
    };
    // The stored events are read for the subscription's tenants only, when they are few: a
    // tenant's events lie in one run of each segment's rows, and only its blocks are decoded.
    let stored_tenants: Option<Arc<[String]>> = (!matcher.all_tenants
        && matcher.query.tenants.len() <= STORED_TENANTS_MAX)
        .then(|| matcher.query.tenants.iter().map(str::to_owned).collect());
    let matcher = Arc::new(matcher);
    let mut shutdown = state.shutdown.subscribe();
    // How many times in a row the stream went back to the store for commits it missed while
    // it sent stored events (see `CATCH_UPS_MAX`).
    let mut catch_ups = 0u32;
    'feed: loop {
        // Stored events first, page by page, with heartbeats between pages: a selective filter
        // over a long range may send nothing for a while, and a heartbeat's `last_seq` tells the
        // client how far the catch-up has read.
        let mut last_heartbeat = std::time::Instant::now();
        loop {
            if client_gone(&mut gone) {
                answer_close(&mut socket).await;
                return;
            }
            let store_state = Arc::clone(&state);
            let from = next_seq;
            let tenants = stored_tenants.clone();
            let page_events = if tenants.is_some() {
                RESUME_PAGE
            } else {
                RESUME_PAGE_ALL
            };
            let page = tokio::task::spawn_blocking(move || {
                store_state
                    .store
                    .read_from_seq_of(from, page_events, tenants.as_deref())
            })
            .await;
            let (page, read_through) = match page {
                Ok(Ok(page)) => (page.events, page.read_through),
                Ok(Err(error)) => {
                    close_failed(&mut socket, &error.to_string()).await;
                    return;
                }
                Err(error) => {
                    close_failed(&mut socket, &error.to_string()).await;
                    return;
                }
            };
            let done = page.len() < page_events;
            // The client may have closed while the page was read.
            if client_gone(&mut gone) {
                answer_close(&mut socket).await;
                return;
            }
            if token.revoked(&state) {
                close_revoked(&mut socket).await;
                return;
            }
            let stopping = *shutdown.borrow();
            if stopping {
                close_going_away(&mut socket).await;
                return;
            }
            let halted = || halt(&mut token, &state, &shutdown);
            let sent = send_events(&mut socket, page.iter(), &matcher, &mut next_seq, halted).await;
            if !carry_on(&mut socket, sent).await {
                return;
            }
            if done {
                // A page of a few tenants' events ends at their last one; the read covered
                // the store up to `read_through`: commits up to it are not live ones.
                next_seq = next_seq.max(read_through.saturating_add(1));
                break;
            }
            if last_heartbeat.elapsed() >= HEARTBEAT {
                if !send_heartbeat(&mut socket, next_seq).await {
                    return;
                }
                last_heartbeat = std::time::Instant::now();
            }
        }
        // A heartbeat at once: it tells a client that asked for live events only where the feed
        // starts, so that it can resume from there if the connection drops before any event.
        if !send_heartbeat(&mut socket, next_seq).await {
            return;
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let mut live_sent = false;
        loop {
            let event = tokio::select! {
                received = live.recv() => Wake::Live(received),
                _ = heartbeat.tick() => Wake::Heartbeat,
                _ = shutdown.wait_for(|stopping| *stopping) => Wake::Shutdown,
                _ = &mut gone.signal => Wake::Gone,
            };
            if token.revoked(&state) {
                close_revoked(&mut socket).await;
                return;
            }
            match event {
                Wake::Live(received) => match received {
                    Ok(chunk) => {
                        // Commits the stored read already covered do not count as live.
                        live_sent |= chunk.events.last().is_some_and(|e| e.seq >= next_seq);
                        let halted = || halt(&mut token, &state, &shutdown);
                        let sent =
                            send_live(&mut socket, &chunk, &matcher, &mut next_seq, halted).await;
                        if !carry_on(&mut socket, sent).await {
                            return;
                        }
                    }
                    // Fell behind while it sent stored events, before any live commit: the
                    // commits it missed are in the store. Subscribe again first (a commit
                    // published from now on is in the new subscription, one before it in the
                    // store), then read them from there, as on connection. Behind once live
                    // commits flow, the client is too slow: resync.
                    Err(broadcast::error::RecvError::Lagged(_))
                        if !live_sent && catch_ups < CATCH_UPS_MAX =>
                    {
                        live = state.live.subscribe();
                        catch_ups += 1;
                        continue 'feed;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let message = serde_json::json!({
                            "type": "resync",
                            "from_seq": next_seq,
                            "reason": "client too slow: resume from from_seq",
                        });
                        if socket.send(Message::Text(message.to_string().into())).await {
                            socket.send(Message::Close(None)).await;
                        }
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Wake::Heartbeat => {
                    if !send_heartbeat(&mut socket, next_seq).await {
                        return;
                    }
                }
                Wake::Shutdown => {
                    close_going_away(&mut socket).await;
                    return;
                }
                Wake::Gone => {
                    answer_close(&mut socket).await;
                    return;
                }
            }
        }
    }
}

/// Tells the stream that its client is gone (closed, disconnected or broken the protocol).
struct Gone {
    signal: oneshot::Receiver<()>,
    /// The task that reads the client's frames; stopped with the stream.
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Gone {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Splits the socket and reads the client's frames on a task of their own for as long as the
/// stream runs, also while it sends stored events: reading is what answers the client's pings
/// (the WebSocket library sends the pong from the read) and notices its close, so a client with
/// a ping timeout is not cut off by a long catch-up, and one that closed is not sent the rest
/// of it. Clients send nothing else; other messages are ignored.
fn read_client(socket: WebSocket) -> (SplitSink<WebSocket, Message>, Gone) {
    let (sink, mut incoming) = socket.split();
    let (gone, signal) = oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut gone = Some(gone);
        // Reading goes on after a close: the library sends the close's answer from a read or a
        // write (the stream's last act, `answer_close`).
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                if let Some(gone) = gone.take() {
                    let _ = gone.send(());
                }
            }
        }
        if let Some(gone) = gone.take() {
            let _ = gone.send(());
        }
    });
    (sink, Gone { signal, reader })
}

/// Ends a stream whose client is gone: sends the answer to its close, if it closed, and gives
/// up on a connection that takes longer than a second to take it.
async fn answer_close(socket: &mut Sender) {
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.socket.close()).await;
}

/// True once the client is gone (see [`read_client`]).
fn client_gone(gone: &mut Gone) -> bool {
    !matches!(
        gone.signal.try_recv(),
        Err(oneshot::error::TryRecvError::Empty)
    )
}

/// What woke a live stream.
enum Wake {
    Live(Result<LiveChunk, broadcast::error::RecvError>),
    Heartbeat,
    Shutdown,
    /// The client closed or disconnected.
    Gone,
}
