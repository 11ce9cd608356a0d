//! Named bundles of settings: the built-in `standard`, `high`, `ultra`,
//! `quality` and `fast`, plus the user's own from a TOML config file.
//! Flags given on the command line override whatever a preset says.
//!
//! ```toml
//! # ~/.config/vmatte/config.toml (or --config FILE)
//! [presets.interviews]
//! model = "rvm-resnet50"
//! downsample_ratio = { at_1080p = 0.3 }   # or 0.4, or "auto"
//! seq_chunk = 12
//! outputs = ["composite", "alpha", "foreground"]
//! format = "png"
//! background = "#000000"
//! crf = 16
//!
//! [presets.greenscreen]                   # finishing: any of its settings
//! foreground = "estimate"                 # auto, model, estimate, source
//! despill = "green"                       # green, blue, auto
//! matte_shrink = 0.5                      # or matte_grow; pixels
//! matte_feather = 1.0
//! matte_levels = [0.02, 0.98]
//! despeckle = 50
//! temporal_smooth = 4
//!
//! [presets.hair]                          # GVM: any of its settings
//! model = "gvm"
//! frames_per_batch = 12
//! overlap_frames = 2
//! max_resolution = 1152
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use vmatte_models::store::DEFAULT_MODEL;
use vmatte_pipeline::{
    Background, Chunks, DespillMode, DownsampleRatio, Finish, ForegroundMode, Levels,
    MatteSettings, OutputFormat, OutputKind,
};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub model: Option<String>,
    pub downsample_ratio: Option<DownsampleRatio>,
    pub seq_chunk: Option<usize>,
    /// The chunk for frames larger than 1080p (their chunks cost more memory).
    pub seq_chunk_large: Option<usize>,
    pub outputs: Option<Vec<OutputKind>>,
    pub format: Option<OutputFormat>,
    pub background: Option<Background>,
    pub crf: Option<u8>,
    /// GVM's window settings, for GVM presets.
    pub gvm: Option<vmatte_pipeline::GvmOptions>,
    /// MatAnyone's settings, for MatAnyone presets.
    pub matanyone: Option<vmatte_pipeline::matanyone::MatAnyoneOptions>,
    pub max_frames: Option<u64>,
    /// Edge controls and the foreground colour.
    pub finish: Option<Finish>,
    /// Where it was defined: "built-in" or the config file.
    pub source: String,
}

fn scaled(name: &str, at_1080p: f64, description: &str) -> Preset {
    Preset {
        name: name.into(),
        description: description.into(),
        model: Some("rvm-mobilenetv3".into()),
        downsample_ratio: Some(DownsampleRatio::Scaled { at_1080p }),
        seq_chunk: Some(8),
        seq_chunk_large: Some(6),
        source: "built-in".into(),
        ..Preset::default()
    }
}

