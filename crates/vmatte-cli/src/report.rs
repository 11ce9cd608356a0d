//! `vmatte report OUTDIR`: GPU utilisation, memory and power over a batch,
//! drawn from the `telemetry` events of its job logs (OUTDIR/logs/*.jsonl)
//! as a PNG or SVG with three stacked panels, one line per GPU.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use vmatte_gpu::GpuSample;

/// Every telemetry sample in OUTDIR's job logs, by GPU, in time order. Jobs
/// that ran at once on one GPU logged the same readings: those are kept once.
pub fn read_samples(outdir: &Path) -> Result<BTreeMap<u32, Vec<GpuSample>>> {
    let logs = outdir.join("logs");
    let entries = std::fs::read_dir(&logs).with_context(|| {
        format!(
            "{}: no job logs here; give the output folder of a `vmatte batch` run",
            logs.display()
        )
    })?;
    let mut by_gpu: BTreeMap<u32, BTreeMap<u64, GpuSample>> = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let file = std::fs::File::open(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            // Other events, and a line cut short by a crash, are not samples.
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value.get("event").and_then(|e| e.as_str()) != Some("telemetry") {
                continue;
            }
            if let Ok(s) = serde_json::from_value::<GpuSample>(value) {
                by_gpu.entry(s.gpu).or_default().insert(s.t_ms, s);
            }
        }
    }
    Ok(by_gpu
        .into_iter()
        .map(|(gpu, series)| (gpu, series.into_values().collect()))
        .collect())
}

/// The fonts plotters can draw labels with; fonts-dejavu-core is installed
/// by scripts/deps.sh.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn load_font() -> Result<()> {
    let path = std::env::var_os("VMATTE_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONTS.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    let Some(path) = path else {
        bail!(
            "no font to label the plot with; install fonts-dejavu-core (Debian/Ubuntu) or set VMATTE_FONT to a .ttf file"
        );
    };
    let bytes: &'static [u8] = Box::leak(std::fs::read(&path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{}: not a usable TrueType font", path.display()))?;
    Ok(())
}

struct Panel {
    title: &'static str,
    unit: &'static str,
    value: fn(&GpuSample) -> Option<f64>,
}

const PANELS: [Panel; 3] = [
    Panel {
        title: "GPU busy",
        unit: "%",
        value: |s| s.util_pct,
    },
    Panel {
        title: "GPU memory used",
        unit: "GiB",
        value: |s| s.mem_used_mib.map(|m| m / 1024.0),
    },
    Panel {
        title: "power",
        unit: "W",
        value: |s| s.power_w,
    },
];

const SIZE: (u32, u32) = (1200, 900);

