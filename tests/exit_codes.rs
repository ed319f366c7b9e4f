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

/// Starts `run` against a broker address nothing listens on, waits until its HTTP listener
/// is up (start-up has begun, the signal handler is installed), sends SIGTERM; returns the
/// exit status, the time from the signal to the exit, and stderr.
fn stopped_during_start_up(
    extra: &[&str],
) -> (std::process::ExitStatus, std::time::Duration, String) {
    use std::time::{Duration, Instant};

    // A port bound here and never listened on, held until the end: connecting to it is
    // refused (a broker that does not answer), and no other process can take it meanwhile.
    let held_port = tokio::net::TcpSocket::new_v4().unwrap();
    held_port.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let broker = held_port.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    // Port 0 for HTTP: the process binds a port of its own (none picked here that another
    // process could take first) and logs that it serves, in either log format.
    let mut child = Command::new(BIN)
        .args(["run", "--brokers", &broker.to_string()])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let began = Instant::now();
    while !read_log().contains("Serving /metrics, /healthz and /readyz.") {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "never listened: {}",
            read_log()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited at start: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    drop(held_port);
    (status, took, read_log())
}

/// SIGTERM while start-up waits for a broker that does not answer (its metadata request
/// waits 10 s): a clean exit long before that wait ends.
#[test]
fn a_signal_during_start_up_stops_without_waiting_for_the_broker() {
    let (status, took, stderr) = stopped_during_start_up(&[]);
    assert!(status.success(), "{status:?}: {stderr}");
    // The metadata wait is 10 s; stopping is not allowed to wait it out.
    assert!(
        took < std::time::Duration::from_secs(8),
        "took {took:?}: {stderr}"
    );
    eprintln!("stopped during start-up {took:?} after SIGTERM");
}

/// `log.format = "json"`: every line on stderr is one JSON object with level and message.
#[test]
fn json_logs_are_one_object_a_line() {
    let (status, _, stderr) = stopped_during_start_up(&["--set", "log.format=json"]);
    assert!(status.success(), "{status:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["message"].is_string(),
            "{line}"
        );
    }
}
