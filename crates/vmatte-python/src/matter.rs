//! `vmatte.Matter`: frames in, alpha and foreground out, the model's state
//! kept between calls.
//!
//! ```text
//! numpy (T, H, W, 3) u8|f32 ──(one copy, GIL held)──► [T, 3, H, W] f32 in [0, 1]
//!   ─► RVM in chunks of `seq_chunk`, the recurrent state carried   (GIL released)
//!   ─► or GVM's window stream: alphas as their windows settle
//!   ─► the output tensors themselves, read in place by numpy as (T, H, W) and
//!      (T, H, W, 3) f32 (joined once when the step took several chunks)
//! ```
//! Invariant: between calls the state belongs to the last frame given, at
//! the size of the frames so far; a call that fails or is interrupted
//! leaves it as it was before the call.

use std::str::FromStr;
use std::sync::Arc;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rayon::prelude::*;
use vmatte_engine::load::{load, HwDecode, HwEncode, LoadAt, ModelRef};
use vmatte_gpu::DeviceSpec;
use vmatte_models::gvm::Gvm;
use vmatte_models::rvm::{MattingNetwork, RecurrentState};
use vmatte_pipeline::gvm::GvmStream;
use vmatte_pipeline::{rvm_size_problem, DownsampleRatio, GvmOptions, Model, Precision};

use crate::error;

enum Engine {
    Rvm {
        net: Box<MattingNetwork>,
        state: RecurrentState,
        ratio: DownsampleRatio,
        seq_chunk: usize,
    },
    Gvm {
        model: Arc<Gvm>,
        opts: GvmOptions,
        /// Made at the first frame, whose size it needs.
        stream: Option<Box<GvmStream<Arc<Gvm>>>>,
    },
}

#[pyclass(module = "vmatte._native")]
pub struct Matter {
    engine: Engine,
    device: Device,
    /// (H, W) of the frames since the last reset.
    size: Option<(usize, usize)>,
}

/// Frames as the model takes them, and how many.
struct Frames {
    planar: Vec<f32>,
    t: usize,
    h: usize,
    w: usize,
}

fn bad(py: Python<'_>, message: String) -> PyErr {
    error(py, "OptionError", message)
}

fn run_error(py: Python<'_>, e: impl std::fmt::Display) -> PyErr {
    error(py, "RunError", e.to_string())
}

#[pymethods]
impl Matter {
    // The Python class's keywords, one for one.
    #[allow(clippy::too_many_arguments)]
    #[new]
    #[pyo3(signature = (model, device, downsample_ratio, dtype, model_dir, seq_chunk, gvm))]
    fn new(
        py: Python<'_>,
        model: &str,
        device: &str,
        downsample_ratio: &str,
        dtype: &str,
        model_dir: Option<std::path::PathBuf>,
        seq_chunk: Option<usize>,
        gvm: &Bound<'_, PyDict>,
    ) -> PyResult<Self> {
        let spec = DeviceSpec::from_str(device).map_err(|e| bad(py, e))?;
        let precision = Precision::from_str(dtype).map_err(|e| bad(py, e))?;
        let ratio = DownsampleRatio::from_str(downsample_ratio)
            .map_err(|e| bad(py, format!("downsample_ratio: {e}")))?;
        if seq_chunk == Some(0) {
            return Err(bad(py, "seq_chunk must be at least 1".into()));
        }
        let model_ref = if model.contains(std::path::MAIN_SEPARATOR) {
            ModelRef::Files(std::path::PathBuf::from(model))
        } else {
            ModelRef::Installed(model.to_string())
        };
        let mut opts = GvmOptions::default();
        for (key, value) in gvm.iter() {
            let key: String = key.extract()?;
            let slot = match key.as_str() {
                "frames_per_batch" => &mut opts.frames_per_batch,
                "overlap_frames" => &mut opts.overlap_frames,
                "interp_frames" => &mut opts.interp_frames,
                "denoise_steps" => &mut opts.denoise_steps,
                "decode_chunk" => &mut opts.decode_chunk,
                "size" => &mut opts.size,
                "max_resolution" => &mut opts.max_resolution,
                "ensemble" => &mut opts.ensemble,
                "lora" => {
                    opts.lora = value.extract()?;
                    continue;
                }
                _ => return Err(bad(py, format!("'{key}' is not a GVM option"))),
            };
            *slot = value
                .extract()
                .map_err(|_| bad(py, format!("{key} must be a whole number, not {value}")))?;
        }
        let is_gvm = model_ref.is_gvm();
        if is_gvm {
            opts.validate().map_err(|e| bad(py, e))?;
        } else if !gvm.is_empty() {
            return Err(bad(
                py,
                format!("{model} is not GVM: its window options do not apply"),
            ));
        }
        let at = LoadAt {
            model_dir: model_dir.as_deref(),
            device: spec,
            precision,
            hwdec: HwDecode::Cpu,
            hwenc: HwEncode::Auto,
        };
        let net = py
            .detach(|| load(&model_ref, is_gvm.then_some(&opts), &at))
            .map_err(|e| error(py, "ModelError", e.to_string()))?;
        let default_chunk = if net.device.is_cpu() { 2 } else { 4 };
        let engine = match net.model {
            Model::Rvm(net) => Engine::Rvm {
                net,
                state: RecurrentState::default(),
                ratio,
                seq_chunk: seq_chunk.unwrap_or(default_chunk),
            },
            Model::Gvm(model) => Engine::Gvm {
                model: Arc::from(model),
                opts,
                stream: None,
            },
            Model::MatAnyone(_) => {
                return Err(error(
                    py,
                    "ModelError",
                    "Matter steps RVM and GVM; run MatAnyone with vmatte.matte(inputs, out, \
                     model=\"matanyone\", mask=...)"
                        .into(),
                ))
            }
        };
        Ok(Self {
            engine,
            device: net.device,
            size: None,
        })
    }

