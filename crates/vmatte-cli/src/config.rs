//! The matte options of `matte`, `batch` and `submit`, turned once into
//! what the library crates take (as ripgrep turns its low-level arguments
//! into high-level ones): a [`JobSpec`] (what to make, and how the
//! submitter would run it) and how this process loads models. Nothing
//! below the CLI sees clap's types.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vmatte_engine::load::{load, HwDecode, HwEncode, LoadAt, ModelRef};
use vmatte_engine::spec::JobSpec;
use vmatte_gpu::DeviceSpec;
use vmatte_models::store::{DEFAULT_MODEL, GVM};
use vmatte_pipeline::{
    Chunks, DownsampleRatio, Finish, ForegroundMode, GvmOptions, MatteSettings, Network,
    OutputFormat, Placement, Precision, RunOptions, Setting,
};

use crate::cli::{FinishArgs, GvmArgs, MatAnyoneArgs, MatteOptions, ModelArgs, OutputOptions};
use crate::presets::{self, Preset};
use vmatte_models::store::MATANYONE;
use vmatte_pipeline::matanyone::{MaskAt, MatAnyoneOptions};

/// What a command's matte options resolve to.
pub struct MatteConfig {
    pub spec: JobSpec,
    /// Where this process runs the model (`--device`).
    pub device: DeviceSpec,
    pub model_dir: Option<PathBuf>,
    pub hwdec: HwDecode,
    pub hwenc: HwEncode,
    pub preprocess: Placement,
    pub postprocess: Placement,
}

impl MatteConfig {
    pub fn model(&self) -> ModelRef {
        ModelRef::of(&self.spec.settings)
    }

    /// The run options of this process: the spec's, with its own
    /// conversions placed.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            preprocess: self.preprocess,
            postprocess: self.postprocess,
            ..self.spec.run.clone()
        }
    }
}

/// Options that were refused: the message says which and why. Kept as its
/// own type so that a program embedding the CLI can tell a bad option from
/// a failed run ([`crate::embed::FailureKind::Options`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadOptions(pub String);

impl BadOptions {
    /// `e`, with its causes, as refused options.
    pub fn of(e: anyhow::Error) -> Self {
        Self(format!("{e:#}"))
    }
}

/// Each option from the command line, else from `--preset`, else its
/// default; combinations that cannot be written are refused here, in one
/// line, before any video is opened.
pub fn resolve(o: &MatteOptions) -> Result<MatteConfig> {
    resolve_options(o).map_err(|e| BadOptions::of(e).into())
}

fn resolve_options(o: &MatteOptions) -> Result<MatteConfig> {
    let preset = o
        .preset
        .as_deref()
        .map(|name| presets::find(name, o.config.as_deref()))
        .transpose()?;
    let p = preset.unwrap_or_default();
    let m = &o.model;
    let name = m
        .model
        .clone()
        .or_else(|| p.model.clone())
        .unwrap_or_else(|| DEFAULT_MODEL.into());
    let mut settings = MatteSettings::new(&name);
    let gvm = match &m.weights {
        Some(w) => {
            let path = weights_path(w)?;
            if name == GVM && !path.is_dir() {
                bail!(
                    "{}: GVM loads a diffusers folder (unet/, vae/), not a file; give the folder",
                    w.display()
                );
            }
            settings.weights_digest = Some(
                vmatte_jobs::content_id(&path)
                    .with_context(|| format!("{}: cannot read the weights", path.display()))?,
            );
            settings.model = path.display().to_string();
            path.is_dir()
        }
        None => name == GVM,
    };
    if gvm && (o.downsample_ratio.is_some() || o.seq_chunk.is_some()) {
        bail!(
            "--downsample-ratio and --seq-chunk are RVM settings; GVM's are --size, \
             --max-resolution and --frames-per-batch"
        );
    }
    settings.downsample_ratio = o
        .downsample_ratio
        .or(p.downsample_ratio)
        .unwrap_or(DownsampleRatio::Auto);
    apply_output(&o.output, &p, &mut settings)?;
    if gvm {
        settings.gvm = Some(gvm_options(&o.gvm, p.gvm.clone().unwrap_or_default()));
        // GVM predicts alpha only, so `auto` estimates its colour: said in
        // the settings, so a GVM job made before that is not taken for one.
        if settings.finish.foreground == ForegroundMode::Auto {
            settings.finish.foreground = ForegroundMode::Estimate;
        }
    } else if name == MATANYONE && m.weights.is_none() {
        if o.downsample_ratio.is_some() && o.matanyone.mask.as_deref() != Some("auto") {
            bail!("--downsample-ratio is RVM's setting; MatAnyone's internal size is --max-size");
        }
        settings.matanyone = Some(matanyone_options(
            &o.matanyone,
            p.matanyone.clone().unwrap_or_default(),
        )?);
        // MatAnyone predicts alpha only: `auto` estimates its colour.
        if settings.finish.foreground == ForegroundMode::Auto {
            settings.finish.foreground = ForegroundMode::Estimate;
        }
    } else if o.matanyone.is_set() {
        bail!(
            "--mask, --mask-dir, --mask-at, --warmup, --mask-erode, --mask-dilate, --max-size, \
             --mem-every, --max-mem-frames and --top-k are MatAnyone settings; add --model matanyone"
        );
    } else if o.gvm.is_set() {
        bail!(
            "--frames-per-batch, --overlap-frames, --interp-frames, --denoise-steps, \
             --decode-chunk, --size, --max-resolution, --ensemble and --lora are GVM settings; \
             add --model gvm"
        );
    }
    settings.validate().map_err(anyhow::Error::msg)?;
    let chunks = match o.seq_chunk {
        Some(n) => Chunks::fixed(n as usize),
        None => presets::chunks(&p),
    };
    Ok(MatteConfig {
        spec: JobSpec {
            settings,
            fps: o.output.fps,
            run: RunOptions {
                chunks,
                precision: m.dtype,
                strict: o.output.strict,
                ..RunOptions::default()
            },
        },
        device: m.device,
        model_dir: m.model_dir.clone(),
        hwdec: m.hwdec,
        hwenc: m.encoder,
        preprocess: m.preprocess,
        postprocess: m.postprocess,
    })
}

