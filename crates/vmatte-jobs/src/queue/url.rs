//! `--queue` values: which store they name, how to reach it, and how to
//! print them without the password.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a queue lives.
#[derive(Clone, Debug, PartialEq)]
pub enum QueueUrl {
    Postgres(PgUrl),
    /// The SQLite store of one output folder.
    Sqlite {
        outdir: PathBuf,
    },
}

/// How much of the server's certificate is checked (libpq's `sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS if the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS or nothing, unverified unless `sslrootcert` is given.
    Require,
    /// TLS with a certificate signed by a trusted root, any host name.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PgUrl {
    /// The URL as given; only [`PgUrl::redacted`] may be shown.
    given: String,
    /// What tokio-postgres parses: the URL without the TLS options it does
    /// not know (`sslmode=verify-*`, `sslrootcert`).
    pub(crate) client_config: String,
    pub tls: TlsMode,
    pub root_cert: Option<PathBuf>,
}

impl QueueUrl {
    /// `postgres://...` / `postgresql://...`, `sqlite:OUTDIR`, or
    /// `sqlite:OUTDIR/.vmatte/jobs.db`.
    pub fn parse(given: &str) -> Result<Self> {
        if given.starts_with("postgres://") || given.starts_with("postgresql://") {
            return PgUrl::parse(given).map(Self::Postgres);
        }
        if let Some(path) = given.strip_prefix("sqlite:") {
            let path = Path::new(path.trim_start_matches("//"));
            let outdir = match path.file_name().and_then(|n| n.to_str()) {
                Some("jobs.db") => path
                    .parent()
                    .filter(|p| p.file_name().is_some_and(|n| n == ".vmatte"))
                    .and_then(Path::parent)
                    .ok_or_else(|| bad(given, "a SQLite queue is OUTDIR/.vmatte/jobs.db"))?,
                _ => path,
            };
            return Ok(Self::Sqlite {
                outdir: outdir.to_path_buf(),
            });
        }
        Err(bad(
            &redact(given),
            "not a queue; use postgres://USER@HOST/DB (many machines) or sqlite:OUTDIR (one)",
        ))
    }

    /// Printable everywhere: the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            Self::Postgres(pg) => pg.redacted(),
            Self::Sqlite { outdir } => format!("sqlite:{}", outdir.display()),
        }
    }
}

impl PgUrl {
    fn parse(given: &str) -> Result<Self> {
        let (base, query) = match given.split_once('?') {
            Some((b, q)) => (b, q),
            None => (given, ""),
        };
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    tls = match value {
                        "disable" => TlsMode::Disable,
                        "allow" | "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        _ => {
                            return Err(bad(
                                &redact(given),
                                &format!(
                                    "sslmode={value} is unknown; use disable, prefer, require, \
                                     verify-ca or verify-full"
                                ),
                            ))
                        }
                    }
                }
                "sslrootcert" => {
                    let path = percent_decode(value.as_bytes());
                    root_cert = Some(PathBuf::from(String::from_utf8_lossy(&path).into_owned()))
                }
                _ => kept.push(pair),
            }
        }
        if root_cert.is_some() && tls == TlsMode::Require {
            // As libpq: a root certificate given with `require` is checked.
            tls = TlsMode::VerifyCa;
        }
        // tokio-postgres knows prefer/require/disable; the verification
        // itself is our TLS connector's business.
        let client_mode = match tls {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            _ => "require",
        };
        kept.push(match client_mode {
            "disable" => "sslmode=disable",
            "prefer" => "sslmode=prefer",
            _ => "sslmode=require",
        });
        let client_config = format!("{base}?{}", kept.join("&"));
        client_config.parse::<postgres::Config>().map_err(|e| {
            let why = redact(&format!("{e}; check the URL's syntax"));
            bad(&redact(given), &why)
        })?;
        Ok(Self {
            given: given.to_string(),
            client_config,
            tls,
            root_cert,
        })
    }

    pub fn redacted(&self) -> String {
        redact(&self.given)
    }
}

fn bad(given: &str, why: &str) -> Error {
    Error::QueueUrl {
        given: given.to_string(),
        why: why.to_string(),
    }
}

/// The text with anything that could be a password shown as `***`,
/// whatever shape it has: the user information of a URL (`user:PASSWORD@`,
/// also in malformed URLs such as `postgres:/u:PW@h` or `postgres//u:PW@h`
/// or a bare `user:PW@host`), and `password=` settings (URL query
/// parameters and libpq's `key=value` strings, quoted or not).
pub fn redact(url: &str) -> String {
    mask_password_settings(&mask_userinfo(url))
}

