//! `run` of a trial with `variants`: the same runs under each variant in turn, each a whole
//! campaign into `<out>/<variant>/` (its groups restored at its end, before the next variant
//! changes them), then every variant compared with the first one per load step
//! (`<out>/compare-<first>-<variant>.html`, the `compare` command's own page) and
//! `<out>/variants.json` listing what ran.

use std::path::{Path, PathBuf};

use super::run_args::Args;
use super::Global;
use crate::campaign::{finish_variants, VariantRun};
use crate::error::{exit, Error, Result};
use crate::trial::Trial;

/// The folder the variants' folders go in: `--resume`, `--out`, or `results/<trial>-<UTC>`.
fn base_dir(args: &Args, t: &Trial) -> Result<PathBuf> {
    if let Some(r) = &args.resume {
        if !r.is_dir() {
            return Err(Error::Usage(format!(
                "{} is not the results folder of a trial with variants",
                r.display()
            )));
        }
        return Ok(crate::results::absolute(r));
    }
    let base = args.out.clone().unwrap_or_else(|| {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        PathBuf::from("results").join(format!("{}-{stamp}", t.spec.name))
    });
    if std::fs::read_dir(&base).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Usage(format!(
            "{} already exists and is not empty: continue those variants with --resume {}, or choose another --out",
            base.display(),
            base.display()
        )));
    }
    std::fs::create_dir_all(&base)
        .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
    Ok(crate::results::absolute(&base))
}

/// The arguments of one variant's campaign: its own folder, resumed when it has one.
fn variant_args(args: &Args, dir: &Path) -> Args {
    let mut a = args.clone();
    if args.resume.is_some() && dir.join("runs").is_dir() {
        a.resume = Some(dir.to_path_buf());
        a.out = None;
    } else {
        a.resume = None;
        a.out = Some(dir.to_path_buf());
    }
    a
}

/// The worst of the variants' exit codes: checks failed before partial before ok.
fn worst(codes: &[i32]) -> i32 {
    if codes.contains(&exit::CHECKS_FAILED) {
        exit::CHECKS_FAILED
    } else if codes.contains(&exit::PARTIAL) {
        exit::PARTIAL
    } else {
        codes
            .iter()
            .copied()
            .find(|c| *c != exit::OK)
            .unwrap_or(exit::OK)
    }
}

/// Runs every variant in turn with `campaign`, then compares them. A variant stopped by a
/// signal or an error ends the sequence (its campaign has restored the groups).
pub fn run(
    t: &Trial,
    args: &Args,
    global: &Global,
    campaign: impl Fn(Trial, Args, &Global) -> Result<i32>,
) -> Result<i32> {
    let base = base_dir(args, t)?;
    crate::terminal::say(&format!(
        "{} variants ({}), results in {}",
        t.variants.len(),
        t.variants
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        base.display()
    ));
    let mut ran = Vec::new();
    for (i, v) in t.variants.iter().enumerate() {
        crate::terminal::say(&format!(
            "variant {}/{}: {}",
            i + 1,
            t.variants.len(),
            v.name
        ));
        let dir = base.join(&v.name);
        let exit = campaign(t.under(v), variant_args(args, &dir), global)?;
        ran.push(VariantRun {
            variant: v,
            dir,
            exit,
        });
        if exit >= 128 {
            // A stop request: the groups are back; the variants left are not run.
            break;
        }
    }
    finish_variants(&base, t, &ran)?;
    if let Some(stopped) = ran.last().map(|r| r.exit).filter(|c| *c >= 128) {
        return Ok(stopped);
    }
    Ok(worst(&ran.iter().map(|r| r.exit).collect::<Vec<_>>()))
}
