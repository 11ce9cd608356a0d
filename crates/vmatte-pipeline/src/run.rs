//! One video through the model as three overlapped stages:
//!
//! ```text
//! decode + planar f32 + upload ──(chunks)──► infer ──(mattes)──► download + finish + composite + encode
//!            thread                     caller's thread                       thread
//! ```
//! `finish` runs the same stages with a matte read from a file in place of
//! the model's ([`finish_source`]).
//! The copies to and from the device happen on the neighbouring threads, so
//! the inference thread only queues work: on a GPU the next chunk is already
//! there when the model is free. Queues hold at most `QUEUE_CHUNKS` chunks
//! each, so memory depends on the chunk size and resolution, never on the
//! video's length.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

use candle_core::{CpuStorage, Device, Layout, Storage, Tensor};
use serde::Serialize;
use vmatte_gpu::{FakeOom, Step};
use vmatte_media::{FrameSource, SourceWarning, VideoInfo, WarningKind};
use vmatte_models::gvm::Gvm;
use vmatte_models::rvm::{MattingNetwork, RecurrentState};

use crate::background::Backgrounds;
use crate::device_post::DevicePost;
use crate::device_pre::yuv420_to_rgb;
use crate::finish::Finisher;
use crate::frames::{push_gray, push_planar, rotate, FramePixels};
use crate::gvm::GvmStream;
use crate::matanyone::MatAnyoneNet;
use crate::output::{OutputWriter, Staged};
use crate::setting::Setting;
use crate::settings::{MatteSettings, OutputKind, Placement, RunOptions};
use crate::{OutOfMemory, PipelineError, Result};

/// Chunks in flight between two stages: enough that a stage never waits on
/// its neighbour's jitter, few enough to bound memory.
const QUEUE_CHUNKS: usize = 2;

/// Timing and placement of one frame.
#[derive(Clone, Copy, Debug)]
struct FrameMeta {
    index: u64,
    pts: Option<i64>,
}

/// Up to `seq_chunk` consecutive frames, planar f32 `[T, 3, H, W]`, on the
/// model's device.
struct InputChunk {
    frames: Vec<FrameMeta>,
    src: Tensor,
    /// What the source said about these frames (damage it concealed, a new
    /// picture size).
    warnings: Vec<SourceWarning>,
}

/// The model's outputs for a chunk, still on its device: `[T, 3, H, W]` and
/// `[T, 1, H, W]`, one or more pieces when the chunk was split.
struct MatteChunk {
    frames: Vec<FrameMeta>,
    fgr: Vec<Tensor>,
    pha: Vec<Tensor>,
    /// The source pictures `[T, 3, H, W]`, when finishing needs them and
    /// `fgr` is not already the source (RVM predicts its own).
    src: Option<Tensor>,
    /// Outputs already made into 8-bit pixels on the device, `[T, H, W, C]`.
    pixels: Vec<(OutputKind, Vec<Tensor>)>,
}

/// How far a run is, and what it had to lower since it last said so.
#[derive(Clone, Debug)]
pub struct Progress {
    pub frames_done: u64,
    pub frames_total: Option<u64>,
    /// Out-of-memory steps taken since the last call, told as they happen
    /// (the report lists them all again at the end).
    pub steps: Vec<Step>,
}

/// What `--json` reports for one input.
#[derive(Clone, Debug, Serialize)]
pub struct MatteReport {
    pub input: PathBuf,
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub frame_rate: String,
    pub downsample_ratio: f64,
    /// Frames per inference call this run used (RVM's chunk, GVM's frames
    /// per batch), as resolved for its size and device.
    pub chunk: usize,
    /// What was made and how, as one object (`--json`'s `settings`).
    pub settings: SettingsView,
    pub outputs: BTreeMap<OutputKind, PathBuf>,
    /// Out-of-memory steps taken on the way (chunk halvings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ladder: Vec<Step>,
    /// Frames delivered, but not as stored: damage the decoder concealed,
    /// or a change of picture size (scaled to the first frame's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FrameWarning>,
    /// GVM's frame geometry and the settings it ended with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gvm: Option<GvmReport>,
    /// Seconds the encoder's thread spent finishing mattes (edge controls,
    /// colour estimation, despill), when any was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_seconds: Option<f64>,
}

