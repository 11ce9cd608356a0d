//! What a job produced, how to tell that it is still there, and how a copy
//! gets outputs of its own.
//!
//! A done job records each output's path and size. A rerun checks them
//! cheaply (one `stat`, or one listing for an image folder) instead of
//! trusting the store: an output that was deleted, truncated or replaced
//! makes the job run again. A copy (another input with the same content)
//! gets the job's outputs under its own name as hard links, or as copies
//! where the file system has no links; either way a link appears under its
//! final name only once complete.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

/// Output kind (`alpha`, `composite`, ...) to path, and to size in bytes
/// where it was measured (a file's length, an image folder's total).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub paths: BTreeMap<String, PathBuf>,
    pub bytes: BTreeMap<String, u64>,
}

impl From<BTreeMap<String, PathBuf>> for Outputs {
    /// Paths without sizes: a check then only asks that each exists and is
    /// not empty.
    fn from(paths: BTreeMap<String, PathBuf>) -> Self {
        Self {
            paths,
            bytes: BTreeMap::new(),
        }
    }
}

/// A file's length, or the total length of the files in a folder (an image
/// sequence; not recursive, as sequences are flat).
pub fn measure(path: &Path) -> io::Result<u64> {
    let meta = fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Whether every output is still there as it was recorded: the reason, in
/// one line, for the first one that is not.
pub fn verify(outputs: &Outputs) -> Result<(), String> {
    for (kind, path) in &outputs.paths {
        let found = match measure(path) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!("{} ({kind}) is missing", path.display()))
            }
            Err(e) => return Err(format!("{} ({kind}) cannot be read ({e})", path.display())),
        };
        match outputs.bytes.get(kind) {
            Some(&want) if want != found => {
                return Err(format!(
                    "{} ({kind}) has {found} bytes, not the {want} it was written with",
                    path.display()
                ))
            }
            None if found == 0 => {
                return Err(format!("{} ({kind}) is empty", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The path an output of `from_name` has under `to_name`: the same folder,
/// the file name's leading `from_name` replaced (names carry no dots, so
/// `<name>.<kind>.<ext>` splits at the first one).
fn renamed(path: &Path, from_name: &str, to_name: &str) -> Option<PathBuf> {
    let file = path.file_name()?.to_str()?;
    let rest = file.strip_prefix(from_name)?;
    rest.starts_with('.')
        .then(|| path.with_file_name(format!("{to_name}{rest}")))
}

/// Gives `to_name` its own outputs: each of `outputs` (made under
/// `from_name`) hard-linked, or copied where links cannot be made (another
/// file system, a file system without them), first under a hidden partial
/// name and then renamed, so nothing incomplete appears under a final name.
pub fn link_as(outputs: &Outputs, from_name: &str, to_name: &str) -> io::Result<Outputs> {
    let mut made = Outputs::default();
    for (kind, source) in &outputs.paths {
        let target = renamed(source, from_name, to_name).ok_or_else(|| {
            io::Error::other(format!(
                "{} is not named after {from_name}; cannot name its copy",
                source.display()
            ))
        })?;
        let partial = partial_of(&target);
        let linked = if source.is_dir() {
            link_folder(source, &partial)
        } else {
            link_file(source, &partial)
        };
        // rename(2) does nothing when both names are links to one file
        // (the copy was linked before): the partial name then goes too.
        // A folder does not replace a folder in a rename: the old one goes
        // first (it is being replaced because it is damaged).
        let published = linked
            .and_then(|()| match target.is_dir() {
                true => fs::remove_dir_all(&target),
                false => Ok(()),
            })
            .and_then(|()| fs::rename(&partial, &target))
            .map(|()| {
                let _ = remove_any(&partial);
            });
        if let Err(e) = published {
            let _ = remove_any(&partial);
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot link {} as {} ({e})",
                    source.display(),
                    target.display()
                ),
            ));
        }
        made.bytes.insert(kind.clone(), measure(&target)?);
        made.paths.insert(kind.clone(), target);
    }
    Ok(made)
}

/// A hidden name beside `target` that no other writer uses.
fn partial_of(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()))
}

fn link_file(source: &Path, target: &Path) -> io::Result<()> {
    match fs::hard_link(source, target) {
        Ok(()) => Ok(()),
        Err(_) => fs::copy(source, target).map(drop),
    }
}

fn link_folder(source: &Path, target: &Path) -> io::Result<()> {
    fs::create_dir(target)?;
    for entry in fs::read_dir(source)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            link_file(&entry.path(), &target.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Output kind to path, as the stores keep them (`outputs_json`).
pub(crate) fn paths_json(outputs: &Outputs) -> String {
    let paths: BTreeMap<&str, String> = outputs
        .paths
        .iter()
        .map(|(kind, p)| (kind.as_str(), p.to_string_lossy().into_owned()))
        .collect();
    serde_json::to_string(&paths).unwrap_or_else(|_| "{}".into())
}

/// Output kind to bytes (`output_bytes_json`); `None` when none measured.
pub(crate) fn bytes_json(outputs: &Outputs) -> Option<String> {
    (!outputs.bytes.is_empty()).then(|| serde_json::to_string(&outputs.bytes).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_gets_links_under_its_own_name_and_damage_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        fs::write(out.join("take.alpha.mp4"), b"alpha bytes").unwrap();
        fs::create_dir(out.join("take.rgba")).unwrap();
        fs::write(out.join("take.rgba/000000.png"), b"png").unwrap();
        fs::write(out.join("take.rgba/000001.png"), b"png!").unwrap();
        let mut job = Outputs::default();
        for (kind, name) in [("alpha", "take.alpha.mp4"), ("rgba", "take.rgba")] {
            let p = out.join(name);
            job.bytes.insert(kind.into(), measure(&p).unwrap());
            job.paths.insert(kind.into(), p);
        }
        assert_eq!(job.bytes["rgba"], 7);
        verify(&job).unwrap();

        let copy = link_as(&job, "take", "take_2").unwrap();
        assert_eq!(copy.paths["alpha"], out.join("take_2.alpha.mp4"));
        assert_eq!(copy.bytes, job.bytes);
        assert_eq!(
            fs::read(out.join("take_2.rgba/000001.png")).unwrap(),
            b"png!"
        );
        verify(&copy).unwrap();
        // Linked again (a second run): still one file, no partial left.
        link_as(&job, "take", "take_2").unwrap();
        let partials = fs::read_dir(out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
            .count();
        assert_eq!(partials, 0);

        fs::write(out.join("take.alpha.mp4"), b"").unwrap();
        assert!(verify(&job).unwrap_err().contains("0 bytes"));
        fs::remove_file(out.join("take_2.alpha.mp4")).unwrap();
        assert!(verify(&copy).unwrap_err().contains("missing"));
        // Without recorded sizes, an empty file is still damage.
        let sizeless: Outputs = job.paths.clone().into();
        assert!(verify(&sizeless).unwrap_err().contains("empty"));
    }
}
