#![allow(dead_code)] // each test binary uses a different subset

//! Paths to the shared parity fixtures and the installed ONNX export, from
//! the workspace's one test helper (vmatte-testkit).

use std::path::PathBuf;

#[allow(unused_imports)] // each test binary uses a different subset
pub use vmatte_testkit::{fixtures_dir, rvm_onnx};

pub fn fixture(name: &str) -> PathBuf {
    vmatte_testkit::fixture(format!("rvm/{name}"))
}
