//! Shared by the CLI tests: the binary, its inputs, and small clips made
//! in-process with vmatte-media.

#![allow(dead_code)] // each test binary uses a different subset

pub mod serve;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmatte_media::{EncoderSettings, PixelLayout, Rational, VideoEncoder};

#[allow(unused_imports)] // each test binary uses a different subset
pub use vmatte_testkit::{python, repo_root, rvm_onnx, sample_clip};

pub fn vmatte(args: &[&str]) -> Output {
    vmatte_with_env(args, &[])
}

pub fn vmatte_with_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmatte"));
    cmd.args(args).env_remove("VMATTE_MODEL_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("vmatte runs")
}

/// `vmatte matte INPUT -o OUT --weights <the ONNX export> EXTRA...`
pub fn matte(input: &Path, out_dir: &Path, extra: &[&str]) -> Output {
    let onnx = rvm_onnx();
    let mut args = vec![
        "matte",
        input.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--weights",
        onnx.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    vmatte(&args)
}

/// `vmatte submit --queue sqlite:OUT INPUT -o OUT --weights <the ONNX
/// export> EXTRA...`: the queue of one output folder; checked for success.
pub fn submit_sqlite(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let queue = format!("sqlite:{}", out.display());
    let onnx = rvm_onnx();
    let mut args = vec![
        "submit",
        "--queue",
        &queue,
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--weights",
        onnx.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let done = vmatte(&args);
    assert!(done.status.success(), "submit failed: {}", stderr(&done));
    done
}

/// The first `limit` frames of a video or image folder, decoded in process.
pub fn decode_frames(path: &Path, limit: usize) -> Vec<vmatte_media::Frame> {
    let mut src = vmatte_media::open_source(path, None).unwrap_or_else(|e| panic!("{e}"));
    let mut frames = Vec::new();
    while frames.len() < limit {
        match src.next_frame().unwrap_or_else(|e| panic!("{e}")) {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    frames
}

/// `vmatte batch INPUTS... -o OUT --weights <the ONNX export> EXTRA...`,
/// ready to run or spawn.
pub fn batch_command(inputs: &[&Path], out_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmatte"));
    cmd.arg("batch")
        .args(inputs)
        .arg("-o")
        .arg(out_dir)
        .arg("--weights")
        .arg(rvm_onnx())
        .args(extra)
        .env_remove("VMATTE_MODEL_DIR");
    cmd
}

/// Runs a batch with `--json` and returns its report.
pub fn batch(inputs: &[&Path], out_dir: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let out = batch_command(inputs, out_dir, extra)
        .arg("--json")
        .output()
        .expect("vmatte runs");
    let report = json_of(&out);
    (out, report)
}

/// The one JSON value a `--json` run printed on stdout.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(out), stderr(out)))
}

/// `vmatte status OUT --json`, which must succeed: the job store's rows.
pub fn status_rows(out: &Path) -> serde_json::Value {
    let status = vmatte(&["status", out.to_str().unwrap(), "--json"]);
    assert!(
        status.status.success(),
        "vmatte status {}: {}",
        out.display(),
        stderr(&status)
    );
    json_of(&status)
}

/// Fails the test on any sign of a panic in `out` (of `what`): Rust's
/// message, or exit status 101.
pub fn assert_no_panic(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked")
            && !err.contains("internal error")
            && out.status.code() != Some(101),
        "{what} panicked: {err}"
    );
}

/// Runs `vmatte ARGS`, failing the test on any sign of a panic.
pub fn no_panic(args: &[&str]) -> Output {
    let out = vmatte(args);
    assert_no_panic(&out, &format!("vmatte {args:?}"));
    out
}

/// Fails the test unless `out` (of `what`) is a failure, without a panic,
/// with exactly one line on stderr that names each of `mentions`; that
/// line.
pub fn fails_in_one_line(out: &Output, what: &str, mentions: &[&str]) -> String {
    assert_no_panic(out, what);
    let err = stderr(out);
    assert!(!out.status.success(), "{what} should fail: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
    for m in mentions {
        assert!(err.contains(m), "{what}: does not name {m:?}: {err}");
    }
    err
}

/// Runs `vmatte ARGS`, which must fail with exactly one line on stderr
/// that names `mentions`.
pub fn one_line_error(args: &[&str], mentions: &str) {
    fails_in_one_line(&vmatte(args), &format!("vmatte {args:?}"), &[mentions]);
}

/// Runs `cmd` with its stdout and stderr captured, failing the test if it
/// is still running after `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vmatte runs");
    wait_within(child, limit)
}

/// Waits for `child` (its stdout and stderr piped) at most `limit`; past
/// that, kills it and fails the test (a hang), showing what it printed.
pub fn wait_within(mut child: Child, limit: Duration) -> Output {
    // Both pipes are read while waiting: a child blocked on a full pipe
    // would otherwise look like a hang.
    let out_pipe = drain(child.stdout.take());
    let err_pipe = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (out_pipe.join().unwrap(), err_pipe.join().unwrap());
            panic!(
                "still running after {limit:?} (a hang): {}{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_pipe.join().unwrap(),
        stderr: err_pipe.join().unwrap(),
    }
}

/// Everything a child writes to `pipe`, read on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // What was read before an error is still worth showing.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// The report entry of the input whose path ends with `file`.
pub fn job<'a>(report: &'a serde_json::Value, file: &str) -> &'a serde_json::Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["input"].as_str().unwrap().ends_with(file))
        .unwrap_or_else(|| panic!("{file} not in {report}"))
}

