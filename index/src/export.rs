//! Exports on several threads, output in order: what the server's export streams.
//!
//! One [`Export`] is a single merge on one thread, and at 10M events decoding blocks and
//! writing rows are both CPU-bound. Rows are ordered by timestamp first, so an export splits
//! into consecutive time windows ([`crate::exec::export_windows`], each about
//! [`WINDOW_ROWS`] matching rows by estimate) whose exports, concatenated, are the whole
//! export. Workers take windows in order and write their rows into chunks; the caller's
//! thread hands the chunks to its sink window after window. A worker runs at most `threads`
//! windows ahead of the one being handed out, so memory is bounded by `threads` windows of
//! output whatever the number of rows exported, and by one window's runs whatever the number
//! of tenants (an admin's export of every tenant holds one block per tenant and segment of a
//! window, not of the whole range).
//!
//! ```
//! # use auditlog_engine::event::{Actor, Event};
//! # use auditlog_engine::store::{Store, StoreOptions};
//! use auditlog_engine::event::write_event_csv;
//! use auditlog_index::{export_chunks, ExportOptions, Query, Scope};
//! # let dir = tempfile::tempdir().unwrap();
//! # let store = Store::open(StoreOptions::new(dir.path())).unwrap();
//! # let event = Event {
//! #     tenant: "acct_1".into(),
//! #     timestamp_us: 1_795_000_000_000_000,
//! #     actor: Actor { id: Some("user_1".into()), ..Actor::default() },
//! #     action: "delete".into(),
//! #     ..Event::default()
//! # };
//! # store.append(vec![event.clone(), event]).unwrap();
//! let snapshot = store.snapshot();
//! let query = Query::new(Scope::one("acct_1"));
//! let mut csv = Vec::new();
//! let options = ExportOptions::default();
//! let rows = export_chunks(&snapshot, &query, &options, &write_event_csv, &mut |chunk| {
//!     csv.extend_from_slice(&chunk);
//!     true // false stops the export (e.g. the client went away)
//! })
//! .unwrap();
//! assert_eq!(rows, 2);
//! assert_eq!(csv.iter().filter(|&&byte| byte == b'\n').count(), 2);
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use auditlog_engine::event::EventRef;
use auditlog_engine::Snapshot;
use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::exec::{export_windows, Export};
use crate::query::Query;

/// Matching rows per time window, by estimate: a window's output is buffered whole when its
/// worker runs ahead, so this bounds an export's memory (~16k rows: ~8 MB of CSV).
pub const WINDOW_ROWS: u64 = 16_384;

/// How an export runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Worker threads (at least one); default: the machine's cores, at most 4.
    pub threads: usize,
    /// Estimated matching rows per time window; default [`WINDOW_ROWS`].
    pub window_rows: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            window_rows: WINDOW_ROWS,
        }
    }
}

/// Rows per chunk handed to the sink...
pub const CHUNK_ROWS: usize = 1_000;
/// ... or fewer, once a chunk holds this many bytes: a window buffers a bounded number of
/// chunks, so this (not the row count) bounds an export's memory when events are large
/// (1,000 rows of 64 KiB events would be 64 MB a chunk). Typical chunks (1,000 rows of ~700
/// bytes) stay under it.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Most rows written between two checks of a chunk's size (fewer as it nears
/// [`CHUNK_BYTES`], by the size of its rows so far).
const CHUNK_STEP_ROWS: usize = 16;

