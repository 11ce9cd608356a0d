//! How much GPU memory vmatte may use (`--vram-limit`), and the chunk size
//! and stream count that fit in it when the user did not choose them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `--vram-limit`: an amount (`10GiB`, `512MiB`, `12G`, bytes) or a share of
/// the card (`0.8`, `80%`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum VramLimit {
    Bytes(u64),
    Fraction(f64),
}

impl VramLimit {
    /// The limit in bytes on a card with `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Self::Bytes(b) => b.min(total),
            Self::Fraction(f) => (total as f64 * f) as u64,
        }
    }
}

impl FromStr for VramLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{s}' is not a memory limit; write an amount such as 10GiB, 512MiB or 12G, \
                 or a share of the card such as 0.8 or 80%"
            )
        };
        let t = s.trim();
        if let Some(pct) = t.strip_suffix('%') {
            let p: f64 = pct.trim().parse().map_err(|_| bad())?;
            return (p > 0.0 && p <= 100.0)
                .then_some(Self::Fraction(p / 100.0))
                .ok_or_else(bad);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit.trim().to_ascii_lowercase().as_str() {
            "" if n <= 1.0 => return (n > 0.0).then_some(Self::Fraction(n)).ok_or_else(bad),
            "" | "b" => 1.0,
            "k" | "kib" => 1024.0,
            "m" | "mib" => 1024.0 * 1024.0,
            "g" | "gib" => GIB,
            "t" | "tib" => GIB * 1024.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            _ => return Err(bad()),
        };
        (n > 0.0)
            .then_some(Self::Bytes((n * scale) as u64))
            .ok_or_else(bad)
    }
}

impl fmt::Display for VramLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "{:.2}GiB", *b as f64 / GIB),
            Self::Fraction(x) => write!(f, "{:.0}%", x * 100.0),
        }
    }
}

/// What RVM needs on the GPU, as a function of the frame: the full-size
/// tensors (input, foreground, alpha, the guided filter's upsampled
/// coefficients and their temporaries) scale with the frame, the network's
/// activations with the downsampled frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameCost {
    pub width: u32,
    pub height: u32,
    pub downsample_ratio: f64,
    /// Bytes per element: 4 for f32, 2 for f16/bf16.
    pub dtype_bytes: u32,
}

/// Values per full-size pixel alive at once during a forward pass: 3 in,
/// 3 + 1 out, 2 x 4 guided-filter coefficients upsampled, and as many again
/// for the casts and the fused output's temporaries.
const FULL_VALUES_PER_PIXEL: f64 = 32.0;
/// Values per downsampled pixel: the sum of the widest live activations of
/// MobileNetV3 and the decoder (16 channels at 1/2, 24 at 1/4 ... plus the
/// recurrent states), rounded up for ResNet50's wider features.
const SMALL_VALUES_PER_PIXEL: f64 = 256.0;
/// Headroom for the CUDA context, cuDNN workspaces and allocator slack.
pub const RESERVED_BYTES: u64 = 768 * 1024 * 1024;

impl FrameCost {
    /// Bytes one frame of a chunk costs, estimated from the shapes above.
    pub fn bytes_per_frame(&self) -> u64 {
        let pixels = f64::from(self.width) * f64::from(self.height);
        let r2 = self.downsample_ratio * self.downsample_ratio;
        let values = pixels * (FULL_VALUES_PER_PIXEL + SMALL_VALUES_PER_PIXEL * r2);
        (values * f64::from(self.dtype_bytes)) as u64
    }
}

/// Frames per call and videos at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub seq_chunk: usize,
    pub streams: usize,
}

/// The largest chunk size worth having: past it a GPU is already full and
/// longer chunks only delay the first output.
pub const MAX_AUTO_CHUNK: usize = 16;
/// More streams than this rarely add throughput on one GPU and multiply
/// decoders and encoders on the CPU.
pub const MAX_AUTO_STREAMS: usize = 4;

