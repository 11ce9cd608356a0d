//! What makes two runs the same job: the input's content and the settings'
//! meaning, never the input's name or the settings' field order.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Bytes sampled per region; enough to tell real videos apart (headers at
/// the start, indexes at the end, payload in the middle) at the cost of a
/// few MiB of reading however long the video is.
const SAMPLE: u64 = 1 << 20;

/// A cheap, stable identity of the input's content, as hex sha256.
///
/// A file is identified by its size and its first, last and (above 3 MiB)
/// middle MiB; an image folder by its file names and sizes plus samples of
/// its first, middle and last images. Bytes outside the samples are not
/// read, so an edit that keeps the size and touches only those goes
/// unnoticed: the price of not hashing gigabytes on every rerun.
pub fn content_id(path: &Path) -> io::Result<String> {
    let with_path =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot identify {}: {e}", path.display()));
    let meta = fs::metadata(path).map_err(with_path)?;
    let mut hasher = Sha256::new();
    if meta.is_dir() {
        hash_folder(path, &mut hasher).map_err(with_path)?;
    } else if !meta.is_file() {
        // A FIFO or device would block the read, or never end.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file (a FIFO, socket or device); give a video file",
                path.display()
            ),
        ));
    } else {
        hasher.update(b"vmatte-file-v1\0");
        hash_file_samples(path, &mut hasher).map_err(with_path)?;
    }
    Ok(hex(&hasher.finalize()))
}

fn hash_file_samples(path: &Path, hasher: &mut Sha256) -> io::Result<()> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    hasher.update(len.to_le_bytes());
    let mut ranges = vec![(0, len.min(SAMPLE))];
    if len > 3 * SAMPLE {
        ranges.push((len / 2 - SAMPLE / 2, SAMPLE));
    }
    if len > SAMPLE {
        // Never re-reads the head: a 1.5 MiB file's tail starts at 1 MiB.
        let start = (len - SAMPLE).max(SAMPLE);
        ranges.push((start, len - start));
    }
    let mut buf = Vec::new();
    for (start, size) in ranges {
        buf.resize(size as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        hasher.update(start.to_le_bytes());
        hasher.update(&buf);
    }
    Ok(())
}

fn hash_folder(dir: &Path, hasher: &mut Sha256) -> io::Result<()> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = fs::metadata(entry.path())?;
        if meta.is_file() {
            files.push((entry.file_name(), meta.len()));
        }
    }
    files.sort();
    hasher.update(b"vmatte-folder-v1\0");
    hasher.update((files.len() as u64).to_le_bytes());
    for (name, len) in &files {
        hasher.update(name.as_encoded_bytes());
        hasher.update([0]);
        hasher.update(len.to_le_bytes());
    }
    if let (Some(first), Some(last)) = (files.first(), files.last()) {
        let middle = &files[files.len() / 2];
        for (name, _) in [first, middle, last] {
            hash_file_samples(&dir.join(name), hasher)?;
        }
    }
    Ok(())
}

/// Hex sha256 of the settings as canonical JSON (object keys sorted at
/// every level), so renaming nothing but reordering fields keeps the id.
///
/// Text that is not JSON is hashed as it is: still stable, just not
/// insensitive to formatting.
pub fn settings_id(settings_json: &str) -> String {
    let canonical = match serde_json::from_str::<Value>(settings_json) {
        Ok(value) => {
            let mut out = String::new();
            write_canonical(&value, &mut out);
            out
        }
        Err(_) => settings_json.to_string(),
    };
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// Written by hand rather than relying on `serde_json::Map` being sorted,
/// which stops being true when any crate in the build enables
/// `preserve_order`.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