/// Writes one event into a chunk (e.g. [`auditlog_engine::event::write_event_csv`]).
pub type RowWriter = dyn Fn(&EventRef<'_>, &mut Vec<u8>) + Sync;

/// Every event `query` matches in `snapshot` (in the query's order, cursor honoured, no row
/// cap), written by `write` into chunks of [`CHUNK_ROWS`] rows (fewer past [`CHUNK_BYTES`] bytes:
/// about one row more than that) that `sink` receives in order,
/// on the caller's thread; `options.threads` workers decode and write. `sink` returns false
/// to stop early. Returns the number of rows handed to `sink`.
pub fn export_chunks(
    snapshot: &Snapshot,
    query: &Query,
    options: &ExportOptions,
    write: &RowWriter,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<u64> {
    query.validate()?;
    let threads = options.threads.max(1);
    let windows = if threads == 1 {
        vec![(query.from_us, query.to_us)]
    } else {
        export_windows(snapshot, query, options.window_rows)?
    };
    if windows.len() == 1 {
        let mut rows = 0;
        export_window(snapshot, query, write, &mut |chunk, count| {
            rows += count as u64;
            sink(chunk)
        })?;
        return Ok(rows);
    }

    let channels: Vec<(SyncSender<Chunk>, Receiver<Chunk>)> = windows
        .iter()
        .map(|_| sync_channel((options.window_rows as usize).div_ceil(CHUNK_ROWS) + 2))
        .collect();
    let (senders, receivers): (Vec<_>, Vec<_>) = channels.into_iter().unzip();
    let senders: Vec<Mutex<Option<SyncSender<_>>>> =
        senders.into_iter().map(|s| Mutex::new(Some(s))).collect();
    let next = AtomicUsize::new(0);
    // Windows handed out whole to the sink; and whether the consumer stopped.
    let progress = Mutex::new(0usize);
    let moved = Condvar::new();
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= windows.len() {
                    return;
                }
                {
                    let mut consumed = progress.lock();
                    while index >= *consumed + threads && !stop.load(Ordering::Relaxed) {
                        moved.wait(&mut consumed);
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some(sender) = senders[index].lock().take() else {
                    return;
                };
                let mut window = query.clone();
                (window.from_us, window.to_us) = windows[index];
                let sent = export_window(snapshot, &window, write, &mut |chunk, count| {
                    sender.send(Ok((chunk, count))).is_ok()
                });
                if let Err(error) = sent {
                    let _ = sender.send(Err(error));
                }
            });
        }

        let mut rows = 0u64;
        let mut result = Ok(());
        'windows: for (index, receiver) in receivers.into_iter().enumerate() {
            for item in receiver {
                match item {
                    Ok((chunk, count)) => {
                        rows += count as u64;
                        if !sink(chunk) {
                            break 'windows;
                        }
                    }
                    Err(error) => {
                        result = Err(error);
                        break 'windows;
                    }
                }
            }
            *progress.lock() = index + 1;
            moved.notify_all();
        }
        // Stopping early drops the windows' receivers: their workers' sends fail and they
        // return; the ones waiting to run ahead are woken to see `stop`.
        stop.store(true, Ordering::Relaxed);
        let _guard = progress.lock();
        moved.notify_all();
        result.map(|()| rows)
    })
}

/// A chunk of a window's output and its number of rows, or the error that ended the window.
type Chunk = Result<(Vec<u8>, usize)>;

