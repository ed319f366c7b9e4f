//! The HTTP listener: `/metrics` (Prometheus text), `/healthz` (the processing loop alive:
//! it beat within `pipeline.liveness_timeout_ms`) and `/readyz` (every assigned partition
//! restored, none stopped or stalled). It answers GET on those three paths
//! only (other methods 405, other paths 404) and bounds what a client can make it hold: a
//! small request buffer, a deadline for the request head, a lifetime per connection, and
//! open connections per client and in all — where a new connection displaces the one idle
//! the longest, so that idle connections can never keep a probe or a scrape out
//! (`connections`).

mod connections;

pub use self::connections::ConnectionLimits;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::Service;

use self::connections::Connections;
use crate::app::{Handles, Heartbeat};
use tokio_util::sync::CancellationToken;

/// What one listener lets a client make it hold.
#[derive(Copy, Clone, Debug)]
pub struct ListenerLimits {
    /// Largest read buffer (the request head must fit); larger heads are refused.
    pub max_buf_bytes: usize,
    /// A client must send its request head within this.
    pub header_timeout: Duration,
    /// A connection (keep-alive included) is closed after this.
    pub connection_lifetime: Duration,
    /// Open connections: in all, per client address, and how long one may sit idle.
    pub connections: ConnectionLimits,
}

/// The operations listener: Prometheus and the kubelet each use one or two connections at a
/// time.
const LIMITS: ListenerLimits = ListenerLimits {
    max_buf_bytes: 16 * 1024,
    header_timeout: Duration::from_secs(5),
    connection_lifetime: Duration::from_secs(60),
    connections: ConnectionLimits {
        total: 64,
        per_client: 16,
        idle_timeout: Duration::from_secs(15),
    },
};

#[derive(Clone)]
struct Endpoints {
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
    heartbeat: Heartbeat,
    liveness_timeout: Option<Duration>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (see [`bind`]) until `shutdown`.
pub fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    handles: &Handles,
    liveness_timeout: Option<Duration>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = router(Endpoints {
        metrics,
        ready: handles.ready.clone(),
        heartbeat: handles.heartbeat.clone(),
        liveness_timeout,
    });
    if let Ok(listen) = listener.local_addr() {
        tracing::info!(%listen, "Serving /metrics, /healthz and /readyz.");
    }
    serve_router(listener, app, LIMITS, shutdown)
}

/// Pending connections the kernel queues for the accept loop (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default).
const ACCEPT_BACKLOG: u32 = 4096;

/// A listener on `address` with a deep accept queue (the setting or flag it came from is
/// named in an error). The usual 128 is too shallow: a client reconnecting hundreds of
/// displaced connections at once fills it, and the kernel then drops every SYN, a probe's
/// too, which is retried only after a second, past a probe's timeout.
pub fn bind(address: SocketAddr, setting: &str) -> anyhow::Result<tokio::net::TcpListener> {
    listen_deep(address).map_err(|e| anyhow::anyhow!("cannot listen on {address} ({setting}): {e}"))
}

fn listen_deep(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves `app` on `listener` within `limits` until `shutdown` (then accepts no more; the
/// connections already open finish their requests).
pub fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    serve_router_tls(listener, app, limits, None, shutdown)
}

/// [`serve_router`], over TLS when `tls` is given: the handshake must end within the head
/// deadline (`limits.header_timeout`), or the connection is dropped.
pub fn serve_router_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ListenerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let connections = Arc::new(Connections::new(limits.connections));
    tokio::spawn(close_idle_connections(
        connections.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "HTTP accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match connections.admit(peer.ip(), Instant::now()) {
                Ok(admitted) => {
                    let (app, connections) = (app.clone(), connections.clone());
                    match tls.clone() {
                        None => {
                            tokio::spawn(serve_connection(
                                stream,
                                app,
                                connections,
                                admitted,
                                limits,
                            ));
                        }
                        Some(acceptor) => {
                            tokio::spawn(async move {
                                let handshake = tokio::time::timeout(
                                    limits.header_timeout,
                                    acceptor.accept(stream),
                                )
                                .await;
                                match handshake {
                                    Ok(Ok(stream)) => {
                                        serve_connection(stream, app, connections, admitted, limits)
                                            .await
                                    }
                                    Ok(Err(error)) => {
                                        tracing::debug!(%peer, %error, "TLS handshake failed.");
                                        connections.remove(admitted.id);
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "TLS handshake not done in time.");
                                        connections.remove(admitted.id);
                                    }
                                }
                            });
                        }
                    }
                }
                Err(_) => tracing::debug!(%peer, "HTTP connection refused: every slot busy."),
            }
        }
    })
}