/// Waits until a running batch has started writing an output.
pub fn wait_for_partial(out_dir: &Path) {
    let started = Instant::now();
    while !list_dir(out_dir).iter().any(|n| n.ends_with(".partial")) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the batch never started writing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A short clip of a moving soft-edged disc over a gradient, encoded with
/// vmatte-media (no ffmpeg executable).
pub fn make_clip(path: &Path, width: u32, height: u32, frames: u32, rate: Rational) {
    let settings = EncoderSettings::new(
        width,
        height,
        rate,
        Rational::new(rate.den, rate.num),
        PixelLayout::Rgb24,
    );
    let mut enc = VideoEncoder::create(path, "mp4", &settings).expect("create clip");
    for t in 0..frames {
        let mut rgb = Vec::with_capacity((width * height * 3) as usize);
        let cx = width as f32 * (0.3 + 0.4 * t as f32 / frames.max(1) as f32);
        let cy = height as f32 * 0.5;
        for y in 0..height {
            for x in 0..width {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt()
                    / (height as f32 * 0.3);
                let inside = (1.0 - d).clamp(0.0, 1.0);
                let bg = (x * 255 / width.max(1)) as f32;
                rgb.push((inside * 230.0 + (1.0 - inside) * bg) as u8);
                rgb.push((inside * 180.0 + (1.0 - inside) * 40.0) as u8);
                rgb.push((inside * 150.0 + (1.0 - inside) * (255.0 - bg)) as u8);
            }
        }
        enc.write(&rgb, Some(i64::from(t))).expect("write frame");
    }
    enc.finish().expect("finish clip");
}

/// Every entry of a folder, for "nothing was left behind" checks.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A throwaway PostgreSQL server on loopback, started by the repo's own
/// scripts/pg-scratch.sh and stopped when dropped.
pub struct PgServer {
    pub dir: tempfile::TempDir,
    /// `postgres://vmatte:PASSWORD@127.0.0.1:PORT/postgres`.
    pub url: String,
}

pub const PG_PASSWORD: &str = "vm-S3cret-test-pw";

impl PgServer {
    pub fn start(tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(repo_root().join("scripts/pg-scratch.sh"));
        cmd.arg("start")
            .arg(dir.path().join("pg"))
            .env("VMATTE_PG_PASSWORD", PG_PASSWORD);
        if tls {
            cmd.arg("--tls");
        }
        let out = cmd.output().expect("scripts/pg-scratch.sh runs");
        assert!(
            out.status.success(),
            "cannot start PostgreSQL: {}",
            stderr(&out)
        );
        let url = stdout(&out).trim().to_string();
        Self { dir, url }
    }

    /// Crashes the server (immediate shutdown), keeps it down for `down`
    /// seconds, and starts it again on the same port and data.
    pub fn restart(&self, down: u32) {
        let out = Command::new(repo_root().join("scripts/pg-scratch.sh"))
            .arg("restart")
            .arg(self.dir.path().join("pg"))
            .arg(down.to_string())
            .output()
            .expect("scripts/pg-scratch.sh runs");
        assert!(
            out.status.success(),
            "cannot restart PostgreSQL: {}",
            stderr(&out)
        );
    }

    /// The server's self-signed certificate (started with `tls`).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("pg/ca.pem")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/pg-scratch.sh"))
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .status();
    }
}

/// Runs Debian's ffmpeg (installed by scripts/deps.sh) to make a fixture.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed by scripts/deps.sh");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", stderr(&out));
}

/// A variable-frame-rate clip: six 96x64 frames at irregular timestamps
/// in a 1/90000 time base.
pub fn make_vfr_clip(path: &Path) {
    let settings = EncoderSettings::new(
        96,
        64,
        Rational::new(30, 1),
        Rational::new(1, 90000),
        PixelLayout::Rgb24,
    );
    let mut enc = VideoEncoder::create(path, "mp4", &settings).unwrap();
    let mut pts = 0;
    for (i, gap) in [3000, 3000, 6000, 1500, 4500, 3000].into_iter().enumerate() {
        enc.write(&vec![(i * 40) as u8; 96 * 64 * 3], Some(pts))
            .unwrap();
        pts += gap;
    }
    enc.finish().unwrap();
}

/// A tmpfs of `size` (e.g. `120k`) mounted on `dir` until the guard is
/// dropped: a disk that fills up. Mounting needs root, which
/// scripts/test.sh and CI run as.
pub fn small_disk(dir: &Path, size: &str) -> Unmount {
    std::fs::create_dir_all(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root: run the tests as scripts/test.sh does"
    );
    Unmount(dir.to_path_buf())
}

pub struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fails when any output under `dir` is still under a partial name.
pub fn no_partials(dir: &Path) {
    let left: Vec<_> = list_dir(dir)
        .into_iter()
        .filter(|n| n.contains(".partial"))
        .collect();
    assert!(left.is_empty(), "partial outputs left: {left:?}");
}
