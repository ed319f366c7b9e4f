//! Replay streams (issue 16, item 5): output follows input while the input is still open,
//! an oversized line is never held whole (memory measured with `getrusage`), and a file
//! truncated during the run ends it with a clear error instead of SIGBUS.
//!
//! Memory is read with `getrusage(RUSAGE_CHILDREN)`, and a child exec'd while this test
//! process is large counts this process's pages as its own: tests that grow this process
//! belong in another test binary (as `replay_pieces.rs` does).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

use common::generated_ndjson;

/// A bound on waits that only a broken replay reaches.
const PATIENCE: Duration = Duration::from_secs(120);

fn sessionflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sessionflow"))
}

/// `count` generated records (NDJSON), about a kilobyte each.
fn generated(count: u64) -> Vec<u8> {
    generated_ndjson(count, (count / 3).max(1), 3)
}

/// The largest resident set of any child this test process has waited for, in KiB.
fn peak_child_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer it is given.
    let usage = unsafe {
        assert_eq!(
            libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()),
            0
        );
        usage.assume_init()
    };
    usage.ru_maxrss
}

#[test]
fn output_follows_input_while_the_input_is_still_open() {
    let mut child = sessionflow()
        .args([
            "replay",
            "--input",
            "-",
            "--output",
            "-",
            "--dlq",
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    // Enough records for some events, less than a read block; the input stays open.
    stdin.write_all(&generated(3_000)).unwrap();
    stdin.flush().unwrap();
    // Events of a finished batch wait for the output buffer or the end: with the input
    // open, they must still come out (bounded wait).
    let first = received.recv_timeout(PATIENCE);
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let first = first.expect("no event came out while the input was open");
    assert!(first.contains("\"type\":\"session."), "{first}");
    assert!(status.success());
}

#[test]
fn an_oversized_line_is_dead_lettered_with_its_first_bytes_and_never_held_whole() {
    const LINE: usize = 96 << 20;
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dlq.ndjson");
    let mut child = sessionflow()
        .args(["replay", "--input", "-", "--output", "-", "--dlq"])
        .arg(&dlq)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let records = generated(30);
    let writer = std::thread::spawn(move || {
        stdin.write_all(&records).unwrap();
        // Control bytes: each one takes six bytes escaped in a JSON string.
        let chunk = vec![1u8; 1 << 20];
        for _ in 0..LINE >> 20 {
            stdin.write_all(&chunk).unwrap();
        }
        stdin.write_all(b"\n").unwrap();
        stdin.write_all(&records).unwrap();
    });
    let mut events = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut events)
        .unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    let peak_kib = peak_child_rss_kib();

    let dead = std::fs::read_to_string(&dlq).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "one dead letter");
    assert_eq!(dead[0]["kind"], "too_large");
    assert_eq!(dead[0]["raw_bytes"], LINE as u64);
    let raw = dead[0]["raw"].as_str().unwrap();
    assert_eq!(
        raw.len(),
        sessionflow::parse::DEFAULT_MAX_RECORD_BYTES,
        "raw cut to the limit"
    );
    assert!(raw.bytes().all(|b| b == 1));
    // Both copies of the records were read around it (the second copy is all duplicates).
    assert!(events.lines().count() > 0);
    eprintln!(
        "peak RSS of the replay of a {} MiB line: {peak_kib} KiB",
        LINE >> 20
    );
    assert!(
        peak_kib < (LINE as i64 >> 10) / 2,
        "the line was held: peak RSS {peak_kib} KiB"
    );
}

#[test]
fn a_file_truncated_during_a_replay_ends_it_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, generated(60_000)).unwrap();
    let size = std::fs::metadata(&input).unwrap().len();
    let mut child = sessionflow()
        .args(["replay", "--output", "-", "--dlq", "/dev/null", "--input"])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first output byte: the replay is under way. Not reading more holds it there
    // (its writes block once the pipe is full) while the file is cut.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "killed by a signal: {stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shrank while it was read") && stderr.contains(&size.to_string()),
        "{stderr}"
    );
}
