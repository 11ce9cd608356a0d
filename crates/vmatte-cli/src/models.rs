//! `vmatte models list | install | import | verify`.

use std::process::ExitCode;

use anyhow::Result;
use vmatte_models::store::{known_model, ModelStore, GVM, KNOWN_MODELS, MATANYONE};

use crate::cli::ModelsCommand;

pub fn run(cmd: ModelsCommand) -> Result<ExitCode> {
    match cmd {
        ModelsCommand::List { model_dir, json } => {
            let store = ModelStore::locate(model_dir.as_deref());
            let rows = store.list();
            if json {
                crate::host::json_document(&rows)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("models in {}", store.dir().display());
            for row in rows {
                let state = if row.installed {
                    "installed"
                } else {
                    "not installed"
                };
                println!("  {:<16} {:<14} {}", row.name, state, row.description);
                println!("  {:<16} {:<14} licence: {}", "", "", row.licence);
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Install {
            name,
            model_dir,
            python,
        } => {
            let store = ModelStore::locate(model_dir.as_deref());
            let path = store.install(&name, &python)?;
            eprintln!("{name} installed at {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Import {
            items,
            name,
            model_dir,
        } => {
            let store = ModelStore::locate(model_dir.as_deref());
            let (name, file) = match items.as_slice() {
                [file] => (name, file.clone()),
                [first, file] => (Some(first.display().to_string()), file.clone()),
                _ => unreachable!("clap takes one or two"),
            };
            if name.as_deref() == Some(MATANYONE) {
                let path = store.import_matanyone(&file)?;
                eprintln!(
                    "{} imported as matanyone at {} (licence: NTU S-Lab 1.0, non-commercial); \
                     run it with `vmatte matte --model matanyone --mask MASK.png`",
                    file.display(),
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if name.as_deref() == Some(GVM) || file.is_dir() {
                if name.as_deref().is_some_and(|n| n != GVM) {
                    anyhow::bail!(
                        "{}: a folder can only be registered as gvm; pass an RVM weight file for {}",
                        file.display(),
                        name.unwrap_or_default()
                    );
                }
                let (dir, lora) = store.register_gvm(&file)?;
                eprintln!(
                    "gvm registered: {} ({}); run it with `vmatte matte --model gvm`",
                    dir.display(),
                    if lora {
                        "with its LoRA"
                    } else {
                        "no LoRA beside the UNet"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let (path, name) = store.import(&file, name.as_deref())?;
            eprintln!(
                "{} imported as {name} at {}",
                file.display(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Verify { name, model_dir } => {
            let store = ModelStore::locate(model_dir.as_deref());
            let names: Vec<&str> = match &name {
                Some(n) if n == GVM => vec![GVM],
                Some(n) if n == MATANYONE => vec![MATANYONE],
                Some(n) => vec![known_model(n)?.name],
                None => KNOWN_MODELS
                    .iter()
                    .filter(|m| store.path_of(m.name).is_file())
                    .map(|m| m.name)
                    .chain(store.has_gvm().then_some(GVM))
                    .chain(store.path_of(MATANYONE).is_file().then_some(MATANYONE))
                    .collect(),
            };
            if names.is_empty() {
                eprintln!(
                    "no models installed in {}; run `vmatte models install rvm-mobilenetv3`",
                    store.dir().display()
                );
                return Ok(ExitCode::FAILURE);
            }
            let mut ok = true;
            for n in names {
                match store.verify_one(n) {
                    Ok(msg) => println!("{n}: {msg}"),
                    Err(e) => {
                        ok = false;
                        println!("{n}: FAILED: {e}");
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