/// Chunk size and streams that fit `budget` bytes, keeping what the user
/// fixed. Streams are filled first up to `MAX_AUTO_STREAMS` with chunks of at
/// least 4 frames (several videos overlap one's CPU stages with another's
/// inference), then the chunk grows. Never below one frame and one stream:
/// what does not fit is the out-of-memory ladder's to handle.
pub fn plan(
    budget: u64,
    model_bytes: u64,
    cost: FrameCost,
    chunk: Option<usize>,
    streams: Option<usize>,
) -> Plan {
    let per_frame = cost.bytes_per_frame().max(1);
    let usable = budget.saturating_sub(RESERVED_BYTES);
    // Frames that fit in total, after each stream's copy of the weights is
    // paid: streams share one model, but each has its own activations.
    let frames_for = |s: usize| usable.saturating_sub(model_bytes) / per_frame / s as u64;
    let streams = streams.unwrap_or_else(|| {
        let want_chunk = chunk.unwrap_or(4) as u64;
        (1..=MAX_AUTO_STREAMS)
            .rev()
            .find(|&s| frames_for(s) >= want_chunk)
            .unwrap_or(1)
    });
    let seq_chunk =
        chunk.unwrap_or_else(|| (frames_for(streams) as usize).clamp(1, MAX_AUTO_CHUNK));
    Plan { seq_chunk, streams }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    #[test]
    fn parses_amounts_and_shares() {
        let p = |s: &str| s.parse::<VramLimit>();
        assert_eq!(p("10GiB"), Ok(VramLimit::Bytes(10 * G)));
        assert_eq!(p("10 gib"), Ok(VramLimit::Bytes(10 * G)));
        assert_eq!(p("512MiB"), Ok(VramLimit::Bytes(512 << 20)));
        assert_eq!(p("12G"), Ok(VramLimit::Bytes(12 * G)));
        assert_eq!(p("2GB"), Ok(VramLimit::Bytes(2_000_000_000)));
        assert_eq!(p("1.5GiB"), Ok(VramLimit::Bytes(3 * G / 2)));
        assert_eq!(p("0.8"), Ok(VramLimit::Fraction(0.8)));
        assert_eq!(p("80%"), Ok(VramLimit::Fraction(0.8)));
        assert_eq!(p("1"), Ok(VramLimit::Fraction(1.0)));
        for bad in ["", "abc", "10 parsecs", "0", "-1G", "150%", "0%"] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("10GiB") && e.contains("80%"), "{bad}: {e}");
        }
    }

    #[test]
    fn limits_resolve_against_the_card() {
        assert_eq!(VramLimit::Fraction(0.5).bytes(80 * G), 40 * G);
        assert_eq!(VramLimit::Bytes(10 * G).bytes(80 * G), 10 * G);
        // Asking for more than the card has is the card.
        assert_eq!(VramLimit::Bytes(100 * G).bytes(80 * G), 80 * G);
        assert_eq!(VramLimit::Bytes(10 * G).to_string(), "10.00GiB");
        assert_eq!(VramLimit::Fraction(0.8).to_string(), "80%");
    }

    fn hd(ratio: f64, dtype_bytes: u32) -> FrameCost {
        FrameCost {
            width: 1920,
            height: 1080,
            downsample_ratio: ratio,
            dtype_bytes,
        }
    }

    #[test]
    fn frame_cost_scales_with_pixels_ratio_and_dtype() {
        let f32_cost = hd(0.25, 4).bytes_per_frame();
        assert_eq!(hd(0.25, 2).bytes_per_frame() * 2, f32_cost);
        assert!(hd(0.5, 4).bytes_per_frame() > f32_cost);
        // 1080p at 0.25 in f32: about 400 MB a frame with these constants.
        assert!((350 << 20..450 << 20).contains(&f32_cost), "{f32_cost}");
    }

    #[test]
    fn big_cards_get_streams_and_long_chunks() {
        let p = plan(80 * G, 15 << 20, hd(0.25, 2), None, None);
        assert_eq!(
            p,
            Plan {
                seq_chunk: MAX_AUTO_CHUNK,
                streams: MAX_AUTO_STREAMS
            }
        );
    }

    #[test]
    fn small_budgets_shrink_streams_then_chunks() {
        let cost = hd(0.25, 4);
        let per = cost.bytes_per_frame();
        // Room for 9 frames: two streams of 4.
        let budget = RESERVED_BYTES + 9 * per;
        assert_eq!(
            plan(budget, 0, cost, None, None),
            Plan {
                seq_chunk: 4,
                streams: 2
            }
        );
        // Room for 3: one stream with a 3-frame chunk.
        let budget = RESERVED_BYTES + 3 * per;
        assert_eq!(
            plan(budget, 0, cost, None, None),
            Plan {
                seq_chunk: 3,
                streams: 1
            }
        );
        // Nothing fits: still one frame, one stream (the OOM ladder decides).
        assert_eq!(
            plan(G / 2, 0, cost, None, None),
            Plan {
                seq_chunk: 1,
                streams: 1
            }
        );
    }

    #[test]
    fn what_the_user_fixed_is_kept() {
        let cost = hd(0.25, 2);
        assert_eq!(plan(80 * G, 0, cost, Some(2), None).seq_chunk, 2);
        assert_eq!(plan(80 * G, 0, cost, None, Some(1)).streams, 1);
        assert_eq!(
            plan(G, 0, cost, Some(8), Some(3)),
            Plan {
                seq_chunk: 8,
                streams: 3
            }
        );
    }
}
