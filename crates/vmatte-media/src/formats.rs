//! The image files read as frames, by extension: the list that messages
//! name, and the decoder each extension takes (the two must agree).

use std::path::Path;

use ffmpeg_next::codec::Id;

/// File extensions (lower case) taken as images.
pub(crate) const IMAGE_EXTENSIONS: &[&str] =
    &["png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "exr"];

/// The decoder of an image file, by its extension (one of
/// [`IMAGE_EXTENSIONS`]); `None` for any other file.
pub(crate) fn image_codec(path: &Path) -> Option<Id> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => Id::PNG,
        "jpg" | "jpeg" => Id::MJPEG,
        "tif" | "tiff" => Id::TIFF,
        "bmp" => Id::BMP,
        "webp" => Id::WEBP,
        "exr" => Id::EXR,
        _ => return None,
    })
}
