//! Owned wrappers of the libav audio types the re-encoder works with:
//! channel layouts, the shape of raw audio, frames with their own buffers,
//! and the [`Converter`] (a resampler feeding a FIFO) that turns decoded
//! audio of any shape into whole encoder frames.

use std::ffi::{c_int, c_void};
use std::ptr::{self, NonNull};

use ffmpeg::{ffi, frame, Rational};
use ffmpeg_next as ffmpeg;

/// An owned `AVChannelLayout` (custom orders allocate a channel map).
pub(super) struct Layout(pub(super) ffi::AVChannelLayout);

// SAFETY: plain data, plus for custom orders a map only this value owns.
unsafe impl Send for Layout {}

impl Layout {
    pub(super) fn unset() -> Self {
        // SAFETY: all zeroes is libav's "no layout": order UNSPEC, 0 channels.
        Layout(unsafe { std::mem::zeroed() })
    }

    /// A copy of `src` a resampler can work with: a bare channel count gets
    /// libav's default layout for that many channels. `None` without
    /// channels.
    ///
    /// # Safety
    /// `src` must point at a valid layout.
    pub(super) unsafe fn usable(src: *const ffi::AVChannelLayout) -> Option<Self> {
        // SAFETY: `src` points at a valid layout (the caller's contract), and
        // `layout` is a value we own for libav to fill.
        unsafe {
            let channels = (*src).nb_channels;
            if channels <= 0 {
                return None;
            }
            let mut layout = Layout::unset();
            if (*src).order == ffi::AVChannelOrder::AV_CHANNEL_ORDER_UNSPEC {
                ffi::av_channel_layout_default(&mut layout.0, channels);
            } else if ffi::av_channel_layout_copy(&mut layout.0, src) < 0 {
                return None;
            }
            Some(layout)
        }
    }

    pub(super) fn stereo() -> Self {
        let mut layout = Layout::unset();
        // SAFETY: writes a native layout into a value we own.
        unsafe { ffi::av_channel_layout_default(&mut layout.0, 2) };
        layout
    }

    pub(super) fn try_clone(&self) -> Option<Self> {
        // SAFETY: `self` holds a valid layout.
        unsafe { Layout::usable(&self.0) }
    }

    pub(super) fn channels(&self) -> c_int {
        self.0.nb_channels
    }

    pub(super) fn as_ptr(&self) -> *const ffi::AVChannelLayout {
        &self.0
    }
}

impl PartialEq for Layout {
    fn eq(&self, other: &Self) -> bool {
        // SAFETY: both hold valid layouts.
        unsafe { ffi::av_channel_layout_compare(&self.0, &other.0) == 0 }
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: frees the custom map, if any; the value is not used again.
        unsafe { ffi::av_channel_layout_uninit(&mut self.0) };
    }
}

/// Shape of raw audio: sample format, rate and channel layout.
#[derive(PartialEq)]
pub(super) struct AudioFormat {
    pub(super) sample: ffi::AVSampleFormat,
    pub(super) rate: c_int,
    pub(super) layout: Layout,
}

impl AudioFormat {
    fn of_frame(frame: &frame::Audio) -> Option<Self> {
        // SAFETY: reads fields of a decoded frame.
        let (rate, layout) = unsafe {
            let raw = frame.as_ptr();
            ((*raw).sample_rate, Layout::usable(&(*raw).ch_layout)?)
        };
        (rate > 0).then(|| AudioFormat {
            sample: frame.format().into(),
            rate,
            layout,
        })
    }
}

/// Turns decoded audio of any shape into encoder-ready samples, buffered
/// until a whole encoder frame is there.
pub(super) struct Converter {
    target: AudioFormat,
    /// Built for the shape of the frames coming in; rebuilt if that changes.
    resampler: Option<Resampler>,
    fifo: Fifo,
    /// Resampler output, copied into the FIFO right away.
    scratch: frame::Audio,
    scratch_room: c_int,
}

