//! What a person sees: `vmatte batch` run under a pseudo-terminal of 160x30,
//! its bytes rendered by a terminal emulator (vt100), the screen checked as
//! it changes and when it ends.

mod support;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use support::*;
use vmatte_media::Rational;

const ROWS: u16 = 30;
const COLS: u16 = 160;

/// Runs `vmatte ARGS` on a new pseudo-terminal; the screens it drew (one
/// per read) and the last one.
fn run_on_terminal(args: &[&str]) -> (Vec<String>, String) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the given ints; the
    // name and termios arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmatte"));
    cmd.args(args)
        .env_remove("VMATTE_MODEL_DIR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid only detaches the child from this process's session,
    // so the pseudo-terminal becomes its controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("vmatte runs");
    drop(cmd);
    let mut parser = vt100::Parser::new(ROWS, COLS, 0);
    let mut screens = Vec::new();
    let mut reader = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the child's side closes
            Ok(n) => {
                parser.process(&buf[..n]);
                screens.push(parser.screen().contents());
            }
        }
    }
    let status = child.wait().unwrap();
    let last = parser.screen().contents();
    assert!(status.success(), "vmatte {args:?}: {status}\n{last}");
    (screens, last)
}

#[test]
fn a_batch_on_a_terminal_draws_clean_bars_and_leaves_clean_lines() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for (i, frames) in [(1, 18), (2, 22), (3, 26)] {
        make_clip(
            &inputs.join(format!("c{i}.mp4")),
            160,
            96,
            frames,
            Rational::new(24, 1),
        );
    }
    let onnx = rvm_onnx();
    let out = dir.path().join("out");
    let (screens, last) = run_on_terminal(&[
        "batch",
        inputs.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--weights",
        onnx.to_str().unwrap(),
    ]);
    assert!(!screens.is_empty());
    // While it runs: no empty bar, rates to one decimal, one overall bar.
    let mut saw_bar = false;
    for screen in &screens {
        assert!(!screen.contains("0/0 frames"), "an empty bar:\n{screen}");
        for word in screen.split_whitespace() {
            // A rate: the number before " fps", or one with "fps" glued on.
            let number = match word.strip_suffix("fps") {
                Some(number) => number,
                None if screen.contains(&format!("{word} fps")) => word,
                None => continue,
            };
            if let Some((_, decimals)) = number.split_once('.') {
                let digits = decimals.trim_end_matches(|c: char| !c.is_ascii_digit());
                assert!(digits.len() <= 1, "rate '{word}' on:\n{screen}");
            }
        }
        let overall = screen.lines().filter(|l| l.starts_with("batch ")).count();
        assert!(overall <= 1, "the overall bar drawn twice:\n{screen}");
        saw_bar |= screen
            .lines()
            .any(|l| l.contains(" frames ") && l.contains('['));
    }
    assert!(saw_bar, "no progress bar was ever drawn");
    // At the end: each video one clean line, no bar left behind, then the
    // summary.
    let lines: Vec<&str> = last.lines().collect();
    for i in 1..=3 {
        let done: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("c{i}: done, ")))
            .collect();
        assert_eq!(done.len(), 1, "c{i}'s line:\n{last}");
        assert!(done[0].ends_with(" fps)"), "{last}");
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains('[') && l.contains("frames")),
        "a bar was left behind:\n{last}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("batch ")),
        "the overall bar was left behind:\n{last}"
    );
    assert!(last.contains("3 done, 0 failed, 0 skipped"), "{last}");
}
