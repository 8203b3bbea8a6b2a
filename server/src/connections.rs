//! Accepting and serving HTTP/1.1 connections (with upgrades, for the live stream), with a
//! deadline on every request head and a graceful shutdown.
//!
//! `axum::serve` gives hyper no timer, and without one hyper has no header read timeout: a
//! client that opens connections and sends a request head slowly, or never, holds a socket
//! and a task each for ever, until the process runs out of file descriptors (slowloris).
//! Here each connection's head, and an idle keep-alive connection's next head, must arrive
//! within `header_read_seconds` (default 30, as nginx's `client_header_timeout` is 60);
//! bodies have their own deadlines where they are read (`ingest_body_seconds`).
//!
//! ```no_run
//! # async fn example(router: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7700").await?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! auditlog_server::connections::serve(
//!     listener,
//!     router,
//!     std::time::Duration::from_secs(30),
//!     shutdown,
//! )
//! .await
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// Serves `router` on every connection `listener` accepts until `shutdown` completes; then
/// stops accepting, lets each connection finish the request it is serving (an idle one is
/// closed), and returns once every connection has ended. Connections upgraded to WebSocket
/// are their handlers' from then on and are not waited for.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // Dropped by the accept loop at shutdown: each connection task watches it.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    // Held by each connection task: `closed()` completes once every one has ended.
    let (alive_tx, alive_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors, say: retrying at once would spin.
                tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Every answer and stream message goes out at once (no Nagle delay behind an earlier
        // unacknowledged segment: a stream's messages, an answer written in two writes).
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        let alive = alive_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(alive_rx);
    alive_tx.closed().await;
    Ok(())
}

/// Errors of one connection that `accept` reports (the peer gave up before it was accepted):
/// the listener is fine.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
