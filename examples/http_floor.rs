//! The HTTP floor of `scripts/bench-ingest.sh`: the same HTTP stack as `sessionflow ingest`
//! (axum on hyper, the same listener loop and limits) answering 200 to `POST
//! /webhooks/clerk` once the body is read, without verifying or writing anything.
//! Usage: `http_floor ADDR`

use axum::routing::post;
use axum::Router;
use sessionflow::http::{serve_router, ConnectionLimits, ListenerLimits};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args().nth(1).expect("ADDR");
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let app = Router::new().route(
        sessionflow::ingest::WEBHOOK_PATH,
        post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body);
            "ok\n"
        }),
    );
    // ingest's limits for its default max_concurrent_requests (512).
    let limits = ListenerLimits {
        max_buf_bytes: 64 * 1024,
        header_timeout: Duration::from_secs(5),
        connection_lifetime: Duration::from_secs(300),
        connections: ConnectionLimits {
            total: 1024,
            per_client: 1024,
            idle_timeout: Duration::from_secs(30),
        },
    };
    let _ = serve_router(listener, app, limits, CancellationToken::new()).await;
    Ok(())
}
