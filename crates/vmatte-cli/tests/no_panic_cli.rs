//! No path from the command line panics: every subcommand's `--help`, and
//! the common calls of each with good and bad input, end with a result or
//! one line that says what is wrong, never with Rust's panic message.

mod support;

use std::path::Path;

use support::*;
use vmatte_media::Rational;

/// The subcommands `vmatte --help` lists.
fn subcommands() -> Vec<String> {
    let out = no_panic(&["--help"]);
    let text = stdout(&out);
    let commands = text
        .split("Commands:")
        .nth(1)
        .expect("--help lists commands");
    commands
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command starts two spaces in; its wrapped description, further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_subcommand_has_help() {
    let commands = subcommands();
    assert!(commands.len() >= 10, "{commands:?}");
    for c in &commands {
        let out = no_panic(&[c, "--help"]);
        assert!(out.status.success(), "{c} --help: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage:"), "{c} --help");
    }
    for sub in ["list", "install", "import", "verify"] {
        let out = no_panic(&["models", sub, "--help"]);
        assert!(out.status.success(), "models {sub} --help");
    }
}

#[test]
fn common_calls_end_in_a_result_or_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 96, 64, 3, Rational::new(25, 1));
    let clip = clip.to_str().unwrap();
    let empty = d("empty");
    std::fs::create_dir(&empty).unwrap();
    let models = d("models");

    // Listings that must simply work, whatever is installed.
    let presets = no_panic(&["presets"]);
    assert!(presets.status.success(), "presets: {}", stderr(&presets));
    for args in [
        &["presets", "--json"][..],
        &["presets", "--input", clip],
        &["models", "list", "--model-dir", &models],
        &["models", "list", "--model-dir", &models, "--json"],
    ] {
        let out = no_panic(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let presets = stdout(&presets);
    for name in ["standard", "quality", "balanced", "hq", "preview"] {
        assert!(presets.contains(name), "{presets}");
    }

    // Bad input: one line naming what is wrong.
    let missing = d("missing.mp4");
    let onnx = rvm_onnx();
    let onnx = onnx.to_str().unwrap();
    one_line_error(
        &["matte", &missing, "-o", &d("o1"), "--weights", onnx],
        "missing.mp4",
    );
    one_line_error(
        &["matte", clip, "-o", &d("o1"), "--model-dir", &models],
        "not installed",
    );
    one_line_error(&["presets", "--input", &missing], "missing.mp4");
    one_line_error(&["status", &empty], "empty");
    one_line_error(&["batch", &empty, "-o", &d("o2")], "no videos");
    one_line_error(&["report", &empty], "empty");
    one_line_error(&["bench", "--input", &missing], "missing.mp4");
    one_line_error(
        &["bench-gvm", "--model-dir", &models, "--windows", "1"],
        "gvm",
    );
    one_line_error(&["models", "verify", "--model-dir", &models], "model");
    one_line_error(
        &["models", "import", &missing, "--model-dir", &models],
        "missing.mp4",
    );
    one_line_error(
        &["submit", "--queue", "mysql://x", clip, "-o", &d("o3")],
        "mysql://x",
    );
    one_line_error(&["worker", "--queue", "bogus", "--exit-when-idle"], "bogus");
    one_line_error(
        &["serve", "-o", &d("o5"), "--allow-root", &missing],
        "missing.mp4",
    );
    one_line_error(&["serve", "-o", &d("o5"), "--max-upload", "0"], "size");
    one_line_error(&["serve", "-o", &d("o5"), "--crf", "99"], "crf");
    one_line_error(
        &["serve", "-o", &d("o5"), "--queue", "postgres//u:pw@h/d"],
        "postgres//u:***@h/d",
    );
    one_line_error(&["watch", &missing, "-o", &d("o6")], "missing.mp4");
    one_line_error(&["watch", &d("o6"), "-o", &d("o6")], "output folder");
    one_line_error(
        &["watch", clip, "-o", &d("o6"), "--weights", onnx],
        "folder",
    );
    one_line_error(
        &["status", "--queue", "postgres//u:pw@h/d"],
        "postgres//u:***@h/d",
    );
    // NVML made unloadable, so the call fails the same on a host with a GPU.
    let monitor = ["monitor", "--count", "1"];
    fails_in_one_line(
        &vmatte_with_env(
            &monitor,
            &[(
                "VMATTE_NVML_LIB",
                Path::new("/nonexistent/libnvidia-ml.so.1"),
            )],
        ),
        &format!("vmatte {monitor:?}"),
        &["NVML"],
    );
    one_line_error(
        &["matte", clip, "-o", &d("o4"), "--downsample-ratio", "7"],
        "downsample",
    );
    one_line_error(&["matte", clip, "-o", &d("o5"), "--format", "gif"], "gif");
    one_line_error(
        &["matte", clip, "-o", &d("o6"), "--preset", "nonesuch"],
        "nonesuch",
    );
    one_line_error(&["matte", clip, "-o", &d("o7"), "--device", "tpu"], "tpu");
    // Six bytes, not six hex digits: a colour parser that slices bytes
    // would split the euro sign.
    one_line_error(
        &[
            "matte",
            clip,
            "-o",
            &d("o9"),
            "--background",
            "#a\u{20ac}bc",
        ],
        "neither a colour",
    );
    one_line_error(
        &["matte", clip, "-o", &d("o8"), "--weights", &missing],
        "missing.mp4",
    );

    // An empty SQLite queue: a worker with nothing to do exits cleanly.
    let queue = format!("sqlite:{}", d("q"));
    let out = no_panic(&["worker", "--queue", &queue, "--exit-when-idle"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // `vmatte presets | head -1`: the pipe closes before everything is
    // written. Rust's print then fails with EPIPE, which is no bug.
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmatte"))
        .arg("presets")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("internal error"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // 141 is 128 + SIGPIPE, what `head`'s shell shows for a killed writer.
    assert!(status.success() || status.code() == Some(141), "{status:?}");
}
