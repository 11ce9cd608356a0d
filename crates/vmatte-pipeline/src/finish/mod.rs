//! Finishing a matte for compositing: the alpha a model (or another tool)
//! gave is shaped, and the colour under it cleaned, before the outputs are
//! made from them.
//!
//! ```text
//! alpha ─► temporal ─► levels ─► despeckle ─► shrink/grow ─► feather ─► alpha'
//! picture, alpha' ─► colour (model | estimate | source) ─► despill ─► foreground'
//! ```
//! It runs on the encoder's thread, a frame at a time and in order (the
//! temporal window needs the frames in order). [`Finish::default`] shapes
//! nothing, and where the colour is the one the matte came with (RVM's own,
//! or the picture's under `--foreground source`) [`Finisher::plan`] gives no
//! finisher at all: the outputs are byte for byte what they were without
//! finishing. (`auto` estimates for GVM and given mattes: the CLI writes
//! that into GVM jobs' settings, so their identity says so.)

pub mod despill;
pub mod edges;
pub mod estimate;
pub mod temporal;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::frames::FramePixels;
use crate::setting::Setting;
use despill::Spill;
use estimate::Estimator;
use temporal::Smoother;

/// Where the foreground colour of composite, foreground and rgba outputs
/// comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForegroundMode {
    /// The model's own where it predicts one (RVM), else estimated (GVM, a
    /// matte given to `finish`).
    #[default]
    Auto,
    /// The model's prediction (RVM only).
    Model,
    /// Solved from the picture and the matte (Germer et al. 2020).
    Estimate,
    /// The picture's own colour, background bleed and all.
    Source,
}

impl ForegroundMode {
    pub const ALL: [Self; 4] = [Self::Auto, Self::Model, Self::Estimate, Self::Source];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Model => "model",
            Self::Estimate => "estimate",
            Self::Source => "source",
        }
    }

    /// The colour a run uses, given whether its matte came with a
    /// predicted foreground.
    pub fn resolve(self, predicted: bool) -> Result<Colour, String> {
        Ok(match (self, predicted) {
            (Self::Auto | Self::Model, true) => Colour::Model,
            (Self::Auto | Self::Estimate, _) => Colour::Estimate,
            (Self::Source, _) => Colour::Source,
            (Self::Model, false) => {
                return Err(format!(
                    "this matte comes without a foreground colour (only RVM predicts one); \
                     use {} or {}",
                    Setting::Foreground.with("estimate"),
                    Setting::Foreground.with("source")
                ))
            }
        })
    }
}

impl FromStr for ForegroundMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown foreground '{s}'; use auto, model, estimate or source"))
    }
}

impl fmt::Display for ForegroundMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The foreground colour a run settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Model,
    Estimate,
    Source,
}

/// Which screen's spill `--despill` suppresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DespillMode {
    Green,
    Blue,
    /// Judged from the first frame's background (none when it shows too
    /// little of it, or no screen).
    Auto,
}

impl FromStr for DespillMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "green" => Ok(Self::Green),
            "blue" => Ok(Self::Blue),
            "auto" => Ok(Self::Auto),
            _ => Err(format!("unknown despill '{s}'; use green, blue or auto")),
        }
    }
}

impl fmt::Display for DespillMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Green => "green",
            Self::Blue => "blue",
            Self::Auto => "auto",
        })
    }
}

/// The matte's black and white points: at or below `lo` is 0, at or above
/// `hi` is 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Levels {
    pub lo: f32,
    pub hi: f32,
}

impl FromStr for Levels {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<_> = s.split(',').map(|p| p.trim().parse::<f32>()).collect();
        match parts.as_slice() {
            [Ok(lo), Ok(hi)] => Ok(Self { lo: *lo, hi: *hi }),
            _ => Err(format!(
                "'{s}' is not LO,HI; give two numbers from 0 to 1, e.g. 0.05,0.95"
            )),
        }
    }
}

impl fmt::Display for Levels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.lo, self.hi)
    }
}

/// How a matte is finished. Part of a job's identity (in
/// `MatteSettings`), so every field is left out of the JSON at its default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Finish {
    #[serde(default, skip_serializing_if = "is_default")]
    pub foreground: ForegroundMode,
    /// Pixels the matte's edge moves in: positive chokes, negative spreads.
    #[serde(default, skip_serializing_if = "is_default")]
    pub shrink: f32,
    /// Edge blur, in pixels (twice the Gaussian's standard deviation).
    #[serde(default, skip_serializing_if = "is_default")]
    pub feather: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Levels>,
    /// Islands and holes smaller than this many pixels are removed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub despeckle: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub despill: Option<DespillMode>,
    /// Frames the still parts of the matte are averaged over (0: off).
    #[serde(default, skip_serializing_if = "is_default")]
    pub temporal_smooth: u32,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The largest edge move or feather: beyond it the operations cost more