pub fn builtin() -> Vec<Preset> {
    let with_model = |name: &str, model: &str, description: &str| Preset {
        name: name.into(),
        description: description.into(),
        model: Some(model.into()),
        source: "built-in".into(),
        ..Preset::default()
    };
    vec![
        scaled(
            "standard",
            0.25,
            "MobileNetV3, ratio 0.25 at 1080p (RVM's advice for close shots)",
        ),
        scaled(
            "high",
            0.5,
            "MobileNetV3, ratio 0.5 at 1080p: finer edges, about 3x the work",
        ),
        scaled("ultra", 1.0, "MobileNetV3 at full resolution up to 1080p"),
        with_model(
            "quality",
            "rvm-resnet50",
            "ResNet50: sharper mattes, about 6x the work",
        ),
        with_model("fast", "rvm-mobilenetv3", "MobileNetV3, the fast model"),
        Preset {
            finish: Some(Finish {
                foreground: ForegroundMode::Estimate,
                despill: Some(DespillMode::Auto),
                shrink: 0.5,
                ..Finish::default()
            }),
            ..with_model(
                "keying",
                "rvm-resnet50",
                "green/blue screen: ResNet50, colour estimated from the frame, spill \
                 suppressed (screen told from the background), edges choked 0.5 px",
            )
        },
        matanyone(
            "subject",
            "MatAnyone as released: the subject a mask picks, 10 warm-up steps, erode/dilate 10",
            vmatte_pipeline::matanyone::MatAnyoneOptions::default(),
        ),
        matanyone(
            "subject-fast",
            "MatAnyone at 480 px inside (scaled back), 5 warm-up steps",
            vmatte_pipeline::matanyone::MatAnyoneOptions {
                max_size: Some(480),
                warmup: 5,
                ..Default::default()
            },
        ),
        matanyone(
            "subject-auto",
            "MatAnyone unattended: the mask from RVM's first frame where none is given",
            vmatte_pipeline::matanyone::MatAnyoneOptions {
                mask: vmatte_pipeline::matanyone::MaskChoice {
                    auto: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
        gvm(
            "lowmem",
            "GVM for small GPUs: 4-frame windows, decode chunk 4, size 512, max 720",
            (4, 4, 512, 720, 1, 0),
            None,
        ),
        gvm(
            "balanced",
            "GVM: 8-frame windows, decode chunk 8, size 720, max 960",
            (8, 8, 720, 960, 1, 0),
            None,
        ),
        gvm(
            "hq",
            "GVM at its best: 16-frame windows overlapping by 2, 3 steps, max 1280",
            (16, 16, 720, 1280, 3, 2),
            None,
        ),
        gvm(
            "preview",
            "GVM, a quick look: the first 50 frames, 8-frame windows, max 720",
            (8, 8, 512, 720, 1, 0),
            Some(50),
        ),
    ]
}

/// A GVM preset: (frames per batch, decode chunk, size, max resolution,
/// denoise steps, overlap). The users' scenarios name the max resolution;
/// the size is the largest standard one below it.
fn gvm(
    name: &str,
    description: &str,
    (frames, decode, size, max, steps, overlap): (usize, usize, usize, usize, usize, usize),
    max_frames: Option<u64>,
) -> Preset {
    Preset {
        name: name.into(),
        description: description.into(),
        model: Some("gvm".into()),
        gvm: Some(vmatte_pipeline::GvmOptions {
            frames_per_batch: frames,
            decode_chunk: decode,
            size,
            max_resolution: max,
            denoise_steps: steps,
            overlap_frames: overlap,
            ..Default::default()
        }),
        max_frames,
        source: "built-in".into(),
        ..Preset::default()
    }
}

fn matanyone(
    name: &str,
    description: &str,
    options: vmatte_pipeline::matanyone::MatAnyoneOptions,
) -> Preset {
    Preset {
        name: name.into(),
        description: description.into(),
        model: Some("matanyone".into()),
        matanyone: Some(options),
        source: "built-in".into(),
        ..Preset::default()
    }
}

/// `--config FILE`, else `$XDG_CONFIG_HOME/vmatte/config.toml`, else
/// `~/.config/vmatte/config.toml`, if it exists.
pub fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let path = env("XDG_CONFIG_HOME")
        .map(|d| d.join("vmatte/config.toml"))
        .or_else(|| env("HOME").map(|h| h.join(".config/vmatte/config.toml")))?;
    path.is_file().then_some(path)
}

/// Built-in presets followed by those of the config file (which may
/// redefine a built-in name).
pub fn all(config: Option<&Path>) -> Result<Vec<Preset>> {
    let mut presets = builtin();
    if let Some(path) = config_path(config) {
        for p in read_config(&path)? {
            presets.retain(|b| b.name != p.name);
            presets.push(p);
        }
    }
    Ok(presets)
}

pub fn find(name: &str, config: Option<&Path>) -> Result<Preset> {
    let presets = all(config)?;
    let names: Vec<_> = presets.iter().map(|p| p.name.clone()).collect();
    presets
        .into_iter()
        .find(|p| p.name == name)
        .with_context(|| {
            format!(
                "unknown preset '{name}'; choose one of {} (see `vmatte presets`)",
                names.join(", ")
            )
        })
}

fn read_config(path: &Path) -> Result<Vec<Preset>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the config file", path.display()))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow::anyhow!("{}: not valid TOML ({})", path.display(), e.message())
    })?;
    let Some(presets) = doc.get("presets") else {
        return Ok(Vec::new());
    };
    let presets = presets
        .as_table()
        .with_context(|| format!("{}: [presets] must be a table of tables", path.display()))?;
    presets
        .iter()
        .map(|(name, v)| {
            let t = v
                .as_table()
                .with_context(|| format!("{}: presets.{name} must be a table", path.display()))?;
            parse_preset(name, t)
                .map_err(|e| anyhow::anyhow!("{}: presets.{name}: {e}", path.display()))
        })
        .collect()
}

/// A whole number setting within `lo..=hi`.
fn whole(v: &toml::Value, key: &str, lo: i64, hi: i64) -> Result<i64> {
    v.as_integer()
        .filter(|n| (lo..=hi).contains(n))
        .with_context(|| format!("'{key}' must be a whole number from {lo} to {hi}"))
}