/// The output and finishing options onto `settings`: each flag, else the
/// preset's, else the default.
pub fn apply_output(o: &OutputOptions, p: &Preset, settings: &mut MatteSettings) -> Result<()> {
    if let Some(outputs) = o.outputs.clone().or(p.outputs.clone()) {
        settings.outputs = dedup(&outputs);
    }
    settings.format = o.format.or(p.format).unwrap_or(settings.format);
    settings.background = o
        .background
        .clone()
        .or(p.background.clone())
        .unwrap_or(settings.background.clone());
    settings.crf = o.crf.or(p.crf).unwrap_or(settings.crf);
    settings.bitrate = o.bitrate;
    settings.codec = o.codec.unwrap_or_default();
    settings.depth = o.depth;
    settings.premultiplied = o.premultiplied;
    settings.invert_alpha = o.invert_alpha;
    settings.exr_compression = o.exr_compression.unwrap_or_default();
    settings.linear = o.linear;
    settings.no_audio = o.no_audio;
    settings.max_frames = o.max_frames.or(p.max_frames);
    if o.image_seq_only {
        if o.format.is_some_and(|f| f != OutputFormat::Png) {
            bail!("--image-seq-only writes PNG sequences; leave out --format");
        }
        settings.format = OutputFormat::Png;
    }
    settings.finish = finish(&o.finish, p.finish.clone().unwrap_or_default())?;
    Ok(())
}

/// The finishing flags over the preset's finishing.
fn finish(a: &FinishArgs, base: Finish) -> Result<Finish> {
    let negative = |v: Option<f32>, setting: Setting| match v {
        Some(v) if v < 0.0 || !v.is_finite() => {
            bail!("{} is not a size; give pixels, 0 or more", setting.with(v))
        }
        _ => Ok(v),
    };
    let shrink = negative(a.matte_shrink, Setting::MatteShrink)?;
    let grow = negative(a.matte_grow, Setting::MatteGrow)?;
    let feather = negative(a.matte_feather, Setting::MatteFeather)?;
    Ok(Finish {
        foreground: a.foreground.unwrap_or(base.foreground),
        shrink: match (shrink, grow) {
            (Some(s), _) => s,
            (None, Some(g)) => -g,
            (None, None) => base.shrink,
        },
        feather: feather.unwrap_or(base.feather),
        levels: a.matte_levels.or(base.levels),
        despeckle: a.despeckle.unwrap_or(base.despeckle),
        despill: a.despill.or(base.despill),
        temporal_smooth: a.temporal_smooth.unwrap_or(base.temporal_smooth),
    })
}

/// The model `--model`/`--weights` name, for the commands that load one
/// without making jobs (`bench`).
pub fn model_ref(m: &ModelArgs) -> Result<ModelRef> {
    Ok(match &m.weights {
        Some(w) => ModelRef::Files(weights_path(w)?),
        None => ModelRef::Installed(m.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into())),
    })
}