/// Exports one window on the calling thread, handing `(chunk, rows in it)` to `sink` until it
/// returns false.
fn export_window(
    snapshot: &Snapshot,
    query: &Query,
    write: &RowWriter,
    sink: &mut dyn FnMut(Vec<u8>, usize) -> bool,
) -> Result<()> {
    let mut export = Export::new(snapshot, query)?;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_ROWS * 512);
        let mut rows = 0;
        let mut finished = false;
        while rows < CHUNK_ROWS && chunk.len() < CHUNK_BYTES {
            // As many rows as should fit, judged by the rows written so far.
            let fit = match rows {
                0 => CHUNK_STEP_ROWS,
                _ => (CHUNK_BYTES - chunk.len()) / chunk.len().div_ceil(rows),
            };
            let step = (CHUNK_ROWS - rows).min(fit.clamp(1, CHUNK_STEP_ROWS));
            let written = export.next_batch_with(step, |event| write(&event, &mut chunk))?;
            rows += written;
            if written < step {
                finished = true;
                break;
            }
        }
        if rows == 0 || !sink(chunk, rows) || finished {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Scope;
    use auditlog_engine::event::{write_event_csv, Actor, Event};
    use auditlog_engine::store::{now_us, Store, StoreOptions};

    /// 6,000 events of one tenant over the last 10 days, sealed.
    fn store(dir: &std::path::Path) -> Store {
        let store = Store::open(StoreOptions::new(dir)).unwrap();
        let now = now_us();
        let events: Vec<Event> = (0..6_000)
            .map(|i| Event {
                tenant: "acct_1".into(),
                timestamp_us: now - i * 144_000_000,
                actor: Actor {
                    id: Some(format!("user_{}", i % 7).into()),
                    ..Actor::default()
                },
                action: "delete".into(),
                ..Event::default()
            })
            .collect();
        store.append(events).unwrap();
        store.seal().unwrap();
        store
    }

    #[test]
    fn export_stops_when_the_sink_refuses_and_its_workers_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let snapshot = store.snapshot();
        let query = Query::new(Scope::one("acct_1"));
        let options = ExportOptions {
            threads: 2,
            window_rows: 500,
        };
        let mut chunks = 0;
        let rows = export_chunks(&snapshot, &query, &options, &write_event_csv, &mut |_| {
            chunks += 1;
            chunks < 3
        })
        .unwrap();
        assert_eq!(chunks, 3);
        assert!(rows > 0 && rows <= 3 * CHUNK_ROWS as u64, "{rows}");

        let mut all = 0;
        let rows = export_chunks(
            &snapshot,
            &query,
            &options,
            &write_event_csv,
            &mut |chunk| {
                all += chunk.iter().filter(|&&byte| byte == b'\n').count();
                true
            },
        )
        .unwrap();
        assert_eq!((rows, all), (6_000, 6_000));
        let windows = export_windows(&snapshot, &query, 500).unwrap().len();
        assert!(
            (10..=14).contains(&windows),
            "{windows} windows of ~500 rows for 6,000"
        );
        assert_eq!(export_windows(&snapshot, &query, 100_000).unwrap().len(), 1);
    }

    /// Large events are cut into chunks by bytes, not only by rows, so that the chunks a window
    /// buffers bound the export's memory; every row still comes out once, in order.
    #[test]
    fn export_chunks_of_large_events_are_bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions::new(dir.path())).unwrap();
        let now = now_us();
        let note = "x".repeat(30_000);
        let events: Vec<Event> = (0..300)
            .map(|i| Event {
                tenant: "acct_big".into(),
                timestamp_us: now - i * 1_000_000,
                action: "update".into(),
                details: Some(format!(r#"{{"i":{i},"note":"{note}"}}"#).into()),
                ..Event::default()
            })
            .collect();
        store.append(events[..150].to_vec()).unwrap();
        store.seal().unwrap();
        store.append(events[150..].to_vec()).unwrap();
        let snapshot = store.snapshot();
        let query = Query::new(Scope::one("acct_big"));
        for threads in [1, 2] {
            let options = ExportOptions {
                threads,
                window_rows: 100,
            };
            let mut sizes = Vec::new();
            let mut lines = 0;
            let rows = export_chunks(
                &snapshot,
                &query,
                &options,
                &write_event_csv,
                &mut |chunk| {
                    lines += chunk.iter().filter(|&&byte| byte == b'\n').count();
                    sizes.push(chunk.len());
                    true
                },
            )
            .unwrap();
            assert_eq!((rows, lines), (300, 300), "threads {threads}");
            let largest = *sizes.iter().max().unwrap();
            // About one row (~30 KB) past the bound.
            assert!(
                largest <= CHUNK_BYTES + 2 * 31_000,
                "threads {threads}: a chunk of {largest} bytes"
            );
            assert!(
                sizes.len() >= 9,
                "threads {threads}: {} chunks",
                sizes.len()
            );
        }
    }
}
