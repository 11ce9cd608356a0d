//! Native matting models for vmatte on candle, and the loaders for the
//! weight formats users have.

mod conv_spec;
mod cpu;
pub mod error;
pub mod gvm;
pub mod matanyone;
pub mod onnx;
pub mod ops;
pub mod rvm;
mod simd;
pub mod store;
pub mod weights;

pub use error::{Error, Result};