/// `--weights`, made absolute (jobs name it from any folder).
fn weights_path(w: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(w)
        .with_context(|| format!("{}: weights file not found; check the path", w.display()))
}

/// Loads `model` on `--device` at `precision`.
pub fn load_model(model: &ModelRef, m: &ModelArgs, precision: Precision) -> Result<Network> {
    Ok(load(
        model,
        None,
        &LoadAt {
            model_dir: m.model_dir.as_deref(),
            device: m.device,
            precision,
            hwdec: m.hwdec,
            hwenc: m.encoder,
        },
    )?)
}

/// MatAnyone's settings: each flag, else the preset's (or the release's)
/// `base`. Paths are made absolute: a job may run from another folder.
fn matanyone_options(a: &MatAnyoneArgs, base: MatAnyoneOptions) -> Result<MatAnyoneOptions> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut mask = base.mask;
    match a.mask.as_deref() {
        Some("auto") => mask.auto = true,
        Some(file) => mask.file = Some(absolute(Path::new(file))),
        None => {}
    }
    if let Some(dir) = &a.mask_dir {
        mask.dir = Some(absolute(dir));
    }
    let mut mask_at = base.mask_at;
    for item in &a.mask_at {
        let (frame, file) = item
            .split_once('=')
            .and_then(|(f, p)| Some((f.trim().parse::<u64>().ok()?, p)))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--mask-at {item}: expected FRAME=FILE with a 0-based frame number, e.g. 120=shot2.png"
                )
            })?;
        if frame == 0 {
            bail!("--mask-at {item}: frame 0's mask is --mask; use a later frame");
        }
        mask_at.retain(|m: &MaskAt| m.frame != frame);
        mask_at.push(MaskAt {
            frame,
            file: absolute(Path::new(file)),
        });
    }
    mask_at.sort_by_key(|m| m.frame);
    let pick = |flag: Option<u32>, preset: usize| flag.map_or(preset, |v| v as usize);
    let maybe = |flag: Option<u32>, preset: Option<usize>| flag.map(|v| v as usize).or(preset);
    Ok(MatAnyoneOptions {
        mask,
        mask_at,
        warmup: pick(a.warmup, base.warmup),
        erode: pick(a.mask_erode, base.erode),
        dilate: pick(a.mask_dilate, base.dilate),
        max_size: maybe(a.max_size, base.max_size),
        mem_every: maybe(a.mem_every, base.mem_every),
        max_mem_frames: maybe(a.max_mem_frames, base.max_mem_frames),
        top_k: maybe(a.top_k, base.top_k),
    })
}

impl MatAnyoneArgs {
    fn is_set(&self) -> bool {
        self.mask.is_some()
            || self.mask_dir.is_some()
            || !self.mask_at.is_empty()
            || [
                self.warmup,
                self.mask_erode,
                self.mask_dilate,
                self.max_size,
                self.mem_every,
                self.max_mem_frames,
                self.top_k,
            ]
            .iter()
            .any(Option::is_some)
    }
}

/// GVM's settings: each flag, else the preset's (or the defaults) `base`.
fn gvm_options(a: &GvmArgs, base: GvmOptions) -> GvmOptions {
    let pick = |flag: Option<u32>, preset: usize| flag.map_or(preset, |v| v as usize);
    GvmOptions {
        frames_per_batch: pick(a.frames_per_batch, base.frames_per_batch),
        overlap_frames: pick(a.overlap_frames, base.overlap_frames),
        interp_frames: pick(a.interp_frames, base.interp_frames),
        denoise_steps: pick(a.denoise_steps, base.denoise_steps),
        decode_chunk: pick(a.decode_chunk, base.decode_chunk),
        size: pick(a.size, base.size),
        max_resolution: pick(a.max_resolution, base.max_resolution),
        ensemble: pick(a.ensemble, base.ensemble),
        lora: match (&a.lora, a.no_lora) {
            (_, true) => "off".into(),
            (Some(dir), _) => dir.display().to_string(),
            (None, false) => base.lora,
        },
    }
}

impl GvmArgs {
    fn is_set(&self) -> bool {
        [
            self.frames_per_batch,
            self.overlap_frames,
            self.interp_frames,
            self.denoise_steps,
            self.decode_chunk,
            self.size,
            self.max_resolution,
            self.ensemble,
        ]
        .iter()
        .any(Option::is_some)
            || self.lora.is_some()
            || self.no_lora
    }
}

fn dedup<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}