/// A run's settings and options side by side, with the device it ran on.
#[derive(Clone, Debug, Serialize)]
pub struct SettingsView {
    #[serde(flatten)]
    pub settings: MatteSettings,
    #[serde(flatten)]
    pub run: RunOptions,
    pub device: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FrameWarning {
    pub frame: u64,
    /// `damaged` or `resized`.
    pub kind: &'static str,
    pub message: String,
}

impl From<SourceWarning> for FrameWarning {
    fn from(w: SourceWarning) -> Self {
        Self {
            frame: w.frame,
            kind: match w.kind {
                WarningKind::Damaged => "damaged",
                WarningKind::Resized => "resized",
            },
            message: w.message,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GvmReport {
    pub geometry: vmatte_models::gvm::Geometry,
    /// After the out-of-memory ladder, if it lowered anything.
    pub used: crate::settings::GvmOptions,
}

impl MatteReport {
    /// The outputs keyed by kind name, as the job stores keep them.
    pub fn outputs_by_name(&self) -> BTreeMap<String, PathBuf> {
        self.outputs
            .iter()
            .map(|(kind, path)| (kind.to_string(), path.clone()))
            .collect()
    }
}

/// The networks vmatte runs: RVM steps through frames with a recurrent
/// state; GVM mattes windows of frames at once; MatAnyone follows the
/// subject a mask picks, frame by frame, from its memory.
pub enum Model {
    Rvm(Box<MattingNetwork>),
    Gvm(Box<Gvm>),
    MatAnyone(Box<MatAnyoneNet>),
}

impl Model {
    pub fn rvm(&self) -> Option<&MattingNetwork> {
        match self {
            Self::Rvm(m) => Some(m),
            Self::Gvm(_) | Self::MatAnyone(_) => None,
        }
    }
}

/// A loaded model and the device it lives on.
pub struct Network {
    pub model: Model,
    pub device: Device,
}

/// Where a run's mattes come from: a network, or a file given to `finish`.
enum Matter<'a> {
    Net(&'a Network),
    Given(Box<dyn FrameSource>),
}

/// Finishes `source` with the matte read from `matte` (a video or an image
/// folder of the same size and length, gray), into `out_dir` as
/// [`matte_source`] does: the same outputs, no model.
pub fn finish_source(
    source: Box<dyn FrameSource>,
    matte: Box<dyn FrameSource>,
    out: (&Path, &str),
    settings: &MatteSettings,
    run: &RunOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(MatteReport, Staged)> {
    run_source(
        Matter::Given(matte),
        source,
        out,
        settings,
        run,
        on_progress,
    )
}

/// Mattes `source` into `out_dir` as `<stem>.<kind>...`, the outputs
/// complete but still under partial names ([`Staged::publish`] gives them
/// their final ones). The model's recurrent state starts from zeros: every
/// call is a new video.
pub fn matte_source(
    net: &Network,
    source: Box<dyn FrameSource>,
    out: (&Path, &str),
    settings: &MatteSettings,
    run: &RunOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(MatteReport, Staged)> {
    run_source(Matter::Net(net), source, out, settings, run, on_progress)
}

fn run_source(
    matter: Matter<'_>,
    source: Box<dyn FrameSource>,
    (out_dir, stem): (&Path, &str),
    settings: &MatteSettings,
    run: &RunOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(MatteReport, Staged)> {
    let cpu = Device::Cpu;
    let (model, device, mut given) = match matter {
        Matter::Net(net) => (Some(&net.model), &net.device, None),
        Matter::Given(matte) => (None, &cpu, Some(matte)),
    };
    let started = Instant::now();
    settings.validate().map_err(PipelineError::Input)?;
    let mut source = source;
    let info = source.info().clone();
    // Deeper sources reach the model (and deep outputs) undiminished.
    source.set_deep(info.bit_depth > 8);
    source.set_yuv(info.bit_depth <= 8 && run.preprocess.on_device(true));
    let mut matte_turn = 0;
    if let Some(matte) = given.as_mut() {
        matte_turn = check_matte(&info, matte.as_mut(), settings.max_frames)?;
    }
    let gvm_opts = settings.gvm.clone().unwrap_or_default();
    let mut gvm = match model {
        Some(Model::Gvm(g)) => Some(GvmStream::new(
            &**g,
            &gvm_opts,
            (info.height as usize, info.width as usize),
            run.fake_oom,
        )?),
        _ => None,
    };
    let ratio = match (&gvm, model) {
        (Some(s), _) => s.geometry().resized.0 as f64 / f64::from(info.height),
        (None, Some(_)) => settings.downsample_ratio.resolve(info.height, info.width),
        (None, None) => 1.0,
    };
    if matches!(model, Some(Model::Rvm(_))) {
        check_size(&info, ratio)?;
    }
    // Only RVM predicts a foreground colour; GVM's and a given matte's
    // "foreground" is the source picture.
    let predicted = matches!(model, Some(Model::Rvm(_)));
    let colour = settings
        .finish
        .foreground
        .resolve(predicted)
        .map_err(|e| PipelineError::Input(format!("{}: {e}", info.path.display())))?;
    settings
        .finish
        .fits((info.width as usize, info.height as usize))
        .map_err(|e| PipelineError::Input(format!("{}: {e}", info.path.display())))?;
    let finisher = Finisher::plan(
        &settings.finish,
        colour,
        predicted,
        OutputKind::any_colour(&settings.outputs),
    );
    std::fs::create_dir_all(out_dir).map_err(|e| {
        PipelineError::Output(format!(
            "{}: cannot create the output folder ({e}); choose a writable -o folder",
            out_dir.display()
        ))
    })?;
    let writers = settings
        .outputs
        .iter()
        .map(|kind| OutputWriter::create(out_dir, stem, *kind, settings, &info))
        .collect::<Result<Vec<_>>>()?;

    // Finishing works on the host's float planes, so nothing is made into
    // pixels on the device then.
    let placement = match finisher {
        Some(_) => Placement::Cpu,
        None => run.postprocess,
    };
    let post = DevicePost::plan(&writers, settings, placement, device)?;
    let chunk = match &gvm {
        Some(_) => gvm_opts.frames_per_batch,
        None => run
            .chunks
            .for_video(info.height, info.width, device.is_cpu()),
    };
    let frames_total = match (info.frame_count, settings.max_frames) {
        (Some(n), Some(m)) => Some(n.min(m)),
        (n, m) => n.or(m),
    };
    // A background plate is decoded only when a composite will show it.
    let backgrounds = settings
        .outputs
        .contains(&OutputKind::Composite)
        .then(|| Backgrounds::open(&settings.background, info.width, info.height))
        .transpose()?;
    let look = Look {
        premultiplied: settings.premultiplied,
        invert_alpha: settings.invert_alpha,
    };
    let (input_tx, input_rx) = sync_channel(QUEUE_CHUNKS);
    let (matte_tx, matte_rx) = sync_channel(QUEUE_CHUNKS);
    let device_kinds = post.as_ref().map_or(Vec::new(), |p| p.kinds().to_vec());
    let infer = Infer {
        model,
        run,
        post: post.as_ref(),
        info: &info,
        ratio,
        fake_oom: run.fake_oom,
        frames_total,
        keep_src: predicted && finisher.as_ref().is_some_and(Finisher::reads_picture),
        limit: settings.max_frames,
        matte_turn,
    };
    let size = (info.width as usize, info.height as usize);
    let mut ladder = Vec::new();
    let mut warnings = Vec::new();
    let limit = settings.max_frames;
    let finishing = finisher.is_some();
    let (frames, (staged, finish_seconds)) = std::thread::scope(|scope| {
        let fake_panic = run.fake_panic.as_deref();
        let decoder = scope.spawn(move || {
            if fake_panic.is_some_and(|name| source.info().path.file_name() == Some(name.as_ref()))
            {
                panic!("injected by VMATTE_FAKE_PANIC");
            }
            decode_stage(source, chunk, limit, device, input_tx)
        });
        let encoder = scope.spawn(move || {
            let finishing = finisher.map(|f| (f, size));
            encode_stage(
                matte_rx,
                writers,
                backgrounds,
                look,
                device_kinds,
                finishing,
            )
        });
        let mut noted = Noted {
            ladder: &mut ladder,
            warnings: &mut warnings,
        };
        let inferred = match (gvm.as_mut(), given.as_mut()) {
            (Some(stream), _) => infer.run_gvm(stream, input_rx, matte_tx, &mut noted, on_progress),
            (None, None) if matches!(model, Some(Model::MatAnyone(_))) => {
                infer.run_matanyone(settings, input_rx, matte_tx, &mut noted, on_progress)
            }
            (None, Some(matte)) => {
                infer.run_given(matte.as_mut(), input_rx, matte_tx, &mut noted, on_progress)
            }
            (None, None) => infer.run(input_rx, matte_tx, &mut noted, on_progress),
        };
        let encoded = encoder
            .join()
            .unwrap_or_else(|p| Err(panicked("encode", p)));
        let decoded = decoder.join().map_err(|p| panicked("decode", p));
        match (inferred, encoded, decoded) {
            (_, _, Err(e)) => Err(e),
            (Ok(frames), Ok(outputs), _) => Ok((frames, outputs)),
            // Inference stopped because the encoder had failed: its error
            // is the one that explains what happened.
            (Err(PipelineError::StageClosed), Err(e), _) | (Ok(_), Err(e), _) => Err(e),
            (Err(e), ..) => Err(e),
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let outputs = staged.paths();
    let report = MatteReport {
        input: info.path.clone(),
        frames,
        seconds,
        fps: frames as f64 / seconds.max(1e-9),
        width: info.width,
        height: info.height,
        frame_rate: info.frame_rate.to_string(),
        downsample_ratio: ratio,
        chunk,
        settings: SettingsView {
            settings: settings.clone(),
            run: run.clone(),
            device: device_name(device),
        },
        outputs,
        ladder,
        warnings,
        gvm: gvm.map(|s| GvmReport {
            geometry: s.geometry(),
            used: s.options().clone(),
        }),
        finish_seconds: finishing.then_some(finish_seconds),
    };
    Ok((report, staged))
}

/// Tells a GVM ladder step as it is taken, and keeps it for the report.
fn tell(
    step: &Step,
    told: &mut Vec<Step>,
    (frames_done, frames_total): (u64, Option<u64>),
    on_progress: &mut dyn FnMut(Progress),
) {
    told.push(step.clone());
    on_progress(Progress {
        frames_done,
        frames_total,
        steps: vec![step.clone()],
    })
}

/// A stage thread's panic as the job's error: what it said.
fn panicked(stage: &str, payload: Box<dyn std::any::Any + Send>) -> PipelineError {
    let what = crate::panic_text(&*payload);
    PipelineError::Internal(format!("the {stage} stage panicked: {what}"))
}

/// How reports name a device: `cpu`, or `cuda:N`.
fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// A given matte must show the video's picture size (as players turn
/// both), and be as long where both are image folders (whose lengths are
/// exact; a video's may be estimated, so its end is checked as it comes).
/// Its frames are read as RGB, 16-bit when it is deeper than 8 bits.
/// Returns the clockwise turn that brings its frames to the video's stored
/// orientation: a matte written upright by vmatte for a phone video is
/// turned back.
fn check_matte(
    info: &VideoInfo,
    matte: &mut dyn FrameSource,
    max_frames: Option<u64>,
) -> Result<i32> {
    let m = matte.info().clone();
    matte.set_deep(m.bit_depth > 8);
    matte.set_yuv(false);
    let turn = (m.rotation - info.rotation).rem_euclid(360);
    let turned = if turn % 180 == 90 {
        (m.height, m.width)
    } else {
        (m.width, m.height)
    };
    if turned != (info.width, info.height) {
        return Err(PipelineError::Input(format!(
            "{}: the matte ({}) is {}x{} but {} is {}x{}; give a matte of the video's size",
            m.path.display(),
            Setting::Matte,
            m.width,
            m.height,
            info.path.display(),
            info.width,
            info.height
        )));
    }
    let exact = m.path.is_dir() && info.path.is_dir();
    if let (Some(a), Some(b), None, true) = (m.frame_count, info.frame_count, max_frames, exact) {
        if a != b {
            return Err(PipelineError::Input(format!(
                "{}: the matte has {a} frames but {} has {b}; give a matte as long as the video",
                m.path.display(),
                info.path.display()
            )));
        }
    }
    Ok(turn)
}

fn check_size(info: &VideoInfo, ratio: f64) -> Result<()> {
    match rvm_size_problem(info.width, info.height, ratio) {
        Some(problem) => Err(PipelineError::Input(format!(
            "{}: {problem}",
            info.path.display()
        ))),
        None => Ok(()),
    }
}

/// Why RVM cannot matte `width x height` frames at `ratio`, if it cannot:
/// the backbone halves the downsampled frame four times, and below a few
/// pixels there is nothing left to see (its shapes would underflow). Frames
/// that small even at full size are too small whatever the ratio.
pub fn rvm_size_problem(width: u32, height: u32, ratio: f64) -> Option<String> {
    let short = f64::from(height.min(width));
    if short < 4.0 {
        return Some(format!(
            "{width}x{height} frames are too small to matte (at least 4 px on the short side); \
             use a larger video"
        ));
    }
    if (short * ratio).floor() < 4.0 {
        return Some(format!(
            "downsample ratio {ratio} shrinks {width}x{height} to under 4 px; use a larger {} or {}",
            Setting::DownsampleRatio,
            Setting::DownsampleRatio.with("auto")
        ));
    }
    None
}

fn decode_stage(
    mut source: Box<dyn FrameSource>,
    chunk: usize,
    limit: Option<u64>,
    device: &Device,
    tx: SyncSender<Result<InputChunk>>,
) {
    let (h, w) = {
        let info = source.info();
        (info.height as usize, info.width as usize)
    };
    let mut read = 0u64;
    loop {
        let mut frames = Vec::with_capacity(chunk);
        let mut decoded = Vec::with_capacity(chunk);
        while frames.len() < chunk {
            if limit.is_some_and(|l| read >= l) {
                break;
            }
            read += 1;
            match source.next_frame() {
                Ok(Some(frame)) => {
                    frames.push(FrameMeta {
                        index: frame.index,
                        pts: frame.pts,
                    });
                    decoded.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            }
        }
        let last = frames.len() < chunk;
        if !frames.is_empty() {
            let warnings = source.take_warnings();
            let src = upload(&decoded, h, w, device).map(|src| InputChunk {
                frames,
                src,
                warnings,
            });
            let failed = src.is_err();
            if tx.send(src).is_err() || failed {
                return; // inference stopped, or told why this one failed
            }
        }
        if last {
            return;
        }
    }
}

/// A chunk's frames as `[T, 3, H, W]` f32 RGB on `device`: RGB frames made
/// planar on the CPU, 4:2:0 planes converted on the device. Runs of each
/// kind are joined in order (a stream changes kind only if its pixel format
/// changes mid-way).
fn upload(decoded: &[vmatte_media::Frame], h: usize, w: usize, device: &Device) -> Result<Tensor> {
    let mut parts = Vec::new();
    let mut rest = decoded;
    while let Some(first) = rest.first() {
        let yuv = first.yuv.is_some();
        let run = rest.iter().take_while(|f| f.yuv.is_some() == yuv).count();
        let (these, after) = rest.split_at(run);
        parts.push(if yuv {
            let planes: Vec<_> = these.iter().filter_map(|f| f.yuv.as_ref()).collect();
            yuv420_to_rgb(&planes, w, h, device)?
        } else {
            // Sized once: growing it frame by frame would copy it each time.
            let mut planar = Vec::with_capacity(run * 3 * h * w);
            for f in these {
                push_planar(f, &mut planar);
            }
            Tensor::from_vec(planar, (run, 3, h, w), &Device::Cpu)?.to_device(device)?
        });
        rest = after;
    }
    Ok(if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Tensor::cat(&parts, 0)?
    })
}

enum ToEncoder {
    Matte(MatteChunk),
    /// Every frame was inferred: the outputs may be finalised.
    End,
}

/// What the inference stage notes on the way: out-of-memory steps and the
/// source's warnings.
struct Noted<'a> {
    ladder: &'a mut Vec<Step>,
    warnings: &'a mut Vec<FrameWarning>,
}

/// The inference stage's fixed inputs.
struct Infer<'a> {
    /// None when the matte is given.
    model: Option<&'a Model>,
    run: &'a RunOptions,
    post: Option<&'a DevicePost>,
    info: &'a VideoInfo,
    ratio: f64,
    fake_oom: Option<FakeOom>,
    frames_total: Option<u64>,
    /// Send the source pictures along with RVM's mattes (finishing needs
    /// them).
    keep_src: bool,
    /// `max_frames`: the run stops there, whatever follows.
    limit: Option<u64>,
    /// Clockwise degrees a given matte's frames are turned by first.
    matte_turn: i32,
}

impl Infer<'_> {
    /// Runs every chunk through the model, carrying the recurrent state.
    /// A chunk that runs out of memory is redone in halves from the same
    /// state, and later chunks keep the smaller size: the video goes on
    /// where it was (each halving is pushed to `ladder`). Out of memory with
    /// one frame is [`PipelineError::OutOfMemory`].
    fn run(
        &self,
        rx: Receiver<Result<InputChunk>>,
        tx: SyncSender<ToEncoder>,
        noted: &mut Noted<'_>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let mut state = RecurrentState::default();
        let mut done = 0u64;
        let mut cap = usize::MAX;
        let mut fresh = Vec::new();
        for chunk in rx {
            let (frames, src) = self.take(chunk, noted)?;
            let t = frames.len();
            let (mut fgr, mut pha) = (Vec::new(), Vec::new());
            let mut pixels: Vec<(OutputKind, Vec<Tensor>)> = Vec::new();
            let mut start = 0;
            while start < t {
                let len = (t - start).min(cap);
                let part = if len == t {
                    src.clone()
                } else {
                    src.narrow(0, start, len)?
                };
                let before = state.clone();
                match self.forward(&part, &mut state) {
                    Ok(matte) => {
                        if let Some(post) = self.post {
                            for (kind, px) in post.pixels(&matte.fgr, &matte.pha)? {
                                match pixels.iter_mut().find(|(k, _)| *k == kind) {
                                    Some((_, pieces)) => pieces.push(px),
                                    None => pixels.push((kind, vec![px])),
                                }
                            }
                        }
                        fgr.push(matte.fgr);
                        pha.push(matte.pha);
                        start += len;
                    }
                    Err(PipelineError::OutOfMemory { cause, .. }) => {
                        state = before;
                        let frame = frames[start].index;
                        if len == 1 {
                            return Err(PipelineError::OutOfMemory {
                                message: format!(
                                    "{}: out of GPU memory at frame {frame} even one frame at a \
                                     time ({cause}); lower {}, use {}, or {}",
                                    self.info.path.display(),
                                    Setting::DownsampleRatio,
                                    Setting::Dtype.with("f16"),
                                    Setting::Device.with("cpu")
                                ),
                                cause,
                            });
                        }
                        cap = len / 2;
                        let step = Step::HalveChunk {
                            from: len,
                            to: cap,
                            frame,
                        };
                        noted.ladder.push(step.clone());
                        fresh.push(step);
                    }
                    Err(e) => return Err(e),
                }
            }
            let out = MatteChunk {
                fgr,
                pha,
                pixels,
                frames,
                src: self.keep_src.then_some(src),
            };
            tx.send(ToEncoder::Matte(out))
                .map_err(|_| PipelineError::StageClosed)?;
            done += t as u64;
            on_progress(Progress {
                frames_done: done,
                frames_total: self.frames_total,
                steps: std::mem::take(&mut fresh),
            });
        }
        self.end(done, &tx)
    }

    /// A chunk from the decode stage, its warnings noted: unless the run
    /// was stopped meanwhile.
    fn take(
        &self,
        chunk: Result<InputChunk>,
        noted: &mut Noted<'_>,
    ) -> Result<(Vec<FrameMeta>, Tensor)> {
        if self.run.cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let InputChunk {
            frames,
            src,
            warnings,
        } = chunk?;
        self.note(warnings, noted)?;
        Ok((frames, src))
    }

    /// Keeps the source's warnings for the report; with `strict`, damage
    /// the decoder concealed fails the run instead.
    fn note(&self, warnings: Vec<SourceWarning>, noted: &mut Noted<'_>) -> Result<()> {
        for w in warnings {
            if self.run.strict && w.kind == WarningKind::Damaged {
                return Err(PipelineError::Input(format!(
                    "{}: frame {}: {} (strict: damaged frames fail the video)",
                    self.info.path.display(),
                    w.frame,
                    w.message
                )));
            }
            noted.warnings.push(w.into());
        }
        Ok(())
    }

    fn end(&self, done: u64, tx: &SyncSender<ToEncoder>) -> Result<u64> {
        if done == 0 {
            return Err(PipelineError::Input(format!(
                "{}: no frames could be decoded; check that the file plays",
                self.info.path.display()
            )));
        }
        tx.send(ToEncoder::End)
            .map_err(|_| PipelineError::StageClosed)?;
        Ok(done)
    }

    /// GVM: frames go into the windowed stream one by one, and come out
    /// with their alpha once their window settled (later by up to a window
    /// span). GVM predicts alpha only: the foreground is the source colour.
    fn run_gvm(
        &self,
        stream: &mut GvmStream<&Gvm>,
        rx: Receiver<Result<InputChunk>>,
        tx: SyncSender<ToEncoder>,
        noted: &mut Noted<'_>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let mut waiting: std::collections::VecDeque<(FrameMeta, Tensor)> = Default::default();
        let mut done = 0u64;
        let frames_total = self.frames_total;
        // Steps are told as they are taken, also in a window that fails in
        // the end; they are the report's ladder too.
        let mut told = Vec::new();
        let result = (|| -> Result<()> {
            for chunk in rx {
                let (frames, src) = self.take(chunk, noted)?;
                // A frame waits for its alpha up to a window span (times the
                // interpolation step): on the host, not on the GPU keeping
                // its chunk alive there. One transfer per chunk; the waiting
                // frames are views of it.
                let host = src.to_device(&Device::Cpu)?;
                for (t, meta) in frames.iter().enumerate() {
                    let frame = src.narrow(0, t, 1)?;
                    waiting.push_back((*meta, host.narrow(0, t, 1)?));
                    let out = stream.push(&frame, &mut |step| {
                        tell(step, &mut told, (done, frames_total), on_progress)
                    })?;
                    self.emit(out, &mut waiting, &tx, &mut done, on_progress)?;
                }
            }
            let out = stream
                .finish(&mut |step| tell(step, &mut told, (done, frames_total), on_progress))?;
            self.emit(out, &mut waiting, &tx, &mut done, on_progress)
        })();
        noted.ladder.extend(told);
        let path = self.info.path.display().to_string();
        result.map_err(|e| match e {
            PipelineError::OutOfMemory { cause, message } if message == cause.to_string() => {
                PipelineError::OutOfMemory {
                    message: format!(
                        "{path}: out of GPU memory ({cause}); use a lower {} or {}",
                        Setting::MaxResolution,
                        Setting::Device.with("cpu")
                    ),
                    cause,
                }
            }
            // The ladder's own last word names the frame; the file too.
            PipelineError::OutOfMemory { cause, message } => PipelineError::OutOfMemory {
                message: format!("{path}: {message}"),
                cause,
            },
            e => e,
        })?;
        self.end(done, &tx)
    }

    /// Sends the frames whose alphas came out, with their source colour
    /// (GVM predicts alpha only), to the encoder.
    fn emit(
        &self,
        alphas: Vec<Tensor>,
        waiting: &mut std::collections::VecDeque<(FrameMeta, Tensor)>,
        tx: &SyncSender<ToEncoder>,
        done: &mut u64,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        if alphas.is_empty() {
            return Ok(());
        }
        let (frames, srcs): (Vec<_>, Vec<_>) = waiting.drain(..alphas.len()).unzip();
        // The waiting frames were kept on the host; they join their alphas
        // on the model's device.
        let fgr = Tensor::cat(&srcs, 0)?.to_device(alphas[0].device())?;
        let pha = Tensor::cat(&alphas, 0)?;
        self.send_alpha(frames, fgr, pha, tx, done, on_progress)
    }

    /// Sends frames of a model that predicts alpha only, with `fgr` as
    /// their colour, to the encoder, and tells the progress.
    fn send_alpha(
        &self,
        frames: Vec<FrameMeta>,
        fgr: Tensor,
        pha: Tensor,
        tx: &SyncSender<ToEncoder>,
        done: &mut u64,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let mut pixels = Vec::new();
        if let Some(post) = self.post {
            for (kind, px) in post.pixels(&fgr, &pha)? {
                pixels.push((kind, vec![px]));
            }
        }
        *done += frames.len() as u64;
        tx.send(ToEncoder::Matte(MatteChunk {
            frames,
            fgr: vec![fgr],
            pha: vec![pha],
            pixels,
            src: None,
        }))
        .map_err(|_| PipelineError::StageClosed)?;
        on_progress(Progress {
            frames_done: *done,
            frames_total: self.frames_total,
            steps: Vec::new(),
        });
        Ok(())
    }

    /// MatAnyone: each frame in turn through the session, its alpha with
    /// the source colour (MatAnyone predicts alpha only) to the encoder a
    /// chunk at a time.
    fn run_matanyone(
        &self,
        settings: &MatteSettings,
        rx: Receiver<Result<InputChunk>>,
        tx: SyncSender<ToEncoder>,
        noted: &mut Noted<'_>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let Some(Model::MatAnyone(net)) = self.model else {
            return Err(PipelineError::Internal(
                "MatAnyone chunks run MatAnyone".into(),
            ));
        };
        let opts = settings.matanyone.clone().unwrap_or_default();
        let size = (self.info.height as usize, self.info.width as usize);
        let mut run = crate::matanyone::Run::new(
            net,
            &opts,
            &self.info.path,
            size,
            self.ratio,
            self.info.rotation,
        );
        let mut done = 0u64;
        for chunk in rx {
            let (frames, src) = self.take(chunk, noted)?;
            let mut alphas = Vec::with_capacity(frames.len());
            for t in 0..frames.len() {
                alphas.push(run.next(&src.narrow(0, t, 1)?)?);
                if self.run.cancelled() {
                    return Err(PipelineError::Cancelled);
                }
            }
            let pha = Tensor::cat(&alphas, 0)?;
            self.send_alpha(frames, src, pha, &tx, &mut done, on_progress)?;
        }
        self.end(done, &tx)
    }

    /// A given matte: each chunk of source frames meets the same frames of
    /// the matte (as gray), and both go on as they are; the source is the
    /// foreground colour.
    fn run_given(
        &self,
        matte: &mut dyn FrameSource,
        rx: Receiver<Result<InputChunk>>,
        tx: SyncSender<ToEncoder>,
        noted: &mut Noted<'_>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let (h, w) = (self.info.height as usize, self.info.width as usize);
        let size = (matte.info().width as usize, matte.info().height as usize);
        let mut turned = Vec::new();
        let mut done = 0u64;
        for chunk in rx {
            let (frames, src) = self.take(chunk, noted)?;
            let mut planes = Vec::with_capacity(frames.len() * h * w);
            for _ in &frames {
                match matte.next_frame()? {
                    Some(frame) if self.matte_turn != 0 => {
                        let bpp = if frame.deep { 6 } else { 3 };
                        rotate(&frame.rgb, size, bpp, self.matte_turn, &mut turned);
                        push_gray(&turned, frame.deep, &mut planes)
                    }
                    Some(frame) => push_gray(&frame.rgb, frame.deep, &mut planes),
                    None => {
                        return Err(PipelineError::Input(format!(
                            "{}: the matte ends after {} frames but {} goes on; give a matte \
                             as long as the video",
                            matte.info().path.display(),
                            done + (planes.len() / (h * w)) as u64,
                            self.info.path.display()
                        )))
                    }
                }
            }
            // The matte's own damage counts as the video's: a warning, or
            // with `strict` the end of the run; its message names the matte.
            let path = matte.info().path.display().to_string();
            let damage = matte.take_warnings().into_iter().map(|mut w| {
                w.message = format!("in the matte {path}: {}", w.message);
                w
            });
            self.note(damage.collect(), noted)?;
            let pha = Tensor::from_vec(planes, (frames.len(), 1, h, w), &Device::Cpu)?;
            done += frames.len() as u64;
            tx.send(ToEncoder::Matte(MatteChunk {
                frames,
                fgr: vec![src],
                pha: vec![pha],
                pixels: Vec::new(),
                src: None,
            }))
            .map_err(|_| PipelineError::StageClosed)?;
            on_progress(Progress {
                frames_done: done,
                frames_total: self.frames_total,
                steps: Vec::new(),
            });
        }
        // A matte longer than the video is as wrong as a shorter one, unless
        // only the first frames were asked for.
        if self.limit != Some(done) && matte.next_frame()?.is_some() {
            return Err(PipelineError::Input(format!(
                "{}: the matte goes on after the {done} frames of {}; give a matte as long \
                 as the video",
                matte.info().path.display(),
                self.info.path.display()
            )));
        }
        self.end(done, &tx)
    }

    fn forward(
        &self,
        src: &Tensor,
        state: &mut RecurrentState,
    ) -> Result<vmatte_models::rvm::Matte> {
        if let Some(fake) = self.fake_oom {
            if fake.fails(src.dim(0)?) {
                return Err(PipelineError::oom(OutOfMemory::Injected));
            }
        }
        let model = self
            .model
            .and_then(Model::rvm)
            .expect("RVM chunks run an RVM model");
        Ok(model.forward(src, state, self.ratio)?)
    }
}

/// Every `H x W` plane of the pieces of one output (`[T, C, H, W]` each), in
/// order, borrowed from their storage; `None` unless every piece is CPU f32
/// with contiguous planes.
fn cpu_planes<'a, G>(pieces: &'a [(G, &Layout)]) -> Option<Vec<&'a [f32]>>
where
    G: std::ops::Deref<Target = Storage>,
{
    let mut planes = Vec::new();
    for (storage, layout) in pieces {
        let (Storage::Cpu(CpuStorage::F32(v)), [t, c, h, w], [st, sc, sh, 1]) =
            (&**storage, layout.dims(), layout.stride())
        else {
            return None;
        };
        if sh != w {
            return None;
        }
        for i in 0..*t {
            for j in 0..*c {
                let at = layout.start_offset() + i * st + j * sc;
                planes.push(&v[at..at + h * w]);
            }
        }
    }
    Some(planes)
}

/// The pieces of one output, downloaded as one f32 buffer. CPU tensors are
/// copied once, plane by plane, from their storage: `fgr` and `pha` are
/// views into the model's 4-channel output, and making them contiguous
/// first would cost a second frame-sized copy.
fn to_host(pieces: &[Tensor]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(pieces.iter().map(Tensor::elem_count).sum());
    for x in pieces {
        let x = x.to_dtype(candle_core::DType::F32)?;
        let (storage, layout) = x.storage_and_layout();
        // `[T, C, H, W]` whose planes are contiguous: one copy per plane.
        if let (Storage::Cpu(CpuStorage::F32(v)), [t, c, h, w], [st, sc, sh, 1]) =
            (&*storage, layout.dims(), layout.stride())
        {
            if *sh == *w {
                let plane = h * w;
                for i in 0..*t {
                    for j in 0..*c {
                        let at = layout.start_offset() + i * st + j * sc;
                        out.extend_from_slice(&v[at..at + plane]);
                    }
                }
                continue;
            }
        }
        drop(storage);
        out.extend(x.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// How the matte is written.
#[derive(Clone, Copy)]
struct Look {
    premultiplied: bool,
    invert_alpha: bool,
}

/// Finishes every output, their encoders' flushes at once. Each flush
/// encodes the frames its encoder's lookahead still holds (x264's 40 at
/// its defaults), on that encoder's threads; one after another, they left
/// a core idle through a run's last half second.
fn finish_together(mut writers: Vec<OutputWriter>) -> Result<Staged> {
    std::thread::scope(|scope| {
        let flushes: Vec<_> = writers
            .iter_mut()
            .map(|w| scope.spawn(move || w.flush()))
            .collect();
        // Every flush is joined before the first error is returned.
        let done: Vec<_> = flushes.into_iter().map(|f| f.join()).collect();
        done.into_iter()
            .map(|d| d.unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<()>>>()
    })?;
    writers.into_iter().map(OutputWriter::finish).collect()
}

fn encode_stage(
    rx: Receiver<ToEncoder>,
    mut writers: Vec<OutputWriter>,
    mut backgrounds: Option<Backgrounds>,
    look: Look,
    device_kinds: Vec<OutputKind>,
    mut finishing: Option<(Finisher, (usize, usize))>,
) -> Result<(Staged, f64)> {
    let mut finishing_time = std::time::Duration::ZERO;
    // The float outputs cross to the host only when some output needs them.
    let need_floats = writers.iter().any(|w| !device_kinds.contains(&w.kind()));
    let mut pixels = Vec::new();
    for message in rx {
        let chunk = match message {
            ToEncoder::Matte(chunk) => chunk,
            ToEncoder::End => return Ok((finish_together(writers)?, finishing_time.as_secs_f64())),
        };
        // The planes are read where the model left them when they are CPU
        // f32 with contiguous planes (RVM's outputs are views of one
        // tensor), else downloaded once.
        let fgr_storage: Vec<_> = chunk.fgr.iter().map(Tensor::storage_and_layout).collect();
        let pha_storage: Vec<_> = chunk.pha.iter().map(Tensor::storage_and_layout).collect();
        let downloaded;
        let (fgr, pha) = match (
            need_floats,
            cpu_planes(&fgr_storage),
            cpu_planes(&pha_storage),
        ) {
            (false, ..) => (Vec::new(), Vec::new()),
            (true, Some(fgr), Some(pha)) => (fgr, pha),
            (true, ..) => {
                downloaded = (to_host(&chunk.fgr)?, to_host(&chunk.pha)?);
                let plane = chunk.pha[0].dims().iter().skip(2).product::<usize>().max(1);
                (
                    downloaded.0.chunks(plane).collect(),
                    downloaded.1.chunks(plane).collect(),
                )
            }
        };
        // The pictures, for finishing, where they are not `fgr` already.
        let src = match (&chunk.src, &finishing) {
            (Some(src), Some(_)) => Some(to_host(std::slice::from_ref(src))?),
            _ => None,
        };
        let src: Option<Vec<&[f32]>> = src.as_ref().map(|v| {
            v.chunks(pha.first().map_or(1, |p| p.len().max(1)))
                .collect()
        });
        let mut ready = Vec::with_capacity(chunk.pixels.len());
        for (kind, pieces) in &chunk.pixels {
            let mut bytes = Vec::new();
            for p in pieces {
                bytes.extend(p.flatten_all()?.to_vec1::<u8>()?);
            }
            ready.push((*kind, bytes));
        }
        let frames = chunk.frames.len();
        for (i, meta) in chunk.frames.iter().enumerate() {
            // Without float planes (every output came from the device)
            // there is no frame to read; no writer below asks for one.
            let frame = need_floats.then(|| FramePixels {
                fgr: [fgr[3 * i], fgr[3 * i + 1], fgr[3 * i + 2]],
                pha: pha[i],
            });
            let frame = match (frame, finishing.as_mut()) {
                (Some(given), Some((finisher, size))) => {
                    let picture = match &src {
                        Some(s) => [s[3 * i], s[3 * i + 1], s[3 * i + 2]],
                        None => given.fgr,
                    };
                    let started = Instant::now();
                    let finished = finisher.frame(picture, given.fgr, given.pha, *size);
                    finishing_time += started.elapsed();
                    Some(finished)
                }
                (frame, _) => frame,
            };
            // One background picture per frame, so a background video
            // stays in step with the clip.
            let backdrop = match backgrounds.as_mut() {
                Some(b) => Some(b.next_backdrop()?),
                None => None,
            };
            for writer in &mut writers {
                if let Some((_, bytes)) = ready.iter().find(|(k, _)| *k == writer.kind()) {
                    let len = bytes.len() / frames;
                    writer.write(meta.index, meta.pts, &bytes[i * len..(i + 1) * len])?;
                    continue;
                }
                let depth = writer.depth();
                let frame = frame
                    .as_ref()
                    .expect("float planes come down when a host output needs them");
                match writer.kind() {
                    OutputKind::Composite => {
                        frame.composite(backdrop.expect("composites have one"), depth, &mut pixels)
                    }
                    OutputKind::Alpha => frame.alpha(depth, look.invert_alpha, &mut pixels),
                    OutputKind::Foreground => frame.foreground(depth, &mut pixels),
                    OutputKind::Rgba => {
                        let premultiplied = look.premultiplied && !writer.premultiplies();
                        frame.rgba(depth, premultiplied, look.invert_alpha, &mut pixels)
                    }
                }
                writer.write(meta.index, meta.pts, &pixels)?;
            }
        }
    }
    // The queue closed without `End`: inference failed. Dropping the writers
    // deletes their partial files.
    Err(PipelineError::StageClosed)
}