impl Converter {
    pub(super) fn new(target: AudioFormat, frame_size: c_int) -> Result<Self, ffmpeg::Error> {
        let fifo = Fifo::new(&target, frame_size)?;
        Ok(Converter {
            target,
            resampler: None,
            fifo,
            scratch: frame::Audio::empty(),
            scratch_room: 0,
        })
    }

    /// Fails with `InvalidData` for a frame without rate or channels.
    pub(super) fn push(&mut self, frame: &frame::Audio) -> Result<(), ffmpeg::Error> {
        let shape = AudioFormat::of_frame(frame).ok_or(ffmpeg::Error::InvalidData)?;
        if self.resampler.as_ref().map(|r| &r.input) != Some(&shape) {
            // A stream may change rate or layout midway (broadcast AAC
            // does); the old resampler's buffered tail goes out first.
            self.flush()?;
            self.resampler = Some(Resampler::new(shape, &self.target)?);
        }
        // SAFETY: a decoded frame's planes hold `samples()` samples each.
        let input = unsafe { (*frame.as_ptr()).extended_data as *const *const u8 };
        self.convert(input, frame.samples() as c_int)?;
        Ok(())
    }

    /// Moves what the resampler still holds (its filter delay) into the FIFO.
    pub(super) fn flush(&mut self) -> Result<(), ffmpeg::Error> {
        while self.convert(ptr::null(), 0)? > 0 {}
        Ok(())
    }

    /// Resamples `count` samples from `input` (null to drain) into the FIFO;
    /// returns how many samples came out.
    fn convert(&mut self, input: *const *const u8, count: c_int) -> Result<c_int, ffmpeg::Error> {
        let Some(resampler) = &self.resampler else {
            return Ok(0);
        };
        let ctx = resampler.ctx.as_ptr();
        // SAFETY: valid context; an upper bound for the next conversion.
        let room = check(unsafe { ffi::swr_get_out_samples(ctx, count) })?;
        if room == 0 && count == 0 {
            return Ok(0);
        }
        self.reserve(room.max(1))?;
        // SAFETY: the scratch frame has `scratch_room` >= `room` samples per
        // plane in the target format; `input` has `count` in the resampler's.
        let produced = unsafe {
            let out = (*self.scratch.as_mut_ptr()).extended_data;
            let produced = check(ffi::swr_convert(
                ctx,
                out,
                room,
                input as *mut *const u8,
                count,
            ))?;
            check(ffi::av_audio_fifo_write(
                self.fifo.0.as_ptr(),
                out as *mut *mut c_void,
                produced,
            ))?
        };
        Ok(produced)
    }

    fn reserve(&mut self, samples: c_int) -> Result<(), ffmpeg::Error> {
        if samples > self.scratch_room {
            self.scratch = alloc_frame(&self.target, samples)?;
            self.scratch_room = samples;
        }
        Ok(())
    }

    pub(super) fn buffered(&self) -> c_int {
        // SAFETY: valid FIFO.
        unsafe { ffi::av_audio_fifo_size(self.fifo.0.as_ptr()) }
    }

    /// A new frame with the next `count` buffered samples. New each time:
    /// the encoder may keep a reference to the frames it was sent.
    pub(super) fn take(&mut self, count: c_int) -> Result<frame::Audio, ffmpeg::Error> {
        let mut frame = alloc_frame(&self.target, count)?;
        // SAFETY: the frame has room for `count` samples per plane in the
        // FIFO's format.
        let read = check(unsafe {
            ffi::av_audio_fifo_read(
                self.fifo.0.as_ptr(),
                (*frame.as_mut_ptr()).extended_data as *mut *mut c_void,
                count,
            )
        })?;
        frame.set_samples(read as usize);
        Ok(frame)
    }
}

