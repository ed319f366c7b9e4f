//! Golden replays through the real binary: the SPEC's worked examples and the project's own
//! scenarios (`tests/data/*/NAME/{args,input.ndjson,expected.ndjson,expected-dead-letter-lines}`),
//! compared line by line as JSON values; plus the CLI's I/O contract (SPEC section 5).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sessionflow");

fn case_dirs(group: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(group);
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("input.ndjson").exists())
        .collect();
    dirs.sort();
    dirs
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn run_case(dir: &Path) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.ndjson");
    let dlq = out_dir.path().join("dlq.ndjson");
    let args = fs::read_to_string(dir.join("args")).unwrap();
    let result = Command::new(BIN)
        .arg("replay")
        .args(args.split_whitespace())
        .arg("--input")
        .arg(dir.join("input.ndjson"))
        .arg("--output")
        .arg(&output)
        .arg("--dlq")
        .arg(&dlq)
        .output()
        .unwrap();
    let name = dir.file_name().unwrap().to_string_lossy();
    assert!(result.status.success(), "{name}: {result:?}");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("replay: "), "{name}: no summary: {stderr}");

    let expected = json_lines(&fs::read_to_string(dir.join("expected.ndjson")).unwrap());
    let got = json_lines(&fs::read_to_string(&output).unwrap());
    assert_eq!(got.len(), expected.len(), "{name}: event count\n{got:#?}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "{name}: event {i}");
    }

    let expected_dead: Vec<u64> = fs::read_to_string(dir.join("expected-dead-letter-lines"))
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let dead = json_lines(&fs::read_to_string(&dlq).unwrap());
    let dead_lines: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(dead_lines, expected_dead, "{name}: dead-letter lines");
    let input_text = fs::read_to_string(dir.join("input.ndjson")).unwrap();
    let input_lines: Vec<&str> = input_text.split('\n').collect();
    for d in &dead {
        let line = d["line"].as_u64().unwrap() as usize;
        assert_eq!(d["raw"], input_lines[line], "{name}: raw bytes kept");
        assert!(
            d["kind"].is_string() && d["error"].is_string(),
            "{name}: {d}"
        );
    }
}

#[test]
fn spec_worked_examples_replay_exactly() {
    let dirs = case_dirs("examples");
    assert_eq!(dirs.len(), 8);
    for dir in dirs {
        run_case(&dir);
    }
}

#[test]
fn project_scenarios_replay_exactly() {
    let dirs = case_dirs("scenarios");
    assert!(dirs.len() >= 4);
    for dir in dirs {
        run_case(&dir);
    }
}

#[test]
fn stdin_to_stdout_with_dead_letters_on_stderr() {
    let mut child = Command::new(BIN)
        .args(["replay", "--allowed-lateness-ms", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"id\":\"s\",\"status\":\"active\",\"updated_at\":1764000000000}\r\nnot json\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let events = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["to"], "active");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let dead: Value = serde_json::from_str(stderr.lines().next().unwrap()).unwrap();
    assert_eq!(dead["line"], 1);
    assert_eq!(dead["kind"], "invalid_json");
    assert_eq!(dead["raw"], "not json");
}

#[test]
fn unreadable_input_or_unwritable_output_exits_non_zero() {
    let missing = Command::new(BIN)
        .args(["replay", "--input", "/nonexistent/input.ndjson"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/input.ndjson"));

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    fs::write(&input, "{}\n").unwrap();
    let unwritable = Command::new(BIN)
        .arg("replay")
        .arg("--input")
        .arg(&input)
        .args(["--output", "/nonexistent/out.ndjson"])
        .output()
        .unwrap();
    assert!(!unwritable.status.success());
}

#[test]
fn generate_is_deterministic_and_replays_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let run = |seed: &str, name: &str| {
        let path = dir.path().join(name);
        let status = Command::new(BIN)
            .args(["generate", "--sessions", "300", "--seed", seed, "--output"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        fs::read(path).unwrap()
    };
    let a = run("5", "a.ndjson");
    assert_eq!(a, run("5", "b.ndjson"));
    assert_ne!(a, run("6", "c.ndjson"));
    let out = Command::new(BIN)
        .arg("replay")
        .arg("--input")
        .arg(dir.path().join("a.ndjson"))
        .args(["--output", "-", "--dlq"])
        .arg(dir.path().join("dlq.ndjson"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let events = json_lines(&String::from_utf8(out.stdout).unwrap());
    let causes: std::collections::HashSet<&str> =
        events.iter().filter_map(|e| e["cause"].as_str()).collect();
    assert!(
        causes.contains("observed") && causes.contains("inferred"),
        "{causes:?}"
    );
}