/// than a frame's inference and no footage needs it.
pub const MAX_EDGE_PX: f32 = 64.0;
/// The longest temporal window (frames kept per pixel).
pub const MAX_TEMPORAL: u32 = 64;

impl Finish {
    /// Whether the alpha itself is changed.
    fn shapes_alpha(&self) -> bool {
        self.shrink != 0.0
            || self.feather != 0.0
            || self.levels.is_some()
            || self.despeckle != 0
            || self.temporal_smooth != 0
    }

    /// Refuses values no run can use, naming the setting; `colour_out`:
    /// some output shows colour (not the matte alone).
    pub fn validate(&self, colour_out: bool) -> Result<(), String> {
        let shrink = self.shrink.abs();
        if !shrink.is_finite() || shrink > MAX_EDGE_PX {
            let setting = if self.shrink < 0.0 {
                Setting::MatteGrow
            } else {
                Setting::MatteShrink
            };
            return Err(format!("{setting} must be from 0 to {MAX_EDGE_PX} pixels"));
        }
        if !(0.0..=MAX_EDGE_PX).contains(&self.feather) {
            return Err(format!(
                "{} must be from 0 to {MAX_EDGE_PX} pixels",
                Setting::MatteFeather
            ));
        }
        if let Some(Levels { lo, hi }) = self.levels {
            if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo >= hi {
                return Err(format!(
                    "{} needs 0 <= LO < HI <= 1, e.g. {}",
                    Setting::MatteLevels.with(format!("{lo},{hi}")),
                    Setting::MatteLevels.with("0.05,0.95")
                ));
            }
        }
        if self.temporal_smooth == 1 || self.temporal_smooth > MAX_TEMPORAL {
            return Err(format!(
                "{} must be from 2 to {MAX_TEMPORAL} frames (0 is off)",
                Setting::TemporalSmooth
            ));
        }
        if let (Some(mode), false) = (self.despill, colour_out) {
            return Err(format!(
                "{} changes the foreground colour, but only the matte is written; add \
                 composite, foreground or rgba to {}",
                Setting::Despill.with(mode),
                Setting::Outputs
            ));
        }
        Ok(())
    }
}

/// The most memory `--temporal-smooth` may keep: its window holds N 16-bit
/// planes of the frame (and a few more of state).
pub const MAX_TEMPORAL_BYTES: usize = 1 << 30;

impl Finish {
    /// Refuses what a frame of `(width, height)` would make too costly: a
    /// temporal window past [`MAX_TEMPORAL_BYTES`].
    pub fn fits(&self, (width, height): (usize, usize)) -> Result<(), String> {
        let n = self.temporal_smooth as usize;
        let bytes = n * width * height * 2;
        if bytes > MAX_TEMPORAL_BYTES {
            let most = (MAX_TEMPORAL_BYTES / (width * height * 2).max(1)).max(2);
            return Err(format!(
                "{} would keep {} MiB of matte at {width}x{height}; use at most {}",
                Setting::TemporalSmooth.with(n),
                bytes >> 20,
                Setting::TemporalSmooth.with(most)
            ));
        }
        Ok(())
    }
}

/// A video's finishing: the settings, what it keeps between frames, and
/// the frame it made last (the outputs borrow it).
pub struct Finisher {
    finish: Finish,
    colour: Colour,
    /// Whether any output shows colour (else no foreground is made).
    colour_out: bool,
    estimator: Estimator,
    smoother: Option<Smoother>,
    spill: SpillState,
    pha: Vec<f32>,
    fg: [Vec<f32>; 3],
}

enum SpillState {
    Off,
    On(Spill),
    /// `auto`, not decided yet: the first frame decides, once (a screen
    /// found later would make the clip change colour mid-way).
    Undecided,
}

impl Finisher {
    /// The finishing of a run whose colour is `colour` (`predicted`: the
    /// matte came with a model's foreground; `colour_out`: some output
    /// shows colour), or `None` when it would change nothing.
    pub fn plan(
        finish: &Finish,
        colour: Colour,
        predicted: bool,
        colour_out: bool,
    ) -> Option<Self> {
        let as_given = match colour {
            Colour::Model => true,
            Colour::Source => !predicted,
            Colour::Estimate => false,
        };
        let changes_colour = colour_out && (!as_given || finish.despill.is_some());
        if !finish.shapes_alpha() && !changes_colour {
            return None;
        }
        Some(Self {
            finish: finish.clone(),
            colour,
            colour_out,
            estimator: Estimator::default(),
            smoother: (finish.temporal_smooth >= 2)
                .then(|| Smoother::new(finish.temporal_smooth as usize)),
            spill: match finish.despill {
                None => SpillState::Off,
                Some(DespillMode::Green) => SpillState::On(Spill::Green),
                Some(DespillMode::Blue) => SpillState::On(Spill::Blue),
                Some(DespillMode::Auto) => SpillState::Undecided,
            },
            pha: Vec::new(),
            fg: Default::default(),
        })
    }