/// A frame of `samples` samples in `format`, with its own buffers.
fn alloc_frame(format: &AudioFormat, samples: c_int) -> Result<frame::Audio, ffmpeg::Error> {
    let mut frame = frame::Audio::empty();
    // SAFETY: field writes on a fresh frame, then libav's own allocation.
    unsafe {
        let raw = frame.as_mut_ptr();
        if raw.is_null() {
            return Err(ffmpeg::Error::Other {
                errno: ffmpeg::error::ENOMEM,
            });
        }
        (*raw).format = format.sample as c_int;
        (*raw).sample_rate = format.rate;
        (*raw).nb_samples = samples;
        check(ffi::av_channel_layout_copy(
            &mut (*raw).ch_layout,
            format.layout.as_ptr(),
        ))?;
        check(ffi::av_frame_get_buffer(raw, 0))?;
    }
    Ok(frame)
}

struct Resampler {
    ctx: NonNull<ffi::SwrContext>,
    /// The shape of the frames it was built for.
    input: AudioFormat,
}

// SAFETY: an SwrContext has no thread affinity; it only must not be used by
// two threads at once, which `&mut self` on every use guarantees.
unsafe impl Send for Resampler {}

impl Resampler {
    fn new(input: AudioFormat, output: &AudioFormat) -> Result<Self, ffmpeg::Error> {
        let mut raw = ptr::null_mut();
        // SAFETY: allocates a context from valid layouts; on failure libav
        // frees it and leaves `raw` null.
        let ret = unsafe {
            ffi::swr_alloc_set_opts2(
                &mut raw,
                output.layout.as_ptr() as *mut _,
                output.sample,
                output.rate,
                input.layout.as_ptr() as *mut _,
                input.sample,
                input.rate,
                0,
                ptr::null_mut(),
            )
        };
        let ctx = NonNull::new(raw).ok_or(ffmpeg::Error::from(ret.min(-1)))?;
        // From here `Drop` frees the context whatever happens.
        let resampler = Resampler { ctx, input };
        check(ret)?;
        // SAFETY: a configured, not yet initialised context.
        check(unsafe { ffi::swr_init(ctx.as_ptr()) })?;
        Ok(resampler)
    }
}

impl Drop for Resampler {
    fn drop(&mut self) {
        let mut raw = self.ctx.as_ptr();
        // SAFETY: we own the context; it is not used again.
        unsafe { ffi::swr_free(&mut raw) };
    }
}

/// Samples waiting for a whole encoder frame.
struct Fifo(NonNull<ffi::AVAudioFifo>);

// SAFETY: a plain buffer without thread affinity, used through `&mut self`.
unsafe impl Send for Fifo {}

impl Fifo {
    fn new(format: &AudioFormat, initial: c_int) -> Result<Self, ffmpeg::Error> {
        // SAFETY: plain allocation; it grows on demand.
        let raw = unsafe {
            ffi::av_audio_fifo_alloc(format.sample, format.layout.channels(), initial.max(1))
        };
        NonNull::new(raw).map(Fifo).ok_or(ffmpeg::Error::Other {
            errno: ffmpeg::error::ENOMEM,
        })
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        // SAFETY: we own the FIFO; it is not used again.
        unsafe { ffi::av_audio_fifo_free(self.0.as_ptr()) };
    }
}

pub(super) fn check(ret: c_int) -> Result<c_int, ffmpeg::Error> {
    if ret < 0 {
        Err(ffmpeg::Error::from(ret))
    } else {
        Ok(ret)
    }
}

pub(super) fn rescale(value: i64, from: Rational, to: Rational) -> i64 {
    // SAFETY: pure arithmetic.
    unsafe { ffi::av_rescale_q(value, from.into(), to.into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_channel_count_gets_default_layout() {
        let mut bare = Layout::unset();
        bare.0.nb_channels = 2;
        // SAFETY: a valid (unspecified-order) layout.
        let usable = unsafe { Layout::usable(bare.as_ptr()) }.unwrap();
        assert!(usable == Layout::stereo());
        // SAFETY: a valid, empty layout.
        assert!(unsafe { Layout::usable(Layout::unset().as_ptr()) }.is_none());
    }
}