/// Serves one connection until it ends, outlives its lifetime, or is displaced.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    connections: Arc<Connections>,
    admitted: connections::Admitted,
    limits: ListenerLimits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = admitted.id;
    let service = hyper::service::service_fn({
        let connections = connections.clone();
        move |request: hyper::Request<hyper::body::Incoming>| {
            let mut app = app.clone();
            let connections = connections.clone();
            connections.busy(id);
            async move {
                let response = app.call(request).await;
                connections.idle(id, Instant::now());
                response
            }
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_buf_bytes)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = admitted.close.cancelled() => {}
        () = tokio::time::sleep(limits.connection_lifetime) => {}
    }
    connections.remove(id);
}

/// Once a second, closes connections idle past the idle timeout.
async fn close_idle_connections(connections: Arc<Connections>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                connections.close_idle(Instant::now());
            }
            () = shutdown.cancelled() => return,
        }
    }
}

fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn(get_only))
        .with_state(endpoints)
}

/// GET only: HEAD, which the GET routes would otherwise also answer, is refused like the rest.
async fn get_only(request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "only GET\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn render(State(endpoints): State<Endpoints>) -> String {
    crate::metrics::collect_process_metrics();
    endpoints.metrics.render()
}

async fn healthz(State(endpoints): State<Endpoints>) -> (StatusCode, String) {
    let age = endpoints.heartbeat.age();
    match endpoints.liveness_timeout {
        Some(timeout) if age > timeout => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "processing loop silent for {} s (pipeline.liveness_timeout_ms)\n",
                age.as_secs()
            ),
        ),
        _ => (StatusCode::OK, "ok\n".to_owned()),
    }
}