    /// Whether it reads the source picture (where a model's colour is not
    /// the picture, it is then sent along).
    pub fn reads_picture(&self) -> bool {
        (self.colour_out && self.colour != Colour::Model)
            || self.smoother.is_some()
            || matches!(self.spill, SpillState::Undecided)
    }

    /// Finishes one frame: `picture` is the source frame, `model_fg` the
    /// model's foreground (the picture again when it predicts none),
    /// `pha` its matte, all planes of `width * height`.
    pub fn frame<'a>(
        &'a mut self,
        picture: [&'a [f32]; 3],
        model_fg: [&'a [f32]; 3],
        pha: &[f32],
        size: (usize, usize),
    ) -> FramePixels<'a> {
        let f = &self.finish;
        self.pha.clear();
        self.pha.extend_from_slice(pha);
        let alpha = &mut self.pha;
        if let Some(s) = self.smoother.as_mut() {
            s.smooth(picture, alpha, size);
        }
        if let Some(Levels { lo, hi }) = f.levels {
            edges::levels(alpha, lo, hi);
        }
        if f.despeckle > 0 {
            edges::despeckle(alpha, size, f.despeckle as usize);
        }
        if f.shrink != 0.0 {
            edges::shrink_grow(alpha, size, f.shrink);
        }
        if f.feather > 0.0 {
            edges::feather(alpha, size, f.feather);
        }
        if !self.colour_out {
            return FramePixels {
                fgr: model_fg,
                pha: &self.pha,
            };
        }
        if let SpillState::Undecided = self.spill {
            self.spill = match despill::detect(picture, alpha) {
                Some(s) => SpillState::On(s),
                None => SpillState::Off,
            };
        }
        let given = match self.colour {
            Colour::Model => Some(model_fg),
            Colour::Source => Some(picture),
            Colour::Estimate => None,
        };
        let spill = match self.spill {
            SpillState::On(s) => Some(s),
            _ => None,
        };
        // A colour used as it came is borrowed: only a colour this frame
        // changes (estimated, or despilled) is written into `fg`.
        if let (Some(from), None) = (given, spill) {
            return FramePixels {
                fgr: from,
                pha: &self.pha,
            };
        }
        let [r, g, b] = &mut self.fg;
        for plane in [&mut *r, &mut *g, &mut *b] {
            plane.resize(alpha.len(), 0.0);
        }
        match given {
            Some(from) => {
                for (to, from) in [&mut *r, &mut *g, &mut *b].into_iter().zip(from) {
                    to.copy_from_slice(from);
                }
            }
            None => self
                .estimator
                .estimate(picture, alpha, size, [&mut *r, &mut *g, &mut *b]),
        }
        if let Some(s) = spill {
            despill::despill([&mut *r, &mut *g, &mut *b], s);
        }
        let [r, g, b] = &self.fg;
        FramePixels {
            fgr: [&r[..], &g[..], &b[..]],
            pha: &self.pha,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_finishes_nothing() {
        let off = Finish::default();
        assert!(Finisher::plan(&off, Colour::Model, true, true).is_none());
        assert!(Finisher::plan(&off, Colour::Source, false, true).is_none());
        // Estimating is work only when colour is written.
        assert!(Finisher::plan(&off, Colour::Estimate, false, true).is_some());
        assert!(Finisher::plan(&off, Colour::Estimate, false, false).is_none());
        // And the default is left out of a job's identity.
        assert_eq!(serde_json::to_string(&off).unwrap(), "{}");
    }

    #[test]
    fn auto_estimates_only_without_a_prediction() {
        assert_eq!(ForegroundMode::Auto.resolve(true), Ok(Colour::Model));
        assert_eq!(ForegroundMode::Auto.resolve(false), Ok(Colour::Estimate));
        assert!(ForegroundMode::Model.resolve(false).is_err());
        assert_eq!(ForegroundMode::Source.resolve(true), Ok(Colour::Source));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let bad = |f: Finish| f.validate(true).unwrap_err();
        assert!(bad(Finish {
            levels: Some(Levels { lo: 0.6, hi: 0.4 }),
            ..Finish::default()
        })
        .contains("matte_levels=0.6,0.4"));
        assert!(bad(Finish {
            shrink: -100.0,
            ..Finish::default()
        })
        .contains("matte_grow"));
        assert!(bad(Finish {
            feather: f32::NAN,
            ..Finish::default()
        })
        .contains("matte_feather"));
        assert!(bad(Finish {
            temporal_smooth: 1,
            ..Finish::default()
        })
        .contains("temporal_smooth"));
        let despill = Finish {
            despill: Some(DespillMode::Green),
            ..Finish::default()
        };
        assert!(despill
            .validate(false)
            .unwrap_err()
            .contains("only the matte"));
        assert!(despill.validate(true).is_ok());
        assert_eq!(
            "0.1, 0.9".parse::<Levels>(),
            Ok(Levels { lo: 0.1, hi: 0.9 })
        );
        assert!("0.1".parse::<Levels>().is_err());
    }
}