    /// Mattes the next frames (a C-contiguous numpy array `(T, H, W, 3)`,
    /// uint8 or float32 in [0, 1]): `(alpha, fgr, n, H, W)`, alpha `n*H*W`
    /// and fgr `n*H*W*3` float32 in bytearrays (`fgr` None for GVM, whose
    /// `n` frames are those whose windows settled).
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        frames: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let input = read_frames(py, frames)?;
        let (t, h, w) = (input.t, input.h, input.w);
        if let Some(size) = self.size {
            if size != (h, w) {
                return Err(error(
                    py,
                    "FrameError",
                    format!(
                        "frames changed size from {}x{} to {w}x{h}; call reset() at a cut \
                         before frames of another size",
                        size.1, size.0
                    ),
                ));
            }
        }
        let src = Tensor::from_vec(input.planar, (t, 3, h, w), &Device::Cpu)
            .and_then(|x| x.to_device(&self.device))
            .map_err(|e| run_error(py, e))?;
        let (pha, fgr) = match &mut self.engine {
            Engine::Rvm {
                net,
                state,
                ratio,
                seq_chunk,
            } => {
                let r = ratio.resolve(h as u32, w as u32);
                if let Some(problem) = rvm_size_problem(w as u32, h as u32, r) {
                    return Err(error(py, "FrameError", problem));
                }
                let mut next = state.clone();
                let (mut phas, mut fgrs) = (Vec::new(), Vec::new());
                let mut start = 0;
                while start < t {
                    let len = (t - start).min(*seq_chunk);
                    let net: &MattingNetwork = net;
                    let part = src.narrow(0, start, len).map_err(|e| run_error(py, e))?;
                    let m = py
                        .detach(|| net.forward(&part, &mut next, r))
                        .map_err(|e| run_error(py, e))?;
                    phas.push(m.pha);
                    fgrs.push(m.fgr);
                    start += len;
                    // Ctrl-C between chunks: the state stays as it was.
                    py.check_signals()?;
                }
                *state = next;
                (phas, Some(fgrs))
            }
            Engine::Gvm {
                model,
                opts,
                stream,
            } => {
                let mut s = match stream.take() {
                    Some(s) => s,
                    None => Box::new(
                        GvmStream::new(model.clone(), opts, (h, w), None)
                            .map_err(|e| bad(py, e.to_string()))?,
                    ),
                };
                let mut out = Vec::new();
                for i in 0..t {
                    let frame = src.narrow(0, i, 1).map_err(|e| run_error(py, e))?;
                    match py.detach(|| s.push(&frame, &mut |_| {})) {
                        Ok(settled) => out.extend(settled),
                        // A failed window leaves the stream unusable: the
                        // next call starts a new video.
                        Err(e) => return Err(run_error(py, e)),
                    }
                }
                *stream = Some(s);
                (out, None)
            }
        };
        self.size = Some((h, w));
        outputs(py, &pha, fgr.as_deref(), h, w)
    }

    /// The video ended: GVM's last alphas (its open window run), as
    /// [`Self::step`] returns them; nothing for RVM. The state is reset.
    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let size = self.size.take();
        let pha = match &mut self.engine {
            Engine::Gvm { stream, .. } => match stream.take() {
                Some(mut s) => py
                    .detach(|| s.finish(&mut |_| {}))
                    .map_err(|e| run_error(py, e))?,
                None => Vec::new(),
            },
            Engine::Rvm { state, .. } => {
                state.reset();
                Vec::new()
            }
        };
        let (h, w) = size.unwrap_or((0, 0));
        outputs(py, &pha, None, h, w)
    }

    /// Forgets the past frames (a cut, another video).
    fn reset(&mut self) {
        self.size = None;
        match &mut self.engine {
            Engine::Rvm { state, .. } => state.reset(),
            Engine::Gvm { stream, .. } => *stream = None,
        }
    }

    /// "rvm" or "gvm".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.engine {
            Engine::Rvm { .. } => "rvm",
            Engine::Gvm { .. } => "gvm",
        }
    }
}

