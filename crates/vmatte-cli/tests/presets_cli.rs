//! Presets: the built-ins scale with resolution, config files add their
//! own, and command-line flags win over whatever a preset says.

mod support;

use serde_json::Value;
use support::*;
use vmatte_media::Rational;

fn preset<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["preset"]["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {rows}"))
}

#[test]
fn builtins_scale_with_resolution() {
    let out = vmatte(&["presets", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let standard = &preset(&rows, "standard")["resolved"];
    assert_eq!(standard["1920x1080"]["downsample_ratio"], "0.2500");
    assert_eq!(standard["3840x2160"]["downsample_ratio"], "0.1250");
    assert_eq!(standard["1920x1080"]["seq_chunk"], "8");
    assert_eq!(standard["3840x2160"]["seq_chunk"], "6");
    assert_eq!(
        preset(&rows, "high")["resolved"]["1920x1080"]["downsample_ratio"],
        "0.5000"
    );
    assert_eq!(
        preset(&rows, "ultra")["resolved"]["1920x1080"]["downsample_ratio"],
        "1.0000"
    );
    assert_eq!(
        preset(&rows, "quality")["resolved"]["1920x1080"]["model"],
        "rvm-resnet50"
    );
    assert_eq!(
        preset(&rows, "fast")["resolved"]["1920x1080"]["model"],
        "rvm-mobilenetv3"
    );
}

#[test]
fn config_presets_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[presets.show]\nmodel = \"rvm-mobilenetv3\"\ndownsample_ratio = { at_1080p = 0.3 }\nseq_chunk = 3\n\
         outputs = [\"alpha\"]\nformat = \"png\"\n",
    )
    .unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 192, 108, 3, Rational::new(25, 1));
    let out = vmatte(&[
        "presets",
        "--config",
        config.to_str().unwrap(),
        "--input",
        clip.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        preset(&rows, "show")["resolved"]["192x108"]["downsample_ratio"],
        "1.0000"
    );

    // The preset gives png alpha and chunk 3; the flag overrides its ratio.
    let out_dir = dir.path().join("out");
    let out = matte(
        &clip,
        &out_dir,
        &[
            "--preset",
            "show",
            "--config",
            config.to_str().unwrap(),
            "--downsample-ratio",
            "0.5",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["downsample_ratio"], 0.5);
    assert_eq!(report["settings"]["seq_chunk"], 3);
    assert_eq!(report["settings"]["format"], "png");
    assert_eq!(list_dir(&out_dir), ["clip.alpha"]);

    // Mistakes name the file and the setting.
    std::fs::write(&config, "[presets.bad]\nseq_chunk = 0\n").unwrap();
    let out = vmatte(&["presets", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("config.toml") && err.contains("presets.bad") && err.contains("seq_chunk"),
        "{err}"
    );
    let out = matte(&clip, &out_dir, &["--preset", "nope"]);
    assert!(
        stderr(&out).contains("unknown preset 'nope'"),
        "{}",
        stderr(&out)
    );
}
