//! `openkb kbs` and `openkb forget PATH`: the knowledge bases `~/.config/openkb/global.yaml`
//! knows (`known_kbs`, and which one is `default_kb`), and dropping one from that list. Forgetting
//! only edits global.yaml: the KB's own files are never touched.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::GlobalConfig;
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct KbsArgs {
    /// Print JSON (docs/schemas/kbs.json) instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// The knowledge base's folder, as `openkb kbs` lists it (it may no longer exist)
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

#[derive(Serialize)]
struct Known {
    path: String,
    default: bool,
    /// The folder exists and holds a `.openkb/` folder.
    is_kb: bool,
    exists: bool,
}

/// `kbs --json` (docs/schemas/kbs.json); `format_version` is added by `output`.
#[derive(Serialize)]
struct KbsReport {
    default_kb: Option<String>,
    knowledge_bases: Vec<Known>,
}

pub fn list(ctx: &super::Ctx, args: KbsArgs) -> Result<()> {
    let global = GlobalConfig::load(&ctx.settings)?;
    let default = global.default_kb();
    let mut paths = global.known_kbs();
    if let Some(d) = &default
        && !paths.contains(d)
    {
        paths.push(d.clone());
    }
    let output = KbsReport {
        default_kb: default.as_ref().map(|d| d.display().to_string()),
        knowledge_bases: paths
            .iter()
            .map(|p| Known {
                path: p.display().to_string(),
                default: default.as_ref() == Some(p),
                is_kb: p.join(".openkb").is_dir(),
                exists: p.exists(),
            })
            .collect(),
    };
    if args.json {
        return ctx.output(true).json(&output);
    }
    if output.knowledge_bases.is_empty() {
        println!("No known knowledge bases. `openkb init` creates one.");
        return Ok(());
    }
    for kb in &output.knowledge_bases {
        let mark = if kb.default { "*" } else { " " };
        let note = match (kb.exists, kb.is_kb) {
            (_, true) => "",
            (true, false) => "  (not a knowledge base any more)",
            (false, _) => "  (missing)",
        };
        // global.yaml is a file anyone can edit: its paths are shown like names.
        println!("{mark} {}{note}", crate::names::shown(&kb.path));
    }
    if default.is_some() {
        println!("(* the default: used outside any knowledge base)");
    }
    Ok(())
}

pub fn forget(ctx: &super::Ctx, args: ForgetArgs) -> Result<()> {
    // The path as global.yaml spells it: resolved like `init` and `use` resolve it when the
    // folder still exists, else made absolute (a deleted KB can be forgotten too).
    let given =
        std::path::absolute(&args.path).map_err(|e| Error::io("cannot resolve", &args.path, e))?;
    let resolved = given.canonicalize().unwrap_or_else(|_| given.clone());
    let mut removed = None;
    GlobalConfig::update(&ctx.settings, |g| {
        removed = g.forget(&[resolved.as_path(), given.as_path()]);
        Ok(())
    })?;
    match removed {
        None => Err(Error::Invalid(format!(
            "{} is not a known knowledge base; `openkb kbs` lists them (nothing was changed)",
            resolved.display()
        ))),
        Some(was_default) => {
            println!("forgot {} (its files are untouched)", resolved.display());
            if was_default {
                println!("  it was the default: there is none now; `openkb use PATH` chooses one");
            }
            Ok(())
        }
    }
}
