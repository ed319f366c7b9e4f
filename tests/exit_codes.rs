//! The exit codes operators and supervisors rely on (docs/operations.md): 0 clean stop, 1 a
//! failure at run time, 2 usage or configuration, 130 a shutdown cut short (tested with the
//! broker in `kafka_faults`).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sessionflow");

fn exit_code(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_and_usage_errors_exit_2() {
    for args in [
        &["run", "--set", "nonsense.key=1"][..],
        &["run", "--set", "lifecycle.idle_timeout_ms=\"soon\""],
        &["run", "--set", "delivery=\"twice\""],
        &["run", "--config", "/nonexistent/sessionflow.toml"],
        &["run", "--no-such-flag"],
    ] {
        let (code, stderr) = exit_code(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
}

#[test]
fn a_failure_at_run_time_exits_1() {
    let (code, stderr) = exit_code(&["replay", "--input", "/nonexistent/input.ndjson"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("sessionflow: error"), "{stderr}");
}

/// SIGTERM while start-up waits for a broker that does not answer (its metadata request
/// waits 10 s): a clean exit long before that wait ends, without a broker.
#[test]
fn a_signal_during_start_up_stops_without_waiting_for_the_broker() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    // A port nothing listens on, for the broker and for the HTTP listener each.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (broker, http) = (free(), free());
    let mut child = Command::new(BIN)
        .args(["run", "--brokers", &broker.to_string()])
        .args(["--http-listen", &http.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The HTTP listener is up once start-up has begun (and the signal handler is installed).
    let began = Instant::now();
    while TcpStream::connect(http).is_err() {
        assert!(began.elapsed() < Duration::from_secs(60), "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    // The metadata wait is 10 s; stopping is not allowed to wait it out.
    assert!(took < Duration::from_secs(8), "took {took:?}: {stderr}");
    eprintln!("stopped during start-up {took:?} after SIGTERM");
}
