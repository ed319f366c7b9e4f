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
