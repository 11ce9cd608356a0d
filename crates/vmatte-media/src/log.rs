//! Captures libav's log instead of printing it.
//!
//! libav explains most failures only in its log ("moov atom not found") and
//! returns a generic code ("Invalid data found when processing input"). The
//! last error line logged on a thread is kept so the [`MediaError`] built on
//! that thread can quote it; nothing is written to stderr.
//!
//! [`MediaError`]: crate::MediaError

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Mutex;

use ffmpeg_next::ffi;

// The C `va_list` is only passed through to libav's formatter. Its Rust
// spelling follows how bindgen lowers it on each ABI: an array decaying to a
// pointer on x86-64 System V, the `va_list` type itself elsewhere. A wrong
// guess fails to compile at `av_log_set_callback` rather than misbehaving.
#[cfg(all(target_arch = "x86_64", not(windows)))]
type VaList = *mut ffi::__va_list_tag;
#[cfg(not(all(target_arch = "x86_64", not(windows))))]
type VaList = ffi::va_list;

thread_local! {
    // Threads are libav's own too (frame-threaded decoders); per-thread state
    // keeps a decoder's messages out of an encoder's errors and vice versa.
    static PARTIAL: RefCell<String> = const { RefCell::new(String::new()) };
    static LAST_ERROR: Cell<Option<String>> = const { Cell::new(None) };
}

/// The first error line each decoder logged since it was last asked, by
/// the id vmatte gave each decoder (its context's `opaque`, which libav
/// copies to the contexts of its own decoding threads, where frame
/// threading logs). A burst of damage is told by its first line.
static DECODER_ERRORS: Mutex<BTreeMap<usize, String>> = Mutex::new(BTreeMap::new());

/// Takes the first line decoder `id` logged since the last call.
pub(crate) fn take_decoder_error(id: usize) -> Option<String> {
    DECODER_ERRORS.lock().ok().and_then(|mut e| e.remove(&id))
}

/// The decoder id a codec context carries, if it is a codec context that
/// vmatte tagged.
///
/// # Safety
/// `avcl` is null or points to a struct whose first member is an
/// `AVClass` pointer, as av_log requires of its callers.
unsafe fn decoder_id(avcl: *mut c_void) -> Option<usize> {
    if avcl.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    let class = unsafe { (*(avcl as *const *const ffi::AVClass)).as_ref()? };
    // SAFETY: class names are static C strings.
    let name = unsafe { CStr::from_ptr(class.class_name) };
    if name.to_bytes() != b"AVCodecContext" {
        return None;
    }
    // SAFETY: an object of the AVCodecContext class is an AVCodecContext.
    let opaque = unsafe { (*(avcl as *const ffi::AVCodecContext)).opaque };
    (!opaque.is_null()).then_some(opaque as usize)
}

pub(crate) fn install() {
    // SAFETY: plain setters of libav globals, called once from `init`.
    unsafe {
        ffi::av_log_set_level(ffi::AV_LOG_ERROR);
        ffi::av_log_set_callback(Some(callback));
    }
}

/// Forgets what was logged so far on this thread, so that an error is not
/// explained by a message from an earlier, unrelated call.
pub(crate) fn clear() {
    let _ = LAST_ERROR.try_with(|last| last.set(None));
    let _ = PARTIAL.try_with(|partial| partial.borrow_mut().clear());
}

/// The last error line libav logged on this thread since [`clear`].
pub(crate) fn take_last_error() -> Option<String> {
    LAST_ERROR.try_with(Cell::take).ok().flatten()
}

unsafe extern "C" fn callback(avcl: *mut c_void, level: c_int, fmt: *const c_char, vl: VaList) {
    // SAFETY: reads libav's global log level.
    if level > unsafe { ffi::av_log_get_level() } {
        return;
    }
    let mut buf = [0 as c_char; 1024];
    // No "[h264 @ 0x55d0...]" prefix: the error names the file instead.
    let mut print_prefix: c_int = 0;
    // SAFETY: `avcl`, `fmt` and `vl` are what av_log passed this callback;
    // the line is written into `buf`, at most its length, NUL-terminated.
    unsafe {
        ffi::av_log_format_line2(
            avcl,
            level,
            fmt,
            vl,
            buf.as_mut_ptr(),
            buf.len() as c_int,
            &mut print_prefix,
        )
    };
    // SAFETY: av_log_format_line2 left a NUL-terminated string in `buf`.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    // libav sometimes builds one line from several calls; only a newline
    // ends it. try_with: libav may log while this thread is being torn down.
    let _ = PARTIAL.try_with(|partial| {
        let mut partial = partial.borrow_mut();
        partial.push_str(&text);
        if partial.ends_with('\n') {
            let line = partial.trim().replace('\n', " ");
            partial.clear();
            if !line.is_empty() {
                // SAFETY: av_log passes its caller's object, which av_log
                // requires to start with an AVClass pointer.
                if let Some(id) = unsafe { decoder_id(avcl) } {
                    if let Ok(mut errors) = DECODER_ERRORS.lock() {
                        errors.entry(id).or_insert_with(|| line.clone());
                    }
                }
                let _ = LAST_ERROR.try_with(|last| last.set(Some(line)));
            }
        }
    });
}
