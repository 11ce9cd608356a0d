//! What composites are laid over, frame by frame: a colour, a still image
//! held for the whole video, or a video played alongside (looped when it is
//! shorter), each picture scaled to cover the frame and centred.

use std::path::PathBuf;

use vmatte_media::{CoverScaler, FrameSource};

use crate::frames::Backdrop;
use crate::setting::Setting;
use crate::settings::Background;
use crate::{PipelineError, Result};

pub enum Backgrounds {
    Color([u8; 3]),
    Plate(Plate),
}

pub struct Plate {
    path: PathBuf,
    source: Box<dyn FrameSource>,
    cover: CoverScaler,
    current: Vec<u8>,
    /// Frames read from the current pass over the file.
    read: u64,
    /// The first picture is shown before anything new is read.
    fresh: bool,
}

impl Backgrounds {
    pub fn open(background: &Background, width: u32, height: u32) -> Result<Self> {
        match background {
            Background::Color(rgb) => Ok(Self::Color(rgb.0)),
            Background::Media(path) => {
                let source = open(path)?;
                let mut plate = Plate {
                    path: path.clone(),
                    source,
                    cover: CoverScaler::new(width, height),
                    current: Vec::new(),
                    read: 0,
                    fresh: true,
                };
                if !plate.advance()? {
                    return Err(PipelineError::Input(format!(
                        "{}: the background has no picture; choose another {}",
                        path.display(),
                        Setting::Background
                    )));
                }
                Ok(Self::Plate(plate))
            }
        }
    }

    /// The backdrop of the next output frame.
    pub fn next_backdrop(&mut self) -> Result<Backdrop<'_>> {
        match self {
            Self::Color(rgb) => Ok(Backdrop::Color(*rgb)),
            Self::Plate(plate) => {
                if !std::mem::take(&mut plate.fresh) && !plate.advance()? {
                    // The end of the plate: a still stays, a video loops.
                    if plate.read > 1 {
                        plate.source = open(&plate.path)?;
                        plate.read = 0;
                        plate.advance()?;
                    }
                }
                Ok(Backdrop::Picture(&plate.current))
            }
        }
    }
}

impl Plate {
    /// Reads the next picture into `current`; false at the end of the file.
    fn advance(&mut self) -> Result<bool> {
        match self.source.next_frame()? {
            Some(frame) => {
                self.current = self.cover.apply(&frame).map_err(|problem| {
                    PipelineError::Input(format!(
                        "{}: cannot scale the background ({problem})",
                        self.path.display()
                    ))
                })?;
                self.read += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn open(path: &std::path::Path) -> Result<Box<dyn FrameSource>> {
    vmatte_media::open_source(path, None).map_err(|e| {
        PipelineError::Input(format!(
            "background: {e}; choose a readable image or video for {}",
            Setting::Background
        ))
    })
}
