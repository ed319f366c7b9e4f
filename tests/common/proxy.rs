//! A fault-injection TCP proxy between sessionflow and the broker, driven by the test: pass
//! bytes through (optionally late), cut every open connection, refuse new ones, or black-hole
//! (accept and hold connections, forward nothing). The dev broker's PROXIED listener
//! advertises the proxy's address (`scripts/kafka-dev.sh`), so a client bootstrapped at the
//! proxy reaches the broker only through it, metadata and every broker connection included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways, each chunk held back `latency` first.
    Pass { latency: Duration },
    /// Close new connections at once (a broker that is down).
    Refuse,
    /// Accept connections and forward nothing either way (a network that drops packets).
    BlackHole,
}

struct Control {
    mode: Mutex<Mode>,
    /// Bumped by [`FaultProxy::cut`]: every connection open then is closed.
    generation: watch::Sender<u64>,
    connections: AtomicU64,
}

/// A running proxy; stops with its runtime when dropped.
pub struct FaultProxy {
    control: Arc<Control>,
    runtime: Option<tokio::runtime::Runtime>,
    pub listen: String,
}

/// The proxy's and the PROXIED listener's addresses, from `scripts/kafka-dev.sh run`.
pub fn proxy_addresses() -> Option<(String, String)> {
    let listen = std::env::var("SESSIONFLOW_TEST_PROXY_LISTEN").ok()?;
    let upstream = std::env::var("SESSIONFLOW_TEST_PROXY_UPSTREAM").ok()?;
    Some((listen, upstream))
}

impl FaultProxy {
    /// Listens where the broker's PROXIED listener advertises and forwards to that listener
    /// ([`proxy_addresses`]; panics when `scripts/kafka-dev.sh run` did not export them).
    pub fn in_front_of_the_broker() -> FaultProxy {
        let (listen, upstream) =
            proxy_addresses().expect("scripts/kafka-dev.sh run exports the proxy");
        FaultProxy::start(&listen, &upstream)
    }

    /// Listens on `listen` and forwards to `upstream`, passing traffic through.
    pub fn start(listen: &str, upstream: &str) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let control = Arc::new(Control {
            mode: Mutex::new(Mode::Pass {
                latency: Duration::ZERO,
            }),
            generation: watch::channel(0).0,
            connections: AtomicU64::new(0),
        });
        let listener = runtime
            .block_on(TcpListener::bind(listen))
            .unwrap_or_else(|error| {
                panic!(
                    "the fault proxy cannot listen on {listen} ({error}); the broker advertises \
                     this address, see KAFKA_PORT in scripts/kafka-dev.sh"
                )
            });
        let (accepting, upstream) = (control.clone(), upstream.to_owned());
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let control = accepting.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move { connection(client, &upstream, control).await });
            }
        });
        FaultProxy {
            control,
            runtime: Some(runtime),
            listen: listen.to_owned(),
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.control.mode.lock().unwrap() = mode;
    }

    /// Closes every open connection (clients reconnect as the mode allows).
    pub fn cut(&self) {
        self.control.generation.send_modify(|g| *g += 1);
    }

    /// Refuses new connections and cuts the open ones: the broker is unreachable.
    pub fn go_down(&self) {
        self.set(Mode::Refuse);
        self.cut();
    }

    /// Passes traffic again, without latency.
    pub fn resume(&self) {
        self.set(Mode::Pass {
            latency: Duration::ZERO,
        });
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.control.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn connection(client: TcpStream, upstream: &str, control: Arc<Control>) {
    control.connections.fetch_add(1, Ordering::Relaxed);
    let mut cut = control.generation.subscribe();
    cut.mark_unchanged();
    if *control.mode.lock().unwrap() == Mode::Refuse {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, &control) => {}
        () = pump(server_read, client_write, &control) => {}
        _ = cut.changed() => {}
    }
}

/// Copies one direction chunk by chunk, as the current mode says.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: &Control,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let mode = *control.mode.lock().unwrap();
            match mode {
                Mode::Pass { latency } => {
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    break;
                }
                // Held: nothing goes through until the mode changes (or the cut).
                Mode::BlackHole | Mode::Refuse => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
