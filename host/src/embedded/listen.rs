//! Serving the embedded queue's connections within bounds: at most a fixed number at once, each closed when a request's headers do not arrive in time (an idle keep-alive connection included), all drained on shutdown.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The bounds of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog.
    pub connections: usize,
    /// How long a request's headers may take from the connection's start or
    /// the last response, so idle or slow peers cannot hold connections.
    pub headers: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 512,
            headers: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets the requests in
/// flight finish (each connection shut down gracefully).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // A slot first: at the cap, peers wait in the backlog, not in memory.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "the embedded queue cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let service = TowerToHyperService::new(router.clone());
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.headers);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "an embedded queue connection ended with an error");
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, router, limits, stop.clone()));
        (addr, stop)
    }

    async fn get(stream: &mut tokio::net::TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_peer_that_sends_no_request_is_disconnected() {
        let (addr, _stop) = start(Limits {
            connections: 8,
            headers: Duration::from_millis(200),
        })
        .await;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        // Bounded only so that a regression fails instead of hanging.
        let read = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf))
            .await
            .expect("the server closes an idle connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_slot() {
        let (addr, _stop) = start(Limits {
            connections: 1,
            headers: Duration::from_secs(30),
        })
        .await;
        let holder = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut waiting = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut answer = tokio::spawn(async move { get(&mut waiting).await });
        // Not served while the one slot is held (a server without the cap
        // answers in microseconds).
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut answer)
                .await
                .is_err(),
            "served beyond the cap"
        );
        drop(holder);
        let answer = tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .expect("served once the slot is free")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
}
