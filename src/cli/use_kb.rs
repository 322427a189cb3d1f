//! `openkb use`: make a knowledge base the default one.

use std::path::PathBuf;

use crate::config::GlobalConfig;
use crate::error::Result;
use crate::kb::Kb;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The KB folder (default: the current folder)
    path: Option<PathBuf>,
}

pub fn run(ctx: &super::Ctx, args: Args) -> Result<()> {
    let path = args.path.unwrap_or_else(|| PathBuf::from("."));
    let kb = Kb::discover(Some(&path), &path, &ctx.settings)?;
    super::warn_if_registry_reappeared(&kb);
    let root = kb.root().to_path_buf();
    GlobalConfig::update(&ctx.settings, |g| {
        g.register(&root);
        Ok(())
    })?;
    println!("Default knowledge base: {}", root.display());
    Ok(())
}
