//! Which files a batch covers: files as given, folders searched
//! recursively, shell-style globs, and `--list` files of paths.
//!
//! Folders are followed through symbolic links, each real folder once
//! (by device and inode), so a link back up the tree cannot send the search
//! round in circles. Entries that are not regular files (FIFOs, sockets,
//! devices) and folders that cannot be read are skipped, each with a
//! warning; nothing found inside a folder can make the search hang or stop.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vmatte_engine::outcome::one_line;

/// Extensions taken without probing: a file named like a video is a job, and
/// one that turns out not to be a video fails with its reason instead of
/// vanishing from the batch.
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mxf", "mts", "m2ts", "ts", "mpg", "mpeg", "wmv",
    "flv", "3gp", "ogv", "y4m", "dv", "vob",
];

/// Stills are never probed as one-frame videos inside a folder.
const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "exr", "gif", "dpx",
];

/// What a search found, and what it skipped and why.
#[derive(Debug, Default)]
pub struct Found {
    pub inputs: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Whether `path`'s name is a video's (what a watched folder takes).
pub fn named_like_video(path: &Path) -> bool {
    VIDEO_EXTENSIONS.contains(&extension(path).as_str())
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A file inside a searched folder is a video when its name says so, or when
/// libav finds a moving video stream in it (files without an extension, or
/// with an unusual one).
fn looks_like_video(path: &Path) -> bool {
    let ext = extension(path);
    if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
        return true;
    }
    if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        return false;
    }
    match vmatte_media::open_source(path, None) {
        Ok(src) => src.info().frame_count.is_none_or(|n| n > 1),
        Err(_) => false,
    }
}

/// What kind of thing a path is, following links.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

struct Walk {
    out: BTreeSet<PathBuf>,
    /// Real folders already searched, by (device, inode).
    seen: HashSet<(u64, u64)>,
    warnings: Vec<String>,
}

impl Walk {
    fn warn(&mut self, path: &Path, what: &str) {
        self.warnings
            .push(format!("{}: {what}", one_line(&path.display().to_string())));
    }

    fn folder(&mut self, dir: &Path) {
        let meta = match fs::metadata(dir) {
            Ok(m) => m,
            Err(e) => return self.warn(dir, &format!("cannot read this folder ({e}); skipped")),
        };
        if !self.seen.insert((meta.dev(), meta.ino())) {
            let linked = fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            if linked {
                self.warn(dir, "a link to a folder already searched; skipped");
            }
            return;
        }
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return self.warn(dir, &format!("cannot list this folder ({e}); skipped")),
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for path in children {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue; // .vmatte state, macOS ._ files
            }
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.warn(&path, &format!("cannot be read ({e}); skipped"));
                    continue;
                }
            };
            if meta.is_dir() {
                self.folder(&path);
            } else if !meta.is_file() {
                if VIDEO_EXTENSIONS.contains(&extension(&path).as_str()) {
                    let what = kind_of(&meta);
                    self.warn(&path, &format!("{what}, not a video file; skipped"));
                }
            } else if looks_like_video(&path) {
                self.out.insert(path);
            }
        }
    }
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands the batch's inputs into a sorted, de-duplicated list of files.
/// A path that does not exist is kept, so that it fails as a job with its
/// reason; folders under `skip` (the output folder) are not searched.
pub fn expand(inputs: &[PathBuf], list: Option<&Path>, skip: &Path) -> Result<Found> {
    let mut given: Vec<PathBuf> = inputs.to_vec();
    if let Some(list) = list {
        let text = fs::read_to_string(list)
            .with_context(|| format!("{}: cannot read the --list file", list.display()))?;
        let base = list.parent().unwrap_or(Path::new("."));
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let p = PathBuf::from(line);
            given.push(if p.is_absolute() { p } else { base.join(p) });
        }
    }
    let skip = skip.canonicalize().ok();
    let mut walk = Walk {
        out: BTreeSet::new(),
        seen: HashSet::new(),
        warnings: Vec::new(),
    };
    // The output folder is never searched: it counts as seen.
    if let Some(meta) = skip.as_ref().and_then(|s| fs::metadata(s).ok()) {
        walk.seen.insert((meta.dev(), meta.ino()));
    }
    for input in given {
        let text = input.to_string_lossy();
        if !input.exists() && has_glob_chars(&text) {
            let matches: Vec<_> = glob::glob(&text)
                .with_context(|| format!("'{text}' is not a valid pattern"))?
                .filter_map(|m| m.ok())
                .collect();
            if matches.is_empty() {
                bail!("'{text}' matches no files; check the pattern (quote it to let vmatte expand it)");
            }
            for m in matches {
                if m.is_dir() {
                    walk.folder(&m);
                } else {
                    walk.out.insert(m);
                }
            }
        } else if input.is_dir() {
            walk.folder(&input);
        } else {
            // Named on the command line: a job, which fails with its reason
            // if it is no video (a FIFO included, without opening it).
            walk.out.insert(input);
        }
    }
    if let Some(skip) = &skip {
        walk.out.retain(|p| {
            p.canonicalize()
                .map(|c| !c.starts_with(skip))
                .unwrap_or(true)
        });
    }
    Ok(Found {
        inputs: walk.out.into_iter().collect(),
        warnings: walk.warnings,
    })
}

/// Creates OUTDIR and expands the inputs, refusing an empty result: the
/// common start of `batch` and `submit`. `where_hint` ends the message for
/// an OUTDIR that cannot be created.
pub fn prepare(
    inputs: &[PathBuf],
    list: Option<&Path>,
    outdir: &Path,
    where_hint: &str,
) -> Result<Found> {
    fs::create_dir_all(outdir).with_context(|| {
        format!(
            "{}: cannot create the output folder; choose a writable -o folder{where_hint}",
            outdir.display()
        )
    })?;
    let found = expand(inputs, list, outdir)?;
    if found.inputs.is_empty() {
        let skipped = if found.warnings.is_empty() {
            String::new()
        } else {
            format!(" ({})", found.warnings.join("; "))
        };
        anyhow::bail!(
            "no videos found in the given inputs{skipped}; pass video files, folders or --list FILE"
        );
    }
    Ok(found)
}
