//! Output names: readable, portable, distinct and the same on every rerun.
//!
//! Outputs are `OUTDIR/<name>.<kind>.<ext>` (or `OUTDIR/<name>.<kind>/`),
//! so a name is a single path component without dots; whatever comes after
//! the first dot of an existing entry in OUTDIR is therefore never part of
//! a name that entry could clash with.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::identity::hex;

/// Long enough to recognise a take, short enough that `<name>.foreground.mp4`
/// stays well inside every file system's limit.
pub const MAX_STEM: usize = 40;

/// `_` plus this many hex digits tells apart names that lost characters.
const SUFFIX_HEX: usize = 6;

/// Device names Windows reserves whatever the extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A readable ASCII name (`[A-Za-z0-9_-]`, at most [`MAX_STEM`] characters,
/// never empty) from the input's file stem.
///
/// Latin accents are transliterated and punctuation becomes `_`. Anything
/// else is dropped; then `_<6 hex>` of the original name is appended so
/// that names which differed only there stay apart (a name with nothing
/// readable left becomes `video_<8 hex>`). Truncation appends it too.
pub fn safe_stem(input: &Path) -> String {
    let original = input.file_stem().unwrap_or_default();
    let digest = hex(&Sha256::digest(original.as_encoded_bytes()));

    let mut lossy = false;
    let mut raw = String::new();
    for c in original.to_string_lossy().chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            raw.push(c);
        } else if c.is_ascii() || is_separator(c) {
            raw.push('_');
        } else if is_combining_mark(c) {
            // Decomposed accents (macOS names): the base letter already
            // carried the meaning.
        } else if let Some(ascii) = transliterate(c) {
            raw.push_str(ascii);
        } else {
            lossy = true;
            raw.push('_');
        }
    }
    let mut name = collapse_underscores(&raw);

    if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
        return format!("video_{}", &digest[..8]);
    }
    if lossy || name.len() > MAX_STEM {
        name = with_suffix(&name, &digest[..SUFFIX_HEX]);
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
        name.push_str("_video");
    }
    name
}

/// `base_suffix`, cutting `base` so the whole stays within [`MAX_STEM`].
fn with_suffix(base: &str, suffix: &str) -> String {
    let keep = MAX_STEM - suffix.len() - 1;
    // Safe to slice by bytes: names are ASCII by now.
    let head = base[..base.len().min(keep)].trim_end_matches('_');
    format!("{head}_{suffix}")
}

fn collapse_underscores(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_matches('_').to_string()
}

/// Typographic punctuation and spaces: separators, like their ASCII kin,
/// rather than lost information.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '\u{a1}'..='\u{bf}' | '\u{d7}' | '\u{f7}' | '\u{2000}'..='\u{206f}')
        || matches!(c, '\u{3000}'..='\u{3003}' | '\u{fe50}'..='\u{fe6f}' | '\u{ff01}'..='\u{ff0f}')
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36f}' | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}')
}

/// Latin-1 and Latin Extended-A (plus Romanian's comma letters): what
/// European file names use. Other Latin letters fall to the hash suffix.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'Æ' => "AE",
        'æ' => "ae",
        'Ç' | 'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'Ð' | 'Ď' | 'Đ' => "D",
        'ð' | 'ď' | 'đ' => "d",
        'È'..='Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'Ĥ' | 'Ħ' => "H",
        'ĥ' | 'ħ' => "h",
        'Ì'..='Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'Ĵ' => "J",
        'ĵ' => "j",
        'Ķ' => "K",
        'ķ' | 'ĸ' => "k",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ŀ' | 'Ł' => "L",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'Ñ' | 'Ń' | 'Ņ' | 'Ň' | 'Ŋ' => "N",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'Ò'..='Ö' | 'Ø' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'ò'..='ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'Œ' => "OE",
        'œ' => "oe",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' | 'Ș' => "S",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' | 'ſ' => "s",
        'ß' => "ss",
        'ẞ' => "SS",
        'Ţ' | 'Ť' | 'Ŧ' | 'Ț' => "T",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'Þ' => "TH",
        'þ' => "th",
        'Ù'..='Ü' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'Ŵ' => "W",
        'ŵ' => "w",
        'Ý' | 'Ŷ' | 'Ÿ' => "Y",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Hands out distinct names given those already taken.
///
/// The rule is the first free of `stem`, `stem_2`, `stem_3`, ...: the same
/// input against the same taken set always gets the same name, and the
/// job store remembers each job's name so reruns never re-allocate. Names
/// are compared without case, because on macOS and Windows `Clip` and
/// `clip` are the same file.
#[derive(Clone, Debug, Default)]
pub struct NameAllocator {
    taken: BTreeSet<String>,
}

impl NameAllocator {
    pub fn new<I, S>(taken: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            taken: taken
                .into_iter()
                .map(|s| s.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn is_taken(&self, name: &str) -> bool {
        self.taken.contains(&name.to_ascii_lowercase())
    }

    /// A free name for `input`, from then on taken.
    pub fn allocate(&mut self, input: &Path) -> String {
        let stem = safe_stem(input);
        let mut name = stem.clone();
        let mut n = 2u64;
        while self.is_taken(&name) {
            let suffix = n.to_string();
            name = if stem.len() + 1 + suffix.len() > MAX_STEM {
                with_suffix(&stem, &suffix)
            } else {
                format!("{stem}_{suffix}")
            };
            n += 1;
        }
        self.taken.insert(name.to_ascii_lowercase());
        name
    }
}

/// The names that entries of `outdir` already occupy: each entry's name up
/// to its first dot (`clip.alpha.mp4` and `clip.alpha/` occupy `clip`).
/// A missing folder occupies nothing.
pub fn names_on_disk(outdir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(outdir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot list {}: {e}", outdir.display()),
            ))
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let head = file_name.split('.').next().unwrap_or_default();
        if !head.is_empty() {
            names.push(head.to_string());
        }
    }
    Ok(names)
}

/// Refuses an output that would overwrite (or be) the input, through any
/// spelling of the path, symlinks and, on Unix, hard links.
pub fn ensure_output_is_not_input(output: &Path, input: &Path) -> io::Result<()> {
    let clash = || {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} would overwrite the input {}; choose another output folder",
                output.display(),
                input.display()
            ),
        )
    };
    let input_real = fs::canonicalize(input)?;
    let output_real = match fs::canonicalize(output) {
        Ok(p) => p,
        // Not written yet: its folder decides where it will land.
        Err(_) => match (output.parent(), output.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                match fs::canonicalize(parent) {
                    Ok(dir) => dir.join(name),
                    Err(_) => return Ok(()),
                }
            }
            _ => return Ok(()),
        },
    };
    if input_real == output_real || same_file(&input_real, &output_real) {
        return Err(clash());
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}
