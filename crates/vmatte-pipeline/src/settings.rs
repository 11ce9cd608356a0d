//! What a matting run is asked to produce, as the CLI and `--json` see it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One product of a run; each becomes its own file or image folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// The foreground over the background colour.
    Composite,
    /// The alpha matte, 8-bit gray.
    Alpha,
    /// The predicted straight (unpremultiplied) foreground colour.
    Foreground,
}

impl OutputKind {
    pub const ALL: [OutputKind; 3] = [Self::Composite, Self::Alpha, Self::Foreground];

    pub fn name(self) -> &'static str {
        match self {
            Self::Composite => "composite",
            Self::Alpha => "alpha",
            Self::Foreground => "foreground",
        }
    }
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutputKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown output '{s}'; choose from composite, alpha, foreground")
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// H.264 in MP4, one file per kind.
    Mp4,
    /// A folder of numbered PNGs per kind (alpha as 8-bit gray).
    Png,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mp4" => Ok(Self::Mp4),
            "png" => Ok(Self::Png),
            _ => Err(format!("unknown format '{s}'; choose mp4 or png")),
        }
    }
}

/// How much RVM shrinks each frame before the backbone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DownsampleRatio {
    /// The authors' rule: the downsampled long side at most 512 px.
    Auto,
    Fixed(f64),
    /// A ratio for 1080p, scaled with the frame's short side so every
    /// resolution sees the same detail (4K gets half, 720p 1.5x), at most 1.
    Scaled {
        at_1080p: f64,
    },
}

impl DownsampleRatio {
    pub fn resolve(self, height: u32, width: u32) -> f64 {
        match self {
            Self::Auto => {
                vmatte_models::rvm::auto_downsample_ratio(height as usize, width as usize)
            }
            Self::Fixed(r) => r,
            Self::Scaled { at_1080p } => {
                (at_1080p * 1080.0 / f64::from(height.min(width).max(1))).min(1.0)
            }
        }
    }
}

impl FromStr for DownsampleRatio {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        let r: f64 = s.parse().map_err(|_| {
            format!("'{s}' is not a number; use a ratio in (0, 1] such as 0.25, or 'auto'")
        })?;
        vmatte_models::rvm::check_ratio(r).map_err(|e| e.to_string())?;
        Ok(Self::Fixed(r))
    }
}

impl Serialize for DownsampleRatio {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(r) => s.serialize_f64(*r),
            Self::Scaled { at_1080p } => s.serialize_str(&format!("{at_1080p} at 1080p")),
        }
    }
}

/// Read back what [`Serialize`] wrote (queued jobs carry their settings as
/// JSON): a number, `auto`, or `R at 1080p`.
impl<'de> Deserialize<'de> for DownsampleRatio {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Text(String),
        }
        let bad = |e: String| serde::de::Error::custom(e);
        match Repr::deserialize(d)? {
            Repr::Number(r) => format!("{r}").parse().map_err(bad),
            Repr::Text(t) => match t.strip_suffix(" at 1080p") {
                Some(r) => r
                    .parse()
                    .map(|at_1080p| Self::Scaled { at_1080p })
                    .map_err(|_| bad(format!("'{t}' is not a ratio"))),
                None => t.parse().map_err(bad),
            },
        }
    }
}

/// An sRGB colour, parsed from `#RRGGBB` or `R,G,B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// RVM's green screen, (120, 255, 155).
    pub const RVM_GREEN: Rgb = Rgb([120, 255, 155]);
}

impl FromStr for Rgb {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a colour; use #RRGGBB or R,G,B (e.g. 120,255,155)");
        if let Some(hex) = s.strip_prefix('#') {
            if hex.len() != 6 {
                return Err(bad());
            }
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
            return Ok(Self([byte(0)?, byte(2)?, byte(4)?]));
        }
        let parts: Vec<_> = s.split(',').map(|p| p.trim().parse::<u8>()).collect();
        match parts.as_slice() {
            [Ok(r), Ok(g), Ok(b)] => Ok(Self([*r, *g, *b])),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Rgb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let [r, g, b] = self.0;
        s.serialize_str(&format!("#{r:02x}{g:02x}{b:02x}"))
    }
}

impl<'de> Deserialize<'de> for Rgb {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Everything that shapes the outputs of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatteSettings {
    pub model: String,
    pub downsample_ratio: DownsampleRatio,
    /// Frames per inference call; the GRU still steps frame by frame.
    pub seq_chunk: usize,
    /// Frames per call for videos larger than 1080p, when it differs.
    pub seq_chunk_large: Option<usize>,
    pub outputs: Vec<OutputKind>,
    pub format: OutputFormat,
    pub background: Rgb,
    /// H.264 quality for mp4 outputs (lower is better).
    pub crf: u8,
    pub device: String,
    pub dtype: String,
}

impl MatteSettings {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            downsample_ratio: DownsampleRatio::Auto,
            seq_chunk: 4,
            seq_chunk_large: None,
            outputs: vec![OutputKind::Composite, OutputKind::Alpha],
            format: OutputFormat::Mp4,
            background: Rgb::RVM_GREEN,
            crf: 18,
            device: "cpu".into(),
            dtype: "f32".into(),
        }
    }
}

impl MatteSettings {
    /// The chunk for a video of this size.
    pub fn chunk_for(&self, height: u32, width: u32) -> usize {
        let large = height.min(width) > 1080;
        match self.seq_chunk_large {
            Some(n) if large => n,
            _ => self.seq_chunk,
        }
        .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_json() {
        let mut s = MatteSettings::new("rvm-resnet50");
        for ratio in [
            DownsampleRatio::Auto,
            DownsampleRatio::Fixed(0.375),
            DownsampleRatio::Scaled { at_1080p: 0.25 },
        ] {
            s.downsample_ratio = ratio;
            s.background = Rgb([1, 2, 3]);
            s.outputs = vec![OutputKind::Foreground];
            let json = serde_json::to_string(&s).unwrap();
            let back: MatteSettings = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
            assert_eq!(back.downsample_ratio, ratio);
        }
    }

    #[test]
    fn parses_colours() {
        assert_eq!("#78ff9b".parse::<Rgb>().unwrap(), Rgb::RVM_GREEN);
        assert_eq!("120, 255, 155".parse::<Rgb>().unwrap(), Rgb::RVM_GREEN);
        assert!("#78ff9".parse::<Rgb>().is_err());
        assert!("300,0,0".parse::<Rgb>().is_err());
    }

    #[test]
    fn parses_ratios() {
        assert_eq!(
            "auto".parse::<DownsampleRatio>().unwrap(),
            DownsampleRatio::Auto
        );
        assert_eq!(
            "0.25".parse::<DownsampleRatio>().unwrap(),
            DownsampleRatio::Fixed(0.25)
        );
        for bad in ["0", "1.5", "-0.2", "nan", "abc"] {
            assert!(bad.parse::<DownsampleRatio>().is_err(), "{bad}");
        }
        assert_eq!(DownsampleRatio::Auto.resolve(1080, 1920), 512.0 / 1920.0);
        assert_eq!(DownsampleRatio::Auto.resolve(144, 256), 1.0);
        let standard = DownsampleRatio::Scaled { at_1080p: 0.25 };
        assert_eq!(standard.resolve(1080, 1920), 0.25);
        assert_eq!(standard.resolve(2160, 3840), 0.125);
        assert_eq!(standard.resolve(720, 1280), 0.375);
        assert_eq!(
            DownsampleRatio::Scaled { at_1080p: 1.0 }.resolve(720, 1280),
            1.0
        );
    }
}