async fn readyz(State(endpoints): State<Endpoints>) -> (StatusCode, &'static str) {
    if endpoints.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Serves on a free port; returns it and the shutdown token.
    fn start(
        runtime: &tokio::runtime::Runtime,
        handles: Handles,
        liveness_timeout: Option<Duration>,
    ) -> (u16, CancellationToken) {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let port = runtime.block_on(async move {
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "test").unwrap();
            let port = listener.local_addr().unwrap().port();
            serve(listener, handle, &handles, liveness_timeout, token);
            port
        });
        (port, shutdown)
    }

    /// Sends `request`, reads until the server closes (true) or 20 s pass (false).
    fn exchange(port: u16, request: &[u8]) -> (String, bool) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.write_all(request);
        let mut response = Vec::new();
        let closed = stream.read_to_end(&mut response).is_ok();
        (String::from_utf8_lossy(&response).into_owned(), closed)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    fn status_line(port: u16, path: &str) -> String {
        let (response, _) = exchange(port, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
        response.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn healthz_fails_once_the_loop_is_silent_past_the_liveness_timeout() {
        let runtime = runtime();
        let handles = Handles::default();
        let (port, shutdown) = start(&runtime, handles.clone(), Some(Duration::from_secs(60)));
        assert!(status_line(port, "/healthz").contains("200"));
        let ten_minutes_ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 600_000;
        handles.heartbeat.beat_at(ten_minutes_ago);
        let line = status_line(port, "/healthz");
        assert!(line.contains("503"), "silent loop: {line}");
        handles.heartbeat.beat();
        assert!(status_line(port, "/healthz").contains("200"), "beat again");
        // Readiness is the pipeline's, not the loop's heartbeat.
        assert!(status_line(port, "/readyz").contains("503"));
        handles.ready.store(true, Ordering::Relaxed);
        assert!(status_line(port, "/readyz").contains("200"));
        shutdown.cancel();
    }

    #[test]
    fn only_get_on_the_three_paths_and_bounded_requests() {
        let runtime = runtime();
        let handles = Handles::default();
        handles.ready.store(true, Ordering::Relaxed);
        let (port, shutdown) = start(&runtime, handles, None);
        let status = |request: &str| {
            let (response, _) = exchange(port, request.as_bytes());
            response.lines().next().unwrap_or_default().to_owned()
        };
        for path in ["/metrics", "/healthz", "/readyz"] {
            let line = status(&format!("GET {path} HTTP/1.0\r\n\r\n"));
            assert!(line.contains("200"), "GET {path}: {line}");
            for method in ["POST", "PUT", "DELETE", "HEAD"] {
                let line = status(&format!(
                    "{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
                ));
                assert!(line.contains("405"), "{method} {path}: {line}");
            }
        }
        assert!(status("GET /admin HTTP/1.0\r\n\r\n").contains("404"));
        // A request head beyond the bound is refused, not buffered.
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(4 * LIMITS.max_buf_bytes)
        );
        let line = status(&huge);
        assert!(!line.contains("200"), "oversized head answered: {line}");
        // A client that never finishes its head is disconnected (after the header timeout).
        let (response, closed) = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        assert!(closed, "the server closed the idle connection");
        assert!(!response.contains("200"), "{response}");
        shutdown.cancel();
    }

    /// Holds `count` idle connections to `port` until `stop`, reopening any the server closes
    /// (the abuse of issue 16: one client starving the listener); counts the connections it
    /// opened in `opened`. The abuser connects from 127.0.0.2, the probes from 127.0.0.1: two
    /// clients, as a pod and the kubelet are. (From one address, the abuser's own churn at its
    /// cap displaces a probe that has not yet sent its request.)
    fn hold_idle_connections(
        port: u16,
        count: usize,
        stop: Arc<AtomicBool>,
        opened: Arc<std::sync::atomic::AtomicUsize>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let connector = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            let connect = || {
                let socket = tokio::net::TcpSocket::new_v4().ok()?;
                socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).ok()?;
                let stream = connector
                    .block_on(socket.connect(SocketAddr::from(([127, 0, 0, 1], port))))
                    .ok()?
                    .into_std()
                    .ok()?;
                stream.set_nonblocking(true).ok()?;
                opened.fetch_add(1, Ordering::Relaxed);
                Some(stream)
            };
            let mut held: Vec<Option<std::net::TcpStream>> =
                (0..count).map(|_| connect()).collect();
            while !stop.load(Ordering::Relaxed) {
                for slot in held.iter_mut() {
                    let closed = match slot {
                        None => true,
                        Some(stream) => !matches!(
                            stream.read(&mut [0u8; 64]),
                            Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
                        ),
                    };
                    if closed {
                        *slot = connect();
                    }
                }
                // Pacing of the abuser's own loop, not a wait for a condition.
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    }

    /// One GET with a client timeout (a kubelet probe's is 1 s): the status line, or the
    /// error that ended it.
    fn get_within(port: u16, path: &str, timeout: Duration) -> Result<String, String> {
        let started = Instant::now();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream =
            std::net::TcpStream::connect_timeout(&address, timeout).map_err(|e| e.to_string())?;
        let left = |started: Instant| {
            timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1))
        };
        stream.set_read_timeout(Some(left(started))).unwrap();
        stream.set_write_timeout(Some(left(started))).unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(|e| format!("{e} after {:?}", started.elapsed()))?;
        Ok(String::from_utf8_lossy(&response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    #[test]
    fn a_client_holding_hundreds_of_idle_connections_cannot_starve_probes_or_scrapes() {
        let runtime = runtime();
        let handles = Handles::default();
        handles.ready.store(true, Ordering::Relaxed);
        let (port, shutdown) = start(&runtime, handles, None);
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let abuser = hold_idle_connections(port, 200, stop.clone(), opened.clone());
        // Bounded wait until the abuser holds its 200 (and has had some displaced).
        let deadline = Instant::now() + Duration::from_secs(60);
        while opened.load(Ordering::Relaxed) < 250 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            opened.load(Ordering::Relaxed) >= 250,
            "the abuser could not connect"
        );
        let mut slowest = Duration::ZERO;
        for round in 0..21 {
            for (path, timeout) in [
                ("/healthz", Duration::from_secs(1)),
                ("/readyz", Duration::from_secs(1)),
            ] {
                let started = Instant::now();
                let line = get_within(port, path, timeout);
                slowest = slowest.max(started.elapsed());
                assert!(
                    line.as_deref().is_ok_and(|l| l.contains("200")),
                    "probe {round} of {path} under abuse: {line:?}"
                );
            }
            if round % 7 == 0 {
                let line = get_within(port, "/metrics", Duration::from_secs(2));
                assert!(
                    line.as_deref().is_ok_and(|l| l.contains("200")),
                    "scrape {round} under abuse: {line:?}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        abuser.join().unwrap();
        eprintln!(
            "slowest probe under abuse: {slowest:?}; the abuser opened {} connections",
            opened.load(Ordering::Relaxed)
        );
        shutdown.cancel();
    }
}
