//! `vmatte finish VIDEO --matte MATTE`: the finishing and outputs of
//! `matte` for a matte made elsewhere. No model is loaded: the matte's
//! frames take the model's place in the pipeline.

use std::process::ExitCode;

use anyhow::Result;
use vmatte_engine::outcome::one_line;
use vmatte_pipeline::{finish_source, MatteSettings, PipelineError, RunOptions};

use crate::cli::FinishCmdArgs;
use crate::config;
use crate::presets;
use crate::progress::{Mode, Reporter};
use crate::signals::Interrupt;

pub fn run(args: FinishCmdArgs) -> Result<ExitCode> {
    let preset = args
        .preset
        .as_deref()
        .map(|name| presets::find(name, args.config.as_deref()))
        .transpose()
        .map_err(config::BadOptions::of)?
        .unwrap_or_default();
    // The model named here only labels the report: none runs.
    let mut settings = MatteSettings::new("given matte");
    config::apply_output(&args.options, &preset, &mut settings)
        .and_then(|()| settings.validate().map_err(anyhow::Error::msg))
        .map_err(config::BadOptions::of)?;
    let interrupt = Interrupt::install()?;
    let run = RunOptions {
        strict: args.options.strict,
        cancel: vec![interrupt.flag()],
        ..RunOptions::default()
    };
    let stem = crate::matte::unique_stem(&args.video, &mut Default::default());
    let name = one_line(&args.video.display().to_string());
    let mut reporter = Reporter::new(&name, Mode::detect(args.json));
    let fps = args.options.fps;
    // A bug fails this run with one line, never a panic's trace.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let video = vmatte_media::open_source(&args.video, fps)?;
        // An image-folder matte takes its video's rate when none is given.
        let matte = vmatte_media::open_source(&args.matte, fps.or(Some(video.info().frame_rate)))?;
        let (report, staged) = finish_source(
            video,
            matte,
            (&args.output, &stem),
            &settings,
            &run,
            &mut |p| reporter.update(p),
        )?;
        staged.publish()?;
        Ok::<_, PipelineError>(report)
    }));
    let result =
        caught.unwrap_or_else(|p| Err(PipelineError::Internal(vmatte_pipeline::panic_text(&*p))));
    if let Some(code) = interrupt.exit_code() {
        reporter.finish(&format!("{name}: interrupted; nothing was written"));
        return Ok(code);
    }
    match result {
        Ok(report) => {
            reporter.finish(&crate::matte::done_line(&name, &report));
            if args.json {
                crate::host::json_line(&report)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            reporter.finish("");
            eprintln!("vmatte: {}", one_line(&e.to_string()));
            if args.json {
                crate::host::json_failure(&args.video, &e.to_string())?;
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
