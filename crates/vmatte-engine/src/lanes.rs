//! One device's share of a run: how many videos it mattes at once (lowered
//! by the out-of-memory ladder), the chunk planned for it, and its models,
//! each loaded once by the first stream that needs it and shared.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vmatte_gpu::{ladder, DeviceSpec, Step};
use vmatte_pipeline::{Chunks, GvmOptions, MatteSettings, Network, Precision};

use crate::load::{load, HwDecode, HwEncode, LoadAt, ModelRef};
use crate::sync::lock;

/// What a lane is asked to run.
#[derive(Clone, Debug)]
pub struct LanePlan {
    pub device: DeviceSpec,
    /// Videos at once on this device.
    pub streams: usize,
    /// The chunk planned from the device's memory, in place of each job's.
    pub chunks: Option<Chunks>,
}

impl LanePlan {
    /// The lane a memory plan gives `device` (its streams and chunk), or
    /// without one (the CPU, no NVML) the `given` streams, else one, and
    /// each job's own chunk.
    pub fn of(device: DeviceSpec, plan: Option<vmatte_gpu::Plan>, given: Option<usize>) -> Self {
        match plan {
            Some(plan) => Self {
                device,
                streams: plan.streams,
                chunks: Some(Chunks::fixed(plan.seq_chunk)),
            },
            None => Self {
                device,
                streams: given.unwrap_or(1),
                chunks: None,
            },
        }
    }
}

/// A model as loaded: which weights, at which precision, with which LoRA.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ModelKey {
    model: ModelRef,
    precision: Precision,
    lora: Option<String>,
}

/// A model once loaded. Only a success is kept: a load that failed (out
/// of memory while other jobs held the device, weights being installed)
/// is tried again by the next job that asks.
type Loaded = Arc<Mutex<Option<Arc<Network>>>>;

pub struct Lane {
    pub device: DeviceSpec,
    pub streams: AtomicUsize,
    pub chunks: Option<Chunks>,
    models: Mutex<HashMap<ModelKey, Loaded>>,
}

impl Lane {
    pub fn new(plan: &LanePlan) -> Self {
        Self {
            device: plan.device,
            streams: AtomicUsize::new(plan.streams.max(1)),
            chunks: plan.chunks.clone(),
            models: Mutex::new(HashMap::new()),
        }
    }

    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// The model `settings` names at `precision`, loaded on first use and
    /// shared; a load that fails fails the job that asked, with its reason.
    pub fn model(
        &self,
        settings: &MatteSettings,
        precision: Precision,
        (model_dir, (hwdec, hwenc)): (Option<&PathBuf>, (HwDecode, HwEncode)),
    ) -> Result<Arc<Network>, String> {
        let key = ModelKey {
            model: ModelRef::of(settings),
            precision,
            lora: settings.gvm.as_ref().map(|g| g.lora.clone()),
        };
        let slot = lock(&self.models).entry(key.clone()).or_default().clone();
        // Loading holds this model's slot only: other models stay available
        // while this one loads, and two jobs never load one model twice.
        let mut loaded = lock(&slot);
        if let Some(net) = loaded.as_ref() {
            return Ok(net.clone());
        }
        let at = LoadAt {
            model_dir: model_dir.map(PathBuf::as_path),
            device: self.device,
            precision,
            hwdec,
            hwenc,
        };
        let gvm: Option<&GvmOptions> = settings.gvm.as_ref();
        let net = std::panic::catch_unwind(|| load(&key.model, gvm, &at))
            .map_err(|p| {
                format!(
                    "internal error while loading the model: {}; please report it",
                    vmatte_pipeline::panic_text(&*p)
                )
            })?
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
        *loaded = Some(net.clone());
        Ok(net)
    }

    /// The ladder's next step for a job of this lane that ran out of memory
    /// one frame at a time. Taken atomically: of two jobs failing together,
    /// one halves the streams and the other, seeing the halved count, goes
    /// on to the CPU.
    pub fn step_down(&self) -> Step {
        let mut step = Step::Cpu;
        let _ = self
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                step = ladder::next_for_job(n);
                match step {
                    Step::HalveStreams { to, .. } => Some(to),
                    _ => None,
                }
            });
        step
    }
}
