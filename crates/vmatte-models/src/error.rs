use std::path::PathBuf;

/// Errors from loading or running a model. Each message names the file and
/// says what to do next, because it is shown to the user as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("{path}: not a valid ONNX file ({reason}); pass the authors' rvm_mobilenetv3_fp32.onnx export")]
    Onnx { path: PathBuf, reason: String },
    #[error("model '{name}' is not installed; run `vmatte models install {name}`{hint}")]
    NotInstalled { name: String, hint: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// For `map_err`: an I/O failure on `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