fn parse_preset(name: &str, t: &toml::Table) -> Result<Preset> {
    let mut p = Preset {
        name: name.into(),
        description: "from the config file".into(),
        ..Preset::default()
    };
    for (key, v) in t {
        let text = || {
            v.as_str()
                .map(str::to_string)
                .with_context(|| format!("'{key}' must be a string"))
        };
        match key.as_str() {
            "description" => p.description = text()?,
            "model" => p.model = Some(text()?),
            "downsample_ratio" => {
                p.downsample_ratio = Some(match v {
                    toml::Value::String(s) => s.parse().map_err(anyhow::Error::msg)?,
                    toml::Value::Float(f) => format!("{f}").parse().map_err(anyhow::Error::msg)?,
                    toml::Value::Integer(1) => DownsampleRatio::Fixed(1.0),
                    toml::Value::Table(s) => match s.get("at_1080p").and_then(|x| x.as_float()) {
                        Some(r) if r > 0.0 && r <= 1.0 => DownsampleRatio::Scaled { at_1080p: r },
                        _ => bail!("downsample_ratio = {{ at_1080p = R }} needs R in (0, 1]"),
                    },
                    _ => bail!("downsample_ratio must be a ratio, \"auto\" or {{ at_1080p = R }}"),
                })
            }
            "seq_chunk" | "seq_chunk_large" => {
                let n = v
                    .as_integer()
                    .filter(|n| (1..=256).contains(n))
                    .with_context(|| format!("'{key}' must be a whole number from 1 to 256"))?;
                if key == "seq_chunk" {
                    p.seq_chunk = Some(n as usize);
                } else {
                    p.seq_chunk_large = Some(n as usize);
                }
            }
            "outputs" => {
                let list = v
                    .as_array()
                    .context("'outputs' must be a list such as [\"composite\", \"alpha\"]")?;
                p.outputs = Some(
                    list.iter()
                        .map(|k| {
                            k.as_str()
                                .unwrap_or_default()
                                .parse()
                                .map_err(anyhow::Error::msg)
                        })
                        .collect::<Result<_>>()?,
                );
            }
            "format" => p.format = Some(text()?.parse().map_err(anyhow::Error::msg)?),
            "background" => p.background = Some(text()?.parse().map_err(anyhow::Error::msg)?),
            "crf" => {
                p.crf = Some(
                    v.as_integer()
                        .filter(|n| (0..=51).contains(n))
                        .context("'crf' must be a whole number from 0 to 51")?
                        as u8,
                )
            }
            "max_frames" => p.max_frames = Some(whole(v, key, 1, u32::MAX as i64)? as u64),
            "foreground" | "despill" | "matte_shrink" | "matte_grow" | "matte_feather"
            | "matte_levels" | "despeckle" | "temporal_smooth" => {
                finish_key(p.finish.get_or_insert_with(Default::default), key, v)?
            }
            "lora" => p.gvm.get_or_insert_with(Default::default).lora = text()?,
            gvm_key @ ("frames_per_batch" | "overlap_frames" | "interp_frames"
            | "denoise_steps" | "decode_chunk" | "size" | "max_resolution"
            | "ensemble") => {
                let n = whole(v, key, 0, 65536)? as usize;
                let g = p.gvm.get_or_insert_with(Default::default);
                match gvm_key {
                    "frames_per_batch" => g.frames_per_batch = n,
                    "overlap_frames" => g.overlap_frames = n,
                    "interp_frames" => g.interp_frames = n,
                    "denoise_steps" => g.denoise_steps = n,
                    "decode_chunk" => g.decode_chunk = n,
                    "size" => g.size = n,
                    "max_resolution" => g.max_resolution = n,
                    _ => g.ensemble = n,
                }
            }
            other => bail!("unknown setting '{other}'"),
        }
    }
    if let Some(g) = &p.gvm {
        g.validate().map_err(anyhow::Error::msg)?;
    }
    if let Some(f) = &p.finish {
        let colour = p.outputs.as_deref().is_none_or(OutputKind::any_colour);
        f.validate(colour).map_err(anyhow::Error::msg)?;
    }
    p.source = "config".into();
    Ok(p)
}

/// One finishing setting of a config preset.
fn finish_key(f: &mut Finish, key: &str, v: &toml::Value) -> Result<()> {
    let text = || {
        v.as_str()
            .with_context(|| format!("'{key}' must be a string"))
    };
    let pixels = || {
        v.as_float()
            .or_else(|| v.as_integer().map(|n| n as f64))
            .filter(|x| *x >= 0.0)
            .map(|x| x as f32)
            .with_context(|| format!("'{key}' must be a number of pixels, 0 or more"))
    };
    match key {
        "foreground" => f.foreground = text()?.parse().map_err(anyhow::Error::msg)?,
        "despill" => f.despill = Some(text()?.parse().map_err(anyhow::Error::msg)?),
        "matte_shrink" => f.shrink = pixels()?,
        "matte_grow" => f.shrink = -pixels()?,
        "matte_feather" => f.feather = pixels()?,
        "despeckle" => f.despeckle = whole(v, key, 0, u32::MAX as i64)? as u32,
        "temporal_smooth" => f.temporal_smooth = whole(v, key, 0, 64)? as u32,
        _ => {
            // Every item a number: a stray string is an error, not dropped.
            let pair: Option<Vec<f32>> = v.as_array().and_then(|a| {
                a.iter()
                    .map(|x| x.as_float().or_else(|| x.as_integer().map(|n| n as f64)))
                    .map(|x| x.map(|x| x as f32))
                    .collect()
            });
            f.levels = match pair.as_deref() {
                Some([lo, hi]) => Some(Levels { lo: *lo, hi: *hi }),
                _ => bail!("'matte_levels' must be two numbers, e.g. [0.05, 0.95]"),
            }
        }
    }
    Ok(())
}