/// Draws the three panels to `out` (.png or .svg).
pub fn plot(series: &BTreeMap<u32, Vec<GpuSample>>, out: &Path) -> Result<()> {
    load_font()?;
    let partial = out.with_extension(format!(
        "partial.{}",
        out.extension().and_then(|e| e.to_str()).unwrap_or("png")
    ));
    match out.extension().and_then(|e| e.to_str()) {
        Some("svg") => draw(SVGBackend::new(&partial, SIZE).into_drawing_area(), series)?,
        Some("png") => draw(
            BitMapBackend::new(&partial, SIZE).into_drawing_area(),
            series,
        )?,
        _ => bail!(
            "{}: the plot is written as .png or .svg; name it so",
            out.display()
        ),
    }
    std::fs::rename(&partial, out)
        .with_context(|| format!("{}: cannot write the plot", out.display()))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &BTreeMap<u32, Vec<GpuSample>>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing the plot: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let t0 = series.values().flatten().map(|s| s.t_ms).min().unwrap_or(0);
    let t_end = series
        .values()
        .flatten()
        .map(|s| (s.t_ms - t0) as f64 / 1000.0)
        .fold(1.0, f64::max);
    for (area, panel) in root.split_evenly((PANELS.len(), 1)).iter().zip(&PANELS) {
        let top = series
            .values()
            .flatten()
            .filter_map(panel.value)
            .fold(0.0, f64::max);
        let y_max = if panel.unit == "%" {
            100.0
        } else {
            (top * 1.1).max(1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{} ({})", panel.title, panel.unit),
                ("sans-serif", 22),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_end, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first sample")
            .draw()
            .map_err(err)?;
        for (i, (gpu, samples)) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let points = samples
                .iter()
                .filter_map(|s| Some(((s.t_ms - t0) as f64 / 1000.0, (panel.value)(s)?)));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(err)?
                .label(format!("GPU{gpu}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// `vmatte report OUTDIR [--output FILE]`.
pub fn run(outdir: &Path, output: Option<&Path>) -> Result<ExitCode> {
    let series = read_samples(outdir)?;
    let samples: usize = series.values().map(Vec::len).sum();
    if samples == 0 {
        bail!(
            "{}: the job logs hold no GPU telemetry; it is recorded when a batch runs on a CUDA device with the NVIDIA driver present",
            outdir.join("logs").display()
        );
    }
    let out = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| outdir.join("telemetry.png"));
    plot(&series, &out)?;
    for s in vmatte_gpu::GpuSummary::of(&series.values().flatten().copied().collect::<Vec<_>>()) {
        eprintln!("{}", s.line());
    }
    eprintln!(
        "vmatte report: {samples} samples drawn to {}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmatte_engine::joblog::JobLog;

    /// Two jobs on GPU 0 at once (the same readings in both logs) and one on
    /// GPU 1, written through the job log's own telemetry writer.
    fn batch_with_telemetry(outdir: &Path) {
        let sample = |t_ms, gpu, util: f64| GpuSample {
            t_ms,
            gpu,
            util_pct: Some(util),
            mem_used_mib: Some(2048.0 + util),
            mem_total_mib: Some(81559.0),
            temp_c: Some(60.0),
            power_w: Some(100.0 + util * 3.0),
            sm_clock_mhz: Some(1980.0),
        };
        for (name, gpu) in [("a", 0), ("b", 0), ("c", 1)] {
            let mut log = JobLog::create(outdir, name).unwrap();
            log.event("start", serde_json::json!({ "input": name }));
            let mut w = log.telemetry_writer().unwrap();
            for i in 0..20u64 {
                w.sample(&sample(1_700_000_000_000 + i * 500, gpu, (i * 5) as f64));
            }
            log.event("end", serde_json::json!({ "status": "done" }));
        }
        // A crash can leave half a line; the report reads past it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(outdir.join("logs/a.jsonl"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"ts\":\"2026"))
            .unwrap();
    }

    #[test]
    fn reads_each_gpus_series_once() {
        let dir = tempfile::tempdir().unwrap();
        batch_with_telemetry(dir.path());
        let series = read_samples(dir.path()).unwrap();
        assert_eq!(series.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(series[&0].len(), 20, "shared readings counted once");
        assert!(series[&0].windows(2).all(|w| w[0].t_ms < w[1].t_ms));
        assert_eq!(series[&1][19].util_pct, Some(95.0));
    }

    #[test]
    fn draws_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        batch_with_telemetry(dir.path());
        let series = read_samples(dir.path()).unwrap();
        let png = dir.path().join("plot.png");
        plot(&series, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // Width and height from the IHDR chunk.
        let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!((dim(16), dim(20)), SIZE);
        let svg_path = dir.path().join("plot.svg");
        plot(&series, &svg_path).unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert!(
            svg.contains("GPU busy (%)") && svg.contains("GPU1"),
            "labels drawn"
        );
        assert!(svg.matches("<polyline").count() >= 6, "3 panels x 2 GPUs");
        assert!(!dir.path().join("plot.partial.svg").exists());
    }

    #[test]
    fn no_telemetry_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let e = run(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("no job logs here"), "{e}");
        JobLog::create(dir.path(), "x")
            .unwrap()
            .event("end", serde_json::json!({}));
        let e = run(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("no GPU telemetry"), "{e}");
        let e = plot(&BTreeMap::new(), &dir.path().join("x.gif"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(".png or .svg"), "{e}");
    }
}