/// Reads a numpy array through its `__array_interface__`: C-contiguous
/// `(T, H, W, 3)`, `|u1` or `<f4`. The one copy of the input: straight into
/// the model's planar layout.
fn read_frames(py: Python<'_>, frames: &Bound<'_, PyAny>) -> PyResult<Frames> {
    let iface = frames.getattr("__array_interface__")?;
    let shape: Vec<usize> = iface.get_item("shape")?.extract()?;
    let typestr: String = iface.get_item("typestr")?.extract()?;
    let strides = iface.get_item("strides")?;
    let (ptr, _readonly): (usize, bool) = iface.get_item("data")?.extract()?;
    let [t, h, w, 3] = shape[..] else {
        return Err(error(
            py,
            "FrameError",
            format!("frames must be (T, H, W, 3), not {shape:?}"),
        ));
    };
    if !strides.is_none() {
        return Err(error(
            py,
            "FrameError",
            "frames must be C-contiguous".into(),
        ));
    }
    let hw = h * w;
    let n = t * 3 * hw;
    // Written once, not zeroed first (at 720p two frames are 22 MB).
    let mut planar: Vec<f32> = Vec::with_capacity(n);
    let spare = &mut planar.spare_capacity_mut()[..n];
    match typestr.as_str() {
        "|u1" => {
            // SAFETY: the array is alive (`frames` holds it) and
            // C-contiguous (no strides) with T*H*W*3 one-byte elements at
            // `ptr`; the GIL is held while the slice lives, so no Python
            // code can free or reshape it.
            let data = unsafe { std::slice::from_raw_parts(ptr as *const u8, t * hw * 3) };
            // The pipeline's own conversion, so the same pixels give the
            // same floats as `vmatte matte`.
            // `v / 255` as the pipeline's table holds it (the same correctly
            // rounded division), so the same pixels give the same floats as
            // `vmatte matte`; divided here, the loop vectorises.
            to_planar(data, spare, hw, |v| f32::from(v) / 255.0);
        }
        "<f4" => {
            if ptr % std::mem::align_of::<f32>() != 0 {
                return Err(error(
                    py,
                    "FrameError",
                    "float32 frames must be aligned".into(),
                ));
            }
            // SAFETY: as above, with T*H*W*3 aligned (checked) f32 elements.
            let data = unsafe { std::slice::from_raw_parts(ptr as *const f32, t * hw * 3) };
            to_planar(data, spare, hw, |v| v);
        }
        other => {
            return Err(error(
                py,
                "FrameError",
                format!("frames must be uint8 or float32, not {other}"),
            ))
        }
    }
    // SAFETY: `to_planar` wrote all n = T * 3 * H * W floats: each frame's
    // three planes, band by band, every band whole.
    unsafe { planar.set_len(n) };
    Ok(Frames { planar, t, h, w })
}

/// Pixels per band of the conversions' parallel work: large enough that a
/// band's cost dwarfs handing it to a worker.
const BAND: usize = 1 << 15;