/// The preset's chunk sizes, or where it gives none, the CPU's default
/// (GPUs plan their own).
pub fn chunks(p: &Preset) -> Chunks {
    let base = Chunks::default();
    Chunks {
        seq_chunk: p.seq_chunk.unwrap_or(base.seq_chunk),
        seq_chunk_large: p.seq_chunk_large,
        cpu_seq_chunk: (p.seq_chunk.is_none() && p.seq_chunk_large.is_none())
            .then_some(Chunks::CPU_DEFAULT),
    }
}

/// The values a preset gives a video of this size, for `vmatte presets`.
pub fn resolved(p: &Preset, height: u32, width: u32) -> BTreeMap<&'static str, String> {
    // The same defaults and per-size rules a run applies.
    let mut settings = MatteSettings::new(p.model.as_deref().unwrap_or(DEFAULT_MODEL));
    settings.downsample_ratio = p.downsample_ratio.unwrap_or(settings.downsample_ratio);
    let chunks = chunks(p);
    if let Some(g) = &p.gvm {
        let geometry = vmatte_models::gvm::Geometry::new(
            (height as usize, width as usize),
            g.size,
            g.max_resolution,
        );
        let mut values = finishing(p);
        values.extend([
            ("model", settings.model.clone()),
            (
                "model_sees",
                geometry.map_or_else(
                    |e| e.to_string(),
                    |g| format!("{}x{}", g.resized.1, g.resized.0),
                ),
            ),
            ("frames_per_batch", g.frames_per_batch.to_string()),
            ("decode_chunk", g.decode_chunk.to_string()),
            ("denoise_steps", g.denoise_steps.to_string()),
            ("overlap_frames", g.overlap_frames.to_string()),
            (
                "max_frames",
                p.max_frames.map_or("all".into(), |m| m.to_string()),
            ),
        ]);
        return values;
    }
    let mut values = finishing(p);
    values.extend([
        ("model", settings.model.clone()),
        (
            "downsample_ratio",
            format!("{:.4}", settings.downsample_ratio.resolve(height, width)),
        ),
        // On the default device, the CPU (a GPU plans its chunk from its
        // free memory unless the preset gives one).
        (
            "seq_chunk",
            chunks.for_video(height, width, true).to_string(),
        ),
    ]);
    values
}

/// A preset's finishing settings that differ from the defaults, by name.
fn finishing(p: &Preset) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let Some(f) = &p.finish else {
        return out;
    };
    let off = Finish::default();
    if f.foreground != off.foreground {
        out.insert("foreground", f.foreground.to_string());
    }
    if f.shrink > 0.0 {
        out.insert("matte_shrink", format!("{} px", f.shrink));
    } else if f.shrink < 0.0 {
        out.insert("matte_grow", format!("{} px", -f.shrink));
    }
    if f.feather > 0.0 {
        out.insert("matte_feather", format!("{} px", f.feather));
    }
    if let Some(l) = f.levels {
        out.insert("matte_levels", l.to_string());
    }
    if f.despeckle > 0 {
        out.insert("despeckle", format!("{} px", f.despeckle));
    }
    if let Some(d) = f.despill {
        out.insert("despill", d.to_string());
    }
    if f.temporal_smooth > 0 {
        out.insert("temporal_smooth", format!("{} frames", f.temporal_smooth));
    }
    out
}

/// One line for people from [`resolved`]'s values, whatever the model:
/// the model first, then each value as `name value` (RVM and GVM presets
/// resolve to different settings).
pub fn describe(resolved: &BTreeMap<&'static str, String>) -> String {
    let model = resolved.get("model").map(String::as_str).unwrap_or("?");
    let rest = resolved
        .iter()
        .filter(|(k, _)| **k != "model")
        .map(|(k, v)| format!("{} {v}", k.replace('_', " ")));
    std::iter::once(format!("model {model}"))
        .chain(rest)
        .collect::<Vec<_>>()
        .join(", ")
}
