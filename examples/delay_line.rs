//! A TCP delay line for benchmarks: a broker further away than loopback. Every chunk read
//! from either side is written to the other a fixed delay later, without holding the next
//! one back, so the delay adds to each round trip but does not cap the throughput (unlike the
//! test proxy's latency, which holds each chunk in turn). Put it in front of the dev broker's
//! PROXIED listener, which advertises KAFKA_PORT+4 (`scripts/kafka-dev.sh`), and bootstrap
//! at it: every connection of the client then goes through it.
//! Usage: `cargo run --release --example delay_line -- LISTEN UPSTREAM ONE_WAY_DELAY_MS`
//! (e.g. `127.0.0.1:29096 127.0.0.1:29095 5` for a 10 ms round trip).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Copies one direction: the reader stamps each chunk with when it is due, the writer waits
/// for that moment, so chunks in flight overlap as on a long wire.
async fn delay_one_way(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (due_chunks, mut chunks) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = chunks.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    loop {
        let mut chunk = vec![0u8; 256 * 1024];
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                chunk.truncate(n);
                if due_chunks.send((Instant::now() + delay, chunk)).is_err() {
                    break;
                }
            }
        }
    }
    drop(due_chunks);
    let _ = writer.await;
}

async fn connection(client: TcpStream, upstream: String, delay: Duration) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    // Kafka's requests are small; Nagle's algorithm would add its own delay to the one set.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        delay_one_way(client_read, server_write, delay),
        delay_one_way(server_read, client_write, delay)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, delay_ms] = args.as_slice() else {
        anyhow::bail!("usage: delay_line LISTEN UPSTREAM ONE_WAY_DELAY_MS");
    };
    let delay = Duration::from_secs_f64(delay_ms.parse::<f64>()? / 1000.0);
    let listener = TcpListener::bind(listen).await?;
    eprintln!("delay_line: {listen} -> {upstream}, {delay:?} each way");
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(connection(client, upstream.clone(), delay));
    }
}
