//! Which files a batch covers: files as given, folders searched
//! recursively, shell-style globs, and `--list` files of paths.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

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

fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list this folder", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue; // .vmatte state, macOS ._ files
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if looks_like_video(&path) {
            out.insert(path);
        }
    }
    Ok(())
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands the batch's inputs into a sorted, de-duplicated list of files.
/// A path that does not exist is kept, so that it fails as a job with its
/// reason; folders under `skip` (the output folder) are not searched.
pub fn expand(inputs: &[PathBuf], list: Option<&Path>, skip: &Path) -> Result<Vec<PathBuf>> {
    let mut given: Vec<PathBuf> = inputs.to_vec();
    if let Some(list) = list {
        let text = std::fs::read_to_string(list)
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
    let mut out = BTreeSet::new();
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
                    walk(&m, &mut out)?;
                } else {
                    out.insert(m);
                }
            }
        } else if input.is_dir() {
            if skip.is_some() && input.canonicalize().ok() == skip {
                continue;
            }
            walk(&input, &mut out)?;
        } else {
            out.insert(input);
        }
    }
    if let Some(skip) = &skip {
        out.retain(|p| {
            p.canonicalize()
                .map(|c| !c.starts_with(skip))
                .unwrap_or(true)
        });
    }
    Ok(out.into_iter().collect())
}

/// Creates OUTDIR and expands the inputs, refusing an empty result: the
/// common start of `batch` and `submit`. `where_hint` ends the message for
/// an OUTDIR that cannot be created.
pub fn prepare(
    inputs: &[PathBuf],
    list: Option<&Path>,
    outdir: &Path,
    where_hint: &str,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(outdir).with_context(|| {
        format!(
            "{}: cannot create the output folder; choose a writable -o folder{where_hint}",
            outdir.display()
        )
    })?;
    let found = expand(inputs, list, outdir)?;
    if found.is_empty() {
        anyhow::bail!(
            "no videos found in the given inputs; pass video files, folders or --list FILE"
        );
    }
    Ok(found)
}
