//! A job as it is stored and handed to whichever stream or machine runs it.
//!
//! ```text
//! JobSpec { settings, fps }  ──identity()──► settings_id (with the input's content_id: the job)
//!         { run }            ──travels along, outside the identity (chunks, precision)
//! ```
//! `vmatte batch`, `vmatte submit` and the HTTP service all make jobs
//! through [`JobSpec::stored`], so the same video with the same settings is
//! the same job whichever way it arrives.

use serde::{Deserialize, Serialize};
use vmatte_jobs::JobRow;
use vmatte_media::Rational;
use vmatte_pipeline::{MatteSettings, RunOptions};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    /// What to make.
    pub settings: MatteSettings,
    /// Frame rate of an image-folder input (videos carry their own).
    #[serde(default, with = "rate_text", skip_serializing_if = "Option::is_none")]
    pub fps: Option<Rational>,
    /// How the submitter asked it to run: chunk sizes and precision. A
    /// worker applies its own device and may lower them (out of memory).
    #[serde(default)]
    pub run: RunOptions,
}

impl JobSpec {
    /// The spec as stored with the job, and the job's settings identity:
    /// the hash of what it makes (settings and frame rate), never of how it
    /// runs, so the same video and settings stay one job whatever the
    /// device, chunk or precision.
    pub fn stored(&self) -> (String, String) {
        #[derive(Serialize)]
        struct Identity<'a> {
            settings: &'a MatteSettings,
            #[serde(with = "rate_text", skip_serializing_if = "Option::is_none")]
            fps: &'a Option<Rational>,
        }
        let identity = Identity {
            settings: &self.settings,
            fps: &self.fps,
        };
        let identity = serde_json::to_string(&identity).unwrap_or_default();
        let stored = serde_json::to_string(self).unwrap_or_default();
        (stored, vmatte_jobs::settings_id(&identity))
    }

    /// The identity of `input`'s content as this spec makes it: with
    /// MatAnyone, the content of the mask found for it is part of it, so the
    /// same video with another mask is another job, and a rerun after the
    /// mask was edited redoes it. (A mask that cannot be read leaves the
    /// video's identity: the run then says what is wrong with it.)
    pub fn content_id(&self, input: &std::path::Path) -> std::io::Result<String> {
        let video = vmatte_jobs::content_id(input)?;
        let mask = self
            .settings
            .matanyone
            .as_ref()
            .and_then(|m| m.mask_file(input))
            .and_then(|m| vmatte_jobs::content_id(&m).ok());
        Ok(match mask {
            Some(mask) => vmatte_jobs::settings_id(&format!("{video}+mask:{mask}")),
            None => video,
        })
    }

    /// The spec a stored job carries.
    pub fn of(row: &JobRow) -> Result<Self, String> {
        serde_json::from_str(&row.settings_json).map_err(|e| {
            format!(
                "job {}: its settings are not readable by this vmatte ({e}); submit it again \
                 with this version",
                row.id
            )
        })
    }
}

/// `25`, `29.97` or `30000/1001` as an exact rate: 23.976, 29.97 and 59.94
/// mean the NTSC rates.
pub fn parse_rate(s: &str) -> Result<Rational, String> {
    let bad = || format!("'{s}' is not a frame rate; use e.g. 25, 29.97 or 30000/1001");
    let rate = if let Some((n, d)) = s.split_once('/') {
        Rational::new(
            n.trim().parse().map_err(|_| bad())?,
            d.trim().parse().map_err(|_| bad())?,
        )
    } else if let Ok(n) = s.parse::<i32>() {
        Rational::new(n, 1)
    } else {
        let f: f64 = s.parse().map_err(|_| bad())?;
        if !f.is_finite() || !(0.001..=100_000.0).contains(&f) {
            return Err(bad());
        }
        [24000, 30000, 60000]
            .into_iter()
            .map(|n| Rational::new(n, 1001))
            .find(|r| (r.as_f64() - f).abs() < 0.005)
            .unwrap_or_else(|| Rational::new((f * 1000.0).round() as i32, 1000))
    };
    // Below one frame a thousand seconds, or above 100 000 a second, is no
    // frame rate anyone means (and libav's timestamps overflow).
    if rate.num <= 0 || rate.den <= 0 || !(0.001..=100_000.0).contains(&rate.as_f64()) {
        return Err(bad());
    }
    Ok(rate)
}

/// An optional rate as `num/den` text (jobs stored before it was exact
/// hold what the user typed, which reads back the same way).
mod rate_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use vmatte_media::Rational;

    pub fn serialize<S: Serializer>(rate: &Option<Rational>, s: S) -> Result<S::Ok, S::Error> {
        match rate {
            Some(r) => s.collect_str(r),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rational>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::parse_rate(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmatte_pipeline::{Chunks, Precision};

    #[test]
    fn how_a_job_runs_stays_out_of_its_identity() {
        let spec = |run: RunOptions| JobSpec {
            settings: MatteSettings::new("rvm-mobilenetv3"),
            fps: Some(Rational::new(30000, 1001)),
            run,
        };
        let (plain_json, plain_id) = spec(RunOptions::default()).stored();
        let (json, id) = spec(RunOptions {
            chunks: Chunks::fixed(8),
            precision: Precision::F16,
            ..RunOptions::default()
        })
        .stored();
        assert_eq!(
            id, plain_id,
            "chunk and precision do not change what a job makes"
        );
        assert_ne!(json, plain_json);
        let back: JobSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.run.chunks, Chunks::fixed(8));
        assert_eq!(back.fps, Some(Rational::new(30000, 1001)));
        // What it makes does change it.
        let mut other = spec(RunOptions::default());
        other.fps = Some(Rational::new(25, 1));
        assert_ne!(other.stored().1, plain_id);
    }

    #[test]
    fn rates_are_exact_and_bounded() {
        assert_eq!(parse_rate("29.97"), Ok(Rational::new(30000, 1001)));
        assert_eq!(parse_rate("25"), Ok(Rational::new(25, 1)));
        assert_eq!(parse_rate("12.5"), Ok(Rational::new(12500, 1000)));
        for bad in ["0", "-3", "1/1000000", "abc", "1/0", "inf", "NaN", "1e9"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