/// `user:PASSWORD@host` -> `user:***@host`: from the first `:` after the
/// scheme to the last `@`, so a password holding `@`, `/` or `?` is hidden
/// whole (an `@` in the query may hide more than the password: the safe
/// side).
fn mask_userinfo(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    // A scheme is `word:` followed by a slash; `user:PW@host` has none.
    let scheme_end = text
        .find(':')
        .filter(|&c| text[c + 1..].starts_with('/'))
        .filter(|&c| {
            let scheme = &text[..c];
            !scheme.is_empty()
                && scheme.starts_with(|ch: char| ch.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+-.".contains(ch))
        })
        .map_or(0, |c| c + 1);
    let authority = text[scheme_end..at]
        .find(|c| c != '/')
        .map_or(at, |i| scheme_end + i);
    match text[authority..at].find(':') {
        Some(colon) => format!("{}***{}", &text[..authority + colon + 1], &text[at..]),
        None => text.to_string(),
    }
}

/// `password=SECRET` -> `password=***` in query strings (`&`-separated)
/// and libpq strings (space-separated, values perhaps in single quotes).
fn mask_password_settings(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let key = i + found;
        let starts_key =
            key == 0 || !text[..key].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let mut j = key + "password".len();
        while text[j..].starts_with(' ') {
            j += 1;
        }
        if !starts_key || !text[j..].starts_with('=') {
            out.push_str(&text[i..key + "password".len()]);
            i = key + "password".len();
            continue;
        }
        j += 1;
        while text[j..].starts_with(' ') {
            j += 1;
        }
        let end = if text[j..].starts_with('\'') {
            // A quoted libpq value ends at the next quote not escaped.
            let mut k = j + 1;
            let bytes = text.as_bytes();
            while k < bytes.len() && bytes[k] != b'\'' {
                k += if bytes[k] == b'\\' { 2 } else { 1 };
            }
            (k + 1).min(text.len())
        } else {
            text[j..]
                .find([' ', '&', ';', '\t', '\n'])
                .map_or(text.len(), |e| j + e)
        };
        out.push_str(&text[i..key]);
        out.push_str("password=***");
        i = end;
    }
    out.push_str(&text[i..]);
    out
}

/// `%XX` decoded; a `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "postgres://vm:s3cret@db.example:5432/q?sslmode=require",
                "postgres://vm:***@db.example:5432/q?sslmode=require",
            ),
            ("postgresql://vm:p%40ss@db/q", "postgresql://vm:***@db/q"),
            (
                "postgres://db/q?user=vm&password=s3cret",
                "postgres://db/q?user=vm&password=***",
            ),
            ("postgres://vm@db/q", "postgres://vm@db/q"),
        ];
        for (given, shown) in cases {
            assert_eq!(redact(given), shown);
            let url = QueueUrl::parse(given).unwrap();
            assert_eq!(url.redacted(), shown);
            assert!(!url.redacted().contains("s3cret"));
        }
    }

    #[test]
    fn passwords_never_show_whatever_the_shape() {
        for given in [
            "postgres:/vmatte:S3cret@127.0.0.1:5432/postgres",
            "postgres//vmatte:S3cret@127.0.0.1:5432/postgres",
            "vmatte:S3cret@127.0.0.1:5432",
            "postgres://vmatte:S3c@ret@db/q",
            "postgres://vmatte:S3c/ret@db/q",
            "postgres://vmatte:S3c?ret@db/q",
            "host=127.0.0.1 password=S3cret dbname=postgres",
            "host=127.0.0.1 password = 'S3 cret' dbname=postgres",
            "host=h PASSWORD=S3cret",
            "postgres://db/q?password=S3cret&user=vmatte",
            "sqlite:/out?password=S3cret",
        ] {
            let shown = redact(given);
            assert!(
                !shown.contains("S3") && !shown.contains("cret"),
                "{given} -> {shown}"
            );
            if let Err(e) = QueueUrl::parse(given) {
                let e = e.to_string();
                assert!(!e.contains("S3") && !e.contains("cret"), "{e}");
            }
        }
        assert_eq!(
            redact("host=h password='a b' dbname=d"),
            "host=h password=*** dbname=d"
        );
        assert_eq!(redact("postgres//u:pw@h/d"), "postgres//u:***@h/d");
        // Text without a password is left alone.
        assert_eq!(redact("postgres://vm@db/q"), "postgres://vm@db/q");
        assert_eq!(redact("sqlite:/out/dir"), "sqlite:/out/dir");
    }

    #[test]
    fn tls_modes_follow_libpq() {
        let mode = |u: &str| match QueueUrl::parse(u).unwrap() {
            QueueUrl::Postgres(pg) => (pg.tls, pg.root_cert),
            _ => unreachable!(),
        };
        assert_eq!(mode("postgres://h/d").0, TlsMode::Prefer);
        assert_eq!(mode("postgres://h/d?sslmode=disable").0, TlsMode::Disable);
        assert_eq!(mode("postgres://h/d?sslmode=require").0, TlsMode::Require);
        assert_eq!(
            mode("postgres://h/d?sslmode=require&sslrootcert=/ca%20dir/ca.pem"),
            (TlsMode::VerifyCa, Some(PathBuf::from("/ca dir/ca.pem")))
        );
        assert_eq!(
            mode("postgres://h/d?sslmode=verify-full").0,
            TlsMode::VerifyFull
        );
        let err = QueueUrl::parse("postgres://u:pw@h/d?sslmode=bogus").unwrap_err();
        assert!(!err.to_string().contains("pw@"), "{err}");
    }

    #[test]
    fn sqlite_queues_name_their_folder() {
        for given in [
            "sqlite:/out",
            "sqlite:/out/.vmatte/jobs.db",
            "sqlite:///out",
        ] {
            assert_eq!(
                QueueUrl::parse(given).unwrap(),
                QueueUrl::Sqlite {
                    outdir: PathBuf::from("/out")
                }
            );
        }
        assert!(QueueUrl::parse("sqlite:/out/other/jobs.db").is_err());
        assert!(QueueUrl::parse("mysql://x").is_err());
    }
}
