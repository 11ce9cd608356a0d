//! The HTTP API against its own OpenAPI document: schemathesis (pinned in
//! scripts/requirements-test.txt, installed into .venv by scripts/deps.sh)
//! generates requests from /api/openapi.json for 40 s, valid and not, to
//! every operation, and follows the links between them (create a job, then
//! get, cancel, retry, download and delete it). It must find no 5xx and no
//! response that breaks the document (status, content type, schema,
//! headers).
//!
//! Two of its checks are left out, and why: `positive_data_acceptance`
//! (a form's `options` field is JSON inside a text field, which JSON Schema
//! cannot describe, so any text is "valid" to it) and
//! `negative_data_rejection` (the server is lenient where that is kinder:
//! an empty `state` filter is no filter).

mod support;

use std::process::Command;
use std::time::Duration;

use support::serve::{get, Server};

#[test]
fn schemathesis_finds_no_server_error_and_no_broken_response() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(support::sample_clip(), inputs.join("clip.mp4")).unwrap();
    let out = dir.path().join("out");
    let server = Server::start(
        &out,
        &[
            "--allow-root",
            inputs.to_str().unwrap(),
            "--max-frames",
            "3",
        ],
        &[],
    );
    let python = support::python();
    let schemathesis = python.with_file_name("schemathesis");
    let run = support::output_within(
        Command::new(&schemathesis)
            .current_dir(dir.path())
            .args(["run", &server.url("/api/openapi.json")])
            .args(["--checks", "all"])
            .args([
                "--exclude-checks",
                "positive_data_acceptance,negative_data_rejection",
            ])
            // An event stream never ends: it has its own tests.
            .args(["--exclude-path", "/api/events"])
            .args(["--max-time", "40", "--workers", "2", "--seed", "1"]),
        Duration::from_secs(300),
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // Every operation of the document but the event stream was exercised.
    let number_after = |label: &str| -> Vec<u32> {
        let at = report
            .find(label)
            .unwrap_or_else(|| panic!("no '{label}' in:\n{report}"));
        report[at + label.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .split('/')
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let (selected, tested) = (number_after("Selected:"), number_after("Tested:"));
    assert_eq!(
        selected[0] + 1,
        selected[1],
        "only the event stream is left out:\n{report}"
    );
    assert_eq!(
        tested[0], selected[0],
        "not every operation was tested:\n{report}"
    );
    // The server took all of it and is still well.
    assert_eq!(get(&server.url("/readyz")).status, 200);
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(server.stop().success());
}