/// Interleaved RGB frames to three planes each, every sample through `f`,
/// in bands on the kernels' workers.
fn to_planar<S: Copy + Sync>(
    data: &[S],
    planar: &mut [std::mem::MaybeUninit<f32>],
    hw: usize,
    f: impl Fn(S) -> f32 + Sync,
) {
    for (frame, out) in data
        .chunks_exact(hw * 3)
        .zip(planar.chunks_exact_mut(hw * 3))
    {
        let (r, rest) = out.split_at_mut(hw);
        let (g, b) = rest.split_at_mut(hw);
        r.par_chunks_mut(BAND)
            .zip(g.par_chunks_mut(BAND))
            .zip(b.par_chunks_mut(BAND))
            .zip(frame.par_chunks(BAND * 3))
            .for_each(|(((r, g), b), px)| {
                for (i, px) in px.chunks_exact(3).enumerate() {
                    r[i].write(f(px[0]));
                    g[i].write(f(px[1]));
                    b[i].write(f(px[2]));
                }
            });
    }
}

/// `(alpha, fgr, n, H, W)` from the model's `[t, 1, H, W]` alphas and
/// `[t, 3, H, W]` foregrounds: [`HostArray`]s numpy reads in place (`fgr`
/// None when not given; both None when `n` is 0). A single piece on the CPU
/// in f32 (RVM's usual step) is handed over as it is, no copy; several are
/// joined once, and a GPU's or a half-precision tensor is brought over once.
fn outputs<'py>(
    py: Python<'py>,
    pha: &[Tensor],
    fgr: Option<&[Tensor]>,
    h: usize,
    w: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let n: usize = pha.iter().map(|x| x.dim(0).unwrap_or(0)).sum();
    let host = |xs: &[Tensor]| -> PyResult<Option<HostArray>> {
        if n == 0 {
            return Ok(None);
        }
        let one = py
            .detach(|| {
                let x = match xs {
                    [x] => x.clone(),
                    _ => Tensor::cat(xs, 0)?,
                };
                x.to_device(&Device::Cpu)?.to_dtype(DType::F32)
            })
            .map_err(|e| run_error(py, e))?;
        HostArray::new(py, one).map(Some)
    };
    let alpha = host(pha)?;
    let fgr = match fgr {
        Some(fgr) => host(fgr)?,
        None => None,
    };
    (alpha, fgr, n, h, w).into_pyobject(py)
}

/// A CPU f32 tensor `[n, c, H, W]` as numpy reads an array in place:
/// `(n, H, W)` for one channel, `(n, H, W, c)` for more, with the tensor's
/// own strides (numpy keeps this object, and so the tensor, alive as the
/// array's base).
#[pyclass(module = "vmatte._native", frozen)]
pub struct HostArray {
    /// Holds the memory `interface` points into.
    _tensor: Tensor,
    interface: Py<PyDict>,
}

impl HostArray {
    fn new(py: Python<'_>, tensor: Tensor) -> PyResult<Self> {
        let (ptr, dims, strides) = {
            let (storage, layout) = tensor.storage_and_layout();
            let (Storage::Cpu(CpuStorage::F32(v)), &[n, c, h, w], &[sn, sc, sh, sw]) =
                (&*storage, layout.dims(), layout.stride())
            else {
                return Err(run_error(py, "internal error: a host array is a CPU f32 [n, c, H, W] tensor; please report it"));
            };
            let f = std::mem::size_of::<f32>();
            let (dims, strides) = if c == 1 {
                (vec![n, h, w], vec![sn * f, sh * f, sw * f])
            } else {
                (vec![n, h, w, c], vec![sn * f, sh * f, sw * f, sc * f])
            };
            (v[layout.start_offset()..].as_ptr() as usize, dims, strides)
        };
        // SAFETY of what numpy does with `ptr`: the storage is candle's
        // Vec, never moved or resized while a tensor holds it (in-place
        // operations need a handle to the tensor, and the only one is
        // `_tensor`); every offset the strides reach lies inside it, as
        // they are the tensor's own. Writes through it are the caller's: no
        // other code reads this tensor again.
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("typestr", "<f4")?;
        d.set_item("shape", PyTuple::new(py, dims)?)?;
        d.set_item("strides", PyTuple::new(py, strides)?)?;
        d.set_item("data", (ptr, false))?;
        Ok(Self {
            _tensor: tensor,
            interface: d.unbind(),
        })
    }
}

#[pymethods]
impl HostArray {
    #[getter]
    fn __array_interface__(&self, py: Python<'_>) -> Py<PyDict> {
        self.interface.clone_ref(py)
    }
}
